//! The metadata of an index in memory: the per-field schema, equality and
//! trigram postings, planning a filter from them, and ordering matches.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::{eval, resolve, Cond, Filter, Node};
use crate::{Error, Result};

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
mod tests;
