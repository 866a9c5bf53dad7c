//! PgStore against the storage conformance suite, each check in a schema
//! of its own on the server `VECSEAL_TEST_PG` names (`cargo xtask ci`,
//! `test` and `pg` start a throwaway one). Without a server there is
//! nothing to run on, and the test says so.

use std::sync::atomic::{AtomicUsize, Ordering};

use vecseal_pg::PgStore;
use vecseal_storage::conformance::{check, NS};

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
