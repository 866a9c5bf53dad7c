//! Keys derived from the data key, storage keys and associated data.

use std::ops::Range;

use vecseal_codec::Record;
use vecseal_envelope::{Blinder, Sealer, SecretKey, Suite, TAG_LEN};
use vecseal_keyring::{IndexId, UserId};

use crate::codec::{Block, Norms, Place};
use crate::state::Digest;
use crate::{Error, Result};

/// Who performs an operation: the owner with the root `index_key`, or an RBAC
/// user with that user's own key. Holds a secret: not `Debug`, not `Clone`.
pub struct Credentials {
    pub(crate) key: SecretKey,
    pub(crate) user: Option<UserId>,
}

impl Credentials {
    /// The owner, holding the root index key.
    pub fn owner(index_key: SecretKey) -> Self {
        Self {
            key: index_key,
            user: None,
        }
    }

    /// An RBAC user with that user's key-encryption key.
    pub fn user(user_id: UserId, user_key: SecretKey) -> Self {
        Self {
            key: user_key,
            user: Some(user_id),
        }
    }

    /// Owner credentials from raw key bytes (must be 32 bytes).
    pub fn owner_from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::owner(
            SecretKey::from_bytes(bytes).map_err(Error::Envelope)?,
        ))
    }

    /// The RBAC user, if any.
    pub fn user_id(&self) -> Option<UserId> {
        self.user
    }
}

/// Record kinds, bound into associated data.
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum Kind {
    State = 1,
    Centroids = 2,
    Item = 3,
    Block = 4,
}

impl Kind {
    /// The record kind, as errors name it.
    pub(crate) fn record(self) -> Record {
        match self {
            Kind::State => Record::State,
            Kind::Centroids => Record::Centroids,
            Kind::Item => Record::Item,
            Kind::Block => Record::Block,
        }
    }
}

/// Purpose-bound keys of one index.
pub(crate) struct Keys {
    id: IndexId,
    names: Blinder,
    directory: Blinder,
    catalog: Blinder,
    items: Sealer,
    vectors: Sealer,
    meta: Sealer,
}

impl Keys {
    pub(crate) fn derive(dek: &SecretKey, id: IndexId, suite: Suite) -> Self {
        let ctx = &id.0;
        Self {
            id,
            names: Blinder::new(&dek.derive("names", ctx)),
            directory: Blinder::new(&dek.derive("directory", ctx)),
            catalog: Blinder::new(&dek.derive("catalog", ctx)),
            items: Sealer::new(&dek.derive("items", ctx), suite),
            vectors: Sealer::new(&dek.derive("vectors", ctx), suite),
            meta: Sealer::new(&dek.derive("meta", ctx), suite),
        }
    }

    fn key(&self, domain: &[u8], name: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(48);
        k.extend_from_slice(&self.id.0);
        k.extend_from_slice(&self.names.blind(domain, name));
        k
    }

    pub(crate) fn state_key(&self) -> Vec<u8> {
        self.key(b"meta", b"state")
    }

    pub(crate) fn centroids_key(&self, generation: u64) -> Vec<u8> {
        self.key(b"centroids", &generation.to_le_bytes())
    }

    pub(crate) fn item_key(&self, id: &str) -> Vec<u8> {
        self.key(b"item", id.as_bytes())
    }

    pub(crate) fn block_key(&self, seq: u64) -> Vec<u8> {
        self.key(b"block", &seq.to_le_bytes())
    }

    /// The digest of one live block: a keyed MAC of its place and count, so
    /// that only the key holder can make the state's digest agree with a
    /// set of blocks (see the `state` module).
    pub(crate) fn block_digest(&self, place: Place, count: u32) -> Digest {
        let mut name = Vec::with_capacity(24);
        name.extend_from_slice(&place.seq.to_le_bytes());
        name.extend_from_slice(&place.list.to_le_bytes());
        name.extend_from_slice(&count.to_le_bytes());
        name.extend_from_slice(&place.generation.to_le_bytes());
        Digest::of(&self.directory.blind(b"block", &name))
    }

    /// The tag of the catalog entry of index `name` holding `ring_bytes`
    /// (which name the index id): a MAC only the data key's holders can
    /// make (see the `catalog` module).
    pub(crate) fn catalog_tag(&self, name: &str, ring_bytes: &[u8]) -> [u8; 32] {
        let mut msg = Vec::with_capacity(4 + name.len() + ring_bytes.len());
        msg.extend_from_slice(&(name.len() as u32).to_le_bytes());
        msg.extend_from_slice(name.as_bytes());
        msg.extend_from_slice(ring_bytes);
        self.catalog.blind(b"catalog/v2", &msg)
    }

    fn sealer(&self, kind: Kind) -> &Sealer {
        match kind {
            Kind::State | Kind::Centroids => &self.meta,
            Kind::Item => &self.items,
            Kind::Block => &self.vectors,
        }
    }

    fn aad(kind: Kind, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(key.len() + 12);
        aad.extend_from_slice(b"vecseal/v1");
        aad.push(kind as u8);
        aad.extend_from_slice(key);
        aad
    }

    pub(crate) fn seal(&self, kind: Kind, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.sealer(kind)
            .seal(&Self::aad(kind, key), plaintext)
            .map_err(Error::Envelope)
    }

    /// Seals the plaintext that `build` appends where it is built, with no
    /// copy (see [`Sealer::seal_vec`]): `build` is given a buffer holding
    /// the sealer's prefix and the capacity to leave spare for the tag,
    /// and returns the buffer with the plaintext after the prefix.
    pub(crate) fn seal_built(
        &self,
        kind: Kind,
        key: &[u8],
        build: impl FnOnce(Vec<u8>, usize) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let sealer = self.sealer(kind);
        let buf = build(vec![0; sealer.prefix_len()], TAG_LEN);
        sealer
            .seal_vec(&Self::aad(kind, key), buf)
            .map_err(Error::Envelope)
    }

    /// `block` sealed under its storage key `key`, encoded in the buffer it
    /// is sealed in (see [`Keys::seal_built`]).
    pub(crate) fn seal_block(
        &self,
        key: &[u8],
        block: &Block,
        dim: usize,
        place: Place,
        norms: Norms,
    ) -> Result<Vec<u8>> {
        self.seal_built(Kind::Block, key, |buf, spare| {
            block.encode_after(buf, spare, dim, place, norms)
        })
    }

    pub(crate) fn open(&self, kind: Kind, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.sealer(kind)
            .open(&Self::aad(kind, key), sealed)
            .map_err(|e| open_error(kind, e))
    }

    /// Opens inside `sealed` (no copy); returns where in `sealed` the
    /// plaintext now is.
    pub(crate) fn open_in_place(
        &self,
        kind: Kind,
        key: &[u8],
        sealed: &mut [u8],
    ) -> Result<Range<usize>> {
        let base = sealed.as_ptr() as usize;
        let plain = self
            .sealer(kind)
            .open_in_place(&Self::aad(kind, key), sealed)
            .map_err(|e| open_error(kind, e))?;
        let start = plain.as_ptr() as usize - base;
        Ok(start..start + plain.len())
    }
}

fn open_error(kind: Kind, e: vecseal_envelope::Error) -> Error {
    match e {
        vecseal_envelope::Error::Authentication => Error::Authentication(kind.record()),
        other => Error::Corrupt {
            what: kind.record(),
            reason: other.to_string(),
        },
    }
}

/// Whether two tags are equal, in time that does not depend on where they
/// differ.
pub(crate) fn tags_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
