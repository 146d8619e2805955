//! Open Protocol on the command line: `jidoka op decode` for captured telegrams, and `jidoka
//! bench openprotocol` (the service's controller link against the emulated controller).

use jidoka_connectors::openprotocol::client::{self, LinkStats, OpenProtocolSourceConfig};
use jidoka_connectors::openprotocol::{self as op, Body, Telegram};
use jidoka_connectors::reject::RejectMemory;
use jidoka_service::report::{Report, machine};
use jidoka_service::runtime::IngestStore;
use jidoka_store::{SqliteStore, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Captured telegrams, one per line (a bare telegram, or a JSON object with a `telegram`
    /// field as in the public test vectors); standard input when omitted.
    pub file: Option<PathBuf>,
    /// Write every decoded telegram back and compare it with the bytes read.
    #[arg(long)]
    pub check_roundtrip: bool,
}

/// The telegram text of one input line: the line itself, or its JSON `telegram` field.
fn telegram_text(line: &str) -> Result<String, op::OpError> {
    let line = line.trim_end_matches(['\r', '\n', '\0']);
    if line.starts_with('{') {
        let v: Value = serde_json::from_str(line).map_err(|e| op::OpError::new("$", format!("not JSON: {e}")))?;
        return v["telegram"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| op::OpError::new("telegram", "the JSON object has no `telegram` string"));
    }
    Ok(line.to_string())
}

/// `jidoka op decode`: one JSON object per telegram on stdout, a summary on stderr; exit
/// status 3 when any telegram was bad (or did not round-trip).
pub fn decode(args: DecodeArgs) -> anyhow::Result<u8> {
    let reader: Box<dyn BufRead> = match &args.file {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let (mut total, mut bad, mut typed, mut unknown, mut roundtrip_ok) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut parsed_ok = 0usize;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, line) in reader.split(b'\n').enumerate() {
        let bytes = line?;
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() {
            continue;
        }
        total += 1;
        let n = i + 1;
        let result = telegram_text(&text).and_then(|t| {
            let parsed = Telegram::parse(t.as_bytes())?;
            let body = op::decode(&parsed)?;
            Ok((t, parsed, body))
        });
        let mut v = match result {
            Ok((t, parsed, body)) => {
                parsed_ok += 1;
                match body {
                    Body::Unknown => unknown += 1,
                    _ => typed += 1,
                }
                let mut v = op::to_json(&parsed, &body);
                if args.check_roundtrip {
                    match op::check_roundtrip(t.as_bytes()) {
                        Ok(_) => {
                            roundtrip_ok += 1;
                            v["roundtrip"] = json!("ok");
                        }
                        Err(e) => {
                            bad += 1;
                            *failures
                                .entry(format!(
                                    "MID {:04} rev {}",
                                    parsed.header.mid,
                                    parsed.header.effective_revision()
                                ))
                                .or_default() += 1;
                            v["roundtrip"] = json!({"field": e.field, "reason": e.reason});
                        }
                    }
                }
                v
            }
            Err(e) => {
                bad += 1;
                *failures.entry(e.field.clone()).or_default() += 1;
                json!({"error": {"field": e.field, "reason": e.reason}})
            }
        };
        v["line"] = json!(n);
        serde_json::to_writer(&mut out, &v)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    eprintln!("{total} telegrams: {typed} decoded field by field, {unknown} with no layout (kept as sent), {bad} bad");
    if args.check_roundtrip {
        eprintln!("round trip: {roundtrip_ok} of {parsed_ok} decoded telegrams identical");
    }
    for (what, n) in &failures {
        eprintln!("  {n} × {what}");
    }
    Ok(if bad > 0 { 3 } else { 0 })
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Tightenings (each a result and, with curves, an angle and a torque trace).
    #[arg(long, default_value_t = 2000)]
    pub results: usize,
    /// Send results without traces.
    #[arg(long)]
    pub no_traces: bool,
    /// Acknowledge every telegram at link level (MID 9997 / 9998), as controllers that offer
    /// sequence numbers do.
    #[arg(long)]
    pub link_ack: bool,
    /// Spoil this share (0 to 1) of the live results on the wire (cut short, a lying length
    /// field, noise inside); prints results sent intact against results stored, and the same
    /// spoiled stream read by a plain length-field reader beside Jidoka's framer.
    #[arg(long, default_value_t = 0.0)]
    pub corrupt: f64,
    /// The controller refuses old-result upload (MID 0064), so only what the line carries live
    /// can be stored.
    #[arg(long)]
    pub no_upload: bool,
    #[arg(long)]
    pub json: bool,
}

/// `jidoka bench openprotocol`: the simulated line's tightenings through the emulated
/// controller, the link and the runtime into the embedded store, each result durable before it
/// is acknowledged; and the codec alone.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.results > 0, "--results must be positive");
    anyhow::ensure!((0.0..1.0).contains(&args.corrupt), "--corrupt must be at least 0 and below 1");
    anyhow::ensure!(args.corrupt == 0.0 || !args.link_ack, "--corrupt is for links without link-level acknowledgement");
    // Tightenings of one station from the simulated line, with curves.
    let plant = jidoka_sim::Plant::default_plant().map_err(|e| anyhow::anyhow!("default plant: {e:?}"))?;
    let mut sim = jidoka_sim::Simulation::new(plant, 1, None, jidoka_sim::line::CurveMode::All);
    let mut made = Vec::with_capacity(args.results);
    while made.len() < args.results {
        for e in sim.next_slot().events {
            if let jidoka_model::EventPayload::TighteningResult(t) = e.payload
                && t.station == "ST010"
                && made.len() < args.results
            {
                made.push((t, e.occurred_at));
            }
        }
    }
    let samples: usize = made.iter().map(|(t, _)| t.curve.as_ref().map(|c| c.len()).unwrap_or(0)).sum();

    // Codec alone: build and decode every result and trace telegram once.
    let wire: Vec<Vec<u8>> = {
        made.iter()
            .flat_map(|(t, at)| {
                let mut v = vec![op::build(61, 7, &sim_values(t, at)).map(|t| t.to_bytes())];
                if let Some(curve) = &t.curve {
                    let ts = at.format("%Y-%m-%d:%H:%M:%S").to_string();
                    v.push(
                        op::trace::build(1, &ts, op::trace::TRACE_ANGLE, &curve.angle_deg, None).map(|t| t.to_bytes()),
                    );
                    v.push(
                        op::trace::build(1, &ts, op::trace::TRACE_TORQUE, &curve.torque_nm, None).map(|t| t.to_bytes()),
                    );
                }
                v
            })
            .collect::<Result<_, _>>()?
    };
    let bytes: usize = wire.iter().map(Vec::len).sum();
    let t0 = Instant::now();
    for w in &wire {
        let t = Telegram::parse(w)?;
        std::hint::black_box(op::decode(&t)?);
    }
    let codec_s = t0.elapsed().as_secs_f64();

    // End to end through the link.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("jidoka.sqlite"))?);
    let runtime = jidoka_service::runtime::bench_runtime(store.clone(), None, None)?;
    let faults = jidoka_sim::controller::Faults { line_corruption: args.corrupt, seed: 1, ..Default::default() };
    let emulator = jidoka_sim::controller::EmulatorConfig {
        link_ack: args.link_ack,
        old_results: !args.no_upload,
        ack_timeout: if args.corrupt > 0.0 { Duration::from_millis(200) } else { Duration::from_millis(2000) },
        faults,
        ..Default::default()
    };
    let controller = jidoka_sim::controller::Controller::start("127.0.0.1:0", emulator)?;
    let mut cfg = OpenProtocolSourceConfig::new("bench", &controller.addr().to_string(), "ST010");
    cfg.traces = !args.no_traces;
    cfg.trace_wait_ms = 2000;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LinkStats::default());
    let link = {
        let (cfg, stop, stats) = (cfg.clone(), stop.clone(), stats.clone());
        let mut sink = IngestStore { ingest: runtime.ingest(), checkpoint_name: cfg.checkpoint_name() };
        let mut rejects = RejectMemory::default();
        std::thread::spawn(move || client::run(&cfg, &mut sink, &mut rejects, None, &stop, &stats))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while LinkStats::get(&stats.connects) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    for (t, at) in &made {
        controller.push(t.clone(), *at);
        if args.corrupt > 0.0 {
            // At a pace the spoiled link keeps up with (10 a second; each spoiled send costs the
            // controller its 200 ms acknowledgement wait), so a connection it closes after three
            // spoiled sends of one result does not take a backlog of unsent results with it.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Until every result is stored, or (when some cannot be: spoiled and never uploaded)
    // nothing has moved for five seconds.
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut last, mut moved) = (0, Instant::now());
    while (LinkStats::get(&stats.results_stored) as usize) < made.len() && Instant::now() < deadline {
        let now = LinkStats::get(&stats.results_stored) + LinkStats::get(&stats.unrecoverable);
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let link_s = t0.elapsed().as_secs_f64();
    let stored = LinkStats::get(&stats.results_stored);
    stop.store(true, Ordering::Relaxed);
    let _ = link.join();
    let traces = LinkStats::get(&stats.traces_joined) * 2;
    let intact: std::collections::BTreeSet<u64> =
        controller.stats().sent_intact.lock().map(|s| s.clone()).unwrap_or_default();
    let spoiled = controller.stats().results_spoiled.load(Ordering::Relaxed);
    controller.shutdown();
    let ids = stored_ids(&*store)?;
    runtime.shutdown();
    let intact_lost = intact.difference(&ids).count();
    if args.corrupt == 0.0 {
        anyhow::ensure!(stored as usize == made.len(), "only {stored} of {} results stored", made.len());
    }

    let mut report = Report::new(format!(
        "bench openprotocol: {} tightenings of the simulated line through the emulated controller{}{}",
        made.len(),
        if args.no_traces { " (no traces)" } else { ", each with an angle and a torque trace" },
        if args.link_ack { ", acknowledged at link level" } else { "" }
    ));
    report
        .add("results", "results stored", stored, "")
        .add("traces", "traces joined to their result", traces, "")
        .add("curve_samples", "curve samples", samples, "")
        .add("results_per_s", "link → durable store, results", made.len() as f64 / link_s, "/s")
        .add("traces_per_s", "link → durable store, traces", traces as f64 / link_s, "/s")
        .add("codec_telegrams_per_s", "codec alone (parse + decode)", wire.len() as f64 / codec_s, "telegrams/s")
        .add("codec_mb_per_s", "codec alone", bytes as f64 / 1e6 / codec_s, "MB/s");
    if args.corrupt > 0.0 {
        let results: Vec<Telegram> =
            wire.iter().filter_map(|w| Telegram::parse(w).ok()).filter(|t| t.header.mid == 61).collect();
        let (sent, framer, plain) = spoiled_stream(&results, args.corrupt);
        report
            .add("spoiled", "live results spoiled on the wire (sends and resends)", spoiled, "")
            .add("sent_intact", "results sent intact at least once", intact.len(), "")
            .add("stored", "results stored", ids.len(), "")
            .add("intact_lost", "sent intact but not stored", intact_lost, "")
            .add("garbage", "garbage reports", LinkStats::get(&stats.garbage), "")
            .add("unrecoverable", "results counted unrecoverable", LinkStats::get(&stats.unrecoverable), "")
            .add("offline_intact", "offline stream: results sent intact", sent, "")
            .add("offline_framer", "offline stream: read by Jidoka's framer", framer, "")
            .add("offline_plain", "offline stream: read by a plain length-field reader (peer)", plain, "");
    }
    report.add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}

/// Tightening ids of the results in the store.
fn stored_ids(store: &dyn Store) -> anyhow::Result<std::collections::BTreeSet<u64>> {
    let (mut ids, mut after) = (std::collections::BTreeSet::new(), 0);
    loop {
        let page = store.events_after(after, 10_000)?;
        let Some(last) = page.last_seq() else { return Ok(ids) };
        for e in page.events.iter().map(|s| &s.event) {
            if e.source.starts_with("op:")
                && let Some(id) = e.source_txn_id.split('@').next().and_then(|id| id.parse().ok())
            {
                ids.insert(id);
            }
        }
        after = last;
    }
}

/// `results` on one wire with `share` of them spoiled as the emulated controller spoils them
/// (each spoiled one followed by nothing: no resend), read by Jidoka's framer and by the plain
/// reader an integrator writes first (take the 4-digit length, that many bytes and the NUL;
/// on a bad length skip a byte). Results sent intact, and read by each.
fn spoiled_stream(results: &[Telegram], share: f64) -> (usize, usize, usize) {
    let mut rng = jidoka_sim::rng::Rng::new(2);
    let (mut wire, mut sent) = (Vec::new(), Vec::new());
    for t in results {
        if rng.chance(share) {
            wire.extend(jidoka_sim::controller::spoil_wire(t, &mut rng));
        } else {
            wire.extend(t.to_wire());
            sent.push(t.to_bytes());
        }
    }
    let intact = |got: Vec<Vec<u8>>| got.iter().filter(|b| sent.contains(b)).count();
    let mut framer = op::Framer::new();
    framer.push(&wire);
    let mut by_framer = Vec::new();
    while let Some(item) = framer.take() {
        if let op::Framed::Telegram(t) = item {
            by_framer.push(t.to_bytes());
        }
    }
    let mut by_plain = Vec::new();
    let mut at = 0;
    while at + 4 <= wire.len() {
        let len = std::str::from_utf8(&wire[at..at + 4]).ok().and_then(|d| d.parse::<usize>().ok());
        match len {
            Some(len) if len >= 20 && at + len < wire.len() && wire[at + len] == 0 => {
                if Telegram::parse(&wire[at..at + len]).is_ok() {
                    by_plain.push(wire[at..at + len].to_vec());
                }
                at += len + 1;
            }
            _ if wire[at] == 0 => at += 1,
            Some(len) if len >= 20 && at + len >= wire.len() => break,
            _ => at += 1,
        }
    }
    (sent.len(), intact(by_framer), intact(by_plain))
}

/// The MID 0061 values of a simulated tightening (for the codec benchmark).
fn sim_values(
    t: &jidoka_model::TighteningResult,
    at: &chrono::DateTime<chrono::Utc>,
) -> Vec<(&'static str, op::fields::Value)> {
    use op::fields::Value;
    vec![
        ("vin_number", Value::Text(t.vin.clone().unwrap_or_default())),
        ("parameter_set_id", Value::Int(t.pset.parse().unwrap_or(0))),
        ("torque", Value::Int((t.final_torque_nm * 100.0).round() as i64)),
        ("angle", Value::Int(t.final_angle_deg.round() as i64)),
        ("tightening_id", Value::Int(t.tightening_id.parse().unwrap_or(0))),
        ("tool_serial_number", Value::Text(t.tool.clone())),
        ("timestamp", Value::Timestamp(at.format("%Y-%m-%d:%H:%M:%S").to_string())),
    ]
}
