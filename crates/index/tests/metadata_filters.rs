//! Metadata filters: the index's answers equal those of a reference
//! evaluator over plain JSON (written here, independently of the engine's),
//! filtered queries equal brute force over the matching items, the search
//! widens to return `top_k` matches, and no input makes the parser panic.

mod common;
use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use vecseal_index::{
    Error, FieldSchema, Filter, Item, MetadataQuery, Metric, QueryOptions, TrainOptions,
};

// ---------------------------------------------------------------------------
// The reference evaluator: the documented semantics, read literally.

/// Every value the dotted path reaches; arrays met on the way are entered
/// element by element (objects only).
fn reach(doc: &Value, path: &[&str]) -> Vec<Value> {
    let mut frontier = vec![doc.clone()];
    for seg in path {
        let mut next = Vec::new();
        for v in frontier {
            let mut stack = vec![v];
            while let Some(v) = stack.pop() {
                match v {
                    Value::Object(m) => next.extend(m.get(*seg).cloned()),
                    Value::Array(a) => stack.extend(a.into_iter().filter(Value::is_object)),
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    frontier
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => num(a) == num(b),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| same(p, q)))
        }
        _ => a == b,
    }
}

fn candidates(reached: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in reached {
        out.push(r.clone());
        if let Value::Array(a) = r {
            out.extend(a.iter().cloned());
        }
    }
    out
}

fn ref_eq(reached: &[Value], x: &Value) -> bool {
    (x.is_null() && reached.is_empty()) || candidates(reached).iter().any(|c| same(c, x))
}

