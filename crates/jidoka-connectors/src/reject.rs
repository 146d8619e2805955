//! What a source received and could not store, kept durably with why before the peer is told
//! it arrived: an MQTT message that made no event, an Open Protocol result that would not
//! decode. One JSON line per item in `<data-dir>/rejected/<source>.jsonl`, fsynced.

use jidoka_model::Timestamp;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An item that made no event (or not all of its events), kept with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedMessage {
    pub source: String,
    /// Where it came from: the MQTT topic, or the Open Protocol MID and revision.
    pub origin: String,
    #[serde(with = "jidoka_model::event::rfc3339")]
    pub received_at: Timestamp,
    /// Each reason names the field (`payload[2].data.vin: ...`).
    pub reasons: Vec<String>,
    /// The payload as text when it is UTF-8, else as hex.
    pub payload: String,
    pub payload_encoding: &'static str,
    /// Events of the same item that were stored.
    pub events_stored: usize,
}

impl RejectedMessage {
    pub fn new(
        source: String,
        origin: String,
        received_at: Timestamp,
        reasons: Vec<String>,
        payload: &[u8],
        events_stored: usize,
    ) -> RejectedMessage {
        let (payload, payload_encoding) = match std::str::from_utf8(payload) {
            Ok(s) => (s.to_string(), "utf8"),
            Err(_) => (hex::encode(payload), "hex"),
        };
        RejectedMessage { source, origin, received_at, reasons, payload, payload_encoding, events_stored }
    }
}

/// Where rejected items are kept before they are acknowledged.
pub trait RejectLog {
    fn keep(&mut self, message: &RejectedMessage) -> Result<(), String>;
}

/// Rejected items as JSON Lines, fsynced before the peer hears of them.
#[derive(Debug)]
pub struct RejectFile {
    path: PathBuf,
    file: File,
}

impl RejectFile {
    pub fn open(path: &Path) -> Result<RejectFile, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(RejectFile { path: path.to_path_buf(), file })
    }

    /// `<data-dir>/rejected/<kind>-<name>.jsonl`, e.g. `mqtt-line.jsonl` or `op-st010.jsonl`.
    pub fn path_for(data_dir: &Path, kind: &str, name: &str) -> PathBuf {
        data_dir.join("rejected").join(format!("{kind}-{name}.jsonl"))
    }
}

impl RejectLog for RejectFile {
    fn keep(&mut self, message: &RejectedMessage) -> Result<(), String> {
        let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Rejected items kept in memory, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct RejectMemory(pub Vec<RejectedMessage>);

impl RejectLog for RejectMemory {
    fn keep(&mut self, message: &RejectedMessage) -> Result<(), String> {
        self.0.push(message.clone());
        Ok(())
    }
}
