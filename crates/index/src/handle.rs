//! The public handle on one loaded index, and its read-only calls.

use std::sync::Arc;

use crate::keys::Credentials;
use crate::load::parse_meta;
use crate::options::{Fields, GetResult, IndexInfo, Item, TrainingState};
use crate::shared::Shared;
use crate::Result;

/// One encrypted index, seen with the credentials it was loaded with.
///
/// `Send + Sync`: share it behind an `Arc`. Every handle a [`crate::Database`]
/// hands out for the same index shares one in-memory state (lists, writer
/// lock, block cache), so handles never diverge from each other.
pub struct Index {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cred: Credentials,
}

/// An index kept in memory with no credentials attached (see
/// [`Index::keep_loaded`]). It can do nothing by itself: every operation
/// goes through an [`Index`] that carries credentials, and checks them.
#[derive(Clone)]
pub struct LoadedIndex(Arc<Shared>);

impl LoadedIndex {
    /// A handle on this loaded index that acts with `cred`, for services
    /// that keep indexes loaded and take credentials per request. It
    /// checks nothing when made: each of its calls authorizes `cred`, as
    /// every call of an [`Index`] does, so a request costs one check
    /// instead of one for loading and one for the call. A wrong key fails
    /// the first call; so does a stale index (deleted, or replaced under
    /// its name by another process): [`crate::Error::NotFound`] or
    /// [`crate::Error::StaleHandle`], after which
    /// [`crate::Database::load_index`] loads what the name holds now.
    /// ([`Index::name`], [`Index::n_lists`] and [`Index::training_state`]
    /// read the loaded state and take no credentials.)
    pub fn using(&self, cred: Credentials) -> Index {
        Index::from_shared(Arc::clone(&self.0), cred)
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether `index` is a handle on this loaded state (false once the
    /// name was deleted and created again).
    pub fn holds(&self, index: &Index) -> bool {
        Arc::ptr_eq(&self.0, &index.shared)
    }
}

impl Index {
    /// The index name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub(crate) fn from_shared(shared: Arc<Shared>, cred: Credentials) -> Self {
        Self { shared, cred }
    }

    /// A handle on the same loaded index that acts with other credentials
    /// (per-request keys, for services): cheap, it shares every in-memory
    /// structure with `self`.
    pub fn using(&self, cred: Credentials) -> Index {
        Self {
            shared: Arc::clone(&self.shared),
            cred,
        }
    }

    /// The credentials this handle acts with, handed back (to load the
    /// index again after a call found this handle stale).
    pub fn into_credentials(self) -> Credentials {
        self.cred
    }

    /// Keeps this index loaded without keeping its credentials: while a
    /// [`LoadedIndex`] lives, [`crate::Database::load_index`] of this index
    /// finds its in-memory state (lists, postings, caches) instead of
    /// reading every block again. Services keep one per index and act with
    /// each request's own credentials.
    pub fn keep_loaded(&self) -> LoadedIndex {
        LoadedIndex(Arc::clone(&self.shared))
    }

    /// The training state.
    pub fn training_state(&self) -> TrainingState {
        self.shared.training_state()
    }

    /// Number of inverted lists (1 before training).
    pub fn n_lists(&self) -> usize {
        self.shared.live.read().p.lists.len()
    }

    /// Gets items by id with the chosen fields; missing ids are reported.
    pub fn get(&self, ids: &[String], fields: Fields) -> Result<GetResult> {
        let ix = &*self.shared;
        ix.authorize(&self.cred)?;
        let live = ix.live.read();
        let recs = ix.read_items(&live.keys, ids)?;
        drop(live);
        let mut out = GetResult {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for (id, rec) in ids.iter().zip(recs) {
            match rec {
                None => out.missing.push(id.clone()),
                Some(r) => out.items.push(Item {
                    id: r.id,
                    vector: fields.vector.then_some(r.vector),
                    contents: if fields.contents { r.contents } else { None },
                    metadata: if fields.metadata {
                        parse_meta(r.metadata)?
                    } else {
                        None
                    },
                }),
            }
        }
        Ok(out)
    }

    /// All item ids, sorted.
    pub fn list_ids(&self) -> Result<Vec<String>> {
        self.shared.authorize(&self.cred)?;
        let mut ids: Vec<String> = self.shared.live.read().locations.keys().cloned().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Number of items.
    pub fn count(&self) -> Result<usize> {
        self.shared.authorize(&self.cred)?;
        Ok(self.shared.live.read().locations.len())
    }

    /// A summary of the index.
    pub fn info(&self) -> Result<IndexInfo> {
        let ix = &*self.shared;
        ix.authorize(&self.cred)?;
        let state = ix.training_state();
        let l = ix.live.read();
        Ok(IndexInfo {
            name: ix.name.clone(),
            dimension: l.p.dim,
            metric: l.p.metric,
            count: l.locations.len(),
            state,
            n_lists: l.p.lists.len(),
            suite: ix.suite,
            fields: l.p.schema(),
            storage_precision: l.p.precision,
        })
    }
}
