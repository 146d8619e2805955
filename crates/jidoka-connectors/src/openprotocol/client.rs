//! The integrator side of an Open Protocol link to one tightening controller.
//!
//! On connect: communication start (MID 0001) at the configured revision, one lower each time
//! the controller answers error 97 (MID revision unsupported); recovery of the results made
//! while the link was down (MID 0064 / 0065, from the last stored tightening id; on the first
//! connection ever, the controller's last `recover_max` results); subscription
//! to results (MID 0060, with the same fall-back), to traces (MID 0008 for MID 0900) and to
//! alarms (MID 0070). Then each result (MID 0061) waits briefly for its angle and torque traces,
//! is stored, and only then acknowledged (MID 0062): a crash or disconnect before the store
//! commits leaves the result unacknowledged, and the controller sends it again or the next
//! connection uploads it. Duplicates are absorbed by the store.
//!
//! The checkpoint is the highest tightening id below which every result is stored; a gap (a
//! result id that skips) is filled by MID 0064 before the checkpoint moves past it.

use super::fields::{Lookup, Value};
use super::frame::{Framed, Framer, OpError, Telegram};
use super::result::{ResultContext, tightening_id, to_event};
use super::trace::Trace;
use super::{Body, build, decode_fitted, layouts};
use crate::reject::{RejectLog, RejectedMessage};
use crate::{ResultStore, Stored, sleep_unless};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `[[sources]] type = "open_protocol"`: one controller link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenProtocolSourceConfig {
    /// Name under which the checkpoint is kept; events come from `op:<name>`.
    pub name: String,
    /// Controller address, `host:port` (Open Protocol's port is 4545).
    pub address: String,
    /// The station the controller's tool works at.
    pub station: String,
    /// Parameter set number → joint name (unmapped sets become `P<pset>`).
    #[serde(default)]
    pub joints: BTreeMap<String, String>,
    /// Tool serial for revisions that carry none.
    #[serde(default)]
    pub tool: Option<String>,
    /// Highest MID 0001 revision to ask for.
    #[serde(default = "default_comm_revision")]
    pub comm_revision: u16,
    /// Highest MID 0060 / 0064 revision to ask for.
    #[serde(default = "default_result_revision")]
    pub result_revision: u16,
    /// Subscribe to trace curves (MID 0900) and join them to their result.
    #[serde(default = "default_true")]
    pub traces: bool,
    /// How long a result waits for its traces before it is stored without them (100 ms at
    /// most after a result that came without traces).
    #[serde(default = "default_trace_wait_ms")]
    pub trace_wait_ms: u64,
    /// Keep-alive interval (MID 9999), at most 14 s: the controller drops links silent for 15 s.
    #[serde(default = "default_keep_alive_ms")]
    pub keep_alive_ms: u64,
    /// How long to wait for the answer to a request.
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Minutes the controller's clock is ahead of UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Most old results uploaded after a reconnect (the newest are kept).
    #[serde(default = "default_recover_max")]
    pub recover_max: u64,
    /// Link-level acknowledgement (MID 9997 / 9998 with header sequence numbers): `auto` uses
    /// it when the controller reports sequence number support in MID 0002 (revision 6 and up).
    #[serde(default)]
    pub link_ack: LinkAck,
    /// Seconds the link may be down before the outage is logged (a `source_outage` event, which
    /// the sequence agent turns into a finding about the station once the plant is seen
    /// producing meanwhile); 0 never logs one.
    #[serde(default = "default_outage_after_s")]
    pub outage_after_s: u64,
}

/// Whether to acknowledge every telegram at link level (MID 9997 / 9998).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAck {
    /// When the controller reports sequence number support.
    #[default]
    Auto,
    /// Always, for controllers configured for it that answer an older MID 0002.
    On,
    /// Never: subscription data is acknowledged by its own MID (0062, 0072, ...).
    Off,
}

fn default_outage_after_s() -> u64 {
    120
}
fn default_comm_revision() -> u16 {
    7
}
fn default_result_revision() -> u16 {
    7
}
fn default_true() -> bool {
    true
}
fn default_trace_wait_ms() -> u64 {
    1000
}
fn default_keep_alive_ms() -> u64 {
    10_000
}
fn default_reply_timeout_ms() -> u64 {
    5_000
}
fn default_recover_max() -> u64 {
    10_000
}

impl OpenProtocolSourceConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        let port_ok = self
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            errors.push((format!("{path}.address"), format!("'{}' is not host:port", self.address)));
        }
        if self.station.trim().is_empty() {
            errors.push((format!("{path}.station"), "must not be empty".into()));
        }
        if !(1..=7).contains(&self.comm_revision) {
            errors.push((format!("{path}.comm_revision"), "must be between 1 and 7".into()));
        }
        if !(1..=11).contains(&self.result_revision) {
            errors.push((format!("{path}.result_revision"), "must be between 1 and 11".into()));
        }
        if !(1000..=14_000).contains(&self.keep_alive_ms) {
            errors.push((
                format!("{path}.keep_alive_ms"),
                "must be between 1000 and 14000 (controllers drop a link silent for 15 s)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.recover_max) {
            errors.push((format!("{path}.recover_max"), "must be between 1 and 1000000".into()));
        }
        if !(100..=60_000).contains(&self.reply_timeout_ms) {
            errors.push((format!("{path}.reply_timeout_ms"), "must be between 100 and 60000".into()));
        }
        if self.trace_wait_ms > 60_000 {
            errors.push((format!("{path}.trace_wait_ms"), "must be at most 60000".into()));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            errors.push((format!("{path}.utc_offset_minutes"), "must be within ±840".into()));
        }
        if self.outage_after_s > 7 * 24 * 3600 {
            errors.push((format!("{path}.outage_after_s"), "must be at most 604800 (a week); 0 logs no outage".into()));
        }
    }

    /// A link to `address` for `station` with every default.
    pub fn new(name: &str, address: &str, station: &str) -> OpenProtocolSourceConfig {
        OpenProtocolSourceConfig {
            name: name.into(),
            address: address.into(),
            station: station.into(),
            joints: BTreeMap::new(),
            tool: None,
            comm_revision: default_comm_revision(),
            result_revision: default_result_revision(),
            traces: true,
            trace_wait_ms: default_trace_wait_ms(),
            keep_alive_ms: default_keep_alive_ms(),
            reply_timeout_ms: default_reply_timeout_ms(),
            utc_offset_minutes: 0,
            recover_max: default_recover_max(),
            link_ack: LinkAck::Auto,
            outage_after_s: default_outage_after_s(),
        }
    }

    pub fn source(&self) -> String {
        format!("op:{}", self.name)
    }

    pub fn checkpoint_name(&self) -> String {
        format!("op:{}", self.name)
    }
}

/// Counters of one link, for logs, metrics, tests and benchmarks.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connects: AtomicU64,
    pub results_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub recovered: AtomicU64,
    pub traces_joined: AtomicU64,
    pub traces_late: AtomicU64,
    pub garbage: AtomicU64,
    pub rejected: AtomicU64,
    pub alarms: AtomicU64,
    /// Results the controller no longer had when asked (lost on the controller side).
    pub unrecoverable: AtomicU64,
    /// Telegrams the controller refused at link level (MID 9998) or did not acknowledge in time.
    pub link_resends: AtomicU64,
    /// Telegrams the controller sent again with the same sequence number (acknowledged, not
    /// processed twice).
    pub link_repeats: AtomicU64,
    /// Times the controller's tightening ids were found to have restarted.
    pub id_restarts: AtomicU64,
    /// Whether a session is up (communication started and subscribed or subscribing).
    pub connected: AtomicBool,
    /// When `connected` last changed, ms since the epoch (0: not tried yet).
    pub since_ms: AtomicI64,
    /// The error that ended the last session or connection attempt, with when (ms).
    pub last_error: Mutex<Option<(i64, String)>>,
}

