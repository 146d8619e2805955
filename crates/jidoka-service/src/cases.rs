//! Cases: the waiting actions about one problem, decided once. A supervisor deciding each
//! finding alone gets the torque HOLD and the sequence HOLD of one bolt as two items, and every
//! tightening of a safety-critical joint before its golden batch as one item each; grouped, they
//! are one decision.
//!
//! Grouping is a pure function of a waiting action's finding (its kind and subject), computed
//! when the queue is read: it keeps no state of its own, a replay groups the same way, and a
//! finding joins its case the moment it is stored. The cases:
//! - `baseline`: every tightening of one joint at one station before its golden batch
//!   (`torque.no_golden_batch`): the joint's cold start.
//! - `drift`: the drift findings of one tool on one joint.
//! - `unit`: the other torque and sequence findings of one unit at one station (the torque and
//!   the sequence finding of the same tightening among them).
//! - anything else is a case of its own.
//!
//! Deciding a case decides each of its waiting actions as a decision of its own, every audit
//! record naming the case, why its findings were grouped and which they are; an action can
//! still be decided alone from its finding's page.

use jidoka_model::{Action, ActionKind, ActionStatus, Severity, Verdict};
use jidoka_store::{ActionQuery, ActionRecord, Store};
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// One open case: its waiting actions, newest first.
#[derive(Debug, Clone)]
pub struct Case {
    pub case_id: String,
    pub title: String,
    /// Why its findings are one case.
    pub why: &'static str,
    pub actions: Vec<ActionRecord>,
    /// The worst verdict and severity among its findings.
    verdict: Verdict,
    severity: Severity,
}

impl Case {
    /// The findings of the case, in the order of its actions, each once.
    pub fn findings(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in &self.actions {
            if !out.contains(&a.action.finding_id.as_str()) {
                out.push(&a.action.finding_id);
            }
        }
        out
    }

    /// The worst verdict and severity among its findings.
    pub fn worst(&self) -> (Verdict, Severity) {
        (self.verdict, self.severity)
    }

    fn push(&mut self, a: ActionRecord) {
        let text = |name: &str| a.action.payload.get(name).and_then(Value::as_str);
        self.verdict = self.verdict.max(text("verdict").and_then(Verdict::parse).unwrap_or(Verdict::Review));
        self.severity = self.severity.max(text("severity").and_then(Severity::parse).unwrap_or(Severity::Info));
        self.actions.push(a);
    }

