//! Every route of the v1 protocol over real HTTP: shapes, null handling,
//! result nesting, include rules and error codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{b64, key_hex, vectors, TestServer, ROOT};
use serde_json::{json, Value};

const R: Option<&str> = Some(ROOT);

fn create(s: &TestServer, name: &str, key: &str, extra: Value) {
    let mut body = json!({
        "index_name": name, "index_key": key, "kms_name": null, "dimension": null,
        "embedding_model": null, "metric": null, "storage_precision": null,
        "metadata_schema": null, "text_fields": null, "bm25_k1": null, "bm25_b": null,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (st, b) = s.post("/v1/indexes/create", body, R);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["message"], format!("Index '{name}' created successfully"));
}

#[test]
fn health_list_create_describe_delete() {
    let s = TestServer::start();
    let (st, b) = s.get("/v1/health", None);
    assert_eq!(st, 200);
    assert_eq!(b["status"], "healthy");
    assert!(b["version"].is_string());
    assert_eq!(s.get("/v1/indexes/list", R), (200, json!({"indexes": []})));

    let key = key_hex();
    create(
        &s,
        "docs",
        &key,
        json!({"metric": "cosine", "metadata_schema": {"title": {"filterable": true, "pattern": true, "full_text": false}}}),
    );
    let (st, b) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": "docs", "index_key": key}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["index_name"], "docs");
    assert_eq!(b["is_trained"], false);
    assert_eq!(b["dimension"], 0, "dimension 0 until the first upsert");
    assert!(b["dimension"].is_u64(), "strict int");
    assert_eq!(b["metric"], "cosine");
    assert_eq!(b["n_lists"], 1);
    assert_eq!(
        b["metadata_schema"]["title"],
        json!({"filterable": true, "pattern": true, "full_text": false})
    );
    assert_eq!(s.get("/v1/indexes/list", R).1, json!({"indexes": ["docs"]}));

    // Duplicate: 409 (the reference sends 400).
    let (st, _) = s.post(
        "/v1/indexes/create",
        json!({"index_name": "docs", "index_key": key}),
        R,
    );
    assert_eq!(st, 409);

    let (st, b) = s.post(
        "/v1/indexes/delete",
        json!({"index_name": "docs", "index_key": key}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["message"], "Index 'docs' deleted successfully");
    let (st, _) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": "docs", "index_key": key}),
        R,
    );
    assert_eq!(st, 404);
}

/// An index "v" of dimension 4, euclidean, with items 0..10 (vector
/// [i, 0, 0, 0], metadata {"n": i, "tag": even|odd}, contents "c<i>").
fn filled(s: &TestServer) -> String {
    let key = key_hex();
    create(s, "v", &key, json!({"dimension": 4}));
    let items: Vec<Value> = (0..10)
        .map(|i| {
            json!({"id": i.to_string(), "vector": [i, 0, 0, 0], "contents": format!("c{i}"),
                   "metadata": {"n": i, "tag": if i % 2 == 0 {"even"} else {"odd"}}})
        })
        .collect();
    let (st, b) = s.post(
        "/v1/vectors/upsert",
        json!({"index_name": "v", "index_key": key, "items": items}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["message"], "Upserted 10 vectors");
    key
}

#[test]
fn queries_nest_results_by_the_number_of_query_vectors_and_follow_include() {
    let s = TestServer::start();
    let key = filled(&s);
    // One JSON vector, default include: flat, id only.
    let (st, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [2.2, 0, 0, 0], "top_k": 2}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["results"], json!([{"id": "2"}, {"id": "3"}]));
    // A batch of two, with distance and metadata: nested, euclidean (sqrt).
    let (st, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [[0, 0, 0, 0], [9, 0, 0, 0]],
               "top_k": 1, "include": ["distance", "metadata", "vector"]}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["results"],
        json!([[{"id": "0", "distance": 0.0, "metadata": {"n": 0, "tag": "even"}}],
               [{"id": "9", "distance": 0.0, "metadata": {"n": 9, "tag": "odd"}}]])
    );
    let (_, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [3, 0, 0, 0], "top_k": 1,
               "include": ["distance"], "filters": {"tag": "even"}}),
        R,
    );
    assert_eq!(b["results"], json!([{"id": "2", "distance": 1.0}]));
    // A JSON batch of one vector is flat too.
    let (_, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [[5, 0, 0, 0]], "top_k": 1}),
        R,
    );
    assert_eq!(b["results"], json!([{"id": "5"}]));
    // Binary: one row flat, two rows nested.
    let (st, b) = s.post(
        "/v1/vectors/query_binary",
        json!({"index_name": "v", "index_key": key, "top_k": 1,
               "batch": {"vectors_b64": b64(&[vec![7.0, 0.0, 0.0, 0.0]]), "dimension": 4}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["results"], json!([{"id": "7"}]));
    let (_, b) = s.post(
        "/v1/vectors/query_binary",
        json!({"index_name": "v", "index_key": key, "top_k": 1, "include": ["distance"],
               "batch": {"vectors_b64": b64(&[vec![7.0, 0.0, 0.0, 0.0], vec![1.0, 2.0, 0.0, 0.0]]), "dimension": 4}}),
        R,
    );
    assert_eq!(
        b["results"],
        json!([[{"id": "7", "distance": 0.0}], [{"id": "1", "distance": 2.0}]])
    );
}

/// `storage_precision` creates a compressed index; queries rerank exactly
/// (`rerank_mult` honoured, a negative one refused).
#[test]
fn compressed_indexes_answer_exact_distances() {
    let s = TestServer::start();
    let key = key_hex();
    create(
        &s,
        "q",
        &key,
        json!({"storage_precision": "tq4", "metric": "squared_euclidean"}),
    );
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"id": i.to_string(), "vector": [i, 50 - i, 0, 1]}))
        .collect();
    let (st, b) = s.post(
        "/v1/vectors/upsert",
        json!({"index_name": "q", "index_key": key, "items": items}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let query = |mult: Value| {
        s.post(
            "/v1/vectors/query",
            json!({"index_name": "q", "index_key": key, "query_vectors": [7, 43, 0, 1],
                   "top_k": 2, "rerank_mult": mult, "include": ["distance"]}),
            R,
        )
    };
    let (st, b) = query(json!(25));
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["results"],
        json!([{"id": "7", "distance": 0.0}, {"id": "6", "distance": 2.0}])
    );
    assert_eq!(query(Value::Null).0, 200);
    let (st, b) = query(json!(-1));
    assert_eq!(st, 400, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("rerank_mult"), "{b}");
}

