//! Distances, routing, training and search give the same bits at every SIMD
//! level this CPU has: the test runs `simd_level_child` once per level, in a
//! child process with `VECSEAL_SIMD` set, and compares what each printed.

mod common;
use common::*;
use vecseal_index::{Metric, QueryOptions, TrainOptions};
use vecseal_kmeans::kernel::{SimdLevel, SIMD_ENV};

#[test]
fn results_are_bit_identical_at_every_simd_level() {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = Vec::new();
    for level in SimdLevel::ALL.into_iter().filter(|l| l.is_available()) {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "simd_level_child", "--ignored", "--nocapture"])
            .env(SIMD_ENV, level.name())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{level}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with("RESULT "))
            .map(str::to_owned)
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("RESULT level {}", level.name())),
            "{level} did not run at its level: {stdout}"
        );
        assert_eq!(lines.len(), 5, "{level}: {stdout}");
        outputs.push((level, lines[1..].to_vec()));
    }
    assert!(outputs.len() >= 2, "at least scalar and the best level");
    for (level, lines) in &outputs[1..] {
        assert_eq!(
            lines, &outputs[0].1,
            "{level} differs from {}",
            outputs[0].0
        );
    }
}

/// Run only by `results_are_bit_identical_at_every_simd_level`.
#[test]
#[ignore = "a child of results_are_bit_identical_at_every_simd_level"]
fn simd_level_child() {
    println!("RESULT level {}", SimdLevel::current().name());
    // 37 dimensions: two full groups of 16 lanes and a tail.
    let data = clustered(10_500, 37, 24, 11);
    let queries: Vec<Vec<f32>> = data.iter().step_by(97).take(60).cloned().collect();
    for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
        let (db, _store) = test_db();
        let index = create(&db, metric);
        index
            .upsert_vectors(&ids(data.len()), &data)
            .unwrap_or_else(|e| panic!("{e}"));
        let opts = QueryOptions::default().with_top_k(10).with_n_probes(3);
        let digest = |tag: &str| {
            let hits = index
                .query(&queries, &opts)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for hit in hits.iter().flatten() {
                for b in hit
                    .id
                    .bytes()
                    .map(u64::from)
                    .chain([u64::from(hit.distance.unwrap_or(f32::NAN).to_bits())])
                {
                    h = (h ^ b).wrapping_mul(0x100_0000_01b3);
                }
            }
            println!("RESULT {metric:?} {tag} {h:016x}");
        };
        if metric == Metric::SquaredEuclidean {
            digest("exhaustive");
        }
        let train = TrainOptions::default().with_n_lists(40).with_seed(2);
        index.train(&train).unwrap_or_else(|e| panic!("{e}"));
        digest("trained");
        if metric == Metric::SquaredEuclidean {
            // Streamed training (a memory bound) and upserts routed after it.
            index
                .train(&train.clone().with_max_memory(64))
                .unwrap_or_else(|e| panic!("{e}"));
            index
                .upsert_vectors(&ids(50), &queries[..50])
                .unwrap_or_else(|e| panic!("{e}"));
            digest("streamed");
        }
    }
}
