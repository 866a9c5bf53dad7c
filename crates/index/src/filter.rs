//! Metadata filters: a MongoDB-style JSON language, its evaluator, and the
//! in-memory metadata index whose equality postings make selective filters
//! fast.
//!
//! # Semantics
//!
//! A filter is a JSON object. Each key is either a field path (dot-separated,
//! `"loc.city"`) with a condition, or one of the logical operators `$and`,
//! `$or`, `$nor` (non-empty arrays of filters) and `$not` (a filter). Several
//! keys in one object must all hold. A condition is either a plain value
//! (implicit `$eq`) or an object of operators, all of which must hold: `$eq
//! $ne $gt $gte $lt $lte $in $nin $exists $not $contains $regex`.
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
//!
//! `$contains: x` holds when a reached string contains the string `x`, or a
//! reached array has an element equal to `x` (strings inside arrays are
//! compared whole). `$regex: "pattern"` holds when a candidate string has a
//! match anywhere in it (unanchored; use `^`/`$` to anchor). Patterns use the
//! syntax of the Rust `regex` crate (close to RE2): matching takes linear
//! time, so lookaround and backreferences are not supported. A pattern may
//! be at most [`MAX_REGEX_BYTES`] long and compile to at most
//! [`MAX_REGEX_PROGRAM_BYTES`]; it is compiled once, when the filter is
//! parsed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
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
    Contains(Value),
    Regex(Pattern),
}

/// The longest `$regex` pattern accepted, in bytes.
pub const MAX_REGEX_BYTES: usize = 1024;
/// The most memory one compiled `$regex` may take (its program and its lazy
/// DFA cache, each), in bytes: a hostile pattern is an error, not a stall.
pub const MAX_REGEX_PROGRAM_BYTES: usize = 1 << 20;

/// A compiled `$regex`, compared by its source.
#[derive(Clone)]
struct Pattern {
    source: String,
    re: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source
    }
}
impl Eq for Pattern {}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl Pattern {
    fn compile(source: &str, pos: &str) -> Result<Self> {
        if source.len() > MAX_REGEX_BYTES {
            return Err(bad(
                pos,
                format!(
                    "$regex pattern of {} bytes; at most {MAX_REGEX_BYTES}",
                    source.len()
                ),
            ));
        }
        let re =
            regex::RegexBuilder::new(source)
                .size_limit(MAX_REGEX_PROGRAM_BYTES)
                .dfa_size_limit(MAX_REGEX_PROGRAM_BYTES)
                .nest_limit(64)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(limit) => bad(
                        pos,
                        format!("$regex compiles to more than {limit} bytes; simplify the pattern"),
                    ),
                    e => {
                        bad(
                            pos,
                            format!(
                        "invalid $regex ({}); the syntax is the Rust regex crate's, like RE2: \
                         linear-time, no lookaround or backreferences",
                        e.to_string().lines().last().unwrap_or("syntax error").trim()
                    ),
                        )
                    }
                })?;
        Ok(Self {
            source: source.to_owned(),
            re,
        })
    }

    /// Literals one of which every match contains, when the pattern has
    /// such a finite set (from its prefixes), for the n-gram postings.
    fn required_literals(&self) -> Option<Vec<Vec<u8>>> {
        use regex_syntax::hir::literal::Extractor;
        let hir = regex_syntax::Parser::new().parse(&self.source).ok()?;
        let seq = Extractor::new().extract(&hir);
        let lits = seq.literals()?;
        if lits.is_empty() {
            return None;
        }
        Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
    }
}

