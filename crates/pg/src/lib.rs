//! The PostgreSQL storage engine of vecseal: [`PgStore`], a table per
//! namespace, a batch per transaction.
//!
//! Every namespace is a table `vecseal_<namespace>` of `(k bytea primary
//! key, v bytea)` in the connection's schema (set it with the URL's
//! `options=-csearch_path=…`). A table per namespace rather than one table
//! with a namespace column: each primary key is a plain `bytea` (no
//! composite index), and an operator can place, vacuum and (with Citus)
//! distribute the large-valued `blocks` apart from the small-valued
//! `catalog`. `bytea` compares byte by byte, so the table's order is the
//! key order the [`Store`] contract asks for.
//!
//! A [`WriteBatch`] is one transaction (the last operation on a key wins);
//! [`Durability::Buffered`] commits with `synchronous_commit = off`. A scan
//! or a snapshot is a `REPEATABLE READ` read-only transaction on a
//! connection of its own, read a page at a time in key order (keyset
//! pagination): consistent, and bounded in memory.
//!
//! Several processes may use one database: [`Store::write_if`] is a
//! compare-and-swap in one transaction, and [`Store::lock`] a session-level
//! advisory lock that the server releases when its holder's connection
//! ends. A URL with `sslrootcert=FILE` connects through TLS (rustls) and
//! verifies the server against that authority.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::str::FromStr;

use parking_lot::Mutex;
use std::collections::HashMap;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use vecseal_storage::{
    BatchOp, Durability, Entry, Error, Expect, Held, Result, Scan, Snapshot, Store, WriteBatch,
};

/// Entries fetched per page of a scan, at most.
const PAGE: i64 = 128;
/// Bytes of values per page of a scan, about: a page stops at the first
/// entry that starts past this (so one large value still comes alone).
const PAGE_BYTES: i64 = 8 << 20;
/// Idle connections kept for reuse.
const IDLE: usize = 8;

/// A [`Store`] on PostgreSQL.
pub struct PgStore {
    config: Config,
    /// TLS to the server, when a root certificate was given.
    tls: Option<MakeRustlsConnect>,
    /// The schema of the tables, when not the default one.
    schema: Option<String>,
    namespaces: Vec<String>,
    idle: Mutex<Vec<Session>>,
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or
    /// `key=value` settings) and creates the tables of `namespaces` that
    /// do not exist, in the connection's default schema.
    pub fn open(url: &str, namespaces: &[&str]) -> Result<Self> {
        Self::open_config(url, None, namespaces)
    }

    /// Like [`PgStore::open`], with the tables in `schema` (created if
    /// missing): several vecseal deployments, or tests, in one database.
    pub fn open_in_schema(url: &str, schema: &str, namespaces: &[&str]) -> Result<Self> {
        Self::open_config(url, Some(schema), namespaces)
    }

