use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{Durability, Error, Expect, Op, Result, Scan, Snapshot, Store, WriteBatch};

/// One namespace: its keys in order, for scans, and hashed, for point
/// reads (a walk down the ordered map compares the key with a dozen or
/// more others, and vecseal's keys share a 16-byte prefix: such walks were
/// about a quarter of a batch of few-probe queries that read items).
/// Values are shared between the two.
#[derive(Clone, Default)]
struct Map {
    ordered: BTreeMap<Vec<u8>, Arc<[u8]>>,
    hashed: HashMap<Vec<u8>, Arc<[u8]>>,
}

impl Map {
    fn get(&self, key: &[u8]) -> Option<&Arc<[u8]>> {
        self.hashed.get(key)
    }

    fn insert(&mut self, key: Vec<u8>, value: Arc<[u8]>) {
        self.hashed.insert(key.clone(), Arc::clone(&value));
        self.ordered.insert(key, value);
    }

    fn remove(&mut self, key: &[u8]) {
        self.hashed.remove(key);
        self.ordered.remove(key);
    }
}

type Tables = BTreeMap<String, Arc<Map>>;

/// An in-memory store. Snapshots are copy-on-write: taking one is O(number of
/// namespaces); the first write to a namespace while a snapshot of it is alive
/// copies that namespace's index (values are shared, not copied).
pub struct MemStore {
    tables: RwLock<Tables>,
}

impl MemStore {
    /// A store with the given namespaces.
    pub fn new(namespaces: &[&str]) -> Self {
        let tables = namespaces
            .iter()
            .map(|n| ((*n).to_owned(), Arc::new(Map::default())))
            .collect();
        Self {
            tables: RwLock::new(tables),
        }
    }

    fn table(&self, ns: &str) -> Result<Arc<Map>> {
        let tables = self.tables.read();
        lookup(&tables, ns).cloned()
    }
}

fn lookup<'a>(tables: &'a Tables, ns: &str) -> Result<&'a Arc<Map>> {
    tables.get(ns).ok_or_else(|| Error::UnknownNamespace {
        name: ns.to_owned(),
        known: tables.keys().cloned().collect(),
    })
}

/// Streams a prefix of one (immutable, shared) table by repeated range seeks.
fn scan_table(table: Arc<Map>, prefix: &[u8]) -> Scan<'static> {
    let prefix = prefix.to_vec();
    let mut last: Option<Vec<u8>> = None;
    Box::new(std::iter::from_fn(move || {
        let lower = match &last {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(prefix.clone()),
        };
        let (k, v) = table.ordered.range((lower, Bound::Unbounded)).next()?;
        if !k.starts_with(&prefix) {
            return None;
        }
        last = Some(k.clone());
        Some(Ok((k.clone(), v.to_vec())))
    }))
}

impl Store for MemStore {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tables = self.tables.read();
        Ok(lookup(&tables, ns)?.get(key).map(|v| v.to_vec()))
    }

    fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        // One lock and one lookup of the namespace for all the keys.
        let table = self.table(ns)?;
        Ok(keys
            .iter()
            .map(|k| table.get(k).map(|v| v.to_vec()))
            .collect())
    }

    fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        // The value is shared, so `f` runs without holding the lock.
        let value = lookup(&self.tables.read(), ns)?.get(key).cloned();
        Ok(value.map(|v| f(&v)).is_some())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        apply(&mut self.tables.write(), batch)
    }

    fn write_if(&self, expect: Expect<'_>, batch: WriteBatch, _: Durability) -> Result<bool> {
        let mut tables = self.tables.write();
        if lookup(&tables, expect.ns)?.get(expect.key).map(|v| &**v) != expect.value {
            return Ok(false);
        }
        apply(&mut tables, batch).map(|()| true)
    }

    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        Ok(scan_table(self.table(ns)?, prefix))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(MemSnapshot {
            tables: self.tables.read().clone(),
        }))
    }

    fn namespaces(&self) -> Vec<String> {
        self.tables.read().keys().cloned().collect()
    }
}

/// Applies `batch` to `tables`: all of it, or (a namespace unknown)
/// nothing.
fn apply(tables: &mut Tables, batch: WriteBatch) -> Result<()> {
    // Validate every namespace first so a bad batch changes nothing.
    for op in &batch.ops {
        let (Op::Put { ns, .. } | Op::Delete { ns, .. }) = op;
        lookup(tables, ns)?;
    }
    for op in batch.ops {
        match op {
            Op::Put { ns, key, value } => {
                if let Some(t) = tables.get_mut(&ns) {
                    Arc::make_mut(t).insert(key, value.into());
                }
            }
            Op::Delete { ns, key } => {
                if let Some(t) = tables.get_mut(&ns) {
                    Arc::make_mut(t).remove(&key);
                }
            }
        }
    }
    Ok(())
}

struct MemSnapshot {
    tables: Tables,
}

impl Snapshot for MemSnapshot {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(lookup(&self.tables, ns)?.get(key).map(|v| v.to_vec()))
    }

    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        Ok(scan_table(Arc::clone(lookup(&self.tables, ns)?), prefix))
    }
}
