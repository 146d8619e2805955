//! Jidoka's connectors: sources that bring events in and sinks that carry approved actions out.
//!
//! - [`bosch`], [`curves`]: exported tightening curves (Bosch Rexroth channel JSON, CSV, event
//!   files) for offline review and evaluation.
//! - [`jsonl`]: JSON Lines reading for `jidoka import` and the `file` source, resumable from a
//!   byte-offset checkpoint, one error per bad line, bounded memory per line.
//! - [`odata`]: an OData v4 client and the MES write-back sink (Opcenter-style commands or
//!   plain entity sets), reading back by idempotency key before every write.
//! - [`mqtt`]: MQTT sources (a plant's own JSON topics mapped to events by configuration, and
//!   Sparkplug B with birth certificates, aliases and sequence checks), acknowledged only once
//!   stored, and the MQTT sink that publishes actions and station state.
//! - [`openprotocol`]: Atlas Copco Open Protocol for tightening controllers: codec, field
//!   layouts by MID and revision, trace curves, and the client link that acknowledges a
//!   result only once it is stored.
//! - [`sink`]: the [`sink::Sink`] trait (deliver one approved action; transient vs permanent
//!   errors) and the `jsonl` sink.
//! - [`SourceConfig`] / [`SinkConfig`]: the closed set of connector configs, `type`-tagged, each
//!   validated with every error reported.
//!
//! Invariant: connectors never write to the store themselves; they hand events to the runtime,
//! which acknowledges them only once durable.

pub mod bosch;
pub mod curves;
pub mod image;
pub mod jsonl;
pub mod mes_master;
pub mod mqtt;
pub mod odata;
pub mod openprotocol;
pub mod reject;
pub mod sink;

use jidoka_model::{ActionKind, Event};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the store did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Stored,
    Duplicate,
    Rejected(String),
}

/// Where a source's events go: a durable append of events with the source's checkpoint (empty
/// for none), all or nothing. A source acknowledges to its peer only after this returned `Ok`.
pub trait ResultStore {
    fn append(&mut self, events: Vec<Event>, checkpoint: String) -> Result<Vec<Stored>, String>;
}

/// Wait before reconnect number `failures` (from 1): 0.25 s doubling to 30 s, plus up to a
/// quarter more of jitter so that links dropped together do not return together.
pub fn reconnect_delay(failures: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << failures.saturating_sub(1).min(7)).min(30_000);
    let jitter = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0),
    ) % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

/// Sleep for `d`, waking early when `stop` is set.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

/// A source of events. Registration is explicit: a variant here and a match arm in the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Events from a JSON Lines file; with `follow`, new lines are picked up as they are written.
    File(FileSourceConfig),
    /// Released work orders polled from an MES over OData v4 by a modified-timestamp watermark.
    Odata(Box<odata::OdataSourceConfig>),
    /// Tightening results and curves from a controller over Open Protocol (TCP).
    OpenProtocol(Box<openprotocol::client::OpenProtocolSourceConfig>),
    /// Messages from an MQTT broker: JSON topics mapped to events, Sparkplug B metrics.
    Mqtt(Box<mqtt::MqttSourceConfig>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Name under which the checkpoint is kept (unique among sources).
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub follow: bool,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_ms() -> u64 {
    500
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::File(c) => &c.name,
            SourceConfig::Odata(c) => &c.name,
            SourceConfig::OpenProtocol(c) => &c.name,
            SourceConfig::Mqtt(c) => &c.name,
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        match self {
            SourceConfig::File(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                if c.path.as_os_str().is_empty() {
                    errors.push((format!("{path}.path"), "must not be empty".into()));
                }
                if !(10..=60_000).contains(&c.poll_interval_ms) {
                    errors.push((format!("{path}.poll_interval_ms"), "must be between 10 and 60000".into()));
                }
            }
            SourceConfig::Odata(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                c.validate(path, errors);
            }
            SourceConfig::OpenProtocol(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                c.validate(path, errors);
            }
            SourceConfig::Mqtt(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                c.validate(path, errors);
            }
        }
    }
}

/// A destination for approved actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// Append each action as one JSON line (fsynced), once per idempotency key.
    Jsonl(JsonlSinkConfig),
    /// Write actions back to an MES over OData v4 (Opcenter-style commands or plain entities).
    Odata(Box<odata::OdataSinkConfig>),
    /// Publish actions (and, optionally, findings and station state) to an MQTT broker.
    Mqtt(Box<mqtt::MqttSinkConfig>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    pub name: String,
    pub path: PathBuf,
    /// Action kinds this sink takes; empty = all.
    #[serde(default)]
    pub kinds: Vec<ActionKind>,
}

impl SinkConfig {
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::Jsonl(c) => &c.name,
            SinkConfig::Odata(c) => &c.name,
            SinkConfig::Mqtt(c) => &c.name,
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        match self {
            SinkConfig::Jsonl(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                if c.path.as_os_str().is_empty() {
                    errors.push((format!("{path}.path"), "must not be empty".into()));
                }
            }
            SinkConfig::Odata(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                c.validate(path, errors);
            }
            SinkConfig::Mqtt(c) => {
                check_name(&format!("{path}.name"), &c.name, errors);
                c.validate(path, errors);
            }
        }
    }

    /// Build the runtime sink.
    pub fn build(&self) -> Result<Box<dyn sink::Sink>, sink::SinkError> {
        match self {
            SinkConfig::Jsonl(c) => Ok(Box::new(sink::JsonlSink::open(c.clone())?)),
            SinkConfig::Odata(c) => Ok(Box::new(odata::OdataSink::new(c)?)),
            SinkConfig::Mqtt(c) => Ok(Box::new(mqtt::MqttSink::new(c)?)),
        }
    }
}

fn check_name(path: &str, name: &str, errors: &mut Vec<(String, String)>) {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        errors.push((path.to_string(), "must be 1-64 characters of letters, digits, - _ . :".into()));
    }
}
