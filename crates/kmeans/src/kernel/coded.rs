//! A screen for a few rows that reads half the bytes: the centroids coded
//! to 16-bit integers.
//!
//! Routing one vector against many centroids reads every centroid once,
//! and the GEMM screen of [`Centroids`] reads them as `f32`: 6 MB for 2000
//! centroids of 768 dimensions, more than a core's L2 cache, so one routed
//! vector waits on memory. [`Coded`] keeps each centroid `c` as `s_c·ĉ`
//! (`ĉ` in `i16`, `s_c = max|c_j| / 32767`); a row is coded the same way
//! (`x = s_x·x̂ + e_x`), and the screen sums `x̂·ĉ` as exact 32-bit integer
//! pairs (what `pmaddwd` computes) into `f32` lanes. Half the bytes are
//! read; a rigorous bound on the coding and summation errors
//! ([`Coded::bound`]) keeps every centroid that may be among the nearest
//! as a candidate, and only canonical distances decide, so the answer is
//! the one the GEMM screen gives, bit for bit.

use pulp::{Simd, WithSimd};

use super::{dispatch_at, SimdLevel};

/// The largest code: `±32767`, never `−32768`, so a pair of products
/// (`2·32767²`) fits an `i32`.
const MAX_CODE: f32 = 32767.0;

/// Codes are summed 32 coordinates at a time; rows are padded with zeros.
const BLOCK: usize = 32;

/// The centroids of a [`Centroids`](super::Centroids), coded to 16 bits a
/// coordinate for [`Centroids::with_coded`](super::Centroids::with_coded).
/// Not `Debug`: centroids are summaries of the data.
#[derive(Clone)]
pub struct Coded {
    codes: Vec<i16>,
    scales: Vec<f32>,
    dim: usize,
    stride: usize,
    /// The largest `‖c − s_c·ĉ‖` over the centroids, rounded up.
    max_error: f64,
    /// The largest `‖c‖`, rounded up.
    max_norm: f64,
    /// Whether every coordinate is finite (else the screen is not used).
    usable: bool,
}

/// A row coded for the screen, with what its bound needs.
pub(super) struct Row {
    codes: Vec<i16>,
    scale: f32,
    /// `‖x‖` and `‖x − s_x·x̂‖`, rounded up.
    norm: f64,
    error: f64,
}

