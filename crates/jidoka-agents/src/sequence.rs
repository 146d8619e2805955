//! [`SequenceAgent`]: every scan, operation and tightening checked against the VIN's
//! configuration, the BOM (option rules, effectivity), engineering changes (cut-ins, use-up
//! windows) and the routing, before the unit moves on.
//!
//! Reason codes (finding kinds):
//! - `sequence.wrong_part`: the part is not on this station's BOM for this model;
//! - `sequence.wrong_variant`: the part is on this station's BOM but its option rule (or
//!   effectivity) does not hold for this VIN;
//! - `sequence.superseded`: an ECO's cut-in has passed and the old part was scanned;
//! - `sequence.not_yet_effective`: the new part of an ECO scanned before its cut-in;
//! - `sequence.quantity_over`: more pieces scanned than the BOM asks for;
//! - `sequence.duplicate_serial`: a serial already fitted to another unit;
//! - `sequence.lot_on_hold`: a supplier lot on quality hold;
//! - `sequence.operation_out_of_order`: an operation completed after a later one;
//! - `sequence.operation_missing`, `sequence.scan_missing`, `sequence.quantity_short`,
//!   `sequence.tightening_missing`: work undone when the unit leaves the station (one finding
//!   per departure, naming everything missing);
//! - `sequence.station_not_on_routing`, `sequence.unknown_vin`, `sequence.unknown_station`,
//!   `sequence.unknown_part`: data the agent cannot place (never ignored, never a crash);
//! - `sequence.tool_calibration_overdue`: a tightening made with a tool past its calibration
//!   due date (one finding per tool and due date, naming the first such result: every result
//!   of the tool since then is suspect).
//!
//! - `sequence.link_down`, `sequence.link_back`: a controller link down while the plant
//!   produces, and back (see [`crate::outage`]).
//!
//! - `sequence.master_data_refused`: a `master_data_changed` event that does not hold together
//!   (each row named) or arrived out of order (`issued_at` older than the last change applied
//!   from its source); the master data in force before it stays in force.
//!
//! The VIN's configuration comes from `work_order_released` events; master data from
//! `master_data_changed` events, in force from the next event after each (or, for a store
//! without them, given at construction). Without master data the agent checks nothing.

use crate::bom::{BomIndex, Requirement, UnitConfig, model_matches};
use crate::{Agent, FindingDraft};
use jidoka_model::master::{MasterData, WorkOrder};
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, Timestamp, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for SequenceConfig {
    fn default() -> Self {
        SequenceConfig { enabled: true }
    }
}

/// Master data indexed for lookups per station and part.
#[derive(Clone)]
struct Index {
    bom: BomIndex,
    routing_by_station: HashMap<String, Vec<jidoka_model::master::RoutingStep>>,
    lots_on_hold: HashSet<String>,
    /// Tool → when its calibration is due.
    calibration_due: HashMap<String, Timestamp>,
    /// Operators by id, when the master data lists any (else no certification check).
    operators: HashMap<String, jidoka_model::master::Operator>,
    /// Station → the highest certification level its work instructions ask for.
    required_level: HashMap<String, u8>,
}

#[derive(Clone)]
struct Order {
    /// The VIN's serial number (its last six characters, ISO 3779 positions 12-17), for
    /// serial-range effectivity.
    serial: String,
    model: String,
    options: BTreeSet<String>,
    sequence: u64,
    planned_start: Option<Timestamp>,
}

/// The ECO a finding names.
#[derive(Clone)]
struct ChangeRef {
    id: String,
}

#[derive(Default, Clone)]
struct Visit {
    required: Vec<Requirement>,
    scanned: HashMap<String, f64>,
    operations_done: Vec<u32>,
    tightened: HashSet<String>,
    evidence: Vec<String>,
    /// Required parts whose absence an earlier finding at this visit already named (a
    /// superseded or not-yet-effective part of the same ECO, or a wrong variant of the same
    /// option family, scanned in their place): not alerted again on leaving.
    excused: HashSet<String>,
    /// (part, serial) already counted: a scanner retry is not a second piece.
    counted_serials: HashSet<(String, String)>,
    /// Joints with a NOK result and no OK one yet.
    nok_joints: HashSet<String>,
    /// The unit was seen entering: only such a visit is judged when a departure event is lost
    /// (a stray result arriving after departure opens a visit that is simply dropped).
    entered: bool,
}

