//! JSON Lines reading (errors per line, resume, partial lines, huge lines, bad bytes), connector
//! configs and the jsonl sink's idempotency across reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use jidoka_connectors::jsonl::{MAX_LINE_BYTES, Position, read_chunk};
use jidoka_connectors::{JsonlSinkConfig, SinkConfig, SourceConfig};
use jidoka_model::{Action, ActionKind, ActionStatus};
use std::io::Cursor;

fn line(txn: &str) -> String {
    format!(
        r#"{{"source":"f","source_txn_id":"{txn}","occurred_at":"2026-11-24T08:00:00Z","kind":"andon_raised","data":{{"andon_id":"A{txn}","station":"ST1","fault_code":"E1"}}}}"#
    )
}

#[test]
fn bad_lines_are_reported_and_the_rest_is_read() {
    let text = format!("{}\nnot json\n\n{}\n{{\"source\":\"f\"}}\n{}\n", line("1"), line("2"), line("3"));
    let mut reader = Cursor::new(text.as_bytes());
    let chunk = read_chunk(&mut reader, Position::default(), 100, true, Utc::now()).expect("read");
    let lines: Vec<u64> = chunk.events.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![1, 4, 6]);
    assert_eq!(chunk.errors.len(), 2);
    assert_eq!((chunk.errors[0].line, chunk.errors[0].field.as_str()), (2, "$"));
    assert!(chunk.errors[0].reason.contains("invalid JSON"));
    assert_eq!((chunk.errors[1].line, chunk.errors[1].field.as_str()), (5, "source_txn_id"));
    assert_eq!(chunk.end, Position { offset: text.len() as u64, line: 6 });
    assert!(chunk.at_end);
}

#[test]
fn reading_resumes_from_a_checkpoint_in_chunks() {
    let text: String = (0..10).map(|i| line(&i.to_string()) + "\n").collect();
    let mut pos = Position::default();
    let mut all = Vec::new();
    loop {
        let mut reader = Cursor::new(&text.as_bytes()[pos.offset as usize..]);
        let chunk = read_chunk(&mut reader, pos, 3, true, Utc::now()).expect("read");
        all.extend(chunk.events.into_iter().map(|(l, e)| (l, e.source_txn_id)));
        assert_eq!(Position::decode(&chunk.end.encode()), Some(chunk.end));
        if chunk.end == pos {
            break;
        }
        pos = chunk.end;
    }
    assert_eq!(all.len(), 10);
    assert_eq!(all[9], (10, "9".to_string()));
}

#[test]
fn a_line_being_written_is_left_for_later_unless_the_file_is_final() {
    let text = format!("{}\n{}", line("1"), &line("2")[..40]);
    let chunk =
        read_chunk(&mut Cursor::new(text.as_bytes()), Position::default(), 100, false, Utc::now()).expect("read");
    assert_eq!(chunk.events.len(), 1);
    assert!(chunk.errors.is_empty());
    assert_eq!(chunk.end.line, 1);
    let chunk =
        read_chunk(&mut Cursor::new(text.as_bytes()), Position::default(), 100, true, Utc::now()).expect("read");
    assert_eq!(chunk.errors.len(), 1, "a truncated final line is an error once the file is final");
}

#[test]
fn huge_and_non_utf8_lines_are_rejected_alone() {
    let mut data = Vec::new();
    data.extend_from_slice(line("1").as_bytes());
    data.push(b'\n');
    data.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    data.push(b'\n');
    data.extend_from_slice(b"{\"source\":\"\xff\xfe\"}\n");
    data.extend_from_slice(line("2").as_bytes());
    data.push(b'\n');
    let chunk = read_chunk(&mut Cursor::new(&data), Position::default(), 100, true, Utc::now()).expect("read");
    assert_eq!(chunk.events.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 4]);
    assert!(chunk.errors[0].reason.contains("longer than"));
    assert_eq!(chunk.errors[0].line, 2);
    assert!(chunk.errors[1].reason.contains("UTF-8"));
    assert_eq!(chunk.end.offset, data.len() as u64);
}

