//! The running pipeline: sources → bounded channel → store writer (group commit, agents and
//! governance inside the same transaction) → outbox → sinks.
//!
//! Threads and why:
//! - **store writer** (one thread): drains the bounded ingest channel, appends everything queued
//!   in one transaction (group commit), runs the agents on the newly stored events and stores
//!   their findings, actions and cursor in the same transaction, then answers each request. A
//!   request is acknowledged only after its transaction is on disk, and its findings are on disk
//!   with it.
//! - **outbox** (one thread): delivers approved actions to sinks, oldest first, marks them
//!   delivered only on success.
//!
//! Backpressure: the ingest channel is bounded; when the writer falls behind, senders wait.
//! Nothing else queues without bound (catch-up and the outbox read the store in chunks).
//! Shutdown drains: the writer is told to close, finishes the queue, and the outbox makes a last
//! delivery pass.

use crate::config::{Config, RuntimeConfig};
use crate::governance;
use crate::images::ImageFolder;
use crate::metrics::Metrics;
use jidoka_agents::{AgentsConfig, Router, build_agents};
use jidoka_connectors::SinkConfig;
use jidoka_connectors::sink::{Sink, SinkError};
use jidoka_model::{ActionStatus, Event, Finding};
use jidoka_store::{AppendBatch, AppendOutcome, Checkpoint, Store};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Cursor name under which the agent router commits its progress.
pub const AGENTS_CURSOR: &str = "agents";

/// Why an append was not acknowledged. Nothing of the request was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("jidoka is shutting down")]
    ShuttingDown,
    #[error("the store could not commit: {0}")]
    Store(String),
}

struct AppendRequest {
    events: Vec<Event>,
    checkpoint: Option<Checkpoint>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, IngestError>>,
}

/// A reader of the agents' state at a committed position (see [`Ingest::read_agents`]).
type AgentReader = Box<dyn FnOnce(Option<(u64, &Router)>) + Send>;

enum WriterMsg {
    Append(AppendRequest),
    /// A copy of every agent's state at the writer's committed position, with that position
    /// (`None` while the agents are off): what a planner computes from.
    Snapshot(oneshot::Sender<Option<(u64, Router)>>),
    /// Run a reader on the agents' state at the committed position (`None` while the agents
    /// are off), between two commits: a page's view of one agent, without copying them all.
    Read(AgentReader),
    /// Stop taking requests, finish the queued ones, exit. Sent by shutdown, so the writer
    /// stops even if some handle (a stalled HTTP connection) is still alive.
    Close,
}

/// A handle for sources to append events; cheap to clone. The runtime keeps draining until
/// every handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<WriterMsg>,
    /// Where referenced images are read to hash them before the events are stored.
    images: Option<Arc<ImageFolder>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// Append events (and the source's checkpoint) and wait until they are durable.
    pub async fn append(
        &self,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        let events = match &self.images {
            Some(folder) if ImageFolder::wanted(&events) => {
                let folder = folder.clone();
                tokio::task::spawn_blocking(move || {
                    let mut events = events;
                    folder.enrich(&mut events);
                    events
                })
                .await
                .map_err(|_| IngestError::ShuttingDown)?
            }
            _ => events,
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriterMsg::Append(AppendRequest { events, checkpoint, reply }))
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// A copy of the agents' state at the last committed position of the log, with that
    /// position; `None` while agents are off or cannot start. Taken between two group
    /// commits, so it is exactly the state the log up to that position makes.
    pub fn blocking_snapshot(&self) -> Result<Option<(u64, Router)>, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx.blocking_send(WriterMsg::Snapshot(reply)).map_err(|_| IngestError::ShuttingDown)?;
        rx.blocking_recv().map_err(|_| IngestError::ShuttingDown)
    }

    /// `read` applied to the agents' state at the last committed position, with that position
    /// (`None` while agents are off), on the writer between two commits: keep it short, the
    /// commit waits for it.
    pub async fn read_agents<T: Send + 'static>(
        &self,
        read: impl FnOnce(Option<(u64, &Router)>) -> T + Send + 'static,
    ) -> Result<T, IngestError> {
        let (reply, rx) = oneshot::channel();
        let msg = WriterMsg::Read(Box::new(move |agents| {
            let _ = reply.send(read(agents));
        }));
        self.tx.send(msg).await.map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)
    }

    /// The same, for callers on plain threads.
    pub fn blocking_append(
        &self,
        mut events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Vec<AppendOutcome>, IngestError> {
        if let Some(folder) = &self.images
            && ImageFolder::wanted(&events)
        {
            folder.enrich(&mut events);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(WriterMsg::Append(AppendRequest { events, checkpoint, reply }))
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.blocking_recv().map_err(|_| IngestError::ShuttingDown)?
    }
}

/// Events of a source's thread go through the runtime's writer: durable (with the source's
/// checkpoint) when `append` returns, which is when the source acknowledges them to its peer.
#[derive(Debug)]
pub struct IngestStore {
    pub ingest: Ingest,
    pub checkpoint_name: String,
}

impl jidoka_connectors::ResultStore for IngestStore {
    fn append(&mut self, events: Vec<Event>, checkpoint: String) -> Result<Vec<jidoka_connectors::Stored>, String> {
        use jidoka_connectors::Stored;
        let cp =
            (!checkpoint.is_empty()).then(|| Checkpoint { source: self.checkpoint_name.clone(), position: checkpoint });
        let outcomes = self.ingest.blocking_append(events, cp).map_err(|e| e.to_string())?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                AppendOutcome::Stored { .. } => Stored::Stored,
                AppendOutcome::Duplicate { .. } => Stored::Duplicate,
                AppendOutcome::Conflict { seq, field, .. } => Stored::Rejected(format!(
                    "{field}: this source transaction is already stored at seq {seq} with other content"
                )),
                AppendOutcome::Rejected { error } => Stored::Rejected(error.to_string()),
            })
            .collect())
    }
}

