//! Plaintext encodings of items and blocks (sealed before storage), on the
//! shared binary reader and writer of `vecseal-codec`.

use std::borrow::Cow;
use std::ops::Range;

use vecseal_codec::{Reader, Record, Writer};

use crate::precision::{Codes, Pending, Precision};
use crate::{Metric, Result};

mod item;

#[cfg(test)]
use item::ITEM_VERSION;
pub(crate) use item::{encode_item_after, ItemRecord};

const BLOCK_VERSION: u8 = 5;

/// Whether an encoded 8- or 4-bit block carries the squared norms of its
/// decoded vectors (version 4). The integer pass needs them under the
/// Euclidean metrics; kept in the block, a read need not decode every
/// vector to compute them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Norms {
    Kept,
    Omitted,
}

impl Norms {
    /// What blocks of an index under `metric` carry.
    pub(crate) fn for_metric(metric: Metric) -> Self {
        if metric.is_euclidean() {
            Self::Kept
        } else {
            Self::Omitted
        }
    }
}

/// The ids of a block, in one string (one allocation per block, not per id).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Ids {
    text: String,
    ends: Vec<u32>,
}

impl Ids {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub(crate) fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len() as u32);
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// A decrypted block of search vectors of one list.
///
/// A block read from the store is used where it was decrypted: its vectors
/// (or, compressed, its range and codes) are `data[at..end]` of the buffer
/// that held the sealed value, which the layout keeps 4-byte aligned (see
/// [`Block::open_into`]). A compressed block that is edited keeps its codes
/// and the exact vectors pushed since in `pending` until it is encoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Block {
    ids: Ids,
    data: Vec<f32>,
    at: usize,
    end: usize,
    /// Bytes of codes in `data[at..end]` after the range (compressed).
    code_len: usize,
    precision: Precision,
    pending: Option<Box<Pending>>,
    /// Where the block belongs, as read from a block of version 3 or later.
    place: Option<Place>,
    /// The squared norms of the decoded vectors of an 8- or 4-bit block as
    /// read: read with it, or computed on first need (see
    /// [`Block::decoded_norms`]).
    norms: std::sync::OnceLock<Vec<f32>>,
    /// Whether `norms` was read with the block.
    stored_norms: bool,
}

/// Where a block belongs: sealed inside it (from version 3), so the blocks of an
/// index are their own directory (see the `state` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// The list.
    pub(crate) list: u32,
    /// The training generation it was written in.
    pub(crate) generation: u64,
    /// Its number (its storage key is derived from it).
    pub(crate) seq: u64,
}

impl PartialEq for Block {
    fn eq(&self, o: &Self) -> bool {
        self.ids == o.ids
            && self.precision == o.precision
            && self.payload() == o.payload()
            && self.pending == o.pending
    }
}

impl Block {
    /// An empty block of the given precision.
    pub(crate) fn new(precision: Precision) -> Self {
        Self {
            precision,
            ..Self::default()
        }
    }

    pub(crate) fn precision(&self) -> Precision {
        self.precision
    }

