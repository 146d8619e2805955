//! Master data read from the MES over OData: the BOM lines of each production type
//! (`ToBeConsumedMaterial`, with the part number read through the `Material` navigation by
//! `$expand`), the released engineering changes (`ChangePackage`), the supplier lots on hold,
//! the equipment with its calibration dates (`Equipment`), the work instructions
//! (`WorkInstruction`) and, when configured, the operators' certifications (one row per
//! operator and work center, `PersonnelCertification`). The reads go in one JSON
//! `$batch` when the service offers it, else one by one; every set follows server-driven
//! paging.
//!
//! A row that cannot be read is left out and reported with its key and field
//! (`ToBeConsumedMaterial(B-17).Quantity: missing`), so one bad row does not take the rest of
//! the plant's master data with it; what was read is then validated as a whole.

use crate::odata::{Client, Endpoint, OAuth2Config, OdataError, Query, is_identifier, literal};
use chrono::{DateTime, Utc};
use jidoka_model::master::{
    BomItem, ChangePackage, Effectivity, Equipment, EquipmentKind, MasterData, Operator, WorkInstruction,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[master_data.mes]`: where and how to read the master data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MesMasterConfig {
    /// Service root, e.g. `https://mes:8443/sit-svc/Application/AppJidoka/odata`.
    pub base_url: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// PEM bundle of the CAs to trust for https; default: the public ones.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// Ask for the three sets in one `$batch` (falls back by itself when the service has none).
    #[serde(default = "yes")]
    pub batch: bool,
    /// Entity set and field names; left out, the Opcenter-style defaults.
    #[serde(default)]
    pub names: MasterNames,
    /// The field every master data set carries its last modification time in (Opcenter:
    /// `LastUpdatedOn`). Set, a poll after a whole read asks each set only for the rows
    /// modified since the newest time seen (less `late_commit_seconds`) and puts them in place
    /// by key; empty (the default), every poll reads everything.
    #[serde(default)]
    pub modified_field: String,
    /// How far before the newest modification time seen an incremental read starts: a row
    /// stamped earlier can commit later (a long MES transaction). Rows read twice are put in
    /// place by key, so a wide margin only costs rows.
    #[serde(default = "late_commit_seconds")]
    pub late_commit_seconds: u32,
    /// With `modified_field`: every this many polls a whole read, which alone sees rows the MES
    /// deleted.
    #[serde(default = "full_read_every")]
    pub full_read_every: u32,
}

fn full_read_every() -> u32 {
    12
}

fn late_commit_seconds() -> u32 {
    60
}

fn timeout_ms() -> u64 {
    30_000
}
fn yes() -> bool {
    true
}

/// What the MES calls the master data's sets and fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterNames {
    pub bom_set: String,
    /// The BOM line's navigation to its material, expanded to read the part number...
    pub material_navigation: String,
    /// ...from this field of the material.
    pub material_number: String,
    pub bom_key: String,
    pub bom_model: String,
    pub bom_quantity: String,
    pub bom_station: String,
    pub bom_operation: String,
    pub bom_option_rule: String,
    pub bom_from_sequence: String,
    pub bom_to_sequence: String,
    pub bom_from_date: String,
    pub bom_to_date: String,
    pub change_set: String,
    pub change_key: String,
    pub change_number: String,
    pub change_old_material: String,
    pub change_new_material: String,
    pub change_cut_in_sequence: String,
    pub change_cut_in_date: String,
    pub change_old_valid_until: String,
    pub change_old_valid_until_sequence: String,
    pub change_description: String,
    pub change_status: String,
    /// Only changes in this status count (empty: all).
    pub change_released: String,
    /// Supplier lots on hold (empty: none read).
    pub lot_hold_set: String,
    pub lot_hold_lot: String,
    pub lot_hold_active: String,
    /// Tools and machines with their calibration dates (empty: none read).
    pub equipment_set: String,
    pub equipment_number: String,
    /// Its type (`Nutrunner`, `Scanner`, `Fixture`, `Tester`, `Conveyor`, `Robot`; anything
    /// else is `other`).
    pub equipment_kind: String,
    pub equipment_station: String,
    pub equipment_calibrated: String,
    pub equipment_due: String,
    /// Work instructions (empty: none read).
    pub instruction_set: String,
    pub instruction_number: String,
    pub instruction_station: String,
    pub instruction_operation: String,
    pub instruction_title: String,
    pub instruction_text: String,
    /// Lowest operator certification level allowed to follow it alone (a whole number).
    pub instruction_certification: String,
    /// Operator certifications, one row per operator and work center (empty, the default:
    /// none read; certifications often live in a training system rather than the MES).
    pub certification_set: String,
    pub certification_key: String,
    pub certification_operator: String,
    pub certification_operator_name: String,
    pub certification_station: String,
    /// The level held there (a whole number, 0 = trainee).
    pub certification_level: String,
    /// When it lapses (empty or null: it does not).
    pub certification_valid_until: String,
}

