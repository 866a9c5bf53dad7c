//! Queries: probing lists (or reading the matching items), screening
//! blocks, widening, and metadata-only queries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use vecseal_storage::Snapshot;

use crate::catalog::NS_META;
use crate::codec::{Block, ItemRecord};
use crate::distance::{distance, normalize};
use crate::filter::Filter;
use crate::handle::Index;
use crate::keys::Keys;
use crate::load::{parse_meta, Live};
use crate::options::{auto_n_probes, Hit, MetadataMatches, MetadataQuery, QueryOptions, MAX_TOP_K};
use crate::precision::Precision;
use crate::route::prepare;
use crate::scan;
use crate::shared::{check_vector, Shared};
use crate::state::block_capacity;
use crate::topk::TopK;
use crate::{Error, Metric, Result};

/// Queries of one batch are processed in chunks of up to this many; a chunk
/// reads every block its queries probe once, for all of them. Blocks are
/// scanned where they are decrypted, one per worker at a time, so a chunk's
/// memory is its queries and their top-k, whatever the size of the index.
pub(crate) const QUERY_CHUNK: usize = 4096;
/// A block is scored against at most this many (query, vector) pairs at a
/// time: 4 MiB of scores per worker.
pub(crate) const SCORES_BUDGET: usize = 1 << 20;
/// How many queries of a block make it go to the GEMM screen (and the
/// pairs that may enter a top-k rescored exactly) rather than the tiled
/// kernel, whose per-pair overhead dominates at small dimensions, at `dim`
/// dimensions, for a block the integer pass scores (`integer`) or not.
///
/// 32 (measured: 1.6–3× the QPS on GloVe-50d, the same at 768-d), or 8
/// for float32 and float16 blocks below 128 dimensions. Measured in
/// interleaved runs (2026-12-06, AMD EPYC, batches of 1000, best of 3): on
/// GloVe-50d at 256 lists, float32, 8 against 32 gave +15 % QPS at 4 and 8
/// probes (4 and 2 no better; 1 and 16 probes unchanged); at 629 lists +4
/// to +11 % at 4 to 16 probes, float16 +18 to +28 %. 8-bit blocks were
/// 10–17 % slower with 8 (their integer pass beats a decode and a GEMM at
/// a few queries), and on the 768-d set float32 was 5–14 % slower at 4 and
/// 16 probes (64 there was the same as 32).
pub(crate) fn gemm_min_queries(dim: usize, integer: bool) -> usize {
    if dim < 128 && !integer {
        8
    } else {
        32
    }
}

/// A filtered query reads the matching items directly (instead of scanning
/// lists) when there are at most `top_k` of them, or at most 1/`DIRECT_COST`
/// of the vectors its probes would scan: reading one item costs about as
/// much as scanning this many block vectors.
pub(crate) const DIRECT_COST: usize = 4;
/// The most candidates a query at a compressed precision reranks
/// (`top_k × rerank_mult` is cut to this).
pub(crate) const MAX_CANDIDATES: usize = 16 * MAX_TOP_K;

impl Index {
    /// Nearest neighbours of each query, sorted by distance then id.
    ///
    /// Over a store that other processes write, a query that fails because
    /// one of them committed meanwhile (it dropped a block this query was
    /// reading) runs again inside one snapshot of the store, over the state
    /// in it: consistent by construction, however often they commit. That
    /// is the handle's live state when it is the snapshot's; otherwise the
    /// snapshot's state, read for this call (so that no commit of this
    /// process's own writers can replace it meanwhile) and installed
    /// afterwards unless such a commit replaced the live state.
    pub fn query(&self, queries: &[Vec<f32>], opts: &QueryOptions) -> Result<Vec<Vec<Hit>>> {
        let ix = &*self.shared;
        ix.authorize(&self.cred)?;
        let (error, state_key, ran_on) = {
            let live = ix.live.read();
            match self.query_in(&live, None, queries, opts) {
                Err(e) if ix.store.is_shared() => (e, live.keys.state_key(), live.sealed.clone()),
                done => return done,
            }
        };
        // The state it ran on is still the stored one: a real error.
        if ix.store.get(NS_META, &state_key)?.as_deref() == Some(&ran_on[..]) {
            return Err(error);
        }
        let snap = ix.store.snapshot()?;
        {
            let live = ix.live.read();
            let in_snapshot = snap.get(NS_META, &live.keys.state_key())?;
            if live.matches_stored(in_snapshot.as_deref()) {
                return self.query_in(&live, Some(&*snap), queries, opts);
            }
        }
        let loaded = ix.load_from(&*snap, &self.cred)?;
        let result = self.query_in(&loaded, Some(&*snap), queries, opts);
        // The snapshot's state is newer than the one the query first ran
        // on (that one was no longer stored before the snapshot was
        // taken); a live state that moved on since is this process's own
        // commit, and stays.
        ix.install_over(&ran_on, loaded);
        result
    }

