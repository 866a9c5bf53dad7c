//! Metadata filters: a MongoDB-style JSON language, its evaluator, and the
//! in-memory metadata index whose equality postings make selective filters
//! fast.
//!
//! # Semantics
//!
//! A filter is a JSON object. Each key is either a field path (dot-separated,
//! `"loc.city"`) with a condition, or one of the logical operators `$and`,
//! `$or` (non-empty arrays of filters) and `$not` (a filter). Several keys in
//! one object must all hold. A condition is either a plain value (implicit
//! `$eq`) or an object of operators, all of which must hold: `$eq $ne $gt $gte
//! $lt $lte $in $nin $exists $not`.
//!
//! A path walks through objects; at an array it continues into each element
//! that is an object. The values it reaches, and the elements of those that
//! are arrays, are the field's *candidates*; a condition holds when any
//! candidate satisfies it, so an array field matches if any element matches.
//! Numbers compare by value (`1` equals `1.0`). `$gt $gte $lt $lte` compare
//! numbers with numbers and strings with strings (by bytes); other pairs never
//! match. `{"f": null}` (and `null` in `$in`) also matches items without `f`.
//! `$ne` and `$nin` are the negations of `$eq` and `$in`, so they match items
//! without the field. `$exists: true` holds when the path reaches any value,
//! `null` included. An item without metadata is the empty object.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

use crate::{Error, Result};

/// A parsed metadata filter; see the [module docs](self) for the language.
///
/// ```
/// use vecseal_index::Filter;
/// let f: Filter = r#"{"tenant": 42, "year": {"$gte": 2024}, "tags": {"$in": ["a", "b"]}}"#
///     .parse()
///     .unwrap();
/// assert!(f.matches(&serde_json::json!({"tenant": 42, "year": 2025, "tags": ["b", "c"]})));
/// assert!(!f.matches(&serde_json::json!({"tenant": 42, "year": 2023, "tags": ["a"]})));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Field(Vec<String>, Cond),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cond {
    Eq(Value),
    Ne(Value),
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Not(Box<Cond>),
    All(Vec<Cond>),
}

const OPERATORS: &str = "$and, $or, $not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists";

fn bad(position: &str, reason: impl Into<String>) -> Error {
    Error::BadFilter {
        position: position.to_owned(),
        reason: reason.into(),
    }
}

impl Filter {
    /// Parses a filter from JSON. Errors name the operator or field and its
    /// position (a path from the filter root, like `$.$and[1].price.$gt`).
    pub fn parse(json: &Value) -> Result<Self> {
        Ok(Self {
            root: parse_doc(json, "$")?,
        })
    }

    /// Whether an item's metadata (a JSON object; anything else counts as
    /// the empty object) matches.
    pub fn matches(&self, metadata: &Value) -> bool {
        eval(&self.root, metadata)
    }
}

impl FromStr for Filter {
    type Err = Error;
    /// Parses JSON text, then the filter.
    fn from_str(s: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(s).map_err(|e| {
            bad(
                &format!("line {} column {}", e.line(), e.column()),
                format!("not JSON: {e}"),
            )
        })?;
        Self::parse(&v)
    }
}

fn parse_doc(v: &Value, pos: &str) -> Result<Node> {
    let Value::Object(m) = v else {
        return Err(bad(pos, format!("expected a JSON object, got {v}")));
    };
    let mut all = Vec::with_capacity(m.len());
    for (k, val) in m {
        let here = format!("{pos}.{k}");
        match k.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = val else {
                    return Err(bad(
                        &here,
                        format!("{k} needs an array of filters, got {val}"),
                    ));
                };
                if items.is_empty() {
                    return Err(bad(&here, format!("{k} needs at least one filter")));
                }
                let children = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| parse_doc(c, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                all.push(if k == "$and" {
                    Node::And(children)
                } else {
                    Node::Or(children)
                });
            }
            "$not" => all.push(Node::Not(Box::new(parse_doc(val, &here)?))),
            op if op.starts_with('$') => {
                return Err(bad(
                    &here,
                    format!("unknown operator {op:?} at the top of a filter; expected $and, $or, $not or a field path"),
                ));
            }
            field => {
                let path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(bad(
                        &here,
                        format!("field path {field:?} has an empty segment"),
                    ));
                }
                all.push(Node::Field(path, parse_cond(val, &here)?));
            }
        }
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(Node::And(Vec::new()))
    } else {
        Node::And(all)
    })
}

fn is_operator_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.keys().any(|k| k.starts_with('$')))
}

