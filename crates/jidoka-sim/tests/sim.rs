//! The simulator's honesty: reproducible, fault rates as configured, good curves inside their
//! spec, the controller verdict missing in-window faults as real controllers do, and a ground
//! truth that lists every injected fault and nothing else (checked against an independent
//! re-derivation of what each scan should have been).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_model::event::OkNok;
use jidoka_model::rule::Rule;
use jidoka_model::{Event, EventPayload};
use jidoka_sim::{CurveMode, GroundTruth, Plant, Simulation, vin};
use std::collections::{BTreeSet, HashMap, HashSet};

struct Run {
    events: Vec<Event>,
    truth: Vec<GroundTruth>,
    work_orders: Vec<jidoka_model::master::WorkOrder>,
}

fn run(plant: Plant, seed: u64, units: u64, curves: CurveMode) -> Run {
    let mut sim = Simulation::new(plant, seed, Some(units), curves);
    let mut r = Run { events: Vec::new(), truth: Vec::new(), work_orders: Vec::new() };
    while sim.has_more() {
        let s = sim.next_slot();
        r.events.extend(s.events);
        r.truth.extend(s.truth);
        r.work_orders.extend(s.work_orders);
    }
    r
}

fn serialised(r: &Run) -> String {
    let mut s = String::new();
    for e in &r.events {
        s.push_str(&serde_json::to_string(e).unwrap());
        s.push('\n');
    }
    for t in &r.truth {
        s.push_str(&serde_json::to_string(t).unwrap());
        s.push('\n');
    }
    s
}

#[test]
fn default_plant_is_valid_and_shaped_as_described() {
    let plant = Plant::default_plant().expect("default plant");
    assert_eq!(plant.takt_s(), 60.0);
    assert_eq!(plant.tightenings_per_unit(), 40);
    let bad =
        Plant::parse(&jidoka_sim::plant::DEFAULT_PLANT.replace("rule = \"ENGINE=EV\"", "rule = \"ENGINE=DIESEL\""));
    assert!(bad.is_err_and(|e| e.0.iter().any(|(p, m)| p.starts_with("bom[") && m.contains("ENGINE=DIESEL"))));
    let bad = Plant::parse(&jidoka_sim::plant::DEFAULT_PLANT.replace("tool = \"NR-0801\"", "tool = \"NR-9999\""));
    assert!(bad.is_err_and(|e| e.0.iter().any(|(p, _)| p.ends_with(".tool"))));
    let bad = Plant::parse(&jidoka_sim::plant::DEFAULT_PLANT.replace(
        "cut_in_date = \"2026-11-03T06:00:00Z\"",
        "cut_in_date = \"2026-11-03T06:00:00Z\"\ncut_in_sequence = 9",
    ));
    assert!(bad.is_err_and(|e| e.0.iter().any(|(p, m)| p == "ecos[1]" && m.contains("exactly one"))));
}

/// The plant's sequencing rules are checked like the rest of it, and the planned units are the
/// units the line builds.
#[test]
fn sequencing_rules_are_checked_and_the_planned_units_are_the_built_ones() {
    let plant = Plant::default_plant().expect("default plant");
    assert_eq!(plant.sequencing.ratios.len(), 4);
    assert_eq!(plant.sequencing.paint_family, "PAINT");
    let field = |from: &str, to: &str| -> Vec<(String, String)> {
        assert!(jidoka_sim::plant::DEFAULT_PLANT.contains(from), "{from}");
        Plant::parse(&jidoka_sim::plant::DEFAULT_PLANT.replacen(from, to, 1)).err().map(|e| e.0).unwrap_or_default()
    };
    let has =
        |errors: &[(String, String)], path: &str, text: &str| errors.iter().any(|(p, m)| p == path && m.contains(text));
    assert!(has(
        &field("paint_family = \"PAINT\"", "paint_family = \"COLOUR\""),
        "sequencing.paint_family",
        "not an option"
    ));
    assert!(has(&field("n = 1\np = 3", "n = 3\np = 3"), "sequencing.ratios[0]", "n < p"));
    assert!(has(
        &field("rule = \"SUNROOF=YES\"\nn = 1", "rule = \"SUNROOF=MAYBE\"\nn = 1"),
        "sequencing.ratios[0].rule",
        "SUNROOF=MAYBE"
    ));
    assert!(has(&field("[\"high\", \"paint\", \"low\"]", "[\"high\", \"paint\"]"), "sequencing.priorities", "`low`"));
    assert!(has(
        &field("LIFT\"\nstation = \"ST060\"", "LIFT\"\nstation = \"ST999\""),
        "sequencing.equipment[0].station",
        "not a station"
    ));
    let r = run(plant.clone(), 3, 6, CurveMode::None);
    let sim = Simulation::new(plant, 3, None, CurveMode::None);
    let planned = sim.planned_units(0..6);
    for (u, wo) in planned.iter().zip(&r.work_orders) {
        assert_eq!(u.vin, wo.vin);
        assert_eq!(u.options.iter().cloned().collect::<Vec<_>>(), wo.options);
        assert_eq!(u.options.iter().filter(|o| o.starts_with("PAINT=")).count(), 1);
    }
    assert_eq!(planned.len(), 6);
}

