//! Handles of a deleted index, writers racing a deletion, two creations of
//! one name, and two `Database`s over one store.

mod common;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use vecseal_index::{Database, Error, Index, Metric, TrainOptions, UserId};

fn v(x: f32) -> Vec<f32> {
    vec![x, 1.0]
}

fn one(id: &str) -> Vec<String> {
    vec![id.to_owned()]
}

#[test]
fn a_stale_handle_gets_a_clear_error_and_writes_nothing() {
    let (db, store) = test_db();
    let old = create(&db, Metric::Cosine);
    old.upsert_vectors(&one("a"), &[v(1.0)])
        .unwrap_or_else(|e| panic!("{e}"));
    db.delete_index("t", &owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    // The same name and the same owner key: a new index with a new id.
    let new = create(&db, Metric::Cosine);
    let before = dump(&store);
    let user = UserId([4; 16]);
    let stale = |r: vecseal_index::Result<()>, what: &str| match r {
        Err(Error::StaleHandle(name)) => assert_eq!(name, "t"),
        other => panic!("{what} through a stale handle: {other:?}"),
    };
    stale(old.add_user(user, &key(9), true, true), "add_user");
    stale(old.remove_user(user).map(drop), "remove_user");
    stale(old.rotate_key(&key(3)), "rotate_key");
    stale(old.upsert_vectors(&one("b"), &[v(2.0)]).map(drop), "upsert");
    stale(old.delete(&one("a")).map(drop), "delete");
    stale(old.train(&TrainOptions::default()), "train");
    stale(old.count().map(drop), "count");
    assert!(matches!(old.list_users(), Err(Error::StaleHandle(_))));
    assert!(dump(&store) == before, "a stale handle wrote records");

    // The new index is whole: it loads, works, and can be deleted and
    // created again.
    drop(new);
    let new = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    new.upsert_vectors(&one("c"), &[v(3.0)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(new.list_ids().unwrap_or_else(|e| panic!("{e}")), one("c"));
    drop(new);
    db.delete_index("t", &owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    create(&db, Metric::Cosine);
}

#[test]
fn a_deletion_racing_writers_leaves_no_record_behind() {
    for round in 0..20 {
        let (db, store) = test_db();
        let index = Arc::new(create(&db, Metric::SquaredEuclidean));
        index
            .upsert_vectors(&one("seed"), &[v(0.0)])
            .unwrap_or_else(|e| panic!("{e}"));
        let start = Arc::new(Barrier::new(3));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (index, start) = (Arc::clone(&index), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    let mut n = 0;
                    // Writes until the deletion wins; every error after it
                    // must say the index is gone.
                    loop {
                        let id = format!("w{w}-{n}");
                        match index.upsert_vectors(&[id], &[v(n as f32)]) {
                            Ok(_) => n += 1,
                            Err(Error::NotFound(_)) => return n,
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                    }
                })
            })
            .collect();
        start.wait();
        thread::yield_now();
        db.delete_index("t", &owner(1))
            .unwrap_or_else(|e| panic!("{e}"));
        for w in writers {
            w.join().unwrap_or_else(|_| panic!("a writer panicked"));
        }
        let left = dump(&store);
        assert!(
            left.is_empty(),
            "round {round}: {} records outlived the deletion",
            left.len()
        );
    }
}

#[test]
fn two_creations_of_one_name_race_to_one_winner() {
    for round in 0..30 {
        let (db, _store) = test_db();
        let start = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|k| {
                let (db, start) = (db.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    let r = db.create_index("t", owner(k), config());
                    (k, r.map(drop))
                })
            })
            .collect();
        let results: Vec<(u8, vecseal_index::Result<()>)> = racers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a creator panicked")))
            .collect();
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|(_, r)| matches!(r, Err(Error::AlreadyExists(_)))),
            "round {round}: {results:?}"
        );
        // The winner's key opens the index; the loser's does not.
        db.load_index("t", owner(winners[0]))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let loser = 3 - winners[0];
        assert!(db.load_index("t", owner(loser)).is_err());
    }
}

