//! MID 0900, trace curve data (revision 1): an ASCII head, a NUL, then binary samples.
//!
//! Head: result data identifier (the tightening id, 10), time stamp (19), number of PIDs (3)
//! and that many PID records, trace type (2: 01 angle, 02 torque, 03 current, 04 gradient,
//! 05 stroke, 06 force), transducer type (2), unit (3), number of parameter data fields (3)
//! and that many PID records, number of resolution fields (3) and that many resolution records,
//! number of trace samples (5). A PID record is PID (5), length (3), data type (2), unit (3),
//! step number (4) and `length` characters of value. A resolution record is first index (5),
//! last index (5), length (3), data type (2), unit (3: 200 s, 201 min, 202 ms, 203 h) and the
//! time between two samples in that index range.
//!
//! Samples are 2-byte signed big-endian integers; the value is sample × the coefficient that
//! parameter PID 02213 carries.

use super::fields::{self, F, Field, Lookup, Spec, Ty, Value, W};
use super::frame::{OpError, Telegram};

/// The parameter PID carrying the sample coefficient.
pub const PID_COEFFICIENT: i64 = 2213;
/// Trace types.
pub const TRACE_ANGLE: i64 = 1;
pub const TRACE_TORQUE: i64 = 2;
/// Units.
pub const UNIT_NM: i64 = 1;
pub const UNIT_DEGREE: i64 = 50;
/// Most samples the 5-digit count can announce.
pub const MAX_SAMPLES: usize = 99_999;

/// A PID record (shared with MID 0901): PID, length, data type, unit, step number, value.
pub const PID_RECORD: &[F] = &[
    F { id: None, name: "pid", width: W::Fixed(5), ty: Ty::Int },
    F { id: None, name: "length", width: W::Fixed(3), ty: Ty::Int },
    F { id: None, name: "data_type", width: W::Fixed(2), ty: Ty::Int },
    F { id: None, name: "unit", width: W::Fixed(3), ty: Ty::Int },
    F { id: None, name: "step_no", width: W::Fixed(4), ty: Ty::Int },
    F { id: None, name: "data_value", width: W::From("length"), ty: Ty::Text },
];

const RESOLUTION_RECORD: &[F] = &[
    F { id: None, name: "first_index", width: W::Fixed(5), ty: Ty::Int },
    F { id: None, name: "last_index", width: W::Fixed(5), ty: Ty::Int },
    F { id: None, name: "length", width: W::Fixed(3), ty: Ty::Int },
    F { id: None, name: "data_type", width: W::Fixed(2), ty: Ty::Int },
    F { id: None, name: "unit", width: W::Fixed(3), ty: Ty::Int },
    F { id: None, name: "time_value", width: W::From("length"), ty: Ty::Text },
];

const fn field(name: &'static str, width: usize, ty: Ty) -> Spec {
    Spec::Field(F { id: None, name, width: W::Fixed(width), ty })
}

/// The ASCII head of MID 0900 revision 1.
pub const HEAD: &[Spec] = &[
    field("result_data_identifier", 10, Ty::Int),
    field("timestamp", 19, Ty::Timestamp),
    field("number_of_pids", 3, Ty::Int),
    Spec::Repeat { id: None, name: "data_fields", count: "number_of_pids", fields: PID_RECORD },
    field("trace_type", 2, Ty::Int),
    field("transducer_type", 2, Ty::Int),
    field("unit", 3, Ty::Int),
    field("number_of_parameter_data_fields", 3, Ty::Int),
    Spec::Repeat {
        id: None,
        name: "parameter_data_fields",
        count: "number_of_parameter_data_fields",
        fields: PID_RECORD,
    },
    field("number_of_resolution_fields", 3, Ty::Int),
    Spec::Repeat {
        id: None,
        name: "resolution_fields",
        count: "number_of_resolution_fields",
        fields: RESOLUTION_RECORD,
    },
    field("number_of_trace_samples", 5, Ty::Int),
];

/// A decoded trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The head's fields as sent.
    pub head: Vec<Field>,
    pub samples: Vec<i16>,
}

impl Trace {
    pub fn tightening_id(&self) -> Option<i64> {
        self.head.int("result_data_identifier")
    }

    pub fn trace_type(&self) -> Option<i64> {
        self.head.int("trace_type")
    }

