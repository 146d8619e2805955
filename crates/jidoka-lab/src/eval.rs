//! `jidoka eval ...`: accuracy measured on data, never asserted. Each evaluation prints a
//! table (or one JSON object with `--json`).

use jidoka_agents::{AgentsConfig, Router, build_agents};
use jidoka_model::event::OkNok;
use jidoka_model::{EventPayload, Finding, StoredEvent};
use jidoka_service::demo::load_plant;
use jidoka_service::report::{Report, progress};
use jidoka_sim::{CurveMode, Simulation};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Options of the evaluations run on the simulator's ground truth.
#[derive(Debug, Clone, clap::Args)]
pub struct SimEvalArgs {
    /// Evaluate on the simulator's ground truth (real-data evaluations arrive with the readers
    /// for each data set).
    #[arg(long, required = true)]
    pub sim: bool,
    #[arg(long, default_value_t = 2000)]
    pub units: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub plant: Option<PathBuf>,
    /// eval sequence: the master data arrives as events during the run (BOM and routing first,
    /// each ECO shortly before its cut-in) instead of being given up front, and the run is
    /// replayed to check that it reproduces every finding.
    #[arg(long)]
    pub live_master_data: bool,
    #[arg(long)]
    pub json: bool,
}

/// Injected sequence error → the reason code the agent must give it.
const SEQUENCE_FAULTS: &[(&str, &str)] = &[
    ("wrong_part", "sequence.wrong_part"),
    ("wrong_variant", "sequence.wrong_variant"),
    ("superseded", "sequence.superseded"),
    ("duplicate_serial", "sequence.duplicate_serial"),
    ("skipped_operation", "sequence.operation_missing"),
];

struct SequenceRun {
    truth: Vec<jidoka_sim::GroundTruth>,
    findings: Vec<Finding>,
    /// (VIN, station, joint) with a NOK tightening result in the stream.
    nok: HashSet<(String, String, String)>,
    /// With live master data: whether a second pass over the same log gave the same findings.
    replay_identical: Option<bool>,
    /// Master data events logged during the run.
    master_events: usize,
}

/// Units of lead: an ECO is released when the work order this many sequence numbers before
/// its cut-in is.
const ECO_LEAD: u64 = 20;

fn run_sequence(plant: jidoka_sim::Plant, seed: u64, units: u64, live: bool) -> anyhow::Result<SequenceRun> {
    use jidoka_model::master::MasterDataChange;
    let master = jidoka_service::config::master_from(plant.master_data())?;
    let all = master.as_deref().cloned().unwrap_or_default();
    // Live: the agents start with nothing and learn the master data from the log.
    let mut router = Router::new(build_agents(&AgentsConfig::default(), if live { &None } else { &master }));
    let mut pending_ecos: Vec<jidoka_model::master::ChangePackage> =
        if live { all.changes.clone() } else { Vec::new() };
    let mut sim = Simulation::new(plant, seed, Some(units), CurveMode::None);
    let mut run = SequenceRun {
        truth: Vec::new(),
        findings: Vec::new(),
        nok: HashSet::new(),
        replay_identical: None,
        master_events: 0,
    };
    let mut log: Vec<StoredEvent> = Vec::new();
    let mut seq = 0;
    let mut first = true;
    while sim.has_more() {
        let slot = sim.next_slot();
        run.truth.extend(slot.truth.into_iter().filter(|t| SEQUENCE_FAULTS.iter().any(|(f, _)| *f == t.fault)));
        for event in slot.events {
            if live {
                let mut due = Vec::new();
                if first {
                    first = false;
                    let base = MasterDataChange {
                        revision: Some("base".into()),
                        replace: true,
                        rows: jidoka_model::master::MasterData { changes: Vec::new(), ..all.clone() },
                        ..MasterDataChange::default()
                    };
                    due.push(("base".to_string(), base));
                }
                if let EventPayload::WorkOrderReleased(w) = &event.payload {
                    let (now, later): (Vec<_>, Vec<_>) = pending_ecos
                        .drain(..)
                        .partition(|c| c.cut_in.from_sequence.is_none_or(|cut| w.sequence + ECO_LEAD >= cut));
                    pending_ecos = later;
                    for c in now {
                        let change = MasterDataChange {
                            revision: Some(c.change_id.clone()),
                            rows: jidoka_model::master::MasterData { changes: vec![c.clone()], ..Default::default() },
                            ..MasterDataChange::default()
                        };
                        due.push((c.change_id.clone(), change));
                    }
                }
                for (id, change) in due {
                    seq += 1;
                    run.master_events += 1;
                    let ev = StoredEvent {
                        seq,
                        event: jidoka_service::master_data::change_event("eval-mes", &id, &change, event.occurred_at)
                            .map_err(|e| anyhow::anyhow!("master data event: {e}"))?,
                    };
                    router.process(&ev, &mut run.findings);
                    log.push(ev);
                }
            }
            if let EventPayload::TighteningResult(t) = &event.payload
                && t.controller_verdict == Some(OkNok::Nok)
            {
                run.nok.insert((t.vin.clone().unwrap_or_default(), t.station.clone(), t.joint.clone()));
            }
            seq += 1;
            let stored = StoredEvent { seq, event };
            router.process(&stored, &mut run.findings);
            if live {
                log.push(stored);
            }
        }
    }
    if live {
        // The same log through fresh agents: the same findings, to the byte.
        let mut again = Router::new(build_agents(&AgentsConfig::default(), &None));
        let mut replayed = Vec::new();
        for ev in &log {
            again.process(ev, &mut replayed);
        }
        let digests =
            |fs: &[Finding]| fs.iter().map(|f| (f.finding_id.clone(), f.content_digest())).collect::<Vec<_>>();
        run.replay_identical = Some(digests(&replayed) == digests(&run.findings));
    }
    // An agent that fails counts against it.
    run.findings.retain(|f| f.kind.starts_with("sequence.") || f.kind == "agent.failure");
    Ok(run)
}