#[derive(Clone)]
pub struct SequenceAgent {
    /// The master data in force, and its index; `None`: nothing to check against yet.
    master: Option<MasterData>,
    index: Index,
    orders: HashMap<String, Order>,
    visits: HashMap<(String, String), Visit>,
    /// (part, serial) → VIN it was fitted to.
    serials: HashMap<(String, String), String>,
    /// Where each unit is, and which unit is at each station (for results without a VIN).
    current: HashMap<String, String>,
    at_station: HashMap<String, String>,
    /// (tool, due date) already reported overdue.
    overdue_flagged: HashSet<(String, Timestamp)>,
    /// (operator, station, why) already reported, until the master data changes; bounded by
    /// operators × stations.
    uncertified_flagged: HashSet<(String, String, String)>,
    /// Controller links down (see [`crate::outage`]).
    outages: crate::outage::LinkOutages,
}

impl std::fmt::Debug for SequenceAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceAgent").field("orders", &self.orders.len()).finish_non_exhaustive()
    }
}

fn subject(vin: &str, station: &str, part: Option<&str>) -> Subject {
    Subject {
        vin: Some(vin.to_string()),
        station: Some(station.to_string()),
        part_number: part.map(str::to_string),
        ..Subject::default()
    }
}

/// A finding of kind `sequence.<kind>`, critical when it holds the unit.
pub(crate) fn draft(kind: &str, verdict: Verdict, reason: String, subject: Subject, details: Value) -> FindingDraft {
    let severity = if verdict == Verdict::Hold { Severity::Critical } else { Severity::Warning };
    FindingDraft {
        kind: format!("sequence.{kind}"),
        verdict,
        severity,
        confidence: 1.0,
        reason,
        subject,
        extra_evidence: Vec::new(),
        details,
    }
}

impl SequenceAgent {
    /// Build from master data; malformed rows must have been rejected by
    /// [`MasterData::validate`] (a rule that does not parse here never matches).
    pub fn new(master: &MasterData) -> SequenceAgent {
        SequenceAgent {
            master: Some(master.clone()),
            index: Self::index(master),
            overdue_flagged: HashSet::new(),
            uncertified_flagged: HashSet::new(),
            orders: HashMap::new(),
            visits: HashMap::new(),
            serials: HashMap::new(),
            current: HashMap::new(),
            at_station: HashMap::new(),
            outages: Default::default(),
        }
    }

    /// An agent that takes its master data from the log alone: quiet until the first
    /// `master_data_changed` event.
    pub fn from_log() -> SequenceAgent {
        let mut agent = SequenceAgent::new(&MasterData::default());
        agent.master = None;
        agent
    }

    /// Put `change` in force after the rows it names were checked against what is in force;
    /// a change that does not hold together is a finding, and changes nothing.
    fn on_master_data(
        &mut self,
        event: &StoredEvent,
        change: &jidoka_model::master::MasterDataChange,
        out: &mut Vec<FindingDraft>,
    ) {
        let had_master = self.master.is_some();
        let base = self.master.take().unwrap_or_default();
        match base.apply_from(&event.event.source, change) {
            Ok(next) => {
                self.index = Self::index(&next);
                self.master = Some(next);
                // A new certification (or a lapse) is judged afresh.
                self.uncertified_flagged.clear();
            }
            Err(errors) => {
                let rows: Vec<String> = errors.iter().map(|(row, reason)| format!("{row}: {reason}")).collect();
                out.push(FindingDraft {
                    kind: "sequence.master_data_refused".into(),
                    verdict: Verdict::Review,
                    severity: Severity::Warning,
                    confidence: 1.0,
                    reason: format!(
                        "master data change from {} refused, {} problem(s) ({}); the master data in force stays",
                        event.event.source,
                        errors.len(),
                        rows.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                    ),
                    subject: Subject::default(),
                    extra_evidence: Vec::new(),
                    details: json!({"rows": errors.iter().map(|(row, reason)| json!({"row": row, "reason": reason})).collect::<Vec<_>>(),
                                    "revision": change.revision}),
                });
                if had_master {
                    self.master = Some(base);
                }
            }
        }
    }