/// Wakes a consumer when the position it follows moves, or when it should finish.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Progress {
    /// Move the position on by one: a wake-up call that a waiter cannot miss.
    fn bump(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        self.cv.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.cv.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Wait until the position passes `seen`, the progress is closed, or `timeout` passes.
    /// Returns the latest position and whether it is closed.
    fn wait_past(&self, seen: u64, timeout: Duration) -> (u64, bool) {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) =
            self.cv.wait_timeout_while(guard, timeout, |s| s.0 <= seen && !s.1).unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// The master data in force at the writer's position in the log: what the agents check against,
/// shared with the API (to refuse a change that does not hold together) and the dashboard.
#[derive(Debug, Clone, Default)]
pub struct MasterInForce(Arc<std::sync::RwLock<jidoka_agents::Master>>);

impl MasterInForce {
    /// A handle that holds `master` (tests and tools without a writer).
    pub fn fixed(master: jidoka_agents::Master) -> MasterInForce {
        MasterInForce(Arc::new(std::sync::RwLock::new(master)))
    }

    pub fn get(&self) -> jidoka_agents::Master {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, master: &jidoka_agents::Master) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        let same = match (&*m, master) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *m = master.clone();
        }
    }
}

/// The running pipeline.
pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The master data in force, as the writer's agents see it.
    pub master: MasterInForce,
    pub findings: broadcast::Sender<Arc<Finding>>,
    ingest: Option<Ingest>,
    outbox_wake: Arc<Progress>,
    writer: Option<JoinHandle<()>>,
    outbox: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("store", &self.store).finish_non_exhaustive()
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct RuntimeParts {
    pub runtime: RuntimeConfig,
    pub agents: Option<AgentsConfig>,
    /// Master data in force before the first `master_data_changed` of the log (a store from
    /// before master data was logged); the service logs its configured master data instead.
    pub master: jidoka_agents::Master,
    pub sinks: Vec<SinkConfig>,
    /// Sinks built by the caller (the demo's simulated MES), before the configured ones.
    pub own_sinks: OwnSinks,
    pub governance: crate::config::GovernanceConfig,
}

/// Sinks built by the caller rather than from the configuration; the runtime started with them
/// takes them (a copy of the parts gets none).
#[derive(Clone, Default)]
pub struct OwnSinks(Arc<std::sync::Mutex<Vec<Box<dyn Sink>>>>);

impl OwnSinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> OwnSinks {
        OwnSinks(Arc::new(std::sync::Mutex::new(sinks)))
    }

    fn take(&self) -> Vec<Box<dyn Sink>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::fmt::Debug for OwnSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_tuple("OwnSinks").field(&n).finish()
    }
}

