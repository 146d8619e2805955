//! The SQLite store: idempotent appends, checkpoints committed with events, findings with
//! cursors, forward-only action status, persistence across reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use jidoka_model::{Action, ActionKind, ActionStatus, Event, Finding, Severity, Subject, Verdict};
use jidoka_store::{ActionQuery, AppendBatch, AppendOutcome, Checkpoint, FindingQuery, SqliteStore, Store, StoreError};
use serde_json::json;

fn scan(txn: &str, vin: &str) -> Event {
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default();
    Event::parse(
        json!({"source": "scanner-1", "source_txn_id": txn, "occurred_at": "2026-11-24T08:00:00Z",
               "kind": "component_scanned", "data": {"vin": vin, "station": "ST010", "part_number": "P-1"}}),
        t,
    )
    .expect("valid event")
}

fn finding(id: &str, verdict: Verdict, vin: &str) -> Finding {
    Finding {
        finding_id: id.into(),
        agent: "test".into(),
        agent_version: "1".into(),
        kind: "test.kind".into(),
        verdict,
        severity: Severity::Warning,
        confidence: 0.9,
        reason: "because".into(),
        subject: Subject { vin: Some(vin.into()), station: Some("ST010".into()), ..Subject::default() },
        evidence: vec!["ev-1".into()],
        correlation_id: "c".into(),
        source_txn_id: "t".into(),
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default(),
        details: serde_json::Value::Null,
    }
}

fn action(id: &str, finding_id: &str, status: ActionStatus) -> Action {
    Action {
        action_id: id.into(),
        finding_id: finding_id.into(),
        kind: ActionKind::CreateNonconformance,
        status,
        payload: json!({"station": "ST010"}),
        idempotency_key: format!("key-{id}"),
        correlation_id: "c".into(),
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).single().unwrap_or_default(),
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("jidoka.sqlite")).expect("open");
    (dir, store)
}

/// Regression: a second event under a stored `(source, source_txn_id)` with other content was
/// answered "duplicate" and dropped, so a forged or garbled result could swallow the real one
/// that arrived after it. It is now refused as a conflict naming the stored seq and the field.
#[test]
fn a_redelivery_with_other_content_is_a_conflict_naming_the_field() {
    let (_dir, store) = open();
    let first = vec![scan("T1", "V1")];
    store.append(&[AppendBatch { events: &first, checkpoint: None }]).expect("append");
    let other_vin = vec![scan("T1", "V9")];
    let out = store.append(&[AppendBatch { events: &other_vin, checkpoint: None }]).expect("append");
    match &out[0][0] {
        AppendOutcome::Conflict { seq, field, .. } => assert_eq!((*seq, field.as_str()), (1, "data.vin")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut later = scan("T1", "V1");
    later.occurred_at += chrono::Duration::seconds(5);
    let out = store.append(&[AppendBatch { events: &[later], checkpoint: None }]).expect("append");
    assert!(matches!(&out[0][0], AppendOutcome::Conflict { seq: 1, field, .. } if field == "occurred_at"), "{out:?}");
    // The same content again (received later) is still an ordinary duplicate.
    let mut same = scan("T1", "V1");
    same.received_at += chrono::Duration::seconds(60);
    let out = store.append(&[AppendBatch { events: &[same], checkpoint: None }]).expect("append");
    assert!(matches!(out[0][0], AppendOutcome::Duplicate { seq: 1, .. }));
    assert_eq!(store.stats().expect("stats").events, 1);
    let stored = store.events_after(0, 10).expect("read").events;
    assert_eq!(stored[0].event, first[0], "the stored event is untouched");
}

#[test]
fn redelivered_events_are_stored_once() {
    let (_dir, store) = open();
    let first = vec![scan("T1", "V1"), scan("T2", "V2")];
    let out = store.append(&[AppendBatch { events: &first, checkpoint: None }]).expect("append");
    assert!(matches!(out[0][0], AppendOutcome::Stored { seq: 1, .. }));
    assert!(matches!(out[0][1], AppendOutcome::Stored { seq: 2, .. }));

    // The same transaction twice in one batch, and again later: stored once, seq reported.
    let again = vec![scan("T2", "V2"), scan("T3", "V3"), scan("T3", "V3")];
    let out = store.append(&[AppendBatch { events: &again, checkpoint: None }]).expect("append");
    assert!(matches!(out[0][0], AppendOutcome::Duplicate { seq: 2, .. }));
    assert!(matches!(out[0][1], AppendOutcome::Stored { seq: 3, .. }));
    assert!(matches!(out[0][2], AppendOutcome::Duplicate { seq: 3, .. }));
    assert_eq!(store.stats().expect("stats").events, 3);
    let events = store.events_after(0, 100).expect("read").events;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(events[2].event, again[1], "the stored event reads back identically");
}

#[test]
fn event_id_reused_by_another_transaction_is_rejected_alone() {
    let (_dir, store) = open();
    let a = scan("T1", "V1");
    let mut b = scan("T2", "V2");
    b.event_id = a.event_id.clone();
    let c = scan("T3", "V3");
    let out = store.append(&[AppendBatch { events: &[a, b, c], checkpoint: None }]).expect("append");
    assert!(out[0][0].is_stored());
    match &out[0][1] {
        AppendOutcome::Rejected { error } => assert_eq!(error.field, "event_id"),
        other => panic!("expected rejection, got {other:?}"),
    }
    assert!(out[0][2].is_stored(), "the rest of the batch is stored");
}

#[test]
fn checkpoints_commit_with_their_events_in_group_commits() {
    let (_dir, store) = open();
    let cp_a = Checkpoint { source: "file:a".into(), position: "120".into() };
    let cp_b = Checkpoint { source: "ctrl-7".into(), position: "tightening 991".into() };
    let ev_a = vec![scan("A1", "V1")];
    let ev_b = vec![scan("B1", "V2"), scan("B2", "V3")];
    let out = store
        .append(&[
            AppendBatch { events: &ev_a, checkpoint: Some(&cp_a) },
            AppendBatch { events: &ev_b, checkpoint: Some(&cp_b) },
        ])
        .expect("append");
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].len(), 2);
    assert_eq!(store.checkpoint("file:a").expect("cp").as_deref(), Some("120"));
    assert_eq!(store.checkpoint("ctrl-7").expect("cp").as_deref(), Some("tightening 991"));
    assert_eq!(store.checkpoint("nobody").expect("cp"), None);
}

