//! The torque audit offline: `jidoka analyze torque` (review exported curves), `jidoka eval
//! torque` (accuracy on simulator ground truth and on the real data sets) and the SVG of a
//! curve against its golden envelope.

use anyhow::Context;
use jidoka_agents::torque::features::{self, Features};
use jidoka_agents::torque::golden::GoldenBatch;
use jidoka_agents::torque::{Assessment, Auditor, TorqueAuditConfig};
use jidoka_agents::{AgentsConfig, Router, build_agents};
use jidoka_connectors::curves::{CurveRecord, expand, read_file};
use jidoka_model::event::OkNok;
use jidoka_model::{EventPayload, Finding, StoredEvent, TighteningResult, Verdict};
use jidoka_service::curve_svg::svg;
use jidoka_service::demo::load_plant;
use jidoka_service::report::{Report, progress};
use jidoka_sim::curve::{TighteningMode, tighten};
use jidoka_sim::rng::Rng;
use jidoka_sim::{CurveMode, Simulation};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// Files or folders: Bosch Rexroth channel JSON (Nexo, CS351), JSON Lines of those (also
    /// .jsonl.gz), event JSON / JSON Lines, CSV with angle / torque / time columns.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// One JSON object per tightening instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG of each REVIEW / HOLD curve against its golden envelope into this folder.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Torque audit settings: a TOML file with the `[agents.torque_audit]` table of a plant
    /// configuration (defaults otherwise).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn audit_config(path: Option<&Path>) -> anyhow::Result<TorqueAuditConfig> {
    match path {
        None => Ok(TorqueAuditConfig::default()),
        Some(p) => Ok(jidoka_service::config::Config::load(p)?.agents.torque_audit),
    }
}

/// Read every record under `paths`.
fn for_each_record(paths: &[PathBuf], mut f: impl FnMut(CurveRecord)) {
    for file in expand(paths) {
        read_file(&file, &mut f);
    }
}

/// `jidoka analyze torque`. Exit code 3 when some records could not be read.
pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<i32> {
    let config = audit_config(args.config.as_deref())?;
    // Pass 1: features of every readable curve, grouped by joint. The golden batch is learned
    // from the data itself, so a file with no verdict at all is reviewed as well: of each
    // group's curves (those the controller did not call NOK), the `golden_size` closest to the
    // group's own centre. The batch stays fixed while the same data is reviewed against it, so
    // a frequent fault cannot teach the batch that it is normal. (Which curves of a large group
    // are sampled into it follows the input order.)
    let mut groups: BTreeMap<String, Vec<Features>> = BTreeMap::new();
    let mut total = 0u64;
    for_each_record(&args.paths, |r| {
        total += 1;
        if let Ok(t) = &r.tightening
            && t.controller_verdict != Some(OkNok::Nok)
            && let Some(Ok(f)) = t.curve.as_ref().map(features::extract)
        {
            groups.entry(Auditor::joint_key(t)).or_default().push(f);
        }
    });
    let mut auditor = Auditor::new(config.clone());
    auditor.learn = false;
    for (key, feats) in &groups {
        for f in core(feats, config.golden_size) {
            auditor.seed(key, f);
        }
    }
    // Pass 2: audit in input order.
    let bar = progress(total, "analyze torque");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0u64;
    let mut svgs = 0usize;
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !args.json {
        let _ = writeln!(
            out,
            "{:<48} {:<7} {:>8} {:>5}  {:<22} reason",
            "source", "verdict", "score", "conf", "failure modes"
        );
    }
    let mut write_err = None;
    for_each_record(&args.paths, |r| {
        bar.inc(1);
        let line = match &r.tightening {
            Err(e) => {
                errors += 1;
                if args.json {
                    json!({"source": r.source, "error": {"field": e.field, "reason": e.reason}}).to_string()
                } else {
                    format!(
                        "{:<48} {:<7} {:>8} {:>5}  {:<22} {}: {}",
                        short(&r.source),
                        "ERROR",
                        "-",
                        "-",
                        "-",
                        e.field,
                        e.reason
                    )
                }
            }
            Ok(t) => {
                let a = auditor.assess(t, &r.source);
                *counts.entry(a.verdict.as_str().to_string()).or_default() += 1;
                for m in &a.failure_modes {
                    *counts.entry(format!("mode {}", m.mode)).or_default() += 1;
                }
                if let (Some(dir), Some(curve)) = (&args.svg, &t.curve)
                    && a.verdict != Verdict::Pass
                    && svgs < 1000
                {
                    svgs += 1;
                    let name = format!("{svgs:04}-{}.svg", sanitize(&t.tightening_id));
                    let title =
                        format!("{} {} score {}", short(&r.source), a.verdict.as_str(), fmt_score(a.anomaly_score));
                    if let Err(e) = std::fs::write(dir.join(name), svg(curve, a.envelope.as_deref(), &title)) {
                        write_err.get_or_insert(e);
                    }
                }
                if args.json {
                    record_json(&r, t, &a).to_string()
                } else {
                    let modes: Vec<&str> = a.failure_modes.iter().map(|m| m.mode).collect();
                    format!(
                        "{:<48} {:<7} {:>8} {:>5.2}  {:<22} {}",
                        short(&r.source),
                        a.verdict.as_str(),
                        fmt_score(a.anomaly_score),
                        a.confidence,
                        if modes.is_empty() { "-".to_string() } else { modes.join(",") },
                        a.reason
                    )
                }
            }
        };
        if let Err(e) = writeln!(out, "{line}") {
            write_err.get_or_insert(e);
        }
    });
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e).context("writing the analysis");
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    eprintln!("{total} records; {errors} unreadable; {}", summary.join(", "));
    if let Some(dir) = &args.svg {
        eprintln!("{svgs} SVG curves written to {}", dir.display());
    }
    Ok(if errors > 0 { 3 } else { 0 })
}

