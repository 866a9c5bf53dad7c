//! One encrypted index: upsert, get, delete, query, train, users.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use vecseal_envelope::{SecretKey, Suite};
use vecseal_keyring::{Access, IndexId, OwnerCap, UserEntry, UserId, WriteCap};
use vecseal_storage::{Durability, WriteBatch};

use crate::cache::BlockCache;
use crate::codec::{encode_item, Block, ItemRecord};
use crate::database::{open_ring, read_catalog, write_catalog, NS_BLOCKS, NS_ITEMS, NS_META};
use crate::distance::{distance, lower_bounds, normalize, scores as scores_into};
use crate::filter::{Filter, MetaIndex};
use crate::guarded::GuardedStore;
use crate::keys::{Credentials, Keys, Kind};
use crate::{Error, Metric, Result};
use vecseal_kmeans::kernel::Centroids;

/// Target plaintext size of one sealed block of search vectors.
const BLOCK_BYTES: usize = 128 << 10;
/// Queries of one batch are processed in chunks of up to this many; a chunk
/// reads every block its queries probe once, for all of them. Blocks are
/// scanned where they are decrypted, one per worker at a time, so a chunk's
/// memory is its queries and their top-k, whatever the size of the index.
const QUERY_CHUNK: usize = 4096;
/// A block is scored against at most this many (query, vector) pairs at a
/// time: 4 MiB of scores per worker.
const SCORES_BUDGET: usize = 1 << 20;
/// A block scanned by at least this many queries is screened by a GEMM (and
/// the pairs that may enter a top-k rescored exactly) rather than scored by
/// the tiled kernel, whose per-pair overhead dominates at small dimensions
/// (measured: 1.6–3× the QPS on GloVe-50d, the same at 768-d).
const GEMM_MIN_QUERIES: usize = 32;
/// New blocks written during training go out in batches of about this size.
const TRAIN_BATCH_BYTES: usize = 32 << 20;
/// A filtered query reads the matching items directly (instead of scanning
/// lists) when there are at most `top_k` of them, or at most 1/`DIRECT_COST`
/// of the vectors its probes would scan: reading one item costs about as
/// much as scanning this many block vectors.
const DIRECT_COST: usize = 4;
/// The minimum number of vectors training needs, whatever `n_lists`.
pub(crate) const MIN_TRAIN_VECTORS: usize = 10_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub(crate) struct BlockRef {
    seq: u64,
    count: u32,
}

/// The sealed state record of an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Persisted {
    version: u32,
    dim: Option<usize>,
    metric: Metric,
    trained: bool,
    generation: u64,
    next_seq: u64,
    lists: Vec<Vec<BlockRef>>,
    /// Whether any item was ever upserted with metadata (opening then loads
    /// the metadata into memory for filters).
    #[serde(default)]
    has_metadata: bool,
    /// Metadata paths without equality postings.
    #[serde(default)]
    unindexed_fields: Vec<String>,
}

impl Persisted {
    pub(crate) fn new(dim: Option<usize>, metric: Metric, unindexed_fields: Vec<String>) -> Self {
        Self {
            version: 1,
            dim,
            metric,
            trained: false,
            generation: 0,
            next_seq: 0,
            lists: vec![Vec::new()],
            has_metadata: false,
            unindexed_fields,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: format!("cannot be encoded: {e}"),
        })
    }

    fn decode(b: &[u8]) -> Result<Self> {
        serde_json::from_slice(b).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: e.to_string(),
        })
    }
}

struct Live {
    p: Persisted,
    centroids: Vec<f32>,
    /// Item id → number of the block holding its search vector.
    locations: HashMap<String, u64>,
    /// Decrypted metadata with equality postings (memory only).
    meta: MetaIndex,
}

/// An item to upsert, or one returned by [`Index::get`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item {
    /// The id (non-empty).
    pub id: String,
    /// The vector (always set on upsert; on get, when asked for).
    pub vector: Option<Vec<f32>>,
    /// Optional opaque contents.
    pub contents: Option<Vec<u8>>,
    /// Optional JSON metadata (an object).
    pub metadata: Option<serde_json::Value>,
}

impl Item {
    /// An item with an id and a vector.
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> Self {
        Self {
            id: id.into(),
            vector: Some(vector),
            contents: None,
            metadata: None,
        }
    }
    /// Sets the contents.
    #[must_use]
    pub fn with_contents(mut self, c: impl Into<Vec<u8>>) -> Self {
        self.contents = Some(c.into());
        self
    }
    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, m: serde_json::Value) -> Self {
        self.metadata = Some(m);
        self
    }
}

/// A field of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The vector.
    Vector,
    /// The contents.
    Contents,
    /// The metadata.
    Metadata,
}

/// An item to upsert, borrowed from the caller's [`Item`] or ids and vectors.
struct ItemRef<'a> {
    id: &'a str,
    vector: &'a [f32],
    contents: Option<&'a [u8]>,
    metadata: Option<&'a serde_json::Value>,
}

/// Which fields [`Index::get`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// Return vectors.
    pub vector: bool,
    /// Return contents.
    pub contents: bool,
    /// Return metadata.
    pub metadata: bool,
}

impl Fields {
    /// Every field.
    pub const ALL: Fields = Fields {
        vector: true,
        contents: true,
        metadata: true,
    };
    /// Only ids.
    pub const NONE: Fields = Fields {
        vector: false,
        contents: false,
        metadata: false,
    };

    /// The given fields.
    pub fn of(fields: &[Field]) -> Self {
        Fields {
            vector: fields.contains(&Field::Vector),
            contents: fields.contains(&Field::Contents),
            metadata: fields.contains(&Field::Metadata),
        }
    }
}

/// The result of [`Index::get`]: found items in the order asked, and the ids
/// that do not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct GetResult {
    /// Items found.
    pub items: Vec<Item>,
    /// Ids not found.
    pub missing: Vec<String>,
}

/// One query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Item id.
    pub id: String,
    /// Distance under the index metric (when asked for).
    pub distance: Option<f32>,
    /// Metadata (when asked for and present).
    pub metadata: Option<serde_json::Value>,
    /// Contents (when asked for and present).
    pub contents: Option<Vec<u8>>,
}

/// Query options; unset means the documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct QueryOptions {
    /// Results per query; default 100.
    pub top_k: Option<usize>,
    /// Lists probed after training; `None`/0 = automatic:
    /// `min(n_lists, ceil(2·√n_lists))`.
    pub n_probes: Option<usize>,
    /// Return distances (default true).
    pub include_distance: bool,
    /// Return metadata.
    pub include_metadata: bool,
    /// Return contents.
    pub include_contents: bool,
    /// Only items whose metadata matches are returned; the search widens
    /// (more lists) until it has `top_k` of them or has seen every list.
    pub filter: Option<Filter>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            top_k: None,
            n_probes: None,
            include_distance: true,
            include_metadata: false,
            include_contents: false,
            filter: None,
        }
    }
}

