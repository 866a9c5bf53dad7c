//! Copy-on-write edits of the blocks of an index, and their commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use vecseal_keyring::WriteCap;
use vecseal_storage::{Durability, WriteBatch};

use vecseal_codec::Record;

use crate::catalog::{NS_BLOCKS, NS_META};
use crate::codec::{Block, Norms, Place};
use crate::keys::{Keys, Kind};
use crate::precision::Precision;
use crate::shared::Shared;
use crate::state::{append_capacity, block_capacity, BlockRef, Digest, Lists, Persisted};
use crate::{map_pooled, Error, Result};

/// Pending copy-on-write changes to the blocks of an index.
pub(crate) struct Edit {
    /// The lists as the edit found them (shared with the live state, not
    /// copied) and, copied on first change, those it changes.
    base: Arc<Lists>,
    changed: BTreeMap<u32, Vec<BlockRef>>,
    pub(crate) next_seq: u64,
    pub(crate) dirty: HashMap<u64, (u32, Block)>,
    pub(crate) fresh: HashSet<u64>,
    pub(crate) removed: Vec<String>,
    pub(crate) cap: usize,
    /// The most vectors a stored block may hold for a write to append to
    /// it (re-sealing it whole); a fuller tail gets a new block instead, so
    /// a one-item upsert re-seals at most this many vectors however long
    /// its list is.
    pub(crate) append_cap: usize,
    pub(crate) dim: usize,
    pub(crate) precision: Precision,
    /// Whether the blocks keep their decoded vectors' norms.
    pub(crate) norms: Norms,
    pub(crate) generation: u64,
    pub(crate) blocks: u64,
    pub(crate) digest: Digest,
}

/// A block's storage key, sealed value and, compressed, the block as sealed.
type Sealed = (Vec<u8>, Vec<u8>, Option<Block>);

pub(crate) struct Committed {
    /// The lists the edit changed, whole.
    pub(crate) changed: BTreeMap<u32, Vec<BlockRef>>,
    pub(crate) next_seq: u64,
    pub(crate) blocks: u64,
    pub(crate) digest: Digest,
    pub(crate) moved: Vec<(String, u64)>,
    pub(crate) removed: Vec<String>,
    pub(crate) dropped_seqs: Vec<u64>,
    pub(crate) new_blocks: Vec<(u64, Arc<Block>)>,
}

impl Edit {
    pub(crate) fn new(p: &Persisted, dim: usize) -> Self {
        Self {
            base: Arc::clone(&p.lists),
            changed: BTreeMap::new(),
            next_seq: p.next_seq,
            dirty: HashMap::new(),
            fresh: HashSet::new(),
            removed: Vec::new(),
            cap: block_capacity(dim, p.precision),
            append_cap: append_capacity(dim, p.precision),
            dim,
            precision: p.precision,
            norms: Norms::for_metric(p.metric),
            generation: p.generation,
            blocks: p.blocks,
            digest: p.digest,
        }
    }

    /// The block references of `list` as this edit has them.
    fn list(&self, list: u32) -> &[BlockRef] {
        self.changed
            .get(&list)
            .map_or_else(|| self.base[list as usize].as_slice(), Vec::as_slice)
    }

