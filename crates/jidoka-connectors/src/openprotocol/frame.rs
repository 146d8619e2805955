//! Open Protocol framing: the 20-byte header and the data that follows it.
//!
//! A telegram on the wire is `LLLLMMMMRRRNSSPPQQTU<data>` followed by a NUL byte:
//! length (4 digits, the telegram's length without the NUL), MID (4 digits), revision (3
//! digits or blank), no-ack flag (1), station id (2), spindle id (2), sequence number (2),
//! number of message parts (1) and message part number (1). Every header field but length
//! and MID may be blank; blank and zero are kept apart so that a parsed telegram serialises
//! to the same bytes.
//!
//! The data is kept as bytes: most MIDs carry ASCII, but trace curves (MID 0900) carry binary
//! samples after a NUL separator.

use std::fmt;

/// Bytes in a header.
pub const HEADER_LEN: usize = 20;
/// Longest telegram the 4-digit length field can describe.
pub const MAX_TELEGRAM_LEN: usize = 9999;

/// What is wrong with a telegram or one of its fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{field}: {reason}")]
pub struct OpError {
    /// `header.length`, `header.mid`, `data.torque`, ... (`$` for the whole telegram).
    pub field: String,
    pub reason: String,
}

impl OpError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// Length of the whole telegram (header and data, without the NUL terminator).
    pub length: usize,
    /// Message id, e.g. 61 for MID 0061.
    pub mid: u16,
    /// `None` when sent blank (which means revision 1); `Some(0)` is kept apart from blank.
    pub revision: Option<u16>,
    /// `Some(true)` asks the peer not to acknowledge at link level.
    pub no_ack: Option<bool>,
    pub station_id: Option<u8>,
    pub spindle_id: Option<u8>,
    /// Link-level sequence number (1-99), used with MIDs 9997/9998.
    pub sequence: Option<u8>,
    pub message_parts: Option<u8>,
    pub message_part: Option<u8>,
}

impl Header {
    /// A header for `mid` at `revision`, every optional field blank. The length is set when
    /// the telegram is serialised.
    pub fn new(mid: u16, revision: u16) -> Header {
        Header {
            length: HEADER_LEN,
            mid,
            revision: Some(revision),
            no_ack: None,
            station_id: None,
            spindle_id: None,
            sequence: None,
            message_parts: None,
            message_part: None,
        }
    }

    /// The revision the header asks for (blank and 0 both mean 1).
    pub fn effective_revision(&self) -> u16 {
        match self.revision {
            None | Some(0) => 1,
            Some(r) => r,
        }
    }
}

/// One framed message: header and raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telegram {
    pub header: Header,
    pub data: Vec<u8>,
}

impl Telegram {
    pub fn new(mid: u16, revision: u16, data: impl Into<Vec<u8>>) -> Telegram {
        Telegram { header: Header::new(mid, revision), data: data.into() }
    }

    /// Parse one telegram (without its NUL terminator). The length field must equal the
    /// number of bytes given.
    pub fn parse(bytes: &[u8]) -> Result<Telegram, OpError> {
        if bytes.len() < HEADER_LEN {
            return Err(OpError::new(
                "header",
                format!("a telegram needs at least {HEADER_LEN} bytes of header, found {}", bytes.len()),
            ));
        }
        let length =
            digits(&bytes[0..4], "header.length")?.ok_or_else(|| OpError::new("header.length", "is blank"))? as usize;
        if length != bytes.len() {
            return Err(OpError::new(
                "header.length",
                format!("says {length} bytes but the telegram has {}", bytes.len()),
            ));
        }
        let mid = digits(&bytes[4..8], "header.mid")?.ok_or_else(|| OpError::new("header.mid", "is blank"))?;
        let header = Header {
            length,
            mid: mid as u16,
            revision: digits(&bytes[8..11], "header.revision")?.map(|r| r as u16),
            no_ack: match bytes[11] {
                b' ' => None,
                b'0' => Some(false),
                b'1' => Some(true),
                other => {
                    return Err(OpError::new(
                        "header.no_ack_flag",
                        format!("must be blank, 0 or 1, found {}", show_byte(other)),
                    ));
                }
            },
            station_id: digits(&bytes[12..14], "header.station_id")?.map(|v| v as u8),
            spindle_id: digits(&bytes[14..16], "header.spindle_id")?.map(|v| v as u8),
            sequence: digits(&bytes[16..18], "header.sequence_number")?.map(|v| v as u8),
            message_parts: digits(&bytes[18..19], "header.message_parts")?.map(|v| v as u8),
            message_part: digits(&bytes[19..20], "header.message_part_number")?.map(|v| v as u8),
        };
        Ok(Telegram { header, data: bytes[HEADER_LEN..].to_vec() })
    }

