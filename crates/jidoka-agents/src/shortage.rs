//! Material shortage forecast: for every part at line side, when its stock runs out and how
//! likely that is within the next hours.
//!
//! What it reads, all from the log: the build queue (released work orders, and the units
//! started that have not yet reached the part's station), the BOM in force (options, effectivity
//! and ECO cut-ins, the same explosion as the sequence check), line-side stock (a physical
//! `count`, then scans take their quantity, replenishments add, adjustments and scrap change
//! it), what is in transit (`material_call_off` events: quantity and promised time), and each
//! supplier's delivery record (lateness of every `supplier_delivery` against its promise).
//!
//! The forecast: the pending units are put on the line's time (each station's next arrival,
//! then one per takt, the takt measured from the starts); their demand for the part, in build
//! order, against the stock, the supermarket and the deliveries. Replenishment is assumed to
//! follow the plant's kanban loop as the log shows it: one call-off of the last called-off
//! quantity each time that much has been consumed since the last call-off, promised after the
//! last call-off's lead time. With every delivery on its promise the first unit short is
//! exact (the run-out); the probability of a stock-out within H hours comes from drawing each
//! delivery's lateness from its supplier's record (a delivery already overdue from the record's
//! deliveries that were at least that late) — seeded by the log position, so a replay draws the
//! same.
//!
//! Findings: `shortage.predicted` when the probability of a stock-out within the horizon
//! (8 h) reaches its threshold, `shortage.urgent` when it does within 2 h, `shortage.cleared`
//! when it falls back below half of the horizon's threshold; `shortage.input_refused` names an
//! input the forecast cannot use (a call-off or delivery of a part outside the BOM, a delivery
//! dated absurdly far from its promise), once per part and reason; `shortage.expedite` (a
//! REVIEW) when a delivery is overdue and a stock-out within the horizon is at least
//! `expedite_probability` likely (a low bar: premium freight costs far less than a stock-out),
//! proposing to expedite the overdue delivery promised first among those not yet expedited (one
//! per round); `shortage.expedite_withdrawn` when such a delivery is in (an expedite still
//! waiting is then withdrawn). A call-off seen again with the same id is the supplier's new
//! promise for it.

use crate::bom::{BomIndex, UnitConfig};
use crate::build_queue::{QueuedUnit, ReleasedUnits};
use crate::{Agent, FindingDraft};
use jidoka_model::event::{MaterialCallOff, MaterialMovement, MaterialTransaction, SupplierDelivery, rfc3339};
use jidoka_model::master::MasterData;
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, Timestamp, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub const NAME: &str = "shortage";
/// Finding kinds.
pub const PREDICTED: &str = "shortage.predicted";
pub const URGENT: &str = "shortage.urgent";
pub const CLEARED: &str = "shortage.cleared";
pub const REFUSED: &str = "shortage.input_refused";
/// A proposal to expedite the delivery in transit of a part that will otherwise run out (an
/// `expedite_delivery` action under governance).
pub const EXPEDITE: &str = "shortage.expedite";
/// The delivery of a call-off whose expedite was proposed is in: an expedite still waiting for
/// a decision is no longer needed (the service withdraws it).
pub const EXPEDITE_WITHDRAWN: &str = "shortage.expedite_withdrawn";

/// Deliveries kept per supplier for its record.
pub const RECORD_KEPT: usize = 500;
/// A supplier with fewer deliveries on record borrows the record of all suppliers.
pub const RECORD_MIN: usize = 10;
/// A delivery further than this from its promise (either way) is taken for a wrong date.
pub const ABSURD_H: f64 = 7.0 * 24.0;
/// Units of the queue the forecast looks at, at most.
pub const HORIZON_UNITS: usize = 1300;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShortageConfig {
    pub enabled: bool,
    /// The warning horizon in hours, and the probability of a stock-out within it that warns.
    pub horizon_h: f64,
    pub warn_probability: f64,
    /// The urgent horizon in hours (the time a replenishment needs), and its probability.
    pub urgent_h: f64,
    pub urgent_probability: f64,
    /// Draws of the deliveries' lateness per forecast.
    pub samples: u32,
    /// The service declares the part of an urgent warning unavailable (a `build_disruption`
    /// from `shortage`), so the build queue is re-sequenced around it; a clear ends it.
    pub declare_disruptions: bool,
    /// A part with a delivery overdue and a stock-out within the warning horizon at least
    /// this likely proposes expediting the delivery (once per call-off): the cost of premium
    /// freight over the cost of a stock-out, which is far larger.
    pub propose_expedites: bool,
    pub expedite_probability: f64,
}

impl Default for ShortageConfig {
    fn default() -> Self {
        ShortageConfig {
            enabled: true,
            horizon_h: 8.0,
            warn_probability: 0.5,
            urgent_h: 2.0,
            urgent_probability: 0.5,
            samples: 200,
            declare_disruptions: true,
            propose_expedites: true,
            expedite_probability: 0.1,
        }
    }
}

