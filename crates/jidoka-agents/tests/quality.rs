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

mod common;
use common::simulate;

#[test]
fn every_claim_cites_events_of_the_stream_and_the_planted_causes_are_found() {
    let events = simulate(3000, 11);
    let ids: HashSet<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
    let mut router = Router::new(vec![
        Box::new(QualityAgent::new(QualityConfig::default(), None)),
        Box::new(AndonAgent::new(AndonConfig::default(), None)),
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
    // Past decisions come with the similar NCRs once the review board has made them.
    let with_decision = ncr.iter().filter(|f| f.details["likely_disposition"]["disposition"].is_string()).count();
    assert!(with_decision > suggested / 2, "{with_decision} of {suggested}");
}

#[test]
fn an_ncr_without_usable_text_is_refused_with_the_reason() {
    let mut agent = QualityAgent::new(QualityConfig::default(), None);
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

#[test]
fn similar_ncrs_bring_their_dispositions_and_the_most_frequent_is_offered() {
    let config = QualityConfig { min_history: 6, ..QualityConfig::default() };
    let mut router = Router::new(vec![Box::new(QualityAgent::new(config, None))]);
    let mut findings: Vec<Finding> = Vec::new();
    let mut seq = 0;
    let mut send = |kind: &str, data: serde_json::Value, findings: &mut Vec<Finding>| {
        seq += 1;
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).single().unwrap_or_default();
        let event = Event::parse(
            json!({"source": "qms", "source_txn_id": seq.to_string(), "occurred_at": "2026-11-02T06:00:00Z",
                   "kind": kind, "data": data}),
            at,
        )
        .expect("valid");
        let id = event.event_id.clone();
        router.process(&StoredEvent { seq, event }, findings);
        id
    };
    let texts = [
        ("D-SEAT-GAP", "seat rail gap at front mount"),
        ("D-SEAT-GAP", "gap between seat rail and floor"),
        ("D-SEAT-GAP", "seat rail not flush gap"),
        ("D-PAINT", "scratch on door paint"),
        ("D-PAINT", "paint chip near hinge"),
        ("D-PAINT", "small paint scratch door skin"),
    ];
    let mut decisions = Vec::new();
    for (i, (code, text)) in texts.iter().enumerate() {
        let ncr_id = format!("NCR-{i}");
        send(
            "ncr_created",
            json!({"ncr_id": ncr_id, "station": "ST040", "defect_code": code, "description": text}),
            &mut findings,
        );
        let disposition = match (i, *code) {
            (0, _) => "scrap",
            (_, "D-SEAT-GAP") => "rework",
            _ => "use_as_is",
        };
        decisions.push(send(
            "ncr_dispositioned",
            json!({"ncr_id": ncr_id, "disposition": disposition, "cause": "rail bolt", "decided_by": "MRB"}),
            &mut findings,
        ));
    }
    // A later decision replaces an earlier one: NCR-1 is reworked after all, then scrapped.
    send("ncr_dispositioned", json!({"ncr_id": "NCR-1", "disposition": "scrap"}), &mut findings);
    let last = send("ncr_dispositioned", json!({"ncr_id": "NCR-1", "disposition": "rework"}), &mut findings);
    decisions[1] = last;
    send(
        "ncr_created",
        json!({"ncr_id": "NCR-9", "station": "ST040", "description": "seat rail gap at the front"}),
        &mut findings,
    );
    let f = findings.iter().find(|f| f.kind == "ncr.triage").expect("triage");
    assert_eq!(f.details["suggestions"][0]["label"], "D-SEAT-GAP", "{}", f.details);
    let likely = &f.details["likely_disposition"];
    assert_eq!(likely["disposition"], "rework", "{}", f.details);
    assert_eq!(likely["of_similar"], 2);
    let seat: Vec<&serde_json::Value> =
        f.details["similar"].as_array().unwrap().iter().filter(|s| s["code"] == "D-SEAT-GAP").collect();
    assert_eq!(seat.len(), 3);
    for s in &seat {
        let i: usize = s["ncr_id"].as_str().unwrap()[4..].parse().unwrap();
        assert_eq!(s["disposition_event_id"], decisions[i].as_str(), "{s}");
        assert_eq!(s["disposition"], if i == 0 { "scrap" } else { "rework" });
    }
    let narrative = f.details["narrative"].as_str().unwrap();
    assert!(narrative.contains("dispositioned rework"), "{narrative}");
    for d in &decisions[1..3] {
        assert!(f.evidence.contains(d), "the decisions behind the suggestion are evidence");
        assert!(narrative.contains(&format!("[E:{d}]")), "{narrative}");
    }
    // An unknown disposition is refused with the field named.
    let at = Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).single().unwrap_or_default();
    let bad = Event::parse(
        json!({"source": "qms", "source_txn_id": "x", "occurred_at": "2026-11-02T06:00:00Z", "kind": "ncr_dispositioned",
               "data": {"ncr_id": "NCR-1", "disposition": "bin it"}}),
        at,
    )
    .unwrap_err();
    assert_eq!(bad.field, "data.disposition", "{bad}");
}

#[test]
fn with_no_codes_at_all_the_text_clusters_still_find_the_planted_causes() {
    let mut plant = jidoka_sim::Plant::default_plant().expect("default plant");
    plant.quality.uncoded_share = 1.0;
    let mut sim = jidoka_sim::Simulation::new(plant, 11, Some(3000), jidoka_sim::CurveMode::None);
    let mut events = Vec::new();
    while sim.has_more() {
        events.extend(sim.next_slot().events);
    }
    let mut router = Router::new(vec![Box::new(QualityAgent::new(QualityConfig::default(), None))]);
    let mut findings: Vec<Finding> = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        router.process(&StoredEvent { seq: i as u64 + 1, event }, &mut findings);
    }
    let claims: Vec<&Finding> = findings.iter().filter(|f| f.kind == "defect.pattern").collect();
    let reasons: Vec<&str> = claims.iter().map(|f| f.reason.as_str()).collect();
    // No code anywhere: every claim is on a text cluster, named by its first text.
    assert!(claims.iter().all(|f| f.details["code"].as_str().is_some_and(|c| c.starts_with("text:"))), "{reasons:?}");
    let seat = claims.iter().find(|f| f.reason.contains("fixture FX-040-B on shift B")).expect("worn fixture found");
    assert!(seat.details["text_cluster_exemplar"].as_str().is_some_and(|e| e.contains("rail")), "{}", seat.reason);
    assert!(
        reasons.iter().any(|r| r.contains("supplier_lot LOT-HEADLINER-STD-0003") && r.contains("headliner")),
        "{reasons:?}"
    );
    // Each uncoded NCR's triage names the cluster it joined.
    let triage: Vec<&Finding> = findings.iter().filter(|f| f.kind == "ncr.triage").collect();
    assert!(!triage.is_empty() && triage.iter().all(|f| f.details["text_cluster"]["label"].is_string()));
}

