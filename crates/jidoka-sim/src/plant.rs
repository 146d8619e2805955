//! A plant described in TOML: the line, models and option mix, stations with their joints
//! (tightening specification and physics), tools, BOM with option rules and effectivity, ECOs
//! with cut-ins, operators, and the fault rates to inject. `examples/plants/default.toml` is
//! the default, embedded in the binary.
//!
//! Parsing is strict (unknown keys are errors) and [`Plant::validate`] reports every problem
//! with its path.

use jidoka_model::event::JointCategory;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The default plant, also at `examples/plants/default.toml`.
pub const DEFAULT_PLANT: &str = include_str!("../../../examples/plants/default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plant {
    pub line: Line,
    pub controller: ControllerSettings,
    pub models: Vec<Model>,
    #[serde(default)]
    pub options: Vec<OptionFamily>,
    pub stations: Vec<Station>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub bom: Vec<BomLine>,
    #[serde(default)]
    pub ecos: Vec<Eco>,
    #[serde(default)]
    pub operators: Vec<Operator>,
    #[serde(default)]
    pub fixtures: Vec<Fixture>,
    #[serde(default)]
    pub suppliers: Vec<Supplier>,
    #[serde(default)]
    pub quality: Quality,
    #[serde(default)]
    pub andon: Andon,
    #[serde(default)]
    pub eol_tests: Vec<EolTest>,
    #[serde(default)]
    pub process_parameters: Vec<ProcessParameter>,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub sequencing: Sequencing,
}

pub use jidoka_model::master::{Sequencing, SequencingEquipment as Equipment, SequencingRatio};

/// Why an option rule of the plant is wrong, if it is.
fn rule_problem(families: &BTreeMap<&str, &OptionFamily>, text: &str) -> Option<String> {
    match jidoka_model::rule::Rule::parse(text) {
        Ok(rule) => rule
            .terms()
            .into_iter()
            .find(|(family, value)| !families.get(family.as_str()).is_some_and(|f| f.values.contains(value)))
            .map(|(family, value)| format!("`{family}={value}` is not an option of the plant")),
        Err(reason) => Some(reason),
    }
}

/// A PLC tag sampled once per unit at its station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessParameter {
    pub station: String,
    pub equipment: String,
    pub tag: String,
    pub unit: String,
    pub nominal: f64,
    pub noise: f64,
}

/// A fixture (carrier, jig) at a station; units use a station's fixtures in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub id: String,
    pub station: String,
}

/// A supplier's delivery performance for kanban replenishment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supplier {
    pub id: String,
    pub lead_time_h: f64,
    /// Share of deliveries that arrive late.
    pub late_rate: f64,
    /// A late delivery is late by up to this many hours.
    pub late_h_max: f64,
    /// A delivery on time arrives up to this many hours before its promise.
    #[serde(default = "default_early")]
    pub early_h_max: f64,
    /// An expedite (premium freight) asked of the supplier is promised this many hours after
    /// the request, and arrives within a tenth of that either side of its promise.
    #[serde(default = "default_expedite_h")]
    pub expedite_h: f64,
    /// Share of expedite requests the supplier can honour (the rest are answered "cannot").
    #[serde(default = "default_expedite_rate")]
    pub expedite_rate: f64,
}

fn default_early() -> f64 {
    0.25
}

pub(crate) fn default_expedite_h() -> f64 {
    1.0
}

pub(crate) fn default_expedite_rate() -> f64 {
    0.9
}

/// Where defects are found and which defects exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// Station whose inspection finds defects and raises NCRs.
    #[serde(default)]
    pub inspection_station: String,
    /// Per unit: a defect with no special cause (the background every real plant has).
    #[serde(default)]
    pub background_defect_rate: f64,
    /// Share of NCRs written without a defect code (left for triage).
    #[serde(default)]
    pub uncoded_share: f64,
    /// Pieces per kanban bin at line side; one bin is ordered when one empties.
    #[serde(default = "default_bin")]
    pub bin_size: u32,
    /// Bins at line side when the run starts.
    #[serde(default = "default_bins")]
    pub initial_bins: u32,
    #[serde(default)]
    pub defects: Vec<DefectType>,
}