fn ref_cond(reached: &[Value], cond: &Value) -> bool {
    let ops = match cond {
        Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => m,
        _ => return ref_eq(reached, cond),
    };
    ops.iter().all(|(op, arg)| match op.as_str() {
        "$eq" => ref_eq(reached, arg),
        "$ne" => !ref_eq(reached, arg),
        "$in" => arg
            .as_array()
            .is_some_and(|a| a.iter().any(|x| ref_eq(reached, x))),
        "$nin" => !arg
            .as_array()
            .is_some_and(|a| a.iter().any(|x| ref_eq(reached, x))),
        "$exists" => arg.as_bool() == Some(!reached.is_empty()),
        "$not" => !ref_cond(reached, arg),
        "$contains" => reached.iter().any(|r| match (r, arg) {
            (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
            (Value::Array(a), x) => a.iter().any(|e| same(e, x)),
            _ => false,
        }),
        "$regex" => {
            let re = regex::Regex::new(arg.as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
            candidates(reached)
                .iter()
                .any(|c| c.as_str().is_some_and(|s| re.is_match(s)))
        }
        "$gt" | "$gte" | "$lt" | "$lte" => candidates(reached).iter().any(|c| {
            let ord = match (c, arg) {
                (Value::Number(_), Value::Number(_)) => num(c).partial_cmp(&num(arg)),
                (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                _ => None,
            };
            ord.is_some_and(|o| match op.as_str() {
                "$gt" => o.is_gt(),
                "$gte" => o.is_ge(),
                "$lt" => o.is_lt(),
                _ => o.is_le(),
            })
        }),
        other => panic!("the reference does not know {other}"),
    })
}

fn reference(filter: &Value, doc: &Value) -> bool {
    let Value::Object(m) = filter else {
        panic!("not a filter: {filter}")
    };
    m.iter().all(|(k, v)| match k.as_str() {
        "$and" => v
            .as_array()
            .is_some_and(|a| a.iter().all(|f| reference(f, doc))),
        "$or" => v
            .as_array()
            .is_some_and(|a| a.iter().any(|f| reference(f, doc))),
        "$nor" => v
            .as_array()
            .is_some_and(|a| !a.iter().any(|f| reference(f, doc))),
        "$not" => !reference(v, doc),
        field => {
            let path: Vec<&str> = field.split('.').collect();
            ref_cond(&reach(doc, &path), v)
        }
    })
}

/// The fields declared `pattern` in the property test's index.
const PATTERN_FIELDS: [&str; 2] = ["t", "tags"];

/// Whether `query_metadata` may answer `filter`: `$contains` and `$regex`
/// only on pattern fields.
fn answerable(filter: &Value) -> bool {
    let Value::Object(m) = filter else {
        return true;
    };
    m.iter().all(|(k, v)| match k.as_str() {
        "$and" | "$or" | "$nor" => v.as_array().is_some_and(|a| a.iter().all(answerable)),
        "$not" => answerable(v),
        field => {
            fn uses_pattern(c: &Value) -> bool {
                match c {
                    Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => {
                        m.iter().any(|(op, arg)| {
                            op == "$contains"
                                || op == "$regex"
                                || (op == "$not" && uses_pattern(arg))
                        })
                    }
                    _ => false,
                }
            }
            !uses_pattern(v) || PATTERN_FIELDS.contains(&field)
        }
    })
}

/// The documented order of `query_metadata`: numbers, strings, booleans;
/// items not reaching exactly one scalar last; ties by id.
fn reference_order(
    model: &BTreeMap<String, (Vec<f32>, Option<Value>)>,
    ids: &mut [String],
    field: &str,
    ascending: bool,
) {
    let empty = json!({});
    let path: Vec<&str> = field.split('.').collect();
    let rank = |v: &Value| -> Option<(u8, Value)> {
        match v {
            Value::Number(_) => Some((0, v.clone())),
            Value::String(_) => Some((1, v.clone())),
            Value::Bool(_) => Some((2, v.clone())),
            _ => None,
        }
    };
    let key = |id: &String| {
        let doc = model[id].1.as_ref().unwrap_or(&empty);
        match reach(doc, &path).as_slice() {
            [one] => rank(one),
            _ => None,
        }
    };
    let cmp_vals = |a: &(u8, Value), b: &(u8, Value)| {
        a.0.cmp(&b.0).then_with(|| match (&a.1, &b.1) {
            (Value::Number(_), Value::Number(_)) => num(&a.1)
                .partial_cmp(&num(&b.1))
                .unwrap_or(std::cmp::Ordering::Equal),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        })
    };
    ids.sort_by(|a, b| {
        let by_key = match (key(a), key(b)) {
            (Some(x), Some(y)) if ascending => cmp_vals(&x, &y),
            (Some(x), Some(y)) => cmp_vals(&y, &x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_key.then_with(|| a.cmp(b))
    });
}

// ---------------------------------------------------------------------------
// Random documents and filters.

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..5).prop_map(|i| json!(i)),
        (0i64..5).prop_map(|i| json!(i as f64)),
        Just(json!(2.5)),
        prop::sample::select(vec![
            "a",
            "b",
            "c",
            "alpha",
            "alphabet",
            "beta",
            "gamma ray"
        ])
        .prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ]
}

fn doc() -> impl Strategy<Value = Option<Value>> {
    let fields = (
        proptest::option::of(scalar()),
        proptest::option::of(scalar()),
        proptest::option::of(proptest::collection::vec(scalar(), 0..3)),
        proptest::option::of(scalar()),
        proptest::option::of(proptest::collection::vec(scalar(), 0..3)),
    );
    proptest::option::weighted(
        0.9,
        fields.prop_map(|(n, t, tags, city, ks)| {
            let mut m = serde_json::Map::new();
            n.map(|v| m.insert("n".into(), v));
            t.map(|v| m.insert("t".into(), v));
            tags.map(|v| m.insert("tags".into(), Value::Array(v)));
            city.map(|v| m.insert("loc".into(), json!({ "city": v })));
            ks.map(|v| {
                m.insert(
                    "arr".into(),
                    Value::Array(v.into_iter().map(|k| json!({ "k": k })).collect()),
                )
            });
            Value::Object(m)
        }),
    )
}

fn condition() -> impl Strategy<Value = Value> {
    let ordered = prop_oneof![
        (0i64..5).prop_map(|i| json!(i)),
        Just(json!(2.5)),
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| json!(s)),
    ];
    let cmp = prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]);
    let list = || proptest::collection::vec(scalar(), 0..3);
    prop_oneof![
        scalar(),
        scalar().prop_map(|v| json!({ "$eq": v })),
        scalar().prop_map(|v| json!({ "$ne": v })),
        (cmp.clone(), ordered.clone()).prop_map(|(op, v)| json!({ op: v })),
        (cmp.clone(), ordered.clone()).prop_map(|(op, v)| json!({ "$not": { op: v } })),
        ((0i64..3), (2i64..6)).prop_map(|(a, b)| json!({ "$gte": a, "$lt": b })),
        list().prop_map(|v| json!({ "$in": v })),
        list().prop_map(|v| json!({ "$nin": v })),
        any::<bool>().prop_map(|b| json!({ "$exists": b })),
        proptest::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        scalar()
            .prop_map(|v| json!({ "$contains": v }))
            .prop_filter("$contains needs a non-null value", |c| !c["$contains"]
                .is_null()),
        prop::sample::select(vec!["alph", "pha", "bet", "a r", "al", "b"])
            .prop_map(|s| json!({ "$contains": s })),
        prop::sample::select(vec![
            "^alpha",
            "bet$",
            "alpha|beta",
            "ph.b",
            "^[ab]$",
            "mm",
            "a r+"
        ])
        .prop_map(|p| json!({ "$regex": p })),
        prop::sample::select(vec!["alpha", "^b"]).prop_map(|p| json!({ "$not": { "$regex": p } })),
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec!["n", "t", "tags", "loc.city", "loc", "arr.k", "gone"]);
    let leaf = (path, condition()).prop_map(|(p, c)| json!({ p: c }));
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "$and": v })),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "$or": v })),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "$nor": v })),
            inner.prop_map(|f| json!({ "$not": f })),
        ]
    })
}

