//! The storage layer of vecseal: a [`Store`] trait and two engines.
//!
//! A store is a set of named *namespaces*, each a sorted map from byte keys to
//! byte values, with atomic write batches that span namespaces, streaming
//! prefix scans and consistent snapshots. vecseal hands it only ciphertext and
//! blinded keys.
//!
//! **Architecture invariant:** this crate never sees a key and links no cipher
//! crate; it stores opaque bytes.
//!
//! Engines:
//! * [`MemStore`]: in memory, for tests and ephemeral indexes;
//! * [`RocksStore`]: RocksDB in a local folder (the product's default), one
//!   column family per namespace, compression off, WAL on.
//!
//! PostgreSQL is an engine of its own crate, `vecseal-pg`: its client links
//! hash and MAC crates (for SCRAM authentication), which this crate's
//! invariant below keeps out. Every engine passes [`conformance::check`]
//! (feature `conformance`).
//!
//! ```
//! use vecseal_storage::{Durability, MemStore, Store, WriteBatch};
//!
//! let store = MemStore::new(&["items"]);
//! let mut batch = WriteBatch::new();
//! batch.put("items", b"k1", b"v1");
//! batch.put("items", b"k2", b"v2");
//! store.write(batch, Durability::Sync)?;
//! let all: Vec<_> = store.scan_prefix("items", b"k")?.collect::<Result<_, _>>()?;
//! assert_eq!(all.len(), 2);
//! # Ok::<(), vecseal_storage::Error>(())
//! ```
#![deny(missing_docs)]

mod mem;
mod rocks;

pub use mem::MemStore;
pub use rocks::RocksStore;

use std::path::PathBuf;

/// Errors of the storage layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A namespace that the store was not opened with.
    #[error("unknown namespace {name:?}; this store has {known:?}")]
    UnknownNamespace {
        /// The namespace asked for.
        name: String,
        /// The namespaces the store has.
        known: Vec<String>,
    },
    /// The database folder is locked by another process (or another handle).
    #[error("database at {path} is in use by another process (lock held)")]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// The database folder could not be opened.
    #[error("cannot open database at {path}: {reason}")]
    Open {
        /// The folder.
        path: PathBuf,
        /// What the engine said.
        reason: String,
    },
    /// The database is corrupt.
    #[error("database at {path} is corrupt: {reason}")]
    Corrupt {
        /// The folder.
        path: PathBuf,
        /// What the engine said.
        reason: String,
    },
    /// The database server cannot be reached, or dropped the connection:
    /// retry later (a service answers 503).
    #[error("database unavailable (retry later): {0}")]
    Unavailable(String),
    /// A database server's database could not be opened.
    #[error("cannot open {what}: {reason}")]
    Connect {
        /// Which database (never with its password).
        what: String,
        /// Why.
        reason: String,
    },
    /// Any other engine error.
    #[error("storage engine error: {0}")]
    Engine(String),
}

impl Error {
    /// Whether the same call may succeed later unchanged (the database is
    /// restarting, or unreachable for now).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A key and its value, as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A streaming scan over entries in key order.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<Entry>> + 'a>;

/// Whether a committed batch is flushed to stable storage before `write`
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the write-ahead log before returning: survives power loss.
    Sync,
    /// Return once the batch is in the WAL buffer: survives a process crash,
    /// may be lost on power loss.
    Buffered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put {
        ns: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        ns: String,
        key: Vec<u8>,
    },
}

/// An atomic group of puts and deletes over any namespaces: all of it is
/// applied, or none of it.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
    bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `key` → `value` in namespace `ns`.
    pub fn put(&mut self, ns: &str, key: &[u8], value: &[u8]) {
        self.put_owned(ns, key.to_vec(), value.to_vec());
    }

    /// Adds a put, taking the buffers.
    pub fn put_owned(&mut self, ns: &str, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put {
            ns: ns.to_owned(),
            key,
            value,
        });
    }

    /// Adds a delete of `key` in namespace `ns`.
    pub fn delete(&mut self, ns: &str, key: &[u8]) {
        self.bytes += key.len();
        self.ops.push(Op::Delete {
            ns: ns.to_owned(),
            key: key.to_vec(),
        });
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate payload size of the batch in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// The operations, in the order they were added (for engines and
    /// wrappers that apply or inspect a batch).
    ///
    /// ```
    /// use vecseal_storage::{BatchOp, WriteBatch};
    /// let mut batch = WriteBatch::new();
    /// batch.put("items", b"k", b"v");
    /// batch.delete("items", b"old");
    /// let ops: Vec<BatchOp<'_>> = batch.ops().collect();
    /// assert_eq!(
    ///     ops,
    ///     [
    ///         BatchOp::Put { ns: "items", key: b"k", value: b"v" },
    ///         BatchOp::Delete { ns: "items", key: b"old" },
    ///     ]
    /// );
    /// ```
    pub fn ops(&self) -> impl Iterator<Item = BatchOp<'_>> {
        self.ops.iter().map(|op| match op {
            Op::Put { ns, key, value } => BatchOp::Put { ns, key, value },
            Op::Delete { ns, key } => BatchOp::Delete { ns, key },
        })
    }
}

