//! Governance's first duty: turn findings into proposed actions, deterministically, so the
//! actions are committed in the same transaction as the findings that caused them.
//!
//! The default policy follows the product brief: a sequence HOLD raises an Andon alert at the
//! station (a warning, approved by policy) and proposes holding the unit; any other HOLD drafts a
//! Nonconformance automatically
//! (approved by policy) and proposes holding the unit, which waits for a person; a REVIEW goes
//! to the supervisor's queue (waiting) and adds an entry to the order log (approved by policy);
//! a re-sequencing proposal waits for a supervisor, who approves the new build sequence (written
//! to the MES) or rejects it. A person with a role allowed by [`may_decide`] approves or rejects a waiting action over the
//! API; an action still waiting after the approval window expires and is never executed. Every
//! step is a record in the audit trail.

use crate::auth::Role;
use jidoka_model::{Action, ActionKind, ActionStatus, Finding, Verdict, stable_id};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A configured policy: for findings of these kinds and this verdict (and at least this
/// confidence), propose these actions. The first matching policy decides; findings no policy
/// matches get the default policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Finding kinds: exact (`torque.cross_thread`) or a prefix ending in `*` (`torque.*`);
    /// empty: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    pub verdict: Verdict,
    #[serde(default)]
    pub min_confidence: f64,
    /// The actions, in order; an empty list proposes nothing.
    pub actions: Vec<PolicyAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyAction {
    pub kind: ActionKind,
    /// Roles that may approve it; empty: it runs automatically (approved by policy).
    #[serde(default)]
    pub approve_by: Vec<Role>,
    /// Two different people must approve it (four-eyes); one rejection is enough to stop it.
    #[serde(default)]
    pub four_eyes: bool,
}

impl Policy {
    fn matches(&self, f: &Finding) -> bool {
        self.verdict == f.verdict
            && f.confidence >= self.min_confidence
            && (self.kinds.is_empty()
                || self.kinds.iter().any(|k| match k.strip_suffix('*') {
                    Some(prefix) => f.kind.starts_with(prefix),
                    None => *k == f.kind,
                }))
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            errors.push((format!("{path}.min_confidence"), "must be between 0 and 1".into()));
        }
        for (i, k) in self.kinds.iter().enumerate() {
            if k.trim().is_empty() || k.strip_suffix('*').unwrap_or(k).contains('*') {
                errors.push((format!("{path}.kinds[{i}]"), "a kind, or a prefix ending in a single `*`".into()));
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            if a.approve_by.iter().any(|r| matches!(r, Role::Agent | Role::Integrator | Role::Operator)) {
                errors.push((
                    format!("{path}.actions[{i}].approve_by"),
                    "only supervisor, quality_engineer or admin may approve actions".into(),
                ));
            }
        }
    }
}

/// The actions for one finding: the first configured policy that matches, else the default.
pub fn propose(finding: &Finding, policies: &[Policy]) -> Vec<Action> {
    type Plan<'a> = (ActionKind, ActionStatus, Option<&'a [Role]>, bool);
    let planned: Vec<Plan<'_>> = match policies.iter().find(|p| p.matches(finding)) {
        Some(p) => p
            .actions
            .iter()
            .map(|a| {
                let waits = !a.approve_by.is_empty() || a.four_eyes;
                let status = if waits { ActionStatus::PendingApproval } else { ActionStatus::Approved };
                (a.kind, status, (!a.approve_by.is_empty()).then_some(a.approve_by.as_slice()), a.four_eyes)
            })
            .collect(),
        None => default_plan(finding).iter().map(|(k, s)| (*k, *s, None, false)).collect(),
    };
    planned
        .into_iter()
        .map(|(kind, status, approve_by, four_eyes)| {
            let action_id = stable_id("A", &[&finding.finding_id, kind.as_str()]);
            let mut payload = json!({
                "finding_kind": finding.kind,
                "verdict": finding.verdict,
                "severity": finding.severity,
                "reason": finding.reason,
                "subject": finding.subject,
                "evidence": finding.evidence,
                "agent": finding.agent,
                "agent_version": finding.agent_version,
                "source_txn_id": finding.source_txn_id,
            });
            // A new build sequence is its details: the work orders that change place; an
            // expedite, the call-off, supplier and part.
            if matches!(kind, ActionKind::Resequence | ActionKind::ExpediteDelivery) {
                payload["details"] = finding.details.clone();
            }
            if let Some(roles) = approve_by {
                payload["approve_by"] = json!(roles);
            }
            if four_eyes {
                payload["four_eyes"] = json!(true);
            }
            Action {
                idempotency_key: format!("jidoka:{action_id}"),
                action_id,
                finding_id: finding.finding_id.clone(),
                kind,
                status,
                payload,
                correlation_id: finding.correlation_id.clone(),
                created_at: finding.occurred_at,
            }
        })
        .collect()
}

/// The finding kind of a re-sequencing proposal.
pub const RESEQUENCE_PROPOSAL: &str = jidoka_agents::build_queue::PROPOSAL;

/// The default policy, from the product brief.
fn default_plan(finding: &Finding) -> &'static [(ActionKind, ActionStatus)] {
    let sequence = finding.kind.starts_with("sequence.");
    // A re-sequencing proposal is one decision: the new build sequence, written to the MES once
    // a supervisor approves it.
    if finding.kind == RESEQUENCE_PROPOSAL && finding.verdict == Verdict::Review {
        return &[(ActionKind::Resequence, ActionStatus::PendingApproval)];
    }
    // An expedite costs premium freight: a person decides.
    if finding.kind == jidoka_agents::shortage::EXPEDITE && finding.verdict == Verdict::Review {
        return &[(ActionKind::ExpediteDelivery, ActionStatus::PendingApproval)];
    }
    match finding.verdict {
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
    }
}

