use super::*;
use serde_json::json;

fn f(s: &str) -> Filter {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn trigram_postings_narrow_pattern_fields_and_agree_with_the_evaluator() {
    let schema = BTreeMap::from([("title".to_owned(), FieldSchema::pattern())]);
    let mut m = MetaIndex::new(&schema, &[]);
    let words = ["alpha", "alphabet", "beta", "gamma", "delta"];
    let ids: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let title = format!("{} {}", words[i % 5], words[(i / 5) % 5]);
        m.insert(id, json!({"title": title, "other": title}));
    }
    m.insert("3", json!({"title": "rewritten"}));
    m.remove("4");
    for text in [
        r#"{"title": {"$contains": "alphab"}}"#,
        r#"{"title": {"$regex": "^gam+a del"}}"#,
        r#"{"title": {"$regex": "^beta|^delta gam"}}"#,
        r#"{"title": {"$contains": "written"}}"#,
    ] {
        let filter = f(text);
        let plan = m.plan(&filter.root);
        assert!(
            plan.as_ref().is_some_and(|c| c.len() < 30),
            "{text}: {plan:?}"
        );
        let got = m.matching(&filter, ids.iter());
        let mut want: Vec<Arc<str>> = ids
            .iter()
            .filter(|id| filter.matches(m.doc(id)))
            .map(|id| Arc::from(id.as_str()))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "{text}");
    }
    // No trigram postings for fields not declared `pattern`, nor for
    // needles shorter than a trigram, nor for patterns without literals.
    assert!(m
        .plan(&f(r#"{"other": {"$contains": "alpha"}}"#).root)
        .is_none());
    assert!(m
        .plan(&f(r#"{"title": {"$contains": "al"}}"#).root)
        .is_none());
    assert!(m
        .plan(&f(r#"{"title": {"$regex": "\\w+"}}"#).root)
        .is_none());
}

#[test]
fn the_schema_decides_what_query_metadata_answers() {
    let schema = BTreeMap::from([
        ("title".to_owned(), FieldSchema::pattern()),
        ("secret".to_owned(), FieldSchema::not_filterable()),
    ]);
    let m = MetaIndex::new(&schema, &[]);
    assert!(m
        .check_answerable(&f(r#"{"title": {"$regex": "x"}}"#))
        .is_ok());
    assert!(m
        .check_answerable(&f(r#"{"body": "x", "n": {"$gt": 1}}"#))
        .is_ok());
    for (text, field) in [
        (r#"{"body": {"$contains": "x"}}"#, "body"),
        (
            r#"{"$or": [{"a": 1}, {"body": {"$not": {"$regex": "x"}}}]}"#,
            "body",
        ),
        (r#"{"secret": 1}"#, "secret"),
        (r#"{"$not": {"secret.part": 1}}"#, "secret.part"),
    ] {
        assert!(
            matches!(m.check_answerable(&f(text)), Err(Error::NotQueryable { field: got, .. }) if got == field),
            "{text}"
        );
    }
    let bad =
        |path: &str, fs: FieldSchema| validate_schema(&BTreeMap::from([(path.to_owned(), fs)]));
    assert!(bad("title", FieldSchema::pattern()).is_ok());
    for (path, fs) in [
        ("a..b", FieldSchema::default()),
        ("", FieldSchema::default()),
        (
            "x",
            FieldSchema {
                filterable: false,
                pattern: true,
                unindexed: false,
            },
        ),
        (
            "x",
            FieldSchema {
                filterable: false,
                pattern: false,
                unindexed: true,
            },
        ),
    ] {
        assert!(
            matches!(
                bad(path, fs),
                Err(Error::InvalidParameter {
                    name: "metadata schema",
                    ..
                })
            ),
            "{path:?} {fs:?}"
        );
    }
}

#[test]
fn order_sorts_numbers_strings_booleans_then_missing() {
    let mut m = MetaIndex::new(&BTreeMap::new(), &[]);
    for (id, doc) in [
        ("a", json!({"k": 3})),
        ("b", json!({"k": "x"})),
        ("c", json!({"k": 1.5})),
        ("d", json!({"k": true})),
        ("e", json!({"k": [1]})),
        ("f", json!({})),
        ("g", json!({"k": 3.0})),
        ("h", json!({"k": null})),
    ] {
        m.insert(id, doc);
    }
    let sorted = |asc: bool| {
        let mut ids: Vec<Arc<str>> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .map(Arc::from)
            .to_vec();
        m.order(&mut ids, "k", asc).unwrap();
        ids.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("")
    };
    assert_eq!(sorted(true), "cagbdefh");
    assert_eq!(sorted(false), "dbagcefh");
    let mut ids: Vec<Arc<str>> = vec![Arc::from("a")];
    assert!(matches!(
        m.order(&mut ids, "nowhere", true),
        Err(Error::InvalidParameter {
            name: "order_by",
            ..
        })
    ));
    assert!(matches!(
        m.order(&mut ids, "k..x", true),
        Err(Error::InvalidParameter {
            name: "order_by",
            ..
        })
    ));
}

#[test]
fn postings_narrow_and_agree_with_the_evaluator() {
    let mut m = MetaIndex::new(&BTreeMap::new(), &["secret".to_owned()]);
    let ids: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        m.insert(
            id,
            json!({"t": i % 5, "tags": [format!("g{}", i % 3)], "secret": i % 2}),
        );
    }
    m.insert("7", json!({"t": 99}));
    m.remove("8");
    let filter = f(r#"{"t": {"$in": [1, 99]}, "tags": "g1"}"#);
    assert!(m.plan(&filter.root).is_some_and(|c| c.len() < 50));
    let got = m.matching(&filter, ids.iter());
    let want: Vec<Arc<str>> = {
        let mut w: Vec<Arc<str>> = ids
            .iter()
            .filter(|id| filter.matches(m.doc(id)))
            .map(|id| Arc::from(id.as_str()))
            .collect();
        w.sort_unstable();
        w
    };
    assert_eq!(got, want);
    assert!(m.plan(&f(r#"{"secret": 1}"#).root).is_none());
    assert!(m.plan(&f(r#"{"t": {"$ne": 1}}"#).root).is_none());
}
