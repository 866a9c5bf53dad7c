use rand::{Rng, SeedableRng};

use super::*;
use crate::precision::Range;

/// Random codes for `n` rows of `dim` at precision `p`, in a range fitted
/// to random vectors (so `lo` and `step` vary by dimension).
fn block(p: Precision, n: usize, dim: usize, seed: u64) -> (Range, Vec<u8>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let vectors: Vec<f32> = (0..n * dim)
        .map(|i| rng.gen_range(-1.0f32..1.0) * (1.0 + (i % dim) as f32 / 8.0))
        .collect();
    let range = Range::fit(&vectors, dim, p.levels());
    let mut codes = Vec::new();
    range.encode(p, &vectors, dim, &mut codes);
    (range, codes)
}

fn codes_of<'a>(p: Precision, range: &'a Range, bytes: &'a [u8]) -> Codes<'a> {
    Codes {
        precision: p,
        lo: &range.lo,
        step: &range.step,
        bytes,
    }
}

/// The code of row `j`, dimension `d`.
fn code_at(p: Precision, bytes: &[u8], dim: usize, j: usize, d: usize) -> u32 {
    let cb = p.code_bytes(dim);
    let b = bytes[j * cb + if p == Precision::Tq4 { d / 2 } else { d }];
    u32::from(match (p, d % 2) {
        (Precision::Tq4, 0) => b & 15,
        (Precision::Tq4, _) => b >> 4,
        _ => b,
    })
}

/// The integer pass is within its stated error of the exact dot product
/// with the decoded vectors (`q·lo + Σ q·step·c`, in f64), the error being
/// half a coded level per unit of code; and every SIMD level gives the same
/// bits.
#[test]
fn integer_dots_are_close_to_the_decoded_and_equal_on_every_level() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for p in [Precision::Tq8, Precision::Tq4] {
        for dim in [1, 2, 7, 31, 32, 33, 50, 64, 65, 768, 1000] {
            let n = 37;
            let (range, bytes) = block(p, n, dim, dim as u64);
            let codes = codes_of(p, &range, &bytes);
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let mut coded = CodedQuery::default();
            assert!(coded.code(&q, &codes, dim), "{p} d={dim}");
            let mut first = Vec::new();
            coded.dots_at(SimdLevel::Scalar, &codes, dim, &mut first);
            assert_eq!(first.len(), n);
            for level in SimdLevel::ALL {
                let mut at = Vec::new();
                let mut again = CodedQuery::default();
                assert!(again.code_at(level, &q, &codes, dim));
                assert_eq!(
                    (again.k.clone(), again.scale.to_bits(), again.base.to_bits()),
                    (coded.k.clone(), coded.scale.to_bits(), coded.base.to_bits()),
                    "{p} d={dim}: level {level} codes the query differently"
                );
                coded.dots_at(level, &codes, dim, &mut at);
                let same = at
                    .iter()
                    .zip(&first)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{p} d={dim}: level {level} sums differently");
            }
            for (j, &got) in first.iter().enumerate() {
                let (mut exact, mut codes_sum) = (0f64, 0f64);
                for (d, &x) in q.iter().enumerate() {
                    let c = f64::from(code_at(p, &bytes, dim, j, d));
                    let (l, s) = (f64::from(range.lo[d]), f64::from(range.step[d]));
                    exact += f64::from(x) * (l + s * c);
                    codes_sum += c;
                }
                let allowed = coded.scale / 2.0 * codes_sum + 1e-6 * (1.0 + exact.abs());
                assert!(
                    (f64::from(got) - exact).abs() <= allowed,
                    "{p} d={dim} row {j}: {got} vs {exact} (allowed {allowed})"
                );
            }
        }
    }
}

