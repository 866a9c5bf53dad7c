//! The gate of reads: at most one read per worker thread of the engine's
//! pool at a time, every read answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use super::reading;

/// Reads that do parallel work of their own, 64 at once: a worker waiting
/// inside one read's parallel work must not start another read on top
/// of it, so never more reads run than there are worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_at_most_one_per_worker_thread() {
    let threads = rayon::current_num_threads();
    let gate = Arc::new(tokio::sync::Semaphore::new(threads));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let reads: Vec<_> = (0..64u64)
        .map(|i| {
            let (gate, running, most) =
                (Arc::clone(&gate), Arc::clone(&running), Arc::clone(&most));
            tokio::spawn(async move {
                reading(gate, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let sum: u64 = (0..200_000usize)
                        .into_par_iter()
                        .with_max_len(1_000)
                        .map(|x| (x as u64).wrapping_mul(x as u64 ^ i))
                        .sum();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(sum)
                })
                .await
            })
        })
        .collect();
    for read in reads {
        assert!(matches!(read.await, Ok(Ok(_))), "a read was not answered");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= threads,
        "{most} reads ran at once on {threads} worker threads"
    );
}
