//! Training: k-means over the stored vectors (in memory or streamed within
//! a budget), new lists written under fresh block numbers, one atomic switch.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use vecseal_keyring::WriteCap;
use vecseal_storage::{Durability, WriteBatch};

use crate::catalog::{NS_BLOCKS, NS_META};
use crate::codec::{Block, Norms, Place};
use crate::handle::Index;
use crate::keys::{Keys, Kind};
use crate::load::Live;
use crate::options::{auto_n_lists, ProgressFn, TrainOptions, TrainProgress};
use crate::precision::Precision;
use crate::route::Routes;
use crate::shared::Shared;
use crate::state::{block_capacity, BlockRef, Digest, Persisted, STATE_VERSION};
use crate::{Error, Metric, Result};

/// New blocks written during training go out in batches of about this size.
pub(crate) const TRAIN_BATCH_BYTES: usize = 32 << 20;
/// The minimum number of vectors training needs, whatever `n_lists`.
pub(crate) const MIN_TRAIN_VECTORS: usize = 10_000;

pub(crate) struct TrainingFlag<'a>(&'a AtomicBool);
impl Drop for TrainingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Index {
    /// Trains (or retrains) the IVF lists.
    pub fn train(&self, opts: &TrainOptions) -> Result<()> {
        self.run_training(opts, None)
    }

    /// Trains, calling `progress` after every k-means iteration; returning
    /// `ControlFlow::Break` cancels (the index keeps its previous state).
    pub fn train_with_progress(
        &self,
        opts: &TrainOptions,
        progress: &ProgressFn<'_>,
    ) -> Result<()> {
        self.run_training(opts, Some(progress))
    }

    /// Trains, reporting to `progress` when given.
    pub(crate) fn run_training(
        &self,
        opts: &TrainOptions,
        progress: Option<&ProgressFn<'_>>,
    ) -> Result<()> {
        let ix = &*self.shared;
        if let Some(t) = opts.tolerance {
            if !t.is_finite() || t < 0.0 {
                return Err(Error::InvalidParameter {
                    name: "tolerance",
                    value: t.to_string(),
                    expected: "a finite number >= 0",
                });
            }
        }
        if opts.max_iters == Some(0) {
            return Err(Error::zero("max_iters"));
        }
        let _w = ix.lock_writer()?;
        let (access, keys) = ix.authorize(&self.cred)?;
        let cap = access.write_for("train")?;
        ix.upgrade(cap, &keys)?;
        let (count, dim, metric) = {
            let l = ix.live.read();
            (l.locations.len(), l.p.dim, l.p.metric)
        };
        let n_lists = opts
            .n_lists
            .filter(|&n| n > 0)
            .unwrap_or_else(|| auto_n_lists(count));
        // Saturating: an absurd n_lists asks for more vectors than any
        // index holds instead of wrapping around to a small number.
        let need = n_lists.saturating_mul(2).max(MIN_TRAIN_VECTORS);
        let Some(dim) = dim.filter(|_| count >= need) else {
            return Err(Error::NotEnoughVectors { have: count, need });
        };
        ix.training.store(true, Ordering::SeqCst);
        let _flag = TrainingFlag(&ix.training);
        ix.collect_orphans(cap, &keys)?;

        // Decrypt every search vector of the current state.
        let (old, seqs) = {
            let l = ix.live.read();
            (
                l.p.clone(),
                l.p.lists
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(|b| b.seq)
                    .collect::<Vec<u64>>(),
            )
        };
        let mut kopts = vecseal_kmeans::Options::new(n_lists)
            .with_seed(opts.seed)
            .with_spherical(metric == Metric::Cosine);
        kopts.max_iters = opts.max_iters;
        kopts.tolerance = opts.tolerance;
        kopts.batch_size = opts.batch_size;
        kopts.max_memory_mb = opts.max_memory;
        let cb = |p: &vecseal_kmeans::Progress| match progress {
            Some(f) => f(&TrainProgress {
                iteration: p.iteration,
                max_iters: p.max_iters,
                inertia: p.inertia,
            }),
            None => ControlFlow::Continue(()),
        };
        let mut writer = ListWriter::new(ix, cap, &keys, dim, n_lists, &old, count);
        let centroids = match opts.max_memory.filter(|&m| m > 0) {
            None => {
                // Everything in memory: decrypt every block, cluster all
                // vectors (k-means samples what it trains on) and write the
                // lists from its final assignment.
                let mut data = Vec::with_capacity(count * dim);
                let mut ids: Vec<String> = Vec::with_capacity(count);
                ix.for_each_block(&keys, &seqs, dim, |block_ids, vectors| {
                    data.extend_from_slice(vectors);
                    ids.extend(block_ids.iter().map(str::to_owned));
                })?;
                let result = vecseal_kmeans::KMeans::new(kopts)
                    .with_progress(&cb)
                    .fit(&data, dim)?;
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_lists];
                for (i, &a) in result.assignments.iter().enumerate() {
                    members[a as usize].push(i);
                }
                // Every block of every list, written in a random order.
                for (l, m) in shuffled_blocks(&members, writer.per_block) {
                    let vectors = m
                        .iter()
                        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
                        .collect();
                    let block_ids = m.iter().map(|&i| std::mem::take(&mut ids[i])).collect();
                    writer.add_block(l, block_ids, vectors)?;
                }
                Routes::new(result.centroids, dim)
            }
            Some(mb) => {
                let budget = mb.saturating_mul(1 << 20);
                ix.train_streaming(&keys, &seqs, dim, kopts, &cb, &mut writer, budget)?
            }
        };
        writer.finish(&old, centroids, &seqs)
    }
}

