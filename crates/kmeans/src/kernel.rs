//! The distance kernels of vecseal: one summation order on every CPU.
//!
//! Every dot product and squared Euclidean distance that vecseal ranks or
//! reports is computed in the **canonical order** below, whichever SIMD
//! level the CPU has, so results are bit-identical on a scalar machine, an
//! AVX2 one and an AVX-512 one:
//!
//! 1. The first `16·⌊d/16⌋` coordinates go to 16 accumulators; coordinate
//!    `i` goes to accumulator `i mod 16`, each step a fused multiply-add
//!    (`acc = fma(q, x, acc)`, or `t = q − x; acc = fma(t, t, acc)`).
//! 2. The accumulators are summed as a fixed tree: `a[l] + a[l + 8]`, then
//!    `+ [l + 4]`, `+ [l + 2]`, `+ [l + 1]`.
//! 3. The remaining `d mod 16` coordinates are added one by one, in order,
//!    each term rounded on its own (`s += q·x`, or `s += (q − x)²`).
//!
//! AVX-512 holds the 16 accumulators in one register, AVX2 in two, the
//! scalar level in an array; each lane sees the same operations in the same
//! order, and the tree is the same, so the result is the same bit for bit.
//!
//! [`SimdLevel::current`] is the best level the CPU offers, or the one the
//! environment variable `VECSEAL_SIMD` (`scalar`, `v3`, `v4`) asks for — a
//! way to test that a difference of CPU cannot hide.
//!
//! [`Centroids`] ranks centroids for a row: a GEMM screens them, and every
//! centroid that may be the nearest (within a rigorous bound on the GEMM's
//! rounding) is rescored in the canonical order, so the choice of list is
//! as CPU-independent as the distances. Ties go to the lower centroid.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::OnceLock;

use faer::{Accum, MatMut, MatRef, Par};
use pulp::{Simd, WithSimd};

use crate::Error;

/// The number of accumulators of the canonical order.
pub const LANES: usize = 16;

/// The environment variable that forces a [`SimdLevel`].
pub const SIMD_ENV: &str = "VECSEAL_SIMD";

/// An instruction set the kernels can run on. Results do not depend on it;
/// speed does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SimdLevel {
    /// Portable code, no SIMD assumed (fused multiply-adds through `f32::mul_add`).
    Scalar,
    /// x86-64-v3: AVX2 and FMA, 8 lanes.
    V3,
    /// x86-64-v4: AVX-512, 16 lanes.
    V4,
}

impl SimdLevel {
    /// Every level, lowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::V3, SimdLevel::V4];

    /// The name `VECSEAL_SIMD` takes: `scalar`, `v3` or `v4`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::V3 => "v3",
            SimdLevel::V4 => "v4",
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::V3 => pulp::x86::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::V4 => pulp::x86::V4::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU offers.
    pub fn best() -> SimdLevel {
        Self::ALL
            .into_iter()
            .rev()
            .find(|l| l.is_available())
            .unwrap_or(SimdLevel::Scalar)
    }

    /// The highest available level not above `self`.
    fn or_lower(self) -> SimdLevel {
        Self::ALL
            .into_iter()
            .rev()
            .find(|l| *l <= self && l.is_available())
            .unwrap_or(SimdLevel::Scalar)
    }

    /// The level `VECSEAL_SIMD` asks for (unset, empty or `auto`: `None`).
    ///
    /// # Errors
    /// [`Error::UnknownSimdLevel`] for any other value than a level's name.
    pub fn from_env() -> Result<Option<SimdLevel>, Error> {
        match std::env::var(SIMD_ENV) {
            Ok(v) if !v.is_empty() && v != "auto" => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// The level the kernels of this process use, decided once: the one
    /// `VECSEAL_SIMD` names (or the best available below it, if the CPU
    /// lacks it), else the best available. A value of `VECSEAL_SIMD` that is
    /// no level's name is ignored with a warning; front ends check it with
    /// [`SimdLevel::from_env`] first.
    pub fn current() -> SimdLevel {
        static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let level = match Self::from_env() {
                Ok(Some(asked)) => {
                    let got = asked.or_lower();
                    if got != asked {
                        tracing::warn!(
                            asked = asked.name(),
                            used = got.name(),
                            "{SIMD_ENV}: this CPU lacks the level asked for"
                        );
                    }
                    got
                }
                Ok(None) => Self::best(),
                Err(e) => {
                    tracing::warn!("{e}; using the best level");
                    Self::best()
                }
            };
            tracing::debug!(level = level.name(), "vecseal distance kernels");
            level
        })
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::V3 => "v3 (AVX2+FMA)",
            SimdLevel::V4 => "v4 (AVX-512)",
        })
    }
}

