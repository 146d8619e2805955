//! Plant master data, named after Opcenter Execution Discrete's public entities so the MES
//! mapping is direct: [`WorkOrder`], [`WorkOrderOperation`], [`MaterialTrackingUnit`],
//! [`Material`], [`BomItem`], [`ChangePackage`], [`WorkInstruction`], [`Equipment`],
//! [`Station`], [`Operator`].
//!
//! These are plain data; checks that use them (option rules, effectivity, ECO cut-ins) live in
//! the agents.

use crate::event::{JointCategory, Timestamp, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A production order for one unit: the VIN, its model and option codes, and where it sits in
/// the planned build sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrder {
    pub work_order: String,
    pub vin: String,
    pub model: String,
    /// Option codes as `FAMILY=VALUE` (e.g. `ENGINE=V6`, `TRIM=BASE`, `SUNROOF=YES`).
    #[serde(default)]
    pub options: Vec<String>,
    /// Planned sequence number on the line.
    pub sequence: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub planned_start: Option<Timestamp>,
}

/// One operation of a work order's routing at a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderOperation {
    pub operation: String,
    pub station: String,
    /// Position in the routing; operations at a station run in this order.
    pub step: u32,
    /// Parts that must be scanned in this operation.
    #[serde(default)]
    pub required_scans: Vec<String>,
    /// Joints that must be tightened in this operation.
    #[serde(default)]
    pub required_tightenings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_instruction: Option<String>,
}

/// A serialised, traceable unit of material (a battery module, an ECU, a lot of bolts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialTrackingUnit {
    pub serial: String,
    pub part_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_lot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
}

/// A part number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub part_number: String,
    pub description: String,
    /// Whether each piece carries its own serial that must be traced.
    #[serde(default)]
    pub serialised: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
}

/// When a BOM item or ECO applies: by date, by VIN sequence number, or by serial range.
/// Every bound given must hold; none given means always.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effectivity {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub from_date: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub to_date: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_serial: Option<String>,
}

impl Effectivity {
    /// Whether every bound given holds for a unit with this planned sequence number, planned
    /// start and serial. No bounds: always.
    pub fn holds(&self, sequence: u64, at: Option<Timestamp>, serial: Option<&str>) -> bool {
        let seq_ok = self.from_sequence.is_none_or(|f| sequence >= f) && self.to_sequence.is_none_or(|t| sequence <= t);
        let date_ok = match at {
            Some(at) => self.from_date.is_none_or(|f| at >= f) && self.to_date.is_none_or(|t| at <= t),
            None => self.from_date.is_none() && self.to_date.is_none(),
        };
        let serial_ok = match serial {
            Some(s) => {
                self.from_serial.as_deref().is_none_or(|f| s >= f) && self.to_serial.as_deref().is_none_or(|t| s <= t)
            }
            None => true,
        };
        seq_ok && date_ok && serial_ok
    }
}

/// One line of a bill of materials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BomItem {
    pub model: String,
    pub part_number: String,
    pub quantity: f64,
    pub station: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Boolean expression over option codes, e.g. `ENGINE=V6 & !TRIM=BASE`; none = always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_rule: Option<String>,
    #[serde(default)]
    pub effectivity: Effectivity,
}

/// An engineering change (ECO) replacing one part with another from a cut-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePackage {
    pub change_id: String,
    pub old_part_number: String,
    pub new_part_number: String,
    /// Cut-in: from when the new part is required.
    pub cut_in: Effectivity,
    /// "Use up old stock": the old part stays valid until this date...
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub old_valid_until: Option<Timestamp>,
    /// ...or up to this planned sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_valid_until_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ChangePackage {
    /// Whether the cut-in has passed for this unit (the new part is required), and whether
    /// the old part is still allowed (use-up window).
    pub fn status_for(&self, sequence: u64, at: Option<Timestamp>) -> (bool, bool) {
        let has_cut_in = self.cut_in.from_sequence.is_some() || self.cut_in.from_date.is_some();
        let passed = has_cut_in
            && self.cut_in.from_sequence.is_none_or(|c| sequence >= c)
            && self.cut_in.from_date.is_none_or(|d| at.is_some_and(|a| a >= d));
        let old_allowed = passed
            && (self.old_valid_until_sequence.is_some_and(|u| sequence <= u)
                || self.old_valid_until.is_some_and(|u| at.is_some_and(|a| a <= u)));
        (passed, old_allowed)
    }
}

