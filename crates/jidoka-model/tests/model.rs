//! Event parsing: valid events round-trip; every kind of bad input is rejected with the field
//! path and reason; no input panics the parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use jidoka_model::{Event, EventKind, EventPayload, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default()
}

fn tightening() -> Value {
    json!({
        "source": "ctrl-07", "source_txn_id": "T-1", "occurred_at": "2026-11-24T07:59:59.250Z",
        "kind": "tightening_result",
        "data": {
            "tightening_id": "1001", "vin": "1HGCM82633A004352", "station": "ST040", "tool": "NR-0007",
            "pset": "3", "joint": "J1", "category": "A", "final_torque_nm": 24.8, "final_angle_deg": 212.0,
            "torque_min_nm": 22.0, "torque_max_nm": 28.0, "controller_verdict": "OK",
            "curve": {"angle_deg": [0.0, 10.0, 20.0], "torque_nm": [0.1, 2.0, 24.8], "time_s": [0.0, 0.01, 0.02]}
        }
    })
}

fn err_of(v: Value) -> (String, String) {
    match Event::parse(v, now()) {
        Ok(ev) => panic!("expected rejection, accepted {ev:?}"),
        Err(e) => (e.field, e.reason),
    }
}

#[test]
fn valid_tightening_parses_with_derived_ids() {
    let ev = Event::parse(tightening(), now()).expect("valid");
    assert_eq!(ev.kind(), EventKind::TighteningResult);
    assert_eq!(ev.correlation_id, "ctrl-07:T-1");
    assert!(ev.event_id.starts_with("ev-"));
    assert_eq!(ev.received_at, now());
    assert_eq!(ev.vin(), Some("1HGCM82633A004352"));
    // Same source and transaction id gives the same event id: redelivery is recognisable.
    let again = Event::parse(tightening(), now()).expect("valid");
    assert_eq!(ev.event_id, again.event_id);
    let EventPayload::TighteningResult(t) = &ev.payload else { panic!("wrong payload") };
    assert_eq!(t.joint_key(), "ST040/J1/3");
    assert_eq!(t.curve.as_ref().map(|c| c.len()), Some(3));
}

#[test]
fn serialised_event_parses_back_identically() {
    let ev = Event::parse(tightening(), now()).expect("valid");
    let text = serde_json::to_string(&ev).expect("serialise");
    let back = Event::parse_str(&text, Utc::now()).expect("reparse");
    assert_eq!(ev, back, "received_at and ids must survive an export/import");
    let payload = EventPayload::from_stored_json(&ev.payload_json()).expect("stored payload");
    assert_eq!(payload, ev.payload);
}

#[test]
fn bad_inputs_name_field_and_reason() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([1, 2]), "$", "expected a JSON object"),
        (
            {
                let mut v = tightening();
                v.as_object_mut().map(|o| o.remove("source"));
                v
            },
            "source",
            "missing field",
        ),
        (
            {
                let mut v = tightening();
                v["source"] = json!("");
                v
            },
            "source",
            "must not be empty",
        ),
        (
            {
                let mut v = tightening();
                v["source_txn_id"] = json!(17);
                v
            },
            "source_txn_id",
            "expected a string",
        ),
        (
            {
                let mut v = tightening();
                v["occurred_at"] = json!("yesterday");
                v
            },
            "occurred_at",
            "RFC 3339",
        ),
        (
            {
                let mut v = tightening();
                v["kind"] = json!("teleport");
                v
            },
            "kind",
            "unknown event kind `teleport`",
        ),
        (
            {
                let mut v = tightening();
                v["colour"] = json!("red");
                v
            },
            "colour",
            "unknown field",
        ),
        (
            {
                let mut v = tightening();
                v["data"] = json!("x");
                v
            },
            "data",
            "expected an object",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["final_torque_nm"] = json!("24.8");
                v
            },
            "data.final_torque_nm",
            "invalid type",
        ),
        (
            {
                let mut v = tightening();
                v["data"].as_object_mut().map(|o| o.remove("joint"));
                v
            },
            "data",
            "missing field `joint`",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["spin"] = json!(1);
                v
            },
            "data.spin",
            "unknown field",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["curve"]["angle_deg"] = json!([0.0, 1.0]);
                v
            },
            "data.curve.angle_deg",
            "has 2 samples but torque_nm has 3",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["curve"] = json!({"angle_deg": [1.0], "torque_nm": [1.0]});
                v
            },
            "data.curve.torque_nm",
            "at least 2 samples",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["curve"]["torque_nm"][1] = json!("x");
                v
            },
            "data.curve.torque_nm[1]",
            "invalid type",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["torque_min_nm"] = json!(30.0);
                v
            },
            "data.torque_min_nm",
            "above upper limit",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["controller_verdict"] = json!("MAYBE");
                v
            },
            "data.controller_verdict",
            "unknown variant",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["batch"] = json!({"size": 4, "counter": 5});
                v
            },
            "data.batch.counter",
            "outside 1..=4",
        ),
        (
            {
                let mut v = tightening();
                v["data"]["station"] = json!("ST\u{0007}");
                v
            },
            "data.station",
            "control characters",
        ),
    ];
    for (input, field, reason) in cases {
        let (got_field, got_reason) = err_of(input.clone());
        assert_eq!(got_field, field, "field for {input}");
        assert!(got_reason.contains(reason), "reason `{got_reason}` should contain `{reason}` for {input}");
    }
}

