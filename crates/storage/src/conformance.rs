//! One conformance suite, run against every engine.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::{Durability, Error, MemStore, RocksStore, Store, WriteBatch};

const NS: &[&str] = &["a", "b"];

fn engines() -> Vec<(Box<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rocks = RocksStore::open(dir.path().join("db"), NS).unwrap_or_else(|e| panic!("{e}"));
    vec![
        (Box::new(MemStore::new(NS)), None),
        (Box::new(rocks), Some(dir)),
    ]
}

fn each(f: impl Fn(&dyn Store)) {
    for (store, _dir) in engines() {
        f(store.as_ref());
    }
}

fn collect(store: &dyn Store, ns: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(ns, prefix)
        .and_then(|s| s.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn put_get_delete() {
    each(|s| {
        s.put("a", b"k", b"v", Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.get("a", b"k").ok().flatten(), Some(b"v".to_vec()));
        assert_eq!(s.get("b", b"k").ok().flatten(), None);
        let mut seen = Vec::new();
        let found = s.read_with("a", b"k", &mut |v| seen.extend_from_slice(v));
        assert_eq!((found.ok(), seen), (Some(true), b"v".to_vec()));
        let found = s.read_with("b", b"k", &mut |_| panic!("no value to read"));
        assert_eq!(found.ok(), Some(false));
        s.delete("a", b"k", Durability::Buffered)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.get("a", b"k").ok().flatten(), None);
        let got = s.multi_get("a", &[b"x", b"k"]).unwrap_or_default();
        assert_eq!(got, vec![None, None]);
    });
}

#[test]
fn batches_are_atomic_across_namespaces() {
    each(|s| {
        let mut b = WriteBatch::new();
        b.put("a", b"1", b"x");
        b.put("b", b"1", b"y");
        s.write(b, Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.multi_get("b", &[b"1"]).unwrap_or_default(),
            vec![Some(b"y".to_vec())]
        );
        // A batch naming an unknown namespace applies nothing.
        let mut bad = WriteBatch::new();
        bad.put("a", b"2", b"x");
        bad.put("nope", b"2", b"x");
        assert!(matches!(
            s.write(bad, Durability::Sync),
            Err(Error::UnknownNamespace { .. })
        ));
        assert_eq!(s.get("a", b"2").ok().flatten(), None);
    });
}

#[test]
fn prefix_scans_are_ordered_and_bounded() {
    each(|s| {
        let mut b = WriteBatch::new();
        for k in [&b"p/2"[..], b"p/1", b"q/1", b"p/10", b"o"] {
            b.put("a", k, k);
        }
        s.write(b, Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<Vec<u8>> = collect(s, "a", b"p/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![b"p/1".to_vec(), b"p/10".to_vec(), b"p/2".to_vec()]
        );
        assert_eq!(collect(s, "a", b"").len(), 5);
        assert!(collect(s, "b", b"").is_empty());
    });
}

#[test]
fn snapshots_do_not_see_later_writes() {
    each(|s| {
        s.put("a", b"k1", b"old", Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        let snap = s.snapshot().unwrap_or_else(|e| panic!("{e}"));
        s.put("a", b"k1", b"new", Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        s.put("a", b"k2", b"new", Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(snap.get("a", b"k1").ok().flatten(), Some(b"old".to_vec()));
        let n = snap
            .scan_prefix("a", b"k")
            .map(|it| it.count())
            .unwrap_or(0);
        assert_eq!(n, 1);
        assert_eq!(s.get("a", b"k1").ok().flatten(), Some(b"new".to_vec()));
    });
}

#[test]
fn unknown_namespace_names_the_known_ones() {
    each(|s| {
        let msg = s
            .get("zz", b"k")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("zz") && msg.contains("\"a\""), "{msg}");
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

#[derive(Debug, Clone)]
enum ModelOp {
    Put(bool, u8, Vec<u8>),
    Delete(bool, u8),
    Batch(Vec<(bool, u8, Option<Vec<u8>>)>),
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    let val = proptest::collection::vec(any::<u8>(), 0..16);
    prop_oneof![
        (any::<bool>(), 0u8..16, val.clone()).prop_map(|(n, k, v)| ModelOp::Put(n, k, v)),
        (any::<bool>(), 0u8..16).prop_map(|(n, k)| ModelOp::Delete(n, k)),
        proptest::collection::vec((any::<bool>(), 0u8..16, proptest::option::of(val)), 0..6)
            .prop_map(ModelOp::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn engines_match_a_btreemap_model(ops in proptest::collection::vec(model_op(), 1..40)) {
        for (store, _dir) in engines() {
            let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
            let ns = |b: bool| if b { "b" } else { "a" };
            for op in &ops {
                match op {
                    ModelOp::Put(n, k, v) => {
                        store.put(ns(*n), &[b'k', *k], v, Durability::Buffered).unwrap_or_else(|e| panic!("{e}"));
                        model[usize::from(*n)].insert(vec![b'k', *k], v.clone());
                    }
                    ModelOp::Delete(n, k) => {
                        store.delete(ns(*n), &[b'k', *k], Durability::Buffered).unwrap_or_else(|e| panic!("{e}"));
                        model[usize::from(*n)].remove(&vec![b'k', *k]);
                    }
                    ModelOp::Batch(items) => {
                        let mut b = WriteBatch::new();
                        for (n, k, v) in items {
                            match v {
                                Some(v) => { b.put(ns(*n), &[b'k', *k], v); model[usize::from(*n)].insert(vec![b'k', *k], v.clone()); }
                                None => { b.delete(ns(*n), &[b'k', *k]); model[usize::from(*n)].remove(&vec![b'k', *k]); }
                            }
                        }
                        store.write(b, Durability::Buffered).unwrap_or_else(|e| panic!("{e}"));
                    }
                }
            }
            for n in [false, true] {
                let got = collect(store.as_ref(), ns(n), b"k");
                let want: Vec<_> = model[usize::from(n)].clone().into_iter().collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
