//! `jidoka eval ...`: accuracy measured on data, never asserted. Each evaluation prints a
//! table (or one JSON object with `--json`).

use crate::report::{Report, progress};
use crate::simulate::load_plant;
use jidoka_agents::{AgentsConfig, Router, build_agents};
use jidoka_model::event::OkNok;
use jidoka_model::{EventPayload, Finding, StoredEvent, Verdict};
use jidoka_sim::{CurveMode, Simulation};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalTorqueArgs {
    /// Evaluate on the simulator's ground truth (the only source with labelled curves for
    /// every failure mode; real-data evaluation arrives with the curve readers).
    #[arg(long, required = true)]
    pub sim: bool,
    #[arg(long, default_value_t = 2000)]
    pub units: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub plant: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

const TIGHTENING_FAULTS: &[&str] = &["cross_thread", "soft_joint", "stripped", "rehit", "missing"];

/// Per detector: which tightening events it flagged (REVIEW or HOLD).
fn flagged_events(findings: &[Finding], agent: &str) -> HashSet<String> {
    findings
        .iter()
        .filter(|f| f.agent == agent && f.verdict != Verdict::Pass)
        .filter_map(|f| f.evidence.first().cloned())
        .collect()
}

/// Torque agents and the controller's own verdict against injected tightening faults.
pub fn torque(args: EvalTorqueArgs) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let stations = plant.stations.len() as u64;
    let mut sim = Simulation::new(plant, args.seed, Some(args.units), CurveMode::All);
    let mut router = Router::new(build_agents(&AgentsConfig::default()));
    let agents: Vec<&'static str> = router.agent_names().into_iter().map(|(n, _)| n).collect();
    let bar = progress(args.units + stations, "eval torque");
    let mut truth: HashMap<String, String> = HashMap::new();
    let mut findings = Vec::new();
    let mut controller_nok: HashSet<String> = HashSet::new();
    let mut tightenings: Vec<String> = Vec::new();
    // Tightenings by a tool after its drift began: out-of-window results there are the drift's
    // doing, not false alarms; they are left out of the good set and counted apart.
    let mut drifting: HashMap<String, u64> = HashMap::new();
    let mut unit_of: HashMap<String, u64> = HashMap::new();
    let mut drift_affected: HashSet<String> = HashSet::new();
    let mut seq = 0;
    while sim.has_more() {
        let slot = sim.next_slot();
        for w in &slot.work_orders {
            unit_of.insert(w.vin.clone(), w.sequence - 1);
        }
        for t in slot.truth.iter().filter(|t| t.fault == "tool_drift") {
            if let Some(tool) = &t.tool {
                drifting.insert(tool.clone(), t.unit);
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
                if drifting.get(&t.tool).is_some_and(|onset| unit >= *onset) {
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
    let mut detectors: Vec<(String, HashSet<String>)> = vec![("controller".into(), controller_nok)];
    for a in &agents {
        detectors.push((a.to_string(), flagged_events(&findings, a)));
    }
    let good = tightenings.iter().filter(|e| !truth.contains_key(*e) && !drift_affected.contains(*e)).count();
    let mut per_mode: BTreeMap<&str, usize> = BTreeMap::new();
    for mode in truth.values() {
        *per_mode.entry(mode.as_str()).or_default() += 1;
    }
    let mut report = Report::new(format!(
        "eval torque --sim: {} units, seed {}, {} tightenings ({} with injected faults)",
        args.units,
        args.seed,
        tightenings.len(),
        truth.len()
    ));
    report
        .add("tightenings", "tightenings", tightenings.len(), "")
        .add("faults", "injected faults", truth.len(), "")
        .add("good", "good tightenings", good, "")
        .add("drift_affected", "by a drifting tool (evaluated apart)", drift_affected.len(), "");
    for (mode, n) in &per_mode {
        report.add(&format!("injected_{mode}"), &format!("injected {mode}"), *n, "");
    }
    for (name, flagged) in &detectors {
        let key = name.replace('-', "_");
        for mode in TIGHTENING_FAULTS {
            let n = per_mode.get(mode).copied().unwrap_or(0);
            let hit = truth.iter().filter(|(e, m)| m.as_str() == *mode && flagged.contains(*e)).count();
            let recall = if n == 0 { 0.0 } else { hit as f64 / n as f64 };
            report.add(&format!("{key}_recall_{mode}"), &format!("{name}: recall {mode}"), recall, "");
        }
        let true_pos = flagged.iter().filter(|e| truth.contains_key(*e)).count();
        let false_pos = flagged.iter().filter(|e| !truth.contains_key(*e) && !drift_affected.contains(*e)).count();
        let precision = if true_pos + false_pos == 0 { 0.0 } else { true_pos as f64 / (true_pos + false_pos) as f64 };
        report
            .add(
                &format!("{key}_recall_all"),
                &format!("{name}: recall, all faults"),
                true_pos as f64 / truth.len().max(1) as f64,
                "",
            )
            .add(&format!("{key}_precision"), &format!("{name}: precision"), precision, "")
            .add(
                &format!("{key}_false_alarms_per_10k_good"),
                &format!("{name}: false alarms per 10,000 good"),
                false_pos as f64 * 10_000.0 / good.max(1) as f64,
                "",
            );
    }
    report.print(args.json);
    Ok(())
}