#[test]
fn connector_configs_are_tagged_and_strict() {
    let src: SourceConfig =
        toml::from_str("type = \"file\"\nname = \"ctrl-export\"\npath = \"/tmp/x.jsonl\"\nfollow = true\n")
            .expect("valid");
    assert_eq!(src.name(), "ctrl-export");
    let bad = toml::from_str::<SourceConfig>("type = \"file\"\nname = \"a\"\npath = \"p\"\nfolow = true\n");
    assert!(bad.is_err_and(|e| e.to_string().contains("folow")));
    let unknown = toml::from_str::<SourceConfig>("type = \"ftp\"\nname = \"a\"\n");
    assert!(unknown.is_err_and(|e| e.to_string().contains("ftp")));
    let mut errors = Vec::new();
    let sink: SinkConfig = toml::from_str("type = \"jsonl\"\nname = \"bad name!\"\npath = \"\"\n").expect("parses");
    sink.validate("sinks[0]", &mut errors);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, vec!["sinks[0].name", "sinks[0].path"]);
}

fn action(key: &str) -> Action {
    Action {
        action_id: format!("A-{key}"),
        finding_id: "F-1".into(),
        kind: ActionKind::CreateNonconformance,
        status: ActionStatus::Approved,
        payload: serde_json::json!({"vin": "V"}),
        idempotency_key: key.into(),
        correlation_id: "c".into(),
        created_at: Utc::now(),
    }
}

#[test]
fn jsonl_sink_writes_each_key_once_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = JsonlSinkConfig {
        name: "file".into(),
        path: dir.path().join("out/actions.jsonl"),
        kinds: vec![ActionKind::CreateNonconformance],
    };
    {
        let mut sink = SinkConfig::Jsonl(config.clone()).build().expect("open");
        assert!(sink.accepts(ActionKind::CreateNonconformance));
        assert!(!sink.accepts(ActionKind::RaiseAndon));
        assert!(!sink.deliver(&action("k1")).expect("deliver").already_delivered);
        assert!(sink.deliver(&action("k1")).expect("deliver").already_delivered);
    }
    let mut sink = SinkConfig::Jsonl(config.clone()).build().expect("reopen");
    assert!(sink.deliver(&action("k1")).expect("deliver").already_delivered);
    sink.deliver(&action("k2")).expect("deliver");
    let text = std::fs::read_to_string(&config.path).expect("read");
    assert_eq!(text.lines().count(), 2);
}