const OPERATORS: &str =
    "$and, $or, $nor, $not, $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $contains, $regex";

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
            "$and" | "$or" | "$nor" => {
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
                all.push(match k.as_str() {
                    "$and" => Node::And(children),
                    "$or" => Node::Or(children),
                    _ => Node::Not(Box::new(Node::Or(children))),
                });
            }
            "$not" => all.push(Node::Not(Box::new(parse_doc(val, &here)?))),
            op if op.starts_with('$') => {
                return Err(bad(
                    &here,
                    format!("unknown operator {op:?} at the top of a filter; expected $and, $or, $nor, $not or a field path"),
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
            "$contains" => match arg {
                Value::Null | Value::Object(_) => {
                    return Err(bad(
                        &here,
                        format!("$contains needs a string, number, boolean or array, got {arg}"),
                    ))
                }
                _ => Cond::Contains(arg.clone()),
            },
            "$regex" => match arg {
                Value::String(p) => Cond::Regex(Pattern::compile(p, &here)?),
                _ => return Err(bad(&here, format!("$regex needs a string pattern, got {arg}"))),
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
        Cond::Contains(x) => reached.iter().any(|r| match (r, x) {
            (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
            (Value::Array(a), _) => a.iter().any(|e| json_eq(e, x)),
            _ => false,
        }),
        Cond::Regex(p) => any_candidate(reached, |c| c.as_str().is_some_and(|s| p.re.is_match(s))),
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

/// How one metadata field (a dot path) is indexed, declared when an index
/// is created. Fields not declared get the default: filterable, equality
/// postings, no n-gram postings.
///
/// Every index lives in memory only; whatever a field's schema, filters of
/// vector queries answer exactly (evaluating the decrypted metadata where no
/// postings exist). [`Index::query_metadata`](crate::Index::query_metadata)
/// answers only what the schema allows: no filter on a field that is not
/// `filterable`, and `$contains`/`$regex` only on `pattern` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldSchema {
    /// Filters of `query_metadata` may name the field (default `true`);
    /// `false` keeps it out of every posting.
    pub filterable: bool,
    /// n-gram postings (memory only) accelerate `$contains` and `$regex`
    /// on the field, and `query_metadata` accepts them (default `false`).
    pub pattern: bool,
    /// No equality postings: filters on it evaluate every item's metadata,
    /// saving memory (default `false`).
    pub unindexed: bool,
}

impl Default for FieldSchema {
    fn default() -> Self {
        Self {
            filterable: true,
            pattern: false,
            unindexed: false,
        }
    }
}

impl FieldSchema {
    /// Filterable, with n-gram postings for `$contains` and `$regex`.
    pub fn pattern() -> Self {
        Self {
            pattern: true,
            ..Self::default()
        }
    }

    /// Filterable, without equality postings.
    pub fn unindexed() -> Self {
        Self {
            unindexed: true,
            ..Self::default()
        }
    }

    /// Not filterable by `query_metadata`, and in no posting.
    pub fn not_filterable() -> Self {
        Self {
            filterable: false,
            ..Self::default()
        }
    }
}

/// Checks a schema: paths without empty segments, no contradictory flags.
pub(crate) fn validate_schema(fields: &BTreeMap<String, FieldSchema>) -> Result<()> {
    for (path, f) in fields {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(Error::InvalidParameter {
                name: "metadata schema",
                value: format!("field path {path:?}"),
                expected: "a dot path without empty segments",
            });
        }
        if !f.filterable && (f.pattern || f.unindexed) {
            return Err(Error::InvalidParameter {
                name: "metadata schema",
                value: format!(
                    "field {path:?}: filterable: false with {}",
                    if f.pattern { "pattern: true" } else { "unindexed: true" }
                ),
                expected: "pattern and unindexed only on filterable fields (filterable: false already keeps a field out of every posting)",
            });
        }
    }
    Ok(())
}

/// An item's sort key for [`MetaIndex::order`]: numbers, then strings, then
/// booleans; items whose path reaches no single scalar come last.
#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey<'a> {
    Num(f64),
    Str(&'a str),
    Bool(bool),
}

impl<'a> SortKey<'a> {
    fn of(v: &'a Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_f64().map(Self::Num),
            Value::String(s) => Some(Self::Str(s)),
            Value::Bool(b) => Some(Self::Bool(*b)),
            _ => None,
        }
    }

    fn cmp(&self, o: &Self) -> Ordering {
        self.partial_cmp(o).unwrap_or(Ordering::Equal)
    }
}

/// The byte trigrams of `s`.
fn trigrams(s: &[u8]) -> impl Iterator<Item = [u8; 3]> + '_ {
    s.windows(3).map(|w| [w[0], w[1], w[2]])
}

/// The decrypted metadata of an index, in memory only, with equality
/// postings per field path (except the paths the schema keeps out) and
/// trigram postings for `pattern` fields. Nothing of it is ever written to
/// the store.
#[derive(Default)]
pub(crate) struct MetaIndex {
    docs: HashMap<Arc<str>, Value>,
    postings: HashMap<String, HashMap<Scalar, HashSet<Arc<str>>>>,
    /// Trigram → items, for the strings of `pattern` fields.
    grams: HashMap<String, HashMap<[u8; 3], HashSet<Arc<str>>>>,
    unindexed: HashSet<String>,
    pattern: HashSet<String>,
    not_filterable: HashSet<String>,
}

static EMPTY: Value = Value::Null;

impl MetaIndex {
    /// An empty index for `fields` (and the older list of unindexed paths).
    pub(crate) fn new(fields: &BTreeMap<String, FieldSchema>, unindexed: &[String]) -> Self {
        let mut m = Self {
            unindexed: unindexed.iter().cloned().collect(),
            ..Self::default()
        };
        for (path, f) in fields {
            if f.unindexed || !f.filterable {
                m.unindexed.insert(path.clone());
            }
            if f.pattern {
                m.pattern.insert(path.clone());
            }
            if !f.filterable {
                m.not_filterable.insert(path.clone());
            }
        }
        m
    }

    /// Removes the item's metadata, if any.
    pub(crate) fn remove(&mut self, id: &str) {
        let Some((id, doc)) = self.docs.remove_entry(id) else {
            return;
        };
        let (postings, grams) = (&mut self.postings, &mut self.grams);
        for_each_leaf("", &doc, &mut |path, v| {
            if let (Some(by_value), Some(s)) = (postings.get_mut(path), Scalar::of(v)) {
                if let Some(set) = by_value.get_mut(&s) {
                    set.remove(&id);
                    if set.is_empty() {
                        by_value.remove(&s);
                    }
                }
            }
            if let (Some(by_gram), Value::String(s)) = (grams.get_mut(path), v) {
                for g in trigrams(s.as_bytes()) {
                    if let Some(set) = by_gram.get_mut(&g) {
                        set.remove(&id);
                        if set.is_empty() {
                            by_gram.remove(&g);
                        }
                    }
                }
            }
        });
    }

    /// Sets (replaces) the item's metadata.
    pub(crate) fn insert(&mut self, id: &str, doc: Value) {
        self.remove(id);
        let id: Arc<str> = Arc::from(id);
        let (postings, grams) = (&mut self.postings, &mut self.grams);
        let (unindexed, pattern) = (&self.unindexed, &self.pattern);
        for_each_leaf("", &doc, &mut |path, v| {
            if let (true, Value::String(s)) = (pattern.contains(path), v) {
                let by_gram = grams.entry(path.to_owned()).or_default();
                for g in trigrams(s.as_bytes()) {
                    by_gram.entry(g).or_default().insert(Arc::clone(&id));
                }
            }
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

    /// The items whose strings at `path` hold every trigram of `needle`
    /// (a superset of those containing it); `None` when `path` has no
    /// trigram postings or `needle` is shorter than a trigram.
    fn containing(&self, path: &[String], needle: &[u8]) -> Option<HashSet<Arc<str>>> {
        let path = path.join(".");
        if !self.pattern.contains(&path) || needle.len() < 3 {
            return None;
        }
        let by_gram = self.grams.get(&path);
        let mut sets: Vec<&HashSet<Arc<str>>> = Vec::new();
        for g in trigrams(needle) {
            match by_gram.and_then(|m| m.get(&g)) {
                Some(set) => sets.push(set),
                None => return Some(HashSet::new()),
            }
        }
        sets.sort_by_key(|s| s.len());
        let (first, rest) = sets.split_first()?;
        Some(
            first
                .iter()
                .filter(|id| rest.iter().all(|s| s.contains(*id)))
                .cloned()
                .collect(),
        )
    }

    fn plan_cond(&self, path: &[String], cond: &Cond) -> Option<HashSet<Arc<str>>> {
        match cond {
            Cond::Contains(Value::String(n)) => self.containing(path, n.as_bytes()),
            Cond::Contains(v) => self.posting(path, v),
            Cond::Regex(p) => {
                p.required_literals()?
                    .iter()
                    .try_fold(HashSet::new(), |mut acc, lit| {
                        acc.extend(self.containing(path, lit)?);
                        Some(acc)
                    })
            }
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

impl MetaIndex {
    /// Whether the schema lets `query_metadata` answer `filter`: no field
    /// declared `filterable: false` (nor below one), and `$contains` or
    /// `$regex` only on `pattern` fields.
    pub(crate) fn check_answerable(&self, filter: &Filter) -> Result<()> {
        fn uses_pattern(c: &Cond) -> bool {
            match c {
                Cond::Contains(_) | Cond::Regex(_) => true,
                Cond::Not(c) => uses_pattern(c),
                Cond::All(cs) => cs.iter().any(uses_pattern),
                _ => false,
            }
        }
        fn walk(m: &MetaIndex, n: &Node) -> Result<()> {
            match n {
                Node::And(ns) | Node::Or(ns) => ns.iter().try_for_each(|n| walk(m, n)),
                Node::Not(n) => walk(m, n),
                Node::Field(path, cond) => {
                    let field = path.join(".");
                    let hidden =
                        (1..=path.len()).any(|i| m.not_filterable.contains(&path[..i].join(".")));
                    if hidden {
                        return Err(Error::NotQueryable {
                            field,
                            reason: "it is declared filterable: false (vector queries still filter on it)",
                        });
                    }
                    if uses_pattern(cond) && !m.pattern.contains(&field) {
                        return Err(Error::NotQueryable {
                            field,
                            reason: "$contains and $regex need the field declared with pattern: true (vector queries still filter on it)",
                        });
                    }
                    Ok(())
                }
            }
        }
        walk(self, &filter.root)
    }

    /// Sorts `ids` by the value `path` reaches in each item's metadata (see
    /// [`SortKey`]); items without a single scalar there come last, ties by
    /// id. Fails when no item of the index has the field at all.
    pub(crate) fn order(&self, ids: &mut [Arc<str>], path: &str, ascending: bool) -> Result<()> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(Error::InvalidParameter {
                name: "order_by",
                value: format!("{path:?}"),
                expected: "a dot path without empty segments",
            });
        }
        let key = |id: &str| {
            let mut reached = Vec::new();
            resolve(self.doc(id), &segments, &mut reached);
            match reached.as_slice() {
                [one] => SortKey::of(one),
                _ => None,
            }
        };
        let known = self.docs.values().any(|d| {
            let mut reached = Vec::new();
            resolve(d, &segments, &mut reached);
            !reached.is_empty()
        });
        if !known && !ids.is_empty() {
            return Err(Error::InvalidParameter {
                name: "order_by",
                value: format!("{path:?}"),
                expected: "a metadata field that some item has",
            });
        }
        let mut keyed: Vec<(Option<SortKey<'_>>, Arc<str>)> =
            ids.iter().map(|id| (key(id), Arc::clone(id))).collect();
        keyed.sort_by(|(a, ia), (b, ib)| {
            let by_key = match (a, b) {
                (Some(a), Some(b)) if ascending => a.cmp(b),
                (Some(a), Some(b)) => b.cmp(a),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            by_key.then_with(|| ia.cmp(ib))
        });
        for (slot, (_, id)) in ids.iter_mut().zip(keyed) {
            *slot = id;
        }
        Ok(())
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
}
