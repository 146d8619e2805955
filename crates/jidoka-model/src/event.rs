//! Shop-floor and MES events.
//!
//! Every event carries an envelope ([`Event`]: event id, source system, source transaction id,
//! correlation id, occurred-at, received-at) and a typed payload ([`EventPayload`]) tagged by
//! `kind`. On the wire an event is one JSON object:
//!
//! ```json
//! {"source": "line1-nutrunner-07", "source_txn_id": "T-000123", "occurred_at": "2026-11-24T08:00:00Z",
//!  "kind": "tightening_result", "data": { ... }}
//! ```
//!
//! [`Event::parse`] is the only way untrusted input becomes an [`Event`]: it reports the first
//! problem as an [`EventError`] naming the field path (`data.curve.torque_nm`) and the reason.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// All times are UTC.
pub type Timestamp = DateTime<Utc>;

/// Longest accepted identifier (source names, transaction ids, VINs, part numbers...).
pub const MAX_ID_LEN: usize = 256;
/// Most samples accepted in one tightening curve.
pub const MAX_CURVE_SAMPLES: usize = 200_000;

/// A rejected event: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    /// Path of the offending field, e.g. `data.curve.angle_deg` (`$` for the whole event).
    pub field: String,
    pub reason: String,
}

impl EventError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// One accepted event: envelope plus payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unique id. Derived from `source` and `source_txn_id` when the sender gives none, so a
    /// redelivered message gets the same id.
    pub event_id: String,
    /// Source system, e.g. `opcenter`, `op:ctrl-07`, `mqtt:line1`.
    pub source: String,
    /// The source's own transaction / message id; `(source, source_txn_id)` is unique.
    pub source_txn_id: String,
    /// Ties findings and MES writes back to the originating transaction.
    pub correlation_id: String,
    /// When it happened on the line (the source's clock). Agents use only this time.
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// When Jidoka accepted it.
    #[serde(with = "rfc3339")]
    pub received_at: Timestamp,
    #[serde(flatten)]
    pub payload: EventPayload,
}

/// An event with its position in the durable log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Position in the event log, starting at 1; replay follows this order.
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

macro_rules! event_kinds {
    ($( $variant:ident ( $ty:ty ) = $name:literal ),+ $(,)?) => {
        /// The payload of an event, tagged by `kind` with its fields under `data`.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind", content = "data", rename_all = "snake_case")]
        pub enum EventPayload {
            $( $variant($ty), )+
        }

        /// The kind of an event, used by agents to subscribe.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind {
            $( $variant, )+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$variant, )+ ];

            pub fn as_str(self) -> &'static str {
                match self { $( EventKind::$variant => $name, )+ }
            }

            pub fn parse(name: &str) -> Option<EventKind> {
                match name { $( $name => Some(EventKind::$variant), )+ _ => None }
            }
        }

        impl EventPayload {
            pub fn kind(&self) -> EventKind {
                match self { $( EventPayload::$variant(_) => EventKind::$variant, )+ }
            }

            fn from_kind_and_data(kind: EventKind, data: Value) -> Result<EventPayload, EventError> {
                match kind {
                    $( EventKind::$variant => {
                        let payload: $ty = from_value_with_path(data)?;
                        payload.check()?;
                        Ok(EventPayload::$variant(payload))
                    } )+
                }
            }
        }
    };
}

event_kinds! {
    UnitEnteredStation(UnitAtStation) = "unit_entered_station",
    UnitLeftStation(UnitAtStation) = "unit_left_station",
    ComponentScanned(ComponentScanned) = "component_scanned",
    OperationCompleted(OperationCompleted) = "operation_completed",
    TighteningResult(TighteningResult) = "tightening_result",
    InspectionResult(InspectionResult) = "inspection_result",
    NcrCreated(NcrCreated) = "ncr_created",
    NcrDispositioned(NcrDispositioned) = "ncr_dispositioned",
    AndonRaised(AndonRaised) = "andon_raised",
    AndonCleared(AndonCleared) = "andon_cleared",
    MaintenanceRecord(MaintenanceRecord) = "maintenance_record",
    MaterialTransaction(MaterialTransaction) = "material_transaction",
    SupplierDelivery(SupplierDelivery) = "supplier_delivery",
    MaterialCallOff(MaterialCallOff) = "material_call_off",
    EolTestResult(EolTestResult) = "eol_test_result",
    ProcessParameterSample(ProcessParameterSample) = "process_parameter_sample",
    WorkOrderReleased(crate::master::WorkOrder) = "work_order_released",
    MasterDataChanged(crate::master::MasterDataChange) = "master_data_changed",
    PlanComputed(PlanComputed) = "plan_computed",
    BuildDisruption(BuildDisruption) = "build_disruption",
    SourceGap(SourceGap) = "source_gap",
    SourceOutage(SourceOutage) = "source_outage",
}

