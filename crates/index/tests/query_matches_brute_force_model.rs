//! A model test: random upserts, deletes, gets and queries against a plain
//! map; before training, query results equal brute force exactly.

mod common;
use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use vecseal_index::{Fields, Item, Metric, QueryOptions};

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(u8, [i8; 3])>),
    Delete(Vec<u8>),
    Query([i8; 3], usize),
    Get(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let v = any::<[i8; 3]>();
    prop_oneof![
        proptest::collection::vec((0u8..30, v), 1..8).prop_map(Op::Upsert),
        proptest::collection::vec(0u8..30, 1..4).prop_map(Op::Delete),
        (v, 1usize..12).prop_map(|(q, k)| Op::Query(q, k)),
        proptest::collection::vec(0u8..30, 1..4).prop_map(Op::Get),
    ]
}

fn f(v: [i8; 3]) -> Vec<f32> {
    v.iter().map(|&x| f32::from(x)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn index_matches_model(ops in proptest::collection::vec(op(), 1..30)) {
        let (db, _store) = test_db();
        let index = create(&db, Metric::SquaredEuclidean);
        let mut model: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Upsert(items) => {
                    let items: Vec<Item> = items.iter().map(|(i, v)| Item::new(format!("{i}"), f(*v)).with_contents(vec![*i])).collect();
                    for it in &items { model.insert(it.id.clone(), it.vector.clone().unwrap_or_default()); }
                    index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
                }
                Op::Delete(ids) => {
                    let ids: Vec<String> = ids.iter().map(|i| format!("{i}")).collect();
                    let mut uniq = ids.clone(); uniq.sort(); uniq.dedup();
                    let expect = uniq.iter().filter(|i| model.remove(*i).is_some()).count();
                    prop_assert_eq!(index.delete(&ids).unwrap_or_else(|e| panic!("{e}")), expect);
                }
                Op::Query(q, k) => {
                    let got = index.query(&[f(q)], &QueryOptions::default().with_top_k(k)).unwrap_or_else(|e| panic!("{e}"));
                    let data: Vec<(String, Vec<f32>)> = model.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
                    let want = brute(&data, &f(q), k);
                    let got_ids: Vec<String> = got[0].iter().map(|h| h.id.clone()).collect();
                    prop_assert_eq!(&got_ids, &want);
                    for h in &got[0] {
                        let d = sq(&f(q), &model[&h.id]);
                        prop_assert_eq!(h.distance, Some(d));
                    }
                }
                Op::Get(ids) => {
                    let ids: Vec<String> = ids.iter().map(|i| format!("{i}")).collect();
                    let r = index.get(&ids, Fields::ALL).unwrap_or_else(|e| panic!("{e}"));
                    for it in &r.items { prop_assert_eq!(it.vector.as_ref(), model.get(&it.id)); }
                    for m in &r.missing { prop_assert!(!model.contains_key(m)); }
                    prop_assert_eq!(r.items.len() + r.missing.len(), ids.len());
                }
            }
            prop_assert_eq!(index.count().unwrap(), model.len());
            prop_assert_eq!(index.list_ids().unwrap(), model.keys().cloned().collect::<Vec<_>>());
        }
    }
}

/// With one dimension a block holds tens of thousands of vectors, so a batch
/// of queries is scored against it in groups: results still equal brute
/// force, ties (many, with integer coordinates) broken by id.
#[test]
fn large_blocks_and_many_queries_equal_brute_force() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    let data: Vec<(String, Vec<f32>)> = (0..20_000)
        .map(|i| {
            (
                format!("{i:05}"),
                vec![f32::from((i * 7919 % 2001) as i16 - 1000)],
            )
        })
        .collect();
    let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) = data.iter().cloned().unzip();
    index
        .upsert_vectors(&ids, &vectors)
        .unwrap_or_else(|e| panic!("{e}"));
    let queries: Vec<Vec<f32>> = (0..120)
        .map(|i| vec![f32::from(i as i16 * 17 - 1000)])
        .collect();
    // At a compressed precision, every vector a candidate: the result is
    // then exact (fewer candidates are the approximation measured by the
    // recall benchmarks).
    let opts = QueryOptions::default().with_top_k(7).with_rerank_mult(3000);
    let got = index
        .query(&queries, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    for (q, hits) in queries.iter().zip(&got) {
        let got_ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got_ids, brute(&data, q, 7), "query {q:?}");
    }
    // One at a time, each query's set starts empty on a large block and
    // is capped by the block's own scores (`scan::row_cap`); 30 results
    // span several distances (each value is held by about 10 vectors).
    let opts = opts.with_top_k(30);
    for q in queries.iter().step_by(13) {
        let alone = index
            .query(std::slice::from_ref(q), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        let got_ids: Vec<String> = alone[0].iter().map(|h| h.id.clone()).collect();
        assert_eq!(got_ids, brute(&data, q, 30), "query {q:?} alone");
    }
}

/// A batch scores blocks differently from a lone query (a GEMM screen and
/// exact rescoring for many queries at small dimensions, the tiled kernel
/// otherwise); results, distances and ties must be identical.
#[test]
fn batched_and_single_queries_agree_bit_for_bit() {
    for metric in [
        Metric::Cosine,
        Metric::InnerProduct,
        Metric::SquaredEuclidean,
        Metric::Euclidean,
    ] {
        let (db, _store) = test_db();
        let index = create(&db, metric);
        let mut data = clustered(3000, 50, 20, 8);
        // Exact duplicates under other ids: ties broken by id.
        data.extend_from_within(..300);
        index
            .upsert_vectors(&ids(data.len()), &data)
            .unwrap_or_else(|e| panic!("{e}"));
        let queries: Vec<Vec<f32>> = data
            .iter()
            .step_by(40)
            .map(|v| v.iter().map(|x| x * 0.9 + 0.01).collect())
            .collect();
        assert!(queries.len() >= 64);
        let opts = vecseal_index::QueryOptions::default().with_top_k(12);
        let batch = index
            .query(&queries, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        for (q, got) in queries.iter().zip(&batch) {
            let alone = index
                .query(std::slice::from_ref(q), &opts)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&alone[0], got, "{metric:?}");
        }
    }
}
