//! The line: a paced mixed-model line where unit `u` is at station `s` during slot `u + s`.
//! [`Simulation::next_slot`] produces one takt's events from every station, in plant-time order,
//! with a [`GroundTruth`] record for every fault it injected.

use crate::curve::{TighteningMode, tighten};
use crate::plant::{BomLine, JointSpec, Plant};
use crate::rng::{Rng, label};
use crate::vin;
use chrono::{DateTime, Duration, Utc};
use jidoka_model::event::{BatchCounter, ComponentScanned, OkNok, OperationCompleted, UnitAtStation};
use jidoka_model::master::WorkOrder;
use jidoka_model::rule::Rule;
use jidoka_model::{Event, EventPayload, stable_id};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Which tightenings carry their curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveMode {
    All,
    /// Only tightenings with an injected fault (smaller files; not for false-alarm evaluation).
    Faults,
    None,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// `cross_thread`, `soft_joint`, `stripped`, `rehit`, `missing`, `tool_drift`, `wrong_part`,
    /// `wrong_variant`, `superseded`, `duplicate_serial`, `skipped_operation`.
    pub fault: String,
    pub unit: u64,
    pub vin: String,
    pub station: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The event that carries the fault (none for a skipped operation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Plant time at which the fault starts.
    pub onset_at: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// What one slot (one takt) produced.
#[derive(Debug, Default)]
pub struct Slot {
    pub events: Vec<Event>,
    pub truth: Vec<GroundTruth>,
    pub work_orders: Vec<WorkOrder>,
}

#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) index: u64,
    pub(crate) sequence: u64,
    pub(crate) vin: String,
    pub(crate) work_order: String,
    pub(crate) model: String,
    pub(crate) options: BTreeSet<String>,
    pub(crate) planned_start: DateTime<Utc>,
}

/// A unit of the plan: its slot, identity, model and option codes (`FAMILY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUnit {
    pub index: u64,
    pub vin: String,
    pub work_order: String,
    pub model: String,
    pub options: BTreeSet<String>,
}

/// The running simulation.
#[derive(Debug)]
pub struct Simulation {
    pub(crate) plant: Plant,
    pub(crate) base: Rng,
    start: DateTime<Utc>,
    takt_ms: i64,
    units: Option<u64>,
    pub(crate) slot: u64,
    /// How many slots ahead of the line the MES releases work orders (0: as the unit enters).
    release_ahead: u64,
    /// Slot → the unit (by the slot it was drawn for) a re-sequencing put there.
    moved: HashMap<u64, u64>,
    /// Slots whose work orders are released again (re-sequenced) at the next slot.
    rereleased: std::collections::BTreeSet<u64>,
    curves: CurveMode,
    pub(crate) floor: crate::floor::Floor,
    /// `in_flight[s]` is the unit at station `s` this slot (None: the station is idle).
    in_flight: VecDeque<Option<Unit>>,
    rules: Vec<Rule>,
    serial_counter: HashMap<String, u64>,
    recent_serials: HashMap<String, VecDeque<String>>,
    tightening_counter: HashMap<String, u64>,
    drift_reported: Vec<bool>,
    txn: u64,
}

fn ms(d: f64) -> Duration {
    Duration::milliseconds((d * 1000.0).round() as i64)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    jidoka_model::event::rfc3339::format(&t)
}

impl Simulation {
    /// A simulation of `units` units (None = endless) of `plant` from `seed`.
    pub fn new(plant: Plant, seed: u64, units: Option<u64>, curves: CurveMode) -> Simulation {
        let start = DateTime::parse_from_rfc3339(&plant.line.start).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let takt_ms = (plant.takt_s() * 1000.0).round() as i64;
        let rules = plant.bom.iter().map(|b| Rule::parse(&b.rule).unwrap_or(Rule::Always)).collect();
        let drift_reported = vec![false; plant.faults.tool_drift.len()];
        Simulation {
            plant,
            base: Rng::new(seed),
            start,
            takt_ms,
            units,
            slot: 0,
            release_ahead: 0,
            moved: HashMap::new(),
            rereleased: Default::default(),
            curves,
            in_flight: VecDeque::new(),
            rules,
            serial_counter: HashMap::new(),
            recent_serials: HashMap::new(),
            tightening_counter: HashMap::new(),
            drift_reported,
            txn: 0,
            floor: crate::floor::Floor::default(),
        }
    }

