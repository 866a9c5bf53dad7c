//! No storage key of a block is ever sealed twice: block numbers are never
//! handed out again, even after a training run that failed before its
//! switch left blocks behind (collected later as orphans).

mod common;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use vecseal_index::{Database, Error, Metric, TrainOptions};
use vecseal_storage::{BatchOp, Durability, Expect, Scan, Snapshot, Store, WriteBatch};

/// A store that records every block key put, and fails the first write that
/// deletes a block once armed (the switch at the end of a training run).
struct Recording {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
    block_puts: Mutex<Vec<Vec<u8>>>,
}

impl Recording {
    /// Fails the armed switch, else writes `batch` with `write` and
    /// records the block keys it put (when it was applied).
    fn record(
        &self,
        batch: WriteBatch,
        write: impl FnOnce(WriteBatch) -> vecseal_storage::Result<bool>,
    ) -> vecseal_storage::Result<bool> {
        let deletes_a_block = batch
            .ops()
            .any(|op| matches!(op, BatchOp::Delete { ns: "blocks", .. }));
        if deletes_a_block && self.armed.swap(false, Ordering::SeqCst) {
            return Err(vecseal_storage::Error::Engine(
                "injected failure of the switch".into(),
            ));
        }
        let puts: Vec<Vec<u8>> = batch
            .ops()
            .filter_map(|op| match op {
                BatchOp::Put {
                    ns: "blocks", key, ..
                } => Some(key.to_vec()),
                _ => None,
            })
            .collect();
        let applied = write(batch)?;
        if applied {
            self.block_puts.lock().extend(puts);
        }
        Ok(applied)
    }
}

impl Store for Recording {
    fn get(&self, ns: &str, key: &[u8]) -> vecseal_storage::Result<Option<Vec<u8>>> {
        self.inner.get(ns, key)
    }
    fn write(&self, batch: WriteBatch, durability: Durability) -> vecseal_storage::Result<()> {
        self.record(batch, |b| self.inner.write(b, durability).map(|()| true))
            .map(|_| ())
    }
    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> vecseal_storage::Result<bool> {
        self.record(batch, |b| self.inner.write_if(expect, b, durability))
    }
    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> vecseal_storage::Result<Scan<'a>> {
        self.inner.scan_prefix(ns, prefix)
    }
    fn snapshot(&self) -> vecseal_storage::Result<Box<dyn Snapshot + '_>> {
        self.inner.snapshot()
    }
    fn namespaces(&self) -> Vec<String> {
        self.inner.namespaces()
    }
}

#[test]
fn block_numbers_are_not_reused_after_a_failed_train() {
    let base = test_store();
    let store = Arc::new(Recording {
        inner: Arc::clone(&base.store),
        armed: AtomicBool::new(false),
        block_puts: Mutex::new(Vec::new()),
    });
    let db = Database::new(Arc::clone(&store) as Arc<dyn Store>);
    let index = create(&db, Metric::SquaredEuclidean);
    let n = 12_000;
    let data = clustered(n, 8, 6, 5);
    index
        .upsert_vectors(&ids(n), &data)
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = TrainOptions::default().with_n_lists(6).with_max_iters(3);
    index.train(&opts).unwrap_or_else(|e| panic!("{e}"));

    // The second run writes its blocks, then its switch fails.
    store.armed.store(true, Ordering::SeqCst);
    match index.train(&opts) {
        Err(Error::Storage(_)) => {}
        other => panic!("expected the injected failure, got {other:?}"),
    }
    // Writes after it, and a run that collects its orphans, use new numbers.
    index
        .upsert_vectors(&ids(20), &clustered(20, 8, 2, 6))
        .unwrap_or_else(|e| panic!("{e}"));
    index.train(&opts).unwrap_or_else(|e| panic!("{e}"));
    index
        .upsert_vectors(&["late".to_owned()], &[vec![0.5; 8]])
        .unwrap_or_else(|e| panic!("{e}"));

    // And so after reopening.
    drop((index, db));
    let db = Database::new(Arc::clone(&store) as Arc<dyn Store>);
    let index = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(index.count().unwrap_or_else(|e| panic!("{e}")), n + 1);
    index.train(&opts).unwrap_or_else(|e| panic!("{e}"));

    let puts = store.block_puts.lock();
    let mut seen = HashSet::new();
    let reused = puts.iter().filter(|k| !seen.insert(k.as_slice())).count();
    assert_eq!(
        reused,
        0,
        "{reused} of {} block keys were sealed more than once",
        puts.len()
    );
}
