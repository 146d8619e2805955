//! [`TorqueWindowAgent`]: checks each tightening's final torque and angle against its windows
//! and reports the controller's own NOK.
//!
//! This is what a tightening controller already does, and no more: it misses every fault whose
//! final values land inside the window (cross-thread, soft joint, re-hit). It exists so the
//! curve-based torque audit is always measured against it, and so a plant without curves
//! still gets HOLDs for out-of-window results. It is off by default: the torque audit
//! checks the same windows as part of its verdict, and two HOLDs for one bolt help nobody.

use crate::{Agent, FindingDraft};
use jidoka_model::event::{JointCategory, OkNok};
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, TighteningResult, Verdict};
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

#[derive(Debug)]
pub struct TorqueWindowAgent {
    config: TorqueWindowConfig,
}

impl TorqueWindowAgent {
    pub fn new(config: TorqueWindowConfig) -> Self {
        TorqueWindowAgent { config }
    }
}

fn severity_for(category: Option<JointCategory>) -> Severity {
    match category {
        Some(JointCategory::A) | None => Severity::Critical,
        Some(JointCategory::B) => Severity::Warning,
        Some(JointCategory::C) => Severity::Info,
    }
}

fn subject(t: &TighteningResult) -> Subject {
    Subject {
        vin: t.vin.clone(),
        station: Some(t.station.clone()),
        tool: Some(t.tool.clone()),
        joint: Some(t.joint.clone()),
        ..Subject::default()
    }
}

/// `value` against `[min, max]`: which side it falls out on, if any.
fn outside(value: f64, min: Option<f64>, max: Option<f64>) -> Option<(&'static str, f64)> {
    if let Some(lo) = min
        && value < lo
    {
        return Some(("below min", lo));
    }
    if let Some(hi) = max
        && value > hi
    {
        return Some(("above max", hi));
    }
    None
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
        let mut violations = Vec::new();
        if let Some((side, limit)) = outside(t.final_torque_nm, t.torque_min_nm, t.torque_max_nm) {
            violations.push(format!("final torque {:.2} N·m {side} {limit:.2} N·m", t.final_torque_nm));
        }
        if let Some((side, limit)) = outside(t.final_angle_deg, t.angle_min_deg, t.angle_max_deg) {
            violations.push(format!("final angle {:.1}° {side} {limit:.1}°", t.final_angle_deg));
        }
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
                severity: severity_for(t.category),
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
                severity: severity_for(t.category),
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
