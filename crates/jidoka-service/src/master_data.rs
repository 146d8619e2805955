//! Master data into the event log. Whatever the source (the master data file, the MES reader,
//! the demo plant, `POST /api/master-data`), a change of master data is a `master_data_changed`
//! event: agents take master data from the log alone, so a change is in force from the next
//! event after it and `jidoka replay` reproduces what they concluded with the data in force at
//! the time.

use crate::runtime::{Ingest, MasterInForce};
use jidoka_model::master::{MasterData, MasterDataChange};
use jidoka_model::{Event, EventError};
use jidoka_store::AppendOutcome;
use serde_json::json;

/// The event that makes `change` from `source` known, with `source_txn_id` as its idempotency
/// key, stamped `now`.
pub fn change_event(
    source: &str,
    source_txn_id: &str,
    change: &MasterDataChange,
    now: jidoka_model::Timestamp,
) -> Result<Event, EventError> {
    let data = serde_json::to_value(change).map_err(|e| EventError::new("data", e.to_string()))?;
    Event::parse(
        json!({"source": source, "source_txn_id": source_txn_id, "occurred_at": jidoka_model::event::rfc3339::format(&now),
               "kind": "master_data_changed", "data": data}),
        now,
    )
}

/// The event that puts `master` in force, from `origin` (`file`, `mes`, `demo-plant`), or
/// `None` when it is what is in force already. Over master data in force it carries only the
/// rows that changed ([`MasterData::delta_to`]); over none, all of it. Its key names the whole
/// content and the log position it follows, so the same data offered again later (after
/// another change) is a new event, and offered twice at one position is one.
pub fn replacement(master: &MasterData, origin: &str, in_force: &MasterInForce, last_seq: u64) -> Option<Event> {
    let mut change = match in_force.get().as_deref() {
        Some(current) => current.delta_to(master)?,
        None => MasterDataChange { replace: true, rows: master.clone(), ..MasterDataChange::default() },
    };
    let text = serde_json::to_string(master).unwrap_or_default();
    let digest = jidoka_model::sha256_hex(text.as_bytes());
    change.revision = Some(format!("sha256:{}", &digest[..16]));
    match change_event(
        &format!("master-data:{origin}"),
        &format!("sha256:{digest}@{last_seq}"),
        &change,
        chrono::Utc::now(),
    ) {
        Ok(ev) => Some(ev),
        Err(err) => {
            // Validated master data always makes a valid event; say so if it ever does not.
            tracing::error!(error = %err, origin, "master data cannot be logged");
            None
        }
    }
}

/// Log `master` from `origin` if it differs from what is in force, and wait until it is (from a
/// blocking thread: import, the pollers, the server at start-up).
pub fn offer_blocking(
    ingest: &Ingest,
    in_force: &MasterInForce,
    master: &MasterData,
    origin: &str,
    last_seq: u64,
) -> anyhow::Result<Option<u64>> {
    let Some(event) = replacement(master, origin, in_force, last_seq) else { return Ok(None) };
    let outcome = ingest.blocking_append(vec![event], None).map_err(|e| anyhow::anyhow!("logging master data: {e}"))?;
    stored_seq(outcome)
}

fn stored_seq(outcome: Vec<AppendOutcome>) -> anyhow::Result<Option<u64>> {
    match outcome.into_iter().next() {
        Some(AppendOutcome::Stored { seq, .. }) => {
            tracing::info!(seq, "master data logged; in force from the next event");
            Ok(Some(seq))
        }
        Some(AppendOutcome::Duplicate { .. }) => Ok(None),
        Some(AppendOutcome::Conflict { field, .. }) => anyhow::bail!("master data event conflicts at {field}"),
        Some(AppendOutcome::Rejected { error }) => anyhow::bail!("master data refused: {error}"),
        None => Ok(None),
    }
}