    fn open_config(url: &str, schema: Option<&str>, namespaces: &[&str]) -> Result<Self> {
        let connect_error = |reason: String| Error::Connect {
            what: redact(url),
            reason,
        };
        let (plain, root_cert) = split_tls(url);
        let mut config = Config::from_str(&plain)
            .map_err(|e| connect_error(format!("not a PostgreSQL connection string: {e}")))?;
        if root_cert.is_some() && config.get_ssl_mode() == SslMode::Prefer {
            // With a certificate to check against, never fall back to
            // plain text.
            config.ssl_mode(SslMode::Require);
        }
        let tls = match root_cert {
            Some(path) => Some(tls_connector(&path).map_err(connect_error)?),
            None if config.get_ssl_mode() == SslMode::Require => {
                return Err(connect_error(
                    "sslmode=require needs sslrootcert=FILE: the PEM certificate of the \
                     authority that signed the server's (vecseal verifies the server)"
                        .into(),
                ))
            }
            None => None,
        };
        if let Some(schema) = schema {
            if !identifier(schema) {
                return Err(Error::Connect {
                    what: redact(url),
                    reason: format!(
                        "schema {schema:?}: use lowercase letters, digits and _, starting with a letter"
                    ),
                });
            }
            let mut client = connect(&config, tls.as_ref())?;
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .map_err(pg)?;
            config.options(&format!("-c search_path={schema}"));
        }
        for ns in namespaces {
            if !identifier(ns) {
                return Err(Error::Connect {
                    what: redact(url),
                    reason: format!(
                        "namespace {ns:?} cannot name a table: use lowercase letters, digits and _, starting with a letter"
                    ),
                });
            }
        }
        let store = Self {
            config,
            tls,
            schema: schema.map(str::to_owned),
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = store.conn()?;
        store.create_tables(conn.client())?;
        drop(conn);
        Ok(store)
    }

    /// Creates the tables that do not exist (one process at a time).
    fn create_tables(&self, client: &mut Client) -> Result<()> {
        let mut tx = client.transaction().map_err(pg)?;
        // Two processes opening a fresh database at once: one creates.
        tx.execute("SELECT pg_advisory_xact_lock(7283001)", &[])
            .map_err(pg)?;
        for ns in &self.namespaces {
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (k bytea PRIMARY KEY, v bytea NOT NULL)",
                table(ns)
            ))
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)
    }

    /// A connection from the pool, or a new one.
    fn conn(&self) -> Result<Conn<'_>> {
        let pooled = self.idle.lock().pop();
        let session = match pooled {
            Some(s) if !s.client.is_closed() => s,
            _ => Session {
                client: connect(&self.config, self.tls.as_ref())?,
                statements: HashMap::new(),
            },
        };
        Ok(Conn {
            store: self,
            session: Some(session),
        })
    }

    fn table(&self, ns: &str) -> Result<String> {
        if self.namespaces.iter().any(|n| n == ns) {
            Ok(table(ns))
        } else {
            Err(Error::UnknownNamespace {
                name: ns.to_owned(),
                known: self.namespaces.clone(),
            })
        }
    }

    /// Writes `batch` in one transaction; with `expect`, only if it holds
    /// (`Ok(false)` and nothing written otherwise).
    fn apply(
        &self,
        expect: Option<Expect<'_>>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        // The last operation on a key wins; per table, one delete and one
        // upsert statement.
        let mut last: BTreeMap<(&str, &[u8]), Option<&[u8]>> = BTreeMap::new();
        for op in batch.ops() {
            match op {
                BatchOp::Put { ns, key, value } => last.insert((ns, key), Some(value)),
                BatchOp::Delete { ns, key } => last.insert((ns, key), None),
            };
        }
        /// One table's share of a batch.
        #[derive(Default)]
        struct TableOps<'b> {
            deletes: Vec<&'b [u8]>,
            keys: Vec<&'b [u8]>,
            values: Vec<&'b [u8]>,
        }
        let mut per_table: BTreeMap<&str, TableOps<'_>> = BTreeMap::new();
        for ((ns, key), value) in last {
            self.table(ns)?;
            let ops = per_table.entry(ns).or_default();
            match value {
                Some(v) => {
                    ops.keys.push(key);
                    ops.values.push(v);
                }
                None => ops.deletes.push(key),
            }
        }
        let expect = match expect {
            Some(e) => Some((
                self.table(e.ns)?,
                e,
                self.lock_key(b"cas", &[e.ns.as_bytes(), b"/", e.key].concat()),
            )),
            None => None,
        };
        let mut conn = self.conn()?;
        let session = conn.session();
        let check = match &expect {
            Some((table, ..)) => Some((
                session.statement("SELECT pg_advisory_xact_lock($1)")?,
                session.statement(&format!("SELECT v FROM {table} WHERE k = $1 FOR UPDATE"))?,
            )),
            None => None,
        };
        // Statements prepared before the transaction (on the connection).
        let mut statements = Vec::with_capacity(per_table.len());
        for ns in per_table.keys() {
            let table = table(ns);
            statements.push((
                session.statement(&format!("DELETE FROM {table} WHERE k = ANY($1)"))?,
                session.statement(&format!(
                    "INSERT INTO {table} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                ))?,
            ));
        }
        let mut tx = session.client.transaction().map_err(pg)?;
        if let (Some((_, e, lock)), Some((take, read))) = (&expect, &check) {
            // Conditional writes of one key queue on a transaction lock (a
            // row lock alone cannot hold an absent key), then read the
            // newest committed value.
            tx.execute(take, &[lock]).map_err(pg)?;
            let now: Option<Vec<u8>> = tx.query_opt(read, &[&e.key]).map_err(pg)?.map(|r| r.get(0));
            if now.as_deref() != e.value {
                return Ok(false);
            }
        }
        if durability == Durability::Buffered {
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                .map_err(pg)?;
        }
        for (
            TableOps {
                deletes,
                keys,
                values,
            },
            (delete, upsert),
        ) in per_table.into_values().zip(&statements)
        {
            if !deletes.is_empty() {
                tx.execute(delete, &[&deletes]).map_err(pg)?;
            }
            if !keys.is_empty() {
                tx.execute(upsert, &[&keys, &values]).map_err(pg)?;
            }
        }
        tx.commit().map_err(pg)?;
        Ok(true)
    }

    /// The advisory-lock key of `name` in the space `what` of this store's
    /// schema (FNV-1a; a collision only makes two locks one).
    fn lock_key(&self, what: &[u8], name: &[u8]) -> i64 {
        let schema = self.schema.as_deref().unwrap_or("").as_bytes();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [what, b"\0", schema, b"\0", name] {
            for &b in part {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h as i64
    }

    /// A read-only repeatable-read transaction on a connection of its own.
    fn begin_snapshot(&self) -> Result<Conn<'_>> {
        let mut conn = self.conn()?;
        // The snapshot is taken at the transaction's first statement, not
        // at BEGIN: take it now.
        conn.client()
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
            .map_err(pg)?;
        Ok(conn)
    }
}

/// Opens a connection, through TLS when `tls` is given.
fn connect(config: &Config, tls: Option<&MakeRustlsConnect>) -> Result<Client> {
    match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    }
    .map_err(pg)
}