impl Default for MasterNames {
    fn default() -> Self {
        let s = |v: &str| v.to_string();
        MasterNames {
            bom_set: s("ToBeConsumedMaterial"),
            material_navigation: s("Material"),
            material_number: s("NId"),
            bom_key: s("Id"),
            bom_model: s("ProductionType"),
            bom_quantity: s("Quantity"),
            bom_station: s("WorkCenter"),
            bom_operation: s("OperationNId"),
            bom_option_rule: s("OptionRule"),
            bom_from_sequence: s("EffectiveFromSequence"),
            bom_to_sequence: s("EffectiveToSequence"),
            bom_from_date: s("EffectiveFrom"),
            bom_to_date: s("EffectiveTo"),
            change_set: s("ChangePackage"),
            change_key: s("Id"),
            change_number: s("NId"),
            change_old_material: s("OldMaterialNId"),
            change_new_material: s("NewMaterialNId"),
            change_cut_in_sequence: s("CutInSequence"),
            change_cut_in_date: s("CutInDate"),
            change_old_valid_until: s("OldValidUntil"),
            change_old_valid_until_sequence: s("OldValidUntilSequence"),
            change_description: s("Description"),
            change_status: s("Status"),
            change_released: s("Released"),
            lot_hold_set: s("LotHold"),
            lot_hold_lot: s("LotNId"),
            lot_hold_active: s("Active"),
            equipment_set: s("Equipment"),
            equipment_number: s("NId"),
            equipment_kind: s("EquipmentType"),
            equipment_station: s("WorkCenter"),
            equipment_calibrated: s("LastCalibratedOn"),
            equipment_due: s("CalibrationDueOn"),
            instruction_set: s("WorkInstruction"),
            instruction_number: s("NId"),
            instruction_station: s("WorkCenter"),
            instruction_operation: s("OperationNId"),
            instruction_title: s("Name"),
            instruction_text: s("Description"),
            instruction_certification: s("MinCertificationLevel"),
            certification_set: String::new(),
            certification_key: s("Id"),
            certification_operator: s("PersonnelNId"),
            certification_operator_name: s("PersonnelName"),
            certification_station: s("WorkCenter"),
            certification_level: s("Level"),
            certification_valid_until: s("ValidUntil"),
        }
    }
}

/// What one read gave: the master data, the rows left out (`(row, reason)`), and whether the
/// sets came in one `$batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterRead {
    pub master: MasterData,
    pub skipped: Vec<(String, String)>,
    pub batched: bool,
    /// Rows the MES sent for this read (all of them on a whole read; on an incremental one,
    /// those modified since the last).
    pub rows_read: usize,
    /// The rows behind `master`, for the next incremental read.
    pub rows: MasterRows,
    /// The MES keys of `master.bom` and `master.changes`, row by row.
    pub bom_keys: Vec<String>,
    pub change_keys: Vec<String>,
}

