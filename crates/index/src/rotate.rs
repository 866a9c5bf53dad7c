//! Data-key rotation: every record of an index sealed again under a fresh
//! data key, with one atomic switch, while queries keep being answered.

use std::sync::Arc;

use rayon::prelude::*;
use vecseal_codec::Record;
use vecseal_keyring::OwnerCap;
use vecseal_storage::{Durability, WriteBatch};

use crate::catalog::{rotation_marker, write_catalog, Entry, NS_BLOCKS, NS_ITEMS, NS_META};
use crate::codec::{Block, Place};
use crate::handle::Index;
use crate::keys::{Keys, Kind};
use crate::shared::Shared;
use crate::state::Digest;
use crate::train::TRAIN_BATCH_BYTES;
use crate::{Error, Result};

/// What a data-key rotation re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Rotated {
    /// Item records.
    pub items: u64,
    /// Blocks of search vectors.
    pub blocks: u64,
    /// Bytes of sealed records read (and, about as many, written).
    pub bytes: u64,
}

/// Where a rotation is, for progress bars: `done` of `total` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotateProgress {
    /// Records re-sealed so far.
    pub done: u64,
    /// Records to re-seal (items and blocks).
    pub total: u64,
}

/// Items re-sealed per batch of reads.
const ITEM_CHUNK: usize = 256;
/// Blocks re-sealed per batch of reads.
const BLOCK_CHUNK: usize = 64;

impl Index {
    /// Rotates the index's data key (owner only): a fresh random data key,
    /// wrapped for the owner and for every remaining user (their keys stay
    /// the same), and every record (items, blocks, centroids, state) sealed
    /// again under it and stored under new blinded keys; then one atomic
    /// switch of the catalog entry and the state, and the old records
    /// deleted.
    ///
    /// Whoever held only the old data key (a revoked user, an old copy of
    /// the keyring, the old owner key with an old catalog copy) decrypts no
    /// record of the index afterwards. Reads stream in chunks (bounded
    /// memory); writes wait, queries go on. A crash at any point leaves an
    /// index that opens under exactly one of the two data keys: the old one
    /// before the switch, the new one after it; the next writer's open
    /// deletes the other key's records.
    pub fn rotate_data_key(&self) -> Result<Rotated> {
        self.rotate_data_key_with_progress(&|_| {})
    }

    /// [`Index::rotate_data_key`], calling `progress` after every chunk.
    pub fn rotate_data_key_with_progress(
        &self,
        progress: &(dyn Fn(&RotateProgress) + Sync),
    ) -> Result<Rotated> {
        let ix = &*self.shared;
        let _w = ix.lock_writer()?;
        let (entry, access, old) = ix.authorize_ring(&self.cred)?;
        let cap = access.owner_for("rotating the data key")?;
        let write = access.write_for("rotating the data key")?;
        ix.upgrade(write, &old)?;
        // Leftovers of an earlier run that did not finish go first.
        ix.collect_orphans(write, &old)?;
        let (ring, fresh) = entry.ring.rekey(&access)?;
        let new = Arc::new(Keys::derive(fresh.data_key(), ix.id, ix.suite));

        // The marker says records of two data keys may coexist: an open
        // after a crash then deletes those of the key not in force.
        let marker = rotation_marker(ix.id);
        let mut batch = WriteBatch::new();
        batch.put(NS_META, &marker, &[]);
        ix.store.write(cap, batch, Durability::Sync)?;

        let mut rotation = Rotation {
            ix,
            cap,
            old: &old,
            new: &new,
            batch: WriteBatch::new(),
            done: Rotated::default(),
            progress,
            total: 0,
        };
        let (p, ids) = {
            let live = ix.live.read();
            let ids: Vec<String> = live.locations.keys().cloned().collect();
            (live.p.clone(), ids)
        };
        let refs: Vec<(u32, u64, u32)> = p
            .lists
            .iter()
            .enumerate()
            .flat_map(|(l, refs)| refs.iter().map(move |r| (l as u32, r.seq, r.count)))
            .collect();
        rotation.total = (ids.len() + refs.len()) as u64;
        let digest = rotation.blocks(&refs, p.dim.unwrap_or(1), p.generation)?;
        rotation.items(&ids)?;
        if p.trained {
            rotation.reseal_one(
                Kind::Centroids,
                &old.centroids_key(p.generation),
                &new.centroids_key(p.generation),
            )?;
        }
        rotation.flush()?;
        let done = rotation.done;

        // The switch: the new keyring and state, the old state gone.
        let entry = Entry::new(&ix.name, ring, &new);
        let mut state = p.clone();
        state.digest = digest;
        state.ring_tag = entry.tag();
        let mut batch = WriteBatch::new();
        write_catalog(&mut batch, &ix.name, &entry);
        let sk = new.state_key();
        let sealed = new.seal(Kind::State, &sk, &state.encode()?)?;
        batch.put_owned(NS_META, sk, sealed.clone());
        batch.delete(NS_META, &old.state_key());
        if p.trained {
            batch.delete(NS_META, &old.centroids_key(p.generation));
        }
        {
            // Under the live guard: no reader holds the old keys past it.
            let mut live = ix.live.write();
            ix.write_state(cap, &mut live, batch, Durability::Sync, sealed)?;
            live.p.digest = digest;
            live.p.ring_tag = state.ring_tag;
            live.keys = Arc::clone(&new);
            live.dek = fresh.data_key_arc();
        }

        // The old records (garbage now), then the marker.
        let mut batch = WriteBatch::new();
        for (_, seq, _) in &refs {
            batch.delete(NS_BLOCKS, &old.block_key(*seq));
        }
        for id in &ids {
            batch.delete(NS_ITEMS, &old.item_key(id));
        }
        batch.delete(NS_META, &marker);
        ix.store.write(cap, batch, Durability::Sync)?;
        Ok(done)
    }
}