    /// False once every unit has left the last station.
    pub fn has_more(&self) -> bool {
        match self.units {
            Some(n) => self.slot < n + self.plant.stations.len() as u64,
            None => true,
        }
    }

    pub(crate) fn slot_start(&self, slot: u64) -> DateTime<Utc> {
        self.start + Duration::milliseconds(self.takt_ms * slot as i64)
    }

    pub(crate) fn shift_at(&self, t: DateTime<Utc>) -> String {
        let hours = (t - self.start).num_seconds() as f64 / 3600.0;
        let idx = (hours / self.plant.line.shift_hours).floor().max(0.0) as u64 % 3;
        ["A", "B", "C"][idx as usize].to_string()
    }

    /// The MES releases each work order `slots` takts before its unit enters the line, so the
    /// log holds the build queue of the coming hours (0, the default: as the unit enters).
    pub fn with_release_ahead(mut self, slots: u64) -> Simulation {
        self.release_ahead = slots;
        self
    }

    fn work_order(&self, unit: &Unit) -> WorkOrder {
        WorkOrder {
            work_order: unit.work_order.clone(),
            vin: unit.vin.clone(),
            model: unit.model.clone(),
            options: unit.options.iter().cloned().collect(),
            sequence: unit.sequence,
            planned_start: Some(unit.planned_start),
        }
    }

    /// The unit the plan has in `slot`: the one drawn for it, or the one a re-sequencing put
    /// there (it keeps its VIN, work order, options and history; it takes the slot's number and
    /// start).
    fn unit_at(&self, slot: u64) -> Unit {
        let index = self.moved.get(&slot).copied().unwrap_or(slot);
        let mut unit = self.new_unit(index);
        unit.sequence = slot + 1;
        unit.planned_start = self.slot_start(slot);
        unit
    }

    /// A new build sequence from the MES: each `(vin, from, to)` moves the unit `vin`, planned
    /// at number `from`, to number `to` (a slot's number is the slot + 1). Refused whole, naming
    /// why, when a number is of a unit already started, a unit is no longer at the number the
    /// change was computed from (the sequence moved since), or the numbers moved to are not the
    /// numbers moved from (two units in one slot, a slot left empty). The work orders released
    /// already are released again with their new numbers at the next slot.
    pub fn resequence(&mut self, moves: &[(String, u64, u64)]) -> Result<usize, String> {
        let mut from: Vec<u64> = moves.iter().map(|m| m.1).collect();
        let mut to: Vec<u64> = moves.iter().map(|m| m.2).collect();
        if let Some(n) = moves.iter().flat_map(|(_, f, t)| [*f, *t]).find(|n| *n <= self.slot) {
            return Err(format!(
                "number {n} is already on the line (the next unit to start is number {})",
                self.slot + 1
            ));
        }
        from.sort_unstable();
        to.sort_unstable();
        if from != to || from.windows(2).any(|w| w[0] == w[1]) {
            return Err("the numbers moved to are not the numbers moved from, each once".into());
        }
        if let Some((vin, f, _)) = moves.iter().find(|(vin, f, _)| self.unit_at(f - 1).vin != *vin) {
            return Err(format!(
                "number {f} is {} now, not {vin}: the sequence changed since the change was made",
                self.unit_at(f - 1).vin
            ));
        }
        let before: HashMap<u64, u64> =
            moves.iter().map(|&(_, f, _)| (f - 1, self.moved.get(&(f - 1)).copied().unwrap_or(f - 1))).collect();
        for &(_, f, t) in moves {
            let unit = before[&(f - 1)];
            if unit == t - 1 {
                self.moved.remove(&(t - 1));
            } else {
                self.moved.insert(t - 1, unit);
            }
        }
        let horizon = self.slot + self.release_ahead;
        self.rereleased.extend(to.into_iter().map(|n| n - 1).filter(|s| *s <= horizon));
        Ok(moves.len())
    }

    pub fn planned_units(&self, range: std::ops::Range<u64>) -> Vec<PlannedUnit> {
        range
            .map(|i| {
                let u = self.unit_at(i);
                PlannedUnit { index: u.index, vin: u.vin, work_order: u.work_order, model: u.model, options: u.options }
            })
            .collect()
    }