/// The MES's master data rows as read, set by set in the order of the queries, and the newest
/// modification time among them: what an incremental read puts its rows into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MasterRows {
    pub sets: Vec<Vec<Value>>,
    /// The newest `modified_field` value seen, as the MES wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<DateTime<Utc>>,
    /// Incremental reads since the last whole one.
    #[serde(default)]
    pub since_whole: u32,
}

impl MasterRead {
    /// Validation errors of the master data with each row named by its set and MES key
    /// (`ChangePackage(C-9).old_part_number` for `changes[4].old_part_number`; equipment by
    /// its number).
    pub fn errors(&self, names: &MasterNames) -> Vec<(String, String)> {
        let equipment_keys: Vec<String> = self.master.equipment.iter().map(|e| e.equipment.clone()).collect();
        let sets = [
            ("bom[", &names.bom_set, &self.bom_keys),
            ("changes[", &names.change_set, &self.change_keys),
            ("equipment[", &names.equipment_set, &equipment_keys),
        ];
        self.master
            .validate()
            .into_iter()
            .map(|(row, reason)| {
                let named = sets.iter().find_map(|(prefix, set, keys)| {
                    let rest = row.strip_prefix(prefix)?;
                    let (index, tail) = rest.split_once(']')?;
                    let key = keys.get(index.parse::<usize>().ok()?)?;
                    Some(format!("{set}({key}){tail}"))
                });
                (named.unwrap_or(row), reason)
            })
            .collect()
    }
}

