//! `vecseal`: the command-line tool of the vecseal encrypted vector database.
//!
//! Keys come from `--key-file FILE` (32 raw bytes) or `VECSEAL_KEY` (64 hex
//! characters), never from a plain argument, and are never printed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use vecseal::{
    Client, Credentials, Fields, Filter, IndexConfig, Item, MetadataQuery, Metric, Precision,
    QueryOptions, SecretKey, StorageConfig, Suite, TrainOptions, UserId,
};

mod demo;

use vecseal_cli::npy::read_npy;

/// mimalloc rather than the system allocator: a query's results are owned
/// strings (one per hit) and a batch allocates on several threads at once;
/// with glibc's malloc a batch of one-probe queries took up to 1.77× as
/// long (docs/BENCHMARKS.md, "The allocator of the binaries"). The
/// libraries leave the choice to whoever links them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "vecseal", version, about = "An encrypted vector database")]
struct Cli {
    /// Data folder (RocksDB).
    #[arg(long, global = true, default_value = "./vecseal-data")]
    data: PathBuf,
    /// A PostgreSQL database instead of the data folder: a
    /// postgres://user@host/db URL (or VECSEAL_STORE).
    #[arg(long, global = true, env = "VECSEAL_STORE", hide_env_values = true)]
    store: Option<String>,
    /// File holding the 32-byte key (else the VECSEAL_KEY environment variable, 64 hex chars).
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// Act as this RBAC user (32 hex chars); the key is then the user's key.
    /// Give it before the command (`vecseal --user-id U query …`): after
    /// `users add|remove`, `--user-id` names the user being managed.
    #[arg(long)]
    user_id: Option<String>,
    /// Verbose logs (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes 32 random bytes to a new key file (mode 0600).
    Keygen {
        /// Where to write the key; never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Creates an index.
    Create {
        /// Index name.
        name: String,
        /// Fixed dimension (else taken from the first upsert).
        #[arg(long)]
        dim: Option<usize>,
        /// cosine, euclidean, squared-euclidean or inner-product.
        #[arg(long, default_value = "squared-euclidean")]
        metric: Metric,
        /// aes-256-gcm or chacha20-poly1305.
        #[arg(long, default_value = "aes-256-gcm")]
        cipher: Suite,
        /// The metadata schema, as JSON: field path → {"filterable": bool,
        /// "pattern": bool, "unindexed": bool}, e.g.
        /// '{"title": {"pattern": true}, "ssn": {"filterable": false}}'.
        #[arg(long)]
        schema: Option<String>,
        /// How search vectors are stored: float32, float16, tq8 (8-bit) or
        /// tq4 (4-bit); compressed blocks are scanned first and the best
        /// candidates rescored exactly. Fixed at creation.
        #[arg(long, default_value = "float32")]
        storage_precision: Precision,
    },
    /// Upserts vectors from a .npy file (with optional ids) or a JSON-lines file.
    Upsert(UpsertArgs),
    /// Trains the IVF lists.
    Train(TrainArgs),
    /// Queries with the vectors of a .npy file.
    Query(QueryArgs),
    /// Prints {"ids": [...], "count": N}: the items whose metadata matches a
    /// filter, all counted, sorted by id or --order-by, at most --limit ids.
    QueryMetadata(QueryMetadataArgs),
    /// Prints items by id.
    Get {
        /// Index name.
        name: String,
        /// Ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deletes items by id.
    Delete {
        /// Index name.
        name: String,
        /// Ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Describes an index.
    Info {
        /// Index name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists indexes.
    List,
    /// Deletes an index and all its records.
    Drop {
        /// Index name.
        name: String,
    },
    /// Manages RBAC users.
    Users {
        #[command(subcommand)]
        cmd: UsersCmd,
    },
    /// Rotates an index's keys (owner only). --data-key seals every record
    /// again under a fresh data key, wrapped for the owner and every
    /// remaining user: a revoked user's key or an old copy of the keyring
    /// opens nothing afterwards. --new-key-file moves the owner to a new
    /// key (the data key is re-wrapped, no record is rewritten).
    RotateKey {
        /// Index name.
        name: String,
        /// Rotate the data key (re-encrypts every record; writes wait,
        /// queries go on). Not `--data`: that is the data folder.
        #[arg(long)]
        data_key: bool,
        /// File holding the owner's new 32-byte key.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
    /// Runs the HTTP service (CyborgDB's v1 protocol) over the data folder.
    /// The root key comes from VECSEAL_SERVICE_ROOT_KEY (or
    /// CYBORGDB_SERVICE_ROOT_KEY); without one, authentication is off and
    /// user management refused. SIGTERM or Ctrl-C stop it gracefully.
    Serve(ServeArgs),
    /// The main job: a full encrypted round trip with a report.
    Demo {
        /// Number of vectors (the first rows of --npy, or synthetic).
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// A float32 .npy of shape (n, d) to run on (`cargo xtask demo`
        /// passes GloVe-6B-50d); without it, seeded synthetic vectors.
        #[arg(long)]
        npy: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: std::net::SocketAddr,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Train an index automatically once it holds more than this many
    /// vectors, and retrain it when the automatic number of lists has
    /// doubled; 0 = never.
    #[arg(long, default_value_t = vecseal_server::DEFAULT_AUTO_TRAIN_THRESHOLD)]
    auto_train_threshold: usize,
    /// Largest request body in MiB (binary upserts can be hundreds of MiB).
    #[arg(long, default_value_t = 2048)]
    max_body_mib: usize,
    /// Cache of decrypted vector blocks per index, in MiB (0 = off).
    #[arg(long, default_value_t = 0)]
    list_cache_mib: usize,
}

#[derive(clap::Args)]
struct QueryMetadataArgs {
    /// Index name.
    name: String,
    /// A MongoDB-style JSON filter.
    #[arg(long)]
    filter: Filter,
    /// Sort by the value of this metadata field (a dot path): numbers, then
    /// strings, then booleans; items without it last; ties by id.
    #[arg(long)]
    order_by: Option<String>,
    /// Sort --order-by descending (items without the field stay last).
    #[arg(long, requires = "order_by")]
    descending: bool,
    /// At most this many ids, after sorting (all are counted).
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(clap::Args)]
struct UpsertArgs {
    /// Index name.
    name: String,
    /// float32 .npy of shape (n, d).
    #[arg(long, conflicts_with = "jsonl")]
    vectors: Option<PathBuf>,
    /// One id a line (default: row numbers).
    #[arg(long, requires = "vectors")]
    ids: Option<PathBuf>,
    /// Objects with id, vector, optional contents and metadata.
    #[arg(long)]
    jsonl: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Index name.
    name: String,
    /// Number of inverted lists (0 or unset: round(2·√n), at most n/2).
    #[arg(long)]
    n_lists: Option<usize>,
    /// k-means mini-batch size (0 or unset: full batches on a sample of
    /// at most 256 vectors per list).
    #[arg(long)]
    batch_size: Option<usize>,
    /// k-means iteration limit (default 100).
    #[arg(long)]
    max_iters: Option<u32>,
    /// k-means convergence tolerance on the relative inertia decrease
    /// (default 1e-6).
    #[arg(long)]
    tolerance: Option<f64>,
    /// Memory bound of training in MB (0 or unset: no bound, every vector
    /// decrypted at once; with a bound, training streams block by block).
    #[arg(long)]
    max_memory: Option<usize>,
}

#[derive(clap::Args)]
struct QueryArgs {
    /// Index name.
    name: String,
    /// A .npy file of float32 query vectors, one per row.
    #[arg(long)]
    vectors: PathBuf,
    /// Results per query.
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Lists each query scans after training (0 or unset: automatic).
    #[arg(long)]
    n_probes: Option<usize>,
    /// Compressed indexes: candidates kept per result by the scan of codes,
    /// all rescored exactly (0 or unset: the precision's default).
    #[arg(long)]
    rerank_mult: Option<usize>,
    /// Comma-separated: distance, metadata, contents.
    #[arg(long, value_delimiter = ',', default_value = "distance")]
    include: Vec<Include>,
    /// Write a JSON array of per-query results here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only items whose metadata matches this MongoDB-style JSON filter,
    /// e.g. '{"tenant": 42, "year": {"$gte": 2024}}'.
    #[arg(long)]
    filter: Option<Filter>,
}

/// A field `vecseal query --include` can return.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Include {
    Distance,
    Metadata,
    Contents,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Grants a user read and/or write access.
    Add {
        /// Index name.
        name: String,
        /// The user's 16-byte id, as 32 hex characters.
        #[arg(long = "user-id")]
        user: String,
        /// File holding the user's 32-byte key (it wraps the index's data key).
        #[arg(long)]
        user_key_file: PathBuf,
        /// Grant read access (query, get, list).
        #[arg(long)]
        read: bool,
        /// Grant write access (upsert, delete, train; implies read).
        #[arg(long)]
        write: bool,
    },
    /// Lists users.
    List {
        /// Index name.
        name: String,
    },
    /// Revokes a user.
    Remove {
        /// Index name.
        name: String,
        /// The user's id, as 32 hex characters.
        #[arg(long = "user-id")]
        user: String,
        /// Then rotate the data key (see `rotate-key --data-key`), so the
        /// user's key opens nothing even with an old copy of the keyring.
        #[arg(long)]
        rotate: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(level)
        .init();
    // A typo in VECSEAL_SIMD is a usage error, not a silent fallback.
    if let Err(e) = vecseal::SimdLevel::from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `vecseal query … | head`: the reader has all it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether writing to a closed pipe caused `e`.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub(crate) fn read_key_file(path: &Path) -> Result<SecretKey> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    SecretKey::from_bytes(&bytes).map_err(|e| anyhow!("key file {}: {e}", path.display()))
}

fn load_key(cli: &Cli) -> Result<SecretKey> {
    if let Some(p) = &cli.key_file {
        return read_key_file(p);
    }
    let hex_key = std::env::var("VECSEAL_KEY").map_err(|_| {
        anyhow!("no key: pass --key-file FILE or set VECSEAL_KEY (64 hex characters)")
    })?;
    let bytes = hex::decode(hex_key.trim())
        .map_err(|_| anyhow!("VECSEAL_KEY is not hex: expected 64 hex characters"))?;
    SecretKey::from_bytes(&bytes).map_err(|e| anyhow!("VECSEAL_KEY: {e}"))
}

fn credentials(cli: &Cli) -> Result<Credentials> {
    let key = load_key(cli)?;
    Ok(match &cli.user_id {
        Some(u) => Credentials::user(UserId::from_hex(u)?, key),
        None => Credentials::owner(key),
    })
}

fn client(cli: &Cli) -> Result<Client> {
    let config = match &cli.store {
        Some(url) => match StorageConfig::from_location(url) {
            pg @ StorageConfig::Postgres(_) => pg,
            _ => bail!("--store takes a postgres:// URL (use --data DIR for a local folder)"),
        },
        None => StorageConfig::Local(cli.data.clone()),
    };
    Ok(Client::open(config)?)
}

pub(crate) fn write_new_key(out: &Path) -> Result<()> {
    let key = SecretKey::generate()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(out).with_context(|| {
        format!(
            "cannot create key file {} (it must not exist yet)",
            out.display()
        )
    })?;
    f.write_all(key.expose_secret())?;
    f.sync_all()?;
    Ok(())
}

pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

pub(crate) fn upsert_all(index: &vecseal::Index, items: Vec<Item>) -> Result<()> {
    let pb = bar(items.len() as u64, "upsert");
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Item> = it.by_ref().take(10_000).collect();
        let n = chunk.len() as u64;
        index.upsert(chunk)?;
        pb.inc(n);
    }
    pb.finish();
    Ok(())
}

pub(crate) fn train_with_bar(index: &vecseal::Index, opts: &TrainOptions) -> Result<()> {
    let pb = bar(u64::from(opts.max_iters.unwrap_or(100)), "train");
    let cb = |p: &vecseal::TrainProgress| {
        pb.set_length(u64::from(p.max_iters));
        pb.set_position(u64::from(p.iteration));
        pb.set_message(format!("inertia {:.4e}", p.inertia));
        std::ops::ControlFlow::Continue(())
    };
    index.train_with_progress(opts, &cb)?;
    pb.finish();
    Ok(())
}

fn hits_json(hits: &[vecseal::Hit]) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| {
                let mut o = json!({ "id": h.id });
                if let Some(d) = h.distance {
                    o["distance"] = json!(d);
                }
                if let Some(m) = &h.metadata {
                    o["metadata"] = m.clone();
                }
                if let Some(c) = &h.contents {
                    o["contents"] = json!(String::from_utf8_lossy(c));
                }
                o
            })
            .collect(),
    )
}

/// Runs one command: a dispatcher, one function per command below.
fn run(cli: Cli) -> Result<()> {
    let cli = &cli;
    match &cli.cmd {
        Cmd::Keygen { out } => keygen(out),
        Cmd::Demo { n, npy } => demo::run(&cli.data, *n, npy.as_deref()),
        Cmd::Create {
            name,
            dim,
            metric,
            cipher,
            schema,
            storage_precision,
        } => {
            let cfg = IndexConfig::default()
                .with_metric(*metric)
                .with_suite(*cipher)
                .with_storage_precision(*storage_precision);
            create(cli, name, *dim, cfg, schema.as_deref())
        }
        Cmd::Upsert(args) => upsert(cli, args),
        Cmd::Train(args) => train(cli, args),
        Cmd::Query(args) => query(cli, args),
        Cmd::QueryMetadata(args) => query_metadata(cli, args),
        Cmd::Get { name, ids } => get(cli, name, ids),
        Cmd::Delete { name, ids } => delete(cli, name, ids),
        Cmd::Info { name, json } => info(cli, name, *json),
        Cmd::List => list(cli),
        Cmd::Drop { name } => drop_index(cli, name),
        Cmd::Users { cmd } => users(cli, cmd),
        Cmd::RotateKey {
            name,
            data_key,
            new_key_file,
        } => rotate_key(cli, name, *data_key, new_key_file.as_deref()),
        Cmd::Serve(args) => serve(cli, args),
    }
}

/// `vecseal serve`.
fn serve(cli: &Cli, args: &ServeArgs) -> Result<()> {
    let root_key = ["VECSEAL_SERVICE_ROOT_KEY", "CYBORGDB_SERVICE_ROOT_KEY"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|k| !k.is_empty()));
    if root_key.is_none() {
        eprintln!(
            "vecseal serve: no VECSEAL_SERVICE_ROOT_KEY: authentication is off, user \
             management refused"
        );
    }
    let client = client(cli)?.with_list_cache(args.list_cache_mib.saturating_mul(1 << 20));
    let config = vecseal_server::Config {
        root_key,
        auto_train_threshold: args.auto_train_threshold,
        max_body_bytes: args.max_body_mib.saturating_mul(1 << 20),
        ..vecseal_server::Config::default()
    };
    let listen = vecseal_server::Listen {
        addr: args.listen,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        ..vecseal_server::Listen::default()
    };
    let scheme = if listen.tls.is_some() {
        "https"
    } else {
        "http"
    };
    vecseal_server::run(
        vecseal_server::Server::new(client, config),
        listen,
        |addr| {
            eprintln!("vecseal serve: listening on {scheme}://{addr}");
        },
    )?;
    eprintln!("vecseal serve: stopped");
    Ok(())
}

/// Loads the index `name` with the command line's credentials.
fn load(cli: &Cli, name: &str) -> Result<vecseal::Index> {
    Ok(client(cli)?.load_index(name, credentials(cli)?)?)
}

/// `vecseal keygen`.
fn keygen(out: &Path) -> Result<()> {
    write_new_key(out)?;
    eprintln!("wrote a new 32-byte key to {}", out.display());
    Ok(())
}

/// `vecseal create`.
fn create(
    cli: &Cli,
    name: &str,
    dim: Option<usize>,
    mut cfg: IndexConfig,
    schema: Option<&str>,
) -> Result<()> {
    cfg.dimension = dim;
    if let Some(text) = schema {
        cfg.fields = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "--schema: {e}; expected {{\"field\": {{\"filterable\": bool, \"pattern\": bool, \"unindexed\": bool}}, ...}}"
            )
        })?;
    }
    client(cli)?.create_index(name, credentials(cli)?, cfg)?;
    eprintln!("created index {name:?}");
    Ok(())
}