    /// The telegram's bytes (without NUL), with the length field set from the data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = HEADER_LEN + self.data.len();
        let h = &self.header;
        let mut out = Vec::with_capacity(len + 1);
        out.extend_from_slice(format!("{len:04}{:04}", h.mid).as_bytes());
        push_opt(&mut out, h.revision.map(u32::from), 3);
        out.push(match h.no_ack {
            None => b' ',
            Some(false) => b'0',
            Some(true) => b'1',
        });
        push_opt(&mut out, h.station_id.map(u32::from), 2);
        push_opt(&mut out, h.spindle_id.map(u32::from), 2);
        push_opt(&mut out, h.sequence.map(u32::from), 2);
        push_opt(&mut out, h.message_parts.map(u32::from), 1);
        push_opt(&mut out, h.message_part.map(u32::from), 1);
        out.extend_from_slice(&self.data);
        out
    }

    /// The bytes to send: the telegram and its NUL terminator.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = self.to_bytes();
        out.push(0);
        out
    }

    /// The data as text, when it is printable ASCII (binary MIDs are not).
    pub fn data_text(&self) -> Result<&str, OpError> {
        ascii(&self.data, "data")
    }
}

impl fmt::Display for Telegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MID {:04} rev {}", self.header.mid, self.header.effective_revision())
    }
}

fn push_opt(out: &mut Vec<u8>, value: Option<u32>, width: usize) {
    match value {
        Some(v) => out.extend_from_slice(format!("{v:0width$}").as_bytes()),
        None => out.extend(std::iter::repeat_n(b' ', width)),
    }
}

/// A fixed-width numeric header field: all digits, or all blank (`None`).
fn digits(bytes: &[u8], field: &str) -> Result<Option<u32>, OpError> {
    if bytes.iter().all(|&b| b == b' ') {
        return Ok(None);
    }
    if let Some(&bad) = bytes.iter().find(|b| !b.is_ascii_digit()) {
        return Err(OpError::new(field, format!("must be {} digits or blank, found {}", bytes.len(), show_byte(bad))));
    }
    Ok(Some(bytes.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))))
}

/// Printable ASCII (and nothing else) as text.
pub fn ascii<'a>(bytes: &'a [u8], field: &str) -> Result<&'a str, OpError> {
    if let Some(pos) = bytes.iter().position(|b| !(0x20..0x7f).contains(b)) {
        return Err(OpError::new(field, format!("byte {pos} is {}, not printable ASCII", show_byte(bytes[pos]))));
    }
    // Printable ASCII is valid UTF-8.
    std::str::from_utf8(bytes).map_err(|_| OpError::new(field, "not ASCII"))
}

pub(crate) fn show_byte(b: u8) -> String {
    if (0x20..0x7f).contains(&b) { format!("'{}'", b as char) } else { format!("0x{b:02x}") }
}

/// Reads NUL-terminated telegrams from a byte stream, framing by the length field (binary
/// data may contain NUL) and resynchronising after garbage.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

