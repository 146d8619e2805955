//! The simulated plant behind `jidoka demo`: the plant description (a file or the embedded
//! default) and the feed that paces the simulated line into the runtime.

use crate::runtime::Ingest;
use anyhow::Context;
use jidoka_connectors::sink::{Receipt, Sink, SinkError};
use jidoka_model::{Action, ActionKind};
use jidoka_sim::{CurveMode, Plant, Simulation};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
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

/// Units the demo's MES releases ahead of the line: four hours at 60 jobs per hour.
pub const RELEASE_AHEAD: u64 = 240;

/// What `jidoka demo` simulates.
#[derive(Debug, Clone)]
pub struct DemoFeed {
    pub plant: Plant,
    pub seed: u64,
    pub speed: f64,
    pub units: Option<u64>,
    /// How many units ahead of the line the simulated MES releases work orders: the build queue
    /// the supervisor sees and re-sequencing works on.
    pub release_ahead: u64,
    /// Where the injected faults are logged (JSON Lines).
    pub ground_truth: PathBuf,
}

/// A new build sequence for the simulated line, and where to answer whether it was taken.
type Resequencing = (Vec<(String, u64, u64)>, mpsc::SyncSender<Result<usize, String>>);

/// The demo's MES for new build sequences: an approved re-sequencing is handed to the simulated
/// line between two takts, which follows it (or refuses it whole, naming why: a unit it moves
/// has started meanwhile), and releases the moved work orders again with their new numbers.
#[derive(Debug)]
pub struct SimulatedMes {
    tx: mpsc::Sender<Resequencing>,
    delivered: HashSet<String>,
}

impl SimulatedMes {
    /// The sink, and what the feed ([`run_demo`]) receives from it.
    pub fn new() -> (SimulatedMes, mpsc::Receiver<Resequencing>) {
        let (tx, rx) = mpsc::channel();
        (SimulatedMes { tx, delivered: HashSet::new() }, rx)
    }
}

impl Sink for SimulatedMes {
    fn name(&self) -> &str {
        "simulated-mes"
    }

    fn accepts(&self, kind: ActionKind) -> bool {
        kind == ActionKind::Resequence
    }

    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError> {
        if self.delivered.contains(&action.idempotency_key) {
            return Ok(Receipt { reference: None, already_delivered: true });
        }
        let moves = action
            .sequence_changes()
            .map_err(SinkError::Permanent)?
            .into_iter()
            .map(|c| (c.vin, c.from_sequence, c.to_sequence))
            .collect();
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.send((moves, reply)).map_err(|_| SinkError::Transient("the simulated line has stopped".into()))?;
        match answer.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(n)) => {
                self.delivered.insert(action.idempotency_key.clone());
                Ok(Receipt { reference: Some(format!("{n} work orders re-sequenced")), already_delivered: false })
            }
            Ok(Err(why)) => Err(SinkError::Permanent(format!("the line refused the new sequence: {why}"))),
            Err(_) => Err(SinkError::Transient("the simulated line did not answer".into())),
        }
    }
}

/// Feed the simulated line into the runtime, paced so plant time runs `speed` times faster
/// than wall time, starting now. Events are stamped with plant time (`occurred_at`). New build
/// sequences from `mes` are applied between two takts.
pub async fn run_demo(ingest: Ingest, feed: DemoFeed, mes: Option<mpsc::Receiver<Resequencing>>) -> anyhow::Result<()> {
    let mut plant = feed.plant;
    let now = chrono::Utc::now();
    let plant_start = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    plant.line.start = jidoka_model::event::rfc3339::format(&plant_start);
    let mut sim = Simulation::new(plant, feed.seed, feed.units, CurveMode::All).with_release_ahead(feed.release_ahead);
    let mut truth = std::fs::OpenOptions::new().create(true).append(true).open(&feed.ground_truth)?;
    let wall_start = tokio::time::Instant::now();
    // Each run's source transactions are its own: a demo started again on the same folder is a
    // new stretch of production, not a redelivery of the last one with other times.
    let run = format!("r{}", plant_start.timestamp());
    while sim.has_more() {
        while let Some(Ok((moves, reply))) = mes.as_ref().map(mpsc::Receiver::try_recv) {
            let _ = reply.send(sim.resequence(&moves));
        }
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
