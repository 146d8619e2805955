//! [`SqliteStore`]: the embedded store. One writer connection behind a mutex (SQLite allows
//! one writer) and a small pool of read-only connections (WAL lets them read while the writer
//! commits).

use crate::*;
use jidoka_model::audit::{self, AuditEntry, AuditRecord, StoredAudit};
use jidoka_model::event::rfc3339;
use jidoka_model::{EventPayload, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Schema migrations, applied in order; the index + 1 is the schema version. Never edit a
/// released migration: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: event log, checkpoints, cursors, findings, actions.
    r#"
    CREATE TABLE events (
        -- No AUTOINCREMENT: it burns a number on every conflicting (redelivered) insert.
        -- Events are never deleted, so max(seq) + 1 is strictly increasing and gap-free.
        seq            INTEGER PRIMARY KEY,
        event_id       TEXT NOT NULL UNIQUE,
        source         TEXT NOT NULL,
        source_txn_id  TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        kind           TEXT NOT NULL,
        vin            TEXT,
        occurred_at    TEXT NOT NULL,
        received_at    TEXT NOT NULL,
        payload        TEXT NOT NULL,
        UNIQUE (source, source_txn_id)
    );
    CREATE INDEX events_vin ON events (vin) WHERE vin IS NOT NULL;
    CREATE TABLE checkpoints (
        source   TEXT PRIMARY KEY,
        position TEXT NOT NULL
    );
    CREATE TABLE cursors (
        consumer TEXT PRIMARY KEY,
        seq      INTEGER NOT NULL
    );
    CREATE TABLE findings (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_id    TEXT NOT NULL UNIQUE,
        agent         TEXT NOT NULL,
        kind          TEXT NOT NULL,
        verdict       TEXT NOT NULL,
        severity      TEXT NOT NULL,
        vin           TEXT,
        station       TEXT,
        occurred_at   TEXT NOT NULL,
        body          TEXT NOT NULL
    );
    CREATE INDEX findings_verdict ON findings (verdict, id);
    CREATE INDEX findings_vin ON findings (vin, id) WHERE vin IS NOT NULL;
    CREATE INDEX findings_station ON findings (station, id) WHERE station IS NOT NULL;
    CREATE TABLE actions (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        action_id       TEXT NOT NULL UNIQUE,
        finding_id      TEXT NOT NULL REFERENCES findings (finding_id),
        kind            TEXT NOT NULL,
        status          TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        note            TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        body            TEXT NOT NULL
    );
    CREATE INDEX actions_status ON actions (status, id);
    CREATE INDEX actions_finding ON actions (finding_id);
    "#,
    // 2: the audit trail, a hash chain (see jidoka_model::audit).
    r#"
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        body      TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    -- When an action was stored (wall clock): approvals expire from here, not from the
    -- event's plant time, which may be long past for a backfill.
    ALTER TABLE actions ADD COLUMN stored_at TEXT;
    CREATE INDEX actions_pending_age ON actions (status, stored_at);
    "#,
    // 3: first approvals of actions that need two people (four-eyes); actions stored before
    // migration 2 start their approval window now.
    r#"
    ALTER TABLE actions ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]';
    UPDATE actions SET stored_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE stored_at IS NULL;
    "#,
    // 4: what each audit record is about (its action, else its finding), indexed, so the
    // history of one action or finding is found without reading the trail. Outside the hashed
    // body: the chain is unchanged.
    r#"
    ALTER TABLE audit ADD COLUMN ref TEXT;
    UPDATE audit SET ref = COALESCE(json_extract(body, '$.details.action_id'), json_extract(body, '$.details.finding_id'))
        WHERE json_valid(body);
    CREATE INDEX audit_ref ON audit (ref, seq) WHERE ref IS NOT NULL;
    "#,
];

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// Frames in the WAL at the last checkpoint (the background one's, or the writer's).
    wal_frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    // Held for its Drop, which stops the thread after a final checkpoint.
    _checkpointer: Checkpointer,
}