    /// [`Index::query`] over `live`, reading from `view` when given (else
    /// from the store).
    fn query_in(
        &self,
        live: &Live,
        view: Option<&dyn Snapshot>,
        queries: &[Vec<f32>],
        opts: &QueryOptions,
    ) -> Result<Vec<Vec<Hit>>> {
        let ix = &*self.shared;
        let top_k = opts.top_k.unwrap_or(100);
        if top_k == 0 {
            return Err(Error::zero("top_k"));
        }
        if top_k > MAX_TOP_K {
            return Err(Error::InvalidParameter {
                name: "top_k",
                value: top_k.to_string(),
                expected: "at most 10000 (MAX_TOP_K)",
            });
        }
        let keys = Arc::clone(&live.keys);
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
        // Compressed blocks: keep `rerank_mult` candidates per result, to
        // be rescored exactly (a selective filter reads exact items).
        let precision = live.p.precision;
        let rerank = precision.is_compressed() && selective.is_none();
        let mult = opts
            .rerank_mult
            .filter(|&m| m > 0)
            .unwrap_or_else(|| precision.default_rerank_mult());
        let with_records = opts.include_metadata || opts.include_contents;
        let mut reranked: HashMap<String, ItemRecord> = HashMap::new();
        let search = Search {
            live,
            view,
            keys: &keys,
            metric,
            dim,
            top_k: if rerank {
                top_k.saturating_mul(mult).min(MAX_CANDIDATES)
            } else {
                top_k
            },
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
                let hits = ix.search_chunk(&search, chunk)?;
                if rerank {
                    let (hits, records) = ix.rerank(&search, chunk, hits, top_k, with_records)?;
                    results.extend(hits);
                    reranked.extend(records);
                } else {
                    results.extend(hits);
                }
            }
            results
        };
        if !with_records {
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
        // The rerank already read the items of its results.
        let recs: HashMap<String, ItemRecord> = if rerank {
            reranked
        } else {
            let mut all_ids: Vec<String> =
                results.iter().flatten().map(|(id, _)| id.clone()).collect();
            all_ids.sort_unstable();
            all_ids.dedup();
            // Still under the guard the search ran with: the same data key.
            let recs = ix.read_items_in(view, &keys, &all_ids)?;
            all_ids
                .into_iter()
                .zip(recs)
                .filter_map(|(i, r)| r.map(|r| (i, r)))
                .collect()
        };
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

    /// The items whose metadata matches `filter` (no query vector; works
    /// on untrained indexes): all of them counted, sorted by id or by
    /// `opts.order_by`, then cut to `opts.limit`. Answers only what the
    /// metadata schema allows (see [`FieldSchema`](crate::FieldSchema)):
    /// otherwise [`Error::NotQueryable`] names the field.
    pub fn query_metadata(&self, filter: &Filter, opts: &MetadataQuery) -> Result<MetadataMatches> {
        let ix = &*self.shared;
        ix.authorize(&self.cred)?;
        if opts.limit == Some(0) {
            return Err(Error::zero("limit"));
        }
        let live = ix.live.read();
        live.meta.check_answerable(filter)?;
        let mut matching = live.meta.matching(filter, live.locations.keys());
        if let Some(field) = &opts.order_by {
            live.meta.order(&mut matching, field, opts.ascending)?;
        }
        let count = matching.len();
        Ok(MetadataMatches {
            ids: matching
                .into_iter()
                .take(opts.limit.unwrap_or(usize::MAX))
                .map(|id| id.to_string())
                .collect(),
            count,
        })
    }
}

/// The parameters of one query call over the live state.
pub(crate) struct Search<'a> {
    pub(crate) live: &'a Live,
    /// The snapshot to read from, when not the store.
    pub(crate) view: Option<&'a dyn Snapshot>,
    pub(crate) keys: &'a Keys,
    pub(crate) metric: Metric,
    pub(crate) dim: usize,
    pub(crate) top_k: usize,
    pub(crate) n_probes: usize,
    /// Only these ids may be returned (a metadata filter), when set.
    pub(crate) allowed: Option<&'a HashSet<&'a str>>,
}

