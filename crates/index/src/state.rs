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
//! they are and upgraded by the first handle that may write. Versions 1
//! and 2 were JSON; version 3 is binary, through `vecseal-codec` like every
//! other record, and is the one written.

use std::collections::BTreeMap;
use std::sync::Arc;

use vecseal_codec::{Reader, Record, Writer};

use crate::metaindex::FieldSchema;
use crate::precision::Precision;
use crate::{Error, Metric, Result};

/// Target plaintext size of one sealed block of search vectors.
pub(crate) const BLOCK_BYTES: usize = 128 << 10;
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq)]
pub(crate) struct BlockRef {
    pub(crate) seq: u64,
    pub(crate) count: u32,
}

/// The block references of every list. Each list is shared, so a write
/// replaces only the lists it changes; the whole is shared too
/// ([`Persisted::lists`]), so a write does not copy (or count references
/// to) every list either: at 2000 lists that was a third of a one-item
/// upsert.
pub(crate) type Lists = Vec<Arc<Vec<BlockRef>>>;

/// The version of state records written now.
pub(crate) const STATE_VERSION: u32 = 5;

/// A keyed digest of a set of blocks: the sum of their tags mod 2²⁵⁶
/// (little-endian limbs), so adding or removing one block costs O(1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Persisted {
    /// 1: JSON listing every block; 2: JSON with the digest; 3: binary,
    /// with the digest; 4: with the keyring's tag; 5 (written now): with
    /// the storage precision.
    pub(crate) version: u32,
    pub(crate) dim: Option<usize>,
    pub(crate) metric: Metric,
    pub(crate) trained: bool,
    pub(crate) generation: u64,
    pub(crate) next_seq: u64,
    /// The block references of every list: in memory, rebuilt from the
    /// blocks when the index opens; stored only in version-1 records.
    pub(crate) lists: Arc<Lists>,
    /// Number of lists.
    pub(crate) n_lists: usize,
    /// Number of live blocks (from version 2).
    pub(crate) blocks: u64,
    /// The digest of the live blocks (from version 2).
    pub(crate) digest: Digest,
    /// Whether any item was ever upserted with metadata (opening then loads
    /// the metadata into memory for filters).
    pub(crate) has_metadata: bool,
    /// Metadata paths without equality postings (as written before the
    /// per-field schema; read from version-1 and -2 records only).
    pub(crate) unindexed_fields: Vec<String>,
    /// The per-field metadata schema.
    pub(crate) fields: BTreeMap<String, FieldSchema>,
    /// The tag of the catalog entry (name, id, keyring) this state goes
    /// with (from version 4; see `catalog`): a keyring swapped in from
    /// another index or restored from an older copy does not match it.
    pub(crate) ring_tag: Option<[u8; 32]>,
    /// How search vectors are stored (from version 5; float32 before).
    pub(crate) precision: Precision,
}

/// The metrics by their stored code (the index in this table).
const METRICS: [Metric; 4] = [
    Metric::Euclidean,
    Metric::SquaredEuclidean,
    Metric::Cosine,
    Metric::InnerProduct,
];

