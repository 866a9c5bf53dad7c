use super::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn item_round_trip(id in ".{1,20}", v in proptest::collection::vec(-1e6f32..1e6, 0..40),
                       c in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
                       m in proptest::option::of(".{0,30}")) {
        let rec = ItemRecord { id, vector: v, contents: c, metadata: m };
        prop_assert_eq!(ItemRecord::decode(&rec.encode()).ok(), Some(rec.clone()));
        let enc = rec.encode();
        for cut in 0..enc.len() {
            prop_assert!(ItemRecord::decode(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn block_round_trip_and_remove(n in 0usize..20, d in 1usize..6) {
        let mut b = Block::default();
        for i in 0..n {
            let v: Vec<f32> = (i * d..(i + 1) * d).map(|x| x as f32).collect();
            b.push(&format!("id{i}"), &v);
        }
        let place = Place { list: n as u32, generation: d as u64, seq: (n * d) as u64 };
        // Float32 blocks keep no norms, whatever is asked.
        let enc = b.encode(d, place, Norms::Kept);
        prop_assert_eq!(&enc, &b.encode(d, place, Norms::Omitted));
        let back = Block::decode(&enc, d);
        prop_assert_eq!(back.as_ref().ok().and_then(Block::place), Some(place));
        prop_assert_eq!(back.ok(), Some(b.clone()));
        for cut in 0..enc.len() {
            prop_assert!(Block::decode(&enc[..cut], d).is_err());
        }
        prop_assert!(Block::decode(&enc, d + 1).is_err());
        if n > 0 {
            let victim = format!("id{}", n / 2);
            prop_assert!(b.remove(&victim, d));
            prop_assert!(!b.remove(&victim, d));
            prop_assert_eq!(b.len(), n - 1);
            prop_assert_eq!(b.vectors().len(), (n - 1) * d);
            for (i, id) in b.ids().iter().enumerate() {
                let orig: usize = id[2..].parse().unwrap_or(usize::MAX);
                prop_assert_eq!(b.vectors()[i * d], (orig * d) as f32);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Every decoder of this module, and the catalog's, on arbitrary
    /// bytes behind a valid version byte (so the fields are reached):
    /// a clean error or a value that encodes back to the same bytes;
    /// never a panic.
    #[test]
    fn arbitrary_bytes_are_an_error_or_a_canonical_record(
        tail in proptest::collection::vec(any::<u8>(), 0..256),
        dim in 1usize..4,
        n_lists in 1usize..4,
    ) {
        let item = [&[ITEM_VERSION][..], &tail].concat();
        if let Ok(rec) = ItemRecord::decode(&item) {
            prop_assert_eq!(rec.encode(), item);
        }
        for precision in [0u8, 2, 3] {
            let block = [&[BLOCK_VERSION, precision][..], &tail].concat();
            if let Ok(b) = Block::decode(&block, dim) {
                let place = b.place();
                prop_assert!(place.is_some());
                prop_assert_eq!(b.encode(dim, place.unwrap_or(PLACE), b.read_norms()), block);
            }
        }
        for version in [1u8, 2, 3, 4] {
            // Older layouts: decode without panicking.
            let _ = Block::decode(&[&[version][..], &tail].concat(), dim);
        }
        let centroids = [&[CENTROIDS_VERSION][..], &tail].concat();
        for bytes in [&centroids, &tail] {
            if let Ok(c) = decode_centroids(bytes, n_lists, dim) {
                prop_assert_eq!(c.len(), n_lists * dim);
            }
        }
        for version in [1u8, 2] {
            let catalog = [&[version][..], &tail].concat();
            if let Ok(entry) = crate::catalog::Entry::decode(&catalog) {
                prop_assert_eq!(entry.encode(), catalog);
            }
        }
    }
}

#[test]
fn centroids_round_trip_and_the_first_layout_still_reads() {
    let c: Vec<f32> = (0..12).map(|x| x as f32 - 3.5).collect();
    let enc = encode_centroids(&c, 4);
    assert_eq!(decode_centroids(&enc, 3, 4).ok(), Some(c.clone()));
    let bare: Vec<u8> = c.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(decode_centroids(&bare, 3, 4).ok(), Some(c));
    assert!(matches!(
        decode_centroids(&enc, 4, 3),
        Err(crate::Error::Decode(vecseal_codec::Error::Invalid {
            record: Record::Centroids,
            field: "number of lists",
            found: 3,
            ..
        }))
    ));
    // Every cut is an error, but the one of the first layout's length
    // (which only a broken seal could produce: records are
    // authenticated before they are decoded).
    for cut in (0..enc.len()).filter(|&c| c != 12 * 4) {
        assert!(decode_centroids(&enc[..cut], 3, 4).is_err(), "cut {cut}");
    }
}

/// The version-1 layout (ids first, vectors at any alignment).
fn encode_v1(b: &Block, dim: usize) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1).len_u32(b.len()).len_u32(dim);
    for id in b.ids().iter() {
        w.str(id);
    }
    w.f32s(b.vectors());
    w.into_vec()
}

fn sample(n: usize, dim: usize) -> Block {
    let mut b = Block::default();
    for i in 0..n {
        let v: Vec<f32> = (0..dim).map(|j| (i * dim + j) as f32 * 0.5).collect();
        b.push(&format!("item-{i}"), &v);
    }
    b
}

#[test]
fn version_1_blocks_still_read() {
    let b = sample(7, 5);
    // "item-0" … : ids end 9 + 7 × 10 bytes in, so the vectors are not
    // 4-byte aligned and are moved before use.
    assert_eq!(Block::decode(&encode_v1(&b, 5), 5).ok(), Some(b));
}

/// The version-4 layout of `b` (each id with its own length, as
/// version 2 on), made from its version-5 encoding at [`PLACE`].
fn encode_v4(b: &Block, dim: usize, norms: Norms) -> Vec<u8> {
    let v5 = b.encode(dim, PLACE, norms);
    let text: usize = b.ids().iter().map(str::len).sum();
    let ids_v5 = 4 + text + 4 * b.len();
    let kept = norms == Norms::Kept && b.precision().levels() > 0 && b.len() > 0;
    let trailer = 4 + if kept { 4 * b.len() } else { 0 } + 20;
    let at = v5.len() - trailer - ids_v5;
    let mut w = Writer::new();
    for id in b.ids().iter() {
        w.str(id);
    }
    [
        &[4][..],
        &v5[1..at],
        &w.into_vec(),
        &v5[v5.len() - trailer..],
    ]
    .concat()
}

fn sample_at(p: Precision, n: usize, dim: usize) -> Block {
    let mut b = Block::new(p);
    for i in 0..n {
        let v: Vec<f32> = (0..dim).map(|j| (i * dim + j) as f32 * 0.5 - 4.0).collect();
        b.push(&format!("item-{i}"), &v);
    }
    b
}

#[test]
fn version_4_blocks_still_read() {
    let dim = 5;
    for p in Precision::ALL {
        for norms in [Norms::Kept, Norms::Omitted] {
            let b = sample_at(p, 7, dim);
            let v5 = Block::decode(&b.encode(dim, PLACE, norms), dim).expect("decodes");
            let v4 = Block::decode(&encode_v4(&b, dim, norms), dim)
                .unwrap_or_else(|e| panic!("{p} {norms:?}: a version-4 block reads: {e}"));
            assert_eq!(v4, v5, "{p} {norms:?}");
            assert_eq!(v4.ids(), v5.ids(), "{p} {norms:?}");
            assert_eq!((v4.place(), v4.read_norms()), (v5.place(), v5.read_norms()));
        }
    }
}

#[test]
fn version_3_blocks_still_read_and_compute_their_norms() {
    let dim = 5;
    for p in [Precision::Float32, Precision::Tq8, Precision::Tq4] {
        let b = sample_at(p, 7, dim);
        // Version 3 is version 4 without the count of norms before the
        // place (20 bytes at the end).
        let v4 = encode_v4(&b, dim, Norms::Omitted);
        let cut = v4.len() - 24;
        assert_eq!(v4[cut..cut + 4], [0; 4], "{p}: no norms kept");
        let v3 = [&[3][..], &v4[1..cut], &v4[cut + 4..]].concat();
        let back = Block::decode(&v3, dim).expect("a version-3 block reads");
        assert_eq!(back.place(), Some(PLACE));
        assert_eq!(back.read_norms(), Norms::Omitted);
        let kept = Block::decode(&b.encode(dim, PLACE, Norms::Kept), dim).expect("decodes");
        assert_eq!(back, kept, "{p}");
        let bits =
            |b: &Block| -> Vec<u32> { b.decoded_norms(dim).iter().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(&back), bits(&kept), "{p}: computed as kept");
        assert_eq!(
            bits(&back).len(),
            if p == Precision::Float32 { 0 } else { 7 }
        );
    }
}

#[test]
fn id_ends_out_of_order_or_inside_a_character_are_refused() {
    let mut b = Block::default();
    for id in ["é", "ab", "c"] {
        b.push(id, &[1.0]);
    }
    let enc = b.encode(1, PLACE, Norms::Omitted);
    // The three ends (2, 4, 5) sit before the count of norms and the place.
    let at = enc.len() - 24 - 12;
    assert_eq!(enc[at..at + 12], [2, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0]);
    assert!(Block::decode(&enc, 1).is_ok());
    for (i, end, field) in [
        (0, 1, "id end"),
        (1, 0, "id end"),
        (2, 4, "ids' text length"),
    ] {
        let mut bad = enc.clone();
        bad[at + 4 * i] = end;
        assert!(
            matches!(
                Block::decode(&bad, 1),
                Err(crate::Error::Decode(vecseal_codec::Error::Invalid { record: Record::Block, field: f, .. })) if f == field
            ),
            "end {i} at {end}"
        );
    }
}

#[test]
fn a_block_keeps_norms_only_for_each_of_its_vectors() {
    let dim = 3;
    let mut b = Block::new(Precision::Tq8);
    for i in 0..4 {
        b.push(&format!("v{i}"), &[i as f32, 1.0, -2.0]);
    }
    let enc = b.encode(dim, PLACE, Norms::Kept);
    // The count of norms sits before its 4 norms and the 20-byte place.
    let at = enc.len() - 20 - 4 * 4 - 4;
    assert_eq!(enc[at..at + 4], 4u32.to_le_bytes());
    let mut wrong = enc.clone();
    wrong[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        Block::decode(&wrong, dim),
        Err(crate::Error::Decode(vecseal_codec::Error::Invalid {
            record: Record::Block,
            field: "number of norms",
            found: 3,
            ..
        }))
    ));
}

const PLACE: Place = Place {
    list: 3,
    generation: 1,
    seq: 42,
};

#[test]
fn sealed_blocks_are_scanned_where_they_were_decrypted() {
    use crate::keys::{Keys, Kind};
    use vecseal_envelope::{SecretKey, Suite, TAG_LEN};
    let b = sample(9, 3);
    let key = SecretKey::from_bytes(&[7; 32]).unwrap_or_else(|e| panic!("{e}"));
    for suite in [Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
        let keys = Keys::derive(&key, vecseal_keyring::IndexId([1; 16]), suite);
        let sealed = keys
            .seal(Kind::Block, b"k", &b.encode(3, PLACE, Norms::Omitted))
            .unwrap_or_else(|e| panic!("{e}"));
        let open = |buf: &mut [u8]| keys.open_in_place(Kind::Block, b"k", buf);
        let mut got = Block::default();
        got.open_into(&sealed, 3, open)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, b, "{suite:?}");
        // No copy: the vectors are used where they were decrypted.
        let plain_at = suite.overhead() - TAG_LEN;
        assert_eq!(got.at * 4, plain_at + BLOCK_VECTORS_AT, "{suite:?}");
        // The buffer is reused for the next block.
        let cap = got.data.capacity();
        got.open_into(&sealed, 3, open)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.data.capacity(), &got), (cap, &b));
    }
}

#[test]
fn a_block_that_fails_to_open_is_left_empty() {
    let mut got = sample(4, 2);
    let enc = sample(3, 2).encode(2, PLACE, Norms::Omitted);
    let r = got.open_into(&enc[..enc.len() - 1], 2, |p| Ok(0..p.len()));
    assert!(r.is_err());
    assert_eq!((got.len(), got.vectors().len()), (0, 0));
}
