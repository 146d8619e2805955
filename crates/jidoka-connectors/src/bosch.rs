//! Bosch Rexroth "channel" JSON, the export of Nexo and CS351 tightening controllers: one
//! tightening per file, with its steps, each step's tightening functions (nominal and actual)
//! and a graph of parallel arrays (time, angle, torque, ...). [`parse_channel`] turns one file
//! into a [`ChannelRun`]; [`ChannelRun::to_event`] into a `tightening_result` event.
//!
//! The curve is the steps' graphs joined in order. The final torque and angle are the last
//! step's actual values as the controller reports them. The export's `date` carries no time
//! zone; it is read as UTC.

use jidoka_model::EventError;
use jidoka_model::event::{Curve, OkNok};
use serde_json::{Value, json};

/// One tightening from a channel export.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRun {
    pub result: Option<OkNok>,
    pub program_number: String,
    pub program_name: String,
    pub cycle: String,
    pub id_code: Option<String>,
    pub tool_serial: String,
    /// `YYYY-MM-DD hh:mm:ss` as exported.
    pub date: String,
    /// The export's top-level `nominal torque`: a program setting (6 N·m on the CS351 runs that
    /// stop at 1.4 N·m), not the joint's target.
    pub nominal_torque_nm: Option<f64>,
    /// The last step's torque target (`TF Torque` nominal), when it ends on torque.
    pub target_torque_nm: Option<f64>,
    pub final_torque_nm: f64,
    pub final_angle_deg: f64,
    /// Step names with their own OK/NOK.
    pub steps: Vec<(String, Option<OkNok>)>,
    pub curve: Curve,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError::new(field, reason)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn ok_nok(v: &Value) -> Option<OkNok> {
    match v.as_str().map(str::trim) {
        Some("OK") => Some(OkNok::Ok),
        Some("NOK") => Some(OkNok::Nok),
        _ => None,
    }
}

fn numbers(v: Option<&Value>, field: &str) -> Result<Vec<f64>, EventError> {
    let arr = v.and_then(Value::as_array).ok_or_else(|| err(field, "missing or not an array"))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| err(format!("{field}[{i}]"), "not a finite number"))
        })
        .collect()
}

/// The actual value of a tightening function (`TF Torque`, `TF Angle`...) of a step.
fn function_value(step: &Value, name: &str, which: &str) -> Option<f64> {
    step.get("tightening functions")?
        .as_array()?
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))?
        .get(which)?
        .as_f64()
        .filter(|v| v.is_finite())
}

fn function_actual(step: &Value, name: &str) -> Option<f64> {
    function_value(step, name, "act")
}