    fn index(master: &MasterData) -> Index {
        let mut routing_by_station: HashMap<String, Vec<jidoka_model::master::RoutingStep>> = HashMap::new();
        for r in &master.routing {
            routing_by_station.entry(r.station.clone()).or_default().push(r.clone());
        }
        Index {
            bom: BomIndex::new(master),
            routing_by_station,
            lots_on_hold: master.lots_on_hold.iter().cloned().collect(),
            calibration_due: master
                .equipment
                .iter()
                .filter_map(|e| Some((e.equipment.clone(), e.calibration_due?)))
                .collect(),
            operators: master.operators.iter().map(|o| (o.operator.clone(), o.clone())).collect(),
            required_level: master.instructions.iter().fold(HashMap::new(), |mut m, w| {
                let level = m.entry(w.station.clone()).or_insert(0);
                *level = (*level).max(w.min_certification);
                m
            }),
        }
    }

    /// A unit worked at `station` by `operator`: when the master data lists operators, one who
    /// is unknown, not certified for the station, lapsed, or below the level its work
    /// instructions ask for is a finding (once per operator, station and reason until the
    /// master data changes), so the units they built can be reviewed.
    fn check_operator(
        &mut self,
        u: &jidoka_model::event::UnitAtStation,
        event: &StoredEvent,
        out: &mut Vec<FindingDraft>,
    ) {
        let Some(operator) = &u.operator else { return };
        if self.index.operators.is_empty() {
            return;
        }
        let required = self.index.required_level.get(&u.station).copied().unwrap_or(0);
        let why = match self.index.operators.get(operator) {
            None => Some(format!("operator {operator} is not in the master data")),
            Some(o) => o.not_certified(&u.station, required, event.event.occurred_at),
        };
        let Some(why) = why else { return };
        if !self.uncertified_flagged.insert((operator.clone(), u.station.clone(), why.clone())) {
            return;
        }
        out.push(draft(
            "operator_not_certified",
            Verdict::Review,
            format!("{} entered {} with {why}; review the units built there since", u.vin, u.station),
            subject(&u.vin, &u.station, None),
            json!({"operator": operator, "required_level": required, "why": why}),
        ));
    }

    fn requirements(&self, order: &Order, station: &str) -> Vec<Requirement> {
        let unit = UnitConfig {
            model: &order.model,
            options: &order.options,
            sequence: order.sequence,
            planned_start: order.planned_start,
            serial: Some(order.serial.as_str()),
        };
        self.index.bom.requirements(&unit, station)
    }

    fn routing_for(&self, station: &str, model: &str) -> Vec<&jidoka_model::master::RoutingStep> {
        self.index
            .routing_by_station
            .get(station)
            .into_iter()
            .flatten()
            .filter(|r| model_matches(&r.model, model))
            .collect()
    }

    /// The visit of a unit at a station, created with its requirements on first sight.
    fn visit(&mut self, vin: &str, station: &str) -> &mut Visit {
        let key = (vin.to_string(), station.to_string());
        if !self.visits.contains_key(&key) {
            let required = self.orders.get(vin).map(|o| self.requirements(o, station)).unwrap_or_default();
            self.visits.insert(key.clone(), Visit { required, ..Visit::default() });
        }
        self.visits.entry(key).or_default()
    }

    /// A wrong variant stands in for an open requirement of the same option family.
    fn excuse_same_family(&mut self, vin: &str, station: &str, families: &[String]) {
        let visit = self.visit(vin, station);
        let open = visit
            .required
            .iter()
            .find(|r| {
                !visit.scanned.contains_key(&r.part)
                    && !visit.excused.contains(&r.part)
                    && r.families.iter().any(|f| families.contains(f))
            })
            .map(|r| r.part.clone());
        if let Some(part) = open {
            visit.excused.insert(part);
        }
    }

    fn known_unit(&self, vin: &str, station: &str, out: &mut Vec<FindingDraft>) -> bool {
        if !self.orders.contains_key(vin) {
            out.push(draft(
                "unknown_vin",
                Verdict::Review,
                format!("VIN {vin} at {station} has no released work order; its configuration cannot be checked"),
                subject(vin, station, None),
                Value::Null,
            ));
            return false;
        }
        if !self.index.bom.by_station.contains_key(station) && !self.index.routing_by_station.contains_key(station) {
            out.push(draft(
                "unknown_station",
                Verdict::Review,
                format!("station {station} is not in the master data (VIN {vin})"),
                subject(vin, station, None),
                Value::Null,
            ));
            return false;
        }
        true
    }