/// WAL frames (pages) in use past which the writer finishes the checkpoint itself after a
/// commit, so that its next commit starts the log again from the beginning (see
/// `SqliteStore::restart_wal`): 64 MB of 4 KiB pages. Frames, not the file's length: a log
/// started again keeps its file and writes it from the beginning. What the writer's checkpoint
/// costs (the frames of the last 25 ms and an fsync of the database) does not grow with it, so
/// a long log means fewer such pauses.
const WAL_RESTART_FRAMES: u64 = 16_384;
/// Frames past which the background checkpointer runs a blocking RESTART: a last resort when
/// long readers keep the writer from starting the log again.
const WAL_FORCE_RESTART_FRAMES: u64 = 2 * WAL_RESTART_FRAMES;

/// `PRAGMA wal_checkpoint`'s answer: frames in the log and frames copied, or `None` when it
/// could not run.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(u64, u64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(1)?.max(0) as u64, r.get::<_, i64>(2)?.max(0) as u64))
    })
    .ok()
}

/// Copies the WAL back into the database file from its own connection, so that the bulk of
/// that work never lands inside a commit (SQLite's automatic checkpoint would run it on the
/// writer and stall the appends queued behind it). PASSIVE mode never blocks the writer or
/// readers. While the WAL is large it runs every 25 ms instead of every 250 ms, so that the
/// writer's own checkpoint, which lets the log start again, has only a few frames left to copy.
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, frames: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Result<Checkpointer> {
        use std::sync::atomic::Ordering::Relaxed;
        let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
        let stop = std::sync::Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                let mut tick = std::time::Duration::from_millis(250);
                while !*stopped {
                    let (guard, _) = cv.wait_timeout(stopped, tick).unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    drop(stopped);
                    // A failed checkpoint is retried on the next tick; the WAL keeps every commit,
                    // and the count of its frames stays what it was last seen to be.
                    let log = match checkpoint(&conn, "PASSIVE") {
                        Some((log, _)) => {
                            frames.store(log, Relaxed);
                            log
                        }
                        None => frames.load(Relaxed),
                    };
                    tick = std::time::Duration::from_millis(if log > WAL_RESTART_FRAMES / 2 { 25 } else { 250 });
                    // Under a steady stream of commits a passive checkpoint never catches the
                    // last frame, so the WAL never starts again from its beginning on its own;
                    // the writer finishes the checkpoint itself (`restart_wal`). Should readers
                    // keep it from restarting the log, a RESTART here bounds the file, at the
                    // price of holding new commits while it runs (seen: 0.1-1 s with the WAL at
                    // 32 MB, which is why it is no longer the usual way).
                    if log > WAL_FORCE_RESTART_FRAMES {
                        let _ = checkpoint(&conn, "RESTART");
                    }
                    stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| open_err(path, e))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_err(path: &Path, err: impl std::fmt::Display) -> StoreError {
    StoreError::Open { path: path.display().to_string(), reason: err.to_string() }
}

impl SqliteStore {
    /// Open (creating if needed) the store file and bring its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| open_err(&path, e))?;
        }
        let mut writer = Connection::open(&path).map_err(|e| open_err(&path, e))?;
        // WAL + synchronous=FULL: a commit is on disk when it returns, readers never block it.
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 10000;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA wal_autocheckpoint = 0;
                 PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(|e| open_err(&path, e))?;
        migrate(&mut writer)?;
        // A corrupt store is refused with a clear message rather than served: every answer
        // from it could be wrong, and appending to it could make it worse.
        let check: String = writer
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| open_err(&path, format!("the integrity check could not run: {e}")))?;
        if check != "ok" {
            return Err(open_err(
                &path,
                format!("the store fails its integrity check ({check}); restore it from a backup or move it aside"),
            ));
        }
        let wal_frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let checkpointer = Checkpointer::start(&path, wal_frames.clone())?;
        Ok(SqliteStore {
            wal_frames,
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            _checkpointer: checkpointer,
        })
    }

    /// Cap the store at `pages` database pages (`PRAGMA max_page_count`): past it every write
    /// fails as on a full disk. For failure tests and dry runs; a fresh open has no cap.
    pub fn limit_pages(&self, pages: u64) -> Result<u64> {
        self.with_writer(|c| {
            Ok(c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    /// Pages in use now.
    pub fn page_count(&self) -> Result<u64> {
        self.with_writer(|c| Ok(c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64))
    }

    /// After a commit on the writer connection: once the WAL is past `WAL_RESTART_FRAMES`,
    /// checkpoint the frames the background checkpointer has not copied yet (a few, since it
    /// runs every 25 ms at that size) on this connection. No other commit can be under way, so
    /// this copies every frame, and the next commit starts the log again from its beginning
    /// instead of growing it. PASSIVE: if the background checkpointer is busy it returns at
    /// once and the next commit tries again.
    fn restart_wal(&self, conn: &Connection) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.wal_frames.load(Relaxed) > WAL_RESTART_FRAMES
            && let Some((log, copied)) = checkpoint(conn, "PASSIVE")
            && log == copied
        {
            self.wal_frames.store(0, Relaxed);
        }
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A poisoned lock means a panic mid-transaction; SQLite rolled it back, so the
        // connection itself is still consistent.
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| open_err(&self.path, e))?;
                c.execute_batch("PRAGMA busy_timeout = 10000;")?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        result
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![idx as i64 + 1, rfc3339::format(&chrono::Utc::now())],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn parse_time(what: &str, s: &str) -> Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt { what: what.to_string(), reason: e.to_string() })
}

fn corrupt(what: String, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what, reason: reason.to_string() }
}

