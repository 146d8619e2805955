//! `jidoka eval shortage --sim`: the shortage forecast against the simulator's stock-outs, over
//! several seeds, beside the rules a material planner would use first.
//!
//! Every forecast round of the agent is recorded (per part: the probabilities, the line-side
//! coverage, the hours a call-off is overdue, the run-out with deliveries on their promise).
//! A rule turns rounds into alarm episodes; an episode is right when a stock-out of its part
//! starts while it is on or within H hours after it ends; a stock-out is warned of when an
//! alarm of its part was on at some time in the H hours before it (the lead: from the first
//! such time). A part already out does not change any alarm (an alarm that comes on then is no
//! prediction). The warning threshold is chosen by leave-one-seed-out cross-validation (the
//! best F1 on the other seeds), and the held-out figures are the ones reported.

use jidoka_agents::shortage::{EXPEDITE, ShortageAgent, ShortageConfig, alarm};
use jidoka_agents::{Agent, Router};
use jidoka_model::{EventPayload, StoredEvent, Timestamp};
use jidoka_service::demo::load_plant;
use jidoka_service::report::{Report, machine, progress};
use jidoka_sim::{CurveMode, Simulation};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalShortageArgs {
    /// Evaluate on the simulator's ground truth.
    #[arg(long, required = true)]
    pub sim: bool,
    /// Seeds 1..=N, one simulated run each.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Days of production per seed (the line runs around the clock).
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Units the MES releases ahead of the line (960: two shifts).
    #[arg(long, default_value_t = 960)]
    pub release_ahead: u64,
    /// Also run the closed loop: each seed again with the agent's expedites approved and acted
    /// on by the simulated suppliers, and again with a planner chasing every overdue delivery;
    /// stock-outs and hours short against taking no action.
    #[arg(long)]
    pub closed_loop: bool,
    /// The agent's expedite threshold in the closed loop (default: the configured 0.1).
    #[arg(long)]
    pub expedite_probability: Option<f64>,
    #[arg(long)]
    pub plant: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// What acts on the simulated plant during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loop {
    /// Nothing: the forecast only watches.
    Open,
    /// The agent's expedite proposals, approved as they come.
    Agent,
    /// The practitioner's rule: expedite every delivery the moment it is overdue.
    ChaseOverdue,
}

/// One part in one forecast round.
#[derive(Debug, Clone)]
struct Row {
    at: Timestamp,
    p_urgent: f64,
    p_horizon: f64,
    /// Hours of demand the stock at line side and in the supermarket covers.
    coverage_h: f64,
    overdue_h: f64,
    /// Hours to the run-out with every delivery on its promise.
    run_out_h: Option<f64>,
    out: bool,
}

struct SeedRun {
    /// Part → its rounds in time order.
    rows: BTreeMap<String, Vec<Row>>,
    /// Part → onsets of its stock-outs.
    outs: BTreeMap<String, Vec<Timestamp>>,
    hours: f64,
    rounds: u64,
    round_ms: Vec<f64>,
    /// Hours parts were out at line side (each stock-out's Andon, raised to cleared).
    short_h: f64,
    /// Expedites asked of the suppliers, and those honoured (a new promise, or already sooner).
    expedites: u64,
    honoured: u64,
}

fn hours(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds() as f64 / 3_600_000.0
}

