//! Fixed-width data fields: decoding a MID's data by its published layout into typed values,
//! and writing typed values back to the same bytes.
//!
//! A layout is a list of [`Spec`]s. Most Open Protocol MIDs number their fields with a 2-digit
//! parameter id before each value (`01` + cell id + `02` + channel id ...); a few (MID 0061
//! revision 999, early MIDs) have no ids. A [`Spec::Repeat`] is a list whose length an earlier
//! field gives (stage results, alarm lists).

use super::frame::{OpError, ascii};
use serde_json::{Map, Value as Json};

/// How a field's characters are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Left-justified, padded with spaces on the right.
    Text,
    /// Right-justified, padded with spaces on the left (alarm codes such as `" E851"`).
    TextRight,
    /// A right-aligned, zero-padded integer (a leading `-` for negative values).
    Int,
    /// An integer that is the value × 100 (torques).
    Num100,
    /// An integer that is the value × 10 000.
    Num10k,
    /// `YYYY-MM-DD:HH:MM:SS`.
    Timestamp,
}

/// How wide a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum W {
    Fixed(usize),
    /// Whatever the fixed fields after it leave (VINs some controllers send unpadded).
    Fill,
    /// As many characters as an earlier integer field of this name says (the nearest one).
    From(&'static str),
}

/// One field of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F {
    /// The 2-digit parameter id sent before the value, if the layout numbers its fields.
    pub id: Option<u8>,
    pub name: &'static str,
    pub width: W,
    pub ty: Ty,
}

impl F {
    /// Bytes the field takes when its width is fixed (with its parameter id).
    fn fixed_len(&self) -> Option<usize> {
        match self.width {
            W::Fixed(w) => Some(w + if self.id.is_some() { 2 } else { 0 }),
            _ => None,
        }
    }
}

/// A part of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    Field(F),
    /// `fields` repeated as many times as the integer field `count` (decoded earlier) says,
    /// the whole list after one parameter id when `id` is given.
    Repeat {
        id: Option<u8>,
        name: &'static str,
        count: &'static str,
        fields: &'static [F],
    },
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A field sent as spaces.
    Blank,
    Text(String),
    Int(i64),
    /// A timestamp as sent (validated).
    Timestamp(String),
    /// The parameter id that opens a repeated list (no value of its own).
    Marker,
}

/// A decoded field: where it came from and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Name; a repeated field is named `list[i].name`.
    pub name: String,
    pub id: Option<u8>,
    pub width: usize,
    pub ty: Ty,
    pub value: Value,
}

impl Field {
    fn json(&self) -> Json {
        match (&self.value, self.ty) {
            (Value::Blank, _) | (Value::Marker, _) => Json::Null,
            (Value::Text(s), _) | (Value::Timestamp(s), _) => Json::String(s.clone()),
            (Value::Int(v), Ty::Num100) => serde_json::json!(*v as f64 / 100.0),
            (Value::Int(v), Ty::Num10k) => serde_json::json!(*v as f64 / 10_000.0),
            (Value::Int(v), _) => Json::from(*v),
        }
    }
}

