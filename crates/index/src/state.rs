//! The sealed state record of an index, and the directory of its blocks.
//!
//! Since version 2 the record does not list the blocks: every block names
//! its own list, generation and number inside its sealed plaintext, and the
//! record holds how many live blocks there are and a keyed digest of them
//! (the sum, mod 2²⁵⁶, of an HMAC of each block's number, list, count and
//! generation). Opening reads every block anyway (to map ids to blocks), so
//! it rebuilds the lists from the blocks and checks them against the digest:
//! a removed, restored or moved block fails it. A write then re-seals only
//! the header and the blocks it touches: O(k + blocks touched), not
//! O(all blocks). Version 1 records listed every block; they are read as
//! they are and upgraded by the first handle that may write.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::metaindex::FieldSchema;
use crate::{Error, Metric, Result};

/// Target plaintext size of one sealed block of search vectors.
pub(crate) const BLOCK_BYTES: usize = 128 << 10;
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub(crate) struct BlockRef {
    pub(crate) seq: u64,
    pub(crate) count: u32,
}

/// The block references of every list. Shared, so that a write copies only
/// the lists it changes (`Arc::make_mut`), not all of them.
pub(crate) type Lists = Vec<Arc<Vec<BlockRef>>>;

/// The lists of a version-1 record.
fn legacy_lists<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Lists, D::Error> {
    let lists: Vec<Vec<BlockRef>> = Deserialize::deserialize(d)?;
    Ok(lists.into_iter().map(Arc::new).collect())
}

/// The version of state records written now.
pub(crate) const STATE_VERSION: u32 = 2;

/// A keyed digest of a set of blocks: the sum of their tags mod 2²⁵⁶
/// (little-endian limbs), so adding or removing one block costs O(1).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Digest(pub(crate) [u64; 4]);

impl Digest {
    /// The digest of one block's tag.
    pub(crate) fn of(tag: &[u8; 32]) -> Self {
        let mut limbs = [0u64; 4];
        for (l, c) in limbs.iter_mut().zip(tag.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *l = u64::from_le_bytes(b);
        }
        Self(limbs)
    }

    pub(crate) fn add(&mut self, o: Self) {
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(o.0) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *a = s;
            carry = c1 || c2;
        }
    }

    pub(crate) fn sub(&mut self, o: Self) {
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(o.0) {
            let (s, b1) = a.overflowing_sub(b);
            let (s, b2) = s.overflowing_sub(u64::from(borrow));
            *a = s;
            borrow = b1 || b2;
        }
    }
}

/// The sealed state record of an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Persisted {
    pub(crate) version: u32,
    pub(crate) dim: Option<usize>,
    pub(crate) metric: Metric,
    pub(crate) trained: bool,
    pub(crate) generation: u64,
    pub(crate) next_seq: u64,
    /// The block references of every list: in memory, rebuilt from the
    /// blocks when the index opens; stored only in version-1 records.
    #[serde(default, skip_serializing, deserialize_with = "legacy_lists")]
    pub(crate) lists: Lists,
    /// Number of lists (version 2).
    #[serde(default)]
    pub(crate) n_lists: usize,
    /// Number of live blocks (version 2).
    #[serde(default)]
    pub(crate) blocks: u64,
    /// The digest of the live blocks (version 2).
    #[serde(default)]
    pub(crate) digest: Digest,
    /// Whether any item was ever upserted with metadata (opening then loads
    /// the metadata into memory for filters).
    #[serde(default)]
    pub(crate) has_metadata: bool,
    /// Metadata paths without equality postings (as written before the
    /// per-field schema; new indexes record it in `fields`).
    #[serde(default)]
    pub(crate) unindexed_fields: Vec<String>,
    /// The per-field metadata schema.
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, FieldSchema>,
}

impl Persisted {
    pub(crate) fn new(
        dim: Option<usize>,
        metric: Metric,
        fields: BTreeMap<String, FieldSchema>,
    ) -> Self {
        Self {
            version: STATE_VERSION,
            dim,
            metric,
            trained: false,
            generation: 0,
            next_seq: 0,
            lists: vec![Arc::default()],
            n_lists: 1,
            blocks: 0,
            digest: Digest::default(),
            has_metadata: false,
            unindexed_fields: Vec::new(),
            fields,
        }
    }

    /// The schema, with the older list of unindexed paths folded in.
    pub(crate) fn schema(&self) -> BTreeMap<String, FieldSchema> {
        let mut fields = self.fields.clone();
        for path in &self.unindexed_fields {
            fields.entry(path.clone()).or_default().unindexed = true;
        }
        fields
    }

    /// Whether the record is a version-1 one (every block listed in it).
    pub(crate) fn is_legacy(&self) -> bool {
        self.version < STATE_VERSION
    }

    /// The record as written: version 2 (a version-1 record is upgraded
    /// before anything is written; see [`Persisted::is_legacy`]).
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        if self.is_legacy() {
            return Err(Error::Corrupt {
                what: "index state record",
                reason: "a version-1 record must be upgraded before it is written".into(),
            });
        }
        let mut header = self.clone();
        header.n_lists = self.lists.len();
        serde_json::to_vec(&header).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: format!("cannot be encoded: {e}"),
        })
    }

    /// Decodes a record; a version-2 one comes with empty lists, to be
    /// filled from the blocks.
    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        let mut p: Self = serde_json::from_slice(b).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: e.to_string(),
        })?;
        match p.version {
            1 => p.n_lists = p.lists.len(),
            STATE_VERSION => p.lists = vec![Arc::default(); p.n_lists],
            v => {
                return Err(Error::Corrupt {
                    what: "index state record",
                    reason: format!(
                    "version {v}, written by a newer vecseal; this one reads 1 and {STATE_VERSION}"
                ),
                })
            }
        }
        if p.n_lists == 0 {
            return Err(Error::Corrupt {
                what: "index state record",
                reason: "no lists".into(),
            });
        }
        Ok(p)
    }
}

pub(crate) fn block_capacity(dim: usize) -> usize {
    (BLOCK_BYTES / (4 * dim.max(1))).clamp(16, 4096)
}
