//! The catalog of indexes in a store.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use vecseal_envelope::Suite;
use vecseal_keyring::{IndexId, Keyring};
use vecseal_storage::{Durability, Expect, Store, WriteBatch};

use crate::catalog::{
    catalog_key, check_name, open_ring, read_catalog, write_catalog, Entry, NS_BLOCKS, NS_CATALOG,
    NS_ITEMS, NS_META,
};
use crate::guarded::GuardedStore;
use crate::handle::Index;
use crate::keys::{Credentials, Keys};
use crate::metaindex::{validate_schema, FieldSchema};
use crate::precision::Precision;
use crate::shared::{lock_name, Registry, Shared};
use crate::state::Persisted;
use crate::{Error, Metric, Result};

/// How a new index is configured.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct IndexConfig {
    /// Fixed dimension; `None` takes it from the first upsert.
    pub dimension: Option<usize>,
    /// The metric.
    pub metric: Metric,
    /// The cipher suite for every record of the index.
    pub suite: Suite,
    /// Metadata field paths (dot-separated) that get no equality postings:
    /// filters on them still work, by evaluating every item's metadata.
    /// Postings live only in memory, so this trades filter speed for memory.
    /// The same as [`FieldSchema::unindexed`] in `fields`.
    pub unindexed_fields: Vec<String>,
    /// The per-field metadata schema (see [`FieldSchema`]); fields not
    /// named get the default.
    pub fields: BTreeMap<String, FieldSchema>,
    /// How search vectors are stored (float32 by default); fixed at
    /// creation (see [`Precision`]).
    pub storage_precision: Precision,
}

impl IndexConfig {
    /// Sets the storage precision of search vectors.
    pub fn with_storage_precision(mut self, p: Precision) -> Self {
        self.storage_precision = p;
        self
    }
    /// Sets the dimension.
    pub fn with_dimension(mut self, d: usize) -> Self {
        self.dimension = Some(d);
        self
    }
    /// Sets the metric.
    pub fn with_metric(mut self, m: Metric) -> Self {
        self.metric = m;
        self
    }
    /// Sets the cipher suite.
    pub fn with_suite(mut self, s: Suite) -> Self {
        self.suite = s;
        self
    }
    /// Opts a metadata field path out of the equality postings.
    pub fn with_unindexed_field(mut self, path: impl Into<String>) -> Self {
        self.unindexed_fields.push(path.into());
        self
    }
    /// Declares how the metadata field `path` is indexed.
    pub fn with_field(mut self, path: impl Into<String>, schema: FieldSchema) -> Self {
        self.fields.insert(path.into(), schema);
        self
    }

    /// The schema to record: `fields` with `unindexed_fields` folded in.
    fn schema(&self) -> Result<BTreeMap<String, FieldSchema>> {
        let mut fields = self.fields.clone();
        for path in &self.unindexed_fields {
            let f = fields.entry(path.clone()).or_default();
            if !f.filterable {
                return Err(Error::InvalidParameter {
                    name: "metadata schema",
                    value: format!("field {path:?}: unindexed and filterable: false"),
                    expected:
                        "one of them (filterable: false already keeps a field out of every posting)",
                });
            }
            f.unindexed = true;
        }
        validate_schema(&fields)?;
        Ok(fields)
    }
}

/// A store holding any number of named encrypted indexes.
///
/// Every `Database` over one store object (the same `Arc`, or clones of
/// it) in a process shares one registry of loaded indexes: loading an index
/// that is already loaded returns a handle on the same in-memory state, so
/// two handles of one index never diverge or overwrite each other's
/// writes, and creating or deleting an index is serialized with the
/// index's writers. (Two store objects over one RocksDB folder cannot
/// exist: RocksDB refuses the second open.)
#[derive(Clone)]
pub struct Database {
    store: GuardedStore,
    cache_bytes: usize,
    registry: Arc<Registry>,
}

