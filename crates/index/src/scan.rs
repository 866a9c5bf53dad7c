//! Scoring one decrypted block against the queries that scan it: the
//! tiled kernel or a GEMM screen over float32 (or decoded) vectors, or the
//! integer pass over 8- and 4-bit codes (see `quantized`).

use crate::codec::Block;
use crate::distance::{distance, dot, finish, lower_bounds, scores as scores_into};
use crate::precision::{Codes, Precision};
use crate::quantized::bytes::{self, Coded8, Rows};
use crate::quantized::{self, code_group, dots_together, CodedQuery, Slack, TOGETHER};
use crate::search::{gemm_min_queries, SCORES_BUDGET};
use crate::topk::{SharedBound, Top, TopK};
use crate::Metric;

/// What a scan scores against: the metric, and the chunk of prepared
/// queries (row-major, `dim` columns) that task query indices point into.
pub(crate) struct On<'a> {
    metric: Metric,
    dim: usize,
    chunk: &'a [f32],
    /// `‖q‖∞` of each query (for the integer screen), computed once.
    largest: Vec<f64>,
    /// The canonical `‖q‖²` of each query under a Euclidean metric (for
    /// the integer pass's distances), else empty.
    squares: Vec<f32>,
    /// Each query's bound, shared by the workers' top-k sets.
    bounds: Vec<SharedBound>,
}

impl<'a> On<'a> {
    pub(crate) fn new(metric: Metric, dim: usize, chunk: &'a [f32]) -> Self {
        let rows = chunk.chunks_exact(dim.max(1));
        let largest = rows
            .clone()
            .map(|q| q.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs())))
            .collect();
        let squares = if metric.is_euclidean() {
            rows.map(|q| dot(q, q)).collect()
        } else {
            Vec::new()
        };
        let bounds = (0..chunk.len() / dim.max(1))
            .map(|_| SharedBound::new())
            .collect();
        Self {
            metric,
            dim,
            chunk,
            largest,
            squares,
            bounds,
        }
    }

    /// Query `qi`'s set in `tops`, with its shared bound.
    fn top<'t>(&'t self, tops: &'t mut [TopK], qi: u32) -> Top<'t> {
        Top::new(&mut tops[qi as usize], &self.bounds[qi as usize])
    }

    /// The query's `‖q‖²` for the integer pass (0 when not needed).
    fn square(&self, qi: u32) -> f32 {
        self.squares.get(qi as usize).copied().unwrap_or(0.0)
    }

    fn query(&self, qi: u32) -> &[f32] {
        let at = qi as usize * self.dim;
        &self.chunk[at..at + self.dim]
    }
}

/// Bytes of decoded vectors scored at a time when few queries scan a
/// compressed block in floating point: a piece stays in the nearest cache.
const PIECE_BYTES: usize = 16 << 10;

/// Whether `queries` queries on a float16 block of `dim` dimensions are
/// summed one at a time with the codes widened in registers
/// (`Codes::f16_sums`), rather than sharing a decoded piece in the tiled
/// kernel. Timing loop, AVX-512, blocks of 128 KiB of codes, µs in
/// registers against in pieces: one query at 50 dimensions 25 against 16,
/// at 200 11 against 10, at 256 7.7 against 11.6, at 768 3.9 against 7.9;
/// two queries at 384 dimensions 13.9 against 11.5, at 768 8.2 against
/// 7.9, at 1024 11.3 against 12.6; three at 768 11.8 against 9.9.
fn f16_in_registers(queries: usize, dim: usize) -> bool {
    match queries {
        1 => dim >= 256,
        2 => dim >= 512,
        _ => false,
    }
}

/// The buffers of one worker, reused from block to block.
#[derive(Default)]
pub(crate) struct Scratch {
    queries: Vec<f32>,
    scores: Vec<f32>,
    decoded: Decoded,
    coded: CodedQuery,
    /// Queries coded against a block, scored together, and their
    /// integer sums.
    together: [CodedQuery; TOGETHER],
    sums: Vec<i32>,
    /// The distances of one query (integer pass, float16 sums), or of
    /// [`TOGETHER`] queries one after the other.
    row: Vec<f32>,
    refused: Vec<u32>,
    /// Queries coded in bytes for the byte screen, the block's rows as it
    /// needs them, and the queries it refuses.
    bytes: [Coded8; TOGETHER],
    rows: Rows,
    refused_bytes: Vec<u32>,
}

