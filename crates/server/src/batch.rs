//! Concurrent queries coalesced into one engine batch.
//!
//! Under load, single-vector queries on one index arrive together (each
//! SDK client, each `wrk` connection, sends one at a time), and each ran
//! as a read of its own: with the list cache off every query decrypted the
//! blocks it probes again, and even with it on each query streamed its
//! lists through memory alone. The engine answers many queries in one call
//! at a fraction of the cost (each block read, decrypted and scanned once
//! for all the queries that probe it), with every query's results the
//! same as alone (the engine's batched-equals-single tests).
//!
//! So a query that finds a leader of its *group* waiting for the gate of
//! reads rides with it instead of waiting its own turn: the leader, once
//! admitted, takes every rider and runs one batch. No timer is involved:
//! a query never waits longer than it would have alone behind the gate,
//! and a lone query leads a batch of one. A group is one index name, one
//! set of credentials (a keyed digest of the key, so that riders share
//! only an authorization their own key would have got: same key, same
//! answer) and the same knobs (`top_k`, `n_probes`, `rerank_mult`,
//! include fields, dimension); filtered queries run alone. If the batch
//! fails (a wrong key, an index that went away, a panic), each rider runs
//! alone and gets its own answer; if the leader's request goes away before
//! it is admitted, its riders run alone too.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Most rows a request may have to ride (bigger ones are batches already).
pub(crate) const MAX_ROWS_TO_RIDE: usize = 16;
/// Most rows of one batch, the leader's and its riders' together.
pub(crate) const MAX_BATCH_ROWS: usize = 256;

/// What a rider gets back: its results, or its rows to run alone.
type Outcome<R, T> = Result<Vec<T>, Vec<R>>;

/// A request riding with a leader: its rows (`R` each), and where its
/// results (`T` per row) go.
pub(crate) struct Rider<R, T> {
    rows: Vec<R>,
    tx: oneshot::Sender<Outcome<R, T>>,
}

/// The groups that have a leader waiting, with their riders.
pub(crate) struct Batcher<K, R, T> {
    waiting: Mutex<HashMap<K, Group<R, T>>>,
    /// Requests that rode with a leader (a counter for `/metrics`).
    rode: AtomicU64,
}

struct Group<R, T> {
    rows: usize,
    riders: Vec<Rider<R, T>>,
}

/// Where a request stands once it has joined.
pub(crate) enum Turn<'b, K: Hash + Eq, R, T> {
    /// It leads its group: wait for the gate, then [`Leading::take`].
    Lead(Leading<'b, K, R, T>),
    /// It rides: its outcome comes on the receiver.
    Ride(oneshot::Receiver<Outcome<R, T>>),
    /// Its group is full, or it is too big to ride: it runs alone.
    Alone(Vec<R>),
}

impl<K: Hash + Eq + Clone, R, T> Batcher<K, R, T> {
    pub(crate) fn new() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
            rode: AtomicU64::new(0),
        }
    }

    /// Requests that rode with a leader so far.
    pub(crate) fn rode(&self) -> u64 {
        self.rode.load(Ordering::Relaxed)
    }

    /// Joins group `key` with `rows`: leads it if it has no leader waiting,
    /// else rides with that leader (if the batch has room).
    pub(crate) fn join(&self, key: K, rows: Vec<R>) -> Turn<'_, K, R, T> {
        if rows.len() > MAX_ROWS_TO_RIDE {
            return Turn::Alone(rows);
        }
        let mut waiting = self.waiting.lock();
        match waiting.get_mut(&key) {
            Some(group) if group.rows + rows.len() <= MAX_BATCH_ROWS => {
                let (tx, rx) = oneshot::channel();
                group.rows += rows.len();
                group.riders.push(Rider { rows, tx });
                self.rode.fetch_add(1, Ordering::Relaxed);
                Turn::Ride(rx)
            }
            Some(_) => Turn::Alone(rows),
            None => {
                let group = Group {
                    rows: rows.len(),
                    riders: Vec::new(),
                };
                waiting.insert(key.clone(), group);
                Turn::Lead(Leading {
                    batcher: self,
                    key: Some(key),
                    rows,
                })
            }
        }
    }
}

/// A leader not yet admitted. Dropped before [`Leading::take`] (its
/// request went away), it closes its group and sends its riders off to
/// run alone, so none waits for a leader that will not come.
pub(crate) struct Leading<'b, K: Hash + Eq, R, T> {
    batcher: &'b Batcher<K, R, T>,
    key: Option<K>,
    rows: Vec<R>,
}

impl<K: Hash + Eq, R, T> Leading<'_, K, R, T> {
    /// Closes the group (a later request leads a new one) and takes the
    /// batch: every row, the leader's first, and how many rows each rider
    /// has, in order.
    pub(crate) fn take(mut self) -> Batch<R, T> {
        let riders = self.close();
        let mut rows = std::mem::take(&mut self.rows);
        let own = rows.len();
        let mut senders = Vec::with_capacity(riders.len());
        for r in riders {
            senders.push((r.rows.len(), r.tx));
            rows.extend(r.rows);
        }
        Batch { rows, own, senders }
    }

    fn close(&mut self) -> Vec<Rider<R, T>> {
        let Some(key) = self.key.take() else {
            return Vec::new();
        };
        self.batcher
            .waiting
            .lock()
            .remove(&key)
            .map(|g| g.riders)
            .unwrap_or_default()
    }
}