/// The MES releases orders ahead of the line; a new sequence from it is followed: the moved units
/// are released again with their new numbers and enter the line in the new order, and a change
/// that touches a started unit or leaves a slot empty is refused whole.
#[test]
fn the_line_follows_a_new_sequence_released_ahead() {
    let plant = Plant::default_plant().unwrap();
    let mut sim = Simulation::new(plant, 5, Some(40), CurveMode::None).with_release_ahead(10);
    let planned = sim.planned_units(0..40);
    let released = |slot: &jidoka_sim::Slot| -> Vec<(String, u64)> {
        slot.events
            .iter()
            .filter_map(|e| match &e.payload {
                EventPayload::WorkOrderReleased(w) => Some((w.vin.clone(), w.sequence)),
                _ => None,
            })
            .collect()
    };
    let first = sim.next_slot();
    assert_eq!(released(&first).len(), 11, "slot 0 and the ten ahead");
    assert_eq!(first.work_orders[0].vin, planned[0].vin);
    let second = sim.next_slot();
    assert_eq!(released(&second), vec![(planned[11].vin.clone(), 12)], "one more comes into the horizon");
    // Number 1 has started: refused whole.
    let m = |k: usize, to: u64| (planned[k].vin.clone(), k as u64 + 1, to);
    let err = sim.resequence(&[m(0, 5), m(4, 1)]).unwrap_err();
    assert!(err.contains("already on the line"), "{err}");
    let err = sim.resequence(&[m(4, 6), m(5, 7)]).unwrap_err();
    assert!(err.contains("each once"), "{err}");
    // A change computed before another moved the units: refused, naming the unit there now.
    let stale = [(planned[5].vin.clone(), 5, 6), (planned[4].vin.clone(), 6, 5)];
    let err = sim.resequence(&stale).unwrap_err();
    assert!(err.contains("changed since") && err.contains(&planned[4].vin), "{err}");
    // Units 5, 6, 7 rotate; 6 and 7 were released, 30 was not.
    assert_eq!(sim.resequence(&[m(4, 7), m(6, 30), m(29, 5)]), Ok(3));
    // The same change again finds other units at those numbers.
    assert!(sim.resequence(&[m(4, 7), m(6, 30), m(29, 5)]).unwrap_err().contains("changed since"));
    let third = sim.next_slot();
    let again = released(&third);
    assert!(again.contains(&(planned[4].vin.clone(), 7)), "{again:?}");
    assert!(again.contains(&(planned[29].vin.clone(), 5)), "{again:?}");
    assert!(!again.iter().any(|(v, _)| *v == planned[6].vin), "number 30 is beyond the horizon: released in turn");
    let mut built = Vec::new();
    while sim.has_more() {
        built.extend(sim.next_slot().work_orders.into_iter().map(|w| (w.vin, w.sequence)));
    }
    let at = |n: u64| built.iter().find(|(_, s)| *s == n).map(|(v, _)| v.clone());
    assert_eq!(at(5), Some(planned[29].vin.clone()));
    assert_eq!(at(7), Some(planned[4].vin.clone()));
    assert_eq!(at(30), Some(planned[6].vin.clone()));
    assert_eq!(at(6), Some(planned[5].vin.clone()));
    assert_eq!(built.len(), 37, "every unit built once");
}

