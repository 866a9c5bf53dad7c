//! One loaded index as every handle shares it: opening, authorization,
//! reading blocks and items.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use vecseal_envelope::Suite;
use vecseal_keyring::{Access, IndexId, Keyring, WriteCap};
use vecseal_storage::{Durability, Expect, Snapshot, WriteBatch};

use vecseal_codec::Record;

use crate::cache::BlockCache;
use crate::catalog::{
    open_ring, read_catalog, rotation_marker, write_catalog, Entry, NS_BLOCKS, NS_ITEMS, NS_META,
};
use crate::codec::{Block, Ids, ItemRecord};
use crate::distance::normalize;
use crate::guarded::{Capability, GuardedStore};
use crate::keys::{Credentials, Keys, Kind};
use crate::load::{load, missing_block, Live, Loaded};
use crate::options::TrainingState;
use crate::{Error, Metric, Result};

/// Held by a writer of an index: see [`Shared::lock_writer`].
pub(crate) struct WriterLock<'a> {
    _held: vecseal_storage::Held<'a>,
    _local: parking_lot::MutexGuard<'a, ()>,
}

/// What every `Database` over one store shares within a process.
#[derive(Default)]
pub(crate) struct Registry {
    /// The loaded indexes: loading one that is loaded returns its state.
    pub(crate) loaded: Mutex<HashMap<IndexId, Weak<Shared>>>,
    /// Held while the catalog changes (creating or deleting an index), so
    /// two creations of one name cannot both succeed.
    pub(crate) catalog: Mutex<()>,
}

impl Registry {
    /// The registry of the store object at `address`: one per store for
    /// as long as a database or an index handle over it lives. (While a
    /// registry lives, a database or handle holding the store does too, so
    /// its address is not reused by another store.)
    pub(crate) fn of(address: usize) -> Arc<Registry> {
        static ALL: Mutex<Vec<(usize, Weak<Registry>)>> = Mutex::new(Vec::new());
        let mut all = ALL.lock();
        all.retain(|(_, r)| r.strong_count() > 0);
        if let Some(r) = all
            .iter()
            .find(|(a, _)| *a == address)
            .and_then(|(_, r)| r.upgrade())
        {
            return r;
        }
        let r = Arc::new(Registry::default());
        all.push((address, Arc::downgrade(&r)));
        r
    }
}

/// The state of one loaded index, shared by all its handles.
pub(crate) struct Shared {
    pub(crate) store: GuardedStore,
    pub(crate) name: String,
    pub(crate) id: IndexId,
    pub(crate) suite: Suite,
    pub(crate) writer: Mutex<()>,
    pub(crate) live: RwLock<Live>,
    pub(crate) training: AtomicBool,
    pub(crate) cache: Option<BlockCache>,
    /// The registry this state is in, kept while any handle lives so that
    /// a new `Database` over the store finds this state.
    _registry: Arc<Registry>,
}

pub(crate) fn check_vector(what: impl Fn() -> String, v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(Error::DimensionMismatch {
            what: what(),
            expected: dim,
            got: v.len(),
        });
    }
    if let Some(position) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            what: what(),
            position,
        });
    }
    Ok(())
}

impl Shared {
    /// Opens the index (`cred` must open its keyring).
    pub(crate) fn open(
        store: GuardedStore,
        registry: Arc<Registry>,
        name: &str,
        cred: &Credentials,
        cache_bytes: usize,
    ) -> Result<Self> {
        let Loaded {
            entry,
            access,
            live,
        } = load(&*store.snapshot()?, name, None, cred, None)?;
        let index = Self {
            store,
            name: name.to_owned(),
            id: entry.id,
            suite: entry.ring.suite(),
            writer: Mutex::new(()),
            live: RwLock::new(live),
            training: AtomicBool::new(false),
            cache: (cache_bytes > 0).then(|| BlockCache::new(cache_bytes)),
            _registry: registry,
        };
        if let Ok(cap) = access.write() {
            // Upkeep, when no other process writes the index (it is done
            // by a later writer otherwise); over what is stored now.
            let _local = index.writer.lock();
            if let Some(_held) = index.store.try_lock(&index.lock_name())? {
                index.refresh(cred)?;
                let keys = Arc::clone(&index.live.read().keys);
                index.upgrade(cap, &keys)?;
                // As stored now (another process may have changed it since
                // the snapshot above).
                let entry = read_catalog(&index.store, name)?;
                if entry.id == index.id && entry.tag().is_none() {
                    // An entry written before entries had tags gets one.
                    index.save_ring(cap, &keys, entry.ring)?;
                }
                index.collect_orphans(cap, &keys)?;
            }
        }
        Ok(index)
    }

