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

/// What the simulated plant is asked to do: follow a new build sequence (each `(vin, from, to)`)
/// or expedite the delivery of a call-off.
#[derive(Debug, Clone, PartialEq)]
pub enum PlantCommand {
    Resequence(Vec<(String, u64, u64)>),
    Expedite(String),
}

/// A command for the simulated plant, and where to answer it (what was done, or why not).
type Command = (PlantCommand, mpsc::SyncSender<Result<String, String>>);

/// The demo's MES and its suppliers: an approved re-sequencing or expedite is handed to the
/// simulated plant between two takts. The line follows a new sequence (or refuses it whole,
/// naming why: a unit it moves has started meanwhile) and releases the moved work orders again
/// with their new numbers; a supplier answers an expedite with a new promise, or says it cannot.
#[derive(Debug)]
pub struct SimulatedMes {
    tx: mpsc::Sender<Command>,
    delivered: HashSet<String>,
}

impl SimulatedMes {
    /// The sink, and what the feed ([`run_demo`]) receives from it.
    pub fn new() -> (SimulatedMes, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        (SimulatedMes { tx, delivered: HashSet::new() }, rx)
    }
}

impl Sink for SimulatedMes {
    fn name(&self) -> &str {
        "simulated-mes"
    }

    fn accepts(&self, kind: ActionKind) -> bool {
        matches!(kind, ActionKind::Resequence | ActionKind::ExpediteDelivery)
    }

    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError> {
        if self.delivered.contains(&action.idempotency_key) {
            return Ok(Receipt { reference: None, already_delivered: true });
        }
        let command = if action.kind == ActionKind::ExpediteDelivery {
            PlantCommand::Expedite(action.expedite().map_err(SinkError::Permanent)?.call_off_id)
        } else {
            PlantCommand::Resequence(
                action
                    .sequence_changes()
                    .map_err(SinkError::Permanent)?
                    .into_iter()
                    .map(|c| (c.vin, c.from_sequence, c.to_sequence))
                    .collect(),
            )
        };
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.send((command, reply)).map_err(|_| SinkError::Transient("the simulated line has stopped".into()))?;
        match answer.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(done)) => {
                self.delivered.insert(action.idempotency_key.clone());
                Ok(Receipt { reference: Some(done), already_delivered: false })
            }
            Ok(Err(why)) => Err(SinkError::Permanent(format!("refused: {why}"))),
            Err(_) => Err(SinkError::Transient("the simulated line did not answer".into())),
        }
    }
}

/// Feed the simulated line into the runtime, paced so plant time runs `speed` times faster
/// than wall time, starting now. Events are stamped with plant time (`occurred_at`). New build
/// sequences from `mes` are applied between two takts.
pub async fn run_demo(ingest: Ingest, feed: DemoFeed, mes: Option<mpsc::Receiver<Command>>) -> anyhow::Result<()> {
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
        while let Some(Ok((command, reply))) = mes.as_ref().map(mpsc::Receiver::try_recv) {
            let answer = match command {
                PlantCommand::Resequence(moves) => sim
                    .resequence(&moves)
                    .map(|n| format!("{n} work orders re-sequenced"))
                    .map_err(|why| format!("the line refused the new sequence: {why}")),
                PlantCommand::Expedite(call_off) => sim.expedite(&call_off),
            };
            let _ = reply.send(answer);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use jidoka_model::ActionStatus;

    fn expedite(call_off: &str) -> Action {
        Action {
            action_id: "A1".into(),
            finding_id: "F1".into(),
            kind: ActionKind::ExpediteDelivery,
            status: ActionStatus::Approved,
            payload: serde_json::json!({"details": {"expedite": {"call_off_id": call_off, "supplier": "SUP-SEAT",
                                                                  "part": "SEAT-STD", "quantity": 40.0}}}),
            idempotency_key: format!("jidoka:{call_off}"),
            correlation_id: "c".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_approved_expedite_reaches_the_simulated_supplier_once() {
        let (mut sink, rx) = SimulatedMes::new();
        assert!(sink.accepts(ActionKind::ExpediteDelivery) && sink.accepts(ActionKind::Resequence));
        assert!(!sink.accepts(ActionKind::PlaceHold));
        let mut plant = jidoka_sim::Plant::default_plant().unwrap();
        for s in &mut plant.suppliers {
            s.expedite_rate = 1.0;
        }
        let mut sim = Simulation::new(plant, 4, None, CurveMode::None);
        // Run the line until a bin is called off.
        let mut call_off = None;
        while call_off.is_none() {
            for e in sim.next_slot().events {
                if let jidoka_model::EventPayload::MaterialCallOff(c) = e.payload {
                    call_off.get_or_insert(c.call_off_id);
                }
            }
        }
        let line = std::thread::spawn(move || {
            let mut answers = 0;
            while let Ok((command, reply)) = rx.recv() {
                let answer = match command {
                    PlantCommand::Expedite(id) => sim.expedite(&id),
                    PlantCommand::Resequence(_) => Err("not here".into()),
                };
                answers += 1;
                let _ = reply.send(answer);
            }
            answers
        });
        let id = call_off.unwrap();
        let receipt = sink.deliver(&expedite(&id)).expect("the supplier answers");
        assert!(receipt.reference.as_deref().is_some_and(|r| r.contains(&id)), "{receipt:?}");
        // Again: already delivered, the supplier not asked twice.
        assert!(sink.deliver(&expedite(&id)).unwrap().already_delivered);
        // A call-off not in transit is refused for good, naming it.
        let err = sink.deliver(&expedite("CO-999999")).unwrap_err();
        assert!(matches!(&err, SinkError::Permanent(m) if m.contains("CO-999999")), "{err:?}");
        drop(sink);
        assert_eq!(line.join().unwrap(), 2);
    }
}
