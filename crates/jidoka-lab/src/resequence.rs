//! `jidoka resequence solve` (one instance, for planners) and `jidoka eval resequence` (whole
//! sets against their best-known values, beside the baselines a practitioner would try first:
//! the queue in file order and a plain improving-swap search given the same time).

use anyhow::{Context, bail};
use jidoka_agents::resequence::{self, Evaluator, Problem, Solution};
use jidoka_service::report::{machine, percentile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod live;
mod roadef;

#[derive(Debug, Clone, clap::Args)]
pub struct SolveArgs {
    /// A CSPLib prob001 instance.
    #[arg(long, required_unless_present = "roadef", conflicts_with = "roadef")]
    pub csplib: Option<PathBuf>,
    /// A ROADEF 2005 instance: the folder with `vehicles.txt`, `ratios.txt`,
    /// `paint_batch_limit.txt` and `optimization_objectives.txt`. `--out` then gets day D's
    /// `Ident`s in build order.
    #[arg(long)]
    pub roadef: Option<PathBuf>,
    /// Time for the search (it stops earlier when every rule is met).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the order: one class id (CSPLib) or car `Ident` (ROADEF) per line, in
    /// build order.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The CSPLib car-sequencing set: a folder with `best_known.csv` and the instance files it
    /// names (`../shared/data/csplib_car_sequencing`), or a folder of instance files.
    #[arg(long, required_unless_present_any = ["roadef", "sim"])]
    pub csplib: Option<PathBuf>,
    /// ROADEF 2005 instances: one instance folder, a set (`set_A`) or a folder of sets
    /// (`../shared/data/roadef2005_renault`).
    #[arg(long)]
    pub roadef: Option<PathBuf>,
    /// Orders written by a peer solver for the same ROADEF instances (`<instance>.txt`, one
    /// `Ident` per line), scored by the same checker beside ours.
    #[arg(long, requires = "roadef")]
    pub peer: Option<PathBuf>,
    /// The name printed for the peer.
    #[arg(long, default_value = "CP-SAT")]
    pub peer_name: String,
    /// Time per run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Runs per instance, seeds 1..=N.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Only CSPLib instances whose file name starts with this (`classic`, `gen200`, `pb_`), and
    /// ROADEF days whose `set/name` contains it (`RAF_EP`, `set_A/024`).
    #[arg(long)]
    pub only: Option<String>,
    /// The live scenarios on the simulated plant: its queue planned, then a part short, a lot
    /// and a unit on hold, equipment down, a rush order; each proposal beside doing nothing and
    /// beside pushing the affected cars to the end of the queue.
    #[arg(long)]
    pub sim: bool,
    /// With `--roadef`: the live scenarios on each real day instead of the offline search (the
    /// plant's own order as the planned queue; a ratio rule's station down, a car and a colour
    /// batch on hold, a rush car).
    #[arg(long, requires = "roadef")]
    pub live: bool,
    /// Cars at the head of a real day's queue that cannot move (`--roadef --live`; at most a
    /// quarter of the day).
    #[arg(long, default_value_t = 30)]
    pub frozen: usize,
    /// Cars in the simulated queue (`--sim`).
    #[arg(long, default_value_t = 1300)]
    pub cars: usize,
    /// Time for a proposal, first placement and repair, in milliseconds (`--sim`, `--live`).
    #[arg(long, default_value_t = 400)]
    pub live_ms: u64,
    /// Moves of the plant's own search that plans the queue before the disruption (`--sim`).
    #[arg(long, default_value_t = 2_000_000)]
    pub plan_moves: u64,
    #[arg(long)]
    pub json: bool,
}

fn deadline(seconds: f64) -> anyhow::Result<Instant> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        bail!("--seconds: {seconds} must be more than 0 and at most 86400");
    }
    Ok(Instant::now() + Duration::from_secs_f64(seconds))
}