impl RuntimeParts {
    pub fn from_config(config: &Config, master: jidoka_agents::Master) -> RuntimeParts {
        RuntimeParts {
            runtime: config.runtime.clone(),
            agents: Some(config.agents.clone()),
            master,
            sinks: config.sinks.clone(),
            own_sinks: OwnSinks::default(),
            governance: config.governance.clone(),
        }
    }
}

impl Runtime {
    /// Start the writer (running the agents, when configured, inside its commits) and the
    /// outbox.
    pub fn start(store: Arc<dyn Store>, parts: RuntimeParts) -> anyhow::Result<Runtime> {
        let metrics = Arc::new(Metrics::default());
        let last = store.last_seq()?;
        metrics.log_seq.store(last, Relaxed);
        let outbox_wake = Arc::new(Progress::default());
        let (findings_tx, _) = broadcast::channel(1024);
        let (tx, rx) = mpsc::channel(parts.runtime.channel_capacity);
        let images = parts.runtime.image_dir.as_deref().map(ImageFolder::new).transpose()?.map(Arc::new);
        let mut sinks = parts.own_sinks.take();
        for sink in &parts.sinks {
            sinks.push(sink.build().map_err(|e| anyhow::anyhow!("sink `{}`: {e}", sink.name()))?);
        }
        let in_force = MasterInForce::fixed(parts.master.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let writer = {
            let ctx = WriterContext {
                master: in_force.clone(),
                ready: ready_tx,
                store: store.clone(),
                max_events: parts.runtime.group_commit_max_events,
                metrics: metrics.clone(),
                agents: parts.agents.clone().map(|config| AgentSetup {
                    config,
                    master: parts.master.clone(),
                    chunk: parts.runtime.agent_chunk_events,
                    policies: Arc::new(parts.governance.policies.clone()),
                }),
                findings: findings_tx.clone(),
                outbox_wake: outbox_wake.clone(),
            };
            std::thread::Builder::new().name("store-writer".into()).spawn(move || writer_loop(ctx, rx))?
        };
        // The agents' state, and so the master data in force, is rebuilt from the log before
        // anyone may ask what is in force.
        let _ = ready_rx.recv();
        let outbox = {
            let (store, metrics, wake) = (store.clone(), metrics.clone(), outbox_wake.clone());
            let poll = Duration::from_millis(parts.runtime.outbox_poll_ms);
            let ttl = parts.governance.approval_ttl_minutes;
            Some(
                std::thread::Builder::new()
                    .name("outbox".into())
                    .spawn(move || outbox_loop(store, sinks, poll, ttl, metrics, wake))?,
            )
        };
        Ok(Runtime {
            store,
            metrics,
            master: in_force,
            findings: findings_tx,
            ingest: Some(Ingest { tx, images }),
            outbox_wake,
            writer: Some(writer),
            outbox,
        })
    }

    /// A handle to append events.
    pub fn ingest(&self) -> Ingest {
        // Present until shutdown, which consumes the runtime.
        self.ingest.clone().unwrap_or_else(|| Ingest { tx: mpsc::channel(1).0, images: None })
    }

    /// Block until the agents have processed every stored event (used by import and tests).
    pub fn wait_for_agents(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.metrics.agent_seq.load(Relaxed) >= self.metrics.log_seq.load(Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Drain and stop: the writer finishes the queued requests (and their findings), then the
    /// outbox makes its last pass.
    pub fn shutdown(mut self) {
        if let Some(ingest) = self.ingest.take() {
            // Sent from a thread of its own, so shutdown may be called from async code too.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let _ = ingest.tx.blocking_send(WriterMsg::Close);
                });
            });
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.outbox_wake.close();
        if let Some(o) = self.outbox.take() {
            let _ = o.join();
        }
    }
}

/// The writer's context: the store, and the agents it runs inside each commit.
struct WriterContext {
    master: MasterInForce,
    /// Told once the agents have warmed up from the log (or failed to).
    ready: std::sync::mpsc::Sender<()>,
    store: Arc<dyn Store>,
    max_events: usize,
    metrics: Arc<Metrics>,
    agents: Option<AgentSetup>,
    findings: broadcast::Sender<Arc<Finding>>,
    outbox_wake: Arc<Progress>,
}

