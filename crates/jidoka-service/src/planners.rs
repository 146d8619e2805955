//! The planner worker: slow computations off the writer's commit. A request names a planner;
//! when its turn comes the worker asks the writer for a copy of every agent's state at its
//! committed log position (taken between two commits), reads that planner's window of the log
//! up to the same position, runs the plan under its deadline and appends the result as a
//! `plan_computed` event (source `planner:<name>`, keyed by planner and position, so the same
//! plan twice is one event). The queue is bounded; a newer request for a planner replaces its older one,
//! queued or running. Timings and outcomes are in `/metrics`.

use crate::metrics::Metrics;
use crate::runtime::Ingest;
use jidoka_agents::planner::{Budget, PlanInput, PlanStop, Planner};
use jidoka_model::{Event, StoredEvent};
use jidoka_store::Store;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests waiting for the worker at most.
pub const QUEUE: usize = 8;

struct Request {
    planner: usize,
    cancel: Arc<AtomicBool>,
}

/// The worker and the handle to ask it for plans.
pub struct Planners {
    planners: Arc<Vec<(Arc<dyn Planner>, Duration)>>,
    tx: Option<SyncSender<Request>>,
    /// The cancel flag of each planner's newest request.
    newest: Arc<Mutex<HashMap<usize, Arc<AtomicBool>>>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Planners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.planners.iter().map(|(p, _)| p.name()).collect();
        f.debug_struct("Planners").field("planners", &names).finish_non_exhaustive()
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Queued,
    /// The queue was full; ask again later.
    Busy,
    UnknownPlanner,
}

impl Planners {
    /// Start the worker for `planners`, each with its deadline.
    pub fn start(
        planners: Vec<(Arc<dyn Planner>, Duration)>,
        store: Arc<dyn Store>,
        ingest: Ingest,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Planners> {
        let planners = Arc::new(planners);
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let worker = {
            let planners = planners.clone();
            std::thread::Builder::new()
                .name("planners".into())
                .spawn(move || worker(&planners, rx, store.as_ref(), &ingest, &metrics))?
        };
        Ok(Planners { planners, tx: Some(tx), newest: Arc::default(), worker: Some(worker) })
    }

    /// Ask `name` to compute from the log position the writer has reached when its turn comes;
    /// an older request of it is cancelled.
    pub fn request(&self, name: &str) -> Asked {
        let Some(planner) = self.planners.iter().position(|(p, _)| p.name() == name) else {
            return Asked::UnknownPlanner;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let Some(tx) = &self.tx else { return Asked::Busy };
        match tx.try_send(Request { planner, cancel: cancel.clone() }) {
            Ok(()) => {
                let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(older) = newest.insert(planner, cancel) {
                    older.store(true, Relaxed);
                }
                Asked::Queued
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Asked::Busy,
        }
    }

    /// Stop: the running plan is cancelled, queued ones are dropped, the worker is joined.
    pub fn shutdown(mut self) {
        for c in self.newest.lock().unwrap_or_else(|p| p.into_inner()).values() {
            c.store(true, Relaxed);
        }
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn worker(
    planners: &[(Arc<dyn Planner>, Duration)],
    rx: Receiver<Request>,
    store: &dyn Store,
    ingest: &Ingest,
    metrics: &Metrics,
) {
    while let Ok(req) = rx.recv() {
        let (planner, deadline) = &planners[req.planner];
        if req.cancel.load(Relaxed) {
            metrics.planner_superseded.fetch_add(1, Relaxed);
            continue;
        }
        let started = Instant::now();
        let budget = Budget { deadline: started + *deadline, cancel: req.cancel.clone() };
        // The agents' state and the log window at one position; without agents, the log alone.
        let snapshot = match ingest.blocking_snapshot() {
            Ok(Some((at, agents))) => Ok((at, Some(agents))),
            Ok(None) => store.last_seq().map(|at| (at, None)).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let (at_seq, agents) = match snapshot {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(planner = planner.name(), error = %err, "no snapshot to plan from");
                continue;
            }
        };
        let outcome = read_window(store, planner.as_ref(), at_seq, &budget).and_then(|events| {
            let input = PlanInput { at_seq, agents: agents.as_ref(), events: &events };
            planner.plan(&input, &budget).map_err(Stop::Plan)
        });
        let took = started.elapsed();
        metrics.planner_last_ms.store(took.as_millis() as u64, Relaxed);
        match outcome {
            Ok(result) => {
                metrics.planner_runs.fetch_add(1, Relaxed);
                match result_event(planner.as_ref(), at_seq, took, result) {
                    Ok(ev) => match ingest.blocking_append(vec![ev], None) {
                        Ok(_) => tracing::info!(
                            planner = planner.name(),
                            at_seq,
                            ms = took.as_millis() as u64,
                            "plan logged"
                        ),
                        Err(err) => tracing::warn!(planner = planner.name(), error = %err, "plan not logged"),
                    },
                    Err(err) => {
                        tracing::error!(planner = planner.name(), error = %err, "plan result is not a valid event")
                    }
                }
            }
            Err(Stop::Plan(PlanStop::Superseded)) => {
                metrics.planner_superseded.fetch_add(1, Relaxed);
            }
            Err(Stop::Plan(PlanStop::DeadlineExceeded)) => {
                metrics.planner_deadline_exceeded.fetch_add(1, Relaxed);
                tracing::warn!(planner = planner.name(), at_seq, "plan ran out of time; nothing logged");
            }
            Err(Stop::Store(err)) => {
                tracing::error!(planner = planner.name(), error = %err, "plan could not read the log")
            }
        }
    }
}

enum Stop {
    Plan(PlanStop),
    Store(String),
}

/// The planner's window of the log, `(at_seq - window, at_seq]`, its kinds only.
fn read_window(
    store: &dyn Store,
    planner: &dyn Planner,
    at_seq: u64,
    budget: &Budget,
) -> Result<Vec<StoredEvent>, Stop> {
    let mut after = at_seq.saturating_sub(planner.window());
    let kinds = planner.reads();
    let mut events = Vec::new();
    while after < at_seq {
        budget.check().map_err(Stop::Plan)?;
        let page = store.events_after(after, 5000).map_err(|e| Stop::Store(e.to_string()))?;
        let Some(last) = page.last_seq() else { break };
        events.extend(page.events.into_iter().filter(|e| e.seq <= at_seq && kinds.contains(&e.event.kind())));
        after = last;
    }
    Ok(events)
}

fn result_event(
    planner: &dyn Planner,
    at_seq: u64,
    took: Duration,
    result: serde_json::Value,
) -> Result<Event, String> {
    let now = chrono::Utc::now();
    Event::parse(
        json!({"source": format!("planner:{}", planner.name()), "source_txn_id": format!("{}@{at_seq}", planner.name()),
               "occurred_at": jidoka_model::event::rfc3339::format(&now), "kind": "plan_computed",
               "data": {"planner": planner.name(), "planner_version": planner.version(), "computed_from_seq": at_seq,
                        "took_ms": took.as_millis() as u64, "result": result}}),
        now,
    )
    .map_err(|e| e.to_string())
}
