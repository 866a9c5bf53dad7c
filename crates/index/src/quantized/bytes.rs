//! A screen for the integer pass of many queries on one 8-bit block, in
//! bytes: each query's weights coded to `i8` and summed against the codes
//! with AVX-512 VNNI (`vpdpbusd`, 64 byte products an instruction, four
//! times the products of the float32 GEMM it replaces there).
//!
//! The screen decides nothing by itself. With `ŵ` the weights in bytes
//! (`w ≈ s·ŵ`, `|ŵ| ≤ 127`) and `δ_d = w_d − s·ŵ_d` (at most `Δ` in
//! magnitude), a row's screened dot product `base + Σ δ_d·128 + s·Σ ŵ_d·c_d`
//! is within `Δ·Σ|c_d − 128|` of `base + Σ w_d·c_d`, and the integer pass's
//! dot product within `s₁₆/2·Σ c_d` of the same (its weights round to half
//! a step `s₁₆`). A pair goes on to the integer pass when a lower bound of
//! its integer-pass distance built from both (and from every rounding, see
//! [`Coded8::lower`]) may enter the query's top-k; so a query gets the
//! same first-pass distances as without the screen, and as alone. On a CPU
//! without VNNI the GEMM screens instead, with the same results.
//!
//! Measured in a timing loop (a 768-d block of 160 rows, in cache, four
//! queries × four rows at a time, ns per row and query): `vpdpbusd` 4.9–6.0,
//! the 16-bit pass's `vpmaddwd` 11.3–12.5.

use pulp::{Simd, WithSimd};

use super::{max_level, MIN_LEVELS, U};
use crate::precision::{Codes, Precision};
use crate::Metric;

/// The largest weight in bytes.
const TOP: f64 = 127.0;

/// `1.5·2²³`: adding it rounds an `f32` below `2²²` in magnitude to an
/// integer.
const MAGIC: f32 = 12_582_912.0;

/// Bytes of codes a row needs for the screen: shorter rows are scored as
/// before (the screen's per-row work would not pay).
const MIN_ROW: usize = 256;

/// The most codes per row the screen takes: every sum stays in an `i32`
/// (`255·127·d < 2³¹`).
const MAX_ROW: usize = 60_000;

/// Whether this CPU and the SIMD level in use run the screen, for blocks
/// of `codes` at `dim` dimensions.
pub(crate) fn applies(codes: &Codes<'_>, dim: usize) -> bool {
    codes.precision == Precision::Tq8 && (MIN_ROW..=MAX_ROW).contains(&dim) && x86::available()
}

/// One query coded in bytes against one block's range. Not `Debug`: its
/// weights are the query's, scaled.
#[derive(Default)]
pub(crate) struct Coded8 {
    /// The weights in bytes, zero-padded to whole groups of 64.
    w: Vec<i8>,
    /// `w ≈ scale·ŵ`.
    scale: f64,
    /// `base + Σ δ_d·128`: the screened dot product is `shift + scale·Σ ŵ·c`.
    shift: f64,
    /// `Δ = max |δ_d|`, rounded up.
    delta: f64,
    /// Half the integer pass's step, rounded up.
    half_step: f64,
    /// What the `f64` arithmetic of both dot products may round by.
    tiny: f64,
}