const EVENT_COLUMNS: &str = "seq, event_id, source, source_txn_id, correlation_id, occurred_at, received_at, payload";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?))
}

type EventRow = (i64, String, String, String, String, String, String, String);

fn decode_event(row: EventRow) -> Result<StoredEvent> {
    let (seq, event_id, source, source_txn_id, correlation_id, occurred_at, received_at, payload) = row;
    let what = format!("event seq {seq}");
    let payload = EventPayload::from_stored_json(&payload).map_err(|e| corrupt(what.clone(), e))?;
    Ok(StoredEvent {
        seq: seq as u64,
        event: Event {
            event_id,
            source,
            source_txn_id,
            correlation_id,
            occurred_at: parse_time(&what, &occurred_at)?,
            received_at: parse_time(&what, &received_at)?,
            payload,
        },
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(what: String, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("cannot encode record: {e}")))
}

/// Where a redelivered event (same source and source transaction) differs from the one stored:
/// the path of the first differing field, or `None` when it is the same event. What the
/// service derives at ingest (`data.image_hash`) and when it arrived do not count.
fn redelivery_difference(ev: &Event, stored_occurred_at: &str, stored_payload: &str) -> Option<String> {
    let new_payload = ev.payload_json();
    if new_payload == stored_payload {
        return (rfc3339::format(&ev.occurred_at) != stored_occurred_at).then(|| "occurred_at".to_string());
    }
    let parse = |text: &str| {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
            data.remove("image_hash");
        }
        v
    };
    let (old, new) = (parse(stored_payload), parse(&new_payload));
    if let Some(path) = jidoka_model::first_difference(&old, &new) {
        return Some(path);
    }
    (rfc3339::format(&ev.occurred_at) != stored_occurred_at).then(|| "occurred_at".to_string())
}