impl FromStr for SimdLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownSimdLevel(s.to_owned()))
    }
}

/// Runs `op` at [`SimdLevel::current`].
#[inline]
pub fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    dispatch_at(SimdLevel::current(), op)
}

/// Runs `op` at `level`, or at the best available level below it.
#[inline]
pub fn dispatch_at<Op: WithSimd>(level: SimdLevel, op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if level >= SimdLevel::V4 {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return Simd::vectorize(simd, op);
            }
        }
        if level >= SimdLevel::V3 {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return Simd::vectorize(simd, op);
            }
        }
    }
    let _ = level;
    Simd::vectorize(pulp::Scalar512b, op)
}

/// What a kernel sums over coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sum {
    /// `Σ q·x`.
    Dot,
    /// `Σ (q − x)²`.
    SquaredL2,
}

/// The term of a [`Sum`], in SIMD lanes and one by one.
pub(crate) trait Term {
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s;
    fn term(q: f32, x: f32) -> f32;
}

pub(crate) struct Product;
impl Term for Product {
    #[inline(always)]
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s {
        simd.mul_add_f32s(q, x, acc)
    }
    #[inline(always)]
    fn term(q: f32, x: f32) -> f32 {
        q * x
    }
}

pub(crate) struct SquaredDifference;
impl Term for SquaredDifference {
    #[inline(always)]
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s {
        let d = simd.sub_f32s(q, x);
        simd.mul_add_f32s(d, d, acc)
    }
    #[inline(always)]
    fn term(q: f32, x: f32) -> f32 {
        let d = q - x;
        d * d
    }
}

/// `T` summed in the canonical order over every pair of `qs` × `xs` (all of
/// one length): the loads of a coordinate serve several pairs. With 8-lane
/// registers the 16 accumulators are two registers, the low lanes summed in
/// one pass and the high ones in a second (so a 4 × 4 tile needs no more
/// registers than at 16 lanes), and added lane by lane before the tree.
#[inline(always)]
pub(crate) fn tile<S: Simd, T: Term, const A: usize, const B: usize>(
    simd: S,
    qs: [&[f32]; A],
    xs: [&[f32]; B],
) -> [[f32; B]; A] {
    let per = LANES / S::F32_LANES;
    assert!(
        per * S::F32_LANES == LANES && per <= 2,
        "unsupported lane width"
    );
    let d = qs[0].len();
    let chunks = d / LANES;
    let body = chunks * LANES;
    let regs = chunks * per;
    let qv: [&[S::f32s]; A] = std::array::from_fn(|a| &S::as_simd_f32s(&qs[a][..body]).0[..regs]);
    let xv: [&[S::f32s]; B] = std::array::from_fn(|b| &S::as_simd_f32s(&xs[b][..body]).0[..regs]);
    let pass = |half: usize| {
        let mut acc = [[simd.splat_f32s(0.0); B]; A];
        for i in 0..chunks {
            let r = i * per + half;
            let x: [S::f32s; B] = std::array::from_fn(|b| xv[b][r]);
            for a in 0..A {
                let q = qv[a][r];
                for b in 0..B {
                    acc[a][b] = T::step(simd, q, x[b], acc[a][b]);
                }
            }
        }
        acc
    };
    let mut acc = pass(0);
    if per == 2 {
        let high = pass(1);
        for a in 0..A {
            for b in 0..B {
                acc[a][b] = simd.add_f32s(acc[a][b], high[a][b]);
            }
        }
    }
    let mut out = [[0f32; B]; A];
    for a in 0..A {
        for b in 0..B {
            // pulp's reductions halve the register: lanes l + w/2, then
            // l + w/4 …, which is the canonical tree.
            let mut s = simd.reduce_sum_f32s(acc[a][b]);
            for j in body..d {
                s += T::term(qs[a][j], xs[b][j]);
            }
            out[a][b] = s;
        }
    }
    out
}

struct Pair<'a, T>(&'a [f32], &'a [f32], PhantomData<T>);

impl<T: Term> WithSimd for Pair<'_, T> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        tile::<S, T, 1, 1>(simd, [self.0], [self.1])[0][0]
    }
}

/// `sum` over the coordinates of `a` and `b` (of one length), in the
/// canonical order, at `level`.
pub fn sum_at(level: SimdLevel, sum: Sum, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    match sum {
        Sum::Dot => dispatch_at(level, Pair::<Product>(a, b, PhantomData)),
        Sum::SquaredL2 => dispatch_at(level, Pair::<SquaredDifference>(a, b, PhantomData)),
    }
}