#[test]
fn findings_actions_and_cursor_commit_together_and_page() {
    let (_dir, store) = open();
    assert_eq!(store.cursor("agents").expect("cursor"), 0);
    let findings: Vec<Finding> = (0..25)
        .map(|i| {
            finding(&format!("F{i}"), if i % 5 == 0 { Verdict::Hold } else { Verdict::Review }, &format!("V{}", i % 3))
        })
        .collect();
    let actions = vec![action("A1", "F0", ActionStatus::Approved), action("A2", "F5", ActionStatus::PendingApproval)];
    store.commit_findings("agents", 40, &findings, &actions).expect("commit");
    assert_eq!(store.cursor("agents").expect("cursor"), 40);
    // A cursor never moves back.
    store.commit_findings("agents", 10, &[], &[]).expect("commit");
    assert_eq!(store.cursor("agents").expect("cursor"), 40);

    let holds =
        store.findings(&FindingQuery { verdict: Some(Verdict::Hold), limit: 100, ..Default::default() }).expect("q");
    let ids: Vec<&str> = holds.items.iter().map(|f| f.finding_id.as_str()).collect();
    assert_eq!(ids, vec!["F20", "F15", "F10", "F5", "F0"], "newest first");
    assert_eq!(holds.next_cursor, None);

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.findings(&FindingQuery { before, limit: 10, ..Default::default() }).expect("page");
        seen.extend(page.items.iter().map(|f| f.finding_id.clone()));
        match page.next_cursor {
            Some(c) => before = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "pagination visits every finding once");
    let by_vin = store.findings(&FindingQuery { vin: Some("V1".into()), limit: 100, ..Default::default() }).expect("q");
    assert_eq!(by_vin.items.len(), 8);
    assert_eq!(store.finding("F7").expect("get").map(|f| f.subject.vin), Some(Some("V1".into())));

    let in_order = store.findings_in_order(0, 100).expect("ordered");
    assert_eq!(in_order.items.first().map(|f| f.finding_id.as_str()), Some("F0"));
    // A follower resumes after the last finding of a partial page, which is the newest.
    let last = in_order.next_cursor.expect("a cursor after a partial page");
    assert_eq!(store.last_finding_position().expect("last"), last);
    let rest = store.findings_in_order(last - 1, 100).expect("tail");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].finding_id, "F24");
    assert!(store.findings_in_order(last, 100).expect("after").next_cursor.is_none());

    let pending = store
        .actions(&ActionQuery { status: Some(ActionStatus::PendingApproval), limit: 10, ..Default::default() })
        .expect("q");
    assert_eq!(pending.items.len(), 1);
    assert_eq!(pending.items[0].action.action_id, "A2");
}

