//! Atlas Copco Open Protocol (tightening controllers, TCP 4545): framing, field layouts,
//! decoding to typed fields and JSON, and writing telegrams back to the same bytes.
//!
//! - [`frame`]: the 20-byte header, [`frame::Telegram`], and [`frame::Framer`], which cuts a
//!   TCP byte stream into telegrams by their length field and resynchronises after garbage.
//! - [`fields`]: the fixed-width field engine (parameter ids, widths, types).
//! - [`layouts`]: the layouts of the MIDs Jidoka speaks, by MID and revision.
//! - [`trace`]: MID 0900 trace curves (binary samples).
//! - [`result`]: a tightening result (MID 0061 / 0065) as a Jidoka event.
//! - [`client`]: the integrator side of a controller link, acknowledging a result only once
//!   the store has it.

pub mod client;
pub mod fields;
pub mod frame;
pub mod layouts;
pub mod result;
pub mod trace;

use fields::Field;
pub use frame::{Framed, Framer, Header, OpError, Telegram};
use serde_json::{Value as Json, json};

/// What a telegram's data decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Fields by the MID's layout.
    Fields(Vec<Field>),
    /// A trace curve (MID 0900).
    Trace(trace::Trace),
    /// No layout is known for this MID and revision: the data is kept as it came.
    Unknown,
}

impl Body {
    pub fn fields(&self) -> &[Field] {
        match self {
            Body::Fields(f) => f,
            Body::Trace(t) => &t.head,
            Body::Unknown => &[],
        }
    }
}

/// Decode a telegram's data by its MID and revision.
pub fn decode(t: &Telegram) -> Result<Body, OpError> {
    decode_at(t, t.header.effective_revision())
}

/// Decode a telegram's data by its MID's layout at `rev`.
fn decode_at(t: &Telegram, rev: u16) -> Result<Body, OpError> {
    let mid = t.header.mid;
    if mid == 900 {
        if rev != 1 {
            return Ok(Body::Unknown);
        }
        return trace::decode(&t.data).map(Body::Trace);
    }
    match layouts::layout(mid, rev) {
        Some(layout) => fields::decode(&layout, &t.data).map(Body::Fields),
        None => Ok(Body::Unknown),
    }
}

/// Decode by the header's revision or, when that revision has no layout or its layout does not
/// fit the data, by the highest lower revision whose layout does; with the revision read at.
///
/// Later revisions of a MID only append fields, and controllers differ in what they answer: some
/// answer every request at the revision asked for with a revision-1 body (`00260004007 006499`,
/// MID 0004 "revision 7" with the two-digit error code of revision 1). Such a telegram is read
/// at the revision its data fits; the caller can tell from the revision returned.
pub fn decode_fitted(t: &Telegram) -> Result<(Body, u16), OpError> {
    let rev = t.header.effective_revision();
    let first = decode(t);
    if t.header.mid == 900 || matches!(first, Ok(Body::Fields(_))) {
        return first.map(|b| (b, rev));
    }
    (1..rev.min(layouts::MAX_REVISION + 1))
        .rev()
        .find_map(|lower| match decode_at(t, lower) {
            Ok(body @ Body::Fields(_)) => Some((body, lower)),
            _ => None,
        })
        .map_or_else(|| first.map(|b| (b, rev)), Ok)
}

/// Write a decoded body back to a telegram under `header`.
pub fn encode(header: &Header, body: &Body, raw: &[u8]) -> Result<Telegram, OpError> {
    let data = match body {
        Body::Fields(f) => fields::encode(f)?,
        Body::Trace(t) => trace::encode(t)?,
        Body::Unknown => raw.to_vec(),
    };
    let mut header = header.clone();
    header.length = frame::HEADER_LEN + data.len();
    Ok(Telegram { header, data })
}

/// A telegram built from a layout and named values (revision `rev` of `mid`).
pub fn build(mid: u16, rev: u16, values: &[(&str, fields::Value)]) -> Result<Telegram, OpError> {
    let layout = layouts::layout(mid, rev)
        .ok_or_else(|| OpError::new("header.revision", format!("no layout for MID {mid:04} revision {rev}")))?;
    let data = fields::encode(&fields::build(&layout, values)?)?;
    Ok(Telegram::new(mid, rev, data))
}

/// Parse, decode, encode and compare: `Ok` when the bytes come back identical, otherwise the
/// first byte that differs and the field it belongs to.
pub fn check_roundtrip(bytes: &[u8]) -> Result<Body, OpError> {
    let t = Telegram::parse(bytes)?;
    let body = decode(&t)?;
    let back = encode(&t.header, &body, &t.data)?.to_bytes();
    if back != bytes {
        let at = back.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(back.len().min(bytes.len()));
        let field = field_at(&body, at);
        return Err(OpError::new(
            field,
            format!("re-serialised telegram differs at byte {at} ({} bytes in, {} out)", bytes.len(), back.len()),
        ));
    }
    Ok(body)
}