    /// The range and codes of a compressed block as read (`None` for a
    /// float32 block, or one under edit).
    pub(crate) fn codes(&self, dim: usize) -> Option<Codes<'_>> {
        if !self.precision.is_compressed() || self.pending.is_some() {
            return None;
        }
        let words = &self.data[self.at..self.end];
        let ranged = if self.precision == Precision::Float16 {
            0
        } else {
            dim
        };
        let (lo, rest) = words.split_at(ranged.min(words.len()));
        let (step, codes) = rest.split_at(ranged.min(rest.len()));
        Some(Codes {
            precision: self.precision,
            lo,
            step,
            bytes: &bytemuck::cast_slice::<f32, u8>(codes)[..self.code_len],
        })
    }

    /// The squared norms of this block's decoded vectors (empty unless it
    /// holds codes as read: see [`Block::codes`]), each the canonical sum
    /// over the decoded vector, so the same bits at every SIMD level and in
    /// a batch as alone: read with the block when it keeps them
    /// ([`Norms::Kept`]), else computed once per block read (a cached block
    /// keeps them), for the integer pass's Euclidean distances.
    pub(crate) fn decoded_norms(&self, dim: usize) -> &[f32] {
        match self.codes(dim) {
            Some(codes) => self.norms.get_or_init(|| codes.squared_norms(dim)),
            None => &[],
        }
    }

    /// The bytes of the vectors, or of the range and codes, as read.
    fn payload(&self) -> &[u8] {
        let bytes = bytemuck::cast_slice::<f32, u8>(&self.data[self.at..self.end]);
        let len = if self.precision.is_compressed() {
            (self.end - self.at - self.code_len.div_ceil(4)) * 4 + self.code_len
        } else {
            bytes.len()
        };
        &bytes[..len]
    }

    /// A compressed block, ready for edits (once).
    fn pending(&mut self, dim: usize) -> &mut Pending {
        if self.pending.is_none() {
            let p = self.codes(dim).map(|c| Pending::of(&c)).unwrap_or_default();
            self.pending = Some(Box::new(p));
            (self.at, self.end, self.code_len) = (0, 0, 0);
        }
        self.pending.get_or_insert_default()
    }

    /// Where the block belongs, when it was read from a block of version 3 or later.
    pub(crate) fn place(&self) -> Option<Place> {
        self.place
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn ids(&self) -> &Ids {
        &self.ids
    }

    /// The vectors, row-major, one per id (float32 blocks; empty for a
    /// compressed one).
    pub(crate) fn vectors(&self) -> &[f32] {
        debug_assert!(
            !self.precision.is_compressed(),
            "the vectors of a compressed block are its items' (see Block::codes)"
        );
        if self.precision.is_compressed() {
            return &[];
        }
        &self.data[self.at..self.end]
    }

    /// Heap bytes held (the budget unit of the list cache).
    pub(crate) fn bytes(&self) -> usize {
        self.data.capacity() * 4 + self.ids.text.capacity() + self.ids.ends.capacity() * 4 + 64
    }

    /// Moves the vectors to the front of `data` and drops the rest of a
    /// decrypted buffer, so vectors can be appended.
    fn compact(&mut self) {
        if self.at != 0 || self.data.len() != self.end {
            self.data.copy_within(self.at..self.end, 0);
            self.data.truncate(self.end - self.at);
            (self.at, self.end) = (0, self.data.len());
        }
    }

    pub(crate) fn push(&mut self, id: &str, vector: &[f32]) {
        if self.precision.is_compressed() {
            self.pending(vector.len()).exact.extend_from_slice(vector);
            self.ids.push(id);
            return;
        }
        self.compact();
        self.ids.push(id);
        self.data.extend_from_slice(vector);
        self.end = self.data.len();
    }

    pub(crate) fn remove(&mut self, id: &str, dim: usize) -> bool {
        let Some(i) = self.ids.iter().position(|x| x == id) else {
            return false;
        };
        let len = self.len();
        // Swap-remove: the last id and vector (of its part, in a compressed
        // block) take the place of the removed.
        let moved = if self.precision.is_compressed() {
            let p = self.precision;
            self.pending(dim).swap_remove(p, dim, i, len)
        } else {
            self.compact();
            let last = len - 1;
            if i != last {
                self.data.copy_within(last * dim..(last + 1) * dim, i * dim);
            }
            self.data.truncate(last * dim);
            self.end = self.data.len();
            last
        };
        let mut ids = Ids::default();
        for j in (0..len).filter(|&j| j != moved) {
            ids.push(self.ids.get(if j == i { moved } else { j }));
        }
        self.ids = ids;
        true
    }
}

const CENTROIDS_VERSION: u8 = 1;

