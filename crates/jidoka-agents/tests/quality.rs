//! The quality and Andon agents on a simulated line: every claim cites events of the stream,
//! the planted causes are claimed, bad NCR text is refused with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use jidoka_agents::andon::{AndonAgent, AndonConfig};
use jidoka_agents::narrative::citations;
use jidoka_agents::quality::{QualityAgent, QualityConfig};
use jidoka_agents::{Agent, FindingDraft, Router};
use jidoka_model::{Event, EventPayload, Finding, StoredEvent};
use serde_json::json;
use std::collections::HashSet;

fn simulate(units: u64, seed: u64) -> Vec<StoredEvent> {
    let plant = jidoka_sim::Plant::default_plant().expect("default plant");
    let mut sim = jidoka_sim::Simulation::new(plant, seed, Some(units), jidoka_sim::CurveMode::None);
    let mut events = Vec::new();
    while sim.has_more() {
        events.extend(sim.next_slot().events);
    }
    events.into_iter().enumerate().map(|(i, event)| StoredEvent { seq: i as u64 + 1, event }).collect()
}

#[test]
fn every_claim_cites_events_of_the_stream_and_the_planted_causes_are_found() {
    let events = simulate(3000, 11);
    let ids: HashSet<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
    let mut router = Router::new(vec![
        Box::new(QualityAgent::new(QualityConfig::default())),
        Box::new(AndonAgent::new(AndonConfig::default())),
    ]);
    let mut findings: Vec<Finding> = Vec::new();
    for e in &events {
        router.process(e, &mut findings);
    }
    assert!(!findings.iter().any(|f| f.kind == "agent.failure"));
    for f in &findings {
        let narrative = f.details["narrative"].as_str().unwrap_or_default();
        let cited = citations(narrative);
        assert!(!cited.is_empty(), "{} cites nothing: {narrative}", f.kind);
        for c in &cited {
            assert!(ids.contains(&c[2..]), "{} cites {c}, not an event of the stream", f.kind);
        }
        for e in &f.evidence {
            assert!(ids.contains(e.as_str()), "{} rests on {e}, not an event of the stream", f.kind);
        }
    }
    let claims: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == "defect.pattern")
        .map(|f| format!("{} {}", f.details["code"].as_str().unwrap_or(""), f.reason))
        .collect();
    assert!(
        claims.iter().any(|c| c.starts_with("D-SEAT-GAP") && c.contains("fixture FX-040-B on shift B")),
        "{claims:?}"
    );
    assert!(claims.iter().any(|c| c.contains("supplier_lot LOT-HEADLINER-STD-0003")), "{claims:?}");
    // Every Andon is triaged; early ones by the stated rules, later ones by the model.
    let raised = events.iter().filter(|e| matches!(e.event.payload, EventPayload::AndonRaised(_))).count();
    let triaged: Vec<&Finding> = findings.iter().filter(|f| f.kind == "andon.triage").collect();
    assert_eq!(triaged.len(), raised);
    assert_eq!(triaged[0].details["method"], "rules", "{}", triaged[0].details);
    assert!(triaged.iter().any(|f| f.details["method"] == "model"));
    assert!(triaged.iter().all(|f| f.details["team"].is_string()));
    // Uncoded NCRs: the first ones say there is too little history; later ones get codes.
    let ncr: Vec<&Finding> = findings.iter().filter(|f| f.kind == "ncr.triage").collect();
    assert!(ncr[0].details["insufficient_history"].as_str().is_some_and(|w| w.contains("too little history")));
    let suggested = ncr.iter().filter(|f| f.details["suggestions"].as_array().is_some_and(|s| s.len() == 3)).count();
    assert!(suggested > ncr.len() / 2, "{suggested} of {}", ncr.len());
}

#[test]
fn an_ncr_without_usable_text_is_refused_with_the_reason() {
    let mut agent = QualityAgent::new(QualityConfig::default());
    let ncr = |description: &str| {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).single().unwrap_or_default();
        let event = Event::parse(
            json!({"source": "qms", "source_txn_id": "NCR-1", "occurred_at": "2026-11-02T06:00:00Z", "kind": "ncr_created",
                   "data": {"ncr_id": "NCR-1", "vin": "VIN1", "station": "ST040", "description": description}}),
            at,
        )
        .expect("valid");
        StoredEvent { seq: 1, event }
    };
    let mut out: Vec<FindingDraft> = Vec::new();
    agent.on_event(&ncr(" -- "), &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].reason.contains("no letter or digit"), "{}", out[0].reason);
    out.clear();
    // The longest description the event model accepts (64 KiB) is cut, not refused.
    agent.on_event(&ncr(&"seat gap ".repeat(7000)), &mut out);
    assert!(out[0].reason.contains("too little history"), "{}", out[0].reason);
}
