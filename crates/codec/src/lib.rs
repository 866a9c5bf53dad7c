//! The one binary format of vecseal's stored records.
//!
//! Every record vecseal stores (keyring, catalog entry, index state,
//! centroids, item, block) is written with a [`Writer`] and read with a
//! [`Reader`]: little-endian integers, byte strings as a `u32` length and
//! the bytes, `f32` values as their little-endian bits. A reader knows which
//! [`Record`] it reads, so every decode error names the record kind and
//! what was wrong as data ([`Error`]), never as a string literal. Readers
//! never panic on any input: every length is checked against what is left
//! before it is used (a property test feeds arbitrary bytes).
//!
//! Records are sealed before they reach the store; this crate knows nothing
//! of keys or ciphers and depends on nothing of vecseal.
//!
//! ```
//! use vecseal_codec::{Error, Reader, Record, Writer};
//!
//! let mut w = Writer::new();
//! w.u8(1).str("doc-1").f32s(&[0.5, -1.0]);
//! let bytes = w.into_vec();
//!
//! let mut r = Reader::new(&bytes, Record::Item);
//! assert_eq!(r.u8()?, 1);
//! assert_eq!(r.str()?, "doc-1");
//! assert_eq!(r.f32s(2)?, vec![0.5, -1.0]);
//! r.finish()?;
//!
//! // One byte short: a typed error naming the record.
//! let mut r = Reader::new(&bytes[..bytes.len() - 1], Record::Item);
//! r.u8()?;
//! r.str()?;
//! assert!(matches!(r.f32s(2), Err(Error::Truncated { record: Record::Item, .. })));
//! # Ok::<(), Error>(())
//! ```
#![deny(missing_docs)]

use std::fmt;

/// The kinds of stored records. The discriminant is stable: the index binds
/// it into the associated data of every sealed record of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Record {
    /// An index's state record (dimension, metric, lists, digest, schema).
    State = 1,
    /// The centroids of a trained index.
    Centroids = 2,
    /// One item: id, vector, contents, metadata.
    Item = 3,
    /// A block of search vectors of one list.
    Block = 4,
    /// The keyring of an index (its wrapped data key).
    Keyring = 5,
    /// A catalog entry: index id and keyring.
    Catalog = 6,
}

impl Record {
    /// The record kind, as the docs and error messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Record::State => "index state record",
            Record::Centroids => "centroids record",
            Record::Item => "item record",
            Record::Block => "vector block",
            Record::Keyring => "keyring",
            Record::Catalog => "catalog entry",
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record that does not decode. Every variant names the record kind.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes end before the record does.
    #[error("corrupt {record}: truncated, {needed} bytes needed where {left} are left")]
    Truncated {
        /// The record kind.
        record: Record,
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// Bytes after the end of the record.
    #[error("corrupt {record}: {extra} bytes after its end, expected none")]
    Trailing {
        /// The record kind.
        record: Record,
        /// How many.
        extra: usize,
    },
    /// A format version this build does not read.
    #[error("{record} of version {found}: this vecseal reads versions {oldest} to {newest} (a newer vecseal wrote it, or it is corrupt)")]
    Version {
        /// The record kind.
        record: Record,
        /// The version found.
        found: u32,
        /// The oldest version read.
        oldest: u32,
        /// The newest version read (and written).
        newest: u32,
    },
    /// A field with a value outside its domain.
    #[error("corrupt {record}: {field} is {found}, expected {expected}")]
    Invalid {
        /// The record kind.
        record: Record,
        /// The field.
        field: &'static str,
        /// The value found.
        found: u64,
        /// What would be valid.
        expected: &'static str,
    },
    /// A text field that is not UTF-8.
    #[error("corrupt {record}: a text field is not valid UTF-8")]
    Utf8 {
        /// The record kind.
        record: Record,
    },
    /// A length whose size in bytes overflows the address space.
    #[error("corrupt {record}: the length of {field} overflows")]
    Overflow {
        /// The record kind.
        record: Record,
        /// The field.
        field: &'static str,
    },
}

impl Error {
    /// The record kind that failed to decode.
    pub fn record(&self) -> Record {
        match *self {
            Error::Truncated { record, .. }
            | Error::Trailing { record, .. }
            | Error::Version { record, .. }
            | Error::Invalid { record, .. }
            | Error::Utf8 { record }
            | Error::Overflow { record, .. } => record,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Appends fields to a record's bytes.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty record with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            out: Vec::with_capacity(n),
        }
    }

