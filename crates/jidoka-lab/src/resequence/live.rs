//! `jidoka eval resequence --sim`: the simulated plant's build queue (its units, options,
//! colours and sequencing rules), planned by the plant's own search, then disrupted: a part
//! short for two hours, a lot's units on hold, one unit on hold, option-specific equipment down,
//! a rush order. Each proposal is scored beside doing nothing and beside the rule a supervisor
//! applies by hand (the affected cars to the end of the queue, the rush car to the front).

use super::EvalArgs;
use anyhow::{Context, bail};
use jidoka_agents::resequence::live::{self, Disruption, Outcome, Params as LiveParams, Proposal, Queue};
use jidoka_agents::resequence::plant::{PlantRules, PlantUnit};
use jidoka_agents::resequence::roadef::{self, Car, Params};
use jidoka_service::report::{machine, percentile};
use jidoka_sim::{CurveMode, PlannedUnit, Plant, Simulation};
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The plant's queue: the last cars built, then `cars` planned cars, with what each needs, read
/// by the same rules the service reads from the master data.
fn build(plant: &Plant, tail: &[PlannedUnit], day: &[PlannedUnit], frozen: usize) -> anyhow::Result<Queue> {
    let rules = PlantRules::from_master(&plant.master_data()).map_err(|e| anyhow::anyhow!("{e}"))?;
    fn unit(u: &PlannedUnit) -> PlantUnit<'_> {
        PlantUnit { ident: &u.vin, rank: u.index, model: &u.model, options: &u.options }
    }
    let (tail, day): (Vec<PlantUnit<'_>>, Vec<PlantUnit<'_>>) =
        (tail.iter().map(unit).collect(), day.iter().map(unit).collect());
    Ok(rules.queue(&tail, &day, frozen))
}

fn outcome_json(o: &Outcome) -> Value {
    json!({"lost_takts": o.lost_takts, "stopping_cars": o.stopping_cars, "rush_late_slots": o.rush_late,
           "high_priority_violations": o.score.high, "low_priority_violations": o.score.low,
           "paint_changes": o.score.paint, "cars_over_paint_limit": o.paint_excess, "score": o.score.total})
}

/// One scenario's disruptions on a planned queue.
fn scenarios(q: &Queue, rush: (Car, u64), seed: u64) -> anyhow::Result<Vec<(&'static str, Vec<Disruption>)>> {
    let resource = |name: &str| {
        q.resources.iter().position(|r| r == name).with_context(|| format!("the plant has no `{name}` to disrupt"))
    };
    let n = q.inst.day.len();
    let movable = (q.frozen..n).collect::<Vec<_>>();
    if movable.is_empty() {
        bail!("the frozen part covers the whole queue");
    }
    // One unit on hold: chosen by the seed among the movable cars.
    let one = movable[(seed as usize * 7919) % movable.len()];
    // A lot's units: the first six after slot 40 that take the luxury seat (one supplier lot).
    let seat = q.resources.iter().position(|p| p == "SEAT-LUX");
    let lot: Vec<String> = (40.min(n)..n)
        .filter(|&k| seat.is_some_and(|s| q.needs[k] >> s & 1 == 1))
        .take(6)
        .map(|k| q.inst.day[k].ident.clone())
        .collect();
    let mut out = vec![
        ("shortage", vec![Disruption::Unavailable { resource: resource("ROOF-GLASS")?, from: 60, until: 180 }]),
        (
            "equipment_down",
            vec![Disruption::Unavailable { resource: resource("ST060-BATTERY-LIFT")?, from: 35, until: 80 }],
        ),
        ("hold_one", vec![Disruption::Hold { idents: vec![q.inst.day[one].ident.clone()] }]),
        ("rush", vec![Disruption::Rush { car: rush.0, needs: rush.1, within: q.frozen + 20 }]),
    ];
    if !lot.is_empty() {
        out.push(("hold_lot", vec![Disruption::Hold { idents: lot }]));
    }
    Ok(out)
}