/// The connection string without its `sslrootcert` setting (which the
/// client does not parse), and that setting; `sslmode=verify-ca` and
/// `verify-full` become `require` (with a root certificate, vecseal always
/// verifies the server's chain and name).
fn split_tls(url: &str) -> (String, Option<String>) {
    let mut root = None;
    let keep = |pair: &str, root: &mut Option<String>| -> Option<String> {
        match pair.split_once('=') {
            Some(("sslrootcert", v)) => {
                *root = Some(
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                None
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => Some("sslmode=require".into()),
            _ => Some(pair.to_owned()),
        }
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let kept: Vec<String> = query
            .split('&')
            .filter_map(|p| keep(p, &mut root))
            .collect();
        let plain = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (plain, root)
    } else {
        let kept: Vec<String> = url
            .split_whitespace()
            .filter_map(|p| keep(p, &mut root))
            .collect();
        (kept.join(" "), root)
    }
}

/// A TLS connector that trusts only the certificates in the PEM file
/// `path`.
fn tls_connector(path: &str) -> std::result::Result<MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path}: no certificate in it"));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Whether `name` may be put in SQL as an identifier unquoted: lowercase
/// ASCII letters, digits and `_`, starting with a letter, at most 48 bytes.
fn identifier(name: &str) -> bool {
    name.len() <= 48
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The table of namespace `ns` (checked by [`identifier`]).
fn table(ns: &str) -> String {
    format!("vecseal_{ns}")
}

/// The connection string without a password, for errors.
fn redact(url: &str) -> String {
    match Config::from_str(&split_tls(url).0) {
        Ok(c) => format!(
            "PostgreSQL database {:?} on {:?} as {:?}",
            c.get_dbname().unwrap_or("(default)"),
            c.get_hosts(),
            c.get_user().unwrap_or("(default)")
        ),
        Err(_) => "a PostgreSQL connection string".into(),
    }
}

/// A PostgreSQL error as a storage error: retryable when the server is
/// unreachable, shutting down or not yet accepting connections.
fn pg(e: postgres::Error) -> Error {
    let unavailable = e.is_closed()
        || match e.code() {
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code == "57P01" || code == "57P02" || code == "57P03"
            }
            // No SQL state: the connection itself failed (I/O, refused).
            None => e.as_db_error().is_none(),
        };
    if unavailable {
        Error::Unavailable(format!("postgres: {e}"))
    } else {
        Error::Engine(format!("postgres: {e}"))
    }
}

/// A connection with the statements prepared on it (each SQL text is
/// parsed and planned once per connection, not once per call).
struct Session {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Session {
    /// The prepared statement of `sql` on this connection.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql).map_err(pg)?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

/// A pooled connection, back to the pool when dropped (unless broken, or
/// inside a transaction it could not end).
struct Conn<'a> {
    store: &'a PgStore,
    session: Option<Session>,
}

impl Conn<'_> {
    fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .unwrap_or_else(|| unreachable!("a connection is only taken on drop"))
    }

    fn client(&mut self) -> &mut Client {
        &mut self.session().client
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(mut s) = self.session.take() {
            // End whatever transaction is open (a no-op otherwise).
            if !s.client.is_closed() && s.client.batch_execute("ROLLBACK").is_ok() {
                let mut idle = self.store.idle.lock();
                if idle.len() < IDLE {
                    idle.push(s);
                }
            } else {
                // A broken connection: the server restarted or went away,
                // and the idle ones are as dead. The next calls connect
                // afresh instead of failing on each of them in turn.
                self.store.idle.lock().clear();
            }
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One page of `table` from `from` (inclusive) below `end`, in key order:
/// at most [`PAGE`] entries, cut after about [`PAGE_BYTES`] of values
/// (`octet_length` reads a stored value's size without fetching it).
fn page(session: &mut Session, table: &str, from: &[u8], end: Option<&[u8]>) -> Result<Vec<Entry>> {
    let bound = if end.is_some() { "AND k < $4" } else { "" };
    let sql = format!(
        "SELECT k, v FROM (SELECT k, v, sum(octet_length(v)) OVER (ORDER BY k) - octet_length(v) AS before \
         FROM (SELECT k, v FROM {table} WHERE k >= $1 {bound} ORDER BY k LIMIT $2) page) s \
         WHERE before < $3 ORDER BY k"
    );
    let st = session.statement(&sql)?;
    let rows = match end {
        Some(end) => session
            .client
            .query(&st, &[&from, &PAGE, &PAGE_BYTES, &end]),
        None => session.client.query(&st, &[&from, &PAGE, &PAGE_BYTES]),
    }
    .map_err(pg)?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The value of `key` in `table`.
fn point_get(session: &mut Session, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let st = session.statement(&format!("SELECT v FROM {table} WHERE k = $1"))?;
    let row = session.client.query_opt(&st, &[&key]).map_err(pg)?;
    Ok(row.map(|r| r.get(0)))
}

/// A scan: pages of one table in key order, read through `next_page`.
struct Pages<F> {
    next_page: F,
    from: Vec<u8>,
    buffered: std::vec::IntoIter<Entry>,
    done: bool,
}

impl<F: FnMut(&[u8]) -> Result<Vec<Entry>>> Iterator for Pages<F> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if let Some(e) = self.buffered.next() {
            return Some(Ok(e));
        }
        if self.done {
            return None;
        }
        let rows = match (self.next_page)(&self.from) {
            Ok(rows) => rows,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        // A page cut by size is short too: only an empty one ends the scan.
        self.done = rows.is_empty();
        if let Some((last, _)) = rows.last() {
            // Keyset pagination: the next page starts just after the last
            // key (`last ‖ 0` is the least key greater than `last`).
            self.from = last.clone();
            self.from.push(0);
        }
        self.buffered = rows.into_iter();
        self.buffered.next().map(Ok)
    }
}

fn pages<'a>(from: &[u8], next_page: impl FnMut(&[u8]) -> Result<Vec<Entry>> + 'a) -> Scan<'a> {
    Box::new(Pages {
        next_page,
        from: from.to_vec(),
        buffered: Vec::new().into_iter(),
        done: false,
    })
}

impl Store for PgStore {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let table = self.table(ns)?;
        let mut conn = self.conn()?;
        point_get(conn.session(), &table, key)
    }

    fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let table = self.table(ns)?;
        let mut conn = self.conn()?;
        let session = conn.session();
        let st = session.statement(&format!("SELECT k, v FROM {table} WHERE k = ANY($1)"))?;
        let rows = session.client.query(&st, &[&keys]).map_err(pg)?;
        let found: BTreeMap<Vec<u8>, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.apply(None, batch, durability).map(|_| ())
    }

    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        self.apply(Some(expect), batch, durability)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn lock(&self, name: &[u8]) -> Result<Held<'_>> {
        let key = self.lock_key(b"lock", name);
        let mut conn = self.conn()?;
        let session = conn.session();
        let st = session.statement("SELECT pg_advisory_lock($1)")?;
        session.client.execute(&st, &[&key]).map_err(pg)?;
        Ok(Held::new(Box::new(SessionLock { conn, key })))
    }

    fn try_lock(&self, name: &[u8]) -> Result<Option<Held<'_>>> {
        let key = self.lock_key(b"lock", name);
        let mut conn = self.conn()?;
        let session = conn.session();
        let st = session.statement("SELECT pg_try_advisory_lock($1)")?;
        let taken: bool = session.client.query_one(&st, &[&key]).map_err(pg)?.get(0);
        Ok(taken.then(|| Held::new(Box::new(SessionLock { conn, key }))))
    }

    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        let table = self.table(ns)?;
        let mut conn = self.begin_snapshot()?;
        let end = prefix_end(prefix);
        Ok(pages(prefix, move |from| {
            page(conn.session(), &table, from, end.as_deref())
        }))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(PgSnapshot {
            store: self,
            conn: Mutex::new(self.begin_snapshot()?),
        }))
    }

    fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }
}

