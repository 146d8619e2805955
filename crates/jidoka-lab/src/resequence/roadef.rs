//! `jidoka resequence solve --roadef DIR` and `jidoka eval resequence --roadef DIR`: real
//! Renault production days (ROADEF 2005), scored by the checker of
//! [`jidoka_agents::resequence::roadef`] beside the plant's own order and, when given, a peer
//! solver's orders.

use super::{EvalArgs, SolveArgs, deadline, median};
use anyhow::{Context, bail};
use jidoka_agents::resequence::roadef::{self, Instance, Objective, Params, Score};
use jidoka_service::report::machine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How this checker reads the subject; printed beside every figure.
pub const RULES: &str = "ratio windows: every window of P cars holding a car of day D, those starting in the D-1 \
     tail and the last, shorter windows of day D (same N); paint changes: inside day D plus the D-1/D boundary; \
     paint limit: runs inside day D";

/// Read the four files of an instance folder.
pub fn read(dir: &Path) -> anyhow::Result<Instance> {
    let file = |name: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
        if meta.len() > 64 << 20 {
            bail!("{}: {} bytes, more than an instance can hold", path.display(), meta.len());
        }
        std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))
    };
    let (vehicles, ratios, paint, objectives) = (
        file("vehicles.txt")?,
        file("ratios.txt")?,
        file("paint_batch_limit.txt")?,
        file("optimization_objectives.txt")?,
    );
    roadef::parse(&roadef::Files {
        vehicles: &vehicles,
        ratios: &ratios,
        paint_batch_limit: &paint,
        objectives: &objectives,
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

fn objective_order(inst: &Instance) -> String {
    inst.objectives
        .iter()
        .map(|o| match o {
            Objective::Paint => "paint",
            Objective::High => "high",
            Objective::Low => "low",
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

fn score_json(s: &Score, inst: &Instance) -> Value {
    json!({"score": s.total, "paint_changes": s.paint, "high_priority_violations": s.high,
           "low_priority_violations": s.low, "longest_run": s.longest_run,
           "longest_run_with_tail": s.longest_run_with_tail, "valid": s.valid(inst)})
}

fn short(s: &Score) -> String {
    format!("{} (paint {}, high {}, low {})", s.total, s.paint, s.high, s.low)
}

pub fn solve(dir: &Path, args: &SolveArgs) -> anyhow::Result<()> {
    let inst = read(dir)?;
    let until = deadline(args.seconds)?;
    let s = roadef::solve(&inst, args.seed, until, &Params::default())
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    roadef::check_order(&inst, &s.order).map_err(|e| anyhow::anyhow!("internal error, the order is not day D: {e}"))?;
    if let Some(out) = &args.out {
        let text: String = s.order.iter().map(|&i| format!("{}\n", inst.day[i].ident)).collect();
        std::fs::write(out, text).with_context(|| format!("{}", out.display()))?;
    }
    let plant = roadef::score(&inst, &inst.plant_order());
    let report = json!({
        "instance": dir.display().to_string(), "cars": inst.day.len(), "tail": inst.tail.len(),
        "objectives": objective_order(&inst), "paint_limit": inst.paint_limit, "seed": args.seed, "seconds": args.seconds,
        "found": score_json(&s.score, &inst), "plant_order": score_json(&plant, &inst),
        "greedy": score_json(&s.greedy, &inst), "greedy_ms": s.greedy_time.as_secs_f64() * 1000.0,
        "start": s.start_from, "time_to_best_ms": s.time_to_best.as_secs_f64() * 1000.0, "moves_tried": s.moves_tried,
        "optimal": s.optimal, "paint_lower_bound": inst.paint_lower_bound(),
        "rules": RULES,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{}: {} cars after {} of D-1, {}, paint limit {}\n  found {} in {:.0} ms ({} moves tried, from the {})\n  plant's order {}\n  greedy {} in {:.1} ms\n  {RULES}",
            dir.display(),
            inst.day.len(),
            inst.tail.len(),
            objective_order(&inst),
            inst.paint_limit,
            short(&s.score),
            s.time_to_best.as_secs_f64() * 1000.0,
            s.moves_tried,
            s.start_from,
            short(&plant),
            short(&s.greedy),
            s.greedy_time.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

/// Instance folders under `dir` (the folder itself, its sets, or their instances), named
/// `set/instance`.
pub(super) fn instances(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let subdirs = |d: &Path| -> anyhow::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("{}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        Ok(v)
    };
    let name = |p: &Path| p.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let mut out = Vec::new();
    if dir.join("vehicles.txt").is_file() {
        out.push((name(dir), dir.to_path_buf()));
    } else {
        for sub in subdirs(dir)? {
            if sub.join("vehicles.txt").is_file() {
                out.push((format!("{}/{}", name(dir), name(&sub)), sub));
                continue;
            }
            for inst in subdirs(&sub)? {
                if inst.join("vehicles.txt").is_file() {
                    out.push((format!("{}/{}", name(&sub), name(&inst)), inst));
                }
            }
        }
    }
    out.retain(|(n, _)| only.is_none_or(|o| n.contains(o)));
    if out.is_empty() {
        bail!("{}: no ROADEF instance found (a folder with vehicles.txt)", dir.display());
    }
    Ok(out)
}

/// A peer's order for an instance: its `Ident`s, one per line, scored by the same checker.
fn peer_score(inst: &Instance, file: &Path) -> Result<Score, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let index: BTreeMap<&str, usize> = inst.day.iter().enumerate().map(|(i, c)| (c.ident.as_str(), i)).collect();
    let order = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| index.get(l).copied().ok_or_else(|| format!("{}: `{l}` is not a car of day D", file.display())))
        .collect::<Result<Vec<_>, _>>()?;
    roadef::check_order(inst, &order).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(roadef::score(inst, &order))
}

pub fn eval(dir: &Path, args: &EvalArgs) -> anyhow::Result<()> {
    let list = instances(dir, args.only.as_deref())?;
    let mut rows = Vec::new();
    for (name, path) in &list {
        let inst = read(path)?;
        let plant = roadef::score(&inst, &inst.plant_order());
        let mut runs = Vec::new();
        for seed in 1..=args.seeds {
            let until = deadline(args.seconds)?;
            let s =
                roadef::solve(&inst, seed, until, &Params::default()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            runs.push(s);
        }
        let Some(best) = runs.iter().min_by_key(|s| s.score.total) else { bail!("--seeds: must be at least 1") };
        let totals: Vec<f64> = runs.iter().map(|s| s.score.total as f64).collect();
        let peer = args.peer.as_ref().map(|d| peer_score(&inst, &d.join(format!("{}.txt", short_name(name)))));
        let peer_value = match &peer {
            Some(Ok(s)) => score_json(s, &inst),
            Some(Err(e)) => json!({"error": e}),
            None => Value::Null,
        };
        let improvement = |found: u64| {
            if plant.total == 0 { 0.0 } else { 100.0 * (plant.total as f64 - found as f64) / plant.total as f64 }
        };
        let row = json!({
            "instance": name, "cars": inst.day.len(), "tail": inst.tail.len(), "objectives": objective_order(&inst),
            "paint_limit": inst.paint_limit, "rules": inst.rules.len(),
            "plant_order": score_json(&plant, &inst),
            "greedy": score_json(&runs[0].greedy, &inst), "greedy_ms": runs[0].greedy_time.as_secs_f64() * 1000.0,
            "found": score_json(&best.score, &inst), "found_median": median(totals.clone()),
            "found_worst": runs.iter().map(|s| s.score.total).max(),
            "every_run_valid": runs.iter().all(|s| s.score.valid(&inst)),
            "every_run_at_or_below_plant": runs.iter().all(|s| s.score.total <= plant.total),
            "improvement_vs_plant_pct": improvement(best.score.total),
            "improvement_vs_plant_median_run_pct": improvement(median(totals) as u64),
            "time_to_best_s": best.time_to_best.as_secs_f64(),
            "start": best.start_from, "runs": args.seeds, "optimal": best.optimal,
            "paint_lower_bound": inst.paint_lower_bound(),
            "peer": peer_value,
        });
        if !args.json {
            let peer_text = match &peer {
                Some(Ok(s)) => {
                    format!(" | {} {}{}", args.peer_name, short(s), if s.valid(&inst) { "" } else { " INVALID" })
                }
                Some(Err(e)) => format!(" | {}: {e}", args.peer_name),
                None => String::new(),
            };
            println!(
                "{:<36} {:>4} cars {:<18} plant {:>24}  greedy {:>10} ({:>5.1} ms)  found {:>24} ({:+.1} %){}",
                name,
                inst.day.len(),
                objective_order(&inst),
                short(&plant),
                runs[0].greedy.total,
                runs[0].greedy_time.as_secs_f64() * 1000.0,
                short(&best.score),
                -row["improvement_vs_plant_pct"].as_f64().unwrap_or(0.0),
                peer_text,
            );
        }
        rows.push(row);
    }
    let count = |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(r)).count();
    let total = |key: &str| rows.iter().filter_map(|r| r[key]["score"].as_u64()).sum::<u64>();
    let with_peer: Vec<&Value> = rows.iter().filter(|r| r["peer"]["score"].is_u64()).collect();
    let vs_peer = |f: fn(u64, u64) -> bool| {
        with_peer
            .iter()
            .filter(|r| f(r["found"]["score"].as_u64().unwrap_or(0), r["peer"]["score"].as_u64().unwrap_or(0)))
            .count()
    };
    let summary = json!({
        "instances": rows.len(),
        "every_run_valid": count(&|r| r["every_run_valid"] == true),
        "greedy_valid": count(&|r| r["greedy"]["valid"] == true),
        "greedy_ms_max": rows.iter().filter_map(|r| r["greedy_ms"].as_f64()).fold(0.0, f64::max),
        "plant_order_valid": count(&|r| r["plant_order"]["valid"] == true),
        "every_run_at_or_below_plant": count(&|r| r["every_run_at_or_below_plant"] == true),
        "better_than_plant": count(&|r| r["found"]["score"].as_u64() < r["plant_order"]["score"].as_u64()),
        "improvement_vs_plant_median_pct": median(rows.iter().filter_map(|r| r["improvement_vs_plant_pct"].as_f64()).collect()),
        "score_sum_found": total("found"), "score_sum_plant": total("plant_order"),
        "with_peer": with_peer.len(), "at_or_below_peer": vs_peer(|f, p| f <= p), "below_peer": vs_peer(|f, p| f < p),
        "above_peer": vs_peer(|f, p| f > p),
        "score_sum_peer": with_peer.iter().filter_map(|r| r["peer"]["score"].as_u64()).sum::<u64>(),
        "score_sum_found_where_peer": with_peer.iter().filter_map(|r| r["found"]["score"].as_u64()).sum::<u64>(),
    });
    let report = json!({"eval": "resequence roadef", "machine": machine(), "threads": 1, "seconds": args.seconds,
                        "seeds": args.seeds, "rules": RULES, "peer": args.peer.as_ref().map(|_| &args.peer_name),
                        "summary": summary, "instances": rows});
    if args.json {
        println!("{report}");
    } else {
        println!("summary: {summary}");
        println!("{RULES}");
        println!("machine: {}, one thread, {} s per run, {} seed(s)", report["machine"], args.seconds, args.seeds);
    }
    Ok(())
}

/// The instance's own folder name, which names a peer's file.
fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