/// Results a source knows were made and cannot deliver: a controller link whose tightening ids
/// `first_id..=last_id` (`count` of them) are missing and cannot be uploaded (the controller
/// refused upload, no longer had them, or they lie beyond what the link asks for). The units
/// tightened meanwhile were not checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceGap {
    pub station: String,
    pub first_id: u64,
    pub last_id: u64,
    pub count: u64,
    pub reason: String,
}

/// A source that has delivered nothing for longer than it is configured to tolerate: a
/// controller link down since `since` (the last error in `reason`). Logged once when the outage
/// passes the configured time (`until` empty) and once more when the link is back (`until` set).
/// Whether it matters depends on whether the plant was producing meanwhile, which the agents
/// judge from the rest of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOutage {
    pub station: String,
    pub since: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
}

/// A planner's result (see `jidoka_agents::planner`), logged with the log position it was
/// computed from; replay reads it, never recomputes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanComputed {
    pub planner: String,
    #[serde(default)]
    pub planner_version: String,
    /// The log position whose prefix the planner read.
    pub computed_from_seq: u64,
    #[serde(default)]
    pub took_ms: u64,
    pub result: Value,
}

/// Something that changes what the build queue can build, declared by a planner or supervisor
/// (the API), the MES or a logistics system: a part or a piece of option-specific equipment
/// unavailable for a time, units put on hold, a rush order, or the end of one of these. The
/// re-sequencing planner proposes a new queue around the disruptions in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildDisruption {
    /// Names the disruption; a later one with the same id replaces it, `cleared` ends it.
    pub disruption_id: String,
    pub kind: DisruptionKind,
    /// `unavailable`: the part number or the equipment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `unavailable`: from when (default: the event's time) until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// `hold`: the units held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vins: Vec<String>,
    /// `rush`: the order wanted, and within how many units from the head of the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rush: Option<crate::master::WorkOrder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_units: Option<u32>,
    #[serde(default)]
    pub reason: String,
}

/// What kind of disruption a [`BuildDisruption`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisruptionKind {
    Unavailable,
    Hold,
    Rush,
    Cleared,
}

/// Units one hold may name at most.
pub const MAX_HELD_UNITS: usize = 2000;

impl Check for BuildDisruption {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.disruption_id", &self.disruption_id)?;
        check_opt_id("data.resource", &self.resource)?;
        check_text("data.reason", &self.reason)?;
        match self.kind {
            DisruptionKind::Unavailable => {
                if self.resource.is_none() {
                    return Err(EventError::new("data.resource", "an unavailable part or equipment needs its id"));
                }
                match (self.from, self.until) {
                    (_, None) => return Err(EventError::new("data.until", "an unavailability needs its end")),
                    (Some(from), Some(until)) if until <= from => {
                        return Err(EventError::new("data.until", "is not after from"));
                    }
                    _ => {}
                }
            }
            DisruptionKind::Hold => {
                if self.vins.is_empty() {
                    return Err(EventError::new("data.vins", "a hold needs the units it holds"));
                }
                if self.vins.len() > MAX_HELD_UNITS {
                    return Err(EventError::new("data.vins", format!("more than {MAX_HELD_UNITS} units")));
                }
                for (i, v) in self.vins.iter().enumerate() {
                    check_id(&format!("data.vins[{i}]"), v)?;
                }
            }
            DisruptionKind::Rush => {
                let Some(order) = &self.rush else {
                    return Err(EventError::new("data.rush", "a rush needs the work order wanted"));
                };
                check_id("data.rush.work_order", &order.work_order)?;
                check_id("data.rush.vin", &order.vin)?;
                check_id("data.rush.model", &order.model)?;
                for (i, o) in order.options.iter().enumerate() {
                    if o.split_once('=').is_none_or(|(f, v)| f.is_empty() || v.is_empty()) {
                        return Err(EventError::new(
                            format!("data.rush.options[{i}]"),
                            format!("`{o}` is not FAMILY=VALUE"),
                        ));
                    }
                }
                if self.within_units.is_none() {
                    return Err(EventError::new(
                        "data.within_units",
                        "a rush needs the number of units it must be built within",
                    ));
                }
            }
            DisruptionKind::Cleared => {}
        }
        Ok(())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn from_value_with_path<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, EventError> {
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "data".to_string() } else { format!("data.{path}") };
        EventError::new(field, err.into_inner().to_string())
    })
}