impl Coded8 {
    /// Codes `q` against the range of `codes` (8-bit, `dim` coordinates);
    /// `false` whenever the integer pass would refuse the query (not
    /// finite, or rows too long for [`MIN_LEVELS`]), and also when a weight
    /// overflows in `f32` (the integer pass, in `f64`, may take it): such a
    /// query is left to the other paths.
    pub(crate) fn code(&mut self, q: &[f32], codes: &Codes<'_>, dim: usize) -> bool {
        let top = max_level(codes.precision.levels(), dim);
        if top < MIN_LEVELS || codes.step.len() != dim || codes.lo.len() != dim || q.len() != dim {
            return false;
        }
        self.w.clear();
        self.w.resize(dim.div_ceil(64) * 64, 0);
        let Some((max, delta, shift, reach, base, mag)) = vecseal_kmeans::kernel::dispatch(Code {
            q,
            lo: codes.lo,
            step: codes.step,
            w: &mut self.w[..dim],
        }) else {
            return false;
        };
        // Against the exact weights `w_d = q_d·step_d` (the integer pass's),
        // these `f32` ones are off by 2⁻²⁴ of each, and each `δ_d` by two
        // roundings of at most 2⁻²⁴·max; a sum over `dim` terms in `f32`
        // lanes rounds by at most `dim·2⁻²⁴` of its terms' magnitudes, so
        // `base` (the integer pass's sums `q·lo` in `f64`) and `Σ δ` are off
        // by at most that.
        let (max, delta, shift, reach, base, mag) = (
            f64::from(max),
            f64::from(delta),
            f64::from(shift),
            f64::from(reach),
            f64::from(base),
            f64::from(mag),
        );
        let ulp = 1.0 / 16_777_216.0;
        let n = dim as f64 + 2.0;
        let delta = (delta + 4.0 * ulp * max) * (1.0 + 1e-6);
        self.scale = max / TOP;
        self.shift = base + 128.0 * shift;
        self.delta = delta;
        // The integer pass's `scale = max / top` of the exact weights (at
        // most 2⁻²⁴ above these); they round to within half a step.
        self.half_step = max * (1.0 + 4.0 * ulp) / f64::from(top) / 2.0 * (1.0 + 1e-9);
        let sums = 2.0 * n * ulp * (mag + 128.0 * n * delta);
        self.tiny = 2.0 * (255.0 * ulp * reach * (1.0 + 4.0 * ulp) + sums)
            + 1e-12 * (255.0 * reach + mag + self.shift.abs())
            + f64::from(f32::MIN_POSITIVE);
        true
    }

    /// The weights in groups of 64 for the kernel.
    fn groups(&self) -> &[[i8; 64]] {
        self.w.as_chunks::<64>().0
    }

    /// `Σ ŵ·c` over the codes of `row` from `from` on, one at a time (what
    /// the kernel leaves).
    pub(crate) fn sum_from(&self, row: &[u8], from: usize) -> i32 {
        row.iter()
            .zip(&self.w)
            .skip(from)
            .fold(0i32, |s, (&c, &w)| {
                s.wrapping_add(i32::from(c) * i32::from(w))
            })
    }

    /// Lower bounds, in `metric`'s units, of the integer pass's distances
    /// to the rows whose screened sums are `sums`, into `out`; `qq` is the
    /// query's canonical squared norm (Euclidean metrics), `rows` the
    /// block's [`Rows`].
    ///
    /// The integer pass's dot product `D` (in `f64`, then rounded to `f32`)
    /// is within `E = Δ·spread + s₁₆/2·Σc` (plus the `f64` roundings) of the
    /// screened `d`, and its `f32` rounding adds `u·|D|`. Its distance is
    /// computed in `f32` from `D`: `(qq + nn) − 2D` rounds by at most
    /// `4u·(qq + nn + 2|D|)`, the square root and `1 − D` by `u` relative;
    /// every term is doubled here, and the result is taken down by `2⁻²²`
    /// of itself before it is rounded to `f32`.
    pub(crate) fn lower(
        &self,
        metric: Metric,
        sums: &[i32],
        qq: f32,
        rows: &Rows,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        out.resize(sums.len(), 0.0);
        vecseal_kmeans::kernel::dispatch(Lower {
            c: self,
            metric,
            sums,
            qq: f64::from(qq),
            rows,
            out,
        });
    }
}

/// The coding of one query's weights in bytes, in the kernel of the SIMD
/// level in use, in `f32` lanes ([`Coded8::code`] widens the bound by
/// what that rounds).
struct Code<'a> {
    q: &'a [f32],
    lo: &'a [f32],
    step: &'a [f32],
    w: &'a mut [i8],
}