#[test]
fn same_seed_gives_identical_output_and_another_seed_does_not() {
    let plant = Plant::default_plant().unwrap();
    let a = serialised(&run(plant.clone(), 7, 40, CurveMode::All));
    let b = serialised(&run(plant.clone(), 7, 40, CurveMode::All));
    let c = serialised(&run(plant, 8, 40, CurveMode::All));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_event_is_valid_and_vins_carry_check_digits() {
    let r = run(Plant::default_plant().unwrap(), 1, 30, CurveMode::All);
    for e in &r.events {
        let text = serde_json::to_string(e).unwrap();
        let back = Event::parse_str(&text, e.received_at).unwrap_or_else(|err| panic!("{err}: {text}"));
        assert_eq!(&back, e);
    }
    for wo in &r.work_orders {
        assert!(vin::is_valid(&wo.vin), "{}", wo.vin);
    }
    assert_eq!(r.work_orders.len(), 30);
    // Plant time only moves forward.
    assert!(r.events.windows(2).all(|w| w[0].occurred_at <= w[1].occurred_at));
    // Each unit visits every station once: 30 units x 10 stations.
    let entered = r.events.iter().filter(|e| matches!(e.payload, EventPayload::UnitEnteredStation(_))).count();
    assert_eq!(entered, 300);
}

fn within(observed: usize, n: usize, p: f64) -> bool {
    let expected = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - expected).abs() <= 4.0 * sd + 1.0
}

#[test]
fn tightening_faults_occur_at_their_configured_rates_with_their_signatures() {
    let mut plant = Plant::default_plant().unwrap();
    plant.faults.cross_thread = 0.01;
    plant.faults.soft_joint = 0.01;
    plant.faults.stripped = 0.01;
    plant.faults.rehit = 0.01;
    plant.faults.missing = 0.01;
    plant.faults.tool_drift.clear();
    plant.faults.skipped_operation = 0.0;
    let r = run(plant.clone(), 11, 1500, CurveMode::All);
    let by_event: HashMap<&str, &GroundTruth> =
        r.truth.iter().filter_map(|t| t.event_id.as_deref().map(|e| (e, t))).collect();
    let rundown_of: HashMap<&str, f64> =
        plant.stations.iter().filter_map(|s| s.joints.first().map(|j| (s.id.as_str(), j.rundown_deg))).collect();
    let mut rehit_unmonitored = 0;
    let mut n = 0;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut controller_ok: HashMap<&str, usize> = HashMap::new();
    let mut good_ratio = Vec::new();
    let mut good_in_window = 0;
    for e in &r.events {
        let EventPayload::TighteningResult(t) = &e.payload else { continue };
        n += 1;
        let mode = by_event.get(e.event_id.as_str()).map(|g| g.fault.as_str()).unwrap_or("good");
        *counts.entry(mode).or_default() += 1;
        if t.controller_verdict == Some(OkNok::Ok) {
            *controller_ok.entry(mode).or_default() += 1;
        }
        let curve = t.curve.as_ref().expect("curve");
        let target = t.torque_target_nm.unwrap();
        match mode {
            "good" => {
                good_ratio.push(t.final_torque_nm / target);
                if (t.torque_min_nm.unwrap()..=t.torque_max_nm.unwrap()).contains(&t.final_torque_nm) {
                    good_in_window += 1;
                }
                assert!(curve.time_s.windows(2).all(|w| w[0] < w[1]));
                assert!(curve.angle_deg.windows(2).all(|w| w[0] <= w[1]));
            }
            "missing" => assert!(t.final_torque_nm < 0.1 * target, "free spin builds no torque"),
            "rehit" => {
                assert!(t.final_angle_deg < 6.0 && curve.len() < 60, "re-hit: tiny angle, short curve");
                if t.angle_min_deg == Some(0.0) {
                    rehit_unmonitored += 1;
                    assert_eq!(
                        t.controller_verdict,
                        Some(OkNok::Ok),
                        "no angle monitoring: the controller passes a re-hit"
                    );
                }
            }
            "stripped" => assert!(t.final_torque_nm < 0.9 * target, "stripped: torque collapses below target"),
            "cross_thread" => {
                // The thread binds before the head could seat: torque builds early in the rundown.
                let rundown = rundown_of[t.station.as_str()];
                let early =
                    curve.angle_deg.iter().zip(&curve.torque_nm).find(|(_, q)| **q > 0.3 * target).map(|(a, _)| *a);
                assert!(
                    early.is_some_and(|a| a < 0.95 * rundown),
                    "cross-thread torque should build early: {early:?} vs {rundown}"
                );
            }
            "soft_joint" => {
                assert!(t.final_torque_nm >= t.torque_min_nm.unwrap(), "cushioning still reaches the torque window")
            }
            other => panic!("unexpected mode {other}"),
        }
    }
    assert_eq!(n, 1500 * 40);
    for mode in ["cross_thread", "soft_joint", "stripped", "rehit", "missing"] {
        let c = counts.get(mode).copied().unwrap_or(0);
        assert!(within(c, n, 0.01), "{mode}: {c} of {n}, configured 1 %");
    }
    // Good tightenings: mean on target (shut-off overshoot of about one sample), spread as the
    // tools' precision, inside the window (Cpk well above 1.33 at 2 % precision and ±10 %).
    let mean = good_ratio.iter().sum::<f64>() / good_ratio.len() as f64;
    let sd = (good_ratio.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / good_ratio.len() as f64).sqrt();
    assert!((mean - 1.0).abs() < 0.015, "good mean/target {mean}");
    assert!((0.015..0.035).contains(&sd), "good sd/target {sd}");
    assert!(good_in_window as f64 / good_ratio.len() as f64 > 0.9995);
    // The controller judges windows only: it catches what leaves the window and misses faults
    // whose final values land inside it.
    let ok_share = |mode: &str| controller_ok.get(mode).copied().unwrap_or(0) as f64 / counts[mode] as f64;
    assert_eq!(ok_share("good"), 1.0);
    assert_eq!(ok_share("missing"), 0.0);
    assert!(ok_share("stripped") < 0.05);
    assert!(ok_share("cross_thread") > 0.3, "cross-threads reaching torque pass the controller");
    assert!(ok_share("soft_joint") > 0.2, "cushioned joints inside the angle window pass the controller");
    assert!(rehit_unmonitored > 0, "some re-hits landed on a joint without angle monitoring");
    assert!(ok_share("rehit") < 0.1, "angle-min monitoring catches re-hits elsewhere");
}

