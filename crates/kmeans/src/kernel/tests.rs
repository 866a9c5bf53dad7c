use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "reference.rs"]
mod reference;

/// The oracle: the canonical order as the module documents it.
fn reference(kind: Sum, a: &[f32], b: &[f32]) -> f32 {
    reference::canonical_sum(a, b, kind == Sum::SquaredL2)
}

fn levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect()
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

#[test]
fn every_level_sums_in_the_canonical_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    assert!(levels().contains(&SimdLevel::Scalar));
    for dim in [1, 3, 8, 15, 16, 17, 31, 32, 33, 50, 64, 100, 768] {
        for scale in [1e-3f32, 1.0, 1e3] {
            let a = random(&mut rng, dim, scale);
            let b = random(&mut rng, dim, scale);
            for kind in [Sum::Dot, Sum::SquaredL2] {
                let want = reference(kind, &a, &b).to_bits();
                for level in levels() {
                    let got = sum_at(level, kind, &a, &b).to_bits();
                    assert_eq!(got, want, "{kind:?} {level} d={dim} scale={scale}");
                }
            }
        }
    }
}

#[test]
fn tiles_equal_pairs_at_every_level() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for dim in [1, 7, 16, 17, 50, 768] {
        for (m, n) in [(1, 1), (3, 5), (4, 4), (7, 9), (37, 6)] {
            let q = random(&mut rng, m * dim, 2.0);
            let x = random(&mut rng, n * dim, 2.0);
            for kind in [Sum::Dot, Sum::SquaredL2] {
                for level in levels() {
                    let mut out = vec![0f32; m * n];
                    sums_at(level, kind, &q, &x, dim, &mut out, |s| 1.0 - s);
                    for i in 0..m {
                        for j in 0..n {
                            let want = 1.0
                                - reference(
                                    kind,
                                    &q[i * dim..(i + 1) * dim],
                                    &x[j * dim..(j + 1) * dim],
                                );
                            assert_eq!(
                                out[i * n + j].to_bits(),
                                want.to_bits(),
                                "{kind:?} {level} d={dim} q{i} x{j}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn level_names_parse_and_others_are_refused() {
    for level in SimdLevel::ALL {
        assert_eq!(level.name().parse::<SimdLevel>(), Ok(level));
    }
    assert_eq!("V4".parse::<SimdLevel>(), Ok(SimdLevel::V4));
    assert!(matches!(
        "avx2".parse::<SimdLevel>(),
        Err(Error::UnknownSimdLevel(s)) if s == "avx2"
    ));
    assert!(SimdLevel::Scalar.is_available());
    assert!(SimdLevel::best().is_available());
    assert!(SimdLevel::current().is_available());
}

/// The nearest and the `n` nearest by the oracle: (distance, index) order.
fn oracle_order(centroids: &[f32], dim: usize, row: &[f32]) -> Vec<u32> {
    let mut all: Vec<(f32, u32)> = centroids
        .chunks_exact(dim)
        .enumerate()
        .map(|(j, c)| (reference(Sum::SquaredL2, row, c), j as u32))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().map(|(_, j)| j).collect()
}

fn check_ranking(centroids: &[f32], dim: usize, rows: &[f32], n: usize) {
    let c = Centroids::new(centroids, dim);
    let nearest = c.nearest(rows);
    let heads = c.nearest_n(rows, n);
    // The 16-bit screen, one row and a few rows at a time.
    let coded = Coded::new(centroids, dim);
    let screened = Centroids::new(centroids, dim).with_coded(&coded);
    let few: Vec<u32> = rows
        .chunks(3 * dim)
        .flat_map(|r| screened.nearest(r))
        .collect();
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let want = oracle_order(centroids, dim, row);
        assert_eq!(nearest[i], want[0], "row {i}");
        assert_eq!(few[i], want[0], "row {i}, coded screen of 3 rows");
        assert_eq!(screened.nearest(row), [want[0]], "row {i}, coded screen");
        assert_eq!(
            screened.nearest_n(row, n),
            [&want[..n.min(want.len())]],
            "row {i}, coded screen"
        );
        assert_eq!(heads[i], want[..n.min(want.len())], "row {i}");
        assert_eq!(c.ranked(row), want, "row {i}");
    }
}

#[test]
fn ranking_is_exact_with_ties_and_cancellation() {
    // Duplicate centroids (exact ties) and rows far from the origin, where
    // the GEMM's ‖x‖² + ‖c‖² − 2x·c cancels almost every bit.
    let dim = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut centroids: Vec<f32> = (0..20 * dim).map(|_| rng.gen_range(0..4) as f32).collect();
    centroids.extend_from_within(0..6 * dim);
    let offset = 4096.0;
    let shifted: Vec<f32> = centroids.iter().map(|v| v + offset).collect();
    let rows: Vec<f32> = (0..300 * dim)
        .map(|_| rng.gen_range(0..8) as f32 * 0.5)
        .collect();
    let shifted_rows: Vec<f32> = rows.iter().map(|v| v + offset).collect();
    for n in [1, 3, 26, 40] {
        check_ranking(&centroids, dim, &rows, n);
        check_ranking(&shifted, dim, &shifted_rows, n);
    }
}

#[test]
fn ranking_survives_overflowing_values() {
    let dim = 2;
    let centroids = [0.0f32, 0.0, 3e38, 3e38, 1.0, 1.0];
    let rows = [0.9f32, 0.9, -3e38, 3e38];
    check_ranking(&centroids, dim, &rows, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Centroids and rows drawn from a few levels (ties are common): every
    /// way of ranking agrees with the oracle's (distance, index) order.
    #[test]
    fn ranking_matches_the_oracle(
        dim in 1usize..20,
        k in 1usize..40,
        seed in any::<u64>(),
        n in 1usize..50,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centroids: Vec<f32> = (0..k * dim).map(|_| rng.gen_range(0..3) as f32).collect();
        let rows: Vec<f32> = (0..70 * dim).map(|_| rng.gen_range(0..6) as f32 * 0.5).collect();
        check_ranking(&centroids, dim, &rows, n);
    }
}

/// Norms kept from an earlier call route exactly as fresh ones.
#[test]
fn kept_norms_route_as_fresh_ones() {
    let dim = 3;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let centroids: Vec<f32> = (0..1500 * dim)
        .map(|_| rng.gen_range(0..3) as f32)
        .collect();
    let c = Centroids::new(&centroids, dim);
    let norms = Norms::of(&centroids, dim);
    assert_eq!(norms.as_slice(), c.norms());
    let kept = Centroids::with_norms(&centroids, dim, &norms);
    // The bound's largest norm comes along (a NaN one too).
    assert_eq!(kept.norms.max.to_bits(), c.norms.max.to_bits());
    assert!(kept.norms.max >= 12.0, "{}", kept.norms.max);
    let mut with_nan = centroids.clone();
    with_nan[4] = f32::NAN;
    let nan = Norms::of(&with_nan, dim);
    assert!(Centroids::with_norms(&with_nan, dim, &nan)
        .norms
        .max
        .is_nan());
    let rows: Vec<f32> = (0..40 * dim)
        .map(|_| rng.gen_range(0..6) as f32 * 0.5)
        .collect();
    assert_eq!(kept.nearest(&rows), c.nearest(&rows));
    assert_eq!(kept.nearest_n(&rows, 5), c.nearest_n(&rows, 5));
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        assert_eq!(
            kept.nearest(row)[0],
            oracle_order(&centroids, dim, row)[0],
            "row {i}"
        );
    }
}

proptest! {
    /// The small-`n` selection of the probe screen finds what sorting
    /// finds: the `n`-th smallest value that is not NaN (infinite if
    /// there are fewer), duplicates counted.
    #[test]
    fn nth_smallest_is_the_sorted_nth(
        values in prop::collection::vec(
            prop_oneof![
                8 => (-4i32..4).prop_map(|v| v as f32 * 0.5),
                1 => Just(f32::NAN),
                1 => Just(f32::NEG_INFINITY),
            ],
            0..200,
        ),
        n in 1usize..=SMALL_N,
    ) {
        let mut sorted: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f32::total_cmp);
        let expected = sorted.get(n - 1).copied().unwrap_or(f32::INFINITY);
        prop_assert_eq!(nth_smallest(&values, n), expected);
    }
}

/// Near-ties in many dimensions, where the 16-bit screen's bound matters:
/// centroids one unit in the last place apart, duplicates, rows between
/// them, a zero row and rows of every magnitude. The coded screen picks
/// exactly what the oracle picks.
#[test]
fn the_coded_screen_ranks_near_ties_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for (dim, k, noise) in [(768, 1400, 1e-3), (50, 64, 1e-3), (33, 9, 1e-3)] {
        let base = random(&mut rng, dim, 1.0);
        let mut centroids = Vec::with_capacity(k * dim);
        for j in 0..k {
            let mut c = base.clone();
            match j % 4 {
                // One ulp up in one coordinate, or a duplicate, or noise.
                0 => c[j % dim] = f32::from_bits(c[j % dim].to_bits() + 1),
                1 => {}
                _ => c
                    .iter_mut()
                    .for_each(|v| *v += rng.gen_range(-noise..noise)),
            }
            centroids.extend(c);
        }
        let mut rows = base.clone();
        rows.extend(std::iter::repeat_n(0.0, dim));
        // 1e-30: too small for the coded screen, so the GEMM ranks it.
        for scale in [1e-30f32, 1e-20, 1e-3, 1.0, 1e15] {
            rows.extend(
                base.iter()
                    .map(|v| v * scale + rng.gen_range(-1e-4..1e-4) * scale),
            );
        }
        for _ in 0..50 {
            rows.extend(base.iter().map(|v| v + rng.gen_range(-noise..noise)));
        }
        let coded = Coded::new(&centroids, dim);
        let screened = Centroids::new(&centroids, dim).with_coded(&coded);
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            let want = oracle_order(&centroids, dim, row);
            assert_eq!(screened.nearest(row), [want[0]], "d={dim} row {i}");
            assert_eq!(
                screened.nearest_n(row, 5),
                [&want[..5.min(k)]],
                "d={dim} row {i}"
            );
        }
    }
}

/// In two dimensions the coding error exceeds the GEMM's rounding bound
/// (it shrinks as `1/√d` relative to it): centroids on a circle around a
/// row, their distances a few 1e-5 apart, are ranked exactly only because
/// the screen widens its cut-off by its own bound.
#[test]
fn the_coded_screen_widens_by_its_own_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let dim = 2;
    for _ in 0..300 {
        let row = [rng.gen_range(-1.0f32..1.0), rng.gen_range(-1.0f32..1.0)];
        let centroids: Vec<f32> = (0..64)
            .flat_map(|_| {
                let angle = rng.gen_range(0.0..std::f32::consts::TAU);
                let radius = 1.0 + rng.gen_range(0.0..3e-5);
                [row[0] + radius * angle.cos(), row[1] + radius * angle.sin()]
            })
            .collect();
        let coded = Coded::new(&centroids, dim);
        let screened = Centroids::new(&centroids, dim).with_coded(&coded);
        let want = oracle_order(&centroids, dim, &row);
        assert_eq!(screened.nearest(&row), [want[0]], "{row:?}");
        assert_eq!(screened.nearest_n(&row, 3), [&want[..3]], "{row:?}");
    }
}

/// The screen's bound is tight enough to matter: for a row near one of
/// many well-separated centroids, few candidates are rescored.
#[test]
fn the_coded_screen_leaves_few_candidates() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    let (dim, k) = (768, 500);
    let centroids = random(&mut rng, k * dim, 1.0);
    let coded = Coded::new(&centroids, dim);
    let screened = Centroids::new(&centroids, dim).with_coded(&coded);
    let mut scratch = Scratch::default();
    for j in [0, 17, 499] {
        let row: Vec<f32> = centroids[j * dim..(j + 1) * dim]
            .iter()
            .map(|v| v + rng.gen_range(-0.3..0.3))
            .collect();
        let (mut nearest, mut distance) = ([0u32], [0f32]);
        screened.nearest_into(&row, &mut nearest, &mut distance, &mut scratch);
        assert_eq!(nearest, [j as u32]);
        assert_eq!(scratch.candidates.len(), 1, "row near centroid {j}");
        assert!(scratch.extra[0] > 0.0, "the coded screen was used");
    }
}