/// What [`Code`] found, each of the `f32` weights `w_d = q_d·step_d`: the
/// largest `|w_d|`, `Δ`, `Σ δ_d`, `Σ|w_d|`, and `Σ q_d·lo_d` with
/// `Σ|q_d·lo_d|`. `None` if a weight or a product with `lo` is not finite.
type Coding = Option<(f32, f32, f32, f32, f32, f32)>;

impl WithSimd for Code<'_> {
    type Output = Coding;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Coding {
        const L: usize = 16;
        let Code { q, lo, step, w } = self;
        let n = q.len().min(lo.len()).min(step.len()).min(w.len());
        let body = n / L * L;
        // The largest weight, and `q·lo` and its magnitude, in lanes. A
        // weight or product that is not finite makes `max` or `base` so (a
        // NaN weight is a NaN coordinate times a finite step, which makes
        // its `q·lo` NaN or infinite).
        let (mut most, mut base, mut mag) = ([0f32; L], [0f32; L], [0f32; L]);
        for ((q, lo), s) in q[..body]
            .chunks_exact(L)
            .zip(lo[..body].chunks_exact(L))
            .zip(step[..body].chunks_exact(L))
        {
            for l in 0..L {
                let (x, b) = (q[l] * s[l], q[l] * lo[l]);
                most[l] = if x.abs() > most[l] { x.abs() } else { most[l] };
                base[l] += b;
                mag[l] += b.abs();
            }
        }
        for (l, ((&q, &lo), &s)) in q[body..n]
            .iter()
            .zip(&lo[body..n])
            .zip(&step[body..n])
            .enumerate()
        {
            let (x, b) = (q * s, q * lo);
            most[l] = if x.abs() > most[l] { x.abs() } else { most[l] };
            base[l] += b;
            mag[l] += b.abs();
        }
        let (mut max, mut b, mut m) = (0f32, 0f32, 0f32);
        for l in 0..L {
            max = if most[l] > max { most[l] } else { max };
            b += base[l];
            m += mag[l];
        }
        if !max.is_finite() || !b.is_finite() || !m.is_finite() {
            return None;
        }
        let top = TOP as f32;
        let scale = max / top;
        let inv = if max > 0.0 { top / max } else { 0.0 };
        // The codes first (the low byte of `x·inv + 1.5·2²³`, rounded to
        // nearest, is the code in two's complement: |x·inv| ≤ 127), then
        // what their rounding left, in lanes: a loop that did both kept
        // its sums in memory.
        let code = |x: f32| ((x * inv).max(-top).min(top) + MAGIC).to_bits() as u8 as i8;
        for ((o, &q), &s) in w[..n].iter_mut().zip(&q[..n]).zip(&step[..n]) {
            *o = code(q * s);
        }
        let (mut delta, mut shift, mut reach) = ([0f32; L], [0f32; L], [0f32; L]);
        let left = |x: f32, k: i8| x - scale * f32::from(k);
        for ((q, s), k) in q[..body]
            .chunks_exact(L)
            .zip(step[..body].chunks_exact(L))
            .zip(w[..body].chunks_exact(L))
        {
            for l in 0..L {
                let x = q[l] * s[l];
                let d = left(x, k[l]);
                delta[l] = delta[l].max(d.abs());
                shift[l] += d;
                reach[l] += x.abs();
            }
        }
        for (l, ((&q, &s), &k)) in q[body..n]
            .iter()
            .zip(&step[body..n])
            .zip(&w[body..n])
            .enumerate()
        {
            let x = q * s;
            let d = left(x, k);
            delta[l] = delta[l].max(d.abs());
            shift[l] += d;
            reach[l] += x.abs();
        }
        let (mut d, mut sh, mut r) = (0f32, 0f32, 0f32);
        for l in 0..L {
            d = if delta[l] > d { delta[l] } else { d };
            sh += shift[l];
            r += reach[l];
        }
        Some((max, d, sh, r, b, m))
    }
}

/// The rows of one block as the bounds need them: each row's code sum and
/// `Σ|c − 128|`, and the decoded squared norm (Euclidean metrics, else 0);
/// and as the kernel needs them: the last rows (fewer than four)
/// zero-padded to four. Made once per block, for every group of queries
/// that scans it. Not `Debug`: sums of an item's codes.
#[derive(Default)]
pub(crate) struct Rows {
    sums: Vec<f64>,
    spreads: Vec<f64>,
    norms: Vec<f64>,
    pad: Vec<u8>,
}