    fn new_unit(&self, index: u64) -> Unit {
        let mut rng = self.base.fork(label("unit")).fork(index);
        let plant = &self.plant;
        let shares: Vec<f64> = plant.models.iter().map(|m| m.share).collect();
        let model = &plant.models[rng.weighted(&shares)];
        let sequence = index + 1;
        let vin = vin::build(
            &plant.line.wmi,
            &model.vds,
            plant.line.model_year,
            plant.line.plant_code,
            plant.line.first_serial + index,
        )
        .unwrap_or_default();
        let options =
            plant.options.iter().map(|o| format!("{}={}", o.family, o.values[rng.weighted(&o.shares)])).collect();
        let planned_start = self.slot_start(index);
        Unit {
            index,
            sequence,
            vin,
            work_order: format!("WO-{sequence:07}"),
            model: model.code.clone(),
            options,
            planned_start,
        }
    }

    pub(crate) fn event(&mut self, source: &str, at: DateTime<Utc>, payload: EventPayload) -> Event {
        self.txn += 1;
        let txn = format!("{:010}", self.txn);
        Event {
            event_id: stable_id("ev", &[source, &txn]),
            source: source.to_string(),
            correlation_id: format!("{source}:{txn}"),
            source_txn_id: txn,
            occurred_at: at,
            received_at: at,
            payload,
        }
    }

    /// Produce the next takt of events from every station.
    pub fn next_slot(&mut self) -> Slot {
        let mut out = Slot::default();
        let slot = self.slot;
        self.slot += 1;
        let mut entering = None;
        // The MES releases the orders of the slots that come into its horizon with this one
        // (the first slot: the whole horizon), or the entering unit's order as it enters.
        let first = if slot == 0 { 0 } else { slot + self.release_ahead };
        let mut release: Vec<u64> = std::mem::take(&mut self.rereleased).into_iter().filter(|s| *s < first).collect();
        release.extend(first..=slot + self.release_ahead);
        for ahead in release {
            if self.units.is_none_or(|n| ahead < n) {
                let order = self.work_order(&self.unit_at(ahead));
                let released = self.event("mes", self.slot_start(slot), EventPayload::WorkOrderReleased(order));
                out.events.push(released);
            }
        }
        if self.units.is_none_or(|n| slot < n) {
            let unit = self.unit_at(slot);
            out.work_orders.push(self.work_order(&unit));
            entering = Some(unit);
        }
        let stations = self.plant.stations.len();
        self.in_flight.push_front(entering);
        self.in_flight.truncate(stations);
        let mut timed: Vec<(DateTime<Utc>, usize, usize, Event)> = Vec::new();
        let slot_start = self.slot_start(slot);
        let slot_end = self.slot_start(slot + 1);
        for (n, (t, ev)) in self.due_events(slot_start, slot_end, &mut out.truth).into_iter().enumerate() {
            timed.push((t, usize::MAX, n, ev));
        }
        let units: Vec<Option<Unit>> = self.in_flight.iter().cloned().collect();
        for (station_idx, unit) in units.iter().enumerate() {
            let mut events = self.andon_stops(station_idx, slot_start, &mut out.truth);
            if let Some(unit) = unit {
                events.extend(self.station_work(station_idx, unit, slot, &mut out.truth));
            }
            for (n, (t, ev)) in events.into_iter().enumerate() {
                timed.push((t, station_idx, n, ev));
            }
        }
        if let Some(Some(done)) = self.in_flight.get(stations - 1) {
            self.floor.units.remove(&done.index);
        }
        timed.sort_by_key(|a| (a.0, a.1, a.2));
        out.events.extend(timed.into_iter().map(|(_, _, _, e)| e));
        out
    }

    fn drift_for(
        &mut self,
        tool: &str,
        unit: &Unit,
        at: DateTime<Utc>,
        station: &str,
        truth: &mut Vec<GroundTruth>,
    ) -> f64 {
        let mut offset = 0.0;
        for (i, d) in self.plant.faults.tool_drift.iter().enumerate() {
            if d.tool != tool || unit.index < d.onset_unit {
                continue;
            }
            let progress = ((unit.index - d.onset_unit) as f64 / d.ramp_units as f64).min(1.0);
            offset += d.offset_pct / 100.0 * progress;
            if !self.drift_reported[i] {
                self.drift_reported[i] = true;
                truth.push(GroundTruth {
                    fault: "tool_drift".into(),
                    unit: unit.index,
                    vin: unit.vin.clone(),
                    station: station.to_string(),
                    joint: None,
                    tool: Some(tool.to_string()),
                    event_id: None,
                    onset_at: rfc3339(at),
                    detail: json!({"offset_pct": d.offset_pct, "ramp_units": d.ramp_units, "onset_unit": d.onset_unit}),
                });
            }
        }
        offset
    }