impl Database {
    /// A database over `store` (opened with [`NAMESPACES`](crate::NAMESPACES)).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            registry: Registry::of(Arc::as_ptr(&store).cast::<u8>() as usize),
            store: GuardedStore::new(store),
            cache_bytes: 0,
        }
    }

    /// Indexes loaded from now on keep a cache of decrypted blocks of at most
    /// `bytes` (0 = off, the default).
    #[must_use]
    pub fn with_list_cache(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.store.engine()
    }

    /// Creates an index owned by `owner` (root key credentials).
    pub fn create_index(
        &self,
        name: &str,
        owner: Credentials,
        config: IndexConfig,
    ) -> Result<Index> {
        check_name(name)?;
        if owner.user.is_some() {
            return Err(Error::InvalidParameter {
                name: "credentials",
                value: "an RBAC user".into(),
                expected: "the owner's index key: users are added after creation",
            });
        }
        if config.dimension == Some(0) {
            return Err(Error::zero("dimension"));
        }
        let fields = config.schema()?;
        let catalog = self.registry.catalog.lock();
        match read_catalog(&self.store, name) {
            Ok(_) => return Err(Error::AlreadyExists(name.to_owned())),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let id = IndexId::generate()?;
        let (ring, access) = Keyring::create(id, &owner.key, config.suite)?;
        let cap = access.owner_for("creating the index")?;
        let keys = Keys::derive(access.data_key(), id, config.suite);
        let entry = Entry::new(name, ring, &keys);
        let mut state = Persisted::new(config.dimension, config.metric, fields);
        state.ring_tag = entry.tag();
        state.precision = config.storage_precision;
        let mut batch = WriteBatch::new();
        write_catalog(&mut batch, name, &entry);
        let sk = keys.state_key();
        let sealed = keys.seal(crate::keys::Kind::State, &sk, &state.encode()?)?;
        batch.put_owned(NS_META, sk, sealed);
        // Only over no entry: another process may have created the name
        // since it was read.
        let key = catalog_key(name);
        let absent = Expect {
            ns: NS_CATALOG,
            key: &key,
            value: None,
        };
        if !self.store.write_if(cap, absent, batch, Durability::Sync)? {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        drop(catalog);
        self.load_index(name, owner)
    }

    /// Loads an existing index; the credentials become its default for every
    /// operation. A wrong key is [`vecseal_keyring::Error::WrongKey`].
    ///
    /// The list cache size is the one in force when the index was first
    /// loaded by this database (or a clone of it).
    pub fn load_index(&self, name: &str, cred: Credentials) -> Result<Index> {
        let mut loaded = self.registry.loaded.lock();
        loaded.retain(|_, w| w.strong_count() > 0);
        // An index of this name already loaded: authorizing reads its
        // catalog entry (one read, not two), and says if the name now
        // holds another index (stale: then it is looked up anew below).
        let kept = loaded
            .values()
            .filter_map(Weak::upgrade)
            .find(|s| s.name == name);
        if let Some(shared) = kept {
            match shared.authorize(&cred) {
                Ok(_) => return Ok(Index::from_shared(shared, cred)),
                Err(Error::StaleHandle(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Read under the lock: a deletion holds it while it removes records.
        let id = read_catalog(&self.store, name)?.id;
        if let Some(shared) = loaded.get(&id).and_then(Weak::upgrade) {
            shared.authorize(&cred)?;
            return Ok(Index::from_shared(shared, cred));
        }
        let shared = Arc::new(Shared::open(
            self.store.clone(),
            Arc::clone(&self.registry),
            name,
            &cred,
            self.cache_bytes,
        )?);
        loaded.insert(id, Arc::downgrade(&shared));
        Ok(Index::from_shared(shared, cred))
    }

    /// Names of all indexes, sorted.
    pub fn list_indexes(&self) -> Result<Vec<String>> {
        self.store
            .scan_prefix(NS_CATALOG, b"index/")?
            .map(|r| {
                r.map(|(k, _)| String::from_utf8_lossy(&k[6..]).into_owned())
                    .map_err(Error::from)
            })
            .collect()
    }

    /// Deletes an index and every record of it. Needs the owner's key.
    ///
    /// Waits for the writers of the index's loaded handles; they authorize
    /// under its writer lock, so afterwards every call on such a handle
    /// sees the catalog entry gone ([`Error::NotFound`]) and writes nothing.
    pub fn delete_index(&self, name: &str, owner: &Credentials) -> Result<()> {
        let _catalog = self.registry.catalog.lock();
        let entry = read_catalog(&self.store, name)?;
        let access = open_ring(&entry.ring, owner)?;
        let cap = access.owner_for("deleting the index")?;
        // The entry must be this name's: deleting "a" must never delete the
        // records of an index whose entry was moved under "a".
        let keys = Keys::derive(access.data_key(), entry.id, entry.ring.suite());
        entry.verify(name, &keys, entry.tag())?;
        let id = entry.id;
        loop {
            let shared = self.registry.loaded.lock().get(&id).and_then(Weak::upgrade);
            let _writer = shared.as_ref().map(|s| s.writer.lock());
            // The writers of other processes (over a shared store) too.
            let _held = self.store.lock(&lock_name(id))?;
            // Holding the registry keeps the index from being loaded anew
            // while its records go; a state loaded before it was taken has
            // writers this does not hold off: start again.
            let mut loaded = self.registry.loaded.lock();
            let now = loaded.get(&id).and_then(Weak::upgrade);
            let same = match (&now, &shared) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                continue;
            }
            let mut batch = WriteBatch::new();
            for ns in [NS_META, NS_ITEMS, NS_BLOCKS] {
                for entry in self.store.scan_prefix(ns, &id.0)? {
                    batch.delete(ns, &entry?.0);
                }
            }
            let key = catalog_key(name);
            batch.delete(NS_CATALOG, &key);
            // Only the entry checked above: another process may have
            // deleted the index, and created another under the name.
            let checked = entry.encode();
            let expect = Expect {
                ns: NS_CATALOG,
                key: &key,
                value: Some(&checked),
            };
            if !self.store.write_if(cap, expect, batch, Durability::Sync)? {
                return Err(Error::Conflict(name.to_owned()));
            }
            loaded.remove(&id);
            return Ok(());
        }
    }
}