fn parse_cond(v: &Value, pos: &str) -> Result<Cond> {
    let Value::Object(m) = v else {
        return Ok(Cond::Eq(v.clone()));
    };
    if !is_operator_object(v) {
        return Ok(Cond::Eq(v.clone()));
    }
    let mut all = Vec::with_capacity(m.len());
    for (op, arg) in m {
        let here = format!("{pos}.{op}");
        let cmp = |c| match arg {
            Value::Number(_) | Value::String(_) => Ok(Cond::Cmp(c, arg.clone())),
            _ => Err(bad(
                &here,
                format!("{op} compares with a number or a string, got {arg}"),
            )),
        };
        let list = || match arg {
            Value::Array(a) => Ok(a.clone()),
            _ => Err(bad(&here, format!("{op} needs an array, got {arg}"))),
        };
        all.push(match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => cmp(CmpOp::Gt)?,
            "$gte" => cmp(CmpOp::Gte)?,
            "$lt" => cmp(CmpOp::Lt)?,
            "$lte" => cmp(CmpOp::Lte)?,
            "$in" => Cond::In(list()?),
            "$nin" => Cond::Nin(list()?),
            "$exists" => match arg {
                Value::Bool(b) => Cond::Exists(*b),
                _ => return Err(bad(&here, format!("$exists needs true or false, got {arg}"))),
            },
            "$not" => {
                if !is_operator_object(arg) {
                    return Err(bad(
                        &here,
                        format!("$not on a field needs an object of operators, got {arg}"),
                    ));
                }
                Cond::Not(Box::new(parse_cond(arg, &here)?))
            }
            other if other.starts_with('$') => {
                return Err(bad(
                    &here,
                    format!("unknown operator {other:?}; expected one of {OPERATORS}"),
                ))
            }
            field => {
                return Err(bad(
                    &here,
                    format!("{field:?} is not an operator, and a condition cannot mix operators with fields"),
                ))
            }
        });
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(Cond::All(Vec::new()))
    } else {
        Cond::All(all)
    })
}

/// The values `path` reaches in `v` (see the module docs).
fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((head, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            if let Some(c) = m.get(head) {
                resolve(c, rest, out);
            }
        }
        Value::Array(a) => {
            for e in a.iter().filter(|e| e.is_object()) {
                resolve(e, path, out);
            }
        }
        _ => {}
    }
}

/// JSON equality with numbers compared by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

fn compare(op: CmpOp, c: &Value, arg: &Value) -> bool {
    let ord = match (c, arg) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Gt => ord.is_gt(),
        CmpOp::Gte => ord.is_ge(),
        CmpOp::Lt => ord.is_lt(),
        CmpOp::Lte => ord.is_le(),
    }
}

fn any_candidate(reached: &[&Value], f: impl Fn(&Value) -> bool) -> bool {
    reached.iter().any(|r| {
        f(r) || match r {
            Value::Array(a) => a.iter().any(&f),
            _ => false,
        }
    })
}

fn holds(cond: &Cond, reached: &[&Value]) -> bool {
    let eq = |x: &Value| {
        (x.is_null() && reached.is_empty()) || any_candidate(reached, |c| json_eq(c, x))
    };
    match cond {
        Cond::Eq(x) => eq(x),
        Cond::Ne(x) => !eq(x),
        Cond::Cmp(op, x) => any_candidate(reached, |c| compare(*op, c, x)),
        Cond::In(xs) => xs.iter().any(eq),
        Cond::Nin(xs) => !xs.iter().any(eq),
        Cond::Exists(b) => reached.is_empty() != *b,
        Cond::Not(c) => !holds(c, reached),
        Cond::All(cs) => cs.iter().all(|c| holds(c, reached)),
    }
}

fn eval(node: &Node, doc: &Value) -> bool {
    match node {
        Node::And(ns) => ns.iter().all(|n| eval(n, doc)),
        Node::Or(ns) => ns.iter().any(|n| eval(n, doc)),
        Node::Not(n) => !eval(n, doc),
        Node::Field(path, cond) => {
            let mut reached = Vec::new();
            if doc.is_object() {
                resolve(doc, path, &mut reached);
            }
            holds(cond, &reached)
        }
    }
}

/// A scalar as a posting key (numbers by value, so `1` and `1.0` agree).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scalar {
    Bool(bool),
    Num(u64),
    Str(String),
}

impl Scalar {
    fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(Self::Bool(*b)),
            Value::Number(n) => n.as_f64().map(|x| Self::Num((x + 0.0).to_bits())),
            Value::String(s) => Some(Self::Str(s.clone())),
            _ => None,
        }
    }
}

/// Calls `f(path, scalar)` for every non-null scalar a path can reach as a
/// candidate (the same walk as [`resolve`], so postings agree with [`eval`]).
fn for_each_leaf(prefix: &str, v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                for_each_leaf(&p, c, f);
            }
        }
        Value::Array(a) => {
            for e in a {
                match e {
                    Value::Object(_) => for_each_leaf(prefix, e, f),
                    Value::Array(_) | Value::Null => {}
                    scalar => f(prefix, scalar),
                }
            }
        }
        Value::Null => {}
        scalar => f(prefix, scalar),
    }
}

