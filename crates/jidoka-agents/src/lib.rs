//! Jidoka's agents: pure, synchronous functions from events to findings.
//!
//! - [`Agent`]: the trait every agent implements; it subscribes to event kinds and turns each
//!   event into zero or more [`FindingDraft`]s.
//! - [`Router`]: dispatches stored events to the agents that subscribe to their kind and
//!   completes drafts into [`Finding`]s with stable ids.
//! - [`AgentsConfig`] / [`build_agents`]: explicit registration of every agent.
//! - [`torque_window`]: the controller's own window check, the baseline the plant has today.
//! - [`torque`]: the torque audit: every curve against its joint's golden batch, named
//!   failure modes, anomaly score, tool drift.
//! - [`sequence`]: scans, operations and tightenings against BOM, ECOs and routing.
//! - [`patterns`]: defect Pareto and over-represented context values (hypergeometric, BH).
//! - [`quality`]: defect patterns behind NCRs (against the units built alongside) and triage
//!   of uncoded NCRs; [`text`] is its short-text model, [`narrative`] its citations.
//! - [`resequence`]: car sequencing under ratio rules (CSPLib prob001): the cost of an order,
//!   swaps evaluated incrementally, and a seeded local search with a deadline.
//! - [`andon`]: routes each line stop to a team, with first steps from similar past stops.
//!
//! Invariants: agents do no I/O and never read the clock; their only input is the event log,
//! in log order. So an agent's state is a function of the log prefix it has seen, and replaying
//! the log reproduces every finding exactly. An agent that panics on an event is contained: the
//! router records an `agent.failure` finding and goes on.

pub mod andon;
mod bom;
pub mod build_queue;
pub mod encoder;
pub mod narrative;
pub mod outage;
pub mod patterns;
pub mod planner;
pub mod quality;
pub mod resequence;
pub mod sequence;
pub mod shortage;
pub mod text;
pub mod torque;
pub mod torque_window;

use jidoka_model::{EventKind, Finding, Severity, StoredEvent, Subject, Verdict, stable_id};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What an agent concludes about one event; the router adds ids, agent name and version,
/// correlation id and event time.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingDraft {
    pub kind: String,
    pub verdict: Verdict,
    pub severity: Severity,
    pub confidence: f64,
    pub reason: String,
    pub subject: Subject,
    /// Further event ids this finding rests on (the triggering event is always first).
    pub extra_evidence: Vec<String>,
    pub details: Value,
}

/// What every agent is besides its checks: a value that can be copied whole (the writer keeps
/// a copy to fall back on after a failed commit, and planners read a copy taken at a log
/// position) and looked at by its concrete type. Implemented for every `Clone` agent.
pub trait AgentState: Send {
    fn clone_agent(&self) -> Box<dyn Agent>;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: Agent + Clone + 'static> AgentState for T {
    fn clone_agent(&self) -> Box<dyn Agent> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// An agent: subscribes to event kinds, sees each such event once, in log order.
pub trait Agent: AgentState {
    /// Stable name, used in finding ids and the audit trail.
    fn name(&self) -> &'static str;
    /// Bumped whenever the agent's logic changes what it concludes.
    fn version(&self) -> &'static str;
    fn subscriptions(&self) -> &'static [EventKind];
    /// Examine one event. Must not panic on any valid event; must not do I/O or read the clock.
    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>);
}

/// Dispatches events to agents and completes their drafts.
pub struct Router {
    agents: Vec<Box<dyn Agent>>,
    routes: HashMap<EventKind, Vec<usize>>,
    drafts: Vec<FindingDraft>,
    /// The master data in force at the current log position.
    master: Master,
    /// Each released unit's work order, for every finding about the unit (the MES files its
    /// records under the work order, not the VIN): the newest [`WORK_ORDERS_KEPT`].
    work_orders: WorkOrders,
}

/// Units whose work order the router remembers (several days of a line's production).
pub const WORK_ORDERS_KEPT: usize = 100_000;

/// VIN → work order of the last [`WORK_ORDERS_KEPT`] units released.
#[derive(Debug, Clone, Default)]
struct WorkOrders {
    by_vin: HashMap<String, String>,
    order: std::collections::VecDeque<String>,
}

impl WorkOrders {
    fn insert(&mut self, vin: &str, work_order: &str) {
        if self.by_vin.insert(vin.to_string(), work_order.to_string()).is_none() {
            self.order.push_back(vin.to_string());
            while self.order.len() > WORK_ORDERS_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.by_vin.remove(&old);
                }
            }
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("agents", &self.agent_names()).finish()
    }
}