    fn on_scan(&mut self, s: &jidoka_model::event::ComponentScanned, event_id: &str, out: &mut Vec<FindingDraft>) {
        let (vin, station, part) = (s.vin.as_str(), s.station.as_str(), s.part_number.as_str());
        if !self.known_unit(vin, station, out) {
            return;
        }
        let model = self.orders.get(vin).map(|o| o.model.clone()).unwrap_or_default();
        let visit = self.visit(vin, station);
        visit.evidence.push(event_id.to_string());
        let required = visit.required.clone();
        let subj = subject(vin, station, Some(part));
        if let Some(req) = required.iter().find(|r| r.part == part || r.also_allowed.as_deref() == Some(part)) {
            let key = req.part.clone();
            let total = {
                let visit = self.visit(vin, station);
                let retry =
                    s.serial.as_ref().is_some_and(|sn| !visit.counted_serials.insert((part.to_string(), sn.clone())));
                let total = visit.scanned.entry(key).or_default();
                if !retry {
                    *total += s.quantity;
                }
                *total
            };
            if total > req.quantity + 1e-9 {
                out.push(draft(
                    "quantity_over",
                    Verdict::Review,
                    format!("{total} × {part} scanned on {vin} at {station}; the BOM asks for {}", req.quantity),
                    subj.clone(),
                    json!({"part": part, "scanned": total, "required": req.quantity}),
                ));
            }
        } else if let Some((req, change)) = required.iter().find_map(|r| {
            let c = self
                .index
                .bom
                .changes
                .iter()
                .find(|c| c.old == part && c.new == r.part && r.change.as_deref() == Some(c.id.as_str()))?;
            Some((r.clone(), ChangeRef { id: c.id.clone() }))
        }) {
            self.visit(vin, station).excused.insert(req.part.clone());
            out.push(draft(
                "superseded",
                Verdict::Hold,
                format!(
                    "{part} on {vin} at {station} is superseded by {} ({}): cut-in has passed",
                    req.part, change.id
                ),
                subj.clone(),
                json!({"expected": req.part, "actual": part, "change": change.id}),
            ));
        } else if let Some((req, change)) = required.iter().find_map(|r| {
            let c = self.index.bom.changes.iter().find(|c| c.new == part && c.old == r.part)?;
            Some((r.clone(), ChangeRef { id: c.id.clone() }))
        }) {
            self.visit(vin, station).excused.insert(req.part.clone());
            out.push(draft(
                "not_yet_effective",
                Verdict::Hold,
                format!(
                    "{part} on {vin} at {station} is not effective yet ({} cuts in later); expected {}",
                    change.id, req.part
                ),
                subj.clone(),
                json!({"expected": req.part, "actual": part, "change": change.id}),
            ));
        } else if let Some((rule_text, rule_holds, families)) = self
            .index
            .bom
            .by_station
            .get(station)
            .into_iter()
            .flatten()
            .find(|l| l.part == part && model_matches(&l.model, &model))
            .map(|l| {
                let holds = self.orders.get(vin).is_some_and(|o| l.rule.holds(&o.options));
                (l.rule_text.clone(), holds, l.rule.terms().into_iter().map(|(f, _)| f).collect::<Vec<_>>())
            })
        {
            self.excuse_same_family(vin, station, &families);
            let expected: Vec<&str> = required.iter().map(|r| r.part.as_str()).collect();
            let why = if rule_holds {
                "its effectivity (sequence, date or serial range)".to_string()
            } else {
                format!("rule `{rule_text}`")
            };
            out.push(draft(
                "wrong_variant",
                Verdict::Hold,
                format!(
                    "{part} on {vin} at {station} is the wrong variant: {why} does not hold for this VIN; expected {}",
                    expected.join(" or ")
                ),
                subj.clone(),
                json!({"expected": expected, "actual": part, "rule": rule_text}),
            ));
        } else if self.index.bom.known_parts.contains(part) {
            let expected: Vec<&str> = required.iter().map(|r| r.part.as_str()).collect();
            out.push(draft(
                "wrong_part",
                Verdict::Hold,
                format!(
                    "{part} does not belong on {vin} at {station}; expected {}",
                    if expected.is_empty() { "no part".into() } else { expected.join(" or ") }
                ),
                subj.clone(),
                json!({"expected": expected, "actual": part}),
            ));
        } else {
            out.push(draft(
                "unknown_part",
                Verdict::Hold,
                format!("{part} scanned on {vin} at {station} is not a known part number"),
                subj.clone(),
                json!({"actual": part}),
            ));
        }
        if let Some(serial) = &s.serial {
            let key = (part.to_string(), serial.clone());
            match self.serials.get(&key) {
                Some(other) if other != vin => out.push(draft(
                    "duplicate_serial",
                    Verdict::Hold,
                    format!("serial {serial} of {part} scanned on {vin} was already fitted to {other}"),
                    subj.clone(),
                    json!({"serial": serial, "part": part, "first_vin": other}),
                )),
                Some(_) => {}
                None => {
                    self.serials.insert(key, vin.to_string());
                }
            }
        }
        if let Some(lot) = &s.supplier_lot
            && self.index.lots_on_hold.contains(lot)
        {
            out.push(draft(
                "lot_on_hold",
                Verdict::Hold,
                format!("{part} from supplier lot {lot} is on quality hold (scanned on {vin} at {station})"),
                subj,
                json!({"supplier_lot": lot, "part": part}),
            ));
        }
    }