impl Search<'_> {
    pub(crate) fn ok(&self, id: &str) -> bool {
        self.allowed.is_none_or(|a| a.contains(id))
    }
}

/// Where the block of a search task comes from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// Already in memory.
    Held(&'a Block),
    /// Block number `seq`: from the list cache, or read and decrypted.
    Stored(u64),
}

/// The task list of a single query (query 0 of its chunk).
pub(crate) const ONLY_QUERY: &[u32] = &[0];

impl Shared {
    /// Exact search of `queries` over the items `ids`, read from the store
    /// and scanned like blocks of a list (see [`Shared::screen`]).
    pub(crate) fn search_items(
        &self,
        s: &Search<'_>,
        ids: &[String],
        queries: &[f32],
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let recs = self.read_items_in(s.view, s.keys, ids)?;
        let cap = block_capacity(s.dim, Precision::Float32);
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
    pub(crate) fn search_chunk(
        &self,
        s: &Search<'_>,
        chunk: &[f32],
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let (live, dim) = (s.live, s.dim);
        let nq = chunk.len() / dim;
        let n_lists = live.p.lists.len();
        let exhaustive = !live.p.trained || s.n_probes >= n_lists;
        let probes: Vec<Vec<u32>> = if exhaustive {
            Vec::new()
        } else {
            live.centroids.probe(chunk, s.n_probes)
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
            .zip(live.p.lists.iter())
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
    pub(crate) fn widen(
        &self,
        s: &Search<'_>,
        q: &[f32],
        probed: &[u32],
        hits: &mut Vec<(String, f32)>,
    ) -> Result<()> {
        let seen: HashSet<u32> = probed.iter().copied().collect();
        let rest: Vec<u32> = s
            .live
            .centroids
            .ranked(q)
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
    /// no block outlives its scan, and nothing is allocated per block. The
    /// `scan` module scores it: a tiled kernel against a few queries with
    /// the rounding of [`distance`], or for many queries a GEMM screen whose
    /// survivors are rescored, so results (distances and ties) are those of
    /// brute force over the scanned vectors; 8- and 4-bit codes by the
    /// integer pass instead (screened in bytes on CPUs with AVX-512 VNNI),
    /// the same in a batch as alone. A filter is
    /// checked once per vector and task, not once per query.
    pub(crate) fn screen(
        &self,
        s: &Search<'_>,
        chunk: &[f32],
        tasks: &[(Source<'_>, &[u32])],
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let (dim, top_k) = (s.dim, s.top_k);
        let nq = chunk.len() / dim;
        let on = scan::On::new(s.metric, dim, chunk);
        let pool = Mutex::new(Vec::new());
        // Many small pieces balance the workers; the states they lend from
        // the pool carry each query's top-k from piece to piece.
        let pieces = 4 * rayon::current_num_threads();
        tasks
            .par_iter()
            .with_min_len(tasks.len().div_ceil(pieces).max(1))
            .try_for_each_init(
                || Lent::take(&pool),
                |lent, &(source, qs)| -> Result<()> {
                    let State {
                        tops,
                        block: buffer,
                        allowed,
                        scan,
                    } = lent.state.get_or_insert_with(|| State::new(nq, top_k));
                    let cached;
                    let block: &Block = match source {
                        Source::Held(b) => b,
                        Source::Stored(seq) if self.cache.is_some() => {
                            cached = self.load_block_in(s.view, s.keys, seq, dim)?;
                            &cached
                        }
                        Source::Stored(seq) => {
                            self.read_block_in(s.view, s.keys, seq, dim, buffer)?;
                            buffer
                        }
                    };
                    if block.len() == 0 || qs.is_empty() {
                        return Ok(());
                    }
                    allowed.clear();
                    if s.allowed.is_some() {
                        allowed.extend(block.ids().iter().map(|id| s.ok(id)));
                    }
                    scan::score_block(&on, block, qs, allowed, tops, scan);
                    Ok(())
                },
            )?;
        let mut states = pool.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut top = match states.pop() {
            Some(state) => state.tops,
            None => (0..nq).map(|_| TopK::new(top_k)).collect(),
        };
        for state in states {
            for (x, y) in top.iter_mut().zip(state.tops) {
                x.merge(y);
            }
        }
        Ok(top.into_iter().map(TopK::into_hits).collect())
    }

    /// Rescores each query's candidates (from compressed blocks) exactly,
    /// from their items' vectors, and keeps the best `top_k`: results are
    /// exact distances, as at float32, over the candidates. With
    /// `with_records`, also the item records of the results (for their
    /// metadata and contents, so they are not read twice).
    pub(crate) fn rerank(
        &self,
        s: &Search<'_>,
        chunk: &[f32],
        hits: Vec<Vec<(String, f32)>>,
        top_k: usize,
        with_records: bool,
    ) -> Result<Reranked> {
        let dim = s.dim;
        let mut unique: Vec<&str> = hits.iter().flatten().map(|(id, _)| id.as_str()).collect();
        unique.sort_unstable();
        unique.dedup();
        let ids: Vec<String> = unique.into_iter().map(str::to_owned).collect();
        let records = self.exact_items(s.view, s.keys, &ids, (dim, s.metric))?;
        let exact: HashMap<&str, &[f32]> = ids
            .iter()
            .map(String::as_str)
            .zip(records.iter().map(|r| r.vector.as_slice()))
            .collect();
        let best: Vec<Vec<(String, f32)>> = hits
            .into_par_iter()
            .zip(chunk.par_chunks_exact(dim))
            .with_min_len(RERANK_PER_TASK)
            .map(|(candidates, q)| {
                let mut top = TopK::new(top_k);
                for (id, _) in &candidates {
                    if let Some(x) = exact.get(id.as_str()) {
                        top.offer(distance(s.metric, q, x), id);
                    }
                }
                top.into_hits()
            })
            .collect();
        drop(exact);
        let kept: HashMap<String, ItemRecord> = if with_records {
            let results: HashSet<&str> = best.iter().flatten().map(|(id, _)| id.as_str()).collect();
            ids.into_iter()
                .zip(records)
                .filter(|(id, _)| results.contains(id.as_str()))
                .collect()
        } else {
            HashMap::new()
        };
        Ok((best, kept))
    }
}

/// The fewest queries one task of the rerank rescores (their few
/// candidates each cost less than a task of their own).
const RERANK_PER_TASK: usize = 8;

/// Reranked results, and the item records of the results when asked for.
pub(crate) type Reranked = (Vec<Vec<(String, f32)>>, HashMap<String, ItemRecord>);

/// What a worker scanning blocks keeps from task to task: the top-k of
/// every query of the chunk so far, and its buffers.
struct State {
    tops: Vec<TopK>,
    block: Block,
    allowed: Vec<bool>,
    scan: scan::Scratch,
}

impl State {
    fn new(nq: usize, top_k: usize) -> Self {
        Self {
            tops: (0..nq).map(|_| TopK::new(top_k)).collect(),
            block: Block::default(),
            allowed: Vec::new(),
            scan: scan::Scratch::default(),
        }
    }
}

/// A [`State`] lent by the pool of a scan to one piece of it, and given
/// back when the piece ends. The next piece a worker takes (or, while it
/// waits, steals) goes on from a state a finished piece gave back, so a
/// scan makes about as many top-k sets as it runs pieces at once, not one
/// per piece: a query's top-k fills once per set, and each set costs its
/// query a merge at the end (measured: a top-k per piece made the top-k
/// upkeep about a quarter of a batch of few-probe queries).
struct Lent<'p> {
    state: Option<State>,
    pool: &'p Mutex<Vec<State>>,
}

impl<'p> Lent<'p> {
    /// A state a finished piece gave back, if there is one (else the piece
    /// makes one when its first task needs it).
    fn take(pool: &'p Mutex<Vec<State>>) -> Self {
        let state = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Self { state, pool }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            self.pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(state);
        }
    }
}
