//! Inputs past a documented limit: a clear error naming the field and the
//! limit, nothing written, and the index stays usable (and loadable).

mod common;
use common::*;
use serde_json::{json, Value};
use vecseal_index::{
    Error, Index, Item, Metric, QueryOptions, TrainOptions, MAX_CONTENTS_BYTES, MAX_ID_BYTES,
    MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_TOP_K,
};

/// `{"a": {"a": … {"a": 1}}}` nested `depth` objects deep.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        // Not `json!({"a": v})`: that serializes `v` again, recursively.
        let mut object = serde_json::Map::new();
        object.insert("a".into(), v);
        v = Value::Object(object);
    }
    v
}

fn invalid(r: vecseal_index::Result<usize>, field: &str) -> String {
    match r {
        Err(e @ Error::InvalidParameter { name, .. }) if name == field => e.to_string(),
        other => panic!("expected an invalid {field}, got {other:?}"),
    }
}

/// Upserts one good item, then checks that `bad` is refused with an error
/// on `field` that mentions `limit`, writes nothing, and leaves an index
/// that loads again and still holds the good item.
fn refused(bad: Item, field: &str, limit: &str) {
    let (db, store) = test_db();
    let index = create(&db, Metric::Cosine);
    index
        .upsert(vec![Item::new("good", vec![1.0, 0.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    let before = dump(&store);
    let msg = invalid(index.upsert(vec![bad]), field);
    assert!(
        msg.contains(limit),
        "{msg:?} does not state the limit {limit}"
    );
    assert!(dump(&store) == before, "a refused upsert wrote records");
    drop(index);
    let index = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("the index no longer loads: {e}"));
    assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), 1);
}

fn item(id: impl Into<String>) -> Item {
    Item::new(id, vec![0.0, 1.0])
}

#[test]
fn metadata_nested_too_deep_is_refused() {
    refused(
        item("deep").with_metadata(nested(MAX_METADATA_DEPTH + 1)),
        "metadata",
        "64",
    );
    // Far deeper than serde_json reads back (128): the case that made an
    // index unopenable.
    refused(
        item("deeper").with_metadata(nested(1_000)),
        "metadata",
        "64",
    );
    // An array counts as a level too.
    let mut v = json!([1]);
    for _ in 1..MAX_METADATA_DEPTH {
        v = Value::Array(vec![v]);
    }
    let mut object = serde_json::Map::new();
    object.insert("a".into(), v);
    refused(
        item("arrays").with_metadata(Value::Object(object)),
        "metadata",
        "64",
    );

    // At the limit: stored, and the index loads with it.
    let (db, _store) = test_db();
    let index = create(&db, Metric::Cosine);
    index
        .upsert(vec![item("ok").with_metadata(nested(MAX_METADATA_DEPTH))])
        .unwrap_or_else(|e| panic!("{e}"));
    drop(index);
    let index = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), 1);
}

#[test]
fn ids_contents_and_metadata_have_size_limits() {
    refused(item("x".repeat(MAX_ID_BYTES + 1)), "item id", "1024");
    refused(
        item("big").with_contents(vec![7u8; MAX_CONTENTS_BYTES + 1]),
        "contents",
        "64 MiB",
    );
    let text = "y".repeat(MAX_METADATA_BYTES);
    refused(
        item("fat").with_metadata(json!({ "t": text })),
        "metadata",
        "1 MiB",
    );

    // At the limits: stored and read back.
    let (db, _store) = test_db();
    let index = create(&db, Metric::Cosine);
    let long = "é".repeat(MAX_ID_BYTES / 2);
    index
        .upsert(vec![item(long.clone()).with_contents(vec![1u8; 1 << 20])])
        .unwrap_or_else(|e| panic!("{e}"));
    let got = index
        .get(&[long], vecseal_index::Fields::ALL)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.items.len(), 1);
}

#[test]
fn top_k_is_capped() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::Cosine);
    index
        .upsert(vec![item("a")])
        .unwrap_or_else(|e| panic!("{e}"));
    let q = vec![vec![0.0, 1.0]];
    for k in [MAX_TOP_K + 1, usize::MAX] {
        match index.query(&q, &QueryOptions::default().with_top_k(k)) {
            Err(e @ Error::InvalidParameter { name: "top_k", .. }) => {
                assert!(e.to_string().contains("10000"), "{e}");
            }
            other => panic!("top_k {k}: expected an invalid top_k, got {other:?}"),
        }
    }
    let hits = index
        .query(&q, &QueryOptions::default().with_top_k(MAX_TOP_K))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits[0].len(), 1);
}

fn filled(n: usize) -> (vecseal_index::Database, TestStore, Index) {
    let (db, store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    let data = clustered(n, 8, 4, 3);
    index
        .upsert_vectors(&ids(n), &data)
        .unwrap_or_else(|e| panic!("{e}"));
    (db, store, index)
}

#[test]
fn absurd_n_lists_is_refused_before_any_work() {
    let (_db, store, index) = filled(10_000);
    let before = dump(&store);
    for n_lists in [1usize << 63, usize::MAX, 5_001] {
        match index.train(&TrainOptions::default().with_n_lists(n_lists)) {
            Err(Error::NotEnoughVectors { have: 10_000, need }) => {
                assert!(need >= 10_002, "n_lists {n_lists}: need {need}");
            }
            other => panic!("n_lists {n_lists}: expected NotEnoughVectors, got {other:?}"),
        }
    }
    assert!(dump(&store) == before, "a refused train wrote records");
    index
        .train(
            &TrainOptions::default()
                .with_n_lists(5_000)
                .with_max_iters(1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}