    /// A record written after the bytes already in `out` (such as the
    /// room a sealer fills in front of its plaintext, see
    /// `vecseal_envelope::Sealer::seal_vec`).
    pub fn after(out: Vec<u8>) -> Self {
        Self { out }
    }

    /// Makes room for `n` more bytes.
    pub fn reserve(&mut self, n: usize) -> &mut Self {
        self.out.reserve(n);
        self
    }

    /// The bytes written.
    pub fn into_vec(self) -> Vec<u8> {
        self.out
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// A boolean as one byte, 0 or 1.
    pub fn flag(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length or count as a `u32`.
    ///
    /// # Panics
    /// If `n` exceeds `u32::MAX`: callers bound what they store (ids,
    /// contents and batches are far below 4 GiB), so a larger value is a bug.
    pub fn len_u32(&mut self, n: usize) -> &mut Self {
        let n = u32::try_from(n).unwrap_or_else(|_| panic!("a stored length exceeds u32::MAX"));
        self.u32(n)
    }

    /// Bytes as they are, with no length.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    /// A byte string: its length as a `u32`, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.len_u32(b.len()).raw(b)
    }

    /// A text: its UTF-8 bytes as a byte string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// An optional byte string: a flag, then the bytes when present.
    pub fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            Some(b) => self.flag(true).bytes(b),
            None => self.flag(false),
        }
    }

    /// `f32` values as their little-endian bits, with no count.
    pub fn f32s(&mut self, v: &[f32]) -> &mut Self {
        // One copy of the bytes on a little-endian machine. (Pushed value
        // by value, the capacity was checked each time, a sixth of a
        // one-item upsert at 768 dimensions; grown with zeros and then
        // filled, the zeroing and the fill were a tenth.)
        if cfg!(target_endian = "little") {
            self.out.extend_from_slice(bytemuck::cast_slice(v));
        } else {
            self.out.reserve(v.len() * 4);
            for x in v {
                self.out.extend_from_slice(&x.to_le_bytes());
            }
        }
        self
    }
}

/// Reads the fields of one record, in order.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    len: usize,
    record: Record,
}

impl<'a> Reader<'a> {
    /// A reader of `buf`, which holds a record of kind `record`.
    pub fn new(buf: &'a [u8], record: Record) -> Self {
        Self {
            buf,
            len: buf.len(),
            record,
        }
    }

    /// The record kind read.
    pub fn record(&self) -> Record {
        self.record
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.len - self.buf.len()
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// An [`Error::Invalid`] of this record.
    pub fn invalid(&self, field: &'static str, found: u64, expected: &'static str) -> Error {
        Error::Invalid {
            record: self.record,
            field,
            found,
            expected,
        }
    }

    /// Checks that the `index`-th key of a sorted collection (`next`)
    /// comes strictly after the one before (`last`): records keep such
    /// keys in ascending order, so a repeated key is refused rather than
    /// silently merged, and every record has one encoding.
    pub fn ascending<T: Ord + ?Sized>(
        &self,
        last: Option<&T>,
        next: &T,
        field: &'static str,
        index: usize,
    ) -> Result<()> {
        if last.is_some_and(|last| last >= next) {
            return Err(self.invalid(field, index as u64, "keys in ascending order, each once"));
        }
        Ok(())
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                record: self.record,
                needed: n,
                left: self.buf.len(),
            });
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A version byte, which must lie in `oldest..=newest`.
    pub fn version(&mut self, oldest: u8, newest: u8) -> Result<u8> {
        let v = self.u8()?;
        if (oldest..=newest).contains(&v) {
            Ok(v)
        } else {
            Err(Error::Version {
                record: self.record,
                found: v.into(),
                oldest: oldest.into(),
                newest: newest.into(),
            })
        }
    }

