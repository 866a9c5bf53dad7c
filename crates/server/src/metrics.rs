//! `GET /metrics`: request counts and latency histograms per route and
//! status in the Prometheus text format, plus open indexes and training
//! jobs. Labels are route templates (`/v1/vectors/query`), never index
//! names, ids or anything from a body.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request metrics of one server.
#[derive(Default)]
pub(crate) struct Metrics {
    series: Mutex<BTreeMap<(String, u16), Series>>,
}

impl Metrics {
    pub(crate) fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self.series.lock();
        let s = map.entry((route.to_owned(), status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (b, le) in s.buckets.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *b += 1;
            }
        }
    }

    /// The Prometheus exposition text, with the gauges and the count of
    /// coalesced queries given.
    pub(crate) fn render(
        &self,
        open_indexes: usize,
        training: usize,
        queued: usize,
        coalesced: u64,
    ) -> String {
        let mut out = String::new();
        let map = self.series.lock();
        out.push_str("# HELP vecseal_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE vecseal_http_requests_total counter\n");
        for ((route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "vecseal_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP vecseal_http_request_duration_seconds Request latency.\n");
        out.push_str("# TYPE vecseal_http_request_duration_seconds histogram\n");
        for ((route, status), s) in map.iter() {
            let labels = format!("route=\"{route}\",status=\"{status}\"");
            for (b, le) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "vecseal_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {b}"
                );
            }
            let _ = writeln!(
                out,
                "vecseal_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "vecseal_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "vecseal_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        let gauges = [
            (
                "vecseal_open_indexes",
                "Indexes kept loaded in memory.",
                open_indexes,
            ),
            (
                "vecseal_training_jobs_running",
                "Training jobs running.",
                training,
            ),
            (
                "vecseal_training_jobs_queued",
                "Training jobs waiting.",
                queued,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let name = "vecseal_queries_coalesced_total";
        let _ = writeln!(
            out,
            "# HELP {name} Queries answered in a batch led by another query.\n\
             # TYPE {name} counter\n{name} {coalesced}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.record("/v1/health", 200, Duration::from_micros(300));
        m.record("/v1/health", 200, Duration::from_millis(20));
        let text = m.render(1, 0, 2, 5);
        assert!(text.contains("vecseal_http_requests_total{route=\"/v1/health\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.025\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("vecseal_open_indexes 1"));
        assert!(text.contains("vecseal_training_jobs_queued 2"));
        assert!(text.contains("vecseal_queries_coalesced_total 5"));
    }
}
