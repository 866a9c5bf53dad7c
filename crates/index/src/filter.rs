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

use std::str::FromStr;

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
    pub(crate) root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Field(Vec<String>, Cond),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
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
pub(crate) struct Pattern {
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
    pub(crate) fn required_literals(&self) -> Option<Vec<Vec<u8>>> {
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
pub(crate) fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
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

pub(crate) fn eval(node: &Node, doc: &Value) -> bool {
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

#[cfg(test)]
mod tests;
