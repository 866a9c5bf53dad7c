//! Reads of many item records at once (a `get` of many ids, a batch's
//! rerank) go to the store in pieces on several threads: every record
//! still comes back under its own id, in the order asked, with missing ids
//! reported as missing.

mod common;
use common::*;
use vecseal_index::{Fields, Index, Item, Metric, QueryOptions};

/// Item `i`'s vector: distinct for every `i`.
fn vector(i: usize) -> Vec<f32> {
    vec![i as f32, (i % 7) as f32, 1.0, -(i as f32) / 3.0]
}

/// An index holding items `item-0` … `item-{n-1}` (keep the store alive
/// as long as the index).
fn holding(n: usize) -> (Index, TestStore) {
    let (db, store) = test_db();
    let index = create(&db, Metric::Euclidean);
    let items: Vec<Item> = (0..n)
        .map(|i| Item::new(format!("item-{i}"), vector(i)))
        .collect();
    index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    (index, store)
}

#[test]
fn a_get_of_many_ids_returns_each_record_under_its_own_id() {
    let n = 1500;
    let (index, _store) = holding(n);

    // Several pieces' worth of ids, out of order, with missing ones
    // between them.
    let mut asked = Vec::new();
    for i in (0..n).rev().step_by(2).chain((0..n).step_by(2)) {
        asked.push(format!("item-{i}"));
        if i % 97 == 0 {
            asked.push(format!("absent-{i}"));
        }
    }
    let got = index
        .get(&asked, Fields::ALL)
        .unwrap_or_else(|e| panic!("{e}"));
    let present: Vec<&String> = asked.iter().filter(|id| id.starts_with("item-")).collect();
    let absent: Vec<&String> = asked
        .iter()
        .filter(|id| id.starts_with("absent-"))
        .collect();
    assert_eq!(got.items.len(), present.len());
    assert_eq!(got.missing.iter().collect::<Vec<_>>(), absent);
    for (item, want) in got.items.iter().zip(present) {
        assert_eq!(&item.id, want);
        let i: usize = want["item-".len()..].parse().unwrap();
        assert_eq!(item.vector.as_deref(), Some(&vector(i)[..]), "{want}");
    }
}

#[test]
fn a_batch_reranks_across_pieces_and_finds_each_query_itself() {
    let n = 1200;
    let (index, _store) = holding(n);
    // One query per item: the batch's rerank reads more records than one
    // piece holds, and each query's nearest item is itself, at distance 0.
    let queries: Vec<Vec<f32>> = (0..n).map(vector).collect();
    let opts = QueryOptions::default()
        .with_top_k(3)
        .with_distance(true)
        .with_rerank_mult(EXACT_RERANK);
    let hits = index
        .query(&queries, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h[0].id, format!("item-{i}"));
        assert_eq!(h[0].distance, Some(0.0));
    }
}
