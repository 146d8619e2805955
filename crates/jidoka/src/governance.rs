//! Governance's first duty: turn findings into proposed actions, deterministically, so the
//! actions are committed in the same transaction as the findings that caused them.
//!
//! The default policy follows the product brief: a sequence HOLD raises an Andon alert at the
//! station (a warning, approved by policy) and proposes holding the unit; any other HOLD drafts a
//! Nonconformance automatically
//! (approved by policy) and proposes holding the unit, which waits for a person; a REVIEW goes
//! to the supervisor's queue (waiting) and adds an entry to the order log (approved by policy).
//! A person with a role allowed by [`may_decide`] approves or rejects a waiting action over the
//! API; an action still waiting after the approval window expires and is never executed. Every
//! step is a record in the audit trail.

use jidoka_model::{Action, ActionKind, ActionStatus, Finding, Verdict, stable_id};
use serde_json::json;

/// The actions the default policy proposes for one finding.
pub fn propose(finding: &Finding) -> Vec<Action> {
    let sequence = finding.kind.starts_with("sequence.");
    let plan: &[(ActionKind, ActionStatus)] = match finding.verdict {
        // A sequence error is shown on the station's Andon at once; stopping the line or
        // holding the unit waits for a person.
        Verdict::Hold if sequence => {
            &[(ActionKind::RaiseAndon, ActionStatus::Approved), (ActionKind::PlaceHold, ActionStatus::PendingApproval)]
        }
        Verdict::Hold => &[
            (ActionKind::CreateNonconformance, ActionStatus::Approved),
            (ActionKind::PlaceHold, ActionStatus::PendingApproval),
        ],
        Verdict::Review => &[
            (ActionKind::SupervisorReview, ActionStatus::PendingApproval),
            (ActionKind::AppendOrderLog, ActionStatus::Approved),
        ],
        Verdict::Pass => &[],
    };
    plan.iter()
        .map(|(kind, status)| {
            let action_id = stable_id("A", &[&finding.finding_id, kind.as_str()]);
            Action {
                idempotency_key: format!("jidoka:{action_id}"),
                action_id,
                finding_id: finding.finding_id.clone(),
                kind: *kind,
                status: *status,
                payload: json!({
                    "finding_kind": finding.kind,
                    "verdict": finding.verdict,
                    "severity": finding.severity,
                    "reason": finding.reason,
                    "subject": finding.subject,
                    "evidence": finding.evidence,
                    "agent": finding.agent,
                    "agent_version": finding.agent_version,
                    "source_txn_id": finding.source_txn_id,
                }),
                correlation_id: finding.correlation_id.clone(),
                created_at: finding.occurred_at,
            }
        })
        .collect()
}

/// Which roles may approve or reject which kind of action: holding a unit or drafting a
/// Nonconformance is the quality engineer's call (the supervisor may hold a unit at the line);
/// the line's Andon, the order log and the review queue are the supervisor's. Admins may do
/// all; operators, integrators and service accounts none.
pub fn may_decide(role: crate::auth::Role, kind: ActionKind) -> bool {
    use crate::auth::Role::*;
    match kind {
        ActionKind::PlaceHold => matches!(role, QualityEngineer | Supervisor | Admin),
        ActionKind::ReleaseHold | ActionKind::CreateNonconformance => matches!(role, QualityEngineer | Admin),
        ActionKind::RaiseAndon | ActionKind::AppendOrderLog | ActionKind::SupervisorReview => {
            matches!(role, Supervisor | QualityEngineer | Admin)
        }
    }
}

/// All actions for a set of findings, in finding order.
pub fn propose_all(findings: &[Finding]) -> Vec<Action> {
    findings.iter().flat_map(propose).collect()
}