#[test]
fn tool_drift_is_one_episode_shifting_that_tool_only() {
    let plant = Plant::default_plant().unwrap();
    let mut plant = plant;
    plant.faults.tool_drift[0].onset_unit = 100;
    let r = run(plant, 5, 300, CurveMode::None);
    let drift: Vec<&GroundTruth> = r.truth.iter().filter(|t| t.fault == "tool_drift").collect();
    assert_eq!(drift.len(), 1);
    assert_eq!((drift[0].unit, drift[0].tool.as_deref()), (100, Some("NR-0301")));
    let mean_ratio = |tool: &str, lo: u64, hi: u64| {
        let units: HashSet<String> =
            r.work_orders.iter().filter(|w| (lo..hi).contains(&(w.sequence - 1))).map(|w| w.vin.clone()).collect();
        let v: Vec<f64> = r
            .events
            .iter()
            .filter_map(|e| match &e.payload {
                EventPayload::TighteningResult(t)
                    if t.tool == tool && units.contains(t.vin.as_deref().unwrap_or("")) =>
                {
                    Some(t.final_torque_nm / t.torque_target_nm.unwrap())
                }
                _ => None,
            })
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let before = mean_ratio("NR-0301", 0, 100);
    let after = mean_ratio("NR-0301", 160, 300);
    assert!((after - before - 0.05).abs() < 0.006, "drift of 5 %: before {before}, after {after}");
    let other_before = mean_ratio("NR-0201", 0, 100);
    let other_after = mean_ratio("NR-0201", 160, 300);
    assert!((other_after - other_before).abs() < 0.005);
}

#[test]
fn sequence_ground_truth_matches_an_independent_check_of_every_scan() {
    let mut plant = Plant::default_plant().unwrap();
    plant.faults.wrong_part = 0.01;
    plant.faults.wrong_variant = 0.01;
    plant.faults.superseded = 0.2;
    plant.faults.duplicate_serial = 0.01;
    plant.faults.skipped_operation = 0.01;
    // 1600 units: past the date cut-in of ECO-2417 (the line's second day, unit 1440).
    let r = run(plant.clone(), 21, 1600, CurveMode::None);
    let orders: HashMap<&str, &jidoka_model::master::WorkOrder> =
        r.work_orders.iter().map(|w| (w.vin.as_str(), w)).collect();
    let rules: Vec<Rule> = plant.bom.iter().map(|b| Rule::parse(&b.rule).unwrap()).collect();
    let truth_by_event: HashMap<&str, &GroundTruth> =
        r.truth.iter().filter_map(|t| t.event_id.as_deref().map(|e| (e, t))).collect();
    let mut seen_serials: HashSet<String> = HashSet::new();
    let mut checked = 0;
    for e in &r.events {
        let EventPayload::ComponentScanned(s) = &e.payload else { continue };
        let wo = orders[s.vin.as_str()];
        let options: BTreeSet<String> = wo.options.iter().cloned().collect();
        // What this unit needs at this station, after ECOs (and what the use-up window allows).
        let mut allowed: HashSet<String> = HashSet::new();
        for (i, b) in plant.bom.iter().enumerate() {
            let effective =
                b.from_sequence.is_none_or(|f| wo.sequence >= f) && b.to_sequence.is_none_or(|t| wo.sequence <= t);
            if b.station != s.station
                || !(b.models.is_empty() || b.models.contains(&wo.model))
                || !effective
                || !rules[i].holds(&options)
            {
                continue;
            }
            let mut part = b.part.clone();
            for eco in &plant.ecos {
                let by_sequence = eco.cut_in_sequence.is_some_and(|c| wo.sequence >= c);
                let by_date = eco.cut_in_date.as_deref().is_some_and(|d| {
                    let cut = chrono::DateTime::parse_from_rfc3339(d).expect("date").with_timezone(&chrono::Utc);
                    wo.planned_start.is_some_and(|p| p >= cut)
                });
                if eco.old_part == b.part && (by_sequence || by_date) {
                    part = eco.new_part.clone();
                    if eco.old_valid_until_sequence.is_some_and(|u| wo.sequence <= u) {
                        allowed.insert(eco.old_part.clone());
                    }
                }
            }
            allowed.insert(part);
        }
        let part_wrong = !allowed.contains(&s.part_number);
        let serial_reused = s.serial.as_ref().is_some_and(|sn| !seen_serials.insert(sn.clone()));
        let truth = truth_by_event.get(e.event_id.as_str()).map(|t| t.fault.as_str());
        match truth {
            Some("wrong_part" | "wrong_variant" | "superseded") => {
                assert!(part_wrong, "truth says wrong part but {} is allowed", s.part_number)
            }
            Some("duplicate_serial") => assert!(serial_reused && !part_wrong),
            Some(other) => panic!("unexpected truth {other} on a scan"),
            None => assert!(!part_wrong && !serial_reused, "undeclared fault on scan {e:?}"),
        }
        checked += 1;
    }
    assert!(checked > 5000);
    // Skipped operations: exactly the unit-stations without an operation_completed.
    let completed: HashSet<(String, String)> = r
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::OperationCompleted(o) => Some((o.vin.clone(), o.station.clone())),
            _ => None,
        })
        .collect();
    let skipped: HashSet<(String, String)> =
        r.truth.iter().filter(|t| t.fault == "skipped_operation").map(|t| (t.vin.clone(), t.station.clone())).collect();
    assert_eq!(completed.len() + skipped.len(), 1600 * plant.stations.len());
    assert!(completed.is_disjoint(&skipped));
    let kinds: HashSet<&str> = r.truth.iter().map(|t| t.fault.as_str()).collect();
    for k in ["wrong_part", "wrong_variant", "superseded", "duplicate_serial", "skipped_operation"] {
        assert!(kinds.contains(k), "no {k} injected in 1600 units");
    }
    let superseded_hinges = r.truth.iter().filter(|t| t.fault == "superseded" && t.detail["eco"] == "ECO-2417").count();
    assert!(superseded_hinges > 0, "the date cut-in is enforced and violated too");
    let tiedowns: Vec<u64> = r
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::ComponentScanned(s) if s.part_number == "TIEDOWN-KIT" && s.station == "ST070" => {
                Some(orders[s.vin.as_str()].sequence)
            }
            _ => None,
        })
        .collect();
    assert!(!tiedowns.is_empty() && tiedowns.iter().all(|seq| *seq >= 500), "effectivity from sequence 500");
}

