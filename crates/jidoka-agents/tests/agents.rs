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
    let mut router = Router::new(build_agents(&AgentsConfig::default(), &None));
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

#[derive(Clone)]
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

mod sequence {
    use super::*;
    use jidoka_agents::sequence::SequenceAgent;
    use jidoka_model::master::{
        BomItem, ChangePackage, Effectivity, Equipment, EquipmentKind, MasterData, RoutingStep,
    };

    fn master() -> MasterData {
        let item = |part: &str, station: &str, rule: Option<&str>, qty: f64| BomItem {
            model: "*".into(),
            part_number: part.into(),
            quantity: qty,
            station: station.into(),
            operation: None,
            option_rule: rule.map(str::to_string),
            effectivity: Effectivity::default(),
        };
        let mut late = item("BRACKET", "S1", None, 1.0);
        late.effectivity.from_sequence = Some(100);
        MasterData {
            bom: vec![
                item("ECU-I4", "S1", Some("ENGINE=I4"), 1.0),
                item("ECU-V6", "S1", Some("ENGINE=V6"), 1.0),
                item("CLIP", "S1", None, 2.0),
                late,
                item("SEAT", "S2", None, 1.0),
            ],
            changes: vec![ChangePackage {
                change_id: "ECO-7".into(),
                old_part_number: "SEAT".into(),
                new_part_number: "SEAT-B".into(),
                cut_in: Effectivity { from_sequence: Some(50), ..Effectivity::default() },
                old_valid_until: None,
                old_valid_until_sequence: Some(60),
                description: None,
            }],
            routing: vec![
                RoutingStep {
                    model: "*".into(),
                    station: "S1".into(),
                    operation: "OP1".into(),
                    step: 1,
                    required_tightenings: vec!["J1".into()],
                },
                RoutingStep {
                    model: "*".into(),
                    station: "S1".into(),
                    operation: "OP1B".into(),
                    step: 2,
                    required_tightenings: vec![],
                },
                RoutingStep {
                    model: "*".into(),
                    station: "S2".into(),
                    operation: "OP2".into(),
                    step: 3,
                    required_tightenings: vec![],
                },
            ],
            lots_on_hold: vec!["LOT-BAD".into()],
            // Calibrated a year before the due date.
            equipment: [("T", 2027, 6), ("T-OLD", 2026, 11)]
                .into_iter()
                .map(|(tool, year, month)| Equipment {
                    equipment: tool.into(),
                    kind: EquipmentKind::Nutrunner,
                    station: Some("S1".into()),
                    calibrated_at: Some(Utc.with_ymd_and_hms(year - 1, month, 1, 0, 0, 0).unwrap()),
                    calibration_due: Some(Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).unwrap()),
                })
                .collect(),
            instructions: Vec::new(),
            operators: Vec::new(),
            sequencing: None,
            issued: Default::default(),
        }
    }

    struct Line {
        router: Router,
        seq: u64,
        out: Vec<Finding>,
        events: Vec<StoredEvent>,
        /// When the next event happens.
        at: &'static str,
    }

    impl Line {
        fn new() -> Line {
            Line::with(&master())
        }

        fn with(m: &MasterData) -> Line {
            Line {
                router: Router::new(vec![Box::new(SequenceAgent::new(m))]),
                seq: 0,
                out: Vec::new(),
                events: Vec::new(),
                at: "2026-11-24T08:00:00Z",
            }
        }

        fn send(&mut self, kind: &str, data: Value) -> Vec<String> {
            self.seq += 1;
            let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default();
            let event = Event::parse(
                json!({"source": "t", "source_txn_id": self.seq.to_string(), "occurred_at": self.at, "kind": kind, "data": data}),
                t,
            )
            .expect("valid event");
            let before = self.out.len();
            let stored = StoredEvent { seq: self.seq, event };
            self.router.process(&stored, &mut self.out);
            self.events.push(stored);
            self.out[before..].iter().map(|f| f.kind.trim_start_matches("sequence.").to_string()).collect()
        }

        fn master_data_refused(&self) -> Vec<&Finding> {
            self.out.iter().filter(|f| f.kind == "sequence.master_data_refused").collect()
        }

        fn release(&mut self, vin: &str, engine: &str, sequence: u64) {
            let found = self.send(
                "work_order_released",
                json!({"work_order": format!("WO-{vin}"), "vin": vin, "model": "SUV", "options": [format!("ENGINE={engine}")], "sequence": sequence}),
            );
            assert!(found.is_empty());
        }

        fn scan(&mut self, vin: &str, station: &str, part: &str, extra: Value) -> Vec<String> {
            let mut data = json!({"vin": vin, "station": station, "part_number": part});
            if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
            self.send("component_scanned", data)
        }

        fn complete_s1(&mut self, vin: &str) {
            self.send("tightening_result", json!({"tightening_id": "1", "vin": vin, "station": "S1", "tool": "T", "pset": "1", "joint": "J1", "final_torque_nm": 10.0, "final_angle_deg": 30.0}));
            self.send("operation_completed", json!({"vin": vin, "station": "S1", "operation": "OP1"}));
            self.send("operation_completed", json!({"vin": vin, "station": "S1", "operation": "OP1B"}));
        }
    }

    #[test]
    fn a_master_data_change_delivered_out_of_order_is_refused_and_the_newer_stays() {
        let mut l = Line::new();
        let hold = |lot: &str, issued: &str| json!({"issued_at": issued, "rows": {"lots_on_hold": [lot]}});
        assert!(l.send("master_data_changed", hold("LOT-NEW", "2026-12-07T10:05:00Z")).is_empty());
        // The version issued five minutes earlier arrives after it (a retried push).
        assert_eq!(
            l.send("master_data_changed", hold("LOT-OLD", "2026-12-07T10:00:00.000Z")),
            vec!["master_data_refused"]
        );
        let refused = l.master_data_refused();
        assert_eq!(refused[0].details["rows"][0]["row"], "issued_at", "{}", refused[0].details);
        assert!(refused[0].reason.contains("out of order"), "{}", refused[0].reason);
        let master = l.router.master().as_deref().expect("master data in force");
        assert!(master.lots_on_hold.contains(&"LOT-NEW".to_string()));
        assert!(!master.lots_on_hold.contains(&"LOT-OLD".to_string()), "nothing of the stale change in force");
        // A lot of the stale change is not on hold: a scan of it raises nothing.
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        assert!(l.scan("V1", "S1", "ECU-I4", json!({"serial": "E1", "supplier_lot": "LOT-OLD"})).is_empty());
        l.release("V2", "I4", 11);
        l.send("unit_entered_station", json!({"vin": "V2", "station": "S1"}));
        assert_eq!(
            l.scan("V2", "S1", "ECU-I4", json!({"serial": "E2", "supplier_lot": "LOT-NEW"})),
            vec!["lot_on_hold"]
        );
    }

    #[test]
    fn a_tool_past_its_calibration_due_date_is_reported_once() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        let result = |tool: &str, id: &str| {
            json!({"tightening_id": id, "vin": "V1", "station": "S1", "tool": tool, "pset": "1", "joint": "J1",
                   "final_torque_nm": 10.0, "final_angle_deg": 30.0})
        };
        assert!(l.send("tightening_result", result("T", "1")).is_empty(), "calibrated until 2027");
        assert_eq!(l.send("tightening_result", result("T-OLD", "2")), vec!["tool_calibration_overdue"]);
        assert!(l.send("tightening_result", result("T-OLD", "3")).is_empty(), "one finding per tool and due date");
        let f = l.out.last().unwrap();
        assert_eq!(f.subject.tool.as_deref(), Some("T-OLD"));
        assert_eq!(f.details["calibration_due"], "2026-11-01T00:00:00+00:00");
        assert_eq!(f.verdict, Verdict::Review);
        // Bad calibration data is refused when the master data is loaded.
        let mut m = master();
        m.equipment[0].calibration_due = Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        m.equipment.push(m.equipment[1].clone());
        let errors: Vec<String> = m.validate().into_iter().map(|(row, _)| row).collect();
        assert_eq!(errors, vec!["equipment[0].calibration_due", "equipment[2].equipment"]);
    }

    #[test]
    fn a_unit_worked_by_an_operator_not_certified_for_the_station_is_reported() {
        use jidoka_model::master::{MasterDataChange, Operator, WorkInstruction};
        let op = |id: &str, level: u8, stations: &[&str], until: Option<(i32, u32)>| Operator {
            operator: id.into(),
            name: String::new(),
            certification: level,
            certified_stations: stations.iter().map(|s| s.to_string()).collect(),
            certified_until: until.map(|(y, m)| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap()),
        };
        let mut m = master();
        m.instructions.push(WorkInstruction {
            instruction_id: "WI-S1".into(),
            station: "S1".into(),
            operation: "OP1".into(),
            title: "Subframe".into(),
            text: "cross pattern".into(),
            min_certification: 2,
        });
        m.operators = vec![
            op("OP-OK", 3, &["S1"], None),
            op("OP-LOW", 1, &["S1"], None),
            op("OP-ELSEWHERE", 3, &["S2"], None),
            op("OP-LAPSED", 3, &["S1"], Some((2026, 10))),
        ];
        let mut l = Line::with(&m);
        for (i, vin) in ["V1", "V2", "V3", "V4", "V5", "V6"].iter().enumerate() {
            l.release(vin, "I4", 10 + i as u64);
        }
        let enter = |l: &mut Line, vin: &str, operator: &str| {
            l.send("unit_entered_station", json!({"vin": vin, "station": "S1", "operator": operator}))
        };
        assert!(enter(&mut l, "V1", "OP-OK").is_empty());
        assert_eq!(enter(&mut l, "V2", "OP-LOW"), vec!["operator_not_certified"]);
        assert!(l.out.last().unwrap().reason.contains("level 1, the work instructions at S1 ask for 2"));
        assert!(enter(&mut l, "V3", "OP-LOW").is_empty(), "once per operator, station and reason");
        assert_eq!(enter(&mut l, "V4", "OP-ELSEWHERE"), vec!["operator_not_certified"]);
        assert_eq!(enter(&mut l, "V5", "OP-LAPSED"), vec!["operator_not_certified"]);
        assert!(l.out.last().unwrap().reason.contains("lapsed at 2026-10-01"));
        assert_eq!(enter(&mut l, "V6", "OP-NEW"), vec!["operator_not_certified"]);
        assert_eq!(l.out.last().unwrap().details["operator"], "OP-NEW");
        // A certification released through the log is in force for the next unit.
        let change = MasterDataChange {
            rows: MasterData { operators: vec![op("OP-LOW", 2, &["S1"], None)], ..MasterData::default() },
            ..MasterDataChange::default()
        };
        l.send("master_data_changed", serde_json::to_value(&change).unwrap());
        l.release("V7", "I4", 20);
        assert!(enter(&mut l, "V7", "OP-LOW").is_empty(), "certified at level 2 now");
        // Without operators in the master data nothing is checked.
        let mut quiet = Line::new();
        quiet.release("V1", "I4", 10);
        assert!(enter(&mut quiet, "V1", "OP-ANYONE").is_empty());
        // An operator listed twice is refused when the master data is loaded.
        m.operators.push(op("OP-OK", 1, &[], None));
        let errors: Vec<String> = m.validate().into_iter().map(|(row, _)| row).collect();
        assert_eq!(errors, vec!["operators[4].operator"]);
    }

    /// Regression: results a controller link could not recover were a WARN line only.
    #[test]
    fn a_gap_in_a_controllers_results_is_a_finding_about_its_station() {
        let mut l = Line::new();
        let kinds = l.send(
            "source_gap",
            json!({"station": "S1", "first_id": 41, "last_id": 52, "count": 12,
                   "reason": "the controller refused old-result upload (error 99)"}),
        );
        assert_eq!(kinds, vec!["data_gap"]);
        let f = l.out.last().expect("finding");
        assert_eq!((f.verdict, f.severity), (jidoka_model::Verdict::Review, jidoka_model::Severity::Critical));
        assert_eq!(f.subject.station.as_deref(), Some("S1"));
        assert!(f.reason.contains("controller ids 41 to 52") && f.reason.contains("error 99"), "{}", f.reason);
        assert_eq!(f.details["count"], 12);
        // A gap that makes no sense is refused when it is stored, with the field named.
        let bad = Event::parse(
            json!({"source": "t", "source_txn_id": "g", "occurred_at": "2026-11-24T08:00:00Z", "kind": "source_gap",
                   "data": {"station": "S1", "first_id": 9, "last_id": 3, "count": 1, "reason": ""}}),
            Utc::now(),
        );
        assert_eq!(bad.map_err(|e| e.field).err().as_deref(), Some("data.last_id"));
    }

    /// A controller link down while units are built is a finding about the station as soon as
    /// its outage is logged, naming the units that passed meanwhile; its end names them all.
    #[test]
    fn a_controller_link_down_during_production_is_a_finding_and_its_end_names_the_units() {
        let mut l = Line::new();
        for (k, vin) in ["V1", "V2", "V3"].into_iter().enumerate() {
            l.release(vin, "I4", 10 + k as u64);
        }
        l.at = "2026-11-24T08:00:00Z";
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        l.at = "2026-11-24T08:02:00Z";
        l.send("unit_entered_station", json!({"vin": "V2", "station": "S1"}));
        l.at = "2026-11-24T08:03:30Z";
        let down = json!({"station": "S1", "since": "2026-11-24T08:01:30Z", "reason": "connection refused"});
        assert_eq!(l.send("source_outage", down.clone()), vec!["link_down"]);
        let f = l.out.last().expect("finding").clone();
        assert_eq!((f.verdict, f.severity), (jidoka_model::Verdict::Review, jidoka_model::Severity::Critical));
        assert_eq!(f.subject.station.as_deref(), Some("S1"));
        assert!(f.reason.contains("down since 2026-11-24T08:01:30Z (connection refused)"), "{}", f.reason);
        assert_eq!(f.details["units"], json!(["V2"]), "V1 entered before the outage began");
        // More units; the link restarts and restates its outage: still one finding.
        l.at = "2026-11-24T08:04:00Z";
        assert!(!l.send("unit_entered_station", json!({"vin": "V3", "station": "S1"})).contains(&"link_down".into()));
        l.at = "2026-11-24T08:05:00Z";
        assert!(l.send("source_outage", down).is_empty());
        l.at = "2026-11-24T08:06:00Z";
        let back = json!({"station": "S1", "since": "2026-11-24T08:01:30Z", "until": "2026-11-24T08:06:00Z"});
        assert_eq!(l.send("source_outage", back), vec!["link_back"]);
        let f = l.out.last().expect("finding");
        assert_eq!((f.verdict, f.severity), (jidoka_model::Verdict::Pass, jidoka_model::Severity::Info));
        assert_eq!(f.details["units"], json!(["V2", "V3"]));
        assert!(f.reason.contains("back after 4.5 min; 2 unit(s) there since: V2, V3"), "{}", f.reason);
    }

    /// Down during a break is nobody's business; down when production resumes is.
    #[test]
    fn a_controller_link_down_outside_production_is_a_finding_only_once_the_plant_produces() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        l.at = "2026-11-24T12:02:00Z";
        assert!(l.send("source_outage", json!({"station": "S1", "since": "2026-11-24T12:00:00Z"})).is_empty());
        l.at = "2026-11-24T12:30:00Z";
        let back = json!({"station": "S1", "since": "2026-11-24T12:00:00Z", "until": "2026-11-24T12:30:00Z"});
        assert!(l.send("source_outage", back).is_empty(), "an outage over the break ends without a finding");
        l.at = "2026-11-24T13:02:00Z";
        assert!(l.send("source_outage", json!({"station": "S1", "since": "2026-11-24T13:00:00Z"})).is_empty());
        l.at = "2026-11-24T13:10:00Z";
        let kinds = l.send("component_scanned", json!({"vin": "V1", "station": "S2", "part_number": "SEAT"}));
        assert!(kinds.contains(&"link_down".to_string()), "the first sign of production anywhere: {kinds:?}");
        let f = l.out.iter().find(|f| f.kind == "sequence.link_down").expect("link_down");
        assert!(f.reason.contains("no unit seen there yet"), "{}", f.reason);
        assert_eq!(f.details["producing_at"], "2026-11-24T13:10:00Z");
    }

    #[test]
    fn a_correct_unit_raises_nothing() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        assert!(l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"})).is_empty());
        assert!(l.scan("V1", "S1", "ECU-I4", json!({"serial": "E1"})).is_empty());
        assert!(l.scan("V1", "S1", "CLIP", json!({"quantity": 2.0})).is_empty());
        l.complete_s1("V1");
        assert!(l.send("unit_left_station", json!({"vin": "V1", "station": "S1"})).is_empty());
    }

    #[test]
    fn every_reason_code_is_named() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        assert_eq!(l.scan("V1", "S1", "ECU-V6", json!({})), vec!["wrong_variant"]);
        assert_eq!(l.scan("V1", "S1", "SEAT", json!({})), vec!["wrong_part"]);
        assert_eq!(l.scan("V1", "S1", "MYSTERY", json!({})), vec!["unknown_part"]);
        assert_eq!(
            l.scan("V1", "S1", "BRACKET", json!({})),
            vec!["wrong_variant"],
            "not yet effective for sequence 10"
        );
        assert_eq!(l.scan("V1", "S1", "CLIP", json!({"quantity": 3.0})), vec!["quantity_over"]);
        assert_eq!(
            l.scan("V1", "S1", "ECU-I4", json!({"serial": "E9", "supplier_lot": "LOT-BAD"})),
            vec!["lot_on_hold"]
        );
        l.send("operation_completed", json!({"vin": "V1", "station": "S1", "operation": "OP1B"}));
        assert_eq!(
            l.send("operation_completed", json!({"vin": "V1", "station": "S1", "operation": "OP1"})),
            vec!["operation_out_of_order"]
        );
        // Left without tightening J1: the departure names it.
        assert_eq!(l.send("unit_left_station", json!({"vin": "V1", "station": "S1"})), vec!["tightening_missing"]);

        // Serials are unique per part number: the same ECU serial on a second unit.
        l.release("V2", "I4", 20);
        assert_eq!(l.scan("V2", "S1", "ECU-I4", json!({"serial": "E9"})), vec!["duplicate_serial"]);
        assert_eq!(l.scan("V2", "S1", "CLIP", json!({})), Vec::<String>::new());
        let left = l.send("unit_left_station", json!({"vin": "V2", "station": "S1"}));
        assert_eq!(left, vec!["operation_missing"]);
        let last = l.out.last().expect("finding");
        assert!(last.reason.contains("operation OP1, OP1B not completed"), "{}", last.reason);
        assert_eq!(last.details["quantity_short"][0]["part"], "CLIP");

        // ECO: old part before cut-in is fine, in the use-up window too, after it superseded;
        // the new part before cut-in is not yet effective.
        for (vin, seq, part, expected) in [
            ("V3", 40, "SEAT", vec![]),
            ("V4", 40, "SEAT-B", vec!["not_yet_effective"]),
            ("V5", 55, "SEAT", vec![]),
            ("V6", 55, "SEAT-B", vec![]),
            ("V7", 70, "SEAT", vec!["superseded"]),
        ] {
            l.release(vin, "I4", seq);
            assert_eq!(l.scan(vin, "S2", part, json!({})), expected, "{vin} seq {seq} {part}");
        }
        let superseded = l.out.last().expect("finding");
        assert_eq!(superseded.details["change"], "ECO-7");
        assert_eq!(superseded.details["expected"], "SEAT-B");
        assert_eq!(superseded.verdict, Verdict::Hold);
    }

    #[test]
    fn units_and_stations_it_cannot_place_are_findings() {
        let mut l = Line::new();
        assert_eq!(l.send("unit_entered_station", json!({"vin": "GHOST", "station": "S1"})), vec!["unknown_vin"]);
        assert_eq!(l.scan("GHOST", "S1", "CLIP", json!({})), vec!["unknown_vin"]);
        l.release("V1", "I4", 10);
        assert_eq!(l.send("unit_entered_station", json!({"vin": "V1", "station": "S9"})), vec!["unknown_station"]);
        assert_eq!(
            l.send("operation_completed", json!({"vin": "V1", "station": "S1", "operation": "OP9"})),
            vec!["operation_not_on_routing"]
        );
    }

    #[test]
    fn serial_range_effectivity_uses_the_vins_serial_number() {
        let mut m = master();
        m.bom.push(BomItem {
            model: "*".into(),
            part_number: "RECALL-FIX".into(),
            quantity: 1.0,
            station: "S2".into(),
            operation: None,
            option_rule: None,
            effectivity: Effectivity {
                from_serial: Some("000100".into()),
                to_serial: Some("000199".into()),
                ..Effectivity::default()
            },
        });
        let mut l = Line::new();
        l.router = Router::new(vec![Box::new(SequenceAgent::new(&m))]);
        for (vin, needs_fix) in [("5JKSUV5A2TD000150", true), ("5JKSUV5A2TD000250", false)] {
            l.release(vin, "I4", 10);
            l.scan(vin, "S2", "SEAT", json!({}));
            l.send("operation_completed", json!({"vin": vin, "station": "S2", "operation": "OP2"}));
            let left = l.send("unit_left_station", json!({"vin": vin, "station": "S2"}));
            assert_eq!(left.is_empty(), !needs_fix, "{vin}: {left:?}");
            if needs_fix {
                assert_eq!(l.out.last().map(|f| f.details["scans_missing"][0].clone()), Some(json!("RECALL-FIX")));
            }
        }
    }

    fn item(part: &str, station: &str) -> BomItem {
        BomItem {
            model: "*".into(),
            part_number: part.into(),
            quantity: 1.0,
            station: station.into(),
            operation: None,
            option_rule: None,
            effectivity: Effectivity::default(),
        }
    }

    #[test]
    fn a_misread_label_does_not_hide_a_genuinely_missing_part() {
        let mut m = master();
        m.bom.push(item("GROMMET", "S2"));
        let mut l = Line::with(&m);
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S2"}));
        assert_eq!(l.scan("V1", "S2", "GARBLED", json!({})), vec!["unknown_part"]);
        assert!(l.scan("V1", "S2", "SEAT", json!({})).is_empty(), "the rescan of SEAT is right");
        l.send("operation_completed", json!({"vin": "V1", "station": "S2", "operation": "OP2"}));
        assert_eq!(l.send("unit_left_station", json!({"vin": "V1", "station": "S2"})), vec!["scan_missing"]);
        assert_eq!(l.out.last().map(|f| f.details["scans_missing"].clone()), Some(json!(["GROMMET"])));
    }

    #[test]
    fn same_part_on_two_lines_is_one_requirement_and_retries_are_one_piece() {
        let mut m = master();
        m.bom.push(item("SEAT", "S2"));
        let mut l = Line::with(&m);
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S2"}));
        assert!(l.scan("V1", "S2", "SEAT", json!({"serial": "S-1"})).is_empty());
        assert!(l.scan("V1", "S2", "SEAT", json!({"serial": "S-1"})).is_empty(), "a scanner retry is no second piece");
        l.send("operation_completed", json!({"vin": "V1", "station": "S2", "operation": "OP2"}));
        assert_eq!(l.send("unit_left_station", json!({"vin": "V1", "station": "S2"})), vec!["quantity_short"]);
        l.release("V2", "I4", 11);
        l.send("unit_entered_station", json!({"vin": "V2", "station": "S2"}));
        assert!(l.scan("V2", "S2", "SEAT", json!({"serial": "S-2"})).is_empty());
        assert!(l.scan("V2", "S2", "SEAT", json!({"serial": "S-3"})).is_empty(), "two pieces asked for");
        assert_eq!(l.scan("V2", "S2", "SEAT", json!({"serial": "S-4"})), vec!["quantity_over"]);
    }

    #[test]
    fn superseded_names_only_the_eco_behind_the_requirement() {
        let mut m = master();
        m.bom.push(item("SEAT-B", "S1"));
        let mut l = Line::with(&m);
        l.release("V1", "I4", 70);
        // At S1 SEAT-B is a BOM line of its own, not the result of ECO-7: SEAT is a wrong part.
        assert_eq!(l.scan("V1", "S1", "SEAT", json!({})), vec!["wrong_part"]);
        assert_eq!(l.scan("V1", "S2", "SEAT", json!({})), vec!["superseded"]);
    }

    #[test]
    fn nok_work_is_not_done_and_results_without_vin_find_their_unit() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        l.scan("V1", "S1", "ECU-I4", json!({}));
        l.scan("V1", "S1", "CLIP", json!({"quantity": 2.0}));
        // No VIN on the result (as many controllers send): it is the unit at the station.
        l.send(
            "tightening_result",
            json!({"tightening_id": "7", "station": "S1", "tool": "T", "pset": "1", "joint": "J1",
            "final_torque_nm": 3.0, "final_angle_deg": 2.0, "controller_verdict": "NOK"}),
        );
        l.send("operation_completed", json!({"vin": "V1", "station": "S1", "operation": "OP1"}));
        l.send("operation_completed", json!({"vin": "V1", "station": "S1", "operation": "OP1B", "result": "NOK"}));
        assert_eq!(l.send("unit_left_station", json!({"vin": "V1", "station": "S1"})), vec!["operation_missing"]);
        let f = l.out.last().expect("finding");
        assert_eq!(f.details["operations_missing"], json!(["OP1B"]));
        assert_eq!(f.details["tightenings_nok"], json!(["J1"]));
        // The HOLD names the unit's work order (the MES files records under it) and cites the
        // NOK tightening it rests on.
        assert_eq!(f.subject.work_order.as_deref(), Some("WO-V1"));
        let nok = l.events.iter().find(|e| e.event.kind() == jidoka_model::EventKind::TighteningResult).expect("nok");
        assert!(f.evidence.contains(&nok.event.event_id), "{:?}", f.evidence);
        assert!(
            f.reason.contains("operation OP1B not completed") && f.reason.contains("J1 left with a NOK tightening"),
            "{}",
            f.reason
        );

        l.release("V2", "I4", 11);
        l.send("unit_entered_station", json!({"vin": "V2", "station": "S1"}));
        l.scan("V2", "S1", "ECU-I4", json!({}));
        l.scan("V2", "S1", "CLIP", json!({"quantity": 2.0}));
        l.send(
            "tightening_result",
            json!({"tightening_id": "8", "station": "S1", "tool": "T", "pset": "1", "joint": "J1",
            "final_torque_nm": 3.0, "final_angle_deg": 2.0, "controller_verdict": "NOK"}),
        );
        l.complete_s1("V2");
        assert!(l.send("unit_left_station", json!({"vin": "V2", "station": "S1"})).is_empty(), "reworked: NOK then OK");
    }

    #[test]
    fn a_lost_departure_is_judged_when_the_unit_enters_its_next_station() {
        let mut l = Line::new();
        l.release("V1", "I4", 10);
        l.send("unit_entered_station", json!({"vin": "V1", "station": "S1"}));
        l.scan("V1", "S1", "ECU-I4", json!({}));
        // The departure from S1 never arrives; entering S2 judges S1.
        assert_eq!(l.send("unit_entered_station", json!({"vin": "V1", "station": "S2"})), vec!["operation_missing"]);
        assert_eq!(l.out.last().and_then(|f| f.subject.station.clone()).as_deref(), Some("S1"));
        // A result arriving late for S1 after the unit moved on is not judged again.
        l.send(
            "tightening_result",
            json!({"tightening_id": "9", "vin": "V1", "station": "S1", "tool": "T", "pset": "1", "joint": "J1",
            "final_torque_nm": 10.0, "final_angle_deg": 30.0}),
        );
        l.scan("V1", "S2", "SEAT", json!({}));
        l.send("operation_completed", json!({"vin": "V1", "station": "S2", "operation": "OP2"}));
        assert!(l.send("unit_left_station", json!({"vin": "V1", "station": "S2"})).is_empty());
    }

    #[test]
    fn malformed_master_data_is_rejected_with_its_row() {
        let mut m = master();
        m.bom[1].option_rule = Some("ENGINE V6".into());
        m.bom[2].quantity = -1.0;
        m.changes[0].old_part_number = "NOPE".into();
        let errors = m.validate();
        let rows: Vec<&str> = errors.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rows, vec!["bom[1].option_rule", "bom[2].quantity", "changes[0].old_part_number"]);
        assert!(errors[0].1.contains("`=`"));
    }
}