const ENVELOPE_FIELDS: &[&str] =
    &["event_id", "source", "source_txn_id", "correlation_id", "occurred_at", "received_at", "kind", "data"];

impl Event {
    /// Parse and validate one untrusted event. `received_at` is used unless the input carries
    /// its own (a re-import of an exported log keeps the original).
    pub fn parse(value: Value, received_at: Timestamp) -> Result<Event, EventError> {
        let Value::Object(mut obj) = value else {
            return Err(EventError::new("$", format!("expected a JSON object, found {}", json_type(&value))));
        };
        if let Some(unknown) = obj.keys().find(|k| !ENVELOPE_FIELDS.contains(&k.as_str())) {
            return Err(EventError::new(
                unknown.clone(),
                format!("unknown field, expected one of: {}", ENVELOPE_FIELDS.join(", ")),
            ));
        }
        let source = required_id(&mut obj, "source")?;
        let source_txn_id = required_id(&mut obj, "source_txn_id")?;
        let event_id = match optional_id(&mut obj, "event_id")? {
            Some(id) => id,
            None => crate::stable_id("ev", &[&source, &source_txn_id]),
        };
        let correlation_id = match optional_id(&mut obj, "correlation_id")? {
            Some(id) => id,
            None => format!("{source}:{source_txn_id}"),
        };
        let occurred_at = required_time(&mut obj, "occurred_at")?;
        let received_at = match obj.remove("received_at") {
            None | Some(Value::Null) => received_at,
            Some(v) => parse_time("received_at", &v)?,
        };
        let kind_name = match obj.remove("kind") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(EventError::new("kind", format!("expected a string, found {}", json_type(&other))));
            }
            None => return Err(EventError::new("kind", "missing field")),
        };
        let kind = EventKind::parse(&kind_name).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            EventError::new(
                "kind",
                format!("unknown event kind `{}`, expected one of: {}", truncate(&kind_name, 64), known.join(", ")),
            )
        })?;
        let data = match obj.remove("data") {
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(EventError::new("data", format!("expected an object, found {}", json_type(&other))));
            }
            None => return Err(EventError::new("data", "missing field")),
        };
        let payload = EventPayload::from_kind_and_data(kind, data)?;
        Ok(Event { event_id, source, source_txn_id, correlation_id, occurred_at, received_at, payload })
    }

    /// Parse one line of JSON text (JSON Lines import, HTTP bodies).
    pub fn parse_str(text: &str, received_at: Timestamp) -> Result<Event, EventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| EventError::new("$", format!("invalid JSON: {err}")))?;
        Event::parse(value, received_at)
    }

    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// The payload alone as JSON (`{"kind": .., "data": ..}`), as the store keeps it.
    pub fn payload_json(&self) -> String {
        // Serialising plain data structs cannot fail.
        serde_json::to_string(&self.payload).unwrap_or_default()
    }

    /// The VIN this event is about, when it names one.
    pub fn vin(&self) -> Option<&str> {
        match &self.payload {
            EventPayload::UnitEnteredStation(e) | EventPayload::UnitLeftStation(e) => Some(&e.vin),
            EventPayload::ComponentScanned(e) => Some(&e.vin),
            EventPayload::OperationCompleted(e) => Some(&e.vin),
            EventPayload::TighteningResult(e) => e.vin.as_deref(),
            EventPayload::InspectionResult(e) => Some(&e.vin),
            EventPayload::NcrCreated(e) => e.vin.as_deref(),
            EventPayload::EolTestResult(e) => Some(&e.vin),
            EventPayload::WorkOrderReleased(e) => Some(&e.vin),
            EventPayload::ProcessParameterSample(e) => e.vin.as_deref(),
            _ => None,
        }
    }
}