impl ShortageConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        for (name, v) in [
            ("warn_probability", self.warn_probability),
            ("urgent_probability", self.urgent_probability),
            ("expedite_probability", self.expedite_probability),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                errors.push((format!("{path}.{name}"), "must be a probability above 0 and at most 1".into()));
            }
        }
        if !(self.urgent_h > 0.0 && self.urgent_h <= self.horizon_h && self.horizon_h <= 7.0 * 24.0) {
            errors.push((format!("{path}.urgent_h"), "needs 0 < urgent_h <= horizon_h <= 168".into()));
        }
        if !(1..=10_000).contains(&self.samples) {
            errors.push((format!("{path}.samples"), "must be between 1 and 10000".into()));
        }
    }
}

/// A replenishment on its way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InTransit {
    pub call_off_id: String,
    pub quantity: f64,
    #[serde(with = "rfc3339")]
    pub ordered_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub promised_at: Timestamp,
}

/// The first unit short of a part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOut {
    pub vin: String,
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
    /// Units of the part's pending demand before it (those still served).
    pub units_ahead: usize,
}

/// A supplier's delivery record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SupplierRecord {
    pub deliveries: u64,
    pub late: u64,
    pub short: u64,
    /// Lateness of the last deliveries, hours (negative: early).
    #[serde(skip)]
    lateness_h: VecDeque<f64>,
}

impl SupplierRecord {
    pub fn late_share(&self) -> f64 {
        if self.deliveries == 0 { 0.0 } else { self.late as f64 / self.deliveries as f64 }
    }

    /// The lateness below which 90 % of the recorded deliveries arrived, hours.
    pub fn p90_late_h(&self) -> f64 {
        let mut v: Vec<f64> = self.lateness_h.iter().copied().collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * 0.9).round() as usize]
    }
}

/// One part's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub part: String,
    pub station: String,
    pub supplier: Option<String>,
    pub stock: f64,
    pub supermarket: f64,
    pub in_transit: Vec<InTransit>,
    /// Demand over the warning horizon, pieces per hour.
    pub demand_per_h: f64,
    /// With every delivery on its promise (an overdue one arriving now).
    pub run_out: Option<RunOut>,
    /// Probability of a stock-out within the urgent horizon and within the warning horizon.
    pub p_urgent: f64,
    pub p_horizon: f64,
    /// The median first unit short among the draws short within the horizon.
    pub expected: Option<RunOut>,
    /// What the forecast assumed for the kanban loop: quantity per call-off and lead time (h).
    pub call_off_quantity: Option<f64>,
    pub lead_h: Option<f64>,
    /// The hours the oldest open call-off is overdue (0: none is).
    pub overdue_h: f64,
    #[serde(with = "rfc3339")]
    pub computed_at: Timestamp,
}

/// One alarm's next state: it comes on at `threshold` and stays on until the probability falls
/// below half of it (so a probability hovering at the threshold does not flap). The evaluation
/// replays the same rule at other thresholds.
pub fn alarm(on: bool, probability: f64, threshold: f64) -> bool {
    if on { probability >= threshold / 2.0 } else { probability >= threshold }
}

#[derive(Debug, Clone, Default)]
struct PartStock {
    station: Option<String>,
    supplier: Option<String>,
    counted: bool,
    stock: f64,
    supermarket: f64,
    /// Consumed since the last call-off (the kanban loop's position).
    since_call_off: f64,
    call_off_quantity: Option<f64>,
    lead_s: Option<i64>,
    open: Vec<InTransit>,
    /// Taken by scans: a `consume` posting of the part is then not subtracted again.
    scanned: bool,
    /// The alarms on: within the warning horizon, within the urgent horizon.
    warned: bool,
    urgent: bool,
}

/// The shortage forecast's state; see the module.
#[derive(Debug, Clone)]
pub struct ShortageAgent {
    config: ShortageConfig,
    master: Option<MasterData>,
    bom: BomIndex,
    units: ReleasedUnits,
    parts: BTreeMap<String, PartStock>,
    suppliers: BTreeMap<String, SupplierRecord>,
    /// Station → the last unit that entered it: VIN, when, whether it has left, and what was
    /// scanned on it there (its demand at the station less that).
    last_entry: HashMap<String, AtStation>,
    /// The last intervals between starts, seconds.
    start_gaps: VecDeque<f64>,
    last_start: Option<Timestamp>,
    now: Option<Timestamp>,
    forecasts: BTreeMap<String, Forecast>,
    /// (part, reason) already reported as unusable.
    refused: HashSet<(String, String)>,
    /// Call-offs whose expedite was proposed.
    expedites: HashSet<String>,
    /// Each unit's demand by station (VIN, planned number) → [(station, part, quantity)].
    explosions: HashMap<(String, u64), Explosion>,
    names: Names,
    /// Forecasts computed (a round per start or material event).
    pub rounds: u64,
}

impl std::fmt::Debug for BomIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BomIndex").field("stations", &self.by_station.len()).finish()
    }
}

/// A station's place in the line: the line index of the unit in it (if it has not left) and
/// what was scanned on it there, the index of the next unit to come and when it comes.
type Place<'a> = (Option<usize>, usize, Timestamp, Option<&'a HashMap<String, f64>>);

/// A unit's demand: (station, part, quantity).
type Explosion = std::sync::Arc<Vec<(u32, u32, f64)>>;

/// Station and part names by number, for the forecast's pass over the queue.
#[derive(Debug, Clone, Default)]
struct Names {
    ids: HashMap<String, u32>,
    list: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.list.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.list.push(name.to_string());
        id
    }
}

