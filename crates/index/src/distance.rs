//! Distance kernels. Every distance between a query and a stored vector is
//! one SIMD accumulation ([`tile`], at the level pulp finds at run time:
//! AVX-512, AVX2, …), computed pair by pair or by a tiled kernel
//! ([`scores`]) with identical rounding, so search results are those of
//! brute force bit for bit. Many queries against one block go through
//! faer's GEMM for lower bounds ([`lower_bounds`]), and the pairs that may
//! make a top-k are rescored pair by pair; ranking centroids is a plain GEMM
//! ([`squared_distances`]).

use std::marker::PhantomData;

use faer::{Accum, MatMut, MatRef, Par};
use pulp::Simd;

use crate::Metric;

/// The term a distance sums over coordinates, in SIMD lanes and one by one.
trait Term {
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s;
    fn term(q: f32, x: f32) -> f32;
}

struct Product;
impl Term for Product {
    #[inline(always)]
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s {
        simd.mul_add_e_f32s(q, x, acc)
    }
    #[inline(always)]
    fn term(q: f32, x: f32) -> f32 {
        q * x
    }
}

struct SquaredDifference;
impl Term for SquaredDifference {
    #[inline(always)]
    fn step<S: Simd>(simd: S, q: S::f32s, x: S::f32s, acc: S::f32s) -> S::f32s {
        let d = simd.sub_f32s(q, x);
        simd.mul_add_e_f32s(d, d, acc)
    }
    #[inline(always)]
    fn term(q: f32, x: f32) -> f32 {
        let d = q - x;
        d * d
    }
}

/// Sums `T` over the coordinates of every pair of `qs` × `xs`: one SIMD
/// accumulator per pair takes the coordinates a register at a time, its
/// lanes are then summed, then the tail coordinates are added in order.
/// Every distance here is this sum (for the SIMD level found at run time),
/// whether computed for one pair or for a tile of pairs (which loads each
/// coordinate once for several pairs), so a score is the same bit for bit
/// whichever kernel produced it.
#[inline(always)]
fn tile<S: Simd, T: Term, const A: usize, const B: usize>(
    simd: S,
    qs: [&[f32]; A],
    xs: [&[f32]; B],
) -> [[f32; B]; A] {
    let d = qs[0].len();
    let qv: [&[S::f32s]; A] = std::array::from_fn(|a| S::as_simd_f32s(qs[a]).0);
    let n = qv[0].len();
    // Re-sliced to exactly `n` registers, so the loop has no bounds checks.
    let qv: [&[S::f32s]; A] = std::array::from_fn(|a| &qv[a][..n]);
    let xv: [&[S::f32s]; B] = std::array::from_fn(|b| &S::as_simd_f32s(xs[b]).0[..n]);
    let mut acc = [[simd.splat_f32s(0.0); B]; A];
    for i in 0..n {
        let x: [S::f32s; B] = std::array::from_fn(|b| xv[b][i]);
        for a in 0..A {
            let q = qv[a][i];
            for b in 0..B {
                acc[a][b] = T::step(simd, q, x[b], acc[a][b]);
            }
        }
    }
    let tail = n * S::F32_LANES;
    let mut out = [[0f32; B]; A];
    for a in 0..A {
        for b in 0..B {
            let mut s = simd.reduce_sum_f32s(acc[a][b]);
            for j in tail..d {
                s += T::term(qs[a][j], xs[b][j]);
            }
            out[a][b] = s;
        }
    }
    out
}

/// One pair through [`tile`], at the SIMD level found at run time.
struct Pair<'a, T>(&'a [f32], &'a [f32], PhantomData<T>);

impl<T: Term> pulp::WithSimd for Pair<'_, T> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        tile::<S, T, 1, 1>(simd, [self.0], [self.1])[0][0]
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Pair::<Product>(a, b, PhantomData))
}

pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Pair::<SquaredDifference>(a, b, PhantomData))
}

pub(crate) fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The metric's distance between a (prepared) query and a stored vector:
/// the reference that [`scores`] matches bit for bit.
/// For cosine both are unit length, so `1 − q·x`.
pub(crate) fn distance(metric: Metric, q: &[f32], x: &[f32]) -> f32 {
    match metric {
        Metric::SquaredEuclidean | Metric::Euclidean => finish(metric, l2sq(q, x)),
        Metric::Cosine | Metric::InnerProduct => finish(metric, dot(q, x)),
    }
}