    fn pick_mode(&self, rng: &mut Rng) -> TighteningMode {
        let f = &self.plant.faults;
        let x = rng.uniform();
        let mut acc = 0.0;
        for (rate, mode) in [
            (f.cross_thread, TighteningMode::CrossThread),
            (f.soft_joint, TighteningMode::SoftJoint),
            (f.stripped, TighteningMode::Stripped),
            (f.rehit, TighteningMode::Rehit),
            (f.missing, TighteningMode::Missing),
        ] {
            acc += rate;
            if x < acc {
                return mode;
            }
        }
        TighteningMode::Good
    }

    /// The part this unit should get for a BOM line (after ECOs), and whether the old part
    /// is still allowed (use-up window).
    fn required_part(&self, line: &BomLine, unit: &Unit) -> (String, Option<String>) {
        for eco in &self.plant.ecos {
            if eco.old_part == line.part && eco.cut_in_passed(unit.sequence, unit.planned_start) {
                let use_up = eco.old_valid_until_sequence.is_some_and(|until| unit.sequence <= until);
                return (eco.new_part.clone(), use_up.then(|| eco.old_part.clone()));
            }
        }
        (line.part.clone(), None)
    }

    fn station_work(
        &mut self,
        station_idx: usize,
        unit: &Unit,
        slot: u64,
        truth: &mut Vec<GroundTruth>,
    ) -> Vec<(DateTime<Utc>, Event)> {
        let station = self.plant.stations[station_idx].clone();
        let mut rng = self.base.fork(label("station")).fork(unit.index).fork(station_idx as u64);
        let slot_start = self.slot_start(slot);
        let takt = self.plant.takt_s();
        let shift = self.shift_at(slot_start);
        let operator =
            self.plant.operators.iter().find(|o| o.station == station.id && o.shift == shift).map(|o| o.id.clone());
        let mut events = Vec::new();
        let mut t = slot_start + ms(1.0);
        let mes = "mes";
        let fixture = self.fixture_for(&station.id, unit.index);
        let at_station = UnitAtStation {
            vin: unit.vin.clone(),
            station: station.id.clone(),
            work_order: Some(unit.work_order.clone()),
            operator: operator.clone(),
            shift: Some(shift.clone()),
            fixture: fixture.clone(),
        };
        let ev = self.event(mes, t, EventPayload::UnitEnteredStation(at_station.clone()));
        events.push((t, ev));
        self.floor.unit(unit.index).context.insert(
            station.id.clone(),
            crate::floor::StationContext {
                shift: shift.clone(),
                fixture: fixture.clone(),
                operator: operator.clone(),
                tool: station.joints.first().map(|j| j.tool.clone()),
            },
        );

        let skipped = rng.chance(self.plant.faults.skipped_operation);
        if skipped {
            truth.push(GroundTruth {
                fault: "skipped_operation".into(),
                unit: unit.index,
                vin: unit.vin.clone(),
                station: station.id.clone(),
                joint: None,
                tool: None,
                event_id: None,
                onset_at: rfc3339(t),
                detail: json!({"operation": station.operation}),
            });
        } else {
            t += ms(2.0);
            self.scans(
                &station.id,
                &station.operation,
                unit,
                operator.as_deref(),
                &mut rng,
                &mut t,
                &mut events,
                truth,
            );
            let joints: Vec<(JointSpec, u32)> =
                station.joints.iter().flat_map(|j| (1..=j.count).map(move |k| (j.clone(), k))).collect();
            // Lay the tightenings out inside the takt: each gets an equal share of the time left
            // (positioning + the run itself), so a station never spills into the next slot.
            let elapsed = (t - slot_start).num_milliseconds() as f64 / 1000.0;
            let work = station.cycle_s.unwrap_or(takt - 3.0).min(takt - 3.0);
            let share = ((work - elapsed) / joints.len().max(1) as f64).max(0.05);
            let first = t;
            for (idx, (spec, k)) in joints.into_iter().enumerate() {
                let at = first + ms(share * idx as f64 + share * 0.2);
                let ev = self.tightening(&station.id, &spec, k, unit, &mut rng, at, truth);
                events.push((at, ev));
                t = first + ms(share * (idx + 1) as f64);
            }
            t += ms(0.5);
            events.extend(self.process_samples(&station.id, unit, &mut rng, t, truth));
            self.defects_at(&station.id, unit, &mut rng, t, truth);
            if self.plant.quality.inspection_station == station.id {
                events.extend(self.inspect(unit, &mut rng, &mut t, truth));
            }
            t += ms(0.5);
            let done = OperationCompleted {
                vin: unit.vin.clone(),
                station: station.id.clone(),
                operation: station.operation.clone(),
                work_order: Some(unit.work_order.clone()),
                operator: operator.clone(),
                result: Some(OkNok::Ok),
            };
            let ev = self.event(mes, t, EventPayload::OperationCompleted(done));
            events.push((t, ev));
        }
        let leave = (slot_start + ms(takt - 1.0)).max(t + ms(0.1));
        let ev = self.event(mes, leave, EventPayload::UnitLeftStation(at_station));
        events.push((leave, ev));
        events
    }