#[test]
fn ncrs_carry_their_hidden_causes_and_nothing_else_does() {
    let plant = Plant::default_plant().unwrap();
    let r = run(plant.clone(), 3, 2500, CurveMode::None);
    let ncrs: HashMap<String, &jidoka_model::event::NcrCreated> = r
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::NcrCreated(n) => Some((n.ncr_id.clone(), n)),
            _ => None,
        })
        .collect();
    let defects: Vec<&GroundTruth> = r.truth.iter().filter(|t| t.fault == "defect").collect();
    // Every defect on an inspected unit becomes exactly one NCR. A unit whose inspection was
    // skipped lets its defects escape, as on a real line.
    let inspected: HashSet<String> = r
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::OperationCompleted(o) if o.station == plant.quality.inspection_station => Some(o.vin.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<&&GroundTruth> = defects.iter().filter(|d| inspected.contains(&d.vin)).collect();
    assert_eq!(expected.len(), ncrs.len());
    let worn = &plant.faults.worn_fixture[0];
    let bad = &plant.faults.bad_lot[0];
    // The review board decides each NCR once, hours after it was raised.
    let mut decided: HashMap<String, jidoka_model::event::Disposition> = HashMap::new();
    let mut raised_at: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for e in &r.events {
        match &e.payload {
            EventPayload::NcrCreated(n) => {
                raised_at.insert(n.ncr_id.as_str(), e.occurred_at);
            }
            EventPayload::NcrDispositioned(d) => {
                let raised = raised_at.get(d.ncr_id.as_str()).expect("decided after raised");
                assert!(e.occurred_at >= *raised + chrono::Duration::hours(2), "{}", d.ncr_id);
                assert!(decided.insert(d.ncr_id.clone(), d.disposition).is_none(), "{} decided twice", d.ncr_id);
            }
            _ => {}
        }
    }
    // The run ends before the last few are decided.
    assert!(decided.len() + 40 >= ncrs.len() && decided.len() < ncrs.len() + 1, "{} of {}", decided.len(), ncrs.len());
    let (mut by_fixture, mut by_lot) = (0, 0);
    for d in expected {
        let ncr = ncrs[d.detail["ncr_id"].as_str().unwrap()];
        // A part from the bad lot goes back to the supplier, whatever caused this one defect.
        use jidoka_model::event::Disposition::ReturnToSupplier;
        let bad_lot = format!("LOT-{}-{:04}", bad.part, bad.lot);
        if let Some(disposition) = decided.get(&ncr.ncr_id) {
            assert_eq!(
                *disposition == ReturnToSupplier,
                ncr.supplier_lot.as_deref() == Some(&bad_lot),
                "{}",
                ncr.ncr_id
            );
        }
        assert_eq!(ncr.vin.as_deref(), Some(d.vin.as_str()));
        assert_eq!(ncr.station.as_deref(), Some(d.station.as_str()));
        match d.detail["cause"].as_str().unwrap() {
            "worn_fixture" => {
                by_fixture += 1;
                assert_eq!(ncr.fixture.as_deref(), Some(worn.fixture.as_str()));
                assert_eq!(ncr.shift.as_deref(), Some(worn.shift.as_str()));
                assert!(d.unit >= worn.onset_unit);
            }
            "bad_lot" => {
                by_lot += 1;
                assert_eq!(ncr.part_number.as_deref(), Some(bad.part.as_str()));
                assert_eq!(ncr.supplier_lot.as_deref(), Some(format!("LOT-{}-{:04}", bad.part, bad.lot).as_str()));
            }
            "background" => {}
            other => panic!("unknown cause {other}"),
        }
        if let Some(code) = &ncr.defect_code {
            assert_eq!(code, d.detail["code"].as_str().unwrap());
        }
    }
    assert!(by_fixture > 20 && by_lot > 20, "both hidden causes show up: fixture {by_fixture}, lot {by_lot}");
    let uncoded = ncrs.values().filter(|n| n.defect_code.is_none()).count();
    assert!(within(uncoded, ncrs.len(), plant.quality.uncoded_share));
    // One episode record per hidden cause.
    assert_eq!(r.truth.iter().filter(|t| t.fault == "worn_fixture").count(), 1);
    assert_eq!(r.truth.iter().filter(|t| t.fault == "bad_lot").count(), 1);
}

