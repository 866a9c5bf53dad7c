//! What rotation leaves: no record opens under the old data key (however
//! it is reached), users keep exactly their permissions, answers do not
//! change, and no record of the old key is left.

use std::sync::Arc;

use serde_json::json;
use vecseal_keyring::{Keyring, UserId};
use vecseal_storage::{MemStore, Store};

use crate::catalog::{catalog_key, NS_CATALOG};
use crate::keys::{Credentials, Keys, Kind};
use crate::{Database, Fields, Index, IndexConfig, Item, QueryOptions, TrainOptions, NAMESPACES};

use vecseal_testkit::{clustered, key};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn filled(store: &Arc<dyn Store>) -> Index {
    let db = Database::new(Arc::clone(store));
    let index = ok(db.create_index("t", Credentials::owner(key(1)), IndexConfig::default()));
    let data = clustered(12_000, 8, 6, 3);
    let items: Vec<Item> = data
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Item::new(format!("i{i}"), v)
                .with_contents(vec![i as u8; 16])
                .with_metadata(json!({ "g": i % 5 }))
        })
        .collect();
    ok(index.upsert(items));
    ok(index.train(&TrainOptions::default().with_n_lists(8).with_max_iters(3)));
    index
}

/// Every record of the index in the store, with the kinds it could be.
fn records(store: &Arc<dyn Store>) -> Vec<(Vec<u8>, Vec<u8>, &'static [Kind])> {
    let mut out = Vec::new();
    let kinds: [(&str, &'static [Kind]); 3] = [
        ("meta", &[Kind::State, Kind::Centroids]),
        ("items", &[Kind::Item]),
        ("blocks", &[Kind::Block]),
    ];
    for (ns, kinds) in kinds {
        for e in ok(store.scan_prefix(ns, b"")) {
            let (k, v) = ok(e);
            out.push((k, v, kinds));
        }
    }
    out
}

#[test]
fn after_rotation_the_old_data_key_opens_no_record() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
    let index = filled(&store);
    let (reader, revoked) = (UserId([4; 16]), UserId([5; 16]));
    ok(index.add_user(reader, &key(4), true, false));
    ok(index.add_user(revoked, &key(5), true, true));
    let old_entry = ok(store.get(NS_CATALOG, &catalog_key("t"))).unwrap_or_default();
    ok(index.remove_user(revoked));
    let queries = clustered(20, 8, 6, 9);
    let opts = QueryOptions::default().with_top_k(7).with_metadata(true);
    let before = ok(index.query(&queries, &opts));
    let old_keys = ok(index.shared.authorize(&Credentials::owner(key(1)))).1;

    let done = ok(index.rotate_data_key());
    assert_eq!(done.items, 12_000);
    assert!(done.blocks >= 8);

    // The old keyring's bytes opened with the revoked user's key or the
    // old owner key give the old data key, whose keys open nothing now.
    let old_ring = ok(Keyring::from_bytes(&old_entry[49..]));
    let suite = old_ring.suite();
    for access in [
        ok(old_ring.open_user(revoked, &key(5))),
        ok(old_ring.open_root(&key(1))),
    ] {
        let keys = Keys::derive(access.data_key(), old_ring.index(), suite);
        for (k, v, kinds) in records(&store) {
            for &kind in kinds {
                assert!(
                    keys.open(kind, &k, &v).is_err(),
                    "an old key opens a record"
                );
            }
        }
    }
    drop(old_keys);
    // Every record opens under the new key (nothing of the old one is left,
    // the marker included): state, centroids, items, blocks.
    let new_keys = ok(index.shared.authorize(&Credentials::owner(key(1)))).1;
    let all = records(&store);
    assert_eq!(all.len(), 2 + 12_000 + done.blocks as usize);
    for (k, v, kinds) in &all {
        assert!(
            kinds.iter().any(|&kind| new_keys.open(kind, k, v).is_ok()),
            "a record does not open under the new key"
        );
    }

    // The same answers, through this handle and after reloading; users
    // keep exactly their permissions, the revoked one stays out.
    assert_eq!(ok(index.query(&queries, &opts)), before);
    drop(index);
    let db = Database::new(Arc::clone(&store));
    let index = ok(db.load_index("t", Credentials::owner(key(1))));
    assert_eq!(ok(index.query(&queries, &opts)), before);
    let as_reader = ok(db.load_index("t", Credentials::user(reader, key(4))));
    assert_eq!(ok(as_reader.query(&queries, &opts)), before);
    assert!(as_reader
        .upsert_vectors(&["x".into()], &[vec![0.0; 8]])
        .is_err());
    assert!(db
        .load_index("t", Credentials::user(revoked, key(5)))
        .is_err());
    let got = ok(index.get(&["i7".into()], Fields::ALL));
    assert_eq!(got.items[0].contents.as_deref(), Some(&[7u8; 16][..]));
}

#[test]
fn a_rotation_interrupted_before_or_after_its_switch_opens_under_one_key() {
    // Stop the rotation at each step by failing the store's write there,
    // then reopen: the index answers as before, under the old key before
    // the switch and the new key after it, and a writer's open removes
    // the other key's records.
    for fail_at in 1..=4 {
        let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
        let index = filled(&store);
        let queries = clustered(10, 8, 6, 9);
        let opts = QueryOptions::default().with_top_k(5);
        let before = ok(index.query(&queries, &opts));
        let count = records(&store).len();
        let failing = Arc::new(crate::test_support::failing_store(
            Arc::clone(&store),
            fail_at,
        ));
        drop(index);
        let db = Database::new(Arc::clone(&failing) as Arc<dyn Store>);
        let index = ok(db.load_index("t", Credentials::owner(key(1))));
        let r = index.rotate_data_key();
        assert!(r.is_err(), "write {fail_at}: {r:?}");
        drop((index, db));
        let db = Database::new(Arc::clone(&store));
        let index = ok(db.load_index("t", Credentials::owner(key(1))));
        assert_eq!(ok(index.query(&queries, &opts)), before, "write {fail_at}");
        assert_eq!(
            records(&store).len(),
            count,
            "write {fail_at}: records left over"
        );
    }
}

#[test]
fn queries_and_gets_go_on_while_the_data_key_rotates() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
    let index = Arc::new(filled(&store));
    let queries = clustered(8, 8, 6, 9);
    let opts = QueryOptions::default().with_top_k(5).with_metadata(true);
    let before = ok(index.query(&queries, &opts));
    let ids: Vec<String> = (0..50).map(|i| format!("i{i}")).collect();
    let items = ok(index.get(&ids, Fields::ALL)).items;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (index, stop, queries, opts, before, ids) = (
            Arc::clone(&index),
            Arc::clone(&stop),
            queries.clone(),
            opts.clone(),
            before.clone(),
            ids.clone(),
        );
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) || rounds == 0 {
                assert_eq!(ok(index.query(&queries, &opts)), before);
                assert_eq!(ok(index.get(&ids, Fields::ALL)).items, items);
                rounds += 1;
            }
            rounds
        })
    };
    for _ in 0..3 {
        ok(index.rotate_data_key());
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = reader
        .join()
        .unwrap_or_else(|_| panic!("a reader failed during rotation"));
    assert!(rounds > 0);
}
