//! The build queue: the work orders the MES has released and the line has not started, in
//! planned order; the last units started (they share the rules' windows with the queue); the
//! disruptions in force (a part or option-specific equipment unavailable, units on hold, a rush
//! order). A declared disruption is a finding (`resequence.disruption`), on which the service asks
//! the re-sequencing planner ([`Resequence`]) for a proposal from a copy of this state; the
//! logged proposal comes back here and becomes a finding (`resequence.proposal`) that governance
//! puts before a supervisor, whose approval writes the new sequence to the MES. When the MES
//! re-releases the work orders with their new numbers, the queue follows.

use crate::planner::{Budget, PlanInput, PlanStop, Planner};
use crate::resequence::live::{self, Disruption, Outcome, Params};
use crate::resequence::plant::{PlantRules, PlantUnit};
use crate::{Agent, FindingDraft};
use jidoka_model::event::{BuildDisruption, DisruptionKind, Timestamp, rfc3339};
use jidoka_model::master::WorkOrder;
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, Verdict};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub const NAME: &str = "build-queue";
/// The planner's name (the `plan_computed` events it logs).
pub const PLANNER: &str = "resequence";
/// Finding kinds.
pub const PROPOSAL: &str = "resequence.proposal";
pub const DISRUPTION: &str = "resequence.disruption";
pub const NO_CHANGE: &str = "resequence.no_change";
pub const NO_PROPOSAL: &str = "resequence.no_proposal";

/// Units started that are kept (the longest ratio window is 1,000).
pub const STARTED_KEPT: usize = 1000;
/// Released units kept waiting at most (the lowest planned numbers stay).
pub const QUEUE_KEPT: usize = 20_000;
/// A released unit this many planned numbers behind the newest started one is taken for
/// cancelled or built elsewhere and leaves the queue.
pub const STALE_BEHIND: u64 = 2000;

/// Whether the build queue is kept (on by default; it only reads what the MES releases).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildQueueConfig {
    pub enabled: bool,
}

impl Default for BuildQueueConfig {
    fn default() -> Self {
        BuildQueueConfig { enabled: true }
    }
}

/// A released work order waiting for the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedUnit {
    pub work_order: String,
    pub vin: String,
    pub model: String,
    pub options: BTreeSet<String>,
    pub sequence: u64,
    #[serde(with = "opt_time")]
    pub planned_start: Option<Timestamp>,
}

impl QueuedUnit {
    fn of(w: &WorkOrder) -> QueuedUnit {
        QueuedUnit {
            work_order: w.work_order.clone(),
            vin: w.vin.clone(),
            model: w.model.clone(),
            options: w.options.iter().cloned().collect(),
            sequence: w.sequence,
            planned_start: w.planned_start,
        }
    }

    fn plant_unit(&self) -> PlantUnit<'_> {
        PlantUnit { ident: &self.vin, rank: self.sequence, model: &self.model, options: &self.options }
    }
}

mod opt_time {
    use super::*;
    pub fn serialize<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&rfc3339::format(t)),
            None => s.serialize_none(),
        }
    }
}

/// A disruption in force, with the event that declared it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub disruption: BuildDisruption,
    pub event_id: String,
    pub declared_at: Timestamp,
}

/// The released work orders not yet started, in planned order, and the last units started:
/// what the MES released and the line reports, kept for every agent that plans ahead.
#[derive(Debug, Clone, Default)]
pub struct ReleasedUnits {
    /// Released, not started: by (planned number, VIN).
    queued: BTreeMap<(u64, String), QueuedUnit>,
    /// VIN → planned number of the queued units.
    queued_at: HashMap<String, u64>,
    /// The last units started, oldest first, and their VINs.
    started: VecDeque<QueuedUnit>,
    started_vins: HashSet<String>,
    newest_started: u64,
}

impl ReleasedUnits {
    /// The queue in planned order.
    pub fn queue(&self) -> impl DoubleEndedIterator<Item = &QueuedUnit> {
        self.queued.values()
    }

    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// The last units started, oldest first.
    pub fn started(&self) -> impl DoubleEndedIterator<Item = &QueuedUnit> + ExactSizeIterator {
        self.started.iter()
    }

    pub fn is_queued(&self, vin: &str) -> bool {
        self.queued_at.contains_key(vin)
    }