    /// The sample coefficient (PID 02213 among the parameter data fields), 1 when absent.
    pub fn coefficient(&self) -> Result<f64, OpError> {
        let Some(i) = pid_index(&self.head, "parameter_data_fields", PID_COEFFICIENT) else {
            return Ok(1.0);
        };
        let name = format!("parameter_data_fields[{i}].data_value");
        let text = self.head.text(&name).unwrap_or_default();
        text.parse::<f64>().ok().filter(|c| c.is_finite() && *c != 0.0).ok_or_else(|| {
            OpError::new(format!("data.{name}"), format!("coefficient '{text}' is not a finite non-zero number"))
        })
    }

    /// The samples in their unit (sample × coefficient).
    pub fn values(&self) -> Result<Vec<f64>, OpError> {
        let c = self.coefficient()?;
        Ok(self.samples.iter().map(|&s| f64::from(s) * c).collect())
    }

    /// Time of each sample in seconds from the resolution fields, when they cover every sample.
    pub fn times_s(&self) -> Option<Vec<f64>> {
        let n = self.samples.len();
        let mut step = vec![None; n];
        let mut k = 0;
        while let Some(first) = self.head.int(&format!("resolution_fields[{k}].first_index")) {
            let last = self.head.int(&format!("resolution_fields[{k}].last_index"))?;
            let unit = self.head.int(&format!("resolution_fields[{k}].unit"))?;
            let value: f64 = self.head.text(&format!("resolution_fields[{k}].time_value"))?.parse().ok()?;
            let scale = match unit {
                200 => 1.0,
                201 => 60.0,
                202 => 0.001,
                203 => 3600.0,
                _ => return None,
            };
            for slot in step.iter_mut().take((last.max(0) as usize + 1).min(n)).skip(first.max(0) as usize) {
                *slot = Some(value * scale);
            }
            k += 1;
        }
        let mut t = 0.0;
        let mut out = Vec::with_capacity(n);
        for (i, s) in step.iter().enumerate() {
            if i > 0 {
                t += (*s)?;
            }
            out.push(t);
        }
        Some(out)
    }
}

fn pid_index(head: &[Field], list: &str, pid: i64) -> Option<usize> {
    (0..).map_while(|i| head.int(&format!("{list}[{i}].pid")).map(|p| (i, p))).find(|(_, p)| *p == pid).map(|(i, _)| i)
}

/// Decode a MID 0900 telegram's data.
pub fn decode(data: &[u8]) -> Result<Trace, OpError> {
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| OpError::new("data.nul_separator", "no NUL byte between the head and the samples"))?;
    let head = fields::decode(HEAD, &data[..nul])?;
    let n = head.int("number_of_trace_samples").unwrap_or(0).max(0) as usize;
    let body = &data[nul + 1..];
    if body.len() != 2 * n {
        return Err(OpError::new(
            "data.trace_samples",
            format!("number_of_trace_samples says {n} (2 bytes each) but {} bytes follow the NUL", body.len()),
        ));
    }
    let samples = body.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect();
    Ok(Trace { head, samples })
}

/// The data bytes of a trace (head, NUL, samples).
pub fn encode(trace: &Trace) -> Result<Vec<u8>, OpError> {
    let mut out = fields::encode(&trace.head)?;
    out.push(0);
    for s in &trace.samples {
        out.extend_from_slice(&s.to_be_bytes());
    }
    Ok(out)
}

fn pid_record(list: &str, i: usize, pid: i64, unit: i64, value: &str) -> Vec<Field> {
    let f = |name: &str, width: usize, ty: Ty, value: Value| Field {
        name: format!("{list}[{i}].{name}"),
        id: None,
        width,
        ty,
        value,
    };
    vec![
        f("pid", 5, Ty::Int, Value::Int(pid)),
        f("length", 3, Ty::Int, Value::Int(value.len() as i64)),
        f("data_type", 2, Ty::Int, Value::Int(3)),
        f("unit", 3, Ty::Int, Value::Int(unit)),
        f("step_no", 4, Ty::Int, Value::Int(0)),
        f("data_value", value.len(), Ty::Text, Value::Text(value.to_string())),
    ]
}