/// A golden batch of `n` curves learned from an unlabelled `group`: the 25 % of curves farthest
/// from the group's own robust centre are set aside (a fault, however frequent, is rarely a
/// quarter of a program's curves), and `n` are taken evenly spread, in input order, from the
/// rest, so the batch keeps the group's normal variety (tools, shifts, wear).
fn core(group: &[Features], n: usize) -> Vec<&Features> {
    let mut all = GoldenBatch::contaminated(group.len());
    for f in group {
        all.push(f);
    }
    let mut scored: Vec<(f64, usize)> =
        group.iter().enumerate().map(|(i, f)| (all.compare(f).anomaly_score, i)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let kept = (group.len() * 3).div_ceil(4).max(1);
    let mut keep: Vec<usize> = scored.into_iter().take(kept).map(|(_, i)| i).collect();
    keep.sort_unstable();
    let take = n.min(keep.len());
    (0..take).map(|k| &group[keep[k * keep.len() / take]]).collect()
}

fn fmt_score(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.2}"))
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(60).collect()
}

fn short(source: &str) -> String {
    let n = source.chars().count();
    if n <= 48 { source.to_string() } else { format!("…{}", source.chars().skip(n - 47).collect::<String>()) }
}

/// One tightening's analysis as JSON.
pub fn record_json(r: &CurveRecord, t: &TighteningResult, a: &Assessment) -> Value {
    json!({
        "source": r.source,
        "tightening_id": t.tightening_id,
        "pset": t.pset,
        "workpiece": r.workpiece,
        "controller_verdict": t.controller_verdict,
        "verdict": a.verdict,
        "anomaly_score": a.anomaly_score,
        "failure_modes": a.failure_modes.iter().map(|m| m.mode).collect::<Vec<_>>(),
        "confidence": a.confidence,
        "reason": a.reason,
        "deviations": a.deviations,
        "golden_size": a.golden_size,
        "features": a.features,
        "similar": a.similar,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Evaluate on the simulator's ground truth.
    #[arg(long)]
    pub sim: bool,
    /// Evaluate the anomaly score on the real data sets under this folder (the repository's
    /// `../shared/data`): `tightening_unfastening_ipa` and `screw_driving_hicss2023`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 2000)]
    pub units: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub plant: Option<PathBuf>,
    /// Golden batch size for the real-data evaluation (the agent's default otherwise).
    #[arg(long)]
    pub golden_size: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

const TIGHTENING_FAULTS: &[&str] = &["cross_thread", "soft_joint", "stripped", "rehit", "missing"];
const HOLD_CLASS: &[&str] = &["cross_thread", "stripped", "rehit", "missing"];

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    if !args.sim && args.data.is_none() {
        anyhow::bail!("give --sim, --data PATH or both");
    }
    let mut report = Report::new("eval torque");
    if args.sim {
        eval_sim(&args, &mut report)?;
        eval_drift_steps(&args, &mut report)?;
    }
    if let Some(data) = &args.data {
        eval_real(data, args.golden_size, &mut report)?;
    }
    report.print(args.json);
    Ok(())
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { (a as f64 / b as f64 * 10_000.0).round() / 10_000.0 }
}

/// The plant run: every agent, the controller's verdict and the torque-window baseline against
/// the injected faults.
fn eval_sim(args: &EvalArgs, report: &mut Report) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let stations = plant.stations.len() as u64;
    let plant_drift: HashMap<String, f64> =
        plant.faults.tool_drift.iter().map(|d| (d.tool.clone(), d.offset_pct)).collect();
    let mut sim = Simulation::new(plant, args.seed, Some(args.units), CurveMode::All);
    let mut config = AgentsConfig::default();
    config.torque_window.enabled = true;
    let mut router = Router::new(build_agents(&config, &None));
    let bar = progress(args.units + stations, "eval torque");
    let mut truth: HashMap<String, String> = HashMap::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut controller_nok: HashSet<String> = HashSet::new();
    let mut tightenings: Vec<String> = Vec::new();
    // Per tool: the unit at which its drift began, and the ramp's end.
    let mut drift_onset: HashMap<String, (u64, u64)> = HashMap::new();
    let mut unit_of: HashMap<String, u64> = HashMap::new();
    let mut tool_of: HashMap<String, (String, u64)> = HashMap::new();
    let mut drift_affected: HashSet<String> = HashSet::new();
    let mut seq = 0;
    while sim.has_more() {
        let slot = sim.next_slot();
        for w in &slot.work_orders {
            unit_of.insert(w.vin.clone(), w.sequence - 1);
        }
        for t in slot.truth.iter().filter(|t| t.fault == "tool_drift") {
            if let Some(tool) = &t.tool {
                let ramp = t.detail.get("ramp_units").and_then(Value::as_u64).unwrap_or(0);
                drift_onset.insert(tool.clone(), (t.unit, t.unit + ramp));
            }
        }
        for t in &slot.truth {
            if let Some(e) = &t.event_id
                && TIGHTENING_FAULTS.contains(&t.fault.as_str())
            {
                truth.insert(e.clone(), t.fault.clone());
            }
        }
        for event in slot.events {
            if let EventPayload::TighteningResult(t) = &event.payload {
                tightenings.push(event.event_id.clone());
                let unit = t.vin.as_ref().and_then(|v| unit_of.get(v)).copied().unwrap_or(0);
                tool_of.insert(event.event_id.clone(), (t.tool.clone(), unit));
                let out_of_window = t.torque_min_nm.is_some_and(|m| t.final_torque_nm < m)
                    || t.torque_max_nm.is_some_and(|m| t.final_torque_nm > m);
                if out_of_window && drift_onset.get(&t.tool).is_some_and(|(onset, _)| unit >= *onset) {
                    drift_affected.insert(event.event_id.clone());
                }
                if t.controller_verdict == Some(OkNok::Nok) {
                    controller_nok.insert(event.event_id.clone());
                }
            }
            seq += 1;
            router.process(&StoredEvent { seq, event }, &mut findings);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let good: Vec<&String> =
        tightenings.iter().filter(|e| !truth.contains_key(*e) && !drift_affected.contains(*e)).collect();
    let mut per_mode: BTreeMap<&str, usize> = BTreeMap::new();
    for mode in truth.values() {
        *per_mode.entry(mode.as_str()).or_default() += 1;
    }
    report.add(
        "sim",
        "plant run",
        format!(
            "{} units, seed {}, {} tightenings, {} injected faults",
            args.units,
            args.seed,
            tightenings.len(),
            truth.len()
        ),
        "",
    );
    report.add("tightenings", "tightenings", tightenings.len(), "").add("good", "good tightenings", good.len(), "");
    for (mode, n) in &per_mode {
        report.add(&format!("injected_{mode}"), &format!("injected {mode}"), *n, "");
    }
    let flagged_by = |agent: &str, verdicts: &[Verdict], skip_kinds: &[&str]| -> HashSet<String> {
        findings
            .iter()
            .filter(|f| f.agent == agent && verdicts.contains(&f.verdict) && !skip_kinds.contains(&f.kind.as_str()))
            .filter_map(|f| f.evidence.first().cloned())
            .collect()
    };
    let audit_any =
        flagged_by("torque-audit", &[Verdict::Review, Verdict::Hold], &["torque.drift", "torque.no_golden_batch"]);
    let audit_hold = flagged_by("torque-audit", &[Verdict::Hold], &[]);
    let window_any = flagged_by("torque-window", &[Verdict::Review, Verdict::Hold], &[]);
    let cold_start = flagged_by(
        "torque-audit",
        &[Verdict::Review],
        &["torque.anomaly", "torque.soft_joint", "torque.controller_nok", "torque.bad_curve"],
    )
    .into_iter()
    .filter(|e| findings.iter().any(|f| f.kind == "torque.no_golden_batch" && f.evidence.first() == Some(e)))
    .collect::<HashSet<_>>();
    for (name, flagged) in
        [("controller", &controller_nok), ("torque_window", &window_any), ("torque_audit", &audit_any)]
    {
        for mode in TIGHTENING_FAULTS {
            let n = per_mode.get(mode).copied().unwrap_or(0);
            let hit = truth.iter().filter(|(e, m)| m.as_str() == *mode && flagged.contains(*e)).count();
            report.add(
                &format!("{name}_recall_{mode}"),
                &format!("{name}: recall {mode} (REVIEW or HOLD)"),
                ratio(hit, n),
                "",
            );
        }
        let false_pos = good.iter().filter(|e| flagged.contains(**e)).count();
        report.add(
            &format!("{name}_false_flags_per_10k_good"),
            &format!("{name}: REVIEW/HOLD per 10,000 good tightenings"),
            false_pos as f64 * 10_000.0 / good.len().max(1) as f64,
            "",
        );
    }
    // Is the right failure mode named?
    let mut named: HashMap<&str, (usize, usize)> = HashMap::new();
    for f in findings.iter().filter(|f| f.agent == "torque-audit") {
        if let Some(mode) = f.evidence.first().and_then(|e| truth.get(e)) {
            let entry = named.entry(mode.as_str()).or_default();
            entry.1 += 1;
            let modes = f.details["failure_modes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if modes.iter().any(|m| m["mode"] == mode.as_str()) {
                entry.0 += 1;
            }
        }
    }
    for mode in TIGHTENING_FAULTS {
        let (right, all) = named.get(mode).copied().unwrap_or((0, 0));
        report.add(
            &format!("torque_audit_named_{mode}"),
            &format!("torque_audit: {mode} findings naming {mode}"),
            ratio(right, all),
            "",
        );
    }
    // HOLD-class faults: a HOLD is what stops the unit.
    let hold_class: Vec<&String> =
        truth.iter().filter(|(_, m)| HOLD_CLASS.contains(&m.as_str())).map(|(e, _)| e).collect();
    let held = hold_class.iter().filter(|e| audit_hold.contains(**e)).count();
    let controller_held = hold_class.iter().filter(|e| controller_nok.contains(**e)).count();
    let hold_true = audit_hold.iter().filter(|e| truth.contains_key(*e) || drift_affected.contains(*e)).count();
    report
        .add("hold_class_faults", "HOLD-class faults (cross-thread, stripped, re-hit, missing)", hold_class.len(), "")
        .add(
            "torque_audit_hold_recall",
            "torque_audit: HOLD recall on HOLD-class faults",
            ratio(held, hold_class.len()),
            "",
        )
        .add(
            "controller_hold_recall",
            "controller: NOK recall on HOLD-class faults",
            ratio(controller_held, hold_class.len()),
            "",
        )
        .add("torque_audit_hold_precision", "torque_audit: HOLD precision", ratio(hold_true, audit_hold.len()), "")
        .add("torque_audit_holds", "torque_audit: HOLDs", audit_hold.len(), "")
        .add(
            "torque_audit_cold_start_reviews",
            "torque_audit: REVIEW 'no golden batch yet' (cold start)",
            cold_start.len(),
            "",
        );
    // Drift on the plant's drifting tools.
    let drift_findings: Vec<&Finding> = findings.iter().filter(|f| f.kind == "torque.drift").collect();
    let mut tool_counts: HashMap<String, u64> = HashMap::new();
    let mut in_control = 0u64;
    for e in &tightenings {
        if let Some((tool, unit)) = tool_of.get(e)
            && drift_onset.get(tool).is_none_or(|(onset, _)| unit < onset)
        {
            in_control += 1;
        }
        let _ = tool_counts.entry(tool_of.get(e).map(|t| t.0.clone()).unwrap_or_default()).or_default();
    }
    let mut false_drift = 0usize;
    for f in &drift_findings {
        let tool = f.subject.tool.clone().unwrap_or_default();
        let unit = f.evidence.first().and_then(|e| tool_of.get(e)).map_or(0, |t| t.1);
        if drift_onset.get(&tool).is_none_or(|(onset, _)| unit < *onset) {
            false_drift += 1;
            if false_drift <= 3 {
                report.add(
                    &format!("drift_false_alarm_{false_drift}"),
                    &format!("false drift alarm {false_drift}"),
                    f.reason.clone(),
                    "",
                );
            }
        }
    }
    for (tool, (onset, full)) in &drift_onset {
        // Tightenings by the tool from the drift's onset to the first drift finding on it.
        let by_tool: Vec<(&String, u64)> = tightenings
            .iter()
            .filter_map(|e| tool_of.get(e).filter(|t| &t.0 == tool).map(|t| (e, t.1)))
            .filter(|(_, unit)| unit >= onset)
            .collect();
        let first = by_tool.iter().position(|(e, _)| {
            drift_findings.iter().any(|f| f.subject.tool.as_deref() == Some(tool) && f.evidence.first() == Some(*e))
        });
        let offset = plant_drift.get(tool).copied().unwrap_or(0.0);
        match first {
            Some(i) => {
                let unit = by_tool[i].1;
                let reached = offset * ((unit - onset) as f64 / (full - onset).max(1) as f64).min(1.0);
                report
                    .add(&format!("drift_delay_{tool}"), &format!("drift on {tool}: tightenings from onset to detection"), i, "")
                    .add(
                        &format!("drift_offset_at_detection_{tool}"),
                        &format!("drift on {tool}: offset reached at detection (ramp to {offset} % over units {onset}..{full})"),
                        (reached * 100.0).round() / 100.0,
                        "%",
                    );
            }
            None => {
                report.add(
                    &format!("drift_delay_{tool}"),
                    &format!("drift on {tool}: tightenings from onset to detection"),
                    "not detected",
                    "",
                );
            }
        }
    }
    report.add("drift_false_alarms", "false drift alarms in the plant run", false_drift, "").add(
        "drift_in_control_tightenings",
        "in-control tightenings in the plant run",
        in_control,
        "",
    );
    Ok(())
}

/// Controlled drift experiment on every joint of the plant: in-control tightenings, then a step
/// of +5 % of target, each tool's chart fresh per trial; and a long in-control run per joint.
fn eval_drift_steps(args: &EvalArgs, report: &mut Report) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let joints: Vec<_> = plant.stations.iter().flat_map(|s| s.joints.iter().map(move |j| (s.id.clone(), j))).collect();
    let mut rng = Rng::new(args.seed ^ 0xd1f7);
    let trials = 20;
    let before = 200;
    let mut delays: Vec<f64> = Vec::new();
    let mut missed = 0;
    let mut false_alarms = 0u64;
    let mut in_control = 0u64;
    let mut good_scores: Vec<f64> = Vec::new();
    let bar = progress(joints.len() as u64, "eval drift");
    for (station, spec) in &joints {
        let physics = plant.joint_physics(spec);
        let make = |drift: f64, n: u64, rng: &mut Rng| {
            let r = tighten(&physics, TighteningMode::Good, drift, rng);
            spec.report(station, &spec.joint, n.to_string(), r)
        };
        for _ in 0..trials {
            let mut auditor = Auditor::new(TorqueAuditConfig::default());
            for n in 0..before {
                let a = auditor.assess(&make(0.0, n, &mut rng), "");
                if !a.drift.is_empty() {
                    false_alarms += 1;
                }
                in_control += 1;
            }
            let mut caught = None;
            for n in 0..200 {
                let a = auditor.assess(&make(0.05, before + n, &mut rng), "");
                if !a.drift.is_empty() {
                    caught = Some(n + 1);
                    break;
                }
            }
            match caught {
                Some(d) => delays.push(d as f64),
                None => missed += 1,
            }
        }
        // A long in-control run.
        let mut auditor = Auditor::new(TorqueAuditConfig::default());
        for n in 0..5_000 {
            let a = auditor.assess(&make(0.0, n, &mut rng), "");
            false_alarms += a.drift.len() as u64;
            in_control += 1;
            if let Some(s) = a.anomaly_score {
                good_scores.push(s);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    delays.sort_by(f64::total_cmp);
    good_scores.sort_by(f64::total_cmp);
    let pct = |p: f64| jidoka_service::report::percentile(&good_scores, p);
    report.add(
        "good_score_percentiles",
        "anomaly score of good simulated curves: p50 / p99 / p99.9 / max",
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            pct(50.0),
            pct(99.0),
            pct(99.9),
            good_scores.last().copied().unwrap_or(0.0)
        ),
        "",
    );
    report
        .add(
            "drift_step_trials",
            "drift step +5 % of target: trials (every joint of the plant)",
            delays.len() + missed,
            "",
        )
        .add("drift_step_missed", "drift step: not caught within 200 tightenings", missed, "")
        .add(
            "drift_step_delay_median",
            "drift step: tightenings to detection, median",
            jidoka_service::report::percentile(&delays, 50.0),
            "",
        )
        .add(
            "drift_step_delay_p95",
            "drift step: tightenings to detection, p95",
            jidoka_service::report::percentile(&delays, 95.0),
            "",
        )
        .add(
            "drift_step_delay_max",
            "drift step: tightenings to detection, max",
            delays.last().copied().unwrap_or(f64::NAN),
            "",
        )
        .add("drift_in_control", "drift: in-control tightenings watched", in_control, "")
        .add(
            "drift_false_alarms_per_10k",
            "drift: false alarms per 10,000 in-control tightenings",
            false_alarms as f64 * 10_000.0 / in_control.max(1) as f64,
            "",
        );
    Ok(())
}

/// Area under the ROC curve of `scores` (higher = positive) for `labels` (true = positive),
/// ties counted half.
pub fn auroc(scored: &[(f64, bool)]) -> f64 {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < v.len() {
        let mut j = i + 1;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let pos = v.iter().filter(|x| x.1).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Recall at the threshold that lets through at most `fpr` of the negatives, and that FPR.
pub fn recall_at_fpr(scored: &[(f64, bool)], fpr: f64) -> (f64, f64) {
    let mut neg: Vec<f64> = scored.iter().filter(|x| !x.1).map(|x| x.0).collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    if neg.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let k = ((neg.len() as f64) * fpr).floor() as usize;
    let threshold = neg[k.min(neg.len() - 1)];
    let pos: Vec<f64> = scored.iter().filter(|x| x.1).map(|x| x.0).collect();
    let hit = pos.iter().filter(|s| **s > threshold).count();
    let fp = neg.iter().filter(|s| **s > threshold).count();
    (hit as f64 / pos.len().max(1) as f64, fp as f64 / neg.len() as f64)
}

/// Recall and FPR when everything scoring at or above `threshold` is flagged.
pub fn at_threshold(scored: &[(f64, bool)], threshold: f64) -> (f64, f64) {
    let pos = scored.iter().filter(|x| x.1).count().max(1) as f64;
    let neg = scored.iter().filter(|x| !x.1).count().max(1) as f64;
    let tp = scored.iter().filter(|x| x.1 && x.0 >= threshold).count() as f64;
    let fp = scored.iter().filter(|x| !x.1 && x.0 >= threshold).count() as f64;
    (tp / pos, fp / neg)
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Anomaly score of each test curve against the golden batch of its program (or the pooled
/// batch of every training program, when its own has fewer than `min_golden` curves).
struct Scorer {
    per_key: HashMap<String, GoldenBatch>,
    pooled: GoldenBatch,
    min_golden: usize,
    size: usize,
}

impl Scorer {
    fn new(size: usize, min_golden: usize) -> Scorer {
        Scorer { per_key: HashMap::new(), pooled: GoldenBatch::new(usize::MAX >> 8), min_golden, size }
    }

    fn train(&mut self, key: &str, f: &Features) {
        self.per_key.entry(key.to_string()).or_insert_with(|| GoldenBatch::new(self.size)).push(f);
        self.pooled.push(f);
    }

    fn score(&mut self, key: &str, f: &Features) -> f64 {
        match self.per_key.get_mut(key) {
            Some(g) if g.len() >= self.min_golden => g.compare(f).anomaly_score,
            _ => self.pooled.compare(f).anomaly_score,
        }
    }
}

fn features_of(r: &CurveRecord) -> Option<(TighteningResult, Features)> {
    let t = r.tightening.as_ref().ok()?;
    let f = features::extract(t.curve.as_ref()?).ok()?;
    Some((t.clone(), f))
}

fn require(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        Ok(())
    } else {
        anyhow::bail!("{} is missing (the real data sets live in ../shared/data)", path.display())
    }
}

/// Anomaly score on the real data sets: AUROC and recall at 5 % FPR, splits fixed in advance.
fn eval_real(data: &Path, golden_size: Option<usize>, report: &mut Report) -> anyhow::Result<()> {
    let defaults = TorqueAuditConfig::default();
    let size = golden_size.unwrap_or(defaults.golden_size);
    let min_golden = defaults.min_golden.min(size);
    report.add("real_golden_size", "real data: golden batch size (last N good training curves per program)", size, "");

    // CS351 screw driving: workpieces split alternately in id order; train on OK runs of the
    // training workpieces only.
    let cs = data.join("screw_driving_hicss2023/runs.jsonl.gz");
    require(&cs)?;
    let mut runs: Vec<(Option<String>, TighteningResult, Features, usize)> = Vec::new();
    let mut unreadable = 0;
    read_file(&cs, &mut |r| match features_of(&r) {
        Some((t, f)) => {
            let steps = t.curve.as_ref().map_or(0, |_| 0);
            runs.push((r.workpiece.clone(), t, f, steps));
        }
        None => unreadable += 1,
    });
    // Steps completed, for the hard cases: read from the labels file.
    let labels = std::fs::read_to_string(data.join("screw_driving_hicss2023/labels.csv")).context("labels.csv")?;
    let steps: HashMap<String, usize> = labels
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            Some((c.get(1)?.to_string(), c.get(6)?.parse().ok()?))
        })
        .collect();
    for r in runs.iter_mut() {
        r.3 = steps.get(&r.1.tightening_id).copied().unwrap_or(0);
    }
    let mut workpieces: Vec<String> = runs.iter().filter_map(|r| r.0.clone()).collect();
    workpieces.sort();
    workpieces.dedup();
    let train_wp: HashSet<&String> = workpieces.iter().step_by(2).collect();
    // Calibration on the training workpieces only: a golden batch from every other one of them,
    // scored on the rest. This is where a threshold may be chosen; the test workpieces are not.
    {
        let train: Vec<&String> = workpieces.iter().step_by(2).collect();
        let fit: HashSet<&String> = train.iter().step_by(2).copied().collect();
        let mut scorer = Scorer::new(size, min_golden);
        for (wp, t, f, _) in &runs {
            if wp.as_ref().is_some_and(|w| fit.contains(w)) && t.controller_verdict == Some(OkNok::Ok) {
                scorer.train(&Auditor::joint_key(t), f);
            }
        }
        let calib: Vec<(f64, bool)> = runs
            .iter()
            .filter(|(wp, ..)| wp.as_ref().is_some_and(|w| train_wp.contains(w) && !fit.contains(w)))
            .map(|(_, t, f, _)| (scorer.score(&Auditor::joint_key(t), f), t.controller_verdict == Some(OkNok::Nok)))
            .collect();
        let sweep: Vec<String> = [4.0, 6.0, 8.0, 10.0, 12.0]
            .iter()
            .map(|t| {
                let (r, f) = at_threshold(&calib, *t);
                format!("{t}: {r:.2}/{f:.3}")
            })
            .collect();
        report.add(
            "cs351_calibration_sweep",
            "CS351 calibration (training workpieces only): score threshold: recall/FPR",
            sweep.join(", "),
            "",
        );
    }
    let mut scorer = Scorer::new(size, min_golden);
    for (wp, t, f, _) in &runs {
        if wp.as_ref().is_some_and(|w| train_wp.contains(w)) && t.controller_verdict == Some(OkNok::Ok) {
            scorer.train(&Auditor::joint_key(t), f);
        }
    }
    let mut scored = Vec::new();
    let mut hard = Vec::new();
    let mut length_only = Vec::new();
    for (wp, t, f, n_steps) in &runs {
        if wp.as_ref().is_none_or(|w| train_wp.contains(w)) {
            continue;
        }
        let s = scorer.score(&Auditor::joint_key(t), f);
        let nok = t.controller_verdict == Some(OkNok::Nok);
        scored.push((s, nok));
        length_only.push((-(f.samples as f64), nok));
        if !nok || *n_steps == 4 {
            hard.push((s, nok));
        }
    }
    let (rec, fpr) = recall_at_fpr(&scored, 0.05);
    let review = defaults.category_a.review_score;
    let (agent_rec, agent_fpr) = at_threshold(&scored, review);
    report.add(
        "cs351_at_review_score",
        &format!("CS351: at the default REVIEW score ({review}): recall / FPR"),
        format!("{:.3} / {:.3}", agent_rec, agent_fpr),
        "",
    );
    let sweep: Vec<String> = [4.0, 6.0, 8.0, 10.0, 12.0]
        .iter()
        .map(|t| {
            let (r, f) = at_threshold(&scored, *t);
            format!("{t}: {r:.2}/{f:.3}")
        })
        .collect();
    report.add("cs351_threshold_sweep", "CS351: score threshold: recall/FPR", sweep.join(", "), "");
    let (hard_rec, _) = recall_at_fpr(&hard, 0.05);
    let (len_rec, _) = recall_at_fpr(&length_only, 0.05);
    let test_nok = scored.iter().filter(|s| s.1).count();
    report
        .add(
            "cs351_test",
            "CS351 (screw_driving_hicss2023): test runs / NOK, unseen workpieces",
            format!("{} / {test_nok}", scored.len()),
            "",
        )
        .add("cs351_unreadable", "CS351: unreadable runs", unreadable, "")
        .add("cs351_auroc", "CS351: anomaly score AUROC", round4(auroc(&scored)), "")
        .add("cs351_recall_at_5pct_fpr", "CS351: recall at 5 % FPR", round4(rec), "")
        .add("cs351_fpr", "CS351: FPR at that threshold", round4(fpr), "")
        .add(
            "cs351_hard_recall_at_5pct_fpr",
            "CS351: recall at 5 % FPR, NOK runs that completed all 4 steps",
            round4(hard_rec),
            "",
        )
        .add(
            "cs351_length_only_auroc",
            "CS351: length-only baseline (fewer samples = NOK) AUROC",
            round4(auroc(&length_only)),
            "",
        )
        .add("cs351_length_only_recall", "CS351: length-only baseline recall at 5 % FPR", round4(len_rec), "")
        .add("cs351_controller", "CS351: controller verdict", "is the label (recall 1 by definition)", "");

    // IPA unfastening: the six fixed train/test splits of the manifest.
    let ipa = data.join("tightening_unfastening_ipa");
    require(&ipa.join("manifest.csv"))?;
    let manifest = std::fs::read_to_string(ipa.join("manifest.csv")).context("manifest.csv")?;
    let mut cache: HashMap<String, Option<(TighteningResult, Features)>> = HashMap::new();
    let mut splits: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
    for line in manifest.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if let [dataset, split, label, file, ..] = c[..] {
            splits.entry(dataset.to_string()).or_default().push((
                split.to_string(),
                file.to_string(),
                label == "nicht_loesbar",
            ));
        }
    }
    for (dataset, rows) in &splits {
        let mut scorer = Scorer::new(size, min_golden);
        let mut load = |file: &str| -> Option<(TighteningResult, Features)> {
            cache
                .entry(file.to_string())
                .or_insert_with(|| {
                    let mut got = None;
                    read_file(&ipa.join(file), &mut |r| got = features_of(&r));
                    got
                })
                .clone()
        };
        for (split, file, bad) in rows {
            if split == "train"
                && !bad
                && let Some((t, f)) = load(file)
            {
                scorer.train(&Auditor::joint_key(&t), &f);
            }
        }
        let mut scored = Vec::new();
        let mut controller = (0, 0);
        for (split, file, bad) in rows {
            if split == "test"
                && let Some((t, f)) = load(file)
            {
                scored.push((scorer.score(&Auditor::joint_key(&t), &f), *bad));
                if *bad {
                    controller.1 += 1;
                    if t.controller_verdict == Some(OkNok::Nok) {
                        controller.0 += 1;
                    }
                }
            }
        }
        let (rec, _) = recall_at_fpr(&scored, 0.05);
        let (agent_rec, agent_fpr) = at_threshold(&scored, defaults.category_a.review_score);
        report.add(
            &format!("ipa_{dataset}_at_review_score"),
            &format!("IPA {dataset}: at the default REVIEW score: recall / FPR"),
            format!("{:.3} / {:.3}", agent_rec, agent_fpr),
            "",
        );
        let pos = scored.iter().filter(|s| s.1).count();
        report
            .add(
                &format!("ipa_{dataset}_test"),
                &format!("IPA unfastening {dataset}: test curves / not releasable"),
                format!("{} / {pos}", scored.len()),
                "",
            )
            .add(
                &format!("ipa_{dataset}_auroc"),
                &format!("IPA {dataset}: anomaly score AUROC"),
                round4(auroc(&scored)),
                "",
            )
            .add(
                &format!("ipa_{dataset}_recall_at_5pct_fpr"),
                &format!("IPA {dataset}: recall at 5 % FPR"),
                round4(rec),
                "",
            )
            .add(
                &format!("ipa_{dataset}_controller_recall"),
                &format!("IPA {dataset}: controller NOK recall"),
                ratio(controller.0, controller.1),
                "",
            );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_and_recall() {
        let perfect = [(0.1, false), (0.2, false), (0.9, true), (0.8, true)];
        assert_eq!(auroc(&perfect), 1.0);
        let ties = [(0.5, false), (0.5, true)];
        assert_eq!(auroc(&ties), 0.5);
        let mut v: Vec<(f64, bool)> = (0..100).map(|i| (i as f64, false)).collect();
        v.extend([(96.5, true), (50.0, true)]);
        let (rec, fpr) = recall_at_fpr(&v, 0.05);
        assert_eq!(rec, 0.5);
        assert!(fpr <= 0.05);
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Curves through the agent in the throughput run.
    #[arg(long, default_value_t = 500_000)]
    pub curves: u64,
    /// Samples per curve (about).
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Curves timed one at a time for the latency percentiles.
    #[arg(long, default_value_t = 20_000)]
    pub latency_curves: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// `jidoka bench torque`: the torque audit agent (features, detectors, golden comparison,
/// drift, findings) on one thread over curves of about `samples` samples from the simulator's
/// physics (1 % faults), 100 joints on 20 tools.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    use std::time::Instant;
    let (plant, _) = load_plant(None)?;
    let spec = plant.stations.first().and_then(|s| s.joints.first()).context("the default plant has no joint")?;
    let mut physics = plant.joint_physics(spec);
    let mut rng = Rng::new(args.seed);
    // Resample in time so a good curve has about `samples` samples.
    let probe = tighten(&physics, TighteningMode::Good, 0.0, &mut rng).curve.len();
    physics.sample_ms *= probe as f64 / args.samples.max(10) as f64;
    let modes = [
        TighteningMode::CrossThread,
        TighteningMode::SoftJoint,
        TighteningMode::Stripped,
        TighteningMode::Rehit,
        TighteningMode::Missing,
    ];
    let pool: Vec<StoredEvent> = (0..2000u64)
        .map(|i| {
            let mode = if i % 100 == 99 { modes[(i / 100) as usize % modes.len()] } else { TighteningMode::Good };
            let r = tighten(&physics, mode, 0.0, &mut rng);
            let mut t = spec.report(&format!("ST{:02}", i % 20), &format!("J{}", i % 100), i.to_string(), r);
            t.tool = format!("NR-{:02}", i % 20);
            let event = jidoka_model::Event {
                event_id: jidoka_model::stable_id("ev", &["bench", &i.to_string()]),
                source: "bench".into(),
                source_txn_id: i.to_string(),
                correlation_id: format!("bench:{i}"),
                occurred_at: chrono::DateTime::UNIX_EPOCH,
                received_at: chrono::DateTime::UNIX_EPOCH,
                payload: EventPayload::TighteningResult(t),
            };
            StoredEvent { seq: i + 1, event }
        })
        .collect();
    let mean_samples = pool
        .iter()
        .filter_map(|e| match &e.event.payload {
            EventPayload::TighteningResult(t) => t.curve.as_ref().map(|c| c.len()),
            _ => None,
        })
        .sum::<usize>() as f64
        / pool.len() as f64;
    let mut config = AgentsConfig::default();
    config.torque_window.enabled = false;
    let mut router = Router::new(build_agents(&config, &None));
    let mut findings: Vec<Finding> = Vec::new();
    // Warm every joint's golden batch.
    for e in &pool {
        router.process(e, &mut findings);
    }
    findings.clear();
    let bar = progress(args.curves, "bench torque");
    let rss_start = rss_kib();
    let mut rss_mid = None;
    let start = Instant::now();
    let mut flagged = 0u64;
    for n in 0..args.curves {
        router.process(&pool[(n % pool.len() as u64) as usize], &mut findings);
        flagged += findings.len() as u64;
        findings.clear();
        if n == args.curves / 10 {
            rss_mid = rss_kib();
        }
        if n % 10_000 == 0 {
            bar.set_position(n);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let rss_end = rss_kib();
    let mut lat = Vec::with_capacity(args.latency_curves as usize);
    for n in 0..args.latency_curves {
        let e = &pool[(n % pool.len() as u64) as usize];
        let t0 = Instant::now();
        router.process(e, &mut findings);
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
        findings.clear();
    }
    lat.sort_by(f64::total_cmp);
    let mut report = Report::new(format!(
        "bench torque: torque audit agent, one thread, {} curves of {mean_samples:.0} samples (1 % faults), 100 joints, 20 tools",
        args.curves
    ));
    let kib = |v: Option<u64>| v.map_or(Value::Null, |k| json!(k / 1024));
    report
        .add("machine", "machine", jidoka_service::report::machine(), "")
        .add("curves", "curves", args.curves, "")
        .add("samples_per_curve", "samples per curve (mean)", mean_samples.round(), "")
        .add("curves_per_s", "throughput", (args.curves as f64 / elapsed).round(), "curves/s")
        .add(
            "samples_per_s",
            "samples analysed",
            (args.curves as f64 * mean_samples / elapsed / 1e6 * 10.0).round() / 10.0,
            "M samples/s",
        )
        .add("findings_per_1k", "findings per 1,000 curves", flagged as f64 * 1000.0 / args.curves.max(1) as f64, "")
        .add("latency_p50_us", "one curve: p50", jidoka_service::report::percentile(&lat, 50.0), "µs")
        .add("latency_p99_us", "one curve: p99", jidoka_service::report::percentile(&lat, 99.0), "µs")
        .add("latency_max_us", "one curve: max", lat.last().copied().unwrap_or(0.0), "µs")
        .add("rss_start_mib", "resident memory after warm-up", kib(rss_start), "MiB")
        .add("rss_at_10pct_mib", "resident memory at 10 % of the curves", kib(rss_mid), "MiB")
        .add("rss_end_mib", "resident memory at the end", kib(rss_end), "MiB");
    report.print(args.json);
    Ok(())
}
