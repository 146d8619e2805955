//! Torque audit on curves from the simulator's physics: each failure mode named with its
//! verdict, cold start, sampling rules, similar cases, one drift finding per episode, and no
//! panic on any curve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_agents::torque::features::extract;
use jidoka_agents::torque::{Auditor, TorqueAuditAgent, TorqueAuditConfig};
use jidoka_agents::{AgentsConfig, Router};
use jidoka_model::event::{Curve, JointCategory};
use jidoka_model::{Event, Finding, StoredEvent, TighteningResult, Verdict};
use jidoka_sim::curve::{TighteningMode, tighten};
use jidoka_sim::rng::Rng;
use proptest::prelude::*;

/// A tightening of the default plant's first joint in `mode`.
fn tightening(n: u64, mode: TighteningMode, drift: f64, category: JointCategory, rng: &mut Rng) -> TighteningResult {
    static PLANT: std::sync::OnceLock<jidoka_sim::Plant> = std::sync::OnceLock::new();
    let plant = PLANT.get_or_init(|| jidoka_sim::Plant::default_plant().unwrap());
    let station = &plant.stations[0];
    let spec = &station.joints[0];
    let r = tighten(&plant.joint_physics(spec), mode, drift, rng);
    let mut t = spec.report(&station.id, &spec.joint, n.to_string(), r);
    t.category = Some(category);
    t
}

fn warmed(rng: &mut Rng) -> Auditor {
    let mut auditor = Auditor::new(TorqueAuditConfig::default());
    for n in 0..40 {
        let a = auditor.assess(&tightening(n, TighteningMode::Good, 0.0, JointCategory::A, rng), "");
        assert!(a.failure_modes.iter().all(|m| m.mode == "no_golden_batch"), "good curve {n} flagged: {}", a.reason);
    }
    auditor
}

#[test]
fn every_failure_mode_is_named_with_its_verdict() {
    let mut rng = Rng::new(11);
    let mut auditor = warmed(&mut rng);
    let cases = [
        (TighteningMode::CrossThread, "cross_thread", Verdict::Hold),
        (TighteningMode::Stripped, "stripped", Verdict::Hold),
        (TighteningMode::Rehit, "rehit", Verdict::Hold),
        (TighteningMode::Missing, "missing", Verdict::Hold),
        (TighteningMode::SoftJoint, "soft_joint", Verdict::Review),
    ];
    for (mode, name, verdict) in cases {
        for k in 0..10 {
            let a = auditor.assess(&tightening(100 + k, mode, 0.0, JointCategory::A, &mut rng), "");
            let modes: Vec<&str> = a.failure_modes.iter().map(|m| m.mode).collect();
            // A fault may also leave the controller's window; the curve's own mode must be named.
            assert!(modes.contains(&name), "{mode:?} gave {modes:?}: {}", a.reason);
            assert!(a.verdict >= verdict, "{mode:?}: {:?}", a.verdict);
            assert!(a.confidence > 0.5 && !a.reason.is_empty());
        }
    }
    // Good curves after all that still pass, with a low anomaly score.
    for n in 0..50 {
        let a = auditor.assess(&tightening(500 + n, TighteningMode::Good, 0.0, JointCategory::A, &mut rng), "");
        assert_eq!(a.verdict, Verdict::Pass, "{}", a.reason);
        assert!(a.anomaly_score.unwrap() < 8.0);
    }
}

#[test]
fn cold_start_reviews_category_a_and_passes_category_c() {
    let mut rng = Rng::new(3);
    let mut auditor = Auditor::new(TorqueAuditConfig::default());
    let a = auditor.assess(&tightening(1, TighteningMode::Good, 0.0, JointCategory::A, &mut rng), "");
    assert_eq!(a.verdict, Verdict::Review);
    assert_eq!(a.kind, "torque.no_golden_batch");
    assert!(a.reason.contains("no golden batch yet"), "{}", a.reason);
    let mut auditor = Auditor::new(TorqueAuditConfig::default());
    let a = auditor.assess(&tightening(1, TighteningMode::Good, 0.0, JointCategory::C, &mut rng), "");
    assert_eq!(a.verdict, Verdict::Pass);
    // A fault with a physical signature is caught even without a golden batch.
    let a = auditor.assess(&tightening(2, TighteningMode::Missing, 0.0, JointCategory::C, &mut rng), "");
    assert_eq!(a.verdict, Verdict::Hold);
}

#[test]
fn category_a_is_never_sampled() {
    let mut config = TorqueAuditConfig::default();
    config.category_a.sample_every = 5;
    config.category_c.sample_every = 0;
    let errors = AgentsConfig { torque_audit: config, ..AgentsConfig::default() }.validate();
    let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    assert!(paths.contains(&"agents.torque_audit.category_a.sample_every"), "{errors:?}");
    assert!(paths.contains(&"agents.torque_audit.category_c.sample_every"), "{errors:?}");
    // Category C sampled one in three: two of three curves are not analysed.
    let mut config = TorqueAuditConfig::default();
    config.category_c.sample_every = 3;
    let mut auditor = Auditor::new(config);
    let mut rng = Rng::new(5);
    let sampled: Vec<bool> = (0..6)
        .map(|n| auditor.assess(&tightening(n, TighteningMode::Good, 0.0, JointCategory::C, &mut rng), "").sampled_out)
        .collect();
    assert_eq!(sampled, vec![false, true, true, false, true, true]);
}