fn read(path: &Path) -> anyhow::Result<Problem> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    resequence::parse_csplib(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Objective values of an order: the cost, per-rule excess and windows over capacity.
fn objectives(pb: &Problem, order: &[u32]) -> Value {
    let e = Evaluator::new(pb, order);
    json!({"excess": e.cost(), "violated_windows": e.violated_windows().iter().sum::<u64>(),
           "violated_windows_per_rule": e.violated_windows()})
}

pub fn solve(args: SolveArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.roadef {
        return roadef::solve(dir, &args);
    }
    let Some(path) = &args.csplib else { bail!("--csplib or --roadef: one is needed") };
    let pb = read(path)?;
    let until = deadline(args.seconds)?;
    let s = resequence::solve(&pb, args.seed, until);
    pb.check_order(&s.order).map_err(|e| anyhow::anyhow!("internal error, the order is not the queue: {e}"))?;
    if let Some(out) = &args.out {
        let text: String = s.order.iter().map(|&c| format!("{}\n", pb.class_names[c as usize])).collect();
        std::fs::write(out, text).with_context(|| format!("{}", out.display()))?;
    }
    let file_order = pb.class_order();
    let report = json!({
        "instance": path.display().to_string(), "units": pb.units(), "seed": args.seed, "seconds": args.seconds,
        "found": objectives(&pb, &s.order), "optimal": s.optimal,
        "time_to_best_ms": s.time_to_best.as_secs_f64() * 1000.0, "moves_tried": s.moves_tried,
        "greedy_start_excess": s.start_cost, "file_order": objectives(&pb, &file_order),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{}: {} units, excess {} ({} windows over capacity){} in {:.0} ms ({} moves tried); file order: excess {}",
            path.display(),
            pb.units(),
            report["found"]["excess"],
            report["found"]["violated_windows"],
            if s.optimal { ", every rule met" } else { "" },
            s.time_to_best.as_secs_f64() * 1000.0,
            s.moves_tried,
            report["file_order"]["excess"],
        );
    }
    Ok(())
}

/// An instance file, its best-known value (`None`: unknown or unverified), an unverified
/// reference value, and its name.
type Listed = (PathBuf, Option<u64>, Option<u64>, String);

/// Instance files with their best-known values, from `best_known.csv` when the folder has one.
fn instances(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let csv = dir.join("best_known.csv");
    if csv.is_file() {
        let text = std::fs::read_to_string(&csv).with_context(|| format!("{}", csv.display()))?;
        for (n, line) in text.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let (Some(name), Some(file), Some(best), Some(source)) =
                (cols.first(), cols.get(1), cols.get(4), cols.get(6))
            else {
                bail!("{} line {}: fewer than 7 columns", csv.display(), n + 1);
            };
            let path = dir.join(file);
            let fname = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
            if only.is_some_and(|o| !fname.starts_with(o)) || !path.is_file() {
                continue; // held back for independent evaluation, or not asked for
            }
            let value = best.trim().parse().ok();
            let unverified = source.contains("UNVERIFIED");
            let (best, reference) = if unverified { (None, value) } else { (value, None) };
            out.push((path, best, reference, name.to_string()));
        }
    } else {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for path in files {
            let fname = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
            if only.is_none_or(|o| fname.starts_with(o)) {
                out.push((path, None, None, fname));
            }
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no instance found{}",
            dir.display(),
            only.map(|o| format!(" starting with `{o}`")).unwrap_or_default()
        );
    }
    Ok(out)
}

/// The search's settings: the defaults, or `JIDOKA_RESEQUENCE_PARAMS="temperature stall_per_unit"`
/// to compare others on the same sets.
fn params() -> resequence::Params {
    let mut p = resequence::Params::default();
    if let Ok(text) = std::env::var("JIDOKA_RESEQUENCE_PARAMS") {
        let mut it = text.split_whitespace();
        if let Some(Ok(t)) = it.next().map(str::parse) {
            p.temperature = t;
        }
        if let Some(Ok(s)) = it.next().map(str::parse) {
            p.stall_per_unit = s;
        }
    }
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    deadline(args.seconds)?;
    if args.seeds == 0 {
        bail!("--seeds: must be at least 1");
    }
    if let Some(dir) = &args.csplib {
        eval_csplib(dir, &args)?;
    }
    if let Some(dir) = &args.roadef {
        if args.live {
            live::eval_roadef(dir, &args)?;
        } else {
            roadef::eval(dir, &args)?;
        }
    }
    if args.sim {
        live::eval(&args)?;
    }
    Ok(())
}

