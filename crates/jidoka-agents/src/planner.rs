//! Planners: slow, pure computations beside the writer. A planner gets a consistent snapshot
//! at one log position ([`PlanInput`]): a copy of every agent's state at that position, taken
//! by the writer between two commits, and the window of the log that ends there (the log below
//! a position never changes). It works under a [`Budget`] (a deadline and a cancel flag) and
//! returns a result that the service logs as a `plan_computed` event naming the position it
//! was computed from. Governance, the audit trail and replay then treat it as any other event;
//! a replay never runs the planner again.
//!
//! Planners here: [`JointCapability`] (the capability of every joint from its recent good
//! tightenings: the statistics of the torque audit's golden batch, recomputed on a schedule).

use crate::Router;
use crate::torque::TorqueAuditAgent;
use jidoka_model::event::OkNok;
use jidoka_model::{EventKind, EventPayload, StoredEvent};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Why a planner stopped without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanStop {
    /// A newer request for the same planner replaced this one.
    Superseded,
    /// The deadline passed first.
    DeadlineExceeded,
}

/// How long a planner may run, and whether it is still wanted.
#[derive(Debug, Clone)]
pub struct Budget {
    pub deadline: Instant,
    pub cancel: Arc<AtomicBool>,
}

impl Budget {
    /// `Err` once the plan is no longer wanted or out of time: check it between steps.
    pub fn check(&self) -> Result<(), PlanStop> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(PlanStop::Superseded)
        } else if Instant::now() >= self.deadline {
            Err(PlanStop::DeadlineExceeded)
        } else {
            Ok(())
        }
    }
}

/// What a plan is computed from: one log position, the agents' state there, and the
/// planner's window of the log up to it.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The log position the plan is computed from.
    pub at_seq: u64,
    /// Every agent's state at `at_seq`; `None` when agents are off.
    pub agents: Option<&'a Router>,
    /// The planner's window of the log, `(at_seq - window, at_seq]`, in log order, only the
    /// kinds of [`Planner::reads`].
    pub events: &'a [StoredEvent],
}

/// A slow computation over the agents' state and a window of the log at one position.
pub trait Planner: Send + Sync {
    /// Stable name: the event's `planner` field and its idempotency key.
    fn name(&self) -> &'static str;
    /// Bumped whenever what it computes changes.
    fn version(&self) -> &'static str;
    /// The kinds of event it reads.
    fn reads(&self) -> &'static [EventKind];
    /// How many log positions back from the snapshot position it reads.
    fn window(&self) -> u64;
    /// The result from the snapshot.
    fn plan(&self, input: &PlanInput<'_>, budget: &Budget) -> Result<Value, PlanStop>;
}

/// The capability of every joint (station, joint, pset) from its last `per_joint` tightenings
/// the controller judged OK: count, mean, standard deviation and median of final torque and
/// angle, and Cp / Cpk of the torque against the joint's limits where the results carry them;
/// beside each, the state of the torque audit's golden batch for that joint at the same
/// position (members of capacity, whether it was seeded from suspect curves), so a quality
/// engineer sees which joints the curve audit is not yet armed for.
#[derive(Debug, Clone)]
pub struct JointCapability {
    pub per_joint: usize,
    pub window: u64,
}

impl Default for JointCapability {
    fn default() -> Self {
        JointCapability { per_joint: 50, window: 500_000 }
    }
}

fn stats(values: &[f64]) -> Value {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    json!({"mean": mean, "sd": var.sqrt(), "median": median, "min": sorted[0], "max": sorted[sorted.len() - 1]})
}

impl Planner for JointCapability {
    fn name(&self) -> &'static str {
        "joint-capability"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn reads(&self) -> &'static [EventKind] {
        &[EventKind::TighteningResult]
    }

    fn window(&self) -> u64 {
        self.window
    }