fn default_bin() -> u32 {
    40
}
fn default_bins() -> u32 {
    4
}

/// A defect code, the station whose work causes it, and how inspectors describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectType {
    pub code: String,
    pub station: String,
    pub severity: String,
    pub texts: Vec<String>,
}

/// Line stops: how often, and what causes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Andon {
    #[serde(default)]
    pub stops_per_station_hour: f64,
    #[serde(default)]
    pub causes: Vec<AndonCause>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndonCause {
    pub code: String,
    /// The team that fixes it: electrical, mechanical, quality, material or it.
    pub team: String,
    pub share: f64,
    /// Equipment at the station, `{station}` replaced by the station id.
    pub equipment: String,
    pub minutes_min: f64,
    pub minutes_max: f64,
    pub descriptions: Vec<String>,
    pub resolutions: Vec<String>,
}

/// An end-of-line test whose measurement depends on upstream work: the clamp lost on `joint`
/// (soft, cross-threaded, stripped or missing fasteners, a drifting tool) shifts it by
/// `sensitivity` per unit of lost clamp; a part from a bad lot adds `bad_lot_shift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EolTest {
    pub test: String,
    pub measurement: String,
    pub unit: String,
    pub nominal: f64,
    pub noise: f64,
    pub lower: f64,
    pub upper: f64,
    #[serde(default)]
    pub joint: Option<String>,
    #[serde(default)]
    pub sensitivity: f64,
    #[serde(default)]
    pub bad_lot_shift: f64,
    /// The test fails outright when this part was fitted after its ECO cut-in made it obsolete.
    #[serde(default)]
    pub fails_on_superseded: Option<String>,
    /// A process parameter whose deviation from its nominal shifts the measurement by
    /// `parameter_sensitivity` per unit of the parameter.
    #[serde(default)]
    pub parameter: Option<String>,
    #[serde(default)]
    pub parameter_sensitivity: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    /// Jobs per hour; the takt is 3600 / jph seconds.
    pub jph: f64,
    /// Plant time of the first slot (RFC 3339).
    pub start: String,
    pub shift_hours: f64,
    /// World manufacturer identifier (3 characters).
    pub wmi: String,
    pub model_year: char,
    pub plant_code: char,
    pub first_serial: u64,
}

/// How the tightening controllers sample and drive the spindle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    pub sample_ms: f64,
    pub rundown_speed_dps: f64,
    pub final_speed_dps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub code: String,
    /// Vehicle descriptor section of the VIN (5 characters).
    pub vds: String,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionFamily {
    pub family: String,
    pub values: Vec<String>,
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    pub id: String,
    pub name: String,
    /// The routing operation done here.
    pub operation: String,
    /// Work content of the station in seconds (at most the takt); default: the takt less 3 s.
    #[serde(default)]
    pub cycle_s: Option<f64>,
    #[serde(default)]
    pub joints: Vec<JointSpec>,
}

/// A tightening position (or `count` identical ones) with its specification and physics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointSpec {
    pub joint: String,
    #[serde(default = "one")]
    pub count: u32,
    pub pset: String,
    pub category: JointCategory,
    pub tool: String,
    pub target_nm: f64,
    pub min_nm: f64,
    pub max_nm: f64,
    /// Angle window from the threshold torque; 0 for `angle_min_deg` means not monitored.
    pub angle_min_deg: f64,
    pub angle_max_deg: f64,
    pub threshold_nm: f64,
    pub stiffness_nm_per_deg: f64,
    pub prevailing_nm: f64,
    pub rundown_deg: f64,
    pub seating_deg: f64,
}

