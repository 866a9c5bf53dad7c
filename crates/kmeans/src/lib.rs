//! A fast, deterministic k-means trainer on [faer] and [rayon].
//!
//! `vecseal-kmeans` trains the coarse quantizer of vecseal's IVF index, but it
//! stands alone: it knows nothing of encryption, storage or vecseal's types.
//! Give it `n` row-major `f32` vectors of dimension `d` and a number of
//! clusters `k`; it returns the centroids, the assignment of every vector,
//! the inertia after every iteration and convergence facts.
//!
//! **Architecture invariant:** no crypto, no storage, no vecseal types.
//!
//! # The same result on every CPU
//! Every distance is summed in one canonical order, whatever SIMD level the
//! CPU has ([`kernel`]), and assignment ranks centroids by those distances,
//! so a seed gives the same centroids on a scalar, an AVX2 and an AVX-512
//! machine. The [`kernel`] module is public: vecseal's index routes vectors
//! and picks probes with the same [`kernel::Centroids`].
//!
//! # How it is fast
//! * Assignment is a blocked GEMM, `‖x‖² + ‖c‖² − 2·x·c`, through faer, which
//!   picks its SIMD kernels (AVX2/FMA, AVX-512 …) at run time; the centroids
//!   it cannot rule out (a rigorous bound on its rounding) are rescored in
//!   the canonical order, so no `n × k` matrix is ever materialised and the
//!   choice does not depend on the GEMM's rounding.
//! * Like faiss, training uses at most `max_points_per_centroid · k` sampled
//!   points (default 256 per centroid); the final assignment covers all points.
//! * Blocks run in parallel on rayon; reductions are done in a fixed order,
//!   so a given seed gives the same result whatever the thread count.
//!
//! # Example
//! ```
//! use vecseal_kmeans::{KMeans, Options};
//!
//! // Two obvious clusters in 2-d.
//! let data = [0.0f32, 0.0, 0.1, 0.0, 0.0, 0.1, 10.0, 10.0, 10.1, 10.0, 10.0, 10.1];
//! let result = KMeans::new(Options::new(2).with_seed(1)).fit(&data, 2)?;
//! assert_eq!(result.assignments[0], result.assignments[1]);
//! assert_ne!(result.assignments[0], result.assignments[3]);
//! assert!(result.converged);
//! # Ok::<(), vecseal_kmeans::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::ops::ControlFlow;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub mod kernel;

use kernel::{Centroids, Scratch};

/// Errors of the k-means trainer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// `k` was 0.
    #[error("k must be at least 1, got 0")]
    ZeroK,
    /// More clusters than points.
    #[error("k = {k} is larger than the number of points n = {n}; use k <= {n}")]
    TooFewPoints {
        /// Clusters asked for.
        k: usize,
        /// Points given.
        n: usize,
    },
    /// The dimension was 0.
    #[error("dimension must be at least 1, got 0")]
    ZeroDimension,
    /// The data length is not a multiple of the dimension, or rows differ in length.
    #[error("ragged input: {len} values is not a whole number of rows of dimension {d}")]
    Ragged {
        /// Number of values (or the length of the offending row).
        len: usize,
        /// The dimension.
        d: usize,
    },
    /// NaN or infinity in the data.
    #[error("non-finite value {value} at row {row}, column {col}; every value must be finite")]
    NonFinite {
        /// Row of the value.
        row: usize,
        /// Column of the value.
        col: usize,
        /// The value (NaN or ±inf).
        value: f32,
    },
    /// A tolerance that is negative or NaN.
    #[error("tolerance must be a finite number >= 0, got {0}")]
    BadTolerance(f64),
    /// `max_iters` of 0.
    #[error("max_iters must be at least 1, got 0")]
    ZeroIters,
    /// `max_points_per_centroid` of 0.
    #[error("max_points_per_centroid must be at least 1, got 0")]
    ZeroPointsPerCentroid,
    /// The memory budget cannot hold even the centroids and one block.
    #[error("max_memory of {given_mb} MB is too small: at least {needed_mb} MB are needed for k = {k}, d = {d}")]
    MemoryTooSmall {
        /// The budget given.
        given_mb: usize,
        /// The least budget that works.
        needed_mb: usize,
        /// Clusters.
        k: usize,
        /// Dimension.
        d: usize,
    },
    /// The progress callback asked to stop.
    #[error("training was cancelled")]
    Cancelled,
    /// A SIMD level name that is not one (in `VECSEAL_SIMD`, or parsed).
    #[error("unknown SIMD level {0:?}; use scalar, v3 or v4 (or auto)")]
    UnknownSimdLevel(String),
}