#[test]
fn action_status_only_moves_forward() {
    let (_dir, store) = open();
    store
        .commit_findings(
            "agents",
            1,
            &[finding("F1", Verdict::Hold, "V")],
            &[action("A1", "F1", ActionStatus::PendingApproval)],
        )
        .expect("commit");
    // Not allowed: pending -> delivered.
    assert!(
        !store
            .set_action_status("A1", "user:test", ActionStatus::PendingApproval, ActionStatus::Delivered, None)
            .expect("set")
    );
    // Wrong `from`: nothing changes.
    assert!(
        !store
            .set_action_status("A1", "user:test", ActionStatus::Approved, ActionStatus::Delivered, None)
            .expect("set")
    );
    assert!(
        store
            .set_action_status("A1", "user:qe", ActionStatus::PendingApproval, ActionStatus::Approved, Some("ok by QE"))
            .expect("set")
    );
    store.record_delivery_attempt("A1", "mes unreachable").expect("attempt");
    assert!(
        store
            .set_action_status("A1", "user:test", ActionStatus::Approved, ActionStatus::Delivered, Some("NC-1"))
            .expect("set")
    );
    assert!(
        !store
            .set_action_status("A1", "user:test", ActionStatus::Delivered, ActionStatus::Approved, None)
            .expect("set")
    );
    let rec = store.action("A1").expect("get").expect("exists");
    assert_eq!(rec.action.status, ActionStatus::Delivered);
    assert_eq!(rec.note.as_deref(), Some("NC-1"));
    assert_eq!(rec.attempts, 1);
}

#[test]
fn a_corrupt_row_is_reported_and_does_not_hide_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    store
        .append(&[AppendBatch { events: &[scan("T1", "V1"), scan("T2", "V2"), scan("T3", "V3")], checkpoint: None }])
        .expect("append");
    rusqlite::Connection::open(&path)
        .expect("raw")
        .execute("UPDATE events SET payload = '{\"kind\": \"teleport\"}' WHERE seq = 2", [])
        .expect("corrupt row 2");
    let page = store.events_after(0, 10).expect("page");
    assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(page.corrupt.len(), 1);
    assert_eq!(page.corrupt[0].0, 2);
    assert!(page.corrupt[0].1.contains("teleport"), "{}", page.corrupt[0].1);
    assert_eq!(page.last_seq(), Some(3));
    // A cursor past i64::MAX is simply past the end.
    assert!(store.events_after(u64::MAX, 10).expect("page").is_empty());
}

#[test]
fn outbox_pages_oldest_first_past_a_position() {
    let (_dir, store) = open();
    let findings: Vec<Finding> = (0..5).map(|i| finding(&format!("F{i}"), Verdict::Hold, "V")).collect();
    let actions: Vec<Action> =
        (0..5).map(|i| action(&format!("A{i}"), &format!("F{i}"), ActionStatus::Approved)).collect();
    store.commit_findings("agents", 1, &findings, &actions).expect("commit");
    let first = store.outbox(0, 2).expect("page");
    assert_eq!(first.iter().map(|(_, a)| a.action.action_id.as_str()).collect::<Vec<_>>(), vec!["A0", "A1"]);
    let next = store.outbox(first[1].0, 10).expect("page");
    assert_eq!(next.iter().map(|(_, a)| a.action.action_id.as_str()).collect::<Vec<_>>(), vec!["A2", "A3", "A4"]);
}

