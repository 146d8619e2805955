//! JSON Lines events: read a file from a byte offset in bounded chunks, with one error per
//! bad line (line number, offset, field, reason) and the rest of the file still read.

use jidoka_model::{Event, EventError, Timestamp};
use serde::Serialize;
use std::io::{BufRead, Read};

/// Longest accepted line; a longer one is reported and skipped without holding it in memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Where a reader stands in a file: byte offset of the next unread line and its line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Position {
    pub offset: u64,
    pub line: u64,
}

impl Position {
    /// Checkpoint text: `offset:line`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.offset, self.line)
    }

    pub fn decode(text: &str) -> Option<Position> {
        let (offset, line) = text.split_once(':')?;
        Some(Position { offset: offset.parse().ok()?, line: line.parse().ok()? })
    }
}

/// A line that could not be taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    pub line: u64,
    pub offset: u64,
    pub field: String,
    pub reason: String,
}

/// What one call to [`read_chunk`] got.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Events with their line numbers.
    pub events: Vec<(u64, Event)>,
    pub errors: Vec<LineError>,
    /// Where the next chunk starts; commit this with the events.
    pub end: Position,
    /// True when the reader reached the end of the data.
    pub at_end: bool,
}

/// Read up to `max_events` complete lines starting at `start`. A last line without a newline
/// is left for later unless `eof_is_final` (a finished file rather than one being written).
pub fn read_chunk(
    reader: &mut impl BufRead,
    start: Position,
    max_events: usize,
    eof_is_final: bool,
    received_at: Timestamp,
) -> std::io::Result<Chunk> {
    let mut chunk = Chunk { end: start, ..Chunk::default() };
    let mut buf = Vec::new();
    while chunk.events.len() + chunk.errors.len() < max_events.max(1) {
        buf.clear();
        let n = reader.by_ref().take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            chunk.at_end = true;
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        let line_no = chunk.end.line + 1;
        let line_offset = chunk.end.offset;
        if !complete && buf.len() > MAX_LINE_BYTES {
            let skipped = skip_line(reader)?;
            chunk.end = Position { offset: line_offset + n as u64 + skipped, line: line_no };
            chunk.errors.push(LineError {
                line: line_no,
                offset: line_offset,
                field: "$".into(),
                reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
            });
            continue;
        }
        if !complete && !eof_is_final {
            // A writer is mid-line; leave it for the next read.
            chunk.at_end = true;
            break;
        }
        chunk.end = Position { offset: line_offset + n as u64, line: line_no };
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(e) => {
                chunk.errors.push(LineError {
                    line: line_no,
                    offset: line_offset,
                    field: "$".into(),
                    reason: format!("not valid UTF-8 (byte {})", e.valid_up_to()),
                });
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match Event::parse_str(text, received_at) {
            Ok(ev) => chunk.events.push((line_no, ev)),
            Err(EventError { field, reason }) => {
                chunk.errors.push(LineError { line: line_no, offset: line_offset, field, reason })
            }
        }
    }
    Ok(chunk)
}

/// Discard the rest of an over-long line, a bounded piece at a time.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let (consumed, done) = {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                return Ok(skipped);
            }
            match available.iter().position(|b| *b == b'\n') {
                Some(idx) => (idx + 1, true),
                None => (available.len(), false),
            }
        };
        reader.consume(consumed);
        skipped += consumed as u64;
        if done {
            return Ok(skipped);
        }
    }
}
