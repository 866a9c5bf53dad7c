//! The catalog: index name → (index id, keyring), and the namespaces.

use vecseal_codec::{Reader, Record, Writer};
use vecseal_keyring::{IndexId, Keyring};
use vecseal_storage::WriteBatch;

use crate::guarded::GuardedStore;
use crate::keys::{tags_equal, Credentials, Keys};
use crate::{Error, Result};

/// The namespaces vecseal uses; open a store with them.
pub const NAMESPACES: &[&str] = &["catalog", "meta", "items", "blocks"];

pub(crate) const NS_CATALOG: &str = "catalog";
pub(crate) const NS_META: &str = "meta";
pub(crate) const NS_ITEMS: &str = "items";
pub(crate) const NS_BLOCKS: &str = "blocks";

/// 1: id and keyring; 2 (written now): with the entry's tag.
const CATALOG_VERSION: u8 = 2;

/// The key of the record that marks a data-key rotation in progress: in
/// `meta`, the index id and a plain suffix (it says only what the write
/// stream shows anyway). While it exists, records sealed under either data
/// key may be present (see `rotate`).
pub(crate) fn rotation_marker(id: IndexId) -> Vec<u8> {
    [&id.0[..], b"rotation"].concat()
}

pub(crate) fn catalog_key(name: &str) -> Vec<u8> {
    let mut k = b"index/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// One catalog entry: the index id, its keyring, and (from version 2) a
/// tag that binds them to the index name.
///
/// The tag is a MAC, under a key derived from the data key, of the name,
/// the id and the keyring's bytes ([`crate::keys::Keys::catalog_tag`]), and
/// the index state records the tag of the current entry. So whoever holds
/// the store but not the data key cannot swap two indexes' entries, replace
/// a wrap, or restore an older keyring (which would bring back revoked
/// users) without [`Error::CatalogTampered`] on the next use.
pub(crate) struct Entry {
    pub(crate) id: IndexId,
    pub(crate) ring: Keyring,
    /// The keyring as stored (what the tag covers).
    ring_bytes: Vec<u8>,
    tag: Option<[u8; 32]>,
}

impl Entry {
    /// A new entry for `ring`, tagged for `name` under `keys`.
    pub(crate) fn new(name: &str, ring: Keyring, keys: &Keys) -> Self {
        let ring_bytes = ring.to_bytes();
        let tag = Some(keys.catalog_tag(name, &ring_bytes));
        Self {
            id: ring.index(),
            ring,
            ring_bytes,
            tag,
        }
    }

    /// The entry as version 1 wrote it (no tag), for upgrade tests.
    #[cfg(test)]
    pub(crate) fn untagged(mut self) -> Self {
        self.tag = None;
        self
    }

    /// The tag (none on a version-1 entry).
    pub(crate) fn tag(&self) -> Option<[u8; 32]> {
        self.tag
    }

    /// `[version 2, index id: 16 bytes, tag: 32 bytes, keyring bytes]`
    /// (version 1, for an entry read without a tag: no tag).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(49 + self.ring_bytes.len());
        match &self.tag {
            Some(tag) => w.u8(CATALOG_VERSION).raw(&self.id.0).raw(tag),
            None => w.u8(1).raw(&self.id.0),
        };
        w.raw(&self.ring_bytes);
        w.into_vec()
    }

    /// Decodes an entry of version 1 or 2.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self> {
        let mut r = Reader::new(raw, Record::Catalog);
        let version = r.version(1, CATALOG_VERSION)?;
        let id = IndexId(r.array()?);
        let tag = if version >= 2 { Some(r.array()?) } else { None };
        let ring_bytes = r.take(r.remaining())?.to_vec();
        let ring = Keyring::from_bytes(&ring_bytes)?;
        if ring.index() != id {
            return Err(Error::Corrupt {
                what: Record::Catalog,
                reason: "its keyring belongs to another index".into(),
            });
        }
        Ok(Self {
            id,
            ring,
            ring_bytes,
            tag,
        })
    }

    /// Checks the entry read under `name` with the keys its keyring opened
    /// to, against `state_tag`, the tag the index state records.
    pub(crate) fn verify(
        &self,
        name: &str,
        keys: &Keys,
        state_tag: Option<[u8; 32]>,
    ) -> Result<()> {
        let tampered = |reason| Error::CatalogTampered {
            name: name.to_owned(),
            reason,
        };
        match (self.tag, state_tag) {
            // Written before entries had tags, and not yet upgraded.
            (None, None) => Ok(()),
            (None, Some(_)) => Err(tampered("its tag was removed")),
            (Some(tag), _) if !tags_equal(&tag, &keys.catalog_tag(name, &self.ring_bytes)) => Err(
                tampered("its tag does not verify: the entry of another index, a replaced wrap, or changed bytes"),
            ),
            (Some(tag), Some(state)) if !tags_equal(&tag, &state) => Err(tampered(
                "it is not the keyring the index state was written with (an older copy?)",
            )),
            (Some(_), None) => Err(tampered("the index state does not name this keyring")),
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

pub(crate) fn read_catalog(store: &GuardedStore, name: &str) -> Result<Entry> {
    let raw = store
        .get(NS_CATALOG, &catalog_key(name))?
        .ok_or_else(|| Error::NotFound(name.to_owned()))?;
    Entry::decode(&raw)
}

pub(crate) fn write_catalog(batch: &mut WriteBatch, name: &str, entry: &Entry) {
    batch.put_owned(NS_CATALOG, catalog_key(name), entry.encode());
}

pub(crate) fn open_ring(ring: &Keyring, cred: &Credentials) -> Result<vecseal_keyring::Access> {
    Ok(match cred.user {
        None => ring.open_root(&cred.key)?,
        Some(u) => ring.open_user(u, &cred.key)?,
    })
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::InvalidParameter {
            name: "index name",
            value: format!("{name:?}"),
            expected: "1 to 255 bytes without control characters",
        });
    }
    Ok(())
}