#[test]
fn data_survives_reopen_and_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    {
        let store = SqliteStore::open(&path).expect("open");
        store.append(&[AppendBatch { events: &[scan("T1", "V1")], checkpoint: None }]).expect("append");
    }
    {
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.last_seq().expect("seq"), 1);
        let out = store.append(&[AppendBatch { events: &[scan("T1", "V1")], checkpoint: None }]).expect("append");
        assert!(matches!(out[0][0], AppendOutcome::Duplicate { seq: 1, .. }), "idempotency survives restart");
    }
    {
        let conn = rusqlite::Connection::open(&path).expect("open raw");
        conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')", []).expect("bump");
    }
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// A store with an audit trail: 4 findings with 2 actions each, one approved, one rejected,
/// one expired.
fn audited() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    let findings: Vec<Finding> = (0..4).map(|i| finding(&format!("F{i}"), Verdict::Hold, "V1")).collect();
    let actions: Vec<Action> = (0..4)
        .flat_map(|i| {
            [
                action(&format!("A{i}a"), &format!("F{i}"), ActionStatus::Approved),
                action(&format!("A{i}p"), &format!("F{i}"), ActionStatus::PendingApproval),
            ]
        })
        .collect();
    store.commit_findings("agents", 1, &findings, &actions).expect("commit");
    // The same findings derived again (catch-up) add nothing to the audit trail.
    store.commit_findings("agents", 1, &findings, &actions).expect("again");
    assert!(
        store
            .set_action_status("A0p", "user:qe-1", ActionStatus::PendingApproval, ActionStatus::Approved, Some("ok"))
            .expect("set")
    );
    assert!(
        store
            .set_action_status(
                "A1p",
                "user:sup-2",
                ActionStatus::PendingApproval,
                ActionStatus::Rejected,
                Some("false call")
            )
            .expect("set")
    );
    let expired = store.expire_pending(Utc::now() + chrono::Duration::minutes(1), "no decision").expect("expire");
    assert_eq!(expired, vec!["A2p".to_string(), "A3p".to_string()]);
    (dir, path, store)
}

#[test]
fn every_finding_proposal_and_decision_is_in_the_audit_chain() {
    let (_dir, _path, store) = audited();
    let rows = store.audit_after(0, 1000).expect("audit");
    // 4 findings + 8 proposals + 1 approval + 1 rejection + 2 expiries.
    assert_eq!(rows.len(), 16);
    assert_eq!(jidoka_model::audit::verify(&rows), Ok(16));
    let records: Vec<jidoka_model::audit::AuditRecord> =
        rows.iter().map(|r| serde_json::from_str(&r.body).expect("record")).collect();
    let what: Vec<&str> = records.iter().map(|r| r.entry.what.as_str()).collect();
    assert_eq!(what.iter().filter(|w| **w == "finding").count(), 4);
    assert_eq!(what.iter().filter(|w| **w == "action_proposed").count(), 8);
    let approval = records.iter().find(|r| r.entry.what == "action_approved").expect("approval");
    assert_eq!(approval.entry.actor, "user:qe-1");
    assert_eq!(approval.entry.details["action_id"], "A0p");
    let rejection = records.iter().find(|r| r.entry.what == "action_rejected").expect("rejection");
    assert_eq!(rejection.entry.details["note"], "false call");
    assert_eq!(records.iter().filter(|r| r.entry.what == "action_expired" && r.entry.actor == "governance").count(), 2);
    let f = &records[0];
    assert_eq!((f.entry.actor.as_str(), f.entry.agent.as_deref()), ("agent:test", Some("test")));
    assert_eq!(f.entry.input_digest.len(), 64);
    // An expired action can no longer be approved.
    assert!(
        !store
            .set_action_status("A2p", "user:qe-1", ActionStatus::PendingApproval, ActionStatus::Approved, None)
            .expect("set")
    );
}