/// The stored code of a metric: its index in [`METRICS`].
fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Euclidean => 0,
        Metric::SquaredEuclidean => 1,
        Metric::Cosine => 2,
        Metric::InnerProduct => 3,
    }
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
            lists: Arc::new(vec![Arc::default()]),
            n_lists: 1,
            blocks: 0,
            digest: Digest::default(),
            has_metadata: false,
            unindexed_fields: Vec::new(),
            fields,
            ring_tag: None,
            precision: Precision::Float32,
        }
    }

    /// A copy for a write to change and commit. It shares the lists (one
    /// reference, not a copy of each list's): the write's edit holds the
    /// changes, and the commit puts them into the live lists.
    pub(crate) fn header(&self) -> Self {
        Self {
            lists: Arc::clone(&self.lists),
            unindexed_fields: self.unindexed_fields.clone(),
            fields: self.fields.clone(),
            ..*self
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

    /// Whether the record is a version-1 one (every block listed in it),
    /// to be upgraded before anything is written.
    pub(crate) fn is_legacy(&self) -> bool {
        self.version < 2
    }

    /// The record as written, version 3, little-endian: `[3, dim flag, dim:
    /// u64, metric: u8, trained, generation: u64, next_seq: u64, n_lists:
    /// u32, blocks: u64, digest: 4 × u64, has_metadata, n_fields: u32,
    /// n_fields × (path, schema bits), ring tag flag, ring tag: 32 bytes if
    /// set]`, paths in ascending order. A
    /// version-1 record must be upgraded first (see
    /// [`Persisted::is_legacy`]).
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        if self.is_legacy() {
            return Err(Error::Corrupt {
                what: Record::State,
                reason: "a version-1 record must be upgraded before it is written".into(),
            });
        }
        let fields = self.schema();
        let mut w = Writer::with_capacity(96 + fields.keys().map(|k| k.len() + 5).sum::<usize>());
        w.u8(STATE_VERSION as u8)
            .flag(self.dim.is_some())
            .u64(self.dim.unwrap_or(0) as u64)
            .u8(metric_code(self.metric))
            .flag(self.trained)
            .u64(self.generation)
            .u64(self.next_seq)
            .len_u32(self.lists.len())
            .u64(self.blocks);
        for limb in self.digest.0 {
            w.u64(limb);
        }
        w.flag(self.has_metadata).len_u32(fields.len());
        for (path, f) in &fields {
            w.str(path)
                .u8(u8::from(f.filterable) | u8::from(f.pattern) << 1 | u8::from(f.unindexed) << 2);
        }
        w.flag(self.ring_tag.is_some());
        if let Some(tag) = &self.ring_tag {
            w.raw(tag);
        }
        w.u8(self.precision.code());
        Ok(w.into_vec())
    }

    /// Decodes a record; a version-2 or -3 one comes with empty lists, to
    /// be filled from the blocks.
    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        if b.first() == Some(&b'{') {
            return legacy::decode(b);
        }
        let mut r = Reader::new(b, Record::State);
        let version = r.version(3, STATE_VERSION as u8)?;
        let has_dim = r.flag("dimension flag")?;
        let dim = r.u64()?;
        if !has_dim && dim != 0 {
            return Err(r
                .invalid("dimension of an index without one", dim, "0")
                .into());
        }
        let dim = match usize::try_from(dim) {
            Ok(d) if has_dim => Some(d),
            Ok(_) => None,
            Err(_) => return Err(r.invalid("dimension", dim, "a usize").into()),
        };
        let code = r.u8()?;
        let metric = *METRICS
            .get(usize::from(code))
            .ok_or_else(|| r.invalid("metric", code.into(), "0 to 3"))?;
        let trained = r.flag("trained flag")?;
        let generation = r.u64()?;
        let next_seq = r.u64()?;
        let n_lists = r.len_u32()?;
        if n_lists == 0 {
            return Err(r.invalid("number of lists", 0, "at least 1").into());
        }
        let blocks = r.u64()?;
        let mut digest = Digest::default();
        for limb in &mut digest.0 {
            *limb = r.u64()?;
        }
        let has_metadata = r.flag("metadata flag")?;
        let n_fields = r.len_u32()?;
        let mut fields = BTreeMap::new();
        for _ in 0..n_fields {
            let path = r.str()?;
            r.ascending(
                fields.keys().next_back().map(String::as_str),
                path,
                "field order",
                fields.len(),
            )?;
            let bits = r.u8()?;
            if bits > 7 {
                return Err(r.invalid("field schema bits", bits.into(), "0 to 7").into());
            }
            fields.insert(
                path.to_owned(),
                FieldSchema {
                    filterable: bits & 1 != 0,
                    pattern: bits & 2 != 0,
                    unindexed: bits & 4 != 0,
                },
            );
        }
        let ring_tag = if version >= 4 && r.flag("ring tag flag")? {
            Some(r.array()?)
        } else {
            None
        };
        let precision = if version >= 5 {
            let code = r.u8()?;
            Precision::from_code(code)
                .ok_or_else(|| r.invalid("precision", code.into(), "0 to 3"))?
        } else {
            Precision::Float32
        };
        r.finish()?;
        Ok(Self {
            version: STATE_VERSION,
            dim,
            metric,
            trained,
            generation,
            next_seq,
            lists: Arc::new(vec![Arc::default(); n_lists]),
            n_lists,
            blocks,
            digest,
            has_metadata,
            unindexed_fields: Vec::new(),
            fields,
            ring_tag,
            precision,
        })
    }
}