impl MesMasterConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        self.endpoint().validate(path, errors);
        if !(100..=600_000).contains(&self.timeout_ms) {
            errors.push((format!("{path}.timeout_ms"), "must be between 100 and 600000".into()));
        }
        if !(self.modified_field.is_empty() || is_identifier(&self.modified_field)) {
            errors.push((format!("{path}.modified_field"), "must be an OData identifier".into()));
        }
        if self.late_commit_seconds > 86_400 {
            errors.push((format!("{path}.late_commit_seconds"), "must be at most 86400".into()));
        }
        if self.full_read_every == 0 {
            errors.push((format!("{path}.full_read_every"), "must be at least 1".into()));
        }
        let n = &self.names;
        let optional =
            [&n.change_released, &n.lot_hold_set, &n.equipment_set, &n.instruction_set, &n.certification_set];
        for (name, v) in [
            ("bom_set", &n.bom_set),
            ("material_navigation", &n.material_navigation),
            ("material_number", &n.material_number),
            ("bom_key", &n.bom_key),
            ("bom_model", &n.bom_model),
            ("bom_quantity", &n.bom_quantity),
            ("bom_station", &n.bom_station),
            ("bom_operation", &n.bom_operation),
            ("bom_option_rule", &n.bom_option_rule),
            ("bom_from_sequence", &n.bom_from_sequence),
            ("bom_to_sequence", &n.bom_to_sequence),
            ("bom_from_date", &n.bom_from_date),
            ("bom_to_date", &n.bom_to_date),
            ("change_set", &n.change_set),
            ("change_key", &n.change_key),
            ("change_number", &n.change_number),
            ("change_old_material", &n.change_old_material),
            ("change_new_material", &n.change_new_material),
            ("change_cut_in_sequence", &n.change_cut_in_sequence),
            ("change_cut_in_date", &n.change_cut_in_date),
            ("change_old_valid_until", &n.change_old_valid_until),
            ("change_old_valid_until_sequence", &n.change_old_valid_until_sequence),
            ("change_description", &n.change_description),
            ("change_status", &n.change_status),
            ("lot_hold_set", &n.lot_hold_set),
            ("lot_hold_lot", &n.lot_hold_lot),
            ("lot_hold_active", &n.lot_hold_active),
            ("equipment_set", &n.equipment_set),
            ("equipment_number", &n.equipment_number),
            ("equipment_kind", &n.equipment_kind),
            ("equipment_station", &n.equipment_station),
            ("equipment_calibrated", &n.equipment_calibrated),
            ("equipment_due", &n.equipment_due),
            ("instruction_set", &n.instruction_set),
            ("instruction_number", &n.instruction_number),
            ("instruction_station", &n.instruction_station),
            ("instruction_operation", &n.instruction_operation),
            ("instruction_title", &n.instruction_title),
            ("instruction_text", &n.instruction_text),
            ("instruction_certification", &n.instruction_certification),
            ("certification_set", &n.certification_set),
            ("certification_key", &n.certification_key),
            ("certification_operator", &n.certification_operator),
            ("certification_operator_name", &n.certification_operator_name),
            ("certification_station", &n.certification_station),
            ("certification_level", &n.certification_level),
            ("certification_valid_until", &n.certification_valid_until),
        ] {
            let may_be_empty = optional.iter().any(|o| std::ptr::eq(*o, v));
            if !(is_identifier(v) || (may_be_empty && v.is_empty())) {
                errors.push((format!("{path}.names.{name}"), "must be an OData identifier".into()));
            }
        }
    }

    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            base_url: &self.base_url,
            token_env: self.token_env.as_ref(),
            oauth2: self.oauth2.as_ref(),
            ca_file: self.ca_file.as_deref(),
            timeout_ms: self.timeout_ms,
        }
    }

    pub fn client(&self) -> Result<Client, String> {
        self.endpoint().client()
    }

    /// The queries, in the order BOM, changes, then those configured of lot holds, equipment,
    /// work instructions and certifications.
    fn queries(&self) -> Vec<(&str, Query)> {
        let n = &self.names;
        let bom_fields = [
            &n.bom_key,
            &n.bom_model,
            &n.bom_quantity,
            &n.bom_station,
            &n.bom_operation,
            &n.bom_option_rule,
            &n.bom_from_sequence,
            &n.bom_to_sequence,
            &n.bom_from_date,
            &n.bom_to_date,
        ];
        let mut out = vec![
            (
                n.bom_set.as_str(),
                Query {
                    select: Some(bom_fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",")),
                    expand: Some(format!("{}($select={})", n.material_navigation, n.material_number)),
                    orderby: Some(n.bom_key.clone()),
                    ..Query::default()
                },
            ),
            (
                n.change_set.as_str(),
                Query {
                    filter: (!n.change_released.is_empty())
                        .then(|| format!("{} eq {}", n.change_status, literal(&n.change_released))),
                    orderby: Some(n.change_key.clone()),
                    ..Query::default()
                },
            ),
        ];
        if !n.lot_hold_set.is_empty() {
            out.push((
                n.lot_hold_set.as_str(),
                Query { filter: Some(format!("{} eq true", n.lot_hold_active)), ..Query::default() },
            ));
        }
        if !n.equipment_set.is_empty() {
            let fields = [
                &n.equipment_number,
                &n.equipment_kind,
                &n.equipment_station,
                &n.equipment_calibrated,
                &n.equipment_due,
            ];
            out.push((
                n.equipment_set.as_str(),
                Query {
                    select: Some(fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",")),
                    orderby: Some(n.equipment_number.clone()),
                    ..Query::default()
                },
            ));
        }
        if !n.instruction_set.is_empty() {
            out.push((
                n.instruction_set.as_str(),
                Query { orderby: Some(n.instruction_number.clone()), ..Query::default() },
            ));
        }
        if !n.certification_set.is_empty() {
            out.push((
                n.certification_set.as_str(),
                Query { orderby: Some(n.certification_key.clone()), ..Query::default() },
            ));
        }
        out
    }

    /// Read the master data whole. A failed request (MES down, a set refused) is an error; a
    /// row that cannot be read is left out and listed in [`MasterRead::skipped`].
    pub fn read(&self, client: &Client) -> Result<MasterRead, OdataError> {
        self.read_since(client, None)
    }

    /// Read the master data: whole, or, with `modified_field` set and the rows of an earlier
    /// read given (fewer than `full_read_every` reads after its last whole one), only the rows
    /// modified since, put in place of the earlier rows by their key.
    pub fn read_since(&self, client: &Client, earlier: Option<&MasterRows>) -> Result<MasterRead, OdataError> {
        const MAX_PAGES: usize = 10_000;
        let queries = self.queries();
        let earlier = earlier.filter(|e| {
            !self.modified_field.is_empty()
                && e.sets.len() == queries.len()
                && e.newest.is_some()
                && e.since_whole + 1 < self.full_read_every
        });
        // Incremental: every modified row, whatever its status or activity (judged here, so a
        // change no longer released or a hold lifted comes back to be taken out), from the
        // newest stamp seen less the margin for late commits.
        let since = earlier.and_then(|e| e.newest).map(|newest| {
            let from = newest - chrono::Duration::seconds(i64::from(self.late_commit_seconds));
            format!("{} ge {}", self.modified_field, from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        });
        let queries: Vec<(&str, Query)> = queries
            .into_iter()
            .map(|(set, q)| {
                // The stamp is read with every row, for the next incremental read.
                let select = match q.select {
                    Some(s) if !self.modified_field.is_empty() => Some(format!("{s},{}", self.modified_field)),
                    select => select,
                };
                (set, Query { filter: since.clone().or(q.filter), select, ..q })
            })
            .collect();
        let batched = if self.batch { client.batch_get_all(&queries, MAX_PAGES)? } else { None };
        let (answers, batched) = match batched {
            Some(a) => (a, true),
            None => (queries.iter().map(|(set, q)| client.get_all(set, q, MAX_PAGES)).collect(), false),
        };
        let mut sets = Vec::with_capacity(answers.len());
        for (answer, (set, _)) in answers.into_iter().zip(&queries) {
            sets.push(answer.map_err(|e| match e {
                OdataError::Transient(m) => OdataError::Transient(format!("{set}: {m}")),
                OdataError::Permanent(m) => OdataError::Permanent(format!("{set}: {m}")),
            })?);
        }
        let rows_read = sets.iter().map(Vec::len).sum();
        let mut newest = sets.iter().flatten().filter_map(|r| self.modified(r)).max();
        let rows = match earlier {
            Some(e) => {
                let keys = self.set_keys();
                let merged = e
                    .sets
                    .iter()
                    .zip(sets)
                    .zip(&keys)
                    .map(|((old, new), key)| {
                        let mut merged = old.clone();
                        for row in new {
                            let k = self::key(&row, key);
                            match merged.iter_mut().find(|r| self::key(r, key) == k) {
                                Some(r) => *r = row,
                                None => merged.push(row),
                            }
                        }
                        merged
                    })
                    .collect();
                newest = newest.max(e.newest);
                MasterRows { sets: merged, newest, since_whole: e.since_whole + 1 }
            }
            None => MasterRows { sets, newest, since_whole: 0 },
        };
        Ok(self.master_of(rows, batched, rows_read))
    }

    /// The key field of each set, in the order of the queries.
    fn set_keys(&self) -> Vec<&str> {
        let n = &self.names;
        let mut keys = vec![n.bom_key.as_str(), n.change_key.as_str()];
        for (set, key) in [
            (&n.lot_hold_set, &n.lot_hold_lot),
            (&n.equipment_set, &n.equipment_number),
            (&n.instruction_set, &n.instruction_number),
            (&n.certification_set, &n.certification_key),
        ] {
            if !set.is_empty() {
                keys.push(key.as_str());
            }
        }
        keys
    }

    fn modified(&self, r: &Value) -> Option<DateTime<Utc>> {
        if self.modified_field.is_empty() {
            return None;
        }
        time(r, &self.modified_field).ok().flatten()
    }

    /// The master data of the rows read, set by set in the order of the queries.
    fn master_of(&self, rows: MasterRows, batched: bool, rows_read: usize) -> MasterRead {
        let n = &self.names;
        let mut sets = rows.sets.iter();
        let mut next = || sets.next().map(Vec::as_slice).unwrap_or_default();
        let (bom_rows, change_rows) = (next(), next());
        let lot_rows = if n.lot_hold_set.is_empty() { &[][..] } else { next() };
        let equipment_rows = if n.equipment_set.is_empty() { &[][..] } else { next() };
        let instruction_rows = if n.instruction_set.is_empty() { &[][..] } else { next() };
        let certification_rows = if n.certification_set.is_empty() { &[][..] } else { next() };
        // An incremental read asks for every modified row: the status and the hold's activity
        // are judged here as the whole read's filters judge them.
        let released: Vec<Value> = change_rows
            .iter()
            .filter(|r| {
                n.change_released.is_empty() || text(r, &n.change_status).as_deref() == Some(&n.change_released)
            })
            .cloned()
            .collect();
        let mut skipped = Vec::new();
        let mut master = MasterData::default();
        let bom_keys;
        (master.bom, bom_keys) = convert(bom_rows, &n.bom_set, &n.bom_key, &mut skipped, |r| self.bom_item(r));
        let change_keys;
        (master.changes, change_keys) =
            convert(&released, &n.change_set, &n.change_key, &mut skipped, |r| self.change(r));
        (master.equipment, _) =
            convert(equipment_rows, &n.equipment_set, &n.equipment_number, &mut skipped, |r| self.equipment(r));
        (master.instructions, _) =
            convert(instruction_rows, &n.instruction_set, &n.instruction_number, &mut skipped, |r| self.instruction(r));
        let (certifications, _) =
            convert(certification_rows, &n.certification_set, &n.certification_key, &mut skipped, |r| {
                self.certification(r)
            });
        master.operators = operators(certifications);
        for r in lot_rows.iter().filter(|r| r.get(&n.lot_hold_active).and_then(Value::as_bool) == Some(true)) {
            match text(r, &n.lot_hold_lot) {
                Some(lot) if !lot.trim().is_empty() => master.lots_on_hold.push(lot),
                _ => skipped.push((format!("{}.{}", n.lot_hold_set, n.lot_hold_lot), "missing".into())),
            }
        }
        master.lots_on_hold.sort();
        master.lots_on_hold.dedup();
        MasterRead { master, skipped, batched, bom_keys, change_keys, rows_read, rows }
    }

    fn bom_item(&self, r: &Value) -> Result<BomItem, (String, String)> {
        let n = &self.names;
        let part = r
            .get(&n.material_navigation)
            .and_then(|m| text(m, &n.material_number))
            .ok_or_else(|| (format!("{}.{}", n.material_navigation, n.material_number), "missing".to_string()))?;
        let quantity = r
            .get(&n.bom_quantity)
            .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .ok_or_else(|| (n.bom_quantity.clone(), "missing or not a number".to_string()))?;
        Ok(BomItem {
            model: required(r, &n.bom_model)?,
            part_number: part,
            quantity,
            station: required(r, &n.bom_station)?,
            operation: text(r, &n.bom_operation),
            option_rule: text(r, &n.bom_option_rule).filter(|s| !s.trim().is_empty()),
            effectivity: Effectivity {
                from_date: time(r, &n.bom_from_date)?,
                to_date: time(r, &n.bom_to_date)?,
                from_sequence: count(r, &n.bom_from_sequence)?,
                to_sequence: count(r, &n.bom_to_sequence)?,
                from_serial: None,
                to_serial: None,
            },
        })
    }

    fn equipment(&self, r: &Value) -> Result<Equipment, (String, String)> {
        let n = &self.names;
        let kind = match text(r, &n.equipment_kind).unwrap_or_default().to_ascii_lowercase().as_str() {
            "nutrunner" => EquipmentKind::Nutrunner,
            "scanner" => EquipmentKind::Scanner,
            "fixture" => EquipmentKind::Fixture,
            "tester" => EquipmentKind::Tester,
            "conveyor" => EquipmentKind::Conveyor,
            "robot" => EquipmentKind::Robot,
            _ => EquipmentKind::Other,
        };
        Ok(Equipment {
            equipment: required(r, &n.equipment_number)?,
            kind,
            station: text(r, &n.equipment_station),
            calibrated_at: time(r, &n.equipment_calibrated)?,
            calibration_due: time(r, &n.equipment_due)?,
        })
    }

    fn instruction(&self, r: &Value) -> Result<WorkInstruction, (String, String)> {
        let n = &self.names;
        let level = count(r, &n.instruction_certification)?.unwrap_or(0);
        Ok(WorkInstruction {
            instruction_id: required(r, &n.instruction_number)?,
            station: required(r, &n.instruction_station)?,
            operation: text(r, &n.instruction_operation).unwrap_or_default(),
            title: required(r, &n.instruction_title)?,
            text: text(r, &n.instruction_text).unwrap_or_default(),
            min_certification: u8::try_from(level)
                .map_err(|_| (n.instruction_certification.clone(), format!("{level} is above 255")))?,
        })
    }

    /// One certification row: an operator certified at one work center.
    fn certification(&self, r: &Value) -> Result<Operator, (String, String)> {
        let n = &self.names;
        let level =
            count(r, &n.certification_level)?.ok_or_else(|| (n.certification_level.clone(), "missing".to_string()))?;
        Ok(Operator {
            operator: required(r, &n.certification_operator)?,
            name: text(r, &n.certification_operator_name).unwrap_or_default(),
            certification: u8::try_from(level)
                .map_err(|_| (n.certification_level.clone(), format!("{level} is above 255")))?,
            certified_stations: vec![required(r, &n.certification_station)?],
            certified_until: time(r, &n.certification_valid_until)?,
        })
    }

    fn change(&self, r: &Value) -> Result<ChangePackage, (String, String)> {
        let n = &self.names;
        Ok(ChangePackage {
            change_id: text(r, &n.change_number).unwrap_or_else(|| key(r, &n.change_key)),
            old_part_number: required(r, &n.change_old_material)?,
            new_part_number: required(r, &n.change_new_material)?,
            cut_in: Effectivity {
                from_date: time(r, &n.change_cut_in_date)?,
                from_sequence: count(r, &n.change_cut_in_sequence)?,
                ..Effectivity::default()
            },
            old_valid_until: time(r, &n.change_old_valid_until)?,
            old_valid_until_sequence: count(r, &n.change_old_valid_until_sequence)?,
            description: text(r, &n.change_description),
        })
    }
}

