//! Actions that governance proposes from findings and sinks carry out (write a
//! Nonconformance to the MES, place a hold, raise an Andon alert...).
//!
//! Every action has an idempotency key so the MES sees it at most once, and a status that only
//! moves forward ([`ActionStatus::can_move_to`]).

use crate::event::{Timestamp, rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Create a Nonconformance in the MES.
    CreateNonconformance,
    /// Place a hold on a unit / material tracking unit.
    PlaceHold,
    /// Release a hold.
    ReleaseHold,
    /// Raise an Andon alert at a station (warning or line stop, as policy says).
    RaiseAndon,
    /// Append an entry to the work order's log.
    AppendOrderLog,
    /// Put the finding in the supervisor's review queue.
    SupervisorReview,
    /// Write a new build sequence (the re-sequencing proposal's order) to the MES.
    Resequence,
    /// Ask the supplier of a delivery in transit to expedite it (premium freight), through the
    /// MES or WMS material requests.
    ExpediteDelivery,
}

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::CreateNonconformance,
        ActionKind::PlaceHold,
        ActionKind::ReleaseHold,
        ActionKind::RaiseAndon,
        ActionKind::AppendOrderLog,
        ActionKind::SupervisorReview,
        ActionKind::Resequence,
        ActionKind::ExpediteDelivery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateNonconformance => "create_nonconformance",
            ActionKind::PlaceHold => "place_hold",
            ActionKind::ReleaseHold => "release_hold",
            ActionKind::RaiseAndon => "raise_andon",
            ActionKind::AppendOrderLog => "append_order_log",
            ActionKind::SupervisorReview => "supervisor_review",
            ActionKind::Resequence => "resequence",
            ActionKind::ExpediteDelivery => "expedite_delivery",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waiting for a person with the right role.
    PendingApproval,
    /// Approved (by policy or by a person); in the outbox, waiting for delivery.
    Approved,
    Rejected,
    /// The approval window passed; never executed.
    Expired,
    /// A sink confirmed delivery.
    Delivered,
    /// Delivery failed permanently; kept with its reason.
    DeadLetter,
}

impl ActionStatus {
    pub const ALL: &'static [ActionStatus] = &[
        ActionStatus::PendingApproval,
        ActionStatus::Approved,
        ActionStatus::Rejected,
        ActionStatus::Expired,
        ActionStatus::Delivered,
        ActionStatus::DeadLetter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::PendingApproval => "pending_approval",
            ActionStatus::Approved => "approved",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Expired => "expired",
            ActionStatus::Delivered => "delivered",
            ActionStatus::DeadLetter => "dead_letter",
        }
    }

    pub fn parse(s: &str) -> Option<ActionStatus> {
        ActionStatus::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Status only moves forward: pending → approved / rejected / expired; approved →
    /// delivered / dead letter. Nothing leaves a final state.
    pub fn can_move_to(self, next: ActionStatus) -> bool {
        use ActionStatus::*;
        matches!((self, next), (PendingApproval, Approved | Rejected | Expired) | (Approved, Delivered | DeadLetter))
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action proposed for a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub action_id: String,
    pub finding_id: String,
    pub kind: ActionKind,
    pub status: ActionStatus,
    /// What the sink needs (station, VIN, description, severity...).
    pub payload: Value,
    /// The MES sees each key at most once.
    pub idempotency_key: String,
    pub correlation_id: String,
    /// Event time of the finding that proposed it.
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_only_forward() {
        use ActionStatus::*;
        assert!(PendingApproval.can_move_to(Approved));
        assert!(Approved.can_move_to(Delivered));
        assert!(!Delivered.can_move_to(Approved));
        assert!(!Rejected.can_move_to(Approved));
        assert!(!Expired.can_move_to(Approved));
        assert!(!PendingApproval.can_move_to(Delivered));
        for s in ActionStatus::ALL {
            assert_eq!(ActionStatus::parse(s.as_str()), Some(*s));
        }
    }
}

/// One work order of a new build sequence: its planned number before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceChange {
    pub work_order: String,
    pub vin: String,
    pub from_sequence: u64,
    pub to_sequence: u64,
}

/// The delivery an [`ActionKind::ExpediteDelivery`] action asks to expedite.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpediteRequest {
    pub call_off_id: String,
    pub supplier: String,
    pub part: String,
    pub quantity: f64,
    /// When the line runs out without it, if known (RFC 3339).
    pub needed_by: Option<String>,
}

impl Action {
    /// The delivery an expedite names (`payload.details.expedite`), or the field missing, named.
    pub fn expedite(&self) -> Result<ExpediteRequest, String> {
        let e = self.payload.pointer("/details/expedite");
        let text = |k: &str| {
            e.and_then(|e| e.get(k)).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string)
        };
        let field = |k: &str| text(k).ok_or_else(|| format!("details.expedite.{k}: missing; an expedite names it"));
        let quantity = e.and_then(|e| e.get("quantity")).and_then(Value::as_f64).filter(|q| *q > 0.0);
        Ok(ExpediteRequest {
            call_off_id: field("call_off_id")?,
            supplier: field("supplier")?,
            part: field("part")?,
            quantity: quantity.ok_or("details.expedite.quantity: missing or not positive")?,
            needed_by: text("needed_by"),
        })
    }

    /// The work orders a [`ActionKind::Resequence`] action moves (`payload.details.resequence`),
    /// or the first entry that cannot be read, named.
    pub fn sequence_changes(&self) -> Result<Vec<SequenceChange>, String> {
        let Some(items) = self.payload.pointer("/details/resequence").and_then(Value::as_array) else {
            return Err("details.resequence: missing; a new sequence lists the work orders that move".into());
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, m) in items.iter().enumerate() {
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            let number = |k: &str| m.get(k).and_then(Value::as_u64).filter(|n| *n > 0);
            match (text("work_order"), text("vin"), number("from_sequence"), number("to_sequence")) {
                (Some(work_order), Some(vin), Some(from_sequence), Some(to_sequence)) => {
                    out.push(SequenceChange { work_order, vin, from_sequence, to_sequence })
                }
                _ => {
                    return Err(format!(
                        "details.resequence[{i}]: needs work_order, vin, and from_sequence and to_sequence of at least 1"
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err("details.resequence: no work order changes its place".into());
        }
        Ok(out)
    }
}