/// Whether approving `action` needs two different people.
pub fn needs_four_eyes(action: &Action) -> bool {
    action.payload.get("four_eyes").and_then(serde_json::Value::as_bool).unwrap_or(false)
}

/// Whether `role` may decide `action`: the roles its policy names (admins always), else the
/// default table [`may_decide`].
pub fn may_decide_action(role: Role, action: &Action) -> bool {
    match action.payload.get("approve_by").and_then(|v| serde_json::from_value::<Vec<Role>>(v.clone()).ok()) {
        Some(roles) => role == Role::Admin || roles.contains(&role),
        None => may_decide(role, action.kind),
    }
}

/// Which roles may approve or reject which kind of action: holding a unit or drafting a
/// Nonconformance is the quality engineer's call (the supervisor may hold a unit at the line);
/// the line's Andon, the order log and the review queue are the supervisor's. Admins may do
/// all; operators, integrators and service accounts none.
pub fn may_decide(role: Role, kind: ActionKind) -> bool {
    use Role::*;
    match kind {
        ActionKind::PlaceHold => matches!(role, QualityEngineer | Supervisor | Admin),
        ActionKind::ReleaseHold | ActionKind::CreateNonconformance => matches!(role, QualityEngineer | Admin),
        ActionKind::RaiseAndon | ActionKind::AppendOrderLog | ActionKind::SupervisorReview => {
            matches!(role, Supervisor | QualityEngineer | Admin)
        }
        // The build sequence and the line's material supply are the supervisor's call.
        ActionKind::Resequence | ActionKind::ExpediteDelivery => matches!(role, Supervisor | Admin),
    }
}

/// All actions for a set of findings, in finding order.
pub fn propose_all(findings: &[Finding], policies: &[Policy]) -> Vec<Action> {
    findings.iter().flat_map(|f| propose(f, policies)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jidoka_model::{Severity, Subject};

    fn finding(kind: &str, verdict: Verdict) -> Finding {
        Finding {
            finding_id: "F-1".into(),
            agent: "build-queue".into(),
            agent_version: "1.0.0".into(),
            kind: kind.into(),
            verdict,
            severity: Severity::Warning,
            confidence: 1.0,
            reason: "re-sequence around GLASS-1".into(),
            subject: Subject::default(),
            evidence: vec!["ev-plan".into(), "ev-disruption".into()],
            correlation_id: "planner:resequence".into(),
            source_txn_id: "resequence@9".into(),
            occurred_at: chrono::Utc::now(),
            details: json!({"resequence": [{"work_order": "WO-1", "vin": "V1", "from_sequence": 40, "to_sequence": 33}]}),
        }
    }

    #[test]
    fn a_resequencing_proposal_is_one_decision_for_a_supervisor_carrying_its_numbers() {
        let actions = propose(&finding(RESEQUENCE_PROPOSAL, Verdict::Review), &[]);
        assert_eq!(actions.len(), 1, "no review entry or order log beside it");
        let a = &actions[0];
        assert_eq!((a.kind, a.status), (ActionKind::Resequence, ActionStatus::PendingApproval));
        let changes = a.sequence_changes().expect("the numbers travel with the action");
        assert_eq!((changes[0].from_sequence, changes[0].to_sequence), (40, 33));
        assert!(may_decide_action(Role::Supervisor, a) && may_decide_action(Role::Admin, a));
        for role in [Role::QualityEngineer, Role::Operator, Role::Integrator, Role::Agent] {
            assert!(!may_decide_action(role, a), "{role:?}");
        }
        // The no-change and no-proposal findings are PASS: nothing to decide.
        assert!(propose(&finding("resequence.no_change", Verdict::Pass), &[]).is_empty());
        // Only the resequence action carries the details; other kinds stay as they were.
        let review = propose(&finding("torque.soft_joint", Verdict::Review), &[]);
        assert!(review.iter().all(|a| a.payload.get("details").is_none()));
    }

    #[test]
    fn an_expedite_is_one_decision_for_a_supervisor_carrying_its_call_off() {
        let mut f = finding(jidoka_agents::shortage::EXPEDITE, Verdict::Review);
        f.details = json!({"expedite": {"call_off_id": "CO-000046", "supplier": "SUP-SEAT", "part": "SEAT-STD",
                                        "quantity": 40.0, "needed_by": "2026-11-02T13:27:01.000Z"}});
        let actions = propose(&f, &[]);
        assert_eq!(actions.len(), 1, "no review entry or order log beside it");
        let a = &actions[0];
        assert_eq!((a.kind, a.status), (ActionKind::ExpediteDelivery, ActionStatus::PendingApproval));
        let e = a.expedite().expect("the call-off travels with the action");
        assert_eq!((e.call_off_id.as_str(), e.supplier.as_str(), e.quantity), ("CO-000046", "SUP-SEAT", 40.0));
        assert!(may_decide_action(Role::Supervisor, a) && may_decide_action(Role::Admin, a));
        for role in [Role::QualityEngineer, Role::Operator, Role::Integrator, Role::Agent] {
            assert!(!may_decide_action(role, a), "{role:?}");
        }
        // Without its call-off the action says which field is missing.
        f.details = json!({"expedite": {"supplier": "SUP-SEAT", "part": "SEAT-STD", "quantity": 40.0}});
        let err = propose(&f, &[])[0].expedite().unwrap_err();
        assert!(err.contains("details.expedite.call_off_id"), "{err}");
    }
}