/// Name of the pseudo-agent that reports a contained agent failure.
pub const ROUTER_AGENT: &str = "router";

/// A copy of every agent's state at the same log position: what a planner reads, and what the
/// writer falls back on after a failed commit. Bounded like the agents themselves.
impl Clone for Router {
    fn clone(&self) -> Router {
        Router {
            agents: self.agents.iter().map(|a| a.clone_agent()).collect(),
            routes: self.routes.clone(),
            drafts: Vec::new(),
            master: self.master.clone(),
            work_orders: self.work_orders.clone(),
        }
    }
}

impl Router {
    /// The running agent of type `T`, if it is enabled (planners read agent state this way).
    pub fn agent<T: Agent + 'static>(&self) -> Option<&T> {
        self.agents.iter().find_map(|a| a.as_any().downcast_ref::<T>())
    }

    pub fn new(agents: Vec<Box<dyn Agent>>) -> Router {
        let mut routes: HashMap<EventKind, Vec<usize>> = HashMap::new();
        for (idx, agent) in agents.iter().enumerate() {
            for kind in agent.subscriptions() {
                routes.entry(*kind).or_default().push(idx);
            }
        }
        Router { agents, routes, drafts: Vec::new(), master: None, work_orders: WorkOrders::default() }
    }

    /// Start with `master` in force (a store whose log has no master data of its own).
    pub fn with_master(mut self, master: Master) -> Router {
        self.master = master;
        self
    }

    /// The master data in force after the events processed so far: the start-up master data
    /// with every `master_data_changed` that held together applied in log order.
    pub fn master(&self) -> &Master {
        &self.master
    }

    pub fn agent_names(&self) -> Vec<(&'static str, &'static str)> {
        self.agents.iter().map(|a| (a.name(), a.version())).collect()
    }

    /// Run every subscribed agent on one event; findings come out in agent order.
    pub fn process(&mut self, event: &StoredEvent, findings: &mut Vec<Finding>) {
        if let jidoka_model::EventPayload::MasterDataChanged(change) = &event.event.payload
            && let Ok(next) =
                self.master.as_deref().cloned().unwrap_or_default().apply_from(&event.event.source, change)
        {
            // A refused change is the sequence agent's finding; the last good data stays.
            self.master = Some(std::sync::Arc::new(next));
        }
        if let jidoka_model::EventPayload::WorkOrderReleased(w) = &event.event.payload {
            self.work_orders.insert(&w.vin, &w.work_order);
        }
        let Some(targets) = self.routes.get(&event.event.kind()) else {
            return;
        };
        for &idx in targets {
            let agent = &mut self.agents[idx];
            self.drafts.clear();
            let drafts = &mut self.drafts;
            let outcome = catch_unwind(AssertUnwindSafe(|| agent.on_event(event, drafts)));
            let (name, version) = (agent.name(), agent.version());
            if outcome.is_err() {
                self.drafts.clear();
                self.drafts.push(FindingDraft {
                    kind: "agent.failure".into(),
                    verdict: Verdict::Review,
                    severity: Severity::Critical,
                    confidence: 1.0,
                    reason: format!(
                        "agent {name} {version} failed on event seq {}; this event was not assessed by it",
                        event.seq
                    ),
                    subject: Subject::default(),
                    extra_evidence: Vec::new(),
                    details: Value::Null,
                });
            }
            for (ordinal, mut draft) in self.drafts.drain(..).enumerate() {
                if draft.subject.work_order.is_none()
                    && let Some(vin) = &draft.subject.vin
                {
                    draft.subject.work_order = self.work_orders.by_vin.get(vin).cloned();
                }
                findings.push(complete(name, version, event, ordinal, draft));
            }
        }
    }
}

/// The id of the finding `agent` raises on `event_id` as its `ordinal`-th draft of `kind`.
pub fn finding_id(agent: &str, event_id: &str, kind: &str, ordinal: usize) -> String {
    stable_id("F", &[agent, event_id, kind, &ordinal.to_string()])
}