    /// The block references of `list`, copied into `changed` from `base`
    /// on first use (fields, not `self`: the caller goes on using others).
    fn list_mut<'a>(
        changed: &'a mut BTreeMap<u32, Vec<BlockRef>>,
        base: &Lists,
        list: u32,
    ) -> &'a mut Vec<BlockRef> {
        changed
            .entry(list)
            .or_insert_with(|| base[list as usize].to_vec())
    }

    pub(crate) fn list_of(&self, seq: u64) -> Option<u32> {
        (0..self.base.len() as u32).find(|&l| self.list(l).iter().any(|b| b.seq == seq))
    }

    /// Takes block `seq` (of `list`, when the caller knows it) into the
    /// edit.
    pub(crate) fn load(
        &mut self,
        index: &Shared,
        keys: &Keys,
        seq: u64,
        list: Option<u32>,
    ) -> Result<()> {
        if !self.dirty.contains_key(&seq) {
            let block = index.load_block(keys, seq, self.dim)?;
            // A block names its list inside its seal (version 3); the scan
            // of every list is for older blocks only.
            let list = list
                .or_else(|| block.place().map(|p| p.list))
                .filter(|&l| (l as usize) < self.base.len())
                .or_else(|| self.list_of(seq))
                .ok_or_else(|| Error::Corrupt {
                    what: Record::State,
                    reason: format!("block {seq} is in no list"),
                })?;
            // Unless the list cache holds it too, the block read is this
            // edit's alone: taken, not copied.
            let block = Arc::try_unwrap(block).unwrap_or_else(|shared| (*shared).clone());
            self.dirty.insert(seq, (list, block));
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, index: &Shared, keys: &Keys, seq: u64, id: &str) -> Result<()> {
        self.load(index, keys, seq, None)?;
        if let Some((_, b)) = self.dirty.get_mut(&seq) {
            b.remove(id, self.dim);
        }
        self.removed.push(id.to_owned());
        Ok(())
    }

    pub(crate) fn add(
        &mut self,
        index: &Shared,
        keys: &Keys,
        list: u32,
        id: &str,
        v: &[f32],
    ) -> Result<()> {
        let tail = self.list(list).last().copied();
        // A block this edit created fills up to the block capacity; a
        // stored one takes more only while it is small (see `append_cap`).
        let room = |t: BlockRef| {
            let (len, limit) = match self.dirty.get(&t.seq) {
                Some((_, b)) if self.fresh.contains(&t.seq) => (b.len(), self.cap),
                Some((_, b)) => (b.len(), self.append_cap),
                None => (t.count as usize, self.append_cap),
            };
            len < limit
        };
        let seq = match tail {
            Some(t) if room(t) => {
                self.load(index, keys, t.seq, Some(list))?;
                t.seq
            }
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Self::list_mut(&mut self.changed, &self.base, list)
                    .push(BlockRef { seq, count: 0 });
                self.dirty.insert(seq, (list, Block::new(self.precision)));
                self.fresh.insert(seq);
                seq
            }
        };
        if let Some((_, b)) = self.dirty.get_mut(&seq) {
            b.push(id, v);
        }
        Ok(())
    }

    /// Seals the dirty blocks under fresh numbers into `batch`.
    pub(crate) fn commit(mut self, keys: &Keys, batch: &mut WriteBatch) -> Result<Committed> {
        let mut dropped = Vec::new();
        let mut renumbered = Vec::new();
        let mut dirty: Vec<(u64, (u32, Block))> = self.dirty.drain().collect();
        dirty.sort_by_key(|(s, _)| *s);
        let generation = self.generation;
        let place = |list: u32, seq: u64| Place {
            list,
            generation,
            seq,
        };
        for (seq, (list, block)) in dirty {
            let fresh = self.fresh.contains(&seq);
            let refs = Self::list_mut(&mut self.changed, &self.base, list);
            let pos = refs.iter().position(|r| r.seq == seq).unwrap_or(refs.len());
            if !fresh {
                batch.delete(NS_BLOCKS, &keys.block_key(seq));
                dropped.push(seq);
                let old_count = refs.get(pos).map_or(0, |r| r.count);
                self.digest
                    .sub(keys.block_digest(place(list, seq), old_count));
                self.blocks -= 1;
            }
            if block.len() == 0 {
                if pos < refs.len() {
                    refs.remove(pos);
                }
                continue;
            }
            let new_seq = if fresh {
                seq
            } else {
                let s = self.next_seq;
                self.next_seq += 1;
                s
            };
            if pos < refs.len() {
                refs[pos] = BlockRef {
                    seq: new_seq,
                    count: block.len() as u32,
                };
            }
            self.digest
                .add(keys.block_digest(place(list, new_seq), block.len() as u32));
            self.blocks += 1;
            renumbered.push((place(list, new_seq), block));
        }
        // A compressed block is cached as it was sealed (its codes), not
        // as edited (codes and exact vectors).
        let sealed: Vec<Result<Sealed>> = map_pooled(&renumbered, |(place, block)| {
            let key = keys.block_key(place.seq);
            let mut coded = Ok(None);
            let value = keys.seal_built(Kind::Block, &key, |buf, spare| {
                let start = buf.len();
                let plain = block.encode_after(buf, spare, self.dim, *place, self.norms);
                if block.precision().is_compressed() {
                    coded = Block::decode(&plain[start..], self.dim).map(Some);
                }
                plain
            })?;
            Ok((key, value, coded?))
        });
        let mut moved = Vec::new();
        let mut new_blocks = Vec::with_capacity(renumbered.len());
        for (kv, (place, block)) in sealed.into_iter().zip(renumbered) {
            let (k, v, coded) = kv?;
            batch.put_owned(NS_BLOCKS, k, v);
            moved.extend(block.ids().iter().map(|id| (id.to_owned(), place.seq)));
            new_blocks.push((place.seq, Arc::new(coded.unwrap_or(block))));
        }
        Ok(Committed {
            changed: self.changed,
            next_seq: self.next_seq,
            blocks: self.blocks,
            digest: self.digest,
            moved,
            removed: self.removed,
            dropped_seqs: dropped,
            new_blocks,
        })
    }
}

impl Shared {
    /// Seals the edit, writes it with the item batch and the new state in one
    /// synced batch, and switches the live state.
    /// `meta` sets (or with `None` removes) the in-memory metadata of items.
    pub(crate) fn commit(
        &self,
        cap: &WriteCap,
        keys: &Keys,
        mut p: Persisted,
        edit: Edit,
        mut batch: WriteBatch,
        meta: Vec<(String, Option<serde_json::Value>)>,
    ) -> Result<()> {
        let c = edit.commit(keys, &mut batch)?;
        p.next_seq = c.next_seq;
        p.blocks = c.blocks;
        p.digest = c.digest;
        let sk = keys.state_key();
        let sealed = keys.seal(Kind::State, &sk, &p.encode()?)?;
        batch.put_owned(NS_META, sk, sealed.clone());
        let mut live = self.live.write();
        self.write_state(cap, &mut live, batch, Durability::Sync, sealed)?;
        // The edit's reference to the lists is gone, and `p`'s (which gave
        // the record its number of lists) goes here: unless a reader holds
        // them, the changed lists are replaced in place.
        p.lists = std::mem::take(&mut live.p.lists);
        let lists = Arc::make_mut(&mut p.lists);
        for (l, refs) in c.changed {
            lists[l as usize] = Arc::new(refs);
        }
        live.p = p;
        for id in &c.removed {
            live.locations.remove(id);
        }
        for (id, seq) in c.moved {
            live.locations.insert(id, seq);
        }
        for (id, doc) in meta {
            match doc {
                Some(doc) => live.meta.insert(&id, doc),
                None => live.meta.remove(&id),
            }
        }
        drop(live);
        if let Some(cache) = &self.cache {
            c.dropped_seqs.iter().for_each(|s| cache.remove(*s));
            for (seq, b) in c.new_blocks {
                cache.insert(seq, b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