impl Coded {
    /// Codes row-major `centroids` of dimension `dim`.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        assert!(dim > 0, "dimension 0");
        let stride = dim.div_ceil(BLOCK) * BLOCK;
        let k = centroids.len() / dim;
        let mut codes = vec![0i16; k * stride];
        let mut scales = Vec::with_capacity(k);
        let (mut max_error, mut max_norm, mut usable) = (0f64, 0f64, true);
        for (c, out) in centroids
            .chunks_exact(dim)
            .zip(codes.chunks_exact_mut(stride))
        {
            let (scale, norm, error) = code(c, &mut out[..dim]);
            // The norm (summed in f64, where no f32 squares overflow) is
            // finite exactly when every coordinate is.
            usable &= norm.is_finite();
            scales.push(scale);
            max_error = max_error.max(error);
            max_norm = max_norm.max(norm);
        }
        Self {
            codes,
            scales,
            dim,
            stride,
            max_error,
            max_norm,
            usable,
        }
    }

    /// The number of centroids.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `row` coded for [`Self::screen`], or `None` when the screen cannot
    /// vouch for it (a coordinate that is not finite, or magnitudes whose
    /// products would overflow or fall among the subnormals): then the
    /// GEMM screens it.
    pub(super) fn row(&self, row: &[f32]) -> Option<Row> {
        if !self.usable {
            return None;
        }
        let mut codes = vec![0i16; self.stride];
        let (scale, norm, error) = code(row, &mut codes[..self.dim]);
        // A coordinate that is not finite makes the norm so, and this
        // range refuses it. Keep every product, bound and screened value
        // far from overflow, and the bound (at least γ·‖x‖·max‖c‖) far
        // above what a scaling that underflows to a subnormal can lose
        // (about 2⁻¹⁴⁹·2³⁰·d).
        let largest = norm * self.max_norm;
        if !(1e-25..1e30).contains(&largest) {
            return None;
        }
        Some(Row {
            codes,
            scale,
            norm,
            error,
        })
    }

    /// How far a screened dot product may be from the exact `x·c`, for
    /// every centroid `c`. With `x = s_x·x̂ + e_x` and `c = s_c·ĉ + e_c`,
    /// `x·c − s_x·s_c·(x̂·ĉ) = x·e_c + e_x·c − e_x·e_c`, at most
    /// `‖x‖·‖e_c‖ + ‖e_x‖·‖c‖ + ‖e_x‖·‖e_c‖`. The integer pairs are exact;
    /// their conversions to `f32`, the lane sums, the tree and the two
    /// scalings round at most `stride/32 + 20` times in a row, each time by
    /// at most `u` relative to a sum of magnitudes at most
    /// `s_x·s_c·‖x̂‖·‖ĉ‖ ≤ (‖x‖ + ‖e_x‖)·(‖c‖ + ‖e_c‖)`. Norms and errors
    /// are rounded up where they are computed (in `f64`), and the result
    /// is rounded up again.
    pub(super) fn bound(&self, row: &Row) -> f32 {
        let u = f64::from(f32::EPSILON) / 2.0;
        let n = (self.stride / BLOCK + 20) as f64;
        let gamma = n * u / (1.0 - n * u);
        let (xn, ex, cn, ec) = (row.norm, row.error, self.max_norm, self.max_error);
        let coding = xn * ec + ex * cn + ex * ec;
        let summing = gamma * (xn + ex) * (cn + ec);
        let bound = (coding + summing) * (1.0 + 1e-6);
        (bound as f32) * (1.0 + f32::EPSILON) + f32::MIN_POSITIVE
    }

    /// The screened `x·c` of `row` with every centroid into `dots` (one
    /// per centroid), on this thread: splitting one row's screen over the
    /// pool was measured slower (2000 × 768 codes, one-item upserts: the
    /// hand-off costs more than half the pass saves).
    pub(super) fn screen(&self, row: &Row, dots: &mut [f32]) {
        self.screen_at(SimdLevel::current(), row, dots);
    }

    /// [`Self::screen`] at `level` (or the best available below it): the
    /// same bits at every level.
    pub(super) fn screen_at(&self, level: SimdLevel, row: &Row, dots: &mut [f32]) {
        assert_eq!(dots.len(), self.len(), "one dot product per centroid");
        dispatch_at(
            level,
            Screen {
                codes: &self.codes,
                scales: &self.scales,
                stride: self.stride,
                row,
                dots,
            },
        );
    }
}

/// Codes `v` into `out` (`±32767·v_j / max|v|`, rounded to nearest) and
/// returns the scale, `‖v‖` and `‖v − scale·code‖`, both rounded up.
fn code(v: &[f32], out: &mut [i16]) -> (f32, f64, f64) {
    super::dispatch(Code { v, out })
}

/// [`code`] in the kernel of the SIMD level in use: the largest magnitude
/// and both sums in [`CODE_LANES`] lanes (coordinate `j` in lane `j mod
/// CODE_LANES`, the lanes then added in order), so every level computes
/// the same bits. With one running sum per quantity (chains of dependent
/// `f64` additions), a division per coordinate and a pass of its own to
/// check that the row is finite, coding a row of 768 dimensions took
/// 3.0 µs in a timing loop (the screen of 200 centroids about 4–5); so,
/// 1.0–1.1 µs.
struct Code<'a> {
    v: &'a [f32],
    out: &'a mut [i16],
}

/// The lanes of [`Code`].
const CODE_LANES: usize = 16;

impl WithSimd for Code<'_> {
    type Output = (f32, f64, f64);

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> (f32, f64, f64) {
        const L: usize = CODE_LANES;
        let Code { v, out } = self;
        let body = v.len() / L * L;
        // A maximum is exact in any order.
        let mut most = [0f32; L];
        for c in v[..body].chunks_exact(L) {
            for l in 0..L {
                let a = c[l].abs();
                most[l] = if a > most[l] { a } else { most[l] };
            }
        }
        let mut max = 0f32;
        for &a in most.iter().chain(&v[body..]) {
            let a = a.abs();
            max = if a > max { a } else { max };
        }
        let scale = max / MAX_CODE;
        // A multiplication, not a division per coordinate (a code may end
        // one step off the nearest: the coding error is measured, not
        // assumed), unless `max` is so small that its inverse is not finite.
        let inv = if scale > 0.0 { MAX_CODE / max } else { 0.0 };
        let (norm, error) = if inv.is_finite() {
            fill(v, out, scale, |x| x * inv)
        } else {
            fill(v, out, scale, |x| x / scale)
        };
        let up = |s: f64| s.sqrt() * (1.0 + 1e-9);
        (scale, up(norm), up(error))
    }
}