/// The field holding byte `at` of the telegram.
fn field_at(body: &Body, at: usize) -> String {
    if at < frame::HEADER_LEN {
        return "header".into();
    }
    let mut pos = frame::HEADER_LEN;
    for f in body.fields() {
        pos += f.width + if f.id.is_some() { 2 } else { 0 };
        if at < pos {
            return format!("data.{}", f.name);
        }
    }
    "data".into()
}

/// [`mid_name`] of a MID Jidoka has no name for.
pub const UNKNOWN_MID: &str = "unknown to jidoka";

/// What a MID is for.
pub fn mid_name(mid: u16) -> &'static str {
    match mid {
        1 => "communication start",
        2 => "communication start acknowledge",
        3 => "communication stop",
        4 => "command error",
        5 => "command accepted",
        8 => "generic subscription",
        9 => "generic unsubscribe",
        14 => "parameter set selected subscribe",
        15 => "parameter set selected",
        16 => "parameter set selected acknowledge",
        17 => "parameter set selected unsubscribe",
        50 => "vehicle id number download request",
        51 => "vehicle id number subscribe",
        52 => "vehicle id number",
        53 => "vehicle id number acknowledge",
        54 => "vehicle id number unsubscribe",
        60 => "last tightening result data subscribe",
        61 => "last tightening result data",
        62 => "last tightening result data acknowledge",
        63 => "last tightening result data unsubscribe",
        64 => "old tightening result upload request",
        65 => "old tightening result upload reply",
        70 => "alarm subscribe",
        71 => "alarm",
        72 => "alarm acknowledge",
        73 => "alarm unsubscribe",
        74 => "alarm acknowledged on controller",
        75 => "alarm acknowledged on controller acknowledge",
        76 => "alarm status",
        77 => "alarm status acknowledge",
        78 => "acknowledge alarm remotely on controller",
        900 => "trace curve data",
        901 => "trace plot parameters",
        9997 => "link level positive acknowledge",
        9998 => "link level negative acknowledge",
        9999 => "keep alive",
        _ => UNKNOWN_MID,
    }
}

/// A telegram as JSON for people and tools: header, what the MID is, the decoded fields (or
/// the raw data when no layout is known), and the trace values for MID 0900.
pub fn to_json(t: &Telegram, body: &Body) -> Json {
    let h = &t.header;
    let mut out = json!({
        "mid": format!("{:04}", h.mid),
        "name": mid_name(h.mid),
        "revision": h.effective_revision(),
        "length": h.length,
        "header": h,
    });
    match body {
        Body::Fields(f) => {
            out["fields"] = fields::to_json(f);
            if h.mid == 4
                && let Some(code) = fields::Lookup::int(f.as_slice(), "error_code")
            {
                out["error"] = json!(layouts::error_name(code as u16).unwrap_or("unknown error code"));
            }
        }
        Body::Trace(tr) => {
            out["fields"] = fields::to_json(&tr.head);
            out["values"] = match tr.values() {
                Ok(v) => json!(v),
                Err(e) => json!({ "error": e.to_string() }),
            };
        }
        Body::Unknown => {
            out["data"] = json!(String::from_utf8_lossy(&t.data));
            out["note"] =
                json!(format!("no layout for MID {:04} revision {}; data kept as sent", h.mid, h.effective_revision()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fields::Lookup;

    #[test]
    fn command_error_names_the_code() {
        let t = Telegram::parse(b"00260004001         006097").unwrap();
        let body = decode(&t).unwrap();
        let j = to_json(&t, &body);
        assert_eq!(j["fields"]["failed_mid"], 60);
        assert_eq!(j["error"], "MID revision unsupported");
    }

    /// Regression: a revision-1 controller answers at the revision asked for with a revision-1
    /// body; with no layout for MID 0004 revision 7 the answer matched no request.
    #[test]
    fn a_revision_one_body_is_read_at_the_revision_it_fits() {
        let t = Telegram::parse(b"00260004007         006499").unwrap();
        let (body, rev) = decode_fitted(&t).unwrap();
        assert_eq!(rev, 1);
        assert_eq!(body.fields().int("failed_mid"), Some(64));
        assert_eq!(body.fields().int("error_code"), Some(99));
        // A body that fits its own revision is read at it.
        let t = Telegram::parse(b"00270004002         0064099").unwrap();
        assert_eq!(decode_fitted(&t).unwrap().1, 2);
        // Nothing fits: the error of the revision asked for.
        let t = Telegram::parse(b"00210004002         x").unwrap();
        assert!(decode_fitted(&t).is_err());
    }

    #[test]
    fn a_wrong_parameter_id_is_named() {
        // MID 0076 revision 2: 01 alarm status (1), 02 error code (5), ...
        let t = Telegram::parse(b"00300076002         01103E8511").unwrap();
        let err = decode(&t).unwrap_err();
        assert_eq!(err.field, "data.error_code");
        assert!(err.reason.contains("expected parameter id 02"), "{err}");
    }
}
