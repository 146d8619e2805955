//! Router and torque-window agent: dispatch by kind, stable ids, contained failures, window
//! verdicts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use jidoka_agents::{Agent, AgentsConfig, FindingDraft, Router, build_agents};
use jidoka_model::{Event, EventKind, Finding, Severity, StoredEvent, Subject, Verdict};
use serde_json::{Value, json};

fn tightening(seq: u64, txn: &str, torque: f64, angle: f64, verdict: &str, category: &str) -> StoredEvent {
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default();
    let event = Event::parse(
        json!({"source": "ctrl", "source_txn_id": txn, "occurred_at": "2026-11-24T08:00:00Z", "kind": "tightening_result",
               "data": {"tightening_id": txn, "vin": "VIN1", "station": "ST040", "tool": "NR-7", "pset": "3", "joint": "J1",
                        "category": category, "final_torque_nm": torque, "final_angle_deg": angle,
                        "torque_min_nm": 22.0, "torque_max_nm": 28.0, "angle_min_deg": 150.0, "angle_max_deg": 300.0,
                        "controller_verdict": verdict}}),
        t,
    )
    .expect("valid");
    StoredEvent { seq, event }
}

fn run(events: &[StoredEvent]) -> Vec<Finding> {
    let mut router = Router::new(build_agents(&AgentsConfig::default()));
    let mut out = Vec::new();
    for ev in events {
        router.process(ev, &mut out);
    }
    out
}

#[test]
fn window_checks_give_hold_review_or_nothing() {
    let events = vec![
        tightening(1, "T1", 25.0, 200.0, "OK", "A"),  // in window, OK: no finding
        tightening(2, "T2", 31.5, 200.0, "NOK", "A"), // torque above max: HOLD critical
        tightening(3, "T3", 25.0, 90.0, "NOK", "B"),  // angle below min: HOLD warning
        tightening(4, "T4", 25.0, 200.0, "NOK", "C"), // in window but controller NOK: REVIEW
    ];
    let findings = run(&events);
    let summary: Vec<(&str, Verdict, Severity)> =
        findings.iter().map(|f| (f.kind.as_str(), f.verdict, f.severity)).collect();
    assert_eq!(
        summary,
        vec![
            ("torque.out_of_window", Verdict::Hold, Severity::Critical),
            ("torque.out_of_window", Verdict::Hold, Severity::Warning),
            ("torque.controller_nok", Verdict::Review, Severity::Info),
        ]
    );
    assert!(findings[0].reason.contains("final torque 31.50 N·m above max 28.00 N·m"), "{}", findings[0].reason);
    assert!(findings[1].reason.contains("final angle 90.0° below min 150.0°"), "{}", findings[1].reason);
    assert_eq!(findings[0].evidence, vec![events[1].event.event_id.clone()]);
    assert_eq!(findings[0].correlation_id, "ctrl:T2");
    assert_eq!(findings[0].subject.vin.as_deref(), Some("VIN1"));
}

#[test]
fn replaying_gives_identical_findings() {
    let events: Vec<StoredEvent> = (0..50)
        .map(|i| {
            tightening(
                i + 1,
                &format!("T{i}"),
                20.0 + (i % 12) as f64,
                100.0 + (i * 7 % 250) as f64,
                if i % 7 == 0 { "NOK" } else { "OK" },
                "A",
            )
        })
        .collect();
    let first = run(&events);
    let second = run(&events);
    assert!(!first.is_empty());
    assert_eq!(first, second);
    let digests: Vec<String> = first.iter().map(Finding::content_digest).collect();
    assert_eq!(digests, second.iter().map(Finding::content_digest).collect::<Vec<_>>());
}

struct Fragile;

impl Agent for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }
    fn version(&self) -> &'static str {
        "0"
    }
    fn subscriptions(&self) -> &'static [EventKind] {
        &[EventKind::TighteningResult]
    }
    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        if event.seq == 2 {
            panic!("fragile agent trips on seq 2");
        }
        out.push(FindingDraft {
            kind: "fragile.seen".into(),
            verdict: Verdict::Pass,
            severity: Severity::Info,
            confidence: 2.0, // out of range on purpose: the router clamps it
            reason: "seen".into(),
            subject: Subject::default(),
            extra_evidence: vec!["ev-other".into()],
            details: Value::Null,
        });
    }
}

#[test]
fn a_panicking_agent_is_contained_and_reported() {
    let mut router = Router::new(vec![Box::new(Fragile)]);
    let mut out = Vec::new();
    for seq in 1..=3 {
        router.process(&tightening(seq, &format!("T{seq}"), 25.0, 200.0, "OK", "A"), &mut out);
    }
    let kinds: Vec<&str> = out.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, vec!["fragile.seen", "agent.failure", "fragile.seen"]);
    assert_eq!(out[1].severity, Severity::Critical);
    assert!(out[1].reason.contains("seq 2"));
    assert_eq!(out[0].confidence, 1.0);
    assert_eq!(out[0].evidence.len(), 2);
    assert_ne!(out[0].finding_id, out[2].finding_id);
}

#[test]
fn unsubscribed_kinds_reach_no_agent() {
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default();
    let scan = Event::parse(
        json!({"source": "s", "source_txn_id": "1", "occurred_at": "2026-11-24T08:00:00Z", "kind": "component_scanned",
               "data": {"vin": "V", "station": "S", "part_number": "P"}}),
        t,
    )
    .expect("valid");
    let mut router = Router::new(vec![Box::new(Fragile)]);
    let mut out = Vec::new();
    router.process(&StoredEvent { seq: 2, event: scan }, &mut out);
    assert!(out.is_empty());
}