/// One step of a model's routing: the operation done at a station, in order, and the joints
/// that must be tightened in it (scans come from the BOM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingStep {
    /// Models this step applies to; `*` = all.
    pub model: String,
    pub station: String,
    pub operation: String,
    pub step: u32,
    #[serde(default)]
    pub required_tightenings: Vec<String>,
}

/// How the plant sequences its build queue: the ratio rules its stations need, paint batching,
/// the priorities between them, the frozen head of the queue, and the option-specific equipment
/// whose breakdown re-sequencing can work around.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequencing {
    /// The option family that is the body colour; empty = no paint batching.
    #[serde(default)]
    pub paint_family: String,
    /// Longest run of one colour the paint shop takes before a purge.
    #[serde(default)]
    pub paint_limit: u32,
    /// The objectives, most important first: `high` and `low` (the ratio rules of each
    /// priority) and `paint` (colour changes).
    #[serde(default)]
    pub priorities: Vec<String>,
    /// Units at the head of the queue that can no longer move (bodies in the paint shop's
    /// sequence).
    #[serde(default)]
    pub frozen_units: u32,
    #[serde(default)]
    pub ratios: Vec<SequencingRatio>,
    #[serde(default)]
    pub equipment: Vec<SequencingEquipment>,
}

/// "At most `n` units matching `rule` in any `p` consecutive".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencingRatio {
    pub name: String,
    /// Option expression, as in the BOM (`SUNROOF=YES`, `ENGINE=V6 & TRIM=LUX`).
    pub rule: String,
    pub n: u32,
    pub p: u32,
    /// `high` or `low`.
    pub priority: String,
}

/// Equipment at a station that only the units matching `rule` need (a battery lift, a glazing
/// robot): when it is down, the other units can still pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencingEquipment {
    pub id: String,
    pub station: String,
    pub rule: String,
}

impl Sequencing {
    /// What is wrong with the rules by themselves, under `path` (`sequencing.ratios[2].rule`):
    /// a rule that does not parse, a ratio no sequence reads (`n < p`), a priority not ranked.
    /// Whether an option or a station exists is the plant's to check.
    pub fn errors(&self, path: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |at: String, reason: &str| errors.push((at, reason.to_string()));
        if !self.paint_family.is_empty() && self.paint_limit == 0 {
            err(format!("{path}.paint_limit"), "must be at least 1 with a paint family");
        }
        for (i, r) in self.ratios.iter().enumerate() {
            if let Err(reason) = crate::rule::Rule::parse(&r.rule) {
                err(format!("{path}.ratios[{i}].rule"), &reason);
            }
            if r.n == 0 || r.n >= r.p || r.p > 1000 {
                err(format!("{path}.ratios[{i}]"), "needs 1 <= n < p <= 1000");
            }
            if r.priority != "high" && r.priority != "low" {
                err(format!("{path}.ratios[{i}].priority"), "must be high or low");
            }
        }
        if self.ratios.len() > 64 {
            err(format!("{path}.ratios"), "at most 64 rules");
        }
        let mut ranked = std::collections::HashSet::new();
        for (i, o) in self.priorities.iter().enumerate() {
            if !["high", "paint", "low"].contains(&o.as_str()) || !ranked.insert(o.as_str()) {
                err(format!("{path}.priorities[{i}]"), "must be high, paint or low, each once");
            }
        }
        let used = [
            ("high", self.ratios.iter().any(|r| r.priority == "high")),
            ("low", self.ratios.iter().any(|r| r.priority == "low")),
            ("paint", !self.paint_family.is_empty()),
        ];
        for (o, _) in used.iter().filter(|(o, u)| *u && !ranked.contains(o)) {
            err(format!("{path}.priorities"), &format!("`{o}` is used but not ranked"));
        }
        for (i, x) in self.equipment.iter().enumerate() {
            if x.id.trim().is_empty() || x.station.trim().is_empty() {
                err(format!("{path}.equipment[{i}]"), "id and station must not be empty");
            }
            if let Err(reason) = crate::rule::Rule::parse(&x.rule) {
                err(format!("{path}.equipment[{i}].rule"), &reason);
            }
        }
        errors
    }
}