impl Rows {
    /// The rows of `codes` (`dim` bytes each), with the decoded squared
    /// `norms` (empty: zeros).
    pub(crate) fn fill(&mut self, codes: &[u8], dim: usize, norms: &[f32]) {
        let n = codes.len() / dim.max(1);
        self.sums.clear();
        self.spreads.clear();
        for row in codes.chunks_exact(dim.max(1)) {
            let (s, a) = row.iter().fold((0u32, 0u32), |(s, a), &c| {
                (s + u32::from(c), a + u32::from(c.abs_diff(128)))
            });
            self.sums.push(f64::from(s));
            self.spreads.push(f64::from(a));
        }
        self.norms.clear();
        self.norms
            .extend((0..n).map(|r| f64::from(norms.get(r).copied().unwrap_or(0.0))));
        self.pad.clear();
        self.pad.extend_from_slice(&codes[n / 4 * 4 * dim..n * dim]);
        self.pad.resize(4 * dim * (n.div_ceil(4) - n / 4), 0);
    }
}

/// [`Coded8::lower`] in the kernel of the SIMD level in use.
struct Lower<'a> {
    c: &'a Coded8,
    metric: Metric,
    sums: &'a [i32],
    qq: f64,
    rows: &'a Rows,
    out: &'a mut [f32],
}

impl WithSimd for Lower<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Lower {
            c,
            metric,
            sums,
            qq,
            rows,
            out,
        } = self;
        let (shift, scale, delta, half, tiny) = (c.shift, c.scale, c.delta, c.half_step, c.tiny);
        let euclidean = metric.is_euclidean();
        for ((((o, &sum), &cs), &sp), &nn) in out
            .iter_mut()
            .zip(sums)
            .zip(&rows.sums)
            .zip(&rows.spreads)
            .zip(&rows.norms)
        {
            let d = shift + scale * f64::from(sum);
            let e = delta * sp + half * cs + tiny;
            let e = 2.0 * (e + U * (d.abs() + e));
            let far = d.abs() + e;
            let lb = if euclidean {
                (qq + nn) - 2.0 * (d + e) - 16.0 * U * (qq + nn + 2.0 * far)
            } else if metric == Metric::Cosine {
                (1.0 - d - e) - 8.0 * U * (1.0 + far)
            } else {
                -d - e
            };
            // Rounding to nearest moves by at most 2⁻²⁴ of the value.
            *o = (lb - lb.abs() * (1.0 / 4_194_304.0)) as f32;
        }
        if metric == Metric::Euclidean {
            for o in out.iter_mut() {
                *o = (o.max(0.0).sqrt() * (1.0 - 8.0 * U as f32)).max(0.0);
            }
        }
    }
}

