//! Plaintext encodings of items and blocks (sealed before storage).

use crate::{Error, Result};

const ITEM_VERSION: u8 = 1;
const BLOCK_VERSION: u8 = 1;

/// The plaintext of an item record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemRecord {
    pub(crate) id: String,
    pub(crate) vector: Vec<f32>,
    pub(crate) contents: Option<Vec<u8>>,
    pub(crate) metadata: Option<String>,
}

/// A decrypted block of search vectors of one list.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Block {
    pub(crate) ids: Vec<String>,
    pub(crate) vectors: Vec<f32>,
}

impl Block {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.vectors.len() * 4 + self.ids.iter().map(|s| s.len() + 24).sum::<usize>() + 64
    }

    pub(crate) fn remove(&mut self, id: &str, dim: usize) -> bool {
        match self.ids.iter().position(|x| x == id) {
            Some(i) => {
                self.ids.swap_remove(i);
                let last = self.ids.len();
                if i != last {
                    let (head, tail) = self.vectors.split_at_mut(last * dim);
                    head[i * dim..(i + 1) * dim].copy_from_slice(&tail[..dim]);
                }
                self.vectors.truncate(last * dim);
                true
            }
            None => false,
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Corrupt {
                what: self.what,
                reason: format!("truncated: {n} bytes needed, {} left", self.buf.len()),
            });
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        let what = self.what;
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Error::Corrupt {
            what,
            reason: "invalid UTF-8".into(),
        })
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let raw = self.take(n.checked_mul(4).ok_or_else(|| Error::Corrupt {
            what: self.what,
            reason: "length overflow".into(),
        })?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt {
                what: self.what,
                reason: format!("{} trailing bytes", self.buf.len()),
            })
        }
    }
}

impl ItemRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.id.len() + self.vector.len() * 4);
        out.push(ITEM_VERSION);
        put_bytes(&mut out, self.id.as_bytes());
        out.extend_from_slice(&(self.vector.len() as u32).to_le_bytes());
        put_f32s(&mut out, &self.vector);
        for field in [
            self.contents.as_deref(),
            self.metadata.as_deref().map(str::as_bytes),
        ] {
            match field {
                Some(b) => {
                    out.push(1);
                    put_bytes(&mut out, b);
                }
                None => out.push(0),
            }
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader {
            buf,
            what: "item record",
        };
        let v = r.u8()?;
        if v != ITEM_VERSION {
            return Err(Error::Corrupt {
                what: "item record",
                reason: format!("version {v}, expected {ITEM_VERSION}"),
            });
        }
        let id = r.string()?;
        let dim = r.u32()? as usize;
        let vector = r.f32s(dim)?;
        let contents = if r.u8()? == 1 {
            Some(r.bytes()?.to_vec())
        } else {
            None
        };
        let metadata = if r.u8()? == 1 {
            Some(r.string()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            id,
            vector,
            contents,
            metadata,
        })
    }
}

impl Block {
    pub(crate) fn encode(&self, dim: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.vectors.len() * 4 + self.ids.len() * 16);
        out.push(BLOCK_VERSION);
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        out.extend_from_slice(&(dim as u32).to_le_bytes());
        for id in &self.ids {
            put_bytes(&mut out, id.as_bytes());
        }
        put_f32s(&mut out, &self.vectors);
        out
    }

    pub(crate) fn decode(buf: &[u8], dim: usize) -> Result<Self> {
        let mut r = Reader {
            buf,
            what: "vector block",
        };
        let v = r.u8()?;
        if v != BLOCK_VERSION {
            return Err(Error::Corrupt {
                what: "vector block",
                reason: format!("version {v}, expected {BLOCK_VERSION}"),
            });
        }
        let n = r.u32()? as usize;
        let d = r.u32()? as usize;
        if d != dim {
            return Err(Error::Corrupt {
                what: "vector block",
                reason: format!("dimension {d}, expected {dim}"),
            });
        }
        let mut ids = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            ids.push(r.string()?);
        }
        let vectors = r.f32s(n * d)?;
        r.finish()?;
        Ok(Self { ids, vectors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn item_round_trip(id in ".{1,20}", v in proptest::collection::vec(-1e6f32..1e6, 0..40),
                           c in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
                           m in proptest::option::of(".{0,30}")) {
            let rec = ItemRecord { id, vector: v, contents: c, metadata: m };
            prop_assert_eq!(ItemRecord::decode(&rec.encode()).ok(), Some(rec.clone()));
            let enc = rec.encode();
            for cut in 0..enc.len() {
                prop_assert!(ItemRecord::decode(&enc[..cut]).is_err());
            }
        }

        #[test]
        fn block_round_trip_and_remove(n in 0usize..20, d in 1usize..6) {
            let ids: Vec<String> = (0..n).map(|i| format!("id{i}")).collect();
            let vectors: Vec<f32> = (0..n * d).map(|i| i as f32).collect();
            let mut b = Block { ids, vectors };
            prop_assert_eq!(Block::decode(&b.encode(d), d).ok(), Some(b.clone()));
            if n > 0 {
                let victim = format!("id{}", n / 2);
                prop_assert!(b.remove(&victim, d));
                prop_assert_eq!(b.len(), n - 1);
                prop_assert_eq!(b.vectors.len(), (n - 1) * d);
                for (i, id) in b.ids.iter().enumerate() {
                    let orig: usize = id[2..].parse().unwrap_or(usize::MAX);
                    prop_assert_eq!(b.vectors[i * d], (orig * d) as f32);
                }
            }
        }
    }
}
