//! Reading an index from one consistent view of its store: the catalog
//! entry, state, centroids, block directory and metadata that make up its
//! live state.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use vecseal_codec::Record;
use vecseal_envelope::SecretKey;
use vecseal_keyring::{Access, IndexId};
use vecseal_storage::{Scan, Snapshot};

use crate::catalog::{
    catalog_key, open_ring, rotation_marker, Entry, NS_BLOCKS, NS_CATALOG, NS_ITEMS, NS_META,
};
use crate::codec::{Block, ItemRecord, Place};
use crate::keys::{Credentials, Keys, Kind};
use crate::metaindex::MetaIndex;
use crate::route::Routes;
use crate::state::{BlockRef, Digest, Persisted};
use crate::{Error, Result};

/// The live state of a loaded index: what its readers and writers work on.
pub(crate) struct Live {
    pub(crate) p: Persisted,
    /// The keys of the current data key. Readers take them here, under the
    /// guard they read with: a data-key rotation switches them with the
    /// state, so a reader never pairs one key with the other's records.
    pub(crate) keys: Arc<Keys>,
    /// The data key `keys` derive from: authorization compares a caller's
    /// key with it (in constant time) instead of deriving keys per call.
    pub(crate) dek: Arc<SecretKey>,
    /// The state record as stored (sealed): a writer commits only over
    /// exactly these bytes, and a reader of a store other processes write
    /// compares them with the store's to notice their commits.
    pub(crate) sealed: Vec<u8>,
    /// The centroids (empty before training), ready to route.
    pub(crate) centroids: Routes,
    /// Item id → number of the block holding its search vector.
    pub(crate) locations: HashMap<String, u64>,
    /// Decrypted metadata with equality postings (memory only).
    pub(crate) meta: MetaIndex,
}

impl Live {
    /// Whether `stored`, the state record as a store holds it now, is the
    /// one this live state was read from or last wrote.
    pub(crate) fn matches_stored(&self, stored: Option<&[u8]>) -> bool {
        stored == Some(&self.sealed[..])
    }
}

/// An index as read from one consistent view of its store.
pub(crate) struct Loaded {
    pub(crate) entry: Entry,
    pub(crate) access: Access,
    pub(crate) live: Live,
}

/// Reads index `name` (which must be index `id`, when given) from `view`
/// with the keyring access of `cred`: its catalog entry, state, centroids,
/// block directory and metadata. `current` is a data key whose keys are
/// derived already.
pub(crate) fn load(
    view: &dyn Snapshot,
    name: &str,
    id: Option<IndexId>,
    cred: &Credentials,
    current: Option<(&Arc<SecretKey>, &Arc<Keys>)>,
) -> Result<Loaded> {
    let raw = view
        .get(NS_CATALOG, &catalog_key(name))?
        .ok_or_else(|| Error::NotFound(name.to_owned()))?;
    let entry = Entry::decode(&raw)?;
    if id.is_some_and(|id| id != entry.id) {
        return Err(Error::StaleHandle(name.to_owned()));
    }
    let access = open_ring(&entry.ring, cred)?;
    let keys = match current {
        Some((dek, keys)) if dek.ct_eq(access.data_key()) => Arc::clone(keys),
        _ => Arc::new(Keys::derive(
            access.data_key(),
            entry.id,
            entry.ring.suite(),
        )),
    };
    let sk = keys.state_key();
    let sealed = view.get(NS_META, &sk)?.ok_or_else(|| Error::Corrupt {
        what: Record::State,
        reason: "missing".into(),
    })?;
    let p = Persisted::decode(&keys.open(Kind::State, &sk, &sealed)?)?;
    entry.verify(name, &keys, p.ring_tag)?;
    let centroids = if p.trained {
        Routes::new(read_centroids(view, &keys, &p)?, p.dim.unwrap_or(1))
    } else {
        Routes::default()
    };
    let mut live = Live {
        keys: Arc::clone(&keys),
        dek: access.data_key_arc(),
        meta: MetaIndex::new(&p.fields, &p.unindexed_fields),
        p,
        sealed,
        centroids,
        locations: HashMap::new(),
    };
    // After a rotation that did not finish, records of the other data key
    // are skipped (the digest still checks the set of blocks), and deleted
    // by a writer.
    let rotating = view.get(NS_META, &rotation_marker(entry.id))?.is_some();
    rebuild_locations(view, entry.id, &mut live, &keys, rotating)?;
    load_metadata(view, entry.id, &mut live, &keys, rotating)?;
    Ok(Loaded {
        entry,
        access,
        live,
    })
}

/// Reads block `seq` from `view` into `into` (its buffers are reused).
pub(crate) fn read_block_in(
    view: &dyn Snapshot,
    keys: &Keys,
    seq: u64,
    dim: usize,
    into: &mut Block,
) -> Result<()> {
    let key = keys.block_key(seq);
    let sealed = view.get(NS_BLOCKS, &key)?.ok_or_else(missing_block)?;
    into.open_into(&sealed, dim, |buf| {
        keys.open_in_place(Kind::Block, &key, buf)
    })
}

pub(crate) fn missing_block() -> Error {
    Error::Corrupt {
        what: Record::Block,
        reason: "a block the index state references is missing".into(),
    }
}

/// Maps every item to its block, and (version 2) rebuilds the lists
/// from the blocks themselves, checking them against the state's count
/// and digest: a block removed, restored from an older state, moved or
/// replaced is an authentication error. Blocks of another generation
/// (left by a training run that did not finish) are skipped.
fn rebuild_locations(
    view: &dyn Snapshot,
    id: IndexId,
    live: &mut Live,
    keys: &Keys,
    rotating: bool,
) -> Result<()> {
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
                read_block_in(view, keys, seq, dim, buf)?;
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
    let scan = view.scan_prefix(NS_BLOCKS, &id.0)?;
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
    live.p.lists = Arc::new(lists.into_iter().map(Arc::new).collect());
    live.locations = locations;
    Ok(())
}

/// Decrypts every item's metadata into memory, when the index has any.
fn load_metadata(
    view: &dyn Snapshot,
    id: IndexId,
    live: &mut Live,
    keys: &Keys,
    rotating: bool,
) -> Result<()> {
    if !live.p.has_metadata {
        return Ok(());
    }
    // Items carry their contents too: read them a chunk at a time.
    let scan = view.scan_prefix(NS_ITEMS, &id.0)?;
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

pub(crate) fn read_centroids(view: &dyn Snapshot, keys: &Keys, p: &Persisted) -> Result<Vec<f32>> {
    let ck = keys.centroids_key(p.generation);
    let raw = view.get(NS_META, &ck)?.ok_or_else(|| Error::Corrupt {
        what: Record::Centroids,
        reason: "missing".into(),
    })?;
    let bytes = keys.open(Kind::Centroids, &ck, &raw)?;
    crate::codec::decode_centroids(&bytes, p.n_lists, p.dim.unwrap_or(0))
}
