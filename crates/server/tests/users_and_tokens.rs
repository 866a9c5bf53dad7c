//! Service authentication (`X-API-Key`), user management and user tokens.
#![allow(clippy::unwrap_used)]

mod common;

use common::{key_hex, TestServer, ROOT};
use serde_json::json;
use vecseal::{Client, StorageConfig};
use vecseal_server::Config;

const R: Option<&str> = Some(ROOT);

#[test]
fn the_root_key_gates_every_route_but_health() {
    let s = TestServer::start();
    assert_eq!(s.get("/v1/health", None).0, 200);
    let (st, b) = s.get("/v1/indexes/list", None);
    assert_eq!(
        (st, b["detail"].as_str()),
        (401, Some("API Key is required"))
    );
    let (st, b) = s.get("/v1/indexes/list", Some("nope"));
    assert_eq!((st, b["detail"].as_str()), (401, Some("Invalid API Key")));
    let (st, b) = s.get("/v1/indexes/list", Some("cdbk_1_AAAA"));
    assert_eq!(
        (st, b["detail"].as_str()),
        (401, Some("Invalid user API key"))
    );
    // Auth is checked before the body.
    assert_eq!(s.post_raw("/v1/vectors/query", "{", None).0, 401);
    assert_eq!(s.get("/v1/indexes/list", R).0, 200);
}

#[test]
fn users_get_tokens_with_their_permissions_and_lose_them_on_revocation() {
    let s = TestServer::start();
    let key = key_hex();
    let (st, _) = s.post(
        "/v1/indexes/create",
        json!({"index_name": "t", "index_key": key, "dimension": 2}),
        R,
    );
    assert_eq!(st, 200);
    let users = "/v1/indexes/t/users";
    let (st, b) = s.post(
        users,
        json!({"permissions": ["read", "admin"], "index_key": key}),
        R,
    );
    assert_eq!(st, 400, "{b}");
    assert_eq!(
        s.post(users, json!({"permissions": [], "index_key": key}), R)
            .0,
        400
    );
    let (st, b) = s.post(users, json!({"permissions": ["read"], "index_key": key}), R);
    assert_eq!(st, 200, "{b}");
    let reader = b["api_key"].as_str().unwrap().to_owned();
    let reader_id = b["user_id"].as_str().unwrap().to_owned();
    assert_eq!(reader_id.len(), 32);
    assert!(reader.starts_with("cdbk_"));
    let (_, b) = s.post(
        users,
        json!({"permissions": ["read", "write"], "index_key": key}),
        R,
    );
    let writer = b["api_key"].as_str().unwrap().to_owned();

    // Only the root key manages users, and only with the index key.
    assert_eq!(
        s.post(
            users,
            json!({"permissions": ["read"], "index_key": key}),
            Some(&writer)
        )
        .0,
        403
    );
    assert_eq!(s.post(users, json!({"permissions": ["read"]}), R).0, 401);
    let (st, b) = {
        let r = ureq::get(&format!("{}{users}", s.base))
            .set("X-API-Key", ROOT)
            .set("X-Index-Key", &key)
            .call()
            .unwrap();
        (r.status(), r.into_json::<serde_json::Value>().unwrap())
    };
    assert_eq!(st, 200);
    let listed = b["users"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let r = listed
        .iter()
        .find(|u| u["user_id"] == reader_id.as_str())
        .unwrap();
    assert_eq!(r["permissions"], json!(["read"]));

    // Users act with their token alone (index_key null).
    let item = json!({"index_name": "t", "index_key": null,
                      "items": [{"id": "a", "vector": [1.0, 2.0]}]});
    assert_eq!(
        s.post("/v1/vectors/upsert", item.clone(), Some(&writer)).0,
        200
    );
    let (st, b) = s.post("/v1/vectors/upsert", item, Some(&reader));
    assert_eq!(st, 403, "a read-only token cannot upsert: {b}");
    let q = json!({"index_name": "t", "index_key": null, "query_vectors": [1.0, 2.0], "top_k": 1});
    let (st, b) = s.post("/v1/vectors/query", q.clone(), Some(&reader));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["results"], json!([{"id": "a"}]));
    let (st, _) = s.post(
        "/v1/indexes/describe",
        json!({"index_name": "t", "index_key": null}),
        Some(&reader),
    );
    assert_eq!(st, 200);
    // Admin routes refuse user tokens.
    assert_eq!(s.get("/v1/indexes/list", Some(&reader)).0, 403);
    assert_eq!(s.get("/v1/indexes/training-status", Some(&reader)).0, 403);
    // A token opens no other index.
    let other = key_hex();
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "u", "index_key": other, "dimension": 2}),
        R,
    );
    let (st, _) = s.post(
        "/v1/vectors/query",
        json!({"index_name": "u", "query_vectors": [1.0, 2.0]}),
        Some(&reader),
    );
    assert_eq!(st, 403);

    // Revocation: the token fails on the next request; deletion is idempotent.
    let path = format!("{users}/{reader_id}");
    assert_eq!(s.delete(&path, R, Some(&key)), 204);
    assert_eq!(s.delete(&path, R, Some(&key)), 204);
    assert_eq!(s.post("/v1/vectors/query", q, Some(&reader)).0, 403);
    assert_eq!(s.delete(&format!("{users}/not-hex"), R, Some(&key)), 400);
    assert_eq!(s.delete(&path, R, None), 401);
}

#[test]
fn without_a_root_key_everything_is_open_but_user_management() {
    let s = TestServer::with(
        Client::open(StorageConfig::InMemory).unwrap(),
        Config::default(),
    );
    let key = key_hex();
    assert_eq!(s.get("/v1/indexes/list", None).0, 200);
    assert_eq!(s.get("/v1/indexes/list", Some("whatever")).0, 200);
    s.post(
        "/v1/indexes/create",
        json!({"index_name": "o", "index_key": key}),
        None,
    );
    let (st, _) = s.post(
        "/v1/indexes/o/users",
        json!({"permissions": ["read"], "index_key": key}),
        None,
    );
    assert_eq!(st, 403);
}