impl JointSpec {
    /// The controller's report of one tightening of this joint at `station`: tool, program,
    /// category, target and windows from the spec, values and curve from `t`. No VIN, batch,
    /// controller or verdict: the caller adds what it knows.
    pub fn report(
        &self,
        station: &str,
        joint: &str,
        tightening_id: String,
        t: crate::curve::Tightening,
    ) -> jidoka_model::TighteningResult {
        jidoka_model::TighteningResult {
            tightening_id,
            vin: None,
            station: station.to_string(),
            tool: self.tool.clone(),
            controller: None,
            pset: self.pset.clone(),
            joint: joint.to_string(),
            category: Some(self.category),
            batch: None,
            final_torque_nm: t.final_torque_nm,
            final_angle_deg: t.final_angle_deg,
            torque_target_nm: Some(self.target_nm),
            torque_min_nm: Some(self.min_nm),
            torque_max_nm: Some(self.max_nm),
            angle_min_deg: Some(self.angle_min_deg),
            angle_max_deg: Some(self.angle_max_deg),
            controller_verdict: None,
            curve: Some(t.curve),
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub serial: String,
    /// Standard deviation of the shut-off torque as a fraction of the target.
    pub precision: f64,
    #[serde(default)]
    pub calibrated_at: Option<String>,
    /// When the next calibration is due (RFC 3339): results after it are flagged.
    #[serde(default)]
    pub calibration_due: Option<String>,
}

/// One BOM line: a part fitted at a station to every unit whose options satisfy `rule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BomLine {
    pub part: String,
    pub station: String,
    /// Models this line applies to (empty = all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Boolean expression over option codes (`ENGINE=V6 & !TRIM=BASE`); empty = always.
    #[serde(default)]
    pub rule: String,
    #[serde(default = "one")]
    pub quantity: u32,
    #[serde(default)]
    pub serialised: bool,
    pub supplier: String,
    /// Pieces per supplier lot.
    #[serde(default = "default_lot")]
    pub lot_size: u32,
    /// Effectivity by planned sequence number (inclusive bounds; none = open).
    #[serde(default)]
    pub from_sequence: Option<u64>,
    #[serde(default)]
    pub to_sequence: Option<u64>,
}

impl BomLine {
    /// Whether this line applies to the unit with this planned sequence number.
    pub fn effective_for(&self, sequence: u64) -> bool {
        self.from_sequence.is_none_or(|f| sequence >= f) && self.to_sequence.is_none_or(|t| sequence <= t)
    }
}

fn default_lot() -> u32 {
    500
}

/// An engineering change: `new_part` replaces `old_part` from sequence `cut_in_sequence`; with
/// `old_valid_until_sequence` the old part may be used up until then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eco {
    pub id: String,
    pub old_part: String,
    pub new_part: String,
    /// Cut-in by planned sequence number...
    #[serde(default)]
    pub cut_in_sequence: Option<u64>,
    /// ...or by date (RFC 3339), compared with the unit's planned start.
    #[serde(default)]
    pub cut_in_date: Option<String>,
    #[serde(default)]
    pub old_valid_until_sequence: Option<u64>,
}

impl Eco {
    /// Whether the cut-in has passed for a unit with this sequence and planned start.
    pub fn cut_in_passed(&self, sequence: u64, planned_start: chrono::DateTime<chrono::Utc>) -> bool {
        let by_sequence = self.cut_in_sequence.is_some_and(|c| sequence >= c);
        let by_date = self
            .cut_in_date
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .is_some_and(|d| planned_start >= d);
        by_sequence || by_date
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub id: String,
    pub certification: u8,
    pub station: String,
    /// Shift letter (A, B, C...).
    pub shift: String,
}

/// Fault rates: tightening faults per tightening, sequence faults per scan / per unit-station.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub cross_thread: f64,
    #[serde(default)]
    pub soft_joint: f64,
    #[serde(default)]
    pub stripped: f64,
    #[serde(default)]
    pub rehit: f64,
    #[serde(default)]
    pub missing: f64,
    /// Per scan: a part of another station scanned.
    #[serde(default)]
    pub wrong_part: f64,
    /// Per scan of an option-dependent part: the part of another option value.
    #[serde(default)]
    pub wrong_variant: f64,
    /// Per scan of a part replaced by an ECO, after cut-in: the old part.
    #[serde(default)]
    pub superseded: f64,
    /// Per serialised scan: a serial already fitted to an earlier unit.
    #[serde(default)]
    pub duplicate_serial: f64,
    /// Per unit and station: the operation is skipped (no scans, tightenings or completion).
    #[serde(default)]
    pub skipped_operation: f64,
    #[serde(default)]
    pub tool_drift: Vec<ToolDrift>,
    #[serde(default)]
    pub worn_fixture: Vec<WornFixture>,
    #[serde(default)]
    pub bad_lot: Vec<BadLot>,
    #[serde(default)]
    pub parameter_drift: Vec<ParameterDrift>,
}

