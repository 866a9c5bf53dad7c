//! The canonical order of `vecseal_kmeans::kernel`, written out in plain
//! scalar Rust from its documentation: the test oracle that every SIMD level
//! (here) and every distance the index reports (in vecseal-index's tests,
//! which include this file) must equal bit for bit.

/// `Σ q·x`, or `Σ (q − x)²` with `squared_difference`, in the canonical
/// order: 16 fused accumulators, the tree `l + 8, l + 4, l + 2, l + 1`, then
/// the tail term by term.
pub(crate) fn canonical_sum(a: &[f32], b: &[f32], squared_difference: bool) -> f32 {
    const LANES: usize = 16;
    let body = a.len() / LANES * LANES;
    let mut acc = [0f32; LANES];
    for i in 0..body {
        let l = i % LANES;
        acc[l] = if squared_difference {
            let t = a[i] - b[i];
            t.mul_add(t, acc[l])
        } else {
            a[i].mul_add(b[i], acc[l])
        };
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    let mut s = acc[0];
    for i in body..a.len() {
        s += if squared_difference {
            (a[i] - b[i]) * (a[i] - b[i])
        } else {
            a[i] * b[i]
        };
    }
    s
}