#[test]
fn invalid_json_text_is_rejected() {
    let err = Event::parse_str("{\"source\": ", now()).expect_err("truncated");
    assert_eq!(err.field, "$");
    assert!(err.reason.contains("invalid JSON"));
}

#[test]
fn every_kind_has_a_name_that_parses_back() {
    for kind in EventKind::ALL {
        assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
    }
    assert_eq!(EventKind::ALL.len(), 22);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z_]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["tightening_result", "component_scanned", "2026-11-24T08:00:00Z", "OK", "A"])
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "source",
                    "source_txn_id",
                    "occurred_at",
                    "kind",
                    "data",
                    "vin",
                    "station",
                    "curve",
                    "torque_nm",
                    "angle_deg",
                    "tightening_id",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = Event::parse(v, now());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = Event::parse_str(&s, now());
    }

    #[test]
    fn mutated_valid_event_is_accepted_or_rejected_with_a_field(path_idx in 0usize..6, replacement in arb_json()) {
        let mut v = tightening();
        let keys = ["source", "occurred_at", "kind", "data", "source_txn_id", "event_id"];
        v[keys[path_idx]] = replacement;
        if let Err(e) = Event::parse(v, now()) {
            prop_assert!(!e.field.is_empty());
            prop_assert!(!e.reason.is_empty());
        }
    }
}

mod master_data_changes {
    use jidoka_model::master::{BomItem, ChangePackage, Effectivity, MasterData, MasterDataChange};