/// An operator per person from their certification rows, in the order first seen: certified
/// at every work center of their rows, at the lowest level of those rows and until the earliest
/// lapse among them (one level per operator, so the rule errs toward asking for a review).
fn operators(rows: Vec<Operator>) -> Vec<Operator> {
    let mut out: Vec<Operator> = Vec::new();
    for row in rows {
        match out.iter_mut().find(|o| o.operator == row.operator) {
            Some(o) => {
                o.certification = o.certification.min(row.certification);
                o.certified_until = match (o.certified_until, row.certified_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                for station in row.certified_stations {
                    if !o.certified_stations.contains(&station) {
                        o.certified_stations.push(station);
                    }
                }
                if o.name.is_empty() {
                    o.name = row.name;
                }
            }
            None => out.push(row),
        }
    }
    out
}

/// The rows of `set` that `one` converts, with their keys; each row left out is named in
/// `skipped` by its key and field (`Set(key).Field`).
fn convert<T>(
    rows: &[Value],
    set: &str,
    key_field: &str,
    skipped: &mut Vec<(String, String)>,
    one: impl Fn(&Value) -> Result<T, (String, String)>,
) -> (Vec<T>, Vec<String>) {
    let (mut out, mut keys) = (Vec::new(), Vec::new());
    for r in rows {
        match one(r) {
            Ok(item) => {
                out.push(item);
                keys.push(key(r, key_field));
            }
            Err((field, reason)) => skipped.push((format!("{set}({}).{field}", key(r, key_field)), reason)),
        }
    }
    (out, keys)
}

/// A field as text (strings, and numbers written out); `None` when absent or null.
fn text(r: &Value, field: &str) -> Option<String> {
    match r.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn key(r: &Value, field: &str) -> String {
    text(r, field).unwrap_or_else(|| "?".into())
}

fn required(r: &Value, field: &str) -> Result<String, (String, String)> {
    text(r, field).filter(|s| !s.trim().is_empty()).ok_or_else(|| (field.to_string(), "missing".to_string()))
}

fn count(r: &Value, field: &str) -> Result<Option<u64>, (String, String)> {
    match r.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| (field.to_string(), format!("must be a whole number ≥ 0, found {v}")))
        }
    }
}

