use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::half::{f16_bits, f16_value};
use super::*;
use crate::codec::{Block, Norms, Place};

const PLACE: Place = Place {
    list: 0,
    generation: 0,
    seq: 9,
};

/// The float16 value nearest to `x` by brute force over neighbours.
fn nearest_f16_value(x: f32) -> f32 {
    let b = f16_bits(x);
    let v = f16_value(b);
    for n in [b.wrapping_sub(1), b.wrapping_add(1)] {
        if n & 0x7fff < 0x7c00 {
            let w = f16_value(n);
            assert!(
                (f64::from(w) - f64::from(x)).abs() >= (f64::from(v) - f64::from(x)).abs(),
                "{x}: {v} is not the nearest float16 ({w} is nearer)"
            );
        }
    }
    v
}

#[test]
fn every_finite_float16_round_trips() {
    for h in (0u16..=0xffff).filter(|h| h & 0x7fff < 0x7c00) {
        let v = f16_value(h);
        // -0 and +0 both round-trip to themselves.
        assert_eq!(f16_bits(v), h, "bits {h:#06x} value {v}");
    }
    assert_eq!(f16_value(0x3c00), 1.0);
    assert_eq!(f16_value(0xc000), -2.0);
    assert_eq!(f16_value(0x0001), 2f32.powi(-24));
    assert_eq!(f16_value(0x7bff), 65504.0);
}

#[test]
fn float16_rounds_to_nearest_and_saturates() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..100_000 {
        let scale = 2f32.powi(rng.gen_range(-26..16));
        let x = rng.gen_range(-1.0f32..1.0) * scale;
        nearest_f16_value(x);
    }
    // Ties go to even.
    assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
    assert_eq!(f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
    for big in [65504.0f32, 65520.0, 1e9, f32::MAX] {
        assert_eq!(f16_value(f16_bits(big)), 65504.0);
        assert_eq!(f16_value(f16_bits(-big)), -65504.0);
    }
}

fn sample(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * dim)
        .map(|i| rng.gen_range(-1.0f32..1.0) * (1 + i % dim) as f32)
        .collect()
}

fn decode(p: Precision, range: &Option<Range>, codes: &[u8], dim: usize) -> Vec<f32> {
    let empty = Range::default();
    let r = range.as_ref().unwrap_or(&empty);
    let mut out = Vec::new();
    Codes {
        precision: p,
        lo: &r.lo,
        step: &r.step,
        bytes: codes,
    }
    .decode_into(dim, &mut out);
    out
}

/// Every coordinate decodes to within half a step of its value (float16:
/// within half a float16 spacing).
fn assert_close(
    p: Precision,
    range: &Option<Range>,
    exact: &[f32],
    got: &[f32],
    dim: usize,
    slack: f32,
) {
    assert_eq!(exact.len(), got.len());
    for (i, (&x, &y)) in exact.iter().zip(got).enumerate() {
        let tol = match (p, range) {
            (Precision::Float16, _) => x.abs() * 2f32.powi(-11) + 2f32.powi(-25),
            (_, Some(r)) => r.step[i % dim] * slack + x.abs() * 1e-6 + 1e-6,
            _ => unreachable!(),
        };
        assert!(
            (x - y).abs() <= tol,
            "{p} coordinate {i}: {x} decoded as {y} (tolerance {tol})"
        );
    }
}

#[test]
fn codes_decode_within_half_a_step_at_every_precision_and_level() {
    for dim in [1, 2, 7, 16, 33, 50] {
        let exact = sample(40, dim, dim as u64);
        for p in [Precision::Float16, Precision::Tq8, Precision::Tq4] {
            let pending = Pending {
                exact: exact.clone(),
                ..Pending::default()
            };
            let (range, codes) = pending.finish(p, dim);
            assert_eq!(codes.len(), 40 * p.code_bytes(dim));
            let got = decode(p, &range, &codes, dim);
            assert_close(p, &range, &exact, &got, dim, 0.5);
            for level in SimdLevel::ALL {
                let r = range.clone().unwrap_or_default();
                let mut at = Vec::new();
                Codes {
                    precision: p,
                    lo: &r.lo,
                    step: &r.step,
                    bytes: &codes,
                }
                .decode_at(level, dim, &mut at);
                let same = at.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{p} d={dim}: level {level} decodes differently");
            }
        }
    }
}