/// The centroids of a trained index: `[1, n_lists: u32, dim: u32, n_lists ×
/// dim f32]`.
pub(crate) fn encode_centroids(centroids: &[f32], dim: usize) -> Vec<u8> {
    let mut w = Writer::with_capacity(9 + centroids.len() * 4);
    w.u8(CENTROIDS_VERSION)
        .len_u32(centroids.len() / dim.max(1))
        .len_u32(dim)
        .f32s(centroids);
    w.into_vec()
}

/// Decodes the centroids of an index with `n_lists` lists of dimension
/// `dim`. Reads the first layout too: the bare `f32` values, with no header
/// (told apart by its length, which the header makes this one's differ
/// from).
pub(crate) fn decode_centroids(b: &[u8], n_lists: usize, dim: usize) -> Result<Vec<f32>> {
    let mut r = Reader::new(b, Record::Centroids);
    let n = n_lists
        .checked_mul(dim)
        .ok_or(vecseal_codec::Error::Overflow {
            record: Record::Centroids,
            field: "centroids",
        })?;
    if b.len() != n.saturating_mul(4) {
        r.version(CENTROIDS_VERSION, CENTROIDS_VERSION)?;
        for (field, want) in [("number of lists", n_lists), ("dimension", dim)] {
            let got = r.len_u32()?;
            if got != want {
                return Err(r.invalid(field, got as u64, "the index state's").into());
            }
        }
    }
    let centroids = r.f32s(n)?;
    r.finish()?;
    Ok(centroids)
}

/// Where the vectors start in the plaintext of a version-2 block: after the
/// version, a pad byte and the two counts. The envelope puts a plaintext 2
/// bytes past a multiple of 4 in the sealed value (a 2-byte header, then a
/// 12- or 24-byte nonce), so the vectors are 4-byte aligned where they are
/// decrypted and are scanned there, without a copy.
const BLOCK_VECTORS_AT: usize = 10;

impl Block {
    /// The plaintext of this block alone (see [`Block::encode_after`]).
    #[cfg(test)]
    pub(crate) fn encode(&self, dim: usize, place: Place, norms: Norms) -> Vec<u8> {
        self.encode_after(Vec::new(), 0, dim, place, norms)
    }

    /// Version 5, little-endian: `[5, precision, n: u32, dim: u32,
    /// payload, text_len: u32, text, n × u32 ends, m: u32, m × f32 norms,
    /// list: u32, generation: u64, seq: u64]`. The ids are one UTF-8
    /// text, id `i` ending at byte `ends[i]` (version 4 wrote each id with
    /// its own length: a read checked and copied them one by one, measured
    /// at a tenth of a few-probe batch with the list cache off). The
    /// payload is `n·dim` f32 (float32, code 0), or the range (`lo`,
    /// `step`: `dim` f32 each; 8- and 4-bit codes only) and `n` codes (see
    /// [`Precision::code_bytes`]). `m` is
    /// `n` for an 8- or 4-bit block with [`Norms::Kept`] (the squared norms
    /// of its decoded vectors, see [`Block::decoded_norms`]), else 0.
    ///
    /// Written after the bytes in `out`, leaving `spare` bytes of capacity
    /// after it (see [`crate::keys::Keys::seal_built`]).
    pub(crate) fn encode_after(
        &self,
        out: Vec<u8>,
        spare: usize,
        dim: usize,
        place: Place,
        norms: Norms,
    ) -> Vec<u8> {
        let p = self.precision;
        // float32: the vectors; compressed: the range (if any) and codes.
        let (head, codes): (Cow<'_, [f32]>, Cow<'_, [u8]>) = if let Some(pending) = &self.pending {
            let (range, codes) = pending.finish(p, dim);
            let head = range.map_or_else(Vec::new, |r| [r.lo, r.step].concat());
            (Cow::Owned(head), Cow::Owned(codes))
        } else if let Some(c) = self.codes(dim) {
            (Cow::Owned([c.lo, c.step].concat()), Cow::Borrowed(c.bytes))
        } else {
            (Cow::Borrowed(self.vectors()), Cow::Borrowed(&[][..]))
        };
        let squares: Cow<'_, [f32]> =
            if norms == Norms::Omitted || p.levels() == 0 || head.is_empty() {
                Cow::Borrowed(&[])
            } else if self.pending.is_some() {
                let (lo, step) = head.split_at(dim);
                let coded = Codes {
                    precision: p,
                    lo,
                    step,
                    bytes: &codes,
                };
                Cow::Owned(coded.squared_norms(dim))
            } else {
                Cow::Borrowed(self.decoded_norms(dim))
            };
        let mut w = Writer::after(out);
        w.reserve(
            BLOCK_VECTORS_AT
                + head.len() * 4
                + codes.len()
                + self.ids.text.len()
                + 4 * self.len()
                + 4 * squares.len()
                + 24
                + spare,
        );
        w.u8(BLOCK_VERSION)
            .u8(p.code())
            .len_u32(self.len())
            .len_u32(dim)
            .f32s(&head)
            .raw(&codes);
        w.str(&self.ids.text);
        for &end in &self.ids.ends {
            w.u32(end);
        }
        w.len_u32(squares.len()).f32s(&squares);
        w.u32(place.list).u64(place.generation).u64(place.seq);
        w.into_vec()
    }