/// [`sum_at`] at [`SimdLevel::current`].
#[inline]
pub fn sum(sum: Sum, a: &[f32], b: &[f32]) -> f32 {
    sum_at(SimdLevel::current(), sum, a, b)
}

/// `out[i * n + j] = finish(sum(q_i, x_j))` for the row-major `queries` and
/// `vectors` of dimension `dim` (`n` vectors), each sum equal bit for bit to
/// [`sum`]`(q_i, x_j)`. Tiles of 4 × 4 pairs share their loads; queries go
/// 32 at a time so a group and the vectors stay in cache.
///
/// # Panics
/// If `dim` is 0 or `out` is not `m × n` long.
pub fn sums_into(
    sum: Sum,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    out: &mut [f32],
    finish: impl Fn(f32) -> f32 + Copy,
) {
    sums_at(
        SimdLevel::current(),
        sum,
        queries,
        vectors,
        dim,
        out,
        finish,
    );
}

/// [`sums_into`] at `level`.
///
/// # Panics
/// If `dim` is 0 or `out` is not `m × n` long.
pub fn sums_at(
    level: SimdLevel,
    sum: Sum,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    out: &mut [f32],
    finish: impl Fn(f32) -> f32 + Copy,
) {
    assert!(dim > 0, "dimension 0");
    let job = Job {
        queries,
        vectors,
        dim,
        n: vectors.len() / dim,
        finish,
    };
    assert_eq!(out.len(), queries.len() / dim * job.n, "output size");
    match sum {
        Sum::Dot => dispatch_at(level, Tiles::<Product, _>(job, out, PhantomData)),
        Sum::SquaredL2 => dispatch_at(level, Tiles::<SquaredDifference, _>(job, out, PhantomData)),
    }
}

struct Job<'a, F> {
    queries: &'a [f32],
    vectors: &'a [f32],
    dim: usize,
    n: usize,
    finish: F,
}

impl<F: Fn(f32) -> f32 + Copy> Job<'_, F> {
    /// Sums queries `i..i + A` against vectors `j..j + B` into `out`.
    #[inline(always)]
    fn put<S: Simd, T: Term, const A: usize, const B: usize>(
        &self,
        simd: S,
        i: usize,
        j: usize,
        out: &mut [f32],
    ) {
        let d = self.dim;
        let q = std::array::from_fn(|a| &self.queries[(i + a) * d..(i + a + 1) * d]);
        let x = std::array::from_fn(|b| &self.vectors[(j + b) * d..(j + b + 1) * d]);
        let t = tile::<S, T, A, B>(simd, q, x);
        for (a, row) in t.iter().enumerate() {
            for (b, &v) in row.iter().enumerate() {
                out[(i + a) * self.n + j + b] = (self.finish)(v);
            }
        }
    }
}

struct Tiles<'a, T, F>(Job<'a, F>, &'a mut [f32], PhantomData<T>);

impl<T: Term, F: Fn(f32) -> f32 + Copy> WithSimd for Tiles<'_, T, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        const QUERY_GROUP: usize = 32;
        let Tiles(job, out, _) = self;
        let (n, m) = (job.n, job.queries.len() / job.dim);
        for group in (0..m).step_by(QUERY_GROUP) {
            let end = (group + QUERY_GROUP).min(m);
            for j in (0..n).step_by(4) {
                let mut i = group;
                if j + 4 <= n {
                    while i + 4 <= end {
                        job.put::<S, T, 4, 4>(simd, i, j, out);
                        i += 4;
                    }
                    match end - i {
                        3 => job.put::<S, T, 3, 4>(simd, i, j, out),
                        2 => job.put::<S, T, 2, 4>(simd, i, j, out),
                        1 => job.put::<S, T, 1, 4>(simd, i, j, out),
                        _ => {}
                    }
                } else {
                    for jj in j..n {
                        for ii in group..end {
                            job.put::<S, T, 1, 1>(simd, ii, jj, out);
                        }
                    }
                }
            }
        }
    }
}

/// Centroids ready to rank: the nearest one to a row, its `n` nearest, or
/// all of them in order, by the canonical squared Euclidean distance with
/// ties to the lower index. This is how k-means assigns points and how an
/// IVF index routes vectors and picks probes: one kernel, so a vector sits
/// in the first list a query equal to it probes.
///
/// A GEMM (`‖x‖² + ‖c‖² − 2·x·c`) screens the centroids; it rounds in an
/// order of its own, so every centroid whose screened value is within a
/// rigorous bound of the cut-off is rescored in the canonical order, and
/// only canonical values decide.
pub struct Centroids<'a> {
    data: &'a [f32],
    dim: usize,
    norms: Vec<f32>,
    max_norm: f32,
}

