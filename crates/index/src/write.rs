//! Upsert and delete.

use std::collections::{HashMap, HashSet};

use vecseal_storage::WriteBatch;

use crate::catalog::NS_ITEMS;
use crate::codec::encode_item_after;
use crate::edit::Edit;
use crate::handle::Index;
use crate::keys::Kind;
use crate::options::{
    json_depth, Item, ItemRef, MAX_CONTENTS_BYTES, MAX_ID_BYTES, MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
};
use crate::route::prepare;
use crate::shared::check_vector;
use crate::{map_pooled, Error, Result};

impl Index {
    /// Upserts ids with vectors (no contents or metadata).
    pub fn upsert_vectors(&self, ids: &[String], vectors: &[Vec<f32>]) -> Result<usize> {
        if ids.len() != vectors.len() {
            return Err(Error::InvalidParameter {
                name: "ids/vectors",
                value: format!("{} ids and {} vectors", ids.len(), vectors.len()),
                expected: "as many ids as vectors",
            });
        }
        self.upsert_refs(
            ids.iter()
                .zip(vectors)
                .map(|(id, v)| ItemRef {
                    id,
                    vector: v,
                    contents: None,
                    metadata: None,
                })
                .collect(),
        )
    }

    /// Upserts items; an existing id is overwritten. Returns how many were written.
    pub fn upsert(&self, items: Vec<Item>) -> Result<usize> {
        self.upsert_refs(
            items
                .iter()
                .map(|it| ItemRef {
                    id: &it.id,
                    vector: it.vector.as_deref().unwrap_or_default(),
                    contents: it.contents.as_deref(),
                    metadata: it.metadata.as_ref(),
                })
                .collect(),
        )
    }

    /// Upserts borrowed items: nothing is copied but what is stored.
    fn upsert_refs(&self, items: Vec<ItemRef<'_>>) -> Result<usize> {
        let ix = &*self.shared;
        // Authorized under the writer lock: a deletion of the index that
        // holds it first leaves nothing for this call to write into.
        let _w = ix.lock_writer()?;
        let (access, keys) = ix.authorize(&self.cred)?;
        let cap = access.write_for("upsert")?;
        if items.is_empty() {
            return Ok(0);
        }
        ix.upgrade(cap, &keys)?;
        let (metric, dim) = {
            let l = ix.live.read();
            (l.p.metric, l.p.dim)
        };
        let dim = dim.unwrap_or(items[0].vector.len());
        if dim == 0 {
            return Err(Error::InvalidParameter {
                name: "vector",
                value: "empty".into(),
                expected: "at least one value",
            });
        }
        // Validate everything before any work; keep the last of duplicate ids.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            check_item(i, it, dim)?;
            last.insert(it.id, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        let items: Vec<&ItemRef<'_>> = order.iter().map(|&i| &items[i]).collect();

        let search = prepare(items.iter().map(|it| it.vector), metric, dim);
        let mut batch = WriteBatch::new();
        let seal = |it: &&ItemRef<'_>| {
            let metadata = it.metadata.map(serde_json::Value::to_string);
            if let Some(m) = metadata.as_ref().filter(|m| m.len() > MAX_METADATA_BYTES) {
                return Err(too_big(
                    it.id,
                    "metadata",
                    m.len(),
                    "at most 1 MiB of compact JSON (MAX_METADATA_BYTES)",
                ));
            }
            let key = keys.item_key(it.id);
            let value = keys.seal_built(Kind::Item, &key, |buf, spare| {
                let (contents, metadata) = (it.contents, metadata.as_deref());
                encode_item_after(buf, spare, it.id, it.vector, contents, metadata)
            })?;
            Ok((key, value))
        };
        let sealed: Vec<Result<(Vec<u8>, Vec<u8>)>> = map_pooled(&items, seal);
        for kv in sealed {
            let (k, v) = kv?;
            batch.put_owned(NS_ITEMS, k, v);
        }

        let live = ix.live.read();
        let mut p = live.p.header();
        p.dim = Some(dim);
        p.has_metadata |= items.iter().any(|it| it.metadata.is_some());
        let mut edit = Edit::new(&live.p, dim);
        // Routed with the kernel that picks the lists a query probes, so an
        // upserted vector is in the first list a query equal to it probes.
        let lists: Vec<u32> = if p.trained {
            live.centroids.nearest(&search)
        } else {
            vec![0; items.len()]
        };
        for ((it, v), list) in items.iter().zip(search.chunks_exact(dim)).zip(lists) {
            if let Some(&seq) = live.locations.get(it.id) {
                edit.remove(ix, &keys, seq, it.id)?;
            }
            edit.add(ix, &keys, list, it.id, v)?;
        }
        drop(live);
        let n = items.len();
        let meta = if p.has_metadata {
            items
                .iter()
                .map(|it| (it.id.to_owned(), it.metadata.cloned()))
                .collect()
        } else {
            Vec::new()
        };
        ix.commit(cap, &keys, p, edit, batch, meta)?;
        Ok(n)
    }