/// Decode `data` by `layout`. Every byte must be consumed; a parameter id that does not match
/// is reported with the field it should have started.
pub fn decode(layout: &[Spec], data: &[u8]) -> Result<Vec<Field>, OpError> {
    let text = ascii(data, "data")?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    for (i, spec) in layout.iter().enumerate() {
        match spec {
            Spec::Field(f) => {
                let width = match f.width {
                    W::Fixed(w) => w,
                    W::Fill => {
                        let after: usize = layout[i + 1..]
                            .iter()
                            .map(|s| if let Spec::Field(f) = s { f.fixed_len().unwrap_or(0) } else { 0 })
                            .sum();
                        let id = if f.id.is_some() { 2 } else { 0 };
                        (text.len() - pos).saturating_sub(after + id)
                    }
                    W::From(len) => length_from(&out, len)?,
                };
                out.push(take(text, &mut pos, f, width, f.name.to_string())?);
            }
            Spec::Repeat { id, name, count, fields } => {
                if let Some(id) = id {
                    take_id(text, &mut pos, *id, &format!("data.{name}"))?;
                    out.push(Field {
                        name: name.to_string(),
                        id: Some(*id),
                        width: 0,
                        ty: Ty::Text,
                        value: Value::Marker,
                    });
                }
                let n = length_from(&out, count)?;
                let least: usize = fields.iter().map(|f| f.fixed_len().unwrap_or(0)).sum();
                if n.saturating_mul(least) > text.len() - pos {
                    return Err(OpError::new(
                        format!("data.{count}"),
                        format!(
                            "says {n} entries of at least {least} bytes but only {} bytes are left",
                            text.len() - pos
                        ),
                    ));
                }
                for k in 0..n {
                    let mut item: Vec<Field> = Vec::new();
                    for f in *fields {
                        let width = match f.width {
                            W::Fixed(w) => w,
                            W::Fill => text.len() - pos,
                            W::From(len) => length_from(&item, len)?,
                        };
                        item.push(take(text, &mut pos, f, width, format!("{name}[{k}].{}", f.name))?);
                    }
                    out.extend(item);
                }
            }
        }
    }
    if pos != text.len() {
        return Err(OpError::new(
            "data",
            format!("{} bytes left over after the last field ({} of {} used)", text.len() - pos, pos, text.len()),
        ));
    }
    Ok(out)
}

/// The value of the nearest earlier integer field named `name` (or `list[i].name`), as a length.
fn length_from(fields: &[Field], name: &str) -> Result<usize, OpError> {
    let suffix = format!(".{name}");
    fields
        .iter()
        .rev()
        .find(|f| f.name == name || f.name.ends_with(&suffix))
        .and_then(|f| if let Value::Int(v) = f.value { usize::try_from(v).ok() } else { None })
        .ok_or_else(|| OpError::new(format!("data.{name}"), "is needed as a count or length but is not a number"))
}

fn take_id(text: &str, pos: &mut usize, id: u8, field: &str) -> Result<(), OpError> {
    let want = format!("{id:02}");
    let got = text.get(*pos..*pos + 2).ok_or_else(|| {
        OpError::new(field, format!("missing: the data ends at byte {} before parameter id {want}", *pos))
    })?;
    if got != want {
        return Err(OpError::new(field, format!("expected parameter id {want} at byte {}, found '{got}'", *pos)));
    }
    *pos += 2;
    Ok(())
}

fn take(text: &str, pos: &mut usize, f: &F, width: usize, name: String) -> Result<Field, OpError> {
    let field = format!("data.{name}");
    if let Some(id) = f.id {
        take_id(text, pos, id, &field)?;
    }
    let raw = text.get(*pos..*pos + width).ok_or_else(|| {
        OpError::new(&field, format!("needs {width} bytes at byte {} but only {} are left", *pos, text.len() - *pos))
    })?;
    *pos += width;
    let value = read_value(raw, f.ty).map_err(|reason| OpError::new(&field, reason))?;
    Ok(Field { name, id: f.id, width, ty: f.ty, value })
}

fn read_value(raw: &str, ty: Ty) -> Result<Value, String> {
    if raw.bytes().all(|b| b == b' ') && !matches!(ty, Ty::Text | Ty::TextRight) {
        return Ok(Value::Blank);
    }
    match ty {
        Ty::Text => Ok(Value::Text(raw.trim_end_matches(' ').to_string())),
        Ty::TextRight => Ok(Value::Text(raw.trim_start_matches(' ').to_string())),
        Ty::Int | Ty::Num100 | Ty::Num10k => {
            let (neg, digits) = match raw.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("'{raw}' is not a number"));
            }
            let v: i64 = digits.parse().map_err(|_| format!("'{raw}' is out of range"))?;
            Ok(Value::Int(if neg { -v } else { v }))
        }
        Ty::Timestamp => {
            let ok = raw.len() == 19
                && raw.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    10 | 13 | 16 => b == b':',
                    _ => b.is_ascii_digit(),
                });
            if ok { Ok(Value::Timestamp(raw.to_string())) } else { Err(format!("'{raw}' is not YYYY-MM-DD:HH:MM:SS")) }
        }
    }
}