    fn on_leave(&mut self, vin: &str, station: &str, event_id: &str, out: &mut Vec<FindingDraft>) {
        let Some(order) = self.orders.get(vin) else { return };
        let model = order.model.clone();
        let steps: Vec<(u32, String, Vec<String>)> = self
            .routing_for(station, &model)
            .into_iter()
            .map(|r| (r.step, r.operation.clone(), r.required_tightenings.clone()))
            .collect();
        let visit = self.visits.remove(&(vin.to_string(), station.to_string())).unwrap_or_else(|| Visit {
            required: self.orders.get(vin).map(|o| self.requirements(o, station)).unwrap_or_default(),
            ..Visit::default()
        });
        let ops_missing: Vec<&str> = steps
            .iter()
            .filter(|(step, _, _)| !visit.operations_done.contains(step))
            .map(|(_, op, _)| op.as_str())
            .collect();
        let mut scans_missing = Vec::new();
        let mut short = Vec::new();
        for r in visit.required.iter().filter(|r| !visit.excused.contains(&r.part)) {
            match visit.scanned.get(&r.part).copied().unwrap_or(0.0) {
                n if n <= 0.0 => scans_missing.push(r.part.clone()),
                n if n + 1e-9 < r.quantity => short.push(json!({"part": r.part, "scanned": n, "required": r.quantity})),
                _ => {}
            }
        }
        let (tightenings_nok, tightenings_missing): (Vec<&str>, Vec<&str>) = steps
            .iter()
            .flat_map(|(_, _, joints)| joints.iter())
            .filter(|j| !visit.tightened.contains(*j))
            .map(String::as_str)
            .partition(|j| visit.nok_joints.contains(*j));
        let kind = if !ops_missing.is_empty() {
            "operation_missing"
        } else if !scans_missing.is_empty() {
            "scan_missing"
        } else if !short.is_empty() {
            "quantity_short"
        } else if !tightenings_missing.is_empty() {
            "tightening_missing"
        } else if !tightenings_nok.is_empty() {
            "tightening_nok"
        } else {
            return;
        };
        let mut parts = Vec::new();
        if !ops_missing.is_empty() {
            parts.push(format!("operation {} not completed", ops_missing.join(", ")));
        }
        if !scans_missing.is_empty() {
            parts.push(format!("no scan of {}", scans_missing.join(", ")));
        }
        if !short.is_empty() {
            parts.push(format!("{} part(s) short", short.len()));
        }
        if !tightenings_missing.is_empty() {
            parts.push(format!(
                "{} of {} joints not tightened",
                tightenings_missing.len(),
                steps.iter().map(|s| s.2.len()).sum::<usize>()
            ));
        }
        if !tightenings_nok.is_empty() {
            parts.push(format!("joint(s) {} left with a NOK tightening", tightenings_nok.join(", ")));
        }
        let mut d = draft(
            kind,
            Verdict::Hold,
            format!("{vin} left {station} with work undone: {}", parts.join("; ")),
            subject(vin, station, None),
            json!({"operations_missing": ops_missing, "scans_missing": scans_missing, "quantity_short": short,
                   "tightenings_missing": tightenings_missing, "tightenings_nok": tightenings_nok, "left_event": event_id}),
        );
        d.extra_evidence = visit.evidence;
        out.push(d);
    }
}

