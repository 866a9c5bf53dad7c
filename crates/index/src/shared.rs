//! One loaded index as every handle shares it: opening, authorization,
//! reading blocks and items.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use vecseal_envelope::{SecretKey, Suite};
use vecseal_keyring::{Access, IndexId, Keyring, WriteCap};
use vecseal_storage::{Durability, Scan, WriteBatch};

use vecseal_codec::Record;

use crate::cache::BlockCache;
use crate::catalog::{
    open_ring, read_catalog, rotation_marker, write_catalog, Entry, NS_BLOCKS, NS_ITEMS, NS_META,
};
use crate::codec::{Block, ItemRecord, Place};
use crate::guarded::{Capability, GuardedStore};
use crate::keys::{Credentials, Keys, Kind};
use crate::metaindex::MetaIndex;
use crate::options::TrainingState;
use crate::route::Routes;
use crate::state::{BlockRef, Digest, Persisted};
use crate::{Error, Result};

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

pub(crate) struct Live {
    pub(crate) p: Persisted,
    /// The keys of the current data key. Readers take them here, under the
    /// guard they read with: a data-key rotation switches them with the
    /// state, so a reader never pairs one key with the other's records.
    pub(crate) keys: Arc<Keys>,
    /// The data key `keys` derive from: authorization compares a caller's
    /// key with it (in constant time) instead of deriving keys per call.
    pub(crate) dek: Arc<SecretKey>,
    /// The centroids (empty before training), ready to route.
    pub(crate) centroids: Routes,
    /// Item id → number of the block holding its search vector.
    pub(crate) locations: HashMap<String, u64>,
    /// Decrypted metadata with equality postings (memory only).
    pub(crate) meta: MetaIndex,
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
        let entry = read_catalog(&store, name)?;
        let (id, suite) = (entry.id, entry.ring.suite());
        let access = open_ring(&entry.ring, cred)?;
        let keys = Arc::new(Keys::derive(access.data_key(), id, suite));
        let sk = keys.state_key();
        let raw = store.get(NS_META, &sk)?.ok_or_else(|| Error::Corrupt {
            what: Record::State,
            reason: "missing".into(),
        })?;
        let p = Persisted::decode(&keys.open(Kind::State, &sk, &raw)?)?;
        entry.verify(name, &keys, p.ring_tag)?;
        let centroids = if p.trained {
            Routes::new(read_centroids(&store, &keys, &p)?, p.dim.unwrap_or(1))
        } else {
            Routes::default()
        };
        let index = Self {
            store,
            name: name.to_owned(),
            id,
            suite,
            writer: Mutex::new(()),
            live: RwLock::new(Live {
                keys: Arc::clone(&keys),
                dek: access.data_key_arc(),
                meta: MetaIndex::new(&p.fields, &p.unindexed_fields),
                p,
                centroids,
                locations: HashMap::new(),
            }),
            training: AtomicBool::new(false),
            cache: (cache_bytes > 0).then(|| BlockCache::new(cache_bytes)),
            _registry: registry,
        };
        // After a rotation that did not finish, records of the other data
        // key are skipped (the digest still checks the set of blocks), and
        // deleted below by a writer.
        let rotating = index.store.get(NS_META, &rotation_marker(id))?.is_some();
        index.rebuild_locations(&keys, rotating)?;
        index.load_metadata(&keys, rotating)?;
        if let Ok(cap) = access.write() {
            index.upgrade(cap, &keys)?;
            if entry.tag().is_none() {
                // An entry written before entries had tags gets one.
                index.save_ring(cap, &keys, entry.ring)?;
            }
            index.collect_orphans(cap, &keys)?;
        }
        Ok(index)
    }

    /// Maps every item to its block, and (version 2) rebuilds the lists
    /// from the blocks themselves, checking them against the state's count
    /// and digest: a block removed, restored from an older state, moved or
    /// replaced is an authentication error. Blocks of another generation
    /// (left by a training run that did not finish) are skipped.
    pub(crate) fn rebuild_locations(&self, keys: &Keys, rotating: bool) -> Result<()> {
        let mut live = self.live.write();
        let Some(dim) = live.p.dim else { return Ok(()) };
        if live.p.is_legacy() {
            let seqs: Vec<u64> = live
                .p
                .lists
                .iter()
                .flat_map(|l| l.iter())
                .map(|b| b.seq)
                .collect();
            // Each worker reads blocks into one buffer and keeps only their ids.
            let ids: Vec<(u64, Vec<String>)> = seqs
                .par_iter()
                .map_init(Block::default, |buf, &seq| {
                    self.read_block(keys, seq, dim, buf)?;
                    Ok((seq, buf.ids().iter().map(str::to_owned).collect()))
                })
                .collect::<Result<_>>()?;
            let mut locations = HashMap::with_capacity(ids.iter().map(|(_, v)| v.len()).sum());
            for (seq, block_ids) in ids {
                for id in block_ids {
                    locations.insert(id, seq);
                }
            }
            live.locations = locations;
            return Ok(());
        }
        let (generation, n_lists) = (live.p.generation, live.p.n_lists);
        let corrupt = |reason: &str| Error::Corrupt {
            what: Record::Block,
            reason: reason.to_owned(),
        };
        let mut lists: Vec<Vec<BlockRef>> = vec![Vec::new(); n_lists];
        let mut locations = HashMap::new();
        let (mut digest, mut blocks) = (Digest::default(), 0u64);
        let scan = self.store.scan_prefix(NS_BLOCKS, &self.id.0)?;
        for_each_chunk(scan, |chunk| {
            let opened: Vec<Option<(Place, Vec<String>)>> = chunk
                .par_iter()
                .map_init(Block::default, |buf, (key, sealed)| {
                    match buf.open_into(sealed, dim, |b| keys.open_in_place(Kind::Block, key, b)) {
                        Err(Error::Authentication(_)) if rotating => return Ok(None),
                        other => other?,
                    }
                    let place = buf
                        .place()
                        .ok_or_else(|| corrupt("a block of a version-2 index has no place"))?;
                    if place.generation != generation {
                        return Ok(None);
                    }
                    if keys.block_key(place.seq) != *key || place.list as usize >= n_lists {
                        return Err(corrupt("a block's place does not match where it is"));
                    }
                    Ok(Some((place, buf.ids().iter().map(str::to_owned).collect())))
                })
                .collect::<Result<_>>()?;
            for (place, ids) in opened.into_iter().flatten() {
                let count = ids.len() as u32;
                digest.add(keys.block_digest(place, count));
                blocks += 1;
                lists[place.list as usize].push(BlockRef {
                    seq: place.seq,
                    count,
                });
                for id in ids {
                    locations.insert(id, place.seq);
                }
            }
            Ok(())
        })?;
        if blocks != live.p.blocks || digest != live.p.digest {
            return Err(Error::BlocksTampered);
        }
        for l in &mut lists {
            l.sort_unstable_by_key(|r| r.seq);
        }
        live.p.lists = lists.into_iter().map(Arc::new).collect();
        live.locations = locations;
        Ok(())
    }

    /// Decrypts every item's metadata into memory, when the index has any.
    pub(crate) fn load_metadata(&self, keys: &Keys, rotating: bool) -> Result<()> {
        let mut live = self.live.write();
        if !live.p.has_metadata {
            return Ok(());
        }
        // Items carry their contents too: read them a chunk at a time.
        let scan = self.store.scan_prefix(NS_ITEMS, &self.id.0)?;
        for_each_chunk(scan, |chunk| {
            let docs: Vec<Option<(String, serde_json::Value)>> = chunk
                .par_iter()
                .map(|(key, raw)| {
                    let plain = match keys.open(Kind::Item, key, raw) {
                        Err(Error::Authentication(_)) if rotating => return Ok(None),
                        other => other?,
                    };
                    let rec = ItemRecord::decode(&plain)?;
                    Ok(parse_meta(rec.metadata)?.map(|m| (rec.id, m)))
                })
                .collect::<Result<_>>()?;
            for (id, doc) in docs.into_iter().flatten() {
                live.meta.insert(&id, doc);
            }
            Ok(())
        })
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

    /// Holds off every writer of this index while the guard lives.
    pub(crate) fn lock_writer(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.writer.lock()
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
        batch.put_owned(NS_META, sk, sealed);
        let mut live = self.live.write();
        self.store.write(cap, batch, Durability::Sync)?;
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
        let key = keys.block_key(seq);
        let mut opened = Ok(());
        let found = self.store.read_with(NS_BLOCKS, &key, &mut |sealed| {
            opened = into.open_into(sealed, dim, |buf| {
                keys.open_in_place(Kind::Block, &key, buf)
            });
        })?;
        if !found {
            return Err(Error::Corrupt {
                what: Record::Block,
                reason: "a block the index state references is missing".into(),
            });
        }
        opened
    }

    /// Block `seq`, from the list cache or the store (and then cached).
    pub(crate) fn load_block(&self, keys: &Keys, seq: u64, dim: usize) -> Result<Arc<Block>> {
        if let Some(b) = self.cache.as_ref().and_then(|c| c.get(seq)) {
            return Ok(b);
        }
        let mut block = Block::default();
        self.read_block(keys, seq, dim, &mut block)?;
        let block = Arc::new(block);
        if let Some(c) = &self.cache {
            c.insert(seq, Arc::clone(&block));
        }
        Ok(block)
    }

    /// Calls `f` with every block of `seqs` in order, each decrypted into
    /// one reused buffer: never all held at once, and not put in the list
    /// cache (training reads blocks it is about to replace).
    pub(crate) fn for_each_block(
        &self,
        keys: &Keys,
        seqs: &[u64],
        dim: usize,
        mut f: impl FnMut(&Block),
    ) -> Result<()> {
        let mut buf = Block::default();
        for &seq in seqs {
            self.read_block(keys, seq, dim, &mut buf)?;
            f(&buf);
        }
        Ok(())
    }
}