fn stored(seq: u64, t: &TighteningResult) -> StoredEvent {
    let event = Event::parse(
        serde_json::json!({"source": "ctrl", "source_txn_id": format!("T{seq}"), "occurred_at": "2026-11-24T08:00:00Z",
                           "kind": "tightening_result", "data": t}),
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap();
    StoredEvent { seq, event }
}

#[test]
fn agent_reports_similar_cases_and_one_drift_finding_per_episode() {
    let mut rng = Rng::new(21);
    let mut router = Router::new(vec![Box::new(TorqueAuditAgent::new(TorqueAuditConfig::default()))]);
    let mut findings: Vec<Finding> = Vec::new();
    let mut seq = 0;
    let mut feed = |event: Event, findings: &mut Vec<Finding>| {
        seq += 1;
        router.process(&StoredEvent { seq, event }, findings);
    };
    let ev = |t: TighteningResult| stored(0, &t).event;
    for n in 0..150 {
        feed(ev(tightening(n, TighteningMode::Good, 0.0, JointCategory::B, &mut rng)), &mut findings);
    }
    assert!(findings.is_empty(), "{findings:?}");
    feed(ev(tightening(200, TighteningMode::CrossThread, 0.0, JointCategory::B, &mut rng)), &mut findings);
    feed(ev(tightening(201, TighteningMode::CrossThread, 0.0, JointCategory::B, &mut rng)), &mut findings);
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0].kind, "torque.cross_thread");
    let similar = &findings[1].details["similar"][0];
    assert_eq!(similar["reference"], findings[0].finding_id.as_str(), "{similar}");
    assert_eq!(similar["failure_modes"][0], "cross_thread");
    findings.clear();
    // The tool drifts by 6 % of target and stays there: one finding, not one per curve.
    for n in 300..700 {
        feed(ev(tightening(n, TighteningMode::Good, 0.06, JointCategory::B, &mut rng)), &mut findings);
    }
    let drift: Vec<&Finding> = findings.iter().filter(|f| f.kind == "torque.drift").collect();
    assert_eq!(drift.len(), 1, "{:?}", drift.iter().map(|f| &f.reason).collect::<Vec<_>>());
    assert!(drift[0].reason.contains("final torque drifted +"), "{}", drift[0].reason);
    assert_eq!(drift[0].verdict, Verdict::Review);
    let tool = drift[0].subject.tool.clone();
    // The tool is recalibrated at its drifted setting (the plant accepts it): a new baseline is
    // learned, and only a further drift opens a new episode.
    findings.clear();
    let calibration = Event::parse(
        serde_json::json!({"source": "cmms", "source_txn_id": "M1", "occurred_at": "2026-11-24T09:00:00Z",
                           "kind": "maintenance_record",
                           "data": {"record_id": "M1", "equipment": tool, "maintenance_kind": "calibration",
                                    "description": "transducer recalibrated"}}),
        chrono::DateTime::UNIX_EPOCH,
    )
    .unwrap();
    feed(calibration, &mut findings);
    for n in 700..900 {
        feed(ev(tightening(n, TighteningMode::Good, 0.06, JointCategory::B, &mut rng)), &mut findings);
    }
    assert!(findings.iter().all(|f| f.kind != "torque.drift"), "the new baseline is in control");
    for n in 900..1100 {
        feed(ev(tightening(n, TighteningMode::Good, 0.12, JointCategory::B, &mut rng)), &mut findings);
    }
    assert_eq!(findings.iter().filter(|f| f.kind == "torque.drift").count(), 1);
}

fn any_curve() -> impl Strategy<Value = Curve> {
    let value = prop_oneof![
        8 => -1e3f64..1e3,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(0.0),
    ];
    (0usize..120).prop_flat_map(move |n| {
        (
            proptest::collection::vec(value.clone(), n),
            proptest::collection::vec(value.clone(), n.saturating_sub(1)..=n + 1),
            proptest::collection::vec(0.0f64..10.0, 0..=n),
        )
            .prop_map(|(torque_nm, angle_deg, time_s)| Curve { angle_deg, torque_nm, time_s })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Empty, one-point, NaN, mismatched, non-monotonic curves: an error or features, never a
    /// panic; and the auditor turns every one into an assessment.
    #[test]
    fn no_curve_panics(curve in any_curve()) {
        if let Ok(f) = extract(&curve) {
            prop_assert!(f.vector().iter().all(|v| v.is_finite()), "{:?}", f);
        }
        let mut rng = Rng::new(1);
        let mut t = tightening(1, TighteningMode::Good, 0.0, JointCategory::A, &mut rng);
        let mut auditor = Auditor::new(TorqueAuditConfig::default());
        for n in 0..25 {
            let good = tightening(n, TighteningMode::Good, 0.0, JointCategory::A, &mut rng);
            auditor.assess(&good, "");
        }
        t.curve = Some(curve);
        let a = auditor.assess(&t, "");
        prop_assert!(!a.reason.is_empty());
    }
}