impl<K: Hash + Eq, R, T> Drop for Leading<'_, K, R, T> {
    fn drop(&mut self) {
        for r in self.close() {
            let _ = r.tx.send(Err(r.rows));
        }
    }
}

/// The rows of one batch and where the riders' results go.
pub(crate) struct Batch<R, T> {
    /// The leader's rows, then each rider's.
    pub(crate) rows: Vec<R>,
    /// How many of `rows` are the leader's.
    own: usize,
    senders: Vec<(usize, oneshot::Sender<Outcome<R, T>>)>,
}

impl<R, T> Batch<R, T> {
    /// Hands each rider its part of `results` (one per row, in order) and
    /// returns the leader's; `Err` with the leader's rows if `results` is
    /// not one per row (then every rider gets its rows back to run alone).
    pub(crate) fn answer(self, results: Vec<T>) -> Result<Vec<T>, Vec<R>> {
        if results.len() != self.rows.len() {
            return self.fail();
        }
        let mut rest = results.into_iter();
        let own: Vec<T> = rest.by_ref().take(self.own).collect();
        for (n, tx) in self.senders {
            let _ = tx.send(Ok(rest.by_ref().take(n).collect()));
        }
        Ok(own)
    }

    /// Sends every rider its rows back to run alone; returns the leader's.
    pub(crate) fn fail(self) -> Result<Vec<T>, Vec<R>> {
        let mut rest = self.rows.into_iter();
        let own: Vec<R> = rest.by_ref().take(self.own).collect();
        for (n, tx) in self.senders {
            let _ = tx.send(Err(rest.by_ref().take(n).collect()));
        }
        Err(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Batcher<&'static str, u32, u64>;

    /// Results, one per row: twice the row.
    fn run(batch: Batch<u32, u64>) -> Result<Vec<u64>, Vec<u32>> {
        let results = batch.rows.iter().map(|&r| 2 * u64::from(r)).collect();
        batch.answer(results)
    }

    #[test]
    fn riders_get_their_own_results_and_a_new_group_starts_after_take() {
        let b = Rows::new();
        let Turn::Lead(lead) = b.join("a", vec![1, 2]) else {
            panic!("the first request leads");
        };
        let Turn::Ride(mut one) = b.join("a", vec![3]) else {
            panic!("the second rides");
        };
        let Turn::Ride(mut two) = b.join("a", vec![4, 5, 6]) else {
            panic!("the third rides");
        };
        // Another group has a leader of its own.
        assert!(matches!(b.join("b", vec![7]), Turn::Lead(_)));
        let batch = lead.take();
        assert_eq!(batch.rows, vec![1, 2, 3, 4, 5, 6]);
        // The group closed: the next request leads again.
        assert!(matches!(b.join("a", vec![8]), Turn::Lead(_)));
        assert_eq!(run(batch), Ok(vec![2, 4]));
        assert_eq!(one.try_recv().ok(), Some(Ok(vec![6])));
        assert_eq!(two.try_recv().ok(), Some(Ok(vec![8, 10, 12])));
        assert_eq!(b.rode(), 2);
    }

    #[test]
    fn a_failed_batch_or_a_leader_gone_sends_riders_off_alone() {
        let b = Rows::new();
        let Turn::Lead(lead) = b.join("a", vec![1]) else {
            panic!("leads");
        };
        let Turn::Ride(mut rider) = b.join("a", vec![2, 3]) else {
            panic!("rides");
        };
        assert_eq!(lead.take().fail(), Err(vec![1]));
        assert_eq!(rider.try_recv().ok(), Some(Err(vec![2, 3])));

        let Turn::Lead(lead) = b.join("a", vec![1]) else {
            panic!("leads again");
        };
        let Turn::Ride(mut rider) = b.join("a", vec![4]) else {
            panic!("rides");
        };
        drop(lead);
        assert_eq!(rider.try_recv().ok(), Some(Err(vec![4])));
        // No group is left waiting for the leader that went away.
        assert!(matches!(b.join("a", vec![5]), Turn::Lead(_)));

        // Results that are not one per row: nobody gets wrong ones.
        let b = Rows::new();
        let Turn::Lead(lead) = b.join("a", vec![1]) else {
            panic!("leads");
        };
        let Turn::Ride(mut rider) = b.join("a", vec![2]) else {
            panic!("rides");
        };
        assert_eq!(lead.take().answer(vec![9]), Err(vec![1]));
        assert_eq!(rider.try_recv().ok(), Some(Err(vec![2])));
    }

    #[test]
    fn big_requests_and_full_batches_run_alone() {
        let b = Rows::new();
        let big: Vec<u32> = (0..=MAX_ROWS_TO_RIDE as u32).collect();
        assert!(
            matches!(b.join("a", big), Turn::Alone(rows) if rows.len() == MAX_ROWS_TO_RIDE + 1)
        );
        let Turn::Lead(_lead) = b.join("a", vec![0; MAX_ROWS_TO_RIDE]) else {
            panic!("leads");
        };
        let mut riding = Vec::new();
        while let Turn::Ride(rx) = b.join("a", vec![0; MAX_ROWS_TO_RIDE]) {
            riding.push(rx);
        }
        assert_eq!((riding.len() + 1) * MAX_ROWS_TO_RIDE, MAX_BATCH_ROWS);
        assert!(matches!(b.join("a", vec![0]), Turn::Alone(_)));
    }
}