/// Rows of the highest codes against weights at the largest level sum
/// without wrapping, at the longest rows the pass accepts.
#[test]
fn the_largest_sums_do_not_wrap() {
    for p in [Precision::Tq8, Precision::Tq4] {
        let levels = p.levels();
        // The longest row with at least MIN_LEVELS levels.
        let mut dim = 1;
        while max_level(levels, row_len(p, dim + 1)) >= MIN_LEVELS {
            dim += 1;
        }
        let top = max_level(levels, row_len(p, dim));
        assert!(top >= MIN_LEVELS);
        assert!(max_level(levels, row_len(p, dim + 1)) < MIN_LEVELS);
        // Every code at its highest (both nibbles of a 4-bit byte).
        let bytes = vec![0xff; p.code_bytes(dim)];
        for sign in [1i16, -1] {
            let k = vec![sign * top as i16; row_len(p, dim)];
            let mut out = vec![0f32; 1];
            vecseal_kmeans::kernel::dispatch(Sums {
                precision: p,
                codes: &bytes,
                cb: p.code_bytes(dim),
                k: &k,
                out: &mut out,
                scale: 1.0,
                base: 0.0,
            });
            // Codes in the row (a 4-bit row of odd length has one more).
            let n_codes = if p == Precision::Tq4 {
                2 * dim.div_ceil(2)
            } else {
                dim
            };
            let want = f64::from(sign) * f64::from(top) * f64::from(levels) * n_codes as f64;
            assert_eq!(f64::from(out[0]), want as f32 as f64, "{p} d={dim}");
        }
    }
}

/// Weights that are not finite, or rows too long for the levels, are
/// refused (the block is then decoded and scored in floating point).
#[test]
fn weights_the_coding_cannot_hold_are_refused() {
    let p = Precision::Tq8;
    let dim = 4;
    let (range, bytes) = block(p, 3, dim, 1);
    let codes = codes_of(p, &range, &bytes);
    let mut coded = CodedQuery::default();
    assert!(coded.code(&[0.5, -0.25, 1.0, 0.0], &codes, dim));
    assert!(!coded.code(&[f32::NAN, 0.0, 0.0, 0.0], &codes, dim));
    assert!(!coded.code(&[f32::INFINITY, 0.0, 0.0, 0.0], &codes, dim));
    let huge = Range {
        lo: vec![-f32::MAX; dim],
        step: vec![f32::MAX / 255.0; dim],
    };
    let wide = codes_of(p, &huge, &bytes);
    assert!(
        coded.code(&[1.0, 0.0, 0.0, 0.0], &wide, dim),
        "large but finite"
    );
    let long = 9000;
    let lo = vec![0.0; long];
    let step = vec![1.0; long];
    let codes = Codes {
        precision: p,
        lo: &lo,
        step: &step,
        bytes: &[],
    };
    assert!(
        !coded.code(&vec![1.0; long], &codes, long),
        "K would fall below MIN_LEVELS"
    );
    // A zero query codes to zero weights (no division by a zero scale).
    let codes = codes_of(p, &range, &bytes);
    assert!(coded.code(&[0.0; 4], &codes, dim));
    let mut out = Vec::new();
    coded.dots(&codes, dim, &mut out);
    assert_eq!(out, vec![0.0; 3]);
}

#[test]
fn blocks_of_8_and_4_bits_use_the_integer_pass_under_every_metric() {
    for p in Precision::ALL {
        let want = matches!(p, Precision::Tq8 | Precision::Tq4);
        assert_eq!(applies(p), want, "{p}");
    }
}

const METRICS: [Metric; 4] = [
    Metric::Cosine,
    Metric::InnerProduct,
    Metric::SquaredEuclidean,
    Metric::Euclidean,
];