/// How initial centroids are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Init {
    /// k distinct points drawn uniformly at random (faiss's default).
    Random,
    /// k-means++ (D² sampling) over the whole training sample: best seeds,
    /// O(n·k·d).
    KMeansPlusPlus,
    /// k-means++ on a random sample of at most 32·k training points: the
    /// scalable variant for large k. The default.
    #[default]
    SampledKMeansPlusPlus,
}

/// What the progress callback is told after each iteration.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// 1-based iteration just finished.
    pub iteration: u32,
    /// The iteration limit.
    pub max_iters: u32,
    /// Inertia (sum of squared distances of the training points) of the
    /// iteration's assignment.
    pub inertia: f64,
}

/// Training options. Unset (`None`) means automatic, as in vecseal's `train()`.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Options {
    /// Number of clusters.
    pub k: usize,
    /// Iteration limit; default 100.
    pub max_iters: Option<u32>,
    /// Stop when the relative decrease of inertia falls below this; default 1e-6.
    pub tolerance: Option<f64>,
    /// `None`/0: full-batch Lloyd on the training sample; `> 0`: mini-batch
    /// k-means with batches of that many points.
    pub batch_size: Option<usize>,
    /// Peak working-memory bound in MB (0/`None` = no limit). The training
    /// sample and GEMM blocks are sized to fit; the caller's input slice is
    /// not counted.
    pub max_memory_mb: Option<usize>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Initialisation method.
    pub init: Init,
    /// At most this many training points per centroid (default 256).
    pub max_points_per_centroid: Option<usize>,
    /// Spherical k-means: centroids are renormalised to unit length (cosine).
    pub spherical: bool,
}

impl Options {
    /// Options for `k` clusters, everything else default.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            max_iters: None,
            tolerance: None,
            batch_size: None,
            max_memory_mb: None,
            seed: 0,
            init: Init::default(),
            max_points_per_centroid: None,
            spherical: false,
        }
    }
    /// Sets the iteration limit.
    pub fn with_max_iters(mut self, v: u32) -> Self {
        self.max_iters = Some(v);
        self
    }
    /// Sets the convergence tolerance.
    pub fn with_tolerance(mut self, v: f64) -> Self {
        self.tolerance = Some(v);
        self
    }
    /// Sets the mini-batch size (0 = full batch).
    pub fn with_batch_size(mut self, v: usize) -> Self {
        self.batch_size = Some(v);
        self
    }
    /// Sets the memory bound in MB (0 = none).
    pub fn with_max_memory_mb(mut self, v: usize) -> Self {
        self.max_memory_mb = Some(v);
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
    /// Sets the initialisation.
    pub fn with_init(mut self, v: Init) -> Self {
        self.init = v;
        self
    }
    /// Sets the per-centroid training sample bound.
    pub fn with_max_points_per_centroid(mut self, v: usize) -> Self {
        self.max_points_per_centroid = Some(v);
        self
    }
    /// Turns spherical mode on or off.
    pub fn with_spherical(mut self, v: bool) -> Self {
        self.spherical = v;
        self
    }
}