/// `vecseal upsert`: from a .npy file (with optional ids) or JSON lines.
fn upsert(cli: &Cli, args: &UpsertArgs) -> Result<()> {
    let index = load(cli, &args.name)?;
    let items = match (&args.vectors, &args.jsonl) {
        (Some(v), None) => npy_items(v, args.ids.as_deref())?,
        (None, Some(p)) => jsonl_items(p)?,
        _ => bail!("give --vectors FILE.npy or --jsonl FILE"),
    };
    let n = items.len();
    upsert_all(&index, items)?;
    eprintln!("upserted {n} items into {:?}", args.name);
    Ok(())
}

/// Items from a .npy file of vectors, with ids from a file or row numbers.
fn npy_items(vectors: &Path, ids: Option<&Path>) -> Result<Vec<Item>> {
    let (data, n, d) = read_npy(vectors)?;
    let ids: Vec<String> = match ids {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read ids file {}", p.display()))?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => (0..n).map(|i| i.to_string()).collect(),
    };
    if ids.len() != n {
        bail!(
            "{} ids for {n} vectors: the ids file needs one id per row",
            ids.len()
        );
    }
    Ok(ids
        .into_iter()
        .zip(data.chunks(d.max(1)))
        .map(|(id, v)| Item::new(id, v.to_vec()))
        .collect())
}