impl EventPayload {
    /// Rebuild a payload from the store's `{"kind": .., "data": ..}` JSON.
    pub fn from_stored_json(text: &str) -> Result<EventPayload, EventError> {
        let mut obj: Map<String, Value> =
            serde_json::from_str(text).map_err(|err| EventError::new("$", format!("invalid stored payload: {err}")))?;
        let kind = match obj.remove("kind") {
            Some(Value::String(s)) => {
                EventKind::parse(&s).ok_or_else(|| EventError::new("kind", format!("unknown event kind `{s}`")))?
            }
            _ => return Err(EventError::new("kind", "missing field")),
        };
        let data = obj.remove("data").unwrap_or(Value::Object(Map::new()));
        EventPayload::from_kind_and_data(kind, data)
    }
}

/// How a JSON value is named in error messages (`a number`, `an object`).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `max` characters of `s`, cut on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

fn check_id(field: &str, s: &str) -> Result<(), EventError> {
    if s.trim().is_empty() {
        return Err(EventError::new(field, "must not be empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(EventError::new(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(EventError::new(field, "contains control characters"));
    }
    if let Some(c) = s.chars().find(|c| invisible(*c)) {
        return Err(EventError::new(
            field,
            format!(
                "contains U+{:04X}, an invisible or direction-changing character that could make it show as another",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Characters that change how an id is shown without being seen: bidirectional controls
/// (a VIN could read as another on screen) and zero-width characters.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{061C}' | '\u{FEFF}' | '\u{180E}' | '\u{00AD}')
}

fn optional_id(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, EventError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_id(field, &s)?;
            Ok(Some(s))
        }
        Some(other) => Err(EventError::new(field, format!("expected a string, found {}", json_type(&other)))),
    }
}

fn required_id(obj: &mut Map<String, Value>, field: &str) -> Result<String, EventError> {
    optional_id(obj, field)?.ok_or_else(|| EventError::new(field, "missing field"))
}

fn parse_time(field: &str, v: &Value) -> Result<Timestamp, EventError> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| EventError::new(field, format!("not an RFC 3339 time ({err}): `{}`", truncate(s, 64)))),
        other => Err(EventError::new(field, format!("expected an RFC 3339 time string, found {}", json_type(other)))),
    }
}

fn required_time(obj: &mut Map<String, Value>, field: &str) -> Result<Timestamp, EventError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(EventError::new(field, "missing field")),
        Some(v) => parse_time(field, &v),
    }
}

/// RFC 3339 with milliseconds, the one time format on the wire and in the store.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn format(t: &Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// Payload checks beyond types: identifiers non-empty, arrays consistent, numbers finite.
trait Check {
    fn check(&self) -> Result<(), EventError>;
}

fn check_finite(field: &str, v: f64) -> Result<(), EventError> {
    if v.is_finite() { Ok(()) } else { Err(EventError::new(field, "must be a finite number")) }
}

fn check_positive(field: &str, v: f64) -> Result<(), EventError> {
    check_finite(field, v)?;
    if v > 0.0 { Ok(()) } else { Err(EventError::new(field, "must be positive")) }
}

fn check_opt_id(field: &str, v: &Option<String>) -> Result<(), EventError> {
    match v {
        Some(s) => check_id(field, s),
        None => Ok(()),
    }
}