#[test]
fn widening_a_range_keeps_old_codes_close_and_codes_new_ones() {
    let dim = 5;
    for p in [Precision::Tq8, Precision::Tq4] {
        let first = sample(10, dim, 1);
        let (range, codes) = Pending {
            exact: first.clone(),
            ..Pending::default()
        }
        .finish(p, dim);
        // Far outside the first range, on both sides.
        let second: Vec<f32> = sample(3, dim, 2).iter().map(|x| x * 4.0).collect();
        let pending = Pending {
            range: range.clone(),
            codes,
            exact: second.clone(),
        };
        let (wide, all) = pending.finish(p, dim);
        let wide = wide.expect("a range");
        assert!(wide.covers(&second, dim, p.levels()));
        assert!(wide.covers(&first, dim, p.levels()));
        let got = decode(p, &Some(wide.clone()), &all, dim);
        // Old codes: half an old step plus half a new one, at most.
        assert_close(
            p,
            &Some(wide.clone()),
            &first,
            &got[..first.len()],
            dim,
            1.0,
        );
        assert_close(p, &Some(wide), &second, &got[first.len()..], dim, 0.5);
        // A vector inside the range is coded without a change of range.
        let (same, _) = Pending {
            range: range.clone(),
            codes: Vec::new(),
            exact: first[..dim].to_vec(),
        }
        .finish(p, dim);
        assert_eq!(same, range);
    }
}

/// Coordinates near the largest floats: ranges stay finite, codes decode
/// to numbers (never NaN), within half a step.
#[test]
fn huge_coordinates_keep_a_finite_range() {
    let dim = 3;
    let exact = vec![-3e38f32, 0.0, 3e38, 3e38, 1.0, -3e38, 0.0, -1.0, 1e38];
    for p in [Precision::Tq8, Precision::Tq4] {
        let (range, codes) = Pending {
            exact: exact.clone(),
            ..Pending::default()
        }
        .finish(p, dim);
        let r = range.clone().expect("a range");
        assert!(r.step.iter().all(|s| s.is_finite()), "{p}: {:?}", r.step);
        let got = decode(p, &range, &codes, dim);
        assert!(got.iter().all(|x| !x.is_nan()), "{p}: {got:?}");
        // Widening far beyond: still finite.
        let wide = r.widened(&[f32::MAX, -f32::MAX, f32::MAX], dim, p.levels());
        assert!(wide.step.iter().all(|s| s.is_finite()) && wide.lo.iter().all(|l| l.is_finite()));
    }
}

#[test]
fn compressed_blocks_round_trip_and_edit() {
    let dim = 7;
    for p in [Precision::Float16, Precision::Tq8, Precision::Tq4] {
        let vectors = sample(6, dim, 5);
        let mut b = Block::new(p);
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            b.push(&format!("id{i}"), v);
        }
        let enc = b.encode(dim, PLACE, Norms::Kept);
        let back = Block::decode(&enc, dim).expect("decodes");
        assert_eq!(back.precision(), p);
        assert_eq!(back.len(), 6);
        // Only 8- and 4-bit blocks keep norms (float16 is not scored in
        // integers).
        let keeps = if p == Precision::Float16 {
            Norms::Omitted
        } else {
            Norms::Kept
        };
        assert_eq!(back.read_norms(), keeps, "{p}");
        assert_eq!(
            back.encode(dim, PLACE, back.read_norms()),
            enc,
            "{p}: re-encoding as read"
        );
        let codes = back.codes(dim).expect("codes");
        let mut got = Vec::new();
        codes.decode_into(dim, &mut got);
        // The decoded vectors' squared norms, canonical sums, whether kept
        // in the block or computed on read; none for a block under edit.
        let canonical = |decoded: &[f32]| -> Vec<u32> {
            decoded
                .chunks_exact(dim)
                .map(|x| crate::distance::dot(x, x).to_bits())
                .collect()
        };
        let bits =
            |b: &Block| -> Vec<u32> { b.decoded_norms(dim).iter().map(|v| v.to_bits()).collect() };
        let norms = canonical(&got);
        assert_eq!(bits(&back), norms, "{p}: kept");
        let without = b.encode(dim, PLACE, Norms::Omitted);
        let kept_bytes = if keeps == Norms::Kept { 4 * 6 } else { 0 };
        assert_eq!(enc.len(), without.len() + kept_bytes, "{p}");
        let omitted = Block::decode(&without, dim).expect("decodes");
        assert_eq!(omitted.read_norms(), Norms::Omitted, "{p}");
        assert_eq!(bits(&omitted), norms, "{p}: computed");
        // Remove a coded vector, push an exact one: the codes of the others
        // do not change, and ids follow their vectors.
        let mut edited = back.clone();
        assert!(edited.remove("id1", dim));
        assert!(edited.decoded_norms(dim).is_empty(), "{p}: under edit");
        assert!(!edited.remove("nope", dim));
        edited.push("new", &vectors[..dim]);
        let again = Block::decode(&edited.encode(dim, PLACE, Norms::Kept), dim).expect("decodes");
        let ids: Vec<&str> = again.ids().iter().collect();
        assert_eq!(ids, ["id0", "id5", "id2", "id3", "id4", "new"]);
        let mut after = Vec::new();
        again
            .codes(dim)
            .expect("codes")
            .decode_into(dim, &mut after);
        assert_eq!(again.read_norms(), keeps, "{p}: edited");
        assert_eq!(bits(&again), canonical(&after), "{p}: edited, kept");
        for (j, old) in [0, 5, 2, 3, 4].into_iter().enumerate() {
            assert_eq!(
                after[j * dim..(j + 1) * dim],
                got[old * dim..(old + 1) * dim],
                "{p}"
            );
        }
        assert_eq!(
            after[5 * dim..],
            got[..dim],
            "{p}: the same vector, the same codes"
        );
    }
}