/// Items from a JSON-lines file of `{id, vector, contents?, metadata?}`.
fn jsonl_items(p: &Path) -> Result<Vec<Item>> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        vector: Vec<f32>,
        contents: Option<String>,
        metadata: Option<Value>,
    }
    let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut items = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}", p.display(), i + 1))?;
        let mut item = Item::new(row.id, row.vector);
        item.contents = row.contents.map(String::into_bytes);
        item.metadata = row.metadata;
        items.push(item);
    }
    Ok(items)
}

/// `vecseal train`, with a progress bar.
fn train(cli: &Cli, args: &TrainArgs) -> Result<()> {
    let index = load(cli, &args.name)?;
    let opts = TrainOptions {
        n_lists: args.n_lists,
        batch_size: args.batch_size,
        max_iters: args.max_iters,
        tolerance: args.tolerance,
        max_memory: args.max_memory,
        seed: 0,
    };
    let t = Instant::now();
    train_with_bar(&index, &opts)?;
    eprintln!(
        "trained {:?}: {} lists in {:.2?}",
        args.name,
        index.n_lists(),
        t.elapsed()
    );
    Ok(())
}

/// `vecseal query`: JSON lines on stdout (or a JSON array in a file), the
/// QPS on stderr.
fn query(cli: &Cli, args: &QueryArgs) -> Result<()> {
    let index = load(cli, &args.name)?;
    let (data, n, d) = read_npy(&args.vectors)?;
    let mut opts = QueryOptions::default()
        .with_top_k(args.top_k)
        .with_distance(false);
    opts.n_probes = args.n_probes;
    opts.rerank_mult = args.rerank_mult;
    opts.filter = args.filter.clone();
    for f in &args.include {
        opts = match f {
            Include::Distance => opts.with_distance(true),
            Include::Metadata => opts.with_metadata(true),
            Include::Contents => opts.with_contents(true),
        };
    }
    let queries: Vec<Vec<f32>> = data.chunks(d.max(1)).map(<[f32]>::to_vec).collect();
    // Batches of 4096 queries (the engine's largest chunk), with a
    // progress bar on stderr.
    let pb = bar(queries.len() as u64, "query");
    let t = Instant::now();
    let mut results = Vec::with_capacity(queries.len());
    for batch in queries.chunks(4096) {
        results.extend(index.query(batch, &opts)?);
        pb.inc(batch.len() as u64);
    }
    let secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    match &args.out {
        Some(p) => {
            let all = Value::Array(results.iter().map(|h| hits_json(h)).collect());
            std::fs::write(p, serde_json::to_vec(&all)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for h in &results {
                writeln!(stdout, "{}", hits_json(h))?;
            }
        }
    }
    eprintln!(
        "{n} queries in {secs:.3} s: {:.1} QPS",
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `vecseal query-metadata`: a JSON array of ids.
fn query_metadata(cli: &Cli, args: &QueryMetadataArgs) -> Result<()> {
    let mut opts = MetadataQuery {
        limit: args.limit,
        ..MetadataQuery::default()
    };
    if let Some(field) = &args.order_by {
        opts = opts.with_order_by(field, !args.descending);
    }
    let m = load(cli, &args.name)?.query_metadata(&args.filter, &opts)?;
    writeln!(
        std::io::stdout(),
        "{}",
        json!({"ids": m.ids, "count": m.count})
    )?;
    Ok(())
}

/// `vecseal get`: one JSON line per item found; an error names the missing.
fn get(cli: &Cli, name: &str, ids: &[String]) -> Result<()> {
    let r = load(cli, name)?.get(ids, Fields::ALL)?;
    let mut stdout = std::io::stdout().lock();
    for it in r.items {
        let contents = it
            .contents
            .map(|c| String::from_utf8_lossy(&c).into_owned());
        writeln!(
            stdout,
            "{}",
            json!({"id": it.id, "vector": it.vector, "contents": contents, "metadata": it.metadata})
        )?;
    }
    if !r.missing.is_empty() {
        bail!("not found: {}", r.missing.join(", "));
    }
    Ok(())
}

/// `vecseal delete`.
fn delete(cli: &Cli, name: &str, ids: &[String]) -> Result<()> {
    let n = load(cli, name)?.delete(ids)?;
    eprintln!("deleted {n} of {} items", ids.len());
    Ok(())
}

/// `vecseal info`, as text or JSON.
fn info(cli: &Cli, name: &str, as_json: bool) -> Result<()> {
    let i = load(cli, name)?.info()?;
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(
            out,
            "{}",
            json!({"name": i.name, "dimension": i.dimension, "metric": i.metric.name(), "count": i.count,
                   "state": i.state.name(), "n_lists": i.n_lists, "cipher": i.suite.name(),
                   "storage_precision": i.storage_precision.name(), "fields": i.fields})
        )?;
    } else {
        writeln!(out, "name:      {}", i.name)?;
        writeln!(
            out,
            "dimension: {}",
            i.dimension.map_or("unset".into(), |d| d.to_string())
        )?;
        writeln!(out, "metric:    {}", i.metric)?;
        writeln!(out, "count:     {}", i.count)?;
        writeln!(out, "state:     {}", i.state.name())?;
        writeln!(out, "n_lists:   {}", i.n_lists)?;
        writeln!(out, "cipher:    {}", i.suite)?;
        writeln!(out, "precision: {}", i.storage_precision)?;
        for (path, f) in &i.fields {
            writeln!(
                out,
                "field:     {path} (filterable: {}, pattern: {}, unindexed: {})",
                f.filterable, f.pattern, f.unindexed
            )?;
        }
    }
    Ok(())
}

/// `vecseal list`: one index name a line.
fn list(cli: &Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for n in client(cli)?.list_indexes()? {
        writeln!(out, "{n}")?;
    }
    Ok(())
}

/// `vecseal drop`.
fn drop_index(cli: &Cli, name: &str) -> Result<()> {
    client(cli)?.delete_index(name, &credentials(cli)?)?;
    eprintln!("dropped index {name:?}");
    Ok(())
}

/// `vecseal rotate-key`.
fn rotate_key(cli: &Cli, name: &str, data: bool, new_key_file: Option<&Path>) -> Result<()> {
    if !data && new_key_file.is_none() {
        bail!("give --data-key (a new data key) and/or --new-key-file FILE (a new owner key)");
    }
    let index = load(cli, name)?;
    if data {
        rotate_data_key(&index)?;
    }
    if let Some(path) = new_key_file {
        index.rotate_key(&read_key_file(path)?)?;
        eprintln!(
            "index {name:?} now opens with the owner key in {}",
            path.display()
        );
    }
    Ok(())
}

/// Rotates the data key of `index` with a progress bar.
fn rotate_data_key(index: &vecseal::Index) -> Result<()> {
    let pb = bar(0, "re-seal");
    let cb = |p: &vecseal::RotateProgress| {
        pb.set_length(p.total);
        pb.set_position(p.done);
    };
    let done = index.rotate_data_key_with_progress(&cb)?;
    pb.finish();
    eprintln!(
        "rotated the data key of {:?}: {} items and {} blocks ({:.1} MB) sealed again",
        index.name(),
        done.items,
        done.blocks,
        done.bytes as f64 / 1e6
    );
    Ok(())
}

/// `vecseal users add | list | remove`.
fn users(cli: &Cli, cmd: &UsersCmd) -> Result<()> {
    match cmd {
        UsersCmd::Add {
            name,
            user,
            user_key_file,
            read,
            write,
        } => {
            if !read && !write {
                bail!("give --read and/or --write");
            }
            load(cli, name)?.add_user(
                UserId::from_hex(user)?,
                &read_key_file(user_key_file)?,
                *read,
                *write,
            )?;
            eprintln!("granted user {user} read={read} write={write}");
        }
        UsersCmd::List { name } => {
            let mut out = std::io::stdout().lock();
            for u in load(cli, name)?.list_users()? {
                writeln!(
                    out,
                    "{}",
                    json!({"user_id": u.user_id.to_string(), "read": u.has_read || u.has_write, "write": u.has_write})
                )?;
            }
        }
        UsersCmd::Remove { name, user, rotate } => {
            let index = load(cli, name)?;
            if !index.remove_user(UserId::from_hex(user)?)? {
                bail!("user {user} has no access to index {name:?}");
            }
            eprintln!("revoked user {user}");
            if *rotate {
                rotate_data_key(&index)?;
            }
        }
    }
    Ok(())
}
