//! `vecseal demo`: the main job, end to end, with a short report.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use vecseal::{
    Client, Credentials, IndexConfig, Item, Metric, QueryOptions, SecretKey, StorageConfig,
    TrainOptions,
};
use vecseal_cli::npy::read_npy;

const QUERIES: usize = 1000;
const K: usize = 10;

fn synthetic(n: usize, d: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let centers: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = &centers[rng.gen_range(0..centers.len())];
        out.extend(c.iter().map(|v| v + rng.gen_range(-0.35f32..0.35)));
    }
    out
}

pub(crate) fn run(data_dir: &Path, n: usize, npy: Option<&Path>) -> Result<()> {
    let total = Instant::now();
    let n = n.max(10_000 + QUERIES);
    let (data, d, source) = match npy {
        Some(path) => {
            let (data, rows, d) = read_npy(path)?;
            if rows < 10_000 + QUERIES {
                anyhow::bail!(
                    "{}: {rows} rows; the demo needs at least {}",
                    path.display(),
                    10_000 + QUERIES
                );
            }
            let take = n.min(rows);
            (
                data[..take * d].to_vec(),
                d,
                format!("{} (first {take} of {rows} rows)", path.display()),
            )
        }
        None => (
            synthetic(n, 50),
            50,
            format!("synthetic: {n} seeded clustered vectors, d = 50 (no --npy given)"),
        ),
    };
    let rows = data.len() / d;
    let folder = data_dir.join(format!(
        "demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    eprintln!("data set: {source}");
    eprintln!("store:    RocksDB in {}", folder.display());

    let client = Client::open(StorageConfig::Local(folder.clone()))?;
    let key = SecretKey::generate()?;
    let index = client.create_index(
        "demo",
        Credentials::owner(key),
        IndexConfig::default().with_metric(Metric::Cosine),
    )?;
    let n_base = rows - QUERIES;
    let items: Vec<Item> = data[..n_base * d]
        .chunks(d)
        .enumerate()
        .map(|(i, v)| Item::new(i.to_string(), v.to_vec()))
        .collect();
    let queries: Vec<Vec<f32>> = data[n_base * d..].chunks(d).map(<[f32]>::to_vec).collect();

    let t = Instant::now();
    crate::upsert_all(&index, items)?;
    let upsert_s = t.elapsed().as_secs_f64();

    let opts = QueryOptions::default().with_top_k(K);
    let t = Instant::now();
    let exact = index.query(&queries, &opts)?;
    let exact_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    crate::train_with_bar(&index, &TrainOptions::default())?;
    let train_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let ann = index.query(&queries, &opts)?;
    let ann_s = t.elapsed().as_secs_f64();
    let mut found = 0usize;
    for (e, a) in exact.iter().zip(&ann) {
        found += a.iter().filter(|h| e.iter().any(|x| x.id == h.id)).count();
    }
    let recall = found as f64 / (exact.len() * K) as f64;
    let n_lists = index.n_lists();

    println!("vecseal demo report");
    println!("  data set            {source}");
    println!("  vectors stored      {n_base} (d = {d}, cosine, AES-256-GCM)");
    println!(
        "  SIMD level          {} (best on this CPU: {}; results are the same at every level)",
        vecseal::SimdLevel::current(),
        vecseal::SimdLevel::best()
    );
    println!(
        "  upsert              {upsert_s:.2} s ({:.0} vectors/s)",
        n_base as f64 / upsert_s
    );
    println!("  exact query         {QUERIES} queries in {exact_s:.2} s ({:.0} QPS, encrypted exhaustive search)", QUERIES as f64 / exact_s);
    println!("  train               {train_s:.2} s ({n_lists} lists)");
    println!(
        "  ANN query           {QUERIES} queries in {ann_s:.2} s ({:.0} QPS, n_probes = {})",
        QUERIES as f64 / ann_s,
        vecseal::auto_n_probes(n_lists)
    );
    println!("  recall@{K}           {recall:.4} (against the exact search)");
    println!(
        "  total               {:.1} s",
        total.elapsed().as_secs_f64()
    );
    println!("  store folder        {}", folder.display());
    Ok(())
}