/// A process parameter that drifts by `offset` from `onset_unit`, fully after `ramp_units`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterDrift {
    pub tag: String,
    pub onset_unit: u64,
    pub offset: f64,
    pub ramp_units: u64,
}

/// A fixture that, from `onset_unit`, causes `defect` on units built on it during `shift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WornFixture {
    pub fixture: String,
    pub shift: String,
    pub onset_unit: u64,
    pub defect: String,
    pub rate: f64,
}

/// Supplier lot number `lot` of `part` causes `defect` on the units it is fitted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadLot {
    pub part: String,
    pub lot: u64,
    pub defect: String,
    pub rate: f64,
}

/// A tool whose shut-off drifts from `onset_unit`, reaching `offset_pct` of the target after
/// `ramp_units` units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDrift {
    pub tool: String,
    pub onset_unit: u64,
    pub offset_pct: f64,
    pub ramp_units: u64,
}

/// Parse error or validation errors, each with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|(p, m)| format!("{p}: {m}")).collect::<Vec<_>>().join("\n"))]
pub struct PlantErrors(pub Vec<(String, String)>);

impl Plant {
    /// The plant as the MES would describe it to the sequence checks: BOM (one item per model
    /// restriction, `*` for all), engineering changes, routing with the joints to tighten.
    pub fn master_data(&self) -> jidoka_model::master::MasterData {
        use jidoka_model::master::{
            BomItem, ChangePackage, Effectivity, Equipment, EquipmentKind, MasterData, RoutingStep,
        };
        let operation_of = |station: &str| self.stations.iter().find(|s| s.id == station).map(|s| s.operation.clone());
        let mut bom = Vec::new();
        for b in &self.bom {
            let models: Vec<String> = if b.models.is_empty() { vec!["*".into()] } else { b.models.clone() };
            for model in models {
                bom.push(BomItem {
                    model,
                    part_number: b.part.clone(),
                    quantity: b.quantity as f64,
                    station: b.station.clone(),
                    operation: operation_of(&b.station),
                    option_rule: (!b.rule.trim().is_empty()).then(|| b.rule.clone()),
                    effectivity: Effectivity {
                        from_sequence: b.from_sequence,
                        to_sequence: b.to_sequence,
                        ..Effectivity::default()
                    },
                });
            }
        }
        let changes = self
            .ecos
            .iter()
            .map(|e| ChangePackage {
                change_id: e.id.clone(),
                old_part_number: e.old_part.clone(),
                new_part_number: e.new_part.clone(),
                cut_in: Effectivity {
                    from_sequence: e.cut_in_sequence,
                    from_date: e
                        .cut_in_date
                        .as_deref()
                        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.with_timezone(&chrono::Utc)),
                    ..Effectivity::default()
                },
                old_valid_until: None,
                old_valid_until_sequence: e.old_valid_until_sequence,
                description: None,
            })
            .collect();
        let routing = self
            .stations
            .iter()
            .enumerate()
            .map(|(i, s)| RoutingStep {
                model: "*".into(),
                station: s.id.clone(),
                operation: s.operation.clone(),
                step: i as u32 + 1,
                required_tightenings: s
                    .joints
                    .iter()
                    .flat_map(|j| {
                        (1..=j.count)
                            .map(move |k| if j.count > 1 { format!("{}-{k}", j.joint) } else { j.joint.clone() })
                    })
                    .collect(),
            })
            .collect();
        let time = |t: &Option<String>| {
            t.as_deref()
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&chrono::Utc))
        };
        let equipment = self
            .tools
            .iter()
            .map(|t| Equipment {
                equipment: t.serial.clone(),
                kind: EquipmentKind::Nutrunner,
                station: None,
                calibrated_at: time(&t.calibrated_at),
                calibration_due: time(&t.calibration_due),
            })
            .collect();
        let operators = self
            .operators
            .iter()
            .map(|o| jidoka_model::master::Operator {
                operator: o.id.clone(),
                name: String::new(),
                certification: o.certification,
                certified_stations: vec![o.station.clone()],
                certified_until: None,
            })
            .collect();
        // The sequencing rules go with the master data only when the plant has any.
        let sequencing = (self.sequencing != Sequencing::default()).then(|| self.sequencing.clone());
        MasterData { bom, changes, routing, equipment, operators, sequencing, ..MasterData::default() }
    }

    pub fn default_plant() -> Result<Plant, PlantErrors> {
        Plant::parse(DEFAULT_PLANT)
    }

    pub fn parse(text: &str) -> Result<Plant, PlantErrors> {
        let plant: Plant = toml::from_str(text)
            .map_err(|e| PlantErrors(vec![("$".into(), e.to_string().trim().replace('\n', " "))]))?;
        let errors = plant.validate();
        if errors.is_empty() { Ok(plant) } else { Err(PlantErrors(errors)) }
    }

    pub fn takt_s(&self) -> f64 {
        3600.0 / self.line.jph
    }

    pub fn tightenings_per_unit(&self) -> u32 {
        self.stations.iter().flat_map(|s| &s.joints).map(|j| j.count).sum()
    }

    /// The physics and controller program of one joint, as the line tightens it.
    pub fn joint_physics(&self, spec: &JointSpec) -> crate::curve::JointPhysics {
        let precision = self.tool(&spec.tool).map(|t| t.precision).unwrap_or(0.02);
        let c = &self.controller;
        crate::curve::JointPhysics {
            target_nm: spec.target_nm,
            threshold_nm: spec.threshold_nm,
            stiffness_nm_per_deg: spec.stiffness_nm_per_deg,
            prevailing_nm: spec.prevailing_nm,
            rundown_deg: spec.rundown_deg,
            seating_deg: spec.seating_deg,
            rundown_speed_dps: c.rundown_speed_dps,
            final_speed_dps: c.final_speed_dps,
            sample_ms: c.sample_ms,
            precision,
            // The hard stop lies beyond the monitoring window, as in real programs: the window
            // judges the result, the stop only ends a run that would never reach its target.
            angle_limit_deg: spec.angle_max_deg * 3.0 + 60.0,
        }
    }

    pub fn tool(&self, serial: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.serial == serial)
    }

    /// Every problem, as `(path, reason)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = Vec::new();
        let mut err = |p: String, m: &str| e.push((p, m.to_string()));
        if !(1.0..=600.0).contains(&self.line.jph) {
            err("line.jph".into(), "must be between 1 and 600");
        }
        if chrono::DateTime::parse_from_rfc3339(&self.line.start).is_err() {
            err("line.start".into(), "not an RFC 3339 time");
        }
        if self.line.wmi.len() != 3 {
            err("line.wmi".into(), "must be 3 characters");
        }
        if crate::vin::build(&self.line.wmi, "AAAAA", self.line.model_year, self.line.plant_code, 1).is_none() {
            err(
                "line".into(),
                "wmi, model_year and plant_code do not make a valid VIN (letters I, O, Q are not allowed)",
            );
        }
        if self.line.shift_hours <= 0.0 {
            err("line.shift_hours".into(), "must be positive");
        }
        let c = &self.controller;
        if !(0.1..=50.0).contains(&c.sample_ms) {
            err("controller.sample_ms".into(), "must be between 0.1 and 50");
        }
        if c.rundown_speed_dps <= 0.0 || c.final_speed_dps <= 0.0 {
            err("controller".into(), "speeds must be positive");
        }
        if self.models.is_empty() {
            err("models".into(), "at least one model is needed");
        }
        for (i, m) in self.models.iter().enumerate() {
            if crate::vin::build(&self.line.wmi, &m.vds, self.line.model_year, self.line.plant_code, 1).is_none() {
                err(format!("models[{i}].vds"), "must be 5 VIN characters (no I, O, Q)");
            }
            if m.share <= 0.0 {
                err(format!("models[{i}].share"), "must be positive");
            }
        }
        for (i, o) in self.options.iter().enumerate() {
            if o.values.is_empty() || o.values.len() != o.shares.len() {
                err(format!("options[{i}]"), "values and shares must be non-empty and of equal length");
            }
            if o.shares.iter().any(|s| *s < 0.0) || o.shares.iter().sum::<f64>() <= 0.0 {
                err(format!("options[{i}].shares"), "must be non-negative and not all zero");
            }
        }
        let mut station_ids = HashSet::new();
        let tool_ids: HashSet<&str> = self.tools.iter().map(|t| t.serial.as_str()).collect();
        for (i, s) in self.stations.iter().enumerate() {
            if !station_ids.insert(s.id.as_str()) {
                err(format!("stations[{i}].id"), "used twice");
            }
            if s.cycle_s.is_some_and(|c| c <= 5.0 || c > 3600.0 / self.line.jph) {
                err(format!("stations[{i}].cycle_s"), "must be above 5 s and at most the takt");
            }
            for (j, joint) in s.joints.iter().enumerate() {
                let p = format!("stations[{i}].joints[{j}]");
                if !(joint.min_nm <= joint.target_nm && joint.target_nm <= joint.max_nm && joint.min_nm > 0.0) {
                    err(p.clone(), "needs 0 < min_nm <= target_nm <= max_nm");
                }
                if !(0.0..joint.target_nm).contains(&joint.threshold_nm) {
                    err(format!("{p}.threshold_nm"), "must be between 0 and the target");
                }
                if joint.angle_min_deg > joint.angle_max_deg {
                    err(format!("{p}.angle_min_deg"), "above angle_max_deg");
                }
                if joint.stiffness_nm_per_deg <= 0.0 || joint.rundown_deg < 0.0 || joint.seating_deg <= 0.0 {
                    err(p.clone(), "stiffness and seating must be positive, rundown not negative");
                }
                if !tool_ids.contains(joint.tool.as_str()) {
                    err(format!("{p}.tool"), "not in [[tools]]");
                }
                if joint.count == 0 {
                    err(format!("{p}.count"), "must be at least 1");
                }
            }
        }
        for (i, t) in self.tools.iter().enumerate() {
            if !(0.0..0.2).contains(&t.precision) {
                err(format!("tools[{i}].precision"), "must be between 0 and 0.2");
            }
        }
        let families: BTreeMap<&str, &OptionFamily> = self.options.iter().map(|o| (o.family.as_str(), o)).collect();
        let models: HashSet<&str> = self.models.iter().map(|m| m.code.as_str()).collect();
        for (i, b) in self.bom.iter().enumerate() {
            if !station_ids.contains(b.station.as_str()) {
                err(format!("bom[{i}].station"), "not a station of the line");
            }
            if let Some(m) = b.models.iter().find(|m| !models.contains(m.as_str())) {
                err(format!("bom[{i}].models"), &format!("unknown model `{m}`"));
            }
            if let Some(reason) = rule_problem(&families, &b.rule) {
                err(format!("bom[{i}].rule"), &reason);
            }
            if let (Some(f), Some(t)) = (b.from_sequence, b.to_sequence)
                && f > t
            {
                err(format!("bom[{i}].from_sequence"), "after to_sequence");
            }
            if b.lot_size == 0 || b.quantity == 0 {
                err(format!("bom[{i}]"), "quantity and lot_size must be at least 1");
            }
        }
        let q = &self.sequencing;
        for (at, reason) in q.errors("sequencing") {
            err(at, &reason);
        }
        if !q.paint_family.is_empty() && !families.contains_key(q.paint_family.as_str()) {
            err("sequencing.paint_family".into(), "not an option family of the plant");
        }
        // Rules that parse (the check above names those that do not) over options the plant has.
        let known =
            |rule: &str| jidoka_model::rule::Rule::parse(rule).is_ok().then(|| rule_problem(&families, rule)).flatten();
        for (i, r) in q.ratios.iter().enumerate() {
            if let Some(reason) = known(&r.rule) {
                err(format!("sequencing.ratios[{i}].rule"), &reason);
            }
        }
        for (i, x) in q.equipment.iter().enumerate() {
            if !station_ids.contains(x.station.as_str()) {
                err(format!("sequencing.equipment[{i}].station"), "not a station of the line");
            }
            if let Some(reason) = known(&x.rule) {
                err(format!("sequencing.equipment[{i}].rule"), &reason);
            }
        }
        let parts: HashSet<&str> = self.bom.iter().map(|b| b.part.as_str()).collect();
        for (i, eco) in self.ecos.iter().enumerate() {
            if !parts.contains(eco.old_part.as_str()) {
                err(format!("ecos[{i}].old_part"), "not in the BOM");
            }
            if eco.cut_in_sequence.is_none() == eco.cut_in_date.is_none() {
                err(format!("ecos[{i}]"), "give exactly one of cut_in_sequence and cut_in_date");
            }
            if let Some(d) = &eco.cut_in_date
                && chrono::DateTime::parse_from_rfc3339(d).is_err()
            {
                err(format!("ecos[{i}].cut_in_date"), "not an RFC 3339 time");
            }
            if let (Some(until), Some(cut)) = (eco.old_valid_until_sequence, eco.cut_in_sequence)
                && until < cut
            {
                err(format!("ecos[{i}].old_valid_until_sequence"), "before the cut-in");
            }
        }
        for (i, o) in self.operators.iter().enumerate() {
            if !station_ids.contains(o.station.as_str()) {
                err(format!("operators[{i}].station"), "not a station of the line");
            }
        }
        let defect_codes: HashSet<&str> = self.quality.defects.iter().map(|d| d.code.as_str()).collect();
        let q = &self.quality;
        if !q.defects.is_empty() && !station_ids.contains(q.inspection_station.as_str()) {
            err("quality.inspection_station".into(), "not a station of the line");
        }
        for (name, rate) in [("background_defect_rate", q.background_defect_rate), ("uncoded_share", q.uncoded_share)] {
            if !(0.0..=1.0).contains(&rate) {
                err(format!("quality.{name}"), "must be between 0 and 1");
            }
        }
        if q.bin_size == 0 || q.initial_bins == 0 {
            err("quality".into(), "bin_size and initial_bins must be at least 1");
        }
        for (i, d) in q.defects.iter().enumerate() {
            if !station_ids.contains(d.station.as_str()) {
                err(format!("quality.defects[{i}].station"), "not a station of the line");
            }
            if d.texts.is_empty() {
                err(format!("quality.defects[{i}].texts"), "at least one description is needed");
            }
        }
        for (i, fx) in self.fixtures.iter().enumerate() {
            if !station_ids.contains(fx.station.as_str()) {
                err(format!("fixtures[{i}].station"), "not a station of the line");
            }
        }
        let supplier_ids: HashSet<&str> = self.suppliers.iter().map(|s| s.id.as_str()).collect();
        for (i, sup) in self.suppliers.iter().enumerate() {
            if sup.lead_time_h <= 0.0
                || sup.late_h_max < 0.0
                || !(0.0..=1.0).contains(&sup.late_rate)
                || !(0.0..=sup.lead_time_h).contains(&sup.early_h_max)
                || sup.expedite_h <= 0.0
                || !(0.0..=1.0).contains(&sup.expedite_rate)
            {
                err(
                    format!("suppliers[{i}]"),
                    "needs lead_time_h > 0, late_h_max >= 0, late_rate in 0..=1, early_h_max in 0..=lead_time_h, \
                     expedite_h > 0 and expedite_rate in 0..=1",
                );
            }
        }
        for (i, b) in self.bom.iter().enumerate() {
            if !self.suppliers.is_empty() && !supplier_ids.contains(b.supplier.as_str()) {
                err(format!("bom[{i}].supplier"), "not in [[suppliers]]");
            }
        }
        let a = &self.andon;
        if a.stops_per_station_hour < 0.0 || a.stops_per_station_hour > 10.0 {
            err("andon.stops_per_station_hour".into(), "must be between 0 and 10");
        }
        for (i, c) in a.causes.iter().enumerate() {
            if !["electrical", "mechanical", "quality", "material", "it"].contains(&c.team.as_str()) {
                err(format!("andon.causes[{i}].team"), "must be electrical, mechanical, quality, material or it");
            }
            if c.descriptions.is_empty()
                || c.resolutions.is_empty()
                || c.share < 0.0
                || c.minutes_min <= 0.0
                || c.minutes_max < c.minutes_min
            {
                err(
                    format!("andon.causes[{i}]"),
                    "needs descriptions, resolutions, share >= 0 and 0 < minutes_min <= minutes_max",
                );
            }
        }
        if a.causes.iter().any(|c| c.minutes_min * 60.0 < self.takt_s()) {
            err("andon.causes".into(), "a stop lasts at least one takt (minutes_min * 60 >= takt)");
        }
        if a.stops_per_station_hour > 0.0 && a.causes.iter().map(|c| c.share).sum::<f64>() <= 0.0 {
            err("andon.causes".into(), "stops are configured but no cause has a share");
        }
        let joint_names: HashSet<&str> =
            self.stations.iter().flat_map(|s| &s.joints).map(|j| j.joint.as_str()).collect();
        for (i, t) in self.eol_tests.iter().enumerate() {
            if t.lower > t.upper || t.noise < 0.0 {
                err(format!("eol_tests[{i}]"), "needs lower <= upper and noise >= 0");
            }
            if let Some(j) = &t.joint
                && !joint_names.contains(j.as_str())
            {
                err(format!("eol_tests[{i}].joint"), "not a joint of the line");
            }
        }
        let tags: HashSet<&str> = self.process_parameters.iter().map(|p| p.tag.as_str()).collect();
        for (i, pp) in self.process_parameters.iter().enumerate() {
            if !station_ids.contains(pp.station.as_str()) {
                err(format!("process_parameters[{i}].station"), "not a station of the line");
            }
            if pp.noise < 0.0 {
                err(format!("process_parameters[{i}].noise"), "must not be negative");
            }
        }
        for (i, t) in self.eol_tests.iter().enumerate() {
            if let Some(tag) = &t.parameter
                && !tags.contains(tag.as_str())
            {
                err(format!("eol_tests[{i}].parameter"), "not in [[process_parameters]]");
            }
        }
        let f = &self.faults;
        for (i, d) in f.parameter_drift.iter().enumerate() {
            if !tags.contains(d.tag.as_str()) {
                err(format!("faults.parameter_drift[{i}].tag"), "not in [[process_parameters]]");
            }
            if d.ramp_units == 0 {
                err(format!("faults.parameter_drift[{i}].ramp_units"), "must be at least 1");
            }
        }
        for (i, w) in f.worn_fixture.iter().enumerate() {
            if !self.fixtures.iter().any(|fx| fx.id == w.fixture) {
                err(format!("faults.worn_fixture[{i}].fixture"), "not in [[fixtures]]");
            }
            if !defect_codes.contains(w.defect.as_str()) {
                err(format!("faults.worn_fixture[{i}].defect"), "not in [[quality.defects]]");
            }
            if !(0.0..=1.0).contains(&w.rate) {
                err(format!("faults.worn_fixture[{i}].rate"), "must be between 0 and 1");
            }
        }
        for (i, b) in f.bad_lot.iter().enumerate() {
            if !parts.contains(b.part.as_str()) {
                err(format!("faults.bad_lot[{i}].part"), "not in the BOM");
            }
            if !defect_codes.contains(b.defect.as_str()) {
                err(format!("faults.bad_lot[{i}].defect"), "not in [[quality.defects]]");
            }
            if !(0.0..=1.0).contains(&b.rate) || b.lot == 0 {
                err(format!("faults.bad_lot[{i}]"), "rate must be between 0 and 1 and lot at least 1");
            }
        }
        for (name, rate) in [
            ("cross_thread", f.cross_thread),
            ("soft_joint", f.soft_joint),
            ("stripped", f.stripped),
            ("rehit", f.rehit),
            ("missing", f.missing),
            ("wrong_part", f.wrong_part),
            ("wrong_variant", f.wrong_variant),
            ("superseded", f.superseded),
            ("duplicate_serial", f.duplicate_serial),
            ("skipped_operation", f.skipped_operation),
        ] {
            if !(0.0..=0.5).contains(&rate) {
                err(format!("faults.{name}"), "must be a rate between 0 and 0.5");
            }
        }
        if f.cross_thread + f.soft_joint + f.stripped + f.rehit + f.missing > 0.5 {
            err("faults".into(), "tightening fault rates add up to more than 0.5");
        }
        for (i, d) in f.tool_drift.iter().enumerate() {
            if !tool_ids.contains(d.tool.as_str()) {
                err(format!("faults.tool_drift[{i}].tool"), "not in [[tools]]");
            }
            if d.ramp_units == 0 {
                err(format!("faults.tool_drift[{i}].ramp_units"), "must be at least 1");
            }
        }
        e
    }
}
