//! A store operator edits catalog entries (index id + keyring) without the
//! data key: swapping two indexes' entries, restoring an older keyring, or
//! replacing one wrap. Each fails on load (and on the next call of a loaded
//! handle) as tampering, distinct from a wrong key. Runs on the memory
//! store and (`VECSEAL_TEST_STORE=rocks`) on RocksDB, editing raw records.

mod common;
use common::*;
use vecseal_index::{AccessError, Credentials, Database, Error, Index, UserId};
use vecseal_storage::Durability;

fn entry(store: &TestStore, name: &str) -> Vec<u8> {
    store
        .get("catalog", format!("index/{name}").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no catalog entry for {name}"))
}

fn put_entry(store: &TestStore, name: &str, value: &[u8]) {
    store
        .put(
            "catalog",
            format!("index/{name}").as_bytes(),
            value,
            Durability::Sync,
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

fn tampered<T>(r: vecseal_index::Result<T>, what: &str) {
    match r {
        Err(Error::CatalogTampered { .. }) => {}
        Err(e) => panic!("{what}: expected tampering, got {e}"),
        Ok(_) => panic!("{what}: expected tampering, got success"),
    }
}

fn new_index(db: &Database, name: &str, x: f32) {
    let index = db
        .create_index(name, owner(1), config())
        .unwrap_or_else(|e| panic!("{e}"));
    index
        .upsert_vectors(&[format!("{name}-item")], &[vec![x, 1.0]])
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn swapped_entries_of_two_indexes_are_tampering() {
    let (db, store) = test_db();
    new_index(&db, "prod", 1.0);
    new_index(&db, "staging", 2.0);
    let loaded = db
        .load_index("prod", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let (prod, staging) = (entry(&store, "prod"), entry(&store, "staging"));
    put_entry(&store, "prod", &staging);
    put_entry(&store, "staging", &prod);

    // A loaded handle notices on its next call; fresh loads fail.
    tampered(loaded.count(), "a loaded handle of prod");
    drop(loaded);
    tampered(db.load_index("prod", owner(1)), "loading prod");
    tampered(db.load_index("staging", owner(1)), "loading staging");
    // Deleting "prod" must not delete staging's records through it.
    tampered(db.delete_index("prod", &owner(1)), "deleting prod");
    // A wrong key is still a wrong key.
    assert!(matches!(
        db.load_index("prod", owner(2)),
        Err(Error::Access(AccessError::WrongKey))
    ));

    // Put back, both work again, each with its own items.
    put_entry(&store, "prod", &prod);
    put_entry(&store, "staging", &staging);
    for name in ["prod", "staging"] {
        let index = db
            .load_index(name, owner(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            index.list_ids().unwrap_or_else(|e| panic!("{e}")),
            [format!("{name}-item")]
        );
    }
}

/// Index "prod" with one item and user 6 (key 6) granted read and, if
/// `write`, write; the owner's handle.
fn prod_with_a_user(write: bool) -> (Database, TestStore, Index, UserId) {
    let (db, store) = test_db();
    new_index(&db, "prod", 1.0);
    let user = UserId([6; 16]);
    let index = db
        .load_index("prod", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    index
        .add_user(user, &key(6), true, write)
        .unwrap_or_else(|e| panic!("{e}"));
    (db, store, index, user)
}

#[test]
fn an_older_keyring_restored_is_tampering() {
    let (db, store, index, user) = prod_with_a_user(true);
    let with_user = entry(&store, "prod");
    assert!(index.remove_user(user).unwrap_or_else(|e| panic!("{e}")));

    // Restoring the keyring that still had the user would bring them back.
    put_entry(&store, "prod", &with_user);
    tampered(index.count(), "the owner's loaded handle");
    tampered(
        db.load_index("prod", Credentials::user(user, key(6))),
        "the revoked user",
    );
    drop(index);
    tampered(db.load_index("prod", owner(1)), "loading as the owner");
}

#[test]
fn a_replaced_wrap_is_tampering() {
    let (db, store, index, user) = prod_with_a_user(false);
    let first = entry(&store, "prod");
    // Granting again seals a new wrap of the same data key.
    index
        .add_user(user, &key(6), true, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let second = entry(&store, "prod");
    assert_eq!(first.len(), second.len());
    // An entry is [version, id: 16 bytes, tag: 32 bytes, keyring]; the two
    // keyrings differ only in the user's wrap. Keep the current tag and
    // put the first (valid, older) wrap in.
    let spliced = [&second[..49], &first[49..]].concat();
    assert_ne!(spliced, second);
    let n = second.len();
    put_entry(&store, "prod", &spliced);

    tampered(index.count(), "the owner's loaded handle");
    drop(index);
    tampered(db.load_index("prod", owner(1)), "loading as the owner");
    tampered(
        db.load_index("prod", Credentials::user(user, key(6))),
        "loading as the user",
    );
    // Flipping a byte of the wrap instead: the owner sees tampering.
    let mut flipped = second.clone();
    flipped[n - 1] ^= 1;
    put_entry(&store, "prod", &flipped);
    tampered(db.load_index("prod", owner(1)), "a flipped byte");
    put_entry(&store, "prod", &second);
    db.load_index("prod", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
}
