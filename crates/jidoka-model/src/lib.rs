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