    #[allow(clippy::too_many_arguments)]
    fn scans(
        &mut self,
        station: &str,
        operation: &str,
        unit: &Unit,
        operator: Option<&str>,
        rng: &mut Rng,
        t: &mut DateTime<Utc>,
        events: &mut Vec<(DateTime<Utc>, Event)>,
        truth: &mut Vec<GroundTruth>,
    ) {
        let lines: Vec<usize> = (0..self.plant.bom.len())
            .filter(|&i| {
                let b = &self.plant.bom[i];
                b.station == station
                    && (b.models.is_empty() || b.models.contains(&unit.model))
                    && b.effective_for(unit.sequence)
                    && self.rules[i].holds(&unit.options)
            })
            .collect();
        let faults = self.plant.faults.clone();
        for i in lines {
            let line = self.plant.bom[i].clone();
            let (required, use_up) = self.required_part(&line, unit);
            let mut part = match &use_up {
                Some(old) if rng.chance(0.5) => old.clone(),
                _ => required.clone(),
            };
            let mut fault: Option<(&str, Value)> = None;
            let superseded_old = self
                .plant
                .ecos
                .iter()
                .find(|e| e.new_part == required && use_up.is_none() && e.old_part == line.part)
                .map(|e| (e.old_part.clone(), e.id.clone()));
            // Siblings: parts of the same station whose rule does not hold for this unit.
            let siblings: Vec<String> = (0..self.plant.bom.len())
                .filter(|&j| {
                    let b = &self.plant.bom[j];
                    b.station == station
                        && b.effective_for(unit.sequence)
                        && !self.rules[j].holds(&unit.options)
                        && b.part != line.part
                })
                .map(|j| self.plant.bom[j].part.clone())
                .collect();
            if let Some((old, eco)) = &superseded_old
                && rng.chance(faults.superseded)
            {
                part = old.clone();
                fault = Some(("superseded", json!({"expected": required, "actual": old, "eco": eco})));
            } else if !siblings.is_empty() && rng.chance(faults.wrong_variant) {
                let wrong = siblings[rng.below(siblings.len())].clone();
                fault = Some(("wrong_variant", json!({"expected": required, "actual": wrong, "rule": line.rule})));
                part = wrong;
            } else if rng.chance(faults.wrong_part) {
                let others: Vec<&BomLine> = self.plant.bom.iter().filter(|b| b.station != station).collect();
                if !others.is_empty() {
                    let wrong = others[rng.below(others.len())].part.clone();
                    fault = Some(("wrong_part", json!({"expected": required, "actual": wrong})));
                    part = wrong;
                }
            }
            let count = self.serial_counter.entry(part.clone()).or_insert(0);
            *count += 1;
            let piece = *count;
            let lot = format!("LOT-{}-{:04}", part, (piece - 1) / line.lot_size as u64 + 1);
            let mut serial = None;
            if line.serialised {
                let fresh = format!("SN-{}-{:07}", part, piece);
                let recent = self.recent_serials.entry(part.clone()).or_default();
                if fault.is_none() && !recent.is_empty() && rng.chance(faults.duplicate_serial) {
                    let reused = recent[rng.below(recent.len())].clone();
                    fault = Some(("duplicate_serial", json!({"serial": reused, "part": part})));
                    serial = Some(reused);
                } else {
                    recent.push_back(fresh.clone());
                    if recent.len() > 200 {
                        recent.pop_front();
                    }
                    serial = Some(fresh);
                }
            }
            *t += ms(2.0);
            let scan = ComponentScanned {
                vin: unit.vin.clone(),
                station: station.to_string(),
                part_number: part.clone(),
                serial,
                supplier_lot: Some(lot),
                quantity: line.quantity as f64,
                operation: Some(operation.to_string()),
                operator: operator.map(str::to_string),
            };
            let lot_no = (piece - 1) / line.lot_size as u64 + 1;
            let superseded = fault.as_ref().is_some_and(|(name, _)| *name == "superseded");
            self.floor.unit(unit.index).parts.push(crate::floor::Fitted {
                station: station.to_string(),
                part: part.clone(),
                lot: scan.supplier_lot.clone().unwrap_or_default(),
                lot_no,
                superseded,
            });
            let ev = self.event(&format!("scanner-{station}"), *t, EventPayload::ComponentScanned(scan));
            if let Some((name, detail)) = fault {
                truth.push(GroundTruth {
                    fault: name.into(),
                    unit: unit.index,
                    vin: unit.vin.clone(),
                    station: station.to_string(),
                    joint: None,
                    tool: None,
                    event_id: Some(ev.event_id.clone()),
                    onset_at: rfc3339(*t),
                    detail,
                });
            }
            events.push((*t, ev));
            let consumption =
                self.consume(station, &part, &line.supplier, line.quantity, line.lot_size, &unit.vin, *t, truth);
            events.extend(consumption);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tightening(
        &mut self,
        station: &str,
        spec: &JointSpec,
        k: u32,
        unit: &Unit,
        rng: &mut Rng,
        t: DateTime<Utc>,
        truth: &mut Vec<GroundTruth>,
    ) -> Event {
        let physics = self.plant.joint_physics(spec);
        let mode = self.pick_mode(rng);
        let drift = self.drift_for(&spec.tool, unit, t, station, truth);
        let result = tighten(&physics, mode, drift, rng);
        let counter = self.tightening_counter.entry(spec.tool.clone()).or_insert(0);
        *counter += 1;
        let tightening_id = counter.to_string();
        let torque_ok = (spec.min_nm..=spec.max_nm).contains(&result.final_torque_nm);
        let angle_ok = (spec.angle_min_deg..=spec.angle_max_deg).contains(&result.final_angle_deg);
        let joint = if spec.count > 1 { format!("{}-{k}", spec.joint) } else { spec.joint.clone() };
        let keep_curve = match self.curves {
            CurveMode::All => true,
            CurveMode::Faults => mode != TighteningMode::Good,
            CurveMode::None => false,
        };
        let (final_torque_nm, final_angle_deg) = (result.final_torque_nm, result.final_angle_deg);
        let mut payload = spec.report(station, &joint, tightening_id, result);
        payload.vin = Some(unit.vin.clone());
        payload.controller = Some(format!("CTRL-{station}"));
        payload.batch = Some(BatchCounter { size: spec.count, counter: k });
        payload.controller_verdict = Some(if torque_ok && angle_ok { OkNok::Ok } else { OkNok::Nok });
        if !keep_curve {
            payload.curve = None;
        }
        let clamp_factor = match mode {
            TighteningMode::Good | TighteningMode::Rehit => 1.0,
            TighteningMode::SoftJoint => 0.7,
            TighteningMode::CrossThread => 0.5,
            TighteningMode::Stripped => 0.2,
            TighteningMode::Missing => 0.0,
        };
        let lost = 1.0 - clamp_factor * final_torque_nm.min(spec.max_nm * 1.2) / spec.target_nm;
        *self.floor.unit(unit.index).clamp_loss.entry(spec.joint.clone()).or_default() += lost;
        let ev = self.event(&format!("ctrl-{station}"), t, EventPayload::TighteningResult(payload));
        if mode != TighteningMode::Good {
            truth.push(GroundTruth {
                fault: mode.as_str().into(),
                unit: unit.index,
                vin: unit.vin.clone(),
                station: station.to_string(),
                joint: Some(joint),
                tool: Some(spec.tool.clone()),
                event_id: Some(ev.event_id.clone()),
                onset_at: rfc3339(t),
                detail: json!({"controller_verdict": if torque_ok && angle_ok { "OK" } else { "NOK" },
                               "final_torque_nm": final_torque_nm, "final_angle_deg": final_angle_deg}),
            });
        }
        ev
    }
}