/// The codes of `v` (`steps(v_j)` rounded to the nearest integer, at most
/// `±32767`) into `out`, and the sums of `v_j²` and of the squared coding
/// errors, in [`CODE_LANES`] lanes. Products of an f32 and a code are
/// exact in f64; the sums round by far less than [`code`]'s margin, in any
/// order.
#[inline(always)]
fn fill(v: &[f32], out: &mut [i16], scale: f32, steps: impl Fn(f32) -> f32) -> (f64, f64) {
    const L: usize = CODE_LANES;
    let body = v.len() / L * L;
    let (mut norms, mut errors) = ([0f64; L], [0f64; L]);
    // Codes `x`, adding its square and its coding error's to lane `l`.
    let mut one = |l: usize, x: f32| {
        let q = nearest_integer(steps(x)).clamp(-MAX_CODE, MAX_CODE);
        let e = f64::from(x) - f64::from(scale) * f64::from(q);
        norms[l] += f64::from(x) * f64::from(x);
        errors[l] += e * e;
        q as i16
    };
    for (o, c) in out[..body]
        .chunks_exact_mut(L)
        .zip(v[..body].chunks_exact(L))
    {
        for l in 0..L {
            o[l] = one(l, c[l]);
        }
    }
    for (l, (o, &x)) in out[body..].iter_mut().zip(&v[body..]).enumerate() {
        *o = one(l, x);
    }
    let (mut norm, mut error) = (0f64, 0f64);
    for l in 0..L {
        norm += norms[l];
        error += errors[l];
    }
    (norm, error)
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2²²`
/// (codes are at most 32767 in magnitude): adding and taking away
/// `1.5·2²³` leaves no fraction bits. Two additions, where `f32::round` is
/// a call to `roundf` per coordinate on x86-64's baseline (routing one row
/// against 200 centroids of 768 dimensions: 7.6–7.8 µs with it, 6.6–6.9
/// without). Any rounding to within half a step serves: the coding error
/// is measured, not assumed.
#[inline]
fn nearest_integer(v: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (v + SHIFT) - SHIFT
}

/// The screen's kernel: `s_x·s_c·Σ x̂·ĉ`, pairs of products summed as
/// `i32` (exact), then in 16 `f32` lanes, block after block, and the lanes
/// as the canonical tree (lane `l` + lane `l + 8`, then `+ 4` …, as
/// [`tile`](super::tile) reduces), in registers at every SIMD level.
/// Summed one lane after the other, the lanes were a chain of 15
/// dependent additions per centroid, which at 50 dimensions took longer
/// than the products.
struct Screen<'a> {
    codes: &'a [i16],
    scales: &'a [f32],
    stride: usize,
    row: &'a Row,
    dots: &'a mut [f32],
}

impl WithSimd for Screen<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let q = &self.row.codes;
        let sx = self.row.scale;
        for ((c, &sc), dot) in self
            .codes
            .chunks_exact(self.stride)
            .zip(self.scales)
            .zip(self.dots.iter_mut())
        {
            let mut lanes = [0f32; BLOCK / 2];
            for (c, q) in c.chunks_exact(BLOCK).zip(q.chunks_exact(BLOCK)) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    // |pair| ≤ 2·32767² < 2³¹: no wrap happens; wrapping
                    // arithmetic only spares the overflow checks.
                    let pair = i32::from(c[2 * l])
                        .wrapping_mul(i32::from(q[2 * l]))
                        .wrapping_add(
                            i32::from(c[2 * l + 1]).wrapping_mul(i32::from(q[2 * l + 1])),
                        );
                    *lane += pair as f32;
                }
            }
            // One register of 16 lanes, or two of 8 added lane by lane
            // first: the same tree either way.
            let (regs, _) = S::as_simd_f32s(&lanes);
            let v = regs[1..].iter().fold(regs[0], |v, &r| simd.add_f32s(v, r));
            *dot = sx * sc * simd.reduce_sum_f32s(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{code, nearest_integer, Coded, MAX_CODE};

    /// What the bound relies on: the norm and the coding error that
    /// [`code`] reports are at least the exact ones, the codes are in
    /// range and within a step of `v_j / scale`, at every length around
    /// the lanes and at magnitudes down to the subnormals.
    #[test]
    fn code_reports_at_least_its_norm_and_error() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for dim in [1usize, 15, 16, 17, 50, 768] {
            for magnitude in [1e-41f32, 1e-36, 1e-30, 1e-3, 1.0, 1e4, 1e30] {
                let mut v: Vec<f32> = (0..dim).map(|_| next() * magnitude).collect();
                // A zero beside tiny values: `0·∞` if the inverse scale
                // were allowed to overflow.
                v[dim / 2] = 0.0;
                let mut out = vec![0i16; dim];
                let (scale, norm, error) = code(&v, &mut out);
                let (mut exact_norm, mut exact_error) = (0f64, 0f64);
                for (&x, &q) in v.iter().zip(&out) {
                    assert!(f32::from(q).abs() <= MAX_CODE, "d={dim} m={magnitude}");
                    if scale > 0.0 {
                        let off = f64::from(x) / f64::from(scale) - f64::from(q);
                        assert!(off.abs() <= 1.0, "d={dim} m={magnitude}: {x} coded {q}");
                    }
                    let e = f64::from(x) - f64::from(scale) * f64::from(q);
                    exact_norm += f64::from(x) * f64::from(x);
                    exact_error += e * e;
                }
                assert!(norm >= exact_norm.sqrt(), "d={dim} m={magnitude}");
                assert!(error.is_finite(), "d={dim} m={magnitude}");
                assert!(error >= exact_error.sqrt(), "d={dim} m={magnitude}");
            }
        }
    }

    /// Coding gives the same codes, scale, norm and error at every SIMD
    /// level (the bound, and so the candidates, do not depend on the CPU).
    #[test]
    fn code_is_the_same_at_every_level() {
        use super::super::{dispatch_at, SimdLevel};
        use super::Code;
        for dim in [1usize, 15, 16, 17, 50, 768] {
            let v: Vec<f32> = (0..dim)
                .map(|j| ((j * 7919 % 1000) as f32 - 500.0) * 1.37e-3)
                .collect();
            let run = |level| {
                let mut out = vec![0i16; dim];
                let (scale, norm, error) = dispatch_at(
                    level,
                    Code {
                        v: &v,
                        out: &mut out,
                    },
                );
                (out, scale.to_bits(), norm.to_bits(), error.to_bits())
            };
            let want = run(SimdLevel::Scalar);
            for level in SimdLevel::ALL {
                assert!(run(level) == want, "{level} d={dim}");
            }
        }
    }

    /// A row, or a centroid, with a coordinate that is not finite is not
    /// coded (the GEMM ranks such rows).
    #[test]
    fn what_is_not_finite_is_not_coded() {
        let centroids = [1.0f32, 2.0, -3.0, 0.5, 0.0, 4.0];
        let coded = Coded::new(&centroids, 3);
        assert!(coded.row(&[0.5, 0.5, 0.5]).is_some());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(coded.row(&[0.5, bad, 0.5]).is_none(), "{bad}");
            let mut with_bad = centroids;
            with_bad[4] = bad;
            let coded = Coded::new(&with_bad, 3);
            assert!(coded.row(&[0.5, 0.5, 0.5]).is_none(), "centroid {bad}");
        }
    }

    /// Ties go to the even neighbour; elsewhere the nearest integer, as
    /// `f32::round` gives it, over the whole range of codes.
    #[test]
    fn nearest_integer_rounds_to_nearest_ties_to_even() {
        for (v, want) in [
            (0.4f32, 0.0f32),
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-1.5, -2.0),
            (-2.5, -2.0),
            (0.499_999_97, 0.0),
            (32_766.5, 32_766.0),
            (-32_767.4, -32_767.0),
            (1e-30, 0.0),
        ] {
            assert!(nearest_integer(v) == want, "{v}");
        }
        let mut v = -32_767.9f32;
        while v <= 32_767.9 {
            if (v.fract().abs() - 0.5).abs() > 1e-3 {
                assert!(nearest_integer(v) == v.round(), "{v}");
            }
            v += 0.371;
        }
    }
}