fn append_one(tx: &rusqlite::Transaction<'_>, ev: &Event) -> Result<AppendOutcome> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (event_id, source, source_txn_id, correlation_id, kind, vin, occurred_at, received_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
    )?;
    let inserted = insert.execute(params![
        ev.event_id,
        ev.source,
        ev.source_txn_id,
        ev.correlation_id,
        ev.kind().as_str(),
        ev.vin(),
        rfc3339::format(&ev.occurred_at),
        rfc3339::format(&ev.received_at),
        ev.payload_json(),
    ])?;
    if inserted == 1 {
        return Ok(AppendOutcome::Stored { seq: tx.last_insert_rowid() as u64, event_id: ev.event_id.clone() });
    }
    let mut by_txn = tx.prepare_cached(
        "SELECT seq, event_id, occurred_at, payload FROM events WHERE source = ?1 AND source_txn_id = ?2",
    )?;
    let existing: Option<(i64, String, String, String)> = by_txn
        .query_row(params![ev.source, ev.source_txn_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    Ok(match existing {
        Some((seq, event_id, occurred_at, payload)) => match redelivery_difference(ev, &occurred_at, &payload) {
            None => AppendOutcome::Duplicate { seq: seq as u64, event_id },
            Some(field) => AppendOutcome::Conflict { seq: seq as u64, event_id, field },
        },
        None => AppendOutcome::Rejected {
            error: EventError::new(
                "event_id",
                format!("`{}` is already used by another source transaction", ev.event_id),
            ),
        },
    })
}

fn finding_page(rows: Vec<(i64, String)>, limit: usize) -> Result<Page<Finding>> {
    let next_cursor = if rows.len() == limit { rows.last().map(|r| r.0) } else { None };
    let items = rows
        .into_iter()
        .map(|(id, body)| decode_json(format!("finding {id}"), &body))
        .collect::<Result<Vec<Finding>>>()?;
    Ok(Page { items, next_cursor })
}

type ActionRow = (i64, String, Option<String>, i64, String, Option<String>, String);

fn action_from_row(row: &Row<'_>) -> rusqlite::Result<ActionRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

fn decode_action((id, status, note, attempts, body, stored_at, approvals): ActionRow) -> Result<(i64, ActionRecord)> {
    let mut action: Action = decode_json(format!("action {id}"), &body)?;
    // The status column is authoritative; the body keeps the action as proposed.
    action.status = ActionStatus::parse(&status)
        .ok_or_else(|| corrupt(format!("action {id}"), format!("unknown status `{status}`")))?;
    let stored_at = match stored_at {
        Some(t) => Some(parse_time(&format!("action {id} stored_at"), &t)?),
        None => None,
    };
    let approvals: Vec<String> =
        serde_json::from_str(&approvals).map_err(|e| corrupt(format!("action {id} approvals"), e))?;
    Ok((id, ActionRecord { action, note, attempts: attempts as u32, stored_at, approvals }))
}

/// Clamp a page size to something sane.
fn page_limit(limit: usize) -> usize {
    limit.clamp(1, 10_000)
}

fn append_in(tx: &rusqlite::Transaction<'_>, batches: &[AppendBatch<'_>]) -> Result<Vec<Vec<AppendOutcome>>> {
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut batch_outcomes = Vec::with_capacity(batch.events.len());
        for ev in batch.events {
            batch_outcomes.push(append_one(tx, ev)?);
        }
        if let Some(cp) = batch.checkpoint {
            tx.prepare_cached(
                "INSERT INTO checkpoints (source, position) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET position = excluded.position",
            )?
            .execute(params![cp.source, cp.position])?;
        }
        outcomes.push(batch_outcomes);
    }
    Ok(outcomes)
}

fn commit_derived(
    conn: &mut Connection,
    consumer: &str,
    up_to_seq: u64,
    findings: &[Finding],
    actions: &[Action],
) -> Result<()> {
    let tx = conn.transaction()?;
    insert_derived(&tx, consumer, up_to_seq, findings, actions)?;
    tx.commit()?;
    Ok(())
}

