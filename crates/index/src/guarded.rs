//! The store as the engine holds it: reads are free, every write takes a
//! capability that only authorization hands out.
//!
//! [`WriteCap`] and [`OwnerCap`] can only be made by vecseal-keyring, when a
//! keyring is opened with a key that carries the permission. The engine
//! holds its store as a [`GuardedStore`], which has no way to write but
//! [`GuardedStore::write`], and that takes a capability: "cannot write
//! without permission" is a fact the compiler checks, not a call someone
//! must remember (a test checks that no other file of the crate writes a
//! store).

use std::sync::Arc;

use vecseal_keyring::{OwnerCap, WriteCap};
use vecseal_storage::{Durability, Expect, Held, Scan, Snapshot, Store, WriteBatch};

use crate::Result;

mod sealed {
    pub trait Sealed {}
    impl Sealed for vecseal_keyring::WriteCap {}
    impl Sealed for vecseal_keyring::OwnerCap {}
}

/// A permission to write: a [`WriteCap`] (upsert, delete, train) or an
/// [`OwnerCap`] (users, the catalog, dropping the index). Sealed: no other
/// type can be one.
pub trait Capability: sealed::Sealed {}
impl Capability for WriteCap {}
impl Capability for OwnerCap {}

/// A store that reads freely and writes only with a [`Capability`].
///
/// A capability comes only from opening a keyring with a key that carries
/// the permission:
///
/// ```
/// # use std::sync::Arc;
/// # use vecseal_index::{GuardedStore, SecretKey, Suite, NAMESPACES};
/// # use vecseal_keyring::{IndexId, Keyring};
/// # use vecseal_storage::{Durability, MemStore, WriteBatch};
/// let store = GuardedStore::new(Arc::new(MemStore::new(NAMESPACES)));
/// let (_ring, access) =
///     Keyring::create(IndexId([7; 16]), &SecretKey::generate()?, Suite::Aes256Gcm)?;
/// let cap = access.write_for("the example")?;
/// store.write(cap, WriteBatch::new(), Durability::Sync)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// and a write without one does not compile:
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use vecseal_index::{GuardedStore, NAMESPACES};
/// # use vecseal_storage::{Durability, MemStore, WriteBatch};
/// let store = GuardedStore::new(Arc::new(MemStore::new(NAMESPACES)));
/// store.write(WriteBatch::new(), Durability::Sync)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// nor does making one by hand:
///
/// ```compile_fail
/// # use vecseal_keyring::{IndexId, WriteCap};
/// let cap = WriteCap { index: IndexId([7; 16]) };
/// ```
#[derive(Clone)]
pub struct GuardedStore(Arc<dyn Store>);

impl GuardedStore {
    /// Guards `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self(store)
    }

    /// The engine behind it, for [`crate::Database::store`] only.
    pub(crate) fn engine(&self) -> &Arc<dyn Store> {
        &self.0
    }

    /// Writes `batch`, as the holder of `_cap` may.
    pub fn write(
        &self,
        _cap: &impl Capability,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<()> {
        Ok(self.0.write(batch, durability)?)
    }

    /// Writes `batch` if `expect` holds (see [`Store::write_if`]), as the
    /// holder of `_cap` may.
    pub fn write_if(
        &self,
        _cap: &impl Capability,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        Ok(self.0.write_if(expect, batch, durability)?)
    }

    /// See [`Store::is_shared`].
    pub fn is_shared(&self) -> bool {
        self.0.is_shared()
    }

    /// See [`Store::lock`].
    pub fn lock(&self, name: &[u8]) -> Result<Held<'_>> {
        Ok(self.0.lock(name)?)
    }

    /// See [`Store::try_lock`].
    pub fn try_lock(&self, name: &[u8]) -> Result<Option<Held<'_>>> {
        Ok(self.0.try_lock(name)?)
    }

    /// See [`Store::snapshot`].
    pub fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(self.0.snapshot()?)
    }

    /// See [`Store::get`].
    pub fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(ns, key)?)
    }

    /// See [`Store::read_with`].
    pub fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        Ok(self.0.read_with(ns, key, f)?)
    }

    /// See [`Store::multi_get`].
    pub fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(self.0.multi_get(ns, keys)?)
    }

    /// See [`Store::scan_prefix`].
    pub fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        Ok(self.0.scan_prefix(ns, prefix)?)
    }
}

#[cfg(test)]
mod tests {
    /// Only this file calls a store's `write`: every other write goes
    /// through [`super::GuardedStore::write`] and so needs a capability.
    #[test]
    fn no_other_file_writes_a_store() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                // Unit tests may write raw records (to forge old formats or
                // tampering); the engine's own files may not.
                if p.file_name()
                    .is_some_and(|n| n == "guarded.rs" || n == "tests.rs" || n == "test_support.rs")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for banned in ["Arc<dyn Store>", ".engine()", "Store::write"] {
                    let allowed = banned == "Arc<dyn Store>" || banned == ".engine()";
                    let allowed = allowed && p.ends_with("database.rs");
                    assert!(
                        allowed || !text.contains(banned),
                        "{} uses {banned}: write through GuardedStore::write",
                        p.display()
                    );
                }
            }
        }
    }
}