/// The metric's distance from a raw sum of [`tile`] (a dot product, or a
/// squared difference), exactly as [`distance`] computes it.
#[inline(always)]
fn finish(metric: Metric, sum: f32) -> f32 {
    match metric {
        Metric::SquaredEuclidean => sum,
        Metric::Euclidean => sum.sqrt(),
        Metric::Cosine => 1.0 - sum,
        Metric::InnerProduct => -sum,
    }
}

/// Distances from the queries `queries` (row-major) to the `vectors` of a
/// block, `out[qi * n + j]`, each equal bit for bit to
/// [`distance`]`(metric, query, vector)`. Tiles of 4 queries × 4 vectors
/// share their loads, queries are taken 32 at a time so a group and the
/// block stay in cache, and the kernel is compiled for the CPU found at run
/// time (AVX-512, AVX2, …).
pub(crate) fn scores(
    metric: Metric,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    out: &mut Vec<f32>,
) {
    let (m, n) = (queries.len() / dim.max(1), vectors.len() / dim.max(1));
    out.clear();
    out.resize(m * n, 0.0);
    if m == 0 || n == 0 {
        return;
    }
    let job = Scores {
        metric,
        queries,
        vectors,
        dim,
        out,
    };
    match metric {
        Metric::Cosine | Metric::InnerProduct => {
            pulp::Arch::new().dispatch(ScoresOf::<Product>(job, PhantomData))
        }
        Metric::SquaredEuclidean | Metric::Euclidean => {
            pulp::Arch::new().dispatch(ScoresOf::<SquaredDifference>(job, PhantomData));
        }
    }
}

struct Scores<'a> {
    metric: Metric,
    queries: &'a [f32],
    vectors: &'a [f32],
    dim: usize,
    out: &'a mut [f32],
}

struct ScoresOf<'a, T>(Scores<'a>, PhantomData<T>);

impl<T: Term> pulp::WithSimd for ScoresOf<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        const QUERY_GROUP: usize = 32;
        let Scores {
            metric,
            queries,
            vectors,
            dim,
            out,
        } = self.0;
        let n = vectors.len() / dim;
        let m = queries.len() / dim;
        let job = Job {
            metric,
            queries,
            vectors,
            dim,
            n,
        };
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

/// What [`ScoresOf`] computes, with the output's row length `n`.
struct Job<'a> {
    metric: Metric,
    queries: &'a [f32],
    vectors: &'a [f32],
    dim: usize,
    n: usize,
}

impl Job<'_> {
    /// Scores queries `i..i + A` against vectors `j..j + B` into `out`.
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
                out[(i + a) * self.n + j + b] = finish(self.metric, v);
            }
        }
    }
}

/// `out[qi * n + j] = queries[qi] · vectors[j]` by one GEMM (row-major,
/// `dim` columns); returns `n`.
fn gemm_dots(queries: &[f32], vectors: &[f32], dim: usize, out: &mut Vec<f32>) -> usize {
    let (m, n) = (queries.len() / dim, vectors.len() / dim);
    out.clear();
    out.resize(m * n, 0.0);
    if m > 0 && n > 0 {
        let dst = MatMut::from_row_major_slice_mut(out.as_mut_slice(), m, n);
        let lhs = MatRef::from_row_major_slice(queries, m, dim);
        let rhs = MatRef::from_row_major_slice(vectors, n, dim);
        faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs.transpose(), 1.0f32, Par::Seq);
    }
    n
}

/// Squared distances from `rows` to `vectors` (whose squared norms are
/// `vector_norms`), `out[i * n + j]`, by one GEMM: fast, but rounded
/// differently from [`distance`] (used to rank centroids).
pub(crate) fn squared_distances(
    rows: &[f32],
    vectors: &[f32],
    vector_norms: &[f32],
    dim: usize,
    out: &mut Vec<f32>,
) {
    let n = gemm_dots(rows, vectors, dim, out);
    if n == 0 {
        return;
    }
    for (row, r) in out.chunks_exact_mut(n).zip(rows.chunks_exact(dim)) {
        let rn = dot(r, r);
        for (v, &xn) in row.iter_mut().zip(vector_norms) {
            *v = (rn + xn - 2.0 * *v).max(0.0);
        }
    }
}