/// State records of versions 1 and 2, which were JSON: read (and upgraded
/// by the next write), never written.
pub(crate) mod legacy {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Json {
        version: u32,
        dim: Option<usize>,
        metric: Metric,
        trained: bool,
        generation: u64,
        next_seq: u64,
        #[serde(default)]
        lists: Vec<Vec<BlockRef>>,
        #[serde(default)]
        n_lists: usize,
        #[serde(default)]
        blocks: u64,
        #[serde(default)]
        digest: [u64; 4],
        #[serde(default)]
        has_metadata: bool,
        #[serde(default)]
        unindexed_fields: Vec<String>,
        #[serde(default)]
        fields: BTreeMap<String, FieldSchema>,
    }

    /// The record as versions 1 (with `lists`) and 2 (without) wrote it.
    #[cfg(test)]
    pub(crate) fn encode(p: &Persisted, lists: Option<&[Vec<BlockRef>]>) -> Vec<u8> {
        let mut v = serde_json::json!({
            "version": if lists.is_some() { 1 } else { 2 },
            "dim": p.dim,
            "metric": p.metric,
            "trained": p.trained,
            "generation": p.generation,
            "next_seq": p.next_seq,
            "n_lists": p.lists.len(),
            "blocks": p.blocks,
            "digest": p.digest.0,
            "has_metadata": p.has_metadata,
            "unindexed_fields": p.unindexed_fields,
            "fields": p.fields,
        });
        if let Some(lists) = lists {
            v["lists"] = lists
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|b| serde_json::json!({"seq": b.seq, "count": b.count}))
                        .collect::<serde_json::Value>()
                })
                .collect();
        }
        v.to_string().into_bytes()
    }

    pub(super) fn decode(b: &[u8]) -> Result<Persisted> {
        let j: Json = serde_json::from_slice(b).map_err(|e| Error::Corrupt {
            what: Record::State,
            reason: format!("a JSON (version 1 or 2) record that does not parse: {e}"),
        })?;
        let (lists, n_lists) = match j.version {
            1 => {
                let n = j.lists.len();
                (j.lists.into_iter().map(Arc::new).collect(), n)
            }
            2 => (vec![Arc::default(); j.n_lists], j.n_lists),
            v => {
                return Err(vecseal_codec::Error::Version {
                    record: Record::State,
                    found: v,
                    oldest: 1,
                    newest: 2,
                }
                .into())
            }
        };
        if n_lists == 0 {
            return Err(vecseal_codec::Error::Invalid {
                record: Record::State,
                field: "number of lists",
                found: 0,
                expected: "at least 1",
            }
            .into());
        }
        Ok(Persisted {
            version: j.version,
            dim: j.dim,
            metric: j.metric,
            trained: j.trained,
            generation: j.generation,
            next_seq: j.next_seq,
            lists: Arc::new(lists),
            n_lists,
            blocks: j.blocks,
            digest: Digest(j.digest),
            has_metadata: j.has_metadata,
            unindexed_fields: j.unindexed_fields,
            fields: j.fields,
            ring_tag: None,
            precision: Precision::Float32,
        })
    }
}

pub(crate) fn block_capacity(dim: usize, p: Precision) -> usize {
    (BLOCK_BYTES / p.code_bytes(dim.max(1))).clamp(16, 4096)
}

/// Target plaintext size of a stored block that a write still appends to.
pub(crate) const APPEND_BYTES: usize = 16 << 10;