    /// The name of the store-wide lock that the writers of this index hold
    /// (in every process).
    pub(crate) fn lock_name(&self) -> Vec<u8> {
        lock_name(self.id)
    }

    /// When the store is shared and another process has committed since
    /// the live state was read, reads it again (from one consistent view)
    /// with the keys that `cred` opens now. Returns whether it did.
    pub(crate) fn refresh(&self, cred: &Credentials) -> Result<bool> {
        if !self.store.is_shared() {
            return Ok(false);
        }
        // Until the live state is the stored one: another thread of this
        // process may have installed an older state it read meanwhile
        // (and a writer, holding the store lock, must start from the
        // newest).
        let mut reloaded = false;
        for _ in 0..4 {
            {
                let live = self.live.read();
                let now = self.store.get(NS_META, &live.keys.state_key())?;
                if live.matches_stored(now.as_deref()) {
                    return Ok(reloaded);
                }
            }
            self.refresh_from(&*self.store.snapshot()?, cred)?;
            reloaded = true;
        }
        Ok(reloaded)
    }

    /// Makes the live state the one in `view`, reading it from there (with
    /// the keys `cred` opens there) when it differs.
    pub(crate) fn refresh_from(&self, view: &dyn Snapshot, cred: &Credentials) -> Result<()> {
        let seen = {
            let live = self.live.read();
            let now = view.get(NS_META, &live.keys.state_key())?;
            if live.matches_stored(now.as_deref()) {
                return Ok(());
            }
            live.sealed.clone()
        };
        let loaded = self.load_from(view, cred)?;
        self.install_over(&seen, loaded);
        Ok(())
    }

    /// The state stored in `view`, read from there with the keys `cred`
    /// opens, and not installed: no commit of this process can replace it
    /// while the caller reads `view` with it.
    pub(crate) fn load_from(&self, view: &dyn Snapshot, cred: &Credentials) -> Result<Live> {
        let (dek, keys) = {
            let live = self.live.read();
            (Arc::clone(&live.dek), Arc::clone(&live.keys))
        };
        Ok(load(view, &self.name, Some(self.id), cred, Some((&dek, &keys)))?.live)
    }

    /// Makes `loaded` the live state if the live state is still the one
    /// sealed as `seen`: a commit of this process in between is as new (it
    /// held the store lock), and stays.
    pub(crate) fn install_over(&self, seen: &[u8], loaded: Live) {
        let mut live = self.live.write();
        if live.sealed == seen {
            *live = loaded;
        }
    }

    /// Deletes blocks that no state references (left by a crashed train).
    pub(crate) fn collect_orphans(&self, cap: &WriteCap, keys: &Keys) -> Result<()> {
        let live = self.live.read();
        let referenced: HashSet<Vec<u8>> = live
            .p
            .lists
            .iter()
            .flat_map(|l| l.iter())
            .map(|b| keys.block_key(b.seq))
            .collect();
        let mut batch = WriteBatch::new();
        for entry in self.store.scan_prefix(NS_BLOCKS, &self.id.0)? {
            let (k, _) = entry?;
            if !referenced.contains(&k) {
                batch.delete(NS_BLOCKS, &k);
            }
        }
        // A rotation that did not finish left items under the other data
        // key: every item record but the current keys of live items goes
        // (before the marker, deleted with the other metadata below).
        if self
            .store
            .get(NS_META, &rotation_marker(self.id))?
            .is_some()
        {
            let current: HashSet<Vec<u8>> =
                live.locations.keys().map(|id| keys.item_key(id)).collect();
            for entry in self.store.scan_prefix(NS_ITEMS, &self.id.0)? {
                let (k, _) = entry?;
                if !current.contains(&k) {
                    batch.delete(NS_ITEMS, &k);
                }
            }
        }
        let current = keys.centroids_key(live.p.generation);
        let state = keys.state_key();
        for entry in self.store.scan_prefix(NS_META, &self.id.0)? {
            let (k, _) = entry?;
            if k != state && (k != current || !live.p.trained) {
                batch.delete(NS_META, &k);
            }
        }
        if !batch.is_empty() {
            self.store.write(cap, batch, Durability::Sync)?;
        }
        Ok(())
    }

