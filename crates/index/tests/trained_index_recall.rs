//! Training: recall on clustered data, exactness at n_probes = n_lists,
//! parameter validation, retrain, upserts after training, all dimensions.

mod common;
use common::*;
use vecseal_index::{Error, Hit, Item, Metric, QueryOptions, TrainOptions, TrainingState};

/// Query options. At a compressed precision (`VECSEAL_TEST_PRECISION`)
/// 32 candidates per result are reranked, so that the comparisons with
/// exact search below hold there too; the default multipliers are
/// measured by the recall benchmarks (docs/BENCHMARKS.md).
fn query_opts() -> QueryOptions {
    QueryOptions::default().with_rerank_mult(32)
}

fn load(index: &vecseal_index::Index, data: &[Vec<f32>]) {
    let ids = ids(data.len());
    for (i, c) in data.chunks(5000).enumerate() {
        index
            .upsert_vectors(&ids[i * 5000..i * 5000 + c.len()], c)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The share of the exact top 10 that `ann` found.
fn recall_at_10(exact: &[Vec<Hit>], ann: &[Vec<Hit>]) -> f64 {
    let found: usize = exact
        .iter()
        .zip(ann)
        .map(|(e, a)| a.iter().filter(|h| e.iter().any(|x| x.id == h.id)).count())
        .sum();
    found as f64 / (exact.len() * 10) as f64
}

#[test]
fn recall_after_training_and_exact_at_full_probes() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    let data = clustered(12_000, 16, 64, 1);
    load(&index, &data);
    // Queries: the first 200 stored vectors, shifted a little.
    let queries: Vec<Vec<f32>> = data
        .iter()
        .take(200)
        .map(|d| d.iter().map(|v| v + 0.05).collect())
        .collect();
    let opts = query_opts().with_top_k(10);
    let exact = index
        .query(&queries, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.training_state(), TrainingState::Untrained);
    index
        .train(&TrainOptions::default().with_n_lists(64).with_seed(3))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.training_state(), TrainingState::Trained);
    assert_eq!(index.n_lists(), 64);
    let ann = index
        .query(&queries, &opts.clone().with_n_probes(8))
        .unwrap_or_else(|e| panic!("{e}"));
    let recall = recall_at_10(&exact, &ann);
    assert!(recall >= 0.95, "recall@10 = {recall}");
    let full = index
        .query(&queries, &opts.clone().with_n_probes(64))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(full, exact);

    // New upserts go to their nearest list and are found.
    index
        .upsert(vec![Item::new("new", vec![1000.0; 16])])
        .unwrap_or_else(|e| panic!("{e}"));
    let hit = index
        .query(&[vec![1000.0; 16]], &query_opts().with_top_k(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hit[0][0].id, "new");
    // Retrain keeps every item.
    index
        .train(&TrainOptions::default().with_n_lists(32))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.n_lists(), 32);
    assert_eq!(index.count().unwrap(), 12_001);
    // Reloading sees the trained state.
    let again = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.training_state(), TrainingState::Trained);
    assert_eq!(
        again
            .query(&queries, &opts.with_n_probes(32))
            .unwrap_or_default(),
        index
            .query(&queries, &query_opts().with_top_k(10).with_n_probes(32))
            .unwrap_or_default()
    );
}

#[test]
fn too_few_vectors_and_bad_parameters_are_rejected_before_work() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::Euclidean);
    load(&index, &clustered(500, 4, 4, 2));
    assert!(matches!(
        index.train(&TrainOptions::default()),
        Err(Error::NotEnoughVectors {
            have: 500,
            need: 10_000
        })
    ));
    assert!(matches!(
        index.train(&TrainOptions::default().with_n_lists(6000)),
        Err(Error::NotEnoughVectors {
            have: 500,
            need: 12000
        })
    ));
    assert!(matches!(
        index.train(&TrainOptions::default().with_tolerance(f64::NAN)),
        Err(Error::InvalidParameter {
            name: "tolerance",
            ..
        })
    ));
    assert!(matches!(
        index.train(&TrainOptions::default().with_tolerance(-1.0)),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        index.train(&TrainOptions::default().with_max_iters(0)),
        Err(Error::InvalidParameter {
            name: "max_iters",
            ..
        })
    ));
    assert_eq!(index.training_state(), TrainingState::Untrained);
}

#[test]
fn every_dimension_trains_and_queries() {
    for d in [1usize, 3, 50, 100, 768] {
        let (db, _store) = test_db();
        let index = create(&db, Metric::Cosine);
        let data = clustered(10_000, d, 16, d as u64);
        load(&index, &data);
        index
            .train(&TrainOptions::default().with_n_lists(16).with_max_iters(5))
            .unwrap_or_else(|e| panic!("d={d}: {e}"));
        let hits = index
            .query(&data[..3], &query_opts().with_top_k(5).with_n_probes(16))
            .unwrap_or_else(|e| panic!("{e}"));
        for h in &hits {
            assert_eq!(h.len(), 5, "d={d}");
            assert!(h[0].distance.unwrap_or(1.0) < 1e-4, "d={d}: {:?}", h[0]);
        }
    }
}

