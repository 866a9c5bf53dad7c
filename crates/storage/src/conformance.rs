//! The conformance suite every engine must pass: point reads and writes,
//! atomic batches across namespaces, ordered and bounded prefix scans that
//! cross pages, snapshots, errors that name the known namespaces, and a
//! model check against a `BTreeMap` under random operations.
//!
//! Engines run it with [`check`] (this crate on its memory store and on
//! RocksDB; the PostgreSQL engine in its own crate, with the `conformance`
//! feature):
//!
//! ```ignore
//! vecseal_storage::conformance::check(&|| (Box::new(MemStore::new(NS)), None));
//! ```

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::{Durability, Error, Expect, Store, WriteBatch};

/// The namespaces the suite's stores must be opened with.
pub const NS: &[&str] = &["a", "b"];

/// A fresh engine opened with [`NS`], and what must outlive it (its
/// folder, its schema).
pub type Engine = (Box<dyn Store>, Option<Box<dyn std::any::Any>>);

/// Runs every check, each on a fresh engine from `make`; panics with the
/// check's message on the first failure.
pub fn check(make: &dyn Fn() -> Engine) {
    type Check = fn(&dyn Store);
    let checks: [(&str, Check); 8] = [
        ("put_get_delete", put_get_delete),
        (
            "batches_are_atomic_across_namespaces",
            batches_are_atomic_across_namespaces,
        ),
        (
            "prefix_scans_are_ordered_and_bounded",
            prefix_scans_are_ordered_and_bounded,
        ),
        ("scans_cross_pages_in_order", scans_cross_pages_in_order),
        (
            "snapshots_do_not_see_later_writes",
            snapshots_do_not_see_later_writes,
        ),
        (
            "unknown_namespace_names_the_known_ones",
            unknown_namespace_names_the_known_ones,
        ),
        (
            "conditional_writes_apply_only_when_the_value_matches",
            conditional_writes_apply_only_when_the_value_matches,
        ),
        (
            "conditional_writes_lose_no_increment_under_contention",
            conditional_writes_lose_no_increment_under_contention,
        ),
    ];
    for (name, f) in checks {
        eprintln!("conformance: {name}");
        let (store, _guard) = make();
        f(store.as_ref());
    }
    eprintln!("conformance: matches_a_btreemap_model");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(32));
    let result = runner.run(&proptest::collection::vec(model_op(), 1..40), |ops| {
        let (store, _guard) = make();
        matches_a_btreemap_model(store.as_ref(), &ops)
    });
    if let Err(e) = result {
        panic!("conformance: matches_a_btreemap_model: {e}");
    }
}