/// A session-level advisory lock, held by a connection of its own:
/// released when dropped, or by the server when the connection ends (the
/// process died).
struct SessionLock<'a> {
    conn: Conn<'a>,
    key: i64,
}

impl Drop for SessionLock<'_> {
    fn drop(&mut self) {
        let unlocked = self
            .conn
            .session()
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .is_ok();
        if !unlocked {
            // Never pool a connection that may still hold the lock: closing
            // it releases the lock.
            self.conn.session = None;
        }
    }
}

/// A read-only repeatable-read transaction.
struct PgSnapshot<'a> {
    store: &'a PgStore,
    conn: Mutex<Conn<'a>>,
}

impl Snapshot for PgSnapshot<'_> {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let table = self.store.table(ns)?;
        point_get(self.conn.lock().session(), &table, key)
    }

    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        let table = self.store.table(ns)?;
        let end = prefix_end(prefix);
        Ok(pages(prefix, move |from| {
            page(self.conn.lock().session(), &table, from, end.as_deref())
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_never_show_the_password() {
        let url = "postgresql://app:hunter2@127.0.0.1:1/vecs";
        let shown = super::redact(url);
        assert!(
            !shown.contains("hunter2") && shown.contains("vecs"),
            "{shown}"
        );
        // Nothing listens on port 1: the error is retryable and shows no
        // password either.
        let err = super::PgStore::open(url, &["items"])
            .err()
            .unwrap_or_else(|| panic!("opened a database on port 1"));
        assert!(err.is_retryable(), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    use super::prefix_end;

    #[test]
    fn tls_settings_are_taken_out_of_the_connection_string() {
        use super::split_tls;
        assert_eq!(
            split_tls("postgresql://u@h:5/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgresql://u@h:5/db?sslmode=require".to_owned(),
                Some("/etc/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split_tls("host=h sslrootcert=/ca.pem dbname=x"),
            ("host=h dbname=x".to_owned(), Some("/ca.pem".to_owned()))
        );
        assert_eq!(
            split_tls("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
        // Asking for TLS without a certificate to verify the server by is
        // refused, not done unverified.
        let err = super::PgStore::open("postgresql://u@127.0.0.1:1/db?sslmode=require", &["a"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sslrootcert"), "{err}");
    }

    #[test]
    fn a_socket_folder_goes_in_a_url_percent_encoded() {
        use std::str::FromStr;
        let c = postgres::Config::from_str("postgresql://postgres@%2Ftmp%2Fpg:5433/db")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.get_hosts(),
            [postgres::config::Host::Unix("/tmp/pg".into())]
        );
        assert_eq!(c.get_ports(), [5433]);
        assert_eq!(c.get_dbname(), Some("db"));
    }

    #[test]
    fn only_plain_identifiers_reach_sql() {
        for ok in ["items", "a", "vs_test_1"] {
            assert!(super::identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "Items",
            "1a",
            "a-b",
            "a;drop table x",
            "a b",
            &"x".repeat(49),
        ] {
            assert!(!super::identifier(bad), "{bad}");
        }
    }

    #[test]
    fn prefix_ends_bound_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
