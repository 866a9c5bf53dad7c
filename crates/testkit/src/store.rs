//! A store that passes every call on to another and lets a test see its
//! reads and writes first: bytes written, reads of one namespace, a
//! commit from "another process" in the middle of a call, or a write that
//! fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vecseal_storage::{Durability, Expect, Held, Result, Scan, Snapshot, Store, WriteBatch};

/// What a [`Watched`] store calls before it passes a call on.
pub trait Watcher: Send + Sync {
    /// Before a point read of `ns` (`get`, `read_with`, `multi_get`).
    fn reading(&self, ns: &str) {
        let _ = ns;
    }

    /// Before `batch` is written (`write`, `write_if`): an error fails
    /// the write, and nothing is written.
    fn writing(&self, batch: &WriteBatch) -> Result<()> {
        let _ = batch;
        Ok(())
    }
}

/// A [`Watcher`] that counts the bytes of every batch written
/// ([`WriteBatch::size_bytes`]).
#[derive(Debug, Default)]
pub struct BytesWritten(AtomicU64);

impl BytesWritten {
    /// The bytes written so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Watcher for BytesWritten {
    fn writing(&self, batch: &WriteBatch) -> Result<()> {
        self.0
            .fetch_add(batch.size_bytes() as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// `inner`, with a [`Watcher`] told of its point reads and writes.
pub struct Watched<W> {
    inner: Arc<dyn Store>,
    watcher: W,
    shared: bool,
}

impl<W: Watcher> Watched<W> {
    /// `inner` watched by `watcher`.
    pub fn new(inner: Arc<dyn Store>, watcher: W) -> Self {
        Self {
            inner,
            watcher,
            shared: false,
        }
    }

    /// The same store, saying that other processes write it too
    /// ([`Store::is_shared`]) even when `inner` does not, as PostgreSQL
    /// does: `Database`s over two such views of one memory store behave as
    /// two processes would.
    pub fn shared(self) -> Self {
        Self {
            shared: true,
            ..self
        }
    }

    /// The watcher.
    pub fn watcher(&self) -> &W {
        &self.watcher
    }

    /// The store watched.
    pub fn inner(&self) -> &dyn Store {
        &*self.inner
    }
}

impl<W: Watcher> Store for Watched<W> {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.watcher.reading(ns);
        self.inner.get(ns, key)
    }
    fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        self.watcher.reading(ns);
        self.inner.read_with(ns, key, f)
    }
    fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.watcher.reading(ns);
        self.inner.multi_get(ns, keys)
    }
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.watcher.writing(&batch)?;
        self.inner.write(batch, durability)
    }
    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        self.watcher.writing(&batch)?;
        self.inner.write_if(expect, batch, durability)
    }
    fn is_shared(&self) -> bool {
        self.shared || self.inner.is_shared()
    }
    fn lock(&self, name: &[u8]) -> Result<Held<'_>> {
        self.inner.lock(name)
    }
    fn try_lock(&self, name: &[u8]) -> Result<Option<Held<'_>>> {
        self.inner.try_lock(name)
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