impl Agent for SequenceAgent {
    fn name(&self) -> &'static str {
        "sequence-integrity"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn subscriptions(&self) -> &'static [EventKind] {
        &[
            EventKind::WorkOrderReleased,
            EventKind::UnitEnteredStation,
            EventKind::ComponentScanned,
            EventKind::OperationCompleted,
            EventKind::TighteningResult,
            EventKind::UnitLeftStation,
            EventKind::MasterDataChanged,
            EventKind::SourceGap,
            EventKind::SourceOutage,
        ]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        if let EventPayload::MasterDataChanged(change) = &event.event.payload {
            self.on_master_data(event, change, out);
            return;
        }
        if let EventPayload::SourceGap(g) = &event.event.payload {
            // Results a controller link will never have: the joints tightened meanwhile were
            // not checked, which a person must know before the units ship.
            let mut d = draft(
                "data_gap",
                Verdict::Review,
                format!(
                    "{} tightening result(s) of {} from {}, controller ids {} to {}, cannot be had ({}): the units \
                     tightened there meanwhile were not checked",
                    g.count, g.station, event.event.source, g.first_id, g.last_id, g.reason
                ),
                Subject { station: Some(g.station.clone()), ..Subject::default() },
                json!({"source": event.event.source, "first_id": g.first_id, "last_id": g.last_id, "count": g.count,
                       "reason": g.reason}),
            );
            d.severity = Severity::Critical;
            out.push(d);
            return;
        }
        if let EventPayload::SourceOutage(o) = &event.event.payload {
            self.outages.on_outage(event, o, out);
            return;
        }
        let at = event.event.occurred_at;
        match &event.event.payload {
            EventPayload::UnitEnteredStation(u) => self.outages.on_production(at, &u.station, Some(&u.vin), out),
            EventPayload::UnitLeftStation(u) => self.outages.on_production(at, &u.station, None, out),
            EventPayload::ComponentScanned(s) => self.outages.on_production(at, &s.station, None, out),
            EventPayload::OperationCompleted(o) => self.outages.on_production(at, &o.station, None, out),
            EventPayload::TighteningResult(t) => self.outages.on_production(at, &t.station, None, out),
            _ => {}
        }
        // Orders are kept before any master data arrives; checks need it.
        if self.master.is_none() && !matches!(event.event.payload, EventPayload::WorkOrderReleased(_)) {
            return;
        }
        match &event.event.payload {
            EventPayload::WorkOrderReleased(WorkOrder { vin, model, options, sequence, planned_start, .. }) => {
                let serial = vin.get(vin.len().saturating_sub(6)..).unwrap_or(vin).to_string();
                self.orders.insert(
                    vin.clone(),
                    Order {
                        serial,
                        model: model.clone(),
                        options: options.iter().cloned().collect(),
                        sequence: *sequence,
                        // Without a planned start, date cut-ins are judged at release time.
                        planned_start: planned_start.or(Some(event.event.occurred_at)),
                    },
                );
            }
            EventPayload::UnitEnteredStation(u) => {
                if !self.known_unit(&u.vin, &u.station, out) {
                    return;
                }
                // A unit is at one station at a time: entering the next one closes the last visit
                // even when its departure event was lost.
                if let Some(previous) = self.current.insert(u.vin.clone(), u.station.clone())
                    && previous != u.station
                {
                    let key = (u.vin.clone(), previous.clone());
                    match self.visits.get(&key).map(|v| v.entered) {
                        Some(true) => self.on_leave(&u.vin, &previous, &event.event.event_id, out),
                        Some(false) => {
                            self.visits.remove(&key);
                        }
                        None => {}
                    }
                }
                self.at_station.insert(u.station.clone(), u.vin.clone());
                let model = self.orders.get(&u.vin).map(|o| o.model.clone()).unwrap_or_default();
                if self.routing_for(&u.station, &model).is_empty() && !self.index.routing_by_station.is_empty() {
                    out.push(draft(
                        "station_not_on_routing",
                        Verdict::Hold,
                        format!("{} ({model}) entered {}, which is not on its routing", u.vin, u.station),
                        subject(&u.vin, &u.station, None),
                        json!({"model": model}),
                    ));
                }
                self.check_operator(u, event, out);
                let visit = self.visit(&u.vin, &u.station);
                visit.entered = true;
                visit.evidence.push(event.event.event_id.clone());
            }
            EventPayload::ComponentScanned(s) => self.on_scan(s, &event.event.event_id, out),
            EventPayload::OperationCompleted(o) => {
                if !self.orders.contains_key(&o.vin) {
                    return;
                }
                let model = self.orders.get(&o.vin).map(|x| x.model.clone()).unwrap_or_default();
                let step = self
                    .routing_for(&o.station, &model)
                    .into_iter()
                    .find(|r| r.operation == o.operation)
                    .map(|r| r.step);
                let id = event.event.event_id.clone();
                let visit = self.visit(&o.vin, &o.station);
                visit.evidence.push(id);
                match step {
                    // A NOK operation is not done.
                    Some(_) if o.result == Some(jidoka_model::event::OkNok::Nok) => {}
                    Some(step) => {
                        let later = visit.operations_done.iter().copied().filter(|s| *s > step).max();
                        visit.operations_done.push(step);
                        if let Some(later) = later {
                            out.push(draft(
                                "operation_out_of_order",
                                Verdict::Hold,
                                format!(
                                    "{} completed {} (step {step}) at {} after step {later}",
                                    o.vin, o.operation, o.station
                                ),
                                subject(&o.vin, &o.station, None),
                                json!({"operation": o.operation, "step": step, "after_step": later}),
                            ));
                        }
                    }
                    None => out.push(draft(
                        "operation_not_on_routing",
                        Verdict::Review,
                        format!(
                            "{} reported operation {} at {}, which is not on its routing",
                            o.vin, o.operation, o.station
                        ),
                        subject(&o.vin, &o.station, None),
                        json!({"operation": o.operation}),
                    )),
                }
            }
            EventPayload::TighteningResult(t) => {
                // Many controllers send no VIN: the result belongs to the unit at the station.
                let vin = t.vin.clone().or_else(|| self.at_station.get(&t.station).cloned());
                if let Some(due) = self.index.calibration_due.get(&t.tool).copied()
                    && event.event.occurred_at > due
                    && self.overdue_flagged.insert((t.tool.clone(), due))
                {
                    let subject = Subject {
                        vin: vin.clone(),
                        station: Some(t.station.clone()),
                        tool: Some(t.tool.clone()),
                        joint: Some(t.joint.clone()),
                        ..Subject::default()
                    };
                    out.push(draft(
                        "tool_calibration_overdue",
                        Verdict::Review,
                        format!(
                            "tool {} tightened {} at {} after its calibration fell due ({}): this and every later \
                             result of the tool until it is recalibrated need review",
                            t.tool,
                            t.joint,
                            t.station,
                            due.to_rfc3339()
                        ),
                        subject,
                        json!({"tool": t.tool, "calibration_due": due.to_rfc3339(), "first_result_at": event.event.occurred_at.to_rfc3339()}),
                    ));
                }
                if let Some(vin) = vin
                    && self.orders.contains_key(&vin)
                {
                    let visit = self.visit(&vin, &t.station);
                    if t.controller_verdict == Some(jidoka_model::event::OkNok::Nok) {
                        if !visit.tightened.contains(&t.joint) {
                            visit.nok_joints.insert(t.joint.clone());
                            // What a HOLD for the joint left NOK rests on.
                            visit.evidence.push(event.event.event_id.clone());
                        }
                    } else {
                        visit.nok_joints.remove(&t.joint);
                        visit.tightened.insert(t.joint.clone());
                    }
                }
            }
            EventPayload::UnitLeftStation(u) if self.orders.contains_key(&u.vin) => {
                if self.current.get(&u.vin) == Some(&u.station) {
                    self.current.remove(&u.vin);
                }
                if self.at_station.get(&u.station) == Some(&u.vin) {
                    self.at_station.remove(&u.station);
                }
                self.on_leave(&u.vin, &u.station, &event.event.event_id, out);
            }
            _ => {}
        }
    }
}
