//! Routing: which list a vector belongs to and which lists a query probes,
//! all ranked by one kernel.

use rayon::prelude::*;
use vecseal_kmeans::kernel::{Centroids, Coded, Norms};

use crate::distance::normalize;
use crate::Metric;

/// Normalises (for cosine) row-major copies of `rows` of length `dim`: the
/// form both stored search vectors and queries take.
pub(crate) fn prepare<'a>(
    rows: impl Iterator<Item = &'a [f32]>,
    metric: Metric,
    dim: usize,
) -> Vec<f32> {
    let mut out: Vec<f32> = rows.flatten().copied().collect();
    if metric == Metric::Cosine {
        // One row (one routed vector or query) stays on this thread.
        if out.len() <= dim {
            out.chunks_exact_mut(dim.max(1)).for_each(normalize);
        } else {
            out.par_chunks_exact_mut(dim.max(1)).for_each(normalize);
        }
    }
    out
}

/// The nearest list of every row, norms computed on the spot: what
/// [`Routes::nearest`] must agree with.
#[cfg(test)]
pub(crate) fn nearest_centroids(centroids: &[f32], dim: usize, rows: &[f32]) -> Vec<u32> {
    Centroids::new(centroids, dim).nearest(rows)
}

/// The `n` nearest lists of every query, nearest first: the lists it probes.
#[cfg(test)]
pub(crate) fn probe_lists(
    centroids: &[f32],
    dim: usize,
    queries: &[f32],
    n: usize,
) -> Vec<Vec<u32>> {
    Centroids::new(centroids, dim).nearest_n(queries, n)
}

/// Every list, nearest to `q` first (the order a widening search follows).
#[cfg(test)]
pub(crate) fn lists_by_distance(centroids: &[f32], dim: usize, q: &[f32]) -> Vec<u32> {
    Centroids::new(centroids, dim).ranked(q)
}

/// The centroids of a trained index (none before training) with their
/// squared norms, computed once per training generation rather than once
/// per routed batch: routing one upserted vector then reads every centroid
/// once, not twice. Routing, probing and widening all rank lists with one
/// kernel ([`Centroids`]: canonical distances, ties to the lower list), so
/// a vector sits in the first list a query equal to it probes. Not `Debug`:
/// centroids are decrypted summaries of the data.
///
/// The centroids are also kept coded to 16 bits ([`Coded`]): routing one
/// vector, or picking one query's probes, screens those (half the bytes of
/// the `f32` centroids, which at 2000 lists of 768 dimensions no longer
/// fit a core's cache) and rescores the candidates exactly; the lists
/// chosen do not change.
#[derive(Clone, Default)]
pub(crate) struct Routes {
    centroids: Vec<f32>,
    norms: Norms,
    coded: Option<Coded>,
    dim: usize,
}

impl Routes {
    pub(crate) fn new(centroids: Vec<f32>, dim: usize) -> Self {
        let (norms, coded) = if centroids.is_empty() {
            (Norms::default(), None)
        } else {
            (
                Norms::of(&centroids, dim),
                Some(Coded::new(&centroids, dim)),
            )
        };
        Self {
            centroids,
            norms,
            coded,
            dim,
        }
    }

    /// The centroids, row-major (empty before training).
    pub(crate) fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Whether there are none (the index is not trained).
    pub(crate) fn is_empty(&self) -> bool {
        self.centroids.is_empty()
    }

    fn kernel(&self) -> Centroids<'_> {
        let kernel = Centroids::with_norms(&self.centroids, self.dim, &self.norms);
        match &self.coded {
            Some(coded) => kernel.with_coded(coded),
            None => kernel,
        }
    }

    /// The nearest list of every row: where upserts and training put a
    /// vector.
    pub(crate) fn nearest(&self, rows: &[f32]) -> Vec<u32> {
        self.kernel().nearest(rows)
    }

    /// The `n` nearest lists of every query, nearest first: the lists it
    /// probes.
    pub(crate) fn probe(&self, queries: &[f32], n: usize) -> Vec<Vec<u32>> {
        self.kernel().nearest_n(queries, n)
    }

    /// Every list, nearest to `q` first (the order a widening search
    /// follows).
    pub(crate) fn ranked(&self, q: &[f32]) -> Vec<u32> {
        self.kernel().ranked(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::l2sq;

    pub(crate) fn grid() -> (Vec<f32>, Vec<f32>) {
        // Ten centroids, with exact duplicates among them (ties).
        let mut centroids: Vec<f32> = (0..32).map(|i| (i * 7 % 13) as f32).collect();
        centroids.extend_from_within(0..8);
        let rows: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 * 0.5).collect();
        (centroids, rows)
    }

    #[test]
    pub(crate) fn routing_and_probing_agree() {
        let (centroids, rows) = grid();
        let dim = 4;
        let nearest = nearest_centroids(&centroids, dim, &rows);
        let probes = probe_lists(&centroids, dim, &rows, 1);
        // With norms kept from an earlier call: the same lists.
        let routes = Routes::new(centroids.clone(), dim);
        assert_eq!(routes.nearest(&rows), nearest);
        assert_eq!(routes.probe(&rows, 1), probes);
        assert_eq!(
            routes.probe(&rows, 3),
            probe_lists(&centroids, dim, &rows, 3)
        );
        for q in rows.chunks_exact(dim) {
            assert_eq!(routes.ranked(q), lists_by_distance(&centroids, dim, q));
        }
        assert_eq!(nearest.len(), rows.len() / dim);
        for (n, p) in nearest.iter().zip(&probes) {
            assert_eq!(p.as_slice(), [*n]);
        }
    }

    #[test]
    pub(crate) fn ties_go_to_the_lower_list_in_routing_and_probing() {
        // One far centroid, then 64 identical nearest ones.
        let dim = 2;
        let mut centroids = vec![100.0f32, 100.0];
        for _ in 0..64 {
            centroids.extend_from_slice(&[1.0, 1.0]);
        }
        let rows: Vec<f32> = (0..50).flat_map(|i| [i as f32 * 0.01, 0.0]).collect();
        assert!(nearest_centroids(&centroids, dim, &rows)
            .iter()
            .all(|&l| l == 1));
        for p in probe_lists(&centroids, dim, &rows, 1) {
            assert_eq!(p, [1]);
        }
        for mut p in probe_lists(&centroids, dim, &rows, 3) {
            p.sort_unstable();
            assert_eq!(p, [1, 2, 3]);
        }
    }

    #[test]
    pub(crate) fn widening_visits_lists_nearest_first() {
        let (centroids, rows) = grid();
        let dim = 4;
        for q in rows.chunks_exact(dim) {
            let order = lists_by_distance(&centroids, dim, q);
            assert_eq!(order.len(), centroids.len() / dim);
            let d = |l: u32| l2sq(q, &centroids[l as usize * dim..(l as usize + 1) * dim]);
            assert!(order.windows(2).all(|w| d(w[0]) <= d(w[1])), "{order:?}");
            // The probes of one query are its nearest lists.
            let mut probes = probe_lists(&centroids, dim, q, 3).remove(0);
            probes.sort_unstable_by(|a, b| d(*a).total_cmp(&d(*b)));
            let farthest_probe = probes.last().map_or(0.0, |&l| d(l));
            assert!(order[3..].iter().all(|&l| d(l) >= farthest_probe));
            // One kernel ranks both, ties included: the probes are the head.
            let mut head = order[..3].to_vec();
            head.sort_unstable();
            probes.sort_unstable();
            assert_eq!(head, probes);
        }
    }
}
