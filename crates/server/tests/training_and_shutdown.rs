//! Training through the worker (explicit and automatic), queries served
//! while it runs, and a graceful shutdown that keeps every acknowledged
//! write.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{b64, key_hex, vectors, TestServer, ROOT};
use serde_json::{json, Value};
use vecseal::{Client, Credentials, SecretKey, StorageConfig};
use vecseal_server::Config;

const R: Option<&str> = Some(ROOT);
const N: usize = 10_050;
const D: usize = 8;

fn upsert_all(s: &TestServer, name: &str, key: &str, rows: &[Vec<f32>]) -> Value {
    let ids: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
    let (st, b) = s.post(
        "/v1/vectors/upsert_binary",
        json!({"index_name": name, "index_key": key,
               "batch": {"ids": ids, "vectors_b64": b64(rows), "dimension": D}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    b
}

fn describe(s: &TestServer, name: &str, key: &str) -> Value {
    let (st, b) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": name, "index_key": key}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    b
}

#[test]
fn train_waits_for_the_worker_and_queries_answer_before_and_after() {
    let s = TestServer::start();
    let key = key_hex();
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "t", "index_key": key}),
        R,
    );
    let rows = vectors(N, D, 7);
    let b = upsert_all(&s, "t", &key, &rows);
    assert!(b.get("training_triggered").is_none(), "below the threshold");
    let q = json!({"index_name": "t", "index_key": key, "query_vectors": rows[17], "top_k": 1});
    assert_eq!(
        s.post("/v1/vectors/query", q.clone(), R).1["results"],
        json!([{"id": "17"}])
    );
    let (st, b) = s.post(
        "/v1/indexes/train",
        json!({"index_name": "t", "index_key": key, "n_lists": 16, "batch_size": null,
               "max_iters": null, "tolerance": null, "max_memory": null}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["message"], "Index 't' trained successfully");
    let d = describe(&s, "t", &key);
    assert_eq!(d["is_trained"], true);
    assert_eq!(d["n_lists"], 16);
    // A stored vector is its own nearest neighbour after training too.
    assert_eq!(
        s.post("/v1/vectors/query", q, R).1["results"],
        json!([{"id": "17"}])
    );
    let (_, st) = s.get("/v1/indexes/training-status", R);
    assert_eq!(st["training_indexes"], json!([]));
    assert!(st["retrain_threshold"].is_u64());
}

#[test]
fn an_index_past_the_threshold_trains_by_itself() {
    let s = TestServer::with(
        Client::open(StorageConfig::InMemory).unwrap(),
        Config {
            root_key: Some(ROOT.into()),
            auto_train_threshold: 10_000,
            ..Config::default()
        },
    );
    let key = key_hex();
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "a", "index_key": key}),
        R,
    );
    let b = upsert_all(&s, "a", &key, &vectors(N, D, 3));
    assert_eq!(b["training_triggered"], true, "{b}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Queries keep being answered while the worker trains.
        let (st, _) = s.post(
            "/v1/vectors/query",
            json!({"index_name": "a", "index_key": key, "query_vectors": vec![0.1; D]}),
            R,
        );
        assert_eq!(st, 200);
        if describe(&s, "a", &key)["is_trained"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "automatic training never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(describe(&s, "a", &key)["n_lists"].as_u64().unwrap() > 1);
}

/// A trained index that has grown until the automatic number of lists is
/// at least twice the one it has is trained again by itself, with the
/// automatic number.
#[test]
fn a_grown_index_is_retrained_with_more_lists() {
    let s = TestServer::with(
        Client::open(StorageConfig::InMemory).unwrap(),
        Config {
            root_key: Some(ROOT.into()),
            auto_train_threshold: 20_000,
            ..Config::default()
        },
    );
    let key = key_hex();
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "g", "index_key": key}),
        R,
    );
    let rows = vectors(N, D, 5);
    let b = upsert_all(&s, "g", &key, &rows);
    assert!(b.get("training_triggered").is_none(), "below the threshold");
    let (st, b) = s.post(
        "/v1/indexes/train",
        json!({"index_name": "g", "index_key": key, "n_lists": 16}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(describe(&s, "g", &key)["n_lists"], 16);

    // auto_n_lists(10 051) = 201 >= 2 x 16: one more vector makes it due.
    let (st, b) = s.post(
        "/v1/vectors/upsert",
        json!({"index_name": "g", "index_key": key,
               "items": [{"id": "extra", "vector": vec![0.25; D]}]}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["training_triggered"], true, "{b}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while describe(&s, "g", &key)["n_lists"] == 16 {
        assert!(Instant::now() < deadline, "the retrain never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        describe(&s, "g", &key)["n_lists"],
        vecseal::auto_n_lists(N + 1)
    );
}

/// Writes that arrive while an index trains wait for the run (it holds the
/// index's writer lock); however many wait, queries are still answered and
/// the run finishes (reads run on the engine's pool, which training needs:
/// a blocked write there would stall it for good).
#[test]
fn writes_waiting_for_a_training_run_hold_up_neither_queries_nor_the_run() {
    use std::sync::mpsc;
    let s = std::sync::Arc::new(TestServer::start());
    let key = key_hex();
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "w", "index_key": key}),
        R,
    );
    let n = 40_000;
    let d = 16;
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let (st, b) = s.post(
        "/v1/vectors/upsert_binary",
        json!({"index_name": "w", "index_key": key,
               "batch": {"ids": ids, "vectors_b64": b64(&vectors(n, d, 11)), "dimension": d}}),
        R,
    );
    assert_eq!(st, 200, "{b}");

    let (done_tx, done) = mpsc::channel();
    let train = {
        let (s, key, tx) = (s.clone(), key.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let (st, b) = s.post(
                "/v1/indexes/train",
                json!({"index_name": "w", "index_key": key, "n_lists": 200,
                       "max_iters": 100, "tolerance": 0.0}),
                R,
            );
            tx.send(("train", st, b)).unwrap();
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/v1/indexes/training-status", R).1["training_indexes"] != json!(["w"]) {
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // More waiting writers than the machine has cores.
    let writers = 2 * std::thread::available_parallelism().map_or(2, usize::from) + 2;
    for w in 0..writers {
        let (s, key, tx) = (s.clone(), key.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let ids: Vec<String> = (0..10).map(|i| format!("new-{w}-{i}")).collect();
            let (st, b) = s.post(
                "/v1/vectors/upsert_binary",
                json!({"index_name": "w", "index_key": key,
                       "batch": {"ids": ids, "vectors_b64": b64(&vectors(10, d, w as u64)),
                                 "dimension": d}}),
                R,
            );
            tx.send(("upsert", st, b)).unwrap();
        });
    }
    drop(done_tx);
    let (queried_tx, queried) = mpsc::channel();
    {
        let (s, key) = (s.clone(), key.clone());
        std::thread::spawn(move || {
            let q = json!({"index_name": "w", "index_key": key, "query_vectors": vec![0.5; d]});
            let mut answered_while_training = 0;
            for _ in 0..20 {
                let (st, b) = s.post("/v1/vectors/query", q.clone(), R);
                assert_eq!(st, 200, "{b}");
                let status = s.get("/v1/indexes/training-status", R).1;
                if status["training_indexes"] == json!(["w"]) {
                    answered_while_training += 1;
                }
            }
            queried_tx.send(answered_while_training).unwrap();
        });
    }
    let answered_while_training = queried
        .recv_timeout(Duration::from_secs(60))
        .expect("queries stalled while writes waited for training");
    assert!(
        answered_while_training > 0,
        "no query was answered during training"
    );
    for _ in 0..=writers {
        let (what, st, b) = done
            .recv_timeout(Duration::from_secs(60))
            .expect("a write or the training run never finished");
        assert_eq!(st, 200, "{what}: {b}");
    }
    train.join().unwrap();
    let (st, b) = s.post(
        "/v1/vectors/num_vectors",
        json!({"index_name": "w", "index_key": key}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["result"], n + 10 * writers, "{b}");
}

#[test]
fn acknowledged_writes_survive_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let hex_key = hex::encode(key.expose_secret());
    {
        let s = TestServer::with(
            Client::open(StorageConfig::Local(dir.path().to_owned())).unwrap(),
            Config {
                root_key: Some(ROOT.into()),
                ..Config::default()
            },
        );
        s.post(
            "/v1/indexes/create",
            json!({"index_name": "d", "index_key": hex_key}),
            R,
        );
        upsert_all(&s, "d", &hex_key, &vectors(100, D, 5));
        s.stop();
    }
    let client = Client::open(StorageConfig::Local(dir.path().to_owned())).unwrap();
    let index = client.load_index("d", Credentials::owner(key)).unwrap();
    assert_eq!(index.count().unwrap(), 100);
}