/// Offers the vectors of `block` that the queries `qs` (indices into the
/// chunk) may place in their top-k (`tops`, one per query of the chunk),
/// among those `allowed` (empty: all).
///
/// Float32 blocks, and compressed ones outside the integer pass, are scored
/// by the tiled kernel (few queries) or screened by a GEMM and rescored
/// with [`distance`] (many: see [`gemm_min_queries`]): the results of
/// brute force either way. 8- and 4-bit blocks are scored by the integer
/// pass (the Euclidean metrics with the block's decoded squared norms);
/// with many queries a GEMM over the decoded block screens them first,
/// with bounds widened by [`Slack`] (8-bit rows of 256 codes or more, on
/// CPUs with AVX-512 VNNI: a screen in bytes, see `quantized::bytes`), and
/// only pairs that may enter a top-k get the integer pass: a query gets
/// the same first-pass distances in a batch as alone.
pub(crate) fn score_block(
    on: &On<'_>,
    block: &Block,
    qs: &[u32],
    allowed: &[bool],
    tops: &mut [TopK],
    w: &mut Scratch,
) {
    let (dim, metric) = (on.dim, on.metric);
    let n = block.len();
    if n == 0 || qs.is_empty() {
        return;
    }
    let Scratch {
        queries,
        scores,
        decoded,
        coded,
        together,
        sums,
        row: one,
        refused,
        bytes: coded8,
        rows,
        refused_bytes,
    } = w;
    let codes = block.codes(dim);
    let integer = codes.filter(|c| quantized::applies(c.precision));
    // The decoded vectors' squared norms, for Euclidean distances.
    let norms: &[f32] = match integer {
        Some(_) if metric.is_euclidean() => block.decoded_norms(dim),
        _ => &[],
    };
    let gemm_from = gemm_min_queries(dim, integer.is_some());
    let mut left = qs;
    refused.clear();
    if let Some(codes) = integer.filter(|_| qs.len() < gemm_from) {
        // Few queries: the integer pass, a few queries at a time (each
        // row of codes read once for them), no decode.
        for group in qs.chunks(TOGETHER) {
            let (coded_qs, m) = code_group(group, refused, |m, qi| {
                together[m].code(on.query(qi), &codes, dim)
            });
            dots_together(&together[..m], &codes, dim, one, sums);
            for (&qi, row) in coded_qs[..m].iter().zip(one.chunks_exact_mut(n)) {
                integer_distances(on, norms, qi, row);
                offer(&mut on.top(tops, qi), row, allowed, block, None);
            }
        }
        if refused.is_empty() {
            return;
        }
        left = refused;
    }
    // Few queries on a compressed block scored in floating point: decode
    // and score it a piece at a time, so the decoded vectors stay in the
    // core's nearest cache (the same bits as decoding it whole).
    if let Some(codes) = codes.filter(|_| left.len() < gemm_from) {
        if codes.precision == Precision::Float16 && f16_in_registers(left.len(), dim) {
            // Float16 is decoded in registers, as it is summed.
            for &qi in left {
                codes.f16_sums(on.query(qi), metric.is_euclidean(), one);
                for v in one.iter_mut() {
                    *v = finish(metric, *v);
                }
                offer(&mut on.top(tops, qi), one, allowed, block, None);
            }
            return;
        }
        let qmat = gather(on, left, queries);
        let cb = codes.precision.code_bytes(dim);
        let piece = (PIECE_BYTES / (4 * dim)).max(4).min(n);
        for first in (0..n).step_by(piece) {
            let end = (first + piece).min(n);
            let part = Codes {
                bytes: &codes.bytes[first * cb..end * cb],
                ..codes
            };
            let vectors = part.decode_in(dim, &mut decoded.0);
            scores_into(metric, qmat, vectors, dim, scores);
            for (row, &qi) in scores.chunks_exact(end - first).zip(left) {
                offer_from(&mut on.top(tops, qi), row, first, allowed, block, SCORES);
            }
        }
        return;
    }
    // Many queries on an 8-bit block, where the CPU has VNNI: the screen
    // in bytes, then the integer pass for the pairs that may enter (the
    // queries it refuses go on below).
    if let Some(codes) = integer.filter(|c| left.len() >= gemm_from && bytes::applies(c, dim)) {
        rows.fill(codes.bytes, dim, norms);
        refused_bytes.clear();
        for group in left.chunks(TOGETHER) {
            let (coded_qs, m) = code_group(group, refused_bytes, |m, qi| {
                coded8[m].code(on.query(qi), &codes, dim)
            });
            if m == 0 {
                continue;
            }
            if !bytes::sums(&coded8[..m], codes.bytes, dim, rows, sums) {
                refused_bytes.extend_from_slice(&coded_qs[..m]);
                continue;
            }
            for (j, &qi) in coded_qs[..m].iter().enumerate() {
                let (q, qq) = (on.query(qi), on.square(qi));
                let nn = |r: usize| norms.get(r).copied().unwrap_or(0.0);
                coded8[j].lower(metric, &sums[j * n..(j + 1) * n], qq, rows, one);
                // The integer pass codes the query at its first candidate.
                let mut ready = None;
                let exact = |r: usize| {
                    if !*ready.get_or_insert_with(|| coded.code(q, &codes, dim)) {
                        // Not reached: the byte coding refuses every query
                        // the integer pass refuses.
                        return f32::INFINITY;
                    }
                    quantized::distance(metric, coded.dot_one(&codes, dim, r), qq, nn(r))
                };
                offer_from(&mut on.top(tops, qi), one, 0, allowed, block, Some(exact));
            }
        }
        if refused_bytes.is_empty() {
            return;
        }
        left = refused_bytes;
    }
    // Otherwise a compressed block is scored on its decoded codes.
    let vectors: &[f32] = match codes {
        Some(codes) => codes.decode_in(dim, &mut decoded.0),
        None => block.vectors(),
    };
    let slack = integer
        .filter(|_| left.len() >= gemm_from)
        .map(|c| Slack::new(&c, dim));
    // The largest decoded squared norm, for the screen's Euclidean slack.
    let max_norm = if slack.is_some() {
        norms.iter().fold(0f32, |m, &v| m.max(v))
    } else {
        0.0
    };
    // Queries in groups, so the scores stay within budget however many
    // vectors a block holds (small dimensions).
    let group = (SCORES_BUDGET / n).max(1);
    let nq = on.chunk.len() / dim;
    for (g, group_qs) in left.chunks(group).enumerate() {
        let qmat: &[f32] = if left.len() == nq {
            // Every query of the chunk, in order.
            &on.chunk[g * group * dim..(g * group + group_qs.len()) * dim]
        } else {
            gather(on, group_qs, queries)
        };
        // Many queries: screen by GEMM and rescore what may enter;
        // otherwise score exactly.
        let screened = group_qs.len() >= gemm_from;
        if screened {
            lower_bounds(metric, qmat, vectors, dim, scores);
        } else {
            scores_into(metric, qmat, vectors, dim, scores);
        }
        for (row, &qi) in scores.chunks_exact(n).zip(group_qs) {
            let top = &mut on.top(tops, qi);
            let q = on.query(qi);
            let float = screened.then_some((metric, q, vectors));
            match (integer, screened) {
                (Some(codes), true) => match &slack {
                    // Nothing here can enter: no need to code the query.
                    Some(slack) if rules_out(on, slack, qi, max_norm, row, top.bound()) => {}
                    Some(slack) if coded.code(q, &codes, dim) => {
                        let integer = Integer {
                            codes: &codes,
                            norms,
                            slack,
                            coded,
                            reach: quantized::reach(q, &codes),
                        };
                        offer_integer(on, qi, top, row, allowed, block, integer);
                    }
                    // Refused: as alone, the decoded block's distances.
                    _ => offer(top, row, allowed, block, float),
                },
                (Some(codes), false) if integer_row(on, (&codes, norms), qi, coded, one) => {
                    offer(top, one, allowed, block, None);
                }
                _ => offer(top, row, allowed, block, float),
            }
        }
    }
}

