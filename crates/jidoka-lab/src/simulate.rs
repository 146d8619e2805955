//! `jidoka sim` (write a simulated event stream with its ground truth) and `jidoka bench sim`;
//! the feed behind `jidoka demo` is the service's `demo` module.

use anyhow::Context;
use jidoka_model::EventPayload;
use jidoka_service::demo::load_plant;
use jidoka_service::report::{Report, machine, progress};
use jidoka_sim::{CurveMode, Simulation};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which tightenings carry their curve in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Curves {
    /// Every tightening (about 5 KB per tightening, 200 KB per unit on the default plant).
    All,
    /// Only tightenings with an injected fault.
    Faults,
    /// No curves, final values only.
    None,
}

impl From<Curves> for CurveMode {
    fn from(c: Curves) -> CurveMode {
        match c {
            Curves::All => CurveMode::All,
            Curves::Faults => CurveMode::Faults,
            Curves::None => CurveMode::None,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Units to build.
    #[arg(long, default_value_t = 1000)]
    pub units: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder: events.jsonl, ground_truth.jsonl, work_orders.jsonl, plant.toml.
    #[arg(long)]
    pub out: PathBuf,
    /// Plant description (TOML); default: the embedded examples/plants/default.toml.
    #[arg(long)]
    pub plant: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Curves::All)]
    pub curves: Curves,
    #[arg(long)]
    pub json: bool,
}

fn writer(dir: &Path, name: &str) -> anyhow::Result<BufWriter<std::fs::File>> {
    let path = dir.join(name);
    Ok(BufWriter::new(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?))
}

/// Write a simulated run to files.
pub fn sim(args: SimArgs) -> anyhow::Result<()> {
    let (plant, text) = load_plant(args.plant.as_deref())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("plant.toml"), &text)?;
    let mut events = writer(&args.out, "events.jsonl")?;
    let mut truth = writer(&args.out, "ground_truth.jsonl")?;
    let mut orders = writer(&args.out, "work_orders.jsonl")?;
    let stations = plant.stations.len() as u64;
    let mut sim = Simulation::new(plant, args.seed, Some(args.units), args.curves.into());
    let bar = progress(args.units + stations, "sim");
    let (mut n_events, mut n_tightenings) = (0u64, 0u64);
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    while sim.has_more() {
        let slot = sim.next_slot();
        for e in &slot.events {
            if matches!(e.payload, EventPayload::TighteningResult(_)) {
                n_tightenings += 1;
            }
            serde_json::to_writer(&mut events, e)?;
            events.write_all(b"\n")?;
        }
        n_events += slot.events.len() as u64;
        for t in &slot.truth {
            *faults.entry(t.fault.clone()).or_default() += 1;
            serde_json::to_writer(&mut truth, t)?;
            truth.write_all(b"\n")?;
        }
        for w in &slot.work_orders {
            serde_json::to_writer(&mut orders, w)?;
            orders.write_all(b"\n")?;
        }
        bar.inc(1);
    }
    events.flush()?;
    truth.flush()?;
    orders.flush()?;
    bar.finish_and_clear();
    let mut report =
        Report::new(format!("sim: {} units, seed {}, written to {}", args.units, args.seed, args.out.display()));
    report.add("units", "units", args.units, "").add("events", "events", n_events, "").add(
        "tightenings",
        "tightenings",
        n_tightenings,
        "",
    );
    for (fault, n) in &faults {
        report.add(&format!("faults_{fault}"), &format!("injected {fault}"), *n, "");
    }
    report.print(args.json);
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchSimArgs {
    #[arg(long, default_value_t = 2000)]
    pub units: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub plant: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Generation speed on one thread, with curves, and with JSON Lines serialisation.
pub fn bench(args: BenchSimArgs) -> anyhow::Result<()> {
    let (plant, _) = load_plant(args.plant.as_deref())?;
    let takt = plant.takt_s();
    let per_unit = plant.tightenings_per_unit();
    let measure = |serialise: bool| -> anyhow::Result<(f64, u64, u64)> {
        let mut sim = Simulation::new(plant.clone(), args.seed, Some(args.units), CurveMode::All);
        let mut sink = std::io::sink();
        let (mut tightenings, mut samples) = (0u64, 0u64);
        let start = Instant::now();
        while sim.has_more() {
            let slot = sim.next_slot();
            for e in &slot.events {
                if let EventPayload::TighteningResult(t) = &e.payload {
                    tightenings += 1;
                    samples += t.curve.as_ref().map(|c| c.len() as u64).unwrap_or(0);
                }
                if serialise {
                    serde_json::to_writer(&mut sink, e)?;
                }
            }
        }
        Ok((start.elapsed().as_secs_f64(), tightenings, samples))
    };
    let (gen_s, tightenings, samples) = measure(false)?;
    let (ser_s, _, _) = measure(true)?;
    let mut report = Report::new(format!(
        "bench sim: {} units of the plant ({per_unit} tightenings per unit, takt {takt} s), one thread",
        args.units
    ));
    report
        .add("units", "units", args.units, "")
        .add("tightenings", "tightenings", tightenings, "")
        .add("samples_per_tightening", "curve samples per tightening", samples as f64 / tightenings.max(1) as f64, "")
        .add("units_per_s", "units/s (generate)", args.units as f64 / gen_s, "units/s")
        .add("tightenings_per_s", "tightenings/s (generate)", tightenings as f64 / gen_s, "tightenings/s")
        .add("realtime_factor", "faster than real time (generate)", args.units as f64 * takt / gen_s, "x")
        .add("units_per_s_jsonl", "units/s (generate + JSON Lines)", args.units as f64 / ser_s, "units/s")
        .add("realtime_factor_jsonl", "faster than real time (+ JSON Lines)", args.units as f64 * takt / ser_s, "x")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}
