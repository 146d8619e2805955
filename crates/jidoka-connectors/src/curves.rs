//! Exported tightening curves read from files and folders, for offline review
//! (`jidoka analyze torque`) and evaluation: Bosch Rexroth channel JSON (Nexo, CS351), JSON
//! Lines of those (optionally gzip-compressed, also the `{"file", "run"}` wrapping), event
//! JSON / JSON Lines, and CSV with angle / torque / time columns.
//!
//! Each tightening found is handed to a callback with its source (file, or `file:line`) as a
//! [`CurveRecord`]; a record that cannot be read carries an error naming the field and the
//! reason, and the rest of the input is still read. Folders are walked recursively in name
//! order; files of other types inside folders are skipped, named files of unknown type are an
//! error.

use crate::bosch::parse_channel;
use jidoka_model::event::{Curve, OkNok};
use jidoka_model::{EventError, EventPayload, TighteningResult};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Station name given to tightenings read from controller exports (they carry none).
pub const OFFLINE_STATION: &str = "offline";

/// One tightening read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRecord {
    /// The input file, with `:line` for JSON Lines and `#name` for wrapped runs.
    pub source: String,
    pub tightening: Result<TighteningResult, EventError>,
    /// Workpiece (Bosch `id code`), when the export has one.
    pub workpiece: Option<String>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError::new(field, reason)
}

/// A tightening from a Bosch channel export (station [`OFFLINE_STATION`], joint `-`, pset the
/// program name, target the last step's torque target, no windows).
pub fn from_channel(doc: &Value) -> (Result<TighteningResult, EventError>, Option<String>) {
    match parse_channel(doc) {
        Err(e) => (Err(e), None),
        Ok(run) => {
            let pset = if run.program_name.is_empty() { run.program_number.clone() } else { run.program_name.clone() };
            let t = TighteningResult {
                tightening_id: if run.cycle.is_empty() { "-".into() } else { run.cycle.clone() },
                vin: None,
                station: OFFLINE_STATION.into(),
                tool: if run.tool_serial.is_empty() { "-".into() } else { run.tool_serial.clone() },
                controller: None,
                pset: if pset.is_empty() { "-".into() } else { pset },
                joint: "-".into(),
                category: None,
                batch: None,
                final_torque_nm: run.final_torque_nm,
                final_angle_deg: run.final_angle_deg,
                torque_target_nm: run.target_torque_nm,
                torque_min_nm: None,
                torque_max_nm: None,
                angle_min_deg: None,
                angle_max_deg: None,
                controller_verdict: run.result,
                curve: Some(run.curve),
            };
            (Ok(t), run.id_code)
        }
    }
}

/// A JSON document: a channel export, a `{"file", "run"}` wrapper or an event.
fn from_document(doc: &Value, source: String, out: &mut dyn FnMut(CurveRecord)) {
    if let (Some(name), Some(run)) = (doc.get("file").and_then(Value::as_str), doc.get("run")) {
        let (tightening, workpiece) = from_channel(run);
        out(CurveRecord { source: format!("{source}#{name}"), tightening, workpiece });
    } else if doc.get("tightening steps").is_some() {
        let (tightening, workpiece) = from_channel(doc);
        out(CurveRecord { source, tightening, workpiece });
    } else if doc.get("kind").is_some() {
        let tightening = match jidoka_model::Event::parse(doc.clone(), chrono::DateTime::UNIX_EPOCH) {
            Err(e) => Err(e),
            Ok(ev) => match ev.payload {
                EventPayload::TighteningResult(t) => Ok(t),
                // Other event kinds in an event file are not tightenings: not an error.
                _ => return,
            },
        };
        out(CurveRecord { source, tightening, workpiece: None });
    } else {
        out(CurveRecord {
            source,
            tightening: Err(err("", "neither a Bosch channel export ('tightening steps') nor an event ('kind')")),
            workpiece: None,
        });
    }
}

fn kind_of(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".jsonl.gz") || name.ends_with(".ndjson.gz") {
        Some("jsonl.gz")
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        Some("jsonl")
    } else if name.ends_with(".json") {
        Some("json")
    } else if name.ends_with(".csv") {
        Some("csv")
    } else {
        None
    }
}