fn complete(agent: &str, version: &str, event: &StoredEvent, ordinal: usize, draft: FindingDraft) -> Finding {
    let ev = &event.event;
    let mut evidence = Vec::with_capacity(1 + draft.extra_evidence.len());
    evidence.push(ev.event_id.clone());
    evidence.extend(draft.extra_evidence);
    Finding {
        finding_id: finding_id(agent, &ev.event_id, &draft.kind, ordinal),
        agent: agent.to_string(),
        agent_version: version.to_string(),
        kind: draft.kind,
        verdict: draft.verdict,
        severity: draft.severity,
        confidence: draft.confidence.clamp(0.0, 1.0),
        reason: draft.reason,
        subject: draft.subject,
        evidence,
        correlation_id: ev.correlation_id.clone(),
        source_txn_id: ev.source_txn_id.clone(),
        occurred_at: ev.occurred_at,
        details: draft.details,
    }
}

/// Which agents run, and their settings. Each agent has its own table; unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    #[serde(default)]
    pub torque_window: torque_window::TorqueWindowConfig,
    #[serde(default)]
    pub torque_audit: torque::TorqueAuditConfig,
    #[serde(default)]
    pub sequence: sequence::SequenceConfig,
    #[serde(default)]
    pub quality: quality::QualityConfig,
    #[serde(default)]
    pub andon: andon::AndonConfig,
    #[serde(default)]
    pub build_queue: build_queue::BuildQueueConfig,
    #[serde(default)]
    pub shortage: shortage::ShortageConfig,
    /// A sentence-encoder directory (`config.json`, `vocab.txt`, `model.safetensors`, e.g. the
    /// all-MiniLM-L6-v2 that `scripts/minilm.sh` installs): its embedding joins the TF-IDF
    /// features of NCR and Andon triage. Without it they use TF-IDF alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<std::path::PathBuf>,
    /// The encoder loaded from `embeddings` by [`AgentsConfig::load_encoder`].
    #[serde(skip)]
    pub encoder: SharedEncoder,
}

/// A loaded sentence encoder shared by the agents' text models; not a setting (two are equal
/// when they are the same loaded encoder).
#[derive(Debug, Clone, Default)]
pub struct SharedEncoder(pub Option<std::sync::Arc<encoder::Encoder>>);

impl PartialEq for SharedEncoder {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl AgentsConfig {
    /// Every problem with the settings, as `(path, reason)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        self.torque_window.validate("agents.torque_window", &mut errors);
        self.torque_audit.validate("agents.torque_audit", &mut errors);
        self.quality.validate("agents.quality", &mut errors);
        self.andon.validate("agents.andon", &mut errors);
        self.shortage.validate("agents.shortage", &mut errors);
        errors
    }

    /// Load the encoder `embeddings` names (once; a second call keeps the loaded one).
    pub fn load_encoder(&mut self) -> Result<(), encoder::EncoderError> {
        if let (Some(dir), None) = (&self.embeddings, &self.encoder.0) {
            self.encoder = SharedEncoder(Some(std::sync::Arc::new(encoder::Encoder::load(dir)?)));
        }
        Ok(())
    }
}

/// What agents know about the plant besides events (BOM, ECOs, routing).
pub type Master = Option<std::sync::Arc<jidoka_model::master::MasterData>>;

/// Build the enabled agents. One line per agent: adding an agent = a module, a config field,
/// a line here. Agents that need master data are built only when it is given.
pub fn build_agents(config: &AgentsConfig, master: &Master) -> Vec<Box<dyn Agent>> {
    let mut agents: Vec<Box<dyn Agent>> = Vec::new();
    if config.torque_window.enabled {
        agents.push(Box::new(torque_window::TorqueWindowAgent::new(config.torque_window.clone())));
    }
    if config.torque_audit.enabled {
        agents.push(Box::new(torque::TorqueAuditAgent::new(config.torque_audit.clone())));
    }
    if config.sequence.enabled {
        // Without start-up master data it takes its master data from the log.
        agents.push(Box::new(match master {
            Some(master) => sequence::SequenceAgent::new(master),
            None => sequence::SequenceAgent::from_log(),
        }));
    }
    if config.quality.enabled {
        agents.push(Box::new(quality::QualityAgent::new(config.quality.clone(), config.encoder.0.clone())));
    }
    if config.andon.enabled {
        agents.push(Box::new(andon::AndonAgent::new(config.andon.clone(), config.encoder.0.clone())));
    }
    if config.build_queue.enabled {
        agents.push(Box::new(build_queue::BuildQueueAgent::new()));
    }
    if config.shortage.enabled {
        // Without start-up master data it takes its BOM from the log.
        agents.push(Box::new(shortage::ShortageAgent::new(config.shortage.clone(), master.as_deref())));
    }
    agents
}