fn run_seed(
    plant: &jidoka_sim::Plant,
    seed: u64,
    slots: u64,
    release_ahead: u64,
    acting: Loop,
    config: &ShortageConfig,
) -> anyhow::Result<SeedRun> {
    let master = plant.master_data();
    let agents: Vec<Box<dyn Agent>> = vec![Box::new(ShortageAgent::new(config.clone(), Some(&master)))];
    let mut router = Router::new(agents).with_master(Some(Arc::new(master)));
    let mut sim = Simulation::new(plant.clone(), seed, None, CurveMode::None).with_release_ahead(release_ahead);
    let mut run = SeedRun {
        rows: BTreeMap::new(),
        outs: BTreeMap::new(),
        hours: 0.0,
        rounds: 0,
        round_ms: Vec::new(),
        short_h: 0.0,
        expedites: 0,
        honoured: 0,
    };
    let (mut seq, mut findings) = (0u64, Vec::new());
    let (mut first, mut last) = (None, None);
    let mut raised: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut asked: HashSet<String> = HashSet::new();
    let mut ask: Vec<String> = Vec::new();
    for _ in 0..slots {
        // What was decided during the last slot reaches the suppliers before the next.
        for call_off in ask.drain(..) {
            run.expedites += 1;
            run.honoured += u64::from(sim.expedite(&call_off).is_ok());
        }
        let slot = sim.next_slot();
        for t in slot.truth.iter().filter(|t| t.fault == "stock_out") {
            let onset = chrono::DateTime::parse_from_rfc3339(&t.onset_at)?.with_timezone(&chrono::Utc);
            let part = t.detail["part"].as_str().unwrap_or_default().to_string();
            run.outs.entry(part).or_default().push(onset);
        }
        for event in slot.events {
            seq += 1;
            first.get_or_insert(event.occurred_at);
            last = Some(event.occurred_at);
            match &event.payload {
                EventPayload::AndonRaised(a) if a.fault_code == "L-SHORTAGE" => {
                    raised.insert(a.andon_id.clone(), event.occurred_at);
                }
                EventPayload::AndonCleared(a) => {
                    if let Some(at) = raised.remove(&a.andon_id) {
                        run.short_h += hours(at, event.occurred_at);
                    }
                }
                _ => {}
            }
            let before = router.agent::<ShortageAgent>().map_or(0, |a| a.rounds);
            let started = std::time::Instant::now();
            router.process(&StoredEvent { seq, event }, &mut findings);
            if acting == Loop::Agent {
                for f in findings.iter().filter(|f| f.kind == EXPEDITE) {
                    if let Some(id) = f.details["expedite"]["call_off_id"].as_str()
                        && asked.insert(id.to_string())
                    {
                        ask.push(id.to_string());
                    }
                }
            }
            findings.clear();
            let Some(agent) = router.agent::<ShortageAgent>() else { continue };
            if agent.rounds == before {
                continue;
            }
            if acting == Loop::ChaseOverdue {
                for f in agent.forecasts() {
                    for t in f.in_transit.iter().filter(|t| t.promised_at < f.computed_at) {
                        if asked.insert(t.call_off_id.clone()) {
                            ask.push(t.call_off_id.clone());
                        }
                    }
                }
            }
            run.round_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            run.rounds += 1;
            // The warnings are scored on the run with no action only.
            if acting != Loop::Open {
                continue;
            }
            for f in agent.forecasts() {
                let level = f.stock + f.supermarket;
                run.rows.entry(f.part.clone()).or_default().push(Row {
                    at: f.computed_at,
                    p_urgent: f.p_urgent,
                    p_horizon: f.p_horizon,
                    coverage_h: if f.demand_per_h > 0.0 { level.max(0.0) / f.demand_per_h } else { f64::INFINITY },
                    overdue_h: f.overdue_h,
                    run_out_h: f.run_out.as_ref().map(|r| hours(f.computed_at, r.at)),
                    out: f.stock < 0.0,
                });
            }
        }
    }
    if let (Some(a), Some(b)) = (first, last) {
        run.hours = hours(a, b);
        run.short_h += raised.values().map(|at| hours(*at, b)).sum::<f64>();
    }
    Ok(run)
}

/// A rule: is the alarm on after this round, given whether it was on.
type Rule<'a> = &'a dyn Fn(&Row, bool) -> bool;

/// Alarm episodes per part: [start, end) (end `None`: still on at the end of the run).
fn episodes(rows: &[Row], rule: Rule<'_>) -> Vec<(Timestamp, Option<Timestamp>)> {
    let mut out = Vec::new();
    let mut on: Option<Timestamp> = None;
    for r in rows {
        if r.out {
            continue;
        }
        let next = rule(r, on.is_some());
        match (on, next) {
            (None, true) => on = Some(r.at),
            (Some(start), false) => {
                out.push((start, Some(r.at)));
                on = None;
            }
            _ => {}
        }
    }
    if let Some(start) = on {
        out.push((start, None));
    }
    out
}

