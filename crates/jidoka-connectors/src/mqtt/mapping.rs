//! Topic → event mapping for a plant's own JSON messages, written in configuration so an
//! existing topic tree maps without code.
//!
//! A field's value in `[sources.topics.fields]` is a literal (number, boolean) or a template
//! string: `{/a/b}` is the value at that JSON pointer of the payload (`{/a/b?}` when it may be
//! missing), `{topic:N}` level N of the topic (from 0), `{topic}` the whole topic; anything
//! else is text. A template that is one placeholder keeps the value's JSON type, so
//! `final_torque_nm = "{/torque}"` stays a number. Dotted field names (`curve.angle_deg`) build
//! nested objects. `[sources.topics.convert]` converts a numeric field from the unit the plant
//! sends (`"lbf.ft->N.m"`, `"degF->degC"`, or `{ scale = .., offset = .. }`).
//!
//! The built envelope goes through [`Event::parse`], so a message that does not make an event
//! is refused with the field and the reason, as everywhere else.

use jidoka_model::event::{json_type, truncate};
use jidoka_model::{Event, EventError, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most events one message may carry (a JSON array payload).
pub const MAX_EVENTS_PER_MESSAGE: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Pointer { pointer: String, optional: bool },
    TopicLevel(usize),
    Topic,
}

/// A configured value: literal or template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Parts(Vec<Part>),
}

