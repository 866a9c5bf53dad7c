//! Test doubles shared by the crate's unit tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vecseal_storage::{Durability, Error, Expect, Result, Scan, Snapshot, Store, WriteBatch};

/// A store that fails its `fail_at`-th write (counting from 1) and passes
/// every other call through: a process stopped at that write.
pub(crate) struct FailingStore {
    inner: Arc<dyn Store>,
    writes: AtomicUsize,
    fail_at: usize,
}

impl FailingStore {
    pub(crate) fn new(inner: Arc<dyn Store>, fail_at: usize) -> Self {
        Self {
            inner,
            writes: AtomicUsize::new(0),
            fail_at,
        }
    }
}

impl FailingStore {
    /// Counts a write: the error of the one that fails.
    fn count(&self) -> Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Engine(format!(
                "injected failure of write {}",
                self.fail_at
            )));
        }
        Ok(())
    }
}

impl Store for FailingStore {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(ns, key)
    }
    fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        self.inner.read_with(ns, key, f)
    }
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.count()?;
        self.inner.write(batch, durability)
    }
    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        self.count()?;
        self.inner.write_if(expect, batch, durability)
    }
    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        self.inner.scan_prefix(ns, prefix)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        self.inner.snapshot()
    }
    fn namespaces(&self) -> Vec<String> {
        self.inner.namespaces()
    }
}