fn writer_loop(ctx: WriterContext, mut rx: mpsc::Receiver<WriterMsg>) {
    let WriterContext {
        master: in_force,
        ready,
        store,
        max_events,
        metrics,
        agents: setup,
        findings: findings_tx,
        outbox_wake,
    } = ctx;
    let mut agents: Option<Agents> = None;
    // A copy of the agents at a committed position, renewed now and then: after a failed
    // commit the agents are restored from it and the events since it, not from the whole log.
    let mut fallback: Option<Fallback> = None;
    // Starting the agents replays the log: after a failure, try again only after a pause, not
    // on every group commit.
    let mut next_start = Instant::now();
    let mut ensure_agents = |agents: &mut Option<Agents>, fallback: &mut Option<Fallback>| {
        if agents.is_none()
            && Instant::now() >= next_start
            && let Some(setup) = &setup
        {
            let counter = if fallback.is_some() { &metrics.agent_restores } else { &metrics.agent_rebuilds };
            counter.fetch_add(1, Relaxed);
            match start_agents(store.as_ref(), setup, &metrics, &findings_tx, fallback.as_ref()) {
                Ok(a) => {
                    in_force.set(a.router.master());
                    // A copy from the start, so an early failed commit does not replay the
                    // whole log; after a restore the copy it came from still serves.
                    if fallback.is_none() {
                        *fallback = Some(Fallback::of(&a, &metrics));
                    }
                    *agents = Some(a);
                }
                Err(err) => {
                    next_start = Instant::now() + Duration::from_secs(5);
                    metrics.store_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %err, "agents cannot start; events are stored and will be assessed once they can");
                }
            }
        }
    };
    ensure_agents(&mut agents, &mut fallback);
    let _ = ready.send(());
    // After a failed commit (a full disk, an I/O error) appends are refused at once until the
    // backoff passes, doubling from 250 ms to 30 s: a store that cannot write must not make
    // every request wait for a commit attempt and a rebuild of the agents from the log.
    let mut failing: Option<(Instant, Duration, String)> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut requests = Vec::new();
        let mut queued = 0;
        let mut closing = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Append(req) => {
                    queued += req.events.len();
                    requests.push(req);
                }
                WriterMsg::Snapshot(reply) => {
                    // Between commits: the state is exactly the log up to the agents' cursor.
                    let copy = agents.as_ref().map(|a| (a.at, a.router.clone()));
                    let _ = reply.send(copy);
                }
                WriterMsg::Read(read) => read(agents.as_ref().map(|a| (a.at, &a.router))),
                WriterMsg::Close => closing = true,
            }
            if queued < max_events {
                next = rx.try_recv().ok();
            }
        }
        if closing {
            // New sends fail from here on; what is already queued is still received.
            rx.close();
        }
        if requests.is_empty() {
            continue;
        }
        if let Some((until, _, reason)) = &failing
            && Instant::now() < *until
        {
            for req in requests {
                let _ =
                    req.reply.send(Err(IngestError::Store(format!("the store cannot write ({reason}); retry later"))));
            }
            continue;
        }
        ensure_agents(&mut agents, &mut fallback);
        // Whether the agents saw this group: if the commit fails before they did, their state
        // is still the log's and is kept.
        let mut derived = false;
        let batches: Vec<AppendBatch<'_>> =
            requests.iter().map(|r| AppendBatch { events: &r.events, checkpoint: r.checkpoint.as_ref() }).collect();
        // With agents, one transaction stores the events and what the agents make of them.
        let result = match agents.as_mut() {
            Some(a) => store.append_deriving(&batches, AGENTS_CURSOR, &mut |stored| {
                derived = true;
                let mut found = Vec::new();
                process_page(&mut a.router, stored, &[], &mut a.last_time, &mut found);
                let actions = governance::propose_all(&found, &a.policies);
                (found, actions)
            }),
            None => store.append(&batches).map(|o| (o, Vec::new(), Vec::new())),
        };
        drop(batches);
        metrics.ingest_requests.fetch_add(requests.len() as u64, Relaxed);
        match result {
            Ok((outcomes, found, actions)) => {
                metrics.group_commits.fetch_add(1, Relaxed);
                let mut max_seq = 0;
                for outcome in outcomes.iter().flatten() {
                    match outcome {
                        AppendOutcome::Stored { seq, .. } => {
                            metrics.events_stored.fetch_add(1, Relaxed);
                            max_seq = max_seq.max(*seq);
                        }
                        AppendOutcome::Duplicate { .. } => {
                            metrics.events_duplicate.fetch_add(1, Relaxed);
                        }
                        AppendOutcome::Conflict { seq, field, .. } => {
                            metrics.events_conflict.fetch_add(1, Relaxed);
                            tracing::warn!(seq, field = %field, "a redelivered source transaction differs from the stored one; refused");
                        }
                        AppendOutcome::Rejected { .. } => {
                            metrics.events_rejected.fetch_add(1, Relaxed);
                        }
                    }
                }
                if max_seq > 0 {
                    metrics.log_seq.fetch_max(max_seq, Relaxed);
                }
                if failing.take().is_some() {
                    metrics.store_failing.store(false, Relaxed);
                    tracing::info!("the store commits again");
                }
                // In force before anyone hears the change was stored.
                if let Some(a) = &agents {
                    in_force.set(a.router.master());
                }
                for (req, outcome) in requests.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok(outcome));
                }
                if let Some(a) = agents.as_mut()
                    && max_seq > 0
                {
                    a.at = max_seq;
                    let wake = actions.iter().any(|a| a.status == ActionStatus::Approved);
                    record(&metrics, &findings_tx, max_seq, found, &actions);
                    if wake {
                        outbox_wake.bump();
                    }
                }
                if let Some(a) = &agents
                    && fallback.as_ref().is_none_or(|f| f.taken.elapsed() >= FALLBACK_EVERY)
                {
                    fallback = Some(Fallback::of(a, &metrics));
                }
            }
            Err(err) => {
                metrics.store_errors.fetch_add(1, Relaxed);
                // The agents may have seen events that are not stored: restore them from the
                // last copy and the log since it (once the backoff has passed, not on every
                // request). If the commit failed before they saw the group, they are intact.
                if derived {
                    agents = None;
                }
                let pause = failing
                    .as_ref()
                    .map_or(Duration::from_millis(250), |(_, d, _)| (*d * 2).min(Duration::from_secs(30)));
                failing = Some((Instant::now() + pause, pause, err.to_string()));
                metrics.store_failing.store(true, Relaxed);
                tracing::error!(error = %err, requests = requests.len(), "group commit failed; nothing acknowledged");
                for req in requests {
                    let _ = req.reply.send(Err(IngestError::Store(err.to_string())));
                }
            }
        }
    }
}