/// The sequence agent against every injected sequence error, and on a clean run.
pub fn sequence(args: SimEvalArgs) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let bar = progress(2, "eval sequence");
    let run = run_sequence(plant.clone(), args.seed, args.units, args.live_master_data)?;
    bar.inc(1);
    // The clean run is a clean plant: no injected fault of any kind.
    let mut clean_plant = plant;
    clean_plant.faults = jidoka_sim::plant::Faults::default();
    let clean = run_sequence(clean_plant, args.seed, args.units, args.live_master_data)?;
    bar.finish_and_clear();
    // Match each injected error to the finding that names it: scans by their event, skipped
    // operations by unit and station.
    let mut matched: HashSet<String> = HashSet::new();
    let mut rows: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new(); // injected, flagged, wrong reason
    for t in &run.truth {
        let code = SEQUENCE_FAULTS.iter().find(|(f, _)| *f == t.fault).map(|(_, c)| *c).unwrap_or("");
        let row = rows.entry(code).or_default();
        row.0 += 1;
        let on_event = |f: &&Finding| match &t.event_id {
            Some(e) => f.evidence.first() == Some(e),
            None => {
                f.subject.vin.as_deref() == Some(t.vin.as_str())
                    && f.subject.station.as_deref() == Some(t.station.as_str())
            }
        };
        let candidates: Vec<&Finding> = run.findings.iter().filter(on_event).collect();
        if let Some(hit) = candidates.iter().find(|f| f.kind == code) {
            row.1 += 1;
            matched.insert(hit.finding_id.clone());
        } else if !candidates.is_empty() {
            row.2 += 1;
        }
    }
    // What is left is either a consequence of an injected error (the unit left the station
    // without the part a wrong scan stood in for), a departure with a NOK tightening that the
    // stream confirms, or a false alarm.
    let faulty_visits: HashSet<(&str, &str)> = run.truth.iter().map(|t| (t.vin.as_str(), t.station.as_str())).collect();
    let departure = |k: &str| {
        [
            "sequence.operation_missing",
            "sequence.scan_missing",
            "sequence.quantity_short",
            "sequence.tightening_missing",
        ]
        .contains(&k)
    };
    let nok_confirmed = |run: &SequenceRun, f: &Finding| {
        let (vin, station) = (f.subject.vin.clone().unwrap_or_default(), f.subject.station.clone().unwrap_or_default());
        f.details["tightenings_nok"].as_array().is_some_and(|j| {
            !j.is_empty()
                && j.iter()
                    .all(|j| run.nok.contains(&(vin.clone(), station.clone(), j.as_str().unwrap_or("").to_string())))
        })
    };
    let (mut consequences, mut nok_departures) = (0, 0);
    let mut false_alarms: BTreeMap<String, usize> = BTreeMap::new();
    for f in run.findings.iter().filter(|f| !matched.contains(&f.finding_id)) {
        let visit = (f.subject.vin.as_deref().unwrap_or(""), f.subject.station.as_deref().unwrap_or(""));
        if departure(&f.kind) && faulty_visits.contains(&visit) {
            consequences += 1;
        } else if f.kind == "sequence.tightening_nok" && nok_confirmed(&run, f) {
            nok_departures += 1;
        } else {
            *false_alarms.entry(f.kind.clone()).or_default() += 1;
        }
    }
    let clean_sequence_alerts =
        clean.findings.iter().filter(|f| !(f.kind == "sequence.tightening_nok" && nok_confirmed(&clean, f))).count();
    let clean_nok = clean.findings.len() - clean_sequence_alerts;
    let mut report = Report::new(format!(
        "eval sequence --sim: {} units, seed {}, {} injected sequence errors",
        args.units,
        args.seed,
        run.truth.len()
    ));
    let (mut missed_total, mut false_total) = (0, 0);
    for (_, code) in SEQUENCE_FAULTS {
        let (injected, flagged, wrong) = rows.get(code).copied().unwrap_or((0, 0, 0));
        let fa = false_alarms.remove(*code).unwrap_or(0);
        missed_total += injected - flagged;
        false_total += fa;
        let key = code.trim_start_matches("sequence.");
        report
            .add(&format!("{key}_injected"), &format!("{code}: injected"), injected, "")
            .add(&format!("{key}_flagged"), &format!("{code}: flagged with this code"), flagged, "")
            .add(&format!("{key}_missed"), &format!("{code}: missed"), injected - flagged, "")
            .add(&format!("{key}_wrong_reason"), &format!("{code}: flagged with another code"), wrong, "")
            .add(&format!("{key}_false_alarms"), &format!("{code}: false alarms"), fa, "");
    }
    for (code, n) in &false_alarms {
        false_total += n;
        report.add(
            &format!("{}_false_alarms", code.trim_start_matches("sequence.")),
            &format!("{code}: false alarms"),
            *n,
            "",
        );
    }
    report
        .add("missed", "missed, all codes", missed_total, "")
        .add("false_alarms", "false alarms, all codes", false_total, "")
        .add("consequences", "departure alerts following an injected error at that station", consequences, "")
        .add("nok_departures", "departures with a NOK tightening (confirmed in the stream)", nok_departures, "")
        .add("clean_run_alerts", "alerts on a clean plant (same seed, no injected faults)", clean_sequence_alerts, "")
        .add("clean_run_nok_departures", "clean plant: departures with a confirmed NOK tightening", clean_nok, "");
    if let Some(identical) = run.replay_identical {
        report
            .add(
                "master_data_events",
                "master data events during the run (base, then each ECO before its cut-in)",
                run.master_events,
                "",
            )
            .add("replay_identical", "replay of the run's log reproduces every finding", identical, "");
    }
    report.print(args.json);
    Ok(())
}

