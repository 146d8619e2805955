//! Jidoka's durable store, the only crate that knows SQL.
//!
//! - [`Store`]: the trait the runtime uses; a PostgreSQL implementation satisfies it without
//!   touching callers.
//! - [`SqliteStore`]: the embedded default (SQLite in WAL mode, `synchronous=FULL`).
//!
//! What it keeps: the append-only event log (idempotent on `(source, source_txn_id)`), source
//! checkpoints (written in the same transaction as the events they cover), consumer cursors
//! (written in the same transaction as the findings and actions they produced), findings and
//! actions.
//!
//! Invariants:
//! - an [`Store::append`] call returns only after its transaction is durable on disk;
//! - events are never updated or deleted; `seq` is strictly increasing and never reused;
//! - an action's status only moves forward ([`jidoka_model::ActionStatus::can_move_to`]).

mod sqlite;

pub use sqlite::SqliteStore;

use jidoka_model::{Action, ActionKind, ActionStatus, Event, EventError, Finding, StoredEvent, Verdict};
use serde::Serialize;

/// Errors at the store boundary. Messages name what failed, never SQL text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored record {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("database schema version {found} is newer than this binary supports ({supported}); upgrade jidoka")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Database(err.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A source's resume position (a file offset, a controller's last tightening id, an OData
/// watermark), committed atomically with the events it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub source: String,
    pub position: String,
}

/// One source's batch within a group commit.
#[derive(Debug, Clone, Copy)]
pub struct AppendBatch<'a> {
    pub events: &'a [Event],
    pub checkpoint: Option<&'a Checkpoint>,
}

/// One forward move of an action's status, with who made it and why.
#[derive(Debug, Clone, Copy)]
pub struct StatusMove<'a> {
    pub action_id: &'a str,
    pub actor: &'a str,
    pub from: ActionStatus,
    pub to: ActionStatus,
    pub note: Option<&'a str>,
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AppendOutcome {
    /// Newly stored at this position.
    Stored { seq: u64, event_id: String },
    /// Already stored (same source and source transaction id, same content): not stored again.
    Duplicate { seq: u64, event_id: String },
    /// The source transaction is already stored at `seq` with other content (first differing
    /// field: `field`): refused, since keeping either silently would hide the other.
    Conflict { seq: u64, event_id: String, field: String },
    /// Not stored.
    Rejected { error: EventError },
}

impl AppendOutcome {
    pub fn is_stored(&self) -> bool {
        matches!(self, AppendOutcome::Stored { .. })
    }
}

/// A page of the event log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// Rows that could not be decoded: `(seq, reason)`.
    pub corrupt: Vec<(u64, String)>,
}

impl EventPage {
    /// Highest seq on the page, decoded or not.
    pub fn last_seq(&self) -> Option<u64> {
        let a = self.events.last().map(|e| e.seq);
        let b = self.corrupt.last().map(|c| c.0);
        a.max(b)
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.corrupt.is_empty()
    }
}

/// Filters for listing findings, newest first.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    pub verdict: Option<Verdict>,
    pub agent: Option<String>,
    pub kind: Option<String>,
    pub vin: Option<String>,
    pub station: Option<String>,
    /// Only findings older than this cursor (from a previous page's `next_cursor`).
    pub before: Option<i64>,
    pub limit: usize,
}

/// Filters for listing actions, newest first.
#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub status: Option<ActionStatus>,
    pub kind: Option<ActionKind>,
    pub finding_id: Option<String>,
    pub before: Option<i64>,
    pub limit: usize,
}

/// One page of a listing; pass `next_cursor` as `before` to get the next page.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

/// An action as stored, with the reason of its last status change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    #[serde(flatten)]
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub attempts: u32,
    /// First approvals of an action that needs two people (four-eyes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
    /// When the action was stored (wall clock); approvals expire from here.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub stored_at: Option<jidoka_model::Timestamp>,
}

mod opt_time {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<jidoka_model::Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&jidoka_model::event::rfc3339::format(t)),
            None => s.serialize_none(),
        }
    }
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    pub events: u64,
    pub last_seq: u64,
    pub findings: u64,
    pub actions: u64,
    pub actions_pending_approval: u64,
    pub actions_in_outbox: u64,
}

