//! The build queue from the log (released work orders, units started, disruptions) and the
//! re-sequencing planner over it: the simulated plant's MES releases four hours ahead, a part is
//! declared short, and the proposal keeps the frozen head, takes every unit that needs the part
//! out of the hours it is missing, and comes back through the log as one finding to decide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_agents::build_queue::{self, BuildQueueAgent, Resequence};
use jidoka_agents::planner::{Budget, PlanInput, Planner};
use jidoka_agents::{Agent, Router};
use jidoka_model::{Event, EventPayload, Finding, StoredEvent, Verdict};
use jidoka_sim::{CurveMode, Plant, Simulation};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Log {
    router: Router,
    seq: u64,
    findings: Vec<Finding>,
}

impl Log {
    fn new(plant: &Plant) -> Log {
        let master = Some(Arc::new(plant.master_data()));
        let agents: Vec<Box<dyn Agent>> = vec![Box::new(BuildQueueAgent::new())];
        Log { router: Router::new(agents).with_master(master), seq: 0, findings: Vec::new() }
    }

    fn push(&mut self, event: Event) -> u64 {
        self.seq += 1;
        let stored = StoredEvent { seq: self.seq, event };
        self.router.process(&stored, &mut self.findings);
        self.seq
    }

    fn push_json(&mut self, v: Value) -> u64 {
        self.push(Event::parse(v, chrono::Utc::now()).unwrap())
    }

    fn agent(&self) -> &BuildQueueAgent {
        self.router.agent::<BuildQueueAgent>().unwrap()
    }

    /// The planner's result at this position, logged back as its `plan_computed`.
    fn plan(&mut self, planner: &Resequence) -> Value {
        let budget = Budget { deadline: Instant::now() + Duration::from_secs(10), cancel: Arc::default() };
        let result =
            planner.plan(&PlanInput { at_seq: self.seq, agents: Some(&self.router), events: &[] }, &budget).unwrap();
        let at = self.seq;
        self.push_json(json!({"source": "planner:resequence", "source_txn_id": format!("resequence@{at}"),
            "occurred_at": "2026-12-07T08:00:00Z", "kind": "plan_computed",
            "data": {"planner": "resequence", "computed_from_seq": at, "result": result}}));
        result
    }
}

/// The default plant's line: the MES releases 240 units ahead; `slots` takts run.
fn plant_log(slots: u64) -> (Plant, Simulation, Log) {
    let plant = Plant::default_plant().unwrap();
    let mut sim = Simulation::new(plant.clone(), 11, None, CurveMode::None).with_release_ahead(240);
    let mut log = Log::new(&plant);
    for _ in 0..slots {
        for ev in sim.next_slot().events {
            if matches!(ev.payload, EventPayload::WorkOrderReleased(_) | EventPayload::UnitEnteredStation(_)) {
                log.push(ev);
            }
        }
    }
    (plant, sim, log)
}

fn disruption(id: &str, data: Value, at: &str) -> Value {
    let mut data = data;
    data["disruption_id"] = json!(id);
    json!({"source": "api:sup", "source_txn_id": id, "occurred_at": at, "kind": "build_disruption", "data": data})
}

#[test]
fn the_queue_is_what_is_released_and_not_started() {
    let (_, _, log) = plant_log(12);
    let a = log.agent();
    // Slot 0 released 0..=240, each later slot one more; 12 units entered the first station.
    assert_eq!(a.queued_len(), 241 + 11 - 12);
    let numbers: Vec<u64> = a.queue().map(|u| u.sequence).collect();
    assert_eq!(numbers.first(), Some(&13));
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "planned order");
    assert_eq!(a.started().count(), 12);
    assert_eq!(a.started().last().map(|u| u.sequence), Some(12));
}

