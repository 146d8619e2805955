//! Prometheus metrics, rendered by hand in the text exposition format: a handful of atomic
//! counters and gauges needs no metrics framework.

use jidoka_model::{Finding, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_stored: AtomicU64,
    pub events_duplicate: AtomicU64,
    /// Redeliveries whose content differed from the stored event (refused).
    pub events_conflict: AtomicU64,
    pub events_rejected: AtomicU64,
    pub ingest_requests: AtomicU64,
    pub group_commits: AtomicU64,
    pub store_errors: AtomicU64,
    /// The last group commit failed and the writer refuses appends until its backoff passes.
    pub store_failing: std::sync::atomic::AtomicBool,
    /// Times the agents' state was rebuilt from the log (at start, and after a failed commit).
    pub agent_rebuilds: AtomicU64,
    /// Times the agents' state was restored from the writer's copy after a failed commit
    /// (the copy plus the events since it, instead of the whole log).
    pub agent_restores: AtomicU64,
    /// How long the writer's last copy of the agents took (microseconds).
    pub agent_copy_us: AtomicU64,
    pub planner_runs: AtomicU64,
    pub planner_superseded: AtomicU64,
    pub planner_deadline_exceeded: AtomicU64,
    /// How long the last plan took.
    pub planner_last_ms: AtomicU64,
    /// Highest seq in the event log.
    pub log_seq: AtomicU64,
    /// Highest seq the agents have processed and committed.
    pub agent_seq: AtomicU64,
    pub actions_proposed: AtomicU64,
    pub actions_delivered: AtomicU64,
    pub actions_dead_letter: AtomicU64,
    /// Approved actions the audit chain does not prove approved (not delivered).
    pub actions_unproven: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_client_errors: AtomicU64,
    pub http_server_errors: AtomicU64,
    /// What the HTTP listener turned away.
    pub http: crate::http::HttpStats,
    findings: Mutex<BTreeMap<(String, Verdict), u64>>,
}

impl Metrics {
    pub fn record_findings(&self, findings: &[Finding]) {
        let mut map = self.findings.lock().unwrap_or_else(|p| p.into_inner());
        for f in findings {
            *map.entry((f.agent.clone(), f.verdict)).or_default() += 1;
        }
    }