#[derive(Debug, Clone)]
struct AtStation {
    vin: String,
    at: Timestamp,
    left: bool,
    scanned: HashMap<String, f64>,
}

/// The takt assumed before enough starts are seen, seconds.
const DEFAULT_TAKT_S: f64 = 60.0;
/// Start intervals kept for the takt.
const GAPS_KEPT: usize = 30;

fn hours(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds() as f64 / 3_600_000.0
}

/// A finding's subject: a part at a station.
fn about(station: &str, part: &str) -> Subject {
    Subject { station: Some(station.to_string()), part_number: Some(part.to_string()), ..Subject::default() }
}

fn plus_s(t: Timestamp, s: f64) -> Timestamp {
    t + chrono::Duration::milliseconds((s * 1000.0).round() as i64)
}

/// A small seeded generator (SplitMix64): the draws are a function of the log position.
#[derive(Debug, Clone)]
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The demand for one part, in time order.
#[derive(Debug, Default)]
struct Demand {
    at: Vec<Timestamp>,
    /// Cumulative pieces up to and including each unit.
    cum: Vec<f64>,
    /// Each unit's place in the line of the round (its VIN: the round's `vins`).
    units: Vec<usize>,
}

/// What every part's forecast of one round shares: the VINs of the line its demand indexes, and
/// the lateness records it draws from, sorted (hours).
struct Round {
    vins: Vec<String>,
    own: HashMap<String, Vec<f64>>,
    pooled: Vec<f64>,
}

/// A supply: pieces and when they arrive.
#[derive(Debug, Clone, Copy)]
struct Supply {
    quantity: f64,
    promised: Timestamp,
    /// Hours overdue at the forecast (0: not yet due).
    overdue_h: f64,
}

impl Demand {
    /// The index of the first unit short, given arrivals (time, pieces) sorted by time.
    fn first_short(&self, level0: f64, arrivals: &[(Timestamp, f64)]) -> Option<usize> {
        let mut level = level0;
        let mut k = 0;
        let mut from = 0usize;
        loop {
            // Arrivals up to the next demand's time are in.
            let end = arrivals.get(k).map(|a| a.0);
            // Demand served before the next arrival with `level`.
            let over = self.cum.partition_point(|c| *c <= level + 1e-9);
            let i = over.max(from);
            if i >= self.cum.len() {
                return None;
            }
            match end {
                Some(e) if self.at[i] >= e => {
                    level += arrivals[k].1;
                    from = self.at.partition_point(|t| *t < e).max(from);
                    k += 1;
                }
                _ => return Some(i),
            }
        }
    }
}

/// A unit's demand at every station of the BOM.
fn explode(bom: &BomIndex, names: &mut Names, u: &QueuedUnit) -> Explosion {
    let serial = u.vin.get(u.vin.len().saturating_sub(6)..);
    let config = UnitConfig {
        model: &u.model,
        options: &u.options,
        sequence: u.sequence,
        planned_start: u.planned_start,
        serial,
    };
    let mut e = Vec::new();
    for station in bom.by_station.keys() {
        let sid = names.id(station);
        for r in bom.requirements(&config, station) {
            e.push((sid, names.id(&r.part), r.quantity));
        }
    }
    std::sync::Arc::new(e)
}

impl ShortageAgent {
    pub fn new(config: ShortageConfig, master: Option<&MasterData>) -> ShortageAgent {
        ShortageAgent {
            config,
            master: master.cloned(),
            bom: master.map(BomIndex::new).unwrap_or_default(),
            units: ReleasedUnits::default(),
            parts: BTreeMap::new(),
            suppliers: BTreeMap::new(),
            last_entry: HashMap::new(),
            start_gaps: VecDeque::new(),
            last_start: None,
            now: None,
            forecasts: BTreeMap::new(),
            refused: HashSet::new(),
            expedites: HashSet::new(),
            explosions: HashMap::new(),
            names: Names::default(),
            rounds: 0,
        }
    }

    /// The newest forecast per part.
    pub fn forecasts(&self) -> impl Iterator<Item = &Forecast> {
        self.forecasts.values()
    }

    pub fn supplier_record(&self, supplier: &str) -> Option<&SupplierRecord> {
        self.suppliers.get(supplier)
    }

    /// Drop the cached explosions of the units (a benchmark's peer: every unit exploded afresh).
    pub fn forget_explosions(&mut self) {
        self.explosions.clear();
    }

    /// Every supplier's delivery record.
    pub fn suppliers(&self) -> impl Iterator<Item = (&String, &SupplierRecord)> {
        self.suppliers.iter()
    }

    pub fn config(&self) -> &ShortageConfig {
        &self.config
    }

    /// The takt the line keeps: the median of the last intervals between starts.
    pub fn takt_s(&self) -> f64 {
        let mut gaps: Vec<f64> = self.start_gaps.iter().copied().filter(|g| *g > 0.0).collect();
        if gaps.len() < 3 {
            return DEFAULT_TAKT_S;
        }
        gaps.sort_by(f64::total_cmp);
        gaps[gaps.len() / 2]
    }

    fn part(&mut self, part: &str) -> &mut PartStock {
        self.parts.entry(part.to_string()).or_default()
    }

