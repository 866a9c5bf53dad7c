//! Test doubles shared by the crate's unit tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vecseal_storage::{Error, Result, Store, WriteBatch};
use vecseal_testkit::store::{Watched, Watcher};

/// Fails the `n`-th write through a [`Watched`] store (counting from 1),
/// and lets every other call through: a process stopped at that write.
pub(crate) struct FailAt {
    writes: AtomicUsize,
    n: usize,
}

impl Watcher for FailAt {
    fn writing(&self, _: &WriteBatch) -> Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            return Err(Error::Engine(format!(
                "injected failure of write {}",
                self.n
            )));
        }
        Ok(())
    }
}

/// `inner`, failing its `fail_at`-th write.
pub(crate) fn failing_store(inner: Arc<dyn Store>, fail_at: usize) -> Watched<FailAt> {
    Watched::new(
        inner,
        FailAt {
            writes: AtomicUsize::new(0),
            n: fail_at,
        },
    )
}