/// Every file to read under `paths`, in order: named files as given, folders walked in name order.
pub fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            out.push(dir.to_path_buf());
            return;
        };
        // Symbolic links to folders are not followed (a link to `.` would loop).
        let mut children: Vec<(PathBuf, bool)> =
            entries.filter_map(|e| e.ok()).map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir()))).collect();
        children.sort();
        for (child, is_dir) in children {
            if is_dir {
                walk(&child, out);
            } else if kind_of(&child).is_some() && child.is_file() {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Read every tightening in `file`, handing each to `out`.
pub fn read_file(file: &Path, out: &mut dyn FnMut(CurveRecord)) {
    let source = file.display().to_string();
    let fail = |out: &mut dyn FnMut(CurveRecord), field: &str, reason: String| {
        out(CurveRecord { source: source.clone(), tightening: Err(err(field, reason)), workpiece: None })
    };
    let Some(kind) = kind_of(file) else {
        return fail(out, "file", "unknown file type: expected .json, .jsonl, .jsonl.gz or .csv".into());
    };
    let handle = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return fail(out, "file", format!("cannot open: {e}")),
    };
    match kind {
        "json" => {
            let mut text = String::new();
            if let Err(e) = BufReader::new(handle).read_to_string(&mut text) {
                return fail(out, "file", format!("cannot read: {e}"));
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(doc) => from_document(&doc, source.clone(), out),
                Err(e) => fail(out, "", format!("not JSON: {e}")),
            }
        }
        "jsonl" | "jsonl.gz" => {
            let reader: Box<dyn BufRead> = if kind == "jsonl.gz" {
                Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(handle)))
            } else {
                Box::new(BufReader::new(handle))
            };
            for (i, line) in reader.lines().enumerate() {
                let at = format!("{source}:{}", i + 1);
                match line {
                    Err(e) => {
                        out(CurveRecord {
                            source: at,
                            tightening: Err(err("", format!("cannot read: {e}"))),
                            workpiece: None,
                        });
                        break;
                    }
                    Ok(line) if line.trim().is_empty() => {}
                    Ok(line) => match serde_json::from_str::<Value>(&line) {
                        Ok(doc) => from_document(&doc, at, out),
                        Err(e) => out(CurveRecord {
                            source: at,
                            tightening: Err(err("", format!("not JSON: {e}"))),
                            workpiece: None,
                        }),
                    },
                }
            }
        }
        _ => {
            let mut text = String::new();
            if let Err(e) = BufReader::new(handle).read_to_string(&mut text) {
                return fail(out, "file", format!("cannot read: {e}"));
            }
            let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("curve").to_string();
            out(CurveRecord { source: source.clone(), tightening: parse_csv(&text, &name), workpiece: None });
        }
    }
}

/// Unit factor to N·m / degrees / seconds from a column header such as `torque [Nm]`,
/// `Torque (N·m)`, `angle_deg`, `time_ms`. No unit given: N·m, degrees, seconds.
fn unit_factor(quantity: &str, header: &str) -> Result<f64, String> {
    let h = header.to_ascii_lowercase().replace(['[', ']', '(', ')', '_', ' ', '.', '·', '-', '/'], "");
    let unit = h.strip_prefix(quantity).unwrap_or(&h);
    let factor = match (quantity, unit) {
        ("torque", "" | "nm") => 1.0,
        ("torque", "ncm") => 0.01,
        ("torque", "nmm") => 0.001,
        ("torque", "knm") => 1000.0,
        ("torque", "lbfft" | "ftlb" | "ftlbf") => 1.355_817_948,
        ("torque", "lbfin" | "inlb" | "inlbf") => 0.112_984_829,
        ("angle", "" | "deg" | "degree" | "degrees" | "°") => 1.0,
        ("angle", "rad") => 180.0 / std::f64::consts::PI,
        ("angle", "rev" | "turns") => 360.0,
        ("time", "" | "s" | "sec") => 1.0,
        ("time", "ms") => 0.001,
        _ => return Err(format!("unknown unit in column '{header}'")),
    };
    Ok(factor)
}

