//! Sparkplug B (Eclipse Sparkplug 3.0) as a host application that only listens: protobuf
//! payloads, birth certificates with metric aliases, sequence numbers, and a rebirth request
//! (NCMD `Node Control/Rebirth`) when a node's sequence skips or it speaks in aliases the host
//! never saw born.
//!
//! [`Host`] is a pure state machine: messages in, events and the commands to send out. Every
//! numeric or boolean metric becomes a `process_parameter_sample` of its device (or edge node);
//! text, bytes, data sets and templates are counted and skipped, not refused.

use super::mapping::message_digest;
use jidoka_model::{Event, EventError, Timestamp};
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Sparkplug B payload (the fields this host reads; others are skipped by the decoder).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<MetricValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    #[prost(float, tag = "12")]
    FloatValue(f32),
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    #[prost(string, tag = "15")]
    StringValue(String),
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    #[prost(string, optional, tag = "8")]
    pub string_value: Option<String>,
}

/// Sparkplug data types (the numeric ones this host turns into samples, and Boolean).
pub mod datatype {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT8: u32 = 5;
    pub const UINT16: u32 = 6;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
    pub const STRING: u32 = 12;
}

/// The message types of a Sparkplug topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
    State,
}

/// `spBv1.0/{group}/{type}/{edge node}[/{device}]`, or a host's `STATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpTopic {
    pub group: String,
    pub message_type: MessageType,
    pub edge: String,
    pub device: Option<String>,
}

pub fn parse_topic(topic: &str) -> Result<SpTopic, String> {
    let levels: Vec<&str> = topic.split('/').collect();
    if levels.first() != Some(&"spBv1.0") {
        return Err(format!("`{topic}` is not a Sparkplug B topic (spBv1.0/...)"));
    }
    if levels.get(1) == Some(&"STATE") {
        return Ok(SpTopic {
            group: String::new(),
            message_type: MessageType::State,
            edge: String::new(),
            device: None,
        });
    }
    let (group, kind, edge) = match levels.as_slice() {
        [_, g, k, e] | [_, g, k, e, _] => (*g, *k, *e),
        _ => return Err(format!("`{topic}` has {} levels; Sparkplug B topics have 4 or 5", levels.len())),
    };
    let device = levels.get(4).map(|d| d.to_string());
    let message_type = match (kind, device.is_some()) {
        ("NBIRTH", false) => MessageType::NBirth,
        ("NDEATH", false) => MessageType::NDeath,
        ("NDATA", false) => MessageType::NData,
        ("NCMD", false) => MessageType::NCmd,
        ("DBIRTH", true) => MessageType::DBirth,
        ("DDEATH", true) => MessageType::DDeath,
        ("DDATA", true) => MessageType::DData,
        ("DCMD", true) => MessageType::DCmd,
        _ => return Err(format!("`{kind}` is not a Sparkplug B message type for this topic shape")),
    };
    if group.is_empty() || edge.is_empty() || device.as_deref() == Some("") {
        return Err(format!("`{topic}` has an empty group, edge node or device id"));
    }
    Ok(SpTopic { group: group.into(), message_type, edge: edge.into(), device })
}

/// Most edge nodes and metric aliases kept, so a misbehaving network cannot grow the host
/// without bound.
pub const MAX_NODES: usize = 10_000;
pub const MAX_METRICS_PER_NODE: usize = 100_000;
/// A rebirth request is repeated at most this often (by message time) while unanswered.
const REBIRTH_REPEAT_MS: i64 = 30_000;

#[derive(Debug, Default)]
struct Node {
    online: bool,
    born: bool,
    bd_seq: Option<u64>,
    next_seq: Option<u8>,
    /// (device, alias) → (name, datatype); device "" is the node itself.
    aliases: HashMap<(String, u64), (String, u32)>,
    datatypes: HashMap<(String, String), u32>,
    units: HashMap<(String, String), String>,
    rebirth_asked_at: Option<i64>,
}

/// A command the host must publish (QoS 0, as the specification asks for commands).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What one message did.
#[derive(Debug, Default)]
pub struct Handled {
    pub events: Vec<Result<Event, EventError>>,
    /// A rebirth request to send.
    pub rebirth: Option<Command>,
    /// Something an integrator should see in the log (sequence gap, unknown alias, death).
    pub notes: Vec<String>,
}

/// Counters over the host's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    pub sequence_gaps: u64,
    pub rebirths_requested: u64,
    /// Metrics skipped because they are not numbers (text, bytes, data sets).
    pub metrics_skipped: u64,
}