/// Parse one channel JSON document.
pub fn parse_channel(doc: &Value) -> Result<ChannelRun, EventError> {
    let obj = doc.as_object().ok_or_else(|| err("$", "expected a JSON object"))?;
    if let Some(format) = obj.get("format").and_then(Value::as_str)
        && format != "channel"
    {
        return Err(err("format", format!("`{format}` is not the channel format")));
    }
    let steps = obj
        .get("tightening steps")
        .and_then(Value::as_array)
        .ok_or_else(|| err("tightening steps", "missing or not an array"))?;
    if steps.is_empty() {
        return Err(err("tightening steps", "no steps"));
    }
    let (mut time, mut angle, mut torque) = (Vec::new(), Vec::new(), Vec::new());
    let mut step_results = Vec::new();
    let mut last_step_start = 0;
    for (i, step) in steps.iter().enumerate() {
        let field = format!("tightening steps[{i}].graph");
        let graph = step.get("graph").ok_or_else(|| err(&field, "missing"))?;
        // Time is optional: a graph without it still has a curve.
        let t = match graph.get("time values") {
            None | Some(Value::Null) => Vec::new(),
            v => numbers(v, &format!("{field}.time values"))?,
        };
        let a = numbers(graph.get("angle values"), &format!("{field}.angle values"))?;
        let q = numbers(graph.get("torque values"), &format!("{field}.torque values"))?;
        if a.len() != q.len() || (!t.is_empty() && t.len() != q.len()) {
            return Err(err(
                &field,
                format!("arrays differ in length: time {}, angle {}, torque {}", t.len(), a.len(), q.len()),
            ));
        }
        last_step_start = angle.len();
        time.extend(t);
        angle.extend(a);
        torque.extend(q);
        let name = step.get("name").and_then(text).unwrap_or_else(|| format!("step {}", i + 1));
        step_results.push((name, step.get("result").and_then(ok_nok)));
    }
    let last = steps.last().unwrap_or(&Value::Null);
    let final_torque_nm = function_actual(last, "TF Torque")
        .or_else(|| last.get("torque").and_then(Value::as_f64))
        .or_else(|| torque.iter().copied().reduce(f64::max))
        .ok_or_else(|| err("tightening steps", "no torque values"))?;
    // The last step's own angle: reported directly (Nexo), as a target or monitor function
    // (CS351), or else its span in the graph, never the angle accumulated over all steps.
    let final_angle_deg = last
        .get("angle")
        .and_then(Value::as_f64)
        .or_else(|| function_actual(last, "TF Angle"))
        .or_else(|| function_actual(last, "MF AngleMin"))
        .or_else(|| function_actual(last, "MFs AngleMax"))
        .or_else(|| Some(angle.last()? - angle.get(last_step_start)?))
        .ok_or_else(|| err("tightening steps", "no angle values"))?;
    let curve = Curve { angle_deg: angle, torque_nm: torque, time_s: time };
    curve.check("curve")?;
    Ok(ChannelRun {
        result: obj.get("result").and_then(ok_nok),
        program_number: obj.get("prg nr").and_then(text).unwrap_or_default(),
        program_name: obj.get("prg name").and_then(text).unwrap_or_default(),
        cycle: obj.get("cycle").and_then(text).ok_or_else(|| err("cycle", "missing"))?,
        id_code: obj.get("id code").and_then(text).filter(|s| !s.is_empty()),
        tool_serial: obj.get("tool serial").and_then(text).unwrap_or_else(|| "unknown".into()),
        date: obj.get("date").and_then(text).ok_or_else(|| err("date", "missing"))?,
        nominal_torque_nm: obj.get("nominal torque").and_then(Value::as_f64),
        target_torque_nm: function_value(last, "TF Torque", "nom").filter(|v| *v > 0.0),
        final_torque_nm,
        final_angle_deg,
        steps: step_results,
        curve,
    })
}

impl ChannelRun {
    /// A `tightening_result` event (wire form). `station` names where the controller works;
    /// the source is the tool, the transaction its cycle number.
    pub fn to_event(&self, station: &str) -> Result<Value, EventError> {
        let at = chrono::NaiveDateTime::parse_from_str(&self.date, "%Y-%m-%d %H:%M:%S")
            .map_err(|e| err("date", format!("`{}` is not YYYY-MM-DD hh:mm:ss: {e}", self.date)))?
            .and_utc();
        let mut data = json!({
            "tightening_id": self.cycle,
            "station": station,
            "tool": self.tool_serial,
            "pset": if self.program_number.is_empty() { self.program_name.clone() } else { self.program_number.clone() },
            "joint": if self.program_name.is_empty() { "unknown".to_string() } else { self.program_name.clone() },
            "final_torque_nm": self.final_torque_nm,
            "final_angle_deg": self.final_angle_deg,
            "curve": self.curve,
        });
        if let Some(id) = &self.id_code {
            data["vin"] = json!(id);
        }
        if let Some(n) = self.target_torque_nm {
            data["torque_target_nm"] = json!(n);
        }
        if let Some(r) = self.result {
            data["controller_verdict"] = json!(r);
        }
        Ok(json!({
            "source": format!("bosch:{}", self.tool_serial),
            "source_txn_id": self.cycle,
            "occurred_at": jidoka_model::event::rfc3339::format(&at),
            "kind": "tightening_result",
            "data": data,
        }))
    }
}