fn check_limits(field_min: &str, min: Option<f64>, max: Option<f64>) -> Result<(), EventError> {
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(EventError::new(field_min, format!("lower limit {lo} is above upper limit {hi}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// A unit (VIN) entering or leaving a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitAtStation {
    pub vin: String,
    pub station: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The shift the unit is built on (as the MES names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
    /// The fixture, carrier or jig holding the unit at the station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
}

impl Check for UnitAtStation {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.vin", &self.vin)?;
        check_id("data.station", &self.station)?;
        check_opt_id("data.work_order", &self.work_order)?;
        check_opt_id("data.operator", &self.operator)?;
        check_opt_id("data.shift", &self.shift)?;
        check_opt_id("data.fixture", &self.fixture)
    }
}

/// A component's barcode / RFID scanned onto a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentScanned {
    pub vin: String,
    pub station: String,
    pub part_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_lot: Option<String>,
    #[serde(default = "one")]
    pub quantity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl Check for ComponentScanned {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.vin", &self.vin)?;
        check_id("data.station", &self.station)?;
        check_id("data.part_number", &self.part_number)?;
        check_opt_id("data.serial", &self.serial)?;
        check_opt_id("data.supplier_lot", &self.supplier_lot)?;
        check_positive("data.quantity", self.quantity)
    }
}

/// OK / NOK as reported by a device or a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OkNok {
    #[serde(rename = "OK", alias = "ok")]
    Ok,
    #[serde(rename = "NOK", alias = "nok")]
    Nok,
}

/// An operation of the routing finished at a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationCompleted {
    pub vin: String,
    pub station: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<OkNok>,
}

impl Check for OperationCompleted {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.vin", &self.vin)?;
        check_id("data.station", &self.station)?;
        check_id("data.operation", &self.operation)?;
        check_opt_id("data.work_order", &self.work_order)?;
        check_opt_id("data.operator", &self.operator)
    }
}

/// VDI/VDE 2862 joint category: A safety-critical, B function-critical, C other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JointCategory {
    A,
    B,
    C,
}

/// A torque-angle-time trace as sampled by the controller (torque in N·m, angle in degrees,
/// time in seconds). `time_s` may be empty when the controller sends none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    pub angle_deg: Vec<f64>,
    pub torque_nm: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_s: Vec<f64>,
}

impl Curve {
    pub fn len(&self) -> usize {
        self.torque_nm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.torque_nm.is_empty()
    }

    /// Checks shape only: equal lengths, at least two samples, finite values, bounded size.
    /// A non-monotonic angle is legal (unloosening, re-hits) and left to the analysis.
    pub fn check(&self, field: &str) -> Result<(), EventError> {
        let n = self.torque_nm.len();
        if self.angle_deg.len() != n {
            return Err(EventError::new(
                format!("{field}.angle_deg"),
                format!("has {} samples but torque_nm has {n}", self.angle_deg.len()),
            ));
        }
        if !self.time_s.is_empty() && self.time_s.len() != n {
            return Err(EventError::new(
                format!("{field}.time_s"),
                format!("has {} samples but torque_nm has {n}", self.time_s.len()),
            ));
        }
        if n < 2 {
            return Err(EventError::new(
                format!("{field}.torque_nm"),
                format!("a curve needs at least 2 samples, found {n}"),
            ));
        }
        if n > MAX_CURVE_SAMPLES {
            return Err(EventError::new(
                format!("{field}.torque_nm"),
                format!("more than {MAX_CURVE_SAMPLES} samples"),
            ));
        }
        for (name, values) in [("angle_deg", &self.angle_deg), ("torque_nm", &self.torque_nm), ("time_s", &self.time_s)]
        {
            if let Some(idx) = values.iter().position(|v| !v.is_finite()) {
                return Err(EventError::new(format!("{field}.{name}[{idx}]"), "must be a finite number"));
            }
        }
        Ok(())
    }
}

/// Batch counting as tightening controllers report it (e.g. bolt 3 of 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCounter {
    pub size: u32,
    pub counter: u32,
}