/// The durable store. All methods are synchronous; the runtime calls them from its own
/// threads. Implementations must be safe to share between one writer and many readers.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Append several sources' batches in one durable transaction (group commit), each
    /// batch's checkpoint with it. Returns one outcome per event, batch by batch. Events that
    /// are rejected do not stop the others.
    fn append(&self, batches: &[AppendBatch<'_>]) -> Result<Vec<Vec<AppendOutcome>>>;

    /// Append like [`Store::append`] and, in the same transaction, store what `derive` makes
    /// of the newly stored events (findings and actions) and move `consumer`'s cursor past
    /// them: one durable commit carries events and their findings together. Returns the
    /// outcomes and what was derived.
    #[allow(clippy::type_complexity)]
    fn append_deriving(
        &self,
        batches: &[AppendBatch<'_>],
        consumer: &str,
        derive: &mut dyn FnMut(&[StoredEvent]) -> (Vec<Finding>, Vec<Action>),
    ) -> Result<(Vec<Vec<AppendOutcome>>, Vec<Finding>, Vec<Action>)>;

    /// Highest `seq` stored (0 when empty).
    fn last_seq(&self) -> Result<u64>;

    /// Up to `limit` events with `seq > after_seq`, in log order. A stored row that no longer
    /// decodes is reported in [`EventPage::corrupt`] instead of failing the page, so one bad
    /// row never stops the agents.
    fn events_after(&self, after_seq: u64, limit: usize) -> Result<EventPage>;

    /// The event with this id.
    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>>;

    /// A source's last committed checkpoint.
    fn checkpoint(&self, source: &str) -> Result<Option<String>>;

    /// How far a consumer (the agent router) has processed the log (0 = nothing).
    fn cursor(&self, consumer: &str) -> Result<u64>;

    /// Store the findings and actions produced from the log up to `up_to_seq` and move the
    /// consumer's cursor there, in one transaction: after a crash, work is neither lost nor
    /// done twice.
    fn commit_findings(&self, consumer: &str, up_to_seq: u64, findings: &[Finding], actions: &[Action]) -> Result<()>;

    fn findings(&self, query: &FindingQuery) -> Result<Page<Finding>>;

    /// Findings in the order they were stored, after the given store position (0 = start).
    /// `next_cursor` is the position of the last finding returned, `None` when there is none,
    /// so a follower can resume exactly after what it has seen.
    fn findings_in_order(&self, after: i64, limit: usize) -> Result<Page<Finding>>;

    /// The store position of the newest finding (0 when there is none), where a follower that
    /// wants only new findings starts.
    fn last_finding_position(&self) -> Result<i64>;

    fn finding(&self, finding_id: &str) -> Result<Option<Finding>>;

    fn actions(&self, query: &ActionQuery) -> Result<Page<ActionRecord>>;

    fn action(&self, action_id: &str) -> Result<Option<ActionRecord>>;

    /// Move an action from `from` to `to` with a note, and record who did it in the audit trail,
    /// in one transaction. Returns false (and changes nothing) if the action is not in `from`
    /// or the move is not allowed.
    fn set_action_status(
        &self,
        action_id: &str,
        actor: &str,
        from: ActionStatus,
        to: ActionStatus,
        note: Option<&str>,
    ) -> Result<bool>;

    /// Several moves in one transaction (one fsync), as the outbox marks a pass's deliveries;
    /// each answers like [`Store::set_action_status`]. All or none are recorded.
    fn set_action_statuses(&self, moves: &[StatusMove<'_>]) -> Result<Vec<bool>>;

    /// Approved actions waiting for delivery, oldest first, after store position `after`
    /// (0 = from the start); each with its position for the next page.
    fn outbox(&self, after: i64, limit: usize) -> Result<Vec<(i64, ActionRecord)>>;

    /// Record a failed delivery attempt, keeping the action in the outbox.
    fn record_delivery_attempt(&self, action_id: &str, note: &str) -> Result<()>;

    fn stats(&self) -> Result<StoreStats>;

    /// Record one person's approval of a waiting action that needs `needed` different people
    /// (four-eyes), with its audit record; with the last one needed, the action moves to
    /// approved in the same transaction. The approvals so far (unchanged when this person had
    /// already approved), or `None` when the action is unknown or not waiting.
    fn record_approval(
        &self,
        action_id: &str,
        actor: &str,
        note: Option<&str>,
        needed: usize,
    ) -> Result<Option<Vec<String>>>;

    /// Expire the actions still waiting for approval that were stored before `stored_before`,
    /// each with its audit record; their ids.
    fn expire_pending(&self, stored_before: jidoka_model::Timestamp, note: &str) -> Result<Vec<String>>;

    /// Up to `limit` audit records with `seq > after_seq`, as stored (for verification and
    /// export), in chain order.
    fn audit_after(&self, after_seq: u64, limit: usize) -> Result<Vec<jidoka_model::audit::StoredAudit>>;

    /// The audit records about one action, or about a finding and its actions (by id), in
    /// chain order.
    fn audit_of(&self, reference: &str, limit: usize) -> Result<Vec<jidoka_model::audit::StoredAudit>>;

    /// The last audit record's `seq` (0 for an empty trail).
    fn audit_head(&self) -> Result<u64>;
}
