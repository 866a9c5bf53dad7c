#![allow(dead_code, unreachable_pub, unused_imports)]
use std::sync::Arc;

use vecseal_index::{Credentials, Database, Index, IndexConfig, Metric, NAMESPACES};
use vecseal_storage::{MemStore, RocksStore, Store};

pub use vecseal_testkit::{clustered, ids, key};

pub fn owner(b: u8) -> Credentials {
    Credentials::owner(key(b))
}

/// The store an index test runs on, and what must outlive it.
pub struct TestStore {
    /// The raw store (for tests that read or tamper with records).
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// Which engine the index tests run on: `VECSEAL_TEST_STORE=rocks` for
/// RocksDB in a temporary folder, otherwise (or `mem`) the memory store.
/// `cargo xtask ci` runs the index tests on both.
pub fn store_kind() -> &'static str {
    match std::env::var("VECSEAL_TEST_STORE").as_deref() {
        Ok("rocks") => "rocks",
        Ok("mem") | Err(_) => "mem",
        Ok(other) => panic!("VECSEAL_TEST_STORE={other:?}: expected \"mem\" or \"rocks\""),
    }
}

/// A fresh store of [`store_kind`].
pub fn test_store() -> TestStore {
    if store_kind() == "rocks" {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            Arc::new(RocksStore::open(dir.path(), NAMESPACES).unwrap_or_else(|e| panic!("{e}")));
        TestStore {
            store,
            _dir: Some(dir),
        }
    } else {
        TestStore {
            store: Arc::new(MemStore::new(NAMESPACES)),
            _dir: None,
        }
    }
}

/// A database over a fresh [`test_store`]; keep the store alive (bind it to
/// a name, not `_`) as long as the database.
pub fn test_db() -> (Database, TestStore) {
    let store = test_store();
    (Database::new(Arc::clone(&store.store)), store)
}

pub fn create(db: &Database, metric: Metric) -> Index {
    db.create_index("t", owner(1), IndexConfig::default().with_metric(metric))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[path = "../../../kmeans/src/kernel/reference.rs"]
mod reference;

/// The squared Euclidean distance in the canonical order that every
/// distance of vecseal follows on every CPU (see `vecseal_kmeans::kernel`),
/// written out in plain scalar Rust: the index must equal it bit for bit.
pub fn sq(a: &[f32], b: &[f32]) -> f32 {
    reference::canonical_sum(a, b, true)
}

/// Exact top-k ids by squared Euclidean distance, ties by id.
pub fn brute(data: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<String> {
    let mut d: Vec<(f32, &String)> = data.iter().map(|(id, v)| (sq(q, v), id)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    d.into_iter().take(k).map(|(_, id)| id.clone()).collect()
}

/// Every raw key and value in the store.
pub fn dump(store: &TestStore) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        for e in store.scan_prefix(ns, b"").unwrap_or_else(|e| panic!("{e}")) {
            let (k, v) = e.unwrap_or_else(|e| panic!("{e}"));
            out.push(((*ns).to_owned(), k, v));
        }
    }
    out
}