impl QueryOptions {
    /// Sets top_k.
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }
    /// Sets n_probes.
    pub fn with_n_probes(mut self, p: usize) -> Self {
        self.n_probes = Some(p);
        self
    }
    /// Returns metadata with each hit.
    pub fn with_metadata(mut self, on: bool) -> Self {
        self.include_metadata = on;
        self
    }
    /// Returns contents with each hit.
    pub fn with_contents(mut self, on: bool) -> Self {
        self.include_contents = on;
        self
    }
    /// Returns distances with each hit.
    pub fn with_distance(mut self, on: bool) -> Self {
        self.include_distance = on;
        self
    }
    /// Returns only items whose metadata matches `filter`.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// Options of [`Index::train`], with the semantics of vecseal's `train()`.
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct TrainOptions {
    /// Number of inverted lists; `None`/0 = `clamp(round(2·√n), 1, n/2)` for
    /// `n` stored vectors.
    pub n_lists: Option<usize>,
    /// k-means batch size; `None`/0 = automatic (full batch on a sample of at
    /// most 256 points per list).
    pub batch_size: Option<usize>,
    /// Iteration limit; default 100; 0 is invalid.
    pub max_iters: Option<u32>,
    /// Convergence tolerance; default 1e-6; negative or NaN is invalid.
    pub tolerance: Option<f64>,
    /// Memory bound of training in MB; `None`/0 = no limit (every vector is
    /// decrypted into memory at once). With a bound, training streams the
    /// vectors block by block: k-means runs on a uniform sample that fits
    /// half the bound (with the other half as its own working-set bound),
    /// and the new lists are gathered and written in groups that fit half
    /// the bound, one pass over the blocks per group. Write batches of about
    /// 32 MiB and one decrypted block come on top.
    pub max_memory: Option<usize>,
    /// Seed of k-means (training is reproducible).
    pub seed: u64,
}

impl TrainOptions {
    /// Sets n_lists.
    pub fn with_n_lists(mut self, v: usize) -> Self {
        self.n_lists = Some(v);
        self
    }
    /// Sets batch_size.
    pub fn with_batch_size(mut self, v: usize) -> Self {
        self.batch_size = Some(v);
        self
    }
    /// Sets max_iters.
    pub fn with_max_iters(mut self, v: u32) -> Self {
        self.max_iters = Some(v);
        self
    }
    /// Sets tolerance.
    pub fn with_tolerance(mut self, v: f64) -> Self {
        self.tolerance = Some(v);
        self
    }
    /// Sets max_memory (MB).
    pub fn with_max_memory(mut self, v: usize) -> Self {
        self.max_memory = Some(v);
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
}

/// A training progress callback: return `ControlFlow::Break(())` to cancel.
pub type ProgressFn<'a> = dyn Fn(&TrainProgress) -> ControlFlow<()> + Sync + 'a;

/// Progress of a running [`Index::train`].
#[derive(Debug, Clone, Copy)]
pub struct TrainProgress {
    /// Iteration just finished (1-based).
    pub iteration: u32,
    /// Iteration limit.
    pub max_iters: u32,
    /// Inertia of that iteration.
    pub inertia: f64,
}

/// Whether an index is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingState {
    /// One list; queries are exact exhaustive searches.
    Untrained,
    /// A (re)train is running; queries use the previous state.
    Training,
    /// IVF lists; queries are ANN searches.
    Trained,
}

impl TrainingState {
    /// `untrained`, `training` or `trained`.
    pub fn name(self) -> &'static str {
        match self {
            TrainingState::Untrained => "untrained",
            TrainingState::Training => "training",
            TrainingState::Trained => "trained",
        }
    }
}

/// A summary of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Name.
    pub name: String,
    /// Dimension, once known.
    pub dimension: Option<usize>,
    /// Metric.
    pub metric: Metric,
    /// Number of items.
    pub count: usize,
    /// Training state.
    pub state: TrainingState,
    /// Number of inverted lists (1 before training).
    pub n_lists: usize,
    /// Cipher suite.
    pub suite: Suite,
}

/// The automatic number of lists for `n` vectors: `clamp(round(2·√n), 1, n/2)`.
pub fn auto_n_lists(n: usize) -> usize {
    ((2.0 * (n as f64).sqrt()).round() as usize).clamp(1, (n / 2).max(1))
}

/// The automatic number of probes: `min(n_lists, ceil(2·√n_lists))`.
pub fn auto_n_probes(n_lists: usize) -> usize {
    ((2.0 * (n_lists as f64).sqrt()).ceil() as usize).clamp(1, n_lists.max(1))
}

fn block_capacity(dim: usize) -> usize {
    (BLOCK_BYTES / (4 * dim.max(1))).clamp(16, 4096)
}

/// One encrypted index, seen with the credentials it was loaded with.
///
/// `Send + Sync`: share it behind an `Arc`. Every handle a [`crate::Database`]
/// hands out for the same index shares one in-memory state (lists, writer
/// lock, block cache), so handles never diverge from each other.
pub struct Index {
    shared: Arc<Shared>,
    cred: Credentials,
}

/// The state of one loaded index, shared by all its handles.
pub(crate) struct Shared {
    store: GuardedStore,
    name: String,
    id: IndexId,
    suite: Suite,
    keys: RwLock<Option<(Arc<SecretKey>, Arc<Keys>)>>,
    writer: Mutex<()>,
    live: RwLock<Live>,
    training: AtomicBool,
    cache: Option<BlockCache>,
}

struct TrainingFlag<'a>(&'a AtomicBool);
impl Drop for TrainingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Pending copy-on-write changes to the blocks of an index.
struct Edit {
    lists: Vec<Vec<BlockRef>>,
    next_seq: u64,
    dirty: HashMap<u64, (u32, Block)>,
    fresh: HashSet<u64>,
    removed: Vec<String>,
    cap: usize,
    dim: usize,
}

struct Committed {
    lists: Vec<Vec<BlockRef>>,
    next_seq: u64,
    moved: Vec<(String, u64)>,
    removed: Vec<String>,
    dropped_seqs: Vec<u64>,
    new_blocks: Vec<(u64, Arc<Block>)>,
}

impl Edit {
    fn new(p: &Persisted, dim: usize) -> Self {
        Self {
            lists: p.lists.clone(),
            next_seq: p.next_seq,
            dirty: HashMap::new(),
            fresh: HashSet::new(),
            removed: Vec::new(),
            cap: block_capacity(dim),
            dim,
        }
    }

    fn list_of(&self, seq: u64) -> Option<u32> {
        self.lists
            .iter()
            .position(|l| l.iter().any(|b| b.seq == seq))
            .map(|i| i as u32)
    }

    fn load(&mut self, index: &Shared, keys: &Keys, seq: u64) -> Result<()> {
        if !self.dirty.contains_key(&seq) {
            let list = self.list_of(seq).ok_or_else(|| Error::Corrupt {
                what: "index state record",
                reason: format!("block {seq} is in no list"),
            })?;
            let block = index.load_block(keys, seq, self.dim)?;
            self.dirty.insert(seq, (list, (*block).clone()));
        }
        Ok(())
    }

    fn remove(&mut self, index: &Shared, keys: &Keys, seq: u64, id: &str) -> Result<()> {
        self.load(index, keys, seq)?;
        if let Some((_, b)) = self.dirty.get_mut(&seq) {
            b.remove(id, self.dim);
        }
        self.removed.push(id.to_owned());
        Ok(())
    }

    fn add(&mut self, index: &Shared, keys: &Keys, list: u32, id: &str, v: &[f32]) -> Result<()> {
        let tail = self.lists[list as usize].last().copied();
        let seq = match tail {
            Some(t)
                if self
                    .dirty
                    .get(&t.seq)
                    .map_or(t.count as usize, |(_, b)| b.len())
                    < self.cap =>
            {
                self.load(index, keys, t.seq)?;
                t.seq
            }
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.lists[list as usize].push(BlockRef { seq, count: 0 });
                self.dirty.insert(seq, (list, Block::default()));
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
    fn commit(mut self, keys: &Keys, batch: &mut WriteBatch) -> Result<Committed> {
        let mut dropped = Vec::new();
        let mut renumbered = Vec::new();
        let mut dirty: Vec<(u64, (u32, Block))> = self.dirty.drain().collect();
        dirty.sort_by_key(|(s, _)| *s);
        for (seq, (list, block)) in dirty {
            let fresh = self.fresh.contains(&seq);
            if !fresh {
                batch.delete(NS_BLOCKS, &keys.block_key(seq));
                dropped.push(seq);
            }
            let refs = &mut self.lists[list as usize];
            let pos = refs.iter().position(|r| r.seq == seq).unwrap_or(refs.len());
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
            renumbered.push((new_seq, block));
        }
        let sealed: Vec<Result<(Vec<u8>, Vec<u8>)>> = renumbered
            .par_iter()
            .map(|(seq, block)| {
                let key = keys.block_key(*seq);
                let value = keys.seal(Kind::Block, &key, &block.encode(self.dim))?;
                Ok((key, value))
            })
            .collect();
        for kv in sealed {
            let (k, v) = kv?;
            batch.put_owned(NS_BLOCKS, k, v);
        }
        let mut moved = Vec::new();
        let mut new_blocks = Vec::with_capacity(renumbered.len());
        for (seq, block) in renumbered {
            moved.extend(block.ids().iter().map(|id| (id.to_owned(), seq)));
            new_blocks.push((seq, Arc::new(block)));
        }
        Ok(Committed {
            lists: self.lists,
            next_seq: self.next_seq,
            moved,
            removed: self.removed,
            dropped_seqs: dropped,
            new_blocks,
        })
    }
}

/// A scored item: ordered by distance, then id.
struct Scored {
    dist: f32,
    id: String,
}
impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.dist
            .total_cmp(&o.dist)
            .then_with(|| self.id.cmp(&o.id))
    }
}

