//! The PostgreSQL server restarted under load: calls fail with a
//! retryable error while it is away, succeed again once it is back, and
//! nothing acknowledged is lost.
//!
//! Runs on the throwaway cluster of `cargo xtask ci` / `cargo xtask pg`
//! (`VECSEAL_TEST_STORE=pg`, and `VECSEAL_TEST_PG_RESTART` naming the
//! program that restarts it); a test binary of its own, so that no other
//! test shares the server while it restarts.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use vecseal_index::{Fields, Index, Item, QueryOptions};

const DIM: usize = 8;
const BATCH: usize = 10;

fn batch(b: usize) -> Vec<Item> {
    (0..BATCH)
        .map(|j| {
            let v = (0..DIM)
                .map(|d| (b * BATCH + j) as f32 + d as f32)
                .collect();
            Item::new(format!("b{b:05}-{j}"), v)
        })
        .collect()
}

/// Calls `op` until `stop`, counting successes after the restart; every
/// failure must be retryable. Returns the failures seen.
fn keep_calling(
    restarted: &AtomicBool,
    after: &AtomicUsize,
    mut op: impl FnMut() -> vecseal_index::Result<()>,
) -> usize {
    let (start, mut failures) = (Instant::now(), 0);
    // Until 20 calls succeeded after the restart (bounded in time).
    while after.load(Ordering::SeqCst) < 20 && start.elapsed() < Duration::from_secs(60) {
        match op() {
            Ok(()) => {
                if restarted.load(Ordering::SeqCst) {
                    after.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                assert!(e.is_retryable(), "a failure that is not retryable: {e}");
                failures += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    failures
}

#[test]
fn a_restarted_database_fails_calls_retryably_and_loses_nothing_acknowledged() {
    let Ok(restart) = std::env::var("VECSEAL_TEST_PG_RESTART") else {
        eprintln!("VECSEAL_TEST_PG_RESTART is not set: no server this test may restart");
        return;
    };
    if store_kind() != "pg" {
        eprintln!("runs on PostgreSQL only (VECSEAL_TEST_STORE=pg)");
        return;
    }
    let (db, _store) = test_db();
    let index: Index = db
        .create_index("t", owner(1), config().with_dimension(DIM))
        .unwrap_or_else(|e| panic!("{e}"));
    let restarted = AtomicBool::new(false);
    let (writes_after, reads_after) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut acked = Vec::new();
    let (write_failures, read_failures) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut next = 0;
            keep_calling(&restarted, &writes_after, || {
                index.upsert(batch(next))?;
                acked.push(next);
                next += 1;
                Ok(())
            })
        });
        let reader = s.spawn(|| {
            keep_calling(&restarted, &reads_after, || {
                let opts = QueryOptions::default().with_top_k(3);
                index.query(&[vec![1.0; DIM]], &opts).map(|_| ())
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        let status = Command::new(&restart)
            .status()
            .unwrap_or_else(|e| panic!("{restart}: {e}"));
        assert!(status.success(), "{restart}: {status}");
        restarted.store(true, Ordering::SeqCst);
        (writer.join().unwrap(), reader.join().unwrap())
    });
    eprintln!(
        "failures while the server restarted: {write_failures} writes, {read_failures} reads"
    );
    assert!(
        writes_after.load(Ordering::SeqCst) >= 20 && reads_after.load(Ordering::SeqCst) >= 20,
        "calls did not succeed again after the restart"
    );
    // Every acknowledged batch is there, whole; nothing else is.
    let ids = index.list_ids().unwrap_or_else(|e| panic!("{e}"));
    let batches: BTreeSet<usize> = ids.iter().map(|id| id[1..6].parse().unwrap()).collect();
    for b in &acked {
        assert!(batches.contains(b), "acknowledged batch {b} is lost");
    }
    // A batch that failed may have committed (its reply lost): whole.
    for b in &batches {
        let want: Vec<String> = batch(*b).into_iter().map(|it| it.id).collect();
        let got = index
            .get(&want, Fields::NONE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(got.missing.is_empty(), "batch {b} is only partly there");
    }
}
