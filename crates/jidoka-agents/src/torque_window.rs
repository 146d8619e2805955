//! [`TorqueWindowAgent`]: checks each tightening's final torque and angle against its windows
//! and reports the controller's own NOK.
//!
//! This is what a tightening controller already does, and no more: it misses every fault whose
//! final values land inside the window (cross-thread, soft joint, re-hit). It exists so the
//! curve-based torque audit is always measured against it, and so a plant without curves
//! still gets HOLDs for out-of-window results. It is off by default: the torque audit
//! checks the same windows as part of its verdict, and two HOLDs for one bolt help nobody.

use crate::torque::{severity_for, subject, window_violations};
use crate::{Agent, FindingDraft};
use jidoka_model::event::OkNok;
use jidoka_model::{EventKind, EventPayload, StoredEvent, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorqueWindowConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Report a controller NOK whose final values are inside the windows (REVIEW).
    #[serde(default = "yes")]
    pub report_controller_nok: bool,
}

fn yes() -> bool {
    true
}

impl Default for TorqueWindowConfig {
    fn default() -> Self {
        TorqueWindowConfig { enabled: false, report_controller_nok: true }
    }
}

impl TorqueWindowConfig {
    pub fn validate(&self, _path: &str, _errors: &mut Vec<(String, String)>) {}
}

#[derive(Debug, Clone)]
pub struct TorqueWindowAgent {
    config: TorqueWindowConfig,
}

impl TorqueWindowAgent {
    pub fn new(config: TorqueWindowConfig) -> Self {
        TorqueWindowAgent { config }
    }
}

impl Agent for TorqueWindowAgent {
    fn name(&self) -> &'static str {
        "torque-window"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn subscriptions(&self) -> &'static [EventKind] {
        &[EventKind::TighteningResult]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        let EventPayload::TighteningResult(t) = &event.event.payload else {
            return;
        };
        let where_ = format!("station {} joint {} pset {} tool {}", t.station, t.joint, t.pset, t.tool);
        let violations = window_violations(t);
        let details = json!({
            "final_torque_nm": t.final_torque_nm, "final_angle_deg": t.final_angle_deg,
            "torque_min_nm": t.torque_min_nm, "torque_max_nm": t.torque_max_nm,
            "angle_min_deg": t.angle_min_deg, "angle_max_deg": t.angle_max_deg,
            "controller_verdict": t.controller_verdict, "tightening_id": t.tightening_id,
        });
        if !violations.is_empty() {
            out.push(FindingDraft {
                kind: "torque.out_of_window".into(),
                verdict: Verdict::Hold,
                severity: severity_for(t.category, Verdict::Hold),
                confidence: 1.0,
                reason: format!("{} ({where_})", violations.join("; ")),
                subject: subject(t),
                extra_evidence: Vec::new(),
                details,
            });
        } else if self.config.report_controller_nok && t.controller_verdict == Some(OkNok::Nok) {
            out.push(FindingDraft {
                kind: "torque.controller_nok".into(),
                verdict: Verdict::Review,
                severity: severity_for(t.category, Verdict::Review),
                confidence: 0.9,
                reason: format!(
                    "controller reported NOK although final torque and angle are inside the windows ({where_})"
                ),
                subject: subject(t),
                extra_evidence: Vec::new(),
                details,
            });
        }
    }
}