impl Shared {
    pub(crate) fn read_items(
        &self,
        keys: &Keys,
        ids: &[String],
    ) -> Result<Vec<Option<ItemRecord>>> {
        let item_keys: Vec<Vec<u8>> = ids.iter().map(|id| keys.item_key(id)).collect();
        let refs: Vec<&[u8]> = item_keys.iter().map(Vec::as_slice).collect();
        let raws = self.store.multi_get(NS_ITEMS, &refs)?;
        raws.into_par_iter()
            .zip(item_keys.par_iter())
            .zip(ids.par_iter())
            .map(|((raw, key), id)| {
                raw.map(|raw| {
                    let rec = ItemRecord::decode(&keys.open(Kind::Item, key, &raw)?)?;
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

/// Calls `f` with the entries of `scan` in chunks of at most 256 entries
/// and about 8 MiB (a chunk is decrypted in parallel): reading a whole
/// namespace of an index holds one chunk at a time, whatever its size.
fn for_each_chunk(
    mut scan: Scan<'_>,
    mut f: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>,
) -> Result<()> {
    const ENTRIES: usize = 256;
    const BYTES: usize = 8 << 20;
    loop {
        let (mut chunk, mut bytes) = (Vec::new(), 0);
        while chunk.len() < ENTRIES && bytes < BYTES {
            let Some(entry) = scan.next() else { break };
            let entry = entry?;
            bytes += entry.0.len() + entry.1.len();
            chunk.push(entry);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        f(chunk)?;
    }
}

pub(crate) fn parse_meta(m: Option<String>) -> Result<Option<serde_json::Value>> {
    m.map(|s| {
        serde_json::from_str(&s).map_err(|e| Error::Corrupt {
            what: Record::Item,
            reason: format!("its metadata is not JSON: {e}"),
        })
    })
    .transpose()
}

pub(crate) fn read_centroids(store: &GuardedStore, keys: &Keys, p: &Persisted) -> Result<Vec<f32>> {
    let ck = keys.centroids_key(p.generation);
    let raw = store.get(NS_META, &ck)?.ok_or_else(|| Error::Corrupt {
        what: Record::Centroids,
        reason: "missing".into(),
    })?;
    let bytes = keys.open(Kind::Centroids, &ck, &raw)?;
    crate::codec::decode_centroids(&bytes, p.n_lists, p.dim.unwrap_or(0))
}