fn collect(store: &dyn Store, ns: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(ns, prefix)
        .and_then(|s| s.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn scans_cross_pages_in_order(s: &dyn Store) {
    // More entries and more bytes than a page of any engine (PostgreSQL
    // pages 128 entries or about 8 MiB), with a prefix that splits them.
    {
        let value = |i: u32| vec![(i % 251) as u8; 40 << 10];
        for chunk in (0..300u32).collect::<Vec<_>>().chunks(50) {
            let mut b = WriteBatch::new();
            for &i in chunk {
                b.put(
                    "a",
                    &[&[(i % 2) as u8][..], &i.to_be_bytes()].concat(),
                    &value(i),
                );
            }
            s.write(b, Durability::Buffered)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for (prefix, parity) in [(&[0u8][..], 0), (&[1u8][..], 1)] {
            let got = collect(s, "a", prefix);
            let want: Vec<u32> = (0..300).filter(|i| i % 2 == parity).collect();
            assert_eq!(got.len(), want.len());
            for ((k, v), i) in got.iter().zip(want) {
                assert_eq!(k, &[&[parity as u8][..], &i.to_be_bytes()].concat());
                assert!(v == &value(i));
            }
        }
        assert_eq!(collect(s, "a", b"").len(), 300);
    }
}

fn put_get_delete(s: &dyn Store) {
    {
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
    }
}

fn batches_are_atomic_across_namespaces(s: &dyn Store) {
    {
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
    }
}

fn prefix_scans_are_ordered_and_bounded(s: &dyn Store) {
    {
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
    }
}

fn snapshots_do_not_see_later_writes(s: &dyn Store) {
    {
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
    }
}

fn unknown_namespace_names_the_known_ones(s: &dyn Store) {
    {
        let msg = s
            .get("zz", b"k")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("zz") && msg.contains("\"a\""), "{msg}");
    }
}

fn conditional_writes_apply_only_when_the_value_matches(s: &dyn Store) {
    let cas = |value: Option<&[u8]>, put: &[u8]| {
        let mut b = WriteBatch::new();
        b.put("a", b"state", put);
        b.put("b", put, b"written");
        let expect = Expect {
            ns: "a",
            key: b"state",
            value,
        };
        s.write_if(expect, b, Durability::Sync)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(cas(None, b"v1"), "expecting an absent key that is absent");
    assert!(!cas(None, b"v2"), "expecting an absent key that is present");
    assert!(
        !cas(Some(b"v0"), b"v3"),
        "expecting a value it does not hold"
    );
    assert!(cas(Some(b"v1"), b"v4"), "expecting the value it holds");
    assert_eq!(s.get("a", b"state").ok().flatten(), Some(b"v4".to_vec()));
    // A refused batch wrote nothing, in any namespace.
    for (k, written) in [
        (&b"v1"[..], true),
        (b"v2", false),
        (b"v3", false),
        (b"v4", true),
    ] {
        assert_eq!(s.get("b", k).ok().flatten().is_some(), written, "{k:?}");
    }
    // An unknown namespace in the condition is an error, not a refusal.
    let expect = Expect {
        ns: "nope",
        key: b"k",
        value: None,
    };
    assert!(matches!(
        s.write_if(expect, WriteBatch::new(), Durability::Sync),
        Err(Error::UnknownNamespace { .. })
    ));
}

/// Threads increment one counter by read, compare-and-swap, retry: none
/// of their increments is lost.
fn conditional_writes_lose_no_increment_under_contention(s: &dyn Store) {
    const THREADS: u64 = 4;
    const EACH: u64 = 25;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    loop {
                        let now = s.get("a", b"n").unwrap_or_else(|e| panic!("{e}"));
                        let n = now.as_deref().map_or(0, |v| {
                            u64::from_le_bytes(v.try_into().unwrap_or_else(|_| panic!("{v:?}")))
                        });
                        let mut b = WriteBatch::new();
                        b.put("a", b"n", &(n + 1).to_le_bytes());
                        let expect = Expect {
                            ns: "a",
                            key: b"n",
                            value: now.as_deref(),
                        };
                        if s.write_if(expect, b, Durability::Buffered)
                            .unwrap_or_else(|e| panic!("{e}"))
                        {
                            break;
                        }
                    }
                }
            });
        }
    });
    let n = s.get("a", b"n").ok().flatten();
    assert_eq!(n, Some((THREADS * EACH).to_le_bytes().to_vec()));
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

fn matches_a_btreemap_model(
    store: &dyn Store,
    ops: &[ModelOp],
) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
    let ns = |b: bool| if b { "b" } else { "a" };
    for op in ops {
        match op {
            ModelOp::Put(n, k, v) => {
                store
                    .put(ns(*n), &[b'k', *k], v, Durability::Buffered)
                    .unwrap_or_else(|e| panic!("{e}"));
                model[usize::from(*n)].insert(vec![b'k', *k], v.clone());
            }
            ModelOp::Delete(n, k) => {
                store
                    .delete(ns(*n), &[b'k', *k], Durability::Buffered)
                    .unwrap_or_else(|e| panic!("{e}"));
                model[usize::from(*n)].remove(&vec![b'k', *k]);
            }
            ModelOp::Batch(items) => {
                let mut b = WriteBatch::new();
                for (n, k, v) in items {
                    match v {
                        Some(v) => {
                            b.put(ns(*n), &[b'k', *k], v);
                            model[usize::from(*n)].insert(vec![b'k', *k], v.clone());
                        }
                        None => {
                            b.delete(ns(*n), &[b'k', *k]);
                            model[usize::from(*n)].remove(&vec![b'k', *k]);
                        }
                    }
                }
                store
                    .write(b, Durability::Buffered)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    for n in [false, true] {
        let got = collect(store, ns(n), b"k");
        let want: Vec<_> = model[usize::from(n)].clone().into_iter().collect();
        prop_assert_eq!(got, want);
        // Every key at once, last first and one twice: in the order asked.
        let keys: Vec<[u8; 2]> = (0..16u8).rev().chain([3]).map(|k| [b'k', k]).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let got = store
            .multi_get(ns(n), &refs)
            .unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<_> = keys
            .iter()
            .map(|k| model[usize::from(n)].get(&k[..]).cloned())
            .collect();
        prop_assert_eq!(got, want);
    }
    Ok(())
}
