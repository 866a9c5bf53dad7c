//! The item record: an item's id, exact vector, contents and metadata
//! (sealed under the item's key).

use vecseal_codec::{Reader, Record, Writer};

use crate::Result;

pub(super) const ITEM_VERSION: u8 = 1;

/// The plaintext of an item record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemRecord {
    pub(crate) id: String,
    pub(crate) vector: Vec<f32>,
    pub(crate) contents: Option<Vec<u8>>,
    pub(crate) metadata: Option<String>,
}

/// The plaintext of an item record, from borrowed parts (see
/// [`ItemRecord`]), after the bytes in `out`, leaving `spare` bytes of
/// capacity after it (see [`crate::keys::Keys::seal_built`]).
pub(crate) fn encode_item_after(
    out: Vec<u8>,
    spare: usize,
    id: &str,
    vector: &[f32],
    contents: Option<&[u8]>,
    metadata: Option<&str>,
) -> Vec<u8> {
    let extra = contents.map_or(0, <[u8]>::len) + metadata.map_or(0, str::len);
    let mut w = Writer::after(out);
    w.reserve(18 + id.len() + vector.len() * 4 + extra + spare);
    w.u8(ITEM_VERSION)
        .str(id)
        .len_u32(vector.len())
        .f32s(vector)
        .opt_bytes(contents)
        .opt_bytes(metadata.map(str::as_bytes));
    w.into_vec()
}

impl ItemRecord {
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_item_after(
            Vec::new(),
            0,
            &self.id,
            &self.vector,
            self.contents.as_deref(),
            self.metadata.as_deref(),
        )
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, Record::Item);
        r.version(ITEM_VERSION, ITEM_VERSION)?;
        let id = r.str()?.to_owned();
        let dim = r.len_u32()?;
        let vector = r.f32s(dim)?;
        let contents = r.opt_bytes("contents flag")?.map(<[u8]>::to_vec);
        let metadata = r.opt_str("metadata flag")?.map(str::to_owned);
        r.finish()?;
        Ok(Self {
            id,
            vector,
            contents,
            metadata,
        })
    }
}
