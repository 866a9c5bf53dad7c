//! The training worker: one thread runs `train()` jobs one at a time, in
//! the order they came; explicit `/indexes/train` requests wait for theirs,
//! automatic ones are fire-and-forget. Queries are served meanwhile (the
//! index keeps answering from its previous state until training switches
//! atomically).
//!
//! A job holds an [`Index`] handle, that is the requester's credentials,
//! until it has run: that is as long as the training needs the key.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;
use vecseal::{Index, TrainOptions};

use crate::error::ApiError;

struct Job {
    index: Index,
    opts: TrainOptions,
    done: Option<oneshot::Sender<Result<(), ApiError>>>,
}

#[derive(Default)]
struct Queue {
    current: Option<String>,
    jobs: VecDeque<Job>,
    stop: bool,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The training worker of one server.
pub(crate) struct Trainer {
    inner: Arc<Inner>,
}

impl Trainer {
    /// Starts the worker thread.
    pub(crate) fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let worker = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("vecseal-train".into())
            .spawn(move || run(&worker))
            .expect("spawning the training thread");
        Self { inner }
    }

    /// Queues a training job and returns a receiver of its outcome.
    pub(crate) fn submit(
        &self,
        index: Index,
        opts: TrainOptions,
    ) -> oneshot::Receiver<Result<(), ApiError>> {
        let (tx, rx) = oneshot::channel();
        self.push(Job {
            index,
            opts,
            done: Some(tx),
        });
        rx
    }

    /// Queues an automatic training of `index` unless one is running or
    /// queued for it; returns whether it queued one.
    pub(crate) fn auto(&self, index: Index) -> bool {
        let mut q = self.inner.queue.lock();
        let name = index.name().to_owned();
        if q.current.as_deref() == Some(&name) || q.jobs.iter().any(|j| j.index.name() == name) {
            return false;
        }
        q.jobs.push_back(Job {
            index,
            opts: TrainOptions::default(),
            done: None,
        });
        self.inner.wake.notify_one();
        true
    }

    fn push(&self, job: Job) {
        self.inner.queue.lock().jobs.push_back(job);
        self.inner.wake.notify_one();
    }

    /// The index training now, and the queued ones in order.
    pub(crate) fn status(&self) -> (Option<String>, Vec<String>) {
        let q = self.inner.queue.lock();
        (
            q.current.clone(),
            q.jobs.iter().map(|j| j.index.name().to_owned()).collect(),
        )
    }

    /// Whether `name` is training or queued.
    pub(crate) fn is_busy(&self, name: &str) -> bool {
        let (current, queued) = self.status();
        current.as_deref() == Some(name) || queued.iter().any(|n| n == name)
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        let mut q = self.inner.queue.lock();
        q.stop = true;
        // Queued jobs never started; their waiters get an error.
        for job in q.jobs.drain(..) {
            if let Some(done) = job.done {
                let _ = done.send(Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down; training was not started",
                )));
            }
        }
        self.inner.wake.notify_all();
    }
}

fn run(inner: &Inner) {
    loop {
        let job = {
            let mut q = inner.queue.lock();
            loop {
                if q.stop {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    q.current = Some(job.index.name().to_owned());
                    break job;
                }
                inner.wake.wait(&mut q);
            }
        };
        let name = job.index.name().to_owned();
        tracing::info!(automatic = job.done.is_none(), "training started");
        let started = std::time::Instant::now();
        let outcome =
            match std::panic::catch_unwind(AssertUnwindSafe(|| job.index.train(&job.opts))) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ApiError::engine(
                    &format!("Training failed for {name:?}"),
                    e,
                )),
                Err(_) => Err(ApiError::internal(format!(
                    "Training failed for {name:?}: internal error"
                ))),
            };
        match &outcome {
            Ok(()) => {
                tracing::info!(secs = started.elapsed().as_secs_f64(), "training finished")
            }
            Err(e) => tracing::warn!(status = e.status.as_u16(), "training failed"),
        }
        drop(job.index);
        inner.queue.lock().current = None;
        if let Some(done) = job.done {
            let _ = done.send(outcome);
        }
    }
}