    /// A block decoded from its plaintext (copied).
    pub(crate) fn decode(plain: &[u8], dim: usize) -> Result<Self> {
        let mut b = Self::default();
        b.open_into(plain, dim, |p| Ok(0..p.len()))?;
        Ok(b)
    }

    /// Whether this block was read with its decoded vectors' norms (a
    /// version-4 8- or 4-bit block encoded with [`Norms::Kept`]).
    pub(crate) fn read_norms(&self) -> Norms {
        if self.stored_norms {
            Norms::Kept
        } else {
            Norms::Omitted
        }
    }

    /// Reads the sealed value `sealed` into this block, reusing its buffers:
    /// copies it into the f32 buffer, opens it there with `open` (which says
    /// where the plaintext is) and decodes it in place. On error the block
    /// is left empty.
    pub(crate) fn open_into(
        &mut self,
        sealed: &[u8],
        dim: usize,
        open: impl FnOnce(&mut [u8]) -> Result<Range<usize>>,
    ) -> Result<()> {
        (self.at, self.end, self.code_len) = (0, 0, 0);
        self.ids.clear();
        self.place = None;
        self.pending = None;
        self.norms = std::sync::OnceLock::new();
        self.stored_norms = false;
        // Only grows (and zero-fills) a buffer that is too short.
        self.data.resize(sealed.len().div_ceil(4), 0.0);
        let bytes = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut self.data)[..sealed.len()];
        bytes.copy_from_slice(sealed);
        let plain = open(bytes)?;
        let vectors = match parse_block(&bytes[plain.clone()], dim, &mut self.ids) {
            Ok(Parsed {
                payload,
                place,
                precision,
                code_len,
                norms,
            }) => {
                self.place = place;
                self.precision = precision;
                self.code_len = code_len;
                self.stored_norms = norms.is_some();
                if let Some(norms) = norms {
                    self.norms = std::sync::OnceLock::from(norms);
                }
                plain.start + payload.start..plain.start + payload.end
            }
            Err(e) => {
                self.ids.clear();
                return Err(e);
            }
        };
        let at = if vectors.start % 4 == 0 {
            vectors.start
        } else {
            bytes.copy_within(vectors.clone(), 0);
            0
        };
        self.at = at / 4;
        self.end = self.at + vectors.len().div_ceil(4);
        let floats = (vectors.len() - self.code_len) / 4;
        if cfg!(target_endian = "big") {
            for x in &mut self.data[self.at..self.at + floats] {
                *x = f32::from_bits(u32::from_le(x.to_bits()));
            }
        }
        Ok(())
    }
}

