//! Concurrent queries coalesced into one engine batch: each answer is the
//! one its query gets alone, and a wrong key never rides on a right one.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use common::{b64, key_hex, vectors, TestServer, ROOT};
use serde_json::{json, Value};

const R: Option<&str> = Some(ROOT);
const DIM: usize = 16;

fn query(s: &TestServer, key: &str, q: &[f32], binary: bool) -> (u16, Value) {
    let body = if binary {
        json!({"index_name": "c", "index_key": key, "top_k": 5, "include": ["distance"],
               "batch": {"vectors_b64": b64(&[q.to_vec()]), "dimension": DIM}})
    } else {
        json!({"index_name": "c", "index_key": key, "query_vectors": q, "top_k": 5,
               "include": ["distance"]})
    };
    let path = if binary {
        "/v1/vectors/query_binary"
    } else {
        "/v1/vectors/query"
    };
    s.post(path, body, R)
}

fn coalesced(s: &TestServer) -> u64 {
    s.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("vecseal_queries_coalesced_total "))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn concurrent_queries_get_their_answers_alone_and_wrong_keys_ride_with_no_one() {
    let s = Arc::new(TestServer::start());
    let key = key_hex();
    let (st, b) = s.post(
        "/v1/indexes/create",
        json!({"index_name": "c", "index_key": key, "dimension": DIM}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let items: Vec<Value> = vectors(10_000, DIM, 5)
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i.to_string(), "vector": v}))
        .collect();
    let (st, b) = s.post(
        "/v1/vectors/upsert",
        json!({"index_name": "c", "index_key": key, "items": items}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.post(
        "/v1/indexes/train",
        json!({"index_name": "c", "index_key": key, "n_lists": 16}),
        R,
    );
    assert_eq!(st, 200, "{b}");

    let queries = vectors(32, DIM, 6);
    // Each query alone, one after the other.
    let alone: Vec<Value> = queries
        .iter()
        .map(|q| {
            let (st, b) = query(&s, &key, q, false);
            assert_eq!(st, 200, "{b}");
            b
        })
        .collect();
    let wrong = key_hex();
    // Bursts of all of them at once (half binary), with wrong keys among
    // them, until some rode in a batch (the first burst, nearly always).
    let before = coalesced(&s);
    for _ in 0..20 {
        let barrier = Arc::new(Barrier::new(queries.len() + 4));
        let mut threads = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let (s, key, q, barrier) =
                (Arc::clone(&s), key.clone(), q.clone(), Arc::clone(&barrier));
            threads.push(std::thread::spawn(move || {
                barrier.wait();
                (Some(i), query(&s, &key, &q, i % 2 == 1))
            }));
        }
        for (i, q) in queries.iter().take(4).enumerate() {
            let (s, key, q, barrier) = (
                Arc::clone(&s),
                wrong.clone(),
                q.clone(),
                Arc::clone(&barrier),
            );
            threads.push(std::thread::spawn(move || {
                barrier.wait();
                (None, query(&s, &key, &q, i % 2 == 0))
            }));
        }
        for t in threads {
            match t.join().unwrap() {
                (Some(i), (st, b)) => {
                    assert_eq!(st, 200, "{b}");
                    assert_eq!(b, alone[i], "query {i} in a burst");
                }
                (None, (st, b)) => assert_eq!(st, 401, "a wrong key: {b}"),
            }
        }
        if coalesced(&s) > before {
            return;
        }
    }
    panic!("20 bursts of 36 concurrent queries and none rode in a batch");
}