/// The screen's slack covers the integer pass's distance from the decoded
/// vector's float distance, for every pair; the integer pass does fall
/// below the float distance for some (so a screen without the slack would
/// drop candidates); and the slack stays small next to distances.
#[test]
fn the_screen_slack_covers_the_integer_pass() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for p in [Precision::Tq8, Precision::Tq4] {
        for dim in [7, 50, 768] {
            for metric in METRICS {
                let n = 200;
                let (range, bytes) = block(p, n, dim, 5 + dim as u64);
                let codes = codes_of(p, &range, &bytes);
                let mut decoded = Vec::new();
                codes.decode_into(dim, &mut decoded);
                let slack = Slack::new(&codes, dim);
                let (mut below, mut widest) = (0, 0f32);
                let squares = codes.squared_norms(dim);
                let max_square = squares.iter().fold(0f32, |m, &v| m.max(v));
                let norms = max_square.sqrt();
                for (x, &nn) in decoded.chunks_exact(dim).zip(&squares) {
                    assert_eq!(crate::distance::dot(x, x).to_bits(), nn.to_bits());
                }
                for _ in 0..20 {
                    let mut q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                    crate::distance::normalize(&mut q);
                    let qq = crate::distance::dot(&q, &q);
                    let mut coded = CodedQuery::default();
                    assert!(coded.code(&q, &codes, dim));
                    let mut dots = Vec::new();
                    coded.dots(&codes, dim, &mut dots);
                    let floats: Vec<f32> = decoded
                        .chunks_exact(dim)
                        .map(|x| crate::distance::distance(metric, &q, x))
                        .collect();
                    let ints: Vec<f32> = dots
                        .iter()
                        .zip(&squares)
                        .map(|(&d, &nn)| distance(metric, d, qq, nn))
                        .collect();
                    // A block with a vector at the bound is never ruled
                    // out; one far below every vector is.
                    let q_inf = q.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
                    let rules_out = |bound: f32| {
                        if metric.is_euclidean() {
                            slack.rules_out_euclidean(
                                metric,
                                (q_inf, qq),
                                max_square,
                                &floats,
                                bound,
                            )
                        } else {
                            slack.rules_out(q_inf, &floats, bound)
                        }
                    };
                    let least = ints.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    assert!(!rules_out(least), "{p} d={dim} {metric:?}");
                    let closest = floats.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    let far = if metric.is_euclidean() {
                        closest * 0.5 - 0.1
                    } else {
                        closest - 1.0 - 4e-3 * norms
                    };
                    assert!(rules_out(far), "{p} d={dim} {metric:?}");
                    for (j, x) in decoded.chunks_exact(dim).enumerate() {
                        let float = crate::distance::distance(metric, &q, x);
                        let int = ints[j];
                        let e = if metric.is_euclidean() {
                            let (c0, c1) = slack.squared(&coded, reach(&q, &codes), qq);
                            in_units(metric, c0 + c1 * squares[j], int, float)
                        } else {
                            let (c0, c1) = slack.linear(&coded, reach(&q, &codes));
                            c0 + c1 * float.abs()
                        };
                        assert!(
                            int >= float - e,
                            "{p} d={dim} {metric:?} row {j}: {int} < {float} − {e}"
                        );
                        below += usize::from(int < float);
                        widest = widest.max(e);
                        let one = coded.dot_one(&codes, dim, j);
                        assert_eq!(one.to_bits(), dots[j].to_bits(), "dot_one agrees");
                    }
                }
                assert!(
                    below > 0,
                    "{p} d={dim} {metric:?}: the integer pass never fell below"
                );
                // Unit queries: dot products are at most the norms, and
                // squared distances at most (1 + norm)².
                let scale = match metric {
                    Metric::SquaredEuclidean => (1.0 + norms) * (1.0 + norms),
                    _ => norms.max(1.0),
                };
                assert!(
                    widest < 1e-3 * scale,
                    "{p} d={dim} {metric:?}: slack {widest}"
                );
            }
        }
    }
}

#[test]
fn the_least_of_finite_values_and_nan_for_any_other() {
    assert_eq!(least_finite(&[]), f32::INFINITY);
    assert_eq!(least_finite(&[3.0, 1.0, 2.0]), 1.0);
    let many: Vec<f32> = (0..37).map(|i| ((i * 17) % 37) as f32 - 5.0).collect();
    assert_eq!(least_finite(&many), -5.0);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        // In the lanes and in the remainder.
        for at in [0, 5, 8, 20, 36] {
            let mut v = many.clone();
            v[at] = bad;
            assert!(least_finite(&v).is_nan(), "{bad} at {at}");
        }
    }
}

/// The coded weights' rounding is `round_ties_even` after the clamp, on
/// ties, on both sides of zero and past the clamp.
#[test]
fn level_rounds_ties_to_even_and_clamps() {
    let plain = |x: f64, inv: f64, top: f64| (x * inv).clamp(-top, top).round_ties_even() as i16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut xs = vec![0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1e300, -1e300];
    xs.extend((-70_000..70_000).map(|i| f64::from(i) / 2.0));
    xs.extend((0..10_000).map(|_| rng.gen_range(-40_000.0..40_000.0)));
    for top in [1024.0, 4095.0, 32767.0] {
        for &x in &xs {
            for inv in [1.0, 0.37, 3.0] {
                assert_eq!(
                    level(x, inv, top),
                    plain(x, inv, top),
                    "x {x}, inv {inv}, top {top}"
                );
            }
        }
    }
}

