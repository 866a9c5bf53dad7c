//! A vecseal server on 127.0.0.1 with an ephemeral port, and a small JSON
//! client over real HTTP.
#![allow(dead_code, unreachable_pub, unused_imports, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde_json::Value;
use vecseal::{Client, StorageConfig};
use vecseal_server::{Config, Listen, Server};

pub const ROOT: &str = "test-root-key";

pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// An in-memory server with the root key [`ROOT`].
    pub fn start() -> Self {
        Self::with(
            Client::open(StorageConfig::InMemory).unwrap(),
            Config {
                root_key: Some(ROOT.into()),
                ..Config::default()
            },
        )
    }

    pub fn with(client: Client, config: Config) -> Self {
        Self::listening(client, config, None)
    }

    /// Over TLS with `tests/tls/cert.pem` (a self-signed test certificate
    /// for localhost and 127.0.0.1, with its key beside it: test data only).
    pub fn tls() -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        Self::listening(
            Client::open(StorageConfig::InMemory).unwrap(),
            Config::default(),
            Some((dir.join("cert.pem"), dir.join("key.pem"))),
        )
    }

    fn listening(
        client: Client,
        config: Config,
        tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(client, config);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let listen = Listen {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls,
                ..Listen::default()
            };
            rt.block_on(vecseal_server::serve(
                server,
                listen,
                move |a| tx.send(a).unwrap(),
                async move {
                    let _ = stopped.await;
                },
            ))
            .unwrap();
        });
        let addr = rx.recv().unwrap();
        Self {
            base: format!("http://{addr}"),
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops accepting, waits for in-flight requests and the server to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn post(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = ureq::post(&format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("X-API-Key", k);
        }
        answer(req.send_json(body))
    }

    pub fn post_raw(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut req =
            ureq::post(&format!("{}{path}", self.base)).set("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.set("X-API-Key", k);
        }
        answer(req.send_string(body))
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = ureq::get(&format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("X-API-Key", k);
        }
        answer(req.call())
    }

    pub fn delete(&self, path: &str, key: Option<&str>, index_key: Option<&str>) -> u16 {
        let mut req = ureq::delete(&format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("X-API-Key", k);
        }
        if let Some(k) = index_key {
            req = req.set("X-Index-Key", k);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("transport error: {e}"),
        }
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        ureq::get(&format!("{}/metrics", self.base))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Status and JSON body; every answer, error or not, must be JSON.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    if status == 204 {
        return (status, Value::Null);
    }
    assert_eq!(
        resp.content_type(),
        "application/json",
        "status {status}: every body is JSON"
    );
    let body: Value = resp.into_json().unwrap();
    if status >= 400 {
        assert!(
            body["detail"].is_string() || body["detail"].is_array(),
            "errors carry a detail: {body}"
        );
    }
    (status, body)
}

/// A fresh 32-byte index key, hex.
pub fn key_hex() -> String {
    hex::encode(vecseal::SecretKey::generate().unwrap().expose_secret())
}

/// Standard base64 of little-endian f32 rows.
pub fn b64(rows: &[Vec<f32>]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Seeded pseudo-random vectors, uniform in `[-0.5, 0.5)ᵈ`.
pub use vecseal_testkit::uniform as vectors;
