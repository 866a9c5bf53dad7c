//! The first pass over 8- and 4-bit codes in integer arithmetic, under
//! every metric.
//!
//! A block's vectors decode as `x̂ = lo + step·c`, so a query's dot product
//! with one is `q·lo + Σ q_d·step_d·c_d`. The first term is one number per
//! query and block; the second is a dot product of the codes with the
//! weights `w_d = q_d·step_d`. The weights are coded to integers with one
//! scale (`w_d ≈ s·k_d`, `|k_d| ≤ K`) and the sum `Σ k_d·c_d` is taken in
//! `i32`, exactly: `K` is chosen so that no sum over a row can leave an
//! `i32` (`L·K·len < 2³¹`, `L` the highest code). No block is decoded, and
//! the sum is the same on every CPU in any order, so plain loops that the
//! compiler vectorises give every SIMD level the same bits. A row is one
//! reduction `sum += c·k` (the compiler turns it into `vpmaddwd` pairs;
//! hand-made lanes of pairs compiled to shuffles and ran 1.5–3× slower).
//!
//! The coded weights lose at most `s/2` each (`K` is at least
//! [`MIN_LEVELS`], about 13 bits at 768 dimensions), far below the codes'
//! own error of half a step; the exact rerank corrects both. The
//! Euclidean metrics take `(‖q‖² + ‖x̂‖²) − 2·q·x̂` with the canonical
//! squared norms of the query and of each decoded vector (kept in the
//! block, or computed once per block read and kept with a cached block: see
//! [`Block::decoded_norms`](crate::codec::Block::decoded_norms)). Float16,
//! and weights this coding refuses (not finite, or dimensions so many that
//! `K` would fall below [`MIN_LEVELS`]), decode the block and score it in
//! floating point instead.
//!
//! Many queries on one block go through a GEMM over its decoded vectors
//! first (in the `scan` module); [`Slack`] bounds how far the integer pass can be
//! below the decoded distance, so the GEMM's lower bounds widened by it
//! drop only pairs that the integer pass would not have placed either. On
//! CPUs with AVX-512 VNNI, 8-bit rows of 256 codes or more are screened in
//! bytes instead (`bytes`), with lower bounds of the integer pass's
//! distances of their own.

use pulp::{Simd, WithSimd};
use vecseal_kmeans::kernel::SimdLevel;

use crate::distance::finish;
use crate::precision::{Codes, Precision};
use crate::Metric;

/// The fewest levels of coded weights (`K`) the integer pass accepts.
pub(crate) const MIN_LEVELS: i32 = 1024;

/// Whether the integer pass scores blocks of precision `p`: 8- and 4-bit
/// blocks, under every metric (the Euclidean ones with the decoded
/// vectors' squared norms, see [`distance`]).
pub(crate) fn applies(p: Precision) -> bool {
    matches!(p, Precision::Tq8 | Precision::Tq4)
}

/// The integer pass's distance under `metric` from its dot product `dot`
/// with a vector: for the Euclidean metrics `(qq + nn) − 2·dot` (at least
/// 0), with the query's canonical `‖q‖²` (`qq`) and the decoded vector's
/// (`nn`, [`Block::decoded_norms`](crate::codec::Block::decoded_norms)).
#[inline]
pub(crate) fn distance(metric: Metric, dot: f32, qq: f32, nn: f32) -> f32 {
    if metric.is_euclidean() {
        finish(metric, ((qq + nn) - 2.0 * dot).max(0.0))
    } else {
        finish(metric, dot)
    }
}

/// Codes per row as the kernel reads them: `dim` (8-bit), or both nibbles
/// of every byte of a 4-bit row (weights `[even dimensions | odd
/// dimensions]`, the last odd one 0 when `dim` is odd).
fn row_len(p: Precision, dim: usize) -> usize {
    match p {
        Precision::Tq4 => 2 * dim.div_ceil(2),
        _ => dim,
    }
}

/// The largest coded weight for rows of `len` codes up to `levels`: every
/// row sum stays below 2³¹ in magnitude.
fn max_level(levels: u32, len: usize) -> i32 {
    let bound = i64::from(i32::MAX) / (i64::from(levels.max(1)) * len.max(1) as i64);
    bound.min(i64::from(i16::MAX)) as i32
}