#[test]
fn bad_vectors_are_rejected_and_nothing_is_lost() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    index
        .upsert(vec![Item::new("a", vec![1.0, 2.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    let e = index
        .upsert(vec![
            Item::new("b", vec![1.0, 2.0]),
            Item::new("c", vec![1.0, 2.0, 3.0]),
        ])
        .err();
    assert!(
        matches!(
            e,
            Some(Error::DimensionMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(matches!(
        index.upsert(vec![Item::new("d", vec![f32::NAN, 1.0])]),
        Err(Error::NonFinite { position: 0, .. })
    ));
    assert!(matches!(
        index.upsert(vec![Item::new("", vec![1.0, 1.0])]),
        Err(Error::EmptyId(0))
    ));
    assert!(matches!(
        index.upsert(vec![
            Item::new("m", vec![1.0, 1.0]).with_metadata(serde_json::json!(3))
        ]),
        Err(Error::BadMetadata(_))
    ));
    assert!(matches!(
        index.query(&[vec![1.0]], &query_opts()),
        Err(Error::DimensionMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        index.query(&[vec![1.0, 1.0]], &query_opts().with_top_k(0)),
        Err(Error::InvalidParameter { .. })
    ));
    assert_eq!(index.list_ids().unwrap(), vec!["a".to_owned()]);
}

/// With `max_memory`, training streams the vectors block by block (a sample
/// for k-means, then grouped passes to write the lists) and gives an index
/// as good as the in-memory path: every item kept and findable, recall high.
#[test]
fn training_within_max_memory_streams_and_keeps_everything() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    // 12 000 × 16 floats = 768 KB of vectors; a 1 MB budget forces a
    // sample and several list groups.
    let data = clustered(12_000, 16, 64, 5);
    load(&index, &data);
    let queries: Vec<Vec<f32>> = data
        .iter()
        .step_by(60)
        .map(|d| d.iter().map(|v| v + 0.05).collect())
        .collect();
    let opts = query_opts().with_top_k(10);
    let exact = index
        .query(&queries, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    index
        .train(
            &TrainOptions::default()
                .with_n_lists(64)
                .with_max_memory(1)
                .with_seed(4),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.n_lists(), 64);
    assert_eq!(index.count().unwrap(), data.len());
    assert_eq!(index.list_ids().unwrap().len(), data.len());
    let full = index
        .query(&queries, &opts.clone().with_n_probes(64))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(full, exact);
    let ann = index
        .query(&queries, &opts.clone().with_n_probes(8))
        .unwrap_or_else(|e| panic!("{e}"));
    let recall = recall_at_10(&exact, &ann);
    assert!(recall >= 0.95, "recall@10 = {recall}");
    // Every stored vector sits in the list its nearest centroid names: a
    // one-probe query for it finds it at distance 0.
    let own: Vec<Vec<f32>> = data.iter().step_by(97).cloned().collect();
    let hits = index
        .query(&own, &query_opts().with_top_k(1).with_n_probes(1))
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &hits {
        assert_eq!(h[0].distance, Some(0.0));
    }
}

/// A list cache (small enough to evict) returns exactly what reading every
/// block from the store returns, also after upserts and deletes through the
/// cached handle: blocks are never stale.
#[test]
fn the_list_cache_changes_no_result() {
    use std::sync::Arc;
    use vecseal_index::Database;
    let guard = test_store();
    let store = Arc::clone(&guard.store);
    let plain = Database::new(Arc::clone(&store));
    let index = create(&plain, Metric::Cosine);
    let data = clustered(10_000, 100, 40, 5);
    load(&index, &data);
    index
        .train(&TrainOptions::default().with_n_lists(40).with_seed(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let queries: Vec<Vec<f32>> = data.iter().step_by(97).cloned().collect();
    let opts = query_opts().with_top_k(10).with_n_probes(6);
    let query =
        |ix: &vecseal_index::Index| ix.query(&queries, &opts).unwrap_or_else(|e| panic!("{e}"));
    // About two blocks of 100-d vectors fit: most reads evict.
    let cached_db = Database::new(Arc::clone(&store)).with_list_cache(300 << 10);
    let cached = cached_db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let want = query(&index);
    assert_eq!(query(&cached), want, "cold cache");
    assert_eq!(query(&cached), want, "warm cache");

    let gone: Vec<String> = ids(10_000).into_iter().step_by(7).collect();
    cached.delete(&gone).unwrap_or_else(|e| panic!("{e}"));
    let moved: Vec<String> = ids(10_000).into_iter().skip(3).step_by(11).collect();
    let far: Vec<Vec<f32>> = moved.iter().map(|_| data[5].clone()).collect();
    cached
        .upsert_vectors(&moved, &far)
        .unwrap_or_else(|e| panic!("{e}"));
    let after = query(&cached);
    let fresh = Database::new(Arc::clone(&store))
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(query(&fresh), after);
    assert_ne!(after, want, "the changes must show");
    assert!(after.iter().flatten().all(|h| !gone.contains(&h.id)));
}