/// Reads the ids of a version-5 block (one text and where each id ends)
/// into `ids`, checking that every end is on a character boundary and
/// after the one before, and that the last is the text's end.
fn read_id_text(r: &mut Reader<'_>, n: usize, ids: &mut Ids) -> Result<()> {
    let text = r.str()?;
    // `n` little-endian u32s: the same bytes as `n` f32s.
    let ends = r.f32_bytes(n, "id ends")?;
    ids.text.push_str(text);
    let mut last = 0;
    for (i, b) in ends.chunks_exact(4).enumerate() {
        let end = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if end < last || !text.is_char_boundary(end as usize) {
            return Err(r
                .invalid(
                    "id end",
                    i as u64,
                    "ascending offsets on character boundaries of the ids' text",
                )
                .into());
        }
        ids.ends.push(end);
        last = end;
    }
    if last as usize != text.len() {
        return Err(r
            .invalid(
                "ids' text length",
                text.len() as u64,
                "the end of the last id",
            )
            .into());
    }
    Ok(())
}

/// What [`parse_block`] found.
struct Parsed {
    /// Where the vectors (or range and codes) are, in bytes.
    payload: Range<usize>,
    place: Option<Place>,
    precision: Precision,
    /// Bytes of codes at the end of the payload.
    code_len: usize,
    /// The decoded vectors' squared norms, when the block keeps them.
    norms: Option<Vec<f32>>,
}

/// Checks a block's plaintext and reads its ids into `ids`; returns where
/// its payload is in it, from version 3 its place and precision, and from
/// version 4 the norms it keeps. Reads versions 1 (ids before vectors, at
/// no particular alignment), 2, 3 (a trailer with the place), 4 (the
/// norms before it) and 5 (the ids as one text).
fn parse_block(plain: &[u8], dim: usize, ids: &mut Ids) -> Result<Parsed> {
    let mut r = Reader::new(plain, Record::Block);
    let version = r.version(1, BLOCK_VERSION)?;
    let mut precision = Precision::Float32;
    if version >= 2 {
        let code = r.u8()?;
        precision = Precision::from_code(code)
            .filter(|p| version >= 3 || !p.is_compressed())
            .ok_or_else(|| r.invalid("precision", code.into(), "0 to 3"))?;
    }
    let n = r.len_u32()?;
    let d = r.u32()?;
    if d as usize != dim {
        return Err(r
            .invalid("dimension", d.into(), "the index's dimension")
            .into());
    }
    let overflow = vecseal_codec::Error::Overflow {
        record: Record::Block,
        field: "vectors",
    };
    let mut read_ids = |r: &mut Reader<'_>| -> Result<()> {
        for _ in 0..n {
            ids.push(r.str()?);
        }
        Ok(())
    };
    if version == 1 {
        read_ids(&mut r)?;
    }
    let at = r.position();
    let (len, code_len) = if precision.is_compressed() {
        let head = if precision == Precision::Float16 {
            0
        } else {
            2 * dim
        };
        let head = r.f32_bytes(head, "range")?.len();
        let codes = n.checked_mul(precision.code_bytes(dim)).ok_or(overflow)?;
        (head + r.take(codes)?.len(), codes)
    } else {
        let len = n.checked_mul(dim).ok_or(overflow)?;
        (r.f32_bytes(len, "vectors")?.len(), 0)
    };
    if (2..=4).contains(&version) {
        read_ids(&mut r)?;
    } else if version >= 5 {
        read_id_text(&mut r, n, ids)?;
    }
    let mut norms = None;
    if version >= 4 {
        let m = r.len_u32()?;
        if m != 0 {
            if precision.levels() == 0 || m != n {
                return Err(r
                    .invalid(
                        "number of norms",
                        m as u64,
                        "0, or the block's number of vectors in an 8- or 4-bit block",
                    )
                    .into());
            }
            norms = Some(r.f32s(m)?);
        }
    }
    let place = if version >= 3 {
        Some(Place {
            list: r.u32()?,
            generation: r.u64()?,
            seq: r.u64()?,
        })
    } else {
        None
    };
    r.finish()?;
    Ok(Parsed {
        payload: at..at + len,
        place,
        precision,
        code_len,
        norms,
    })
}

#[cfg(test)]
mod tests;