impl Template {
    /// Parse a configured value; strings are templates.
    pub fn parse(value: &Value) -> Result<Template, String> {
        match value {
            Value::String(s) => Template::parse_str(s),
            Value::Array(_) | Value::Object(_) => Err("must be a text template, a number or a boolean".into()),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    pub fn parse_str(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{{` at byte {} has no closing `}}`", text.len() - rest.len() + open))?;
            let inner = &after[..close];
            parts.push(placeholder(inner)?);
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("`}` without an opening `{`".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if parts.is_empty() {
            parts.push(Part::Text(String::new()));
        }
        Ok(Template::Parts(parts))
    }

    /// The value for one message; `None` when an optional pointer found nothing.
    pub fn eval(&self, payload: &Value, topic: &str) -> Result<Option<Value>, String> {
        let parts = match self {
            Template::Literal(v) => return Ok(Some(v.clone())),
            Template::Parts(parts) => parts,
        };
        if let [single] = parts.as_slice() {
            return match single {
                Part::Text(t) => Ok(Some(Value::String(t.clone()))),
                Part::Pointer { pointer, optional } => match payload.pointer(pointer) {
                    Some(Value::Null) | None if *optional => Ok(None),
                    Some(v) => Ok(Some(v.clone())),
                    None => Err(format!("the payload has no `{pointer}`")),
                },
                Part::TopicLevel(n) => topic_level(topic, *n).map(|l| Some(Value::String(l.to_string()))),
                Part::Topic => Ok(Some(Value::String(topic.to_string()))),
            };
        }
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Topic => out.push_str(topic),
                Part::TopicLevel(n) => out.push_str(topic_level(topic, *n)?),
                Part::Pointer { pointer, optional } => match payload.pointer(pointer) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                    Some(Value::Null) | None if *optional => return Ok(None),
                    None => return Err(format!("the payload has no `{pointer}`")),
                    Some(v) => return Err(format!("`{pointer}` is {}, which cannot be part of a text", json_type(v))),
                },
            }
        }
        Ok(Some(Value::String(out)))
    }
}

fn placeholder(inner: &str) -> Result<Part, String> {
    if inner == "topic" {
        return Ok(Part::Topic);
    }
    if let Some(n) = inner.strip_prefix("topic:") {
        return n
            .parse::<usize>()
            .map(Part::TopicLevel)
            .map_err(|_| format!("`{{{inner}}}`: a topic level is a number from 0"));
    }
    if inner.starts_with('/') || inner.is_empty() || inner == "?" {
        let (pointer, optional) = match inner.strip_suffix('?') {
            Some(p) => (p, true),
            None => (inner, false),
        };
        return Ok(Part::Pointer { pointer: pointer.to_string(), optional });
    }
    Err(format!("`{{{inner}}}` is not a placeholder: use {{/json/pointer}}, {{/pointer?}}, {{topic}} or {{topic:N}}"))
}

fn topic_level(topic: &str, n: usize) -> Result<&str, String> {
    topic.split('/').nth(n).ok_or_else(|| format!("the topic `{topic}` has no level {n}"))
}

/// A unit conversion as configured: a known name or a linear map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConvertSpec {
    Named(String),
    Linear {
        scale: f64,
        #[serde(default)]
        offset: f64,
    },
}

/// `value × scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub scale: f64,
    pub offset: f64,
}

/// The conversions known by name: `from->to`.
pub const KNOWN_CONVERSIONS: &[(&str, f64, f64)] = &[
    ("lbf.ft->N.m", 1.355_817_948_331_400_4, 0.0),
    ("lbf.in->N.m", 0.112_984_829_027_616_7, 0.0),
    ("ozf.in->N.m", 0.007_061_551_814_226_04, 0.0),
    ("kgf.m->N.m", 9.806_65, 0.0),
    ("kgf.cm->N.m", 0.098_066_5, 0.0),
    ("N.cm->N.m", 0.01, 0.0),
    ("kN.m->N.m", 1000.0, 0.0),
    ("rad->deg", 57.295_779_513_082_32, 0.0),
    ("rev->deg", 360.0, 0.0),
    ("degF->degC", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("K->degC", 1.0, -273.15),
    ("psi->bar", 0.068_947_572_931_683_6, 0.0),
    ("kPa->bar", 0.01, 0.0),
    ("MPa->bar", 10.0, 0.0),
    ("Pa->bar", 1e-5, 0.0),
    ("in->mm", 25.4, 0.0),
    ("m->mm", 1000.0, 0.0),
    ("ms->s", 0.001, 0.0),
    ("s->min", 1.0 / 60.0, 0.0),
    ("h->min", 60.0, 0.0),
];

impl ConvertSpec {
    pub fn resolve(&self) -> Result<Conversion, String> {
        match self {
            ConvertSpec::Named(name) => KNOWN_CONVERSIONS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, scale, offset)| Conversion { scale: *scale, offset: *offset })
                .ok_or_else(|| {
                    let known: Vec<&str> = KNOWN_CONVERSIONS.iter().map(|c| c.0).collect();
                    format!(
                        "unknown conversion `{name}`; known: {}, or {{ scale = .., offset = .. }}",
                        known.join(", ")
                    )
                }),
            ConvertSpec::Linear { scale, offset } => {
                if scale.is_finite() && offset.is_finite() && *scale != 0.0 {
                    Ok(Conversion { scale: *scale, offset: *offset })
                } else {
                    Err("scale must be finite and not 0, offset finite".into())
                }
            }
        }
    }
}

impl Conversion {
    fn apply(&self, field: &str, value: Value) -> Result<Value, EventError> {
        let convert = |x: f64| {
            let y = x * self.scale + self.offset;
            serde_json::Number::from_f64(y).map(Value::Number).ok_or_else(|| {
                EventError::new(format!("data.{field}"), format!("{x} converts to {y}, which is not a finite number"))
            })
        };
        match value {
            Value::Number(n) => convert(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => convert(x),
                _ => Err(EventError::new(
                    format!("data.{field}"),
                    format!("`{}` is not a number to convert", truncate(&s, 40)),
                )),
            },
            Value::Array(items) => {
                items.into_iter().map(|v| self.apply(field, v)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            other => Err(EventError::new(
                format!("data.{field}"),
                format!("{} is not a number to convert", json_type(&other)),
            )),
        }
    }
}

/// How a topic's payloads are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A plant's own JSON (an object, or an array of objects), mapped by `kind` and `fields`.
    #[default]
    Json,
    /// Jidoka's own event envelope, as `POST /api/events` takes it (`source` defaults to the
    /// MQTT source's, `source_txn_id` to a digest of the message).
    Event,
    /// Sparkplug B (protobuf): every numeric or boolean metric becomes a process parameter
    /// sample of its device.
    SparkplugB,
}

/// `[[sources.topics]]`: which messages, and how they become events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic filter, wildcards allowed (`plant/+/scanner/#`); subscribed with QoS 1.
    pub filter: String,
    #[serde(default)]
    pub format: Format,
    /// Event kind (`component_scanned`, ...), for `format = "json"`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The sender's transaction id, which makes a redelivered message a duplicate. Without it,
    /// a digest of topic and payload serves, so two identical messages count once.
    #[serde(default)]
    pub txn_id: Option<String>,
    /// When it happened: an RFC 3339 text or a number of milliseconds since 1970; the time
    /// of receipt when not given.
    #[serde(default)]
    pub occurred_at: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Event data field → literal or template.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
    /// Event data field → unit conversion applied to its value.
    #[serde(default)]
    pub convert: BTreeMap<String, ConvertSpec>,
    /// Sparkplug B: device (or edge node) id → the station it serves.
    #[serde(default)]
    pub stations: BTreeMap<String, String>,
}

impl TopicConfig {
    /// A topic entry with nothing mapped yet (the event and Sparkplug formats need nothing more).
    pub fn new(filter: &str, format: Format) -> TopicConfig {
        TopicConfig {
            filter: filter.into(),
            format,
            kind: None,
            txn_id: None,
            occurred_at: None,
            correlation_id: None,
            fields: BTreeMap::new(),
            convert: BTreeMap::new(),
            stations: BTreeMap::new(),
        }
    }
}

/// A topic mapping checked and compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub filter: String,
    pub format: Format,
    kind: Option<String>,
    txn_id: Option<Template>,
    occurred_at: Option<Template>,
    correlation_id: Option<Template>,
    fields: Vec<(Vec<String>, String, Template)>,
    convert: BTreeMap<String, Conversion>,
    pub stations: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Compile, pushing every error with its path.
    pub fn compile(&self, path: &str, errors: &mut Vec<(String, String)>) -> Option<Mapping> {
        let before = errors.len();
        if let Err(e) = super::topic::check_filter(&self.filter) {
            errors.push((format!("{path}.filter"), e));
        }
        let mut template = |name: &str, v: &Option<String>| {
            v.as_ref().and_then(|s| match Template::parse_str(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push((format!("{path}.{name}"), e));
                    None
                }
            })
        };
        let txn_id = template("txn_id", &self.txn_id);
        let occurred_at = template("occurred_at", &self.occurred_at);
        let correlation_id = template("correlation_id", &self.correlation_id);
        let mut fields = Vec::new();
        for (name, value) in &self.fields {
            let segments: Vec<String> = name.split('.').map(str::to_string).collect();
            if segments.iter().any(String::is_empty) {
                errors.push((format!("{path}.fields.{name}"), "a field name has an empty part".into()));
                continue;
            }
            match Template::parse(value) {
                Ok(t) => fields.push((segments, name.clone(), t)),
                Err(e) => errors.push((format!("{path}.fields.{name}"), e)),
            }
        }
        let mut convert = BTreeMap::new();
        for (name, spec) in &self.convert {
            match spec.resolve() {
                Ok(c) => {
                    convert.insert(name.clone(), c);
                }
                Err(e) => errors.push((format!("{path}.convert.{name}"), e)),
            }
            if !self.fields.contains_key(name) && self.format == Format::Json {
                errors.push((format!("{path}.convert.{name}"), "converts a field that `fields` does not map".into()));
            }
        }
        match self.format {
            Format::Json => match &self.kind {
                None => errors.push((format!("{path}.kind"), "is required for format = \"json\"".into())),
                Some(k) if jidoka_model::EventKind::parse(k).is_none() => {
                    let known: Vec<&str> = jidoka_model::EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    errors.push((
                        format!("{path}.kind"),
                        format!("unknown event kind `{k}`; known: {}", known.join(", ")),
                    ));
                }
                Some(_) => {
                    if self.fields.is_empty() {
                        errors.push((format!("{path}.fields"), "maps no field".into()));
                    }
                }
            },
            Format::Event | Format::SparkplugB => {
                for (name, set) in [("kind", self.kind.is_some()), ("fields", !self.fields.is_empty())] {
                    if set {
                        errors.push((format!("{path}.{name}"), "applies to format = \"json\" only".into()));
                    }
                }
            }
        }
        if self.format == Format::SparkplugB {
            if !self.filter.starts_with("spBv1.0/") && self.filter != "#" {
                errors.push((format!("{path}.filter"), "Sparkplug B topics start with `spBv1.0/`".into()));
            }
        } else if !self.stations.is_empty() {
            errors.push((format!("{path}.stations"), "applies to format = \"sparkplug_b\" only".into()));
        }
        (errors.len() == before).then(|| Mapping {
            filter: self.filter.clone(),
            format: self.format,
            kind: self.kind.clone(),
            txn_id,
            occurred_at,
            correlation_id,
            fields,
            convert,
            stations: self.stations.clone(),
        })
    }
}