/// The listening host's view of every edge node.
#[derive(Debug, Default)]
pub struct Host {
    nodes: HashMap<(String, String), Node>,
    pub stats: HostStats,
}

impl Host {
    pub fn new() -> Host {
        Host::default()
    }

    /// Take one message. `stations` maps device or edge ids to stations.
    pub fn handle(
        &mut self,
        source: &str,
        topic: &str,
        bytes: &[u8],
        received_at: Timestamp,
        stations: &BTreeMap<String, String>,
    ) -> Handled {
        let mut out = Handled::default();
        let sp = match parse_topic(topic) {
            Ok(t) => t,
            Err(e) => {
                out.events.push(Err(EventError::new("topic", e)));
                return out;
            }
        };
        if matches!(sp.message_type, MessageType::State | MessageType::NCmd | MessageType::DCmd) {
            return out; // other hosts' state and commands to edge nodes carry no plant data
        }
        let payload = match Payload::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                out.events.push(Err(EventError::new("payload", format!("not a Sparkplug B payload: {e}"))));
                return out;
            }
        };
        let key = (sp.group.clone(), sp.edge.clone());
        if !self.nodes.contains_key(&key) && self.nodes.len() >= MAX_NODES {
            out.events
                .push(Err(EventError::new("topic", format!("more than {MAX_NODES} edge nodes; `{topic}` ignored"))));
            return out;
        }
        let now_ms = received_at.timestamp_millis();
        let node = self.nodes.entry(key).or_default();
        let device = sp.device.clone().unwrap_or_default();
        let mut want_rebirth = false;

        match sp.message_type {
            MessageType::NBirth => {
                *node = Node { online: true, born: true, ..Node::default() };
                node.bd_seq = payload.metrics.iter().find(|m| m.name.as_deref() == Some("bdSeq")).and_then(metric_u64);
                if let Some(seq) = payload.seq
                    && seq != 0
                {
                    out.notes.push(format!("NBIRTH of {}/{} has seq {seq}, expected 0", sp.group, sp.edge));
                }
                node.next_seq = Some(next(payload.seq.unwrap_or(0)));
            }
            MessageType::NDeath => {
                let bd = payload.metrics.iter().find(|m| m.name.as_deref() == Some("bdSeq")).and_then(metric_u64);
                if node.bd_seq.is_none() || bd.is_none() || bd == node.bd_seq {
                    node.online = false;
                    node.next_seq = None;
                    out.notes.push(format!("edge node {}/{} is offline (NDEATH)", sp.group, sp.edge));
                }
                return out;
            }
            _ => {
                match (payload.seq, node.next_seq) {
                    (Some(seq), Some(expected)) if seq != u64::from(expected) => {
                        self.stats.sequence_gaps += 1;
                        out.notes.push(format!(
                            "sequence gap from {}/{}: expected {expected}, got {seq}; asking for a rebirth",
                            sp.group, sp.edge
                        ));
                        want_rebirth = true;
                    }
                    (Some(_), None) | (None, _) if !node.born => {
                        out.notes.push(format!("{topic} before its node's birth certificate; asking for a rebirth"));
                        want_rebirth = true;
                    }
                    _ => {}
                }
                if let Some(seq) = payload.seq {
                    node.next_seq = Some(next(seq));
                }
                if sp.message_type == MessageType::DDeath {
                    out.notes.push(format!("device {}/{}/{device} is offline (DDEATH)", sp.group, sp.edge));
                    return finish(out, want_rebirth, node, &sp, now_ms, &mut self.stats);
                }
                if sp.message_type == MessageType::DBirth {
                    node.aliases.retain(|(d, _), _| *d != device);
                    node.datatypes.retain(|(d, _), _| *d != device);
                    node.units.retain(|(d, _), _| *d != device);
                }
            }
        }

        let birth = matches!(sp.message_type, MessageType::NBirth | MessageType::DBirth);
        let equipment = sp.device.clone().unwrap_or_else(|| sp.edge.clone());
        let station = stations.get(&equipment).or_else(|| stations.get(&sp.edge)).cloned();
        let digest = message_digest(topic, bytes);
        for (i, metric) in payload.metrics.iter().enumerate() {
            let name = match (&metric.name, metric.alias) {
                (Some(n), _) => n.clone(),
                (None, Some(alias)) => match node.aliases.get(&(device.clone(), alias)) {
                    Some((n, _)) => n.clone(),
                    None => {
                        out.events.push(Err(EventError::new(
                            format!("metrics[{i}].alias"),
                            format!("alias {alias} is not in the birth certificate of `{equipment}`"),
                        )));
                        want_rebirth = true;
                        continue;
                    }
                },
                (None, None) => {
                    out.events.push(Err(EventError::new(format!("metrics[{i}]"), "has neither name nor alias")));
                    continue;
                }
            };
            let datatype = metric.datatype.or_else(|| node.datatypes.get(&(device.clone(), name.clone())).copied());
            if birth {
                if node.datatypes.len() >= MAX_METRICS_PER_NODE {
                    out.events.push(Err(EventError::new(
                        format!("metrics[{i}]"),
                        format!("more than {MAX_METRICS_PER_NODE} metrics on one edge node"),
                    )));
                    continue;
                }
                if let Some(alias) = metric.alias {
                    node.aliases.insert((device.clone(), alias), (name.clone(), datatype.unwrap_or(0)));
                }
                if let Some(dt) = datatype {
                    node.datatypes.insert((device.clone(), name.clone()), dt);
                }
                if let Some(unit) = eng_unit(metric) {
                    node.units.insert((device.clone(), name.clone()), unit);
                }
            }
            if name == "bdSeq" || name.starts_with("Node Control/") || name.starts_with("Properties/") {
                continue;
            }
            if metric.is_null == Some(true) {
                continue;
            }
            let Some(value) = numeric(metric, datatype) else {
                self.stats.metrics_skipped += 1;
                continue;
            };
            let at = metric
                .timestamp
                .or(payload.timestamp)
                .and_then(|ms| i64::try_from(ms).ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or(received_at);
            let unit = eng_unit(metric).or_else(|| node.units.get(&(device.clone(), name.clone())).cloned());
            let envelope = json!({
                "source": source,
                "source_txn_id": format!("spb:{}/{}/{}:{digest}:{i}", sp.group, sp.edge, device),
                "occurred_at": jidoka_model::event::rfc3339::format(&at),
                "kind": "process_parameter_sample",
                "data": {
                    "equipment": equipment,
                    "tag": name,
                    "value": value,
                    "unit": unit,
                    "station": station,
                }
            });
            out.events.push(
                Event::parse(strip_nulls(envelope), received_at)
                    .map_err(|e| EventError::new(format!("metrics[{i}] ({name}): {}", e.field), e.reason)),
            );
        }
        finish(out, want_rebirth, node, &sp, now_ms, &mut self.stats)
    }
}