/// One query coded against one block's range: `q·x̂ ≈ base + scale·Σ k·c`.
/// Not `Debug`: its weights are the query's, scaled.
#[derive(Default)]
pub(crate) struct CodedQuery {
    /// Coded weights in the kernel's order (see [`row_len`]).
    k: Vec<i16>,
    /// Scratch: the weights `q·step`.
    w: Vec<f64>,
    scale: f64,
    base: f64,
}

impl CodedQuery {
    /// Codes query `q` against the range of `codes` (8- or 4-bit); `false`
    /// (and nothing usable) when the weights are not finite or the rows
    /// too long for [`MIN_LEVELS`] levels.
    pub(crate) fn code(&mut self, q: &[f32], codes: &Codes<'_>, dim: usize) -> bool {
        self.code_at(SimdLevel::current(), q, codes, dim)
    }

    /// [`CodedQuery::code`] at `level` (or the best available below it).
    pub(crate) fn code_at(
        &mut self,
        level: SimdLevel,
        q: &[f32],
        codes: &Codes<'_>,
        dim: usize,
    ) -> bool {
        let p = codes.precision;
        let len = row_len(p, dim);
        let top = max_level(p.levels(), len);
        if top < MIN_LEVELS || codes.step.len() != dim || codes.lo.len() != dim || q.len() != dim {
            return false;
        }
        vecseal_kmeans::kernel::dispatch_at(
            level,
            Code {
                q,
                codes,
                dim,
                top,
                into: self,
            },
        )
    }

    /// The approximate dot products of this query with every vector of
    /// `codes` (coded by [`CodedQuery::code`] against the same range) into
    /// `out`.
    pub(crate) fn dots(&self, codes: &Codes<'_>, dim: usize, out: &mut Vec<f32>) {
        self.dots_at(SimdLevel::current(), codes, dim, out);
    }

    /// [`CodedQuery::dots`] at `level` (or the best available below it).
    pub(crate) fn dots_at(
        &self,
        level: SimdLevel,
        codes: &Codes<'_>,
        dim: usize,
        out: &mut Vec<f32>,
    ) {
        let cb = codes.precision.code_bytes(dim);
        out.clear();
        out.resize(codes.bytes.len() / cb.max(1), 0.0);
        self.dots_into(level, codes, cb, out);
    }

    /// [`CodedQuery::dots_at`] into `out` (one value per row of `cb`
    /// bytes).
    fn dots_into(&self, level: SimdLevel, codes: &Codes<'_>, cb: usize, out: &mut [f32]) {
        vecseal_kmeans::kernel::dispatch_at(
            level,
            Sums {
                precision: codes.precision,
                codes: codes.bytes,
                cb,
                k: &self.k,
                out,
                scale: self.scale,
                base: self.base,
            },
        );
    }

    /// The approximate dot product from a row's sum `Σ k·c`.
    #[inline(always)]
    fn finish(&self, sum: i32) -> f32 {
        (self.base + self.scale * f64::from(sum)) as f32
    }
}

/// Coding a query against a block's range (in the kernel of the SIMD
/// level in use: element-wise f64 operations and sums in [`LANES`] fixed
/// lanes, so every level computes the same bits).
struct Code<'a, 'b> {
    q: &'a [f32],
    codes: &'a Codes<'a>,
    dim: usize,
    top: i32,
    into: &'b mut CodedQuery,
}