/// Plant time at the start of a run whose decisions are not counted as steady state: the
/// cold start of every joint's golden batch falls in it.
const WARMUP_HOURS: f64 = 1.0;

/// Injected faults that need a person's decision, with whether they are HOLD-class (a unit must
/// not leave unseen): tightening faults, sequence errors, tool drift and recorded defects. An
/// Andon and a stock-out are handled on the line and need none.
const NEEDS_DECISION: &[(&str, bool)] = &[
    ("cross_thread", true),
    ("stripped", true),
    ("missing", true),
    ("soft_joint", false),
    ("rehit", false),
    ("tool_drift", false),
    ("wrong_part", true),
    ("wrong_variant", true),
    ("superseded", true),
    ("duplicate_serial", true),
    ("skipped_operation", true),
    ("defect", false),
];

/// What a person is asked to decide, counted one way: each waiting action alone (as the queue
/// was), or each case.
#[derive(Default)]
struct Workload {
    decisions_after_warmup: usize,
    cold_start_after_warmup: usize,
    cold_start_in_warmup: usize,
    decisions_in_warmup: usize,
    false_after_warmup: usize,
    /// HOLD-class problems and sequence errors with no decision about them.
    hold_undecided: usize,
    /// Decisions about no injected problem after warm-up, by the kind of their first finding.
    false_by_kind: BTreeMap<String, usize>,
    /// Decisions that match some injected problem (whole run).
    matched: usize,
    /// Per injected fault kind: (problems, problems with no decision).
    by_fault: BTreeMap<String, (usize, usize)>,
}