struct Run {
    kind: &'static str,
    /// The seed or the day.
    case: String,
    proposal: Proposal,
    pushed: Proposal,
    frozen_kept: bool,
}

/// Each scenario on one queue: the proposal by the deadline, the push-back rule beside it.
fn run(
    queue: &Queue,
    scenarios: Vec<(&'static str, Vec<Disruption>)>,
    case: &str,
    live_ms: u64,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (kind, ds) in scenarios {
        let deadline = Instant::now() + Duration::from_millis(live_ms);
        let proposal = live::propose(queue, &ds, deadline, &LiveParams::default())
            .map_err(|e| anyhow::anyhow!("{case} {kind}: {e}"))?;
        let pushed = live::push_back(queue, &ds).map_err(|e| anyhow::anyhow!("{case} {kind}: {e}"))?;
        let frozen_kept = proposal.idents.iter().zip(&queue.inst.day).take(queue.frozen).all(|(a, c)| *a == c.ident);
        runs.push(Run { kind, case: case.to_string(), proposal, pushed, frozen_kept });
    }
    Ok(runs)
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let plant = Plant::default_plant().map_err(|e| anyhow::anyhow!("the default plant: {e}"))?;
    if plant.sequencing.ratios.is_empty() {
        bail!("the plant has no [sequencing] rules");
    }
    let cars = args.cars;
    if !(10..=20_000).contains(&cars) {
        bail!("--cars: {cars} must be 10 to 20000");
    }
    let frozen = (plant.sequencing.frozen_units as usize).min(cars);
    let tail_len = plant.sequencing.ratios.iter().map(|r| r.p as usize).max().unwrap_or(1);
    let mut runs = Vec::new();
    let mut plans = Vec::new();
    for seed in 1..=args.seeds {
        let sim = Simulation::new(plant.clone(), seed, None, CurveMode::None);
        // The queue, and after it a rush order: the first unit of the next plan, wanted now (read
        // with the queue, so its colour is the queue's).
        let units = sim.planned_units(0..(tail_len + cars + 1) as u64);
        let mut drawn = build(&plant, &units[..tail_len], &units[tail_len..], frozen)?;
        let rush = match (drawn.inst.day.pop(), drawn.needs.pop()) {
            (Some(car), Some(needs)) => (car, needs),
            _ => bail!("no unit for the rush order"),
        };
        // The plant plans its queue with its own search; the tail as built.
        let started = Instant::now();
        let params = Params { max_moves: Some(args.plan_moves), ..Params::default() };
        let planned = roadef::solve(&drawn.inst, seed, Instant::now() + Duration::from_secs(60), &params)
            .map_err(|e| anyhow::anyhow!("planning the queue: {e}"))?;
        let plan_ms = started.elapsed().as_secs_f64() * 1000.0;
        let drawn_score = roadef::score(&drawn.inst, &drawn.inst.plant_order());
        // The same cars in the planned order.
        let mut q = drawn;
        (q.inst.day, q.needs) = planned.order.iter().map(|&i| (q.inst.day[i].clone(), q.needs[i])).unzip();
        plans.push(json!({"seed": seed, "plan_ms": plan_ms, "drawn_order_score": drawn_score.total,
                          "planned_score": planned.score.total, "planned_high": planned.score.high,
                          "planned_paint_changes": planned.score.paint, "planned_low": planned.score.low}));
        runs.extend(run(&q, scenarios(&q, rush, seed)?, &format!("seed {seed}"), args.live_ms)?);
    }
    let mut planned: Vec<f64> = plans.iter().filter_map(|p| p["planned_score"].as_f64()).collect();
    let mut drawn: Vec<f64> = plans.iter().filter_map(|p| p["drawn_order_score"].as_f64()).collect();
    planned.sort_by(f64::total_cmp);
    drawn.sort_by(f64::total_cmp);
    let title = format!(
        "{}: {cars} cars planned ({frozen} frozen), seeds 1..={}, first proposal by {} ms; {}\n\
         queue planned by the plant's own search: median score {} (the units as drawn: {})",
        plant.line.name,
        args.seeds,
        args.live_ms,
        machine(),
        percentile(&planned, 50.0),
        percentile(&drawn, 50.0)
    );
    let meta = json!({"plant": plant.line.name, "cars": cars, "frozen": frozen, "seeds": args.seeds,
                      "plan_moves": args.plan_moves, "plans": plans});
    report(args, &title, meta, &runs);
    Ok(())
}

/// The live scenarios on real Renault days: the plant's own order as the planned queue, the
/// station behind each ratio rule as a resource that the cars with the option need.
pub fn eval_roadef(dir: &Path, args: &EvalArgs) -> anyhow::Result<()> {
    let list = super::roadef::instances(dir, args.only.as_deref())?;
    let mut runs = Vec::new();
    let mut days = Vec::new();
    for (name, path) in &list {
        let inst = super::roadef::read(path)?;
        let n = inst.day.len();
        let frozen = args.frozen.min(n / 4);
        let queue = Queue {
            needs: inst.day.iter().map(|c| c.options).collect(),
            resources: inst.rules.iter().map(|r| format!("station of {}", r.name)).collect(),
            frozen,
            inst,
        };
        runs.extend(run(&queue, roadef_scenarios(&queue), name, args.live_ms)?);
        days.push(json!({"day": name, "cars": n, "frozen": frozen}));
    }
    let title = format!(
        "{}: {} real days, the plant's own order as the planned queue ({} frozen at most), first proposal by {} ms; {}",
        dir.display(),
        list.len(),
        args.frozen,
        args.live_ms,
        machine()
    );
    report(args, &title, json!({"days": days, "frozen": args.frozen}), &runs);
    Ok(())
}

/// A day's disruptions: the station of the high-priority option most cars have down for 90
/// slots, one car on hold, six cars of one colour on hold (a paint defect), a rush car (a copy
/// of the day's last car) due 20 slots after the frozen head.
fn roadef_scenarios(q: &Queue) -> Vec<(&'static str, Vec<Disruption>)> {
    let inst = &q.inst;
    let (n, f) = (inst.day.len(), q.frozen);
    let mut out = Vec::new();
    let busiest = (0..inst.rules.len())
        .max_by_key(|&r| (inst.rules[r].high, inst.day.iter().filter(|c| c.options >> r & 1 == 1).count(), Reverse(r)));
    if let Some(resource) = busiest {
        let from = (f + 20).min(n.saturating_sub(1));
        out.push(("station_down", vec![Disruption::Unavailable { resource, from, until: from + 90 }]));
    }
    let Some(last) = inst.day.last() else { return out };
    let one = (f + (n - f) / 3).min(n - 1);
    out.push(("hold_one", vec![Disruption::Hold { idents: vec![inst.day[one].ident.clone()] }]));
    let at = (f + 10).min(n - 1);
    let colour = inst.day[at].colour;
    let batch = inst.day[at..].iter().filter(|c| c.colour == colour).take(6).map(|c| c.ident.clone()).collect();
    out.push(("hold_batch", vec![Disruption::Hold { idents: batch }]));
    let rush = Car { ident: format!("RUSH-{}", last.ident), ..last.clone() };
    out.push(("rush", vec![Disruption::Rush { car: rush, needs: last.options, within: f + 20 }]));
    out
}

/// The runs per scenario, beside the two baselines: a table, or one JSON object with `meta`.
fn report(args: &EvalArgs, title: &str, meta: Value, runs: &[Run]) {
    let mut kinds: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        kinds.entry(r.kind).or_default().push(r);
    }
    let mut rows = Vec::new();
    for (kind, rs) in &kinds {
        let mut ms: Vec<f64> = rs.iter().map(|r| r.proposal.elapsed.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let mut first: Vec<f64> = rs.iter().map(|r| r.proposal.first.as_secs_f64() * 1000.0).collect();
        first.sort_by(f64::total_cmp);
        let mut moved: Vec<f64> = rs.iter().map(|r| r.proposal.moves.len() as f64).collect();
        moved.sort_by(f64::total_cmp);
        // One figure summed over the runs for doing nothing, the push-back rule and the proposal.
        let three = |f: &dyn Fn(&Outcome) -> u64| {
            let sum = |pick: &dyn Fn(&Run) -> &Outcome| rs.iter().map(|r| f(pick(r))).sum::<u64>();
            json!({"no_action": sum(&|r| &r.proposal.before), "push_back": sum(&|r| &r.pushed.after),
                   "proposal": sum(&|r| &r.proposal.after)})
        };
        rows.push(json!({
            "scenario": kind, "runs": rs.len(),
            "first_ms_p50": percentile(&first, 50.0), "first_ms_p95": percentile(&first, 95.0),
            "proposal_ms_p50": percentile(&ms, 50.0), "proposal_ms_p95": percentile(&ms, 95.0),
            "proposal_ms_max": ms.last().copied().unwrap_or(0.0),
            "cars_moved_median": percentile(&moved, 50.0), "cars_moved_max": moved.last().copied().unwrap_or(0.0),
            "push_back_cars_moved_max": rs.iter().map(|r| r.pushed.moves.len()).max().unwrap_or(0),
            "frozen_kept": rs.iter().all(|r| r.frozen_kept),
            "lost_takts": three(&|o| o.lost_takts),
            "high_priority_violations": three(&|o| o.score.high),
            "paint_changes": three(&|o| o.score.paint),
            "low_priority_violations": three(&|o| o.score.low),
            "cars_over_paint_limit": three(&|o| o.paint_excess),
            "rush_late_slots": three(&|o| o.rush_late),
        }));
    }
    let detail: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({"scenario": r.kind, "case": r.case, "ms": r.proposal.elapsed.as_secs_f64() * 1000.0,
                   "first_ms": r.proposal.first.as_secs_f64() * 1000.0,
                   "moved": r.proposal.moves.len(), "removed": r.proposal.removed.len(), "notes": r.proposal.notes,
                   "no_action": outcome_json(&r.proposal.before), "push_back": outcome_json(&r.pushed.after),
                   "proposal": outcome_json(&r.proposal.after), "frozen_kept": r.frozen_kept})
        })
        .collect();
    let mut report = json!({
        "live_ms": args.live_ms, "machine": machine(), "scenarios": rows, "runs": detail,
        "baselines": "no_action: the planned queue as it stands (held units leave empty slots, the rush car goes last); \
                      push_back: held units out, the cars that would stop the line to the end of the queue, the rush car first",
    });
    if let (Some(r), Value::Object(m)) = (report.as_object_mut(), meta) {
        r.extend(m);
    }
    if args.json {
        println!("{report}");
        return;
    }
    println!("{title}");
    println!(
        "{:<15} {:>9} {:>9} {:>7}  {:>24}  {:>22}  {:>22}",
        "scenario",
        "first p95",
        "done p95",
        "moved",
        "lost takts none/push/us",
        "high viol none/push/us",
        "paint chg none/push/us"
    );
    for r in &rows {
        let three = |k: &str| format!("{}/{}/{}", r[k]["no_action"], r[k]["push_back"], r[k]["proposal"]);
        println!(
            "{:<15} {:>9.1} {:>9.1} {:>7}  {:>24}  {:>22}  {:>22}",
            r["scenario"].as_str().unwrap_or(""),
            r["first_ms_p95"].as_f64().unwrap_or(0.0),
            r["proposal_ms_p95"].as_f64().unwrap_or(0.0),
            format!("{}", r["cars_moved_max"].as_f64().unwrap_or(0.0)),
            three("lost_takts"),
            three("high_priority_violations"),
            three("paint_changes"),
        );
    }
}