/// One item taken off the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    Telegram(Telegram),
    /// Bytes that could not be framed or parsed, with the reason; the stream goes on after them.
    Garbage {
        bytes: usize,
        error: OpError,
    },
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Add bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet make a telegram.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete telegram (or garbage report), if the buffer holds one.
    pub fn take(&mut self) -> Option<Framed> {
        // Separators between telegrams: NULs and line ends some controllers add.
        let skip = self.buf.iter().take_while(|b| matches!(b, 0 | b'\n' | b'\r')).count();
        self.buf.drain(..skip);
        if self.buf.len() < 4 {
            return None;
        }
        let length = match digits(&self.buf[0..4], "header.length") {
            Ok(Some(n)) if n as usize >= HEADER_LEN => n as usize,
            Ok(n) => {
                let reason = match n {
                    None => "is blank".to_string(),
                    Some(n) => format!("says {n}, less than the {HEADER_LEN}-byte header"),
                };
                return Some(self.resync(OpError::new("header.length", reason)));
            }
            Err(e) => return Some(self.resync(e)),
        };
        // The telegram and its NUL.
        if self.buf.len() < length + 1 {
            return None;
        }
        if self.buf[length] != 0 {
            let found = show_byte(self.buf[length]);
            return Some(self.resync(OpError::new(
                "header.length",
                format!("says {length} bytes but byte {length} is {found}, not the NUL terminator"),
            )));
        }
        let bytes: Vec<u8> = self.buf.drain(..=length).collect();
        Some(match Telegram::parse(&bytes[..length]) {
            Ok(t) => Framed::Telegram(t),
            Err(error) => Framed::Garbage { bytes: length + 1, error },
        })
    }

    /// Drop the broken bytes: up to the next NUL (the end of the broken telegram) or the next
    /// place a header could start (8 digits), whichever comes first, so garbage without a NUL
    /// of its own does not take the next good telegram with it.
    fn resync(&mut self, error: OpError) -> Framed {
        let nul = self.buf.iter().position(|&b| b == 0).map(|p| p + 1);
        let header = (1..self.buf.len()).find(|&p| {
            let rest = &self.buf[p..];
            rest.iter().take(8).all(u8::is_ascii_digit)
        });
        let cut = match (nul, header) {
            (Some(n), Some(h)) => n.min(h),
            (Some(n), None) => n,
            (None, Some(h)) => h,
            (None, None) => self.buf.len(),
        };
        self.buf.drain(..cut);
        Framed::Garbage { bytes: cut, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_blank_and_zero_apart() {
        for text in ["00200001            ", "00200001000         ", "00209999001 0102031 "] {
            let t = Telegram::parse(text.as_bytes()).unwrap();
            assert_eq!(t.to_bytes(), text.as_bytes());
        }
        let t = Telegram::parse(b"00200001000         ").unwrap();
        assert_eq!(t.header.revision, Some(0));
        assert_eq!(t.header.effective_revision(), 1);
    }

    #[test]
    fn bad_headers_name_the_field() {
        let e = Telegram::parse(b"0021000100          ").unwrap_err();
        assert_eq!(e.field, "header.length");
        let e = Telegram::parse(b"002000x1            ").unwrap_err();
        assert_eq!(e.field, "header.mid");
        let e = Telegram::parse(b"00200001001x        ").unwrap_err();
        assert_eq!(e.field, "header.no_ack_flag");
        let e = Telegram::parse(b"0012").unwrap_err();
        assert_eq!(e.field, "header");
    }

    #[test]
    fn framer_splits_on_length_and_survives_garbage() {
        let mut f = Framer::new();
        let a = Telegram::new(9999, 1, Vec::new()).to_wire();
        let mut binary = Telegram::new(900, 1, b"ab\0cd".to_vec()).to_wire();
        f.push(&a[..7]);
        assert_eq!(f.take(), None);
        f.push(&a[7..]);
        f.push(b"zz\x00");
        f.push(&binary[..3]);
        assert!(matches!(f.take(), Some(Framed::Telegram(t)) if t.header.mid == 9999));
        assert!(matches!(f.take(), Some(Framed::Garbage { error, .. }) if error.field == "header.length"));
        assert_eq!(f.take(), None);
        f.push(&binary.split_off(3));
        assert!(matches!(f.take(), Some(Framed::Telegram(t)) if t.data == b"ab\0cd"));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn garbage_without_a_nul_does_not_take_the_next_telegram() {
        let mut f = Framer::new();
        f.push(b"xx junk\x01\x02");
        f.push(&Telegram::new(65, 1, b"0000000042".to_vec()).to_wire());
        let mut got = Vec::new();
        while let Some(item) = f.take() {
            got.push(item);
        }
        assert!(matches!(got.last(), Some(Framed::Telegram(t)) if t.header.mid == 65), "{got:?}");
    }
}