    /// A boolean written by [`Writer::flag`]: 0 or 1, nothing else.
    pub fn flag(&mut self, field: &'static str) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(field, v.into(), "0 or 1")),
        }
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A count written by [`Writer::len_u32`].
    pub fn len_u32(&mut self) -> Result<usize> {
        self.u32().map(|n| n as usize)
    }

    /// A byte string written by [`Writer::bytes`].
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len_u32()?;
        self.take(n)
    }

    /// A text written by [`Writer::str`].
    pub fn str(&mut self) -> Result<&'a str> {
        let b = self.bytes()?;
        self.utf8(b)
    }

    fn utf8(&self, b: &'a [u8]) -> Result<&'a str> {
        std::str::from_utf8(b).map_err(|_| Error::Utf8 {
            record: self.record,
        })
    }

    /// An optional byte string written by [`Writer::opt_bytes`].
    pub fn opt_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>> {
        if self.flag(field)? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional text: [`Writer::opt_bytes`] of UTF-8 bytes.
    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>> {
        let b = self.opt_bytes(field)?;
        b.map(|b| self.utf8(b)).transpose()
    }

    /// The bytes of `n` `f32` values (to read in place).
    pub fn f32_bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let len = n.checked_mul(4).ok_or(Error::Overflow {
            record: self.record,
            field,
        })?;
        self.take(len)
    }

    /// `n` `f32` values.
    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let raw = self.f32_bytes(n, "f32 values")?;
        // One copy of the bytes, then (on a big-endian machine only) each
        // value's bytes turned around: converted value by value, this was
        // about a tenth of a batch of queries that rerank items at 768
        // dimensions.
        let mut out = vec![0f32; raw.len() / 4];
        bytemuck::cast_slice_mut::<f32, u8>(&mut out).copy_from_slice(raw);
        if cfg!(target_endian = "big") {
            for v in &mut out {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        Ok(out)
    }

    /// Checks that the record ends here.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Trailing {
                record: self.record,
                extra: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Field {
        U8(u8),
        Flag(bool),
        U32(u32),
        U64(u64),
        Bytes(Vec<u8>),
        Str(String),
        Opt(Option<Vec<u8>>),
        F32s(Vec<f32>),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            any::<u8>().prop_map(Field::U8),
            any::<bool>().prop_map(Field::Flag),
            any::<u32>().prop_map(Field::U32),
            any::<u64>().prop_map(Field::U64),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Field::Bytes),
            ".{0,12}".prop_map(Field::Str),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..9)).prop_map(Field::Opt),
            proptest::collection::vec(-1e9f32..1e9, 0..9).prop_map(Field::F32s),
        ]
    }

    fn write(fields: &[Field]) -> Vec<u8> {
        let mut w = Writer::new();
        for f in fields {
            match f {
                Field::U8(v) => w.u8(*v),
                Field::Flag(v) => w.flag(*v),
                Field::U32(v) => w.u32(*v),
                Field::U64(v) => w.u64(*v),
                Field::Bytes(v) => w.bytes(v),
                Field::Str(v) => w.str(v),
                Field::Opt(v) => w.opt_bytes(v.as_deref()),
                Field::F32s(v) => w.len_u32(v.len()).f32s(v),
            };
        }
        w.into_vec()
    }

    /// Reads fields shaped like `shape` (their values are ignored).
    fn read(bytes: &[u8], shape: &[Field]) -> Result<Vec<Field>> {
        let mut r = Reader::new(bytes, Record::State);
        let mut out = Vec::new();
        for f in shape {
            out.push(match f {
                Field::U8(_) => Field::U8(r.u8()?),
                Field::Flag(_) => Field::Flag(r.flag("flag")?),
                Field::U32(_) => Field::U32(r.u32()?),
                Field::U64(_) => Field::U64(r.u64()?),
                Field::Bytes(_) => Field::Bytes(r.bytes()?.to_vec()),
                Field::Str(_) => Field::Str(r.str()?.to_owned()),
                Field::Opt(_) => Field::Opt(r.opt_bytes("opt")?.map(<[u8]>::to_vec)),
                Field::F32s(_) => {
                    let n = r.len_u32()?;
                    Field::F32s(r.f32s(n)?)
                }
            });
        }
        r.finish()?;
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fields_round_trip_and_every_cut_is_an_error(fields in proptest::collection::vec(field(), 0..12)) {
            let bytes = write(&fields);
            prop_assert_eq!(read(&bytes, &fields), Ok(fields.clone()));
            for cut in 0..bytes.len() {
                let e = read(&bytes[..cut], &fields);
                prop_assert!(matches!(e, Err(Error::Truncated { record: Record::State, .. }) | Err(Error::Invalid { .. }) | Err(Error::Utf8 { .. })), "{:?}", e);
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert_eq!(read(&longer, &fields), Err(Error::Trailing { record: Record::State, extra: 1 }));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                       shape in proptest::collection::vec(field(), 0..12)) {
            // Either a clean error or fields that write back to the same bytes.
            if let Ok(fields) = read(&bytes, &shape) {
                prop_assert_eq!(write(&fields), bytes);
            }
        }
    }

    #[test]
    fn f32s_are_little_endian_and_follow_what_came_before() {
        let mut w = Writer::after(vec![7, 7]);
        w.reserve(16).f32s(&[1.0, -2.5]).u8(9);
        let mut want = vec![7, 7];
        want.extend_from_slice(&[0x00, 0x00, 0x80, 0x3f]); // 1.0
        want.extend_from_slice(&[0x00, 0x00, 0x20, 0xc0]); // -2.5
        want.push(9);
        assert_eq!(w.into_vec(), want);
    }

    #[test]
    fn errors_name_the_record_and_the_expected_value() {
        let mut r = Reader::new(&[9], Record::Block);
        let e = r.version(1, 3).err();
        assert_eq!(
            e,
            Some(Error::Version {
                record: Record::Block,
                found: 9,
                oldest: 1,
                newest: 3
            })
        );
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("vector block") && msg.contains("1 to 3"),
            "{msg}"
        );

        let mut r = Reader::new(&[2], Record::Item);
        let e = r.flag("contents flag").err();
        assert_eq!(e.as_ref().map(Error::record), Some(Record::Item));
        assert!(matches!(
            e,
            Some(Error::Invalid {
                field: "contents flag",
                found: 2,
                ..
            })
        ));

        let mut r = Reader::new(&[0xff, 0xfe, 0xff, 0xff, 0xff], Record::Keyring);
        assert_eq!(
            r.f32_bytes(usize::MAX, "vectors").err(),
            Some(Error::Overflow {
                record: Record::Keyring,
                field: "vectors"
            })
        );
        // Sorted keys: each strictly after the one before.
        let sorted = Reader::new(&[], Record::State);
        assert!(sorted.ascending(None, "a", "path", 0).is_ok());
        assert!(sorted.ascending(Some("a"), "b", "path", 1).is_ok());
        for last in ["b", "c"] {
            assert!(matches!(
                sorted.ascending(Some(last), "b", "path", 2),
                Err(Error::Invalid {
                    record: Record::State,
                    field: "path",
                    found: 2,
                    ..
                })
            ));
        }
        // A length prefix larger than what is left is truncation, not a panic.
        assert!(matches!(
            r.bytes(),
            Err(Error::Truncated {
                record: Record::Keyring,
                needed: 4_294_967_039,
                left: 1
            })
        ));
    }
}