    fn known(&self, part: &str) -> bool {
        self.bom.known_parts.contains(part)
    }

    fn refuse(&mut self, part: &str, reason: String, out: &mut Vec<FindingDraft>) {
        if !self.refused.insert((part.to_string(), reason.clone())) {
            return;
        }
        out.push(FindingDraft {
            kind: REFUSED.into(),
            verdict: Verdict::Pass,
            severity: Severity::Warning,
            confidence: 1.0,
            reason: format!("{part}: {reason}; the shortage forecast goes on without it"),
            subject: Subject { part_number: Some(part.to_string()), ..Subject::default() },
            extra_evidence: Vec::new(),
            details: json!({"part": part, "reason": reason}),
        });
    }

    fn on_transaction(&mut self, t: &MaterialTransaction, out: &mut Vec<FindingDraft>) {
        if !self.known(&t.part_number) {
            self.refuse(&t.part_number, "a line-side transaction of a part outside the BOM in force".into(), out);
            return;
        }
        let p = self.part(&t.part_number);
        if let Some(station) = &t.station {
            p.station = Some(station.clone());
        }
        match t.movement {
            MaterialMovement::Count => {
                p.stock = t.quantity;
                p.counted = true;
            }
            MaterialMovement::Replenish => {
                p.stock += t.quantity;
                p.supermarket = (p.supermarket - t.quantity).max(0.0);
            }
            MaterialMovement::Adjust => p.stock += t.quantity,
            MaterialMovement::Scrap => p.stock -= t.quantity,
            MaterialMovement::Consume => {
                if !p.scanned {
                    p.stock -= t.quantity;
                    p.since_call_off += t.quantity;
                }
            }
        }
    }

    fn on_call_off(&mut self, c: &MaterialCallOff, at: Timestamp, out: &mut Vec<FindingDraft>) {
        if !self.known(&c.part_number) {
            self.refuse(&c.part_number, "a call-off of a part outside the BOM in force".into(), out);
            return;
        }
        if hours(at, c.promised_at).abs() > ABSURD_H {
            self.refuse(&c.part_number, format!("call-off {} promised more than a week away", c.call_off_id), out);
            return;
        }
        let p = self.part(&c.part_number);
        // The supplier's new promise for a call-off in transit (an expedite confirmed, a delay
        // announced): the loop's position and lead time stay those of the call-off itself.
        if let Some(open) = p.open.iter_mut().find(|o| o.call_off_id == c.call_off_id) {
            open.promised_at = c.promised_at;
            return;
        }
        if let Some(station) = &c.station {
            p.station = Some(station.clone());
        }
        p.supplier = Some(c.supplier.clone());
        p.since_call_off = (p.since_call_off - c.quantity).max(0.0);
        p.call_off_quantity = Some(c.quantity);
        p.lead_s = Some((c.promised_at - at).num_seconds().max(0));
        p.open.push(InTransit {
            call_off_id: c.call_off_id.clone(),
            quantity: c.quantity,
            ordered_at: at,
            promised_at: c.promised_at,
        });
    }

    fn on_delivery(&mut self, d: &SupplierDelivery, out: &mut Vec<FindingDraft>) {
        if !self.known(&d.part_number) {
            self.refuse(&d.part_number, "a delivery of a part outside the BOM in force".into(), out);
            return;
        }
        let late_h = hours(d.promised_at, d.delivered_at);
        let p = self.part(&d.part_number);
        p.supplier = Some(d.supplier.clone());
        p.supermarket += d.quantity;
        // The call-off it answers: named, else the oldest open one of the part.
        let idx = match &d.call_off_id {
            Some(id) => p.open.iter().position(|o| &o.call_off_id == id),
            None => (!p.open.is_empty()).then_some(0),
        };
        let closed = idx.map(|i| p.open.remove(i));
        let called = closed.as_ref().map(|o| o.quantity);
        let station = p.station.clone().unwrap_or_default();
        // In: no longer one to expedite (the set stays as small as what is in transit), and an
        // expedite of it still waiting for a decision is withdrawn.
        if let Some(o) = &closed
            && self.expedites.remove(&o.call_off_id)
        {
            out.push(FindingDraft {
                kind: EXPEDITE_WITHDRAWN.into(),
                verdict: Verdict::Pass,
                severity: Severity::Info,
                confidence: 1.0,
                reason: format!(
                    "{} of {} from {} delivered at {}: its expedite is no longer needed",
                    o.call_off_id,
                    d.part_number,
                    d.supplier,
                    rfc3339::format(&d.delivered_at)
                ),
                subject: about(&station, &d.part_number),
                extra_evidence: Vec::new(),
                details: json!({"expedite": {"call_off_id": o.call_off_id, "supplier": d.supplier,
                                             "part": d.part_number, "delivery_id": d.delivery_id}}),
            });
        }
        if late_h.abs() > ABSURD_H {
            let reason =
                format!("delivery {} dated {late_h:.0} h from its promise, left out of the record", d.delivery_id);
            self.refuse(&d.part_number, reason, out);
            return;
        }
        let rec = self.suppliers.entry(d.supplier.clone()).or_default();
        rec.deliveries += 1;
        rec.late += u64::from(late_h > 0.0);
        rec.short += u64::from(called.is_some_and(|q| d.quantity + 1e-9 < q));
        rec.lateness_h.push_back(late_h);
        while rec.lateness_h.len() > RECORD_KEPT {
            rec.lateness_h.pop_front();
        }
    }

