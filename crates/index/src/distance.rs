//! Distances between queries and stored vectors. Every distance is one sum
//! in the canonical order of [`vecseal_kmeans::kernel`] (the same bits on
//! every CPU and SIMD level), computed pair by pair ([`distance`]) or by
//! the tiled kernel ([`scores`]) with identical rounding, so search results
//! are those of brute force bit for bit. Many queries against one block go
//! through faer's GEMM for lower bounds ([`lower_bounds`]), and the pairs
//! that may make a top-k are rescored pair by pair.

use faer::{Accum, MatMut, MatRef, Par};
use vecseal_kmeans::kernel::{self, Sum};

use crate::Metric;

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernel::sum(Sum::Dot, a, b)
}

pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    kernel::sum(Sum::SquaredL2, a, b)
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

/// The metric's distance from a raw sum (a dot product, or a squared
/// difference), exactly as [`distance`] computes it.
#[inline(always)]
pub(crate) fn finish(metric: Metric, sum: f32) -> f32 {
    match metric {
        Metric::SquaredEuclidean => sum,
        Metric::Euclidean => sum.sqrt(),
        Metric::Cosine => 1.0 - sum,
        Metric::InnerProduct => -sum,
    }
}

/// Distances from the queries `queries` (row-major) to the `vectors` of a
/// block, `out[qi * n + j]`, each equal bit for bit to
/// [`distance`]`(metric, query, vector)`: [`kernel::sums_into`], tiled and
/// dispatched to the SIMD level in use.
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
    let sum = match metric {
        Metric::Cosine | Metric::InnerProduct => Sum::Dot,
        Metric::SquaredEuclidean | Metric::Euclidean => Sum::SquaredL2,
    };
    kernel::sums_into(sum, queries, vectors, dim, out, |s| finish(metric, s));
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
