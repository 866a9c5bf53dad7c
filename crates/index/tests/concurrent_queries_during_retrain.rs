//! Queries from several threads while upserts and a retrain run.

mod common;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use vecseal_index::{Item, Metric, QueryOptions, TrainOptions};

#[test]
fn queries_see_a_consistent_state_during_writes_and_retrain() {
    let (db, _store) = test_db();
    let index = Arc::new(create(&db, Metric::SquaredEuclidean));
    let data = clustered(11_000, 8, 32, 5);
    index
        .upsert_vectors(&ids(data.len()), &data)
        .unwrap_or_else(|e| panic!("{e}"));
    index
        .train(&TrainOptions::default().with_n_lists(32).with_max_iters(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (index, stop, q) = (Arc::clone(&index), Arc::clone(&stop), data[t].clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) || n == 0 {
                    let hits = index
                        .query(
                            std::slice::from_ref(&q),
                            &QueryOptions::default()
                                .with_top_k(10)
                                .with_n_probes(32)
                                .with_rerank_mult(EXACT_RERANK),
                        )
                        .unwrap_or_else(|e| panic!("{e}"));
                    // Exact at full probes: the query's own vector is first, every time.
                    assert_eq!(hits[0][0].distance, Some(0.0));
                    assert_eq!(hits[0].len(), 10);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let writer = {
        let index = Arc::clone(&index);
        std::thread::spawn(move || {
            for i in 0..20 {
                index
                    .upsert(vec![Item::new(format!("w{i}"), vec![i as f32; 8])])
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        })
    };
    index
        .train(&TrainOptions::default().with_n_lists(16).with_max_iters(5))
        .unwrap_or_else(|e| panic!("{e}"));
    writer.join().unwrap_or_else(|_| panic!("writer panicked"));
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(index.count().unwrap(), 11_020);
}