/// Findings, actions and the consumer's cursor, inside the caller's transaction.
/// Append one record to the audit chain inside `tx` (the writer's transaction, so records are
/// numbered and chained one at a time).
fn append_audit(tx: &rusqlite::Transaction<'_>, entry: AuditEntry) -> Result<u64> {
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (last_seq, prev_hash) = last.unwrap_or((0, audit::GENESIS.to_string()));
    let record = AuditRecord { seq: last_seq as u64 + 1, prev_hash, entry };
    let body = record.body();
    let hash = audit::chain_hash(&record.prev_hash, &body);
    let details = &record.entry.details;
    let reference = ["action_id", "finding_id"].iter().find_map(|k| details.get(*k).and_then(|v| v.as_str()));
    tx.prepare_cached("INSERT INTO audit (seq, body, prev_hash, hash, ref) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![record.seq as i64, body, record.prev_hash, hash, reference])?;
    Ok(record.seq)
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAudit> {
    Ok(StoredAudit { seq: r.get::<_, i64>(0)? as u64, body: r.get(1)?, prev_hash: r.get(2)?, hash: r.get(3)? })
}

/// The audit entry of an action's change of state (or its proposal when `from` is `None`).
fn action_entry(a: &Action, actor: &str, what: &str, at: Timestamp, details: serde_json::Value) -> AuditEntry {
    let subject = a.payload.get("subject").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let text = |k: &str| a.payload.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
    AuditEntry {
        at,
        actor: actor.to_string(),
        what: what.to_string(),
        subject,
        correlation_id: a.correlation_id.clone(),
        source_txn_id: text("source_txn_id").unwrap_or_default(),
        agent: text("agent"),
        agent_version: text("agent_version"),
        input_digest: jidoka_model::sha256_hex(serde_json::to_string(a).unwrap_or_default().as_bytes()),
        details,
    }
}

/// Move an action between states inside `tx`, with its audit record; false when it was not in
/// `from`.
fn move_action(
    tx: &rusqlite::Transaction<'_>,
    action_id: &str,
    actor: &str,
    from: ActionStatus,
    to: ActionStatus,
    note: Option<&str>,
) -> Result<bool> {
    if !from.can_move_to(to) {
        return Ok(false);
    }
    let changed = tx.execute(
        "UPDATE actions SET status = ?1, note = COALESCE(?2, note) WHERE action_id = ?3 AND status = ?4",
        params![to.as_str(), note, action_id, from.as_str()],
    )?;
    if changed != 1 {
        return Ok(false);
    }
    let body: String =
        tx.query_row("SELECT body FROM actions WHERE action_id = ?1", params![action_id], |r| r.get(0))?;
    let action: Action = serde_json::from_str(&body).map_err(|e| corrupt(format!("action {action_id}"), e))?;
    let details = serde_json::json!({
        "action_id": action_id, "finding_id": action.finding_id, "kind": action.kind,
        "from": from, "to": to, "note": note,
    });
    let what = format!("action_{}", to.as_str());
    append_audit(tx, action_entry(&action, actor, &what, chrono::Utc::now(), details))?;
    Ok(true)
}

fn insert_derived(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    up_to_seq: u64,
    findings: &[Finding],
    actions: &[Action],
) -> Result<()> {
    {
        let mut insert_finding = tx.prepare_cached(
            "INSERT INTO findings (finding_id, agent, kind, verdict, severity, vin, station, occurred_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (finding_id) DO NOTHING",
        )?;
        for f in findings {
            let inserted = insert_finding.execute(params![
                f.finding_id,
                f.agent,
                f.kind,
                f.verdict.as_str(),
                f.severity.as_str(),
                f.subject.vin,
                f.subject.station,
                rfc3339::format(&f.occurred_at),
                to_json(f)?,
            ])?;
            // A finding derived again (catch-up after a restart) is not a new event for the audit.
            if inserted == 1 {
                append_audit(tx, audit::finding_entry(f))?;
            }
        }
        let mut insert_action = tx.prepare_cached(
            "INSERT INTO actions (action_id, finding_id, kind, status, idempotency_key, body, stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?;
        for a in actions {
            let inserted = insert_action.execute(params![
                a.action_id,
                a.finding_id,
                a.kind.as_str(),
                a.status.as_str(),
                a.idempotency_key,
                to_json(a)?,
                rfc3339::format(&chrono::Utc::now()),
            ])?;
            if inserted == 1 {
                let details = serde_json::json!({
                    "action_id": a.action_id, "finding_id": a.finding_id, "kind": a.kind, "status": a.status,
                    "idempotency_key": a.idempotency_key,
                });
                append_audit(tx, action_entry(a, "governance", "action_proposed", a.created_at, details))?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO cursors (consumer, seq) VALUES (?1, ?2)
             ON CONFLICT (consumer) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        )?
        .execute(params![consumer, up_to_seq as i64])?;
    }
    Ok(())
}

/// A newest-first listing with optional equality filters and a `before` cursor: the SQL and
/// its parameters, built once for findings and actions alike.
struct Listing {
    sql: String,
    args: Vec<Box<dyn rusqlite::ToSql>>,
}

impl Listing {
    fn new(select: &str) -> Listing {
        Listing { sql: format!("{select} WHERE 1 = 1"), args: Vec::new() }
    }

    fn filter(mut self, column: &str, value: Option<Box<dyn rusqlite::ToSql>>) -> Listing {
        if let Some(v) = value {
            self.args.push(v);
            self.sql.push_str(&format!(" AND {column} ?{}", self.args.len()));
        }
        self
    }

    /// Finish with the cursor, order and limit; returns the rows mapped by `row`.
    fn run<T>(
        mut self,
        c: &Connection,
        before: Option<i64>,
        limit: usize,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self = self.filter("id <", before.map(|b| Box::new(b) as Box<dyn rusqlite::ToSql>));
        self.args.push(Box::new(limit as i64));
        self.sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", self.args.len()));
        let mut stmt = c.prepare_cached(&self.sql)?;
        let rows =
            stmt.query_map(rusqlite::params_from_iter(self.args.iter()), row)?.collect::<rusqlite::Result<Vec<T>>>()?;
        Ok(rows)
    }
}

fn boxed<T: rusqlite::ToSql + 'static>(v: T) -> Box<dyn rusqlite::ToSql> {
    Box::new(v)
}

impl Store for SqliteStore {
    fn append(&self, batches: &[AppendBatch<'_>]) -> Result<Vec<Vec<AppendOutcome>>> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let outcomes = append_in(&tx, batches)?;
            tx.commit()?;
            self.restart_wal(conn);
            Ok(outcomes)
        })
    }

    fn append_deriving(
        &self,
        batches: &[AppendBatch<'_>],
        consumer: &str,
        derive: &mut dyn FnMut(&[StoredEvent]) -> (Vec<Finding>, Vec<Action>),
    ) -> Result<(Vec<Vec<AppendOutcome>>, Vec<Finding>, Vec<Action>)> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let outcomes = append_in(&tx, batches)?;
            let mut stored = Vec::new();
            for (batch, batch_outcomes) in batches.iter().zip(&outcomes) {
                for (ev, outcome) in batch.events.iter().zip(batch_outcomes) {
                    if let AppendOutcome::Stored { seq, .. } = outcome {
                        stored.push(StoredEvent { seq: *seq, event: ev.clone() });
                    }
                }
            }
            let (findings, actions) = if stored.is_empty() { (Vec::new(), Vec::new()) } else { derive(&stored) };
            if let Some(last) = stored.last() {
                insert_derived(&tx, consumer, last.seq, &findings, &actions)?;
            }
            tx.commit()?;
            self.restart_wal(conn);
            Ok((outcomes, findings, actions))
        })
    }

    fn last_seq(&self) -> Result<u64> {
        self.with_reader(|c| {
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            Ok(seq as u64)
        })
    }

    fn events_after(&self, after_seq: u64, limit: usize) -> Result<EventPage> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
            let rows = stmt
                .query_map(params![after, page_limit(limit) as i64], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut page = EventPage::default();
            for row in rows {
                let seq = row.0 as u64;
                match decode_event(row) {
                    Ok(ev) => page.events.push(ev),
                    Err(err) => page.corrupt.push((seq, err.to_string())),
                }
            }
            Ok(page)
        })
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        self.with_reader(|c| {
            let row = c
                .query_row(
                    &format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"),
                    [event_id],
                    event_from_row,
                )
                .optional()?;
            row.map(decode_event).transpose()
        })
    }

    fn checkpoint(&self, source: &str) -> Result<Option<String>> {
        self.with_reader(|c| {
            Ok(c.query_row("SELECT position FROM checkpoints WHERE source = ?1", [source], |r| r.get(0)).optional()?)
        })
    }

    fn cursor(&self, consumer: &str) -> Result<u64> {
        self.with_reader(|c| {
            let seq: Option<i64> =
                c.query_row("SELECT seq FROM cursors WHERE consumer = ?1", [consumer], |r| r.get(0)).optional()?;
            Ok(seq.unwrap_or(0) as u64)
        })
    }

    fn commit_findings(&self, consumer: &str, up_to_seq: u64, findings: &[Finding], actions: &[Action]) -> Result<()> {
        self.with_writer(|conn| {
            // Findings, actions and the cursor are derived from the event log: replaying the
            // durable log recreates them with the same ids, and sinks dedupe on the action's
            // key. So this commit is written to the OS (it survives a process crash) without an
            // fsync of its own; the next event commit's fsync makes it durable in WAL order.
            conn.execute_batch("PRAGMA synchronous = NORMAL")?;
            let result = commit_derived(conn, consumer, up_to_seq, findings, actions);
            conn.execute_batch("PRAGMA synchronous = FULL")?;
            result
        })
    }

    fn findings(&self, q: &FindingQuery) -> Result<Page<Finding>> {
        let limit = page_limit(q.limit);
        self.with_reader(|c| {
            let rows = Listing::new("SELECT id, body FROM findings")
                .filter("verdict =", q.verdict.map(|v| boxed(v.as_str())))
                .filter("agent =", q.agent.clone().map(boxed))
                .filter("kind =", q.kind.clone().map(boxed))
                .filter("vin =", q.vin.clone().map(boxed))
                .filter("station =", q.station.clone().map(boxed))
                .run(c, q.before, limit, |r| Ok((r.get(0)?, r.get(1)?)))?;
            finding_page(rows, limit)
        })
    }

    fn findings_in_order(&self, after: i64, limit: usize) -> Result<Page<Finding>> {
        let limit = page_limit(limit);
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached("SELECT id, body FROM findings WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
            let last = rows.last().map(|r| r.0);
            let mut page = finding_page(rows, limit)?;
            page.next_cursor = last;
            Ok(page)
        })
    }

    fn last_finding_position(&self) -> Result<i64> {
        self.with_reader(|c| Ok(c.query_row("SELECT COALESCE(MAX(id), 0) FROM findings", [], |r| r.get(0))?))
    }

    fn finding(&self, finding_id: &str) -> Result<Option<Finding>> {
        self.with_reader(|c| {
            let row: Option<(i64, String)> = c
                .query_row("SELECT id, body FROM findings WHERE finding_id = ?1", [finding_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(id, body)| decode_json(format!("finding {id}"), &body)).transpose()
        })
    }

    fn actions(&self, q: &ActionQuery) -> Result<Page<ActionRecord>> {
        let limit = page_limit(q.limit);
        self.with_reader(|c| {
            let rows = Listing::new("SELECT id, status, note, attempts, body, stored_at, approvals FROM actions")
                .filter("status =", q.status.map(|v| boxed(v.as_str())))
                .filter("kind =", q.kind.map(|v| boxed(v.as_str())))
                .filter("finding_id =", q.finding_id.clone().map(boxed))
                .run(c, q.before, limit, action_from_row)?;
            let next_cursor = if rows.len() == limit { rows.last().map(|r| r.0) } else { None };
            let items = rows.into_iter().map(|r| decode_action(r).map(|(_, a)| a)).collect::<Result<Vec<_>>>()?;
            Ok(Page { items, next_cursor })
        })
    }

    fn action(&self, action_id: &str) -> Result<Option<ActionRecord>> {
        self.with_reader(|c| {
            let row = c
                .query_row(
                    "SELECT id, status, note, attempts, body, stored_at, approvals FROM actions WHERE action_id = ?1",
                    [action_id],
                    action_from_row,
                )
                .optional()?;
            row.map(|r| decode_action(r).map(|(_, a)| a)).transpose()
        })
    }

    fn set_action_status(
        &self,
        action_id: &str,
        actor: &str,
        from: ActionStatus,
        to: ActionStatus,
        note: Option<&str>,
    ) -> Result<bool> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let moved = move_action(&tx, action_id, actor, from, to, note)?;
            tx.commit()?;
            Ok(moved)
        })
    }

    fn set_action_statuses(&self, moves: &[crate::StatusMove<'_>]) -> Result<Vec<bool>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut moved = Vec::with_capacity(moves.len());
            for m in moves {
                moved.push(move_action(&tx, m.action_id, m.actor, m.from, m.to, m.note)?);
            }
            tx.commit()?;
            Ok(moved)
        })
    }

    fn expire_pending(&self, stored_before: Timestamp, note: &str) -> Result<Vec<String>> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<String> = tx
                .prepare_cached(
                    "SELECT action_id FROM actions WHERE status = 'pending_approval' AND stored_at IS NOT NULL AND stored_at < ?1 ORDER BY id LIMIT 1000",
                )?
                .query_map(params![rfc3339::format(&stored_before)], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let mut expired = Vec::new();
            for id in ids {
                if move_action(&tx, &id, "governance", ActionStatus::PendingApproval, ActionStatus::Expired, Some(note))? {
                    expired.push(id);
                }
            }
            tx.commit()?;
            Ok(expired)
        })
    }

    fn record_approval(
        &self,
        action_id: &str,
        actor: &str,
        note: Option<&str>,
        needed: usize,
    ) -> Result<Option<Vec<String>>> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT status, approvals, body FROM actions WHERE action_id = ?1",
                    params![action_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((status, approvals, body)) = row else { return Ok(None) };
            if status != ActionStatus::PendingApproval.as_str() {
                return Ok(None);
            }
            let mut approvals: Vec<String> =
                serde_json::from_str(&approvals).map_err(|e| corrupt(format!("action {action_id} approvals"), e))?;
            if approvals.iter().any(|a| a == actor) {
                return Ok(Some(approvals));
            }
            approvals.push(actor.to_string());
            tx.execute(
                "UPDATE actions SET approvals = ?1 WHERE action_id = ?2",
                params![serde_json::to_string(&approvals).unwrap_or_default(), action_id],
            )?;
            let action: Action = serde_json::from_str(&body).map_err(|e| corrupt(format!("action {action_id}"), e))?;
            let details = serde_json::json!({
                "action_id": action_id, "finding_id": action.finding_id, "kind": action.kind,
                "approvals": approvals, "note": note,
            });
            append_audit(&tx, action_entry(&action, actor, "action_approval_recorded", chrono::Utc::now(), details))?;
            if approvals.len() >= needed {
                move_action(&tx, action_id, actor, ActionStatus::PendingApproval, ActionStatus::Approved, note)?;
            }
            tx.commit()?;
            Ok(Some(approvals))
        })
    }

    fn audit_of(&self, reference: &str, limit: usize) -> Result<Vec<StoredAudit>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached(
                    "SELECT seq, body, prev_hash, hash FROM audit \
                     WHERE ref = ?1 OR ref IN (SELECT action_id FROM actions WHERE finding_id = ?1) ORDER BY seq LIMIT ?2",
                )?;
            let rows = stmt
                .query_map(params![reference, page_limit(limit) as i64], audit_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn audit_head(&self) -> Result<u64> {
        self.with_reader(|c| {
            Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredAudit>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, body, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt
                // Above i64::MAX there are no records; a cast would wrap to a negative
                // position and return the chain from its start.
                .query_map(params![i64::try_from(after_seq).unwrap_or(i64::MAX), page_limit(limit) as i64], audit_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn outbox(&self, after: i64, limit: usize) -> Result<Vec<(i64, ActionRecord)>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, status, note, attempts, body, stored_at, approvals FROM actions WHERE status = 'approved' AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows =
                stmt.query_map(params![after, page_limit(limit) as i64], action_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(decode_action).collect()
        })
    }

    fn record_delivery_attempt(&self, action_id: &str, note: &str) -> Result<()> {
        self.with_writer(|conn| {
            conn.execute(
                "UPDATE actions SET attempts = attempts + 1, note = ?1 WHERE action_id = ?2",
                params![note, action_id],
            )?;
            Ok(())
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        self.with_reader(|c| {
            let count = |sql: &str| -> Result<u64> { Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
            Ok(StoreStats {
                // The log is gap-free and never shrinks, so its size is its last seq (no scan).
                events: count("SELECT COALESCE(MAX(seq), 0) FROM events")?,
                last_seq: count("SELECT COALESCE(MAX(seq), 0) FROM events")?,
                findings: count("SELECT COUNT(*) FROM findings")?,
                actions: count("SELECT COUNT(*) FROM actions")?,
                actions_pending_approval: count("SELECT COUNT(*) FROM actions WHERE status = 'pending_approval'")?,
                actions_in_outbox: count("SELECT COUNT(*) FROM actions WHERE status = 'approved'")?,
            })
        })
    }
}