impl LinkStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn up(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.since_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The link is down (or stays down) because of `error`; `since` moves only when it was up.
    fn down(&self, error: Option<String>) {
        let now = chrono::Utc::now().timestamp_millis();
        if self.connected.swap(false, Ordering::Relaxed) || self.since_ms.load(Ordering::Relaxed) == 0 {
            self.since_ms.store(now, Ordering::Relaxed);
        }
        if let Some(e) = error
            && let Ok(mut last) = self.last_error.lock()
        {
            *last = Some((now, e));
        }
    }

    /// State and counters for `/api/status`.
    pub fn to_json(&self) -> serde_json::Value {
        let since = self.since_ms.load(Ordering::Relaxed);
        let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339());
        let last_error = self.last_error.lock().ok().and_then(|l| l.clone());
        serde_json::json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "since": if since == 0 { None } else { time(since) },
            "connects": Self::get(&self.connects),
            "results_stored": Self::get(&self.results_stored),
            "duplicates": Self::get(&self.duplicates),
            "recovered": Self::get(&self.recovered),
            "unrecoverable": Self::get(&self.unrecoverable),
            "rejected": Self::get(&self.rejected),
            "garbage": Self::get(&self.garbage),
            "traces_joined": Self::get(&self.traces_joined),
            "alarms": Self::get(&self.alarms),
            "id_restarts": Self::get(&self.id_restarts),
            "last_error": last_error.map(|(at, e)| serde_json::json!({"at": time(at), "error": e})),
        })
    }

    /// Prometheus lines for this link (label `link`).
    pub fn metrics(&self, link: &str, out: &mut String) {
        use std::fmt::Write;
        let link = link.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(
            out,
            "jidoka_link_connected{{link=\"{link}\"}} {}",
            u8::from(self.connected.load(Ordering::Relaxed))
        );
        for (name, counter) in [
            ("connects", &self.connects),
            ("results_stored", &self.results_stored),
            ("results_recovered", &self.recovered),
            ("results_unrecoverable", &self.unrecoverable),
            ("results_rejected", &self.rejected),
            ("garbage", &self.garbage),
        ] {
            let _ = writeln!(out, "jidoka_link_{name}_total{{link=\"{link}\"}} {}", Self::get(counter));
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the controller closed the connection")]
    Closed,
    #[error("no answer to MID {0:04} within the reply timeout")]
    NoReply(u16),
    #[error("MID {0:04} not acknowledged at link level after {LINK_TRIES} tries")]
    NoLinkAck(u16),
    #[error("the controller has been silent for {0} ms")]
    Silent(u128),
    #[error("MID {mid:04} refused with error {code} ({name})")]
    Refused { mid: u16, code: i64, name: &'static str },
    #[error("the store could not take the results: {0}")]
    Store(String),
    #[error("{0}")]
    Protocol(#[from] OpError),
}

/// Tightening ids the link knows were made and will not have: `count` of them from `first` to
/// `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

impl Missing {
    /// Runs of consecutive ids, one `Missing` each.
    fn runs(ids: &[u64]) -> Vec<Missing> {
        let mut out: Vec<Missing> = Vec::new();
        for &id in ids {
            match out.last_mut() {
                Some(m) if m.last + 1 == id => (m.last, m.count) = (id, m.count + 1),
                _ => out.push(Missing { first: id, last: id, count: 1 }),
            }
        }
        out
    }
}

/// The highest id below which everything is stored, the ids stored above it, and the results
/// acknowledged at link level before they were stored (kept in the checkpoint, which is as
/// durable as the events, and stored first on the next start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    pub high: Option<u64>,
    above: BTreeSet<u64>,
    held: BTreeMap<u64, Vec<u8>>,
    /// The newest result stored: its id and the controller's time stamp for it. On the next
    /// connection the controller's result of that id must still carry that time; if it does
    /// not, the controller's ids restarted while the link was down.
    pub last: Option<(u64, String)>,
    /// Since when the link has been down (`None` while a session is subscribed).
    down_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The start of an outage that was logged and whose end has not been logged yet.
    pub outage: Option<chrono::DateTime<chrono::Utc>>,
}

impl Tracker {
    /// The checkpoint's first line is the high mark; a `last <id> <time stamp>` line names the
    /// newest result stored; each `held <id> <hex>` line is a result telegram received and
    /// acknowledged but not yet stored; an `outage <time>` line, an outage logged whose end is
    /// not (a restart does not lose it: the end is logged when the link is back).
    pub fn from_checkpoint(text: Option<&str>) -> Tracker {
        let mut lines = text.unwrap_or_default().lines();
        let high = lines.next().and_then(|t| t.trim().parse().ok());
        let (mut held, mut last, mut outage) = (BTreeMap::new(), None, None);
        for line in lines {
            if let Some(at) = line.strip_prefix("outage ")
                && let Ok(at) = chrono::DateTime::parse_from_rfc3339(at)
            {
                outage = Some(at.with_timezone(&chrono::Utc));
                continue;
            }
            if let Some(rest) = line.strip_prefix("held ") {
                let mut parts = rest.split(' ');
                if let (Some(Ok(id)), Some(Ok(bytes))) = (parts.next().map(str::parse), parts.next().map(hex::decode)) {
                    held.insert(id, bytes);
                }
            } else if let Some((id, at)) = line.strip_prefix("last ").and_then(|r| r.split_once(' '))
                && let Ok(id) = id.parse()
            {
                last = Some((id, at.to_string()));
            }
        }
        Tracker { high, above: BTreeSet::new(), held, last, down_since: outage, outage }
    }

    /// Result telegrams acknowledged and not yet stored, by tightening id.
    pub fn held(&self) -> &BTreeMap<u64, Vec<u8>> {
        &self.held
    }

    /// Record every id from `first` to `last` as given up on. Callers pass ids they listed one
    /// by one (or a range the mark has already passed), so the loop is as long as that list.
    fn mark_range(&mut self, first: u64, last: u64) {
        if self.high.is_some_and(|h| last <= h) {
            return;
        }
        for id in first..=last {
            self.mark(id);
        }
    }

    /// Record `id` as stored (or as given up on).
    pub fn mark(&mut self, id: u64) {
        match self.high {
            None => self.high = Some(id),
            Some(h) if id <= h => {}
            Some(h) if id == h + 1 => {
                let mut h = id;
                while self.above.remove(&(h + 1)) {
                    h += 1;
                }
                self.high = Some(h);
            }
            Some(_) => {
                self.above.insert(id);
            }
        }
    }

    /// Ids between the high mark and the highest stored id that are not stored, at most the
    /// `max` newest: older ones are given up (their range and count are returned) and the mark
    /// moves past them, so one wild id never asks for billions of uploads.
    pub fn gaps(&mut self, max: u64) -> (Vec<u64>, Option<Missing>) {
        let (Some(h), Some(&top)) = (self.high, self.above.last()) else { return (Vec::new(), None) };
        let mut given_up = None;
        if top - h - 1 > max {
            let start = top - max;
            let count = (start - h - 1) - self.above.range(h + 1..start).count() as u64;
            given_up = (count > 0).then_some(Missing { first: h + 1, last: start - 1, count });
            self.above.retain(|&i| i >= start);
            let mut high = start - 1;
            while self.above.remove(&(high + 1)) {
                high += 1;
            }
            self.high = Some(high);
        }
        let h = self.high.unwrap_or(0);
        let top = self.above.last().copied().unwrap_or(h);
        ((h + 1..top).filter(|i| !self.above.contains(i)).collect(), given_up)
    }

    /// Forget every stored id: everything up to `high` counts as stored (held results stay).
    fn restart_at(&mut self, high: u64) {
        self.high = Some(high);
        self.above.clear();
        self.last = None;
    }

    /// The highest id stored (or given up on).
    pub fn top(&self) -> Option<u64> {
        self.above.last().copied().or(self.high)
    }

    pub fn checkpoint(&self) -> String {
        let mut out = self.high.map(|h| h.to_string()).unwrap_or_default();
        if let Some((id, at)) = &self.last {
            out.push_str(&format!("\nlast {id} {at}"));
        }
        for (id, bytes) in &self.held {
            out.push_str(&format!("\nheld {id} {}", hex::encode(bytes)));
        }
        if let Some(at) = self.outage {
            out.push_str(&format!("\noutage {}", at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        }
        out
    }
}

/// An event the link logs about itself (a gap, an outage), happening now, through the one
/// door untrusted JSON takes.
fn link_event(
    cfg: &OpenProtocolSourceConfig,
    txn: String,
    kind: &str,
    data: serde_json::Value,
) -> Result<jidoka_model::Event, OpError> {
    let now = chrono::Utc::now();
    let event = serde_json::json!({
        "source": cfg.source(), "source_txn_id": txn,
        "occurred_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "kind": kind, "data": data,
    });
    jidoka_model::Event::parse(event, now).map_err(|e| OpError::new(e.field, e.reason))
}

/// A `source_outage` event of `cfg`'s station: begun at `since`, ended at `until` if known.
fn outage_event(
    cfg: &OpenProtocolSourceConfig,
    since: chrono::DateTime<chrono::Utc>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    reason: &str,
) -> Result<jidoka_model::Event, OpError> {
    let ms = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let txn = format!("outage{}:{}", if until.is_some() { "-end" } else { "" }, since.timestamp_millis());
    let mut data = serde_json::json!({"station": cfg.station, "since": ms(since), "reason": reason});
    if let Some(until) = until {
        data["until"] = serde_json::Value::String(ms(until));
    }
    link_event(cfg, txn, "source_outage", data)
}

/// Log the outage of a link down since `tracker.down_since` once it has lasted
/// `outage_after_s`; a failed append is tried again at the next call.
fn log_outage(cfg: &OpenProtocolSourceConfig, store: &mut dyn ResultStore, tracker: &mut Tracker, stats: &LinkStats) {
    let Some(since) = tracker.down_since else { return };
    let due = chrono::Duration::seconds(i64::try_from(cfg.outage_after_s).unwrap_or(i64::MAX));
    if cfg.outage_after_s == 0 || tracker.outage.is_some() || chrono::Utc::now() - since < due {
        return;
    }
    let last_error = stats.last_error.lock().ok().and_then(|l| l.as_ref().map(|(_, e)| e.clone())).unwrap_or_default();
    let reason = jidoka_model::event::truncate(&last_error, 1000);
    let mut next = tracker.clone();
    next.outage = Some(since);
    let appended = outage_event(cfg, since, None, reason)
        .map_err(|e| e.to_string())
        .and_then(|event| store.append(vec![event], next.checkpoint()));
    match appended {
        Ok(_) => {
            tracing::error!(link = %cfg.name, station = %cfg.station, since = %since, "controller link down for {} s or more: {reason}", cfg.outage_after_s);
            *tracker = next;
        }
        Err(err) => tracing_warn(&cfg.name, &format!("cannot log the link's outage ({err}); trying again")),
    }
}

/// Run the link until `stop`: connect, recover, subscribe, take results; on any failure
/// reconnect with backoff (0.25 s doubling to 30 s, with jitter). A result that cannot be
/// decoded or turned into an event is kept in `rejects` with why before it is acknowledged.
pub fn run(
    cfg: &OpenProtocolSourceConfig,
    store: &mut dyn ResultStore,
    rejects: &mut dyn RejectLog,
    checkpoint: Option<String>,
    stop: &AtomicBool,
    stats: &LinkStats,
) {
    let mut tracker = Tracker::from_checkpoint(checkpoint.as_deref());
    let mut said = BTreeSet::new();
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let result =
            Session::connect(cfg, stats, &mut *store, &mut *rejects, &mut tracker, &mut said).and_then(|mut s| {
                failures = 0;
                stats.up();
                s.run(stop)
            });
        match result {
            Err(err) => {
                tracing_warn(&cfg.name, &err.to_string());
                stats.down(Some(err.to_string()));
            }
            Ok(()) => stats.down(None),
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tracker.down_since.get_or_insert_with(chrono::Utc::now);
        failures = failures.saturating_add(1);
        // Slept in slices so that an outage is logged when it is due, not after the backoff.
        let until = std::time::Instant::now() + crate::reconnect_delay(failures);
        loop {
            log_outage(cfg, store, &mut tracker, stats);
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            sleep_unless(stop, left.min(Duration::from_secs(1)));
        }
    }
}

/// A telegram's body, read at the revision its data fits (see [`decode_fitted`]).
fn read(t: &Telegram) -> Result<Body, OpError> {
    decode_fitted(t).map(|(body, _)| body)
}

fn tracing_warn(link: &str, message: &str) {
    tracing::warn!(link, "{message}");
}

/// Most telegrams kept aside while a request waits for its answer.
const MAX_BACKLOG: usize = 1000;

/// How often a telegram is sent before a missing link-level acknowledgement ends the session.
const LINK_TRIES: u32 = 3;

/// Link-level acknowledgement state of one connection.
#[derive(Debug)]
struct LinkLevel {
    /// Sequence number of the next telegram sent (1 to 99, then 1 again).
    next: u8,
    /// Sequence number of the last telegram received: the same number again is a resend.
    last_received: Option<u8>,
    /// The telegram sent and not yet acknowledged, when to send it again and how often it
    /// has been sent.
    unacked: Option<(Telegram, Instant, u32)>,
}

fn next_sequence(n: u8) -> u8 {
    if n >= 99 { 1 } else { n + 1 }
}

/// How long a result waits for traces after one that came without them.
const SHORT_TRACE_WAIT_MS: u64 = 100;

/// A result: its fields, the traces joined to it and the telegram it came in.
type Received = (Vec<super::fields::Field>, Vec<Trace>, Telegram);

/// A result waiting for its traces.
#[derive(Debug)]
struct Pending {
    fields: Vec<super::fields::Field>,
    telegram: Telegram,
    id: u64,
    traces: Vec<Trace>,
    deadline: Instant,
}

/// One connection.
pub struct Session<'a> {
    cfg: &'a OpenProtocolSourceConfig,
    stats: &'a LinkStats,
    store: &'a mut dyn ResultStore,
    rejects: &'a mut dyn RejectLog,
    tracker: &'a mut Tracker,
    /// Set when telegrams are acknowledged at link level.
    link: Option<LinkLevel>,
    stream: TcpStream,
    framer: Framer,
    backlog: VecDeque<Telegram>,
    last_sent: Instant,
    last_recv: Instant,
    result_rev: u16,
    traces: bool,
    pending: Option<Pending>,
    early: VecDeque<Trace>,

    /// When the last live result came: a link quiet for a keep-alive interval checks for missed ones.
    last_result: Instant,
    /// Whether the last result got its traces: when it did not (a parameter set without trace
    /// recording), the next one waits only briefly, so the link keeps the line's pace.
    last_had_traces: bool,
    /// What this link has already said once (a capability the controller lacks, a telegram it
    /// keeps sending in a form Jidoka cannot read): kept across its connections, so a link that
    /// reconnects often does not repeat it at every connect; `/api/status` keeps the counts.
    said: &'a mut BTreeSet<String>,
    /// The error with which the controller refused old-result upload (MID 0064), once it has:
    /// not asked again on this connection (a reconnect asks again: the controller may be another).
    no_upload: Option<i64>,
    /// Garbage since the last telegram: bytes, pieces and the first piece's error.
    garbage: Option<(usize, usize, OpError)>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("link", &self.cfg.name).finish_non_exhaustive()
    }
}

impl<'a> Session<'a> {
    /// Connect and start communication (MID 0001 with revision fall-back); decide on
    /// link-level acknowledgement from the answer (MID 0002).
    pub fn connect(
        cfg: &'a OpenProtocolSourceConfig,
        stats: &'a LinkStats,
        store: &'a mut dyn ResultStore,
        rejects: &'a mut dyn RejectLog,
        tracker: &'a mut Tracker,
        said: &'a mut BTreeSet<String>,
    ) -> Result<Session<'a>, LinkError> {
        let addr = cfg
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address does not resolve"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(cfg.reply_timeout_ms))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        stream.set_write_timeout(Some(Duration::from_millis(cfg.reply_timeout_ms)))?;
        let mut s = Session {
            cfg,
            stats,
            store,
            rejects,
            tracker,
            link: None,
            stream,
            framer: Framer::new(),
            backlog: VecDeque::new(),
            last_sent: Instant::now(),
            last_recv: Instant::now(),
            result_rev: cfg.result_revision,
            traces: cfg.traces,
            pending: None,
            early: VecDeque::new(),

            last_had_traces: true,
            last_result: Instant::now(),
            said,
            no_upload: None,
            garbage: None,
        };
        let mut rev = cfg.comm_revision;
        loop {
            let data: Vec<(&str, Value)> = if rev >= 7 { vec![("keep_alive", Value::Int(0))] } else { vec![] };
            let reply = s.request(build(1, rev, &data)?, &[2])?;
            match refusal(&reply) {
                None => {
                    let supported = read(&reply).ok().and_then(|b| b.fields().int("sequence_number_support"));
                    if cfg.link_ack == LinkAck::On || (cfg.link_ack == LinkAck::Auto && supported == Some(1)) {
                        s.link = Some(LinkLevel { next: 1, last_received: None, unacked: None });
                    }
                    break;
                }
                Some(97) | Some(76) if rev > 1 => rev -= 1,
                Some(code) => return Err(refused(1, code)),
            }
        }
        LinkStats::add(&stats.connects, 1);
        Ok(s)
    }

    /// Send a telegram. With link-level acknowledgement, the one before must have been
    /// acknowledged first (telegrams that arrive meanwhile are kept), and this one gets the
    /// next sequence number; keep-alives and the acknowledgements themselves go unnumbered.
    fn send(&mut self, t: &Telegram) -> Result<(), LinkError> {
        if self.link.is_none() || matches!(t.header.mid, 9997..=9999) {
            return self.write(t);
        }
        self.await_link_ack()?;
        let mut t = t.clone();
        if let Some(link) = &mut self.link {
            t.header.sequence = Some(link.next);
            link.next = next_sequence(link.next);
        }
        self.write(&t)?;
        let due = Instant::now() + Duration::from_millis(self.cfg.reply_timeout_ms);
        if let Some(link) = &mut self.link {
            link.unacked = Some((t, due, 1));
        }
        Ok(())
    }

    fn write(&mut self, t: &Telegram) -> Result<(), LinkError> {
        self.stream.write_all(&t.to_wire())?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Wait for the link-level acknowledgement of the telegram last sent (which
    /// [`Self::resend_due`] sends again meanwhile).
    fn await_link_ack(&mut self) -> Result<(), LinkError> {
        while let Some((t, due, _)) = self.link.as_ref().and_then(|l| l.unacked.clone()) {
            if let Some(other) = self.read_one(due)? {
                self.keep(other, t.header.mid)?;
            }
        }
        Ok(())
    }

    /// Send the unacknowledged telegram again when its reply timeout has passed or the
    /// controller refused it (MID 9998); after [`LINK_TRIES`] sends in all, end the session.
    fn resend_due(&mut self) -> Result<(), LinkError> {
        let Some((t, due, tries)) = self.link.as_ref().and_then(|l| l.unacked.clone()) else { return Ok(()) };
        if Instant::now() < due {
            return Ok(());
        }
        if tries >= LINK_TRIES {
            return Err(LinkError::NoLinkAck(t.header.mid));
        }
        LinkStats::add(&self.stats.link_resends, 1);
        self.write(&t)?;
        let due = Instant::now() + Duration::from_millis(self.cfg.reply_timeout_ms);
        if let Some(link) = &mut self.link {
            link.unacked = Some((t, due, tries + 1));
        }
        Ok(())
    }

    /// Keep a telegram that came while waiting on `mid` for the main loop.
    fn keep(&mut self, t: Telegram, mid: u16) -> Result<(), LinkError> {
        if t.header.mid == 9999 {
            return Ok(());
        }
        if self.backlog.len() >= MAX_BACKLOG {
            let reason = format!("{MAX_BACKLOG} telegrams arrived while waiting for MID {mid:04}'s answer");
            return Err(OpError::new("$", reason).into());
        }
        self.backlog.push_back(t);
        Ok(())
    }

    /// Link-level handling of a telegram received: acknowledgements of ours are consumed, a
    /// repeat of the last telegram is acknowledged again and dropped, anything else is
    /// acknowledged (a result only once it is held in the store) and passed on.
    fn receive(&mut self, t: Telegram) -> Result<Option<Telegram>, LinkError> {
        let Some(link) = &mut self.link else { return Ok(Some(t)) };
        let seq = t.header.sequence.filter(|&n| n > 0);
        match t.header.mid {
            9997 => {
                let about = read(&t).ok().and_then(|b| b.fields().int("mid"));
                if let Some((sent, _, _)) = &link.unacked
                    && (seq == sent.header.sequence || (seq.is_none() && about == Some(i64::from(sent.header.mid))))
                {
                    link.unacked = None;
                }
                return Ok(None);
            }
            9998 => {
                let fields = read(&t).map(|b| b.fields().to_vec()).unwrap_or_default();
                let code = fields.int("error_code").unwrap_or(0);
                if let Some((_, due, _)) = &mut link.unacked {
                    // Sent again by the next wait, which counts the tries.
                    *due = Instant::now();
                }
                tracing_warn(
                    &self.cfg.name,
                    &format!(
                        "controller refused MID {:04} at link level: error {code} ({})",
                        fields.int("mid").unwrap_or(0),
                        link_error_name(code)
                    ),
                );
                return Ok(None);
            }
            _ => {}
        }
        let Some(seq) = seq else { return Ok(Some(t)) };
        if link.last_received == Some(seq) {
            LinkStats::add(&self.stats.link_repeats, 1);
            self.link_ack(&t, seq)?;
            return Ok(None);
        }
        link.last_received = Some(seq);
        if t.header.mid == 61 {
            self.hold(&t)?;
        }
        self.link_ack(&t, seq)?;
        Ok(Some(t))
    }

    fn link_ack(&mut self, t: &Telegram, seq: u8) -> Result<(), LinkError> {
        let mut ack = build(9997, 1, &[("mid", Value::Int(i64::from(t.header.mid)))])?;
        ack.header.sequence = Some(seq);
        self.write(&ack)
    }

    /// Make a result durable before its link-level acknowledgement: its telegram goes into
    /// the checkpoint until the result itself is stored.
    fn hold(&mut self, t: &Telegram) -> Result<(), LinkError> {
        let Some(id) = read(t).ok().and_then(|b| tightening_id(b.fields())) else { return Ok(()) };
        let mut next = self.tracker.clone();
        next.held.insert(id, t.to_bytes());
        self.store.append(Vec::new(), next.checkpoint()).map_err(LinkError::Store)?;
        *self.tracker = next;
        Ok(())
    }

    /// The next telegram, waiting at most until `deadline`; `None` at the deadline or after a
    /// telegram handled at link level.
    fn read_one(&mut self, deadline: Instant) -> Result<Option<Telegram>, LinkError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            while let Some(item) = self.framer.take() {
                match item {
                    Framed::Telegram(t) => {
                        self.last_recv = Instant::now();
                        self.report_garbage();
                        // A telegram only about the link ends the wait too: it may be the
                        // acknowledgement a caller waits for.
                        return self.receive(t);
                    }
                    Framed::Garbage { bytes, error } => {
                        LinkStats::add(&self.stats.garbage, 1);
                        match &mut self.garbage {
                            Some((total, pieces, _)) => (*total, *pieces) = (*total + bytes, *pieces + 1),
                            None => self.garbage = Some((bytes, 1, error)),
                        }
                    }
                }
            }
            self.resend_due()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    self.last_recv = Instant::now();
                    self.framer.push(&buf[..n]);
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send a request and wait for its answer: a telegram with one of `replies`, or a command
    /// error / accepted (MID 0004 / 0005) about this MID. Other telegrams are kept for later.
    fn request(&mut self, t: Telegram, replies: &[u16]) -> Result<Telegram, LinkError> {
        self.send(&t)?;
        // At link level a refused or unacknowledged request is sent again before it is answered.
        let tries = if self.link.is_some() { LINK_TRIES } else { 1 };
        let deadline = Instant::now() + Duration::from_millis(self.cfg.reply_timeout_ms) * tries;
        while Instant::now() < deadline {
            let Some(r) = self.read_one(deadline)? else { continue };
            // A generic subscription (0008) may be answered naming the subscribed MID.
            let subscribed = if t.header.mid == 8 { read(&t).ok().and_then(|b| b.fields().int("mid")) } else { None };
            let about = |r: &Telegram, field: &str| {
                read(r)
                    .ok()
                    .and_then(|b| b.fields().int(field))
                    .is_some_and(|m| m == i64::from(t.header.mid) || Some(m) == subscribed)
            };
            if replies.contains(&r.header.mid)
                || (r.header.mid == 4 && about(&r, "failed_mid"))
                || (r.header.mid == 5 && about(&r, "accepted_mid"))
            {
                return Ok(r);
            }
            self.keep(r, t.header.mid)?;
        }
        Err(LinkError::NoReply(t.header.mid))
    }

    /// Ask for a subscription at `rev`, falling back on error 97; the revision granted.
    fn subscribe(&mut self, mid: u16, mut rev: u16, data: &[(&str, Value)]) -> Result<u16, LinkError> {
        loop {
            let reply = self.request(build(mid, rev, data)?, &[])?;
            match refusal(&reply) {
                None => return Ok(rev),
                Some(97) | Some(74) | Some(76) if rev > 1 => rev -= 1,
                Some(code) => return Err(refused(mid, code)),
            }
        }
    }

    /// Recover, subscribe and take results until `stop` or a failure.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), LinkError> {
        self.store_held()?;
        self.recover()?;
        self.result_rev = self.subscribe(60, self.cfg.result_revision, &[])?;
        self.back_up()?;
        if self.traces {
            let data = [
                ("mid", Value::Int(900)),
                ("wanted_revision", Value::Int(1)),
                ("extra_data_length", Value::Int(0)),
                ("extra_data", Value::Text(String::new())),
            ];
            if let Err(err) = self.subscribe(8, 1, &data) {
                self.say_once(
                    format!("traces {err}"),
                    &format!("trace subscription refused ({err}); results come without curves"),
                );
                self.traces = false;
            }
        }
        if let Err(err) = self.subscribe(70, 2, &[]) {
            self.say_once(format!("alarms {err}"), &format!("alarm subscription refused ({err})"));
        }
        let keep_alive = Duration::from_millis(self.cfg.keep_alive_ms);
        let mut last_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some(p) = &self.pending
                && (Instant::now() >= p.deadline || p.traces.len() >= 2)
            {
                self.finish_pending()?;
            }
            // A quiet link asks for the latest result once per keep-alive interval: a result
            // the controller believes delivered (an acknowledgement crossed a resend; 0062 names
            // no id) is found even when no later result would show the gap.
            if self.pending.is_none() && self.backlog.is_empty() && last_check.elapsed() >= keep_alive {
                last_check = Instant::now();
                self.catch_up()?;
            }
            if self.last_sent.elapsed() >= keep_alive {
                self.send(&Telegram::new(9999, 1, Vec::new()))?;
            }
            if self.last_recv.elapsed() >= keep_alive * 3 {
                return Err(LinkError::Silent(self.last_recv.elapsed().as_millis()));
            }
            let next = match self.backlog.pop_front() {
                Some(t) => Some(t),
                None => self.read_one(Instant::now() + Duration::from_millis(20))?,
            };
            if let Some(t) = next {
                self.dispatch(t)?;
            }
        }
        if self.pending.is_some() {
            self.finish_pending()?;
        }
        let _ = self.send(&Telegram::new(3, 1, Vec::new()));
        Ok(())
    }

    fn dispatch(&mut self, t: Telegram) -> Result<(), LinkError> {
        let (mid, rev) = (t.header.mid, t.header.effective_revision());
        let body = match decode_fitted(&t) {
            Ok((body, read_at)) => {
                if read_at < rev {
                    self.say_once(
                        format!("fit {mid} {rev}"),
                        &format!(
                            "the controller sends MID {mid:04} at revision {rev} with a revision-{read_at} body; \
                             read as revision {read_at}"
                        ),
                    );
                    if matches!(mid, 61 | 65) {
                        // Uploads are asked for at the revision the results come in.
                        self.result_rev = self.result_rev.min(read_at);
                    }
                }
                body
            }
            Err(err) => {
                LinkStats::add(&self.stats.rejected, 1);
                if matches!(mid, 61 | 65 | 900) {
                    tracing_warn(&self.cfg.name, &format!("MID {mid:04} rev {rev} rejected: {err}"));
                    // Unreadable: kept with why, then acknowledged so the controller goes on.
                    self.reject(&t, vec![err.to_string()])?;
                } else {
                    self.say_once(
                        format!("unreadable {mid} {rev}"),
                        &format!("MID {mid:04} rev {rev} cannot be read ({err}); such telegrams are ignored"),
                    );
                }
                if mid == 61 {
                    self.acknowledge(62)?;
                }
                return Ok(());
            }
        };
        match (mid, body) {
            (61, Body::Fields(fields)) => {
                self.last_result = Instant::now();
                if self.pending.is_some() {
                    self.finish_pending()?;
                }
                let Some(id) = tightening_id(&fields) else {
                    LinkStats::add(&self.stats.rejected, 1);
                    tracing_warn(&self.cfg.name, "MID 0061 without a tightening id rejected");
                    self.reject(&t, vec!["data.tightening_id: missing".into()])?;
                    return self.acknowledge(62);
                };

                let mut traces = Vec::new();
                self.early.retain(|tr| {
                    if tr.tightening_id() == Some(id as i64) {
                        traces.push(tr.clone());
                        false
                    } else {
                        true
                    }
                });
                let wait = match (self.traces, self.last_had_traces) {
                    (false, _) => 0,
                    (true, true) => self.cfg.trace_wait_ms,
                    (true, false) => self.cfg.trace_wait_ms.min(SHORT_TRACE_WAIT_MS),
                };
                let deadline = Instant::now() + Duration::from_millis(wait);
                self.pending = Some(Pending { fields, telegram: t, id, traces, deadline });
                if wait == 0 {
                    self.finish_pending()?;
                }
            }
            (900, Body::Trace(tr)) => {
                let id = tr.tightening_id().unwrap_or(-1);
                match &mut self.pending {
                    Some(p) if p.id as i64 == id => p.traces.push(tr),
                    _ if self.tracker.high.is_some_and(|h| id <= h as i64) => {
                        // Most often the traces of a result sent again, whose first traces
                        // were joined.
                        LinkStats::add(&self.stats.traces_late, 1);
                        self.say_once(
                            "late traces".into(),
                            &format!(
                                "trace for tightening {id} came after its result was stored; such traces are \
                                 counted (traces_late), not logged"
                            ),
                        );
                    }
                    _ => {
                        if self.early.len() >= 8 {
                            self.early.pop_front();
                            LinkStats::add(&self.stats.traces_late, 1);
                        }
                        self.early.push_back(tr);
                    }
                }
            }
            (65, Body::Fields(fields)) => {
                // An upload reply that came after its request timed out: store it all the same.
                self.store_results(vec![(fields, Vec::new(), t)], false)?;
            }
            (71, Body::Fields(f)) | (76, Body::Fields(f)) => {
                LinkStats::add(&self.stats.alarms, 1);
                tracing_warn(
                    &self.cfg.name,
                    &format!(
                        "controller alarm {} {}",
                        f.text("error_code").unwrap_or_default(),
                        f.text("alarm_text").unwrap_or_default()
                    ),
                );
                self.acknowledge(if mid == 71 { 72 } else { 77 })?;
            }
            (15, _) => self.acknowledge(16)?,
            (52, _) => self.acknowledge(53)?,
            (9999, _) | (5, _) => {}
            (4, Body::Fields(f)) => {
                let (failed, code) = (f.int("failed_mid").unwrap_or(0), f.int("error_code"));
                self.say_once(
                    format!("refused {failed} {code:?}"),
                    &format!(
                        "controller refused MID {failed:04}: error {}",
                        code.map(|c| format!("{c} ({})", error_name(c))).unwrap_or_default()
                    ),
                );
            }
            (other, _) => tracing_warn(
                &self.cfg.name,
                &format!("MID {other:04} ({}) not expected; ignored", super::mid_name(other)),
            ),
        }
        Ok(())
    }

    /// One log line for a run of garbage, once the next telegram shows where it ended.
    fn report_garbage(&mut self) {
        if let Some((bytes, pieces, first)) = self.garbage.take() {
            let pieces = if pieces > 1 { format!(" in {pieces} pieces") } else { String::new() };
            tracing_warn(&self.cfg.name, &format!("dropped {bytes} bytes{pieces} that are not a telegram: {first}"));
        }
    }

    /// Log `message` the first time `key` comes up on this link, and at debug level after.
    fn say_once(&mut self, key: String, message: &str) {
        if self.said.insert(key) {
            tracing_warn(&self.cfg.name, message);
        } else {
            tracing::debug!(link = %self.cfg.name, "{message}");
        }
    }

    /// Store the waiting result (with the traces that came), then acknowledge it.
    fn finish_pending(&mut self) -> Result<(), LinkError> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        self.last_had_traces = p.traces.len() >= 2;
        if self.traces && self.last_had_traces {
            LinkStats::add(&self.stats.traces_joined, 1);
        }
        let id = p.id;
        if let Some(why) = self.restarted_live(id, &p.fields) {
            LinkStats::add(&self.stats.id_restarts, 1);
            tracing_warn(&self.cfg.name, &format!("the controller's tightening ids restarted ({why})"));
            // Counted from 1 again: the ids before this one are the restarted controller's,
            // uploaded (or logged as a gap) like any other.
            self.tracker.restart_at(0);
        }
        self.store_results(vec![(p.fields, p.traces, p.telegram)], false)?;
        self.acknowledge(62)?;
        let gaps = self.gaps()?;
        if !gaps.is_empty() {
            if self.no_upload.is_none() {
                tracing_warn(&self.cfg.name, &format!("tightening {id} skips {} ids; uploading them", gaps.len()));
            }
            self.upload(&gaps)?;
        }
        Ok(())
    }

    /// Whether a live result shows that the controller's ids restarted: an id below the newest
    /// stored, made later than it (a resend carries its first time stamp). Why, if so. The one
    /// sign there is without old-result upload, where a reconnect cannot ask.
    fn restarted_live(&self, id: u64, fields: &[super::fields::Field]) -> Option<String> {
        let (last, last_at) = self.tracker.last.as_ref()?;
        let at = fields.text("timestamp")?;
        (id < *last && at.len() == last_at.len() && at.as_str() > last_at.as_str())
            .then(|| format!("tightening {id} made at {at}, after tightening {last} at {last_at}"))
    }

    /// Keep a telegram that makes no event, with why, in the rejected log.
    fn reject(&mut self, t: &Telegram, reasons: Vec<String>) -> Result<(), LinkError> {
        let origin = format!("MID {:04} rev {}", t.header.mid, t.header.effective_revision());
        let record = RejectedMessage::new(self.cfg.source(), origin, chrono::Utc::now(), reasons, &t.to_bytes(), 0);
        self.rejects.keep(&record).map_err(LinkError::Store)
    }

    /// Acknowledge subscription data with its own MID; with link-level acknowledgement the
    /// MID 9997 already sent stands for it.
    fn acknowledge(&mut self, mid: u16) -> Result<(), LinkError> {
        if self.link.is_some() { Ok(()) } else { self.send(&Telegram::new(mid, 1, Vec::new())) }
    }

    /// Store the results a previous connection acknowledged at link level and held (without
    /// traces, which are not held).
    fn store_held(&mut self) -> Result<(), LinkError> {
        let mut results = Vec::new();
        for (id, bytes) in self.tracker.held.clone() {
            let held = Telegram::parse(&bytes).and_then(|t| Ok((read(&t)?, t)));
            match held {
                Ok((Body::Fields(fields), t)) => results.push((fields, Vec::new(), t)),
                _ => {
                    tracing_warn(&self.cfg.name, &format!("held tightening {id} cannot be read again; dropped"));
                    self.tracker.held.remove(&id);
                }
            }
        }
        if results.is_empty() && self.tracker.held.is_empty() {
            return Ok(());
        }
        self.store_results(results, true)
    }

    /// Turn results into events and append them with the checkpoint they make true.
    fn store_results(&mut self, results: Vec<Received>, recovered: bool) -> Result<(), LinkError> {
        let source = self.cfg.source();
        let ctx = ResultContext {
            source: &source,
            station: &self.cfg.station,
            joints: &self.cfg.joints,
            tool: self.cfg.tool.as_deref(),
            utc_offset_minutes: self.cfg.utc_offset_minutes,
        };
        let mut next = self.tracker.clone();
        let mut events = Vec::new();
        let mut telegrams = Vec::new();
        let mut refused = Vec::new();
        for (fields, traces, telegram) in &results {
            let Some(id) = tightening_id(fields) else { continue };
            next.mark(id);
            next.held.remove(&id);
            if next.last.as_ref().is_none_or(|(last, _)| id >= *last)
                && let Some(at) = fields.text("timestamp").filter(|t| !t.contains(char::is_whitespace))
            {
                next.last = Some((id, at));
            }
            match to_event(fields, traces, &ctx, chrono::Utc::now()) {
                Ok(e) => {
                    events.push(e);
                    telegrams.push(telegram);
                }
                Err(err) => refused.push((telegram, format!("tightening {id}: {err}"))),
            }
        }
        let n = events.len() as u64;
        let outcomes = self.store.append(events, next.checkpoint()).map_err(LinkError::Store)?;
        for (o, telegram) in outcomes.into_iter().zip(telegrams) {
            match o {
                Stored::Stored => LinkStats::add(&self.stats.results_stored, 1),
                Stored::Duplicate => LinkStats::add(&self.stats.duplicates, 1),
                Stored::Rejected(reason) => refused.push((telegram, format!("refused by the store: {reason}"))),
            }
        }
        // Kept before the tracker moves on and before any acknowledgement.
        for (telegram, reason) in refused {
            LinkStats::add(&self.stats.rejected, 1);
            tracing_warn(&self.cfg.name, &format!("result rejected: {reason}"));
            self.reject(telegram, vec![reason])?;
        }
        if recovered {
            LinkStats::add(&self.stats.recovered, n);
        }
        *self.tracker = next;
        Ok(())
    }

    /// Upload results the link missed: from the checkpoint to the controller's latest, at most
    /// the `recover_max` newest. The very first connection (no checkpoint) counts from 0: the
    /// controller's last `recover_max` results are uploaded, so nothing made before the link
    /// first subscribed is missed; an empty controller starts the count at 0 as well.
    fn recover(&mut self) -> Result<(), LinkError> {
        let (rev, latest) = match self.old_result(0, self.cfg.result_revision)? {
            Some((rev, fields)) => (rev, fields),
            None => {
                if self.tracker.high.is_none() {
                    self.tracker.high = Some(0);
                }
                return Ok(());
            }
        };
        self.result_rev = rev;
        let Some(newest) = tightening_id(&latest.0) else { return Ok(()) };
        let first = self.tracker.high.is_none();
        let high = self.tracker.high.unwrap_or(0);
        // The controller's counter restarted: ids below the checkpoint, or the newest result
        // stored is no longer the controller's result of that id. Everything it now has is
        // uploaded (transaction ids carry the time stamp, so nothing old collides).
        let restarted = if newest < high {
            Some(format!("its latest tightening {newest} is below the checkpoint {high}"))
        } else {
            self.restarted_since_last(newest)?
        };
        let high = match restarted {
            Some(why) => {
                LinkStats::add(&self.stats.id_restarts, 1);
                tracing_warn(
                    &self.cfg.name,
                    &format!("the controller's tightening ids restarted ({why}); uploading its results from id 1"),
                );
                self.tracker.restart_at(0);
                0
            }
            None => high,
        };
        let start = (high + 1).max(newest.saturating_sub(self.cfg.recover_max));
        if start > high + 1 && newest > high {
            let mut next = self.tracker.clone();
            next.restart_at(start - 1);
            if first {
                // On the first connection the older results predate the link: not lost, just
                // not asked for.
                *self.tracker = next;
            } else {
                let missing = Missing { first: high + 1, last: start - 1, count: start - high - 1 };
                let why = format!("older than the last {} the link asks for", self.cfg.recover_max);
                self.lost(next, &[missing], &why)?;
            }
        }
        let ids: Vec<u64> = (start..newest).collect();
        self.upload(&ids)?;
        self.store_results(vec![latest], true)
    }

    /// Whether the controller's ids restarted although its newest id is not below the
    /// checkpoint: its result with the id stored last carries another time stamp, or it no
    /// longer has a result it should still have. Why, if so. Needs old-result upload; without
    /// it only ids going back are seen.
    fn restarted_since_last(&mut self, newest: u64) -> Result<Option<String>, LinkError> {
        let Some((id, at)) = self.tracker.last.clone() else { return Ok(None) };
        if newest < id || newest - id > self.cfg.recover_max {
            return Ok(None);
        }
        Ok(match self.old_result(id, self.result_rev)? {
            Some((_, (fields, _, _))) => match fields.text("timestamp") {
                Some(now) if now != at => Some(format!("tightening {id} was made at {at}, the controller's is {now}")),
                _ => None,
            },
            None if self.no_upload.is_none() => Some(format!("the controller no longer has tightening {id}")),
            None => None,
        })
    }

    /// On a quiet link: if the controller's latest result is newer than anything stored, store it
    /// and upload what lies between.
    fn catch_up(&mut self) -> Result<(), LinkError> {
        if self.last_result.elapsed() < Duration::from_millis(self.cfg.keep_alive_ms) {
            return Ok(());
        }
        let Some((_, latest)) = self.old_result(0, self.result_rev)? else { return Ok(()) };
        let Some(newest) = tightening_id(&latest.0) else { return Ok(()) };
        if self.tracker.top().is_some_and(|top| newest <= top) {
            return Ok(());
        }
        tracing_warn(
            &self.cfg.name,
            &format!("tightening {newest} was never sent live; uploading it and any before it"),
        );
        self.store_results(vec![latest], true)?;
        let gaps = self.gaps()?;
        self.upload(&gaps)
    }

    /// Ask for each id (MID 0064) and store the replies in batches.
    fn upload(&mut self, ids: &[u64]) -> Result<(), LinkError> {
        let (mut batch, mut gone) = (Vec::new(), Vec::new());
        let mut rest = ids;
        while let Some((&id, after)) = rest.split_first() {
            if let Some(code) = self.no_upload {
                if !batch.is_empty() {
                    self.store_results(std::mem::take(&mut batch), true)?;
                }
                let why = format!("the controller refused old-result upload (error {code})");
                self.lost(self.tracker.clone(), &Missing::runs(rest), &why)?;
                break;
            }
            match self.old_result(id, self.result_rev)? {
                Some((_, received)) => batch.push(received),
                // Refused just now: the branch above takes this id with the rest.
                None if self.no_upload.is_some() => continue,
                None => gone.push(id),
            }
            rest = after;
            if batch.len() >= 100 {
                self.store_results(std::mem::take(&mut batch), true)?;
            }
        }
        if !batch.is_empty() {
            self.store_results(batch, true)?;
        }
        if !gone.is_empty() {
            self.lost(self.tracker.clone(), &Missing::runs(&gone), "the controller no longer has them")?;
        }
        Ok(())
    }

    /// The ids missing below the newest stored ([`Tracker::gaps`]), at most `recover_max`; older
    /// ones are given up as lost.
    fn gaps(&mut self) -> Result<Vec<u64>, LinkError> {
        let mut next = self.tracker.clone();
        let (gaps, given_up) = next.gaps(self.cfg.recover_max);
        match given_up {
            Some(missing) => {
                let why =
                    format!("more than {} ids behind the newest: older ones are not asked for", self.cfg.recover_max);
                self.lost(next, &[missing], &why)?;
            }
            None => *self.tracker = next,
        }
        Ok(gaps)
    }

    /// The link takes results again: the end of an outage that was logged is logged, in one
    /// append with the checkpoint that forgets it.
    fn back_up(&mut self) -> Result<(), LinkError> {
        self.tracker.down_since = None;
        let Some(since) = self.tracker.outage else { return Ok(()) };
        let mut next = self.tracker.clone();
        next.outage = None;
        let now = chrono::Utc::now();
        let event = outage_event(self.cfg, since, Some(now), "")?;
        self.store.append(vec![event], next.checkpoint()).map_err(LinkError::Store)?;
        tracing::info!(link = %self.cfg.name, station = %self.cfg.station, "controller link back after {} s", (now - since).num_seconds());
        *self.tracker = next;
        Ok(())
    }

    /// Tightenings the link will not have: counted, said, and logged as a `source_gap` event
    /// (which the sequence agent turns into a finding about the station) in one append with the
    /// checkpoint that moves past them, so each gap is logged exactly once.
    /// `next` is the tracker to commit with them (the mark may already be past them); the mark
    /// moves only once the gap is durable, so a failed append leaves both for the next connection,
    /// as a failed result append does.
    fn lost(&mut self, mut next: Tracker, missing: &[Missing], why: &str) -> Result<(), LinkError> {
        // Ids repeat after a controller restart: the newest stored result's time tells them apart.
        let epoch = next.last.as_ref().map(|(_, at)| at.clone()).unwrap_or_default();
        let mut events = Vec::new();
        for m in missing {
            next.mark_range(m.first, m.last);
            LinkStats::add(&self.stats.unrecoverable, m.count);
            tracing_warn(
                &self.cfg.name,
                &format!("{} result(s), tightening {} to {}, cannot be had: {why}", m.count, m.first, m.last),
            );
            let data = serde_json::json!({"station": self.cfg.station, "first_id": m.first, "last_id": m.last,
                                          "count": m.count, "reason": why});
            events.push(link_event(self.cfg, format!("gap:{}-{}@{epoch}", m.first, m.last), "source_gap", data)?);
        }
        self.store.append(events, next.checkpoint()).map_err(LinkError::Store)?;
        *self.tracker = next;
        Ok(())
    }

    /// MID 0064 for `id` (0 = the latest) at `rev` or lower; the reply's revision and fields,
    /// or `None` when the controller has no such result.
    fn old_result(&mut self, id: u64, mut rev: u16) -> Result<Option<(u16, Received)>, LinkError> {
        if self.no_upload.is_some() {
            return Ok(None);
        }
        loop {
            let mut data = vec![("tightening_id", Value::Int(id as i64))];
            if rev >= 10 {
                data.push(("offline_result", Value::Int(0)));
            }
            let reply = self.request(build(64, rev, &data)?, &[65])?;
            match refusal(&reply) {
                None if reply.header.mid == 65 => {
                    let fields = match read(&reply) {
                        Ok(Body::Fields(f)) => f,
                        Ok(_) => return Ok(None),
                        Err(err) => {
                            LinkStats::add(&self.stats.rejected, 1);
                            tracing_warn(&self.cfg.name, &format!("MID 0065 for tightening {id} rejected: {err}"));
                            self.reject(&reply, vec![err.to_string()])?;
                            return Ok(None);
                        }
                    };
                    if id != 0 && tightening_id(&fields) != Some(id) {
                        tracing_warn(
                            &self.cfg.name,
                            &format!("asked for tightening {id}, the controller sent {:?}", tightening_id(&fields)),
                        );
                        return Ok(None);
                    }
                    return Ok(Some((rev, (fields, Vec::new(), reply))));
                }
                None => return Ok(None),
                Some(97) | Some(76) if rev > 1 => rev -= 1,
                Some(15) => return Ok(None),
                Some(code) => {
                    // Upload unsupported on this controller: go on without it, and say so once.
                    self.say_once(
                        format!("upload {code}"),
                        &format!(
                            "old result upload refused: {}; results the link misses cannot be recovered and \
                             are logged as a gap",
                            refused(64, code)
                        ),
                    );
                    self.no_upload = Some(code);
                    return Ok(None);
                }
            }
        }
    }
}