    fn bom(part: &str, station: &str) -> BomItem {
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

    fn eco(id: &str, old: &str, new: &str) -> ChangePackage {
        ChangePackage {
            change_id: id.into(),
            old_part_number: old.into(),
            new_part_number: new.into(),
            cut_in: Effectivity { from_sequence: Some(10), ..Effectivity::default() },
            old_valid_until: None,
            old_valid_until_sequence: None,
            description: None,
        }
    }

    fn in_force() -> MasterData {
        MasterData { bom: vec![bom("P-1", "ST010"), bom("P-2", "ST020")], ..MasterData::default() }
    }

    #[test]
    fn rows_are_added_or_put_in_place_by_their_key() {
        let mut line = bom("P-1", "ST010");
        line.quantity = 2.0;
        let change = MasterDataChange {
            rows: MasterData {
                bom: vec![line, bom("P-3", "ST030")],
                changes: vec![eco("ECO-1", "P-1", "P-1B")],
                lots_on_hold: vec!["LOT-7".into()],
                ..MasterData::default()
            },
            ..MasterDataChange::default()
        };
        let next = in_force().apply(&change).expect("holds together");
        assert_eq!(next.bom.len(), 3, "P-1 replaced, P-3 added, P-2 kept");
        assert_eq!(next.bom.iter().find(|b| b.part_number == "P-1").map(|b| b.quantity), Some(2.0));
        assert_eq!(next.changes.len(), 1);
        // Releasing the lot and withdrawing the ECO take them out again.
        let undo = MasterDataChange {
            lots_released: vec!["LOT-7".into()],
            changes_withdrawn: vec!["ECO-1".into()],
            ..MasterDataChange::default()
        };
        let back = next.apply(&undo).expect("holds together");
        assert!(back.lots_on_hold.is_empty() && back.changes.is_empty());
        // A whole replacement keeps nothing of what was in force.
        let whole = MasterDataChange {
            replace: true,
            rows: MasterData { bom: vec![bom("P-9", "ST090")], ..MasterData::default() },
            ..MasterDataChange::default()
        };
        assert_eq!(next.apply(&whole).expect("holds").bom.len(), 1);
    }

    /// Spine v2: the MES is read whole, but only what changed enters the log.
    #[test]
    fn a_delta_carries_only_the_changed_rows_and_puts_the_newer_data_in_force() {
        let current =
            MasterData { changes: vec![eco("ECO-1", "P-1", "P-1B")], lots_on_hold: vec!["LOT-1".into()], ..in_force() };
        assert_eq!(current.delta_to(&current), None, "nothing changed");
        let mut reordered = current.clone();
        reordered.bom.reverse();
        assert_eq!(current.delta_to(&reordered), None, "the same rows in another order");
        // One BOM line changed, one added, an ECO withdrawn, a lot released and another held.
        let mut newer = current.clone();
        newer.bom[1].quantity = 4.0;
        newer.bom.push(bom("P-3", "ST030"));
        newer.changes.clear();
        newer.lots_on_hold = vec!["LOT-2".into()];
        let delta = current.delta_to(&newer).expect("a change");
        assert!(!delta.replace);
        let parts: Vec<&str> = delta.rows.bom.iter().map(|b| b.part_number.as_str()).collect();
        assert_eq!(parts, vec!["P-2", "P-3"], "only the changed and the new line");
        assert_eq!(
            (delta.changes_withdrawn, delta.lots_released),
            (vec!["ECO-1".to_string()], vec!["LOT-1".to_string()])
        );
        assert_eq!(delta.rows.lots_on_hold, vec!["LOT-2".to_string()]);
        let delta = current.delta_to(&newer).expect("a change");
        let applied = current.apply(&delta).expect("holds together");
        assert_eq!(applied.delta_to(&newer), None, "in force is now the newer data");
        // A BOM line removed cannot be said by rows: the whole data replaces what is in force.
        let mut fewer = current.clone();
        fewer.bom.pop();
        let whole = current.delta_to(&fewer).expect("a change");
        assert!(whole.replace && whole.rows == fewer);
    }

    /// The plant's sequencing rules are master data: changed whole, taken out only by a whole
    /// replacement, and a rule that cannot be read refuses the change naming it.
    #[test]
    fn sequencing_rules_change_whole_and_a_bad_rule_is_named() {
        use jidoka_model::master::{Sequencing, SequencingRatio};
        let rules = |n: u32| Sequencing {
            paint_family: "PAINT".into(),
            paint_limit: 10,
            priorities: vec!["high".into(), "paint".into()],
            frozen_units: 30,
            ratios: vec![SequencingRatio {
                name: "sunroof".into(),
                rule: "SUNROOF=YES".into(),
                n,
                p: 3,
                priority: "high".into(),
            }],
            equipment: vec![],
        };
        let current = in_force();
        let with = MasterData { sequencing: Some(rules(1)), ..current.clone() };
        let delta = current.delta_to(&with).expect("a change");
        assert!(!delta.replace && delta.rows.bom.is_empty());
        assert_eq!(delta.rows.sequencing, Some(rules(1)));
        let applied = current.apply(&delta).expect("holds together");
        assert_eq!(applied.sequencing, Some(rules(1)));
        // Another ratio: the rules travel whole.
        let changed = MasterData { sequencing: Some(rules(2)), ..current.clone() };
        assert_eq!(with.delta_to(&changed).expect("a change").rows.sequencing, Some(rules(2)));
        assert_eq!(with.delta_to(&with), None);
        // Rules taken away cannot be said by rows: a whole replacement.
        let gone = with.delta_to(&current).expect("a change");
        assert!(gone.replace && gone.rows.sequencing.is_none());
        // A ratio no sequence can read, a rule that does not parse, a priority left unranked.
        let mut bad = rules(3);
        bad.ratios.push(SequencingRatio {
            name: "v6".into(),
            rule: "ENGINE=".into(),
            n: 1,
            p: 2,
            priority: "low".into(),
        });
        let change = MasterDataChange {
            rows: MasterData { sequencing: Some(bad), ..MasterData::default() },
            ..MasterDataChange::default()
        };
        let errors = current.apply(&change).expect_err("refused");
        let rows: Vec<&str> = errors.iter().map(|(row, _)| row.as_str()).collect();
        for row in ["rows.sequencing.ratios[0]", "rows.sequencing.ratios[1].rule", "rows.sequencing.priorities"] {
            assert!(rows.contains(&row), "{row} named in {errors:?}");
        }
    }

    #[test]
    fn a_change_that_does_not_hold_together_is_refused_with_every_row_named() {
        let change = MasterDataChange {
            rows: MasterData {
                bom: vec![BomItem { quantity: 0.0, ..bom("P-4", "ST040") }],
                changes: vec![eco("ECO-2", "P-NONE", "P-X"), eco("ECO-3", "P-2", "P-2")],
                ..MasterData::default()
            },
            changes_withdrawn: vec!["ECO-404".into()],
            ..MasterDataChange::default()
        };
        let errors = in_force().apply(&change).expect_err("refused");
        let rows: Vec<&str> = errors.iter().map(|(row, _)| row.as_str()).collect();
        for row in
            ["rows.bom[0].quantity", "rows.changes[0].old_part_number", "rows.changes[1]", "changes_withdrawn[0]"]
        {
            assert!(rows.contains(&row), "{row} named in {errors:?}");
        }
        // An ECO on a part that this very change adds to the BOM holds together.
        let both = MasterDataChange {
            rows: MasterData {
                bom: vec![bom("P-5", "ST050")],
                changes: vec![eco("ECO-5", "P-5", "P-5B")],
                ..MasterData::default()
            },
            ..MasterDataChange::default()
        };
        assert!(in_force().apply(&both).is_ok());
    }

    #[test]
    fn a_change_older_than_the_last_from_its_source_is_refused_as_out_of_order() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc);
        let hold = |lot: &str, issued: &str| MasterDataChange {
            issued_at: Some(at(issued)),
            rows: MasterData { lots_on_hold: vec![lot.into()], ..MasterData::default() },
            ..MasterDataChange::default()
        };
        let newer = in_force().apply_from("api:mes-bridge", &hold("LOT-2", "2026-12-07T10:05:00Z")).expect("in order");
        assert_eq!(newer.issued["api:mes-bridge"], at("2026-12-07T10:05:00Z"));
        // The version issued before it, delivered after it: refused, naming `issued_at`.
        let errors = newer.apply_from("api:mes-bridge", &hold("LOT-1", "2026-12-07T10:00:00Z")).expect_err("stale");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "issued_at");
        assert!(errors[0].1.contains("out of order") && errors[0].1.contains("2026-12-07T10:05:00"), "{errors:?}");
        // Stale and not holding together: both said, the order first.
        let mut bad = hold("LOT-1", "2026-12-07T09:00:00Z");
        bad.changes_withdrawn = vec!["ECO-404".into()];
        let errors = newer.apply_from("api:mes-bridge", &bad).expect_err("stale and bad");
        assert_eq!(errors.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["issued_at", "changes_withdrawn[0]"]);
        // Another source keeps its own clock; the same instant again is not older; a change
        // without `issued_at` is not ordered.
        assert!(newer.apply_from("api:other", &hold("LOT-1", "2026-12-07T09:00:00Z")).is_ok());
        assert!(newer.apply_from("api:mes-bridge", &hold("LOT-3", "2026-12-07T10:05:00Z")).is_ok());
        let unordered = MasterDataChange { issued_at: None, ..hold("LOT-4", "2026-12-07T00:00:00Z") };
        let after = newer.apply_from("api:mes-bridge", &unordered).expect("unordered");
        assert_eq!(after.issued["api:mes-bridge"], at("2026-12-07T10:05:00Z"), "kept");
        // A whole replacement keeps what was issued from each source.
        let whole = MasterDataChange { replace: true, rows: in_force(), ..hold("LOT-5", "2026-12-07T11:00:00Z") };
        let whole = MasterDataChange { rows: MasterData { lots_on_hold: vec!["LOT-5".into()], ..whole.rows }, ..whole };
        let replaced = newer.apply_from("master-data:file", &whole).expect("replace");
        assert_eq!(replaced.issued.len(), 2, "{:?}", replaced.issued);
        // A change cannot set the kept versions itself.
        let forged = jidoka_model::Event::parse(
            serde_json::json!({"source": "api:x", "source_txn_id": "r1", "occurred_at": "2026-11-24T08:00:00Z",
                "kind": "master_data_changed", "data": {"rows": {"issued": {"api:mes-bridge": "2027-01-01T00:00:00Z"}}}}),
            chrono::Utc::now(),
        )
        .expect_err("forged");
        assert_eq!(forged.field, "data.rows.issued");
    }

    #[test]
    fn a_master_data_event_names_a_bad_row_by_its_path() {
        let at = chrono::Utc::now();
        let err = jidoka_model::Event::parse(
            serde_json::json!({"source": "mes", "source_txn_id": "r1", "occurred_at": "2026-11-24T08:00:00Z",
                "kind": "master_data_changed", "data": {"rows": {"bom": [
                    {"model": "*", "part_number": "P-1", "quantity": -1.0, "station": "ST010"}]}}}),
            at,
        )
        .expect_err("bad row");
        assert_eq!(err.field, "data.rows.bom[0].quantity");
    }
}