impl WithSimd for Code<'_, '_> {
    type Output = bool;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> bool {
        let Code {
            q,
            codes,
            dim,
            top,
            into,
        } = self;
        // The base `q·lo`: products exact in f64, summed in 16 lanes (each
        // lane's sum is a chain of dependent additions: two vectors of them
        // at AVX-512, four at AVX2, keep the adder busy; 8 lanes took
        // twice as long at AVX2).
        let base = lane_sum(q, codes.lo, |q, lo| q * lo);
        // Plain loops over presized buffers (iterator adapters would be
        // compiled outside this level's features, `round` a libm call).
        let w = &mut into.w;
        w.resize(dim, 0.0);
        for ((w, &x), &s) in w.iter_mut().zip(q).zip(codes.step) {
            *w = f64::from(x) * f64::from(s);
        }
        // The largest magnitude, in 8 lanes (one running maximum was a chain
        // of dependent compares; a maximum is exact in any order).
        let mut most = [0f64; 8];
        let mut chunks = w.chunks_exact(8);
        for c in &mut chunks {
            for (m, &x) in most.iter_mut().zip(c) {
                let a = x.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        let mut max = 0f64;
        for &a in most.iter().chain(chunks.remainder()) {
            let a = a.abs();
            max = if a > max { a } else { max };
        }
        if !base.is_finite() || !max.is_finite() {
            return false;
        }
        let top = f64::from(top);
        let scale = max / top;
        let inv = if max > 0.0 { top / max } else { 0.0 };
        let k = &mut into.k;
        k.clear();
        k.resize(row_len(codes.precision, dim), 0);
        if codes.precision == Precision::Tq4 {
            let (even, odd) = k.split_at_mut(dim.div_ceil(2));
            // Pairs of dimensions (`step_by(2)` ran one element at a time).
            for ((e, o), x) in even.iter_mut().zip(odd.iter_mut()).zip(w.chunks_exact(2)) {
                *e = level(x[0], inv, top);
                *o = level(x[1], inv, top);
            }
            if dim % 2 == 1 {
                even[dim / 2] = level(w[dim - 1], inv, top);
            }
        } else {
            for (k, &x) in k.iter_mut().zip(w.iter()) {
                *k = level(x, inv, top);
            }
        }
        (into.scale, into.base) = (scale, base);
        true
    }
}

/// The lanes of [`Code`]'s sums: dimension `d` is added to lane `d mod
/// LANES`, then the lanes in order, then the dimensions past the last
/// whole group of lanes.
const LANES: usize = 16;

/// `Σ f(q_d, x_d)` in f64, in [`LANES`] lanes (the same bits at every
/// SIMD level: the compiler may not reorder float additions).
#[inline(always)]
fn lane_sum(q: &[f32], x: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let body = q.len().min(x.len()) / LANES * LANES;
    let mut lanes = [0f64; LANES];
    for (q, x) in q[..body]
        .chunks_exact(LANES)
        .zip(x[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            lanes[l] += f(f64::from(q[l]), f64::from(x[l]));
        }
    }
    let mut sum = 0f64;
    for lane in lanes {
        sum += lane;
    }
    for (&q, &x) in q[body..].iter().zip(&x[body..]) {
        sum += f(f64::from(q), f64::from(x));
    }
    sum
}

/// `Σ|q|·(|lo| + L·step)` for query `q` and the range of `codes` (8- or
/// 4-bit): at least `Σ|q·x̂|` for every vector of the block. The GEMM
/// screen's slack needs it ([`Slack::linear`], [`Slack::squared`]); the
/// integer pass alone does not, so [`CodedQuery::code`] leaves it out.
pub(crate) fn reach(q: &[f32], codes: &Codes<'_>) -> f64 {
    vecseal_kmeans::kernel::dispatch(Reach { q, codes })
}

/// [`reach`] in the kernel of the SIMD level in use.
struct Reach<'a> {
    q: &'a [f32],
    codes: &'a Codes<'a>,
}

impl WithSimd for Reach<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> f64 {
        let Reach { q, codes } = self;
        let levels = f64::from(codes.precision.levels());
        let n = q.len().min(codes.lo.len()).min(codes.step.len());
        let body = n / LANES * LANES;
        let span = |q: f32, lo: f32, step: f32| {
            f64::from(q).abs() * (f64::from(lo).abs() + levels * f64::from(step))
        };
        let mut lanes = [0f64; LANES];
        for ((q, lo), step) in q[..body]
            .chunks_exact(LANES)
            .zip(codes.lo[..body].chunks_exact(LANES))
            .zip(codes.step[..body].chunks_exact(LANES))
        {
            for l in 0..LANES {
                lanes[l] += span(q[l], lo[l], step[l]);
            }
        }
        let mut sum = 0f64;
        for lane in lanes {
            sum += lane;
        }
        for ((&q, &lo), &step) in q[body..n]
            .iter()
            .zip(&codes.lo[body..n])
            .zip(&codes.step[body..n])
        {
            sum += span(q, lo, step);
        }
        sum
    }
}