    /// Holds off every writer of this index while the guard lives: those
    /// of this process, and (over a shared store) those of every other.
    pub(crate) fn lock_writer(&self) -> Result<WriterLock<'_>> {
        let local = self.writer.lock();
        let held = self.store.lock(&self.lock_name())?;
        Ok(WriterLock {
            _held: held,
            _local: local,
        })
    }

    /// Writes `batch`, which puts `sealed` as the index's state record, if
    /// the stored state is still the one `live` holds (the compare-and-swap
    /// that keeps a commit from overwriting another process's), then
    /// records `sealed` in `live`. [`Error::Conflict`] when it is not.
    pub(crate) fn write_state<C: Capability>(
        &self,
        cap: &C,
        live: &mut Live,
        batch: WriteBatch,
        durability: Durability,
        sealed: Vec<u8>,
    ) -> Result<()> {
        let key = live.keys.state_key();
        let expect = Expect {
            ns: NS_META,
            key: &key,
            value: Some(&live.sealed),
        };
        if !self.store.write_if(cap, expect, batch, durability)? {
            return Err(Error::Conflict(self.name.clone()));
        }
        live.sealed = sealed;
        Ok(())
    }

    pub(crate) fn training_state(&self) -> TrainingState {
        if self.training.load(Ordering::SeqCst) {
            TrainingState::Training
        } else if self.live.read().p.trained {
            TrainingState::Trained
        } else {
            TrainingState::Untrained
        }
    }

    /// Opens the keyring for this operation and returns the caller's access
    /// with the index's derived keys. Re-reads the keyring every time, so a
    /// revocation takes effect on the next call.
    pub(crate) fn authorize(&self, cred: &Credentials) -> Result<(Access, Arc<Keys>)> {
        self.authorize_ring(cred)
            .map(|(_, access, keys)| (access, keys))
    }

    /// [`Shared::authorize`], with the catalog entry it checked.
    pub(crate) fn authorize_ring(&self, cred: &Credentials) -> Result<(Entry, Access, Arc<Keys>)> {
        self.refresh(cred)?;
        // The entry and the state's record of its tag are read under one
        // guard: a keyring change writes both, under the write guard.
        let live = self.live.read();
        let entry = read_catalog(&self.store, &self.name)?;
        if entry.id != self.id {
            // Another index's entry under this name: one created after this
            // handle's index was deleted, or one moved here by the store
            // (told apart when these credentials open it).
            if let Ok(access) = open_ring(&entry.ring, cred) {
                let theirs = Keys::derive(access.data_key(), entry.id, entry.ring.suite());
                entry.verify(&self.name, &theirs, entry.tag())?;
            }
            return Err(Error::StaleHandle(self.name.clone()));
        }
        let access = open_ring(&entry.ring, cred)?;
        // The live keys, unless the entry read holds another data key (one
        // switched by a rotation since): then this call's own.
        let keys = if live.dek.ct_eq(access.data_key()) {
            Arc::clone(&live.keys)
        } else {
            Arc::new(Keys::derive(access.data_key(), self.id, self.suite))
        };
        entry.verify(&self.name, &keys, live.p.ring_tag)?;
        Ok((entry, access, keys))
    }

    /// Writes `ring` as the index's keyring: a new catalog entry and the
    /// state naming its tag, in one batch.
    pub(crate) fn save_ring<C: Capability>(
        &self,
        cap: &C,
        keys: &Keys,
        ring: Keyring,
    ) -> Result<()> {
        let entry = Entry::new(&self.name, ring, keys);
        let mut p = self.live.read().p.clone();
        p.ring_tag = entry.tag();
        let mut batch = WriteBatch::new();
        write_catalog(&mut batch, &self.name, &entry);
        let sk = keys.state_key();
        let sealed = keys.seal(Kind::State, &sk, &p.encode()?)?;
        batch.put_owned(NS_META, sk, sealed.clone());
        let mut live = self.live.write();
        self.write_state(cap, &mut live, batch, Durability::Sync, sealed)?;
        live.p.ring_tag = p.ring_tag;
        Ok(())
    }

    /// Reads block `seq` into `into` (its buffers are reused).
    pub(crate) fn read_block(
        &self,
        keys: &Keys,
        seq: u64,
        dim: usize,
        into: &mut Block,
    ) -> Result<()> {
        self.read_block_in(None, keys, seq, dim, into)
    }

    /// [`Shared::read_block`], from `view` when given.
    pub(crate) fn read_block_in(
        &self,
        view: Option<&dyn Snapshot>,
        keys: &Keys,
        seq: u64,
        dim: usize,
        into: &mut Block,
    ) -> Result<()> {
        if let Some(view) = view {
            return crate::load::read_block_in(view, keys, seq, dim, into);
        }
        let key = keys.block_key(seq);
        let mut opened = Ok(());
        let found = self.store.read_with(NS_BLOCKS, &key, &mut |sealed| {
            opened = into.open_into(sealed, dim, |buf| {
                keys.open_in_place(Kind::Block, &key, buf)
            });
        })?;
        if !found {
            return Err(missing_block());
        }
        opened
    }

    /// Block `seq`, from the list cache or the store (and then cached).
    pub(crate) fn load_block(&self, keys: &Keys, seq: u64, dim: usize) -> Result<Arc<Block>> {
        self.load_block_in(None, keys, seq, dim)
    }

    /// [`Shared::load_block`], from `view` when given (a block's contents
    /// never change under its number, so it is cached all the same).
    pub(crate) fn load_block_in(
        &self,
        view: Option<&dyn Snapshot>,
        keys: &Keys,
        seq: u64,
        dim: usize,
    ) -> Result<Arc<Block>> {
        if let Some(b) = self.cache.as_ref().and_then(|c| c.get(seq)) {
            return Ok(b);
        }
        let mut block = Block::default();
        self.read_block_in(view, keys, seq, dim, &mut block)?;
        let block = Arc::new(block);
        if let Some(c) = &self.cache {
            c.insert(seq, Arc::clone(&block));
        }
        Ok(block)
    }

    /// Calls `f` with the ids and exact search vectors (unit length for
    /// cosine) of every block of `seqs` in order, each block decrypted into
    /// one reused buffer: never all held at once, and not put in the list
    /// cache (training reads blocks it is about to replace). The vectors of
    /// a compressed block come from its items.
    pub(crate) fn for_each_block(
        &self,
        keys: &Keys,
        seqs: &[u64],
        dim: usize,
        mut f: impl FnMut(&Ids, &[f32]),
    ) -> Result<()> {
        let mut buf = Block::default();
        let mut exact = Vec::new();
        let metric = self.live.read().p.metric;
        for &seq in seqs {
            self.read_block(keys, seq, dim, &mut buf)?;
            f(
                buf.ids(),
                self.exact_vectors(keys, &buf, (dim, metric), &mut exact)?,
            );
        }
        Ok(())
    }

    /// The exact search vectors of `block`: its own (float32), or those of
    /// its items, read into `buf` (compressed).
    pub(crate) fn exact_vectors<'a>(
        &self,
        keys: &Keys,
        block: &'a Block,
        shape: (usize, Metric),
        buf: &'a mut Vec<f32>,
    ) -> Result<&'a [f32]> {
        if !block.precision().is_compressed() {
            return Ok(block.vectors());
        }
        let ids: Vec<String> = block.ids().iter().map(str::to_owned).collect();
        buf.clear();
        for rec in self.exact_items(None, keys, &ids, shape)? {
            buf.extend_from_slice(&rec.vector);
        }
        Ok(buf)
    }
}

