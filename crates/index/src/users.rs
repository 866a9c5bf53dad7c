//! RBAC users and the owner key: keyring operations (owner only).

use std::sync::Arc;
use vecseal_envelope::SecretKey;

use vecseal_keyring::{Access, Keyring, UserEntry, UserId};

use crate::handle::Index;
use crate::keys::Keys;
use crate::Result;

impl Index {
    fn owner_ring(&self, action: &'static str) -> Result<(Keyring, Access, Arc<Keys>)> {
        let (entry, access, keys) = self.shared.authorize_ring(&self.cred)?;
        access.owner_for(action)?;
        Ok((entry.ring, access, keys))
    }

    /// Grants an RBAC user read and/or write wraps (owner only).
    pub fn add_user(
        &self,
        user: UserId,
        user_key: &SecretKey,
        read: bool,
        write: bool,
    ) -> Result<()> {
        let _w = self.shared.lock_writer()?;
        let (mut ring, access, keys) = self.owner_ring("managing users")?;
        ring.grant(&access, user, user_key, read, write)?;
        let cap = access.owner_for("managing users")?;
        self.shared.save_ring(cap, &keys, ring)
    }

    /// Lists RBAC users (owner only).
    pub fn list_users(&self) -> Result<Vec<UserEntry>> {
        Ok(self.owner_ring("listing users")?.0.users())
    }

    /// Deletes every wrap of a user (owner only); returns whether it had any.
    pub fn remove_user(&self, user: UserId) -> Result<bool> {
        let _w = self.shared.lock_writer()?;
        let (mut ring, access, keys) = self.owner_ring("managing users")?;
        let had = ring.revoke(&access, user)?;
        let cap = access.owner_for("managing users")?;
        self.shared.save_ring(cap, &keys, ring)?;
        Ok(had)
    }

    /// Re-wraps the data key under a new owner key (owner only). Data is not
    /// re-encrypted; users keep working. Later operations need the new key.
    pub fn rotate_key(&self, new_key: &SecretKey) -> Result<()> {
        let _w = self.shared.lock_writer()?;
        let (mut ring, access, keys) = self.owner_ring("rotating the index key")?;
        ring.rotate_root(&access, new_key)?;
        let cap = access.owner_for("rotating the index key")?;
        self.shared.save_ring(cap, &keys, ring)
    }
}