/// The queries `qs` of the chunk, row-major: the chunk itself when they
/// are all of it in order, else gathered into `into`.
fn gather<'a>(on: &On<'a>, qs: &[u32], into: &'a mut Vec<f32>) -> &'a [f32] {
    let nq = on.chunk.len() / on.dim;
    if qs.len() == nq && qs.iter().enumerate().all(|(i, &q)| q as usize == i) {
        return on.chunk;
    }
    into.clear();
    for &qi in qs {
        into.extend_from_slice(on.query(qi));
    }
    into
}

/// Whether the screen's lower bounds `row` rule out every vector of the
/// block for query `qi` before it is coded (see [`Slack::rules_out`]).
fn rules_out(on: &On<'_>, slack: &Slack, qi: u32, max_norm: f32, row: &[f32], bound: f32) -> bool {
    let q_inf = on.largest[qi as usize];
    if on.metric.is_euclidean() {
        slack.rules_out_euclidean(on.metric, (q_inf, on.square(qi)), max_norm, row, bound)
    } else {
        slack.rules_out(q_inf, row, bound)
    }
}

/// The integer pass's distances of query `qi` to every vector of `codes`
/// (with their decoded squared `norms` under a Euclidean metric), into
/// `out`; `false` if it refuses the query.
fn integer_row(
    on: &On<'_>,
    (codes, norms): (&Codes<'_>, &[f32]),
    qi: u32,
    coded: &mut CodedQuery,
    out: &mut Vec<f32>,
) -> bool {
    if !coded.code(on.query(qi), codes, on.dim) {
        return false;
    }
    coded.dots(codes, on.dim, out);
    integer_distances(on, norms, qi, out);
    true
}

/// The integer pass's dot products `row` of query `qi` made its distances
/// (with the decoded squared `norms` under a Euclidean metric).
fn integer_distances(on: &On<'_>, norms: &[f32], qi: u32, row: &mut [f32]) {
    if on.metric.is_euclidean() {
        let qq = on.square(qi);
        for (v, &nn) in row.iter_mut().zip(norms) {
            *v = quantized::distance(on.metric, *v, qq, nn);
        }
    } else {
        for v in row.iter_mut() {
            *v = finish(on.metric, *v);
        }
    }
}

/// A block's codes (and decoded squared norms, Euclidean metrics), the
/// slack of its screen, and a query coded against it.
struct Integer<'a> {
    codes: &'a Codes<'a>,
    norms: &'a [f32],
    slack: &'a Slack,
    coded: &'a CodedQuery,
    /// The query's [`quantized::reach`] against the block.
    reach: f64,
}