/// One tightening as reported by a nutrunner controller: final values, limits and the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TighteningResult {
    /// The controller's tightening id (unique per controller).
    pub tightening_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vin: Option<String>,
    pub station: String,
    /// Tool serial number.
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Parameter set (program) number or name.
    pub pset: String,
    /// Joint id (bolt position) within the station.
    pub joint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<JointCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchCounter>,
    pub final_torque_nm: f64,
    pub final_angle_deg: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torque_target_nm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torque_min_nm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torque_max_nm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_min_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_max_deg: Option<f64>,
    /// The controller's own OK/NOK, judged from the windows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_verdict: Option<OkNok>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Curve>,
}

impl Check for TighteningResult {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.tightening_id", &self.tightening_id)?;
        check_opt_id("data.vin", &self.vin)?;
        check_id("data.station", &self.station)?;
        check_id("data.tool", &self.tool)?;
        check_opt_id("data.controller", &self.controller)?;
        check_id("data.pset", &self.pset)?;
        check_id("data.joint", &self.joint)?;
        check_finite("data.final_torque_nm", self.final_torque_nm)?;
        check_finite("data.final_angle_deg", self.final_angle_deg)?;
        for (name, v) in [
            ("data.torque_target_nm", self.torque_target_nm),
            ("data.torque_min_nm", self.torque_min_nm),
            ("data.torque_max_nm", self.torque_max_nm),
            ("data.angle_min_deg", self.angle_min_deg),
            ("data.angle_max_deg", self.angle_max_deg),
        ] {
            if let Some(v) = v {
                check_finite(name, v)?;
            }
        }
        check_limits("data.torque_min_nm", self.torque_min_nm, self.torque_max_nm)?;
        check_limits("data.angle_min_deg", self.angle_min_deg, self.angle_max_deg)?;
        if let Some(batch) = &self.batch
            && (batch.counter == 0 || batch.counter > batch.size)
        {
            return Err(EventError::new(
                "data.batch.counter",
                format!("counter {} is outside 1..={}", batch.counter, batch.size),
            ));
        }
        if let Some(curve) = &self.curve {
            curve.check("data.curve")?;
        }
        Ok(())
    }
}

impl TighteningResult {
    /// The joint's identity for golden batches and statistics: station, joint and pset.
    pub fn joint_key(&self) -> String {
        format!("{}/{}/{}", self.station, self.joint, self.pset)
    }
}

/// A quality inspection of one characteristic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionResult {
    pub vin: String,
    pub station: String,
    pub characteristic: String,
    pub result: OkNok,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defect_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Reference to an image (file name or URL inside the plant network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    /// 64-bit perceptual hash of the referenced image, 16 hex digits: set at ingest from
    /// `image_ref` when the service is given an image folder, or sent by the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector: Option<String>,
}

impl Check for InspectionResult {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.vin", &self.vin)?;
        check_id("data.station", &self.station)?;
        check_id("data.characteristic", &self.characteristic)?;
        check_opt_id("data.defect_code", &self.defect_code)?;
        if let Some(v) = self.measured {
            check_finite("data.measured", v)?;
        }
        check_image_hash(&self.image_hash)?;
        check_limits("data.lower_limit", self.lower_limit, self.upper_limit)
    }
}

/// An image hash is 16 hex digits.
fn check_image_hash(v: &Option<String>) -> Result<(), EventError> {
    match v {
        Some(h) if h.len() != 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(EventError::new("data.image_hash", format!("`{h}` is not 16 hex digits")))
        }
        _ => Ok(()),
    }
}

/// The value of an image hash (16 hex digits), as events carry it.
pub fn parse_image_hash(h: &str) -> Option<u64> {
    if h.len() == 16 { u64::from_str_radix(h, 16).ok() } else { None }
}

/// Longest accepted free text (NCR descriptions, Andon notes).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

fn check_text(field: &str, text: &str) -> Result<(), EventError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(EventError::new(field, format!("longer than {MAX_TEXT_LEN} bytes")));
    }
    Ok(())
}

/// A nonconformance report raised in the MES or by an inspector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcrCreated {
    pub ncr_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defect_code: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_lot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    /// 64-bit perceptual hash of the referenced image, 16 hex digits: set at ingest from
    /// `image_ref` when the service is given an image folder, or sent by the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_hash: Option<String>,
}

