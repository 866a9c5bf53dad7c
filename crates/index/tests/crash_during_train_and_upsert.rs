//! A child process upserts batches and retrains (or rotates the data key
//! of) an index on RocksDB in a loop and is killed with SIGKILL at a random
//! moment, during an upsert, a training run or a rotation. After reopening:
//! the index loads (under whichever data key was in force), every
//! acknowledged batch is there in full, no batch is there in part, every
//! stored vector is found by an exhaustive query (so no list lost or
//! duplicated an item), and no record of another data key is left.

mod common;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{child_test, config, owner, EXACT_RERANK};
use rand::{Rng, SeedableRng};
use vecseal_index::{Database, Fields, Index, Item, QueryOptions, Store, TrainOptions, NAMESPACES};
use vecseal_storage::RocksStore;

const DIR_ENV: &str = "VECSEAL_INDEX_CRASH_DIR";
const MODE_ENV: &str = "VECSEAL_INDEX_CRASH_MODE";
const BATCH: usize = 100;

fn vector(batch: usize, j: usize) -> Vec<f32> {
    vec![batch as f32, j as f32, ((batch * 31 + j) % 17) as f32, 1.0]
}

fn batch_items(batch: usize) -> Vec<Item> {
    (0..BATCH)
        .map(|j| Item::new(format!("b{batch:05}-{j:03}"), vector(batch, j)))
        .collect()
}

fn open(dir: &str) -> (Database, Index) {
    let store = RocksStore::open(dir, NAMESPACES).unwrap_or_else(|e| panic!("{e}"));
    let db = Database::new(Arc::new(store) as Arc<dyn Store>);
    let index = match db.load_index("c", owner(9)) {
        Ok(i) => i,
        Err(_) => db
            .create_index("c", owner(9), config())
            .unwrap_or_else(|e| panic!("{e}")),
    };
    (db, index)
}

/// The batches present in the index (each must be complete).
fn batches(index: &Index) -> BTreeSet<usize> {
    let ids = index.list_ids().unwrap_or_else(|e| panic!("{e}"));
    let mut per: std::collections::BTreeMap<usize, usize> = Default::default();
    for id in &ids {
        let b: usize = id[1..6].parse().unwrap_or_else(|e| panic!("{id}: {e}"));
        *per.entry(b).or_default() += 1;
    }
    for (b, n) in &per {
        assert_eq!(
            *n, BATCH,
            "batch {b} is only partly present ({n} of {BATCH})"
        );
    }
    per.into_keys().collect()
}

/// The child that `killed_during_upsert_or_train_loses_nothing_acknowledged` starts and kills; never run on its own
/// (ignored, so it does not show up as a passing test).
#[test]
#[ignore = "the child of killed_during_upsert_or_train_loses_nothing_acknowledged"]
fn crash_child() {
    let dir = std::env::var(DIR_ENV)
        .expect("run only by killed_during_upsert_or_train_loses_nothing_acknowledged");
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    let (_db, index) = open(&dir);
    let first = batches(&index).last().map_or(0, |b| b + 1);
    let mut out = std::io::stdout();
    // At most 100 batches a child, so that the index (which every child
    // opens, reading every block) stays small enough for the next child to
    // open and reach its training or rotation before it is killed.
    for (round, next) in (first..first + 100).enumerate() {
        index
            .upsert(batch_items(next))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = writeln!(out, "ack {next}");
        let _ = out.flush();
        if mode == "rotate" {
            index.rotate_data_key().unwrap_or_else(|e| panic!("{e}"));
            let _ = writeln!(out, "rotated {round}");
            let _ = out.flush();
        }
        if mode == "train" {
            let opts = TrainOptions::default()
                .with_n_lists(20 + round % 30)
                .with_max_iters(8)
                .with_seed(round as u64);
            index.train(&opts).unwrap_or_else(|e| panic!("{e}"));
            let _ = writeln!(out, "trained {round}");
            let _ = out.flush();
        }
    }
    // Then wait for the kill.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn killed_during_upsert_or_train_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().to_string_lossy().into_owned();
    {
        // Enough vectors to train from the first round on.
        let (_db, index) = open(&path);
        for b in 0..110 {
            index
                .upsert(batch_items(b))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut acked: BTreeSet<usize> = (0..110).collect();
    let (mut trainings, mut rotations) = (0, 0);
    for round in 0..12 {
        let mode = ["rotate", "train", "upsert"][round % 3];
        let mut child = child_test("crash_child")
            .env(DIR_ENV, &path)
            .env(MODE_ENV, mode)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let reader = std::thread::spawn(move || {
            let (mut acks, mut trained, mut rotated) = (Vec::new(), 0, 0);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ack ") {
                    acks.extend(n.parse::<usize>().ok());
                } else if line.starts_with("trained ") {
                    trained += 1;
                } else if line.starts_with("rotated ") {
                    rotated += 1;
                }
            }
            (acks, trained, rotated)
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..2500)));
        child.kill().unwrap_or_else(|e| panic!("{e}"));
        let _ = child.wait();
        let (acks, trained, rotated) = reader.join().unwrap();
        acked.extend(acks);
        trainings += trained;
        rotations += rotated;

        let (db, index) = open(&path);
        let present = batches(&index);
        let lost: Vec<&usize> = acked.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round} ({mode}): acknowledged batches lost: {lost:?}"
        );
        let n = index.count().unwrap();
        assert_eq!(n, present.len() * BATCH);
        // The writer's open removed what an interrupted run left: one item
        // record per item, and in `meta` only the state and the centroids.
        let records = |ns: &str| db.store().scan_prefix(ns, b"").unwrap().count();
        assert_eq!(records("items"), n, "round {round} ({mode}): item records");
        assert!(records("meta") <= 2, "round {round} ({mode}): meta records");
        // Every item of a few batches is where its vector says: a query for
        // it over all lists finds it at distance 0, and get returns it.
        let n_lists = index.n_lists();
        for &b in present.iter().rev().take(3) {
            let queries: Vec<Vec<f32>> = (0..BATCH).step_by(7).map(|j| vector(b, j)).collect();
            let opts = QueryOptions::default()
                .with_top_k(1)
                .with_n_probes(n_lists)
                .with_rerank_mult(EXACT_RERANK);
            let hits = index
                .query(&queries, &opts)
                .unwrap_or_else(|e| panic!("{e}"));
            for (h, j) in hits.iter().zip((0..BATCH).step_by(7)) {
                assert_eq!(h[0].id, format!("b{b:05}-{j:03}"), "round {round}");
                assert_eq!(h[0].distance, Some(0.0));
            }
            let ids: Vec<String> = (0..BATCH).map(|j| format!("b{b:05}-{j:03}")).collect();
            let got = index
                .get(&ids, Fields::ALL)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(got.missing.is_empty(), "round {round}: {:?}", got.missing);
        }
    }
    assert!(
        trainings > 0 && rotations > 0,
        "no child finished a training ({trainings}) or a rotation ({rotations}): the kills came too early"
    );
}