    pub fn to_json(&self) -> Value {
        let (verdict, severity) = self.worst();
        json!({
            "case_id": self.case_id,
            "title": self.title,
            "why": self.why,
            "verdict": verdict,
            "severity": severity,
            "findings": self.findings(),
            "actions": self.actions.iter().map(|a| json!({
                "action_id": a.action.action_id,
                "kind": a.action.kind,
                "finding_id": a.action.finding_id,
                "finding_kind": a.action.payload.get("finding_kind"),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The case a waiting action belongs to: its id, its title and why.
pub fn case_of(action: &Action) -> (String, String, &'static str) {
    let p = &action.payload;
    let kind = p.get("finding_kind").and_then(Value::as_str).unwrap_or("");
    let subject = |name: &str| p.get("subject").and_then(|s| s.get(name)).and_then(Value::as_str);
    let (station, joint, vin, tool) = (subject("station"), subject("joint"), subject("vin"), subject("tool"));
    let id = |parts: &[&str]| jidoka_model::stable_id("C", parts);
    match (kind, station, joint, vin, tool) {
        ("torque.no_golden_batch", Some(st), Some(j), _, _) => (
            id(&["baseline", st, j]),
            format!("Golden batch pending: joint {j} at {st}"),
            "every tightening of a safety-critical joint before its golden batch is complete",
        ),
        ("torque.drift", _, Some(j), _, Some(t)) => (
            id(&["drift", t, j]),
            format!("Tool {t} drifting on joint {j}"),
            "the drift findings of one tool on one joint",
        ),
        (k, Some(st), _, Some(v), _) if k.starts_with("torque.") || k.starts_with("sequence.") => (
            id(&["unit", v, st]),
            format!("Unit {v} at {st}"),
            "the torque and sequence findings of one unit at one station",
        ),
        _ => (id(&["finding", &action.finding_id]), format!("{kind} ({})", action.finding_id), "a finding of its own"),
    }
}

/// The cases of `actions` (waiting actions, newest first), in the order each case's newest
/// action comes.
pub fn group(actions: Vec<ActionRecord>) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for a in actions {
        let (case_id, title, why) = case_of(&a.action);
        let i = *index.entry(case_id.clone()).or_insert_with(|| {
            cases.push(Case {
                case_id,
                title,
                why,
                actions: Vec::new(),
                verdict: Verdict::Pass,
                severity: Severity::Info,
            });
            cases.len() - 1
        });
        cases[i].push(a);
    }
    cases
}

/// HOLDs first, then by severity; a stable sort, so newest first within a rank.
pub fn sort(cases: &mut [Case]) {
    cases.sort_by_key(|c| (std::cmp::Reverse(c.verdict), std::cmp::Reverse(c.severity)));
}

/// Every waiting action (of `kind`, when given), newest first, read a page at a time until
/// `each` breaks.
pub fn each_waiting(
    store: &dyn Store,
    kind: Option<ActionKind>,
    mut each: impl FnMut(ActionRecord) -> ControlFlow<()>,
) -> jidoka_store::Result<()> {
    let mut before = None;
    loop {
        let page = store.actions(&ActionQuery {
            status: Some(ActionStatus::PendingApproval),
            kind,
            before,
            limit: 1000,
            ..Default::default()
        })?;
        for record in page.items {
            if each(record).is_break() {
                return Ok(());
            }
        }
        match page.next_cursor {
            Some(next) => before = Some(next),
            None => return Ok(()),
        }
    }
}

/// The open cases among the newest `max_actions` waiting actions, and whether more wait.
pub fn open_cases(store: &dyn Store, max_actions: usize) -> jidoka_store::Result<(Vec<Case>, bool)> {
    let mut actions = Vec::new();
    let mut more = false;
    each_waiting(store, None, |a| {
        if actions.len() == max_actions {
            more = true;
            return ControlFlow::Break(());
        }
        actions.push(a);
        ControlFlow::Continue(())
    })?;
    Ok((group(actions), more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, finding: &str, kind: &str, subject: Value) -> ActionRecord {
        ActionRecord {
            action: Action {
                action_id: id.into(),
                finding_id: finding.into(),
                kind: ActionKind::SupervisorReview,
                status: ActionStatus::PendingApproval,
                payload: json!({"finding_kind": kind, "subject": subject, "verdict": "REVIEW", "severity": "warning"}),
                idempotency_key: format!("k-{id}"),
                correlation_id: "c".into(),
                created_at: chrono::Utc::now(),
            },
            note: None,
            attempts: 0,
            approvals: Vec::new(),
            stored_at: None,
        }
    }

    #[test]
    fn one_problem_is_one_case() {
        let cold = |id: &str, vin: &str| {
            action(
                id,
                &format!("F-{id}"),
                "torque.no_golden_batch",
                json!({"vin": vin, "station": "ST040", "joint": "J1"}),
            )
        };
        let mut hold =
            action("A-h", "F-t", "torque.out_of_window", json!({"vin": "V9", "station": "ST040", "joint": "J2"}));
        hold.action.payload["verdict"] = json!("HOLD");
        hold.action.payload["severity"] = json!("critical");
        let actions = vec![
            cold("A-1", "V1"),
            hold,
            action("A-s", "F-s", "sequence.missing_tightening", json!({"vin": "V9", "station": "ST040"})),
            cold("A-2", "V2"),
            cold("A-3", "V3"),
            action("A-n", "F-n", "ncr.triage", json!({"station": "ST070"})),
            action("A-o", "F-o", "torque.no_golden_batch", json!({"vin": "V1", "station": "ST050", "joint": "J1"})),
        ];
        let cases = group(actions);
        let shape: Vec<(usize, &str)> = cases.iter().map(|c| (c.actions.len(), c.why)).collect();
        assert_eq!(cases.len(), 4, "{shape:?}");
        assert_eq!(cases[0].actions.len(), 3, "one joint's cold start");
        assert_eq!(cases[0].title, "Golden batch pending: joint J1 at ST040");
        assert_eq!(cases[1].findings(), vec!["F-t", "F-s"], "the torque and the sequence finding of one unit");
        assert_eq!(cases[1].worst(), (Verdict::Hold, Severity::Critical));
        assert_eq!(cases[2].actions.len(), 1, "an NCR is a case of its own");
        assert_eq!(cases[3].actions.len(), 1, "the same joint at another station is another case");
        // Pure: the same actions in any order give the same case ids.
        let again = group(cases.iter().rev().flat_map(|c| c.actions.clone()).collect());
        let mut a: Vec<&str> = cases.iter().map(|c| c.case_id.as_str()).collect();
        let mut b: Vec<&str> = again.iter().map(|c| c.case_id.as_str()).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }
}
