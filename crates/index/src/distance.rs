//! Distance kernels. Written as 8-lane accumulations so the compiler emits
//! packed SIMD for the baseline target; batched work goes through faer's GEMM,
//! which dispatches AVX2/AVX-512 at run time.

use faer::{Accum, MatMut, MatRef, Par};

use crate::Metric;

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline]
pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

pub(crate) fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The metric's distance between a (prepared) query and a stored vector.
/// For cosine both are unit length, so `1 − q·x`.
#[inline]
pub(crate) fn distance(metric: Metric, q: &[f32], x: &[f32]) -> f32 {
    match metric {
        Metric::SquaredEuclidean => l2sq(q, x),
        Metric::Euclidean => l2sq(q, x).sqrt(),
        Metric::Cosine => 1.0 - dot(q, x),
        Metric::InnerProduct => -dot(q, x),
    }
}

/// Distances from `nq` queries (row-major) to the `n` vectors of a block,
/// `out[qi * n + j]`, by one GEMM.
pub(crate) fn block_distances(
    metric: Metric,
    queries: &[f32],
    qnorms: &[f32],
    block: &[f32],
    dim: usize,
    out: &mut Vec<f32>,
) {
    let nq = qnorms.len();
    let n = block.len() / dim;
    out.clear();
    out.resize(nq * n, 0.0);
    if n == 0 || nq == 0 {
        return;
    }
    let dst = MatMut::from_row_major_slice_mut(out.as_mut_slice(), nq, n);
    let lhs = MatRef::from_row_major_slice(queries, nq, dim);
    let rhs = MatRef::from_row_major_slice(block, n, dim);
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs.transpose(), 1.0f32, Par::Seq);
    match metric {
        Metric::Cosine => out.iter_mut().for_each(|v| *v = 1.0 - *v),
        Metric::InnerProduct => out.iter_mut().for_each(|v| *v = -*v),
        Metric::SquaredEuclidean | Metric::Euclidean => {
            let xnorms: Vec<f32> = block.chunks_exact(dim).map(|x| dot(x, x)).collect();
            for (row, &qn) in out.chunks_exact_mut(n).zip(qnorms) {
                for (v, &xn) in row.iter_mut().zip(&xnorms) {
                    let d = (qn + xn - 2.0 * *v).max(0.0);
                    *v = if metric == Metric::Euclidean {
                        d.sqrt()
                    } else {
                        d
                    };
                }
            }
        }
    }
}
