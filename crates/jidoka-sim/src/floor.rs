//! The shop floor around the tightenings and scans: fixtures, line-side stock and supplier
//! deliveries, Andon stops with maintenance, defects with their hidden causes, inspection and
//! NCRs, and end-of-line tests whose results depend on upstream work.
//!
//! Simplifications, stated: a line stop or a stock-out does not delay the paced line (the stop
//! is recorded with its duration; a unit built during a stock-out draws on a borrowed part);
//! a delivery is booked in and refills line-side stock at the start of the slot after its
//! arrival (its `delivered_at` is the arrival itself).

use crate::line::{GroundTruth, Simulation, Unit};
use crate::rng::{Rng, label};
use chrono::{DateTime, Duration, Utc};
use jidoka_model::event::{
    AndonCleared, AndonRaised, EolTestResult, InspectionResult, MaintenanceKind, MaintenanceRecord, MaterialCallOff,
    MaterialMovement, MaterialTransaction, Measurement, NcrCreated, OkNok, ProcessParameterSample, SupplierDelivery,
};
use jidoka_model::{Event, EventPayload};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Where and how a unit was built at one station.
#[derive(Debug, Clone, Default)]
pub(crate) struct StationContext {
    pub(crate) shift: String,
    pub(crate) fixture: Option<String>,
    pub(crate) operator: Option<String>,
    pub(crate) tool: Option<String>,
}