#[test]
fn the_history_of_an_action_or_a_finding_is_found_by_its_id() {
    let (_dir, _path, store) = audited();
    let what = |rows: Vec<jidoka_model::audit::StoredAudit>| -> Vec<String> {
        rows.iter()
            .map(|r| serde_json::from_str::<jidoka_model::audit::AuditRecord>(&r.body).expect("record").entry.what)
            .collect()
    };
    assert_eq!(what(store.audit_of("A0p", 100).expect("audit")), ["action_proposed", "action_approved"]);
    // A finding's history holds its own record and those of its actions, in chain order.
    assert_eq!(
        what(store.audit_of("F1", 100).expect("audit")),
        ["finding", "action_proposed", "action_proposed", "action_rejected"]
    );
    assert!(store.audit_of("nothing", 100).expect("audit").is_empty());
    assert_eq!(store.audit_head().expect("head"), 16);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Changing any field of any stored audit record makes verification fail at that record.
    #[test]
    fn tampering_with_any_record_is_found_at_that_record(
        target in 1u64..=16,
        field in 0usize..6,
    ) {
        let (_dir, path, store) = audited();
        let conn = rusqlite::Connection::open(&path).expect("raw");
        let body: String = conn.query_row("SELECT body FROM audit WHERE seq = ?1", [target as i64], |r| r.get(0)).expect("row");
        let mut record: serde_json::Value = serde_json::from_str(&body).expect("json");
        let sql = match field {
            // A field inside the record: actor, time, details, subject, what.
            0 => { record["actor"] = json!("user:mallory"); Some(record.to_string()) }
            1 => { record["at"] = json!("2020-01-01T00:00:00Z"); Some(record.to_string()) }
            2 => { record["details"]["tampered"] = json!(true); Some(record.to_string()) }
            3 => { record["subject"]["vin"] = json!("OTHERVIN"); Some(record.to_string()) }
            4 => { record["what"] = json!("finding_withdrawn"); Some(record.to_string()) }
            _ => None,
        };
        match sql {
            Some(new_body) => {
                conn.execute("UPDATE audit SET body = ?1 WHERE seq = ?2", rusqlite::params![new_body, target as i64]).expect("tamper");
            }
            None => {
                conn.execute("UPDATE audit SET hash = ?1 WHERE seq = ?2", rusqlite::params!["ab".repeat(32), target as i64]).expect("tamper");
            }
        }
        let rows = store.audit_after(0, 1000).expect("audit");
        let broken = jidoka_model::audit::verify(&rows).expect_err("tampering must be found");
        proptest::prop_assert_eq!(broken.seq, target, "{}", broken.reason);
    }
}

/// Regression: `audit_after` cast its position to i64, so a position above i64::MAX wrapped to
/// a negative one and returned the chain from its start instead of nothing.
#[test]
fn audit_positions_above_i64_max_find_nothing() {
    let (_dir, store) = open();
    let events = [scan("T1", "V1")];
    store
        .append_deriving(&[AppendBatch { events: &events, checkpoint: None }], "agents", &mut |_| {
            (vec![finding("F-1", Verdict::Hold, "V1")], Vec::new())
        })
        .expect("append");
    assert!(!store.audit_after(0, 10).expect("audit").is_empty(), "the finding is audited");
    assert!(store.audit_after(u64::MAX, 10).expect("audit").is_empty());
    assert!(store.audit_after(i64::MAX as u64 + 1, 10).expect("audit").is_empty());
}

/// Regression: a corrupted store was served (`/health` said ok) and every answer from it could
/// be wrong. It is now refused at open with a message that says what to do.
#[test]
fn a_corrupt_store_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jidoka.sqlite");
    {
        let store = SqliteStore::open(&path).expect("open");
        let events: Vec<Event> = (0..400).map(|i| scan(&format!("T{i}"), &format!("V{i}"))).collect();
        store.append(&[AppendBatch { events: &events, checkpoint: None }]).expect("append");
    }
    // Garbage over the middle of the file (the WAL was checkpointed into it on close).
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 16 * 4096, "a store of some size: {} bytes", bytes.len());
    for b in &mut bytes[8 * 4096..12 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = SqliteStore::open(&path).expect_err("a corrupt store is refused").to_string();
    assert!(err.contains("jidoka.sqlite"), "{err}");
    assert!(err.contains("integrity") || err.contains("malformed"), "{err}");
}

/// Regression: under a steady stream of commits the WAL never started again from its
/// beginning (a passive checkpoint never catches the last frame) and grew without bound, 2.9 GB
/// beside a 125 MB store in 40 s; the RESTART checkpoint that bounded it then held commits for
/// up to a second. Now the writer finishes the checkpoint itself after a commit once the log
/// is long, and its next commit starts the log again: the file stays bounded while commits
/// keep coming.
#[test]
fn the_wal_stays_bounded_under_a_steady_stream_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jidoka.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    let wal = dir.path().join("jidoka.sqlite-wal");
    let (mut largest, mut written) = (0u64, 0u64);
    let mut last_len = 0u64;
    // Random event ids spread every commit over many index pages, as in a plant: about 100 MB
    // of frames in all, several times the bound.
    for commit in 0..2500 {
        let events: Vec<Event> = (0..20).map(|i| scan(&format!("T{commit}-{i}"), "1HGCM82633A004352")).collect();
        store.append(&[AppendBatch { events: &events, checkpoint: None }]).unwrap();
        let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        written += len.saturating_sub(last_len);
        last_len = len;
        largest = largest.max(len);
    }
    assert_eq!(store.stats().unwrap().events, 50_000);
    assert!(written > 0 && largest < 100 * 1024 * 1024, "the WAL grew to {} MB", largest / (1024 * 1024));
}
