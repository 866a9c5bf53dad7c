//! Opening an index whose items have metadata decrypts every item to
//! rebuild the in-memory postings; items carry their contents too, so it
//! must read them a chunk at a time, not hold every ciphertext at once.
//! (One test in this binary: the allocator counts for the whole process.)

mod common;
use common::*;
use serde_json::json;
use vecseal_index::{Item, Metric};

#[global_allocator]
static ALLOC: vecseal_testkit::alloc::Counting = vecseal_testkit::alloc::Counting;

#[test]
fn opening_holds_one_chunk_of_items_at_a_time() {
    const ITEMS: usize = 320;
    const CONTENTS: usize = 256 << 10;
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    for batch in 0..(ITEMS / 32) {
        let items = (0..32)
            .map(|j| {
                let i = batch * 32 + j;
                Item::new(format!("item-{i:04}"), vec![i as f32, 1.0])
                    .with_contents(vec![i as u8; CONTENTS])
                    .with_metadata(json!({ "group": i % 7 }))
            })
            .collect();
        index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    }
    drop(index);

    let (index, grew) = vecseal_testkit::alloc::peak_growth(|| db.load_index("t", owner(1)));
    let index = index.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), ITEMS);
    let filter =
        vecseal_index::Filter::parse(&json!({ "group": 3 })).unwrap_or_else(|e| panic!("{e}"));
    let matches = index
        .query_metadata(&filter, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(matches.count, (0..ITEMS).filter(|i| i % 7 == 3).count());

    // 80 MiB of contents are stored; a chunk is about 8 MiB of ciphertext,
    // decrypted (and decoded) in parallel.
    let stored = ITEMS * CONTENTS;
    assert!(
        grew < 40 << 20,
        "opening grew the heap by {} MiB for {} MiB of items",
        grew >> 20,
        stored >> 20
    );
}