/// A photo of a defect as an inspection camera takes it: a grey part with a dark mark whose
/// place and direction depend on the kind of defect, each photo with its own light, a small
/// shift of the part and sensor noise.
fn defect_photo(code: &str, photo: u64) -> jidoka_connectors::image::Gray {
    let h = code.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let at = |shift: u32| ((h >> shift) & 0xff) as f64 / 255.0 * 0.8 + 0.1;
    let (from, to) = ((at(0), at(8)), (at(16), at(24)));
    let mut rng = photo.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let light = 0.8 + (next() % 30) as f64 / 100.0;
    let (jx, jy) = ((next() % 5) as f64 / 100.0 - 0.02, (next() % 5) as f64 / 100.0 - 0.02);
    let (w, hgt) = (80usize, 60usize);
    let mut pixels = Vec::with_capacity(w * hgt);
    for y in 0..hgt {
        for x in 0..w {
            let (px, py) = (x as f64 / w as f64 - jx, y as f64 / hgt as f64 - jy);
            let (dx, dy) = (to.0 - from.0, to.1 - from.1);
            let t = (((px - from.0) * dx + (py - from.1) * dy) / (dx * dx + dy * dy).max(1e-9)).clamp(0.0, 1.0);
            let d = ((px - from.0 - t * dx).powi(2) + (py - from.1 - t * dy).powi(2)).sqrt();
            let noise = (next() % 21) as f64 - 10.0;
            let v = light * (150.0 + 40.0 * px) - if d < 0.04 { 110.0 } else { 0.0 } + noise;
            pixels.push(v.clamp(0.0, 255.0) as u8);
        }
    }
    jidoka_connectors::image::Gray { width: w, height: hgt, pixels }
}

/// A plant whose NCRs carry no code and a description that says nothing ("see photo"), but a
/// photo: the photos' perceptual hashes alone let the agent find the worn fixture and the bad
/// lot.
#[test]
fn photos_find_the_planted_causes_when_the_ncr_text_says_nothing() {
    use jidoka_connectors::image::{format_hash, phash_gray};
    let events = simulate(3000, 11);
    let mut router = Router::new(vec![Box::new(QualityAgent::new(QualityConfig::default(), None))]);
    let mut findings: Vec<Finding> = Vec::new();
    // The inspection just before each NCR names the true defect.
    let mut truth: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut photos = 0;
    for mut e in events {
        match &mut e.event.payload {
            EventPayload::InspectionResult(i) => {
                if let Some(code) = &i.defect_code {
                    truth.insert(i.vin.clone(), code.clone());
                }
            }
            EventPayload::NcrCreated(n) => {
                let code = n.vin.as_ref().and_then(|v| truth.get(v)).cloned().unwrap_or_default();
                photos += 1;
                n.defect_code = None;
                n.description = format!("see photo {photos}");
                n.image_ref = Some(format!("ncr/{}.png", n.ncr_id));
                n.image_hash = Some(format_hash(phash_gray(&defect_photo(&code, photos))));
            }
            _ => {}
        }
        router.process(&e, &mut findings);
    }
    assert!(photos > 50, "{photos} NCRs");
    let claims: Vec<&Finding> = findings.iter().filter(|f| f.kind == "defect.pattern").collect();
    let image_claims: Vec<String> = claims
        .iter()
        .filter(|f| f.details["code"].as_str().is_some_and(|c| c.starts_with("image:")))
        .map(|f| f.reason.clone())
        .collect();
    assert_eq!(image_claims.len(), claims.len(), "every claim rests on an image cluster: {image_claims:?}");
    assert!(image_claims.iter().any(|c| c.contains("fixture FX-040-B on shift B")), "{image_claims:?}");
    assert!(image_claims.iter().any(|c| c.contains("supplier_lot LOT-HEADLINER-STD-0003")), "{image_claims:?}");
    assert!(image_claims.iter().all(|c| c.contains("like image ncr/")), "{image_claims:?}");
    // The triage findings name the image cluster each NCR joined.
    assert!(
        findings.iter().filter(|f| f.kind == "ncr.triage").all(|f| f.details["image_cluster"]["label"].is_string())
    );
}
