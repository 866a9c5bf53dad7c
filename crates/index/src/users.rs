//! RBAC users and the owner key: keyring operations (owner only).

use vecseal_envelope::SecretKey;
use vecseal_keyring::{Access, Keyring, OwnerCap, UserEntry, UserId};
use vecseal_storage::{Durability, WriteBatch};

use crate::catalog::{open_ring, read_catalog, write_catalog};
use crate::handle::Index;
use crate::Result;

impl Index {
    fn owner_ring(&self, action: &'static str) -> Result<(Keyring, Access)> {
        let (_, ring) = read_catalog(&self.shared.store, &self.shared.name)?;
        let access = open_ring(&ring, &self.cred)?;
        access.owner_for(action)?;
        Ok((ring, access))
    }

    fn save_ring(&self, cap: &OwnerCap, ring: &Keyring) -> Result<()> {
        let mut batch = WriteBatch::new();
        write_catalog(&mut batch, &self.shared.name, self.shared.id, ring);
        self.shared.store.write(cap, batch, Durability::Sync)
    }

    /// Grants an RBAC user read and/or write wraps (owner only).
    pub fn add_user(
        &self,
        user: UserId,
        user_key: &SecretKey,
        read: bool,
        write: bool,
    ) -> Result<()> {
        let _w = self.shared.writer.lock();
        let (mut ring, access) = self.owner_ring("managing users")?;
        ring.grant(&access, user, user_key, read, write)?;
        self.save_ring(access.owner_for("managing users")?, &ring)
    }

    /// Lists RBAC users (owner only).
    pub fn list_users(&self) -> Result<Vec<UserEntry>> {
        Ok(self.owner_ring("listing users")?.0.users())
    }

    /// Deletes every wrap of a user (owner only); returns whether it had any.
    pub fn remove_user(&self, user: UserId) -> Result<bool> {
        let _w = self.shared.writer.lock();
        let (mut ring, access) = self.owner_ring("managing users")?;
        let had = ring.revoke(&access, user)?;
        self.save_ring(access.owner_for("managing users")?, &ring)?;
        Ok(had)
    }

    /// Re-wraps the data key under a new owner key (owner only). Data is not
    /// re-encrypted; users keep working. Later operations need the new key.
    pub fn rotate_key(&self, new_key: &SecretKey) -> Result<()> {
        let _w = self.shared.writer.lock();
        let (mut ring, access) = self.owner_ring("rotating the index key")?;
        ring.rotate_root(&access, new_key)?;
        self.save_ring(access.owner_for("rotating the index key")?, &ring)
    }
}