/// Offers, from a GEMM screen's lower bounds `row` of the decoded
/// distances, the vectors whose integer-pass distance may enter `top`
/// (`with.coded` holds the query coded against `with.codes`).
fn offer_integer(
    on: &On<'_>,
    qi: u32,
    top: &mut Top<'_>,
    row: &[f32],
    allowed: &[bool],
    block: &Block,
    with: Integer<'_>,
) {
    let metric = on.metric;
    let qq = on.square(qi);
    let euclidean = metric.is_euclidean();
    let (c0, c1) = if euclidean {
        with.slack.squared(with.coded, with.reach, qq)
    } else {
        with.slack.linear(with.coded, with.reach)
    };
    let mut bound = top.bound();
    for (j, &v) in row.iter().enumerate() {
        let nn = with.norms.get(j).copied().unwrap_or(0.0);
        let slack = if euclidean {
            quantized::in_units(metric, c0 + c1 * nn, bound, v)
        } else {
            c0 + c1 * v.abs()
        };
        // A lower bound that is not finite bounds nothing here.
        if v.is_finite() && v - slack > bound || !allowed.get(j).copied().unwrap_or(true) {
            continue;
        }
        let dot = with.coded.dot_one(with.codes, on.dim, j);
        let dist = quantized::distance(metric, dot, qq, nn);
        if dist <= bound {
            top.offer(dist, block.ids().get(j));
            bound = top.bound();
        }
    }
}