/// `x·inv` clamped to `±top` (at most `i16::MAX`) and rounded to the
/// nearest integer, ties to even, by adding 1.5·2⁵²: the sum's low
/// mantissa bits are then that integer in two's complement. Plain
/// arithmetic and a bit cast, so every level vectorises it;
/// `round_ties_even` and a cast from `f64` ran one element at a time.
/// (`x` is finite: the query is, since its `base` is, and so is every
/// step of a block's range.)
#[inline(always)]
fn level(x: f64, inv: f64, top: f64) -> i16 {
    const ROUND: f64 = 6_755_399_441_055_744.0;
    ((x * inv).clamp(-top, top) + ROUND).to_bits() as i16
}

/// The kernel: `base + scale·Σ k·c` per row.
struct Sums<'a> {
    precision: Precision,
    codes: &'a [u8],
    /// Bytes per row.
    cb: usize,
    k: &'a [i16],
    out: &'a mut [f32],
    scale: f64,
    base: f64,
}

impl WithSimd for Sums<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Sums {
            precision,
            codes,
            cb,
            k,
            out,
            scale,
            base,
        } = self;
        let finish = |sum: i32| (base + scale * f64::from(sum)) as f32;
        if precision == Precision::Tq4 {
            let (even, odd) = k.split_at(cb);
            for (row, o) in codes.chunks_exact(cb).zip(out.iter_mut()) {
                *o = finish(nibble_sum(row, even, odd));
            }
        } else {
            for (row, o) in codes.chunks_exact(cb).zip(out.iter_mut()) {
                *o = finish(row_sum(row, k));
            }
        }
    }
}

/// `Σ c·k` over a row, exact in `i32` ([`max_level`] keeps every partial
/// sum in range; wrapping arithmetic only spares the overflow checks).
#[inline(always)]
fn row_sum(row: &[u8], k: &[i16]) -> i32 {
    let mut sum = 0i32;
    for (&c, &k) in row.iter().zip(k) {
        sum = sum.wrapping_add(i32::from(c).wrapping_mul(i32::from(k)));
    }
    sum
}

/// [`row_sum`] of a packed 4-bit row (the dimensions `2i` and `2i + 1` in
/// the low and high nibble of byte `i`) with the weights of the even and
/// the odd dimensions, each nibble taken where it lies: no unpacked copy.
#[inline(always)]
fn nibble_sum(row: &[u8], even: &[i16], odd: &[i16]) -> i32 {
    let mut sum = 0i32;
    for ((&c, &e), &o) in row.iter().zip(even).zip(odd) {
        sum = sum
            .wrapping_add(i32::from(c & 15).wrapping_mul(i32::from(e)))
            .wrapping_add(i32::from(c >> 4).wrapping_mul(i32::from(o)));
    }
    sum
}

/// How far the integer pass may be from the floating-point distance of a
/// query to a decoded vector, for the GEMM screen of many queries: the
/// screen's lower bounds on the decoded distances, minus [`Slack::linear`],
/// are lower bounds on the integer pass's distances, so a pair screened
/// out could not have entered a top-k.
pub(crate) struct Slack {
    /// The largest sum of a vector's codes.
    max_sum: u32,
    /// The largest step, and `Σ(|lo| + L·step)` over dimensions.
    max_step: f64,
    span: f64,
    /// The largest coded weight (`K`).
    top: f64,
    /// `γ + 4u`: the relative rounding of decoding and of a float sum of
    /// `dim` products (`γ = n·u/(1 − n·u)`, `n = dim + 4`).
    rounding: f64,
}

/// The unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 / 2.0;

impl Slack {
    /// The terms of `codes` (8- or 4-bit).
    pub(crate) fn new(codes: &Codes<'_>, dim: usize) -> Self {
        let p = codes.precision;
        let max_sum = codes
            .bytes
            .chunks_exact(p.code_bytes(dim).max(1))
            .map(|row| match p {
                Precision::Tq4 => row
                    .iter()
                    .map(|&c| u32::from(c & 15) + u32::from(c >> 4))
                    .sum(),
                _ => row.iter().map(|&c| u32::from(c)).sum(),
            })
            .max()
            .unwrap_or(0);
        let levels = f64::from(p.levels());
        let n = dim as f64 + 4.0;
        Self {
            max_sum,
            max_step: codes.step.iter().fold(0f64, |m, &s| m.max(f64::from(s))),
            span: codes
                .lo
                .iter()
                .zip(codes.step)
                .map(|(&l, &s)| f64::from(l).abs() + levels * f64::from(s))
                .sum(),
            top: f64::from(max_level(p.levels(), row_len(p, dim)).max(1)),
            rounding: n * U / (1.0 - n * U) + 4.0 * U,
        }
    }