    fn on_enter(&mut self, vin: &str, station: &str, at: Timestamp) -> bool {
        let here = AtStation { vin: vin.to_string(), at, left: false, scanned: HashMap::new() };
        self.last_entry.insert(station.to_string(), here);
        let started = self.units.start(vin);
        if started {
            if let Some(last) = self.last_start {
                self.start_gaps.push_back((at - last).num_milliseconds() as f64 / 1000.0);
                while self.start_gaps.len() > GAPS_KEPT {
                    self.start_gaps.pop_front();
                }
            }
            self.last_start = Some(at);
        }
        started
    }

    /// Each tracked part's demand over the pending units, in time order, and the VINs of the
    /// line (started, then queued) the demand's units index. One pass over the units: a unit's
    /// place at a station is its place in the line after the last unit that entered the station.
    fn demand(&mut self, now: Timestamp) -> (HashMap<String, Demand>, Vec<String>) {
        let takt = self.takt_s();
        let Self { bom, names, parts, units, last_entry, explosions, .. } = self;
        let tracked: Vec<&String> =
            parts.iter().filter(|(_, p)| p.counted && p.station.is_some()).map(|(k, _)| k).collect();
        let mut out: HashMap<String, Demand> = HashMap::new();
        if tracked.is_empty() {
            return (out, Vec::new());
        }
        // Stations and tracked parts by number.
        let stations: Vec<u32> = bom.by_station.keys().map(|s| names.id(s)).collect();
        let tracked_ids: Vec<u32> = tracked.iter().map(|p| names.id(p)).collect();
        let mut station_no: Vec<Option<usize>> = vec![None; names.list.len()];
        for (i, &id) in stations.iter().enumerate() {
            station_no[id as usize] = Some(i);
        }
        let mut part_no: Vec<Option<usize>> = vec![None; names.list.len()];
        for (i, &id) in tracked_ids.iter().enumerate() {
            part_no[id as usize] = Some(i);
        }
        let line: Vec<&QueuedUnit> = units.started().chain(units.queue().take(HORIZON_UNITS)).collect();
        // Per station: the line index of the unit in it (and what it has had scanned, if it has
        // not left), the index of the next unit to come, and when it comes.
        let mut at_station: Vec<Place<'_>> = vec![(None, 0, now, None); stations.len()];
        for (i, &id) in stations.iter().enumerate() {
            if let Some(here) = last_entry.get(&names.list[id as usize]) {
                let k = line.iter().rposition(|u| u.vin == here.vin);
                let current = k.filter(|_| !here.left);
                at_station[i] =
                    (current, k.map_or(0, |k| k + 1), plus_s(here.at, takt).max(now), current.map(|_| &here.scanned));
            }
        }
        // Each unit's demand (station, part, quantity), cached by (VIN, planned number): the
        // explosion is redone only for a new release or new master data.
        let mut cache = std::mem::take(explosions);
        let mut kept = HashMap::with_capacity(line.len());
        let mut rows: Vec<Vec<(Timestamp, f64, usize)>> = vec![Vec::new(); tracked.len()];
        // Units before the first still to take a part at some station are done.
        let first = at_station.iter().map(|(current, next, _, _)| current.unwrap_or(*next)).min().unwrap_or(0);
        for (k, u) in line.iter().enumerate().skip(first) {
            let key = (u.vin.clone(), u.sequence);
            let e = cache.remove(&key).unwrap_or_else(|| explode(bom, names, u));
            for &(station, part, q) in e.iter() {
                let (Some(Some(si)), Some(Some(pi))) = (station_no.get(station as usize), part_no.get(part as usize))
                else {
                    continue;
                };
                let (current, next, base, scanned) = at_station[*si];
                let (at, q) = if current == Some(k) {
                    (now, q - scanned.and_then(|m| m.get(&names.list[part as usize])).copied().unwrap_or(0.0))
                } else if k >= next {
                    (plus_s(base, (k - next) as f64 * takt), q)
                } else {
                    continue;
                };
                if q > 0.0 {
                    rows[*pi].push((at, q, k));
                }
            }
            kept.insert(key, e);
        }
        *explosions = kept;
        for (pi, mut r) in rows.into_iter().enumerate() {
            // A part taken at two stations: in time order.
            r.sort_by_key(|x| x.0);
            let mut d = Demand {
                at: Vec::with_capacity(r.len()),
                cum: Vec::with_capacity(r.len()),
                units: Vec::with_capacity(r.len()),
            };
            let mut total = 0.0;
            for (at, q, k) in r {
                total += q;
                d.at.push(at);
                d.cum.push(total);
                d.units.push(k);
            }
            out.insert(tracked[pi].clone(), d);
        }
        let vins = line.iter().map(|u| u.vin.clone()).collect();
        (out, vins)
    }