/// What the writer needs to (re)build the agents.
#[derive(Clone)]
struct AgentSetup {
    config: AgentsConfig,
    master: jidoka_agents::Master,
    chunk: usize,
    policies: Arc<Vec<governance::Policy>>,
}

/// How often the writer renews its copy of the agents: after a failed commit at most this much
/// of the log is replayed (seconds at 2,000 events/s). The copy holds the commits behind it
/// (3 ms for the demo plant, 70 ms for `bench sequence`'s 2,000-line BOM after a million
/// scans), so it is rare.
const FALLBACK_EVERY: Duration = Duration::from_secs(300);

/// The agents as they were at a committed log position (`agents.at`).
struct Fallback {
    agents: Agents,
    taken: Instant,
}

impl Fallback {
    /// A copy of `agents`, its cost in `/metrics`.
    fn of(agents: &Agents, metrics: &Metrics) -> Fallback {
        let taken = Instant::now();
        let agents = agents.clone();
        metrics.agent_copy_us.store(taken.elapsed().as_micros() as u64, Relaxed);
        Fallback { agents, taken }
    }
}

/// The agents as the writer runs them, with the policies that turn findings into actions.
#[derive(Clone)]
struct Agents {
    router: Router,
    last_time: jidoka_model::Timestamp,
    policies: Arc<Vec<governance::Policy>>,
    /// The committed log position their state is at (the agents' cursor).
    at: u64,
}

