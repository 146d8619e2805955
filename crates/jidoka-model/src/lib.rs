//! Jidoka's domain model, in the plant's own words.
//!
//! - [`event`]: shop-floor and MES events ([`Event`], [`EventPayload`], [`EventKind`]) and the
//!   validating parser that turns untrusted JSON into them with errors naming the field.
//! - [`finding`]: what agents conclude ([`Finding`], [`Verdict`], [`Severity`]).
//! - [`action`]: what governance proposes and sinks execute ([`Action`], [`ActionKind`], [`ActionStatus`]).
//! - [`master`]: plant master data aligned with Opcenter's entity names (WorkOrder, Material, BOM, ...).
//!
//! Invariant: this crate does no I/O and never reads the clock; callers pass time in.

pub mod action;
pub mod audit;
pub mod event;
pub mod finding;
pub mod master;
pub mod rule;

pub use action::{Action, ActionKind, ActionStatus};
pub use event::{Curve, Event, EventError, EventKind, EventPayload, StoredEvent, TighteningResult, Timestamp};
pub use finding::{Finding, Severity, Subject, Verdict};

use sha2::{Digest, Sha256};

/// Short, stable identifier derived from parts: the same parts always give the same id, so
/// replaying the event log reproduces finding and action ids exactly.
pub fn stable_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    format!("{prefix}-{}", hex::encode(&digest[..10]))
}

/// Hex SHA-256 of bytes; used for input digests in findings and audit records.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The path (`data.final_torque_nm`, `data.curve.torque_nm[3]`) of the first place two JSON
/// values differ, in key order (`payload` when they differ at the top); `None` when equal.
pub fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    difference_below(a, b, String::new())
}

fn difference_below(a: &serde_json::Value, b: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => difference_below(p, q, join(k)),
                _ => Some(join(k)),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            let diff =
                x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference_below(p, q, format!("{path}[{i}]")));
            diff.or_else(|| (x.len() != y.len()).then(|| format!("{path}[{}]", x.len().min(y.len()))))
        }
        _ => (a != b).then(|| if path.is_empty() { "payload".to_string() } else { path }),
    }
}