    pub fn findings_total(&self) -> u64 {
        self.findings.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    pub fn lag(&self) -> u64 {
        self.log_seq.load(Relaxed).saturating_sub(self.agent_seq.load(Relaxed))
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        counter("jidoka_events_stored_total", "Events durably stored.", "counter", self.events_stored.load(Relaxed));
        counter(
            "jidoka_events_duplicate_total",
            "Redelivered events absorbed by idempotency.",
            "counter",
            self.events_duplicate.load(Relaxed),
        );
        counter(
            "jidoka_events_conflict_total",
            "Redelivered source transactions refused because their content differed from the stored event.",
            "counter",
            self.events_conflict.load(Relaxed),
        );
        counter(
            "jidoka_events_rejected_total",
            "Events rejected as invalid.",
            "counter",
            self.events_rejected.load(Relaxed),
        );
        counter(
            "jidoka_ingest_requests_total",
            "Append requests handed to the store writer.",
            "counter",
            self.ingest_requests.load(Relaxed),
        );
        counter(
            "jidoka_group_commits_total",
            "Store transactions committed by the writer.",
            "counter",
            self.group_commits.load(Relaxed),
        );
        counter(
            "jidoka_store_failing",
            "1 while the store cannot commit (appends are refused until it can).",
            "gauge",
            u64::from(self.store_failing.load(Relaxed)),
        );
        counter(
            "jidoka_actions_unproven_total",
            "Approved actions not delivered because the audit chain does not prove their approval.",
            "counter",
            self.actions_unproven.load(Relaxed),
        );
        counter("jidoka_planner_runs_total", "Plans computed and logged.", "counter", self.planner_runs.load(Relaxed));
        counter(
            "jidoka_planner_superseded_total",
            "Plans cancelled because a newer request replaced them.",
            "counter",
            self.planner_superseded.load(Relaxed),
        );
        counter(
            "jidoka_planner_deadline_exceeded_total",
            "Plans stopped at their deadline (nothing logged).",
            "counter",
            self.planner_deadline_exceeded.load(Relaxed),
        );
        counter("jidoka_planner_last_ms", "Duration of the last plan.", "gauge", self.planner_last_ms.load(Relaxed));
        counter(
            "jidoka_agent_rebuilds_total",
            "Agent state rebuilt from the log (at start and after a failed commit).",
            "counter",
            self.agent_rebuilds.load(Relaxed),
        );
        counter(
            "jidoka_agent_restores_total",
            "Agent state restored from the writer's copy and the events since it after a failed commit.",
            "counter",
            self.agent_restores.load(Relaxed),
        );
        counter(
            "jidoka_agent_copy_us",
            "Duration of the writer's last copy of the agents' state (taken every 5 minutes between commits).",
            "gauge",
            self.agent_copy_us.load(Relaxed),
        );
        counter(
            "jidoka_store_errors_total",
            "Store operations that failed.",
            "counter",
            self.store_errors.load(Relaxed),
        );
        counter("jidoka_log_seq", "Highest position in the event log.", "gauge", self.log_seq.load(Relaxed));
        counter(
            "jidoka_agent_seq",
            "Highest log position processed by the agents.",
            "gauge",
            self.agent_seq.load(Relaxed),
        );
        counter("jidoka_agent_lag_events", "Events stored but not yet processed by the agents.", "gauge", self.lag());
        counter(
            "jidoka_actions_proposed_total",
            "Actions proposed by governance.",
            "counter",
            self.actions_proposed.load(Relaxed),
        );
        counter(
            "jidoka_actions_delivered_total",
            "Actions delivered by sinks.",
            "counter",
            self.actions_delivered.load(Relaxed),
        );
        counter(
            "jidoka_actions_dead_letter_total",
            "Actions that failed permanently.",
            "counter",
            self.actions_dead_letter.load(Relaxed),
        );
        counter(
            "jidoka_delivery_failures_total",
            "Transient delivery failures (retried).",
            "counter",
            self.delivery_failures.load(Relaxed),
        );
        counter("jidoka_http_requests_total", "HTTP requests served.", "counter", self.http_requests.load(Relaxed));
        counter(
            "jidoka_http_connections_refused_total",
            "HTTP connections closed on accept: over the total cap.",
            "counter",
            self.http.refused_total_cap.load(Relaxed),
        );
        counter(
            "jidoka_http_connections_refused_peer_total",
            "HTTP connections closed on accept: over the per-address cap.",
            "counter",
            self.http.refused_peer_cap.load(Relaxed),
        );
        counter(
            "jidoka_http_request_timeouts_total",
            "HTTP requests answered 408: body or answer slower than the request timeout.",
            "counter",
            self.http.request_timeouts.load(Relaxed),
        );
        counter(
            "jidoka_http_accept_errors_total",
            "Failed accepts (out of file descriptors, network errors).",
            "counter",
            self.http.accept_errors.load(Relaxed),
        );
        counter(
            "jidoka_http_tls_handshake_failures_total",
            "TLS handshakes that failed or did not finish within the idle timeout.",
            "counter",
            self.http.tls_handshake_failures.load(Relaxed),
        );
        counter(
            "jidoka_http_client_errors_total",
            "HTTP responses with a 4xx status.",
            "counter",
            self.http_client_errors.load(Relaxed),
        );
        counter(
            "jidoka_http_server_errors_total",
            "HTTP responses with a 5xx status.",
            "counter",
            self.http_server_errors.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP jidoka_findings_total Findings by agent and verdict.\n# TYPE jidoka_findings_total counter"
        );
        for ((agent, verdict), n) in self.findings.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "jidoka_findings_total{{agent=\"{}\",verdict=\"{}\"}} {n}",
                escape(agent),
                verdict.as_str()
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