/// Agents with their state rebuilt from the log up to the committed cursor (fresh, or from a
/// copy taken at an earlier committed position and the log since it), then caught up with
/// anything stored after it (events stored while agents were off or failing).
fn start_agents(
    store: &dyn Store,
    setup: &AgentSetup,
    metrics: &Metrics,
    findings_tx: &broadcast::Sender<Arc<Finding>>,
    from: Option<&Fallback>,
) -> anyhow::Result<Agents> {
    let cursor = store.cursor(AGENTS_CURSOR)?;
    let mut agents = match from {
        Some(f) if f.agents.at <= cursor => f.agents.clone(),
        _ => Agents {
            router: Router::new(build_agents(&setup.config, &setup.master)).with_master(setup.master.clone()),
            last_time: Default::default(),
            policies: setup.policies.clone(),
            at: 0,
        },
    };
    let mut seen = agents.at;
    let mut discard = Vec::new();
    while seen < cursor {
        let mut page = store.events_after(seen, setup.chunk)?;
        let Some(last) = page.last_seq() else { break };
        page.events.retain(|e| e.seq <= cursor);
        page.corrupt.retain(|c| c.0 <= cursor);
        discard.clear();
        process_page(&mut agents.router, &page.events, &page.corrupt, &mut agents.last_time, &mut discard);
        seen = last.min(cursor);
    }
    if cursor > 0 {
        tracing::info!(cursor, from = from.map_or(0, |f| f.agents.at), "agents warmed up from the event log");
    }
    let mut cursor = cursor;
    loop {
        let page = store.events_after(cursor, setup.chunk)?;
        let Some(last) = page.last_seq() else { break };
        let mut findings = Vec::new();
        process_page(&mut agents.router, &page.events, &page.corrupt, &mut agents.last_time, &mut findings);
        let actions = governance::propose_all(&findings, &agents.policies);
        store.commit_findings(AGENTS_CURSOR, last, &findings, &actions)?;
        record(metrics, findings_tx, last, findings, &actions);
        cursor = last;
    }
    metrics.agent_seq.store(cursor, Relaxed);
    agents.at = cursor;
    Ok(agents)
}

/// Count and announce what the agents concluded up to `seq`.
fn record(
    metrics: &Metrics,
    findings_tx: &broadcast::Sender<Arc<Finding>>,
    seq: u64,
    findings: Vec<Finding>,
    actions: &[jidoka_model::Action],
) {
    metrics.agent_seq.fetch_max(seq, Relaxed);
    metrics.record_findings(&findings);
    metrics.actions_proposed.fetch_add(actions.len() as u64, Relaxed);
    for f in findings {
        let _ = findings_tx.send(Arc::new(f));
    }
}

/// A stored row the agents could not read: skipped, and said so loudly.
fn corrupt_event_finding(seq: u64, reason: &str, at: jidoka_model::Timestamp) -> Finding {
    Finding {
        finding_id: jidoka_model::stable_id("F", &["router", &seq.to_string(), "store.corrupt_event"]),
        agent: jidoka_agents::ROUTER_AGENT.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        kind: "store.corrupt_event".into(),
        verdict: jidoka_model::Verdict::Review,
        severity: jidoka_model::Severity::Critical,
        confidence: 1.0,
        reason: format!("stored event seq {seq} could not be read ({reason}); no agent assessed it"),
        subject: jidoka_model::Subject::default(),
        evidence: Vec::new(),
        correlation_id: String::new(),
        source_txn_id: String::new(),
        occurred_at: at,
        details: serde_json::json!({"seq": seq}),
    }
}

/// Run the agents over one page of the log, in order, with a finding for every row that could
/// not be read. The runtime and `jidoka replay` both use this, so replay reproduces it exactly.
pub fn process_page(
    router: &mut Router,
    events: &[jidoka_model::StoredEvent],
    corrupt: &[(u64, String)],
    last_time: &mut jidoka_model::Timestamp,
    findings: &mut Vec<Finding>,
) {
    let mut corrupt = corrupt.iter().peekable();
    for ev in events {
        while let Some((seq, reason)) = corrupt.next_if(|(seq, _)| *seq < ev.seq) {
            tracing::error!(seq, %reason, "stored event cannot be read; agents skip it");
            findings.push(corrupt_event_finding(*seq, reason, *last_time));
        }
        router.process(ev, findings);
        *last_time = ev.event.occurred_at;
    }
    for (seq, reason) in corrupt {
        tracing::error!(seq, %reason, "stored event cannot be read; agents skip it");
        findings.push(corrupt_event_finding(*seq, reason, *last_time));
    }
}