#[test]
fn andon_calls_close_with_maintenance_and_deliveries_are_late_at_their_rate() {
    let mut plant = Plant::default_plant().unwrap();
    plant.andon.stops_per_station_hour = 0.5;
    let r = run(plant.clone(), 9, 2500, CurveMode::None);
    let mut open: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut closed = 0;
    let mut maintenance: HashSet<String> = HashSet::new();
    let mut late: HashMap<String, (usize, usize)> = HashMap::new();
    for e in &r.events {
        match &e.payload {
            EventPayload::AndonRaised(a) => assert!(open.insert(a.andon_id.clone(), e.occurred_at).is_none()),
            EventPayload::AndonCleared(a) => {
                let raised = open.remove(&a.andon_id).expect("cleared after raised");
                assert!(e.occurred_at > raised);
                closed += 1;
            }
            EventPayload::MaintenanceRecord(m) => {
                maintenance.insert(m.record_id.clone());
            }
            EventPayload::SupplierDelivery(d) => {
                let entry = late.entry(d.supplier.clone()).or_default();
                entry.0 += 1;
                if d.delivered_at > d.promised_at {
                    entry.1 += 1;
                }
            }
            _ => {}
        }
    }
    assert!(closed > 100);
    for t in r.truth.iter().filter(|t| t.fault == "andon") {
        let id = t.detail["andon_id"].as_str().unwrap();
        assert!(!open.contains_key(id) || t.unit == 0, "andon {id} still open");
        assert!(maintenance.contains(&format!("MR-{id}")) || open.contains_key(id));
    }
    for s in &plant.suppliers {
        if let Some((n, l)) = late.get(&s.id)
            && *n > 50
        {
            assert!(within(*l, *n, s.late_rate), "{}: {l} of {n} late, configured {}", s.id, s.late_rate);
        }
    }
}

