//! The Open Protocol codec against the public test telegrams, and properties of the parser on
//! arbitrary bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_connectors::openprotocol::fields::{Lookup, Value};
use jidoka_connectors::openprotocol::{self as op, Body, Framed, Framer, Telegram, layouts};
use proptest::prelude::*;
use serde_json::Value as Json;

fn vectors() -> Vec<(String, Option<i64>, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/open_protocol/telegrams.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            (
                v["mid"].as_str().unwrap().to_string(),
                v["revision"].as_i64(),
                v["telegram"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_vector_round_trips_and_every_known_layout_decodes() {
    let all = vectors();
    assert_eq!(all.len(), 265);
    let mut typed = 0;
    for (mid, _, telegram) in &all {
        let t = Telegram::parse(telegram.as_bytes()).unwrap_or_else(|e| panic!("{telegram:?}: {e}"));
        assert_eq!(format!("{:04}", t.header.mid), *mid);
        // Header-level: the bytes come back whatever the MID.
        assert_eq!(t.to_bytes(), telegram.as_bytes());
        let known = layouts::layout(t.header.mid, t.header.effective_revision()).is_some();
        // Field-level: decode by the layout and write the fields back.
        let body = op::check_roundtrip(telegram.as_bytes()).unwrap_or_else(|e| panic!("{telegram:?}: {e}"));
        assert_eq!(matches!(body, Body::Fields(_)), known, "{telegram:?}");
        if known {
            typed += 1;
        }
    }
    // MIDs 0001-0009, 0014-0017, 0050-0054, 0060-0078, 9997-9999 at the revisions present.
    assert_eq!(typed, 76);
}

#[test]
fn a_real_controller_result_decodes_to_its_values() {
    let all = vectors();
    let (_, _, rev2) = all.iter().find(|(m, r, _)| m == "0061" && *r == Some(2)).unwrap();
    let t = Telegram::parse(rev2.as_bytes()).unwrap();
    let Body::Fields(f) = op::decode(&t).unwrap() else { panic!("no fields") };
    assert_eq!(f.text("torque_controller_name").as_deref(), Some("RA ST6.2 ETV100"));
    assert_eq!(f.text("tool_serial_number").as_deref(), Some("C0761275"));
    assert_eq!(f.text("timestamp").as_deref(), Some("2020-06-25:01:04:39"));
    assert_eq!(f.int("tightening_id"), Some(184887));
    let j = op::to_json(&t, &Body::Fields(f.clone()));
    assert_eq!(j["fields"]["tightening_id"], 184887);
    assert!(j["fields"]["torque"].is_f64());

    let (_, _, rev999) = all.iter().find(|(m, r, _)| m == "0061" && *r == Some(999)).unwrap();
    let t = Telegram::parse(rev999.as_bytes()).unwrap();
    let Body::Fields(f) = op::decode(&t).unwrap() else { panic!("no fields") };
    assert_eq!(f.text("vin_number").as_deref(), Some("KPOL3456JKLO897"));
    assert_eq!(f.int("tightening_id"), Some(4294967295));
}

#[test]
fn bad_telegrams_are_named_not_crashed_on() {
    let cases: &[(&[u8], &str)] = &[
        (b"0019000100          ", "header.length"),
        (b"00220061001         01", "data.cell_id"),
        (b"0020006x001         ", "header.mid"),
        (b"00240004001         00\xc3\xa9", "data"),
    ];
    for (bytes, field) in cases {
        let err = Telegram::parse(bytes).and_then(|t| op::decode(&t).map(|_| ())).unwrap_err();
        assert_eq!(err.field, *field, "{:?}: {err}", String::from_utf8_lossy(bytes));
    }
    // An unknown MID is reported, its data kept.
    let t = Telegram::parse(b"00250777001         hello").unwrap();
    assert_eq!(op::decode(&t).unwrap(), Body::Unknown);
    assert!(op::to_json(&t, &Body::Unknown)["note"].as_str().unwrap().contains("no layout"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No input makes the framer, parser or decoder panic, and the framer never holds more
    /// than one maximal telegram.
    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut f = Framer::new();
        for c in &chunks {
            f.push(c);
            while let Some(item) = f.take() {
                if let Framed::Telegram(t) = item {
                    let _ = op::decode(&t).map(|b| op::to_json(&t, &b));
                }
            }
            prop_assert!(f.pending() <= 10_001 + c.len());
        }
        for c in &chunks {
            let _ = Telegram::parse(c).and_then(|t| op::decode(&t));
        }
    }

    /// Valid telegrams with bytes changed, cut or inserted: decoding never panics, and what
    /// still decodes writes back to exactly the bytes it came from or names the field.
    #[test]
    fn mutated_telegrams_are_decoded_or_named(pick in 0usize..265, edits in prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6)) {
        let all = vectors();
        let mut bytes = all[pick].2.clone().into_bytes();
        for (at, byte, how) in edits {
            let at = at as usize % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at.max(1)),
            }
        }
        // Keep the length field honest half the time, so the decoder is reached.
        if pick % 2 == 0 && bytes.len() >= 20 && bytes.len() <= 9999 {
            let len = format!("{:04}", bytes.len());
            bytes[..4].copy_from_slice(len.as_bytes());
        }
        match Telegram::parse(&bytes).and_then(|t| op::decode(&t).map(|b| (t, b))) {
            Ok((t, b)) => {
                let _ = op::to_json(&t, &b);
                if let Err(e) = op::check_roundtrip(&bytes) {
                    prop_assert!(e.field.starts_with("data") || e.field.starts_with("header"), "{e}");
                }
            }
            Err(e) => prop_assert!(!e.field.is_empty() && !e.reason.is_empty()),
        }
    }

    /// Telegrams built from the layouts with random values decode to the same values.
    #[test]
    fn built_results_round_trip(rev in 1u16..=11, id in 0i64..9_999_999_999, torque in 0i64..999_999, vin in "[A-Z0-9]{0,17}") {
        let values = [
            ("tightening_id", Value::Int(id)),
            ("torque", Value::Int(torque)),
            ("vin_number", Value::Text(vin.clone())),
            ("timestamp", Value::Timestamp("2026-11-25:08:00:00".into())),
        ];
        let t = op::build(61, rev, &values).unwrap();
        let bytes = t.to_bytes();
        let body = op::check_roundtrip(&bytes).unwrap();
        prop_assert_eq!(body.fields().int("tightening_id"), Some(id));
        prop_assert_eq!(body.fields().int("torque"), Some(torque));
        prop_assert_eq!(body.fields().text("vin_number"), Some(vin).filter(|v| !v.is_empty()));
    }
}
