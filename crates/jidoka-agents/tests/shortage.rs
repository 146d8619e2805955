//! The shortage forecast against the simulated plant's ground truth: with nothing random in the
//! deliveries its run-out is the simulator's stock-out, unit for unit; with late suppliers it
//! warns before the stock-outs; bad material records are named and the rest goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_agents::shortage::{self, ShortageAgent, ShortageConfig};
use jidoka_agents::{Agent, Router};
use jidoka_model::{Event, Finding, StoredEvent};
use jidoka_sim::{CurveMode, GroundTruth, Plant, Simulation};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Part → (first unit short with deliveries on their promise, line-side stock).
type RunOuts = HashMap<String, (Option<String>, f64)>;

struct Run {
    router: Router,
    seq: u64,
    findings: Vec<Finding>,
    truth: Vec<GroundTruth>,
    /// Per forecast round: (time, part → first unit short with deliveries on their promise, stock).
    rounds: Vec<(chrono::DateTime<chrono::Utc>, RunOuts)>,
}

impl Run {
    fn new(plant: &Plant) -> Run {
        let master = plant.master_data();
        let agents: Vec<Box<dyn Agent>> = vec![Box::new(ShortageAgent::new(ShortageConfig::default(), Some(&master)))];
        Run {
            router: Router::new(agents).with_master(Some(Arc::new(master))),
            seq: 0,
            findings: Vec::new(),
            truth: Vec::new(),
            rounds: Vec::new(),
        }
    }

    fn agent(&self) -> &ShortageAgent {
        self.router.agent::<ShortageAgent>().unwrap()
    }

    fn push(&mut self, event: Event) {
        self.seq += 1;
        let before = self.agent().rounds;
        self.router.process(&StoredEvent { seq: self.seq, event }, &mut self.findings);
        let a = self.agent();
        if a.rounds != before {
            let at = a.forecasts().next().map(|f| f.computed_at);
            let map = a.forecasts().map(|f| (f.part.clone(), (f.run_out.as_ref().map(|r| r.vin.clone()), f.stock)));
            if let Some(at) = at {
                self.rounds.push((at, map.collect()));
            }
        }
    }

    fn simulate(plant: &Plant, seed: u64, slots: u64) -> Run {
        let mut run = Run::new(plant);
        let mut sim = Simulation::new(plant.clone(), seed, None, CurveMode::None).with_release_ahead(600);
        for _ in 0..slots {
            let slot = sim.next_slot();
            run.truth.extend(slot.truth.into_iter().filter(|t| t.fault == "stock_out"));
            for ev in slot.events {
                run.push(ev);
            }
        }
        run
    }
}

/// The default plant with the steel supplier's lead time at three hours (the 200-piece kanban
/// loop of the frame covers 3 h 20 min): the frame runs short once per bin. No scan goes wrong
/// (a wrong part scanned takes another part's stock), no delivery comes early.
fn tight_plant() -> Plant {
    let mut plant = Plant::default_plant().unwrap();
    for s in &mut plant.suppliers {
        s.late_rate = 0.0;
        s.early_h_max = 0.0;
        if s.id == "SUP-STEEL" {
            s.lead_time_h = 3.0;
        }
    }
    let f = &mut plant.faults;
    (f.wrong_part, f.wrong_variant, f.superseded, f.duplicate_serial, f.skipped_operation) = (0.0, 0.0, 0.0, 0.0, 0.0);
    plant
}

/// The default plant whose steel supplier is late on 30 % of its deliveries, by up to 3 h.
fn late_plant() -> Plant {
    let mut plant = Plant::default_plant().unwrap();
    for s in &mut plant.suppliers {
        if s.id == "SUP-STEEL" {
            (s.late_rate, s.late_h_max) = (0.3, 3.0);
        }
    }
    plant
}