/// One operation of a [`WriteBatch`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp<'a> {
    /// A put of `key` → `value` in namespace `ns`.
    Put {
        /// The namespace.
        ns: &'a str,
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// A delete of `key` in namespace `ns`.
    Delete {
        /// The namespace.
        ns: &'a str,
        /// The key.
        key: &'a [u8],
    },
}

/// The condition of a [`Store::write_if`]: key `key` of namespace `ns`
/// holds exactly `value` (`None`: no such key) when the batch applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The namespace.
    pub ns: &'a str,
    /// The key.
    pub key: &'a [u8],
    /// The value it must hold, or `None` for "absent".
    pub value: Option<&'a [u8]>,
}

/// A store-wide lock taken with [`Store::lock`]: held until dropped (or
/// until the process holding it dies).
pub struct Held<'a>(Option<Box<dyn Send + 'a>>);

impl<'a> Held<'a> {
    /// A lock that holds `inner` and releases it when dropped.
    pub fn new(inner: Box<dyn Send + 'a>) -> Self {
        Self(Some(inner))
    }

    /// A lock that excludes nothing: for an engine that one process opens
    /// alone (its users exclude each other in memory).
    pub fn nothing() -> Self {
        Self(None)
    }

    /// Whether this lock excludes anything.
    pub fn excludes(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Held").field(&self.excludes()).finish()
    }
}

/// A consistent, read-only view of a store at one moment.
pub trait Snapshot: Send + Sync {
    /// The value of `key` in `ns` as of the snapshot.
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries of `ns` whose key starts with `prefix`, in key order, as of the
    /// snapshot.
    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>>;
}

/// A namespaced, sorted, transactional key-value store.
///
/// Implementations must make [`Store::write`] atomic across namespaces and
/// must keep scans and snapshots consistent under concurrent writes.
pub trait Store: Send + Sync {
    /// The value of `key` in `ns`.
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Calls `f` with the value of `key` in `ns`, read where the engine
    /// keeps it when it can (no copy into a fresh buffer); `false`, without
    /// calling `f`, when there is no such key. For readers that copy the
    /// value into a buffer of their own anyway.
    fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        Ok(self.get(ns, key)?.map(|v| f(&v)).is_some())
    }

    /// The values of many keys of `ns`, in the order asked.
    fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(ns, k)).collect()
    }

    /// Applies `batch` atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;

    /// Applies `batch` atomically if, at that moment, `expect` holds;
    /// otherwise writes nothing and returns `Ok(false)`. A compare-and-swap:
    /// writers in several processes commit through it without losing each
    /// other's writes.
    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool>;

    /// Whether other processes may write this store while this one does
    /// (a database server): their users then check for others' commits
    /// before they read, and exclude each other with [`Store::lock`].
    /// `false` (the default) for an engine that one process opens alone.
    fn is_shared(&self) -> bool {
        false
    }

    /// Waits for, then takes, the store-wide exclusive lock named `name`:
    /// held until the returned guard drops, or until this process dies (so
    /// a crashed holder never blocks the others for good). An engine that
    /// one process opens alone has no one to exclude and returns
    /// [`Held::nothing`] (the default).
    fn lock(&self, name: &[u8]) -> Result<Held<'_>> {
        let _ = name;
        Ok(Held::nothing())
    }

    /// [`Store::lock`] without waiting: `None` when another holds it.
    fn try_lock(&self, name: &[u8]) -> Result<Option<Held<'_>>> {
        self.lock(name).map(Some)
    }

    /// Puts one value (a batch of one).
    fn put(&self, ns: &str, key: &[u8], value: &[u8], durability: Durability) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(ns, key, value);
        self.write(b, durability)
    }

    /// Deletes one key (a batch of one).
    fn delete(&self, ns: &str, key: &[u8], durability: Durability) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(ns, key);
        self.write(b, durability)
    }

    /// Streams the entries of `ns` whose key starts with `prefix`, in key
    /// order. The stream reads a consistent view; it does not load the
    /// namespace into memory.
    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>>;

    /// A consistent snapshot for long readers.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>>;

    /// The namespaces this store was opened with.
    fn namespaces(&self) -> Vec<String>;
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(test)]
mod engine_tests;