/// What the sequence checks need to know about the plant: BOM, engineering changes, routing and
/// supplier lots on quality hold. Loaded from the plant description (later from the MES) and
/// validated row by row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterData {
    #[serde(default)]
    pub bom: Vec<BomItem>,
    #[serde(default)]
    pub changes: Vec<ChangePackage>,
    #[serde(default)]
    pub routing: Vec<RoutingStep>,
    #[serde(default)]
    pub lots_on_hold: Vec<String>,
    /// Tools and machines with their calibration state.
    #[serde(default)]
    pub equipment: Vec<Equipment>,
    /// Work instructions per station and operation, shown beside the findings there.
    #[serde(default)]
    pub instructions: Vec<WorkInstruction>,
    /// Operators with their certifications; when any are listed, a unit worked at a station
    /// by an operator not certified for it is a finding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Operator>,
    /// How the plant sequences its build queue; a change carrying it replaces it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencing: Option<Sequencing>,
    /// The newest `issued_at` applied from each source (`master-data:mes`, `api:alice`): kept
    /// by [`MasterData::apply_from`], never taken from a change's rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "map_rfc3339")]
    pub issued: BTreeMap<String, Timestamp>,
}

impl MasterData {
    /// Every malformed row, as `(row, reason)`, e.g. `("bom[12].option_rule", "expected `=`...")`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = self.row_errors();
        let parts: std::collections::HashSet<&str> = self.bom.iter().map(|b| b.part_number.as_str()).collect();
        self.reference_errors(&parts, &mut errors);
        errors
    }

    /// What is wrong with each row by itself, whatever else the master data holds.
    pub fn row_errors(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (i, b) in self.bom.iter().enumerate() {
            if b.part_number.trim().is_empty() || b.station.trim().is_empty() || b.model.trim().is_empty() {
                errors.push((format!("bom[{i}]"), "part_number, station and model must not be empty".into()));
            }
            if !(b.quantity.is_finite() && b.quantity > 0.0) {
                errors.push((format!("bom[{i}].quantity"), "must be a positive number".into()));
            }
            if let Some(rule) = &b.option_rule
                && let Err(reason) = crate::rule::Rule::parse(rule)
            {
                errors.push((format!("bom[{i}].option_rule"), reason));
            }
            if let (Some(f), Some(t)) = (b.effectivity.from_sequence, b.effectivity.to_sequence)
                && f > t
            {
                errors.push((format!("bom[{i}].effectivity"), format!("from_sequence {f} after to_sequence {t}")));
            }
        }
        for (i, c) in self.changes.iter().enumerate() {
            if c.change_id.trim().is_empty() {
                errors.push((format!("changes[{i}].change_id"), "must not be empty".into()));
            }
            if c.old_part_number == c.new_part_number {
                errors.push((format!("changes[{i}]"), "old and new part are the same".into()));
            }
            if c.cut_in.from_sequence.is_none() && c.cut_in.from_date.is_none() {
                errors.push((format!("changes[{i}].cut_in"), "needs from_sequence or from_date".into()));
            }
        }
        for (i, r) in self.routing.iter().enumerate() {
            if r.station.trim().is_empty() || r.operation.trim().is_empty() {
                errors.push((format!("routing[{i}]"), "station and operation must not be empty".into()));
            }
        }
        for (i, w) in self.instructions.iter().enumerate() {
            if w.instruction_id.trim().is_empty() || w.station.trim().is_empty() || w.title.trim().is_empty() {
                errors
                    .push((format!("instructions[{i}]"), "instruction_id, station and title must not be empty".into()));
            }
        }
        for (i, e) in self.equipment.iter().enumerate() {
            if let (Some(at), Some(due)) = (e.calibrated_at, e.calibration_due)
                && due < at
            {
                errors.push((format!("equipment[{i}].calibration_due"), format!("{due} is before calibrated_at {at}")));
            }
        }
        // Ids that key a row: present, and each once.
        let mut ids_once = |rows: &mut dyn Iterator<Item = &str>, list: &str, field: &str| {
            let mut seen = std::collections::HashSet::new();
            for (i, id) in rows.enumerate() {
                if id.trim().is_empty() {
                    errors.push((format!("{list}[{i}].{field}"), "must not be empty".into()));
                } else if !seen.insert(id) {
                    errors.push((format!("{list}[{i}].{field}"), format!("`{id}` is listed twice")));
                }
            }
        };
        ids_once(&mut self.equipment.iter().map(|e| e.equipment.as_str()), "equipment", "equipment");
        ids_once(&mut self.operators.iter().map(|o| o.operator.as_str()), "operators", "operator");
        if let Some(q) = &self.sequencing {
            errors.extend(q.errors("sequencing"));
        }
        errors
    }

    /// Rows that name what `parts` (the BOM's part numbers) does not have: a change to a part
    /// no BOM line has.
    fn reference_errors(&self, parts: &std::collections::HashSet<&str>, errors: &mut Vec<(String, String)>) {
        for (i, c) in self.changes.iter().enumerate() {
            if !parts.contains(c.old_part_number.as_str()) {
                errors.push((
                    format!("changes[{i}].old_part_number"),
                    format!("`{}` is not in the BOM", c.old_part_number),
                ));
            }
        }
    }

    /// The change that brings `self` to `newer` with only the rows that differ (the MES is read
    /// whole, but the log gets what changed): rows new or changed, by the keys of
    /// [`MasterData::apply`]; lots put on or taken off hold; changes withdrawn. `None` when both
    /// hold the same rows, in whatever order. A removed row no field of a change can express (a
    /// BOM line, routing step, piece of equipment, instruction or operator no longer there)
    /// makes it a whole replacement.
    pub fn delta_to(&self, newer: &MasterData) -> Option<MasterDataChange> {
        /// Rows of `new` that `old` lacks or holds otherwise, and whether `old` has a key `new`
        /// lacks. By key lookups: this runs on every poll of the file and the MES.
        fn changed<T: Clone + PartialEq, K: Eq + std::hash::Hash>(
            old: &[T],
            new: &[T],
            key: impl Fn(&T) -> K,
        ) -> (Vec<T>, bool) {
            let old_by_key: std::collections::HashMap<K, &T> = old.iter().map(|o| (key(o), o)).collect();
            let upserts = new.iter().filter(|n| old_by_key.get(&key(n)) != Some(n)).cloned().collect();
            let new_keys: std::collections::HashSet<K> = new.iter().map(&key).collect();
            let removed = old_by_key.keys().any(|k| !new_keys.contains(k));
            (upserts, removed)
        }
        let (bom, bom_gone) = changed(&self.bom, &newer.bom, bom_key);
        let (changes, _) = changed(&self.changes, &newer.changes, |c| c.change_id.clone());
        let (routing, routing_gone) = changed(&self.routing, &newer.routing, routing_key);
        let (equipment, equipment_gone) = changed(&self.equipment, &newer.equipment, |e| e.equipment.clone());
        let (instructions, instructions_gone) =
            changed(&self.instructions, &newer.instructions, |w| w.instruction_id.clone());
        let (operators, operators_gone) = changed(&self.operators, &newer.operators, |o| o.operator.clone());
        let sequencing_gone = self.sequencing.is_some() && newer.sequencing.is_none();
        if bom_gone || routing_gone || equipment_gone || instructions_gone || operators_gone || sequencing_gone {
            return Some(MasterDataChange { replace: true, rows: newer.clone(), ..MasterDataChange::default() });
        }
        let change = MasterDataChange {
            revision: None,
            issued_at: None,
            replace: false,
            rows: MasterData {
                bom,
                changes,
                routing,
                lots_on_hold: newer.lots_on_hold.iter().filter(|l| !self.lots_on_hold.contains(l)).cloned().collect(),
                equipment,
                instructions,
                operators,
                sequencing: (newer.sequencing != self.sequencing).then(|| newer.sequencing.clone()).flatten(),
                issued: BTreeMap::new(),
            },
            lots_released: self.lots_on_hold.iter().filter(|l| !newer.lots_on_hold.contains(l)).cloned().collect(),
            changes_withdrawn: self
                .changes
                .iter()
                .filter(|c| !newer.changes.iter().any(|n| n.change_id == c.change_id))
                .map(|c| c.change_id.clone())
                .collect(),
        };
        (change != MasterDataChange::default()).then_some(change)
    }

    /// [`MasterData::apply`] for a change logged by `source`, in order: a change whose
    /// `issued_at` is older than the newest applied from the same source arrived out of order
    /// (a slow MES read overtaken by a later one, a redelivery of an old version) and is
    /// refused under `issued_at`, `self` staying in force. The source's newest `issued_at` is
    /// kept in [`MasterData::issued`], across whole replacements too.
    pub fn apply_from(&self, source: &str, change: &MasterDataChange) -> Result<MasterData, Vec<(String, String)>> {
        let newest = self.issued.get(source);
        let stale = match (change.issued_at, newest) {
            (Some(at), Some(newest)) if at < *newest => Some((
                "issued_at".to_string(),
                format!(
                    "{} is older than {}, the version from `{source}` already in force: it arrived out of order",
                    rfc3339::format(&at),
                    rfc3339::format(newest)
                ),
            )),
            _ => None,
        };
        let mut next = match (self.apply(change), stale) {
            (Ok(next), None) => next,
            (Ok(_), Some(stale)) => return Err(vec![stale]),
            (Err(mut errors), stale) => {
                errors.splice(0..0, stale);
                return Err(errors);
            }
        };
        next.issued = self.issued.clone();
        if let Some(at) = change.issued_at {
            next.issued.insert(source.to_string(), at);
        }
        Ok(next)
    }

    /// The master data in force after `change`: its rows added, or put in place of the rows
    /// with the same key (BOM line: model, station, part, operation; change: its id; routing
    /// step: model, station, operation; equipment: its id; instruction: its id; operator: its
    /// id), lots put on and taken off hold, changes withdrawn; with `replace`, its rows alone.
    /// A change that does not hold together is refused whole, each row named under `rows.`
    /// (`rows.changes[0].old_part_number: `P-9` is not in the BOM`), and `self` stays in force.
    pub fn apply(&self, change: &MasterDataChange) -> Result<MasterData, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> =
            change.rows.row_errors().into_iter().map(|(row, reason)| (format!("rows.{row}"), reason)).collect();
        let mut next = if change.replace { MasterData::default() } else { self.clone() };
        fn upsert<T: Clone, K: PartialEq>(rows: &mut Vec<T>, new: &[T], key: impl Fn(&T) -> K) {
            for n in new {
                match rows.iter_mut().find(|r| key(r) == key(n)) {
                    Some(r) => *r = n.clone(),
                    None => rows.push(n.clone()),
                }
            }
        }
        upsert(&mut next.bom, &change.rows.bom, bom_key);
        upsert(&mut next.changes, &change.rows.changes, |c| c.change_id.clone());
        upsert(&mut next.routing, &change.rows.routing, routing_key);
        upsert(&mut next.equipment, &change.rows.equipment, |e| e.equipment.clone());
        upsert(&mut next.instructions, &change.rows.instructions, |w| w.instruction_id.clone());
        upsert(&mut next.operators, &change.rows.operators, |o| o.operator.clone());
        if let Some(q) = &change.rows.sequencing {
            next.sequencing = Some(q.clone());
        }
        for lot in &change.rows.lots_on_hold {
            if !next.lots_on_hold.contains(lot) {
                next.lots_on_hold.push(lot.clone());
            }
        }
        for (i, lot) in change.lots_released.iter().enumerate() {
            if change.rows.lots_on_hold.contains(lot) {
                errors.push((format!("lots_released[{i}]"), format!("`{lot}` is also put on hold by this change")));
            }
        }
        next.lots_on_hold.retain(|l| !change.lots_released.contains(l));
        for (i, id) in change.changes_withdrawn.iter().enumerate() {
            if change.rows.changes.iter().any(|c| &c.change_id == id) {
                errors.push((format!("changes_withdrawn[{i}]"), format!("`{id}` is also released by this change")));
            } else if !next.changes.iter().any(|c| &c.change_id == id) {
                errors.push((format!("changes_withdrawn[{i}]"), format!("no change `{id}` is in force")));
            }
        }
        next.changes.retain(|c| !change.changes_withdrawn.contains(&c.change_id));
        let parts: std::collections::HashSet<&str> = next.bom.iter().map(|b| b.part_number.as_str()).collect();
        let mut refs = Vec::new();
        change.rows.reference_errors(&parts, &mut refs);
        errors.extend(refs.into_iter().map(|(row, reason)| (format!("rows.{row}"), reason)));
        if errors.is_empty() { Ok(next) } else { Err(errors) }
    }
}