/// The warning in force for `part` at `at`: the last predicted, urgent or cleared finding before.
fn in_force<'a>(findings: &'a [Finding], part: &str, at: chrono::DateTime<chrono::Utc>) -> Option<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.subject.part_number.as_deref() == Some(part) && f.occurred_at < at)
        .rfind(|f| [shortage::PREDICTED, shortage::URGENT, shortage::CLEARED].contains(&f.kind.as_str()))
        .filter(|f| f.kind != shortage::CLEARED)
}

#[test]
fn with_deliveries_on_their_promise_the_run_out_is_the_simulators_stock_out_unit_for_unit() {
    let plant = tight_plant();
    let run = Run::simulate(&plant, 3, 900);
    let outs: Vec<&GroundTruth> = run.truth.iter().collect();
    assert!(outs.len() >= 5, "the tight loop runs short several times: {}", outs.len());
    let mut checked = 0;
    let onset =
        |t: &GroundTruth| chrono::DateTime::parse_from_rfc3339(&t.onset_at).unwrap().with_timezone(&chrono::Utc);
    for (n, t) in outs.iter().enumerate() {
        let part = t.detail["part"].as_str().unwrap();
        let previous = outs[..n].iter().rev().find(|p| p.detail["part"] == part).map(|p| onset(p));
        // An hour ahead, and in the last round before the stock-out; after the previous one.
        for ahead in [chrono::Duration::hours(1), chrono::Duration::zero()] {
            let Some((at, map)) = run.rounds.iter().rev().find(|(at, _)| *at < onset(t) - ahead) else { continue };
            if previous.is_some_and(|p| p >= *at) {
                continue;
            }
            let Some((vin, stock)) = map.get(part) else { continue };
            if *stock < 0.0 {
                // Still inside the previous stock-out.
                continue;
            }
            assert_eq!(
                vin.as_deref(),
                Some(t.vin.as_str()),
                "{part} forecast at {at} for the stock-out at {}",
                onset(t)
            );
            checked += 1;
        }
    }
    // Each stock-out checked at least in its last round (the stock is back above zero between
    // them), most of them an hour ahead too.
    assert!(checked > outs.len(), "{checked} checks for {} stock-outs", outs.len());
}

#[test]
fn late_suppliers_are_warned_of_before_the_line_runs_short() {
    let plant = late_plant();
    let run = Run::simulate(&plant, 5, 2880);
    let frame: Vec<&GroundTruth> = run.truth.iter().filter(|t| t.detail["part"] == "SUBFRAME-F").collect();
    assert!(frame.len() >= 3, "{} stock-outs of the frame in two days", frame.len());
    // The stock-outs of the frame with a warning in force, issued at most 8 h before.
    let warned: Vec<&Finding> = frame
        .iter()
        .filter_map(|t| {
            let onset = chrono::DateTime::parse_from_rfc3339(&t.onset_at).unwrap().with_timezone(&chrono::Utc);
            in_force(&run.findings, "SUBFRAME-F", onset)
        })
        .collect();
    assert!(warned.len() * 10 >= frame.len() * 8, "{} of {} stock-outs warned of", warned.len(), frame.len());
    // A warning names the station, the first unit short, the probability and the supplier record.
    let w = warned[0];
    assert_eq!(w.subject.station.as_deref(), Some("ST010"));
    let f = &w.details["forecast"];
    assert!(f["p_horizon"].as_f64().unwrap() >= 0.5, "{f}");
    assert!(f["expected"]["vin"].is_string(), "{f}");
    assert!(w.reason.contains("SUP-STEEL") && w.reason.contains("first short"), "{}", w.reason);
    // Every warning of the frame is followed by a stock-out of it or cleared.
    let frame_warnings = run
        .findings
        .iter()
        .filter(|f| f.subject.part_number.as_deref() == Some("SUBFRAME-F") && f.kind == shortage::PREDICTED);
    assert!(frame_warnings.count() >= warned.len().min(1));
}

fn material(kind: &str, id: &str, at: &str, data: Value) -> Event {
    Event::parse(
        json!({"source": "wms", "source_txn_id": id, "occurred_at": at, "kind": kind, "data": data}),
        chrono::Utc::now(),
    )
    .unwrap()
}