/// Scratch space that [`Centroids`] reuses between calls.
#[derive(Default)]
pub struct Scratch {
    dots: Vec<f32>,
    norms: Vec<f32>,
    picked: Vec<(f32, u32)>,
}

impl<'a> Centroids<'a> {
    /// Row-major `centroids` of dimension `dim`.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(centroids: &'a [f32], dim: usize) -> Self {
        assert!(dim > 0, "dimension 0");
        let norms: Vec<f32> = centroids
            .chunks_exact(dim)
            .map(|c| sum(Sum::Dot, c, c))
            .collect();
        // NaN-propagating: a NaN norm makes every bound NaN (nothing ruled out).
        let max_norm = norms
            .iter()
            .fold(0f32, |a, &v| if v.is_nan() || v > a { v } else { a });
        Centroids {
            data: centroids,
            dim,
            norms,
            max_norm,
        }
    }

    /// The number of centroids.
    pub fn len(&self) -> usize {
        self.norms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.norms.is_empty()
    }

    fn centroid(&self, j: usize) -> &[f32] {
        &self.data[j * self.dim..(j + 1) * self.dim]
    }

    /// The GEMM screen of `rows`: their dot products with every centroid
    /// and their squared norms, from which [`Self::screened`] and
    /// [`Self::slack`] derive bounds.
    fn screen(&self, rows: &[f32], scratch: &mut Scratch) {
        let (dim, k) = (self.dim, self.len());
        let m = rows.len() / dim;
        scratch.dots.clear();
        scratch.dots.resize(m * k, 0.0);
        let dst = MatMut::from_row_major_slice_mut(scratch.dots.as_mut_slice(), m, k);
        let lhs = MatRef::from_row_major_slice(rows, m, dim);
        let rhs = MatRef::from_row_major_slice(self.data, k, dim);
        faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs.transpose(), 1.0f32, Par::Seq);
        scratch.norms.clear();
        scratch
            .norms
            .extend(rows.chunks_exact(dim).map(|r| sum(Sum::Dot, r, r)));
    }

    /// The screened value of centroid `j` for a row whose dot product with
    /// it the GEMM gave as `g`: `‖c‖² − 2g`, the squared distance less the
    /// row's own squared norm (the same for every centroid of the row).
    #[inline(always)]
    fn screened(norm: f32, g: f32) -> f32 {
        norm - 2.0 * g
    }

    /// How far a screened value (plus the row's squared norm `xs`) may be
    /// from the canonical squared distance, for every centroid. Every sum of
    /// `d` products, in any order, is within `γ·Σ|terms|` of the exact value
    /// (γ = (d + 2)·u / (1 − (d + 2)·u), u the unit roundoff), and
    /// `Σ|x_i·c_i| ≤ (‖x‖² + ‖c‖²)/2`: that covers the GEMM, both norms and
    /// the canonical distance itself; 4u covers the roundings of the
    /// expression, the factor 3 the rounding of the norms the bound is
    /// computed from, and `tiny` underflow.
    fn slack(&self, xs: f32) -> f32 {
        let u = f32::EPSILON / 2.0;
        let n = self.dim as f32 + 2.0;
        let gamma = n * u / (1.0 - n * u);
        let rel = 8.0 * gamma + 4.0 * u;
        3.0 * rel * (xs + self.max_norm) + f32::MIN_POSITIVE * n
    }

    /// The smallest screened value of a row (NaNs, from overflow, ignored),
    /// in 16 independent lanes so that it vectorises.
    fn min_screened(&self, dots: &[f32]) -> f32 {
        const L: usize = 16;
        let mut m = [f32::INFINITY; L];
        for (g, c) in dots.chunks_exact(L).zip(self.norms.chunks_exact(L)) {
            for l in 0..L {
                let v = Self::screened(c[l], g[l]);
                m[l] = if v < m[l] { v } else { m[l] };
            }
        }
        let tail = dots.len() - dots.len() % L;
        let rest = dots[tail..].iter().zip(&self.norms[tail..]);
        rest.map(|(&g, &c)| Self::screened(c, g))
            .chain(m)
            .fold(f32::INFINITY, |a, v| if v < a { v } else { a })
    }

    /// The nearest centroid of every row of `rows` (row-major, this
    /// dimension) into `nearest`, and its canonical squared distance into
    /// `distances`.
    ///
    /// # Panics
    /// If there are no centroids, or the outputs do not have one entry per row.
    pub fn nearest_into(
        &self,
        rows: &[f32],
        nearest: &mut [u32],
        distances: &mut [f32],
        scratch: &mut Scratch,
    ) {
        assert!(!self.is_empty(), "no centroids");
        let k = self.len();
        let m = rows.len() / self.dim;
        assert!(nearest.len() == m && distances.len() == m, "output size");
        self.screen(rows, scratch);
        for (i, row) in rows.chunks_exact(self.dim).enumerate() {
            let dots = &scratch.dots[i * k..(i + 1) * k];
            // Some centroid is within min + slack; none beyond min + 2·slack
            // can beat it. A NaN anywhere makes the limit NaN: all are kept.
            let limit = self.min_screened(dots) + 2.0 * self.slack(scratch.norms[i]);
            let mut best = (f32::INFINITY, u32::MAX);
            for (j, (&g, &c)) in dots.iter().zip(&self.norms).enumerate() {
                if Self::screened(c, g) > limit {
                    continue;
                }
                let d = sum(Sum::SquaredL2, row, self.centroid(j));
                if best.1 == u32::MAX || d.total_cmp(&best.0).is_lt() {
                    best = (d, j as u32);
                }
            }
            nearest[i] = best.1;
            distances[i] = best.0;
        }
    }

    /// The nearest centroid of every row (parallel over groups of rows).
    pub fn nearest(&self, rows: &[f32]) -> Vec<u32> {
        use rayon::prelude::*;
        let m = rows.len() / self.dim;
        let mut out = vec![0u32; m];
        const GROUP: usize = 64;
        out.par_chunks_mut(GROUP)
            .zip(rows.par_chunks(GROUP * self.dim))
            .for_each_init(
                || (Scratch::default(), vec![0f32; GROUP]),
                |(scratch, dist), (o, r)| {
                    self.nearest_into(r, o, &mut dist[..o.len()], scratch);
                },
            );
        out
    }

    /// The `n` nearest centroids of every row, nearest first (parallel over
    /// groups of rows). Ties go to the lower index, as in [`Self::nearest`].
    pub fn nearest_n(&self, rows: &[f32], n: usize) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        const GROUP: usize = 64;
        rows.par_chunks(GROUP * self.dim)
            .flat_map_iter(|group| {
                let mut scratch = Scratch::default();
                self.screen(group, &mut scratch);
                group
                    .chunks_exact(self.dim)
                    .enumerate()
                    .map(|(i, row)| self.head(row, i, n, &mut scratch))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The `n` nearest of row `i` of the last screen.
    fn head(&self, row: &[f32], i: usize, n: usize, scratch: &mut Scratch) -> Vec<u32> {
        let k = self.len();
        let n = n.min(k);
        if n == 0 {
            return Vec::new();
        }
        let dots = &scratch.dots[i * k..(i + 1) * k];
        // n centroids are within the n-th smallest screened value + slack;
        // none beyond it + 2·slack can be among the n nearest.
        let mut picked = std::mem::take(&mut scratch.picked);
        picked.clear();
        picked.extend(
            dots.iter()
                .zip(&self.norms)
                .map(|(&g, &c)| (Self::screened(c, g), 0)),
        );
        picked.select_nth_unstable_by(n - 1, |a, b| a.0.total_cmp(&b.0));
        let limit = picked[n - 1].0 + 2.0 * self.slack(scratch.norms[i]);
        picked.clear();
        for (j, (&g, &c)) in dots.iter().zip(&self.norms).enumerate() {
            // NaN (overflow) never rules a centroid out.
            if Self::screened(c, g) > limit {
                continue;
            }
            picked.push((sum(Sum::SquaredL2, row, self.centroid(j)), j as u32));
        }
        scratch.picked = picked;
        let by = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if scratch.picked.len() > n {
            scratch.picked.select_nth_unstable_by(n - 1, by);
            scratch.picked.truncate(n);
        }
        scratch.picked.sort_unstable_by(by);
        scratch.picked.iter().map(|&(_, j)| j).collect()
    }

    /// Every centroid, nearest to `row` first.
    pub fn ranked(&self, row: &[f32]) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..self.len())
            .map(|j| (sum(Sum::SquaredL2, row, self.centroid(j)), j as u32))
            .collect();
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().map(|(_, j)| j).collect()
    }
}

#[cfg(test)]
mod tests;