/// The outcome of training.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// `k × d` centroids, row-major.
    pub centroids: Vec<f32>,
    /// Dimension.
    pub d: usize,
    /// Nearest centroid of every input point.
    pub assignments: Vec<u32>,
    /// Inertia of the training sample after every iteration.
    pub inertia_history: Vec<f64>,
    /// Inertia of all input points against the final centroids.
    pub final_inertia: f64,
    /// Iterations run.
    pub iterations: u32,
    /// Whether the tolerance was reached before `max_iters`.
    pub converged: bool,
    /// Points per centroid in the final assignment.
    pub cluster_sizes: Vec<usize>,
    /// `k · Σ size² / n²`: 1 is perfectly balanced.
    pub imbalance: f64,
    /// Number of points the iterations trained on.
    pub training_points: usize,
}

type Callback<'a> = dyn Fn(&Progress) -> ControlFlow<()> + Sync + 'a;

/// The trainer.
pub struct KMeans<'a> {
    opts: Options,
    progress: Option<&'a Callback<'a>>,
}

impl<'a> KMeans<'a> {
    /// A trainer with the given options.
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            progress: None,
        }
    }

    /// Calls `f` after every iteration; returning `ControlFlow::Break` cancels
    /// training with [`Error::Cancelled`].
    #[must_use]
    pub fn with_progress(mut self, f: &'a Callback<'a>) -> Self {
        self.progress = Some(f);
        self
    }

    /// Trains on rows given as separate vectors (checked for raggedness).
    pub fn fit_rows(&self, rows: &[Vec<f32>]) -> Result<KMeansResult, Error> {
        let d = rows.first().map_or(0, Vec::len);
        if d == 0 {
            return Err(Error::ZeroDimension);
        }
        let mut flat = Vec::with_capacity(rows.len() * d);
        for r in rows {
            if r.len() != d {
                return Err(Error::Ragged { len: r.len(), d });
            }
            flat.extend_from_slice(r);
        }
        self.fit(&flat, d)
    }

    /// Trains on `data`, `n × d` row-major.
    pub fn fit(&self, data: &[f32], d: usize) -> Result<KMeansResult, Error> {
        let o = &self.opts;
        let cfg = validate(o, data, d)?;
        let n = data.len() / d;
        let k = o.k;
        let mut rng = ChaCha8Rng::seed_from_u64(o.seed);

        let train = sample_rows(data, d, n, cfg.n_train, &mut rng);
        let train: &[f32] = train.as_deref().unwrap_or(data);
        let n_train = train.len() / d;

        let mut centroids = init(train, d, k, o.init, &mut rng);
        if o.spherical {
            normalize_rows(&mut centroids, d);
        }
        let mut history = Vec::new();
        let mut converged = false;
        let mut assign = vec![0u32; n_train];
        let mut iterations = 0;
        match cfg.batch_size {
            None => {
                for it in 1..=cfg.max_iters {
                    let inertia = assign_block(train, d, &centroids, cfg.block_rows, &mut assign);
                    let sizes = update(train, d, &assign, &mut centroids, k);
                    repair_empty(&mut centroids, &sizes, d, k, o.spherical);
                    if o.spherical {
                        normalize_rows(&mut centroids, d);
                    }
                    iterations = it;
                    history.push(inertia);
                    self.report(it, cfg.max_iters, inertia)?;
                    if relative_decrease(&history) < cfg.tolerance {
                        converged = true;
                        break;
                    }
                }
            }
            Some(b) => {
                let b = b.min(n_train);
                let mut counts = vec![0u64; k];
                let mut order: Vec<u32> = (0..n_train as u32).collect();
                let mut smoothed: Option<f64> = None;
                let mut batch = vec![0f32; b * d];
                let mut batch_assign = vec![0u32; b];
                for it in 1..=cfg.max_iters {
                    let (picked, _) = order.partial_shuffle(&mut rng, b);
                    let mut picked = picked.to_vec();
                    picked.sort_unstable();
                    for (dst, &i) in batch.chunks_exact_mut(d).zip(&picked) {
                        dst.copy_from_slice(&train[i as usize * d..(i as usize + 1) * d]);
                    }
                    let inertia =
                        assign_block(&batch, d, &centroids, cfg.block_rows, &mut batch_assign)
                            * (n_train as f64 / b as f64);
                    for (x, &c) in batch.chunks_exact(d).zip(&batch_assign) {
                        let c = c as usize;
                        counts[c] += 1;
                        let eta = 1.0 / counts[c] as f32;
                        for (cv, xv) in centroids[c * d..(c + 1) * d].iter_mut().zip(x) {
                            *cv += eta * (xv - *cv);
                        }
                    }
                    if o.spherical {
                        normalize_rows(&mut centroids, d);
                    }
                    iterations = it;
                    history.push(inertia);
                    self.report(it, cfg.max_iters, inertia)?;
                    let prev = smoothed.unwrap_or(inertia);
                    let next = 0.7 * prev + 0.3 * inertia;
                    smoothed = Some(next);
                    if it > 10
                        && ((prev - next) / prev.max(f64::MIN_POSITIVE)).abs() < cfg.tolerance
                    {
                        converged = true;
                        break;
                    }
                }
                // Repair clusters the batches never reached.
                let mut full = vec![0u32; n_train];
                assign_block(train, d, &centroids, cfg.block_rows, &mut full);
                let sizes = cluster_sizes(&full, k);
                repair_empty(&mut centroids, &sizes, d, k, o.spherical);
            }
        }

        let mut assignments = vec![0u32; n];
        let final_inertia = assign_block(data, d, &centroids, cfg.block_rows, &mut assignments);
        let sizes = cluster_sizes(&assignments, k);
        let imbalance =
            sizes.iter().map(|&s| (s * s) as f64).sum::<f64>() * k as f64 / (n as f64 * n as f64);
        Ok(KMeansResult {
            centroids,
            d,
            assignments,
            inertia_history: history,
            final_inertia,
            iterations,
            converged,
            cluster_sizes: sizes,
            imbalance,
            training_points: n_train,
        })
    }

    fn report(&self, iteration: u32, max_iters: u32, inertia: f64) -> Result<(), Error> {
        if let Some(f) = self.progress {
            if f(&Progress {
                iteration,
                max_iters,
                inertia,
            })
            .is_break()
            {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }
}

struct Config {
    max_iters: u32,
    tolerance: f64,
    batch_size: Option<usize>,
    n_train: usize,
    block_rows: usize,
}

fn validate(o: &Options, data: &[f32], d: usize) -> Result<Config, Error> {
    if d == 0 {
        return Err(Error::ZeroDimension);
    }
    if o.k == 0 {
        return Err(Error::ZeroK);
    }
    if !data.len().is_multiple_of(d) {
        return Err(Error::Ragged { len: data.len(), d });
    }
    let n = data.len() / d;
    if o.k > n {
        return Err(Error::TooFewPoints { k: o.k, n });
    }
    let tolerance = o.tolerance.unwrap_or(1e-6);
    if !tolerance.is_finite() || tolerance < 0.0 {
        return Err(Error::BadTolerance(tolerance));
    }
    let max_iters = o.max_iters.unwrap_or(100);
    if max_iters == 0 {
        return Err(Error::ZeroIters);
    }
    let mppc = o.max_points_per_centroid.unwrap_or(256);
    if mppc == 0 {
        return Err(Error::ZeroPointsPerCentroid);
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            row: i / d,
            col: i % d,
            value: data[i],
        });
    }
    let k = o.k;
    let mut block_rows = (1usize << 18).div_ceil(k).clamp(16, 4096);
    let mut n_train = n.min(k.saturating_mul(mppc));
    if let Some(mb) = o.max_memory_mb.filter(|&m| m > 0) {
        let budget = mb << 20;
        let threads = rayon::current_num_threads().max(1);
        // Centroids, their sums (f64) and norms; per-thread GEMM blocks; the
        // output assignment of every point.
        let fixed = k * d * 4 + k * d * 8 + k * 16 + n * 4;
        let per_block_row = threads * k * 4;
        let min_needed = fixed + per_block_row * 16 + k * (d * 4 + 8);
        if budget < min_needed {
            return Err(Error::MemoryTooSmall {
                given_mb: mb,
                needed_mb: min_needed.div_ceil(1 << 20),
                k,
                d,
            });
        }
        let spare = budget - fixed;
        block_rows = block_rows.min((spare / 4 / per_block_row).max(16));
        let for_sample = spare - block_rows * per_block_row;
        n_train = n_train.min(for_sample / (d * 4 + 8)).max(k);
    }
    let batch_size = o.batch_size.filter(|&b| b > 0);
    Ok(Config {
        max_iters,
        tolerance,
        batch_size,
        n_train,
        block_rows,
    })
}

