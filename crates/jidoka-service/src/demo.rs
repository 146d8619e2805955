//! The simulated plant behind `jidoka demo`: the plant description (a file or the embedded
//! default) and the feed that paces the simulated line into the runtime.

use crate::runtime::Ingest;
use anyhow::Context;
use jidoka_sim::{CurveMode, Plant, Simulation};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plant from a file, or the embedded default; with its TOML text.
pub fn load_plant(path: Option<&Path>) -> anyhow::Result<(Plant, String)> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read plant {}", p.display()))?,
        None => jidoka_sim::plant::DEFAULT_PLANT.to_string(),
    };
    let plant = Plant::parse(&text).map_err(|e| {
        let name = path.map(|p| p.display().to_string()).unwrap_or_else(|| "default plant".into());
        anyhow::anyhow!("{name}:\n{e}")
    })?;
    Ok((plant, text))
}

/// What `jidoka demo` simulates.
#[derive(Debug, Clone)]
pub struct DemoFeed {
    pub plant: Plant,
    pub seed: u64,
    pub speed: f64,
    pub units: Option<u64>,
    /// Where the injected faults are logged (JSON Lines).
    pub ground_truth: PathBuf,
}

/// Feed the simulated line into the runtime, paced so plant time runs `speed` times faster
/// than wall time, starting now. Events are stamped with plant time (`occurred_at`).
pub async fn run_demo(ingest: Ingest, feed: DemoFeed) -> anyhow::Result<()> {
    let mut plant = feed.plant;
    let now = chrono::Utc::now();
    let plant_start = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    plant.line.start = jidoka_model::event::rfc3339::format(&plant_start);
    let mut sim = Simulation::new(plant, feed.seed, feed.units, CurveMode::All);
    let mut truth = std::fs::OpenOptions::new().create(true).append(true).open(&feed.ground_truth)?;
    let wall_start = tokio::time::Instant::now();
    // Each run's source transactions are its own: a demo started again on the same folder is a
    // new stretch of production, not a redelivery of the last one with other times.
    let run = format!("r{}", plant_start.timestamp());
    while sim.has_more() {
        let mut slot = sim.next_slot();
        let mut renamed = std::collections::HashMap::new();
        for ev in &mut slot.events {
            let default_correlation = ev.correlation_id == format!("{}:{}", ev.source, ev.source_txn_id);
            ev.source_txn_id = format!("{run}-{}", ev.source_txn_id);
            let id = jidoka_model::stable_id("ev", &[&ev.source, &ev.source_txn_id]);
            renamed.insert(std::mem::replace(&mut ev.event_id, id.clone()), id);
            if default_correlation {
                ev.correlation_id = format!("{}:{}", ev.source, ev.source_txn_id);
            }
        }
        for t in &mut slot.truth {
            if let Some(id) = t.event_id.as_mut().and_then(|e| renamed.get(e)) {
                t.event_id = Some(id.clone());
            }
            let mut line = serde_json::to_vec(&*t)?;
            line.push(b'\n');
            truth.write_all(&line)?;
        }
        let mut pending = Vec::new();
        let mut pending_due = Duration::ZERO;
        for mut ev in slot.events {
            let plant_offset = (ev.occurred_at - plant_start).to_std().unwrap_or_default();
            let due = plant_offset.div_f64(feed.speed);
            if due > pending_due + Duration::from_millis(20) && !pending.is_empty() {
                tokio::time::sleep_until(wall_start + pending_due).await;
                if ingest.append(std::mem::take(&mut pending), None).await.is_err() {
                    return Ok(());
                }
            }
            if pending.is_empty() {
                pending_due = due;
            }
            ev.received_at = chrono::Utc::now();
            pending.push(ev);
        }
        if !pending.is_empty() {
            tokio::time::sleep_until(wall_start + pending_due).await;
            if ingest.append(pending, None).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
