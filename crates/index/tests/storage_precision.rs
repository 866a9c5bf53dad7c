//! Compressed search blocks: at every precision, with the list cache off
//! and on, upserts (batches and one at a time), deletes and training keep
//! every vector findable; a query whose candidates cover the index returns
//! exact brute force; the default rerank finds nearly all of it; and the
//! blocks shrink with the precision.

mod common;
use std::sync::Arc;

use common::*;
use vecseal_index::{Database, IndexConfig, Item, Metric, Precision, QueryOptions, TrainOptions};
use vecseal_storage::{MemStore, Store};

const DIM: usize = 24;

/// Bytes of sealed blocks in `store`.
fn block_bytes(store: &MemStore) -> usize {
    store
        .scan_prefix("blocks", b"")
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|kv| kv.map_or_else(|e| panic!("{e}"), |(k, v)| k.len() + v.len()))
        .sum()
}

fn ids_of(hits: &[vecseal_index::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

#[test]
fn every_precision_answers_like_brute_force_over_its_candidates() {
    let data = clustered(12_000, DIM, 12, 5);
    let all_ids = ids(data.len());
    let queries: Vec<Vec<f32>> = clustered(40, DIM, 12, 6);
    let mut float32_bytes = 0;
    for precision in Precision::ALL {
        for cache in [0, 4 << 20] {
            let store = Arc::new(MemStore::new(vecseal_index::NAMESPACES));
            let db = Database::new(Arc::clone(&store) as Arc<dyn Store>).with_list_cache(cache);
            let index = db
                .create_index(
                    "t",
                    owner(1),
                    IndexConfig::default()
                        .with_metric(Metric::SquaredEuclidean)
                        .with_storage_precision(precision),
                )
                .unwrap();
            assert_eq!(index.info().unwrap().storage_precision, precision);
            // One batch, then one item at a time (stored blocks appended
            // to, their ranges widened), then deletes.
            index
                .upsert_vectors(&all_ids[..11_600], &data[..11_600])
                .unwrap();
            for (id, v) in all_ids[11_600..].iter().zip(&data[11_600..]) {
                // Far outside the first batch's range, half of them.
                let v: Vec<f32> = v.iter().map(|x| x * 3.0).collect();
                index
                    .upsert_vectors(std::slice::from_ref(id), &[v])
                    .unwrap();
            }
            let deleted: Vec<String> = all_ids.iter().step_by(7).cloned().collect();
            index.delete(&deleted).unwrap();
            let model: Vec<(String, Vec<f32>)> = all_ids
                .iter()
                .zip(&data)
                .enumerate()
                .filter(|(i, _)| i % 7 != 0)
                .map(|(i, (id, v))| {
                    let v = if i >= 11_600 {
                        v.iter().map(|x| x * 3.0).collect()
                    } else {
                        v.clone()
                    };
                    (id.clone(), v)
                })
                .collect();
            let every = QueryOptions::default()
                .with_top_k(10)
                .with_rerank_mult(model.len());
            let check = |opts: &QueryOptions, what: &str| {
                let got = index.query(&queries, opts).unwrap();
                for (q, hits) in queries.iter().zip(&got) {
                    assert_eq!(
                        ids_of(hits),
                        brute(&model, q, 10),
                        "{precision}, cache {cache}: {what}"
                    );
                    for h in hits {
                        let exact = model
                            .iter()
                            .find(|(id, _)| *id == h.id)
                            .map(|(_, v)| sq(q, v));
                        assert_eq!(h.distance, exact, "{precision}: distances are exact");
                    }
                }
            };
            check(&every, "untrained");
            // The default rerank: nearly all of the exact top 10 (tq4, 16
            // levels per coordinate, a little less).
            let got = index
                .query(&queries, &QueryOptions::default().with_top_k(10))
                .unwrap();
            let found: usize = queries
                .iter()
                .zip(&got)
                .map(|(q, hits)| {
                    let want = brute(&model, q, 10);
                    hits.iter().filter(|h| want.contains(&h.id)).count()
                })
                .sum();
            let least = if precision == Precision::Tq4 { 85 } else { 95 };
            assert!(
                found * 100 >= least * queries.len() * 10,
                "{precision}: recall {found} of 400"
            );
            // A second query reads the blocks from the cache when it is on.
            check(&every, "untrained, again");
            // Metadata and contents of reranked results come with them.
            let probe = vec![1000.0; DIM];
            index
                .upsert(vec![Item::new("probe", probe.clone())
                    .with_contents(b"probe contents".to_vec())
                    .with_metadata(serde_json::json!({"k": precision.name()}))])
                .unwrap();
            let got = index
                .query(
                    &[probe],
                    &QueryOptions::default()
                        .with_top_k(1)
                        .with_metadata(true)
                        .with_contents(true),
                )
                .unwrap();
            assert_eq!(got[0][0].id, "probe");
            assert_eq!(got[0][0].contents.as_deref(), Some(&b"probe contents"[..]));
            assert_eq!(
                got[0][0].metadata,
                Some(serde_json::json!({"k": precision.name()}))
            );
            index.delete(&["probe".to_owned()]).unwrap();
            index
                .train(&TrainOptions::default().with_n_lists(8).with_seed(3))
                .unwrap();
            check(&every.clone().with_n_probes(8), "trained, every list");
            check(
                &every.clone().with_n_probes(8),
                "trained, every list, again",
            );
            let bytes = block_bytes(&store);
            if precision == Precision::Float32 {
                float32_bytes = bytes;
            } else {
                // Codes plus ids and (8/4-bit) ranges: well under float32.
                let most = match precision {
                    Precision::Float16 => 0.6,
                    Precision::Tq8 => 0.4,
                    _ => 0.3,
                };
                assert!(
                    (bytes as f64) < most * float32_bytes as f64,
                    "{precision}: {bytes} bytes of blocks against {float32_bytes} at float32"
                );
            }
        }
    }
}

/// The same over longer rows (300 dimensions: groups of 64 and a tail):
/// at 8 bits a batch screens with the codes in bytes on CPUs with AVX-512
/// VNNI; at float16 a lone query is summed with its codes widened in
/// registers, and two or three share decoded pieces. Each query of a
/// batch gets the answer it gets alone.
#[test]
fn a_batch_of_long_rows_answers_each_query_as_alone() {
    let dim = 300;
    let data = clustered(10_000, dim, 8, 17);
    let all_ids = ids(data.len());
    let queries = clustered(64, dim, 8, 18);
    for (precision, metric) in METRICS
        .into_iter()
        .map(|m| (Precision::Tq8, m))
        .chain([(Precision::Float16, Metric::Cosine)])
    {
        let (_db, index) = loaded(metric, precision, &all_ids, &data);
        for trained in [false, true] {
            if trained {
                index.train(&TrainOptions::default()).unwrap();
            }
            for opts in [
                QueryOptions::default().with_top_k(10),
                QueryOptions::default().with_top_k(3).with_rerank_mult(1),
            ] {
                let what = format!("{precision} {metric:?}, trained {trained}");
                assert_batch_answers_as_alone(&index, &queries, &opts, &what);
                for few in [2, 3] {
                    let what = format!("{what}, {few} queries");
                    assert_batch_answers_as_alone(&index, &queries[..few], &opts, &what);
                }
            }
        }
    }
}

const METRICS: [Metric; 4] = [
    Metric::Cosine,
    Metric::InnerProduct,
    Metric::SquaredEuclidean,
    Metric::Euclidean,
];

/// A new index under `metric` at `precision` holding `data` as items
/// `ids`, with the database it lives in.
fn loaded(
    metric: Metric,
    precision: Precision,
    ids: &[String],
    data: &[Vec<f32>],
) -> (Database, vecseal_index::Index) {
    let db = Database::new(Arc::new(MemStore::new(vecseal_index::NAMESPACES)));
    let index = db
        .create_index(
            "t",
            owner(1),
            IndexConfig::default()
                .with_metric(metric)
                .with_storage_precision(precision),
        )
        .expect("create the index");
    index.upsert_vectors(ids, data).expect("upsert the data");
    (db, index)
}

/// Each query of `queries` gets, in one batch, exactly the answer it gets
/// alone.
fn assert_batch_answers_as_alone(
    index: &vecseal_index::Index,
    queries: &[Vec<f32>],
    opts: &QueryOptions,
    what: &str,
) {
    let batch = index.query(queries, opts).expect("query the batch");
    for (q, hits) in queries.iter().zip(&batch) {
        let alone = index
            .query(std::slice::from_ref(q), opts)
            .expect("query alone");
        assert_eq!(exact_hits(&alone[0]), exact_hits(hits), "{what}");
    }
}

/// `(id, distance bits)` of each hit, to compare results exactly.
fn exact_hits(hits: &[vecseal_index::Hit]) -> Vec<(String, Option<u32>)> {
    hits.iter()
        .map(|h| (h.id.clone(), h.distance.map(f32::to_bits)))
        .collect()
}

/// Under every metric the first pass over 8- and 4-bit codes runs in
/// integers (float16 and float32 in floating point): at every precision a
/// batch answers each query exactly as that query sent alone
/// (the batch has enough queries per block for the GEMM screen, and
/// batches of a few have not), trained or not; and with every item a
/// candidate the results are float32's, bit for bit.
#[test]
fn every_metric_answers_a_batch_as_each_query_alone() {
    let dim = 50;
    let data = clustered(11_000, dim, 12, 7);
    let all_ids = ids(data.len());
    let queries = clustered(64, dim, 12, 8);
    for metric in METRICS {
        let open = |precision: Precision| loaded(metric, precision, &all_ids, &data);
        let (_db32, exact) = open(Precision::Float32);
        let every = QueryOptions::default()
            .with_top_k(10)
            .with_rerank_mult(data.len());
        let want = exact.query(&queries, &every).unwrap();
        for precision in Precision::ALL {
            let (_db, index) = open(precision);
            for trained in [false, true] {
                if trained {
                    index.train(&TrainOptions::default()).unwrap();
                }
                let what = format!("{metric:?} {precision}, trained {trained}");
                for opts in [QueryOptions::default().with_top_k(10), every.clone()] {
                    assert_batch_answers_as_alone(&index, &queries, &opts, &what);
                    // Too few queries for a screen: each block is scored
                    // query by query, or a few queries together.
                    for few in [2, 3, 5] {
                        let what = format!("{what}, {few} queries");
                        assert_batch_answers_as_alone(&index, &queries[..few], &opts, &what);
                    }
                }
                if !trained {
                    let got = index.query(&queries, &every).unwrap();
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(
                            exact_hits(g),
                            exact_hits(w),
                            "{what}: every item a candidate"
                        );
                    }
                }
            }
        }
    }
}