fn relative_decrease(history: &[f64]) -> f64 {
    match history {
        [.., prev, cur] if *prev > 0.0 => (prev - cur) / prev,
        [.., _, _] => 0.0,
        _ => f64::INFINITY,
    }
}

/// Copies `m` sampled rows (in index order) when `m < n`.
fn sample_rows(
    data: &[f32],
    d: usize,
    n: usize,
    m: usize,
    rng: &mut ChaCha8Rng,
) -> Option<Vec<f32>> {
    if m >= n {
        return None;
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let (picked, _) = idx.partial_shuffle(rng, m);
    let mut picked = picked.to_vec();
    picked.sort_unstable();
    let mut out = Vec::with_capacity(m * d);
    for i in picked {
        out.extend_from_slice(&data[i as usize * d..(i as usize + 1) * d]);
    }
    Some(out)
}

fn normalize_rows(data: &mut [f32], d: usize) {
    for r in data.chunks_exact_mut(d) {
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            r.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// `best[i] = min(best[i], ‖row_i − c‖²)` over a run of rows, in the
/// canonical order of [`kernel`], vectorised through [`kernel::dispatch`].
struct NearestUpdate<'a> {
    best: &'a mut [f32],
    rows: &'a [f32],
    c: &'a [f32],
}

impl pulp::WithSimd for NearestUpdate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let d = self.c.len();
        for (b, r) in self.best.iter_mut().zip(self.rows.chunks_exact(d)) {
            let dist =
                kernel::tile::<S, kernel::SquaredDifference, 1, 1>(simd, [r], [self.c])[0][0];
            if dist < *b {
                *b = dist;
            }
        }
    }
}

