//! PgStore against the storage conformance suite, each check in a schema
//! of its own on the server `VECSEAL_TEST_PG` names (`cargo xtask ci`,
//! `test` and `pg` start a throwaway one). Without a server there is
//! nothing to run on, and the test says so.

use std::sync::atomic::{AtomicUsize, Ordering};

use vecseal_pg::PgStore;
use vecseal_storage::conformance::{check, NS};
use vecseal_storage::Store;

/// A schema dropped when the check that used it ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

#[test]
fn postgres_conforms() {
    let Ok(url) = std::env::var("VECSEAL_TEST_PG") else {
        eprintln!("VECSEAL_TEST_PG is not set: no PostgreSQL to run the suite on");
        return;
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    check(&|| {
        let schema = Schema {
            url: url.clone(),
            name: format!(
                "vs_conf_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let store = PgStore::open_in_schema(&schema.url, &schema.name, NS)
            .unwrap_or_else(|e| panic!("{e}"));
        (Box::new(store), Some(Box::new(schema)))
    });
}

/// A schema of its own for one test, or `None` without a server.
fn schema(tag: &str) -> Option<Schema> {
    let url = std::env::var("VECSEAL_TEST_PG").ok()?;
    Some(Schema {
        url,
        name: format!("vs_{tag}_{}", std::process::id()),
    })
}

#[test]
fn store_locks_exclude_other_connections_until_dropped() {
    let Some(schema) = schema("locks") else {
        eprintln!("VECSEAL_TEST_PG is not set: no PostgreSQL to run on");
        return;
    };
    let open =
        || PgStore::open_in_schema(&schema.url, &schema.name, NS).unwrap_or_else(|e| panic!("{e}"));
    // Two stores: two pools, as two processes have.
    let (a, b) = (open(), open());
    assert!(a.is_shared());
    let held = a.lock(b"index/1").unwrap_or_else(|e| panic!("{e}"));
    assert!(held.excludes());
    let taken =
        |s: &PgStore, name: &[u8]| s.try_lock(name).unwrap_or_else(|e| panic!("{e}")).is_some();
    assert!(!taken(&b, b"index/1"), "a lock held by another connection");
    assert!(taken(&b, b"index/2"), "another name is another lock");
    // A waiter gets it once the holder lets go.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.lock(b"index/1").map(|h| h.excludes()));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiter.is_finished(), "lock taken while held");
        drop(held);
        assert!(matches!(waiter.join().unwrap(), Ok(true)));
    });
    assert!(taken(&a, b"index/1"));
}

#[test]
fn tls_to_the_server_verifies_it_and_carries_every_call() {
    let (Ok(url), Some(schema)) = (std::env::var("VECSEAL_TEST_PG_TLS"), schema("tls")) else {
        eprintln!("VECSEAL_TEST_PG_TLS is not set: no PostgreSQL with TLS to run on");
        return;
    };
    let store = PgStore::open_in_schema(&url, &schema.name, NS).unwrap_or_else(|e| panic!("{e}"));
    store
        .put("a", b"k", b"v", vecseal_storage::Durability::Sync)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.get("a", b"k").ok().flatten(), Some(b"v".to_vec()));
    // The connection is encrypted: the server says so of it.
    let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.client_addr IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted > 0, "no TLS connection open");
    // A certificate that did not sign the server's is refused.
    let other = std::env::temp_dir().join(format!("vs-other-ca-{}.pem", std::process::id()));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout", "/dev/null", "-out"])
        .arg(&other)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(made, "openssl could not make a certificate");
    let (base, _) = url.split_once("&sslrootcert=").unwrap();
    let wrong = format!(
        "{base}&sslrootcert={}",
        other.display().to_string().replace('/', "%2F")
    );
    let refused = PgStore::open(&wrong, NS);
    let _ = std::fs::remove_file(&other);
    assert!(
        refused.is_err(),
        "connected to a server its certificate does not vouch for"
    );
}