/// The best `k` items of one query (smallest distance, then smallest id).
struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::new(),
        }
    }

    /// Candidates farther than this cannot enter (infinite until full).
    fn bound(&self) -> f32 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.dist,
            _ => f32::INFINITY,
        }
    }

    /// Offers an item; its id is copied only if it enters.
    fn offer(&mut self, dist: f32, id: &str) {
        if self.heap.len() < self.k {
            self.heap.push(Scored {
                dist,
                id: id.to_owned(),
            });
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if dist.total_cmp(&worst.dist).then_with(|| id.cmp(&worst.id)) == CmpOrdering::Less {
                // Replaced in place: the worst item's string is reused.
                worst.dist = dist;
                worst.id.clear();
                worst.id.push_str(id);
            }
        }
    }

    fn merge(&mut self, other: TopK) {
        for s in other.heap {
            if self.heap.len() < self.k {
                self.heap.push(s);
            } else if let Some(mut worst) = self.heap.peek_mut() {
                if s < *worst {
                    *worst = s;
                }
            }
        }
    }

    /// The items, best first.
    fn into_hits(self) -> Vec<(String, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|s| (s.id, s.dist))
            .collect()
    }
}

fn check_vector(what: impl Fn() -> String, v: &[f32], dim: usize) -> Result<()> {
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
        name: &str,
        cred: &Credentials,
        cache_bytes: usize,
    ) -> Result<Self> {
        let (id, ring) = read_catalog(&store, name)?;
        let access = open_ring(&ring, cred)?;
        let keys = Arc::new(Keys::derive(access.data_key(), id, ring.suite()));
        let sk = keys.state_key();
        let raw = store.get(NS_META, &sk)?.ok_or_else(|| Error::Corrupt {
            what: "index state record",
            reason: "missing".into(),
        })?;
        let p = Persisted::decode(&keys.open(Kind::State, &sk, &raw)?)?;
        let centroids = if p.trained {
            read_centroids(&store, &keys, p.generation)?
        } else {
            Vec::new()
        };
        let index = Self {
            store,
            name: name.to_owned(),
            id,
            suite: ring.suite(),
            keys: RwLock::new(Some((access.data_key_arc(), Arc::clone(&keys)))),
            writer: Mutex::new(()),
            live: RwLock::new(Live {
                meta: MetaIndex::new(&p.unindexed_fields),
                p,
                centroids,
                locations: HashMap::new(),
            }),
            training: AtomicBool::new(false),
            cache: (cache_bytes > 0).then(|| BlockCache::new(cache_bytes)),
        };
        index.rebuild_locations(&keys)?;
        index.load_metadata(&keys)?;
        if let Ok(cap) = access.write() {
            index.collect_orphans(cap, &keys)?;
        }
        Ok(index)
    }

    fn rebuild_locations(&self, keys: &Keys) -> Result<()> {
        let mut live = self.live.write();
        let Some(dim) = live.p.dim else { return Ok(()) };
        let seqs: Vec<u64> = live.p.lists.iter().flatten().map(|b| b.seq).collect();
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
        Ok(())
    }

    /// Decrypts every item's metadata into memory, when the index has any.
    fn load_metadata(&self, keys: &Keys) -> Result<()> {
        let mut live = self.live.write();
        if !live.p.has_metadata {
            return Ok(());
        }
        let mut raws = Vec::with_capacity(live.locations.len());
        for entry in self.store.scan_prefix(NS_ITEMS, &self.id.0)? {
            raws.push(entry?);
        }
        let docs: Vec<Option<(String, serde_json::Value)>> = raws
            .par_iter()
            .map(|(key, raw)| {
                let rec = ItemRecord::decode(&keys.open(Kind::Item, key, raw)?)?;
                Ok(parse_meta(rec.metadata)?.map(|m| (rec.id, m)))
            })
            .collect::<Result<_>>()?;
        for (id, doc) in docs.into_iter().flatten() {
            live.meta.insert(&id, doc);
        }
        Ok(())
    }

    /// Deletes blocks that no state references (left by a crashed train).
    fn collect_orphans(&self, cap: &WriteCap, keys: &Keys) -> Result<()> {
        let live = self.live.read();
        let referenced: HashSet<Vec<u8>> = live
            .p
            .lists
            .iter()
            .flatten()
            .map(|b| keys.block_key(b.seq))
            .collect();
        let mut batch = WriteBatch::new();
        for entry in self.store.scan_prefix(NS_BLOCKS, &self.id.0)? {
            let (k, _) = entry?;
            if !referenced.contains(&k) {
                batch.delete(NS_BLOCKS, &k);
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

    fn training_state(&self) -> TrainingState {
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
        let (id, ring) = read_catalog(&self.store, &self.name)?;
        if id != self.id {
            return Err(Error::NotFound(self.name.clone()));
        }
        let access = open_ring(&ring, cred)?;
        if let Some((dek, keys)) = self.keys.read().as_ref() {
            if dek.ct_eq(access.data_key()) {
                return Ok((access, Arc::clone(keys)));
            }
        }
        let keys = Arc::new(Keys::derive(access.data_key(), id, ring.suite()));
        *self.keys.write() = Some((access.data_key_arc(), Arc::clone(&keys)));
        Ok((access, keys))
    }

    /// Reads block `seq` into `into` (its buffers are reused).
    fn read_block(&self, keys: &Keys, seq: u64, dim: usize, into: &mut Block) -> Result<()> {
        let key = keys.block_key(seq);
        let mut opened = Ok(());
        let found = self.store.read_with(NS_BLOCKS, &key, &mut |sealed| {
            opened = into.open_into(sealed, dim, |buf| {
                keys.open_in_place(Kind::Block, &key, buf)
            });
        })?;
        if !found {
            return Err(Error::Corrupt {
                what: "vector block",
                reason: "a block the index state references is missing".into(),
            });
        }
        opened
    }

    /// Block `seq`, from the list cache or the store (and then cached).
    fn load_block(&self, keys: &Keys, seq: u64, dim: usize) -> Result<Arc<Block>> {
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
    fn for_each_block(
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

impl Index {
    /// The index name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub(crate) fn from_shared(shared: Arc<Shared>, cred: Credentials) -> Self {
        Self { shared, cred }
    }

    /// Operations with other credentials than the ones the index was loaded
    /// with (per-operation key override, for stateless deployments).
    pub fn using<'a>(&'a self, cred: &'a Credentials) -> IndexAs<'a> {
        IndexAs {
            index: &self.shared,
            cred,
        }
    }

    fn me(&self) -> IndexAs<'_> {
        IndexAs {
            index: &self.shared,
            cred: &self.cred,
        }
    }

    /// Upserts items; an existing id is overwritten. Returns how many were written.
    pub fn upsert(&self, items: Vec<Item>) -> Result<usize> {
        self.me().upsert(items)
    }

    /// Upserts ids with vectors (no contents or metadata).
    pub fn upsert_vectors(&self, ids: &[String], vectors: &[Vec<f32>]) -> Result<usize> {
        self.me().upsert_vectors(ids, vectors)
    }

    /// Gets items by id with the chosen fields; missing ids are reported.
    pub fn get(&self, ids: &[String], fields: Fields) -> Result<GetResult> {
        self.me().get(ids, fields)
    }

    /// Deletes items; returns how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<usize> {
        self.me().delete(ids)
    }

    /// All item ids, sorted.
    pub fn list_ids(&self) -> Result<Vec<String>> {
        self.me().list_ids()
    }

    /// Number of items.
    pub fn count(&self) -> Result<usize> {
        self.me().count()
    }

    /// Nearest neighbours of each query, sorted by distance then id.
    pub fn query(&self, queries: &[Vec<f32>], opts: &QueryOptions) -> Result<Vec<Vec<Hit>>> {
        self.me().query(queries, opts)
    }

    /// The ids of the items whose metadata matches `filter`, sorted, at most
    /// `limit` of them. Needs no query vector; works on untrained indexes.
    pub fn query_metadata(&self, filter: &Filter, limit: usize) -> Result<Vec<String>> {
        self.me().query_metadata(filter, limit)
    }

    /// Trains (or retrains) the IVF lists.
    pub fn train(&self, opts: &TrainOptions) -> Result<()> {
        self.me().train(opts, None)
    }

    /// Trains, calling `progress` after every k-means iteration; returning
    /// `ControlFlow::Break` cancels (the index keeps its previous state).
    pub fn train_with_progress(
        &self,
        opts: &TrainOptions,
        progress: &ProgressFn<'_>,
    ) -> Result<()> {
        self.me().train(opts, Some(progress))
    }

    /// The training state.
    pub fn training_state(&self) -> TrainingState {
        self.shared.training_state()
    }

    /// Number of inverted lists (1 before training).
    pub fn n_lists(&self) -> usize {
        self.shared.live.read().p.lists.len()
    }

    /// A summary of the index.
    pub fn info(&self) -> Result<IndexInfo> {
        self.me().info()
    }

    /// Grants an RBAC user read and/or write wraps (owner only).
    pub fn add_user(
        &self,
        user: UserId,
        user_key: &SecretKey,
        read: bool,
        write: bool,
    ) -> Result<()> {
        self.me().add_user(user, user_key, read, write)
    }

    /// Lists RBAC users (owner only).
    pub fn list_users(&self) -> Result<Vec<UserEntry>> {
        self.me().list_users()
    }

    /// Deletes every wrap of a user (owner only); returns whether it had any.
    pub fn remove_user(&self, user: UserId) -> Result<bool> {
        self.me().remove_user(user)
    }

    /// Re-wraps the data key under a new owner key (owner only). Data is not
    /// re-encrypted; users keep working. Later operations need the new key.
    pub fn rotate_key(&self, new_key: &SecretKey) -> Result<()> {
        self.me().rotate_key(new_key)
    }
}

/// An [`Index`] seen with explicit credentials; see [`Index::using`].
pub struct IndexAs<'a> {
    index: &'a Shared,
    cred: &'a Credentials,
}

impl IndexAs<'_> {
    /// See [`Index::upsert_vectors`].
    pub fn upsert_vectors(&self, ids: &[String], vectors: &[Vec<f32>]) -> Result<usize> {
        if ids.len() != vectors.len() {
            return Err(Error::InvalidParameter {
                name: "ids/vectors",
                value: format!("{} ids and {} vectors", ids.len(), vectors.len()),
                expected: "as many ids as vectors",
            });
        }
        self.upsert_refs(
            ids.iter()
                .zip(vectors)
                .map(|(id, v)| ItemRef {
                    id,
                    vector: v,
                    contents: None,
                    metadata: None,
                })
                .collect(),
        )
    }

    /// See [`Index::upsert`].
    pub fn upsert(&self, items: Vec<Item>) -> Result<usize> {
        self.upsert_refs(
            items
                .iter()
                .map(|it| ItemRef {
                    id: &it.id,
                    vector: it.vector.as_deref().unwrap_or_default(),
                    contents: it.contents.as_deref(),
                    metadata: it.metadata.as_ref(),
                })
                .collect(),
        )
    }

    /// Upserts borrowed items: nothing is copied but what is stored.
    fn upsert_refs(&self, items: Vec<ItemRef<'_>>) -> Result<usize> {
        let ix = self.index;
        let (access, keys) = ix.authorize(self.cred)?;
        let cap = access.write_for("upsert")?;
        if items.is_empty() {
            return Ok(0);
        }
        let _w = ix.writer.lock();
        let (metric, dim) = {
            let l = ix.live.read();
            (l.p.metric, l.p.dim)
        };
        let dim = dim.unwrap_or(items[0].vector.len());
        if dim == 0 {
            return Err(Error::InvalidParameter {
                name: "vector",
                value: "empty".into(),
                expected: "at least one value",
            });
        }
        // Validate everything before any work; keep the last of duplicate ids.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            if it.id.is_empty() {
                return Err(Error::EmptyId(i));
            }
            check_vector(|| format!("item {:?}", it.id), it.vector, dim)?;
            if it.metadata.is_some_and(|m| !m.is_object()) {
                return Err(Error::BadMetadata(it.id.to_owned()));
            }
            last.insert(it.id, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let items: Vec<&ItemRef<'_>> = order.iter().map(|&i| &items[i]).collect();

        let search = prepare(items.iter().map(|it| it.vector), metric, dim);
        let mut batch = WriteBatch::new();
        let sealed: Vec<Result<(Vec<u8>, Vec<u8>)>> = items
            .par_iter()
            .map(|it| {
                let metadata = it.metadata.map(serde_json::Value::to_string);
                let plain = encode_item(it.id, it.vector, it.contents, metadata.as_deref());
                let key = keys.item_key(it.id);
                let value = keys.seal(Kind::Item, &key, &plain)?;
                Ok((key, value))
            })
            .collect();
        for kv in sealed {
            let (k, v) = kv?;
            batch.put_owned(NS_ITEMS, k, v);
        }

        let live = ix.live.read();
        let mut p = live.p.clone();
        p.dim = Some(dim);
        p.has_metadata |= items.iter().any(|it| it.metadata.is_some());
        let mut edit = Edit::new(&p, dim);
        // Routed with the kernel that picks the lists a query probes, so an
        // upserted vector is in the first list a query equal to it probes.
        let lists: Vec<u32> = if p.trained {
            nearest_centroids(&live.centroids, dim, &search)
        } else {
            vec![0; items.len()]
        };
        for ((it, v), list) in items.iter().zip(search.chunks_exact(dim)).zip(lists) {
            if let Some(&seq) = live.locations.get(it.id) {
                edit.remove(ix, &keys, seq, it.id)?;
            }
            edit.add(ix, &keys, list, it.id, v)?;
        }
        drop(live);
        let n = items.len();
        let meta = if p.has_metadata {
            items
                .iter()
                .map(|it| (it.id.to_owned(), it.metadata.cloned()))
                .collect()
        } else {
            Vec::new()
        };
        ix.commit(cap, &keys, p, edit, batch, meta)?;
        Ok(n)
    }

    /// See [`Index::get`].
    pub fn get(&self, ids: &[String], fields: Fields) -> Result<GetResult> {
        let ix = self.index;
        let (_, keys) = ix.authorize(self.cred)?;
        let recs = ix.read_items(&keys, ids)?;
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

    /// See [`Index::delete`].
    pub fn delete(&self, ids: &[String]) -> Result<usize> {
        let ix = self.index;
        let (access, keys) = ix.authorize(self.cred)?;
        let cap = access.write_for("delete")?;
        let _w = ix.writer.lock();
        let live = ix.live.read();
        let Some(dim) = live.p.dim else { return Ok(0) };
        let p = live.p.clone();
        let mut edit = Edit::new(&p, dim);
        let mut batch = WriteBatch::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            if let Some(&seq) = live.locations.get(id) {
                edit.remove(ix, &keys, seq, id)?;
                batch.delete(NS_ITEMS, &keys.item_key(id));
            }
        }
        drop(live);
        let n = edit.removed.len();
        if n > 0 {
            let meta = if p.has_metadata {
                edit.removed.iter().map(|id| (id.clone(), None)).collect()
            } else {
                Vec::new()
            };
            ix.commit(cap, &keys, p, edit, batch, meta)?;
        }
        Ok(n)
    }

    /// See [`Index::list_ids`].
    pub fn list_ids(&self) -> Result<Vec<String>> {
        self.index.authorize(self.cred)?;
        let mut ids: Vec<String> = self.index.live.read().locations.keys().cloned().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// See [`Index::count`].
    pub fn count(&self) -> Result<usize> {
        self.index.authorize(self.cred)?;
        Ok(self.index.live.read().locations.len())
    }

    /// See [`Index::info`].
    pub fn info(&self) -> Result<IndexInfo> {
        let ix = self.index;
        ix.authorize(self.cred)?;
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
        })
    }

    /// See [`Index::query`].
    pub fn query(&self, queries: &[Vec<f32>], opts: &QueryOptions) -> Result<Vec<Vec<Hit>>> {
        let ix = self.index;
        let (_, keys) = ix.authorize(self.cred)?;
        let top_k = opts.top_k.unwrap_or(100);
        if top_k == 0 {
            return Err(Error::zero("top_k"));
        }
        let live = ix.live.read();
        let Some(dim) = live.p.dim else {
            return Ok(vec![Vec::new(); queries.len()]);
        };
        let metric = live.p.metric;
        for (i, q) in queries.iter().enumerate() {
            check_vector(|| format!("query #{i}"), q, dim)?;
        }
        let n_lists = live.p.lists.len();
        let n_probes = opts
            .n_probes
            .filter(|&p| p > 0)
            .unwrap_or_else(|| auto_n_probes(n_lists))
            .min(n_lists);
        let prepared = prepare(queries.iter().map(Vec::as_slice), metric, dim);
        // The filter is evaluated once per call, on the in-memory metadata.
        let matching = opts
            .filter
            .as_ref()
            .map(|f| live.meta.matching(f, live.locations.keys()));
        let selective = matching.as_ref().filter(|m| {
            let scanned = live.locations.len() * n_probes / n_lists.max(1);
            m.len() <= top_k.max(scanned / DIRECT_COST)
        });
        let allowed: Option<HashSet<&str>> = matching
            .as_ref()
            .filter(|_| selective.is_none())
            .map(|m| m.iter().map(|id| &**id).collect());
        let search = Search {
            live: &live,
            keys: &keys,
            metric,
            dim,
            top_k,
            n_probes,
            allowed: allowed.as_ref(),
        };
        let results = if let Some(m) = selective {
            // Read just the matching items and search them exhaustively:
            // exact, and cheaper than scanning the lists.
            let ids: Vec<String> = m.iter().map(|id| id.to_string()).collect();
            ix.search_items(&search, &ids, &prepared)?
        } else {
            let mut results = Vec::with_capacity(queries.len());
            for chunk in prepared.chunks(QUERY_CHUNK * dim) {
                results.extend(ix.search_chunk(&search, chunk)?);
            }
            results
        };
        drop(live);
        if !(opts.include_metadata || opts.include_contents) {
            return Ok(results
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|(id, d)| Hit {
                            id,
                            distance: opts.include_distance.then_some(d),
                            metadata: None,
                            contents: None,
                        })
                        .collect()
                })
                .collect());
        }
        let mut all_ids: Vec<String> = results.iter().flatten().map(|(id, _)| id.clone()).collect();
        all_ids.sort_unstable();
        all_ids.dedup();
        let recs = ix.read_items(&keys, &all_ids)?;
        let recs: HashMap<String, ItemRecord> = all_ids
            .into_iter()
            .zip(recs)
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .collect();
        results
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|(id, d)| {
                        let rec = recs.get(&id);
                        Ok(Hit {
                            distance: opts.include_distance.then_some(d),
                            metadata: if opts.include_metadata {
                                parse_meta(rec.and_then(|r| r.metadata.clone()))?
                            } else {
                                None
                            },
                            contents: if opts.include_contents {
                                rec.and_then(|r| r.contents.clone())
                            } else {
                                None
                            },
                            id,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// See [`Index::query_metadata`].
    pub fn query_metadata(&self, filter: &Filter, limit: usize) -> Result<Vec<String>> {
        let ix = self.index;
        ix.authorize(self.cred)?;
        if limit == 0 {
            return Err(Error::zero("limit"));
        }
        let live = ix.live.read();
        let matching = live.meta.matching(filter, live.locations.keys());
        Ok(matching
            .into_iter()
            .take(limit)
            .map(|id| id.to_string())
            .collect())
    }

    /// See [`Index::train`].
    pub fn train(&self, opts: &TrainOptions, progress: Option<&ProgressFn<'_>>) -> Result<()> {
        let ix = self.index;
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
        let (access, keys) = ix.authorize(self.cred)?;
        let cap = access.write_for("train")?;
        let _w = ix.writer.lock();
        let (count, dim, metric) = {
            let l = ix.live.read();
            (l.locations.len(), l.p.dim, l.p.metric)
        };
        let n_lists = opts
            .n_lists
            .filter(|&n| n > 0)
            .unwrap_or_else(|| auto_n_lists(count));
        let need = (2 * n_lists).max(MIN_TRAIN_VECTORS);
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
                    .flatten()
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
        let mut writer = ListWriter::new(ix, cap, &keys, dim, n_lists, old.next_seq, count);
        let centroids = match opts.max_memory.filter(|&m| m > 0) {
            None => {
                // Everything in memory: decrypt every block, cluster all
                // vectors (k-means samples what it trains on) and write the
                // lists from its final assignment.
                let mut data = Vec::with_capacity(count * dim);
                let mut ids: Vec<String> = Vec::with_capacity(count);
                ix.for_each_block(&keys, &seqs, dim, |b| {
                    data.extend_from_slice(b.vectors());
                    ids.extend(b.ids().iter().map(str::to_owned));
                })?;
                let result = vecseal_kmeans::KMeans::new(kopts)
                    .with_progress(&cb)
                    .fit(&data, dim)?;
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_lists];
                for (i, &a) in result.assignments.iter().enumerate() {
                    members[a as usize].push(i);
                }
                for (l, m) in members.iter().enumerate() {
                    let vectors = m
                        .iter()
                        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
                        .collect();
                    let list_ids = m.iter().map(|&i| std::mem::take(&mut ids[i])).collect();
                    writer.add_list(l, list_ids, vectors)?;
                }
                result.centroids
            }
            Some(mb) => {
                let budget = mb.saturating_mul(1 << 20);
                ix.train_streaming(&keys, &seqs, dim, kopts, &cb, &mut writer, budget)?
            }
        };
        writer.flush()?;
        let ListWriter {
            lists,
            next_seq,
            locations,
            ..
        } = writer;

        // The atomic switch: new state and centroids, old blocks gone.
        let mut p = old.clone();
        p.trained = true;
        p.generation += 1;
        p.next_seq = next_seq;
        p.lists = lists;
        let mut batch = WriteBatch::new();
        let ck = keys.centroids_key(p.generation);
        let cbytes: Vec<u8> = centroids.iter().flat_map(|v| v.to_le_bytes()).collect();
        batch.put_owned(
            NS_META,
            ck.clone(),
            keys.seal(Kind::Centroids, &ck, &cbytes)?,
        );
        let sk = keys.state_key();
        batch.put_owned(
            NS_META,
            sk.clone(),
            keys.seal(Kind::State, &sk, &p.encode()?)?,
        );
        if old.trained {
            batch.delete(NS_META, &keys.centroids_key(old.generation));
        }
        for s in &seqs {
            batch.delete(NS_BLOCKS, &keys.block_key(*s));
        }
        let mut live = ix.live.write();
        ix.store.write(cap, batch, Durability::Sync)?;
        let meta = std::mem::take(&mut live.meta);
        *live = Live {
            p,
            centroids,
            locations,
            meta,
        };
        drop(live);
        if let Some(c) = &ix.cache {
            seqs.iter().for_each(|s| c.remove(*s));
        }
        Ok(())
    }

    fn owner_ring(&self, action: &'static str) -> Result<(vecseal_keyring::Keyring, Access)> {
        let (_, ring) = read_catalog(&self.index.store, &self.index.name)?;
        let access = open_ring(&ring, self.cred)?;
        access.owner_for(action)?;
        Ok((ring, access))
    }

    fn save_ring(&self, cap: &OwnerCap, ring: &vecseal_keyring::Keyring) -> Result<()> {
        let mut batch = WriteBatch::new();
        write_catalog(&mut batch, &self.index.name, self.index.id, ring);
        self.index.store.write(cap, batch, Durability::Sync)
    }

    /// See [`Index::add_user`].
    pub fn add_user(
        &self,
        user: UserId,
        user_key: &SecretKey,
        read: bool,
        write: bool,
    ) -> Result<()> {
        let _w = self.index.writer.lock();
        let (mut ring, access) = self.owner_ring("managing users")?;
        ring.grant(&access, user, user_key, read, write)?;
        self.save_ring(access.owner_for("managing users")?, &ring)
    }

    /// See [`Index::list_users`].
    pub fn list_users(&self) -> Result<Vec<UserEntry>> {
        Ok(self.owner_ring("listing users")?.0.users())
    }

    /// See [`Index::remove_user`].
    pub fn remove_user(&self, user: UserId) -> Result<bool> {
        let _w = self.index.writer.lock();
        let (mut ring, access) = self.owner_ring("managing users")?;
        let had = ring.revoke(&access, user)?;
        self.save_ring(access.owner_for("managing users")?, &ring)?;
        Ok(had)
    }

    /// See [`Index::rotate_key`].
    pub fn rotate_key(&self, new_key: &SecretKey) -> Result<()> {
        let _w = self.index.writer.lock();
        let (mut ring, access) = self.owner_ring("rotating the index key")?;
        ring.rotate_root(&access, new_key)?;
        self.save_ring(access.owner_for("rotating the index key")?, &ring)
    }
}

impl Shared {
    fn read_items(&self, keys: &Keys, ids: &[String]) -> Result<Vec<Option<ItemRecord>>> {
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
                            what: "item record",
                            reason: "id does not match its key".into(),
                        });
                    }
                    Ok(rec)
                })
                .transpose()
            })
            .collect()
    }

    /// Seals the edit, writes it with the item batch and the new state in one
    /// synced batch, and switches the live state.
    /// `meta` sets (or with `None` removes) the in-memory metadata of items.
    fn commit(
        &self,
        cap: &WriteCap,
        keys: &Keys,
        mut p: Persisted,
        edit: Edit,
        mut batch: WriteBatch,
        meta: Vec<(String, Option<serde_json::Value>)>,
    ) -> Result<()> {
        let c = edit.commit(keys, &mut batch)?;
        p.lists = c.lists;
        p.next_seq = c.next_seq;
        let sk = keys.state_key();
        batch.put_owned(
            NS_META,
            sk.clone(),
            keys.seal(Kind::State, &sk, &p.encode()?)?,
        );
        let mut live = self.live.write();
        self.store.write(cap, batch, Durability::Sync)?;
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

/// Writes the lists of a training run as sealed blocks under fresh numbers
/// (in batches of about `TRAIN_BATCH_BYTES`), before the switch.
struct ListWriter<'a> {
    ix: &'a Shared,
    cap: &'a WriteCap,
    keys: &'a Keys,
    dim: usize,
    per_block: usize,
    next_seq: u64,
    lists: Vec<Vec<BlockRef>>,
    locations: HashMap<String, u64>,
    pending: Vec<(u64, Block)>,
    pending_bytes: usize,
}

