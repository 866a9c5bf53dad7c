//! Per-index data keys, key wrapping and RBAC user wraps for vecseal.
//!
//! Every index has one random 32-byte data key (DEK). The DEK never leaves
//! memory unwrapped: a [`Keyring`] holds it sealed ("wrapped") under
//!
//! * the owner's key-encryption key (KEK, the caller's `index_key`): the
//!   *root wrap*;
//! * each RBAC user's own KEK: a *read wrap* and/or a *write wrap* per user.
//!
//! The wraps that exist are the permission set; there is no flag to forge.
//! Each wrap is sealed with associated data naming the index, the user and the
//! permission, so a read wrap cannot be replayed as a write wrap, one user's
//! wrap does not open for another user, and no wrap moves to another index.
//! The KEK itself never encrypts data: a wrapping key is derived from it with
//! HKDF, so the KEK can be rotated by re-wrapping the DEK alone.
//!
//! Opening a keyring yields an [`Access`]: the DEK plus typed capabilities
//! ([`WriteCap`], [`OwnerCap`]) that only this crate can create. Mutating
//! index operations take a `&WriteCap`, so an engine cannot forget the check.
//!
//! Write permission is enforced by the library: a read wrap yields the same
//! DEK (it must, to decrypt), so a reader who also has raw write access to the
//! store could forge records. See docs/SECURITY.md.
//!
//! ```
//! use vecseal_envelope::{SecretKey, Suite};
//! use vecseal_keyring::{IndexId, Keyring, UserId};
//!
//! let owner_kek = SecretKey::generate()?;
//! let (mut ring, owner) = Keyring::create(IndexId([7; 16]), &owner_kek, Suite::Aes256Gcm)?;
//!
//! let alice = UserId([1; 16]);
//! let alice_kek = SecretKey::generate()?;
//! ring.grant(&owner, alice, &alice_kek, true, false)?;
//!
//! let as_alice = ring.open_user(alice, &alice_kek)?;
//! assert!(as_alice.write().is_err()); // read-only
//! assert!(as_alice.data_key().ct_eq(owner.data_key()));
//! # Ok::<(), vecseal_keyring::Error>(())
//! ```
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use vecseal_codec::{Reader, Record, Writer};
use vecseal_envelope::{Sealer, SecretKey, Suite};

const MAGIC: &[u8; 4] = b"VSKR";
/// 1: wraps only; 2 (written now): with each user's escrowed wrapping key.
const VERSION: u8 = 2;

/// Errors of the keyring layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key given does not open this index's keyring.
    #[error("wrong key: the key given does not open this index")]
    WrongKey,
    /// The user has no wrap of any kind on this index.
    #[error("user {0} has no access to this index")]
    UnknownUser(UserId),
    /// The caller lacks the permission an operation needs.
    #[error("permission denied: {action} needs {needed} permission, which {who} does not have")]
    PermissionDenied {
        /// The operation refused.
        action: &'static str,
        /// The permission it needs (`write` or `owner`).
        needed: &'static str,
        /// Who asked (`user <hex id>`).
        who: String,
    },
    /// A grant with neither read nor write.
    #[error("a grant needs read and/or write permission; got neither")]
    EmptyGrant,
    /// A capability of another index was presented.
    #[error("the access presented belongs to another index")]
    WrongIndex,
    /// The serialized keyring does not decode.
    #[error(transparent)]
    Malformed(#[from] vecseal_codec::Error),
    /// A user id that is not 32 hex characters (16 bytes).
    #[error("invalid user id ({given}): a user id is 32 hex characters (16 bytes)")]
    InvalidUserId {
        /// What was given instead (a length; user ids are not secret, but
        /// the text may be a mistyped key).
        given: String,
    },
    /// An envelope operation failed.
    #[error(transparent)]
    Envelope(#[from] vecseal_envelope::Error),
    /// Rotating the data key needs every remaining user's escrowed wrapping
    /// key, and this user was granted before keyrings kept one.
    #[error("user {0} was granted before keyrings escrowed users' wrapping keys: grant the user again (or remove them) before rotating the data key")]
    NoEscrow(UserId),
}

/// The 16-byte identity of an index, bound into every wrap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct IndexId(pub [u8; 16]);

impl IndexId {
    /// A fresh random index id.
    pub fn generate() -> Result<Self, Error> {
        let key = SecretKey::generate()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&key.expose_secret()[..16]);
        Ok(Self(id))
    }
}