    fn forecast_part(
        &self,
        part: &str,
        p: &PartStock,
        demand: &Demand,
        round: &Round,
        now: Timestamp,
        seed: u64,
    ) -> Forecast {
        let level0 = p.stock + p.supermarket;
        let mut supplies: Vec<Supply> = p
            .open
            .iter()
            .map(|o| Supply {
                quantity: o.quantity,
                promised: o.promised_at,
                overdue_h: hours(o.promised_at, now).max(0.0),
            })
            .collect();
        // The kanban loop: a call-off each time a call-off's quantity has been consumed since the
        // last one.
        if let (Some(q), Some(lead)) = (p.call_off_quantity, p.lead_s)
            && q > 0.0
        {
            let mut next = q - p.since_call_off;
            for (i, c) in demand.cum.iter().enumerate() {
                while *c >= next - 1e-9 {
                    supplies.push(Supply { quantity: q, promised: plus_s(demand.at[i], lead as f64), overdue_h: 0.0 });
                    next += q;
                }
            }
        }
        let horizon = plus_s(now, self.config.horizon_h * 3600.0);
        let urgent = plus_s(now, self.config.urgent_h * 3600.0);
        let run_out_at = |arrivals: &mut Vec<(Timestamp, f64)>| {
            arrivals.sort_by_key(|a| a.0);
            demand.first_short(level0, arrivals)
        };
        let at_promise: Vec<(Timestamp, f64)> = supplies.iter().map(|s| (s.promised.max(now), s.quantity)).collect();
        let run_out = run_out_at(&mut at_promise.clone()).map(|i| RunOut {
            vin: round.vins[demand.units[i]].clone(),
            at: demand.at[i],
            units_ahead: i,
        });
        // The record: the supplier's own, or everyone's while it has too few deliveries; sorted,
        // so the deliveries at least as late as an overdue one are a tail.
        let record: &[f64] = p.supplier.as_ref().and_then(|s| round.own.get(s)).unwrap_or(&round.pooled);
        let late_from = record.partition_point(|l| *l <= 0.0);
        // The draws only decide what happens within the horizon: the demand up to it, and the
        // deliveries that can arrive before it.
        let within = demand.at.partition_point(|t| *t <= horizon);
        let near = Demand { at: demand.at[..within].to_vec(), cum: demand.cum[..within].to_vec(), units: Vec::new() };
        let reach = plus_s(horizon, record.first().map_or(0.0, |l| -l.min(0.0)) * 3600.0);
        let drawn: Vec<(Supply, usize)> = supplies
            .iter()
            .filter(|s| s.promised <= reach)
            .map(|s| (*s, record.partition_point(|l| *l < s.overdue_h)))
            .collect();
        let (mut in_urgent, mut in_horizon) = (0u32, 0u32);
        let mut shorts: Vec<usize> = Vec::new();
        // Without a record, and before the part's replenishment is seen, nothing is drawn: the
        // probabilities are the deliveries-on-promise answer, and no alarm is raised on it.
        let known = p.call_off_quantity.is_some();
        let mut samples = if record.is_empty() || !known { 0 } else { self.config.samples.max(1) };
        // If not even every delivery at its latest possible draw leaves the line short within
        // the horizon, no draw can: the probabilities are 0 without drawing.
        if samples > 0 {
            let worst = record.last().copied().unwrap_or(0.0);
            let latest_late = if late_from < record.len() { worst } else { 1.0 };
            let mut latest: Vec<(Timestamp, f64)> = drawn
                .iter()
                .map(|(s, tail)| {
                    let at = if s.overdue_h > 0.0 && *tail >= record.len() {
                        plus_s(now, latest_late * 3600.0)
                    } else {
                        plus_s(s.promised, worst * 3600.0).max(now)
                    };
                    (at, s.quantity)
                })
                .collect();
            latest.sort_by_key(|a| a.0);
            if near.first_short(level0, &latest).is_none() {
                samples = 0;
            }
        }
        let mut draws = Draws(seed ^ fnv(part));
        let mut arrivals: Vec<(Timestamp, f64)> = Vec::with_capacity(drawn.len());
        for _ in 0..samples {
            arrivals.clear();
            for (s, tail) in &drawn {
                let at = if s.overdue_h > 0.0 {
                    // Already this late: as late as a delivery that was at least as late, else
                    // later again by as much as a late delivery usually is.
                    if *tail < record.len() {
                        plus_s(s.promised, record[tail + draws.below(record.len() - tail)] * 3600.0).max(now)
                    } else {
                        let late = &record[late_from..];
                        let extra = if late.is_empty() { 1.0 } else { late[draws.below(late.len())] };
                        plus_s(now, extra * 3600.0)
                    }
                } else {
                    plus_s(s.promised, record[draws.below(record.len())] * 3600.0).max(now)
                };
                arrivals.push((at, s.quantity));
            }
            arrivals.sort_by_key(|a| a.0);
            if let Some(i) = near.first_short(level0, &arrivals) {
                let t = near.at[i];
                if t <= urgent {
                    in_urgent += 1;
                }
                in_horizon += 1;
                shorts.push(i);
            }
        }
        let samples = samples.max(1);
        if !known {
            (in_urgent, in_horizon) = (0, 0);
        } else if record.is_empty() {
            // Deliveries on their promise: certain either way.
            if let Some(r) = &run_out {
                in_urgent = u32::from(r.at <= urgent);
                in_horizon = u32::from(r.at <= horizon);
                if r.at <= horizon {
                    shorts.push(r.units_ahead);
                }
            }
        }
        shorts.sort_unstable();
        let expected = shorts.get(shorts.len() / 2).map(|&i| RunOut {
            vin: round.vins[demand.units[i]].clone(),
            at: demand.at[i],
            units_ahead: i,
        });
        let in_window = demand.at.partition_point(|t| *t <= horizon);
        let demand_h = if in_window == 0 { 0.0 } else { demand.cum[in_window - 1] };
        Forecast {
            part: part.to_string(),
            station: p.station.clone().unwrap_or_default(),
            supplier: p.supplier.clone(),
            stock: p.stock,
            supermarket: p.supermarket,
            in_transit: p.open.clone(),
            demand_per_h: demand_h / self.config.horizon_h.max(1e-9),
            run_out,
            p_urgent: in_urgent as f64 / samples as f64,
            p_horizon: in_horizon as f64 / samples as f64,
            expected,
            call_off_quantity: p.call_off_quantity,
            lead_h: p.lead_s.map(|s| s as f64 / 3600.0),
            overdue_h: supplies.iter().map(|s| s.overdue_h).fold(0.0, f64::max),
            computed_at: now,
        }
    }

