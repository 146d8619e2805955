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