/// The supervisor's workload on the default plant at its default fault rates: every agent,
/// the default governance, the waiting actions counted alone and as cases, against the
/// simulator's ground truth.
pub fn workload(args: SimEvalArgs) -> anyhow::Result<()> {
    use jidoka_model::{ActionStatus, Timestamp};
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let master = jidoka_service::config::master_from(plant.master_data())?;
    let mut router = Router::new(build_agents(&AgentsConfig::default(), &master));
    let mut sim = Simulation::new(plant, args.seed, Some(args.units), CurveMode::All);
    let bar = progress(args.units, "eval workload");
    let mut truth: Vec<jidoka_sim::GroundTruth> = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    let (mut first, mut last): (Option<Timestamp>, Option<Timestamp>) = (None, None);
    let mut seq = 0;
    while sim.has_more() {
        let slot = sim.next_slot();
        bar.inc(slot.work_orders.len() as u64);
        truth.extend(slot.truth);
        for event in slot.events {
            first = first.or(Some(event.occurred_at));
            last = Some(last.map_or(event.occurred_at, |l| l.max(event.occurred_at)));
            seq += 1;
            router.process(&StoredEvent { seq, event }, &mut findings);
        }
    }
    bar.finish_and_clear();
    let (Some(first), Some(last)) = (first, last) else { anyhow::bail!("the simulation produced no events") };
    let warm_end = first + chrono::Duration::seconds((WARMUP_HOURS * 3600.0) as i64);
    let steady_hours = ((last - warm_end).num_seconds() as f64 / 3600.0).max(1e-9);
    let by_id: std::collections::HashMap<&str, &Finding> =
        findings.iter().map(|f| (f.finding_id.as_str(), f)).collect();
    let waiting: Vec<jidoka_store::ActionRecord> = jidoka_service::governance::propose_all(&findings, &[])
        .into_iter()
        .filter(|a| a.status == ActionStatus::PendingApproval)
        .map(|action| jidoka_store::ActionRecord {
            action,
            note: None,
            attempts: 0,
            approvals: Vec::new(),
            stored_at: None,
        })
        .collect();
    // Each problem: its truth, whether it is HOLD-class, and when it began.
    let problems: Vec<(&jidoka_sim::GroundTruth, bool, Option<Timestamp>)> = truth
        .iter()
        .filter_map(|t| {
            let (_, hold) = NEEDS_DECISION.iter().find(|(f, _)| *f == t.fault)?;
            let onset = chrono::DateTime::parse_from_rfc3339(&t.onset_at).map(|d| d.with_timezone(&chrono::Utc)).ok();
            Some((t, *hold, onset))
        })
        .collect();
    // A finding is about a problem when it names the problem's event, or its unit at its
    // station, or, for a drifting tool, any tightening of that tool from the drift's onset on
    // (an out-of-window result it causes is the drift's doing, and a real NOK bolt).
    let about = |f: &Finding, (t, _, onset): &(&jidoka_sim::GroundTruth, bool, Option<Timestamp>)| {
        t.event_id.as_ref().is_some_and(|e| f.evidence.contains(e))
            || (f.subject.vin.as_deref() == Some(t.vin.as_str())
                && f.subject.station.as_deref() == Some(t.station.as_str()))
            || (t.fault == "tool_drift"
                && t.tool.is_some()
                && f.subject.tool == t.tool
                && onset.is_some_and(|at| f.occurred_at >= at))
    };
    // Each decision: its findings and when it was first asked.
    let count = |decisions: Vec<Vec<&Finding>>| -> Workload {
        let mut w = Workload::default();
        let mut decided = vec![false; problems.len()];
        for fs in &decisions {
            let at = fs.iter().map(|f| f.occurred_at).min().unwrap_or(first);
            let mut hit = false;
            for (i, p) in problems.iter().enumerate() {
                if fs.iter().any(|f| about(f, p)) {
                    decided[i] = true;
                    hit = true;
                }
            }
            w.matched += usize::from(hit);
            if at >= warm_end {
                w.decisions_after_warmup += 1;
                w.false_after_warmup += usize::from(!hit);
                if !hit && let Some(f) = fs.first() {
                    *w.false_by_kind.entry(f.kind.clone()).or_default() += 1;
                }
                w.cold_start_after_warmup += usize::from(fs.iter().any(|f| f.kind == "torque.no_golden_batch"));
            } else {
                w.decisions_in_warmup += 1;
                w.cold_start_in_warmup += usize::from(fs.iter().any(|f| f.kind == "torque.no_golden_batch"));
            }
        }
        for ((t, hold, _), decided) in problems.iter().zip(decided) {
            let row = w.by_fault.entry(t.fault.clone()).or_default();
            row.0 += 1;
            row.1 += usize::from(!decided);
            w.hold_undecided += usize::from(*hold && !decided);
        }
        w
    };
    let finding_of = |a: &jidoka_store::ActionRecord| by_id.get(a.action.finding_id.as_str()).copied();
    let alone = count(waiting.iter().filter_map(|a| finding_of(a).map(|f| vec![f])).collect());
    let waiting_actions = waiting.len();
    let cases = jidoka_service::cases::group(waiting);
    let grouped = count(cases.iter().map(|c| c.actions.iter().filter_map(finding_of).collect()).collect());
    let needing = problems.len().max(1) as f64;
    let hold_problems = problems.iter().filter(|(_, hold, _)| *hold).count();
    let mut report = Report::new(format!(
        "eval workload --sim: {} units, seed {}, {:.1} plant hours ({WARMUP_HOURS} h warm-up), {} injected problems needing a decision ({hold_problems} HOLD-class)",
        args.units,
        args.seed,
        (last - first).num_seconds() as f64 / 3600.0,
        problems.len()
    ));
    for (name, w) in [("alone", &alone), ("cases", &grouped)] {
        let label = if name == "alone" { "each waiting action alone (before cases)" } else { "cases" };
        report
            .add(
                &format!("{name}_per_hour"),
                &format!("{label}: decisions per plant hour after warm-up"),
                w.decisions_after_warmup as f64 / steady_hours,
                "",
            )
            .add(
                &format!("{name}_per_problem"),
                &format!("{label}: decisions about a problem, per problem needing one"),
                w.matched as f64 / needing,
                "",
            )
            .add(
                &format!("{name}_hold_problems_undecided"),
                &format!("{label}: HOLD-class problems and sequence errors with no decision"),
                w.hold_undecided,
                "",
            )
            .add(
                &format!("{name}_false_per_shift"),
                &format!("{label}: decisions about no injected problem, per 8 h shift after warm-up"),
                w.false_after_warmup as f64 / (steady_hours / 8.0),
                "",
            )
            .add(
                &format!("{name}_in_warmup"),
                &format!("{label}: decisions asked in the warm-up hour"),
                w.decisions_in_warmup,
                "",
            )
            .add(
                &format!("{name}_cold_start_in_warmup"),
                &format!("{label}: of those, cold start (a joint without its golden batch)"),
                w.cold_start_in_warmup,
                "",
            )
            .add(
                &format!("{name}_cold_start_after_warmup"),
                &format!("{label}: cold-start decisions after warm-up"),
                w.cold_start_after_warmup,
                "",
            );
    }
    for (kind, n) in &grouped.false_by_kind {
        report.add(&format!("false_{kind}"), &format!("cases about no injected problem after warm-up: {kind}"), *n, "");
    }
    for (fault, (n, undecided)) in &grouped.by_fault {
        report.add(&format!("{fault}_injected"), &format!("{fault}: injected"), *n, "").add(
            &format!("{fault}_undecided"),
            &format!("{fault}: no case about it"),
            *undecided,
            "",
        );
    }
    report.add("waiting_actions", "actions waiting for a person, whole run", waiting_actions, "").add(
        "cases",
        "cases, whole run",
        cases.len(),
        "",
    );
    report.print(args.json);
    Ok(())
}