#[test]
fn two_databases_over_one_store_share_one_state() {
    let store = test_store();
    let first = Database::new(Arc::clone(&store.store));
    let second = Database::new(Arc::clone(&store.store));
    let a = create(&first, Metric::SquaredEuclidean);
    let b = second
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(a.keep_loaded().holds(&b), "two states of one index");

    // Concurrent writes through both lose nothing.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let writers: Vec<_> = [Arc::clone(&a), Arc::clone(&b)]
        .into_iter()
        .enumerate()
        .map(|(w, h): (usize, Arc<Index>)| {
            thread::spawn(move || {
                for n in 0..200 {
                    h.upsert_vectors(&[format!("{w}-{n}")], &[v(n as f32)])
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap_or_else(|_| panic!("a writer panicked"));
    }
    drop((a, b, first, second));
    // A third database, after every handle is gone, reads all 400.
    let c = Database::new(Arc::clone(&store.store))
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.count().unwrap_or_else(|e| panic!("{e}")), 400);

    // A handle outliving every database is still found by a new one.
    let d = Database::new(Arc::clone(&store.store))
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.keep_loaded().holds(&d));
}

/// Runs a hook (once) before the next point read of a search block: a
/// commit of another process in the middle of a call.
#[derive(Default)]
struct AtNextBlockRead(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl AtNextBlockRead {
    fn set(&self, hook: Box<dyn FnOnce() + Send>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }
}

impl vecseal_testkit::store::Watcher for AtNextBlockRead {
    fn reading(&self, ns: &str) {
        if ns == "blocks" {
            let hook = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(hook) = hook {
                hook();
            }
        }
    }
}

/// Another process trains (every block this one's state names goes) and
/// upserts while a query of this one reads its first block: the query
/// answers over the newest state, never an error, and so does the next.
#[test]
fn a_query_answers_when_another_process_commits_during_it() {
    // Two views of one memory store that say they are shared: two
    // processes (one process shares a loaded index between the `Database`s
    // of one store).
    let memory: Arc<dyn vecseal_storage::Store> =
        Arc::new(vecseal_storage::MemStore::new(vecseal_index::NAMESPACES));
    let view = || {
        Arc::new(
            vecseal_testkit::store::Watched::new(Arc::clone(&memory), AtNextBlockRead::default())
                .shared(),
        )
    };
    let (theirs, ours) = (view(), view());
    let a = Arc::new(
        Database::new(theirs)
            .create_index("t", owner(1), config().with_dimension(2))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // Training needs 10 000 vectors.
    let ids: Vec<String> = (0..10_000).map(|i| format!("x{i:05}")).collect();
    let vectors: Vec<Vec<f32>> = (0..10_000)
        .map(|i| vec![(i % 4) as f32 * 10.0 + (i / 4) as f32 * 1e-4, 1.0])
        .collect();
    a.upsert_vectors(&ids, &vectors)
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Database::new(Arc::clone(&ours) as Arc<dyn vecseal_storage::Store>)
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let queries = [vec![20.05f32, 1.0], vec![0.3, 1.0]];
    let opts = vecseal_index::QueryOptions::default()
        .with_top_k(5)
        .with_n_probes(4);
    let answer = |index: &Index| {
        index
            .query(&queries, &opts)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(answer(&b), answer(&a));
    let (ran, ran_too) = (
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let (first, a_first) = (Arc::clone(&ran), Arc::clone(&a));
    ours.watcher().set(Box::new(move || {
        a_first
            .train(&TrainOptions::default().with_n_lists(4))
            .unwrap_or_else(|e| panic!("{e}"));
        a_first
            .upsert_vectors(&one("new"), &[vec![20.05, 1.0]])
            .unwrap_or_else(|e| panic!("{e}"));
        first.store(true, std::sync::atomic::Ordering::SeqCst);
    }));
    let got = answer(&b);
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "a committed");
    let want = answer(&a);
    assert_eq!(want[0][0].id, "new");
    assert_eq!(got, want, "the query during a's commits");
    // Again, during a's next commit (b now runs over the state it read).
    let before = want;
    let (second, a_second) = (Arc::clone(&ran_too), Arc::clone(&a));
    ours.watcher().set(Box::new(move || {
        a_second
            .delete(&one("new"))
            .unwrap_or_else(|e| panic!("{e}"));
        second.store(true, std::sync::atomic::Ordering::SeqCst);
    }));
    let got = answer(&b);
    assert!(
        ran_too.load(std::sync::atomic::Ordering::SeqCst),
        "a committed again"
    );
    let after = answer(&a);
    assert_ne!(after[0][0].id, "new");
    // The delete replaces only the block that held "new", and b reads its
    // blocks in parallel: when another of its threads had read that block
    // before the hook ran, b answers the state its query began in (which
    // was still whole), else the newest. Either is a consistent answer;
    // an error or a mix of the two is not.
    assert!(
        got == before || got == after,
        "the query during a's delete answered neither state: {got:?}"
    );
}