#[test]
fn end_of_line_results_follow_upstream_work() {
    let mut plant = Plant::default_plant().unwrap();
    plant.faults.soft_joint = 0.02;
    plant.faults.cross_thread = 0.02;
    plant.faults.superseded = 0.1;
    let r = run(plant, 4, 2000, CurveMode::None);
    let faulty_axle: HashSet<&str> = r
        .truth
        .iter()
        .filter(|t| {
            t.joint.as_deref().is_some_and(|j| j.starts_with("AXLE"))
                && ["soft_joint", "cross_thread", "stripped", "missing"].contains(&t.fault.as_str())
        })
        .map(|t| t.vin.as_str())
        .collect();
    let superseded_ecu: HashSet<&str> = r
        .truth
        .iter()
        .filter(|t| t.fault == "superseded" && t.detail["actual"] == "ECU-I4-A1")
        .map(|t| t.vin.as_str())
        .collect();
    let (mut fail_faulty, mut n_faulty, mut fail_clean, mut n_clean) = (0, 0, 0, 0);
    for e in &r.events {
        let EventPayload::EolTestResult(t) = &e.payload else { continue };
        let failed = t.result == OkNok::Nok;
        match t.test.as_str() {
            "ALIGNMENT" if faulty_axle.contains(t.vin.as_str()) => {
                n_faulty += 1;
                fail_faulty += failed as usize;
            }
            "ALIGNMENT" => {
                n_clean += 1;
                fail_clean += failed as usize;
            }
            "ECU_FLASH" => assert_eq!(
                failed,
                superseded_ecu.contains(t.vin.as_str()),
                "ECU flash fails exactly on superseded ECUs"
            ),
            _ => {}
        }
    }
    let (rate_faulty, rate_clean) = (fail_faulty as f64 / n_faulty as f64, fail_clean as f64 / n_clean.max(1) as f64);
    assert!(n_faulty > 30);
    assert!(
        rate_faulty > 5.0 * rate_clean.max(0.001),
        "alignment fails {rate_faulty} with a faulty axle joint vs {rate_clean}"
    );
    assert!(!superseded_ecu.is_empty());
}