/// Offers the vectors of `block` whose first-pass distances `row` may
/// enter `top` (and that the filter allows); with `rescore` (the metric,
/// a query and the block's vectors), `row` holds lower bounds and the
/// distance offered is computed exactly.
fn offer(
    top: &mut Top<'_>,
    row: &[f32],
    allowed: &[bool],
    block: &Block,
    rescore: Option<(Metric, &[f32], &[f32])>,
) {
    let exact = rescore.map(|(metric, q, vectors)| {
        move |i: usize| distance(metric, q, &vectors[i * q.len()..(i + 1) * q.len()])
    });
    offer_from(top, row, 0, allowed, block, exact);
}

/// [`offer`] for a `row` of the block's vectors from `first` on; with
/// `exact` (vector `i` of the row's distance), `row` holds lower bounds.
fn offer_from(
    top: &mut Top<'_>,
    row: &[f32],
    first: usize,
    allowed: &[bool],
    block: &Block,
    mut exact: Option<impl FnMut(usize) -> f32>,
) {
    let mut bound = top.bound();
    // A set that is not full takes every score (its bound is infinite):
    // cap that by the row itself (without a filter; see `row_cap`).
    let cap = if bound == f32::INFINITY && allowed.is_empty() {
        match exact.as_mut() {
            Some(exact) => row_cap(row, top.k(), exact),
            None => row_cap(row, top.k(), |i| row[i]),
        }
    } else {
        f32::INFINITY
    };
    bound = bound.min(cap);
    for (r, run) in row.chunks(RUN).enumerate() {
        // Most scores cannot enter: a run of them is passed over after one
        // vectorised count (a NaN is looked at, as below).
        if run
            .iter()
            .map(|&s| usize::from(s <= bound || s.is_nan()))
            .sum::<usize>()
            == 0
        {
            continue;
        }
        for (k, &score) in run.iter().enumerate() {
            let i = r * RUN + k;
            let j = first + i;
            if score > bound || !allowed.get(j).copied().unwrap_or(true) {
                continue;
            }
            let dist = match exact.as_mut() {
                Some(exact) => exact(i),
                None => score,
            };
            if dist <= bound {
                top.offer(dist, block.ids().get(j));
                bound = top.bound().min(cap);
            }
        }
    }
}

/// For [`offer_from`]: the row holds the distances themselves.
const SCORES: Option<fn(usize) -> f32> = None;

/// Scores [`offer_from`] passes over at once when none can enter.
const RUN: usize = 16;

/// The largest `k` [`row_cap`] works for (the minima it keeps are on the
/// stack).
const CAP_MOST_K: usize = 64;

/// A distance that at least `k` vectors of a row are at or below, or
/// infinity: the largest `exact` distance of the `k` vectors that are the
/// smallest minima of `row`'s runs of [`RUN`] (`row` holds the distances
/// themselves, or lower bounds of them; `exact(i)` is vector `i`'s
/// distance). A vector farther than the cap has `k` vectors of the row
/// strictly nearer, which are offered (or beaten by what the set holds),
/// so it cannot be in the set's top `k` and need not be offered; one whose
/// lower bound is above the cap need not even be rescored. At one probe a
/// query's set starts empty on its block and would otherwise take about
/// `k·(1 + ln(n/k))` of its `n` vectors (and rescore all `n` behind a
/// screen); with the cap, about `k`. Infinite when `k` is 0 or above
/// [`CAP_MOST_K`], when the row has fewer than `k` runs, or when one of the
/// `k` distances is NaN (a NaN in `row` is no run's minimum: `f32::min`
/// passes over it).
fn row_cap(row: &[f32], k: usize, mut exact: impl FnMut(usize) -> f32) -> f32 {
    if k == 0 || k > CAP_MOST_K || row.len() < k * RUN {
        return f32::INFINITY;
    }
    // The `k` smallest run minima so far, ascending, and where they are.
    let mut least = [(f32::INFINITY, usize::MAX); CAP_MOST_K];
    let least = &mut least[..k];
    for (r, run) in row.chunks(RUN).enumerate() {
        let m = run.iter().fold(f32::INFINITY, |m, &s| m.min(s));
        if m < least[k - 1].0 {
            let i = r * RUN + run.iter().position(|&s| s == m).unwrap_or(0);
            let at = least.partition_point(|&(v, _)| v <= m);
            least.copy_within(at..k - 1, at + 1);
            least[at] = (m, i);
        }
    }
    let mut cap = f32::NEG_INFINITY;
    for &(m, i) in least.iter() {
        if m == f32::INFINITY {
            return f32::INFINITY;
        }
        let d = exact(i);
        if d.is_nan() {
            return f32::INFINITY;
        }
        cap = cap.max(d);
    }
    cap
}