/// Lower bounds of the distances from many queries (row-major) to the
/// vectors of a block, `out[qi * n + j]`, by one GEMM. A GEMM sums in its own
/// order, so its value is off from [`distance`]'s by rounding; both are
/// within `γ·(‖q‖ + ‖x‖)²` of the true value (γ ≈ (d + 2)·u, u the unit
/// roundoff), and each bound is the GEMM value minus more than twice that.
/// A pair whose bound exceeds what a top-k would accept cannot enter it;
/// the others are rescored with [`distance`], so results stay exactly those
/// of the tiled kernel. Faster than [`scores`] for many queries at small
/// dimensions.
pub(crate) fn lower_bounds(
    metric: Metric,
    queries: &[f32],
    vectors: &[f32],
    dim: usize,
    out: &mut Vec<f32>,
) {
    let n = gemm_dots(queries, vectors, dim, out);
    if n == 0 {
        return;
    }
    let qsq: Vec<f32> = queries.chunks_exact(dim).map(|q| dot(q, q)).collect();
    let xsq: Vec<f32> = vectors.chunks_exact(dim).map(|x| dot(x, x)).collect();
    // |GEMM − exact| ≤ 2γ(‖q‖ + ‖x‖)² ≤ 4γ(‖q‖² + ‖x‖²); the rest covers
    // the roundings of the expressions below and of the norms themselves.
    let u = f32::EPSILON / 2.0;
    let gamma = (dim as f32 + 2.0) * u / (1.0 - (dim as f32 + 2.0) * u);
    let k = 8.0 * gamma + 4.0 * u;
    let tiny = f32::MIN_POSITIVE * (dim as f32 + 2.0);
    let slack = |qs: f32, xs: f32, g: f32| k * (qs + xs + g.abs() + 1.0) + tiny;
    for (row, &qs) in out.chunks_exact_mut(n).zip(&qsq) {
        let pairs = row.iter_mut().zip(&xsq);
        // One loop per metric, so each vectorises.
        match metric {
            Metric::Cosine => pairs.for_each(|(v, &xs)| *v = (1.0 - *v) - slack(qs, xs, *v)),
            Metric::InnerProduct => pairs.for_each(|(v, &xs)| *v = -*v - slack(qs, xs, *v)),
            Metric::SquaredEuclidean => {
                pairs.for_each(|(v, &xs)| *v = (qs + xs - 2.0 * *v) - slack(qs, xs, *v));
            }
            Metric::Euclidean => pairs.for_each(|(v, &xs)| {
                *v = ((qs + xs - 2.0 * *v) - slack(qs, xs, *v)).max(0.0).sqrt() * (1.0 - 4.0 * u);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The tiled, dispatched kernel gives exactly the pairwise distance, for
    /// every metric, at dimensions around the lane width and for query and
    /// vector counts that leave partial tiles and query groups.
    #[test]
    fn tiled_scores_equal_pairwise_distances_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for dim in [1, 3, 15, 16, 17, 50, 100, 768] {
            for (m, n) in [(1, 1), (3, 5), (4, 4), (7, 9), (37, 6)] {
                let q: Vec<f32> = (0..m * dim).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let x: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-2.0..2.0)).collect();
                for metric in [
                    Metric::Cosine,
                    Metric::InnerProduct,
                    Metric::SquaredEuclidean,
                    Metric::Euclidean,
                ] {
                    let mut out = Vec::new();
                    scores(metric, &q, &x, dim, &mut out);
                    assert_eq!(out.len(), m * n);
                    for i in 0..m {
                        for j in 0..n {
                            let want = distance(
                                metric,
                                &q[i * dim..(i + 1) * dim],
                                &x[j * dim..(j + 1) * dim],
                            );
                            let got = out[i * n + j];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{metric:?} d={dim} q{i} x{j}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pairwise_kernels_match_plain_sums() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for dim in [1, 16, 33, 768] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let plain_dot: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let plain_l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum();
            assert!(
                (f64::from(dot(&a, &b)) - plain_dot).abs() < 1e-4,
                "dot d={dim}"
            );
            assert!(
                (f64::from(l2sq(&a, &b)) - plain_l2).abs() < 1e-4,
                "l2sq d={dim}"
            );
        }
    }
}