    /// A (re-)release: a new planned number moves the unit; a unit already started stays.
    pub fn release(&mut self, w: &WorkOrder) {
        if self.started_vins.contains(&w.vin) {
            return;
        }
        if let Some(old) = self.queued_at.remove(&w.vin) {
            self.queued.remove(&(old, w.vin.clone()));
        }
        self.queued_at.insert(w.vin.clone(), w.sequence);
        self.queued.insert((w.sequence, w.vin.clone()), QueuedUnit::of(w));
        while self.queued.len() > QUEUE_KEPT {
            if let Some(((_, vin), _)) = self.queued.pop_last() {
                self.queued_at.remove(&vin);
            }
        }
    }

    /// The queued unit `vin`, if it is waiting.
    pub fn queued_unit(&self, vin: &str) -> Option<&QueuedUnit> {
        self.queued_at.get(vin).and_then(|n| self.queued.get(&(*n, vin.to_string())))
    }

    /// The unit entered a station: if it was waiting, it has started (true).
    pub fn start(&mut self, vin: &str) -> bool {
        let Some(at) = self.queued_at.remove(vin) else { return false };
        let Some(unit) = self.queued.remove(&(at, vin.to_string())) else { return false };
        self.newest_started = self.newest_started.max(unit.sequence);
        self.started_vins.insert(unit.vin.clone());
        self.started.push_back(unit);
        while self.started.len() > STARTED_KEPT {
            if let Some(old) = self.started.pop_front() {
                self.started_vins.remove(&old.vin);
            }
        }
        let floor = self.newest_started.saturating_sub(STALE_BEHIND);
        while let Some(((seq, vin), _)) = self.queued.first_key_value() {
            if *seq >= floor {
                break;
            }
            let key = (*seq, vin.clone());
            self.queued.remove(&key);
            self.queued_at.remove(&key.1);
        }
        true
    }
}

/// The build queue's state; see the module.
#[derive(Debug, Clone, Default)]
pub struct BuildQueueAgent {
    units: ReleasedUnits,
    disruptions: BTreeMap<String, Declared>,
    /// The line's time: the newest release or start seen.
    now: Option<Timestamp>,
    /// The newest plan logged: its log position and result.
    plan: Option<(u64, Value)>,
}

impl BuildQueueAgent {
    pub fn new() -> BuildQueueAgent {
        BuildQueueAgent::default()
    }

    /// The released units: the queue and the last started.
    pub fn units(&self) -> &ReleasedUnits {
        &self.units
    }

    /// The queue in planned order.
    pub fn queue(&self) -> impl DoubleEndedIterator<Item = &QueuedUnit> {
        self.units.queue()
    }

    pub fn queued_len(&self) -> usize {
        self.units.queued_len()
    }

    /// The last units started, oldest first.
    pub fn started(&self) -> impl DoubleEndedIterator<Item = &QueuedUnit> {
        self.units.started()
    }

    pub fn disruptions(&self) -> impl Iterator<Item = &Declared> {
        self.disruptions.values()
    }

    /// The newest plan logged: its position and result.
    pub fn plan(&self) -> Option<&(u64, Value)> {
        self.plan.as_ref()
    }

    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The queued unit `vin`, if it is waiting.
    fn queued_unit(&self, vin: &str) -> Option<&QueuedUnit> {
        self.units.queued_unit(vin)
    }

    fn declare(&mut self, event: &StoredEvent, d: &BuildDisruption, out: &mut Vec<FindingDraft>) {
        let at = event.event.occurred_at;
        // Unavailabilities that have ended leave with the next declaration.
        self.disruptions.retain(|_, x| x.disruption.until.is_none_or(|u| u > at));
        let reason = match d.kind {
            DisruptionKind::Cleared => match self.disruptions.remove(&d.disruption_id) {
                Some(_) => format!("Disruption {} cleared.", d.disruption_id),
                None => format!("Disruption {} cleared; it was not in force.", d.disruption_id),
            },
            _ => {
                let affected = self.affected(d);
                self.disruptions.insert(
                    d.disruption_id.clone(),
                    Declared { disruption: d.clone(), event_id: event.event.event_id.clone(), declared_at: at },
                );
                format!("{}: {affected}", describe(d))
            }
        };
        out.push(FindingDraft {
            kind: DISRUPTION.into(),
            verdict: Verdict::Pass,
            severity: if d.kind == DisruptionKind::Cleared { Severity::Info } else { Severity::Warning },
            confidence: 1.0,
            reason,
            subject: Subject::default(),
            extra_evidence: Vec::new(),
            details: json!({"disruption_id": d.disruption_id, "in_force": self.disruptions.len()}),
        });
    }

