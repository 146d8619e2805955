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