/// A change of the plant's master data, in force for every event after it in the log (the
/// `master_data_changed` event). Sources: the MES reader, the master data file, `POST
/// /api/master-data`, the demo plant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterDataChange {
    /// Which version this is at its source (an MES modification time, a file digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When its source issued this version (the time an MES read began, a file's modification
    /// time, the sender's clock): a change older than the last one applied from the same
    /// source arrived out of order and is refused ([`MasterData::apply_from`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub issued_at: Option<Timestamp>,
    /// The rows are the whole master data (a file, a full MES read), not additions.
    #[serde(default)]
    pub replace: bool,
    /// Rows added, or put in place of those with the same key.
    #[serde(default)]
    pub rows: MasterData,
    /// Supplier lots taken off quality hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots_released: Vec<String>,
    /// Engineering changes withdrawn (by id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes_withdrawn: Vec<String>,
}

/// A BOM line's key: model, station, part, operation.
fn bom_key(b: &BomItem) -> (String, String, String, Option<String>) {
    (b.model.clone(), b.station.clone(), b.part_number.clone(), b.operation.clone())
}

/// A routing step's key: model, station, operation.
fn routing_key(r: &RoutingStep) -> (String, String, String) {
    (r.model.clone(), r.station.clone(), r.operation.clone())
}