mod bosch {
    use jidoka_connectors::bosch::parse_channel;
    use jidoka_model::Event;
    use jidoka_model::event::OkNok;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bosch").join(name);
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    /// Sum of the steps' graph lengths, counted straight from the document.
    fn samples(doc: &Value) -> usize {
        doc["tightening steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["graph"]["torque values"].as_array().map_or(0, Vec::len))
            .sum()
    }

    #[test]
    fn cs351_runs_read_with_their_steps_curve_and_final_values() {
        let doc = fixture("cs351_ok.json");
        let run = parse_channel(&doc).expect("parses");
        assert_eq!(run.result, Some(OkNok::Ok));
        assert_eq!(run.steps.len(), 4);
        assert_eq!(run.curve.len(), samples(&doc));
        let last = doc["tightening steps"][3]["tightening functions"].as_array().expect("functions").clone();
        let actual = |name: &str| last.iter().find(|f| f["name"] == name).and_then(|f| f["act"].as_f64());
        assert_eq!(Some(run.final_torque_nm), actual("TF Torque"), "the last step's TF Torque actual");
        assert_eq!(Some(run.final_angle_deg), actual("MF AngleMin"), "the last step's own angle, not the total");
        assert!(run.final_angle_deg < 90.0 && run.curve.angle_deg.last().copied().unwrap_or(0.0) > 1000.0);
        let event = Event::parse(run.to_event("SCREW-1").expect("event"), chrono::Utc::now()).expect("a valid event");
        assert_eq!(event.source, format!("bosch:{}", run.tool_serial));
        let date = doc["date"].as_str().expect("date").replace(' ', "T") + ".000Z";
        assert_eq!(
            jidoka_model::event::rfc3339::format(&event.occurred_at),
            date,
            "the zone-less export date is read as UTC"
        );

        let nok = parse_channel(&fixture("cs351_nok.json")).expect("parses");
        assert_eq!(nok.result, Some(OkNok::Nok));
        assert_eq!(nok.steps.len(), 2, "a NOK run stops early");
        assert_eq!(nok.steps[1].1, Some(OkNok::Nok));
    }

    #[test]
    fn nexo_runs_read_too() {
        let doc = fixture("nexo_unfastening.json");
        let run = parse_channel(&doc).expect("parses");
        assert_eq!(run.curve.len(), 208);
        assert_eq!((run.final_torque_nm, run.final_angle_deg), (0.071, 1081.66));
        assert_eq!(run.program_name, "L_Min/MinKreuzIO_M6");
        Event::parse(run.to_event("HAND-1").expect("event"), chrono::Utc::now()).expect("a valid event");
    }

    #[test]
    fn broken_documents_name_the_field() {
        let mut doc = fixture("cs351_ok.json");
        doc["tightening steps"][1]["graph"]["angle values"] = json!([1.0, 2.0]);
        let e = parse_channel(&doc).expect_err("lengths differ");
        assert_eq!(e.field, "tightening steps[1].graph");
        let mut doc = fixture("cs351_ok.json");
        doc["tightening steps"][0]["graph"]["torque values"][3] = json!("x");
        assert_eq!(parse_channel(&doc).expect_err("bad sample").field, "tightening steps[0].graph.torque values[3]");
        let mut doc = fixture("nexo_unfastening.json");
        doc["format"] = json!("legacy");
        assert_eq!(parse_channel(&doc).expect_err("format").field, "format");
        assert_eq!(parse_channel(&json!({"tightening steps": []})).expect_err("empty").field, "tightening steps");
        assert_eq!(parse_channel(&json!([1])).expect_err("not an object").field, "$");
    }

    proptest! {
        #[test]
        fn arbitrary_documents_never_panic(steps in prop::collection::vec(
            (prop::collection::vec(-1e3f64..1e3, 0..20), prop::collection::vec(-1e3f64..1e3, 0..20), any::<bool>()), 0..4)) {
            let doc = json!({
                "format": "channel", "cycle": 7, "date": "2022-01-01 00:00:00",
                "tightening steps": steps.iter().map(|(a, q, with_time)| json!({
                    "graph": {"angle values": a, "torque values": q, "time values": if *with_time { json!(q) } else { json!([]) }}
                })).collect::<Vec<_>>(),
            });
            if let Ok(run) = parse_channel(&doc) {
                prop_assert!(run.curve.len() >= 2);
                let _ = run.to_event("S");
            }
        }
    }
}

mod real_data {
    use jidoka_connectors::bosch::parse_channel;
    use jidoka_model::Event;
    use std::path::PathBuf;

    /// `shared/data` beside the repository (or `JIDOKA_SHARED_DATA`). Missing data fails under
    /// CI=true; elsewhere the test says it did not run.
    fn shared(dir: &str) -> Option<PathBuf> {
        let root = std::env::var("JIDOKA_SHARED_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
        let path = root.join(dir);
        if path.is_dir() {
            return Some(path);
        }
        assert!(std::env::var("CI").is_err(), "shared data {} is missing under CI", path.display());
        eprintln!("shared data {} not found: not run", path.display());
        None
    }

    #[test]
    fn every_real_channel_export_becomes_a_valid_event() {
        let mut checked = 0;
        for dir in ["tightening_unfastening_ipa/cycles", "screw_driving_hicss2023/sample_raw"] {
            let Some(path) = shared(dir) else { continue };
            let mut n = 0;
            for entry in std::fs::read_dir(&path).expect("read dir") {
                let file = entry.expect("entry").path();
                if file.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let doc: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
                let run = parse_channel(&doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let event = run.to_event("REAL").unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                Event::parse(event, chrono::Utc::now()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                n += 1;
            }
            assert!(n > 0, "{dir} holds no channel exports");
            checked += n;
        }
        eprintln!("{checked} real channel exports read");
    }
}
