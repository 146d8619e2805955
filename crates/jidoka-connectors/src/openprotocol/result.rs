//! A tightening result from a controller (MID 0061 or 0065, any revision with a layout) as a
//! Jidoka `tightening_result` event.
//!
//! Open Protocol does not say which station or joint a result belongs to: the link's
//! configuration does (`station`, and `joints` from parameter set to joint name). With a batch
//! of more than one bolt the joint is `<name>-<batch counter>`, as the line numbers its bolts.

use super::fields::{Field, Lookup};
use super::frame::OpError;
use super::trace::Trace;
use chrono::{NaiveDateTime, TimeZone, Utc};
use jidoka_model::{Event, Timestamp};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

/// What the link knows that the telegram does not.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultContext<'a> {
    /// Event source (`op:<link name>`).
    pub source: &'a str,
    pub station: &'a str,
    /// Parameter set → joint name; unmapped sets become `P<pset>`.
    pub joints: &'a BTreeMap<String, String>,
    /// Tool serial when the revision carries none (revision 1, 999, 0065 revision 1); without
    /// one, the source name stands for the tool.
    pub tool: Option<&'a str>,
    /// Minutes the controller's clock is ahead of UTC (its timestamps carry no zone).
    pub utc_offset_minutes: i32,
}

/// The controller's tightening id.
pub fn tightening_id(fields: &[Field]) -> Option<u64> {
    fields.int("tightening_id").and_then(|v| u64::try_from(v).ok())
}

/// N·m per unit for the torque unit codes of parameter 48 (`torque_values_unit`).
fn torque_factor(unit: Option<i64>) -> Result<f64, OpError> {
    Ok(match unit {
        None | Some(1) => 1.0,
        Some(2) => 1.355_818,     // lbf·ft
        Some(3) => 0.112_984_8,   // lbf·in
        Some(4) => 9.806_65,      // kp·m
        Some(5) => 0.098_066_5,   // kgf·cm
        Some(6) => 0.007_061_552, // ozf·in
        Some(8) => 0.01,          // N·cm
        Some(other) => {
            return Err(OpError::new(
                "data.torque_values_unit",
                format!("unit code {other} cannot be converted to N·m"),
            ));
        }
    })
}

fn timestamp(fields: &[Field], offset_minutes: i32) -> Result<Timestamp, OpError> {
    let text = fields.text("timestamp").ok_or_else(|| OpError::new("data.timestamp", "is blank"))?;
    let local = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d:%H:%M:%S")
        .map_err(|e| OpError::new("data.timestamp", format!("'{text}' is not a date: {e}")))?;
    Ok(Utc.from_utc_datetime(&local) - chrono::Duration::minutes(i64::from(offset_minutes)))
}

/// The event for a result, with its curve when both traces came. The source transaction id
/// is `<tightening id>@<timestamp>`: a resent result is the same transaction, and a
/// controller whose ids restart does not collide with its past.
pub fn to_event(
    fields: &[Field],
    traces: &[Trace],
    ctx: &ResultContext<'_>,
    received_at: Timestamp,
) -> Result<Event, OpError> {
    let id = tightening_id(fields).ok_or_else(|| OpError::new("data.tightening_id", "is missing or blank"))?;
    let at = timestamp(fields, ctx.utc_offset_minutes)?;
    let factor = torque_factor(fields.int("torque_values_unit"))?;
    let torque = |name: &str| fields.int(name).map(|v| v as f64 / 100.0 * factor);
    let pset = fields.int("parameter_set_id").map(|p| p.to_string()).unwrap_or_else(|| "0".into());
    let size = fields.int("batch_size").unwrap_or(0);
    let counter = fields.int("batch_counter").unwrap_or(0);
    let base = ctx.joints.get(&pset).cloned().unwrap_or_else(|| format!("P{pset}"));
    // A counter beyond the batch (a 4th bolt on a 3-bolt batch: a re-hit, or a batch counted
    // on by hand) numbers no bolt of the joint: the result keeps the joint's own name.
    let in_batch = (1..=size).contains(&counter);
    let joint = if size > 1 && in_batch { format!("{base}-{counter}") } else { base };
    // Revisions without a tool serial: the configured tool, else the link itself.
    let tool = fields
        .text("tool_serial_number")
        .or_else(|| ctx.tool.map(str::to_string))
        .unwrap_or_else(|| ctx.source.to_string());
    // The decimal final angle (revision 7+) when sent, else the whole degrees.
    let angle = fields.int("final_angle_decimal").map(|v| v as f64 / 100.0).or(fields.int("angle").map(|v| v as f64));
    let final_torque = torque("torque").ok_or_else(|| OpError::new("data.torque", "is blank"))?;
    let final_angle = angle.ok_or_else(|| OpError::new("data.angle", "is blank"))?;
    let mut data = json!({
        "tightening_id": id.to_string(),
        "station": ctx.station,
        "tool": tool,
        "pset": pset,
        "joint": joint,
        "final_torque_nm": final_torque,
        "final_angle_deg": final_angle,
    });
    let mut put = |k: &str, v: Option<Json>| {
        if let Some(v) = v {
            data[k] = v;
        }
    };
    put("vin", fields.text("vin_number").map(Json::from));
    put("controller", fields.text("torque_controller_name").map(Json::from));
    put("torque_min_nm", torque("torque_min_limit").map(Json::from));
    put("torque_max_nm", torque("torque_max_limit").map(Json::from));
    put("torque_target_nm", torque("torque_final_target").map(Json::from));
    put("angle_min_deg", fields.int("angle_min").map(Json::from));
    put("angle_max_deg", fields.int("angle_max").map(Json::from));
    put("controller_verdict", fields.int("tightening_status").map(|s| json!(if s == 1 { "OK" } else { "NOK" })));
    if in_batch {
        put("batch", Some(json!({"size": size, "counter": counter})));
    }
    // A trace that cannot be read costs the curve, never the result.
    if let Ok(Some(curve)) = curve(traces, factor) {
        put("curve", Some(curve));
    }
    let mut event = json!({
        "source": ctx.source,
        "source_txn_id": format!("{id}@{}", at.format("%Y-%m-%dT%H:%M:%SZ")),
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "kind": "tightening_result",
        "data": data,
    });
    match Event::parse(event.clone(), received_at) {
        Ok(e) => Ok(e),
        // A curve the store would refuse must not cost the result: keep the result without it.
        Err(e) if e.field.starts_with("data.curve") => {
            if let Some(d) = event["data"].as_object_mut() {
                d.remove("curve");
            }
            Event::parse(event, received_at).map_err(|e| OpError::new(e.field, e.reason))
        }
        Err(e) => Err(OpError::new(e.field, e.reason)),
    }
}