/// One rotation in progress: re-sealed records gathered into batches.
struct Rotation<'a> {
    ix: &'a Shared,
    cap: &'a OwnerCap,
    old: &'a Keys,
    new: &'a Keys,
    batch: WriteBatch,
    done: Rotated,
    progress: &'a (dyn Fn(&RotateProgress) + Sync),
    total: u64,
}

impl Rotation<'_> {
    /// Re-seals the blocks `refs` (list, number, count): same numbers and
    /// contents, new keys. Returns the digest of the blocks under the new
    /// key.
    fn blocks(&mut self, refs: &[(u32, u64, u32)], dim: usize, generation: u64) -> Result<Digest> {
        let (old, new, ix) = (self.old, self.new, self.ix);
        let mut digest = Digest::default();
        for chunk in refs.chunks(BLOCK_CHUNK) {
            let sealed: Vec<(Vec<u8>, Vec<u8>, usize)> = chunk
                .par_iter()
                .map_init(Block::default, |buf, &(list, seq, _)| {
                    ix.read_block(old, seq, dim, buf)?;
                    let place = Place {
                        list,
                        generation,
                        seq,
                    };
                    // The same contents, its norms too if it kept them.
                    let key = new.block_key(seq);
                    let value = new.seal_block(&key, buf, dim, place, buf.read_norms())?;
                    let len = value.len();
                    Ok((key, value, len))
                })
                .collect::<Result<_>>()?;
            for (&(list, seq, count), (key, value, len)) in chunk.iter().zip(sealed) {
                let place = Place {
                    list,
                    generation,
                    seq,
                };
                digest.add(new.block_digest(place, count));
                self.done.blocks += 1;
                self.done.bytes += len as u64;
                self.batch.put_owned(NS_BLOCKS, key, value);
            }
            self.maybe_flush()?;
        }
        Ok(digest)
    }

    /// Re-seals the item records of `ids`.
    fn items(&mut self, ids: &[String]) -> Result<()> {
        let (old, new, ix) = (self.old, self.new, self.ix);
        for chunk in ids.chunks(ITEM_CHUNK) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|id| old.item_key(id)).collect();
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let raws = ix.store.multi_get(NS_ITEMS, &refs)?;
            let sealed: Vec<(Vec<u8>, Vec<u8>, usize)> = raws
                .into_par_iter()
                .zip(keys.par_iter())
                .zip(chunk.par_iter())
                .map(|((raw, key), id)| {
                    let raw = raw.ok_or_else(|| Error::Corrupt {
                        what: Record::Item,
                        reason: "an item the blocks hold has no record".into(),
                    })?;
                    let plain = old.open(Kind::Item, key, &raw)?;
                    let key = new.item_key(id);
                    let value = new.seal(Kind::Item, &key, &plain)?;
                    Ok((key, value, raw.len()))
                })
                .collect::<Result<_>>()?;
            for (key, value, len) in sealed {
                self.done.items += 1;
                self.done.bytes += len as u64;
                self.batch.put_owned(NS_ITEMS, key, value);
            }
            self.maybe_flush()?;
        }
        Ok(())
    }

    /// Re-seals one metadata record from `from` (old key) to `to`.
    fn reseal_one(&mut self, kind: Kind, from: &[u8], to: &[u8]) -> Result<()> {
        let raw = self
            .ix
            .store
            .get(NS_META, from)?
            .ok_or_else(|| Error::Corrupt {
                what: kind.record(),
                reason: "missing".into(),
            })?;
        let plain = self.old.open(kind, from, &raw)?;
        self.batch
            .put_owned(NS_META, to.to_vec(), self.new.seal(kind, to, &plain)?);
        Ok(())
    }

    fn maybe_flush(&mut self) -> Result<()> {
        (self.progress)(&RotateProgress {
            done: self.done.items + self.done.blocks,
            total: self.total,
        });
        if self.batch.size_bytes() >= TRAIN_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            self.ix.store.write(self.cap, batch, Durability::Buffered)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
