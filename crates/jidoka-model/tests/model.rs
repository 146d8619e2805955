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
    assert_eq!(EventKind::ALL.len(), 16);
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