/// Queries scored together get the bits they get one at a time, at every
/// level this CPU has, for any number of queries and rows, and dimensions
/// that leave tails to every vector width.
#[test]
fn queries_together_equal_one_at_a_time_at_every_level() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for dim in [1, 15, 16, 17, 31, 33, 64, 95, 100, 768] {
        for n in [1, 3, 4, 5, 9] {
            let vectors: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-3.0..3.0)).collect();
            for p in [Precision::Tq8, Precision::Tq4] {
                let range = Range::fit(&vectors, dim, p.levels());
                let mut bytes = Vec::new();
                range.encode(p, &vectors, dim, &mut bytes);
                let codes = Codes {
                    precision: p,
                    bytes: &bytes,
                    lo: &range.lo,
                    step: &range.step,
                };
                for m in [1, 3, 4, 6, 8] {
                    let coded: Vec<CodedQuery> = (0..m)
                        .map(|_| {
                            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-2.0..2.0)).collect();
                            let mut c = CodedQuery::default();
                            assert!(c.code(&q, &codes, dim));
                            c
                        })
                        .collect();
                    let mut alone = Vec::new();
                    let mut row = Vec::new();
                    for c in &coded {
                        c.dots_at(SimdLevel::Scalar, &codes, dim, &mut row);
                        alone.extend_from_slice(&row);
                    }
                    let mut sums = Vec::new();
                    for level in SimdLevel::ALL.into_iter().filter(|l| l.is_available()) {
                        let mut together = Vec::new();
                        together::dots_together_at(
                            level,
                            &coded,
                            &codes,
                            dim,
                            &mut together,
                            &mut sums,
                        );
                        let same = together
                            .iter()
                            .zip(&alone)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same && together.len() == alone.len(),
                            "{p:?}, dim {dim}, {n} rows, {m} queries, {level:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The screen in bytes: its lower bounds are at or below the integer
/// pass's distance of every row, under every metric, for queries of very
/// different magnitudes and spreads (a few large coordinates among small
/// ones: the bytes then round most weights to 0), at lengths around the
/// kernel's groups of 64; and the bounds still rule most rows out at the
/// k-th nearest, or the screen would not pay.
#[test]
fn the_byte_screen_bounds_the_integer_pass_from_below() {
    use super::bytes::{Coded8, Rows};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    for dim in [256, 300, 768] {
        for metric in METRICS {
            let n = 203;
            let (range, block_bytes) = block(Precision::Tq8, n, dim, 40 + dim as u64);
            let (mut ruled_out, mut total) = (0usize, 0usize);
            for case in 0..24 {
                let scale = [1e-3f32, 1.0, 1e3][case % 3];
                let mut q: Vec<f32> = (0..dim)
                    .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
                    .collect();
                if case % 4 == 3 {
                    for x in q.iter_mut().step_by(37) {
                        *x *= 500.0;
                    }
                }
                if case % 6 == 5 {
                    // Every weight just short of half a byte step from its
                    // code: the bytes' error is as large as it gets.
                    for (d, (x, &step)) in q.iter_mut().zip(&range.step).enumerate() {
                        let w = if d == 0 {
                            127.0
                        } else {
                            rng.gen_range(-100i32..100) as f32 + 0.49
                        };
                        *x = w / step * scale;
                    }
                }
                if metric == Metric::Cosine {
                    crate::distance::normalize(&mut q);
                }
                // Two rows where the bytes' rounding errors all add up, one
                // way and the other: code 255 where a weight rounded down,
                // 0 where it rounded up (and the reverse).
                let w: Vec<f32> = q.iter().zip(&range.step).map(|(&x, &s)| x * s).collect();
                let max = w.iter().fold(0f32, |m, &x| m.max(x.abs()));
                let up: Vec<bool> = w
                    .iter()
                    .map(|&x| (x * (127.0 / max)).round() * (max / 127.0) > x)
                    .collect();
                let mut bytes = block_bytes.clone();
                bytes.extend(up.iter().map(|&u| if u { 0u8 } else { 255 }));
                bytes.extend(up.iter().map(|&u| if u { 255u8 } else { 0 }));
                let codes = codes_of(Precision::Tq8, &range, &bytes);
                let squares = if metric.is_euclidean() {
                    codes.squared_norms(dim)
                } else {
                    Vec::new()
                };
                let mut rows = Rows::default();
                rows.fill(&bytes, dim, &squares);
                let qq = if metric.is_euclidean() {
                    crate::distance::dot(&q, &q)
                } else {
                    0.0
                };
                let mut coded = CodedQuery::default();
                let mut coded8 = Coded8::default();
                assert!(coded.code(&q, &codes, dim));
                assert!(coded8.code(&q, &codes, dim));
                let mut dots = Vec::new();
                coded.dots(&codes, dim, &mut dots);
                let sums: Vec<i32> = bytes
                    .chunks_exact(dim)
                    .map(|r| coded8.sum_from(r, 0))
                    .collect();
                let mut lower = Vec::new();
                coded8.lower(metric, &sums, qq, &rows, &mut lower);
                let exact: Vec<f32> = dots
                    .iter()
                    .enumerate()
                    .map(|(j, &d)| distance(metric, d, qq, squares.get(j).copied().unwrap_or(0.0)))
                    .collect();
                for (j, (&lb, &d)) in lower.iter().zip(&exact).enumerate() {
                    assert!(
                        lb <= d,
                        "{metric:?} d={dim} case {case} row {j}: {lb} > {d}"
                    );
                }
                let mut sorted = exact.clone();
                sorted.sort_by(f32::total_cmp);
                let kth = sorted[9];
                ruled_out += lower.iter().filter(|&&lb| lb > kth).count();
                total += n + 2;
            }
            assert!(
                ruled_out * 2 > total,
                "{metric:?} d={dim}: only {ruled_out} of {total} rows ruled out at the 10th"
            );
        }
    }
}

/// The kernel's sums (where this CPU has it) equal the sums one code at a
/// time, for every number of queries and rows around its groups; where
/// the CPU lacks it, nothing claims to have summed.
#[test]
fn the_byte_kernel_sums_exactly() {
    use super::bytes::{self, Coded8};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    for dim in [256, 300, 768] {
        for n in [1, 3, 4, 9, 160] {
            let (range, bytes) = block(Precision::Tq8, n, dim, 60 + (dim + n) as u64);
            let codes = codes_of(Precision::Tq8, &range, &bytes);
            for q in 1..=TOGETHER {
                let coded: Vec<Coded8> = (0..q)
                    .map(|_| {
                        let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                        let mut c = Coded8::default();
                        assert!(c.code(&v, &codes, dim));
                        c
                    })
                    .collect();
                let mut rows = bytes::Rows::default();
                rows.fill(&bytes, dim, &[]);
                let mut sums = Vec::new();
                if !bytes::sums(&coded, &bytes, dim, &rows, &mut sums) {
                    assert!(
                        !bytes::applies(&codes, dim),
                        "the screen applies but did not sum"
                    );
                    continue;
                }
                for (j, c) in coded.iter().enumerate() {
                    for (r, row) in bytes.chunks_exact(dim).enumerate() {
                        assert_eq!(sums[j * n + r], c.sum_from(row, 0), "d={dim} n={n} q={q}");
                    }
                }
            }
        }
    }
}

/// The byte coding refuses every query the integer pass refuses (a query
/// it took that the integer pass refused would have no first-pass
/// distance); it may refuse more (weights that overflow in `f32`).
#[test]
fn the_byte_coding_refuses_what_the_integer_pass_refuses() {
    use super::bytes::Coded8;
    let dim = 300;
    let (range, bytes) = block(Precision::Tq8, 8, dim, 77);
    let codes = codes_of(Precision::Tq8, &range, &bytes);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e38, 0.0] {
        let mut q = vec![0.5f32; dim];
        q[dim / 3] = bad;
        let (mut a, mut b) = (CodedQuery::default(), Coded8::default());
        let (x, y) = (a.code(&q, &codes, dim), b.code(&q, &codes, dim));
        assert!(
            !y || x,
            "{bad}: the byte coding took what the integer pass refused"
        );
    }
}
