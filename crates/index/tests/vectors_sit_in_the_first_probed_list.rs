//! Routing and probing rank lists with one kernel: after either training
//! path (in memory, or streamed under a memory bound) and for upserts after
//! training, every stored vector sits in the first list that a query equal
//! to it probes — also for vectors exactly or nearly halfway between lists.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use vecseal_index::{Item, Metric, QueryOptions, TrainOptions};

/// Points of a small integer lattice (exact ties between lists, many
/// duplicates), and points within a few ulps of halfway between two random
/// centres (ties that only rounding decides).
fn tied(n: usize) -> Vec<Vec<f32>> {
    let d = 8;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..d).map(|_| rng.gen_range(-3.0f32..3.0)).collect())
        .collect();
    (0..n)
        .map(|i| match i % 3 {
            0 => (0..d).map(|j| ((i / 3 + j) % 4) as f32).collect(),
            1 => {
                let c = &centres[i % 12];
                c.iter().map(|v| v + rng.gen_range(-0.5f32..0.5)).collect()
            }
            _ => {
                let (a, b) = (&centres[i % 12], &centres[(i / 12) % 12]);
                a.iter()
                    .zip(b)
                    .map(|(x, y)| {
                        (x + y) / 2.0 * (1.0 + rng.gen_range(-4.0f32..4.0) * f32::EPSILON)
                    })
                    .collect()
            }
        })
        .collect()
}

/// The best hit with one probe is as near as the best over every list (the
/// vector itself: distance 0, or for cosine the rounding of 1 − v̂·v̂).
///
/// At a compressed precision the one-probe query reranks more candidates
/// than its list holds (so it finds the nearest of the list whatever its
/// code), and must find the vector itself, for every tenth vector.
fn assert_each_is_found_with_one_probe(index: &vecseal_index::Index, data: &[Vec<f32>]) {
    if precision().is_compressed() {
        let one = QueryOptions::default()
            .with_top_k(1)
            .with_n_probes(1)
            .with_rerank_mult(1500);
        let data: Vec<Vec<f32>> = data.iter().step_by(10).cloned().collect();
        let near = index.query(&data, &one).unwrap_or_else(|e| panic!("{e}"));
        for (i, hits) in near.iter().enumerate() {
            let d = hits.first().and_then(|h| h.distance);
            assert!(
                d.is_some_and(|d| d < 1e-6),
                "vector #{} is not in the first list its own query probes: {d:?}",
                i * 10
            );
        }
        return;
    }
    let one = QueryOptions::default().with_top_k(1).with_n_probes(1);
    let all = QueryOptions::default()
        .with_top_k(1)
        .with_n_probes(index.n_lists());
    let (near, best) = (
        index.query(data, &one).unwrap_or_else(|e| panic!("{e}")),
        index.query(data, &all).unwrap_or_else(|e| panic!("{e}")),
    );
    for (i, (q, (a, b))) in data.iter().zip(near.iter().zip(&best)).enumerate() {
        let d = |h: &Vec<vecseal_index::Hit>| h.first().and_then(|h| h.distance);
        assert!(d(b).is_some_and(|d| d < 1e-6), "#{i}: {:?}", d(b));
        assert_eq!(
            d(a),
            d(b),
            "vector #{i} {q:?} is not in the first list its own query probes"
        );
    }
}

#[test]
fn every_vector_is_in_the_first_list_its_query_probes() {
    for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
        for memory in [None, Some(64)] {
            let (db, _store) = test_db();
            let index = create(&db, metric);
            let data = tied(10_500);
            index.upsert_vectors(&ids(data.len()), &data).unwrap();
            let mut train = TrainOptions::default().with_n_lists(24).with_seed(1);
            if let Some(mb) = memory {
                train = train.with_max_memory(mb);
            }
            index.train(&train).unwrap();
            assert_each_is_found_with_one_probe(&index, &data);
            // Upserts after training are routed by the same kernel.
            let more: Vec<Item> = tied(700)
                .into_iter()
                .enumerate()
                .map(|(i, v)| Item::new(format!("new-{i}"), v.iter().map(|x| x * 0.5).collect()))
                .collect();
            let vectors: Vec<Vec<f32>> = more.iter().filter_map(|it| it.vector.clone()).collect();
            index.upsert(more).unwrap();
            assert_each_is_found_with_one_probe(&index, &vectors);
        }
    }
}