    /// The round's shared part: the line's VINs, and the suppliers' records sorted once (each
    /// supplier's own with enough deliveries, and everyone's for the others).
    fn round(&self, vins: Vec<String>) -> Round {
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        Round {
            vins,
            own: self
                .suppliers
                .iter()
                .filter(|(_, r)| r.lateness_h.len() >= RECORD_MIN)
                .map(|(k, r)| (k.clone(), sorted(r.lateness_h.iter().copied().collect())))
                .collect(),
            pooled: sorted(self.suppliers.values().flat_map(|r| r.lateness_h.iter().copied()).collect()),
        }
    }

    /// Recompute every tracked part's forecast, and warn on the parts that cross a threshold.
    fn recompute(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        let Some(now) = self.now else { return };
        self.rounds += 1;
        let (demand, vins) = self.demand(now);
        let round = self.round(vins);
        let empty = Demand::default();
        let mut next = BTreeMap::new();
        for (part, p) in &self.parts {
            if !p.counted || p.station.is_none() {
                continue;
            }
            let d = demand.get(part).unwrap_or(&empty);
            next.insert(part.clone(), self.forecast_part(part, p, d, &round, now, event.seq));
        }
        self.forecasts = next;
        let parts: Vec<String> = self.forecasts.keys().cloned().collect();
        for part in parts {
            self.warn(&part, out);
            if self.config.propose_expedites {
                self.propose_expedite(&part, out);
            }
        }
    }

    fn warn(&mut self, part: &str, out: &mut Vec<FindingDraft>) {
        let Some(f) = self.forecasts.get(part) else { return };
        let Some(p) = self.parts.get(part) else { return };
        let c = &self.config;
        let warned = alarm(p.warned, f.p_horizon, c.warn_probability);
        let urgent = alarm(p.urgent, f.p_urgent, c.urgent_probability);
        let kind = if urgent && !p.urgent {
            URGENT
        } else if warned && !p.warned && !urgent {
            PREDICTED
        } else if !warned && !urgent && (p.warned || p.urgent) {
            CLEARED
        } else {
            ""
        };
        if let Some(p) = self.parts.get_mut(part) {
            (p.warned, p.urgent) = (warned || urgent, urgent);
        }
        if kind.is_empty() {
            return;
        }
        let f = f.clone();
        let record = f.supplier.as_ref().and_then(|s| self.suppliers.get(s)).cloned().unwrap_or_default();
        let when = f.expected.as_ref().or(f.run_out.as_ref());
        let (severity, reason) = match kind {
            CLEARED => (
                Severity::Info,
                format!(
                    "{part} at {}: stock-out no longer expected within {} h (probability {:.0} %)",
                    f.station,
                    c.horizon_h,
                    f.p_horizon * 100.0
                ),
            ),
            _ => {
                let c = &self.config;
                let urgent = kind == URGENT;
                let (h, p) = if urgent { (c.urgent_h, f.p_urgent) } else { (c.horizon_h, f.p_horizon) };
                let transit: f64 = f.in_transit.iter().map(|t| t.quantity).sum();
                (
                    if urgent { Severity::Critical } else { Severity::Warning },
                    format!(
                        "{part} at {} runs out within {h} h with probability {:.0} %{}: {:.0} at line side, {:.0} in the \
                         supermarket, {:.0} in transit{}, demand {:.0}/h; {} delivered {} times, {:.0} % late, 90 % \
                         within {:.1} h of the promise",
                        f.station,
                        p * 100.0,
                        when.map_or(String::new(), |w| format!(
                            ", first short {} at {}",
                            w.vin,
                            rfc3339::format(&w.at)
                        )),
                        f.stock,
                        f.supermarket,
                        transit,
                        if f.overdue_h > 0.0 { format!(" ({:.1} h overdue)", f.overdue_h) } else { String::new() },
                        f.demand_per_h,
                        f.supplier.as_deref().unwrap_or("its supplier"),
                        record.deliveries,
                        record.late_share() * 100.0,
                        record.p90_late_h(),
                    ),
                )
            }
        };
        out.push(FindingDraft {
            kind: kind.into(),
            verdict: Verdict::Pass,
            severity,
            confidence: f.p_horizon.max(f.p_urgent),
            reason,
            subject: about(&f.station, part),
            extra_evidence: Vec::new(),
            details: json!({
                "forecast": f,
                "supplier_record": {"deliveries": record.deliveries, "late": record.late, "short": record.short,
                                     "late_share": record.late_share(), "p90_late_h": record.p90_late_h()},
            }),
        });
    }

