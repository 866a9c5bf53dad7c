//! vecseal-server: an HTTP service over vecseal that speaks CyborgDB's v1
//! REST protocol, so the unmodified `cyborgdb` SDKs work against it.
//!
//! The crate is a library (a [`router`] over a [`Server`] state, so tests
//! and embedders can mount it) and [`serve`], which runs it on a socket
//! with optional TLS (rustls) until a shutdown signal, finishing in-flight
//! requests. `vecseal serve` in the CLI calls it.
//!
//! Keys travel with each request (`index_key`, 64 hex characters, or a user
//! token in `X-API-Key`) and are never stored or logged; an open index is
//! kept in memory without any key (see [`vecseal::LoadedIndex`]), and each
//! request is checked against the key it brings. docs/SERVER.md covers the
//! protocol route by route, where it diverges from the reference service,
//! and the token format.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod batch;
mod error;
mod indexes;
mod metrics;
mod training;
mod vectors;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use parking_lot::Mutex;
use vecseal::{Client, Credentials, Index, LoadedIndex};

pub use error::{ApiError, Error};

use auth::{Auth, Caller};
use batch::Batcher;
use metrics::Metrics;
use training::Trainer;

/// The reference service's first-training threshold (`AUTO_TRAIN_MIN_VECTORS`).
pub const DEFAULT_AUTO_TRAIN_THRESHOLD: usize = 65_536;
/// The largest `top_k` a query may ask for (the reference service's bound,
/// and the engine's).
pub use vecseal::MAX_TOP_K;
/// The default request body limit: 2 GiB (binary upserts of large batches
/// are hundreds of MB of base64).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 30;

/// How a [`Server`] behaves.
#[derive(Clone)]
pub struct Config {
    /// The service root key (`X-API-Key`); `None` turns authentication off,
    /// and with it user management. Not `Debug`: it is a secret.
    pub root_key: Option<String>,
    /// Train an untrained index automatically once it holds more than this
    /// many vectors, and retrain a trained one when the automatic number of
    /// lists has doubled since; 0 = never.
    pub auto_train_threshold: usize,
    /// The largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// At most this many indexes are kept loaded (least recently used first
    /// out); a dropped one is loaded again, from the store, on its next use.
    pub max_open_indexes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root_key: None,
            auto_train_threshold: DEFAULT_AUTO_TRAIN_THRESHOLD,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_open_indexes: 256,
        }
    }
}

/// The state behind the routes: the database client, the indexes kept
/// loaded, the authentication keys, the training worker and the metrics.
pub struct Server {
    client: Client,
    auth: Auth,
    trainer: Trainer,
    metrics: Metrics,
    open: Mutex<OpenIndexes>,
    auto_train_threshold: usize,
    max_body_bytes: usize,
    max_open_indexes: usize,
    /// Admits reads to the engine's pool (see [`reading`]).
    reads: Arc<tokio::sync::Semaphore>,
    /// Queries waiting for a leader's batch (see the `batch` module).
    batches: Batcher<vectors::QueryGroup, Vec<f32>, Vec<vecseal::Hit>>,
    /// The key of the credential digests that group queries (random per
    /// process; `None` if the system gave no randomness: no batching).
    group_salt: Option<[u8; 32]>,
}

/// Indexes kept loaded, by name, with the tick of their last use.
#[derive(Default)]
struct OpenIndexes {
    tick: u64,
    by_name: HashMap<String, (LoadedIndex, u64)>,
}

impl Server {
    /// A server over `client`.
    pub fn new(client: Client, config: Config) -> Arc<Self> {
        Arc::new(Self {
            client,
            auth: Auth::new(config.root_key.as_deref()),
            trainer: Trainer::start(),
            metrics: Metrics::default(),
            open: Mutex::default(),
            auto_train_threshold: config.auto_train_threshold,
            max_body_bytes: config.max_body_bytes,
            max_open_indexes: config.max_open_indexes.max(1),
            reads: Arc::new(tokio::sync::Semaphore::new(rayon::current_num_threads())),
            batches: Batcher::new(),
            group_salt: {
                let mut salt = [0u8; 32];
                getrandom::getrandom(&mut salt).ok().map(|()| salt)
            },
        })
    }

    /// The gate of reads (see [`reading`]).
    fn reads(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::clone(&self.reads)
    }

    /// Loads index `name` with `cred` (checking them) and keeps it loaded.
    fn index(&self, name: &str, cred: Credentials) -> Result<Index, vecseal::Error> {
        let index = self.client.load_index(name, cred)?;
        self.keep(&index);
        Ok(index)
    }