fn init(train: &[f32], d: usize, k: usize, how: Init, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = train.len() / d;
    match how {
        Init::Random => {
            let mut idx: Vec<u32> = (0..n as u32).collect();
            let (picked, _) = idx.partial_shuffle(rng, k);
            picked
                .iter()
                .flat_map(|&i| train[i as usize * d..(i as usize + 1) * d].iter().copied())
                .collect()
        }
        Init::KMeansPlusPlus => kmeans_pp(train, d, k, rng),
        Init::SampledKMeansPlusPlus => {
            let m = n.min(32 * k);
            match sample_rows(train, d, n, m, rng) {
                Some(sample) => kmeans_pp(&sample, d, k, rng),
                None => kmeans_pp(train, d, k, rng),
            }
        }
    }
}

/// k-means++: each next seed is drawn with probability proportional to its
/// squared distance from the nearest seed so far.
fn kmeans_pp(data: &[f32], d: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = data.len() / d;
    let mut centroids = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..n);
    centroids.extend_from_slice(&data[first * d..(first + 1) * d]);
    let mut best: Vec<f32> = vec![f32::INFINITY; n];
    let update = |best: &mut [f32], c: &[f32]| {
        const ROWS: usize = 1024;
        best.par_chunks_mut(ROWS)
            .zip(data.par_chunks(ROWS * d))
            .for_each(|(best, rows)| kernel::dispatch(NearestUpdate { best, rows, c }));
    };
    update(&mut best, &data[first * d..(first + 1) * d]);
    for _ in 1..k {
        let total: f64 = best.iter().map(|&v| f64::from(v)).sum();
        let next = if total > 0.0 {
            let mut target = rng.gen::<f64>() * total;
            let mut pick = n - 1;
            for (i, &v) in best.iter().enumerate() {
                target -= f64::from(v);
                if target < 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.gen_range(0..n)
        };
        let c = &data[next * d..(next + 1) * d];
        centroids.extend_from_slice(c);
        update(&mut best, c);
    }
    centroids
}