/// Writes the lists of a new generation (a training run, or the upgrade of
/// a version-1 index) as sealed blocks under fresh numbers, in batches of
/// about `TRAIN_BATCH_BYTES`, then switches to them atomically
/// ([`ListWriter::finish`]). Until the switch the blocks are orphans of a
/// generation no state names, collected if the process dies first.
pub(crate) struct ListWriter<'a> {
    pub(crate) ix: &'a Shared,
    pub(crate) cap: &'a WriteCap,
    pub(crate) keys: &'a Keys,
    pub(crate) dim: usize,
    pub(crate) per_block: usize,
    pub(crate) precision: Precision,
    /// Whether the blocks keep their decoded vectors' norms.
    pub(crate) norms: Norms,
    pub(crate) generation: u64,
    pub(crate) next_seq: u64,
    pub(crate) lists: Vec<Vec<BlockRef>>,
    pub(crate) locations: HashMap<String, u64>,
    pub(crate) blocks: u64,
    pub(crate) digest: Digest,
    pub(crate) pending: Vec<(Place, Block)>,
    pub(crate) pending_bytes: usize,
}

impl<'a> ListWriter<'a> {
    /// A writer of `n_lists` lists for the generation after `old`'s.
    pub(crate) fn new(
        ix: &'a Shared,
        cap: &'a WriteCap,
        keys: &'a Keys,
        dim: usize,
        n_lists: usize,
        old: &Persisted,
        count: usize,
    ) -> Self {
        Self {
            ix,
            cap,
            keys,
            dim,
            per_block: block_capacity(dim, old.precision),
            precision: old.precision,
            norms: Norms::for_metric(old.metric),
            generation: old.generation + 1,
            next_seq: old.next_seq,
            lists: vec![Vec::new(); n_lists],
            locations: HashMap::with_capacity(count),
            blocks: 0,
            digest: Digest::default(),
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Flushes, then switches the index to the written lists in one synced
    /// batch: the new state (and `centroids`, if any), the blocks `old_seqs`
    /// and the old centroids gone.
    pub(crate) fn finish(
        mut self,
        old: &Persisted,
        centroids: Routes,
        old_seqs: &[u64],
    ) -> Result<()> {
        self.flush()?;
        let (ix, keys) = (self.ix, self.keys);
        let mut p = old.clone();
        p.version = STATE_VERSION;
        p.trained = !centroids.is_empty();
        p.generation = self.generation;
        p.next_seq = self.next_seq;
        p.n_lists = self.lists.len();
        p.lists = Arc::new(self.lists.into_iter().map(Arc::new).collect());
        p.blocks = self.blocks;
        p.digest = self.digest;
        let mut batch = WriteBatch::new();
        if p.trained {
            let ck = keys.centroids_key(p.generation);
            let cbytes = crate::codec::encode_centroids(centroids.centroids(), p.dim.unwrap_or(1));
            batch.put_owned(
                NS_META,
                ck.clone(),
                keys.seal(Kind::Centroids, &ck, &cbytes)?,
            );
        }
        let sk = keys.state_key();
        let sealed = keys.seal(Kind::State, &sk, &p.encode()?)?;
        batch.put_owned(NS_META, sk, sealed.clone());
        if old.trained {
            batch.delete(NS_META, &keys.centroids_key(old.generation));
        }
        for s in old_seqs {
            batch.delete(NS_BLOCKS, &keys.block_key(*s));
        }
        let mut live = ix.live.write();
        ix.write_state(self.cap, &mut live, batch, Durability::Sync, sealed)?;
        let meta = std::mem::take(&mut live.meta);
        *live = Live {
            keys: Arc::clone(&live.keys),
            dek: Arc::clone(&live.dek),
            sealed: std::mem::take(&mut live.sealed),
            p,
            centroids,
            locations: self.locations,
            meta,
        };
        drop(live);
        if let Some(c) = &ix.cache {
            old_seqs.iter().for_each(|s| c.remove(*s));
        }
        Ok(())
    }

    /// Appends one block (at most `per_block` ids and their row-major
    /// vectors) to list `l`.
    pub(crate) fn add_block(
        &mut self,
        l: usize,
        ids: Vec<String>,
        vectors: Vec<f32>,
    ) -> Result<()> {
        let dim = self.dim;
        debug_assert_eq!(vectors.len(), ids.len() * dim);
        let seq = self.next_seq;
        self.next_seq += 1;
        let count = ids.len() as u32;
        self.lists[l].push(BlockRef { seq, count });
        let place = Place {
            list: l as u32,
            generation: self.generation,
            seq,
        };
        self.digest.add(self.keys.block_digest(place, count));
        self.blocks += 1;
        let mut block = Block::new(self.precision);
        for (id, v) in ids.iter().zip(vectors.chunks_exact(dim)) {
            block.push(id, v);
        }
        for id in ids {
            self.locations.insert(id, seq);
        }
        self.pending.push((place, block));
        self.pending_bytes += vectors.len() * 4;
        if self.pending_bytes >= TRAIN_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Seals and writes the pending blocks, in a random order (see
    /// [`shuffled_blocks`]).
    pub(crate) fn flush(&mut self) -> Result<()> {
        use rand::seq::SliceRandom;
        self.pending.shuffle(&mut rand::thread_rng());
        let (keys, dim, norms) = (self.keys, self.dim, self.norms);
        let sealed: Vec<Result<(Vec<u8>, Vec<u8>)>> = self
            .pending
            .par_iter()
            .map(|(place, block)| {
                let key = keys.block_key(place.seq);
                let value = keys.seal_block(&key, block, dim, *place, norms)?;
                Ok((key, value))
            })
            .collect();
        let mut batch = WriteBatch::new();
        for kv in sealed {
            let (k, v) = kv?;
            batch.put_owned(NS_BLOCKS, k, v);
        }
        if batch.is_empty() {
            return Ok(());
        }
        // The current state goes out with the blocks, its counter past
        // their numbers: a run that fails or dies before its switch leaves
        // orphans whose numbers are never handed out again, so no storage
        // key is ever sealed twice with different contents. (A version-1
        // state cannot be rewritten before its upgrade, which this is.)
        let reserved = {
            let l = self.ix.live.read();
            (!l.p.is_legacy() && l.p.next_seq < self.next_seq).then(|| {
                let mut p = l.p.clone();
                p.next_seq = self.next_seq;
                p
            })
        };
        match reserved {
            Some(p) => {
                let sk = keys.state_key();
                let sealed = keys.seal(Kind::State, &sk, &p.encode()?)?;
                batch.put_owned(NS_META, sk, sealed.clone());
                let mut live = self.ix.live.write();
                let durability = Durability::Buffered;
                self.ix
                    .write_state(self.cap, &mut live, batch, durability, sealed)?;
                live.p.next_seq = p.next_seq;
            }
            None => self.ix.store.write(self.cap, batch, Durability::Buffered)?,
        }
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}

/// The blocks of lists whose members are `members` (indices, per list),
/// `per_block` to a block, as (list, its members in that block), in a
/// random order: the write stream of a training run shows no list's blocks
/// one after the other, so an observer of writes cannot group blocks into
/// lists by when they were written (see docs/SECURITY.md).
fn shuffled_blocks(members: &[Vec<usize>], per_block: usize) -> Vec<(usize, &[usize])> {
    use rand::seq::SliceRandom;
    let mut blocks: Vec<(usize, &[usize])> = members
        .iter()
        .enumerate()
        .flat_map(|(l, m)| m.chunks(per_block.max(1)).map(move |c| (l, c)))
        .collect();
    blocks.shuffle(&mut rand::thread_rng());
    blocks
}

impl Shared {
    /// Training within a memory budget of `budget` bytes: the vectors are
    /// streamed block by block, never all held at once. k-means trains on a
    /// uniform sample that fits half the budget (and gets the other half as
    /// its own bound); one pass assigns every vector to its nearest centroid;
    /// then the lists are written in groups that fit half the budget, each
    /// group gathered by one more pass over the blocks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_streaming(
        &self,
        keys: &Keys,
        seqs: &[u64],
        dim: usize,
        mut kopts: vecseal_kmeans::Options,
        progress: &(dyn Fn(&vecseal_kmeans::Progress) -> ControlFlow<()> + Sync),
        writer: &mut ListWriter<'_>,
        budget: usize,
    ) -> Result<Routes> {
        use rand::SeedableRng;
        let n_lists = writer.lists.len();
        let half = (budget / 2).max(dim * 4);
        let counts: Vec<usize> = {
            let live = self.live.read();
            live.p
                .lists
                .iter()
                .flat_map(|l| l.iter())
                .map(|b| b.count as usize)
                .collect()
        };
        let count: usize = counts.iter().sum();
        let n_train = count
            .min(n_lists.saturating_mul(256))
            .min(half / (dim * 4))
            .max(n_lists);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(kopts.seed);
        let mut picks = rand::seq::index::sample(&mut rng, count, n_train.min(count)).into_vec();
        picks.sort_unstable();
        let mut sample = Vec::with_capacity(picks.len() * dim);
        let mut next = picks.iter().peekable();
        let mut offset = 0;
        let mut block = Block::default();
        let mut exact = Vec::new();
        let metric = self.live.read().p.metric;
        for (&seq, &n) in seqs.iter().zip(&counts) {
            if next.peek().is_some_and(|&&i| i < offset + n) {
                self.read_block(keys, seq, dim, &mut block)?;
                let vectors = self.exact_vectors(keys, &block, (dim, metric), &mut exact)?;
                while let Some(&&i) = next.peek().filter(|&&&i| i < offset + n) {
                    let r = i - offset;
                    sample.extend_from_slice(&vectors[r * dim..(r + 1) * dim]);
                    next.next();
                }
            }
            offset += n;
        }
        kopts.max_memory_mb = Some((half >> 20).max(1));
        let centroids = vecseal_kmeans::KMeans::new(kopts)
            .with_progress(progress)
            .fit(&sample, dim)?
            .centroids;
        drop(sample);
        // The norms once, not once per block routed.
        let centroids = Routes::new(centroids, dim);

        // One pass: the list of every vector, in block order.
        let mut assign: Vec<u32> = Vec::with_capacity(count);
        self.for_each_block(keys, seqs, dim, |_, vectors| {
            assign.extend(centroids.nearest(vectors));
        })?;
        let mut sizes = vec![0usize; n_lists];
        for &a in &assign {
            sizes[a as usize] += 1;
        }
        // Groups of lists, taken in a random order, that fit half the
        // budget; each group's blocks are written in a random order.
        let order = {
            use rand::seq::SliceRandom;
            let mut order: Vec<usize> = (0..n_lists).collect();
            order.shuffle(&mut rand::thread_rng());
            order
        };
        let mut slot = vec![usize::MAX; n_lists];
        let mut start = 0;
        while start < n_lists {
            let mut end = start;
            let mut bytes = 0;
            while end < n_lists && (end == start || bytes + sizes[order[end]] * dim * 4 <= half) {
                bytes += sizes[order[end]] * dim * 4;
                slot[order[end]] = end - start;
                end += 1;
            }
            let group = &order[start..end];
            let mut ids: Vec<Vec<String>> = vec![Vec::new(); group.len()];
            let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); group.len()];
            let mut i = 0;
            self.for_each_block(keys, seqs, dim, |block_ids, block_vectors| {
                for (id, v) in block_ids.iter().zip(block_vectors.chunks_exact(dim)) {
                    let l = assign[i] as usize;
                    i += 1;
                    if slot[l] != usize::MAX {
                        ids[slot[l]].push(id.to_owned());
                        vectors[slot[l]].extend_from_slice(v);
                    }
                }
            })?;
            let members: Vec<Vec<usize>> = ids.iter().map(|m| (0..m.len()).collect()).collect();
            for (j, block) in shuffled_blocks(&members, writer.per_block) {
                let block_ids = block
                    .iter()
                    .map(|&i| std::mem::take(&mut ids[j][i]))
                    .collect();
                let block_vectors = block
                    .iter()
                    .flat_map(|&i| vectors[j][i * dim..(i + 1) * dim].iter().copied())
                    .collect();
                writer.add_block(group[j], block_ids, block_vectors)?;
            }
            for &l in group {
                slot[l] = usize::MAX;
            }
            start = end;
        }
        Ok(centroids)
    }
}

impl Shared {
    /// Upgrades a version-1 index (whose state record lists every block) to
    /// version 2: every block is written again, with its place, under a
    /// fresh number, then one switch as after training. A no-op otherwise.
    /// Crash-safe like training: until the switch the version-1 state and
    /// its blocks are intact.
    pub(crate) fn upgrade(&self, cap: &WriteCap, keys: &Keys) -> Result<()> {
        let (old, centroids, count) = {
            let l = self.live.read();
            if !l.p.is_legacy() {
                return Ok(());
            }
            (l.p.clone(), l.centroids.clone(), l.locations.len())
        };
        let dim = old.dim.unwrap_or(1);
        let mut writer = ListWriter::new(self, cap, keys, dim, old.lists.len(), &old, count);
        let mut seqs = Vec::new();
        for (l, refs) in old.lists.iter().enumerate() {
            for r in refs.iter() {
                let block = self.load_block(keys, r.seq, dim)?;
                let ids = block.ids().iter().map(str::to_owned).collect();
                writer.add_block(l, ids, block.vectors().to_vec())?;
                seqs.push(r.seq);
            }
        }
        writer.finish(&old, centroids, &seqs)
    }
}

#[cfg(test)]
mod tests;