fn parse(f: &Value) -> Filter {
    Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"))
}

fn vec_of(i: usize) -> Vec<f32> {
    vec![(i % 7) as f32, (i % 11) as f32 * 0.5, (i / 7) as f32 * 0.25]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// query_metadata and filtered exact queries agree with the reference,
    /// after overwrites and deletes too.
    #[test]
    fn index_agrees_with_the_reference(
        docs in proptest::collection::vec(doc(), 1..40),
        rewrites in proptest::collection::vec((0usize..40, doc()), 0..8),
        deletes in proptest::collection::vec(0usize..40, 0..5),
        filters in proptest::collection::vec(filter(), 1..6),
        top_k in 1usize..8,
        order in proptest::option::of((
            prop::sample::select(vec!["n", "t", "loc.city", "tags", "gone"]),
            any::<bool>(),
        )),
        limit in proptest::option::of(1usize..10),
    ) {
        let (db, _store) = test_db();
        let mut config = config().with_metric(Metric::SquaredEuclidean);
        for f in PATTERN_FIELDS {
            config = config.with_field(f, FieldSchema::pattern());
        }
        let index = db.create_index("t", owner(1), config).unwrap_or_else(|e| panic!("{e}"));
        let mut model: BTreeMap<String, (Vec<f32>, Option<Value>)> = BTreeMap::new();
        let mut put = |i: usize, d: Option<Value>| {
            let id = format!("{i:02}");
            let mut item = Item::new(id.clone(), vec_of(i));
            if let Some(d) = &d {
                item = item.with_metadata(d.clone());
            }
            index.upsert(vec![item]).unwrap_or_else(|e| panic!("{e}"));
            model.insert(id, (vec_of(i), d));
        };
        for (i, d) in docs.into_iter().enumerate() {
            put(i, d);
        }
        for (i, d) in rewrites {
            put(i, d);
        }
        let gone: Vec<String> = deletes.iter().map(|i| format!("{i:02}")).collect();
        index.delete(&gone).unwrap_or_else(|e| panic!("{e}"));
        for g in &gone {
            model.remove(g);
        }
        let empty = json!({});
        for f in &filters {
            let want: Vec<String> = model
                .iter()
                .filter(|(_, (_, d))| reference(f, d.as_ref().unwrap_or(&empty)))
                .map(|(id, _)| id.clone())
                .collect();
            let mut opts = MetadataQuery { limit, ..MetadataQuery::default() };
            if let Some((field, ascending)) = order {
                opts = opts.with_order_by(field, ascending);
            }
            let got = index.query_metadata(&parse(f), &opts);
            let known = order.is_none_or(|(field, _)| {
                let path: Vec<&str> = field.split('.').collect();
                model.values().any(|(_, d)| d.as_ref().is_some_and(|d| !reach(d, &path).is_empty()))
            });
            if !answerable(f) {
                prop_assert!(matches!(got, Err(Error::NotQueryable { .. })), "filter {}: {:?}", f, got);
            } else if !known && !want.is_empty() {
                prop_assert!(matches!(got, Err(Error::InvalidParameter { name: "order_by", .. })), "{:?}", got);
            } else {
                let got = got.unwrap_or_else(|e| panic!("{f}: {e}"));
                let mut ordered = want.clone();
                if let Some((field, ascending)) = order {
                    reference_order(&model, &mut ordered, field, ascending);
                }
                ordered.truncate(limit.unwrap_or(usize::MAX));
                prop_assert_eq!(got.count, want.len(), "filter {}", f);
                prop_assert_eq!(&got.ids, &ordered, "filter {} order {:?}", f, order);
            }

            let q = [1.5f32, 2.0, 0.75];
            let opts = QueryOptions::default().with_top_k(top_k).with_filter(parse(f));
            let hits = index.query(&[q.to_vec()], &opts).unwrap_or_else(|e| panic!("{e}"));
            let data: Vec<(String, Vec<f32>)> =
                want.iter().map(|id| (id.clone(), model[id].0.clone())).collect();
            let brute_ids = brute(&data, &q, top_k);
            let got_ids: Vec<String> = hits[0].iter().map(|h| h.id.clone()).collect();
            prop_assert_eq!(&got_ids, &brute_ids, "filter {}", f);
            for h in &hits[0] {
                prop_assert_eq!(h.distance, Some(sq(&q, &model[&h.id].0)));
            }
        }
    }

    /// No JSON value makes the parser panic, and what parses evaluates.
    #[test]
    fn parser_never_panics_on_json(v in arbitrary_json()) {
        if let Ok(f) = Filter::parse(&v) {
            let _ = f.matches(&json!({"a": [1, {"b": "x"}], "c": null}));
        }
    }

    /// No text makes the parser panic.
    #[test]
    fn parser_never_panics_on_text(s in "\\PC{0,60}") {
        let _ = s.parse::<Filter>();
    }

    /// Mutated filters with wrong operators or arguments fail cleanly, and
    /// the error names the offending operator.
    #[test]
    fn unknown_operators_are_named(op in "\\$[a-z]{1,8}", path in "[a-z]{1,4}") {
        let known = [
            "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$contains",
            "$regex",
        ];
        prop_assume!(!known.contains(&op.as_str()));
        let err = Filter::parse(&json!({ path.clone(): { op.clone(): 1 } }))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        prop_assert!(err.contains(&op) && err.contains(&format!("$.{path}")), "{}", err);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "a",
        "b.c",
        "$and",
        "$or",
        "$nor",
        "$not",
        "$eq",
        "$ne",
        "$gt",
        "$in",
        "$nin",
        "$exists",
        "$lt",
        "$contains",
        "$regex",
        "$bad",
        "",
        "a..b",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        "[a-z$]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A trained index: selective filters are exact; broad filters on a few
/// probes still return `top_k` matches (the search widens) with exact
/// distances; at n_probes = n_lists results equal brute force; metadata
/// survives reloading the index.
#[test]
fn filters_on_a_trained_index() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::SquaredEuclidean);
    let n = 12_000;
    let vectors = clustered(n, 8, 40, 7);
    let ids = ids(n);
    let items: Vec<Item> = ids
        .iter()
        .zip(&vectors)
        .enumerate()
        .map(|(i, (id, v))| {
            Item::new(id.clone(), v.clone()).with_metadata(json!({
                "tenant": i % 100,
                "tag": if i.is_multiple_of(2) { "even" } else { "odd" },
                "score": i % 1000,
            }))
        })
        .collect();
    index.upsert(items).unwrap_or_else(|e| panic!("{e}"));
    index
        .train(&TrainOptions::default().with_n_lists(60).with_seed(3))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(index);
    let index = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<(String, Vec<f32>)> = ids.iter().cloned().zip(vectors.iter().cloned()).collect();
    let queries = clustered(20, 8, 40, 99);
    let top_k = 20;
    for (text, pred, probes) in [
        (
            r#"{"tenant": 7}"#,
            &(|i: usize| i % 100 == 7) as &dyn Fn(usize) -> bool,
            2,
        ),
        (r#"{"score": {"$lt": 5}}"#, &|i: usize| i % 1000 < 5, 2),
        (r#"{"tag": "even"}"#, &|i: usize| i.is_multiple_of(2), 60),
        (
            r#"{"tenant": {"$in": [1, 2, 3]}}"#,
            &|i: usize| (1..=3).contains(&(i % 100)),
            60,
        ),
        (
            r#"{"tenant": {"$in": [1, 2, 3]}}"#,
            &|i: usize| (1..=3).contains(&(i % 100)),
            1,
        ),
        (
            r#"{"tag": "odd", "score": {"$gte": 990}}"#,
            &|i: usize| i % 2 == 1 && i % 1000 >= 990,
            1,
        ),
        (r#"{"score": 3}"#, &|i: usize| i % 1000 == 3, 1),
    ] {
        let filter: Filter = text.parse().unwrap_or_else(|e| panic!("{e}"));
        let matching: Vec<(String, Vec<f32>)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| pred(*i))
            .map(|(_, x)| x.clone())
            .collect();
        let opts = QueryOptions::default()
            .with_top_k(top_k)
            .with_n_probes(probes)
            .with_filter(filter.clone());
        let hits = index
            .query(&queries, &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        for (q, h) in queries.iter().zip(&hits) {
            assert_eq!(
                h.len(),
                top_k.min(matching.len()),
                "{text} n_probes={probes}"
            );
            let by_id: BTreeMap<&str, &Vec<f32>> =
                matching.iter().map(|(i, v)| (i.as_str(), v)).collect();
            for hit in h {
                let v = by_id
                    .get(hit.id.as_str())
                    .unwrap_or_else(|| panic!("{text}: {} does not match", hit.id));
                assert_eq!(hit.distance, Some(sq(q, v)));
            }
            let sorted = h.windows(2).all(|w| w[0].distance <= w[1].distance);
            assert!(sorted, "{text}: hits are not sorted");
            let exact = brute(&matching, q, top_k);
            let got: Vec<String> = h.iter().map(|x| x.id.clone()).collect();
            // Exhaustive probing, or no more matches than top_k (the search
            // widens to every list), must give exactly brute force.
            if probes == 60 || matching.len() <= top_k {
                assert_eq!(got, exact, "{text} n_probes={probes}");
            }
        }
        let ids_only = index
            .query_metadata(&filter, &MetadataQuery::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut want: Vec<String> = matching.into_iter().map(|(i, _)| i).collect();
        want.sort();
        assert_eq!(ids_only.ids, want, "{text}");
        assert_eq!(ids_only.count, want.len(), "{text}");
    }
    let limited = index
        .query_metadata(
            &r#"{"tenant": 5}"#.parse().unwrap_or_else(|e| panic!("{e}")),
            &MetadataQuery::default()
                .with_limit(3)
                .with_order_by("score", false),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // Score 905 is the highest among tenant 5 (12 items); ties by id.
    assert_eq!(limited.ids, ["item-10905", "item-11905", "item-1905"]);
    assert_eq!(limited.count, 120);
}
