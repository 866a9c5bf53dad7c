//! Two handles of one index (loaded twice, or through a clone of the
//! database) share one in-memory state: writes through either are seen by
//! both and none overwrites the other; loading an index that is already
//! loaded still checks the key.

mod common;
use common::*;
use vecseal_index::{Credentials, Metric};

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn handles_of_one_index_share_state_and_still_check_keys() {
    let (db, _store) = test_db();
    let a = create(&db, Metric::SquaredEuclidean);
    let b = db
        .clone()
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    a.upsert_vectors(&ids(&["x"]), &[vec![1.0, 2.0]])
        .unwrap_or_else(|e| panic!("{e}"));
    b.upsert_vectors(&ids(&["y"]), &[vec![3.0, 4.0]])
        .unwrap_or_else(|e| panic!("{e}"));
    a.delete(&ids(&["nothing"]))
        .unwrap_or_else(|e| panic!("{e}"));
    for h in [&a, &b] {
        assert_eq!(h.list_ids().unwrap(), ids(&["x", "y"]));
    }

    // A wrong key or an unknown user is refused although the index is loaded.
    assert!(db.load_index("t", owner(2)).is_err());
    let stranger_id = vecseal_index::UserId::from_bytes(&[9; 16]).unwrap_or_else(|e| panic!("{e}"));
    let stranger = Credentials::user(stranger_id, key(1));
    assert!(db.load_index("t", stranger).is_err());

    // Both writes were persisted: a fresh load (no handle left) sees them.
    drop((a, b));
    let c = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.list_ids().unwrap(), ids(&["x", "y"]));
    assert_eq!(c.count().unwrap(), 2);
}

#[test]
fn a_kept_index_is_found_again_without_its_key_and_never_after_recreation() {
    let (db, _store) = test_db();
    let a = create(&db, Metric::SquaredEuclidean);
    let kept = a.keep_loaded();
    assert_eq!(kept.name(), "t");
    drop(a);

    // No handle is left, but the kept state is what the next load finds;
    // the key is still checked.
    let b = db
        .load_index("t", owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(kept.holds(&b));
    assert!(db.load_index("t", owner(2)).is_err());

    // Deleted and created again under the same name: a new state.
    db.delete_index("t", &owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(b);
    let c = create(&db, Metric::SquaredEuclidean);
    assert!(!kept.holds(&c));
}

#[test]
fn a_kept_index_used_with_credentials_checks_them_on_every_call() {
    let (db, _store) = test_db();
    let a = create(&db, Metric::SquaredEuclidean);
    a.upsert_vectors(&ids(&["x"]), &[vec![1.0, 2.0]])
        .unwrap_or_else(|e| panic!("{e}"));
    let reader = vecseal_index::UserId::from_bytes(&[7; 16]).unwrap_or_else(|e| panic!("{e}"));
    a.add_user(reader, &key(7), true, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let kept = a.keep_loaded();

    // The owner's key and a reader's work; a wrong key fails its first call.
    assert_eq!(kept.using(owner(1)).list_ids().unwrap(), ids(&["x"]));
    let as_reader = kept.using(Credentials::user(reader, key(7)));
    assert_eq!(as_reader.count().unwrap(), 1);
    assert!(matches!(
        kept.using(owner(2)).count(),
        Err(vecseal_index::Error::Access(_))
    ));
    // A reader may not write through it either.
    assert!(matches!(
        as_reader.upsert_vectors(&ids(&["y"]), &[vec![0.0, 0.0]]),
        Err(vecseal_index::Error::Access(_))
    ));

    // A revocation takes effect on the next call of a handle made before it.
    assert!(a.remove_user(reader).unwrap());
    assert!(matches!(
        as_reader.count(),
        Err(vecseal_index::Error::Access(_))
    ));

    // Once the index is deleted, its calls fail as not found; the
    // credentials come back to load what the name holds next.
    db.delete_index("t", &owner(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let stale = kept.using(owner(1));
    assert!(matches!(
        stale.list_ids(),
        Err(vecseal_index::Error::NotFound(_))
    ));
    drop(create(&db, Metric::SquaredEuclidean));
    let fresh = db
        .load_index("t", stale.into_credentials())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!kept.holds(&fresh));
    assert_eq!(fresh.count().unwrap(), 0);
}