#[test]
fn get_delete_list_ids_count_and_metadata_queries() {
    let s = TestServer::start();
    let key = filled(&s);
    let (st, b) = s.post(
        "/v1/vectors/get",
        json!({"index_name": "v", "index_key": key, "ids": ["3", "nope", "1"],
               "include": ["vector", "contents", "metadata"]}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["results"],
        json!([
            {"id": "3", "vector": [3.0, 0.0, 0.0, 0.0], "contents": "c3", "metadata": {"n": 3, "tag": "odd"}},
            {"id": "1", "vector": [1.0, 0.0, 0.0, 0.0], "contents": "c1", "metadata": {"n": 1, "tag": "odd"}}
        ])
    );
    let (_, b) = s.post(
        "/v1/vectors/get",
        json!({"index_name": "v", "index_key": key, "ids": ["2"], "include": ["metadata"]}),
        R,
    );
    assert_eq!(
        b["results"],
        json!([{"id": "2", "metadata": {"n": 2, "tag": "even"}}])
    );

    let (st, b) = s.post(
        "/v1/vectors/query_metadata",
        json!({"index_name": "v", "index_key": key, "filters": {"tag": "even"}, "top_k": 2,
               "order_by": "n", "ascending": false}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["ids"], json!(["8", "6"]));
    assert_eq!(b["results"], json!([{"id": "8"}, {"id": "6"}]));
    assert_eq!(b["count"], 5);
    let (_, b) = s.post(
        "/v1/vectors/query_metadata",
        json!({"index_name": "v", "index_key": key, "filters": null, "top_k": null,
               "order_by": {"n": 1}, "ascending": null}),
        R,
    );
    assert_eq!(b["count"], 10);
    assert_eq!(b["ids"][0], "0");
    // $regex needs a pattern field in query_metadata: 400 naming the field.
    let (st, b) = s.post(
        "/v1/vectors/query_metadata",
        json!({"index_name": "v", "index_key": key, "filters": {"tag": {"$regex": "ev"}}}),
        R,
    );
    assert_eq!(st, 400, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("tag"), "{b}");
    // …while vector queries post-filter it correctly.
    let (st, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [0, 0, 0, 0], "top_k": 2,
               "filters": {"tag": {"$regex": "^o"}}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["results"], json!([{"id": "1"}, {"id": "3"}]));

    let (st, b) = s.post(
        "/v1/vectors/delete",
        json!({"index_name": "v", "index_key": key, "ids": ["1", "2", "unknown"]}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["message"], "Deleted 3 vectors");
    let (st, b) = s.post(
        "/v1/vectors/list_ids",
        json!({"index_name": "v", "index_key": key}),
        R,
    );
    assert_eq!(st, 200);
    assert_eq!(b["count"], 8);
    assert_eq!(b["ids"].as_array().unwrap().len(), 8);
    let (_, b) = s.post(
        "/v1/vectors/num_vectors",
        json!({"index_name": "v", "index_key": key}),
        R,
    );
    assert_eq!(b["result"], 8);
    assert!(b["message"].is_string());
}

#[test]
fn binary_upserts_pair_ids_metadata_and_contents() {
    let s = TestServer::start();
    let key = key_hex();
    create(&s, "b", &key, json!({"metric": "squared_euclidean"}));
    let rows = vectors(3, 5, 1);
    let (st, b) = s.post(
        "/v1/vectors/upsert_binary",
        json!({"index_name": "b", "index_key": key,
               "batch": {"ids": ["x", "y", "z"], "vectors_b64": b64(&rows), "dimension": 5,
                         "metadata": [{"k": 1}, null, {}], "contents": ["", "hello", ""]}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let (_, b) = s.post(
        "/v1/vectors/get",
        json!({"index_name": "b", "index_key": key, "ids": ["x", "y", "z"],
               "include": ["contents", "metadata", "vector"]}),
        R,
    );
    let r = &b["results"];
    assert_eq!(r[0]["metadata"], json!({"k": 1}));
    assert_eq!(
        r[0]["contents"], "",
        "contents never stored come back empty"
    );
    assert_eq!(r[1]["contents"], "hello");
    assert_eq!(r[1]["metadata"], json!({}));
    let got: Vec<f32> = serde_json::from_value(r[2]["vector"].clone()).unwrap();
    assert_eq!(got, rows[2], "vectors round-trip bit for bit");
    let (_, b) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": "b", "index_key": key}),
        R,
    );
    assert_eq!(b["dimension"], 5);
    assert_eq!(b["metric"], "squared_euclidean");
}

#[test]
fn every_error_is_a_json_detail_with_the_documented_status() {
    let s = TestServer::start();
    let key = filled(&s);
    let other = key_hex();
    let post = |path: &str, body: Value| s.post(path, body, R).0;
    let q = |extra: Value| {
        let mut body = json!({"index_name": "v", "index_key": key, "query_vectors": [1, 0, 0, 0]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post("/v1/vectors/query", body)
    };
    // Keys: wrong 401 (always), missing 401, bad hex 400, wrong length 400.
    assert_eq!(q(json!({"index_key": other})), 401);
    assert_eq!(q(json!({"index_key": null})), 401);
    assert_eq!(q(json!({"index_key": ""})), 401);
    assert_eq!(q(json!({"index_key": "xyz"})), 400);
    assert_eq!(q(json!({"index_key": "00ff"})), 400);
    assert_eq!(q(json!({"index_name": "missing"})), 404);
    // Bad input.
    assert_eq!(q(json!({"query_vectors": [1, 0, 0]})), 400, "dimension");
    assert_eq!(q(json!({"query_vectors": []})), 400);
    assert_eq!(q(json!({"query_vectors": null})), 400);
    assert_eq!(q(json!({"query_vectors": "abc"})), 422);
    assert_eq!(q(json!({"top_k": 1_000_000_000_u64})), 400, "huge top_k");
    assert_eq!(q(json!({"top_k": -1})), 400);
    assert_eq!(q(json!({"filters": {"n": {"$where": 1}}})), 400);
    assert_eq!(q(json!({"text": "hybrid"})), 400);
    let qb = |b64s: &str, dim: i64| {
        post(
            "/v1/vectors/query_binary",
            json!({"index_name": "v", "index_key": key, "batch": {"vectors_b64": b64s, "dimension": dim}}),
        )
    };
    assert_eq!(qb("@@@", 4), 400, "bad base64 is 400, not a plain-text 500");
    assert_eq!(qb(&b64(&[vec![1.0; 3]]), 4), 400, "not a multiple of 4·d");
    assert_eq!(qb(&b64(&[vec![1.0; 4]]), 0), 400);
    assert_eq!(
        qb(&b64(&[vec![1.0; 4]]), 2),
        400,
        "rows of the wrong dimension"
    );
    let ub = |ids: Value| {
        post(
            "/v1/vectors/upsert_binary",
            json!({"index_name": "v", "index_key": key,
                   "batch": {"ids": ids, "vectors_b64": b64(&[vec![1.0; 4]]), "dimension": 4}}),
        )
    };
    assert_eq!(ub(json!(["a", "b"])), 400, "ids and rows must pair up");
    assert_eq!(
        post(
            "/v1/vectors/upsert",
            json!({"index_name": "v", "index_key": key, "items": []})
        ),
        400
    );
    assert_eq!(
        post(
            "/v1/vectors/upsert",
            json!({"index_name": "v", "index_key": key, "items": [{"id": "a", "contents": "x"}]})
        ),
        400,
        "no vector and no embedding model"
    );
    assert_eq!(
        post(
            "/v1/vectors/upsert",
            json!({"index_name": "v", "index_key": key, "items": [{"id": "a", "vector": "x"}]})
        ),
        422
    );
    assert_eq!(s.post_raw("/v1/vectors/upsert", "{not json", R).0, 422);
    assert_eq!(s.post_raw("/v1/indexes/describe", "[]", R).0, 422);
    assert_eq!(s.get("/v1/no/such/route", R).0, 404);
    assert_eq!(s.get("/v1/vectors/query", R).0, 405);
    // Create: bad metric, schema, precision, dimension, KMS, embedding model.
    let c = |extra: Value| {
        let mut body = json!({"index_name": "c", "index_key": key_hex()});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post("/v1/indexes/create", body)
    };
    assert_eq!(c(json!({"metric": "manhattan"})), 400);
    assert_eq!(c(json!({"dimension": -3})), 400);
    assert_eq!(c(json!({"storage_precision": "tq6"})), 400);
    assert_eq!(c(json!({"storage_precision": "tq12"})), 400);
    assert_eq!(c(json!({"storage_precision": "fp64"})), 422);
    assert_eq!(c(json!({"kms_name": "slot"})), 400);
    assert_eq!(c(json!({"embedding_model": "all-MiniLM-L6-v2"})), 400);
    assert_eq!(c(json!({"metadata_schema": {"a": {"colour": true}}})), 422);
    assert_eq!(
        c(json!({"metadata_schema": {"a": {"pattern": true, "filterable": false}}})),
        400
    );
    assert_eq!(c(json!({"index_key": null})), 401);
    assert_eq!(c(json!({})), 200, "the refusals above created nothing");
    // Training with too few vectors fails with a 4xx, not HTTP 200.
    let (st, b) = s.post(
        "/v1/indexes/train",
        json!({"index_name": "v", "index_key": key, "n_lists": null, "batch_size": null,
               "max_iters": null, "tolerance": null, "max_memory": null}),
        R,
    );
    assert_eq!(st, 400, "{b}");
    // The server still answers.
    assert_eq!(s.get("/v1/health", None).0, 200);
    let m = s.metrics();
    assert!(
        m.contains("vecseal_http_requests_total{route=\"/v1/vectors/query\",status=\"401\"} 3"),
        "{m}"
    );
}

#[test]
fn thousands_of_malformed_requests_leave_the_server_serving() {
    let s = TestServer::start();
    let key = filled(&s);
    let bodies = [
        "",
        "{",
        "null",
        "[1,2]",
        "{\"index_name\": 5}",
        "{\"index_name\": \"v\", \"items\": {}}",
        "{\"index_name\": \"v\", \"batch\": {\"ids\": [\"a\"], \"vectors_b64\": \"====\", \"dimension\": 4}}",
        "{\"index_name\": \"v\", \"query_vectors\": [[1e400]]}",
        "\u{0}\u{1}\u{2}",
    ];
    let paths = [
        "/v1/vectors/upsert",
        "/v1/vectors/upsert_binary",
        "/v1/vectors/query",
        "/v1/vectors/query_binary",
        "/v1/vectors/get",
        "/v1/indexes/create",
        "/v1/indexes/train",
        "/v1/vectors/query_metadata",
    ];
    let mut n = 0;
    for round in 0..40 {
        for p in paths {
            for b in bodies {
                let (st, _) = s.post_raw(p, b, R);
                assert!((400..500).contains(&st), "{p} {b:?} -> {st}");
                n += 1;
            }
        }
        // A valid request in between still works.
        let (st, _) = s.post(
            "/v1/vectors/query",
            json!({"index_name": "v", "index_key": key, "query_vectors": [round, 0, 0, 0], "top_k": 1}),
            R,
        );
        assert_eq!(st, 200);
    }
    assert!(n >= 2000);
}

#[test]
fn null_means_absent_and_unknown_fields_are_ignored() {
    let s = TestServer::start();
    let key = filled(&s);
    let (st, b) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "v", "index_key": key, "query_vectors": [1, 0, 0, 0],
               "query_contents": null, "top_k": null, "n_probes": null, "rerank_mult": null,
               "greedy": null, "filters": null, "include": null, "future_field": {"x": 1}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["results"].as_array().unwrap().len(),
        10,
        "top_k null = 100"
    );
}

/// At most `max_open_indexes` indexes stay loaded; one dropped from memory
/// is loaded again from the store on its next use, with its data intact.
#[test]
fn loaded_indexes_are_bounded_and_reloaded_on_use() {
    use vecseal::{Client, StorageConfig};
    let s = TestServer::with(
        Client::open(StorageConfig::InMemory).unwrap(),
        vecseal_server::Config {
            root_key: Some(ROOT.into()),
            max_open_indexes: 2,
            ..vecseal_server::Config::default()
        },
    );
    let open = |s: &TestServer| -> u64 {
        let text = s.metrics();
        let line = text
            .lines()
            .find(|l| l.starts_with("vecseal_open_indexes "))
            .unwrap_or_else(|| panic!("no vecseal_open_indexes in {text}"));
        line["vecseal_open_indexes ".len()..]
            .trim()
            .parse()
            .unwrap()
    };
    let keys: Vec<String> = (0..3).map(|_| key_hex()).collect();
    for (i, key) in keys.iter().enumerate() {
        let name = format!("i{i}");
        let (st, b) = s.post(
            "/v1/indexes/create",
            json!({"index_name": name, "index_key": key, "dimension": 4}),
            R,
        );
        assert_eq!(st, 200, "{b}");
        let (st, b) = s.post(
            "/v1/vectors/upsert_binary",
            json!({"index_name": name, "index_key": key,
                   "batch": {"ids": [format!("v{i}")], "vectors_b64": b64(&vectors(1, 4, i as u64)),
                             "dimension": 4}}),
            R,
        );
        assert_eq!(st, 200, "{b}");
        assert!(open(&s) <= 2, "more indexes loaded than the bound");
    }
    assert_eq!(open(&s), 2);
    // i0 was dropped first; it answers from the store.
    let (st, b) = s.post(
        "/v1/vectors/list_ids",
        json!({"index_name": "i0", "index_key": keys[0]}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["ids"], json!(["v0"]));
    assert_eq!(open(&s), 2);
}

/// A body over the configured limit is a 413 that names the limit, and the
/// server keeps serving.
#[test]
fn a_body_over_the_limit_is_413_naming_the_limit() {
    use vecseal::{Client, StorageConfig};
    let s = TestServer::with(
        Client::open(StorageConfig::InMemory).unwrap(),
        vecseal_server::Config {
            root_key: Some(ROOT.into()),
            max_body_bytes: 1024,
            ..vecseal_server::Config::default()
        },
    );
    let big = json!({"index_name": "x", "index_key": key_hex(), "padding": "p".repeat(4096)});
    let (st, b) = s.post("/v1/indexes/create", big, R);
    assert_eq!(st, 413, "{b}");
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("1024 bytes"), "{detail}");
    let (st, b) = s.post(
        "/v1/indexes/create",
        json!({"index_name": "x", "index_key": key_hex(), "dimension": 4}),
        R,
    );
    assert_eq!(st, 200, "{b}");
}

/// Counts point reads of catalog entries through a `Watched` store.
#[derive(Default)]
struct CatalogReads(std::sync::atomic::AtomicUsize);

impl vecseal_testkit::store::Watcher for CatalogReads {
    fn reading(&self, ns: &str) {
        if ns == "catalog" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A read of a loaded index checks the caller's key once: one read of the
/// catalog entry per request (loading and then calling checked it twice,
/// reading the entry three times), and loading a loaded index reads it
/// once (it read it twice). A wrong key is still refused, and an index
/// deleted and created again is found anew.
#[test]
fn a_read_checks_its_credentials_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = std::sync::Arc::new(vecseal_testkit::store::Watched::new(
        std::sync::Arc::new(vecseal_storage::MemStore::new(vecseal::NAMESPACES)),
        CatalogReads::default(),
    ));
    let db = vecseal::Database::new(store.clone());
    let other = db.clone();
    let s = TestServer::with(
        vecseal::Client::from_database(db),
        vecseal_server::Config {
            root_key: Some(ROOT.into()),
            ..vecseal_server::Config::default()
        },
    );
    let key = key_hex();
    let (st, b) = s.post(
        "/v1/indexes/create",
        json!({"index_name": "c", "index_key": key, "dimension": 4}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.post(
        "/v1/vectors/upsert_binary",
        json!({"index_name": "c", "index_key": key,
               "batch": {"ids": ["a", "b"], "vectors_b64": b64(&vectors(2, 4, 1)), "dimension": 4}}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    let query = json!({"index_name": "c", "index_key": key, "query_vectors": [0.0, 0.0, 0.0, 0.0], "top_k": 1});
    let reads = || store.watcher().0.load(SeqCst);
    for (path, body) in [
        ("/v1/vectors/query", query.clone()),
        (
            "/v1/vectors/get",
            json!({"index_name": "c", "index_key": key, "ids": ["a"]}),
        ),
        (
            "/v1/vectors/list_ids",
            json!({"index_name": "c", "index_key": key}),
        ),
    ] {
        let before = reads();
        let (st, b) = s.post(path, body, R);
        assert_eq!(st, 200, "{path}: {b}");
        assert_eq!(reads() - before, 1, "catalog reads of {path}");
    }
    let wrong =
        json!({"index_name": "c", "index_key": key_hex(), "query_vectors": [0.0, 0.0, 0.0, 0.0]});
    let (st, b) = s.post("/v1/vectors/query", wrong, R);
    assert_eq!(st, 401, "{b}");
    let owner = |key: &str| {
        let bytes = hex::decode(key).unwrap();
        vecseal::Credentials::owner(vecseal::SecretKey::from_bytes(&bytes).unwrap())
    };
    // Loading an index that is loaded (what writes do) checks the key with
    // one read of the entry too.
    let before = reads();
    drop(other.load_index("c", owner(&key)).unwrap());
    assert_eq!(reads() - before, 1, "catalog reads of load_index");

    // Deleted and created again behind the server's back (as another
    // server over a shared store would): the kept index is stale, and the
    // next read finds the new one.
    other.delete_index("c", &owner(&key)).unwrap();
    let key2 = key_hex();
    other
        .create_index(
            "c",
            owner(&key2),
            vecseal::IndexConfig::default().with_dimension(4),
        )
        .unwrap();
    let (st, b) = s.post(
        "/v1/vectors/list_ids",
        json!({"index_name": "c", "index_key": key2}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["ids"], json!([]));
    let (st, b) = s.post("/v1/vectors/query", query, R);
    assert_eq!(st, 401, "the old key: {b}");
}

/// The earlier protocol's `index_config` (the JavaScript/TypeScript SDK
/// 0.14 sends it on create and reads it from describe).
#[test]
fn index_config_of_the_earlier_protocol() {
    let s = TestServer::start();
    let key = key_hex();
    let create = |body: Value| s.post("/v1/indexes/create", body, R);
    let (st, b) = create(json!({"index_name": "js", "index_key": key,
        "index_config": {"dimension": 3, "type": "ivfflat", "metric": "cosine"}}));
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": "js", "index_key": key}),
        R,
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["dimension"], 3);
    assert_eq!(b["metric"], "cosine");
    assert_eq!(b["index_type"], "ivfflat");
    assert_eq!(
        b["index_config"],
        json!({"type": "ivfflat", "dimension": 3, "metric": "cosine", "n_lists": 1})
    );
    for (body, says) in [
        (
            json!({"index_name": "pq", "index_key": key_hex(), "index_config": {"type": "ivfpq", "dimension": 3}}),
            "index_config.type",
        ),
        (
            json!({"index_name": "d", "index_key": key_hex(), "dimension": 4, "index_config": {"dimension": 3}}),
            "differ",
        ),
        (
            json!({"index_name": "m", "index_key": key_hex(), "metric": "euclidean", "index_config": {"metric": "cosine"}}),
            "differ",
        ),
    ] {
        let (st, b) = create(body);
        assert_eq!(st, 400, "{b}");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
    }
    let (st, b) = s.get("/v1/indexes/list", R);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["indexes"], json!(["js"]), "nothing refused was created");
}