/// A 16-byte RBAC user id. Not secret: it is stored in the keyring in the clear.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub [u8; 16]);

impl UserId {
    /// Parses 32 hex characters.
    ///
    /// # Errors
    /// [`Error::InvalidUserId`] for anything else.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let invalid = || Error::InvalidUserId {
            given: format!("{} characters, not all hex", t.chars().count()),
        };
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(if t.bytes().all(|b| b.is_ascii_hexdigit()) {
                Error::InvalidUserId {
                    given: format!("{} hex characters", t.len()),
                }
            } else {
                invalid()
            });
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(out))
    }

    /// Takes a user id from exactly 16 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidUserId`] for any other length.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        b.try_into().map(Self).map_err(|_| Error::InvalidUserId {
            given: format!("{} bytes", b.len()),
        })
    }
}

impl std::str::FromStr for UserId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::from_hex(s)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({self})")
    }
}

/// What a wrap grants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WrapKind {
    Root = 0,
    Read = 1,
    Write = 2,
}

/// Proof that the holder may mutate the index (upsert, delete, train).
#[derive(Debug)]
pub struct WriteCap {
    index: IndexId,
}

impl WriteCap {
    /// The index this capability belongs to.
    pub fn index(&self) -> IndexId {
        self.index
    }
}

/// Proof that the holder has the root key (may manage users and rotate).
pub struct OwnerCap {
    index: IndexId,
    keys: Arc<OwnerKeys>,
}

impl fmt::Debug for OwnerCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerCap")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Keys derived from the owner's KEK once its root wrap opened: the root
/// wrapping key (to wrap a new data key) and the escrow key, which seals
/// each user's wrapping key so that the owner can wrap a new data key for
/// the remaining users without knowing their KEKs.
struct OwnerKeys {
    root: Sealer,
    escrow: Sealer,
}

impl OwnerKeys {
    fn new(kek: &SecretKey, index: IndexId, suite: Suite) -> Self {
        Self {
            root: wrapping_sealer(kek, index, suite),
            escrow: Sealer::new(&kek.derive("keyring/escrow", &index.0), suite),
        }
    }
}

/// An opened keyring: the data key and the capabilities of whoever opened it.
pub struct Access {
    index: IndexId,
    dek: Arc<SecretKey>,
    user: Option<UserId>,
    write: Option<WriteCap>,
    owner: Option<OwnerCap>,
}

impl Access {
    /// The index's data key.
    pub fn data_key(&self) -> &SecretKey {
        &self.dek
    }

    /// A shared handle on the data key, for caches of derived keys.
    pub fn data_key_arc(&self) -> Arc<SecretKey> {
        Arc::clone(&self.dek)
    }

    /// The index this access belongs to.
    pub fn index(&self) -> IndexId {
        self.index
    }

    /// The RBAC user, or `None` for the owner (root key).
    pub fn user(&self) -> Option<UserId> {
        self.user
    }

    fn who(&self) -> String {
        match self.user {
            Some(u) => format!("user {u}"),
            None => "the owner".into(),
        }
    }

    /// The write capability, or a permission error naming the user.
    pub fn write(&self) -> Result<&WriteCap, Error> {
        self.write_for("this operation")
    }

    /// Like [`Access::write`], naming the refused `action` in the error.
    pub fn write_for(&self, action: &'static str) -> Result<&WriteCap, Error> {
        self.write.as_ref().ok_or_else(|| Error::PermissionDenied {
            action,
            needed: "write",
            who: self.who(),
        })
    }

    /// The owner capability, or a permission error naming the user.
    pub fn owner_for(&self, action: &'static str) -> Result<&OwnerCap, Error> {
        self.owner.as_ref().ok_or_else(|| Error::PermissionDenied {
            action,
            needed: "owner (root key)",
            who: self.who(),
        })
    }

    /// Whether the holder may write.
    pub fn can_write(&self) -> bool {
        self.write.is_some()
    }
}