/// A part fitted to a unit.
#[derive(Debug, Clone)]
pub(crate) struct Fitted {
    pub(crate) station: String,
    pub(crate) part: String,
    pub(crate) lot: String,
    pub(crate) lot_no: u64,
    pub(crate) superseded: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Defect {
    code: String,
    station: String,
    ncr_id: String,
    part: Option<Fitted>,
}

#[derive(Debug, Default)]
pub(crate) struct UnitState {
    pub(crate) context: HashMap<String, StationContext>,
    pub(crate) parts: Vec<Fitted>,
    /// Per joint name: clamp lost over its fasteners (1 = one fastener's worth).
    pub(crate) clamp_loss: HashMap<String, f64>,
    /// Per process parameter tag: the value's deviation from its nominal.
    parameters: HashMap<String, f64>,
    defects: Vec<Defect>,
}

#[derive(Debug)]
enum Scheduled {
    Emit {
        source: &'static str,
        payload: Box<EventPayload>,
    },
    Delivery {
        part: String,
        supplier: String,
        quantity: u32,
        promised: DateTime<Utc>,
        station: String,
        lot: String,
        call_off: String,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Floor {
    pub(crate) units: HashMap<u64, UnitState>,
    /// Future happenings by time (and insertion order, for a stable order).
    schedule: BTreeMap<(DateTime<Utc>, u64), Scheduled>,
    scheduled_n: u64,
    stock: HashMap<String, i64>,
    consumed: HashMap<String, u64>,
    deliveries: u64,
    call_offs: u64,
    andons: u64,
    /// Open stock-out Andon per part: (andon id, station).
    shortage: HashMap<String, (String, String)>,
    /// Call-offs expedited, and what the supplier answered.
    expedited: HashMap<String, Result<String, String>>,
    episodes: HashSet<String>,
}

impl Floor {
    pub(crate) fn unit(&mut self, index: u64) -> &mut UnitState {
        self.units.entry(index).or_default()
    }

    fn schedule(&mut self, at: DateTime<Utc>, item: Scheduled) {
        self.scheduled_n += 1;
        self.schedule.insert((at, self.scheduled_n), item);
    }
}

fn minutes(m: f64) -> Duration {
    Duration::milliseconds((m * 60_000.0).round() as i64)
}

fn iso(t: DateTime<Utc>) -> String {
    jidoka_model::event::rfc3339::format(&t)
}

impl Simulation {
    /// Units use a station's fixtures in turn.
    pub(crate) fn fixture_for(&self, station: &str, unit: u64) -> Option<String> {
        let fixtures: Vec<&String> =
            self.plant.fixtures.iter().filter(|f| f.station == station).map(|f| &f.id).collect();
        (!fixtures.is_empty()).then(|| fixtures[(unit % fixtures.len() as u64) as usize].clone())
    }

    /// Everything scheduled before `until`: Andon clears, maintenance records; and deliveries
    /// that arrived before `slot_start`, booked in and put to line side at `slot_start` (between
    /// two cycles), so a delivery serves the units of the slots after its arrival.
    pub(crate) fn due_events(
        &mut self,
        slot_start: DateTime<Utc>,
        until: DateTime<Utc>,
        _truth: &mut [GroundTruth],
    ) -> Vec<(DateTime<Utc>, Event)> {
        let mut out = Vec::new();
        let mut later = Vec::new();
        while let Some(entry) = self.floor.schedule.first_entry() {
            if entry.key().0 >= until {
                break;
            }
            let (key, item) = entry.remove_entry();
            let arrived = key.0;
            match item {
                Scheduled::Emit { source, payload } => {
                    let ev = self.event(source, arrived, *payload);
                    out.push((arrived, ev));
                }
                delivery @ Scheduled::Delivery { .. } if arrived >= slot_start => later.push((key, delivery)),
                Scheduled::Delivery { part, supplier, quantity, promised, station, lot, call_off } => {
                    let at = slot_start;
                    self.floor.deliveries += 1;
                    let delivery_id = format!("DLV-{:06}", self.floor.deliveries);
                    let payload = EventPayload::SupplierDelivery(SupplierDelivery {
                        delivery_id,
                        supplier,
                        part_number: part.clone(),
                        quantity: quantity as f64,
                        supplier_lot: lot.clone(),
                        promised_at: promised,
                        delivered_at: arrived,
                        call_off_id: Some(call_off),
                    });
                    let ev = self.event("wms", at, payload);
                    out.push((at, ev));
                    *self.floor.stock.entry(part.clone()).or_default() += quantity as i64;
                    let payload = EventPayload::MaterialTransaction(MaterialTransaction {
                        part_number: part.clone(),
                        movement: MaterialMovement::Replenish,
                        quantity: quantity as f64,
                        station: Some(station.clone()),
                        location: Some(format!("LINESIDE-{station}")),
                        supplier_lot: Some(lot),
                    });
                    let ev = self.event("wms", at, payload);
                    out.push((at, ev));
                    if *self.floor.stock.get(&part).unwrap_or(&0) > 0
                        && let Some((andon_id, station)) = self.floor.shortage.remove(&part)
                    {
                        let payload = EventPayload::AndonCleared(AndonCleared {
                            andon_id,
                            station,
                            resolution: Some(format!("delivery of {part} arrived, line-side stock refilled")),
                            cleared_by: Some("logistics".into()),
                        });
                        let ev = self.event("andon", at, payload);
                        out.push((at, ev));
                    }
                }
            }
        }
        self.floor.schedule.extend(later);
        out
    }

    /// An expedite request for the delivery of `call_off_id`, made at the start of the next slot:
    /// the supplier honours it (its `expedite_rate`) by premium freight promised `expedite_h`
    /// after the request, arriving within a tenth of that either side, and confirms the new
    /// promise (a `material_call_off` of the same id) at the request; a delivery already due
    /// sooner is left as it is. Asked again, it answers as the first time. Refused, naming why,
    /// when the call-off is not in transit (delivered, or unknown) or the supplier cannot.
    pub fn expedite(&mut self, call_off_id: &str) -> Result<String, String> {
        if let Some(answer) = self.floor.expedited.get(call_off_id) {
            return answer.clone();
        }
        let key = self.floor.schedule.iter().find_map(|(k, item)| match item {
            Scheduled::Delivery { call_off, .. } if call_off == call_off_id => Some(*k),
            _ => None,
        });
        let Some(key) = key else {
            return Err(format!("call-off {call_off_id} is not in transit (delivered already, or unknown)"));
        };
        let at = self.slot_start(self.slot);
        let answer = self.expedite_delivery(key, call_off_id, at);
        self.floor.expedited.insert(call_off_id.to_string(), answer.clone());
        answer
    }

    fn expedite_delivery(
        &mut self,
        key: (DateTime<Utc>, u64),
        call_off_id: &str,
        at: DateTime<Utc>,
    ) -> Result<String, String> {
        let Some(Scheduled::Delivery { part, supplier, quantity, promised, station, lot, call_off }) =
            self.floor.schedule.remove(&key)
        else {
            return Err(format!("call-off {call_off_id} is not in transit"));
        };
        let sup = self.plant.suppliers.iter().find(|s| s.id == supplier).cloned();
        // A plant without [[suppliers]]: every supplier has the defaults.
        let (expedite_h, rate) = sup
            .map_or((crate::plant::default_expedite_h(), crate::plant::default_expedite_rate()), |s| {
                (s.expedite_h, s.expedite_rate)
            });
        let mut rng = self.base.fork(label("expedite")).fork(label(call_off_id));
        let new_promise = at + minutes(expedite_h * 60.0);
        let arrives = new_promise + minutes(rng.range(-0.1, 0.1) * expedite_h * 60.0);
        let honoured = rng.chance(rate);
        let (arrival, promised, answer) = if !honoured {
            (
                key.0,
                promised,
                Err(format!("{supplier} cannot expedite {call_off_id} ({part}): no premium freight available")),
            )
        } else if arrives >= key.0 {
            (key.0, promised, Ok(format!("{call_off_id} ({part}) is due sooner than premium freight could bring it")))
        } else {
            let payload = EventPayload::MaterialCallOff(MaterialCallOff {
                call_off_id: call_off.clone(),
                supplier: supplier.clone(),
                part_number: part.clone(),
                quantity: quantity as f64,
                station: Some(station.clone()),
                promised_at: new_promise,
            });
            self.floor.schedule(at, Scheduled::Emit { source: "wms", payload: Box::new(payload) });
            (
                arrives,
                new_promise,
                Ok(format!("{supplier} expedites {call_off_id} ({part}): promised {}", iso(new_promise))),
            )
        };
        let delivery = Scheduled::Delivery { part, supplier, quantity, promised, station, lot, call_off };
        if arrival == key.0 {
            self.floor.schedule.insert(key, delivery);
        } else {
            self.floor.schedule(arrival, delivery);
        }
        answer
    }

    /// Random line stops at a station during one slot, with their clearing and maintenance.
    pub(crate) fn andon_stops(
        &mut self,
        station_idx: usize,
        slot_start: DateTime<Utc>,
        truth: &mut Vec<GroundTruth>,
    ) -> Vec<(DateTime<Utc>, Event)> {
        let andon = &self.plant.andon;
        if andon.stops_per_station_hour <= 0.0 || andon.causes.is_empty() {
            return Vec::new();
        }
        let slot = (slot_start.timestamp_millis() / 1000) as u64;
        let mut rng = self.base.fork(label("andon")).fork(slot).fork(station_idx as u64);
        if !rng.chance(andon.stops_per_station_hour * self.plant.takt_s() / 3600.0) {
            return Vec::new();
        }
        let station = self.plant.stations[station_idx].id.clone();
        let shares: Vec<f64> = andon.causes.iter().map(|c| c.share).collect();
        let cause = andon.causes[rng.weighted(&shares)].clone();
        self.floor.andons += 1;
        let andon_id = format!("AND-{:06}", self.floor.andons);
        let at = slot_start + Duration::milliseconds((rng.uniform() * self.plant.takt_s() * 1000.0) as i64);
        let equipment = cause.equipment.replace("{station}", &station);
        let description = cause.descriptions[rng.below(cause.descriptions.len())].clone();
        let resolution = cause.resolutions[rng.below(cause.resolutions.len())].clone();
        let duration = rng.range(cause.minutes_min, cause.minutes_max);
        let raised = EventPayload::AndonRaised(AndonRaised {
            andon_id: andon_id.clone(),
            station: station.clone(),
            fault_code: cause.code.clone(),
            description: Some(description),
            raised_by: Some("operator".into()),
            line_stopped: true,
        });
        let ev = self.event("andon", at, raised);
        let cleared_at = at + minutes(duration);
        self.floor.schedule(
            cleared_at,
            Scheduled::Emit {
                source: "andon",
                payload: Box::new(EventPayload::AndonCleared(AndonCleared {
                    andon_id: andon_id.clone(),
                    station: station.clone(),
                    resolution: Some(resolution.clone()),
                    cleared_by: Some(format!("{}-team", cause.team)),
                })),
            },
        );
        self.floor.schedule(
            cleared_at + Duration::seconds(5),
            Scheduled::Emit {
                source: "cmms",
                payload: Box::new(EventPayload::MaintenanceRecord(MaintenanceRecord {
                    record_id: format!("MR-{andon_id}"),
                    equipment: equipment.clone(),
                    station: Some(station.clone()),
                    maintenance_kind: MaintenanceKind::Corrective,
                    description: resolution,
                    fault_code: Some(cause.code.clone()),
                    duration_min: Some((duration * 10.0).round() / 10.0),
                })),
            },
        );
        truth.push(GroundTruth {
            fault: "andon".into(),
            unit: 0,
            vin: String::new(),
            station,
            joint: None,
            tool: None,
            event_id: Some(ev.event_id.clone()),
            onset_at: iso(at),
            detail: json!({"andon_id": andon_id, "fault_code": cause.code, "team": cause.team, "equipment": equipment,
                           "minutes": (duration * 10.0).round() / 10.0}),
        });
        vec![(at, ev)]
    }

    /// Take parts from line-side stock for `vin`; an emptied bin is reported and called off
    /// from the supplier, and an empty line side raises a material Andon. Before the first piece
    /// of a part is taken, its line-side stock is counted (the opening stock).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn consume(
        &mut self,
        station: &str,
        part: &str,
        supplier: &str,
        quantity: u32,
        lot_size: u32,
        vin: &str,
        at: DateTime<Utc>,
        truth: &mut Vec<GroundTruth>,
    ) -> Vec<(DateTime<Utc>, Event)> {
        let q = &self.plant.quality;
        let bin = q.bin_size.max(1) as u64;
        let initial = (q.bin_size as i64) * (q.initial_bins as i64);
        let opened = !self.floor.stock.contains_key(part);
        let stock = self.floor.stock.entry(part.to_string()).or_insert(initial);
        *stock -= quantity as i64;
        let stock_now = *stock;
        let consumed = self.floor.consumed.entry(part.to_string()).or_default();
        let before = *consumed;
        *consumed += quantity as u64;
        let bins_emptied = *consumed / bin - before / bin;
        let mut out = Vec::new();
        if opened {
            // Counted just before the first piece is taken (the scan is 2 ms after the previous
            // step, so the count sorts between them).
            let counted = at - Duration::milliseconds(1);
            let payload = EventPayload::MaterialTransaction(MaterialTransaction {
                part_number: part.to_string(),
                movement: MaterialMovement::Count,
                quantity: initial as f64,
                station: Some(station.to_string()),
                location: Some(format!("LINESIDE-{station}")),
                supplier_lot: None,
            });
            let ev = self.event("wms", counted, payload);
            out.push((counted, ev));
        }
        for k in 0..bins_emptied {
            // The reordered bin holds the pieces after everything already at line side or on
            // its way; its supplier lot is the lot of its first piece.
            let bin_no = before / bin + k + 1;
            let first_piece = initial as u64 + (bin_no - 1) * bin + 1;
            let lot = format!("LOT-{part}-{:04}", (first_piece - 1) / lot_size.max(1) as u64 + 1);
            let payload = EventPayload::MaterialTransaction(MaterialTransaction {
                part_number: part.to_string(),
                movement: MaterialMovement::Consume,
                quantity: bin as f64,
                station: Some(station.to_string()),
                location: Some(format!("LINESIDE-{station}")),
                supplier_lot: None,
            });
            let ev = self.event("wms", at, payload);
            out.push((at, ev));
            let sup = self.plant.suppliers.iter().find(|s| s.id == supplier).cloned();
            let (lead, late_rate, late_max, early_max) =
                sup.map(|s| (s.lead_time_h, s.late_rate, s.late_h_max, s.early_h_max)).unwrap_or((2.0, 0.0, 0.0, 0.25));
            let mut rng =
                self.base.fork(label("delivery")).fork(label(part)).fork(*self.floor.consumed.get(part).unwrap_or(&0));
            let promised = at + minutes(lead * 60.0);
            let late = if rng.chance(late_rate) { rng.range(0.1, late_max.max(0.1)) } else { 0.0 };
            // On time means at or before the promise; only a late delivery arrives after it.
            let arrives = promised + minutes(if late > 0.0 { late * 60.0 } else { -rng.range(0.0, early_max * 60.0) });
            self.floor.call_offs += 1;
            let call_off = format!("CO-{:06}", self.floor.call_offs);
            let payload = EventPayload::MaterialCallOff(MaterialCallOff {
                call_off_id: call_off.clone(),
                supplier: supplier.to_string(),
                part_number: part.to_string(),
                quantity: bin as f64,
                station: Some(station.to_string()),
                promised_at: promised,
            });
            let ev = self.event("wms", at, payload);
            out.push((at, ev));
            self.floor.schedule(
                arrives,
                Scheduled::Delivery {
                    part: part.to_string(),
                    supplier: supplier.to_string(),
                    quantity: bin as u32,
                    promised,
                    station: station.to_string(),
                    lot,
                    call_off,
                },
            );
        }
        if stock_now < 0 && !self.floor.shortage.contains_key(part) {
            self.floor.andons += 1;
            let andon_id = format!("AND-{:06}", self.floor.andons);
            self.floor.shortage.insert(part.to_string(), (andon_id.clone(), station.to_string()));
            let payload = EventPayload::AndonRaised(AndonRaised {
                andon_id: andon_id.clone(),
                station: station.to_string(),
                fault_code: "L-SHORTAGE".into(),
                description: Some(format!("no {part} at line side")),
                raised_by: Some("operator".into()),
                line_stopped: false,
            });
            let ev = self.event("andon", at, payload);
            truth.push(GroundTruth {
                fault: "stock_out".into(),
                unit: 0,
                vin: vin.to_string(),
                station: station.to_string(),
                joint: None,
                tool: None,
                event_id: Some(ev.event_id.clone()),
                onset_at: iso(at),
                detail: json!({"part": part, "supplier": supplier, "andon_id": andon_id, "team": "material"}),
            });
            out.push((at, ev));
        }
        out
    }

    /// Defects caused at this station: a worn fixture on its shift, a bad supplier lot, or the
    /// background rate (any station).
    pub(crate) fn defects_at(
        &mut self,
        station: &str,
        unit: &Unit,
        rng: &mut Rng,
        at: DateTime<Utc>,
        truth: &mut Vec<GroundTruth>,
    ) {
        let ctx = self.floor.unit(unit.index).context.get(station).cloned().unwrap_or_default();
        let fitted: Vec<Fitted> =
            self.floor.unit(unit.index).parts.iter().filter(|p| p.station == station).cloned().collect();
        let mut caused: Vec<(String, &'static str, serde_json::Value, Option<Fitted>)> = Vec::new();
        for w in self.plant.faults.worn_fixture.clone() {
            if ctx.fixture.as_deref() == Some(w.fixture.as_str()) && ctx.shift == w.shift && unit.index >= w.onset_unit
            {
                let detail = json!({"fixture": w.fixture, "shift": w.shift, "defect": w.defect, "rate": w.rate});
                self.episode(&format!("fixture:{}", w.fixture), "worn_fixture", unit, station, at, detail, truth);
                if rng.chance(w.rate) {
                    caused.push((
                        w.defect.clone(),
                        "worn_fixture",
                        json!({"fixture": w.fixture, "shift": w.shift}),
                        fitted.first().cloned(),
                    ));
                }
            }
        }
        for b in self.plant.faults.bad_lot.clone() {
            if let Some(f) = fitted.iter().find(|f| f.part == b.part && f.lot_no == b.lot) {
                let detail = json!({"part": b.part, "supplier_lot": f.lot, "defect": b.defect, "rate": b.rate});
                self.episode(&format!("lot:{}", f.lot), "bad_lot", unit, station, at, detail, truth);
                if rng.chance(b.rate) {
                    caused.push((
                        b.defect.clone(),
                        "bad_lot",
                        json!({"part": b.part, "supplier_lot": f.lot}),
                        Some(f.clone()),
                    ));
                }
            }
        }
        // Background defects: decided once per unit, landing at the defect type's station.
        let q = &self.plant.quality;
        if !q.defects.is_empty() {
            let mut unit_rng = self.base.fork(label("background-defect")).fork(unit.index);
            if unit_rng.chance(q.background_defect_rate) {
                let d = &q.defects[unit_rng.below(q.defects.len())];
                if d.station == station {
                    caused.push((d.code.clone(), "background", serde_json::Value::Null, fitted.first().cloned()));
                }
            }
        }
        for (code, cause, detail, part) in caused {
            let state = self.floor.unit(unit.index);
            let ncr_id = format!("NCR-{:07}-{}", unit.index + 1, state.defects.len() + 1);
            state.defects.push(Defect {
                code: code.clone(),
                station: station.to_string(),
                ncr_id: ncr_id.clone(),
                part,
            });
            truth.push(GroundTruth {
                fault: "defect".into(),
                unit: unit.index,
                vin: unit.vin.clone(),
                station: station.to_string(),
                joint: None,
                tool: ctx.tool.clone(),
                event_id: None,
                onset_at: iso(at),
                detail: json!({"code": code, "cause": cause, "ncr_id": ncr_id, "shift": ctx.shift, "fixture": ctx.fixture, "cause_detail": detail}),
            });
        }
    }

    /// Record the start of a hidden cause (worn fixture, bad lot, drifting parameter) once.
    #[allow(clippy::too_many_arguments)]
    fn episode(
        &mut self,
        key: &str,
        fault: &str,
        unit: &Unit,
        station: &str,
        at: DateTime<Utc>,
        detail: serde_json::Value,
        truth: &mut Vec<GroundTruth>,
    ) {
        if self.floor.episodes.insert(key.to_string()) {
            truth.push(GroundTruth {
                fault: fault.into(),
                unit: unit.index,
                vin: unit.vin.clone(),
                station: station.to_string(),
                joint: None,
                tool: None,
                event_id: None,
                onset_at: iso(at),
                detail,
            });
        }
    }

    /// Sample the station's PLC tags for this unit (with any configured drift).
    pub(crate) fn process_samples(
        &mut self,
        station: &str,
        unit: &Unit,
        rng: &mut Rng,
        at: DateTime<Utc>,
        truth: &mut Vec<GroundTruth>,
    ) -> Vec<(DateTime<Utc>, Event)> {
        let mut out = Vec::new();
        for pp in self.plant.process_parameters.clone().iter().filter(|p| p.station == station) {
            let mut drift = 0.0;
            let mut episodes = Vec::new();
            for d in self.plant.faults.parameter_drift.iter().filter(|d| d.tag == pp.tag && unit.index >= d.onset_unit)
            {
                drift += d.offset * ((unit.index - d.onset_unit) as f64 / d.ramp_units as f64).min(1.0);
                let detail =
                    json!({"tag": d.tag, "equipment": pp.equipment, "offset": d.offset, "ramp_units": d.ramp_units});
                episodes.push((format!("parameter:{}", d.tag), detail));
            }
            for (key, detail) in episodes {
                self.episode(&key, "parameter_drift", unit, station, at, detail, truth);
            }
            let value = pp.nominal + pp.noise * rng.normal() + drift;
            self.floor.unit(unit.index).parameters.insert(pp.tag.clone(), value - pp.nominal);
            let payload = EventPayload::ProcessParameterSample(ProcessParameterSample {
                equipment: pp.equipment.clone(),
                tag: pp.tag.clone(),
                value: (value * 1000.0).round() / 1000.0,
                unit: Some(pp.unit.clone()),
                station: Some(station.to_string()),
                vin: Some(unit.vin.clone()),
            });
            let ev = self.event("plc", at, payload);
            out.push((at, ev));
        }
        out
    }

    /// The review board's decision on an NCR, some hours later. A defect traced to a part from
    /// a bad supplier lot goes back to the supplier; otherwise the decision follows the
    /// severity (major: mostly rework, some scrap; minor: mostly used as is after review, some
    /// rework). The draw is a hash of the NCR id, so deciding takes nothing from the line's
    /// random stream.
    fn disposition(&mut self, ncr_id: &str, severity: &str, bad_lot: bool, at: DateTime<Utc>) {
        use jidoka_model::event::{Disposition, NcrDispositioned};
        // FNV-1a: a stable fraction in [0, 1) from the id.
        let h = ncr_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let (disposition, cause) = match (bad_lot, severity) {
            (true, _) => (Disposition::ReturnToSupplier, "supplier lot out of specification"),
            (false, "critical") => (if u < 0.6 { Disposition::Scrap } else { Disposition::Rework }, "assembly defect"),
            (false, "major") => (if u < 0.8 { Disposition::Rework } else { Disposition::Scrap }, "assembly defect"),
            (false, _) => (if u < 0.7 { Disposition::UseAsIs } else { Disposition::Rework }, "cosmetic, within limits"),
        };
        let hours = 2.0 + 6.0 * u;
        self.floor.schedule(
            at + minutes(hours * 60.0),
            Scheduled::Emit {
                source: "qms",
                payload: Box::new(EventPayload::NcrDispositioned(NcrDispositioned {
                    ncr_id: ncr_id.to_string(),
                    disposition,
                    cause: Some(cause.to_string()),
                    corrective_action: None,
                    decided_by: Some("MRB".into()),
                })),
            },
        );
    }

    /// Inspection finds the unit's defects and raises NCRs; end-of-line tests measure it.
    pub(crate) fn inspect(
        &mut self,
        unit: &Unit,
        rng: &mut Rng,
        t: &mut DateTime<Utc>,
        _truth: &mut [GroundTruth],
    ) -> Vec<(DateTime<Utc>, Event)> {
        let station = self.plant.quality.inspection_station.clone();
        let mut out = Vec::new();
        let state = self.floor.units.remove(&unit.index).unwrap_or_default();
        let bad_lot_parts: HashSet<(String, u64)> =
            self.plant.faults.bad_lot.iter().map(|b| (b.part.clone(), b.lot)).collect();
        for d in &state.defects {
            let Some(kind) = self.plant.quality.defects.iter().find(|k| k.code == d.code).cloned() else { continue };
            let ctx = state.context.get(&d.station).cloned().unwrap_or_default();
            *t += Duration::seconds(2);
            let text = kind.texts[rng.below(kind.texts.len())].clone();
            let inspection = EventPayload::InspectionResult(InspectionResult {
                vin: unit.vin.clone(),
                station: station.clone(),
                characteristic: format!("visual-{}", d.station),
                result: OkNok::Nok,
                defect_code: Some(d.code.clone()),
                measured: None,
                lower_limit: None,
                upper_limit: None,
                text: Some(text.clone()),
                image_ref: None,
                image_hash: None,
                inspector: Some(format!("QI-{}", ctx.shift)),
            });
            let ev = self.event("qms", *t, inspection);
            out.push((*t, ev));
            let coded = !rng.chance(self.plant.quality.uncoded_share);
            let ncr = EventPayload::NcrCreated(NcrCreated {
                ncr_id: d.ncr_id.clone(),
                vin: Some(unit.vin.clone()),
                station: Some(d.station.clone()),
                defect_code: coded.then(|| d.code.clone()),
                description: text,
                severity: Some(kind.severity.clone()),
                shift: Some(ctx.shift.clone()),
                tool: ctx.tool.clone(),
                fixture: ctx.fixture.clone(),
                operator: ctx.operator.clone(),
                part_number: d.part.as_ref().map(|p| p.part.clone()),
                supplier_lot: d.part.as_ref().map(|p| p.lot.clone()),
                image_ref: None,
                image_hash: None,
            });
            let ev = self.event("qms", *t, ncr);
            out.push((*t, ev));
            let from_bad_lot = d.part.as_ref().is_some_and(|p| bad_lot_parts.contains(&(p.part.clone(), p.lot_no)));
            self.disposition(&d.ncr_id, &kind.severity, from_bad_lot, *t);
        }
        let has_bad_lot = state.parts.iter().any(|p| bad_lot_parts.contains(&(p.part.clone(), p.lot_no)));
        for test in self.plant.eol_tests.clone() {
            let loss = test.joint.as_ref().and_then(|j| state.clamp_loss.get(j)).copied().unwrap_or(0.0);
            let deviation = test.parameter.as_ref().and_then(|p| state.parameters.get(p)).copied().unwrap_or(0.0);
            let mut value = test.nominal
                + test.noise * rng.normal()
                + test.sensitivity * loss
                + test.parameter_sensitivity * deviation;
            if has_bad_lot {
                value += test.bad_lot_shift;
            }
            let superseded = test
                .fails_on_superseded
                .as_ref()
                .is_some_and(|p| state.parts.iter().any(|f| f.superseded && &f.part == p));
            let in_limits = (test.lower..=test.upper).contains(&value);
            let ok = in_limits && !superseded;
            *t += Duration::seconds(3);
            let result = EventPayload::EolTestResult(EolTestResult {
                vin: unit.vin.clone(),
                test: test.test.clone(),
                result: if ok { OkNok::Ok } else { OkNok::Nok },
                measurements: vec![Measurement {
                    name: test.measurement.clone(),
                    value: (value * 1000.0).round() / 1000.0,
                    unit: Some(test.unit.clone()),
                    lower_limit: Some(test.lower),
                    upper_limit: Some(test.upper),
                }],
                failure_code: (!ok).then(|| {
                    if superseded {
                        format!("{}-SW-MISMATCH", test.test)
                    } else {
                        format!("{}-OUT-OF-LIMITS", test.test)
                    }
                }),
            });
            let source = format!("eol-{station}");
            let ev = self.event(&source, *t, result);
            out.push((*t, ev));
        }
        out
    }
}
