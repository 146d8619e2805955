//! The plant's sequencing rules, from its master data, over its work orders: the [`Queue`] the
//! live search works on. One reading serves the service (the build queue from the log) and the
//! lab (the simulated plant's planned units).
//!
//! - Ratio rules become option bits of each car (bit `r` ↔ rule `r` holds for its options), with
//!   their priority; the paint family's value is the car's colour.
//! - The resources that can fail for some cars only: every part whose BOM lines are restricted
//!   to some models or carry an option rule (a part every unit takes stops every car alike, so
//!   re-sequencing cannot help), then the option-specific equipment.

use super::live::Queue;
use super::roadef::{Car, Instance, Objective, Rule as RatioRule};
use jidoka_model::master::{MasterData, Sequencing};
use jidoka_model::rule::Rule;
use std::collections::{BTreeSet, HashMap};

/// One unit to sequence.
#[derive(Debug, Clone, Copy)]
pub struct PlantUnit<'a> {
    /// The VIN (the queue's idents).
    pub ident: &'a str,
    /// Its place in the plan (the planned sequence number).
    pub rank: u64,
    pub model: &'a str,
    /// Option codes `FAMILY=VALUE`.
    pub options: &'a BTreeSet<String>,
}

/// A resource some units need: a part (by its BOM lines: model, option rule) or equipment.
#[derive(Debug, Clone)]
struct Resource {
    name: String,
    /// Lines `(model or "*", rule)`: a unit needs it when one line matches.
    lines: Vec<(String, Rule)>,
}

/// The sequencing rules of a plant, read once from its master data.
#[derive(Debug, Clone)]
pub struct PlantRules {
    sequencing: Sequencing,
    ratios: Vec<(RatioRule, Rule)>,
    resources: Vec<Resource>,
}

/// Resources a queue can name at most (the width of a car's needs).
pub const MAX_RESOURCES: usize = 64;

impl PlantRules {
    /// The rules in force, or why there are none to sequence by.
    pub fn from_master(master: &MasterData) -> Result<PlantRules, String> {
        let Some(sequencing) = &master.sequencing else {
            return Err("the master data in force has no sequencing rules".into());
        };
        if let Some((at, reason)) = sequencing.errors("sequencing").into_iter().next() {
            return Err(format!("{at}: {reason}"));
        }
        let ratios = sequencing
            .ratios
            .iter()
            .map(|r| {
                let rule = Rule::parse(&r.rule).map_err(|e| format!("sequencing rule `{}`: {e}", r.name))?;
                Ok((RatioRule { name: r.name.clone(), n: r.n, p: r.p, high: r.priority == "high" }, rule))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut resources: Vec<Resource> = Vec::new();
        let mut by_part: HashMap<&str, usize> = HashMap::new();
        for b in &master.bom {
            let rule = match &b.option_rule {
                Some(text) => Rule::parse(text).map_err(|e| format!("bom `{}`: {e}", b.part_number))?,
                None => Rule::Always,
            };
            let k = *by_part.entry(b.part_number.as_str()).or_insert_with(|| {
                resources.push(Resource { name: b.part_number.clone(), lines: Vec::new() });
                resources.len() - 1
            });
            resources[k].lines.push((b.model.clone(), rule));
        }
        // Parts every unit takes are not a sequencing matter.
        resources.retain(|r| !r.lines.iter().any(|(model, rule)| model == "*" && *rule == Rule::Always));
        for x in &sequencing.equipment {
            let rule = Rule::parse(&x.rule).map_err(|e| format!("equipment `{}`: {e}", x.id))?;
            resources.push(Resource { name: x.id.clone(), lines: vec![("*".into(), rule)] });
        }
        if resources.len() > MAX_RESOURCES {
            return Err(format!(
                "{} option-specific parts and equipment: at most {MAX_RESOURCES} can be sequenced around",
                resources.len()
            ));
        }
        Ok(PlantRules { sequencing: sequencing.clone(), ratios, resources })
    }

    pub fn sequencing(&self) -> &Sequencing {
        &self.sequencing
    }

    /// The names of the resources, in the order of the needs' bits.
    pub fn resources(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.name.clone()).collect()
    }

    /// What a unit of `model` with `options` needs of the resources (bit `k` ↔ resource `k`).
    pub fn needs(&self, model: &str, options: &BTreeSet<String>) -> u64 {
        self.resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.lines.iter().any(|(m, rule)| (m == "*" || m == model) && rule.holds(options)))
            .map(|(k, _)| 1u64 << k)
            .sum()
    }

