//! Wrong keys, RBAC permissions, revocation, rotation and overrides.

mod common;
use common::*;
use vecseal_index::{
    AccessError, Credentials, EnvelopeError, Error, Item, Metric, QueryOptions, TrainOptions,
    UserId,
};

#[test]
fn wrong_key_and_wrong_length_are_clear_errors() {
    let (db, _store) = test_db();
    create(&db, Metric::Cosine);
    assert!(matches!(
        db.load_index("t", owner(2)),
        Err(Error::Access(AccessError::WrongKey))
    ));
    assert!(matches!(
        Credentials::owner_from_bytes(&[0u8; 31]),
        Err(Error::Envelope(EnvelopeError::InvalidKeyLength { .. }))
    ));
    assert!(matches!(
        db.load_index("nope", owner(1)),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        db.create_index("t", owner(1), config()),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn read_only_user_is_refused_on_every_mutating_call() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::Cosine);
    index
        .upsert(vec![Item::new("a", vec![1.0, 0.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    let reader = UserId([7; 16]);
    index
        .add_user(reader, &key(7), true, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let as_reader = db
        .load_index("t", Credentials::user(reader, key(7)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        as_reader
            .query(&[vec![1.0, 0.0]], &QueryOptions::default())
            .unwrap_or_default()[0][0]
            .id,
        "a"
    );
    let denied = |r: Result<(), Error>| {
        assert!(
            matches!(
                &r,
                Err(Error::Access(AccessError::PermissionDenied { who, .. }))
                    if who.contains(&reader.to_string())
            ),
            "{r:?}"
        );
    };
    denied(
        as_reader
            .upsert(vec![Item::new("b", vec![0.0, 1.0])])
            .map(|_| ()),
    );
    denied(as_reader.delete(&["a".into()]).map(|_| ()));
    denied(as_reader.train(&TrainOptions::default()));
    denied(as_reader.add_user(UserId([8; 16]), &key(8), true, true));
    denied(as_reader.remove_user(reader).map(|_| ()));
    denied(as_reader.rotate_key(&key(9)));
    denied(db.delete_index("t", &Credentials::user(reader, key(7))));
    assert_eq!(index.count().unwrap(), 1);
}

#[test]
fn writer_revocation_and_other_users_keys() {
    let (db, _store) = test_db();
    let index = create(&db, Metric::Cosine);
    let (w, r) = (UserId([1; 16]), UserId([2; 16]));
    index
        .add_user(w, &key(11), true, true)
        .unwrap_or_else(|e| panic!("{e}"));
    index
        .add_user(r, &key(12), true, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let as_writer = db
        .load_index("t", Credentials::user(w, key(11)))
        .unwrap_or_else(|e| panic!("{e}"));
    as_writer
        .upsert(vec![Item::new("x", vec![1.0, 1.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    // A user's key does not open another user's access.
    assert!(matches!(
        db.load_index("t", Credentials::user(r, key(11))),
        Err(Error::Access(_))
    ));
    assert_eq!(index.list_users().unwrap().len(), 2);
    // Revocation takes effect on the writer's very next call.
    assert!(index.remove_user(w).unwrap());
    assert!(as_writer
        .upsert(vec![Item::new("y", vec![1.0, 1.0])])
        .is_err());
    assert!(as_writer.count().is_err());
    // Rotation: the old owner key stops working, users keep working.
    index.rotate_key(&key(3)).unwrap_or_else(|e| panic!("{e}"));
    assert!(db.load_index("t", owner(1)).is_err());
    let fresh = db
        .load_index("t", owner(3))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(db.load_index("t", Credentials::user(r, key(12))).is_ok());
    // Per-operation override: the handle's own key is now stale, the override works.
    assert!(index.count().is_err());
    assert_eq!(
        index
            .using(owner(3))
            .count()
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    assert_eq!(fresh.count().unwrap(), 1);
    let reader = fresh.using(Credentials::user(r, key(12)));
    assert!(reader.upsert(vec![Item::new("z", vec![0.0, 1.0])]).is_err());
    assert_eq!(reader.count().unwrap(), 1);
}

#[test]
fn delete_index_removes_every_record() {
    let (db, store) = test_db();
    let index = create(&db, Metric::Cosine);
    index
        .upsert(vec![Item::new("x", vec![1.0, 1.0])])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(db.delete_index("t", &owner(2)).is_err());
    db.delete_index("t", &owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dump(&store).is_empty());
    assert!(db.list_indexes().unwrap().is_empty());
}