impl<'a> ListWriter<'a> {
    fn new(
        ix: &'a Shared,
        cap: &'a WriteCap,
        keys: &'a Keys,
        dim: usize,
        n_lists: usize,
        next_seq: u64,
        count: usize,
    ) -> Self {
        Self {
            ix,
            cap,
            keys,
            dim,
            per_block: block_capacity(dim),
            next_seq,
            lists: vec![Vec::new(); n_lists],
            locations: HashMap::with_capacity(count),
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Appends the whole of list `l` (its ids and row-major vectors).
    fn add_list(&mut self, l: usize, ids: Vec<String>, vectors: Vec<f32>) -> Result<()> {
        let dim = self.dim;
        for (ids, vectors) in ids.chunks(self.per_block).zip(vectors.chunks(self.per_block * dim)) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.lists[l].push(BlockRef {
                seq,
                count: ids.len() as u32,
            });
            for id in ids {
                self.locations.insert(id.clone(), seq);
            }
            let mut block = Block::default();
            for (id, v) in ids.iter().zip(vectors.chunks_exact(dim)) {
                block.push(id, v);
            }
            self.pending.push((seq, block));
            self.pending_bytes += vectors.len() * 4;
            if self.pending_bytes >= TRAIN_BATCH_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Seals and writes the pending blocks.
    fn flush(&mut self) -> Result<()> {
        let (keys, dim) = (self.keys, self.dim);
        let sealed: Vec<Result<(Vec<u8>, Vec<u8>)>> = self
            .pending
            .par_iter()
            .map(|(seq, block)| {
                let key = keys.block_key(*seq);
                let value = keys.seal(Kind::Block, &key, &block.encode(dim))?;
                Ok((key, value))
            })
            .collect();
        let mut batch = WriteBatch::new();
        for kv in sealed {
            let (k, v) = kv?;
            batch.put_owned(NS_BLOCKS, k, v);
        }
        if !batch.is_empty() {
            self.ix.store.write(self.cap, batch, Durability::Buffered)?;
        }
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}

impl Shared {
    /// Training within a memory budget of `budget` bytes: the vectors are
    /// streamed block by block, never all held at once. k-means trains on a
    /// uniform sample that fits half the budget (and gets the other half as
    /// its own bound); one pass assigns every vector to its nearest centroid;
    /// then the lists are written in groups that fit half the budget, each
    /// group gathered by one more pass over the blocks.
    #[allow(clippy::too_many_arguments)]
    fn train_streaming(
        &self,
        keys: &Keys,
        seqs: &[u64],
        dim: usize,
        mut kopts: vecseal_kmeans::Options,
        progress: &(dyn Fn(&vecseal_kmeans::Progress) -> ControlFlow<()> + Sync),
        writer: &mut ListWriter<'_>,
        budget: usize,
    ) -> Result<Vec<f32>> {
        use rand::SeedableRng;
        let n_lists = writer.lists.len();
        let half = (budget / 2).max(dim * 4);
        let counts: Vec<usize> = {
            let live = self.live.read();
            live.p
                .lists
                .iter()
                .flatten()
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
        for (&seq, &n) in seqs.iter().zip(&counts) {
            if next.peek().is_some_and(|&&i| i < offset + n) {
                self.read_block(keys, seq, dim, &mut block)?;
                while let Some(&&i) = next.peek().filter(|&&&i| i < offset + n) {
                    let r = i - offset;
                    sample.extend_from_slice(&block.vectors()[r * dim..(r + 1) * dim]);
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

        // One pass: the list of every vector, in block order.
        let mut assign: Vec<u32> = Vec::with_capacity(count);
        self.for_each_block(keys, seqs, dim, |b| {
            assign.extend(nearest_centroids(&centroids, dim, b.vectors()));
        })?;
        let mut sizes = vec![0usize; n_lists];
        for &a in &assign {
            sizes[a as usize] += 1;
        }
        // Groups of consecutive lists that fit half the budget.
        let mut start = 0;
        while start < n_lists {
            let mut end = start;
            let mut bytes = 0;
            while end < n_lists && (end == start || bytes + sizes[end] * dim * 4 <= half) {
                bytes += sizes[end] * dim * 4;
                end += 1;
            }
            let mut ids: Vec<Vec<String>> = vec![Vec::new(); end - start];
            let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); end - start];
            let mut i = 0;
            self.for_each_block(keys, seqs, dim, |b| {
                for (id, v) in b.ids().iter().zip(b.vectors().chunks_exact(dim)) {
                    let l = assign[i] as usize;
                    i += 1;
                    if (start..end).contains(&l) {
                        ids[l - start].push(id.to_owned());
                        vectors[l - start].extend_from_slice(v);
                    }
                }
            })?;
            for (j, (ids, vectors)) in ids.into_iter().zip(vectors).enumerate() {
                writer.add_list(start + j, ids, vectors)?;
            }
            start = end;
        }
        Ok(centroids)
    }
}

/// The parameters of one query call over the live state.
struct Search<'a> {
    live: &'a Live,
    keys: &'a Keys,
    metric: Metric,
    dim: usize,
    top_k: usize,
    n_probes: usize,
    /// Only these ids may be returned (a metadata filter), when set.
    allowed: Option<&'a HashSet<&'a str>>,
}

impl Search<'_> {
    fn ok(&self, id: &str) -> bool {
        self.allowed.is_none_or(|a| a.contains(id))
    }
}

/// Where the block of a search task comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Already in memory.
    Held(&'a Block),
    /// Block number `seq`: from the list cache, or read and decrypted.
    Stored(u64),
}

/// The task list of a single query (query 0 of its chunk).
const ONLY_QUERY: &[u32] = &[0];

impl Shared {
    /// Exact search of `queries` over the items `ids`, read from the store
    /// and scanned like blocks of a list (see [`Shared::screen`]).
    fn search_items(
        &self,
        s: &Search<'_>,
        ids: &[String],
        queries: &[f32],
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let recs = self.read_items(s.keys, ids)?;
        let cap = block_capacity(s.dim);
        let mut blocks: Vec<Block> = Vec::new();
        for mut rec in recs.into_iter().flatten() {
            if s.metric == Metric::Cosine {
                normalize(&mut rec.vector);
            }
            match blocks.last_mut() {
                Some(b) if b.len() < cap => b.push(&rec.id, &rec.vector),
                _ => {
                    let mut b = Block::default();
                    b.push(&rec.id, &rec.vector);
                    blocks.push(b);
                }
            }
        }
        let all: Vec<u32> = (0..(queries.len() / s.dim) as u32).collect();
        let tasks: Vec<(Source<'_>, &[u32])> = blocks
            .iter()
            .map(|b| (Source::Held(b), all.as_slice()))
            .collect();
        self.screen(s, queries, &tasks)
    }

    /// Searches one chunk of prepared queries over the lists: every block of
    /// a probed list is scanned once, against the queries of the chunk that
    /// probe its list (see [`Shared::screen`]).
    fn search_chunk(&self, s: &Search<'_>, chunk: &[f32]) -> Result<Vec<Vec<(String, f32)>>> {
        let (live, dim) = (s.live, s.dim);
        let nq = chunk.len() / dim;
        let n_lists = live.p.lists.len();
        let exhaustive = !live.p.trained || s.n_probes >= n_lists;
        let probes: Vec<Vec<u32>> = if exhaustive {
            Vec::new()
        } else {
            probe_lists(&live.centroids, dim, chunk, s.n_probes)
        };
        // List → the queries of the chunk that probe it.
        let mut askers: Vec<Vec<u32>> = vec![Vec::new(); n_lists];
        if exhaustive {
            let all: Vec<u32> = (0..nq as u32).collect();
            askers.iter_mut().for_each(|a| a.clone_from(&all));
        } else {
            for (qi, lists) in probes.iter().enumerate() {
                for &l in lists {
                    askers[l as usize].push(qi as u32);
                }
            }
        }
        let tasks: Vec<(Source<'_>, &[u32])> = askers
            .iter()
            .zip(&live.p.lists)
            .filter(|(qs, _)| !qs.is_empty())
            .flat_map(|(qs, blocks)| {
                blocks
                    .iter()
                    .map(|b| (Source::Stored(b.seq), qs.as_slice()))
            })
            .collect();
        let mut hits = self.screen(s, chunk, &tasks)?;
        if s.allowed.is_some() && !exhaustive {
            hits.par_iter_mut()
                .zip(chunk.par_chunks_exact(dim))
                .zip(&probes)
                .filter(|((h, _), _)| h.len() < s.top_k)
                .try_for_each(|((h, q), lists)| self.widen(s, q, lists, h))?;
        }
        Ok(hits)
    }

    /// A filtered query that found fewer than `top_k` matches in its probes
    /// goes on to the next nearest lists, doubling the number each round,
    /// until it has `top_k` matches or has seen every list.
    fn widen(
        &self,
        s: &Search<'_>,
        q: &[f32],
        probed: &[u32],
        hits: &mut Vec<(String, f32)>,
    ) -> Result<()> {
        let seen: HashSet<u32> = probed.iter().copied().collect();
        let rest: Vec<u32> = lists_by_distance(&s.live.centroids, s.dim, q)
            .into_iter()
            .filter(|l| !seen.contains(l))
            .collect();
        let mut round = probed.len().max(1);
        let mut next = 0;
        while hits.len() < s.top_k && next < rest.len() {
            let lists = &rest[next..(next + round).min(rest.len())];
            next += lists.len();
            round *= 2;
            let tasks: Vec<(Source<'_>, &[u32])> = lists
                .iter()
                .flat_map(|&l| s.live.p.lists[l as usize].iter())
                .map(|b| (Source::Stored(b.seq), ONLY_QUERY))
                .collect();
            let mut top = TopK::new(s.top_k);
            for (id, dist) in hits
                .drain(..)
                .chain(self.screen(s, q, &tasks)?.into_iter().flatten())
            {
                top.offer(dist, &id);
            }
            *hits = top.into_hits();
        }
        Ok(())
    }

    /// Scans blocks against queries and keeps each query's best `top_k`.
    ///
    /// Each task is a block and the queries (indices into `chunk`) that scan
    /// it. A stored block comes from the list cache when there is one, or is
    /// decrypted into a buffer each worker reuses and scanned right there:
    /// no block outlives its scan, and nothing is allocated per block. A
    /// tiled kernel scores a block against a few queries with the rounding
    /// of [`distance`]; for many queries a GEMM gives lower bounds and the
    /// pairs that may enter a top-k are rescored with [`distance`]. Either
    /// way results (distances and ties) are those of brute force over the
    /// scanned vectors. A filter is checked once per vector and task, not
    /// once per query.
    fn screen(
        &self,
        s: &Search<'_>,
        chunk: &[f32],
        tasks: &[(Source<'_>, &[u32])],
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let (dim, top_k) = (s.dim, s.top_k);
        let nq = chunk.len() / dim;
        let query = |qi: u32| &chunk[qi as usize * dim..(qi as usize + 1) * dim];
        let empty = || -> Vec<TopK> { (0..nq).map(|_| TopK::new(top_k)).collect() };
        #[derive(Default)]
        struct Scratch {
            block: Block,
            queries: Vec<f32>,
            scores: Vec<f32>,
            allowed: Vec<bool>,
        }
        // Few, large pieces: each piece carries one top-k per query of the
        // chunk, and merging pieces costs a merge per query.
        let pieces = 4 * rayon::current_num_threads();
        let top = tasks
            .par_iter()
            .with_min_len(tasks.len().div_ceil(pieces).max(1))
            .try_fold(
                || (empty(), Scratch::default()),
                |(mut tops, mut w), &(source, qs)| -> Result<_> {
                    let Scratch {
                        block: buffer,
                        queries,
                        scores,
                        allowed,
                    } = &mut w;
                    let cached;
                    let block: &Block = match source {
                        Source::Held(b) => b,
                        Source::Stored(seq) if self.cache.is_some() => {
                            cached = self.load_block(s.keys, seq, dim)?;
                            &cached
                        }
                        Source::Stored(seq) => {
                            self.read_block(s.keys, seq, dim, buffer)?;
                            buffer
                        }
                    };
                    let n = block.len();
                    if n == 0 || qs.is_empty() {
                        return Ok((tops, w));
                    }
                    allowed.clear();
                    if s.allowed.is_some() {
                        allowed.extend(block.ids().iter().map(|id| s.ok(id)));
                    }
                    // Queries in groups, so the scores stay within budget
                    // however many vectors a block holds (small dimensions).
                    let group = (SCORES_BUDGET / n).max(1);
                    for (g, group_qs) in qs.chunks(group).enumerate() {
                        let qmat: &[f32] = if qs.len() == nq {
                            // Every query of the chunk, in order.
                            &chunk[g * group * dim..(g * group + group_qs.len()) * dim]
                        } else {
                            queries.clear();
                            for &qi in group_qs {
                                queries.extend_from_slice(query(qi));
                            }
                            queries
                        };
                        // Many queries: screen by GEMM and rescore what may
                        // enter; otherwise score exactly.
                        let screened = group_qs.len() >= GEMM_MIN_QUERIES;
                        if screened {
                            lower_bounds(s.metric, qmat, block.vectors(), dim, scores);
                        } else {
                            scores_into(s.metric, qmat, block.vectors(), dim, scores);
                        }
                        let vectors = block.vectors().chunks_exact(dim);
                        for (row, &qi) in scores.chunks_exact(n).zip(group_qs) {
                            let top = &mut tops[qi as usize];
                            let mut bound = top.bound();
                            for ((j, &score), x) in row.iter().enumerate().zip(vectors.clone()) {
                                if score > bound || !allowed.get(j).copied().unwrap_or(true) {
                                    continue;
                                }
                                let dist = if screened {
                                    distance(s.metric, query(qi), x)
                                } else {
                                    score
                                };
                                if dist <= bound {
                                    top.offer(dist, block.ids().get(j));
                                    bound = top.bound();
                                }
                            }
                        }
                    }
                    Ok((tops, w))
                },
            )
            .map(|r| r.map(|(tops, _)| tops))
            .try_reduce(empty, |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.merge(y);
                }
                Ok(a)
            })?;
        Ok(top.into_iter().map(TopK::into_hits).collect())
    }
}

fn parse_meta(m: Option<String>) -> Result<Option<serde_json::Value>> {
    m.map(|s| {
        serde_json::from_str(&s).map_err(|e| Error::Corrupt {
            what: "item record",
            reason: e.to_string(),
        })
    })
    .transpose()
}

fn read_centroids(store: &GuardedStore, keys: &Keys, generation: u64) -> Result<Vec<f32>> {
    let ck = keys.centroids_key(generation);
    let raw = store.get(NS_META, &ck)?.ok_or_else(|| Error::Corrupt {
        what: "centroids record",
        reason: "missing".into(),
    })?;
    let bytes = keys.open(Kind::Centroids, &ck, &raw)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Normalises (for cosine) row-major copies of `rows` of length `dim`: the
/// form both stored search vectors and queries take.
fn prepare<'a>(rows: impl Iterator<Item = &'a [f32]>, metric: Metric, dim: usize) -> Vec<f32> {
    let mut out: Vec<f32> = rows.flatten().copied().collect();
    if metric == Metric::Cosine {
        out.par_chunks_exact_mut(dim.max(1)).for_each(normalize);
    }
    out
}

/// The nearest list of every row: where upserts and training put a vector.
/// Routing, probing and widening all rank lists with one kernel
/// ([`Centroids`]: canonical distances, ties to the lower list), so a
/// vector sits in the first list a query equal to it probes.
fn nearest_centroids(centroids: &[f32], dim: usize, rows: &[f32]) -> Vec<u32> {
    Centroids::new(centroids, dim).nearest(rows)
}

/// The `n` nearest lists of every query, nearest first: the lists it probes.
fn probe_lists(centroids: &[f32], dim: usize, queries: &[f32], n: usize) -> Vec<Vec<u32>> {
    Centroids::new(centroids, dim).nearest_n(queries, n)
}

/// Every list, nearest to `q` first (the order a widening search follows).
fn lists_by_distance(centroids: &[f32], dim: usize, q: &[f32]) -> Vec<u32> {
    Centroids::new(centroids, dim).ranked(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::l2sq;

    fn grid() -> (Vec<f32>, Vec<f32>) {
        // Ten centroids, with exact duplicates among them (ties).
        let mut centroids: Vec<f32> = (0..32).map(|i| (i * 7 % 13) as f32).collect();
        centroids.extend_from_within(0..8);
        let rows: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 * 0.5).collect();
        (centroids, rows)
    }

    #[test]
    fn routing_and_probing_agree() {
        let (centroids, rows) = grid();
        let dim = 4;
        let nearest = nearest_centroids(&centroids, dim, &rows);
        let probes = probe_lists(&centroids, dim, &rows, 1);
        assert_eq!(nearest.len(), rows.len() / dim);
        for (n, p) in nearest.iter().zip(&probes) {
            assert_eq!(p.as_slice(), [*n]);
        }
    }

    #[test]
    fn ties_go_to_the_lower_list_in_routing_and_probing() {
        // One far centroid, then 64 identical nearest ones.
        let dim = 2;
        let mut centroids = vec![100.0f32, 100.0];
        for _ in 0..64 {
            centroids.extend_from_slice(&[1.0, 1.0]);
        }
        let rows: Vec<f32> = (0..50).flat_map(|i| [i as f32 * 0.01, 0.0]).collect();
        assert!(nearest_centroids(&centroids, dim, &rows)
            .iter()
            .all(|&l| l == 1));
        for p in probe_lists(&centroids, dim, &rows, 1) {
            assert_eq!(p, [1]);
        }
        for mut p in probe_lists(&centroids, dim, &rows, 3) {
            p.sort_unstable();
            assert_eq!(p, [1, 2, 3]);
        }
    }

    #[test]
    fn widening_visits_lists_nearest_first() {
        let (centroids, rows) = grid();
        let dim = 4;
        for q in rows.chunks_exact(dim) {
            let order = lists_by_distance(&centroids, dim, q);
            assert_eq!(order.len(), centroids.len() / dim);
            let d = |l: u32| l2sq(q, &centroids[l as usize * dim..(l as usize + 1) * dim]);
            assert!(order.windows(2).all(|w| d(w[0]) <= d(w[1])), "{order:?}");
            // The probes of one query are its nearest lists.
            let mut probes = probe_lists(&centroids, dim, q, 3).remove(0);
            probes.sort_unstable_by(|a, b| d(*a).total_cmp(&d(*b)));
            let farthest_probe = probes.last().map_or(0.0, |&l| d(l));
            assert!(order[3..].iter().all(|&l| d(l) >= farthest_probe));
            // One kernel ranks both, ties included: the probes are the head.
            let mut head = order[..3].to_vec();
            head.sort_unstable();
            probes.sort_unstable();
            assert_eq!(head, probes);
        }
    }
}
