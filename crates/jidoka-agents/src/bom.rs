//! The bill of materials indexed by station: which parts a unit of one configuration needs at a
//! station, with option rules, effectivity and ECO cut-ins (and their use-up windows). One place
//! for the explosion: the sequence check asks what a unit must receive, the shortage forecast
//! what the build queue will consume.

use jidoka_model::Timestamp;
use jidoka_model::master::{ChangePackage, Effectivity, MasterData};
use jidoka_model::rule::Rule;
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Clone)]
pub(crate) struct BomLine {
    pub(crate) model: String,
    pub(crate) part: String,
    pub(crate) quantity: f64,
    pub(crate) rule: Rule,
    pub(crate) rule_text: String,
    pub(crate) effectivity: Effectivity,
}

#[derive(Clone)]
pub(crate) struct Change {
    pub(crate) id: String,
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) package: ChangePackage,
}

/// One required part at a station: what is expected, what else is allowed, why.
#[derive(Debug, Clone)]
pub(crate) struct Requirement {
    pub(crate) part: String,
    pub(crate) also_allowed: Option<String>,
    pub(crate) quantity: f64,
    pub(crate) change: Option<String>,
    /// Option families the BOM line's rule speaks of: a wrong variant stands in for a
    /// requirement that shares one.
    pub(crate) families: Vec<String>,
}

/// What the explosion needs to know of a unit.
pub(crate) struct UnitConfig<'a> {
    pub(crate) model: &'a str,
    pub(crate) options: &'a BTreeSet<String>,
    pub(crate) sequence: u64,
    pub(crate) planned_start: Option<Timestamp>,
    /// The VIN's serial number, for serial-range effectivity.
    pub(crate) serial: Option<&'a str>,
}

/// The BOM and its changes, by station.
#[derive(Clone, Default)]
pub(crate) struct BomIndex {
    pub(crate) by_station: HashMap<String, Vec<BomLine>>,
    pub(crate) changes: Vec<Change>,
    pub(crate) known_parts: HashSet<String>,
}

pub(crate) fn model_matches(line_model: &str, model: &str) -> bool {
    line_model == "*" || line_model == model
}

impl BomIndex {
    /// Rows must have been checked (`MasterData::errors`); a rule that does not parse holds for
    /// no unit.
    pub(crate) fn new(master: &MasterData) -> BomIndex {
        let mut by_station: HashMap<String, Vec<BomLine>> = HashMap::new();
        let mut known_parts = HashSet::new();
        for b in &master.bom {
            known_parts.insert(b.part_number.clone());
            let rule_text = b.option_rule.clone().unwrap_or_default();
            let rule = Rule::parse(&rule_text).unwrap_or(Rule::Not(Box::new(Rule::Always)));
            by_station.entry(b.station.clone()).or_default().push(BomLine {
                model: b.model.clone(),
                part: b.part_number.clone(),
                quantity: b.quantity,
                rule,
                rule_text,
                effectivity: b.effectivity.clone(),
            });
        }
        let changes = master
            .changes
            .iter()
            .map(|c| {
                known_parts.insert(c.new_part_number.clone());
                Change {
                    id: c.change_id.clone(),
                    old: c.old_part_number.clone(),
                    new: c.new_part_number.clone(),
                    package: c.clone(),
                }
            })
            .collect();
        BomIndex { by_station, changes, known_parts }
    }

    /// The parts `unit` needs at `station`: BOM lines whose model, effectivity and option rule
    /// hold, each replaced by its ECO's new part once the cut-in has passed (the old one still
    /// allowed inside a use-up window); two lines asking for one part are one requirement.
    pub(crate) fn requirements(&self, unit: &UnitConfig<'_>, station: &str) -> Vec<Requirement> {
        let mut out: Vec<Requirement> = Vec::new();
        for line in self.by_station.get(station).into_iter().flatten() {
            if !model_matches(&line.model, unit.model)
                || !line.effectivity.holds(unit.sequence, unit.planned_start, unit.serial)
                || !line.rule.holds(unit.options)
            {
                continue;
            }
            let families = line.rule.terms().into_iter().map(|(f, _)| f).collect();
            let mut req = Requirement {
                part: line.part.clone(),
                also_allowed: None,
                quantity: line.quantity,
                change: None,
                families,
            };
            for c in self.changes.iter().filter(|c| c.old == line.part) {
                let (passed, old_allowed) = c.package.status_for(unit.sequence, unit.planned_start);
                if passed {
                    req.part = c.new.clone();
                    req.change = Some(c.id.clone());
                    req.also_allowed = old_allowed.then(|| c.old.clone());
                }
            }
            match out.iter_mut().find(|r| r.part == req.part) {
                Some(existing) => existing.quantity += req.quantity,
                None => out.push(req),
            }
        }
        out
    }
}