    /// Runs `read` on index `name` with `cred`, checking them once: on the
    /// index kept loaded if there is one (the call itself authorizes, see
    /// [`LoadedIndex::using`]), else on one loaded (and checked) now. A
    /// kept index found stale (deleted, or replaced under its name by
    /// another process) is dropped, and `read` runs again on what the name
    /// holds now. Reads only: a write consumes its items, so writes load
    /// with [`Server::index`].
    fn read<T>(
        &self,
        name: &str,
        cred: Credentials,
        read: impl Fn(&Index) -> Result<T, vecseal::Error>,
    ) -> Result<T, vecseal::Error> {
        let kept = {
            let mut open = self.open.lock();
            open.tick += 1;
            let tick = open.tick;
            open.by_name.get_mut(name).map(|(loaded, t)| {
                *t = tick;
                loaded.clone()
            })
        };
        let cred = match kept {
            Some(loaded) => {
                let index = loaded.using(cred);
                match read(&index) {
                    Err(vecseal::Error::NotFound(_) | vecseal::Error::StaleHandle(_)) => {
                        let mut open = self.open.lock();
                        if open.by_name.get(name).is_some_and(|(l, _)| l.holds(&index)) {
                            open.by_name.remove(name);
                        }
                        index.into_credentials()
                    }
                    done => return done,
                }
            }
            None => cred,
        };
        read(&self.index(name, cred)?)
    }

    /// Keeps `index` loaded (without its credentials), dropping the least
    /// recently used index beyond `max_open_indexes`.
    fn keep(&self, index: &Index) {
        let mut open = self.open.lock();
        open.tick += 1;
        let tick = open.tick;
        match open.by_name.get_mut(index.name()) {
            Some((loaded, t)) if loaded.holds(index) => *t = tick,
            _ => {
                open.by_name
                    .insert(index.name().to_owned(), (index.keep_loaded(), tick));
                if open.by_name.len() > self.max_open_indexes {
                    let oldest = open
                        .by_name
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(n, _)| n.clone());
                    if let Some(n) = oldest {
                        open.by_name.remove(&n);
                    }
                }
            }
        }
    }

    fn forget(&self, name: &str) {
        self.open.lock().by_name.remove(name);
    }
}

/// Runs `f` on the blocking pool: every engine call (they read the store,
/// decrypt and scan) goes there, so the async workers only move bytes. A
/// panic becomes a 500, and the server keeps serving.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("internal error"))?
}

/// Runs a read (a query, a get, a listing) on the engine's worker pool
/// (rayon's) instead of the blocking pool, so a read's own parallel work
/// runs on the same threads without another hop. Only reads go there:
/// they never wait for a lock that is held across parallel work (the
/// index's writer lock is held by training for its whole run), so they
/// cannot starve the pool that training needs. A panic becomes a 500.
///
/// `gate` ([`Server::reads`], one permit per worker thread, and fair)
/// admits reads in arrival order, at most one per worker. Without it a
/// burst queued every read on the pool at once, and a worker waiting
/// inside one read's parallel work took the next read from the queue and
/// ran it on top: the read under it could not finish before that one, so
/// under load reads stacked and the tail stretched to seconds (`wrk`, 16
/// connections, 768-d with the list cache off: p99 1.7 and 5.4 s in two
/// runs, p50 about 150 ms).
async fn reading<T: Send + 'static>(
    gate: Arc<tokio::sync::Semaphore>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    run_admitted(admit(gate).await?, f).await
}

/// A permit of `gate` (see [`reading`]).
async fn admit(
    gate: Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    // Never closed, so never an error.
    gate.acquire_owned()
        .await
        .map_err(|_| ApiError::internal("internal error"))
}

/// Runs `f` on the engine's pool as a read already `admitted` (see
/// [`reading`]); the permit goes when `f` ends. A panic is a 500.
async fn run_admitted<T: Send + 'static>(
    admitted: tokio::sync::OwnedSemaphorePermit,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        drop(admitted);
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(result)) => result,
        _ => Err(ApiError::internal("internal error")),
    }
}

/// Runs `f` on index `name` with `cred` ([`Server::read`]: one check of
/// them), as a read (see [`reading`]); an engine error becomes an
/// [`ApiError`] that starts with `context`.
async fn read_index<T: Send + 'static>(
    server: Arc<Server>,
    name: String,
    cred: Credentials,
    context: &'static str,
    f: impl Fn(&Index) -> Result<T, vecseal::Error> + Send + 'static,
) -> Result<T, ApiError> {
    reading(server.reads(), move || {
        server
            .read(&name, cred, f)
            .map_err(|e| ApiError::engine(context, e))
    })
    .await
}

/// A caller allowed on routes of class "any": root, anyone when
/// authentication is off, or a user token.
pub(crate) struct AnyCaller(pub(crate) Caller);
/// A caller allowed on admin routes: root, or anyone when authentication is off.
pub(crate) struct AdminCaller;
/// The root key, the only caller allowed to manage users.
pub(crate) struct RootCaller;

impl FromRequestParts<Arc<Server>> for AnyCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &Arc<Server>) -> Result<Self, ApiError> {
        s.auth.classify(&parts.headers).map(AnyCaller)
    }
}