/// The error code of a MID 0004 reply, `None` for anything else.
fn refusal(t: &Telegram) -> Option<i64> {
    if t.header.mid != 4 {
        return None;
    }
    read(t).ok().and_then(|b| b.fields().int("error_code")).or(Some(-1))
}

/// The reason a MID 9998 gives.
fn link_error_name(code: i64) -> &'static str {
    match code {
        1 => "invalid length",
        2 => "invalid revision",
        3 => "invalid sequence number",
        4 => "inconsistency of message number",
        _ => "unknown link error",
    }
}

fn error_name(code: i64) -> &'static str {
    u16::try_from(code).ok().and_then(layouts::error_name).unwrap_or("unknown error code")
}

fn refused(mid: u16, code: i64) -> LinkError {
    LinkError::Refused { mid, code, name: error_name(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_waits_for_gaps() {
        let mut t = Tracker::from_checkpoint(Some("10"));
        t.mark(11);
        assert_eq!(t.checkpoint(), "11");
        t.mark(14);
        assert_eq!(t.checkpoint(), "11");
        assert_eq!(t.gaps(100), (vec![12, 13], None));
        t.mark(13);
        t.mark(12);
        assert_eq!(t.checkpoint(), "14");
        assert!(t.gaps(100).0.is_empty());
        t.mark(9);
        assert_eq!(t.checkpoint(), "14");
    }

    #[test]
    fn held_results_ride_in_the_checkpoint_until_stored() {
        let mut t = Tracker::from_checkpoint(Some("41"));
        assert!(t.held().is_empty());
        t.held.insert(43, b"00230061007         x".to_vec());
        t.mark(42);
        let text = t.checkpoint();
        assert_eq!(text.lines().next(), Some("42"), "the first line stays the high mark");
        let back = Tracker::from_checkpoint(Some(&text));
        assert_eq!(back.high, Some(42));
        assert_eq!(back.held().get(&43).map(Vec::as_slice), Some(&b"00230061007         x"[..]));
        // Lines that do not parse are ignored, not fatal.
        let odd = Tracker::from_checkpoint(Some("42\nheld x zz\nheld 7\nother"));
        assert_eq!(odd.high, Some(42));
        assert!(odd.held().is_empty());
        assert_eq!(LinkAck::default(), LinkAck::Auto);
    }

    #[test]
    fn one_wild_id_asks_for_a_bounded_upload() {
        let mut t = Tracker::from_checkpoint(Some("10"));
        t.mark(4_294_967_295);
        let (gaps, given_up) = t.gaps(1000);
        assert_eq!(gaps.len(), 1000);
        assert_eq!(given_up, Some(Missing { first: 11, last: 4_294_967_295 - 1001, count: 4_294_967_295 - 11 - 1000 }));
        assert_eq!(gaps[0], 4_294_967_295 - 1000);
        for id in gaps {
            t.mark(id);
        }
        assert_eq!(t.checkpoint(), "4294967295");
    }
}
