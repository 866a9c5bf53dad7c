//! Tamper and leakage: the store holds only sealed values and blinded keys.

mod common;
use common::*;
use vecseal_index::{Error, Fields, Item, Metric, QueryOptions};
use vecseal_storage::Durability;

fn filled() -> (vecseal_index::Database, TestStore, vecseal_index::Index) {
    let (db, store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    let items = (0..20)
        .map(|i| {
            Item::new(format!("secret-id-{i}"), vec![i as f32, 1.0, 2.0])
                .with_contents(format!("secret contents {i}"))
                .with_metadata(serde_json::json!({"tenant": format!("secret-tenant-{i}")}))
        })
        .collect();
    index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    (db, store, index)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn raw_store_contains_no_plaintext() {
    let (_db, store, _index) = filled();
    for (_, k, v) in dump(&store) {
        for needle in [
            &b"secret-id-1"[..],
            b"secret contents",
            b"secret-tenant",
            b"tenant",
        ] {
            assert!(
                !contains(&k, needle) && !contains(&v, needle),
                "plaintext {needle:?} in the store"
            );
        }
    }
}

#[test]
fn any_flipped_byte_is_an_authentication_error() {
    let (db, store, index) = filled();
    // With no handle alive every load below reads the state afresh.
    drop(index);
    let q = QueryOptions::default()
        .with_top_k(20)
        .with_metadata(true)
        .with_contents(true);
    let all: Vec<String> = (0..20).map(|i| format!("secret-id-{i}")).collect();
    for (ns, k, v) in dump(&store) {
        if ns == "catalog" {
            continue; // the keyring's wraps are covered by the keyring tests
        }
        for pos in [0, v.len() / 2, v.len() - 1] {
            let mut t = v.clone();
            t[pos] ^= 0x40;
            store
                .put(&ns, &k, &t, Durability::Sync)
                .unwrap_or_else(|e| panic!("{e}"));
            let outcome = db.load_index("t", owner(1)).and_then(|ix| {
                ix.query(&[vec![1.0, 1.0, 2.0]], &q)?;
                ix.get(&all, Fields::ALL)
            });
            assert!(
                matches!(
                    outcome,
                    Err(Error::Authentication(_) | Error::Corrupt { .. })
                ),
                "{ns} byte {pos}: {outcome:?}"
            );
            store
                .put(&ns, &k, &v, Durability::Sync)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(db.load_index("t", owner(1)).is_ok());
}

#[test]
fn swapped_values_are_detected() {
    let (db, store, _index) = filled();
    let items: Vec<_> = dump(&store)
        .into_iter()
        .filter(|(ns, _, _)| ns == "items")
        .collect();
    let (a, b) = (&items[0], &items[1]);
    store
        .put("items", &a.1, &b.2, Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put("items", &b.1, &a.2, Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    let ix = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let all: Vec<String> = (0..20).map(|i| format!("secret-id-{i}")).collect();
    let got = ix.get(&all, Fields::ALL);
    assert!(
        matches!(got, Err(Error::Authentication(vecseal_index::Record::Item))),
        "{got:?}"
    );
}

/// The blocks are their own directory, checked against the state's keyed
/// digest: a block deleted, or one restored after a write replaced it, makes
/// opening fail as tampering; the untouched store opens.
#[test]
fn removed_or_restored_blocks_are_detected() {
    let (_db, store, index) = filled();
    let fresh_open = || {
        vecseal_index::Database::new(std::sync::Arc::clone(&store.store))
            .load_index("t", owner(1))
            .map(|_| ())
    };
    assert!(fresh_open().is_ok());
    let blocks_before: Vec<_> = dump(&store)
        .into_iter()
        .filter(|(ns, _, _)| ns == "blocks")
        .collect();
    assert!(!blocks_before.is_empty());
    // A write replaces the block it touches (copy-on-write)...
    index
        .upsert(vec![Item::new("another", vec![9.0, 9.0, 9.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    // (No handle left: every open below reads the store again.)
    drop(index);
    assert!(fresh_open().is_ok());
    // ...and putting the replaced block back is detected.
    let (_, k, v) = &blocks_before[0];
    store
        .put("blocks", k, v, Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = fresh_open();
    assert!(matches!(got, Err(Error::BlocksTampered)), "{got:?}");
    store
        .delete("blocks", k, Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fresh_open().is_ok());
    // Deleting a live block is detected too.
    let live: Vec<_> = dump(&store)
        .into_iter()
        .filter(|(ns, _, _)| ns == "blocks")
        .collect();
    store
        .delete("blocks", &live[0].1, Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    let got = fresh_open();
    assert!(matches!(got, Err(Error::BlocksTampered)), "{got:?}");
}