#[test]
fn bad_material_records_are_named_and_the_forecast_goes_on() {
    let plant = tight_plant();
    let mut run = Run::simulate(&plant, 3, 60);
    let parts_before = run.agent().forecasts().count();
    assert!(parts_before >= 3);
    // A delivery and a call-off of a part the BOM does not have; a delivery dated a year late.
    run.push(material(
        "supplier_delivery",
        "x1",
        "2026-11-02T07:00:00Z",
        json!({"delivery_id": "D-X", "supplier": "SUP-STEEL", "part_number": "NOT-A-PART", "quantity": 10,
               "supplier_lot": "L1", "promised_at": "2026-11-02T06:30:00Z", "delivered_at": "2026-11-02T07:00:00Z"}),
    ));
    run.push(material(
        "material_call_off",
        "x2",
        "2026-11-02T07:00:00Z",
        json!({"call_off_id": "CO-X", "supplier": "SUP-STEEL", "part_number": "NOT-A-PART", "quantity": 10,
               "promised_at": "2026-11-02T09:00:00Z"}),
    ));
    run.push(material(
        "supplier_delivery",
        "x3",
        "2026-11-02T07:00:01Z",
        json!({"delivery_id": "D-Y", "supplier": "SUP-STEEL", "part_number": "SUBFRAME-F", "quantity": 40,
               "supplier_lot": "L2", "promised_at": "2025-11-02T06:30:00Z", "delivered_at": "2026-11-02T07:00:00Z"}),
    ));
    let refused: Vec<&Finding> = run.findings.iter().filter(|f| f.kind == shortage::REFUSED).collect();
    assert_eq!(refused.len(), 3, "{:?}", refused.iter().map(|f| &f.reason).collect::<Vec<_>>());
    assert!(refused[0].reason.contains("NOT-A-PART") && refused[0].reason.contains("outside the BOM"));
    assert!(refused[2].reason.contains("D-Y"), "{}", refused[2].reason);
    // The year-late delivery is not in the record; the forecast still covers every part.
    assert_eq!(run.agent().supplier_record("SUP-STEEL").map_or(0, |r| r.late), 0);
    assert_eq!(run.agent().forecasts().count(), parts_before);
    // A negative stock count does not enter the log at all, naming the field.
    let err = Event::parse(
        json!({"source": "wms", "source_txn_id": "x4", "occurred_at": "2026-11-02T07:00:00Z",
               "kind": "material_transaction",
               "data": {"part_number": "SUBFRAME-F", "movement": "count", "quantity": -5}}),
        chrono::Utc::now(),
    )
    .unwrap_err();
    assert_eq!(err.field, "data.quantity");
}

#[test]
fn the_same_log_gives_the_same_warnings() {
    let plant = late_plant();
    let mut sim = Simulation::new(plant.clone(), 9, None, CurveMode::None).with_release_ahead(600);
    let mut events = Vec::new();
    for _ in 0..700 {
        events.extend(sim.next_slot().events);
    }
    let replay = || {
        let mut run = Run::new(&plant);
        for e in &events {
            run.push(e.clone());
        }
        run.findings.iter().map(|f| (f.finding_id.clone(), f.content_digest())).collect::<Vec<_>>()
    };
    let first = replay();
    assert!(first.iter().any(|(id, _)| id.contains("shortage")) || !first.is_empty());
    assert_eq!(first, replay());
}

