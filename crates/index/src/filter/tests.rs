use super::*;
use serde_json::json;

fn f(s: &str) -> Filter {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn operators_follow_the_documented_semantics() {
    let doc = json!({"n": 5, "s": "b", "tags": ["x", "y"], "loc": {"city": "Oslo"},
                     "arr": [{"k": 1}, {"k": 2}], "z": null});
    for (filter, want) in [
        (r#"{}"#, true),
        (r#"{"n": 5.0}"#, true),
        (r#"{"n": {"$gt": 4, "$lt": 6}}"#, true),
        (r#"{"n": {"$gte": 6}}"#, false),
        (r#"{"n": {"$gt": "a"}}"#, false),
        (r#"{"s": {"$lt": "c"}}"#, true),
        (r#"{"tags": "y"}"#, true),
        (r#"{"tags": ["x", "y"]}"#, true),
        (r#"{"tags": {"$nin": ["y"]}}"#, false),
        (r#"{"tags": {"$in": ["q", "x"]}}"#, true),
        (r#"{"loc.city": "Oslo"}"#, true),
        (r#"{"loc": {"city": "Oslo"}}"#, true),
        (r#"{"arr.k": 2}"#, true),
        (r#"{"arr.k": {"$gt": 2}}"#, false),
        (r#"{"missing": null}"#, true),
        (r#"{"z": null}"#, true),
        (r#"{"z": {"$exists": true}}"#, true),
        (r#"{"missing": {"$exists": true}}"#, false),
        (r#"{"missing": {"$ne": 1}}"#, true),
        (r#"{"n": {"$not": {"$gt": 9}}}"#, true),
        (r#"{"$not": {"n": 5}}"#, false),
        (r#"{"$or": [{"n": 1}, {"s": "b"}]}"#, true),
        (r#"{"$and": [{"n": 5}, {"s": "a"}]}"#, false),
    ] {
        assert_eq!(f(filter).matches(&doc), want, "{filter}");
    }
}

#[test]
fn errors_name_the_operator_and_its_position() {
    let long = format!(
        r#"{{"a": {{"$regex": "{}"}}}}"#,
        "x".repeat(MAX_REGEX_BYTES + 1)
    );
    for (text, needle) in [
        (r#"{"a": {"$regex": 5}}"#, "$.a.$regex"),
        (r#"{"a": {"$regex": 5}}"#, "needs a string pattern"),
        (r#"{"a": {"$regex": "(unclosed"}}"#, "invalid $regex"),
        (
            r#"{"a": {"$regex": "(?=x)y"}}"#,
            "no lookaround or backreferences",
        ),
        (
            r#"{"a": {"$regex": "(a)\\1"}}"#,
            "no lookaround or backreferences",
        ),
        (
            r#"{"a": {"$regex": "\\w{1000}{1000}"}}"#,
            "compiles to more than",
        ),
        (long.as_str(), "at most 1024"),
        (r#"{"a": {"$contains": null}}"#, "$contains needs"),
        (r#"{"a": {"$contains": {"b": 1}}}"#, "$.a.$contains"),
        (
            r#"{"$and": [{"a": 1}, {"b": {"$gt": null}}]}"#,
            "$.$and[1].b.$gt",
        ),
        (r#"{"$nor": []}"#, "$nor needs at least one"),
        (r#"{"a": {"$in": 3}}"#, "$in needs an array"),
        (r#"{"a": {"$eq": 1, "b": 2}}"#, "cannot mix"),
        (r#"{"$or": []}"#, "at least one"),
        (r#"[1]"#, "expected a JSON object"),
        (r#"{"a..b": 1}"#, "empty segment"),
        (r#"{"a": "#, "not JSON"),
    ] {
        let err = text.parse::<Filter>().err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(needle)),
            "{text}: {err:?} should mention {needle}"
        );
    }
}

#[test]
fn contains_regex_and_nor_follow_the_documented_semantics() {
    let doc = json!({"title": "Encrypted vector search", "tags": ["rust", "crypto"],
                     "n": 42, "loc": {"city": "Oslo"}, "arr": [{"k": "alpha"}]});
    for (filter, want) in [
        (r#"{"title": {"$contains": "vector"}}"#, true),
        (r#"{"title": {"$contains": "Vector"}}"#, false),
        (r#"{"tags": {"$contains": "rust"}}"#, true),
        // Strings inside arrays are compared whole.
        (r#"{"tags": {"$contains": "rus"}}"#, false),
        (r#"{"n": {"$contains": 42}}"#, false),
        (r#"{"title": {"$regex": "vec.or"}}"#, true),
        (r#"{"title": {"$regex": "^vector"}}"#, false),
        (r#"{"title": {"$regex": "(?i)^encrypted"}}"#, true),
        (r#"{"tags": {"$regex": "^cry"}}"#, true),
        (r#"{"n": {"$regex": "4"}}"#, false),
        (r#"{"loc.city": {"$regex": "^Os"}}"#, true),
        (r#"{"arr.k": {"$contains": "lph"}}"#, true),
        (r#"{"missing": {"$regex": ".*"}}"#, false),
        (r#"{"$nor": [{"n": 1}, {"tags": "go"}]}"#, true),
        (r#"{"$nor": [{"n": 42}]}"#, false),
    ] {
        assert_eq!(f(filter).matches(&doc), want, "{filter}");
    }
}