/// Write fields back to data bytes, each padded to its width. Fails when a value does not fit.
pub fn encode(fields: &[Field]) -> Result<Vec<u8>, OpError> {
    let mut out = String::new();
    for f in fields {
        if let Some(id) = f.id {
            out.push_str(&format!("{id:02}"));
        }
        let w = f.width;
        let s = match &f.value {
            Value::Blank => " ".repeat(w),
            Value::Marker => String::new(),
            Value::Text(t) if f.ty == Ty::TextRight => format!("{t:>w$}"),
            Value::Text(t) => format!("{t:<w$}"),
            Value::Timestamp(t) => t.clone(),
            Value::Int(v) => format!("{v:0w$}"),
        };
        if s.len() != w || !s.is_ascii() {
            return Err(OpError::new(format!("data.{}", f.name), format!("'{s}' does not fit {w} ASCII characters")));
        }
        out.push_str(&s);
    }
    Ok(out.into_bytes())
}

/// Build fields from a layout and values given by name (missing ones blank; repeats not
/// supported here: they are built by the caller). Used to write telegrams.
pub fn build(layout: &[Spec], values: &[(&str, Value)]) -> Result<Vec<Field>, OpError> {
    let mut out = Vec::new();
    for spec in layout {
        match spec {
            Spec::Field(f) => {
                let value = values.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v.clone()).unwrap_or(match f.ty {
                    Ty::Text | Ty::TextRight => Value::Text(String::new()),
                    _ => Value::Blank,
                });
                let width = match (f.width, &value) {
                    (W::Fixed(w), _) => w,
                    (_, Value::Text(t)) => t.len(),
                    _ => 0,
                };
                out.push(Field { name: f.name.to_string(), id: f.id, width, ty: f.ty, value });
            }
            Spec::Repeat { count, .. } => {
                return Err(OpError::new(format!("data.{count}"), "repeated fields are not built generically"));
            }
        }
    }
    Ok(out)
}

/// The fields as a JSON object; repeated fields become arrays of objects.
pub fn to_json(fields: &[Field]) -> Json {
    let mut obj = Map::new();
    for f in fields {
        match f.name.split_once('[') {
            Some((list, rest)) => {
                let (index, name) = rest.split_once("].").unwrap_or(("0", rest));
                let i: usize = index.parse().unwrap_or(0);
                let arr = obj.entry(list.to_string()).or_insert_with(|| Json::Array(Vec::new()));
                if let Json::Array(items) = arr {
                    while items.len() <= i {
                        items.push(Json::Object(Map::new()));
                    }
                    if let Json::Object(item) = &mut items[i] {
                        item.insert(name.to_string(), f.json());
                    }
                }
            }
            None if f.value == Value::Marker => {}
            None => {
                obj.insert(f.name.clone(), f.json());
            }
        }
    }
    Json::Object(obj)
}

/// Typed look-ups on decoded fields.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<&Value>;
    fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::Text(s) | Value::Timestamp(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Value::Int(v) => Some(v.to_string()),
            Value::Blank | Value::Marker => None,
        }
    }
    fn int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl Lookup for [Field] {
    fn get(&self, name: &str) -> Option<&Value> {
        self.iter().find(|f| f.name == name).map(|f| &f.value)
    }
}

impl Lookup for Vec<Field> {
    fn get(&self, name: &str) -> Option<&Value> {
        Lookup::get(self.as_slice(), name)
    }
}