/// A digest of one message, the transaction id of senders that give none.
pub fn message_digest(topic: &str, payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update(b"\n");
    h.update(payload);
    format!("sha256:{}", hex::encode(&h.finalize()[..16]))
}

impl Mapping {
    /// The events of one JSON or event-format message, each built or refused on its own.
    pub fn events(
        &self,
        source: &str,
        topic: &str,
        payload: &[u8],
        received_at: Timestamp,
    ) -> Vec<Result<Event, EventError>> {
        let value: Value = match std::str::from_utf8(payload) {
            Err(e) => return vec![Err(EventError::new("payload", format!("not UTF-8 text: {e}")))],
            Ok(text) => match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return vec![Err(EventError::new("payload", format!("not JSON: {e}")))],
            },
        };
        let digest = message_digest(topic, payload);
        let items = match value {
            Value::Array(items) => {
                if items.len() > MAX_EVENTS_PER_MESSAGE {
                    return vec![Err(EventError::new(
                        "payload",
                        format!("an array of {} items; at most {MAX_EVENTS_PER_MESSAGE} per message", items.len()),
                    ))];
                }
                items.into_iter().enumerate().map(|(i, v)| (Some(i), v)).collect()
            }
            other => vec![(None, other)],
        };
        items
            .into_iter()
            .map(|(index, item)| {
                let default_txn = match index {
                    Some(i) => format!("{digest}#{i}"),
                    None => digest.clone(),
                };
                let at = |e: EventError| match index {
                    Some(i) => EventError::new(format!("payload[{i}].{}", e.field), e.reason),
                    None => e,
                };
                self.one(source, topic, item, default_txn, received_at).map_err(at)
            })
            .collect()
    }

    fn one(
        &self,
        source: &str,
        topic: &str,
        item: Value,
        default_txn: String,
        received_at: Timestamp,
    ) -> Result<Event, EventError> {
        let Value::Object(fields_in) = &item else {
            return Err(EventError::new("payload", format!("expected a JSON object, found {}", json_type(&item))));
        };
        let mut envelope = match self.format {
            Format::Event => {
                let mut obj = fields_in.clone();
                obj.entry("source").or_insert_with(|| Value::String(source.to_string()));
                obj.entry("source_txn_id").or_insert_with(|| Value::String(default_txn.clone()));
                obj
            }
            _ => {
                let mut data = Map::new();
                for (segments, name, template) in &self.fields {
                    let value = template.eval(&item, topic).map_err(|e| EventError::new(format!("data.{name}"), e))?;
                    let Some(mut value) = value else { continue };
                    if let Some(c) = self.convert.get(name) {
                        value = c.apply(name, value)?;
                    }
                    insert_path(&mut data, segments, value).map_err(|e| EventError::new(format!("data.{name}"), e))?;
                }
                let mut obj = Map::new();
                obj.insert("source".into(), Value::String(source.to_string()));
                obj.insert("kind".into(), Value::String(self.kind.clone().unwrap_or_default()));
                obj.insert("data".into(), Value::Object(data));
                obj.insert("source_txn_id".into(), Value::String(default_txn));
                obj
            }
        };
        if let Some(t) = &self.txn_id {
            match t.eval(&item, topic).map_err(|e| EventError::new("source_txn_id", e))? {
                Some(Value::String(s)) => envelope.insert("source_txn_id".into(), Value::String(s)),
                Some(v @ Value::Number(_)) => envelope.insert("source_txn_id".into(), Value::String(v.to_string())),
                Some(v) => {
                    return Err(EventError::new("source_txn_id", format!("{} is not an id", json_type(&v))));
                }
                None => None,
            };
        }
        if let Some(t) = &self.correlation_id
            && let Some(v) = t.eval(&item, topic).map_err(|e| EventError::new("correlation_id", e))?
        {
            envelope.insert("correlation_id".into(), v);
        }
        let occurred = match &self.occurred_at {
            Some(t) => t.eval(&item, topic).map_err(|e| EventError::new("occurred_at", e))?,
            None if self.format == Format::Event => envelope.remove("occurred_at"),
            None => None,
        };
        let occurred = match occurred {
            None => Value::String(jidoka_model::event::rfc3339::format(&received_at)),
            Some(Value::Number(n)) => {
                let ms = n.as_f64().filter(|x| x.is_finite() && x.abs() < 1e15).map(|x| x as i64);
                let t = ms.and_then(chrono::DateTime::from_timestamp_millis).ok_or_else(|| {
                    EventError::new("occurred_at", format!("{n} is not a time in milliseconds since 1970"))
                })?;
                Value::String(jidoka_model::event::rfc3339::format(&t))
            }
            Some(v) => v,
        };
        envelope.insert("occurred_at".into(), occurred);
        Event::parse(Value::Object(envelope), received_at)
    }
}