fn finish(mut out: Handled, want: bool, node: &mut Node, sp: &SpTopic, now_ms: i64, stats: &mut HostStats) -> Handled {
    if want && node.rebirth_asked_at.is_none_or(|t| now_ms - t >= REBIRTH_REPEAT_MS || now_ms < t) {
        node.rebirth_asked_at = Some(now_ms);
        stats.rebirths_requested += 1;
        out.rebirth = Some(rebirth_command(&sp.group, &sp.edge, now_ms));
    }
    if !want && node.born {
        node.rebirth_asked_at = None;
    }
    out
}

impl Payload {
    /// Decode a payload from its protobuf bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Payload, String> {
        Payload::decode(bytes).map_err(|e| e.to_string())
    }

    /// The protobuf bytes of this payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// `spBv1.0/{group}/NCMD/{edge}` with `Node Control/Rebirth = true`.
pub fn rebirth_command(group: &str, edge: &str, now_ms: i64) -> Command {
    let payload = Payload {
        timestamp: u64::try_from(now_ms).ok(),
        metrics: vec![Metric {
            name: Some("Node Control/Rebirth".into()),
            datatype: Some(datatype::BOOLEAN),
            value: Some(MetricValue::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    };
    Command { topic: format!("spBv1.0/{group}/NCMD/{edge}"), payload: payload.encode_to_vec() }
}

/// The sequence number expected after `seq`. Sparkplug sequence numbers run 0..=255, but a payload
/// may carry any u64: reduce before adding, so `u64::MAX` from the network cannot overflow.
fn next(seq: u64) -> u8 {
    ((seq % 256) as u8).wrapping_add(1)
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
        data.retain(|_, x| !x.is_null());
    }
    v
}

fn metric_u64(m: &Metric) -> Option<u64> {
    match m.value {
        Some(MetricValue::IntValue(v)) => Some(u64::from(v)),
        Some(MetricValue::LongValue(v)) => Some(v),
        _ => None,
    }
}

fn eng_unit(m: &Metric) -> Option<String> {
    let props = m.properties.as_ref()?;
    let i = props.keys.iter().position(|k| k == "engUnit" || k == "engUnits")?;
    props.values.get(i)?.string_value.clone().filter(|s| !s.is_empty() && s.len() <= 64)
}

/// A metric's value as a number, by its data type (signed integers travel as two's
/// complement in the unsigned fields); `None` for text, bytes and the rest.
fn numeric(m: &Metric, datatype: Option<u32>) -> Option<f64> {
    use datatype::*;
    let v = match (&m.value, datatype) {
        (Some(MetricValue::IntValue(v)), Some(INT8)) => f64::from(*v as u8 as i8),
        (Some(MetricValue::IntValue(v)), Some(INT16)) => f64::from(*v as u16 as i16),
        (Some(MetricValue::IntValue(v)), Some(INT32)) => f64::from(*v as i32),
        (Some(MetricValue::IntValue(v)), _) => f64::from(*v),
        (Some(MetricValue::LongValue(v)), Some(INT64 | INT32 | INT16 | INT8)) => *v as i64 as f64,
        (Some(MetricValue::LongValue(v)), _) => *v as f64,
        (Some(MetricValue::FloatValue(v)), _) => f64::from(*v),
        (Some(MetricValue::DoubleValue(v)), _) => *v,
        (Some(MetricValue::BooleanValue(b)), _) => f64::from(u8::from(*b)),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: Option<&str>, alias: Option<u64>, dt: u32, value: MetricValue) -> Metric {
        Metric { name: name.map(str::to_string), alias, datatype: Some(dt), value: Some(value), ..Metric::default() }
    }

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    fn bytes(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
        Payload {
            timestamp: Some(1_764_000_000_000u64.wrapping_add(seq)),
            metrics,
            seq: Some(seq),
            ..Payload::default()
        }
        .encode_to_vec()
    }

    fn values(h: &Handled) -> Vec<(String, f64)> {
        h.events
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .filter_map(|e| match &e.payload {
                jidoka_model::EventPayload::ProcessParameterSample(s) => Some((s.tag.clone(), s.value)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn births_define_aliases_and_data_uses_them() {
        let mut host = Host::new();
        let stations = BTreeMap::from([("filler".to_string(), "ST090".to_string())]);
        let nbirth = bytes(0, vec![metric(Some("bdSeq"), None, datatype::UINT64, MetricValue::LongValue(3))]);
        let h = host.handle("mqtt:p", "spBv1.0/line1/NBIRTH/edge1", &nbirth, at(0), &stations);
        assert!(h.events.is_empty() && h.rebirth.is_none(), "{:?}", h.notes);
        let dbirth = bytes(
            1,
            vec![
                metric(Some("Coolant/Pressure"), Some(1), datatype::DOUBLE, MetricValue::DoubleValue(2.5)),
                metric(Some("Coolant/Temp"), Some(2), datatype::INT16, MetricValue::IntValue(0xFFFB)),
                metric(Some("Label"), Some(3), datatype::STRING, MetricValue::StringValue("x".into())),
            ],
        );
        let h = host.handle("mqtt:p", "spBv1.0/line1/DBIRTH/edge1/filler", &dbirth, at(1), &stations);
        assert_eq!(values(&h), vec![("Coolant/Pressure".into(), 2.5), ("Coolant/Temp".into(), -5.0)]);
        assert_eq!(host.stats.metrics_skipped, 1);
        let ddata = bytes(
            2,
            vec![
                metric(None, Some(1), datatype::DOUBLE, MetricValue::DoubleValue(2.75)),
                Metric { alias: Some(2), value: Some(MetricValue::IntValue(0xFFFE)), ..Metric::default() },
            ],
        );
        let h = host.handle("mqtt:p", "spBv1.0/line1/DDATA/edge1/filler", &ddata, at(2), &stations);
        assert_eq!(values(&h), vec![("Coolant/Pressure".into(), 2.75), ("Coolant/Temp".into(), -2.0)]);
        let ev = h.events[0].as_ref().unwrap_or_else(|e| panic!("{e}"));
        let v = serde_json::to_value(&ev.payload).unwrap_or_default();
        assert_eq!(v["data"]["station"], "ST090");
        assert_eq!(v["data"]["equipment"], "filler");
        assert!(h.rebirth.is_none());
        // The same message again (a QoS 1 redelivery) is the same transaction.
        let again = host.handle("mqtt:p", "spBv1.0/line1/DDATA/edge1/filler", &ddata, at(2), &stations);
        let first = h.events[0].as_ref().map(|e| e.source_txn_id.clone()).unwrap_or_default();
        let second = again.events[0].as_ref().map(|e| e.source_txn_id.clone()).unwrap_or_default();
        assert_eq!(first, second);
    }

    #[test]
    fn a_sequence_gap_asks_for_one_rebirth() {
        let mut host = Host::new();
        let none = BTreeMap::new();
        host.handle("mqtt:p", "spBv1.0/g/NBIRTH/e", &bytes(0, vec![]), at(0), &none);
        host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(1, vec![]), at(1), &none);
        let h = host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(5, vec![]), at(2), &none);
        let cmd = h.rebirth.unwrap_or_else(|| panic!("no rebirth after a gap"));
        assert_eq!(cmd.topic, "spBv1.0/g/NCMD/e");
        let p = Payload::decode(cmd.payload.as_slice()).unwrap_or_default();
        assert_eq!(p.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
        assert_eq!(p.metrics[0].value, Some(MetricValue::BooleanValue(true)));
        // A second gap soon after does not repeat the request; after the repeat time it does.
        let h = host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(9, vec![]), at(1_000), &none);
        assert!(h.rebirth.is_none());
        let h = host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(20, vec![]), at(40_000), &none);
        assert!(h.rebirth.is_some());
        // Sequence numbers wrap at 256 without a gap.
        host.handle("mqtt:p", "spBv1.0/g/NBIRTH/e", &bytes(0, vec![]), at(50_000), &none);
        for seq in 1..=300u64 {
            let h =
                host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(seq % 256, vec![]), at(50_000 + seq as i64), &none);
            assert!(h.rebirth.is_none(), "gap at {seq}");
        }
        assert_eq!(host.stats.sequence_gaps, 3);
    }

    /// Regression: a DDEATH whose seq is u64::MAX (found by the `mqtt_message` fuzz target)
    /// overflowed computing the next expected number.
    #[test]
    fn a_sequence_number_out_of_range_is_a_gap_not_a_panic() {
        let mut host = Host::new();
        let none = BTreeMap::new();
        // The fuzzer's input, byte for byte: field 3 (seq) = u64::MAX.
        let ddeath = b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        assert_eq!(Payload::decode(&ddeath[..]).map(|p| p.seq).ok().flatten(), Some(u64::MAX));
        host.handle("mqtt:p", "spBv1.0/g/DDEATH/e/d", ddeath, at(0), &none);
        host.handle("mqtt:p", "spBv1.0/g/NBIRTH/e", &bytes(0, vec![]), at(1), &none);
        let h = host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(u64::MAX, vec![]), at(2), &none);
        assert!(h.notes.iter().any(|n| n.contains("expected 1, got 18446744073709551615")), "{:?}", h.notes);
        // What follows u64::MAX is 0, as after 255.
        let h = host.handle("mqtt:p", "spBv1.0/g/NDATA/e", &bytes(0, vec![]), at(3), &none);
        assert!(!h.notes.iter().any(|n| n.contains("sequence gap")), "{:?}", h.notes);
    }

    #[test]
    fn unknown_aliases_and_early_data_are_named() {
        let mut host = Host::new();
        let none = BTreeMap::new();
        let data = bytes(4, vec![metric(None, Some(9), datatype::DOUBLE, MetricValue::DoubleValue(1.0))]);
        let h = host.handle("mqtt:p", "spBv1.0/g/DDATA/e/d", &data, at(0), &none);
        assert!(h.rebirth.is_some());
        let err = h.events[0].clone().err().unwrap_or_else(|| EventError::new("", ""));
        assert_eq!(err.field, "metrics[0].alias");
        assert!(err.reason.contains("alias 9"), "{err}");
        for (topic, payload) in [
            ("spBv1.0/g/DDATA/e/d", b"\xff\xff\xff".to_vec()),
            ("spBv1.0/g/BOGUS/e", bytes(0, vec![])),
            ("spBv1.0/g", bytes(0, vec![])),
        ] {
            let h = host.handle("mqtt:p", topic, &payload, at(0), &none);
            assert!(h.events.first().is_some_and(|e| e.is_err()), "{topic}");
        }
    }
}