/// Assigns every row to its nearest centroid ([`Centroids::nearest_into`],
/// `block_rows` rows per GEMM); returns the inertia.
fn assign_block(
    data: &[f32],
    d: usize,
    centroids: &[f32],
    block_rows: usize,
    out: &mut [u32],
) -> f64 {
    let centroids = Centroids::new(centroids, d);
    data.par_chunks(block_rows * d)
        .zip(out.par_chunks_mut(block_rows))
        .map_init(
            || (Scratch::default(), Vec::new()),
            |(scratch, dist), (x, o)| {
                dist.resize(o.len(), 0f32);
                centroids.nearest_into(x, o, dist, scratch);
                dist.iter().map(|&v| f64::from(v)).sum::<f64>()
            },
        )
        .collect::<Vec<f64>>()
        .into_iter()
        .sum()
}

fn cluster_sizes(assign: &[u32], k: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; k];
    for &a in assign {
        sizes[a as usize] += 1;
    }
    sizes
}

/// Recomputes centroids as the means of their points (f64 sums, reduced in a
/// fixed order). Returns the cluster sizes; empty clusters keep their centroid.
fn update(data: &[f32], d: usize, assign: &[u32], centroids: &mut [f32], k: usize) -> Vec<usize> {
    const CHUNK: usize = 8192;
    let partials: Vec<(Vec<f64>, Vec<usize>)> = data
        .par_chunks(CHUNK * d)
        .zip(assign.par_chunks(CHUNK))
        .map(|(x, a)| {
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0usize; k];
            for (r, &c) in x.chunks_exact(d).zip(a) {
                let c = c as usize;
                counts[c] += 1;
                for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(r) {
                    *s += f64::from(*v);
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    for (s, c) in partials {
        sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
    }
    for c in 0..k {
        if counts[c] > 0 {
            let inv = 1.0 / counts[c] as f64;
            for (dst, s) in centroids[c * d..(c + 1) * d]
                .iter_mut()
                .zip(&sums[c * d..(c + 1) * d])
            {
                *dst = (s * inv) as f32;
            }
        }
    }
    counts
}

/// Gives every empty cluster half of the largest cluster: the two centroids
/// are the large one nudged apart symmetrically (as faiss does).
fn repair_empty(centroids: &mut [f32], sizes: &[usize], d: usize, k: usize, spherical: bool) {
    let mut sizes = sizes.to_vec();
    const EPS: f32 = 1.0 / 1024.0;
    for c in 0..k {
        if sizes[c] != 0 {
            continue;
        }
        let Some((big, _)) = sizes
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (**s, std::cmp::Reverse(*i)))
        else {
            return;
        };
        let src: Vec<f32> = centroids[big * d..(big + 1) * d].to_vec();
        for (j, v) in src.iter().enumerate() {
            let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
            let delta = sign * EPS * v.abs().max(EPS);
            centroids[c * d + j] = v + delta;
            centroids[big * d + j] = v - delta;
        }
        if spherical {
            normalize_rows(&mut centroids[c * d..(c + 1) * d], d);
            normalize_rows(&mut centroids[big * d..(big + 1) * d], d);
        }
        sizes[c] = sizes[big] / 2;
        sizes[big] -= sizes[c];
    }
}

#[cfg(test)]
mod tests;