/// One user's entry as listed by [`Keyring::users`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// The user.
    pub user_id: UserId,
    /// Whether a read wrap exists.
    pub has_read: bool,
    /// Whether a write wrap exists (a write wrap also allows reading).
    pub has_write: bool,
}

#[derive(Default, Clone, PartialEq, Eq, Debug)]
struct UserWraps {
    read: Option<Vec<u8>>,
    write: Option<Vec<u8>>,
    /// The user's wrapping key, sealed under the owner's escrow key (none
    /// for users granted by a version-1 keyring).
    escrow: Option<Vec<u8>>,
}

/// The wrapped data key of one index with its root wrap and user wraps.
///
/// Its serialized form ([`Keyring::to_bytes`]) is a stable, versioned byte
/// format holding only sealed values and user ids.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Keyring {
    index: IndexId,
    suite: Suite,
    root: Vec<u8>,
    users: BTreeMap<UserId, UserWraps>,
}

fn wrap_aad(index: IndexId, kind: WrapKind, user: Option<UserId>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"vecseal/keyring/wrap/v1");
    aad.extend_from_slice(&index.0);
    aad.push(kind as u8);
    aad.extend_from_slice(&user.map(|u| u.0).unwrap_or([0; 16]));
    aad
}

fn escrow_aad(index: IndexId, user: UserId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(56);
    aad.extend_from_slice(b"vecseal/keyring/escrow/v1");
    aad.extend_from_slice(&index.0);
    aad.extend_from_slice(&user.0);
    aad
}

/// The key that wraps the data key for the holder of `kek`.
fn wrapping_key(kek: &SecretKey, index: IndexId) -> SecretKey {
    kek.derive("keyring/wrap", &index.0)
}

fn wrapping_sealer(kek: &SecretKey, index: IndexId, suite: Suite) -> Sealer {
    Sealer::new(&wrapping_key(kek, index), suite)
}

impl Keyring {
    /// Creates a keyring with a fresh random DEK wrapped under `owner_kek`.
    pub fn create(
        index: IndexId,
        owner_kek: &SecretKey,
        suite: Suite,
    ) -> Result<(Self, Access), Error> {
        let dek = SecretKey::generate()?;
        let keys = Arc::new(OwnerKeys::new(owner_kek, index, suite));
        let root = keys
            .root
            .seal(&wrap_aad(index, WrapKind::Root, None), dek.expose_secret())?;
        let ring = Self {
            index,
            suite,
            root,
            users: BTreeMap::new(),
        };
        Ok((ring, Self::owner_access(index, dek, keys)))
    }

    fn owner_access(index: IndexId, dek: SecretKey, keys: Arc<OwnerKeys>) -> Access {
        Access {
            index,
            dek: Arc::new(dek),
            user: None,
            write: Some(WriteCap { index }),
            owner: Some(OwnerCap { index, keys }),
        }
    }

    /// The index this keyring belongs to.
    pub fn index(&self) -> IndexId {
        self.index
    }

    /// The suite used for wraps (and, by convention, the index's data).
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Opens a wrap with `wrapping`, the wrapping sealer of the KEK it was
    /// made for (see [`wrapping_sealer`]).
    fn unwrap(
        &self,
        wrapping: &Sealer,
        kind: WrapKind,
        user: Option<UserId>,
        sealed: &[u8],
    ) -> Result<SecretKey, Error> {
        let bytes = wrapping
            .open(&wrap_aad(self.index, kind, user), sealed)
            .map_err(|e| match e {
                vecseal_envelope::Error::Authentication => Error::WrongKey,
                other => Error::Envelope(other),
            })?;
        Ok(SecretKey::from_bytes(&bytes)?)
    }

    /// Opens the keyring with the owner's KEK: full access.
    pub fn open_root(&self, kek: &SecretKey) -> Result<Access, Error> {
        // The owner keys first: their root sealer opens the root wrap (one
        // derivation of the wrapping key, not two; a query authorizes
        // with this on every call).
        let keys = Arc::new(OwnerKeys::new(kek, self.index, self.suite));
        let dek = self.unwrap(&keys.root, WrapKind::Root, None, &self.root)?;
        Ok(Self::owner_access(self.index, dek, keys))
    }

