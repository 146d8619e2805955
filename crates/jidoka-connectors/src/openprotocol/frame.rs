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
        // The length first: a wrong one is what most often breaks a telegram.
        header_prefix(&bytes[..4])?;
        let length = number(&bytes[0..4]).unwrap_or_default();
        if length != bytes.len() {
            return Err(OpError::new(
                "header.length",
                format!("says {length} bytes but the telegram has {}", bytes.len()),
            ));
        }
        header_prefix(bytes)?;
        let field = |r: std::ops::Range<usize>| number(&bytes[r]);
        let header = Header {
            length,
            mid: field(4..8).unwrap_or_default() as u16,
            revision: field(8..11).map(|r| r as u16),
            no_ack: match bytes[11] {
                b'0' => Some(false),
                b'1' => Some(true),
                _ => None,
            },
            station_id: field(12..14).map(|v| v as u8),
            spindle_id: field(14..16).map(|v| v as u8),
            sequence: field(16..18).map(|v| v as u8),
            message_parts: field(18..19).map(|v| v as u8),
            message_part: field(19..20).map(|v| v as u8),
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

/// ASCII digits as a number; `None` when a byte is not a digit (a blank field is `None`).
fn number(b: &[u8]) -> Option<usize> {
    b.iter().try_fold(0usize, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0')))
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

/// Reads NUL-terminated telegrams from a byte stream and resynchronises after garbage.
///
/// A telegram is framed by its length field, but the length is not trusted further than the
/// bytes bear it out:
/// - a header is accepted only where every field parses (digits or blank as the format allows,
///   a length from 20 to 9999, a MID that is not 0000), so a broken telegram's own digits are
///   not read as a new length;
/// - a telegram whose data cannot hold a NUL (every MID but the binary trace 0900) ends at its
///   first NUL: a NUL before the claimed length ends a truncated telegram at once, and a claimed
///   length of 9999 cannot hold back the telegrams behind a terminator that came at byte 231;
/// - after garbage, the stream resumes at the next NUL or the next place a header parses,
///   whichever comes first.
///
/// So garbage between telegrams loses at most the telegrams it overlaps.
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

/// MIDs whose data may contain NUL bytes (the binary samples of a trace).
pub fn may_hold_nul(mid: u16) -> bool {
    mid == 900
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
        if self.buf.is_empty() {
            return None;
        }
        if let Err(e) = header_prefix(&self.buf) {
            return Some(self.resync(e));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let (length, mid) = length_and_mid(&self.buf);
        if may_hold_nul(mid) {
            if let Err((end, error)) = trace_head(&self.buf, length) {
                return Some(self.drop_to(end, OpError::new("data", error)));
            }
            if self.buf.len() <= length {
                return None;
            }
            if self.buf[length] != 0 {
                return Some(self.resync(not_terminated(length, self.buf[length])));
            }
            return Some(self.cut(length));
        }
        let seen = &self.buf[HEADER_LEN..self.buf.len().min(length + 1)];
        let Some(end) = seen.iter().position(|&b| b == 0).map(|p| p + HEADER_LEN) else {
            if self.buf.len() > length {
                return Some(self.resync(not_terminated(length, self.buf[length])));
            }
            return None;
        };
        // A telegram that lost its terminator, run into the next one, can claim just the length
        // that ends at the next one's NUL: a known header inside that ends at this NUL too is
        // the real telegram (its length field matching by chance is a 1 in 10,000 event).
        let whole_inside = || {
            (1..end).find(|&p| {
                let b = &self.buf[p..];
                // The length field first: it must say exactly `end - p`, which rejects almost
                // every position at once.
                b.len() > 4 && number(&b[..4]) == Some(end - p) && known_header(b)
            })
        };
        let error = if end < length {
            format!("says {length} bytes but the telegram ends (NUL) after {end}: truncated")
        } else if let Some(p) = whole_inside() {
            format!("a whole telegram starts {p} bytes on and ends where this one does: truncated")
        } else if let Some(p) = (1..end).find(|&p| trace_separated_at(&self.buf[p..], end - p)) {
            // A trace's separator NUL can end a telegram that lost its own terminator: a trace
            // header inside whose head ends at this NUL with the sample count its length says.
            format!("a trace (MID 0900) starts {p} bytes on and ends this telegram: truncated")
        } else {
            return Some(self.cut(length));
        };
        Some(self.drop_to(end, OpError::new("header.length", error)))
    }

    /// Drop a broken telegram that ends at the NUL at `end`. It may have lost its own
    /// terminator and be followed, before this NUL, by another telegram (whose NUL this is, or
    /// a trace's separator): resume where a header could start.
    fn drop_to(&mut self, end: usize, error: OpError) -> Framed {
        let at = (1..end).find(|&p| known_header(&self.buf[p..])).unwrap_or(end + 1);
        self.buf.drain(..at);
        Framed::Garbage { bytes: at, error }
    }

    /// The telegram of `length` bytes at the front, and its NUL.
    fn cut(&mut self, length: usize) -> Framed {
        let bytes: Vec<u8> = self.buf.drain(..=length).collect();
        match Telegram::parse(&bytes[..length]) {
            Ok(t) => Framed::Telegram(t),
            Err(error) => Framed::Garbage { bytes: length + 1, error },
        }
    }

    /// Drop the broken bytes: up to the next NUL (the end of the broken telegram) or the next
    /// place a header parses, whichever comes first, so garbage without a NUL of its own does
    /// not take the next good telegram with it.
    fn resync(&mut self, error: OpError) -> Framed {
        let cut = (1..self.buf.len())
            .find(|&p| self.buf[p - 1] == 0 || could_start(&self.buf[p..]))
            .unwrap_or(self.buf.len());
        self.buf.drain(..cut);
        Framed::Garbage { bytes: cut, error }
    }
}

fn not_terminated(length: usize, found: u8) -> OpError {
    OpError::new(
        "header.length",
        format!("says {length} bytes but byte {length} is {}, not the NUL terminator", show_byte(found)),
    )
}

/// Length and MID of a whole header already checked by [`header_fault`].
fn length_and_mid(bytes: &[u8]) -> (usize, u16) {
    (number(&bytes[0..4]).unwrap_or_default(), number(&bytes[4..8]).unwrap_or_default() as u16)
}

/// Whether a header could begin at the front of `bytes`: the fields present parse (a header
/// still arriving), and a whole one is of a MID Jidoka knows or has its NUL where its length
/// says. Digit runs inside broken data are rarely either, so a resynchronisation does not walk
/// through them one false length at a time.
fn could_start(bytes: &[u8]) -> bool {
    if header_fault(bytes).is_some() {
        return false;
    }
    if bytes.len() < HEADER_LEN {
        return true;
    }
    let (length, mid) = length_and_mid(bytes);
    super::mid_name(mid) != super::UNKNOWN_MID || bytes.get(length) == Some(&0)
}

/// Whether a whole header of a MID Jidoka knows starts at the front of `bytes`.
fn known_header(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && header_fault(bytes).is_none()
        && super::mid_name(length_and_mid(bytes).1) != super::UNKNOWN_MID
}

/// A trace (MID 0900; the protocol has only revision 1 of it) is its printable head, a NUL, and
/// two bytes per sample, the count being the head's last five digits: so its length is known
/// once the NUL arrives. The length a trace whose separator NUL is at `nul` (from the start of
/// `bytes`, its header) must have, or why its head cannot be a trace's.
fn trace_length(bytes: &[u8], nul: usize) -> Result<usize, String> {
    let head = &bytes[HEADER_LEN.min(nul)..nul];
    if let Some(bad) = head.iter().position(|b| !(0x20..0x7f).contains(b)) {
        return Err(format!("the trace head's byte {bad} is {}, not printable ASCII", show_byte(head[bad])));
    }
    let samples = head.len().checked_sub(5).and_then(|i| number(&head[i..]));
    let samples = samples.ok_or("the trace head does not end with its 5-digit sample count")?;
    Ok(nul + 1 + 2 * samples)
}

/// A trace at the front of `buf` whose length field says `length`, checked as soon as its
/// separator has arrived rather than after that many bytes: `Err((position of the NUL,
/// reason))` when the head shows it broken.
fn trace_head(buf: &[u8], length: usize) -> Result<(), (usize, String)> {
    let seen = &buf[HEADER_LEN..buf.len().min(length + 1)];
    let Some(nul) = seen.iter().position(|&b| b == 0).map(|p| p + HEADER_LEN) else { return Ok(()) };
    match trace_length(buf, nul) {
        Ok(expected) if expected == length => Ok(()),
        Ok(expected) => {
            let samples = (expected - nul - 1) / 2;
            Err((
                nul,
                format!("header.length says {length} bytes but the head announces {samples} samples: {expected}"),
            ))
        }
        Err(reason) => Err((nul, reason)),
    }
}

/// Whether a trace (MID 0900) starts at the front of `bytes` whose separator NUL is at `nul`,
/// its length field saying what its head announces. Digits inside other data that happen to
/// read `0900` fail it without waiting for any byte.
fn trace_separated_at(bytes: &[u8], nul: usize) -> bool {
    bytes.len() > nul
        && nul >= HEADER_LEN
        && &bytes[4..8] == b"0900"
        && header_fault(bytes).is_none()
        && trace_length(bytes, nul).is_ok_and(|expected| expected == length_and_mid(bytes).0)
}

/// Check the header fields present at the front of `bytes` (up to 20 bytes; fewer while the
/// rest has not arrived): the first field that cannot be what the format says is named.
fn header_prefix(bytes: &[u8]) -> Result<(), OpError> {
    let Some(fault) = header_fault(bytes) else { return Ok(()) };
    let (field, start, end, blank_ok) = HEADER_FIELDS[fault.field];
    let reason = match fault.kind {
        FaultKind::NotDigit(bad) if field == "header.no_ack_flag" => {
            format!("must be blank, 0 or 1, found {}", show_byte(bad))
        }
        FaultKind::NotDigit(bad) => {
            let allowed = if blank_ok { "digits or blank" } else { "digits" };
            format!("must be {} {allowed}, found {}", end - start, show_byte(bad))
        }
        FaultKind::Short(n) => format!("says {n}, less than the {HEADER_LEN}-byte header"),
        FaultKind::MidZero => "MID 0000 does not exist".into(),
    };
    Err(OpError::new(field, reason))
}

/// The header fields: (name, start, end, may be blank).
const HEADER_FIELDS: [(&str, usize, usize, bool); 9] = [
    ("header.length", 0, 4, false),
    ("header.mid", 4, 8, false),
    ("header.revision", 8, 11, true),
    ("header.no_ack_flag", 11, 12, true),
    ("header.station_id", 12, 14, true),
    ("header.spindle_id", 14, 16, true),
    ("header.sequence_number", 16, 18, true),
    ("header.message_parts", 18, 19, true),
    ("header.message_part_number", 19, 20, true),
];

/// What is wrong with a header, without building a message: the resynchronisation asks this at
/// every byte of a broken telegram, and the framer of every good one at every byte of its data.
struct Fault {
    field: usize,
    kind: FaultKind,
}

enum FaultKind {
    NotDigit(u8),
    Short(usize),
    MidZero,
}

fn header_fault(bytes: &[u8]) -> Option<Fault> {
    let head = &bytes[..bytes.len().min(HEADER_LEN)];
    for (field, &(name, start, end, blank_ok)) in HEADER_FIELDS.iter().enumerate() {
        if head.len() <= start {
            break;
        }
        let part = &head[start..end.min(head.len())];
        if blank_ok && part.iter().all(|&b| b == b' ') {
            continue;
        }
        if let Some(&bad) = part.iter().find(|b| !b.is_ascii_digit()) {
            return Some(Fault { field, kind: FaultKind::NotDigit(bad) });
        }
        if name == "header.no_ack_flag" && part[0] > b'1' {
            return Some(Fault { field, kind: FaultKind::NotDigit(part[0]) });
        }
        if part.len() == end - start {
            let n = number(part).unwrap_or_default();
            if field == 0 && n < HEADER_LEN {
                return Some(Fault { field, kind: FaultKind::Short(n) });
            }
            if field == 1 && n == 0 {
                return Some(Fault { field, kind: FaultKind::MidZero });
            }
        }
    }
    None
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
        let mut binary = Telegram::new(900, 1, b"ab00001\0cd".to_vec()).to_wire();
        f.push(&a[..7]);
        assert_eq!(f.take(), None);
        f.push(&a[7..]);
        f.push(b"zz\x00");
        f.push(&binary[..3]);
        assert!(matches!(f.take(), Some(Framed::Telegram(t)) if t.header.mid == 9999));
        assert!(matches!(f.take(), Some(Framed::Garbage { error, .. }) if error.field == "header.length"));
        assert_eq!(f.take(), None);
        f.push(&binary.split_off(3));
        assert!(matches!(f.take(), Some(Framed::Telegram(t)) if t.data == b"ab00001\0cd"));
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

    /// The telegrams taken (as bytes) and the number of garbage reports.
    fn drain(f: &mut Framer) -> (Vec<Vec<u8>>, usize) {
        let (mut good, mut garbage) = (Vec::new(), 0);
        while let Some(item) = f.take() {
            match item {
                Framed::Telegram(t) => good.push(t.to_bytes()),
                Framed::Garbage { .. } => garbage += 1,
            }
        }
        (good, garbage)
    }

    fn telegram(id: u32) -> Telegram {
        Telegram::new(61, 1, format!("010001020103Controller name          04VIN{id:013}0500106{id:010}"))
    }

    fn result(id: u32) -> Vec<u8> {
        telegram(id).to_bytes()
    }

    /// Regression: after a truncated telegram the framer read the broken telegram's own header
    /// digits as new lengths (`2310`, `3100`, ...) and lost the five good results behind it.
    #[test]
    fn a_truncated_telegram_loses_only_itself() {
        let mut f = Framer::new();
        let mut wire = telegram(1).to_wire();
        wire.truncate(40);
        wire.push(0);
        for id in 2..=6 {
            wire.extend(telegram(id).to_wire());
        }
        f.push(&wire);
        let (good, garbage) = drain(&mut f);
        assert_eq!(good, (2..=6).map(result).collect::<Vec<_>>());
        assert_eq!(garbage, 1);
        assert_eq!(f.pending(), 0);
    }

    /// Regression: a length field of 9999 buffered 10,000 bytes although the terminator came
    /// at byte 231, holding back (and then losing) the telegrams behind it.
    #[test]
    fn a_claimed_length_does_not_hold_back_an_earlier_terminator() {
        let mut f = Framer::new();
        let mut wire = telegram(1).to_wire();
        wire[..4].copy_from_slice(b"9999");
        wire.extend(telegram(2).to_wire());
        f.push(&wire);
        let (good, garbage) = drain(&mut f);
        assert_eq!(good, vec![result(2)], "the second telegram is out without waiting for 9,999 bytes");
        assert_eq!(garbage, 1);
        // The same when the broken telegram lost its terminator too: the whole one before the
        // next NUL is kept.
        let mut wire = telegram(3).to_wire();
        wire.truncate(50);
        wire.extend(telegram(4).to_wire());
        f.push(&wire);
        assert_eq!(drain(&mut f).0, vec![result(4)]);
    }

    #[test]
    fn a_header_is_taken_only_where_it_parses() {
        // The digits of a broken header, read one byte on, are not a header.
        assert!(!could_start(b"2310061001         0100"));
        assert!(could_start(b"00570061001         01"));
        assert!(could_start(b"0057"), "a header still arriving");
        assert!(!could_start(b"00570000"), "MID 0000");
        assert!(!could_start(b"0012"), "shorter than a header");
        // A whole header of a MID Jidoka does not know counts only with its NUL where it says.
        assert!(!could_start(b"00240123001         abcdXX"));
        assert!(!could_start(b"21000123001         abcd"), "its NUL not come yet");
        assert!(could_start(b"00240123001         abcd\0"));
    }

    #[test]
    fn a_trace_keeps_nuls_in_its_data() {
        let mut f = Framer::new();
        let trace = Telegram::new(900, 1, b"head00002\0\0\x01\0\x02".to_vec());
        f.push(&trace.to_wire());
        f.push(&telegram(7).to_wire());
        assert_eq!(drain(&mut f), (vec![trace.to_bytes(), result(7)], 0));
    }

    mod garbage {
        use super::*;
        use proptest::prelude::*;

        const TEXT_MIDS: [u16; 8] = [2, 4, 5, 15, 52, 61, 65, 9999];

        fn telegram() -> impl Strategy<Value = Telegram> {
            prop_oneof![
                4 => (0..TEXT_MIDS.len(), 1u16..8, "[ -~]{0,120}")
                    .prop_map(|(m, rev, data)| Telegram::new(TEXT_MIDS[m], rev, data.into_bytes())),
                // Results are mostly digits, which can read as headers (`....0900...`).
                4 => (0..TEXT_MIDS.len(), 1u16..8, "[0-9 ]{0,300}")
                    .prop_map(|(m, rev, data)| Telegram::new(TEXT_MIDS[m], rev, data.into_bytes())),
                1 => proptest::collection::vec(any::<[u8; 2]>(), 0..30).prop_map(|samples| {
                    let mut data = format!("00000{:05}", samples.len()).into_bytes();
                    data.push(0);
                    data.extend(samples.concat());
                    Telegram::new(900, 1, data)
                }),
            ]
        }

        /// Garbage as a line and a controller make it: noise, digit runs, truncated telegrams
        /// with or without their NUL, telegrams whose length field lies.
        fn garbage() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..40),
                "[0-9 \\x00]{1,30}".prop_map(String::into_bytes),
                (telegram(), any::<prop::sample::Index>(), any::<bool>()).prop_filter_map(
                    "text telegrams",
                    |(t, cut, nul)| {
                        if may_hold_nul(t.header.mid) {
                            return None;
                        }
                        let mut w = t.to_bytes();
                        w.truncate(cut.index(w.len()).max(1));
                        if nul {
                            w.push(0);
                        }
                        Some(w)
                    }
                ),
                (telegram(), 20usize..10_000).prop_filter_map("text telegrams", |(t, claimed)| {
                    let mut w = t.to_wire();
                    if may_hold_nul(t.header.mid) || claimed == w.len() - 1 {
                        return None;
                    }
                    w[..4].copy_from_slice(format!("{claimed:04}").as_bytes());
                    Some(w)
                }),
            ]
        }

        proptest! {
            /// Garbage between telegrams loses none of them.
            #[test]
            fn garbage_between_telegrams_loses_none(
                items in proptest::collection::vec((telegram(), proptest::option::of(garbage())), 1..12),
                chunk in 1usize..64,
            ) {
                let mut wire = Vec::new();
                for (t, junk) in &items {
                    if let Some(junk) = junk {
                        wire.extend(junk);
                    }
                    wire.extend(t.to_wire());
                }
                let mut f = Framer::new();
                let mut good = Vec::new();
                for piece in wire.chunks(chunk) {
                    f.push(piece);
                    good.extend(drain(&mut f).0);
                }
                let sent: Vec<Vec<u8>> = items.iter().map(|(t, _)| t.to_bytes()).collect();
                prop_assert_eq!(good, sent);
            }
        }
    }
}