impl FromRequestParts<Arc<Server>> for AdminCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &Arc<Server>) -> Result<Self, ApiError> {
        let caller = s.auth.classify(&parts.headers)?;
        if caller.is_user() {
            return Err(ApiError::forbidden(
                "This operation requires an admin (root) API key",
            ));
        }
        Ok(AdminCaller)
    }
}

impl FromRequestParts<Arc<Server>> for RootCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &Arc<Server>) -> Result<Self, ApiError> {
        match s.auth.classify(&parts.headers)? {
            Caller::Root => Ok(RootCaller),
            _ if !s.auth.enabled() => Err(ApiError::forbidden(
                "User management requires the root API key; this server has none \
                 (set VECSEAL_SERVICE_ROOT_KEY)",
            )),
            _ => Err(ApiError::forbidden(
                "User management requires the root API key",
            )),
        }
    }
}

/// The routes of the v1 protocol, `/metrics`, and JSON errors for anything
/// else.
pub fn router(server: Arc<Server>) -> Router {
    let v1 = Router::new()
        .route("/health", get(indexes::health))
        .route("/indexes/list", get(indexes::list))
        .route("/indexes/create", post(indexes::create))
        .route("/indexes/describe", post(indexes::describe))
        .route("/indexes/delete", post(indexes::delete_index))
        .route("/indexes/train", post(indexes::train))
        .route("/indexes/training-status", get(indexes::training_status))
        .route(
            "/indexes/{index_name}/users",
            post(indexes::create_user).get(indexes::list_users),
        )
        .route(
            "/indexes/{index_name}/users/{user_id}",
            delete(indexes::delete_user),
        )
        .route("/embedding-models", get(indexes::embedding_models))
        .route("/vectors/upsert", post(vectors::upsert))
        .route("/vectors/upsert_binary", post(vectors::upsert_binary))
        .route("/vectors/query", post(vectors::query))
        .route("/vectors/query_binary", post(vectors::query_binary))
        .route("/vectors/get", post(vectors::get_items))
        .route("/vectors/delete", post(vectors::delete_items))
        .route("/vectors/list_ids", post(vectors::list_ids))
        .route("/vectors/query_metadata", post(vectors::query_metadata))
        .route("/vectors/num_vectors", post(vectors::num_vectors));
    let limit = server.max_body_bytes;
    Router::new()
        .nest("/v1", v1)
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&server),
            observe,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(server)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

async fn metrics_text(State(s): State<Arc<Server>>) -> Response {
    let (current, queued) = s.trainer.status();
    let open = s.open.lock().by_name.len();
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(
            open,
            usize::from(current.is_some()),
            queued.len(),
            s.batches.rode(),
        ),
    )
        .into_response()
}

/// Counts and times every request, and logs its route and status (never a
/// body, a key or an index name).
async fn observe(State(s): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    s.metrics.record(&route, status, elapsed);
    tracing::debug!(%method, route, status, micros = elapsed.as_micros() as u64, "request");
    response
}

/// Where and how [`serve`] listens.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The address (default `127.0.0.1:8000`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// PEM certificate chain and private key, for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long in-flight requests may run on after shutdown is asked.
    pub grace: Duration,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            tls: None,
            grace: Duration::from_secs(60),
        }
    }
}

/// Serves `server` until `shutdown` completes, then stops accepting and
/// lets in-flight requests finish (up to `listen.grace`). Every write is
/// durable when acknowledged, so nothing acknowledged is lost. `bound` is
/// told the address once listening (useful with port 0).
pub async fn serve(
    server: Arc<Server>,
    listen: Listen,
    bound: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = router(server);
    let std_listener = std::net::TcpListener::bind(listen.addr).map_err(|source| Error::Bind {
        addr: listen.addr,
        source,
    })?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let grace = listen.grace;
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests");
        h.graceful_shutdown(Some(grace));
    });
    bound(addr);
    let service = app.into_make_service();
    match listen.tls {
        None => {
            axum_server::from_tcp(std_listener)
                .handle(handle)
                .serve(service)
                .await?
        }
        Some((cert, key)) => {
            let config = tls_config(&cert, &key)?;
            axum_server::from_tcp_rustls(std_listener, config)
                .handle(handle)
                .serve(service)
                .await?
        }
    }
    Ok(())
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |what: &std::path::Path, reason: String| Error::Tls {
        what: what.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls(cert, "no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| tls(cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

/// Serves on a runtime of its own until SIGTERM or Ctrl-C, then shuts down
/// gracefully: what `vecseal serve` runs.
pub fn run(
    server: Arc<Server>,
    listen: Listen,
    bound: impl FnOnce(SocketAddr) + Send,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vecseal-http")
        .build()?;
    runtime.block_on(serve(server, listen, bound, shutdown_signal()))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests;