/// The most decode buffers a worker thread keeps (a thread runs several
/// pieces of a scan at once when it steals work while it waits).
const KEPT_DECODED: usize = 8;

thread_local! {
    /// The decode buffers of each worker thread, kept between scans: a
    /// fresh one would be zeroed before every decode into it (measured at
    /// about a tenth of a compressed query one at a time).
    static DECODED: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A decode buffer lent by this thread's [`DECODED`] and given back when
/// dropped.
struct Decoded(Vec<f32>);

impl Default for Decoded {
    fn default() -> Self {
        Decoded(DECODED.with(|d| d.borrow_mut().pop().unwrap_or_default()))
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        let lent = std::mem::take(&mut self.0);
        if lent.capacity() > 0 {
            DECODED.with(|d| {
                let mut kept = d.borrow_mut();
                if kept.len() < KEPT_DECODED {
                    kept.push(lent);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The cap keeps every score of the row's `k` best: at least `k`
        /// scores are at or below it (so a score above it has `k` nearer).
        #[test]
        fn row_cap_is_at_or_above_the_kth_score(
            row in prop::collection::vec(
                prop_oneof![8 => (0u8..20).prop_map(f32::from), 1 => Just(f32::NAN)],
                0..400,
            ),
            k in 0usize..70,
        ) {
            let cap = row_cap(&row, k, |i| row[i]);
            let finite = row.iter().filter(|s| !s.is_nan()).count();
            if k == 0 || k > CAP_MOST_K || row.len() < k * RUN {
                prop_assert_eq!(cap, f32::INFINITY);
            }
            if cap < f32::INFINITY {
                prop_assert!(row.iter().filter(|&&s| s <= cap).count() >= k);
                let mut sorted: Vec<f32> = row.iter().copied().filter(|s| !s.is_nan()).collect();
                sorted.sort_by(f32::total_cmp);
                prop_assert!(finite >= k && sorted[k - 1] <= cap);
            }
        }
    }

    proptest! {
        /// Over lower bounds, the cap is an exact distance that at least
        /// `k` vectors are at or below (a vector whose bound is above the
        /// cap is farther than it: a bound is at most the distance).
        #[test]
        fn row_cap_over_lower_bounds_keeps_k_exact_distances(
            pairs in prop::collection::vec((0u8..20, 0u8..4), 0..400),
            k in 1usize..30,
        ) {
            let exact: Vec<f32> = pairs.iter().map(|&(d, _)| f32::from(d)).collect();
            let bounds: Vec<f32> = pairs.iter().map(|&(d, g)| f32::from(d) - f32::from(g)).collect();
            let cap = row_cap(&bounds, k, |i| exact[i]);
            if cap < f32::INFINITY {
                prop_assert!(exact.iter().filter(|&&d| d <= cap).count() >= k);
            } else {
                prop_assert!(bounds.len() < k * RUN);
            }
        }
    }

    #[test]
    fn row_cap_is_the_kth_smallest_run_minimum() {
        // Runs of 16 whose minima are 5, 3, 9, 1.
        let row: Vec<f32> = [5.0, 3.0, 9.0, 1.0]
            .iter()
            .flat_map(|&m| (0..RUN).map(move |i| m + i as f32))
            .collect();
        let cap = |k| row_cap(&row, k, |i| row[i]);
        assert_eq!(cap(1), 1.0);
        assert_eq!(cap(2), 3.0);
        assert_eq!(cap(4), 9.0);
        assert_eq!(cap(5), f32::INFINITY);
    }
}