fn eval_csplib(dir: &Path, args: &EvalArgs) -> anyhow::Result<()> {
    let list = instances(dir, args.only.as_deref())?;
    let mut rows = Vec::new();
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (path, best, reference, name) in &list {
        let pb = read(path)?;
        let params = params();
        let runs: Vec<Solution> = (1..=args.seeds)
            .map(|seed| {
                resequence::solve_with(&pb, seed, Instant::now() + Duration::from_secs_f64(args.seconds), &params)
            })
            .collect();
        // The baseline once per instance (seed 1): it has no plateau moves, so more seeds
        // change little and would double the run.
        let plain = resequence::plain_swaps(&pb, 1, Instant::now() + Duration::from_secs_f64(args.seconds));
        let costs: Vec<u64> = runs.iter().map(|s| s.cost).collect();
        let found_best = costs.iter().copied().min().unwrap_or(u64::MAX);
        let at_best = best.map(|b| costs.iter().filter(|&&c| c <= b).count());
        let times: Vec<f64> = runs.iter().map(|s| s.time_to_best.as_secs_f64()).collect();
        let row = json!({
            "instance": name, "file": path.file_name().map(|f| f.to_string_lossy().to_string()), "units": pb.units(),
            "best_known": best, "reference_unverified": reference, "found_best": found_best,
            "found_median": median(costs.iter().map(|&c| c as f64).collect()), "found_worst": costs.iter().max(),
            "runs_at_best_known": at_best, "runs": args.seeds,
            "below_best_known": best.is_some_and(|b| found_best < b),
            "time_to_best_median_s": median(times.clone()), "time_to_best_max_s": times.iter().copied().fold(0.0, f64::max),
            "violated_windows_best": Evaluator::new(&pb, runs.iter().min_by_key(|s| s.cost).map_or(&[][..], |s| &s.order)).violated_windows().iter().sum::<u64>(),
            "baseline_file_order": Evaluator::new(&pb, &pb.class_order()).cost(),
            "baseline_plain_swaps": plain.cost,
            "baseline_plain_swaps_at_best_known": best.map(|b| plain.cost <= b),
        });
        if !args.json {
            println!(
                "{:<10} best known {:>5}  found {:>3} (median {:>5.1}, worst {:>3})  at best {:>2}/{}  time to best median {:>6.3} s, max {:>6.3} s  | file order {:>4}, plain swaps {:>3}",
                name,
                best.map(|b| b.to_string())
                    .or_else(|| reference.map(|r| format!("{r}?")))
                    .unwrap_or_else(|| "?".into()),
                found_best,
                row["found_median"].as_f64().unwrap_or(0.0),
                row["found_worst"],
                at_best.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                args.seeds,
                row["time_to_best_median_s"].as_f64().unwrap_or(0.0),
                row["time_to_best_max_s"].as_f64().unwrap_or(0.0),
                row["baseline_file_order"],
                plain.cost,
            );
        }
        let group = path
            .file_name()
            .map(|f| f.to_string_lossy().split('_').next().unwrap_or("").to_string())
            .unwrap_or_default();
        groups.entry(group).or_default().push(row.clone());
        rows.push(row);
    }
    let mut summary = serde_json::Map::new();
    for (group, rows) in &groups {
        let known: Vec<&Value> = rows.iter().filter(|r| r["best_known"].is_u64()).collect();
        let all_seeds = known.iter().filter(|r| r["runs_at_best_known"] == r["runs"]).count();
        let nineteen_of_twenty = known
            .iter()
            .filter(|r| r["runs_at_best_known"].as_u64().unwrap_or(0) * 20 >= r["runs"].as_u64().unwrap_or(1) * 19)
            .count();
        let plain = known.iter().filter(|r| r["baseline_plain_swaps_at_best_known"] == true).count();
        let med: Vec<f64> = rows.iter().filter_map(|r| r["time_to_best_median_s"].as_f64()).collect();
        let referenced: Vec<&Value> = rows.iter().filter(|r| r["reference_unverified"].is_u64()).collect();
        let vs_reference = |f: fn(u64, u64) -> bool| {
            referenced
                .iter()
                .filter(|r| f(r["found_best"].as_u64().unwrap_or(0), r["reference_unverified"].as_u64().unwrap_or(0)))
                .count()
        };
        summary.insert(
            group.clone(),
            json!({"instances": rows.len(), "with_best_known": known.len(),
                   "at_best_known_every_run": all_seeds, "at_best_known_in_19_of_20_runs_or_more": nineteen_of_twenty,
                   "below_best_known": rows.iter().filter(|r| r["below_best_known"] == true).count(),
                   "plain_swaps_at_best_known": plain,
                   "with_unverified_reference": referenced.len(),
                   "at_or_below_unverified_reference": vs_reference(|f, r| f <= r),
                   "below_unverified_reference": vs_reference(|f, r| f < r),
                   "time_to_best_median_of_medians_s": median(med),
                   "time_to_best_max_s": rows.iter().filter_map(|r| r["time_to_best_max_s"].as_f64()).fold(0.0, f64::max)}),
        );
    }
    let report = json!({"eval": "resequence csplib", "machine": machine(), "threads": 1, "seconds": args.seconds,
                        "seeds": args.seeds, "objective": "sum over rules and full windows of the units over p",
                        "summary": summary, "instances": rows});
    if args.json {
        println!("{report}");
    } else {
        for (group, s) in &summary {
            println!("{group}: {s}");
        }
        println!("machine: {}, one thread, {} s per run", report["machine"], args.seconds);
    }
    Ok(())
}
