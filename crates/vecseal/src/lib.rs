//! vecseal: an encrypted vector database.
//!
//! Users hold the keys; whatever the storage engine sees is ciphertext or a
//! blinded name. Before [`Index::train`] a query is an exact *encrypted
//! exhaustive search*; after it, an *encrypted ANN search* over IVF lists.
//!
//! This facade is what applications use: open a [`Client`] on a local folder
//! (RocksDB, the default) or in memory, then create or load indexes.
//!
//! ```
//! use vecseal::{Client, Credentials, IndexConfig, Item, Metric, QueryOptions, SecretKey, StorageConfig};
//!
//! let client = Client::open(StorageConfig::InMemory)?;
//! let key = SecretKey::generate()?;
//! let index = client.create_index(
//!     "docs",
//!     Credentials::owner(key),
//!     IndexConfig::default().with_metric(Metric::Cosine),
//! )?;
//! index.upsert(vec![
//!     Item::new("a", vec![1.0, 0.0]).with_metadata(serde_json::json!({"lang": "en"})),
//!     Item::new("b", vec![0.0, 1.0]),
//! ])?;
//! let hits = index.query(&[vec![0.9, 0.1]], &QueryOptions::default().with_top_k(1))?;
//! assert_eq!(hits[0][0].id, "a");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

pub use vecseal_index::{
    auto_n_lists, auto_n_probes, AccessError, Credentials, Database, DecodeError, EnvelopeError,
    Error, Field, FieldSchema, Fields, Filter, GetResult, Hit, Index, IndexConfig, IndexInfo, Item,
    KMeansError, LoadedIndex, MetadataMatches, MetadataQuery, Metric, Precision, ProgressFn,
    QueryOptions, Record, Result, RotateProgress, Rotated, SecretKey, SimdLevel, StorageError,
    Suite, TrainOptions, TrainProgress, TrainingState, UserEntry, UserId, MAX_CONTENTS_BYTES,
    MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_TOP_K, NAMESPACES,
};
use vecseal_pg::PgStore;
use vecseal_storage::{MemStore, RocksStore, Store};

/// `serde_json`, whose `Value` carries item metadata in this API.
pub use serde_json;

/// Where a [`Client`] keeps its data. Its `Debug` form never shows a
/// PostgreSQL connection string (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// RocksDB in this folder (created if missing). The default engine.
    Local(PathBuf),
    /// In memory; gone when the client is dropped.
    InMemory,
    /// PostgreSQL: a `postgres://user@host/db` URL or `key=value`
    /// settings (tables in the connection's schema; pick one with
    /// `options=-csearch_path=NAME`). Several vecseal processes may share
    /// one database (see docs/DEPLOYMENT.md).
    Postgres(String),
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageConfig::Local(path) => f.debug_tuple("Local").field(path).finish(),
            StorageConfig::InMemory => f.write_str("InMemory"),
            StorageConfig::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl StorageConfig {
    /// `Postgres(url)` for a `postgres://` or `postgresql://` URL, else
    /// `Local(folder)`.
    pub fn from_location(location: &str) -> Self {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            StorageConfig::Postgres(location.to_owned())
        } else {
            StorageConfig::Local(PathBuf::from(location))
        }
    }
}

/// A handle on one store holding any number of indexes. Thread-safe; clone it
/// freely.
#[derive(Clone)]
pub struct Client {
    db: Database,
}

impl Client {
    /// Opens the store.
    pub fn open(config: StorageConfig) -> Result<Self> {
        let store: Arc<dyn Store> = match config {
            StorageConfig::Local(path) => {
                Arc::new(RocksStore::open(path, vecseal_index::NAMESPACES)?)
            }
            StorageConfig::InMemory => Arc::new(MemStore::new(vecseal_index::NAMESPACES)),
            StorageConfig::Postgres(url) => {
                Arc::new(PgStore::open(&url, vecseal_index::NAMESPACES)?)
            }
        };
        Ok(Self {
            db: Database::new(store),
        })
    }

    /// A client over `db`: a [`Database`] on any engine that implements
    /// vecseal-storage's `Store` (one of your own, or a wrapper around one
    /// of vecseal's).
    pub fn from_database(db: Database) -> Self {
        Self { db }
    }

    /// Indexes loaded or created from now on keep a bounded cache of
    /// decrypted vector blocks of at most `bytes` (0 = off, the default).
    #[must_use]
    pub fn with_list_cache(mut self, bytes: usize) -> Self {
        self.db = self.db.with_list_cache(bytes);
        self
    }

    /// Creates an index; `owner` holds the root index key.
    pub fn create_index(
        &self,
        name: &str,
        owner: Credentials,
        config: IndexConfig,
    ) -> Result<Index> {
        self.db.create_index(name, owner, config)
    }

    /// Loads an index with owner or user credentials.
    pub fn load_index(&self, name: &str, cred: Credentials) -> Result<Index> {
        self.db.load_index(name, cred)
    }

    /// Names of all indexes.
    pub fn list_indexes(&self) -> Result<Vec<String>> {
        self.db.list_indexes()
    }

    /// Deletes an index and all its records (owner only).
    pub fn delete_index(&self, name: &str, owner: &Credentials) -> Result<()> {
        self.db.delete_index(name, owner)
    }
}

/// The README's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::StorageConfig;

    #[test]
    fn locations_choose_the_engine_and_debug_hides_the_connection_string() {
        let pg = StorageConfig::from_location("postgres://app:hunter2@db.internal/vecs");
        assert!(matches!(pg, StorageConfig::Postgres(_)));
        let shown = format!("{pg:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("db.internal"),
            "{shown}"
        );
        assert!(matches!(
            StorageConfig::from_location("postgresql://h/db"),
            StorageConfig::Postgres(_)
        ));
        assert_eq!(
            StorageConfig::from_location("./data"),
            StorageConfig::Local("./data".into())
        );
    }
}
