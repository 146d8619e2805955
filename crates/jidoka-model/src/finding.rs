//! What agents conclude from events.
//!
//! A [`Finding`] names the agent (and version) that made it, what it is about ([`Subject`]),
//! a [`Verdict`] (PASS / REVIEW / HOLD) and [`Severity`], a confidence, a reason a person can
//! read, and the evidence (event ids) it rests on. Finding ids are stable: replaying the same
//! event log through the same agents gives the same ids.

use crate::event::{Timestamp, rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The agent's call on the thing it examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Review,
    Hold,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Review => "REVIEW",
            Verdict::Hold => "HOLD",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s.to_ascii_uppercase().as_str() {
            "PASS" => Some(Verdict::Pass),
            "REVIEW" => Some(Verdict::Review),
            "HOLD" => Some(Verdict::Hold),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a finding is for the people on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// What a finding is about. Every field is optional; agents fill what they know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
}

/// One conclusion of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: String,
    pub agent: String,
    pub agent_version: String,
    /// Dotted kind, e.g. `torque.out_of_window`, `sequence.wrong_part`.
    pub kind: String,
    pub verdict: Verdict,
    pub severity: Severity,
    /// 0..=1.
    pub confidence: f64,
    /// A sentence a supervisor can read and check.
    pub reason: String,
    pub subject: Subject,
    /// Event ids this finding rests on; the first is the event that triggered it.
    pub evidence: Vec<String>,
    /// Correlation id of the triggering event (traces back to the MES transaction).
    pub correlation_id: String,
    /// Source transaction id of the triggering event.
    pub source_txn_id: String,
    /// Event time of the triggering event (never the wall clock).
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// Agent-specific detail (features, expected vs actual, statistics).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Finding {
    /// Digest over everything an agent decided, used to prove that a replay reproduced a
    /// finding exactly.
    pub fn content_digest(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        crate::sha256_hex(text.as_bytes())
    }
}