#[test]
fn precision_names_parse_and_unsupported_ones_say_so() {
    for p in Precision::ALL {
        assert_eq!(p.name().parse::<Precision>().ok(), Some(p));
        assert_eq!(
            p.to_string().to_uppercase().parse::<Precision>().ok(),
            Some(p)
        );
    }
    for bad in ["tq12", "tq6", "float64", ""] {
        match bad.parse::<Precision>() {
            Err(Error::InvalidParameter { expected, .. }) => {
                assert_eq!(
                    expected.contains("not supported"),
                    bad.starts_with("tq"),
                    "{bad}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

proptest! {
    /// Any vectors in any order: a block's codes decode close to them.
    #[test]
    fn pushes_in_any_batches_decode_close(
        batches in proptest::collection::vec(proptest::collection::vec(-100f32..100.0, 3..=3), 1..8),
    ) {
        let dim = 3;
        let mut b = Block::new(Precision::Tq8);
        let mut all = Vec::new();
        for (i, v) in batches.iter().enumerate() {
            b.push(&i.to_string(), v);
            all.extend_from_slice(v);
            b = Block::decode(&b.encode(dim, PLACE, Norms::Kept), dim).expect("decodes");
        }
        let codes = b.codes(dim).expect("codes");
        let mut got = Vec::new();
        codes.decode_into(dim, &mut got);
        // Each widening adds at most half a step of the range then: a few
        // steps of the final range in all.
        for (i, (x, y)) in all.iter().zip(&got).enumerate() {
            prop_assert!((x - y).abs() <= 4.0 * codes.step[i % dim] + 1e-4, "{} vs {}", x, y);
        }
    }
}

/// A buffer reused for blocks of every size (the scan's) decodes each the
/// same as a fresh one: it only grows, and nothing of a larger block before
/// leaks into a smaller one's values.
#[test]
fn a_reused_buffer_decodes_blocks_of_every_size() {
    let dim = 9;
    for p in [Precision::Float16, Precision::Tq8, Precision::Tq4] {
        let mut buf = Vec::new();
        for (i, n) in [30usize, 3, 17, 30, 1].into_iter().enumerate() {
            let exact = sample(n, dim, 100 + i as u64);
            let (range, codes) = Pending {
                exact,
                ..Pending::default()
            }
            .finish(p, dim);
            let fresh = decode(p, &range, &codes, dim);
            let r = range.unwrap_or_default();
            let got = Codes {
                precision: p,
                lo: &r.lo,
                step: &r.step,
                bytes: &codes,
            }
            .decode_in(dim, &mut buf);
            assert_eq!(got, &fresh[..], "{p}: block {i} of {n} vectors");
            // Grown once, to the first (largest) block, and never shrunk.
            assert_eq!(buf.len(), 30 * dim, "{p}: block {i}");
        }
    }
}

/// Float16 sums without a decoded copy equal the canonical sums over the
/// decoded vectors bit for bit, at every SIMD level, for both sums and
/// dimensions with and without a tail.
#[test]
fn float16_sums_equal_the_canonical_sums_of_the_decoded_vectors() {
    use vecseal_kmeans::kernel::Sum;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    for dim in [1, 15, 16, 17, 50, 768] {
        let vectors = sample(23, dim, dim as u64);
        let mut bytes = Vec::new();
        encode_f16(&vectors, &mut bytes);
        let codes = Codes {
            precision: Precision::Float16,
            lo: &[],
            step: &[],
            bytes: &bytes,
        };
        let mut decoded = Vec::new();
        codes.decode_into(dim, &mut decoded);
        let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
        for (squared, sum) in [(false, Sum::Dot), (true, Sum::SquaredL2)] {
            let want: Vec<u32> = decoded
                .chunks_exact(dim)
                .map(|x| vecseal_kmeans::kernel::sum(sum, &q, x).to_bits())
                .collect();
            for level in SimdLevel::ALL {
                let mut got = Vec::new();
                codes.f16_sums_at(level, &q, squared, &mut got);
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "d={dim} {sum:?} at {level}");
            }
        }
    }
}