/// Counts of one rule at one horizon over some runs.
#[derive(Debug, Default, Clone)]
struct Score {
    episodes: usize,
    right: usize,
    outs: usize,
    warned: usize,
    leads_h: Vec<f64>,
    hours: f64,
}

impl Score {
    fn add(&mut self, run: &SeedRun, rule: Rule<'_>, horizon_h: f64) {
        self.hours += run.hours;
        let h = chrono::Duration::milliseconds((horizon_h * 3_600_000.0) as i64);
        for (part, rows) in &run.rows {
            let eps = episodes(rows, rule);
            let outs = run.outs.get(part).map(Vec::as_slice).unwrap_or(&[]);
            self.episodes += eps.len();
            self.right +=
                eps.iter().filter(|(s, e)| outs.iter().any(|o| o > s && e.is_none_or(|e| *o <= e + h))).count();
            for o in outs {
                // The first time in the H hours before the stock-out that an alarm was on.
                let from = *o - h;
                let first_on =
                    eps.iter().filter(|(s, e)| s < o && e.is_none_or(|e| e > from)).map(|(s, _)| (*s).max(from)).min();
                if let Some(t) = first_on {
                    self.warned += 1;
                    self.leads_h.push(hours(t, *o));
                }
            }
        }
        self.outs += run.outs.iter().filter(|(p, _)| run.rows.contains_key(*p)).map(|(_, o)| o.len()).sum::<usize>();
    }

    fn precision(&self) -> f64 {
        if self.episodes == 0 { 1.0 } else { self.right as f64 / self.episodes as f64 }
    }

    fn recall(&self) -> f64 {
        if self.outs == 0 { 1.0 } else { self.warned as f64 / self.outs as f64 }
    }

    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }

    fn median_lead_h(&self) -> f64 {
        median(&self.leads_h)
    }

    /// False alarms per line and 8-hour shift.
    fn false_per_shift(&self) -> f64 {
        if self.hours == 0.0 { 0.0 } else { (self.episodes - self.right) as f64 / (self.hours / 8.0) }
    }

    fn json(&self) -> serde_json::Value {
        json!({"precision": self.precision(), "recall": self.recall(), "f1": self.f1(),
               "median_lead_h": self.median_lead_h(), "false_per_shift": self.false_per_shift(),
               "alarms": self.episodes, "stock_outs": self.outs, "warned": self.warned})
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Average precision (the area under the precision-recall curve, stepwise; tied scores count
/// as one step).
pub fn average_precision(scored: &[(f64, bool)]) -> f64 {
    let positives = scored.iter().filter(|s| s.1).count();
    if positives == 0 {
        return 0.0;
    }
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen, mut ap, mut i) = (0usize, 0usize, 0.0, 0usize);
    while i < v.len() {
        let mut j = i;
        let mut new_tp = 0;
        while j < v.len() && v[j].0 == v[i].0 {
            new_tp += usize::from(v[j].1);
            j += 1;
        }
        seen += j - i;
        tp += new_tp;
        ap += (new_tp as f64 / positives as f64) * (tp as f64 / seen as f64);
        i = j;
    }
    ap
}

/// Hourly checkpoints per part (the first round at or after each hour, the part not out):
/// (score of each rule, a stock-out of the part within H hours).
fn checkpoints(runs: &[SeedRun], horizon_h: f64, score: &dyn Fn(&Row) -> f64) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    let h = chrono::Duration::milliseconds((horizon_h * 3_600_000.0) as i64);
    for run in runs {
        for (part, rows) in &run.rows {
            let outs = run.outs.get(part).map(Vec::as_slice).unwrap_or(&[]);
            let mut next_hour: Option<Timestamp> = None;
            for r in rows {
                if next_hour.is_some_and(|n| r.at < n) || r.out {
                    continue;
                }
                next_hour = Some(r.at + chrono::Duration::hours(1));
                let label = outs.iter().any(|o| *o > r.at && *o <= r.at + h);
                out.push((score(r), label));
            }
        }
    }
    out
}

