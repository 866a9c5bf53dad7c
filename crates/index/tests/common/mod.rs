#![allow(dead_code, unreachable_pub, unused_imports)]
use std::sync::Arc;

use vecseal_index::{Credentials, Database, Index, IndexConfig, Metric, Precision, NAMESPACES};
use vecseal_pg::PgStore;
use vecseal_storage::{MemStore, RocksStore, Store};

pub use vecseal_testkit::{clustered, ids, key};

/// This test binary running only its ignored test `name` (a child process
/// of another test), stdout piped, stderr discarded.
pub fn child_test(name: &str) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut c = std::process::Command::new(exe);
    c.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    c
}

pub fn owner(b: u8) -> Credentials {
    Credentials::owner(key(b))
}

/// The store an index test runs on, and what must outlive it.
pub struct TestStore {
    /// The raw store (for tests that read or tamper with records).
    pub store: Arc<dyn Store>,
    /// What must outlive the store (its folder, its schema).
    _guard: Option<Box<dyn std::any::Any>>,
    /// The server and schema, on PostgreSQL.
    pub pg: Option<(String, String)>,
}

impl TestStore {
    /// Another connection to the same PostgreSQL schema, as a second
    /// process would have (its own pool, its own `Database`); `None` on
    /// the engines that one process opens alone.
    pub fn another_process(&self) -> Option<Arc<dyn Store>> {
        let (url, schema) = self.pg.as_ref()?;
        let store =
            PgStore::open_in_schema(url, schema, NAMESPACES).unwrap_or_else(|e| panic!("{e}"));
        Some(Arc::new(store))
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// Which engine the index tests run on: `VECSEAL_TEST_STORE=rocks` for
/// RocksDB in a temporary folder, `pg` for PostgreSQL (a schema of its own
/// on the server `VECSEAL_TEST_PG` names), otherwise (or `mem`) the memory
/// store. `cargo xtask ci` runs the index tests on all three.
pub fn store_kind() -> &'static str {
    match std::env::var("VECSEAL_TEST_STORE").as_deref() {
        Ok("rocks") => "rocks",
        Ok("pg") => "pg",
        Ok("mem") | Err(_) => "mem",
        Ok(other) => {
            panic!("VECSEAL_TEST_STORE={other:?}: expected \"mem\", \"rocks\" or \"pg\"")
        }
    }
}

/// A schema of its own on the tests' PostgreSQL server, dropped after.
struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A fresh store of [`store_kind`].
pub fn test_store() -> TestStore {
    match store_kind() {
        "rocks" => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let store = Arc::new(
                RocksStore::open(dir.path(), NAMESPACES).unwrap_or_else(|e| panic!("{e}")),
            );
            TestStore {
                store,
                _guard: Some(Box::new(dir)),
                pg: None,
            }
        }
        "pg" => {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let url = std::env::var("VECSEAL_TEST_PG")
                .unwrap_or_else(|_| panic!("VECSEAL_TEST_STORE=pg needs VECSEAL_TEST_PG"));
            let schema = PgSchema {
                name: format!(
                    "vs_index_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                ),
                url,
            };
            let store = PgStore::open_in_schema(&schema.url, &schema.name, NAMESPACES)
                .unwrap_or_else(|e| panic!("{e}"));
            TestStore {
                store: Arc::new(store),
                pg: Some((schema.url.clone(), schema.name.clone())),
                _guard: Some(Box::new(schema)),
            }
        }
        _ => TestStore {
            store: Arc::new(MemStore::new(NAMESPACES)),
            _guard: None,
            pg: None,
        },
    }
}

/// A database over a fresh [`test_store`]; keep the store alive (bind it to
/// a name, not `_`) as long as the database.
pub fn test_db() -> (Database, TestStore) {
    let store = test_store();
    (Database::new(Arc::clone(&store.store)), store)
}

/// The storage precision the index tests run at: `VECSEAL_TEST_PRECISION`
/// (`cargo xtask ci` runs them again at each compressed one), else float32.
pub fn precision() -> Precision {
    match std::env::var("VECSEAL_TEST_PRECISION") {
        Ok(p) if !p.is_empty() => p.parse().unwrap_or_else(|e| panic!("{e}")),
        _ => Precision::Float32,
    }
}

/// Candidates per result for queries whose assertions are exact (the
/// vector itself first): at a compressed precision many near vectors share
/// a code, so the default rerank may miss the exact one; this many do not
/// on the tests' data. Ignored at float32.
pub const EXACT_RERANK: usize = 256;

/// A new index's configuration, at the tests' [`precision`].
pub fn config() -> IndexConfig {
    IndexConfig::default().with_storage_precision(precision())
}

pub fn create(db: &Database, metric: Metric) -> Index {
    db.create_index("t", owner(1), config().with_metric(metric))
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
