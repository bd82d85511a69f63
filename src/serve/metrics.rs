//! `/metrics` in the Prometheus text format: counters serve keeps in memory (webhook
//! deliveries by outcome, rejections by cause, forge API errors by call) and figures read from
//! the store when scraped (queue depth, runs running, and the store's totals of finished
//! runs by verdict and of how long they ran, which retention never lowers), and what the HTTP
//! side holds open at the scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::store::Stats;

/// What serve's HTTP side holds open at a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Open {
    /// Connections taken and not yet done with, the scrape's own included.
    pub connections: u64,
    /// Live-log streams.
    pub log_streams: u64,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

const DELIVERIES: &str = "ccci_webhook_deliveries_total";
const REJECTIONS: &str = "ccci_webhook_rejections_total";
const FORGE_ERRORS: &str = "ccci_forge_api_errors_total";

impl Metrics {
    fn bump(&self, name: &'static str, label: &str) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry((name, label.to_string())).or_default() += 1;
    }

    /// A delivery that passed verification: `accepted` (a run recorded), `duplicate`,
    /// `ignored` (not a command, not enrolled…) or `cancelled` (a push stopped runs).
    pub fn delivery(&self, outcome: &str) {
        self.bump(DELIVERIES, outcome);
    }

    /// A delivery refused before anything was recorded, by cause (`bad_signature`…).
    pub fn rejection(&self, cause: &str) {
        self.bump(REJECTIONS, cause);
    }

    /// A forge API call that failed (after its retries), by call (`status`, `membership`…).
    pub fn forge_error(&self, call: &str) {
        self.bump(FORGE_ERRORS, call);
    }

    /// How many times `name` was counted with `label`; for tests and the benchmark.
    pub fn count(&self, name: &str, label: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .iter()
            .filter(|((n, l), _)| *n == name && l == label)
            .map(|(_, v)| *v)
            .sum()
    }

    /// The whole exposition.
    pub fn render(&self, stats: &Stats, open: Open) -> String {
        let mut out = String::new();
        let state = |s: &str| {
            stats
                .by_state
                .iter()
                .find(|(k, _)| k == s)
                .map_or(0, |(_, v)| *v)
        };
        gauge(
            &mut out,
            "ccci_queue_depth",
            "Runs waiting to run: recorded or queued.",
            state("received") + state("queued"),
        );
        gauge(
            &mut out,
            "ccci_runs_running",
            "Runs running now.",
            state("running"),
        );
        gauge(
            &mut out,
            "ccci_http_connections",
            "HTTP connections being answered now, this scrape's included.",
            open.connections,
        );
        gauge(
            &mut out,
            "ccci_log_streams",
            "Live-log streams open now.",
            open.log_streams,
        );
        let _ = writeln!(
            out,
            "# HELP ccci_runs_finished_total Runs finished, by verdict.\n# TYPE ccci_runs_finished_total counter"
        );
        for (verdict, n) in &stats.by_verdict {
            let _ = writeln!(
                out,
                "ccci_runs_finished_total{{verdict=\"{}\"}} {n}",
                escape(verdict)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ccci_run_duration_seconds How long finished runs ran.\n# TYPE ccci_run_duration_seconds histogram"
        );
        for (bound, n) in &stats.duration_buckets {
            let _ = writeln!(
                out,
                "ccci_run_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "ccci_run_duration_seconds_bucket{{le=\"+Inf\"}} {}\nccci_run_duration_seconds_sum {}\nccci_run_duration_seconds_count {}",
            stats.ran, stats.ran_seconds, stats.ran
        );
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for (name, label, help) in [
            (
                DELIVERIES,
                "outcome",
                "Verified webhook deliveries, by outcome.",
            ),
            (REJECTIONS, "cause", "Webhook deliveries refused, by cause."),
            (
                FORGE_ERRORS,
                "call",
                "Forge API calls that failed, by call.",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, l), v) in counters.iter() {
                if *n == name {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(l));
                }
            }
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_with_its_values() {
        let m = Metrics::default();
        m.rejection("bad_signature");
        m.rejection("bad_signature");
        m.forge_error("status");
        m.delivery("accepted");
        let stats = Stats {
            by_state: vec![
                ("queued".into(), 2),
                ("received".into(), 1),
                ("running".into(), 1),
            ],
            by_verdict: vec![("pass".into(), 3)],
            duration_buckets: vec![(30.0, 1), (60.0, 1), (120.0, 2)],
            ran: 2,
            ran_seconds: 120.0,
        };
        let open = Open {
            connections: 3,
            log_streams: 1,
        };
        let text = m.render(&stats, open);
        for line in [
            "ccci_queue_depth 3",
            "ccci_runs_running 1",
            "ccci_http_connections 3",
            "ccci_log_streams 1",
            "ccci_runs_finished_total{verdict=\"pass\"} 3",
            "ccci_run_duration_seconds_bucket{le=\"30\"} 1",
            "ccci_run_duration_seconds_bucket{le=\"120\"} 2",
            "ccci_run_duration_seconds_count 2",
            "ccci_webhook_rejections_total{cause=\"bad_signature\"} 2",
            "ccci_forge_api_errors_total{call=\"status\"} 1",
            "ccci_webhook_deliveries_total{outcome=\"accepted\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        assert_eq!(m.count(REJECTIONS, "bad_signature"), 2);
    }

    #[test]
    fn no_finished_runs_sum_to_a_plain_zero() {
        let text = Metrics::default().render(&Stats::default(), Open::default());
        assert!(
            text.lines().any(|l| l == "ccci_run_duration_seconds_sum 0"),
            "{text}"
        );
    }
}
