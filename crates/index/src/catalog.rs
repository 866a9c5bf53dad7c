//! The catalog: index name → (index id, keyring), and the namespaces.

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

pub(crate) fn encode_catalog(id: IndexId, ring: &Keyring) -> Vec<u8> {
    let mut v = vec![CATALOG_VERSION];
    v.extend_from_slice(&id.0);
    v.extend_from_slice(&ring.to_bytes());
    v
}

pub(crate) fn read_catalog(store: &GuardedStore, name: &str) -> Result<(IndexId, Keyring)> {
    let raw = store
        .get(NS_CATALOG, &catalog_key(name))?
        .ok_or_else(|| Error::NotFound(name.to_owned()))?;
    if raw.len() < 17 || raw[0] != CATALOG_VERSION {
        return Err(Error::Corrupt {
            what: "catalog entry",
            reason: "bad version or length".into(),
        });
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&raw[1..17]);
    let ring = Keyring::from_bytes(&raw[17..])?;
    if ring.index() != IndexId(id) {
        return Err(Error::Corrupt {
            what: "catalog entry",
            reason: "keyring belongs to another index".into(),
        });
    }
    Ok((IndexId(id), ring))
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