/// The decrypted metadata of an index, in memory only, with equality
/// postings per field path (except the paths the index opted out of).
/// Nothing of it is ever written to the store.
#[derive(Default)]
pub(crate) struct MetaIndex {
    docs: HashMap<Arc<str>, Value>,
    postings: HashMap<String, HashMap<Scalar, HashSet<Arc<str>>>>,
    unindexed: HashSet<String>,
}

static EMPTY: Value = Value::Null;

impl MetaIndex {
    pub(crate) fn new(unindexed: &[String]) -> Self {
        Self {
            unindexed: unindexed.iter().cloned().collect(),
            ..Self::default()
        }
    }

    /// Removes the item's metadata, if any.
    pub(crate) fn remove(&mut self, id: &str) {
        let Some((id, doc)) = self.docs.remove_entry(id) else {
            return;
        };
        let postings = &mut self.postings;
        for_each_leaf("", &doc, &mut |path, v| {
            if let (Some(by_value), Some(s)) = (postings.get_mut(path), Scalar::of(v)) {
                if let Some(set) = by_value.get_mut(&s) {
                    set.remove(&id);
                    if set.is_empty() {
                        by_value.remove(&s);
                    }
                }
            }
        });
    }

    /// Sets (replaces) the item's metadata.
    pub(crate) fn insert(&mut self, id: &str, doc: Value) {
        self.remove(id);
        let id: Arc<str> = Arc::from(id);
        let (postings, unindexed) = (&mut self.postings, &self.unindexed);
        for_each_leaf("", &doc, &mut |path, v| {
            if unindexed.contains(path) {
                return;
            }
            if let Some(s) = Scalar::of(v) {
                postings
                    .entry(path.to_owned())
                    .or_default()
                    .entry(s)
                    .or_default()
                    .insert(Arc::clone(&id));
            }
        });
        self.docs.insert(id, doc);
    }

    fn doc(&self, id: &str) -> &Value {
        self.docs.get(id).unwrap_or(&EMPTY)
    }

    fn posting(&self, path: &[String], v: &Value) -> Option<HashSet<Arc<str>>> {
        let key = Scalar::of(v)?;
        let path = path.join(".");
        if self.unindexed.contains(&path) {
            return None;
        }
        Some(
            self.postings
                .get(&path)
                .and_then(|m| m.get(&key))
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// A superset of the items matching `node`, from the postings; `None`
    /// when the postings cannot narrow it down.
    fn plan(&self, node: &Node) -> Option<HashSet<Arc<str>>> {
        match node {
            Node::Field(path, cond) => self.plan_cond(path, cond),
            Node::And(ns) => intersect(ns.iter().filter_map(|n| self.plan(n))),
            Node::Or(ns) => ns.iter().try_fold(HashSet::new(), |mut acc, n| {
                acc.extend(self.plan(n)?);
                Some(acc)
            }),
            Node::Not(_) => None,
        }
    }

    fn plan_cond(&self, path: &[String], cond: &Cond) -> Option<HashSet<Arc<str>>> {
        match cond {
            Cond::Eq(v) => self.posting(path, v),
            Cond::In(vs) => vs.iter().try_fold(HashSet::new(), |mut acc, v| {
                acc.extend(self.posting(path, v)?);
                Some(acc)
            }),
            Cond::All(cs) => intersect(cs.iter().filter_map(|c| self.plan_cond(path, c))),
            _ => None,
        }
    }

    /// The ids among `all` whose metadata matches, sorted.
    pub(crate) fn matching<'a>(
        &self,
        filter: &Filter,
        all: impl Iterator<Item = &'a String>,
    ) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = match self.plan(&filter.root) {
            Some(cands) => cands
                .into_iter()
                .filter(|id| eval(&filter.root, self.doc(id)))
                .collect(),
            None => all
                .filter(|id| eval(&filter.root, self.doc(id)))
                .map(|id| Arc::from(id.as_str()))
                .collect(),
        };
        out.sort_unstable();
        out
    }
}

fn intersect(sets: impl Iterator<Item = HashSet<Arc<str>>>) -> Option<HashSet<Arc<str>>> {
    let mut sets: Vec<HashSet<Arc<str>>> = sets.collect();
    sets.sort_by_key(HashSet::len);
    let mut it = sets.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |acc, s| {
        acc.into_iter().filter(|x| s.contains(x)).collect()
    }))
}

#[cfg(test)]
mod tests {
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
        for (text, needle) in [
            (r#"{"a": {"$regex": "x"}}"#, "$.a.$regex"),
            (
                r#"{"$and": [{"a": 1}, {"b": {"$gt": null}}]}"#,
                "$.$and[1].b.$gt",
            ),
            (r#"{"$nor": []}"#, "$nor"),
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
    fn postings_narrow_and_agree_with_the_evaluator() {
        let mut m = MetaIndex::new(&["secret".to_owned()]);
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
}