/// Per-sink retry pause after a transient failure: doubles up to 30 s.
#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// After a transient failure the sink's circuit opens: no call until the backoff passes
    /// (doubling to 30 s, with jitter so several Jidokas do not retry in step), then one
    /// delivery is tried (half-open); a success closes it.
    fn fail(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let ms = (100u64 << self.failures.min(9)).min(30_000);
        // Jitter: 50–100 % of the delay, from the clock's nanoseconds (no randomness needed).
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let percent = 50 + u64::from(nanos % 51);
        self.until = Some(now + Duration::from_millis(ms * percent / 100));
    }

    fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }
}

fn outbox_loop(
    store: Arc<dyn Store>,
    mut sinks: Vec<Box<dyn Sink>>,
    poll: Duration,
    approval_ttl_minutes: u64,
    metrics: Arc<Metrics>,
    wake: Arc<Progress>,
) {
    let mut backoff = vec![Backoff::default(); sinks.len()];
    let mut seen = 0;
    let mut last_expiry: Option<Instant> = None;
    loop {
        let (latest, closed) = wake.wait_past(seen, poll);
        seen = latest;
        let pass_started = Instant::now();
        // Approvals expire after minutes: one sweep a second is plenty, and each sweep takes
        // the store's write lock.
        if closed || last_expiry.is_none_or(|t| t.elapsed() >= EXPIRY_EVERY) {
            expire_stale(store.as_ref(), approval_ttl_minutes);
            last_expiry = Some(Instant::now());
        }
        deliver_pass(store.as_ref(), &mut sinks, &mut backoff, &metrics, &wake);
        if closed {
            return;
        }
        // A pass marks its outcomes in one durable transaction on the store's one writer
        // connection, which the group commits share. Woken by every commit that approved an
        // action, it ran a transaction of its own for nearly every commit (under bench
        // sequence the outbox thread took 13 % of the CPU samples, 5 % once spaced). Passes
        // are spaced so each carries the actions of several commits; a delivery waits at most
        // this much longer.
        let since = pass_started.elapsed();
        if since < MIN_PASS_INTERVAL {
            std::thread::sleep(MIN_PASS_INTERVAL - since);
        }
    }
}

/// Least time between two outbox passes (see `outbox_loop`).
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(50);
/// How often stale approvals are swept.
const EXPIRY_EVERY: Duration = Duration::from_secs(1);

/// Expire the actions that waited longer than the approval window: they are never executed.
pub fn expire_stale(store: &dyn Store, approval_ttl_minutes: u64) {
    let cutoff = chrono::Utc::now() - chrono::Duration::minutes(approval_ttl_minutes as i64);
    let note = format!("no decision within {approval_ttl_minutes} minutes");
    match store.expire_pending(cutoff, &note) {
        Ok(ids) if !ids.is_empty() => tracing::info!(expired = ids.len(), "actions expired unapproved"),
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "cannot expire stale actions"),
    }
}