    /// Deletes items; returns how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<usize> {
        let ix = &*self.shared;
        let _w = ix.lock_writer()?;
        let (access, keys) = ix.authorize(&self.cred)?;
        let cap = access.write_for("delete")?;
        ix.upgrade(cap, &keys)?;
        let live = ix.live.read();
        let Some(dim) = live.p.dim else { return Ok(0) };
        let p = live.p.header();
        let mut edit = Edit::new(&live.p, dim);
        let mut batch = WriteBatch::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            if let Some(&seq) = live.locations.get(id) {
                edit.remove(ix, &keys, seq, id)?;
                batch.delete(NS_ITEMS, &keys.item_key(id));
            }
        }
        drop(live);
        let n = edit.removed.len();
        if n > 0 {
            let meta = if p.has_metadata {
                edit.removed.iter().map(|id| (id.clone(), None)).collect()
            } else {
                Vec::new()
            };
            ix.commit(cap, &keys, p, edit, batch, meta)?;
        }
        Ok(n)
    }
}

/// Checks one item of an upsert against the index's dimension and the
/// documented limits (see [`Item`]).
fn check_item(i: usize, it: &ItemRef<'_>, dim: usize) -> Result<()> {
    if it.id.is_empty() {
        return Err(Error::EmptyId(i));
    }
    if it.id.len() > MAX_ID_BYTES {
        let head: String = it.id.chars().take(32).collect();
        return Err(Error::InvalidParameter {
            name: "item id",
            value: format!("{} bytes (item #{i}, starting {head:?})", it.id.len()),
            expected: "at most 1024 bytes (MAX_ID_BYTES)",
        });
    }
    check_vector(|| format!("item {:?}", it.id), it.vector, dim)?;
    if let Some(c) = it.contents.filter(|c| c.len() > MAX_CONTENTS_BYTES) {
        return Err(too_big(
            it.id,
            "contents",
            c.len(),
            "at most 64 MiB (MAX_CONTENTS_BYTES)",
        ));
    }
    if let Some(m) = it.metadata {
        if !m.is_object() {
            return Err(Error::BadMetadata(it.id.to_owned()));
        }
        let depth = json_depth(m, MAX_METADATA_DEPTH);
        if depth > MAX_METADATA_DEPTH {
            return Err(Error::InvalidParameter {
                name: "metadata",
                value: format!(
                    "item {:?}: nested more than {MAX_METADATA_DEPTH} levels deep",
                    it.id
                ),
                expected: "at most 64 levels of arrays and objects (MAX_METADATA_DEPTH)",
            });
        }
    }
    Ok(())
}

fn too_big(id: &str, field: &'static str, len: usize, expected: &'static str) -> Error {
    Error::InvalidParameter {
        name: field,
        value: format!("item {id:?}: {len} bytes"),
        expected,
    }
}
