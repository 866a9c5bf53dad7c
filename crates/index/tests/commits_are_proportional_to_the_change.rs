//! A write re-seals the state header and the blocks it touches, not a
//! directory of every block: the state record does not grow with the index,
//! and neither do the bytes a one-item upsert or delete writes.

mod common;
use std::sync::Arc;

use common::*;
use vecseal_index::{Database, Index, Item, NAMESPACES};
use vecseal_storage::{MemStore, Store};
use vecseal_testkit::store::{BytesWritten, Watched};

type Counting = Watched<BytesWritten>;

struct Measured {
    /// Bytes of the sealed state record (the only record in `meta` of an
    /// untrained index).
    state: usize,
    /// Bytes written by a one-item upsert, then by a one-item delete.
    upsert: u64,
    delete: u64,
}

/// A new index over a counting memory store.
fn counting_index() -> (Arc<Counting>, Index) {
    let store = Arc::new(Watched::new(
        Arc::new(MemStore::new(NAMESPACES)),
        BytesWritten::default(),
    ));
    let db = Database::new(Arc::clone(&store) as Arc<dyn Store>);
    let index = db
        .create_index("t", owner(1), config())
        .unwrap_or_else(|e| panic!("{e}"));
    (store, index)
}

/// An untrained 4-d index of `n` items (one list of n / 4096 blocks), the
/// last block full, measured.
fn measure(n: usize) -> Measured {
    let (store, index) = counting_index();
    let ids = ids(n);
    for chunk in ids.chunks(4096) {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| Item::new(id.clone(), vec![i as f32, 1.0, 2.0, 3.0]))
            .collect();
        index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    }
    let state = |s: &Counting| -> usize {
        s.inner()
            .scan_prefix("meta", b"")
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.unwrap_or_else(|e| panic!("{e}")).1.len())
            .sum()
    };
    let written = || store.watcher().get();
    let before = written();
    index
        .upsert(vec![Item::new("one-more", vec![0.5, 0.5, 0.5, 0.5])])
        .unwrap_or_else(|e| panic!("{e}"));
    let upsert = written() - before;
    let before = written();
    index
        .delete(&["item-7".to_owned()])
        .unwrap_or_else(|e| panic!("{e}"));
    let delete = written() - before;
    Measured {
        state: state(&store),
        upsert,
        delete,
    }
}

#[test]
fn one_item_writes_do_not_grow_with_the_index() {
    // 2 blocks of 4096 items against 100: a directory of every block
    // would grow the state record by 98 entries and every write with it.
    let small = measure(2 * 4096);
    let large = measure(100 * 4096);
    assert!(
        large.state <= small.state + 8,
        "the state record grew from {} to {} bytes",
        small.state,
        large.state
    );
    for (what, s, l) in [
        ("upsert", small.upsert, large.upsert),
        ("delete", small.delete, large.delete),
    ] {
        assert!(l <= s + 8, "a one-item {what} grew from {s} to {l} bytes");
    }
}

/// A one-item upsert into a list whose tail block is long starts (or
/// appends to) a small block instead of re-sealing the long one, so the
/// bytes it writes are bounded by a small block however full the tail is.
#[test]
fn one_item_upserts_do_not_reseal_a_long_tail_block() {
    let (store, index) = counting_index();
    // One batch: one block of 4000 4-d vectors (a block holds 4096): 16 B
    // of vector and 4 + 9 B of id each, about 116 KB to re-seal.
    let items = ids(4000)
        .into_iter()
        .enumerate()
        .map(|(i, id)| Item::new(id, vec![i as f32, 1.0, 2.0, 3.0]))
        .collect();
    index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    let mut largest = 0;
    for i in 0..1500 {
        let before = store.watcher().get();
        index
            .upsert(vec![Item::new(
                format!("new-{i}"),
                vec![-(i as f32), 0.0, 0.0, 1.0],
            )])
            .unwrap_or_else(|e| panic!("{e}"));
        largest = largest.max(store.watcher().get() - before);
    }
    // A block a write appends to holds at most 16 KiB of vectors (1024 4-d
    // ones, with ids "new-…" about 29 KB), plus the item and the state.
    assert!(
        largest < 40_000,
        "a one-item upsert wrote {largest} bytes: it re-sealed a long block"
    );
    assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), 5500);
    let got = index
        .get(
            &[
                "item-3999".to_owned(),
                "new-0".to_owned(),
                "new-1499".to_owned(),
            ],
            vecseal_index::Fields::ALL,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((got.items.len(), got.missing.len()), (3, 0));
    assert_eq!(
        got.items[2].vector.as_deref(),
        Some(&[-1499.0, 0.0, 0.0, 1.0][..])
    );
}