/// One curve from CSV text: a header naming `angle`, `torque` and optionally `time` columns
/// (with units), `,` or `;` separated.
pub fn parse_csv(text: &str, name: &str) -> Result<TighteningResult, EventError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| err("header", "the file is empty"))?;
    let sep = if header.contains(';') { ';' } else { ',' };
    let columns: Vec<String> = header.split(sep).map(|c| c.trim().trim_matches('"').to_string()).collect();
    let find = |q: &str| columns.iter().position(|c| c.to_ascii_lowercase().starts_with(q));
    let angle_col = find("angle").ok_or_else(|| err("header", "no angle column"))?;
    let torque_col = find("torque").ok_or_else(|| err("header", "no torque column"))?;
    let time_col = find("time");
    let unit =
        |q: &str, col: usize| unit_factor(q, &columns[col]).map_err(|r| err(format!("header.{}", columns[col]), r));
    let (fa, ft) = (unit("angle", angle_col)?, unit("torque", torque_col)?);
    let fs = match time_col {
        Some(c) => Some(unit("time", c)?),
        None => None,
    };
    let mut curve = Curve { angle_deg: Vec::new(), torque_nm: Vec::new(), time_s: Vec::new() };
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(sep).map(|c| c.trim().trim_matches('"')).collect();
        let cell =
            |col: usize, factor: f64| -> Result<f64, EventError> {
                let raw = cells.get(col).copied().unwrap_or("");
                raw.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v * factor).ok_or_else(|| {
                    err(format!("row {}.{}", i + 1, columns[col]), format!("not a finite number: '{raw}'"))
                })
            };
        curve.angle_deg.push(cell(angle_col, fa)?);
        curve.torque_nm.push(cell(torque_col, ft)?);
        if let (Some(c), Some(f)) = (time_col, fs) {
            curve.time_s.push(cell(c, f)?);
        }
    }
    if curve.torque_nm.len() < 2 {
        return Err(err("rows", format!("needs at least 2 samples, has {}", curve.torque_nm.len())));
    }
    let peak_idx =
        curve.torque_nm.iter().enumerate().fold(0, |b, (i, t)| if t.abs() > curve.torque_nm[b].abs() { i } else { b });
    Ok(TighteningResult {
        tightening_id: name.to_string(),
        vin: None,
        station: OFFLINE_STATION.into(),
        tool: "-".into(),
        controller: None,
        pset: "-".into(),
        joint: "-".into(),
        category: None,
        batch: None,
        final_torque_nm: curve.torque_nm[peak_idx],
        final_angle_deg: curve.angle_deg[peak_idx] - curve.angle_deg[0],
        torque_target_nm: None,
        torque_min_nm: None,
        torque_max_nm: None,
        angle_min_deg: None,
        angle_max_deg: None,
        controller_verdict: None,
        curve: Some(curve),
    })
}

/// Whether `v` is one of OK / NOK.
pub fn is_nok(v: Option<OkNok>) -> bool {
    v == Some(OkNok::Nok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_units_and_semicolons() {
        let t = parse_csv("Time [ms];Angle [deg];Torque [Ncm]\n0;0;10\n1;5;150\n2;6;20\n", "c1").unwrap();
        let c = t.curve.unwrap();
        assert_eq!(c.torque_nm, vec![0.1, 1.5, 0.2]);
        assert_eq!(c.time_s, vec![0.0, 0.001, 0.002]);
        assert_eq!(t.final_torque_nm, 1.5);
        assert_eq!(t.final_angle_deg, 5.0);
    }

    #[test]
    fn csv_errors_name_the_field() {
        assert_eq!(parse_csv("", "x").unwrap_err().field, "header");
        assert_eq!(parse_csv("angle,torque [lbs]\n1,2\n2,3\n", "x").unwrap_err().field, "header.torque [lbs]");
        let e = parse_csv("angle,torque\n1,2\n2,NaN\n", "x").unwrap_err();
        assert_eq!(e.field, "row 3.torque");
        assert_eq!(parse_csv("angle,torque\n1,2\n", "x").unwrap_err().field, "rows");
        assert_eq!(parse_csv("torque\n1\n2\n", "x").unwrap_err().field, "header");
    }

    #[cfg(unix)]
    #[test]
    fn folders_are_walked_without_following_links() {
        let dir = std::env::temp_dir().join(format!("jidoka-curves-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.csv"), "angle,torque\n0,1\n1,2\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a curve").unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
        let files = expand(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files, vec![dir.join("sub/a.csv")]);
    }

    #[test]
    fn unknown_document_is_an_error_not_a_panic() {
        let mut got = Vec::new();
        from_document(&serde_json::json!({"x": 1}), "s".into(), &mut |r| got.push(r));
        assert!(got[0].tightening.is_err());
        from_document(&serde_json::json!({"file": "f", "run": {"x": 1}}), "s".into(), &mut |r| got.push(r));
        assert_eq!(got[1].source, "s#f");
        assert!(got[1].tightening.is_err());
    }
}