    /// What a disruption touches in the queue, in words.
    fn affected(&self, d: &BuildDisruption) -> String {
        match d.kind {
            DisruptionKind::Hold => {
                let queued = d.vins.iter().filter(|v| self.units.is_queued(v)).count();
                format!("{queued} of the {} units are in the build queue", d.vins.len())
            }
            _ => format!("{} units in the build queue", self.units.queued_len()),
        }
    }

    fn on_plan(&mut self, at_seq: u64, result: &Value, out: &mut Vec<FindingDraft>) {
        self.plan = Some((at_seq, result.clone()));
        let evidence: Vec<String> = result["disruption_events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(str::to_string)
            .collect();
        let draft = |kind: &str, verdict, severity, reason: String| FindingDraft {
            kind: kind.into(),
            verdict,
            severity,
            confidence: 1.0,
            reason,
            subject: Subject::default(),
            extra_evidence: evidence.clone(),
            details: result.clone(),
        };
        if let Some(error) = result["error"].as_str() {
            out.push(draft(
                NO_PROPOSAL,
                Verdict::Pass,
                Severity::Warning,
                format!("No re-sequencing proposal: {error}"),
            ));
            return;
        }
        let changes = result["resequence"].as_array().map_or(0, Vec::len);
        let o = |side: &str, field: &str| result[side][field].as_u64().unwrap_or(0);
        let figures = format!(
            "line stops {} → {} takts lost (moving the affected units to the end: {}); high-priority rule \
             violations {} → {}, colour changes {} → {}",
            o("before", "lost_takts"),
            o("after", "lost_takts"),
            o("push_back", "lost_takts"),
            o("before", "high"),
            o("after", "high"),
            o("before", "paint"),
            o("after", "paint"),
        );
        if changes == 0 {
            out.push(draft(
                NO_CHANGE,
                Verdict::Pass,
                Severity::Info,
                format!("The build queue needs no change: {figures}."),
            ));
            return;
        }
        let moved = result["moves"].as_array().map_or(0, Vec::len);
        out.push(draft(
            PROPOSAL,
            Verdict::Review,
            Severity::Warning,
            format!(
                "Re-sequence the build queue around {}: {moved} units move, {changes} work orders change their \
                 planned number; {figures}.",
                result["disruption_ids"].as_array().map_or(String::new(), |ids| ids
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
            ),
        ));
    }
}

/// A disruption in words.
pub fn describe(d: &BuildDisruption) -> String {
    let time = |t: &Option<Timestamp>| t.as_ref().map_or("now".to_string(), rfc3339::format);
    match d.kind {
        DisruptionKind::Unavailable => format!(
            "{} unavailable from {} until {}",
            d.resource.as_deref().unwrap_or("?"),
            time(&d.from),
            time(&d.until)
        ),
        DisruptionKind::Hold => match d.vins.as_slice() {
            [one] => format!("{one} on hold"),
            many => format!("{} units on hold", many.len()),
        },
        DisruptionKind::Rush => format!(
            "rush order {} within {} units",
            d.rush.as_ref().map_or("?", |w| w.work_order.as_str()),
            d.within_units.unwrap_or(0)
        ),
        DisruptionKind::Cleared => format!("{} cleared", d.disruption_id),
    }
}

impl Agent for BuildQueueAgent {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn subscriptions(&self) -> &'static [EventKind] {
        &[
            EventKind::WorkOrderReleased,
            EventKind::UnitEnteredStation,
            EventKind::BuildDisruption,
            EventKind::PlanComputed,
        ]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        // The line's clock: what the MES and the line report, not a plan's or a declaration's
        // stamp (a person's clock, or a planner's wall time in an accelerated demo).
        if matches!(event.event.payload, EventPayload::WorkOrderReleased(_) | EventPayload::UnitEnteredStation(_)) {
            let at = event.event.occurred_at;
            self.now = Some(self.now.map_or(at, |n| n.max(at)));
        }
        match &event.event.payload {
            EventPayload::WorkOrderReleased(w) => self.units.release(w),
            EventPayload::UnitEnteredStation(u) => {
                self.units.start(&u.vin);
            }
            EventPayload::BuildDisruption(d) => self.declare(event, d, out),
            EventPayload::PlanComputed(p) if p.planner == PLANNER => self.on_plan(p.computed_from_seq, &p.result, out),
            _ => {}
        }
    }
}

/// The re-sequencing planner: from a copy of the build queue and the master data in force at
/// one log position, a proposal around the disruptions in force within `search_ms`.
#[derive(Debug, Clone)]
pub struct Resequence {
    /// Queued units the proposal may reorder (from the head).
    pub horizon: usize,
    /// Time for the search (the first proposal comes in milliseconds; the rest improves it).
    pub search_ms: u64,
    pub params: Params,
}

impl Default for Resequence {
    fn default() -> Self {
        Resequence { horizon: 1300, search_ms: 800, params: Params::default() }
    }
}

fn outcome_json(o: &Outcome) -> Value {
    json!({"lost_takts": o.lost_takts, "stopping_cars": o.stopping_cars, "rush_late_slots": o.rush_late,
           "high": o.score.high, "low": o.score.low, "paint": o.score.paint, "cars_over_paint_limit": o.paint_excess})
}

impl Resequence {
    /// The proposal, or why there is none (as `Err`, logged as the result's `error`).
    fn propose(&self, input: &PlanInput<'_>, budget: &Budget) -> Result<Result<Value, String>, PlanStop> {
        let Some(router) = input.agents else { return Ok(Err("agents are off".into())) };
        let Some(agent) = router.agent::<BuildQueueAgent>() else {
            return Ok(Err("the build queue agent is not running".into()));
        };
        let Some(master) = router.master() else { return Ok(Err("no master data in force".into())) };
        let rules = match PlantRules::from_master(master) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let declared: Vec<&Declared> = agent.disruptions().collect();
        if declared.is_empty() {
            return Ok(Err("no disruption is in force".into()));
        }
        let frozen = rules.sequencing().frozen_units as usize;
        // Rush orders: a new order, or one already queued behind the frozen head, which leaves
        // its place to be put where it is due (one already in the frozen head comes anyway).
        let head: HashSet<&str> = agent.queue().take(frozen).map(|u| u.vin.as_str()).collect();
        // Each with the number of units it is due within.
        let mut rush: Vec<(QueuedUnit, usize)> = Vec::new();
        let mut rushed: HashSet<&str> = HashSet::new();
        for d in &declared {
            let Some(w) = &d.disruption.rush else { continue };
            if head.contains(w.vin.as_str()) || !rushed.insert(w.vin.as_str()) {
                continue;
            }
            let unit = agent.queued_unit(&w.vin).cloned().unwrap_or_else(|| QueuedUnit::of(w));
            rush.push((unit, d.disruption.within_units.unwrap_or(0) as usize));
        }
        let day: Vec<&QueuedUnit> =
            agent.queue().filter(|u| !rushed.contains(u.vin.as_str())).take(self.horizon).collect();
        if day.is_empty() {
            return Ok(Err("the build queue is empty: no work order is released and waiting".into()));
        }
        let max_p = rules.sequencing().ratios.iter().map(|r| r.p as usize).max().unwrap_or(1);
        let tail: Vec<&QueuedUnit> = agent.units().started().rev().take(max_p).rev().collect();
        let now = agent.now().unwrap_or_default();
        let Some(takt) = takt(&day) else {
            return Ok(Err("the queued work orders carry no planned start: their times are unknown".into()));
        };
        let units: Vec<PlantUnit<'_>> =
            day.iter().map(|u| u.plant_unit()).chain(rush.iter().map(|(u, _)| u.plant_unit())).collect();
        let tail_units: Vec<PlantUnit<'_>> = tail.iter().map(|u| u.plant_unit()).collect();
        let mut queue = rules.queue(&tail_units, &units, frozen);
        // The rush cars were read with the queue (one colour dictionary); they are not in it yet.
        let split = queue.inst.day.len() - rush.len();
        let rush_cars: Vec<Disruption> = queue
            .inst
            .day
            .split_off(split)
            .into_iter()
            .zip(queue.needs.split_off(split))
            .zip(&rush)
            .map(|((car, needs), (_, within))| Disruption::Rush { car, needs, within: *within })
            .collect();
        queue.frozen = queue.frozen.min(queue.inst.day.len());
        let slot = |t: &Timestamp| -> usize {
            let ms = (*t - now).num_milliseconds();
            if ms <= 0 { 0 } else { (ms as u64).div_ceil(takt.as_millis().max(1) as u64) as usize }
        };
        let mut ds = Vec::new();
        let mut notes = Vec::new();
        for d in &declared {
            let x = &d.disruption;
            match x.kind {
                DisruptionKind::Unavailable => {
                    let name = x.resource.as_deref().unwrap_or_default();
                    let Some(resource) = queue.resources.iter().position(|r| r == name) else {
                        notes.push(format!(
                            "{}: `{name}` is not a part only some units take nor option-specific equipment; \
                             re-sequencing cannot work around it",
                            x.disruption_id
                        ));
                        continue;
                    };
                    let from = x.from.as_ref().map_or(0, slot);
                    let until = x.until.as_ref().map_or(from, slot);
                    if until > from {
                        ds.push(Disruption::Unavailable { resource, from, until });
                    }
                }
                DisruptionKind::Hold => {
                    let idents: Vec<String> = x.vins.iter().filter(|v| agent.units().is_queued(v)).cloned().collect();
                    if !idents.is_empty() {
                        ds.push(Disruption::Hold { idents });
                    }
                }
                DisruptionKind::Rush | DisruptionKind::Cleared => {}
            }
        }
        ds.extend(rush_cars);
        if ds.is_empty() {
            return Ok(Err(format!("none of the disruptions in force touches the queue. {}", notes.join(" "))));
        }
        budget.check()?;
        let deadline = (Instant::now() + Duration::from_millis(self.search_ms)).min(budget.deadline);
        let proposal = match live::propose(&queue, &ds, deadline, &self.params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let pushed = live::push_back(&queue, &ds).map(|p| p.after).unwrap_or_default();
        // The new numbers: the same planned numbers, handed out in the new order; held units
        // take the last ones (out of the sequence until released).
        let by_vin: HashMap<&str, &QueuedUnit> =
            day.iter().copied().chain(rush.iter().map(|(u, _)| u)).map(|u| (u.vin.as_str(), u)).collect();
        let mut numbers: Vec<u64> = by_vin.values().map(|u| u.sequence).collect();
        numbers.sort_unstable();
        let order = proposal.idents.iter().chain(&proposal.removed);
        let resequence: Vec<Value> = order
            .zip(&numbers)
            .filter_map(|(vin, to)| {
                let u = by_vin.get(vin.as_str())?;
                (u.sequence != *to).then(|| {
                    json!({"work_order": u.work_order, "vin": u.vin, "from_sequence": u.sequence, "to_sequence": to})
                })
            })
            .collect();
        notes.extend(proposal.notes.iter().cloned());
        Ok(Ok(json!({
            "computed_from_seq": input.at_seq,
            "disruption_ids": declared.iter().map(|d| d.disruption.disruption_id.clone()).collect::<Vec<_>>(),
            "disruption_events": declared.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>(),
            "queue_len": queue.inst.day.len(),
            "frozen": queue.frozen,
            "takt_s": takt.as_secs_f64(),
            "moves": proposal.moves.iter().map(|m| json!({"vin": m.ident, "from": m.from, "to": m.to, "why": m.why})).collect::<Vec<_>>(),
            "removed": proposal.removed,
            "order": proposal.idents,
            "resequence": resequence,
            "before": outcome_json(&proposal.before),
            "after": outcome_json(&proposal.after),
            "push_back": outcome_json(&pushed),
            "notes": notes,
            "first_ms": proposal.first.as_secs_f64() * 1e3,
            "search_ms": proposal.elapsed.as_secs_f64() * 1e3,
        })))
    }
}

/// The queue's takt: the median gap between consecutive planned starts.
fn takt(day: &[&QueuedUnit]) -> Option<Duration> {
    let starts: Vec<Timestamp> = day.iter().filter_map(|u| u.planned_start).take(200).collect();
    let mut gaps: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).filter(|g| *g > 0).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(Duration::from_millis(gaps[gaps.len() / 2] as u64))
}

impl Planner for Resequence {
    fn name(&self) -> &'static str {
        PLANNER
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn reads(&self) -> &'static [EventKind] {
        &[]
    }

    fn window(&self) -> u64 {
        0
    }

    fn plan(&self, input: &PlanInput<'_>, budget: &Budget) -> Result<Value, PlanStop> {
        Ok(match self.propose(input, budget)? {
            Ok(v) => v,
            Err(error) => json!({"computed_from_seq": input.at_seq, "error": error}),
        })
    }
}