fn insert_path(data: &mut Map<String, Value>, segments: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("empty field name")?;
    let mut node = data;
    for seg in parents {
        let entry = node.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
        node = entry.as_object_mut().ok_or_else(|| format!("`{seg}` is mapped both as a value and as an object"))?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_764_000_000_000).unwrap_or_default()
    }

    fn mapping(toml_text: &str) -> Mapping {
        let cfg: TopicConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
        let mut errors = Vec::new();
        let m = cfg.compile("sources[0].topics[0]", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        m.unwrap_or_else(|| panic!("no mapping"))
    }

    const SCAN: &str = r#"
        filter = "plant/+/scan"
        kind = "component_scanned"
        txn_id = "{/id}"
        occurred_at = "{/ts}"
        [fields]
        vin = "{/vin}"
        station = "{topic:1}"
        part_number = "{/part}"
        supplier_lot = "{/lot?}"
        quantity = 1
    "#;

    #[test]
    fn a_plant_message_becomes_its_event() {
        let m = mapping(SCAN);
        let payload = br#"{"id": 42, "ts": 1764000000123, "vin": "1HGCM82633A004352", "part": "P-1"}"#;
        let out = m.events("mqtt:line", "plant/ST010/scan", payload, t0());
        let ev = out
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(EventError::new("x", "none")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ev.source, "mqtt:line");
        assert_eq!(ev.source_txn_id, "42");
        assert_eq!(ev.occurred_at.timestamp_millis(), 1_764_000_000_123);
        let data = serde_json::to_value(&ev.payload).unwrap_or_default();
        assert_eq!(data["data"]["station"], "ST010");
        assert_eq!(data["data"]["part_number"], "P-1");
        assert!(data["data"].get("supplier_lot").is_none());
    }

    #[test]
    fn each_array_item_is_its_own_event_or_error() {
        let m = mapping(SCAN);
        let payload = br#"[{"id": 1, "ts": 1764000000000, "vin": "V1", "part": "P"}, {"id": 2, "ts": 1764000000000, "part": "P"}]"#;
        let out = m.events("mqtt:line", "plant/ST010/scan", payload, t0());
        assert!(out[0].is_ok());
        let err = out[1].clone().err().unwrap_or_else(|| EventError::new("", ""));
        assert_eq!(err.field, "payload[1].data.vin");
        assert!(err.reason.contains("no `/vin`"), "{err}");
    }

    #[test]
    fn bad_payloads_are_named() {
        let m = mapping(SCAN);
        for (payload, field, reason) in [
            (&b"\xff\xfe"[..], "payload", "not UTF-8"),
            (b"{not json", "payload", "not JSON"),
            (b"17", "payload", "expected a JSON object"),
            (br#"{"id": 1, "ts": "yesterday", "vin": "V", "part": "P"}"#, "occurred_at", ""),
            (br#"{"id": 1, "ts": 1e300, "vin": "V", "part": "P"}"#, "occurred_at", "milliseconds"),
            (br#"{"id": [1], "ts": 1, "vin": "V", "part": "P"}"#, "source_txn_id", "not an id"),
        ] {
            let out = m.events("mqtt:line", "plant/ST010/scan", payload, t0());
            let err = out[0].clone().err().unwrap_or_else(|| panic!("accepted {payload:?}"));
            assert_eq!(err.field, field, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        }
    }

    #[test]
    fn units_are_converted() {
        let m = mapping(
            r#"
            filter = "t/#"
            kind = "tightening_result"
            [fields]
            tightening_id = "{/id}"
            station = "ST040"
            tool = "NR-1"
            pset = "1"
            joint = "J1"
            final_torque_nm = "{/torque}"
            final_angle_deg = "{/angle}"
            "curve.angle_deg" = "{/curve/a}"
            "curve.torque_nm" = "{/curve/t}"
            [convert]
            final_torque_nm = "lbf.ft->N.m"
            final_angle_deg = { scale = 57.29577951308232 }
            "curve.torque_nm" = "lbf.ft->N.m"
        "#,
        );
        let payload = br#"{"id": "7", "torque": "10", "angle": 1.0, "curve": {"a": [0, 10], "t": [0, 10]}}"#;
        let ev = m.events("mqtt:x", "t/1", payload, t0()).remove(0).unwrap_or_else(|e| panic!("{e}"));
        let v = serde_json::to_value(&ev.payload).unwrap_or_default();
        assert!((v["data"]["final_torque_nm"].as_f64().unwrap_or(0.0) - 13.558).abs() < 1e-3);
        assert!((v["data"]["final_angle_deg"].as_f64().unwrap_or(0.0) - 57.2958).abs() < 1e-3);
        assert!((v["data"]["curve"]["torque_nm"][1].as_f64().unwrap_or(0.0) - 13.558).abs() < 1e-3);
        let bad =
            m.events("mqtt:x", "t/1", br#"{"id": "7", "torque": "x", "angle": 1, "curve": {"a": [], "t": []}}"#, t0());
        assert_eq!(bad[0].clone().err().map(|e| e.field), Some("data.final_torque_nm".to_string()));
    }

    #[test]
    fn event_format_keeps_the_envelope() {
        let m = mapping("filter = \"jidoka/events\"\nformat = \"event\"");
        let payload = json!({"kind": "andon_raised", "occurred_at": "2026-11-24T08:00:00Z",
            "data": {"andon_id": "A1", "station": "ST010", "fault_code": "E-12"}})
        .to_string();
        let ev =
            m.events("mqtt:x", "jidoka/events", payload.as_bytes(), t0()).remove(0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ev.source, "mqtt:x");
        assert!(ev.source_txn_id.starts_with("sha256:"));
        let again =
            m.events("mqtt:x", "jidoka/events", payload.as_bytes(), t0()).remove(0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ev.source_txn_id, again.source_txn_id, "a redelivery must be the same transaction");
    }

    #[test]
    fn config_errors_are_all_reported() {
        let cfg: TopicConfig = toml::from_str(
            r#"
            filter = "a/#/b"
            kind = "no_such_kind"
            txn_id = "{oops}"
            [fields]
            vin = "{/vin"
            [convert]
            vin = "furlongs->m"
            other = "lbf.ft->N.m"
        "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut errors = Vec::new();
        assert!(cfg.compile("t", &mut errors).is_none());
        let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
        for p in ["t.filter", "t.kind", "t.txn_id", "t.fields.vin", "t.convert.vin", "t.convert.other"] {
            assert!(paths.contains(&p), "{p} missing from {errors:?}");
        }
    }
}