#[test]
fn overdue_deliveries_of_parts_at_risk_are_proposed_for_expediting_once_each() {
    let plant = late_plant();
    let mut run = Run::simulate(&plant, 5, 2880);
    let expedites: Vec<&Finding> = run.findings.iter().filter(|f| f.kind == shortage::EXPEDITE).collect();
    assert!(!expedites.is_empty(), "no expedite in two days of late deliveries");
    let mut ids = std::collections::HashSet::new();
    for f in &expedites {
        let e = &f.details["expedite"];
        let id = e["call_off_id"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "{id} proposed twice");
        assert_eq!(f.verdict, jidoka_model::Verdict::Review);
        // Only a delivery already overdue, of a part at risk, and the reason says so.
        let promised = chrono::DateTime::parse_from_rfc3339(e["promised_at"].as_str().unwrap()).unwrap();
        assert!(promised < f.occurred_at, "{id} was not overdue: {}", f.reason);
        assert!(e["p_horizon"].as_f64().unwrap() >= ShortageConfig::default().expedite_probability);
        assert!(f.reason.contains(id) && f.reason.contains("overdue"), "{}", f.reason);
    }
    // Each proposed delivery that came in says so once (its expedite, if still waiting, is
    // withdrawn by the service); none that was not proposed.
    let withdrawn: Vec<&str> = run
        .findings
        .iter()
        .filter(|f| f.kind == shortage::EXPEDITE_WITHDRAWN)
        .map(|f| f.details["expedite"]["call_off_id"].as_str().unwrap())
        .collect();
    assert!(!withdrawn.is_empty() && withdrawn.iter().all(|id| ids.contains(*id)), "{withdrawn:?}");
    assert_eq!(withdrawn.len(), withdrawn.iter().collect::<std::collections::HashSet<_>>().len());
    // The frame's stock-outs: most had an expedite of the frame proposed in the 8 h before.
    let frame_outs: Vec<chrono::DateTime<chrono::Utc>> = run
        .truth
        .iter()
        .filter(|t| t.detail["part"] == "SUBFRAME-F")
        .map(|t| chrono::DateTime::parse_from_rfc3339(&t.onset_at).unwrap().with_timezone(&chrono::Utc))
        .collect();
    let preceded = frame_outs
        .iter()
        .filter(|o| {
            expedites.iter().any(|f| {
                f.subject.part_number.as_deref() == Some("SUBFRAME-F")
                    && f.occurred_at < **o
                    && **o - f.occurred_at <= chrono::Duration::hours(8)
            })
        })
        .count();
    assert!(
        preceded * 2 >= frame_outs.len(),
        "{preceded} of {} frame stock-outs preceded by an expedite",
        frame_outs.len()
    );
    // The supplier's new promise for a call-off in transit replaces the old one: no second
    // delivery is expected.
    let (part, open) = run
        .agent()
        .forecasts()
        .find_map(|f| f.in_transit.first().map(|t| (f.part.clone(), t.clone())))
        .expect("a delivery in transit");
    let before = run.agent().forecasts().find(|f| f.part == part).unwrap().in_transit.len();
    let at = run.agent().forecasts().next().unwrap().computed_at + chrono::Duration::seconds(1);
    let promise = at + chrono::Duration::minutes(30);
    run.push(material(
        "material_call_off",
        "revised-1",
        &jidoka_model::event::rfc3339::format(&at),
        json!({"call_off_id": open.call_off_id, "supplier": "SUP-STEEL", "part_number": part, "quantity": open.quantity,
               "promised_at": jidoka_model::event::rfc3339::format(&promise)}),
    ));
    let f = run.agent().forecasts().find(|f| f.part == part).unwrap();
    assert_eq!(f.in_transit.len(), before);
    let revised = f.in_transit.iter().find(|t| t.call_off_id == open.call_off_id).unwrap();
    assert_eq!(revised.promised_at, promise);
    assert_eq!(revised.ordered_at, open.ordered_at);
}

#[test]
fn settings_out_of_range_are_named() {
    let mut errors = Vec::new();
    ShortageConfig::default().validate("agents.shortage", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let bad = ShortageConfig { expedite_probability: 0.0, urgent_h: 9.0, samples: 0, ..ShortageConfig::default() };
    bad.validate("agents.shortage", &mut errors);
    let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(paths, ["agents.shortage.expedite_probability", "agents.shortage.urgent_h", "agents.shortage.samples"]);
}