/// Rows the 16-bit screen cannot vouch for (not finite, or so large that
/// products overflow) go through the GEMM and still rank exactly.
#[test]
fn rows_the_coded_screen_refuses_are_ranked_by_the_gemm() {
    let dim = 2;
    let centroids = [0.0f32, 0.0, 3e38, 3e38, 1.0, 1.0];
    let coded = Coded::new(&centroids, dim);
    let screened = Centroids::new(&centroids, dim).with_coded(&coded);
    for row in [[0.9f32, 0.9], [-3e38, 3e38], [0.0, 0.0]] {
        let want = oracle_order(&centroids, dim, &row);
        assert_eq!(screened.nearest(&row), [want[0]], "{row:?}");
    }
}

/// The 16-bit screen gives the same bits at every SIMD level (its lanes
/// are joined as one tree whatever the register width), at dimensions
/// around its blocks of 32 codes and magnitudes far apart.
#[test]
fn the_coded_screen_is_the_same_at_every_level() {
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    for dim in [1, 2, 31, 32, 33, 50, 64, 100, 768] {
        for scale in [1e-3f32, 1.0, 1e4] {
            let k = 37;
            let centroids = random(&mut rng, k * dim, scale);
            let coded = Coded::new(&centroids, dim);
            let row = coded
                .row(&random(&mut rng, dim, scale))
                .expect("a finite row of moderate magnitude is coded");
            let mut want = vec![0f32; k];
            coded.screen_at(SimdLevel::Scalar, &row, &mut want);
            assert!(want.iter().any(|&v| v != 0.0), "d={dim}: nothing screened");
            for level in levels() {
                let mut got = vec![0f32; k];
                coded.screen_at(level, &row, &mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{level} d={dim} scale={scale}");
            }
        }
    }
}