impl Shared {
    /// The items `ids`, read from `view` when given, with their vectors
    /// as searched (unit length for cosine); each must exist (a block or a
    /// candidate names it) with the index's dimension.
    pub(crate) fn exact_items(
        &self,
        view: Option<&dyn Snapshot>,
        keys: &Keys,
        ids: &[String],
        (dim, metric): (usize, Metric),
    ) -> Result<Vec<ItemRecord>> {
        let cosine = metric == Metric::Cosine;
        self.read_items_in(view, keys, ids)?
            .into_par_iter()
            .with_min_len(ITEMS_PER_TASK)
            .map(|rec| {
                // Item ids stay out of errors (they may be logged), as
                // everywhere in this crate.
                let mut rec = rec.ok_or_else(|| Error::Corrupt {
                    what: Record::Block,
                    reason: "a block names an item that has no item record".into(),
                })?;
                if rec.vector.len() != dim {
                    return Err(Error::Corrupt {
                        what: Record::Item,
                        reason: format!("a vector of {} dimensions, not {dim}", rec.vector.len()),
                    });
                }
                if cosine {
                    normalize(&mut rec.vector);
                }
                Ok(rec)
            })
            .collect()
    }

    pub(crate) fn read_items(
        &self,
        keys: &Keys,
        ids: &[String],
    ) -> Result<Vec<Option<ItemRecord>>> {
        self.read_items_in(None, keys, ids)
    }

