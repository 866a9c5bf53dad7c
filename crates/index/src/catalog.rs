//! The catalog: index name → (index id, keyring), and the namespaces.

use vecseal_codec::{Reader, Record, Writer};
use vecseal_keyring::{IndexId, Keyring};
use vecseal_storage::WriteBatch;

use crate::guarded::GuardedStore;
use crate::keys::Credentials;
use crate::{Error, Result};

/// The namespaces vecseal uses; open a store with them.
pub const NAMESPACES: &[&str] = &["catalog", "meta", "items", "blocks"];

pub(crate) const NS_CATALOG: &str = "catalog";
pub(crate) const NS_META: &str = "meta";
pub(crate) const NS_ITEMS: &str = "items";
pub(crate) const NS_BLOCKS: &str = "blocks";

const CATALOG_VERSION: u8 = 1;

pub(crate) fn catalog_key(name: &str) -> Vec<u8> {
    let mut k = b"index/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// `[version 1, index id: 16 bytes, keyring bytes]`.
pub(crate) fn encode_catalog(id: IndexId, ring: &Keyring) -> Vec<u8> {
    let ring = ring.to_bytes();
    let mut w = Writer::with_capacity(17 + ring.len());
    w.u8(CATALOG_VERSION).raw(&id.0).raw(&ring);
    w.into_vec()
}

/// Decodes a catalog entry written by [`encode_catalog`].
pub(crate) fn decode_catalog(raw: &[u8]) -> Result<(IndexId, Keyring)> {
    let mut r = Reader::new(raw, Record::Catalog);
    r.version(CATALOG_VERSION, CATALOG_VERSION)?;
    let id = IndexId(r.array()?);
    let ring = Keyring::from_bytes(r.take(r.remaining())?)?;
    if ring.index() != id {
        return Err(Error::Corrupt {
            what: Record::Catalog,
            reason: "its keyring belongs to another index".into(),
        });
    }
    Ok((id, ring))
}

pub(crate) fn read_catalog(store: &GuardedStore, name: &str) -> Result<(IndexId, Keyring)> {
    let raw = store
        .get(NS_CATALOG, &catalog_key(name))?
        .ok_or_else(|| Error::NotFound(name.to_owned()))?;
    decode_catalog(&raw)
}

pub(crate) fn write_catalog(batch: &mut WriteBatch, name: &str, id: IndexId, ring: &Keyring) {
    batch.put_owned(NS_CATALOG, catalog_key(name), encode_catalog(id, ring));
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