/// A work instruction shown to operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkInstruction {
    pub instruction_id: String,
    pub station: String,
    pub operation: String,
    pub title: String,
    pub text: String,
    /// Lowest operator certification level allowed to follow it alone.
    #[serde(default)]
    pub min_certification: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EquipmentKind {
    Nutrunner,
    Scanner,
    Fixture,
    Tester,
    Conveyor,
    Robot,
    Other,
}

/// A tool, fixture or machine, with its calibration state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equipment {
    pub equipment: String,
    pub kind: EquipmentKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub calibrated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub calibration_due: Option<Timestamp>,
}

/// A joint (bolt position) at a station with its tightening specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointSpec {
    pub joint: String,
    pub station: String,
    pub pset: String,
    pub category: JointCategory,
    pub torque_target_nm: f64,
    pub torque_min_nm: f64,
    pub torque_max_nm: f64,
    pub angle_min_deg: f64,
    pub angle_max_deg: f64,
}

/// A station on the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    pub station: String,
    pub name: String,
    pub cycle_time_s: f64,
    #[serde(default)]
    pub joints: Vec<JointSpec>,
}

/// An operator and their certification (IATF 16949 7.2, competence): the level (0 = trainee),
/// the stations it holds for, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub operator: String,
    #[serde(default)]
    pub name: String,
    pub certification: u8,
    #[serde(default)]
    pub certified_stations: Vec<String>,
    /// The certification lapses after this time (a re-training is due).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub certified_until: Option<Timestamp>,
}

impl Operator {
    /// Why this operator may not work alone at `station`, where the work instructions ask for
    /// level `required`, at time `at`; `None` when they may.
    pub fn not_certified(&self, station: &str, required: u8, at: Timestamp) -> Option<String> {
        if !self.certified_stations.iter().any(|s| s == station) {
            Some(format!("operator {} holds no certification for {station}", self.operator))
        } else if let Some(until) = self.certified_until.filter(|until| at > *until) {
            Some(format!("operator {}'s certification lapsed at {}", self.operator, rfc3339::format(&until)))
        } else if self.certification < required {
            Some(format!(
                "operator {} is certified at level {}, the work instructions at {station} ask for {required}",
                self.operator, self.certification
            ))
        } else {
            None
        }
    }
}

mod map_rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, t)| (k, rfc3339::format(t))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Timestamp>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "rfc3339")] Timestamp);
        Ok(BTreeMap::<String, Wrap>::deserialize(d)?.into_iter().map(|(k, w)| (k, w.0)).collect())
    }
}

mod opt_rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "rfc3339")] Timestamp);
        Option::<Wrap>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}