    /// [`Shared::read_items`], from `view` when given.
    pub(crate) fn read_items_in(
        &self,
        view: Option<&dyn Snapshot>,
        keys: &Keys,
        ids: &[String],
    ) -> Result<Vec<Option<ItemRecord>>> {
        let item_keys: Vec<Vec<u8>> = ids
            .par_iter()
            .with_min_len(ITEMS_PER_TASK)
            .map(|id| keys.item_key(id))
            .collect();
        let raws = match view {
            Some(view) => item_keys
                .par_iter()
                .with_min_len(ITEMS_PER_TASK)
                .map(|k| view.get(NS_ITEMS, k))
                .collect::<Result<Vec<_>, _>>()?,
            // Many records (a batch's rerank reads tens of thousands) are
            // read by every thread, one `multi_get` per piece.
            None => item_keys
                .par_chunks(KEYS_PER_MULTI_GET)
                .map(|piece| {
                    let refs: Vec<&[u8]> = piece.iter().map(Vec::as_slice).collect();
                    self.store.multi_get(NS_ITEMS, &refs)
                })
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
        };
        raws.into_par_iter()
            .zip(item_keys.par_iter())
            .zip(ids.par_iter())
            .with_min_len(ITEMS_PER_TASK)
            .map(|((raw, key), id)| {
                raw.map(|mut raw| {
                    // Opened in the buffer the store gave (no copy).
                    let plain = keys.open_in_place(Kind::Item, key, &mut raw)?;
                    let rec = ItemRecord::decode(&raw[plain])?;
                    if &rec.id != id {
                        return Err(Error::Corrupt {
                            what: Record::Item,
                            reason: "id does not match its key".into(),
                        });
                    }
                    Ok(rec)
                })
                .transpose()
            })
            .collect()
    }
}

/// The fewest item records one task of a parallel read opens: a task of
/// its own per record cost more than opening it, and a query's rerank
/// reads only `top_k × rerank_mult` of them (a few tens).
const ITEMS_PER_TASK: usize = 32;

/// The most keys of one `multi_get` when item records are read: more
/// keys than this are read in pieces on every thread.
const KEYS_PER_MULTI_GET: usize = 256;

/// The name of the store-wide lock of index `id`'s writers.
pub(crate) fn lock_name(id: IndexId) -> Vec<u8> {
    [&b"vecseal/index/"[..], &id.0].concat()
}