    /// The slack for the query `coded` (whose [`reach`] against the block
    /// is `reach`) and any vector of the block, given `v`, the decoded
    /// distance or a lower bound of it, as `c0 + c1·|v|` (a few f32
    /// operations per vector). It covers the coded weights (at
    /// most `s/2` per unit of code, over the largest code sum), the
    /// roundings of decoding and of a float sum (`(γ + 4u)·Σ|q|·(|lo| +
    /// L·step)`), and those of both distances from their dot products
    /// (`8u·(|v| + 2)`); then doubled, as the terms are computed with
    /// roundings of their own.
    pub(crate) fn linear(&self, coded: &CodedQuery, reach: f64) -> (f32, f32) {
        let weights = coded.scale / 2.0 * f64::from(self.max_sum);
        let floats = self.rounding * reach;
        let c0 = 2.0 * (weights + floats + 16.0 * U) + f64::from(f32::MIN_POSITIVE);
        ((c0 * (1.0 + 1e-6)) as f32, (16.0 * U * (1.0 + 1e-6)) as f32)
    }

    /// Whether no vector of the block can enter a top-k whose bound is
    /// `bound`, for a query with largest coordinate magnitude `q_inf` and
    /// the screen's lower bounds `row`, before the query is coded: the
    /// least bound minus the slack of the largest code sum, weights and
    /// reach any such query can have (`s ≤ ‖q‖∞·max step/K`,
    /// `Σ|q|·(|lo| + L·step) ≤ ‖q‖∞·span`) is still above it.
    pub(crate) fn rules_out(&self, q_inf: f64, row: &[f32], bound: f32) -> bool {
        // NaN (never ruled out) if any bound is not finite.
        let least = least_finite(row);
        let scale = q_inf * self.max_step / self.top * (1.0 + 8.0 * U);
        let weights = scale / 2.0 * f64::from(self.max_sum);
        let floats = self.rounding * q_inf * self.span * (1.0 + 8.0 * U);
        // `v − slack(v)` grows with `v`: the least `v` gives the least.
        least - Self::total(weights, floats, least) > bound
    }

    /// The slack of the integer pass's squared Euclidean distances for the
    /// query `coded` (its [`reach`] `reach`) with canonical `‖q‖² = qq`,
    /// as `c0 + c1·nn` for a vector whose decoded squared norm is `nn`;
    /// [`in_units`] turns it into Euclidean units. With `x̃` the decoded vector and `E` the dot
    /// product's error (the coded weights' `s/2·Σc`, and the roundings of
    /// decoding and of a float sum, `(γ + 4u)·Σ|q|·(|lo| + L·step)`, taken
    /// twice: from the float dot product and from the exact one), the
    /// integer distance `S = (qq + nn) − 2·dot` is within `2E` of the exact
    /// `‖q − x̃‖²` but for the roundings of `qq`, `nn` and the combination
    /// (`γ·(‖q‖² + ‖x̃‖²)` and `4u·(qq + nn)`), and the canonical float
    /// distance within `γ·2·(‖q‖² + ‖x̃‖²)` of it: `2E + (3γ + 8u)·(qq +
    /// nn)` covers both, then doubled, as the terms are computed with
    /// roundings of their own.
    pub(crate) fn squared(&self, coded: &CodedQuery, reach: f64, qq: f32) -> (f32, f32) {
        let dot = coded.scale / 2.0 * f64::from(self.max_sum) + 2.0 * self.rounding * reach;
        self.squared_terms(dot, qq)
    }

    fn squared_terms(&self, dot: f64, qq: f32) -> (f32, f32) {
        let k = 3.0 * self.rounding + 8.0 * U;
        let c0 = 2.0 * (2.0 * dot + k * f64::from(qq)) + f64::from(f32::MIN_POSITIVE);
        let c1 = 2.0 * k;
        ((c0 * (1.0 + 1e-6)) as f32, (c1 * (1.0 + 1e-6)) as f32)
    }