const THRESHOLDS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Leave one seed out: the threshold with the best F1 on the other seeds, scored on the held-out
/// one; the held-out scores pooled, and the thresholds chosen.
fn cross_validated(runs: &[SeedRun], horizon_h: f64, p: &dyn Fn(&Row) -> f64) -> (Score, Vec<f64>) {
    let mut pooled = Score::default();
    let mut chosen = Vec::new();
    for held in 0..runs.len() {
        let best = THRESHOLDS
            .iter()
            .copied()
            .map(|t| {
                let mut s = Score::default();
                for (i, run) in runs.iter().enumerate() {
                    if i != held || runs.len() == 1 {
                        s.add(run, &|r: &Row, on: bool| alarm(on, p(r), t), horizon_h);
                    }
                }
                (t, s.f1())
            })
            .fold((0.5, -1.0), |best, x| if x.1 > best.1 { x } else { best });
        chosen.push(best.0);
        pooled.add(&runs[held], &|r: &Row, on: bool| alarm(on, p(r), best.0), horizon_h);
    }
    (pooled, chosen)
}

pub fn eval_shortage(args: EvalShortageArgs) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let mut config = ShortageConfig::default();
    if let Some(p) = args.expedite_probability {
        anyhow::ensure!(p > 0.0 && p <= 1.0, "--expedite-probability: a probability above 0 and at most 1");
        config.expedite_probability = p;
    }
    let slots = (args.days * 24.0 * 3600.0 / plant.takt_s()).round() as u64;
    let bar = progress(args.seeds, "eval shortage");
    let mut runs = Vec::new();
    for seed in 1..=args.seeds {
        runs.push(run_seed(&plant, seed, slots, args.release_ahead, Loop::Open, &config)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let closed = if args.closed_loop {
        let bar = progress(2 * args.seeds, "eval shortage, closed loop");
        let mut closed = Vec::new();
        for acting in [Loop::Agent, Loop::ChaseOverdue] {
            let mut v = Vec::new();
            for seed in 1..=args.seeds {
                v.push(run_seed(&plant, seed, slots, args.release_ahead, acting, &config)?);
                bar.inc(1);
            }
            closed.push((acting, v));
        }
        bar.finish_and_clear();
        closed
    } else {
        Vec::new()
    };
    let outs: usize = runs.iter().map(|r| r.outs.values().map(Vec::len).sum::<usize>()).sum();
    let hours: f64 = runs.iter().map(|r| r.hours).sum();
    let mut report = Report::new(format!(
        "eval shortage --sim: {} seeds × {:.1} days ({slots} units each), the MES {} units ahead; {outs} stock-outs in \
         {hours:.0} line hours; machine {}",
        args.seeds,
        args.days,
        args.release_ahead,
        machine()
    ));
    report.add("seeds", "seeds", args.seeds, "");
    report.add("stock_outs", "stock-outs (ground truth)", outs, "");
    report.add("line_hours", "line hours simulated", hours, "h");
    for (key, h, p) in [
        ("h2", config.urgent_h, &(|r: &Row| r.p_urgent) as &dyn Fn(&Row) -> f64),
        ("h8", config.horizon_h, &(|r: &Row| r.p_horizon) as &dyn Fn(&Row) -> f64),
    ] {
        let (cv, chosen) = cross_validated(&runs, h, p);
        let mut at_default = Score::default();
        let (mut overdue, mut coverage, mut promise) = (Score::default(), Score::default(), Score::default());
        let default_t = if key == "h2" { config.urgent_probability } else { config.warn_probability };
        for run in &runs {
            at_default.add(run, &|r: &Row, on: bool| alarm(on, p(r), default_t), h);
            overdue.add(run, &|r: &Row, _| r.overdue_h > 0.0, h);
            coverage.add(run, &|r: &Row, _| r.coverage_h < h, h);
            promise.add(run, &|r: &Row, _| r.run_out_h.is_some_and(|x| x <= h), h);
        }
        let ap = |f: &dyn Fn(&Row) -> f64| average_precision(&checkpoints(&runs, h, f));
        let base_rate = {
            let c = checkpoints(&runs, h, &|_| 0.0);
            c.iter().filter(|x| x.1).count() as f64 / c.len().max(1) as f64
        };
        let label = |what: &str| format!("within {h} h: {what}");
        let s = |x: &Score| {
            format!(
                "precision {:.3}, recall {:.3}, median lead {:.2} h, {:.2} false alarms per shift ({} alarms, {}/{} \
                 warned)",
                x.precision(),
                x.recall(),
                x.median_lead_h(),
                x.false_per_shift(),
                x.episodes,
                x.warned,
                x.outs
            )
        };
        report.add(&format!("{key}_forecast_cv"), &label("forecast, threshold by leave-one-seed-out"), s(&cv), "");
        report.add(
            &format!("{key}_thresholds_chosen"),
            &label("thresholds chosen per held-out seed"),
            json!(chosen),
            "",
        );
        report.add(
            &format!("{key}_forecast_default"),
            &label(&format!("forecast at the default {default_t}")),
            s(&at_default),
            "",
        );
        report.add(&format!("{key}_baseline_overdue"), &label("baseline: a call-off is overdue"), s(&overdue), "");
        report.add(
            &format!("{key}_baseline_coverage"),
            &label(&format!("baseline: stock covers < {h} h")),
            s(&coverage),
            "",
        );
        report.add(
            &format!("{key}_ablation_on_promise"),
            &label("ablation: run-out with deliveries on their promise"),
            s(&promise),
            "",
        );
        report.add(&format!("{key}_pr_auc_forecast"), &label("PR-AUC, forecast probability (hourly)"), ap(p), "");
        report.add(&format!("{key}_pr_auc_overdue"), &label("PR-AUC, hours overdue"), ap(&|r| r.overdue_h), "");
        report.add(
            &format!("{key}_pr_auc_coverage"),
            &label("PR-AUC, coverage (less is riskier)"),
            ap(&|r| -r.coverage_h.min(1e6)),
            "",
        );
        report.add(
            &format!("{key}_base_rate"),
            &label("share of hourly checkpoints with a stock-out ahead"),
            base_rate,
            "",
        );
        report.add(&format!("{key}_cv"), &label("cross-validated, as JSON"), cv.json(), "");
    }
    if !closed.is_empty() {
        closed_loop_report(&mut report, &runs, &closed, config.expedite_probability);
    }
    let rounds: u64 = runs.iter().map(|r| r.rounds).sum();
    let ms: Vec<f64> = runs.iter().flat_map(|r| r.round_ms.iter().copied()).collect();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted.get(((sorted.len().max(1) - 1) as f64 * 0.99) as usize).copied().unwrap_or(0.0);
    report.add("rounds", "forecast rounds", rounds, "");
    report.add("round_ms_median", "forecast round, median (this plant)", median(&ms), "ms");
    report.add("round_ms_p99", "forecast round, p99 (this plant)", p99, "ms");
    report.print(args.json);
    Ok(())
}

/// The closed loop's figures: stock-outs and hours short with the agent's expedites approved and
/// with the overdue deliveries chased, against no action; the expedites each asked per shift.
fn closed_loop_report(report: &mut Report, open: &[SeedRun], closed: &[(Loop, Vec<SeedRun>)], threshold: f64) {
    let outs = |runs: &[SeedRun]| runs.iter().map(|r| r.outs.values().map(Vec::len).sum::<usize>()).sum::<usize>();
    let short_h = |runs: &[SeedRun]| runs.iter().map(|r| r.short_h).sum::<f64>();
    let shifts = |runs: &[SeedRun]| runs.iter().map(|r| r.hours).sum::<f64>() / 8.0;
    let (outs0, short0) = (outs(open), short_h(open));
    report.add("loop_none", "closed loop: no action", format!("{outs0} stock-outs, {short0:.1} h short"), "");
    for (acting, runs) in closed {
        let (key, what) = match acting {
            Loop::Agent => ("loop_agent", format!("closed loop: the agent's expedites approved (at {threshold})")),
            Loop::ChaseOverdue => {
                ("loop_chase_overdue", "closed loop, baseline: expedite every overdue delivery".to_string())
            }
            Loop::Open => continue,
        };
        let (o, h) = (outs(runs), short_h(runs));
        let asked: u64 = runs.iter().map(|r| r.expedites).sum();
        let honoured: u64 = runs.iter().map(|r| r.honoured).sum();
        let cut = |a: f64, b: f64| if b > 0.0 { 1.0 - a / b } else { 0.0 };
        report.add(
            key,
            &what,
            format!(
                "{o} stock-outs ({:.0} % fewer), {h:.1} h short ({:.0} % fewer); {asked} expedites asked ({honoured} \
                 honoured), {:.2} per shift",
                cut(o as f64, outs0 as f64) * 100.0,
                cut(h, short0) * 100.0,
                asked as f64 / shifts(runs).max(1e-9)
            ),
            "",
        );
        report.add(
            &format!("{key}_json"),
            &format!("{what}, as JSON"),
            json!({"stock_outs": o, "stock_outs_none": outs0, "stock_outs_reduction": cut(o as f64, outs0 as f64),
                   "hours_short": h, "hours_short_none": short0, "hours_short_reduction": cut(h, short0),
                   "expedites": asked, "honoured": honoured, "expedites_per_shift": asked as f64 / shifts(runs).max(1e-9)}),
            "",
        );
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchShortageArgs {
    /// Part numbers at line side (ten stations, three in five taken by every unit, the rest
    /// variants of eight option families).
    #[arg(long, default_value_t = 2000)]
    pub parts: usize,
    /// Units released and waiting: the forecast's horizon.
    #[arg(long, default_value_t = 1300)]
    pub horizon: usize,
    /// Forecast rounds timed (one per unit started).
    #[arg(long, default_value_t = 60)]
    pub rounds: usize,
    #[arg(long)]
    pub json: bool,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(0.0)
}

/// `jidoka bench shortage`: the time of one forecast round (every part's demand over the queue,
/// its run-out and its draws) after a unit starts, on a synthetic plant of `parts` part numbers
/// and `horizon` queued units; beside it the same rounds with every unit exploded through the BOM
/// afresh (no cache), measured in the same run.
pub fn bench_shortage(args: BenchShortageArgs) -> anyhow::Result<()> {
    use jidoka_model::master::{BomItem, MasterData};
    use jidoka_model::{Event, StoredEvent};
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-02T06:00:00Z")?.with_timezone(&chrono::Utc);
    let at = |s: f64| jidoka_model::event::rfc3339::format(&(t0 + chrono::Duration::milliseconds((s * 1000.0) as i64)));
    let station = |i: usize| format!("ST{:03}", (i % 10 + 1) * 10);
    let part = |i: usize| format!("P-{i:05}");
    let bom: Vec<BomItem> = (0..args.parts)
        .map(|i| BomItem {
            model: "*".into(),
            part_number: part(i),
            quantity: 1.0,
            station: station(i),
            operation: None,
            option_rule: match i % 5 {
                3 => Some(format!("F{}=A", (i / 5) % 8)),
                4 => Some(format!("F{}=B", (i / 5) % 8)),
                _ => None,
            },
            effectivity: Default::default(),
        })
        .collect();
    let master = MasterData { bom, ..MasterData::default() };
    let mut agent = ShortageAgent::new(ShortageConfig::default(), Some(&master));
    let mut seq = 0u64;
    let mut feed = |agent: &mut ShortageAgent, v: serde_json::Value| -> anyhow::Result<std::time::Duration> {
        seq += 1;
        let event = Event::parse(v, chrono::Utc::now()).map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        agent.on_event(&StoredEvent { seq, event }, &mut out);
        Ok(started.elapsed())
    };
    let ev = |kind: &str, txn: String, time: String, data: serde_json::Value| json!({"source": "bench", "source_txn_id": txn, "occurred_at": time, "kind": kind, "data": data});
    // Each supplier's record: 20 deliveries, a fifth of them late by up to 2 h.
    for i in 0..20usize.min(args.parts) {
        for k in 0..20 {
            let late_h = if k % 5 == 0 { 0.5 * (k / 5 + 1) as f64 } else { -0.1 };
            let data = json!({"delivery_id": format!("D-{i}-{k}"), "supplier": format!("SUP-{}", i % 20),
                "part_number": part(i), "quantity": 40, "supplier_lot": format!("L-{i}-{k}"),
                "promised_at": at(0.0), "delivered_at": at(late_h * 3600.0)});
            feed(&mut agent, ev("supplier_delivery", format!("d{i}-{k}"), at(1.0), data))?;
        }
    }
    // Every part counted at line side, with one bin called off, due in two hours.
    for i in 0..args.parts {
        let count = json!({"part_number": part(i), "movement": "count", "quantity": 200, "station": station(i)});
        feed(&mut agent, ev("material_transaction", format!("c{i}"), at(2.0), count))?;
        let call = json!({"call_off_id": format!("CO-{i}"), "supplier": format!("SUP-{}", i % 20),
            "part_number": part(i), "quantity": 40, "station": station(i), "promised_at": at(2.0 + 7200.0)});
        feed(&mut agent, ev("material_call_off", format!("o{i}"), at(2.0), call))?;
    }
    // The queue: `horizon` units past the ones the rounds start.
    let units = args.horizon + 2 * args.rounds + 1;
    let mut rng = jidoka_sim::rng::Rng::new(7);
    for u in 0..units {
        let options: Vec<String> =
            (0..8).map(|f| format!("F{f}={}", if rng.chance(0.5) { "A" } else { "B" })).collect();
        let data = json!({"work_order": format!("WO-{u}"), "vin": format!("VIN{u:014}"), "model": "CAR",
            "options": options, "sequence": u + 1});
        feed(&mut agent, ev("work_order_released", format!("w{u}"), at(3.0), data))?;
    }
    let mut time = |agent: &mut ShortageAgent, from: usize, cached: bool| -> anyhow::Result<Vec<f64>> {
        let mut ms = Vec::new();
        for u in from..from + args.rounds {
            if !cached {
                agent.forget_explosions();
            }
            let data = json!({"vin": format!("VIN{u:014}"), "station": "ST010"});
            let d = feed(agent, ev("unit_entered_station", format!("s{u}"), at(60.0 * (u + 1) as f64), data))?;
            ms.push(d.as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms)
    };
    // A warm-up round fills the cache; then the rounds, then the peer's.
    time(&mut agent, 0, true)?;
    let cached = time(&mut agent, args.rounds, true)?;
    let fresh = time(&mut agent, 2 * args.rounds, false)?;
    let tracked = agent.forecasts().count();
    let mut report = Report::new(format!(
        "bench shortage: {} parts at ten stations, {} units queued, {} rounds; machine {}",
        args.parts,
        args.horizon,
        args.rounds,
        machine()
    ));
    report.add("parts", "parts forecast", tracked, "");
    report.add("horizon", "units queued", args.horizon, "");
    report.add("p50_ms", "forecast round p50", percentile(&cached, 0.5), "ms");
    report.add("p99_ms", "forecast round p99", percentile(&cached, 0.99), "ms");
    report.add("max_ms", "forecast round max", percentile(&cached, 1.0), "ms");
    report.add("peer_p50_ms", "peer: every unit exploded afresh, p50", percentile(&fresh, 0.5), "ms");
    report.add("peer_p99_ms", "peer: every unit exploded afresh, p99", percentile(&fresh, 0.99), "ms");
    report.add("ratio_p50", "p50 against the peer", percentile(&cached, 0.5) / percentile(&fresh, 0.5).max(1e-9), "");
    report.print(args.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_of_a_perfect_and_a_useless_ranking() {
        let perfect = [(0.9, true), (0.8, true), (0.1, false), (0.0, false)];
        assert!((average_precision(&perfect) - 1.0).abs() < 1e-12);
        // All tied: the precision is the base rate.
        let tied = [(0.5, true), (0.5, false), (0.5, false), (0.5, false)];
        assert!((average_precision(&tied) - 0.25).abs() < 1e-12);
        // Positive second: 1/2.
        let second = [(0.9, false), (0.8, true), (0.1, false)];
        assert!((average_precision(&second) - 0.5).abs() < 1e-12);
    }
}