    /// The queue: `tail` the last units built (oldest first), `day` the queue in its planned
    /// order, the first `frozen` of it unable to move.
    pub fn queue<'a>(&self, tail: &[PlantUnit<'a>], day: &[PlantUnit<'a>], frozen: usize) -> Queue {
        let family = self.sequencing.paint_family.as_str();
        // Colours by first appearance; a unit without the paint family has a colour of its own
        // (the empty value), so it never extends another's run.
        let mut colours: HashMap<&str, u32> = HashMap::new();
        let mut car = |u: &PlantUnit<'a>| {
            let colour = if family.is_empty() {
                ""
            } else {
                u.options.iter().find_map(|o| o.strip_prefix(family)?.strip_prefix('=')).unwrap_or("")
            };
            let next = colours.len() as u32;
            Car {
                ident: u.ident.to_string(),
                rank: u.rank,
                colour: *colours.entry(colour).or_insert(next),
                options: self
                    .ratios
                    .iter()
                    .enumerate()
                    .map(|(r, (_, rule))| u64::from(rule.holds(u.options)) << r)
                    .sum(),
            }
        };
        let tail: Vec<Car> = tail.iter().map(&mut car).collect();
        let cars: Vec<Car> = day.iter().map(&mut car).collect();
        let objectives = self
            .sequencing
            .priorities
            .iter()
            .map(|p| match p.as_str() {
                "high" => Objective::High,
                "low" => Objective::Low,
                _ => Objective::Paint,
            })
            .collect();
        let inst = Instance {
            objectives,
            rules: self.ratios.iter().map(|(r, _)| r.clone()).collect(),
            // No paint family: one colour, no limit.
            paint_limit: if family.is_empty() { u32::MAX } else { self.sequencing.paint_limit.max(1) },
            tail,
            day: cars,
        };
        let needs = day.iter().map(|u| self.needs(u.model, u.options)).collect();
        Queue { inst, needs, resources: self.resources(), frozen: frozen.min(day.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jidoka_model::master::{BomItem, SequencingEquipment, SequencingRatio};

    fn bom(part: &str, model: &str, rule: Option<&str>) -> BomItem {
        serde_json::from_value(serde_json::json!({"model": model, "part_number": part, "quantity": 1.0,
            "station": "ST010", "option_rule": rule}))
        .unwrap()
    }

    fn master() -> MasterData {
        MasterData {
            bom: vec![
                bom("FRAME", "*", None),
                bom("ROOF-GLASS", "*", Some("SUNROOF=YES")),
                bom("BATTERY", "EV1", None),
                bom("BATTERY", "EV2", None),
            ],
            sequencing: Some(Sequencing {
                paint_family: "PAINT".into(),
                paint_limit: 3,
                priorities: vec!["high".into(), "paint".into()],
                frozen_units: 2,
                ratios: vec![SequencingRatio {
                    name: "sunroof".into(),
                    rule: "SUNROOF=YES".into(),
                    n: 1,
                    p: 2,
                    priority: "high".into(),
                }],
                equipment: vec![SequencingEquipment {
                    id: "LIFT".into(),
                    station: "ST060".into(),
                    rule: "SUNROOF=YES".into(),
                }],
            }),
            ..MasterData::default()
        }
    }

    fn opts(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resources_are_the_parts_some_units_take_then_the_equipment() {
        let rules = PlantRules::from_master(&master()).unwrap();
        assert_eq!(rules.resources(), ["ROOF-GLASS", "BATTERY", "LIFT"]);
        assert_eq!(rules.needs("EV2", &opts(&["SUNROOF=YES"])), 0b111);
        assert_eq!(rules.needs("ICE", &opts(&["SUNROOF=NO"])), 0);
        assert_eq!(rules.needs("EV1", &opts(&["SUNROOF=NO"])), 0b010);
    }

    #[test]
    fn the_queue_carries_colours_ratio_bits_and_the_frozen_head() {
        let rules = PlantRules::from_master(&master()).unwrap();
        let (red, blue, none) = (opts(&["PAINT=RED", "SUNROOF=YES"]), opts(&["PAINT=BLUE"]), opts(&["SUNROOF=YES"]));
        let unit = |ident, rank, options| PlantUnit { ident, rank, model: "ICE", options };
        let q = rules.queue(&[unit("T", 0, &blue)], &[unit("A", 1, &red), unit("B", 2, &blue), unit("C", 3, &none)], 5);
        let colours: Vec<u32> = q.inst.tail.iter().chain(&q.inst.day).map(|c| c.colour).collect();
        assert_eq!(colours, [0, 1, 0, 2]);
        let bits: Vec<u64> = q.inst.day.iter().map(|c| c.options).collect();
        assert_eq!(bits, [1, 0, 1]);
        assert_eq!(q.needs, [0b101, 0, 0b101]);
        assert_eq!(q.frozen, 3, "the frozen head is at most the queue");
        assert_eq!(q.inst.paint_limit, 3);
    }

    #[test]
    fn no_rules_or_bad_rules_are_named() {
        let err = PlantRules::from_master(&MasterData::default()).unwrap_err();
        assert!(err.contains("no sequencing rules"), "{err}");
        let mut m = master();
        m.sequencing.as_mut().unwrap().ratios[0].n = 2;
        let err = PlantRules::from_master(&m).unwrap_err();
        assert!(err.starts_with("sequencing.ratios[0]"), "{err}");
    }
}