fn time(r: &Value, field: &str) -> Result<Option<DateTime<Utc>>, (String, String)> {
    match r.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| (field.to_string(), format!("`{s}` is not an RFC 3339 time: {e}"))),
        Some(v) => Err((field.to_string(), format!("must be an RFC 3339 time, found {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> MesMasterConfig {
        MesMasterConfig {
            base_url: "http://mes".into(),
            token_env: None,
            oauth2: None,
            ca_file: None,
            timeout_ms: 1000,
            batch: true,
            names: MasterNames::default(),
            modified_field: String::new(),
            full_read_every: 12,
            late_commit_seconds: 60,
        }
    }

    #[test]
    fn rows_become_bom_lines_and_changes_or_are_named() {
        let c = config();
        let b = c
            .bom_item(&json!({"Id": "B1", "ProductionType": "SEDAN", "Quantity": 2, "WorkCenter": "ST010",
                "OptionRule": "ENGINE=V6", "EffectiveFromSequence": 100, "EffectiveTo": "2027-01-01T00:00:00Z",
                "Material": {"NId": "P-100"}}))
            .unwrap();
        assert_eq!((b.part_number.as_str(), b.quantity, b.station.as_str()), ("P-100", 2.0, "ST010"));
        assert_eq!(b.effectivity.from_sequence, Some(100));
        assert!(b.effectivity.to_date.is_some());
        let no_material = c.bom_item(&json!({"Id": "B2", "ProductionType": "SEDAN", "Quantity": 1, "WorkCenter": "X"}));
        assert_eq!(no_material.unwrap_err(), ("Material.NId".into(), "missing".into()));
        let bad_seq = c.bom_item(&json!({"ProductionType": "S", "Quantity": 1, "WorkCenter": "X",
            "Material": {"NId": "P"}, "EffectiveFromSequence": -3}));
        assert_eq!(bad_seq.unwrap_err().0, "EffectiveFromSequence");
        let ch = c
            .change(&json!({"Id": "C1", "NId": "ECO-7", "OldMaterialNId": "P-100", "NewMaterialNId": "P-101",
                "CutInSequence": 500, "Status": "Released"}))
            .unwrap();
        assert_eq!((ch.change_id.as_str(), ch.cut_in.from_sequence), ("ECO-7", Some(500)));
        let bad_date = c.change(&json!({"OldMaterialNId": "a", "NewMaterialNId": "b", "CutInDate": "tomorrow"}));
        assert_eq!(bad_date.unwrap_err().0, "CutInDate");
    }

    #[test]
    fn names_are_checked_and_queries_follow_them() {
        let mut c = config();
        c.names.bom_set = "Bad Set".into();
        c.names.lot_hold_set = String::new();
        let mut errors = Vec::new();
        c.validate("master_data.mes", &mut errors);
        assert_eq!(
            errors,
            vec![("master_data.mes.names.bom_set".to_string(), "must be an OData identifier".to_string())]
        );
        let c = config();
        let q = c.queries();
        assert_eq!(q.len(), 5);
        assert_eq!(q[3].0, "Equipment");
        assert_eq!(q[0].1.expand.as_deref(), Some("Material($select=NId)"));
        assert_eq!(q[1].1.filter.as_deref(), Some("Status eq 'Released'"));
    }
}