/// `Σ ŵ·c` of each query of `coded` with every row of `codes` (`dim`
/// bytes each; `rows` filled from them) into `sums` (query-major: each
/// query's sums in row order); `false` when this CPU lacks the kernel.
pub(crate) fn sums(
    coded: &[Coded8],
    codes: &[u8],
    dim: usize,
    rows: &Rows,
    sums: &mut Vec<i32>,
) -> bool {
    let q = coded.len();
    let n = codes.len() / dim.max(1);
    debug_assert_eq!(rows.sums.len(), n, "`rows` filled from other codes");
    // The last rows (fewer than four) go through the kernel zero-padded
    // to four (`rows.pad`); their sums are written past `n` and dropped.
    let quads = n.div_ceil(4);
    let pad = &rows.pad;
    let mut all = std::mem::take(sums);
    all.clear();
    all.resize(4 * quads * q, 0);
    let head = &codes[..n / 4 * 4 * dim];
    let done = match q {
        4 => x86::run::<4>(coded, head, pad, dim, 4 * quads, &mut all),
        3 => x86::run::<3>(coded, head, pad, dim, 4 * quads, &mut all),
        2 => x86::run::<2>(coded, head, pad, dim, 4 * quads, &mut all),
        1 => x86::run::<1>(coded, head, pad, dim, 4 * quads, &mut all),
        _ => false,
    };
    if !done {
        return false;
    }
    // Query-major with `4·quads` rows each: keep the first `n`.
    for j in 0..q {
        all.copy_within(j * 4 * quads..j * 4 * quads + n, j * n);
    }
    all.truncate(n * q);
    // The codes past the last group of 64 of every row, one at a time.
    let body = dim / 64 * 64;
    if body < dim {
        for (r, row) in codes.chunks_exact(dim).enumerate() {
            for (j, c) in coded.iter().enumerate() {
                let s = &mut all[j * n + r];
                *s = s.wrapping_add(c.sum_from(row, body));
            }
        }
    }
    *sums = all;
    true
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m512i, _mm512_dpbusd_epi32, _mm512_reduce_add_epi32, _mm512_setzero_si512,
    };

    use vecseal_kmeans::kernel::SimdLevel;

    use super::Coded8;

    /// Whether the level in use is AVX-512 and the CPU has VNNI.
    pub(super) fn available() -> bool {
        SimdLevel::current() >= SimdLevel::V4
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    /// [`kernel`] when [`available`]: `false` otherwise.
    #[allow(unsafe_code)]
    pub(super) fn run<const Q: usize>(
        coded: &[Coded8],
        codes: &[u8],
        pad: &[u8],
        dim: usize,
        n: usize,
        sums: &mut [i32],
    ) -> bool {
        if !available() || coded.len() != Q {
            return false;
        }
        let w: [&[[i8; 64]]; Q] = std::array::from_fn(|j| coded[j].groups());
        // SAFETY: `kernel` needs AVX-512F, AVX-512BW and AVX-512 VNNI, and
        // `available` has just checked that this CPU has all three. It
        // reads and writes only through the slices it is given.
        unsafe {
            kernel::<Q>(codes, dim, w, n, 0, sums);
            kernel::<Q>(pad, dim, w, n, codes.len() / dim.max(1), sums);
        }
        true
    }

    /// The sums of four rows at a time with `Q` queries, over the whole
    /// groups of 64 codes of each row (the caller adds the rest): each
    /// row's 64 bytes loaded once for the queries, each query's 64 weights
    /// once for the four rows, 16 accumulators at most.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn kernel<const Q: usize>(
        codes: &[u8],
        dim: usize,
        w: [&[[i8; 64]]; Q],
        n: usize,
        first: usize,
        sums: &mut [i32],
    ) {
        let m = dim / 64;
        for (g, quad) in codes.chunks_exact(4 * dim).enumerate() {
            let at = first + 4 * g;
            let rows: [&[[u8; 64]]; 4] =
                std::array::from_fn(|t| quad[t * dim..t * dim + m * 64].as_chunks::<64>().0);
            let mut acc = [[_mm512_setzero_si512(); Q]; 4];
            for i in 0..m {
                let c = [
                    bytemuck::cast::<[u8; 64], __m512i>(rows[0][i]),
                    bytemuck::cast::<[u8; 64], __m512i>(rows[1][i]),
                    bytemuck::cast::<[u8; 64], __m512i>(rows[2][i]),
                    bytemuck::cast::<[u8; 64], __m512i>(rows[3][i]),
                ];
                for j in 0..Q {
                    let wj = bytemuck::cast::<[i8; 64], __m512i>(w[j][i]);
                    for t in 0..4 {
                        acc[t][j] = _mm512_dpbusd_epi32(acc[t][j], c[t], wj);
                    }
                }
            }
            for t in 0..4 {
                for j in 0..Q {
                    sums[j * n + at + t] = _mm512_reduce_add_epi32(acc[t][j]);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::Coded8;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn run<const Q: usize>(
        _: &[Coded8],
        _: &[u8],
        _: &[u8],
        _: usize,
        _: usize,
        _: &mut [i32],
    ) -> bool {
        false
    }
}
