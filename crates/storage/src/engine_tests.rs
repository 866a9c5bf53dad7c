//! The storage engines of this crate against the conformance suite, and
//! what is particular to RocksDB.

use crate::conformance::{check, NS};
use crate::{Durability, Error, MemStore, RocksStore, Store};

#[test]
fn the_memory_store_conforms() {
    check(&|| (Box::new(MemStore::new(NS)), None));
}

#[test]
fn rocksdb_conforms() {
    check(&|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rocks = RocksStore::open(dir.path().join("db"), NS).unwrap_or_else(|e| panic!("{e}"));
        (Box::new(rocks), Some(Box::new(dir)))
    });
}

#[test]
fn rocks_open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("db");
    let first = RocksStore::open(&path, NS).unwrap_or_else(|e| panic!("{e}"));
    let second = RocksStore::open(&path, NS);
    assert!(
        matches!(&second, Err(Error::Locked { path: p }) if p == &path),
        "{:?}",
        second.err()
    );
    drop(first);
    // A file where the folder should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
    let msg = RocksStore::open(&file, NS)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    // A corrupt database: overwrite the manifest.
    for entry in std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("MANIFEST") {
            std::fs::write(entry.path(), b"garbage garbage garbage")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let msg = RocksStore::open(&path, NS)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn rocks_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let s = RocksStore::open(dir.path(), NS).unwrap_or_else(|e| panic!("{e}"));
        s.put("b", b"k", b"v", Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let s = RocksStore::open(dir.path(), NS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.get("b", b"k").ok().flatten(), Some(b"v".to_vec()));
}