impl Check for NcrCreated {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.ncr_id", &self.ncr_id)?;
        check_opt_id("data.vin", &self.vin)?;
        check_opt_id("data.station", &self.station)?;
        check_opt_id("data.defect_code", &self.defect_code)?;
        check_image_hash(&self.image_hash)?;
        check_text("data.description", &self.description)
    }
}

/// What the material review board decided for a nonconforming unit or part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    UseAsIs,
    Rework,
    Repair,
    Scrap,
    ReturnToSupplier,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::UseAsIs => "use_as_is",
            Disposition::Rework => "rework",
            Disposition::Repair => "repair",
            Disposition::Scrap => "scrap",
            Disposition::ReturnToSupplier => "return_to_supplier",
        }
    }
}

/// An NCR's disposition, decided after it was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcrDispositioned {
    pub ncr_id: String,
    pub disposition: Disposition,
    /// The cause found, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrective_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

impl Check for NcrDispositioned {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.ncr_id", &self.ncr_id)?;
        check_opt_id("data.decided_by", &self.decided_by)?;
        if let Some(c) = &self.cause {
            check_text("data.cause", c)?;
        }
        if let Some(c) = &self.corrective_action {
            check_text("data.corrective_action", c)?;
        }
        Ok(())
    }
}

/// A line stop / Andon call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndonRaised {
    pub andon_id: String,
    pub station: String,
    pub fault_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_by: Option<String>,
    /// Whether the line is stopped (true) or only a warning is shown.
    #[serde(default)]
    pub line_stopped: bool,
}

impl Check for AndonRaised {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.andon_id", &self.andon_id)?;
        check_id("data.station", &self.station)?;
        check_id("data.fault_code", &self.fault_code)?;
        check_text("data.description", self.description.as_deref().unwrap_or(""))
    }
}

/// An Andon call cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndonCleared {
    pub andon_id: String,
    pub station: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_by: Option<String>,
}

impl Check for AndonCleared {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.andon_id", &self.andon_id)?;
        check_id("data.station", &self.station)?;
        check_text("data.resolution", self.resolution.as_deref().unwrap_or(""))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceKind {
    Preventive,
    Corrective,
    Calibration,
}

/// Maintenance done on a piece of equipment (tool, fixture, conveyor...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRecord {
    pub record_id: String,
    pub equipment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    pub maintenance_kind: MaintenanceKind,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_min: Option<f64>,
}

impl Check for MaintenanceRecord {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.record_id", &self.record_id)?;
        check_id("data.equipment", &self.equipment)?;
        check_opt_id("data.station", &self.station)?;
        check_text("data.description", &self.description)?;
        if let Some(d) = self.duration_min {
            check_finite("data.duration_min", d)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialMovement {
    Consume,
    Replenish,
    /// A change of the count by `quantity` (negative: pieces found missing).
    Adjust,
    Scrap,
    /// A physical count: `quantity` is the stock on hand at the location after the count.
    Count,
}

/// Material moved at line side: consumption, replenishment, stock adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialTransaction {
    pub part_number: String,
    pub movement: MaterialMovement,
    pub quantity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_lot: Option<String>,
}

impl Check for MaterialTransaction {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.part_number", &self.part_number)?;
        check_finite("data.quantity", self.quantity)?;
        if self.quantity < 0.0 && self.movement != MaterialMovement::Adjust {
            return Err(EventError::new("data.quantity", "must not be negative (only an adjust may be)"));
        }
        check_opt_id("data.station", &self.station)?;
        check_opt_id("data.supplier_lot", &self.supplier_lot)
    }
}

/// A supplier delivery arriving at the plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplierDelivery {
    pub delivery_id: String,
    pub supplier: String,
    pub part_number: String,
    pub quantity: f64,
    pub supplier_lot: String,
    #[serde(with = "rfc3339")]
    pub promised_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub delivered_at: Timestamp,
    /// The call-off this delivery answers, when the supplier's notice names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_off_id: Option<String>,
}

impl Check for SupplierDelivery {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.delivery_id", &self.delivery_id)?;
        check_id("data.supplier", &self.supplier)?;
        check_id("data.part_number", &self.part_number)?;
        check_id("data.supplier_lot", &self.supplier_lot)?;
        check_opt_id("data.call_off_id", &self.call_off_id)?;
        check_positive("data.quantity", self.quantity)
    }
}