/// A trace of `values` (N·m or degrees by `trace_type`) sampled every `interval_ms`, as a
/// controller would send it: the coefficient chosen so the largest value uses most of the
/// 16-bit range.
pub fn build(
    tightening_id: u64,
    timestamp: &str,
    trace_type: i64,
    values: &[f64],
    interval_ms: Option<f64>,
) -> Result<Telegram, OpError> {
    if values.len() > MAX_SAMPLES {
        return Err(OpError::new(
            "data.number_of_trace_samples",
            format!("{} samples, at most {MAX_SAMPLES}", values.len()),
        ));
    }
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if !max.is_finite() {
        return Err(OpError::new("data.trace_samples", "values must be finite"));
    }
    let coefficient: f64 = format!("{:.4E}", if max > 0.0 { max / 30_000.0 } else { 1.0 }).parse().unwrap_or(1.0);
    let unit = if trace_type == TRACE_ANGLE { UNIT_DEGREE } else { UNIT_NM };
    let f =
        |name: &str, width: usize, ty: Ty, value: Value| Field { name: name.to_string(), id: None, width, ty, value };
    let mut head = vec![
        f("result_data_identifier", 10, Ty::Int, Value::Int(tightening_id as i64)),
        f("timestamp", 19, Ty::Timestamp, Value::Timestamp(timestamp.to_string())),
        f("number_of_pids", 3, Ty::Int, Value::Int(0)),
        f("trace_type", 2, Ty::Int, Value::Int(trace_type)),
        f("transducer_type", 2, Ty::Int, Value::Int(1)),
        f("unit", 3, Ty::Int, Value::Int(unit)),
        f("number_of_parameter_data_fields", 3, Ty::Int, Value::Int(1)),
    ];
    head.extend(pid_record("parameter_data_fields", 0, PID_COEFFICIENT, 0, &format!("{coefficient:E}")));
    match interval_ms {
        Some(ms) => {
            head.push(f("number_of_resolution_fields", 3, Ty::Int, Value::Int(1)));
            let value = format!("{ms}");
            let r = |name: &str, width: usize, ty: Ty, value: Value| Field {
                name: format!("resolution_fields[0].{name}"),
                id: None,
                width,
                ty,
                value,
            };
            head.extend([
                r("first_index", 5, Ty::Int, Value::Int(0)),
                r("last_index", 5, Ty::Int, Value::Int(values.len().saturating_sub(1) as i64)),
                r("length", 3, Ty::Int, Value::Int(value.len() as i64)),
                r("data_type", 2, Ty::Int, Value::Int(3)),
                r("unit", 3, Ty::Int, Value::Int(202)),
                r("time_value", value.len(), Ty::Text, Value::Text(value)),
            ]);
        }
        None => head.push(f("number_of_resolution_fields", 3, Ty::Int, Value::Int(0))),
    }
    head.push(f("number_of_trace_samples", 5, Ty::Int, Value::Int(values.len() as i64)));
    let samples = values.iter().map(|v| (v / coefficient).round().clamp(-32768.0, 32767.0) as i16).collect();
    let data = encode(&Trace { head, samples })?;
    Ok(Telegram::new(900, 1, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_trace_decodes_to_its_values_and_times() {
        let values: Vec<f64> = (0..500).map(|i| f64::from(i) * 0.05 - 1.0).collect();
        let t = build(4711, "2026-11-25:08:00:00", TRACE_TORQUE, &values, Some(0.5)).unwrap();
        let bytes = t.to_bytes();
        let back = Telegram::parse(&bytes).unwrap();
        let trace = decode(&back.data).unwrap();
        assert_eq!(trace.tightening_id(), Some(4711));
        assert_eq!(trace.trace_type(), Some(TRACE_TORQUE));
        let got = trace.values().unwrap();
        let worst = got.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 24.0 / 30_000.0, "quantisation error {worst}");
        let times = trace.times_s().unwrap();
        assert!((times[499] - 0.2495).abs() < 1e-9);
        assert_eq!(encode(&trace).unwrap(), back.data);
    }

    #[test]
    fn sample_count_must_match_the_bytes() {
        let t = build(1, "2026-11-25:08:00:00", TRACE_ANGLE, &[1.0, 2.0, 3.0], None).unwrap();
        let mut data = t.data.clone();
        data.pop();
        assert_eq!(decode(&data).unwrap_err().field, "data.trace_samples");
        let cut = data.iter().position(|&b| b == 0).unwrap();
        assert_eq!(decode(&data[..cut]).unwrap_err().field, "data.nul_separator");
    }
}
