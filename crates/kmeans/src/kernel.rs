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
//! For a few rows at a time (one routed vector, one query's probes), a
//! [`Coded`] copy of the centroids in 16-bit integers can replace the GEMM
//! as the screen: half the bytes to read, a bound of its own, the same
//! answers.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::OnceLock;

use faer::{Accum, MatMut, MatRef, Par};
use pulp::{Simd, WithSimd};

use crate::Error;

mod coded;
pub use coded::Coded;

/// Up to this many rows at a time, a [`Coded`] copy of the centroids
/// screens them (a pass over the codes per row); more rows share the
/// GEMM's pass over the `f32` centroids.
const CODED_ROWS: usize = 4;

/// Rows are ranked in groups of this many on the rayon pool; one group
/// stays on the calling thread (a hand-off costs a thread wake-up).
const GROUP: usize = 64;

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
    #[inline]
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
/// registers the 16 accumulators of a pair are two registers, added lane by
/// lane before the tree (so tiles at 8 lanes are half as wide, see
/// [`Tiles`]).
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
    let mut acc = [[simd.splat_f32s(0.0); B]; A];
    if per == 1 {
        for i in 0..regs {
            let x: [S::f32s; B] = std::array::from_fn(|b| xv[b][i]);
            for a in 0..A {
                let q = qv[a][i];
                for b in 0..B {
                    acc[a][b] = T::step(simd, q, x[b], acc[a][b]);
                }
            }
        }
    } else {
        // Lanes 0–7 of every chunk in `acc`, lanes 8–15 in `high`.
        let mut high = [[simd.splat_f32s(0.0); B]; A];
        let mut i = 0;
        while i + 2 <= regs {
            let x0: [S::f32s; B] = std::array::from_fn(|b| xv[b][i]);
            let x1: [S::f32s; B] = std::array::from_fn(|b| xv[b][i + 1]);
            for a in 0..A {
                let (q0, q1) = (qv[a][i], qv[a][i + 1]);
                for b in 0..B {
                    acc[a][b] = T::step(simd, q0, x0[b], acc[a][b]);
                    high[a][b] = T::step(simd, q1, x1[b], high[a][b]);
                }
            }
            i += 2;
        }
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
#[inline]
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
        let Tiles(job, out, _) = self;
        // 16 accumulators a tile: 4 × 4 pairs of one register at 16 lanes,
        // 4 × 2 pairs of two registers at 8.
        if S::F32_LANES == LANES {
            tiles::<S, T, F, 4>(simd, &job, out);
        } else {
            tiles::<S, T, F, 2>(simd, &job, out);
        }
    }
}