/// A replenishment called off from a supplier (a kanban card sent, a delivery call-off, an
/// advance shipping notice): what is on its way to which station, and when it is promised. The
/// event's time is when it was called off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialCallOff {
    pub call_off_id: String,
    pub supplier: String,
    pub part_number: String,
    pub quantity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(with = "rfc3339")]
    pub promised_at: Timestamp,
}

impl Check for MaterialCallOff {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.call_off_id", &self.call_off_id)?;
        check_id("data.supplier", &self.supplier)?;
        check_id("data.part_number", &self.part_number)?;
        check_opt_id("data.station", &self.station)?;
        check_positive("data.quantity", self.quantity)
    }
}

/// One measured value of an end-of-line test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_limit: Option<f64>,
}

/// An end-of-line test result for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EolTestResult {
    pub vin: String,
    pub test: String,
    pub result: OkNok,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

impl Check for EolTestResult {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.vin", &self.vin)?;
        check_id("data.test", &self.test)?;
        check_opt_id("data.failure_code", &self.failure_code)?;
        for (idx, m) in self.measurements.iter().enumerate() {
            check_id(&format!("data.measurements[{idx}].name"), &m.name)?;
            check_finite(&format!("data.measurements[{idx}].value"), m.value)?;
            check_limits(&format!("data.measurements[{idx}].lower_limit"), m.lower_limit, m.upper_limit)?;
        }
        Ok(())
    }
}

/// One sample of a process parameter (PLC tag, sensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessParameterSample {
    pub equipment: String,
    pub tag: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vin: Option<String>,
}

impl Check for crate::master::WorkOrder {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.work_order", &self.work_order)?;
        check_id("data.vin", &self.vin)?;
        check_id("data.model", &self.model)?;
        for (i, o) in self.options.iter().enumerate() {
            if o.split_once('=').is_none_or(|(f, v)| f.is_empty() || v.is_empty()) {
                return Err(EventError::new(format!("data.options[{i}]"), format!("`{o}` is not FAMILY=VALUE")));
            }
        }
        Ok(())
    }
}

impl Check for crate::master::MasterDataChange {
    fn check(&self) -> Result<(), EventError> {
        check_opt_id("data.revision", &self.revision)?;
        if !self.rows.issued.is_empty() {
            return Err(EventError::new(
                "data.rows.issued",
                "kept by the service from `issued_at`, not set by a change",
            ));
        }
        // Each row by itself; whether it holds together with what is in force is for the
        // moment it takes effect (the writer and the agents, in log order).
        if let Some((row, reason)) = self.rows.row_errors().into_iter().next() {
            return Err(EventError::new(format!("data.rows.{row}"), reason));
        }
        for (i, lot) in self.lots_released.iter().enumerate() {
            check_id(&format!("data.lots_released[{i}]"), lot)?;
        }
        for (i, id) in self.changes_withdrawn.iter().enumerate() {
            check_id(&format!("data.changes_withdrawn[{i}]"), id)?;
        }
        Ok(())
    }
}

impl Check for SourceGap {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.station", &self.station)?;
        if self.count == 0 {
            return Err(EventError::new("data.count", "a gap has at least one missing result"));
        }
        if self.last_id < self.first_id {
            return Err(EventError::new("data.last_id", "is below first_id"));
        }
        check_text("data.reason", &self.reason)
    }
}

impl Check for SourceOutage {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.station", &self.station)?;
        if let Some(until) = self.until
            && until < self.since
        {
            return Err(EventError::new("data.until", "is before since"));
        }
        check_text("data.reason", &self.reason)
    }
}

impl Check for PlanComputed {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.planner", &self.planner)
    }
}

impl Check for ProcessParameterSample {
    fn check(&self) -> Result<(), EventError> {
        check_id("data.equipment", &self.equipment)?;
        check_id("data.tag", &self.tag)?;
        check_finite("data.value", self.value)?;
        check_opt_id("data.station", &self.station)?;
        check_opt_id("data.vin", &self.vin)
    }
}