    /// [`Slack::rules_out`] for the Euclidean metrics: `qq` is the query's
    /// canonical `‖q‖²`, `max_nn` the largest decoded squared norm of the
    /// block.
    pub(crate) fn rules_out_euclidean(
        &self,
        metric: Metric,
        (q_inf, qq): (f64, f32),
        max_nn: f32,
        row: &[f32],
        bound: f32,
    ) -> bool {
        let least = least_finite(row);
        let scale = q_inf * self.max_step / self.top * (1.0 + 8.0 * U);
        let weights = scale / 2.0 * f64::from(self.max_sum);
        let floats = 2.0 * self.rounding * q_inf * self.span * (1.0 + 8.0 * U);
        let (c0, c1) = self.squared_terms(weights + floats, qq);
        least - in_units(metric, c0 + c1 * max_nn, bound, least) > bound
    }

    fn total(weights: f64, floats: f64, v: f32) -> f32 {
        let finish = 8.0 * U * (f64::from(v).abs() + 2.0);
        (2.0 * (weights + floats + finish) + f64::from(f32::MIN_POSITIVE)) as f32
    }
}

/// A squared-Euclidean slack `c` ([`Slack::squared`]) in the units of
/// `metric`'s distances, for a screen's lower bound `v` under a top-k
/// whose bound is `bound`: `c` itself, or for the Euclidean distance
/// `2·(min(√c, c/v) + 2u·|bound|)`. With `v ≤ √(S + c)` (`S ≥ 0` the
/// squared integer distance), `√(S + c) − √S ≤ min(√c, c/√(S + c)) ≤
/// min(√c, c/v)`; and with the rounding of `√S` at most `u` relative,
/// `√S ≤ bound` gives `v ≤ bound + 2u·bound + min(√c, c/v)`. The factor 2
/// covers the roundings of this formula. `v − in_units(v)` grows with `v`.
pub(crate) fn in_units(metric: Metric, c: f32, bound: f32, v: f32) -> f32 {
    match metric {
        Metric::Euclidean => {
            let gap = if v > 0.0 {
                c.sqrt().min(c / v)
            } else {
                c.sqrt()
            };
            2.0 * (gap + 2.0 * (U as f32) * bound.abs()) + f32::MIN_POSITIVE
        }
        _ => c,
    }
}

impl CodedQuery {
    /// The approximate dot product with vector `j` of `codes` alone: the
    /// same bits as [`CodedQuery::dots`] gives it.
    pub(crate) fn dot_one(&self, codes: &Codes<'_>, dim: usize, j: usize) -> f32 {
        let cb = codes.precision.code_bytes(dim);
        let row = &codes.bytes[j * cb..(j + 1) * cb];
        let mut out = [0f32];
        vecseal_kmeans::kernel::dispatch(Sums {
            precision: codes.precision,
            codes: row,
            cb,
            k: &self.k,
            out: &mut out,
            scale: self.scale,
            base: self.base,
        });
        out[0]
    }
}

/// The least of `values` (infinity if none), or NaN if any is not finite
/// (a screen cannot bound what its GEMM did not compute finitely); in 8
/// lanes, so that it vectorises (a minimum is exact in any order).
pub(crate) fn least_finite(values: &[f32]) -> f32 {
    let mut lanes = [f32::INFINITY; 8];
    let mut bad = [false; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for ((l, b), &v) in lanes.iter_mut().zip(&mut bad).zip(c) {
            *l = if v < *l { v } else { *l };
            *b |= !v.is_finite();
        }
    }
    let mut least = f32::INFINITY;
    let mut any_bad = bad.contains(&true);
    for &v in lanes.iter().chain(chunks.remainder()) {
        least = if v < least { v } else { least };
    }
    for &v in chunks.remainder() {
        any_bad |= !v.is_finite();
    }
    if any_bad {
        f32::NAN
    } else {
        least
    }
}

pub(crate) mod bytes;
mod together;
pub(crate) use together::{code_group, dots_together, TOGETHER};

#[cfg(test)]
mod tests;
