//! Upgrading a version-1 index (a state record that lists every block).

use std::sync::Arc;

use vecseal_keyring::UserId;
use vecseal_storage::{MemStore, Store};

use crate::catalog::{catalog_key, open_ring, read_catalog, NS_CATALOG, NS_META};
use crate::guarded::GuardedStore;
use crate::keys::{Credentials, Keys, Kind};
use crate::state::Persisted;
use crate::{Database, IndexConfig, Item, QueryOptions, TrainOptions, NAMESPACES};

use vecseal_testkit::key;

/// The sealed state record of index "t", decoded.
fn state(store: &Arc<dyn Store>) -> (Keys, Vec<u8>, Persisted) {
    let guarded = GuardedStore::new(Arc::clone(store));
    let entry = read_catalog(&guarded, "t").unwrap_or_else(|e| panic!("{e}"));
    let access =
        open_ring(&entry.ring, &Credentials::owner(key(1))).unwrap_or_else(|e| panic!("{e}"));
    let keys = Keys::derive(access.data_key(), entry.id, entry.ring.suite());
    let sk = keys.state_key();
    let raw = store
        .get(NS_META, &sk)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state record"));
    let p = Persisted::decode(
        &keys
            .open(Kind::State, &sk, &raw)
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (keys, sk, p)
}

#[test]
fn a_version_1_index_is_read_as_it_is_and_upgraded_by_a_writer() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
    let reader = UserId([5; 16]);
    let items: Vec<Item> = (0..12_000)
        .map(|i| {
            let v = vec![(i % 97) as f32, (i % 13) as f32, (i / 97) as f32 * 0.1];
            Item::new(format!("i{i}"), v).with_metadata(serde_json::json!({"m": i % 5}))
        })
        .collect();
    let queries: Vec<Vec<f32>> = items
        .iter()
        .step_by(1000)
        .filter_map(|it| it.vector.clone())
        .collect();
    let opts = QueryOptions::default().with_top_k(5).with_n_probes(3);
    let (before, legacy) = {
        let db = Database::new(Arc::clone(&store));
        let index = db
            .create_index("t", Credentials::owner(key(1)), IndexConfig::default())
            .unwrap_or_else(|e| panic!("{e}"));
        index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
        index
            .train(&TrainOptions::default().with_n_lists(20).with_seed(1))
            .unwrap_or_else(|e| panic!("{e}"));
        // The live header counts the lists it holds (the record is written
        // from it; before, it kept the number of the state before training).
        assert_eq!(index.shared.live.read().p.n_lists, 20);
        index
            .add_user(reader, &key(9), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let hits = index
            .query(&queries, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        // Rewrite the state record as version 1 wrote it: every block listed.
        let lists: Vec<Vec<crate::state::BlockRef>> = index
            .shared
            .live
            .read()
            .p
            .lists
            .iter()
            .map(|l| l.to_vec())
            .collect();
        let (keys, sk, p) = state(&store);
        let plain = crate::state::legacy::encode(&p, Some(&lists));
        let sealed = keys
            .seal(Kind::State, &sk, &plain)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put(NS_META, &sk, &sealed, vecseal_storage::Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        // And the catalog entry as version 1 wrote it: no tag.
        let guarded = GuardedStore::new(Arc::clone(&store));
        let entry = read_catalog(&guarded, "t").unwrap_or_else(|e| panic!("{e}"));
        store
            .put(
                NS_CATALOG,
                &catalog_key("t"),
                &entry.untagged().encode(),
                vecseal_storage::Durability::Sync,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        (hits, lists)
    };
    // A read-only user reads it as it is, and writes nothing.
    {
        let db = Database::new(Arc::clone(&store));
        let index = db
            .load_index("t", Credentials::user(reader, key(9)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            index
                .query(&queries, &opts)
                .unwrap_or_else(|e| panic!("{e}")),
            before
        );
        assert!(state(&store).2.is_legacy());
    }
    // The owner's handle upgrades it: version 3, every block renumbered,
    // the same answers, and it opens again from the blocks alone.
    {
        let db = Database::new(Arc::clone(&store));
        let index = db
            .load_index("t", Credentials::owner(key(1)))
            .unwrap_or_else(|e| panic!("{e}"));
        let p = state(&store).2;
        assert!(!p.is_legacy());
        let guarded = GuardedStore::new(Arc::clone(&store));
        let entry = read_catalog(&guarded, "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(entry.tag().is_some(), "the catalog entry got no tag");
        assert_eq!(entry.tag(), p.ring_tag);
        let old: Vec<u64> = legacy.iter().flatten().map(|b| b.seq).collect();
        let new = index.shared.live.read().p.lists.clone();
        assert_eq!(new.len(), legacy.len());
        assert!(new
            .iter()
            .flat_map(|l| l.iter())
            .all(|b| !old.contains(&b.seq)));
        assert_eq!(
            index
                .query(&queries, &opts)
                .unwrap_or_else(|e| panic!("{e}")),
            before
        );
        assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), 12_000);
    }
    let db = Database::new(Arc::clone(&store));
    let index = db
        .load_index("t", Credentials::owner(key(1)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        index
            .query(&queries, &opts)
            .unwrap_or_else(|e| panic!("{e}")),
        before
    );
    let blocks_in_store = store
        .scan_prefix("blocks", b"")
        .unwrap_or_else(|e| panic!("{e}"))
        .count();
    assert_eq!(blocks_in_store as u64, state(&store).2.blocks);
}
