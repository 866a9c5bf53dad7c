//! The sealed state record of an index: its lists of block references.

use std::collections::BTreeMap;

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

/// The sealed state record of an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Persisted {
    pub(crate) version: u32,
    pub(crate) dim: Option<usize>,
    pub(crate) metric: Metric,
    pub(crate) trained: bool,
    pub(crate) generation: u64,
    pub(crate) next_seq: u64,
    pub(crate) lists: Vec<Vec<BlockRef>>,
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
            version: 1,
            dim,
            metric,
            trained: false,
            generation: 0,
            next_seq: 0,
            lists: vec![Vec::new()],
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

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: format!("cannot be encoded: {e}"),
        })
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        serde_json::from_slice(b).map_err(|e| Error::Corrupt {
            what: "index state record",
            reason: e.to_string(),
        })
    }
}

pub(crate) fn block_capacity(dim: usize) -> usize {
    (BLOCK_BYTES / (4 * dim.max(1))).clamp(16, 4096)
}