fn deliver_pass(
    store: &dyn Store,
    sinks: &mut [Box<dyn Sink>],
    backoff: &mut [Backoff],
    metrics: &Metrics,
    wake: &Progress,
) {
    // Page through the outbox so actions waiting on a sink in backoff do not hide the ones
    // behind them from healthy sinks.
    let mut after = 0;
    let mut pending = Vec::new();
    for _ in 0..20 {
        match store.outbox(after, 500) {
            Ok(page) => {
                let Some(last) = page.last().map(|(id, _)| *id) else { break };
                after = last;
                let now = Instant::now();
                pending.extend(page.into_iter().map(|(_, a)| a).filter(|a| {
                    sinks.iter().position(|s| s.accepts(a.action.kind)).is_none_or(|i| backoff[i].ready(now))
                }));
                if pending.len() >= 500 {
                    break;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "outbox cannot read approved actions");
                metrics.store_errors.fetch_add(1, Relaxed);
                return;
            }
        }
    }
    // The pass's outcomes are marked together, one transaction (one fsync) instead of one per
    // action: the writer shares the store, and a commit per delivery stalled its group
    // commits. A crash before the marks only means a redelivery, which sinks absorb by key.
    let mut marks = Marks::default();
    for record in pending {
        // On shutdown, stop between deliveries: what is left stays approved in the outbox and
        // goes out after the restart (the sink reads back by key first).
        if wake.is_closed() {
            break;
        }
        let action = &record.action;
        let now = Instant::now();
        let Some(idx) = sinks.iter().position(|s| s.accepts(action.kind)) else {
            let note = format!("no sink accepts action kind {}", action.kind);
            marks.push(&action.action_id, "governance".into(), ActionStatus::DeadLetter, note);
            continue;
        };
        if !backoff[idx].ready(now) {
            continue;
        }
        // Only what the audit chain proves approved leaves for a sink: a status set in the
        // database by hand is not an approval.
        let approval = match crate::audit::approval_proof(store, action) {
            Ok(Ok(approval)) => approval,
            Ok(Err(why)) => {
                metrics.actions_unproven.fetch_add(1, Relaxed);
                tracing::error!(action = %action.action_id, %why, "not delivered: the audit chain does not prove its approval");
                let note = format!("not delivered: the audit chain does not prove its approval ({why})");
                marks.push(&action.action_id, "governance".into(), ActionStatus::DeadLetter, note);
                continue;
            }
            Err(err) => {
                tracing::error!(error = %err, action = %action.action_id, "cannot read the audit trail; delivery waits");
                continue;
            }
        };
        // Who approved it and why go with it: the MES record names them.
        let mut action = action.clone();
        action.payload["approval"] = approval.to_json();
        let action = &action;
        match sinks[idx].deliver(action) {
            Ok(receipt) => {
                let note = match (&receipt.reference, receipt.already_delivered) {
                    (Some(r), _) => format!("delivered by {} as {r}", sinks[idx].name()),
                    (None, true) => format!("already delivered to {}", sinks[idx].name()),
                    (None, false) => format!("delivered by {}", sinks[idx].name()),
                };
                backoff[idx] = Backoff::default();
                marks.push(&action.action_id, format!("sink:{}", sinks[idx].name()), ActionStatus::Delivered, note);
            }
            Err(SinkError::Transient(reason)) => {
                metrics.delivery_failures.fetch_add(1, Relaxed);
                backoff[idx].fail(now);
                tracing::warn!(sink = sinks[idx].name(), action = %action.action_id, %reason, "delivery failed; will retry");
                let _ = store.record_delivery_attempt(&action.action_id, &reason);
            }
            Err(SinkError::Permanent(reason)) => {
                tracing::error!(sink = sinks[idx].name(), action = %action.action_id, %reason, "delivery failed permanently");
                let _ = store.record_delivery_attempt(&action.action_id, &reason);
                marks.push(&action.action_id, format!("sink:{}", sinks[idx].name()), ActionStatus::DeadLetter, reason);
            }
        }
    }
    marks.commit(store, metrics);
}

/// Status moves of approved actions decided in one outbox pass.
#[derive(Default)]
struct Marks {
    moves: Vec<(String, String, ActionStatus, String)>,
}

impl Marks {
    fn push(&mut self, action_id: &str, actor: String, to: ActionStatus, note: String) {
        self.moves.push((action_id.to_string(), actor, to, note));
    }

    fn commit(self, store: &dyn Store, metrics: &Metrics) {
        let moves: Vec<jidoka_store::StatusMove<'_>> = self
            .moves
            .iter()
            .map(|(id, actor, to, note)| jidoka_store::StatusMove {
                action_id: id,
                actor,
                from: ActionStatus::Approved,
                to: *to,
                note: Some(note),
            })
            .collect();
        match store.set_action_statuses(&moves) {
            Ok(moved) => {
                for (m, done) in moves.iter().zip(moved) {
                    match (done, m.to) {
                        (true, ActionStatus::Delivered) => metrics.actions_delivered.fetch_add(1, Relaxed),
                        (true, _) => metrics.actions_dead_letter.fetch_add(1, Relaxed),
                        (false, _) => 0,
                    };
                }
            }
            Err(err) => {
                tracing::error!(error = %err, actions = moves.len(), "delivery outcomes not marked; they are tried again and the sinks' idempotency absorbs the repeat")
            }
        }
    }
}

/// A runtime with default settings and no sinks on `store`, with `agents` (none: the writer
/// alone, what ingest benchmarks measure).
pub fn bench_runtime(
    store: Arc<dyn Store>,
    agents: Option<jidoka_agents::AgentsConfig>,
    master: jidoka_agents::Master,
) -> anyhow::Result<Runtime> {
    Runtime::start(
        store,
        RuntimeParts {
            runtime: RuntimeConfig::default(),
            agents,
            master,
            sinks: Vec::new(),
            own_sinks: OwnSinks::default(),
            governance: Default::default(),
        },
    )
}