/// Every pair of `job` in tiles of up to 4 queries × `B` vectors; queries go
/// 32 at a time so a group and the vectors stay in cache.
#[inline(always)]
fn tiles<S: Simd, T: Term, F: Fn(f32) -> f32 + Copy, const B: usize>(
    simd: S,
    job: &Job<'_, F>,
    out: &mut [f32],
) {
    const QUERY_GROUP: usize = 32;
    let (n, m) = (job.n, job.queries.len() / job.dim);
    for group in (0..m).step_by(QUERY_GROUP) {
        let end = (group + QUERY_GROUP).min(m);
        for j in (0..n).step_by(B) {
            let mut i = group;
            if j + B <= n {
                while i + 4 <= end {
                    job.put::<S, T, 4, B>(simd, i, j, out);
                    i += 4;
                }
                match end - i {
                    3 => job.put::<S, T, 3, B>(simd, i, j, out),
                    2 => job.put::<S, T, 2, B>(simd, i, j, out),
                    1 => job.put::<S, T, 1, B>(simd, i, j, out),
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

/// Centroids ready to rank: the nearest one to a row, its `n` nearest, or
/// all of them in order, by the canonical squared Euclidean distance with
/// ties to the lower index. This is how k-means assigns points and how an
/// IVF index routes vectors and picks probes: one kernel, so a vector sits
/// in the first list a query equal to it probes.
///
/// A GEMM (`‖x‖² + ‖c‖² − 2·x·c`) screens the centroids; it rounds in an
/// order of its own, so every centroid whose screened value is within a
/// rigorous bound of the cut-off is rescored in the canonical order, and
/// only canonical values decide. With [`Centroids::with_coded`], a few
/// rows at a time are screened from 16-bit codes instead (see [`Coded`]).
pub struct Centroids<'a> {
    data: &'a [f32],
    dim: usize,
    /// Computed here, or kept by the caller ([`Centroids::with_norms`]).
    norms: std::borrow::Cow<'a, Norms>,
    coded: Option<&'a Coded>,
}

/// The squared norms of a set of centroids (canonical dot products) and
/// the largest of them, computed once for [`Centroids::with_norms`]: a
/// router that ranks a few rows at a time against the same centroids then
/// reads neither the centroids nor their norms an extra time per call.
/// Not `Debug`: norms are summaries of the data.
#[derive(Clone, Default)]
pub struct Norms {
    values: Vec<f32>,
    max: f32,
}

impl Norms {
    /// The norms of row-major `centroids` of dimension `dim`.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn of(centroids: &[f32], dim: usize) -> Self {
        assert!(dim > 0, "dimension 0");
        let values: Vec<f32> = centroids
            .chunks_exact(dim)
            .map(|c| sum(Sum::Dot, c, c))
            .collect();
        let max = max_norm(&values);
        Norms { values, max }
    }

    /// One squared norm per centroid.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
}

/// The largest of `norms`, NaN-propagating: a NaN norm makes every bound
/// NaN (nothing ruled out).
fn max_norm(norms: &[f32]) -> f32 {
    norms
        .iter()
        .fold(0f32, |a, &v| if v.is_nan() || v > a { v } else { a })
}

/// Scratch space that [`Centroids`] reuses between calls.
#[derive(Default)]
pub struct Scratch {
    dots: Vec<f32>,
    norms: Vec<f32>,
    values: Vec<f32>,
    candidates: Vec<(u32, u32)>,
    /// Per row of the last screen: how far its screened dot products may
    /// be from the exact ones beyond what the GEMM's rounding allows (the
    /// coding error of a [`Coded`] screen; 0 after the GEMM).
    extra: Vec<f32>,
}

impl<'a> Centroids<'a> {
    /// Row-major `centroids` of dimension `dim`.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(centroids: &'a [f32], dim: usize) -> Self {
        Centroids {
            data: centroids,
            dim,
            norms: std::borrow::Cow::Owned(Norms::of(centroids, dim)),
            coded: None,
        }
    }

    /// Row-major `centroids` of dimension `dim` with their [`Norms`], kept
    /// from an earlier call: saves a pass over every centroid (and over
    /// their norms) when few rows are routed at a time.
    ///
    /// # Panics
    /// If `dim` is 0 or there is not one norm per centroid.
    pub fn with_norms(centroids: &'a [f32], dim: usize, norms: &'a Norms) -> Self {
        assert!(dim > 0, "dimension 0");
        assert_eq!(
            norms.values.len(),
            centroids.len() / dim,
            "one norm per centroid"
        );
        Centroids {
            data: centroids,
            dim,
            norms: std::borrow::Cow::Borrowed(norms),
            coded: None,
        }
    }

    /// Screens a few rows at a time (up to 4) with `coded`, the centroids
    /// coded to 16 bits: half the bytes of the GEMM's pass. The answers
    /// do not change (see [`Coded`]).
    ///
    /// # Panics
    /// If `coded` was not made from centroids of this number and
    /// dimension.
    pub fn with_coded(mut self, coded: &'a Coded) -> Self {
        assert!(
            coded.len() == self.len() && coded.dim() == self.dim,
            "coded centroids of another shape"
        );
        self.coded = Some(coded);
        self
    }

    /// The squared norm of every centroid (canonical dot products).
    pub fn norms(&self) -> &[f32] {
        &self.norms.values
    }

    /// The number of centroids.
    pub fn len(&self) -> usize {
        self.norms.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.norms.values.is_empty()
    }

    fn centroid(&self, j: usize) -> &[f32] {
        &self.data[j * self.dim..(j + 1) * self.dim]
    }

    /// The screen of `rows`: their dot products with every centroid and
    /// their squared norms, from which [`Self::candidates`] derives
    /// bounds. A few rows go through the [`Coded`] centroids when there
    /// are some and every row can be coded; otherwise a GEMM.
    fn screen(&self, rows: &[f32], scratch: &mut Scratch) {
        let (dim, k) = (self.dim, self.len());
        let m = rows.len() / dim;
        scratch.dots.clear();
        scratch.dots.resize(m * k, 0.0);
        scratch.extra.clear();
        scratch.norms.clear();
        scratch
            .norms
            .extend(rows.chunks_exact(dim).map(|r| sum(Sum::Dot, r, r)));
        if let Some(coded) = self.coded.filter(|_| m <= CODED_ROWS) {
            let coded_rows: Option<Vec<_>> = rows.chunks_exact(dim).map(|r| coded.row(r)).collect();
            if let Some(coded_rows) = coded_rows {
                for (row, dots) in coded_rows.iter().zip(scratch.dots.chunks_exact_mut(k)) {
                    coded.screen(row, dots);
                    scratch.extra.push(coded.bound(row));
                }
                return;
            }
        }
        scratch.extra.resize(m, 0.0);
        let dst = MatMut::from_row_major_slice_mut(scratch.dots.as_mut_slice(), m, k);
        let lhs = MatRef::from_row_major_slice(rows, m, dim);
        let rhs = MatRef::from_row_major_slice(self.data, k, dim);
        faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs.transpose(), 1.0f32, Par::Seq);
    }

    /// How far a screened value (`‖c‖² − 2g`, `g` the GEMM's `x·c`) plus
    /// the row's squared norm `xs` may be from the canonical squared
    /// distance, for every centroid. Every sum of `d` products, in any
    /// order, is within `γ·Σ|terms|` of the exact value (γ = (d + 2)·u /
    /// (1 − (d + 2)·u), u the unit roundoff), and `Σ|x_i·c_i| ≤ (‖x‖² +
    /// ‖c‖²)/2`: that covers the GEMM, both norms and the canonical distance
    /// itself; 4u covers the roundings of the expression, the factor 3 the
    /// rounding of the norms the bound is computed from, and `tiny`
    /// underflow.
    fn slack(&self, xs: f32) -> f32 {
        let u = f32::EPSILON / 2.0;
        let n = self.dim as f32 + 2.0;
        let gamma = n * u / (1.0 - n * u);
        let rel = 8.0 * gamma + 4.0 * u;
        3.0 * rel * (xs + self.norms.max) + f32::MIN_POSITIVE * n
    }

    /// The centroids of every row of the last screen that may be among its
    /// `n` nearest, as `(row, centroid)` into `scratch.candidates`: those
    /// whose screened value is within `2·slack` of the `n`-th smallest
    /// (`n` centroids are within `slack` of it; none farther can beat them).
    fn candidates(&self, m: usize, n: usize, scratch: &mut Scratch) {
        let mut found = std::mem::take(&mut scratch.candidates);
        let mut values = std::mem::take(&mut scratch.values);
        found.clear();
        dispatch(Candidates {
            centroids: self,
            scratch,
            m,
            n,
            values: &mut values,
            found: &mut found,
        });
        scratch.candidates = found;
        scratch.values = values;
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
        let m = rows.len() / self.dim;
        assert!(nearest.len() == m && distances.len() == m, "output size");
        self.screen(rows, scratch);
        self.candidates(m, 1, scratch);
        distances.fill(f32::INFINITY);
        nearest.fill(u32::MAX);
        for &(i, j) in &scratch.candidates {
            let (i, j) = (i as usize, j as usize);
            let row = &rows[i * self.dim..(i + 1) * self.dim];
            let d = sum(Sum::SquaredL2, row, self.centroid(j));
            // Candidates come in centroid order: a tie keeps the lower.
            if nearest[i] == u32::MAX || d.total_cmp(&distances[i]).is_lt() {
                nearest[i] = j as u32;
                distances[i] = d;
            }
        }
    }

    /// The nearest centroid of every row (parallel over groups of rows;
    /// one group, such as one routed vector, stays on this thread).
    pub fn nearest(&self, rows: &[f32]) -> Vec<u32> {
        use rayon::prelude::*;
        let m = rows.len() / self.dim;
        let mut out = vec![0u32; m];
        if m == 0 {
            return out;
        }
        if m <= GROUP {
            let mut distances = vec![0f32; m];
            self.nearest_into(rows, &mut out, &mut distances, &mut Scratch::default());
            return out;
        }
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
    /// groups of rows; one group, such as one query, stays on this thread).
    /// Ties go to the lower index, as in [`Self::nearest`].
    pub fn nearest_n(&self, rows: &[f32], n: usize) -> Vec<Vec<u32>> {
        use rayon::prelude::*;
        let n = n.min(self.len());
        if rows.len() <= GROUP * self.dim {
            return self.nearest_n_group(rows, n);
        }
        rows.par_chunks(GROUP * self.dim)
            .flat_map_iter(|group| self.nearest_n_group(group, n))
            .collect()
    }

    fn nearest_n_group(&self, group: &[f32], n: usize) -> Vec<Vec<u32>> {
        let m = group.len() / self.dim;
        let mut out = vec![Vec::new(); m];
        if n == 0 {
            return out;
        }
        let mut scratch = Scratch::default();
        self.screen(group, &mut scratch);
        self.candidates(m, n, &mut scratch);
        // Every candidate of the group in one list, by row, then distance,
        // then centroid: each row's first `n` are its answer (one list, not
        // one per row: their allocations were about 3 % of a batch of
        // one-probe queries in a profile).
        let mut scored: Vec<(u32, f32, u32)> = scratch
            .candidates
            .iter()
            .map(|&(i, j)| {
                let row = &group[i as usize * self.dim..(i as usize + 1) * self.dim];
                (i, sum(Sum::SquaredL2, row, self.centroid(j as usize)), j)
            })
            .collect();
        scored.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        for row in scored.chunk_by(|a, b| a.0 == b.0) {
            out[row[0].0 as usize] = row.iter().take(n).map(|&(_, _, j)| j).collect();
        }
        out
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

/// Up to this `n`, [`nth_smallest`] finds the `n`-th smallest screened
/// value (a few probes); beyond it, a selection over a copy.
const SMALL_N: usize = 32;

/// The `n`-th smallest of the values that are not NaN (infinite if there
/// are fewer than `n`: then every centroid is a candidate), by insertion
/// into the `n` smallest seen so far: most values lose one comparison with
/// the largest of them. `n` is at most [`SMALL_N`].
#[inline(always)]
fn nth_smallest(values: &[f32], n: usize) -> f32 {
    let mut best = [f32::INFINITY; SMALL_N];
    let best = &mut best[..n];
    for &v in values {
        // A NaN is never less: it stays a candidate through the keep test.
        if v < best[n - 1] {
            let mut i = n - 1;
            while i > 0 && v < best[i - 1] {
                best[i] = best[i - 1];
                i -= 1;
            }
            best[i] = v;
        }
    }
    best[n - 1]
}

/// [`Centroids::candidates`], dispatched so that its lane loops vectorise.
struct Candidates<'a> {
    centroids: &'a Centroids<'a>,
    scratch: &'a Scratch,
    m: usize,
    n: usize,
    values: &'a mut Vec<f32>,
    found: &'a mut Vec<(u32, u32)>,
}

impl WithSimd for Candidates<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        const L: usize = 16;
        let c = self.centroids;
        let k = c.len();
        let norms: &[f32] = &c.norms.values;
        for i in 0..self.m {
            let dots = &self.scratch.dots[i * k..(i + 1) * k];
            // The screened values ‖c‖² − 2g, in 16 independent lanes.
            let values = &mut *self.values;
            values.clear();
            values.extend(dots.iter().zip(norms).map(|(&g, &cn)| cn - 2.0 * g));
            let nth = if self.n == 1 {
                let mut lanes = [f32::INFINITY; L];
                for chunk in values.chunks_exact(L) {
                    for l in 0..L {
                        lanes[l] = if chunk[l] < lanes[l] {
                            chunk[l]
                        } else {
                            lanes[l]
                        };
                    }
                }
                let tail = values.len() - values.len() % L;
                lanes
                    .iter()
                    .chain(&values[tail..])
                    .fold(f32::INFINITY, |a, &v| if v < a { v } else { a })
            } else if self.n <= SMALL_N {
                nth_smallest(values, self.n)
            } else {
                let mut sorted = values.clone();
                let at = self.n - 1;
                sorted.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
                sorted[at]
            };
            // A NaN value (overflow) is always a candidate; a NaN limit
            // makes every centroid one.
            // The screen's own error (0 for the GEMM) moves each screened
            // `‖c‖² − 2g` by up to twice the dot product's bound.
            let bound = c.slack(self.scratch.norms[i]) + 2.0 * self.scratch.extra[i];
            let limit = nth + 2.0 * bound;
            let all = limit.is_nan();
            let keep = |v: f32| (v <= limit) | v.is_nan() | all;
            for (base, chunk) in values.chunks(L).enumerate() {
                let mut any = false;
                for &v in chunk {
                    any |= keep(v);
                }
                if any {
                    for (l, &v) in chunk.iter().enumerate() {
                        if keep(v) {
                            self.found.push((i as u32, (base * L + l) as u32));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