    /// Opens the keyring as RBAC user `user` with that user's KEK.
    pub fn open_user(&self, user: UserId, kek: &SecretKey) -> Result<Access, Error> {
        let wraps = self.users.get(&user).ok_or(Error::UnknownUser(user))?;
        let wrapping = wrapping_sealer(kek, self.index, self.suite);
        let (dek, write) = if let Some(w) = &wraps.write {
            (
                self.unwrap(&wrapping, WrapKind::Write, Some(user), w)?,
                true,
            )
        } else if let Some(r) = &wraps.read {
            (
                self.unwrap(&wrapping, WrapKind::Read, Some(user), r)?,
                false,
            )
        } else {
            return Err(Error::UnknownUser(user));
        };
        Ok(Access {
            index: self.index,
            dek: Arc::new(dek),
            user: Some(user),
            write: write.then_some(WriteCap { index: self.index }),
            owner: None,
        })
    }

    fn check_owner<'a>(
        &self,
        access: &'a Access,
        action: &'static str,
    ) -> Result<&'a OwnerKeys, Error> {
        let owner = access.owner_for(action)?;
        if owner.index != self.index || access.index != self.index {
            return Err(Error::WrongIndex);
        }
        // The access must come from the owner key in force: one opened
        // before `rotate_root` would escrow under the old key.
        owner
            .keys
            .root
            .open(&wrap_aad(self.index, WrapKind::Root, None), &self.root)
            .map_err(|_| Error::WrongKey)?;
        Ok(&owner.keys)
    }

    /// Gives `user` read and/or write wraps under `user_kek`, replacing any
    /// wraps the user had. Needs the owner's access.
    pub fn grant(
        &mut self,
        owner: &Access,
        user: UserId,
        user_kek: &SecretKey,
        read: bool,
        write: bool,
    ) -> Result<(), Error> {
        let keys = self.check_owner(owner, "managing users")?;
        if !read && !write {
            return Err(Error::EmptyGrant);
        }
        let key = wrapping_key(user_kek, self.index);
        let escrow = keys
            .escrow
            .seal(&escrow_aad(self.index, user), key.expose_secret())?;
        let wraps = self.wraps(user, &key, owner.data_key(), read, write, escrow)?;
        self.users.insert(user, wraps);
        Ok(())
    }

    /// Read and/or write wraps of `dek` for `user`, under the user's
    /// wrapping key `key`.
    fn wraps(
        &self,
        user: UserId,
        key: &SecretKey,
        dek: &SecretKey,
        read: bool,
        write: bool,
        escrow: Vec<u8>,
    ) -> Result<UserWraps, Error> {
        let sealer = Sealer::new(key, self.suite);
        let wrap = |kind| sealer.seal(&wrap_aad(self.index, kind, Some(user)), dek.expose_secret());
        Ok(UserWraps {
            read: read.then(|| wrap(WrapKind::Read)).transpose()?,
            write: write.then(|| wrap(WrapKind::Write)).transpose()?,
            escrow: Some(escrow),
        })
    }

    /// A keyring of the same index with a fresh random data key, wrapped
    /// for the owner and for every user with the permissions they have now
    /// (through their escrowed wrapping keys), and the owner's access to
    /// it. Nothing of the old data key is in it: whoever held only the old
    /// one (a revoked user, an old copy of the keyring) cannot open it.
    /// Needs the owner's access ([`Error::NoEscrow`] names a user granted
    /// before keyrings escrowed wrapping keys).
    pub fn rekey(&self, owner: &Access) -> Result<(Keyring, Access), Error> {
        let keys = self.check_owner(owner, "rotating the data key")?;
        let dek = SecretKey::generate()?;
        let root = keys.root.seal(
            &wrap_aad(self.index, WrapKind::Root, None),
            dek.expose_secret(),
        )?;
        let mut users = BTreeMap::new();
        for (&user, old) in &self.users {
            let escrow = old.escrow.clone().ok_or(Error::NoEscrow(user))?;
            let key = keys
                .escrow
                .open(&escrow_aad(self.index, user), &escrow)
                .map_err(|e| match e {
                    vecseal_envelope::Error::Authentication => Error::WrongKey,
                    other => Error::Envelope(other),
                })?;
            let key = SecretKey::from_bytes(&key)?;
            let wraps = self.wraps(
                user,
                &key,
                &dek,
                old.read.is_some(),
                old.write.is_some(),
                escrow,
            )?;
            users.insert(user, wraps);
        }
        let ring = Keyring {
            index: self.index,
            suite: self.suite,
            root,
            users,
        };
        let owner_keys = owner
            .owner
            .as_ref()
            .map(|o| Arc::clone(&o.keys))
            .ok_or(Error::WrongIndex)?;
        Ok((ring, Self::owner_access(self.index, dek, owner_keys)))
    }

    /// Deletes every wrap of `user`; returns whether the user had any.
    pub fn revoke(&mut self, owner: &Access, user: UserId) -> Result<bool, Error> {
        self.check_owner(owner, "managing users")?;
        Ok(self.users.remove(&user).is_some())
    }

    /// The users with at least one wrap, in user-id order.
    pub fn users(&self) -> Vec<UserEntry> {
        self.users
            .iter()
            .map(|(u, w)| UserEntry {
                user_id: *u,
                has_read: w.read.is_some(),
                has_write: w.write.is_some(),
            })
            .collect()
    }

    /// Re-wraps the DEK under `new_kek`, and moves the users' escrowed
    /// wrapping keys to it. No data is re-encrypted and every user wrap
    /// stays valid; the old KEK stops working, and so does `owner` for
    /// owner operations (open the keyring again with `new_kek`).
    pub fn rotate_root(&mut self, owner: &Access, new_kek: &SecretKey) -> Result<(), Error> {
        let old = self.check_owner(owner, "rotating the index key")?;
        let new = OwnerKeys::new(new_kek, self.index, self.suite);
        // The users' escrowed wrapping keys move to the new owner key.
        let mut users = self.users.clone();
        for (&user, wraps) in &mut users {
            if let Some(escrow) = &mut wraps.escrow {
                let aad = escrow_aad(self.index, user);
                let key = old.escrow.open(&aad, escrow).map_err(|e| match e {
                    vecseal_envelope::Error::Authentication => Error::WrongKey,
                    other => Error::Envelope(other),
                })?;
                *escrow = new.escrow.seal(&aad, &key)?;
            }
        }
        self.root = new.root.seal(
            &wrap_aad(self.index, WrapKind::Root, None),
            owner.data_key().expose_secret(),
        )?;
        self.users = users;
        Ok(())
    }

    /// Serializes the keyring (stable format, version 2): `"VSKR"`, the
    /// version, the suite id, the index id, the root wrap, then per user its
    /// id, a flags byte (1 read, 2 write, 4 escrow) and the wraps and escrow
    /// it has. Version 1 (no escrow) is still read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.root.len() + self.users.len() * 140);
        w.raw(MAGIC)
            .u8(VERSION)
            .u8(self.suite.id())
            .raw(&self.index.0)
            .bytes(&self.root)
            .len_u32(self.users.len());
        for (user, wraps) in &self.users {
            w.raw(&user.0).u8(u8::from(wraps.read.is_some())
                | (u8::from(wraps.write.is_some()) << 1)
                | (u8::from(wraps.escrow.is_some()) << 2));
            for wrap in [&wraps.read, &wraps.write, &wraps.escrow]
                .into_iter()
                .flatten()
            {
                w.bytes(wrap);
            }
        }
        w.into_vec()
    }

    /// Parses a keyring written by [`Keyring::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, Record::Keyring);
        let magic = r.array::<4>()?;
        if &magic != MAGIC {
            return Err(r
                .invalid(
                    "magic",
                    u32::from_be_bytes(magic).into(),
                    "\"VSKR\" (0x56534b52)",
                )
                .into());
        }
        let version = r.version(1, VERSION)?;
        let suite = Suite::from_id(r.u8()?)?;
        let index = IndexId(r.array()?);
        let root = r.bytes()?.to_vec();
        let n = r.len_u32()?;
        let mut users = BTreeMap::new();
        for _ in 0..n {
            let user = UserId(r.array()?);
            r.ascending(users.keys().next_back(), &user, "user order", users.len())?;
            let flags = r.u8()?;
            let most = if version >= 2 { 7 } else { 3 };
            if flags & 3 == 0 || flags > most {
                return Err(r
                    .invalid(
                        "user flags",
                        flags.into(),
                        "1, 2 or 3, plus 4 for an escrow",
                    )
                    .into());
            }
            let mut wrap = |bit: u8| -> Result<Option<Vec<u8>>, Error> {
                Ok(if flags & bit != 0 {
                    Some(r.bytes()?.to_vec())
                } else {
                    None
                })
            };
            let read = wrap(1)?;
            let write = wrap(2)?;
            let escrow = wrap(4)?;
            users.insert(
                user,
                UserWraps {
                    read,
                    write,
                    escrow,
                },
            );
        }
        r.finish()?;
        Ok(Self {
            index,
            suite,
            root,
            users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use vecseal_testkit::key as k;
    const IDX: IndexId = IndexId([9; 16]);

    fn ring() -> (Keyring, Access) {
        Keyring::create(IDX, &k(1), Suite::Aes256Gcm).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn wrong_root_key_is_rejected() {
        let (r, _) = ring();
        assert!(matches!(r.open_root(&k(2)), Err(Error::WrongKey)));
        assert!(r.open_root(&k(1)).is_ok());
    }

    #[test]
    fn read_wrap_cannot_be_replayed_as_write_wrap() {
        let (mut r, owner) = ring();
        let u = UserId([3; 16]);
        r.grant(&owner, u, &k(5), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        // Move the read wrap into the write slot.
        if let Some(w) = r.users.get_mut(&u) {
            w.write = w.read.clone();
        }
        assert!(matches!(r.open_user(u, &k(5)), Err(Error::WrongKey)));
    }

    #[test]
    fn one_users_wrap_does_not_open_for_another() {
        let (mut r, owner) = ring();
        let (a, b) = (UserId([3; 16]), UserId([4; 16]));
        r.grant(&owner, a, &k(5), true, true)
            .unwrap_or_else(|e| panic!("{e}"));
        r.grant(&owner, b, &k(6), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.open_user(b, &k(5)), Err(Error::WrongKey)));
        let wa = r.users[&a].clone();
        r.users.insert(b, wa);
        assert!(matches!(r.open_user(b, &k(5)), Err(Error::WrongKey)));
    }

    #[test]
    fn wraps_do_not_move_to_another_index() {
        let (r, _) = ring();
        let mut other = r.clone();
        other.index = IndexId([8; 16]);
        assert!(matches!(other.open_root(&k(1)), Err(Error::WrongKey)));
    }

    #[test]
    fn read_only_user_has_no_write_or_owner_capability() {
        let (mut r, owner) = ring();
        let u = UserId([3; 16]);
        r.grant(&owner, u, &k(5), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let acc = r.open_user(u, &k(5)).unwrap_or_else(|e| panic!("{e}"));
        let err = acc
            .write_for("upsert")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("upsert") && err.contains("write") && err.contains(&u.to_string()),
            "{err}"
        );
        assert!(matches!(
            r.grant(&acc, UserId([4; 16]), &k(6), true, true),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(acc.data_key().ct_eq(owner.data_key()));
    }

    #[test]
    fn revocation_and_rotation() {
        let (mut r, owner) = ring();
        let u = UserId([3; 16]);
        r.grant(&owner, u, &k(5), true, true)
            .unwrap_or_else(|e| panic!("{e}"));
        r.rotate_root(&owner, &k(2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.open_root(&k(1)), Err(Error::WrongKey)));
        assert!(r.open_root(&k(2)).is_ok());
        assert!(r.open_user(u, &k(5)).is_ok_and(|a| a.can_write()));
        // The access opened with the old key manages nothing any more.
        assert!(matches!(r.revoke(&owner, u), Err(Error::WrongKey)));
        let owner = r.open_root(&k(2)).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.revoke(&owner, u).unwrap());
        assert!(matches!(r.open_user(u, &k(5)), Err(Error::UnknownUser(_))));
    }

    #[test]
    fn rekey_wraps_a_fresh_data_key_for_the_owner_and_remaining_users() {
        let (mut r, owner) = ring();
        let (a, b, gone) = (UserId([3; 16]), UserId([4; 16]), UserId([5; 16]));
        for (u, key, write) in [(a, 5, false), (b, 6, true), (gone, 7, true)] {
            r.grant(&owner, u, &k(key), true, write)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(r.revoke(&owner, gone).unwrap_or_else(|e| panic!("{e}")));
        // The owner key moves first: the escrows move with it.
        r.rotate_root(&owner, &k(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let owner = r.open_root(&k(2)).unwrap_or_else(|e| panic!("{e}"));
        let (new, access) = r.rekey(&owner).unwrap_or_else(|e| panic!("{e}"));
        let new = Keyring::from_bytes(&new.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let dek = access.data_key();
        assert!(!dek.ct_eq(owner.data_key()), "the data key did not change");
        assert!(new.open_root(&k(2)).is_ok_and(|o| o.data_key().ct_eq(dek)));
        assert!(matches!(new.open_root(&k(1)), Err(Error::WrongKey)));
        for (u, key, write) in [(a, 5, false), (b, 6, true)] {
            let got = new.open_user(u, &k(key)).unwrap_or_else(|e| panic!("{e}"));
            assert!(got.data_key().ct_eq(dek));
            assert_eq!(got.can_write(), write);
        }
        assert!(matches!(
            new.open_user(gone, &k(7)),
            Err(Error::UnknownUser(_))
        ));
        // Only the owner may rekey.
        let reader = new.open_user(a, &k(5)).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            new.rekey(&reader),
            Err(Error::PermissionDenied { .. })
        ));
    }

    #[test]
    fn a_version_1_user_has_no_escrow_and_blocks_rekey() {
        let (mut r, owner) = ring();
        let u = UserId([3; 16]);
        r.grant(&owner, u, &k(5), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut old = r.clone();
        if let Some(w) = old.users.get_mut(&u) {
            w.escrow = None;
        }
        // Version 1 bytes: no escrow flag, no escrow.
        let mut v1 = old.to_bytes();
        v1[4] = 1;
        let read = Keyring::from_bytes(&v1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, old);
        assert!(read.open_user(u, &k(5)).is_ok());
        assert!(matches!(read.rekey(&owner), Err(Error::NoEscrow(x)) if x == u));
        // An escrow flag in a version-1 keyring is refused.
        let mut bad = r.to_bytes();
        bad[4] = 1;
        assert!(Keyring::from_bytes(&bad).is_err());
    }

    #[test]
    fn serialization_round_trips_and_rejects_garbage() {
        let (mut r, owner) = ring();
        r.grant(&owner, UserId([3; 16]), &k(5), true, false)
            .unwrap_or_else(|e| panic!("{e}"));
        r.grant(&owner, UserId([4; 16]), &k(6), true, true)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = r.to_bytes();
        assert_eq!(Keyring::from_bytes(&bytes).ok().as_ref(), Some(&r));
        for cut in 0..bytes.len() {
            assert!(Keyring::from_bytes(&bytes[..cut]).is_err());
        }
        assert!(matches!(
            Keyring::from_bytes(b"nope"),
            Err(Error::Malformed(vecseal_codec::Error::Invalid {
                field: "magic",
                ..
            }))
        ));
        // The users are written in ascending order; a repeated one is
        // refused, not silently merged.
        let mut none = r.clone();
        none.users.clear();
        let mut one = none.clone();
        one.users
            .insert(UserId([3; 16]), r.users[&UserId([3; 16])].clone());
        let (none, one) = (none.to_bytes(), one.to_bytes());
        let entry = &one[none.len()..];
        let mut twice = none[..none.len() - 4].to_vec();
        twice.extend_from_slice(&2u32.to_le_bytes());
        twice.extend_from_slice(entry);
        twice.extend_from_slice(entry);
        assert!(matches!(
            Keyring::from_bytes(&twice),
            Err(Error::Malformed(vecseal_codec::Error::Invalid {
                field: "user order",
                ..
            }))
        ));
        let mut newer = bytes.clone();
        newer[4] = VERSION + 1;
        assert!(matches!(
            Keyring::from_bytes(&newer),
            Err(Error::Malformed(vecseal_codec::Error::Version { .. }))
        ));
    }

    #[test]
    fn user_id_hex() {
        let u = UserId::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(u.to_string(), "000102030405060708090a0b0c0d0e0f");
        assert!(matches!(
            UserId::from_hex("00"),
            Err(Error::InvalidUserId { given }) if given == "2 hex characters"
        ));
        assert!(matches!(
            "zz0102030405060708090a0b0c0d0e0f".parse::<UserId>(),
            Err(Error::InvalidUserId { .. })
        ));
        assert!(matches!(
            UserId::from_bytes(&[0; 15]),
            Err(Error::InvalidUserId { given }) if given == "15 bytes"
        ));
        assert_eq!(
            "000102030405060708090a0b0c0d0e0f".parse::<UserId>().ok(),
            Some(u)
        );
    }

    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            Grant(u8, bool, bool),
            Revoke(u8),
            Rotate(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(u, r, w)| Op::Grant(u, r, w)),
                (0u8..4).prop_map(Op::Revoke),
                (10u8..14).prop_map(Op::Rotate),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn random_grant_revoke_rotate_match_model(ops in proptest::collection::vec(op(), 1..20)) {
                let (mut r, mut owner) = ring();
                let mut root = 1u8;
                let mut model: BTreeMap<u8, (bool, bool)> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Grant(u, rd, wr) => {
                            let res = r.grant(&owner, UserId([u; 16]), &k(100 + u), rd, wr);
                            if rd || wr { prop_assert!(res.is_ok()); model.insert(u, (rd, wr)); }
                            else { prop_assert!(matches!(res, Err(Error::EmptyGrant))); }
                        }
                        Op::Revoke(u) => {
                            let had = r.revoke(&owner, UserId([u; 16])).unwrap();
                            prop_assert_eq!(had, model.remove(&u).is_some());
                        }
                        Op::Rotate(n) => {
                            r.rotate_root(&owner, &k(n)).unwrap_or_else(|e| panic!("{e}"));
                            // An access of another key no longer manages the keyring.
                            if n != root {
                                prop_assert!(matches!(r.revoke(&owner, UserId([9; 16])), Err(Error::WrongKey)));
                            }
                            root = n;
                            owner = r.open_root(&k(n)).unwrap_or_else(|e| panic!("{e}"));
                        }
                    }
                    let r = Keyring::from_bytes(&r.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
                    prop_assert!(r.open_root(&k(root)).is_ok());
                    for u in 0u8..4 {
                        let got = r.open_user(UserId([u; 16]), &k(100 + u));
                        match model.get(&u) {
                            None => prop_assert!(matches!(got, Err(Error::UnknownUser(_)))),
                            Some(&(_, w)) => {
                                let acc = got.unwrap_or_else(|e| panic!("{e}"));
                                prop_assert_eq!(acc.can_write(), w);
                                prop_assert!(acc.data_key().ct_eq(owner.data_key()));
                            }
                        }
                    }
                    let listed: Vec<_> = r.users().iter().map(|e| (e.user_id.0[0], (e.has_read, e.has_write))).collect();
                    let expect: Vec<_> = model.iter().map(|(u, p)| (*u, *p)).collect();
                    prop_assert_eq!(listed, expect);
                }
            }

            /// Arbitrary bytes after a valid header (so that the fields past
            /// it are reached): a clean error or a keyring that writes back
            /// to the same bytes; never a panic.
            #[test]
            fn arbitrary_bytes_are_an_error_or_a_canonical_keyring(
                tail in proptest::collection::vec(any::<u8>(), 0..300),
                header in any::<bool>(),
            ) {
                let mut bytes = Vec::new();
                if header {
                    bytes.extend_from_slice(MAGIC);
                    bytes.extend_from_slice(&[VERSION, Suite::Aes256Gcm.id()]);
                }
                bytes.extend_from_slice(&tail);
                if let Ok(r) = Keyring::from_bytes(&bytes) {
                    prop_assert_eq!(r.to_bytes(), bytes);
                }
            }
        }
    }
}