    fn plan(&self, input: &PlanInput<'_>, budget: &Budget) -> Result<Value, PlanStop> {
        let events = input.events;
        let audit = input.agents.and_then(|r| r.agent::<TorqueAuditAgent>());
        // (station, joint, pset) → the newest OK results, newest first, with the limits seen.
        type Key = (String, String, String);
        type Sample = (Vec<f64>, Vec<f64>, Option<(f64, f64)>);
        let mut joints: BTreeMap<Key, Sample> = BTreeMap::new();
        for (i, ev) in events.iter().enumerate().rev() {
            if i % 4096 == 0 {
                budget.check()?;
            }
            let EventPayload::TighteningResult(t) = &ev.event.payload else { continue };
            if t.controller_verdict != Some(OkNok::Ok) {
                continue;
            }
            let entry = joints.entry((t.station.clone(), t.joint.clone(), t.pset.clone())).or_default();
            if entry.0.len() >= self.per_joint {
                continue;
            }
            entry.0.push(t.final_torque_nm);
            entry.1.push(t.final_angle_deg);
            if entry.2.is_none()
                && let (Some(lo), Some(hi)) = (t.torque_min_nm, t.torque_max_nm)
            {
                entry.2 = Some((lo, hi));
            }
        }
        budget.check()?;
        let rows: Vec<Value> = joints
            .into_iter()
            .map(|((station, joint, pset), (torque, angle, limits))| {
                let t = stats(&torque);
                let (mean, sd) = (t["mean"].as_f64().unwrap_or(0.0), t["sd"].as_f64().unwrap_or(0.0));
                let (cp, cpk) = match limits {
                    Some((lo, hi)) if sd > 0.0 => {
                        (Some((hi - lo) / (6.0 * sd)), Some(((hi - mean).min(mean - lo)) / (3.0 * sd)))
                    }
                    _ => (None, None),
                };
                let golden = audit.map(|a| match a.golden_batch(&format!("{station}/{joint}/{pset}")) {
                    Some((members, capacity)) => json!({"members": members, "capacity": capacity}),
                    None => json!({"members": 0}),
                });
                json!({"station": station, "joint": joint, "pset": pset, "n": torque.len(),
                       "torque_nm": t, "angle_deg": stats(&angle),
                       "torque_limits_nm": limits.map(|(lo, hi)| json!([lo, hi])), "cp": cp, "cpk": cpk,
                       "golden_batch": golden})
            })
            .collect();
        Ok(json!({"per_joint": self.per_joint, "computed_from_seq": input.at_seq, "joints": rows}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(seq: u64, joint: &str, torque: f64, ok: bool) -> StoredEvent {
        let v = json!({"source": "c", "source_txn_id": format!("T{seq}"), "occurred_at": "2026-11-24T08:00:00Z",
            "kind": "tightening_result", "data": {"tightening_id": seq.to_string(), "station": "ST040", "tool": "NR-7",
            "pset": "3", "joint": joint, "final_torque_nm": torque, "final_angle_deg": 200.0,
            "torque_min_nm": 22.0, "torque_max_nm": 28.0, "controller_verdict": if ok { "OK" } else { "NOK" }}});
        StoredEvent { seq, event: jidoka_model::Event::parse(v, chrono::Utc::now()).unwrap() }
    }

    fn budget(ms: u64) -> Budget {
        Budget { deadline: Instant::now() + Duration::from_millis(ms), cancel: Arc::default() }
    }

    #[test]
    fn capability_uses_the_newest_good_results_of_each_joint() {
        // J1: 60 old results at 20 N·m, then 50 new ones alternating 24.9 / 25.1; a NOK in between.
        let mut events: Vec<StoredEvent> = (0..60).map(|i| result(i + 1, "J1", 20.0, true)).collect();
        events.push(result(61, "J1", 40.0, false));
        events.extend((0..50).map(|i| result(62 + i, "J1", if i % 2 == 0 { 24.9 } else { 25.1 }, true)));
        events.push(result(200, "J2", 25.0, true));
        let planner = JointCapability { per_joint: 50, window: 1000 };
        let out = planner.plan(&PlanInput { at_seq: 200, agents: None, events: &events }, &budget(10_000)).unwrap();
        let joints = out["joints"].as_array().unwrap();
        assert_eq!(joints.len(), 2);
        let j1 = &joints[0];
        assert_eq!((j1["joint"].as_str(), j1["n"].as_u64()), (Some("J1"), Some(50)));
        assert!((j1["torque_nm"]["mean"].as_f64().unwrap() - 25.0).abs() < 1e-9, "only the newest 50: {j1}");
        let sd = j1["torque_nm"]["sd"].as_f64().unwrap();
        let cpk = j1["cpk"].as_f64().unwrap();
        assert!((cpk - 3.0 / (3.0 * sd)).abs() < 1e-9, "Cpk = min(USL - mean, mean - LSL) / 3 sd: {j1}");
        // One result: no spread, no capability.
        assert!(joints[1]["cpk"].is_null());
    }

    #[test]
    fn a_cancelled_or_late_plan_stops() {
        let events: Vec<StoredEvent> = (0..10_000).map(|i| result(i + 1, "J1", 25.0, true)).collect();
        let planner = JointCapability::default();
        let b = budget(10_000);
        b.cancel.store(true, Ordering::Relaxed);
        let input = PlanInput { at_seq: 10_000, agents: None, events: &events };
        assert_eq!(planner.plan(&input, &b), Err(PlanStop::Superseded));
        assert_eq!(planner.plan(&input, &budget(0)), Err(PlanStop::DeadlineExceeded));
    }
}
