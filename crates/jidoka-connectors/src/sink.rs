//! Sinks carry approved actions out of Jidoka. The runtime's outbox calls [`Sink::deliver`]
//! for each approved action, oldest first, and marks it delivered only on success; a
//! [`SinkError::Transient`] is retried later, a [`SinkError::Permanent`] goes to the dead
//! letter state with its reason.

use crate::JsonlSinkConfig;
use jidoka_model::{Action, ActionKind};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (peer down, timeout, 5xx).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed as it is (rejected by the peer, 4xx, bad payload).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// What the sink reports back on success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    /// The peer's reference (e.g. the MES Nonconformance number), if any.
    pub reference: Option<String>,
    /// True when the peer already had this idempotency key.
    pub already_delivered: bool,
}

pub trait Sink: Send + std::fmt::Debug {
    fn name(&self) -> &str;
    fn accepts(&self, kind: ActionKind) -> bool;
    /// Deliver one action. Must be idempotent on `action.idempotency_key`.
    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError>;
}

/// Appends each action as one JSON line and fsyncs; remembers idempotency keys already in the
/// file so a retry after a crash does not write the action twice.
#[derive(Debug)]
pub struct JsonlSink {
    config: JsonlSinkConfig,
    file: File,
    seen: HashSet<String>,
}

impl JsonlSink {
    pub fn open(config: JsonlSinkConfig) -> Result<Self, SinkError> {
        if let Some(dir) = config.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| SinkError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut seen = HashSet::new();
        if let Ok(existing) = File::open(&config.path) {
            for line in BufReader::new(existing).lines() {
                let Ok(line) = line else { continue };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(key) = v.get("idempotency_key").and_then(|k| k.as_str())
                {
                    seen.insert(key.to_string());
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| SinkError::Permanent(format!("cannot open {}: {e}", config.path.display())))?;
        Ok(JsonlSink { config, file, seen })
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn accepts(&self, kind: ActionKind) -> bool {
        self.config.kinds.is_empty() || self.config.kinds.contains(&kind)
    }

    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError> {
        if self.seen.contains(&action.idempotency_key) {
            return Ok(Receipt { reference: None, already_delivered: true });
        }
        let mut line =
            serde_json::to_vec(action).map_err(|e| SinkError::Permanent(format!("cannot encode action: {e}")))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| SinkError::Transient(format!("write to {} failed: {e}", self.config.path.display())))?;
        self.seen.insert(action.idempotency_key.clone());
        Ok(Receipt::default())
    }
}
