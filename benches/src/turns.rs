//! Precisions taking turns (`VECSEAL_BENCH_TURNS=R`): the trained
//! cache-off indexes of one data set, every precision of the run, timed in
//! `R` rounds, each round giving every index one pass at each setting in an
//! order that rotates from round to round.
//!
//! On a shared machine a single run of one precision after another can
//! meet a slow spell in one of them only, and its ratios then say more
//! about the spell than the precision (on this machine a run's float32 QPS
//! moved by a fifth from run to run). Taken in turns, a spell falls on the
//! passes of every precision alike, and the median of the rounds' ratios
//! is what to read.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use vecseal::{Precision, QueryOptions};

use crate::{each_alone, recall, Probes};

/// A trained index of one precision and the options it is queried with
/// (its own rerank multiplier).
pub(crate) struct Contender {
    pub(crate) precision: Precision,
    pub(crate) index: vecseal::Index,
    pub(crate) opts: QueryOptions,
}

/// How a pass sends its queries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// All of them in one call.
    Batch,
    /// The first `n` one call each, as a service receives them.
    OneAtATime(usize),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::OneAtATime(_) => "one at a time",
        }
    }
}

/// Times `rounds` rounds of passes over `contenders` (the first is the one
/// the ratios divide by) at each n_probes that `settings` times one query
/// at a time: batches of all `queries`, and its first `settings.alone` one
/// at a time. Prints a table and returns it.
pub(crate) fn take_turns(
    contenders: &[Contender],
    queries: &[Vec<f32>],
    exact: &[Vec<vecseal::Hit>],
    settings: &Probes,
    rounds: usize,
) -> Result<Value> {
    ensure!(
        contenders.len() >= 2,
        "taking turns needs two precisions or more"
    );
    let singles = settings.alone.min(queries.len());
    let names: Vec<String> = contenders.iter().map(|c| c.precision.to_string()).collect();
    println!(
        "\nprecisions taking turns: list cache off, {rounds} rounds, each round every index once per setting, the order rotated from round to round; median QPS, in brackets the median over the rounds of the ratio to {} in the same round [its least and most], recall@10 after",
        names[0]
    );
    println!("| n_probes | mode | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(names.len()));
    let mut out = Vec::new();
    for p in settings.one_at_a_time() {
        for mode in [Mode::Batch, Mode::OneAtATime(singles)] {
            // qps[i][r]: contender i in round r.
            let mut qps = vec![Vec::with_capacity(rounds); contenders.len()];
            let mut recalls = vec![0.0; contenders.len()];
            for r in 0..rounds {
                for k in 0..contenders.len() {
                    let i = (k + r) % contenders.len();
                    let (q, rec) = pass(&contenders[i], queries, exact, p, mode)?;
                    qps[i].push(q);
                    recalls[i] = rec;
                }
            }
            let mut cells = Vec::new();
            let mut rows = Vec::new();
            for (i, c) in contenders.iter().enumerate() {
                let median_qps = median(&qps[i]);
                let ratios: Vec<f64> = (0..rounds).map(|r| qps[i][r] / qps[0][r]).collect();
                let (lo, hi) = ratios
                    .iter()
                    .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                let ratio = median(&ratios);
                cells.push(if i == 0 {
                    format!("{median_qps:.0}, {:.4}", recalls[i])
                } else {
                    format!(
                        "{median_qps:.0} ({ratio:.2}× [{lo:.2}–{hi:.2}]), {:.4}",
                        recalls[i]
                    )
                });
                rows.push(json!({"precision": c.precision.to_string(), "qps": qps[i],
                    "median_qps": median_qps, "median_ratio": ratio, "least_ratio": lo,
                    "most_ratio": hi, "recall_at_10": recalls[i]}));
            }
            println!("| {p} | {} | {} |", mode.name(), cells.join(" | "));
            let queries_sent = match mode {
                Mode::Batch => queries.len(),
                Mode::OneAtATime(n) => n,
            };
            out.push(
                json!({"n_probes": p, "mode": mode.name(), "queries": queries_sent,
                "rounds": rounds, "ratio_to": names[0], "precisions": rows}),
            );
        }
    }
    Ok(Value::Array(out))
}

/// One pass: QPS and recall@10.
fn pass(
    c: &Contender,
    queries: &[Vec<f32>],
    exact: &[Vec<vecseal::Hit>],
    probes: usize,
    mode: Mode,
) -> Result<(f64, f64)> {
    let opts = c.opts.clone().with_n_probes(probes);
    let t = Instant::now();
    let (hits, n) = match mode {
        Mode::Batch => (c.index.query(queries, &opts)?, queries.len()),
        Mode::OneAtATime(n) => (each_alone(&c.index, &queries[..n], &opts)?, n),
    };
    let secs = t.elapsed().as_secs_f64();
    Ok((n as f64 / secs, recall(&exact[..n], &hits)))
}

/// The median (the mean of the middle two of an even count).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