/// Regression: ids accepted bidirectional and zero-width characters, so a VIN could be spoofed
/// on screen (U+202E turns `...4352` into what reads as another VIN).
#[test]
fn ids_with_invisible_or_direction_changing_characters_are_refused() {
    for (field, bad) in
        [("data.vin", "1HGCM82633A\u{202E}004352"), ("data.station", "ST\u{200B}040"), ("source", "ctrl\u{2066}-07")]
    {
        let mut v = tightening();
        match field {
            "source" => v["source"] = json!(bad),
            f => v["data"][f.trim_start_matches("data.")] = json!(bad),
        }
        let err = Event::parse(v, now()).expect_err(field);
        assert_eq!(err.field, field, "{err:?}");
        assert!(err.reason.contains("U+"), "{err:?}");
    }
    // Letters outside ASCII stay allowed.
    let mut v = tightening();
    v["data"]["station"] = json!("Montage-Süd");
    assert!(Event::parse(v, now()).is_ok());
}

#[test]
fn an_outage_that_ends_before_it_began_is_refused() {
    let event = |until: &str| {
        json!({"source": "op:st30", "source_txn_id": "outage-end:1", "occurred_at": "2026-11-24T08:10:00Z",
               "kind": "source_outage",
               "data": {"station": "ST30", "since": "2026-11-24T08:00:00Z", "until": until, "reason": "refused"}})
    };
    let err = Event::parse(event("2026-11-24T07:59:00Z"), now()).expect_err("until before since");
    assert_eq!(err.field, "data.until");
    let ok = Event::parse(event("2026-11-24T08:09:00Z"), now()).expect("a closed outage");
    match ok.payload {
        EventPayload::SourceOutage(o) => {
            assert_eq!(o.station, "ST30");
            assert_eq!(o.until.map(|t| t.to_rfc3339()), Some("2026-11-24T08:09:00+00:00".to_string()));
        }
        other => panic!("parsed as {other:?}"),
    }
}