#[test]
fn leak_test_failures_follow_the_drifting_fill_pressure() {
    let mut plant = Plant::default_plant().unwrap();
    plant.faults.parameter_drift[0].onset_unit = 300;
    let r = run(plant, 6, 900, CurveMode::None);
    let drift: Vec<&GroundTruth> = r.truth.iter().filter(|t| t.fault == "parameter_drift").collect();
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].unit, 300);
    let sequence: HashMap<&str, u64> = r.work_orders.iter().map(|w| (w.vin.as_str(), w.sequence)).collect();
    let (mut pressure_before, mut pressure_after) = (Vec::new(), Vec::new());
    let (mut fails_before, mut fails_after, mut n_before, mut n_after) = (0, 0, 0, 0);
    for e in &r.events {
        match &e.payload {
            EventPayload::ProcessParameterSample(p) if p.tag == "coolant_fill_pressure_bar" => {
                let seq = sequence[p.vin.as_deref().unwrap()];
                if seq <= 300 {
                    pressure_before.push(p.value)
                } else if seq > 500 {
                    pressure_after.push(p.value)
                }
            }
            EventPayload::EolTestResult(t) if t.test == "COOLANT_LEAK" => {
                let seq = sequence[t.vin.as_str()];
                let failed = (t.result == OkNok::Nok) as usize;
                if seq <= 300 {
                    n_before += 1;
                    fails_before += failed;
                } else if seq > 500 {
                    n_after += 1;
                    fails_after += failed;
                }
            }
            _ => {}
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(&pressure_before) - 2.0).abs() < 0.01);
    assert!((mean(&pressure_after) - 1.8).abs() < 0.01);
    let (rb, ra) = (fails_before as f64 / n_before as f64, fails_after as f64 / n_after as f64);
    assert!(ra > 0.15 && rb < 0.02, "leak failures before {rb}, after {ra}");
}

#[test]
fn an_expedited_delivery_comes_by_premium_freight_and_the_supplier_confirms_the_new_promise() {
    let mut plant = Plant::default_plant().unwrap();
    for s in &mut plant.suppliers {
        (s.lead_time_h, s.early_h_max, s.late_rate, s.expedite_h, s.expedite_rate) = (3.0, 0.0, 0.0, 0.5, 1.0);
    }
    let mut sim = Simulation::new(plant.clone(), 4, None, CurveMode::None);
    // Run until a call-off is made, then expedite it at the next slot.
    let mut call_off = None;
    while call_off.is_none() {
        for e in sim.next_slot().events {
            if let EventPayload::MaterialCallOff(c) = e.payload {
                call_off.get_or_insert((c, e.occurred_at));
            }
        }
    }
    let (c, ordered) = call_off.unwrap();
    assert_eq!(c.promised_at, ordered + chrono::Duration::hours(3));
    assert!(sim.expedite("CO-999999").unwrap_err().contains("CO-999999"), "an unknown call-off is named");
    let answer = sim.expedite(&c.call_off_id).unwrap();
    assert!(answer.contains(&c.call_off_id) && answer.contains("expedites"), "{answer}");
    assert_eq!(sim.expedite(&c.call_off_id).unwrap(), answer, "asked again, the same answer");
    let (mut revised, mut delivered) = (None, None);
    for _ in 0..200 {
        for e in sim.next_slot().events {
            match e.payload {
                EventPayload::MaterialCallOff(r) if r.call_off_id == c.call_off_id => {
                    revised = Some((r, e.occurred_at))
                }
                EventPayload::SupplierDelivery(d) if d.call_off_id.as_deref() == Some(c.call_off_id.as_str()) => {
                    delivered = Some(d)
                }
                _ => {}
            }
        }
    }
    // The new promise: half an hour after the request, confirmed at the request.
    let (r, asked) = revised.expect("the supplier confirms a new promise");
    assert_eq!(r.promised_at, asked + chrono::Duration::minutes(30));
    assert!(r.promised_at < c.promised_at);
    assert_eq!((r.quantity, r.part_number.as_str()), (c.quantity, c.part_number.as_str()));
    // Delivered against the new promise, within a tenth of the expedite either side.
    let d = delivered.expect("delivered");
    assert_eq!(d.promised_at, r.promised_at);
    assert!((d.delivered_at - d.promised_at).num_seconds().abs() <= 180, "{d:?}");
    assert!(sim.expedite(&c.call_off_id).is_ok(), "answered as the first time");
    // A delivered call-off is not in transit; a supplier that never expedites says it cannot.
    let mut never = plant;
    for s in &mut never.suppliers {
        s.expedite_rate = 0.0;
    }
    let mut sim = Simulation::new(never, 4, None, CurveMode::None);
    let mut id = None;
    while id.is_none() {
        for e in sim.next_slot().events {
            if let EventPayload::MaterialCallOff(c) = e.payload {
                id.get_or_insert(c.call_off_id);
            }
        }
    }
    let err = sim.expedite(id.as_deref().unwrap()).unwrap_err();
    assert!(err.contains("cannot expedite"), "{err}");
}