/// How many vectors a stored block may hold for a write to append to it
/// (and re-seal it whole): about [`APPEND_BYTES`] of float32 vectors, at
/// least 16, at most a block. The same count at every precision: ids, not
/// codes, dominate a compressed block's bytes at small dimensions.
pub(crate) fn append_capacity(dim: usize, p: Precision) -> usize {
    (APPEND_BYTES / (4 * dim.max(1))).clamp(16, block_capacity(dim, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Persisted {
        let mut fields = BTreeMap::new();
        fields.insert("a.b".to_owned(), FieldSchema::pattern());
        fields.insert("c".to_owned(), FieldSchema::unindexed());
        let mut p = Persisted::new(Some(768), Metric::Cosine, fields);
        p.trained = true;
        p.generation = 7;
        p.next_seq = 1 << 40;
        p.lists = Arc::new(vec![Arc::default(); 300]);
        p.n_lists = 300;
        p.blocks = 12_345;
        p.digest = Digest([1, u64::MAX, 3, 4]);
        p.has_metadata = true;
        p.ring_tag = Some([7; 32]);
        p.precision = Precision::Tq4;
        p
    }

    #[test]
    fn records_round_trip_and_versions_1_and_2_still_read() {
        let p = sample();
        let bytes = p.encode().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes[0], 5);
        assert_eq!(Persisted::decode(&bytes).ok(), Some(p.clone()));
        for cut in 0..bytes.len() {
            assert!(Persisted::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        // Version 4 (no precision byte) reads as float32.
        let v4 = [&[4u8][..], &bytes[1..bytes.len() - 1]].concat();
        let back = Persisted::decode(&v4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.precision, Precision::Float32);
        assert_eq!(back.ring_tag, p.ring_tag);
        let bad = [&bytes[..bytes.len() - 1], &[9u8][..]].concat();
        assert!(matches!(Persisted::decode(&bad), Err(Error::Decode(_))));

        // Version 2 (JSON, with an older unindexed path, no ring tag): read,
        // and written back as version 4 with the path folded into the schema.
        let mut old = p.clone();
        old.version = 2;
        old.ring_tag = None;
        old.precision = Precision::Float32;
        old.unindexed_fields = vec!["z".to_owned()];
        let back = Persisted::decode(&legacy::encode(&old, None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, old);
        let upgraded = Persisted::decode(&back.encode().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(upgraded.schema(), old.schema());
        assert!(upgraded.unindexed_fields.is_empty() && upgraded.fields.contains_key("z"));

        // Version 1 lists its blocks, and must be upgraded before a write.
        let lists = vec![vec![BlockRef { seq: 4, count: 9 }]; 300];
        let v1 = Persisted::decode(&legacy::encode(&old, Some(&lists)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v1.is_legacy());
        assert_eq!(v1.lists[299].as_slice(), &lists[299][..]);
        assert!(matches!(
            v1.encode(),
            Err(Error::Corrupt {
                what: Record::State,
                ..
            })
        ));
    }

    #[test]
    fn metric_codes_index_the_table() {
        for (code, m) in METRICS.iter().enumerate() {
            assert_eq!(usize::from(metric_code(*m)), code, "{m}");
        }
    }

    #[test]
    fn bad_fields_are_typed_errors() {
        let bytes = sample().encode().unwrap_or_else(|e| panic!("{e}"));
        let newer = [&[6u8][..], &bytes[1..]].concat();
        assert!(matches!(
            Persisted::decode(&newer),
            Err(Error::Decode(vecseal_codec::Error::Version {
                record: Record::State,
                found: 6,
                ..
            }))
        ));
        // The metric byte sits after the version, the flag and the dimension.
        let mut bad_metric = bytes.clone();
        bad_metric[10] = 9;
        assert!(matches!(
            Persisted::decode(&bad_metric),
            Err(Error::Decode(vecseal_codec::Error::Invalid {
                field: "metric",
                found: 9,
                ..
            }))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Arbitrary bytes after the version byte (to reach the fields):
        /// a clean error, or a record that encodes back to the same bytes.
        #[test]
        fn arbitrary_bytes_are_an_error_or_a_canonical_record(
            tail in proptest::collection::vec(any::<u8>(), 0..160),
            version in 0u8..4,
        ) {
            // 0: no version byte; 3 and 4: older versions, which encode as
            // the current one with no ring tag (3) and float32 (3, 4); 5:
            // the current one.
            let bytes = match version {
                0 => tail,
                v => [&[v + 2][..], &tail].concat(),
            };
            if let Ok(p) = Persisted::decode(&bytes) {
                let added: &[u8] = match bytes.first() {
                    Some(3) => &[0, 0],
                    Some(4) => &[0],
                    _ => &[],
                };
                if bytes.first() != Some(&b'{') {
                    let now = [&[5u8][..], &bytes[1..], added].concat();
                    prop_assert_eq!(p.encode().ok(), Some(now));
                }
            }
        }
    }
}