/// The curve from an angle and a torque trace of equal length; `None` without both.
fn curve(traces: &[Trace], torque_factor: f64) -> Result<Option<Json>, OpError> {
    let find = |kind| traces.iter().find(|t| t.trace_type() == Some(kind));
    let (Some(angle), Some(torque)) = (find(super::trace::TRACE_ANGLE), find(super::trace::TRACE_TORQUE)) else {
        return Ok(None);
    };
    let angle_deg = angle.values()?;
    let torque_nm: Vec<f64> = torque.values()?.into_iter().map(|v| v * torque_factor).collect();
    if angle_deg.len() != torque_nm.len() {
        return Err(OpError::new(
            "data.trace_samples",
            format!("the angle trace has {} samples and the torque trace {}", angle_deg.len(), torque_nm.len()),
        ));
    }
    let time_s = torque.times_s().unwrap_or_default();
    Ok(Some(json!({"angle_deg": angle_deg, "torque_nm": torque_nm, "time_s": time_s})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openprotocol::fields::Value;
    use crate::openprotocol::{Body, build, decode, trace};

    fn result_fields(rev: u16) -> Vec<Field> {
        let values = [
            ("tightening_id", Value::Int(42)),
            ("parameter_set_id", Value::Int(11)),
            ("batch_size", Value::Int(4)),
            ("batch_counter", Value::Int(3)),
            ("torque", Value::Int(2512)),
            ("angle", Value::Int(187)),
            ("torque_values_unit", Value::Int(2)),
            ("timestamp", Value::Timestamp("2026-11-25:09:30:00".into())),
        ];
        let t = build(61, rev, &values).unwrap();
        match decode(&t).unwrap() {
            Body::Fields(f) => f,
            other => panic!("{other:?}"),
        }
    }

    /// Regression: a 4th bolt on a 3-bolt batch became joint `P4-4`, a joint the line has not.
    #[test]
    fn a_counter_beyond_the_batch_numbers_no_bolt() {
        let joints = BTreeMap::from([("11".to_string(), "SUBFRAME".to_string())]);
        let ctx =
            ResultContext { source: "op:st010", station: "ST010", joints: &joints, tool: None, utc_offset_minutes: 0 };
        let mut fields = result_fields(3);
        for f in fields.iter_mut().filter(|f| f.name == "batch_counter") {
            f.value = Value::Int(5);
        }
        let e = to_event(&fields, &[], &ctx, Utc::now()).unwrap();
        let jidoka_model::EventPayload::TighteningResult(r) = &e.payload else { panic!("kind") };
        assert_eq!(r.joint, "SUBFRAME");
        assert!(r.batch.is_none(), "no batch position outside the batch");
    }

    #[test]
    fn a_bad_trace_costs_the_curve_not_the_result() {
        let joints = BTreeMap::from([("11".to_string(), "SUBFRAME".to_string())]);
        let ctx =
            ResultContext { source: "op:st010", station: "ST010", joints: &joints, tool: None, utc_offset_minutes: 60 };
        let angle = trace::build(42, "2026-11-25:09:30:00", trace::TRACE_ANGLE, &[0.0, 90.0, 180.0], None).unwrap();
        let mut torque = trace::decode(
            &trace::build(42, "2026-11-25:09:30:00", trace::TRACE_TORQUE, &[0.0, 10.0, 25.0], None).unwrap().data,
        )
        .unwrap();
        // A coefficient of zero cannot scale anything.
        for f in torque.head.iter_mut().filter(|f| f.name == "parameter_data_fields[0].data_value") {
            f.value = Value::Text("0.0E0".into());
            f.width = 5;
        }
        let traces = [trace::decode(&angle.data).unwrap(), torque];
        let e = to_event(&result_fields(3), &traces, &ctx, Utc::now()).unwrap();
        let jidoka_model::EventPayload::TighteningResult(r) = &e.payload else { panic!("kind") };
        assert!(r.curve.is_none());
        assert_eq!(r.joint, "SUBFRAME-3");
        assert_eq!(r.tool, "op:st010", "no tool serial sent or configured: the link stands for it");
        assert!((r.final_torque_nm - 25.12 * 1.355_818).abs() < 1e-9, "lbf·ft converted to N·m");
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-25T08:30:00+00:00", "controller clock one hour ahead of UTC");
        assert_eq!(e.source_txn_id, "42@2026-11-25T08:30:00Z");
    }
}