#[test]
fn a_shortage_gets_a_proposal_that_keeps_the_frozen_head_and_clears_the_missing_hours() {
    let (plant, _, mut log) = plant_log(5);
    let now = log.agent().now().unwrap();
    let at = |minutes: i64| jidoka_model::event::rfc3339::format(&(now + chrono::Duration::minutes(minutes)));
    // No disruption: no proposal, and it says why.
    let planner = Resequence { search_ms: 300, ..Resequence::default() };
    let none = log.plan(&planner);
    assert!(none["error"].as_str().unwrap().contains("no disruption"), "{none}");
    assert_eq!(log.findings.last().unwrap().kind, build_queue::NO_PROPOSAL);
    // The roof glass runs out in 45 minutes for two hours.
    log.push_json(disruption(
        "GLASS-1",
        json!({"kind": "unavailable", "resource": "ROOF-GLASS", "from": at(45), "until": at(165), "reason": "truck late"}),
        &at(0),
    ));
    let declared = log.findings.last().unwrap().clone();
    assert_eq!((declared.kind.as_str(), declared.verdict), (build_queue::DISRUPTION, Verdict::Pass));
    assert!(declared.reason.contains("ROOF-GLASS unavailable"), "{}", declared.reason);
    let queue: Vec<_> = log.agent().queue().cloned().collect();
    let result = log.plan(&planner);
    assert!(result["error"].is_null(), "{result}");
    let order: Vec<&str> = result["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(order.len(), queue.len());
    let frozen = plant.sequencing.frozen_units as usize;
    assert_eq!(result["frozen"], frozen);
    for (k, u) in queue.iter().take(frozen).enumerate() {
        assert_eq!(order[k], u.vin, "the frozen head never moves");
    }
    // No unit with a sunroof in the slots the glass is missing (takt 60 s: slots 45..165).
    let sunroof: HashMap<&str, bool> =
        queue.iter().map(|u| (u.vin.as_str(), u.options.contains("SUNROOF=YES"))).collect();
    let inside: Vec<usize> = (45..165).filter(|&k| sunroof[order[k]]).collect();
    assert!(inside.is_empty(), "sunroof units in the missing hours at slots {inside:?}");
    assert!(result["before"]["lost_takts"].as_u64().unwrap() > 0);
    assert_eq!(result["after"]["lost_takts"], 0);
    // The new numbers are the old ones handed out in the new order.
    let changes = result["resequence"].as_array().unwrap();
    let by_vin: HashMap<&str, u64> = queue.iter().map(|u| (u.vin.as_str(), u.sequence)).collect();
    let mut numbers: Vec<u64> = queue.iter().map(|u| u.sequence).collect();
    numbers.sort_unstable();
    for c in changes {
        let vin = c["vin"].as_str().unwrap();
        let slot = order.iter().position(|v| *v == vin).unwrap();
        assert_eq!(c["from_sequence"], by_vin[vin]);
        assert_eq!(c["to_sequence"], numbers[slot]);
    }
    let moved: BTreeSet<u64> = changes.iter().map(|c| c["from_sequence"].as_u64().unwrap()).collect();
    let to: BTreeSet<u64> = changes.iter().map(|c| c["to_sequence"].as_u64().unwrap()).collect();
    assert_eq!(moved, to, "a permutation of the numbers it names");
    // The logged plan comes back as one finding to decide, citing the disruption.
    let proposal = log.findings.last().unwrap();
    assert_eq!((proposal.kind.as_str(), proposal.verdict), (build_queue::PROPOSAL, Verdict::Review));
    assert!(proposal.evidence.contains(&declared.evidence[0]), "{:?}", proposal.evidence);
    assert!(proposal.reason.contains("GLASS-1"), "{}", proposal.reason);
    assert_eq!(proposal.details["resequence"], result["resequence"]);
    // Cleared: nothing in force, and the next plan says so.
    log.push_json(disruption("GLASS-1", json!({"kind": "cleared"}), &at(1)));
    assert_eq!(log.agent().disruptions().count(), 0);
    assert!(log.plan(&planner)["error"].as_str().unwrap().contains("no disruption"));
}

#[test]
fn holds_and_rush_orders_are_read_from_the_queue() {
    let (plant, sim, mut log) = plant_log(3);
    let now = log.agent().now().unwrap();
    let at = |minutes: i64| jidoka_model::event::rfc3339::format(&(now + chrono::Duration::minutes(minutes)));
    let queue: Vec<_> = log.agent().queue().cloned().collect();
    let held = [queue[50].vin.clone(), "NOT-IN-QUEUE".to_string()];
    log.push_json(disruption("HOLD-1", json!({"kind": "hold", "vins": held}), &at(0)));
    assert!(
        log.findings.last().unwrap().reason.contains("1 of the 2 units"),
        "{}",
        log.findings.last().unwrap().reason
    );
    // A unit of the next plan, wanted within 40 units.
    let next = sim.planned_units(5000..5001).remove(0);
    let rush = json!({"work_order": next.work_order, "vin": next.vin, "model": next.model,
                      "options": next.options, "sequence": 5001});
    log.push_json(disruption("RUSH-1", json!({"kind": "rush", "rush": rush, "within_units": 40}), &at(0)));
    let planner = Resequence { search_ms: 300, ..Resequence::default() };
    let result = log.plan(&planner);
    assert!(result["error"].is_null(), "{result}");
    let order: Vec<&str> = result["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(result["removed"], json!([queue[50].vin]));
    assert!(!order.contains(&queue[50].vin.as_str()));
    let rush_at = order.iter().position(|v| *v == next.vin).expect("the rush unit is in the queue");
    assert!(rush_at < 40 && rush_at >= plant.sequencing.frozen_units as usize, "rush at slot {rush_at}");
    assert_eq!(result["after"]["rush_late_slots"], 0);
    // The held unit takes the last number of the horizon; the rush unit one of the queue's.
    let changes: HashMap<&str, &Value> =
        result["resequence"].as_array().unwrap().iter().map(|c| (c["vin"].as_str().unwrap(), c)).collect();
    assert_eq!(changes[next.vin.as_str()]["from_sequence"], 5001);
    let held_to = changes[queue[50].vin.as_str()]["to_sequence"].as_u64().unwrap();
    assert_eq!(held_to, 5001, "the held unit takes the highest number of the horizon");
}

#[test]
fn bad_disruptions_are_refused_naming_the_field() {
    let bad = |data: Value| {
        let v = disruption("D", data, "2026-12-07T08:00:00Z");
        Event::parse(v, chrono::Utc::now()).unwrap_err()
    };
    let e = bad(json!({"kind": "unavailable", "until": "2026-12-07T09:00:00Z"}));
    assert_eq!(e.field, "data.resource");
    let e = bad(json!({"kind": "unavailable", "resource": "ROOF-GLASS"}));
    assert_eq!(e.field, "data.until");
    let e = bad(
        json!({"kind": "unavailable", "resource": "R", "from": "2026-12-07T09:00:00Z", "until": "2026-12-07T09:00:00Z"}),
    );
    assert_eq!(e.field, "data.until");
    assert_eq!(bad(json!({"kind": "hold", "vins": []})).field, "data.vins");
    assert_eq!(bad(json!({"kind": "hold", "vins": ["A", ""]})).field, "data.vins[1]");
    assert_eq!(bad(json!({"kind": "rush", "within_units": 3})).field, "data.rush");
    let e = bad(
        json!({"kind": "rush", "rush": {"work_order": "W", "vin": "V", "model": "M", "options": ["X"], "sequence": 1}, "within_units": 3}),
    );
    assert_eq!(e.field, "data.rush.options[0]");
    assert!(bad(json!({"kind": "soon"})).field.starts_with("data"), "an unknown kind");
}

#[test]
fn a_resource_the_plant_cannot_sequence_around_is_named() {
    let (_, _, mut log) = plant_log(3);
    log.push_json(disruption(
        "FRAME-1",
        json!({"kind": "unavailable", "resource": "FRAME-RAIL", "until": "2030-01-01T00:00:00Z"}),
        "2026-12-07T08:00:00Z",
    ));
    let result = log.plan(&Resequence { search_ms: 100, ..Resequence::default() });
    let error = result["error"].as_str().unwrap();
    assert!(error.contains("FRAME-1") && error.contains("cannot work around"), "{error}");
}

/// A rush on an order already in the queue pulls it forward (it is not built twice); one already
/// in the frozen head comes anyway and is left where it is.
#[test]
fn a_rush_on_a_queued_order_moves_it_forward_once() {
    let (plant, _, mut log) = plant_log(3);
    let frozen = plant.sequencing.frozen_units as usize;
    let queue: Vec<_> = log.agent().queue().cloned().collect();
    let order = |u: &jidoka_agents::build_queue::QueuedUnit| json!({"work_order": u.work_order, "vin": u.vin, "model": u.model, "options": u.options, "sequence": u.sequence});
    log.push_json(disruption(
        "RUSH-Q",
        json!({"kind": "rush", "rush": order(&queue[150]), "within_units": 40}),
        "2026-12-07T08:00:00Z",
    ));
    log.push_json(disruption(
        "RUSH-F",
        json!({"kind": "rush", "rush": order(&queue[3]), "within_units": 1}),
        "2026-12-07T08:00:00Z",
    ));
    let result = log.plan(&Resequence { search_ms: 200, ..Resequence::default() });
    assert!(result["error"].is_null(), "{result}");
    let new: Vec<&str> = result["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(new.len(), queue.len(), "no unit built twice, none lost");
    let at = new.iter().position(|v| *v == queue[150].vin).unwrap();
    assert!((frozen..40).contains(&at), "the rushed unit at slot {at}");
    assert_eq!(new[3], queue[3].vin, "a rushed unit in the frozen head stays");
    let numbers: BTreeSet<u64> = queue.iter().map(|u| u.sequence).collect();
    let changes = result["resequence"].as_array().unwrap();
    assert!(changes.iter().all(|c| numbers.contains(&c["to_sequence"].as_u64().unwrap())));
}
