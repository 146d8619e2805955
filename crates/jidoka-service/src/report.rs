//! Output of `eval` and `bench`: a readable table by default, one JSON object with `--json`,
//! and a progress bar on a terminal (silent when piped).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};
use std::io::IsTerminal;

#[derive(Debug, Clone)]
struct Row {
    key: String,
    label: String,
    value: Value,
    unit: String,
}

/// A titled list of figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    title: String,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report { title: title.into(), rows: Vec::new() }
    }

    /// Add a figure: JSON key, table label, value, unit (may be empty).
    pub fn add(&mut self, key: &str, label: &str, value: impl Into<Value>, unit: &str) -> &mut Self {
        self.rows.push(Row { key: key.into(), label: label.into(), value: value.into(), unit: unit.into() });
        self
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for row in &self.rows {
            map.insert(row.key.clone(), row.value.clone());
        }
        Value::Object(map)
    }

    pub fn to_table(&self) -> String {
        let width = self.rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0);
        let mut out = format!("{}\n{}\n", self.title, "-".repeat(self.title.chars().count()));
        for row in &self.rows {
            let value = match &row.value {
                Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or_default();
                    if f.abs() >= 100.0 {
                        format!("{f:.0}")
                    } else if f.abs() >= 1.0 {
                        format!("{f:.2}")
                    } else {
                        format!("{f:.4}")
                    }
                }
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let pad = width - row.label.chars().count();
            out.push_str(&format!("{}{}  {value} {}\n", row.label, " ".repeat(pad), row.unit));
        }
        out
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.to_table());
        }
    }
}

/// A progress bar drawn only when stderr is a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// The machine figures were measured on, for the record.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpus} cores, {model}")
}

/// Percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json_carry_the_same_figures() {
        let mut r = Report::new("bench ingest");
        r.add("events_per_s", "throughput", 25_000.4, "events/s").add("p99_ms", "p99 latency", 3.21, "ms");
        assert_eq!(r.to_json()["p99_ms"], 3.21);
        let table = r.to_table();
        assert!(table.contains("throughput   25000 events/s"), "{table}");
        assert!(table.contains("p99 latency  3.21 ms"), "{table}");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