    /// A stock-out within the horizon likely enough: expedite the overdue delivery promised
    /// first among those not expedited yet.
    fn propose_expedite(&mut self, part: &str, out: &mut Vec<FindingDraft>) {
        let Some(f) = self.forecasts.get(part) else { return };
        let c = &self.config;
        if f.p_horizon <= 0.0 || f.p_horizon < c.expedite_probability {
            return;
        }
        let Some(open) = f
            .in_transit
            .iter()
            .filter(|t| t.promised_at < f.computed_at && !self.expedites.contains(&t.call_off_id))
            .min_by_key(|t| t.promised_at)
        else {
            return;
        };
        // Those expedited already are counted on their new promise; if a stock-out is still
        // likely, the next one is needed too.
        self.expedites.insert(open.call_off_id.clone());
        let supplier = f.supplier.clone().unwrap_or_default();
        let overdue_h = hours(open.promised_at, f.computed_at).max(0.0);
        let overdue =
            if overdue_h < 1.0 { format!("{:.0} min", overdue_h * 60.0) } else { format!("{overdue_h:.1} h") };
        let needed = f.expected.as_ref().or(f.run_out.as_ref());
        let reason = format!(
            "Expedite {} of {part} ({:.0} pieces) from {supplier}: promised {}, {overdue} overdue; {} at {} \
             runs out within {} h with probability {:.0} %{}",
            open.call_off_id,
            open.quantity,
            rfc3339::format(&open.promised_at),
            part,
            f.station,
            self.config.horizon_h,
            f.p_horizon * 100.0,
            needed.map_or(String::new(), |w| format!(", first short {} at {}", w.vin, rfc3339::format(&w.at))),
        );
        out.push(FindingDraft {
            kind: EXPEDITE.into(),
            verdict: Verdict::Review,
            severity: Severity::Critical,
            confidence: f.p_horizon,
            reason,
            subject: about(&f.station, part),
            extra_evidence: Vec::new(),
            details: json!({
                "expedite": {
                    "call_off_id": open.call_off_id,
                    "supplier": supplier,
                    "part": part,
                    "station": f.station,
                    "quantity": open.quantity,
                    "promised_at": rfc3339::format(&open.promised_at),
                    "needed_by": needed.map(|w| rfc3339::format(&w.at)),
                    "first_short_vin": needed.map(|w| w.vin.clone()),
                    "p_horizon": f.p_horizon,
                },
            }),
        });
    }

    fn on_master(&mut self, event: &StoredEvent, change: &jidoka_model::master::MasterDataChange) {
        let base = self.master.clone().unwrap_or_default();
        // A change that does not hold together is the sequence agent's finding.
        if let Ok(next) = base.apply_from(&event.event.source, change) {
            self.bom = BomIndex::new(&next);
            self.master = Some(next);
            self.explosions.clear();
        }
    }
}

impl Agent for ShortageAgent {
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
            EventKind::UnitLeftStation,
            EventKind::ComponentScanned,
            EventKind::MaterialTransaction,
            EventKind::MaterialCallOff,
            EventKind::SupplierDelivery,
            EventKind::MasterDataChanged,
        ]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        let at = event.event.occurred_at;
        if !matches!(event.event.payload, EventPayload::MasterDataChanged(_)) {
            self.now = Some(self.now.map_or(at, |n| n.max(at)));
        }
        let recompute = match &event.event.payload {
            EventPayload::WorkOrderReleased(w) => {
                self.units.release(w);
                false
            }
            EventPayload::UnitEnteredStation(u) => self.on_enter(&u.vin, &u.station, at),
            EventPayload::UnitLeftStation(u) => {
                if let Some(here) = self.last_entry.get_mut(&u.station)
                    && here.vin == u.vin
                {
                    here.left = true;
                }
                false
            }
            EventPayload::ComponentScanned(s) => {
                if let Some(here) = self.last_entry.get_mut(&s.station)
                    && here.vin == s.vin
                {
                    *here.scanned.entry(s.part_number.clone()).or_default() += s.quantity;
                }
                if let Some(p) = self.parts.get_mut(&s.part_number) {
                    p.scanned = true;
                    p.stock -= s.quantity;
                    p.since_call_off += s.quantity;
                    p.station.get_or_insert_with(|| s.station.clone());
                }
                false
            }
            EventPayload::MaterialTransaction(t) => {
                self.on_transaction(t, out);
                true
            }
            EventPayload::MaterialCallOff(c) => {
                self.on_call_off(c, at, out);
                true
            }
            EventPayload::SupplierDelivery(d) => {
                self.on_delivery(d, out);
                true
            }
            EventPayload::MasterDataChanged(c) => {
                self.on_master(event, c);
                false
            }
            _ => false,
        };
        if recompute {
            self.recompute(event, out);
        }
    }
}
