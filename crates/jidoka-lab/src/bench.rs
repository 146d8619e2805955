//! `jidoka bench ...`: throughput and latency figures, printed as a table or JSON.

use jidoka_model::Event;
use jidoka_service::config::RuntimeConfig;
use jidoka_service::report::{Report, machine, percentile, progress};
use jidoka_service::runtime::{Runtime, RuntimeParts, bench_runtime};
use jidoka_store::{SqliteStore, Store};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `jidoka bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Events to append in total.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Concurrent producers (think: connectors and HTTP clients), each waiting for its ack.
    #[arg(long, default_value_t = 64)]
    pub producers: usize,
    /// Events per append request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Store folder; default a fresh temporary folder removed afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A realistic mix: scans and tightening results (final values, no curve).
fn sample_event(i: usize, received_at: jidoka_model::Timestamp) -> anyhow::Result<Event> {
    let vin = format!("BENCH{:012}", i / 40);
    let v = if i.is_multiple_of(4) {
        json!({"source": "bench-scanner", "source_txn_id": format!("S{i}"), "occurred_at": "2026-11-24T08:00:00Z",
               "kind": "component_scanned",
               "data": {"vin": vin, "station": format!("ST{:03}", (i % 12) * 10), "part_number": "4711-A", "serial": format!("SN{i}")}})
    } else {
        json!({"source": "bench-ctrl", "source_txn_id": format!("T{i}"), "occurred_at": "2026-11-24T08:00:00Z",
               "kind": "tightening_result",
               "data": {"tightening_id": i.to_string(), "vin": vin, "station": "ST040", "tool": "NR-7", "pset": "3",
                        "joint": format!("J{}", i % 8), "category": "A", "final_torque_nm": 24.0 + (i % 7) as f64 * 0.1,
                        "final_angle_deg": 210.0, "torque_min_nm": 22.0, "torque_max_nm": 28.0, "controller_verdict": "OK"}})
    };
    Event::parse(v, received_at).map_err(|e| anyhow::anyhow!("bench event: {e}"))
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.events > 0 && args.producers > 0 && args.batch > 0,
        "--events, --producers and --batch must be positive"
    );
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("jidoka.sqlite"))?);
    let runtime = bench_runtime(store.clone(), None, None)?;
    let now = chrono::Utc::now();
    let events: Vec<Event> = (0..args.events).map(|i| sample_event(i, now)).collect::<anyhow::Result<_>>()?;
    // The peer writes the same rows afterwards.
    let rows: Vec<[String; 9]> = events.iter().map(event_row).collect();
    let bar = progress(args.events as u64, "ingest");
    let mut per_producer: Vec<Vec<Event>> = (0..args.producers).map(|_| Vec::new()).collect();
    for (i, ev) in events.into_iter().enumerate() {
        per_producer[i % args.producers].push(ev);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mine in per_producer {
        let ingest = runtime.ingest();
        let bar = bar.clone();
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(mine.len() / batch + 1);
            let mut queue = mine.into_iter();
            loop {
                let request: Vec<Event> = queue.by_ref().take(batch).collect();
                let n = request.len();
                if n == 0 {
                    break;
                }
                let t0 = Instant::now();
                let out = ingest.append(request, None).await?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(out.iter().all(|o| o.is_stored()), "an append was not stored");
                bar.inc(n as u64);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let commits = runtime.metrics.group_commits.load(std::sync::atomic::Ordering::Relaxed);
    let stored = store.stats()?.events;
    runtime.shutdown();
    anyhow::ensure!(stored as usize == args.events, "stored {stored} of {} events", args.events);
    latencies.sort_by(f64::total_cmp);
    let per_commit = (args.events as f64 / commits.max(1) as f64).round().max(1.0) as usize;
    let (raw, _) = raw_sqlite(&dir.join("raw-peer.sqlite"), &rows, per_commit, None)?;
    let rate = args.events as f64 / elapsed;
    let mut report = Report::new("bench ingest: durable appends to the embedded store (SQLite WAL, synchronous=FULL)");
    report
        .add("events", "events", args.events, "")
        .add("producers", "concurrent producers", args.producers, "")
        .add("batch", "events per request", args.batch, "")
        .add("events_per_s", "throughput", args.events as f64 / elapsed, "events/s")
        .add("p50_ms", "append latency p50", percentile(&latencies, 50.0), "ms")
        .add("p99_ms", "append latency p99", percentile(&latencies, 99.0), "ms")
        .add("max_ms", "append latency max", percentile(&latencies, 100.0), "ms")
        .add("group_commits", "group commits (fsyncs)", commits, "")
        .add("events_per_commit", "events per commit", args.events as f64 / commits.max(1) as f64, "")
        .add("raw_sqlite_events_per_s", "peer: the same rows, plain SQLite, same events per commit", raw, "events/s")
        .add("ratio_to_raw_sqlite", "Jidoka / plain SQLite", rate / raw, "")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}

/// An event as the store's row: the columns of `events`, as the store writes them.
fn event_row(ev: &Event) -> [String; 9] {
    let ts = jidoka_model::event::rfc3339::format;
    [
        ev.event_id.clone(),
        ev.source.clone(),
        ev.source_txn_id.clone(),
        ev.correlation_id.clone(),
        ev.kind().as_str().to_string(),
        ev.vin().unwrap_or_default().to_string(),
        ts(&ev.occurred_at),
        ts(&ev.received_at),
        ev.payload_json(),
    ]
}

/// The peer a practitioner would write: one connection, WAL, `synchronous=FULL`, the same table
/// and unique keys, `per_commit` rows per transaction. As fast as it can go (`pace` None), or
/// with commits started at `pace` events per second, the clock running from each commit's
/// scheduled start (a late commit counts its lateness). Events per second and each commit's
/// latency in ms.
fn raw_sqlite(
    path: &std::path::Path,
    rows: &[[String; 9]],
    per_commit: usize,
    pace: Option<f64>,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
           source_txn_id TEXT NOT NULL, correlation_id TEXT NOT NULL, kind TEXT NOT NULL, vin TEXT,
           occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL, UNIQUE (source, source_txn_id));
         CREATE INDEX events_vin ON events (vin) WHERE vin IS NOT NULL;",
    )?;
    let per_commit = per_commit.max(1);
    let mut latencies = Vec::with_capacity(rows.len() / per_commit + 1);
    let start = Instant::now();
    for (k, chunk) in rows.chunks(per_commit).enumerate() {
        let scheduled = match pace {
            Some(rate) => {
                let at = start + Duration::from_secs_f64((k * per_commit) as f64 / rate);
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                at
            }
            None => Instant::now(),
        };
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (event_id, source, source_txn_id, correlation_id, kind, vin, occurred_at, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            )?;
            for r in chunk {
                insert.execute(rusqlite::params_from_iter(r.iter()))?;
            }
        }
        tx.commit()?;
        latencies.push(scheduled.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok((rows.len() as f64 / start.elapsed().as_secs_f64(), latencies))
}

/// Options of `jidoka bench sequence`.
#[derive(Debug, Clone, clap::Args)]
pub struct SequenceArgs {
    /// BOM lines of the synthetic plant.
    #[arg(long, default_value_t = 2000)]
    pub bom_lines: usize,
    /// Engineering changes.
    #[arg(long, default_value_t = 50)]
    pub ecos: usize,
    /// Units for the pure validation run.
    #[arg(long, default_value_t = 2000)]
    pub units: usize,
    /// Events per second offered over HTTP in the end-to-end run.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Seconds of the end-to-end run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// HTTP connections sharing the offered rate (a line's scanners, controllers and gateways
    /// each send a few events per second over their own connection).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// ECOs released over the API after the end-to-end run (same service, same store), each
    /// followed by the next unit at the station scanning the part it supersedes.
    #[arg(long, default_value_t = 200)]
    pub ecos_released: usize,
    #[arg(long)]
    pub json: bool,
}

const STATIONS: usize = 40;
const FAMILIES: usize = 10;

/// A synthetic plant of the requested size: BOM lines spread over 40 stations with option
/// rules over 10 option families, and ECOs on some of the parts.
fn synthetic_master(bom_lines: usize, ecos: usize, rng: &mut jidoka_sim::rng::Rng) -> jidoka_model::master::MasterData {
    use jidoka_model::master::{BomItem, ChangePackage, Effectivity, MasterData, RoutingStep};
    let mut bom = Vec::with_capacity(bom_lines);
    for i in 0..bom_lines {
        let f1 = rng.below(FAMILIES);
        let rule = match i % 4 {
            0 => None,
            1 => Some(format!("F{f1}=V{}", rng.below(4))),
            2 => Some(format!("F{f1}=V{} & !F{}=V{}", rng.below(4), (f1 + 1) % FAMILIES, rng.below(4))),
            _ => Some(format!(
                "(F{f1}=V{} | F{}=V{}) & !F{}=V0",
                rng.below(4),
                (f1 + 2) % FAMILIES,
                rng.below(4),
                (f1 + 3) % FAMILIES
            )),
        };
        bom.push(BomItem {
            model: "*".into(),
            part_number: format!("P{i:05}"),
            quantity: 1.0,
            station: format!("S{:02}", i % STATIONS),
            operation: None,
            option_rule: rule,
            effectivity: Effectivity::default(),
        });
    }
    let changes = (0..ecos)
        .map(|e| {
            let part = format!("P{:05}", (e * 37) % bom_lines.max(1));
            ChangePackage {
                change_id: format!("ECO-{e}"),
                old_part_number: part.clone(),
                new_part_number: format!("{part}-B"),
                cut_in: Effectivity { from_sequence: Some(1 + (e as u64 * 97) % 1000), ..Effectivity::default() },
                old_valid_until: None,
                old_valid_until_sequence: None,
                description: None,
            }
        })
        .collect();
    let routing = (0..STATIONS)
        .map(|s| RoutingStep {
            model: "*".into(),
            station: format!("S{s:02}"),
            operation: format!("OP{s:02}"),
            step: s as u32 + 1,
            required_tightenings: Vec::new(),
        })
        .collect();
    MasterData { bom, changes, routing, ..MasterData::default() }
}

/// The events of `units` units passing every station, each scanning what its options need
/// (after ECOs); every `error_every`-th scan is a part from another station.
fn synthetic_events(
    master: &jidoka_model::master::MasterData,
    units: usize,
    error_every: usize,
    rng: &mut jidoka_sim::rng::Rng,
) -> Vec<serde_json::Value> {
    use jidoka_model::rule::Rule;
    let rules: Vec<Rule> = master
        .bom
        .iter()
        .map(|b| Rule::parse(b.option_rule.as_deref().unwrap_or("")).unwrap_or(Rule::Always))
        .collect();
    let mut out = Vec::new();
    let mut scans = 0usize;
    let ev = |n: &mut usize, kind: &str, data: serde_json::Value| {
        *n += 1;
        json!({"source": "bench-line", "source_txn_id": format!("B{n}"), "occurred_at": "2026-11-24T08:00:00Z", "kind": kind, "data": data})
    };
    let mut n = 0usize;
    for u in 0..units {
        let vin = format!("BENCH{u:012}");
        let options: Vec<String> = (0..FAMILIES).map(|f| format!("F{f}=V{}", rng.below(4))).collect();
        let set: std::collections::BTreeSet<String> = options.iter().cloned().collect();
        let sequence = u as u64 + 1;
        out.push(ev(
            &mut n,
            "work_order_released",
            json!({"work_order": format!("WO{u}"), "vin": vin, "model": "M", "options": options, "sequence": sequence}),
        ));
        for s in 0..STATIONS {
            let station = format!("S{s:02}");
            out.push(ev(&mut n, "unit_entered_station", json!({"vin": vin, "station": station})));
            for (i, b) in master.bom.iter().enumerate() {
                if b.station != station || !rules[i].holds(&set) {
                    continue;
                }
                let mut part = b.part_number.clone();
                if let Some(c) =
                    master.changes.iter().find(|c| c.old_part_number == part && c.status_for(sequence, None).0)
                {
                    part = c.new_part_number.clone();
                }
                scans += 1;
                if error_every > 0 && scans.is_multiple_of(error_every) {
                    part = format!("P{:05}", (i + 1) % master.bom.len());
                }
                out.push(ev(&mut n, "component_scanned", json!({"vin": vin, "station": station, "part_number": part})));
            }
            out.push(ev(
                &mut n,
                "operation_completed",
                json!({"vin": vin, "station": station, "operation": format!("OP{s:02}")}),
            ));
            out.push(ev(&mut n, "unit_left_station", json!({"vin": vin, "station": station})));
        }
    }
    out
}

pub async fn sequence(args: SequenceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0 && args.units > 0 && args.connections > 0,
        "--rate, --seconds, --units and --connections must be positive"
    );
    let mut rng = jidoka_sim::rng::Rng::new(1);
    let master = jidoka_service::config::master_from(synthetic_master(args.bom_lines, args.ecos, &mut rng))?;
    let Some(master_data) = master.clone() else { anyhow::bail!("no master data") };
    // 1. Pure validation on one thread.
    let values = synthetic_events(&master_data, args.units, 50, &mut rng);
    let now = chrono::Utc::now();
    let events: Vec<jidoka_model::StoredEvent> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Event::parse(v.clone(), now).map(|event| jidoka_model::StoredEvent { seq: i as u64 + 1, event }))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
    let mut router =
        jidoka_agents::Router::new(vec![Box::new(jidoka_agents::sequence::SequenceAgent::new(&master_data))]);
    let mut findings = Vec::new();
    let start = Instant::now();
    for ev in &events {
        router.process(ev, &mut findings);
    }
    let pure_s = start.elapsed().as_secs_f64();
    let pure_rate = events.len() as f64 / pure_s;
    let (n_events, n_findings) = (events.len(), findings.len());
    // Free the validation run's millions of events before timing the live path.
    drop((events, values, findings, router));

    // 2. End to end: HTTP ingest at a fixed rate → durable store → agent → Andon action stored.
    let mut e2e = end_to_end(&args, master, &master_data, &mut rng).await?;
    // 3. The peer: a plain SQLite loop writing the same rows at the same rate, in commits of as
    // many events as the service's commits held on average. What the disk gives one commit
    // with nothing else in its way: the floor under the end-to-end latency.
    let per_commit = (e2e.sent as f64 / e2e.commits.max(1) as f64).round().max(1.0) as usize;
    let rows = std::mem::take(&mut e2e.rows);
    let rate = args.rate as f64;
    let (_, raw) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir()?;
        raw_sqlite(&dir.path().join("raw-peer.sqlite"), &rows, per_commit, Some(rate))
    })
    .await??;

    let mut report = Report::new(format!(
        "bench sequence: {} BOM lines over {STATIONS} stations, {} ECOs",
        args.bom_lines, args.ecos
    ));
    report
        .add("events", "events validated (pure)", n_events, "")
        .add("findings", "findings (pure)", n_findings, "")
        .add("events_per_s", "pure validation, one thread", pure_rate, "events/s")
        .add("e2e_rate", "end-to-end offered rate over HTTP", args.rate, "events/s")
        .add("e2e_connections", "HTTP connections sharing it", args.connections, "")
        .add("e2e_events", "end-to-end events sent", e2e.sent, "")
        .add("e2e_alerts", "Andon actions measured", e2e.latencies.len(), "")
        .add("e2e_unmeasured", "findings missed by the measuring side (lag)", e2e.lagged, "")
        .add("e2e_p50_ms", "accepted over HTTP → Andon action stored, p50", percentile(&e2e.latencies, 50.0), "ms")
        .add("e2e_p99_ms", "accepted over HTTP → Andon action stored, p99", percentile(&e2e.latencies, 99.0), "ms")
        .add("e2e_max_ms", "accepted over HTTP → Andon action stored, max", percentile(&e2e.latencies, 100.0), "ms")
        .add("e2e_events_per_commit", "events per group commit", e2e.sent as f64 / e2e.commits.max(1) as f64, "")
        .add(
            "raw_p50_ms",
            "peer: plain SQLite, same rows, rate and events per commit, commit p50",
            percentile(&raw, 50.0),
            "ms",
        )
        .add(
            "raw_p99_ms",
            "peer: plain SQLite, same rows, rate and events per commit, commit p99",
            percentile(&raw, 99.0),
            "ms",
        )
        .add(
            "ratio_p99_to_raw",
            "Jidoka end-to-end p99 / plain SQLite commit p99",
            percentile(&e2e.latencies, 99.0) / percentile(&raw, 99.0).max(1e-9),
            "",
        )
        .add(
            "eco_released",
            "ECOs released over the API, each followed by a scan of the old part",
            args.ecos_released,
            "",
        )
        .add("eco_judged", "of those scans judged superseded by that very ECO", e2e.eco.judged_by_it, "")
        .add("eco_p50_ms", "ECO accepted → first scan judged by it, p50", percentile(&e2e.eco.latencies, 50.0), "ms")
        .add("eco_p99_ms", "ECO accepted → first scan judged by it, p99", percentile(&e2e.eco.latencies, 99.0), "ms")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}

struct EndToEnd {
    eco: EcoInForce,
    sent: usize,
    latencies: Vec<f64>,
    /// Findings the measuring side missed because it fell behind (reported, never hidden).
    lagged: u64,
    /// The events sent, as the store's rows, for the peer.
    rows: Vec<[String; 9]>,
    /// Group commits of the end-to-end run (before the ECO phase).
    commits: u64,
}

/// A minimal keep-alive HTTP/1.1 client, enough to post JSON to our own server on loopback.
async fn post(
    stream: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    token: &str,
    body: &[u8],
) -> anyhow::Result<u16> {
    post_to(stream, "/api/events", token, body).await
}

async fn post_to(
    stream: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    path: &str,
    token: &str,
    body: &[u8],
) -> anyhow::Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut buf = vec![0u8; length];
    stream.read_exact(&mut buf).await?;
    Ok(status)
}

/// A server on loopback with the given agents, a fresh store and one service-account token.
struct Served {
    addr: std::net::SocketAddr,
    token: String,
    /// An integrator's token (master data).
    integrator: String,
    runtime: Runtime,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn serve_for_bench(agents: jidoka_agents::AgentsConfig, master: jidoka_agents::Master) -> anyhow::Result<Served> {
    use jidoka_service::api::{AppState, router};
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("jidoka.sqlite"))?);
    let runtime = bench_runtime(store.clone(), Some(agents.clone()), master.clone())?;
    let mut auth = jidoka_service::auth::Auth::default();
    let (token, _) = jidoka_service::auth::new_token()?;
    auth.add_token(&token, "bench", jidoka_service::auth::Role::Agent);
    let (integrator, _) = jidoka_service::auth::new_token()?;
    auth.add_token(&integrator, "bench-mes", jidoka_service::auth::Role::Integrator);
    let state = Arc::new(AppState {
        ingest: runtime.ingest(),
        store: store.clone(),
        metrics: runtime.metrics.clone(),
        auth,
        max_batch_events: 10_000,
        metrics_open_to_loopback: true,
        agents: jidoka_agents::Router::new(jidoka_agents::build_agents(&agents, &master)).agent_names(),
        approval_ttl_minutes: 480,
        view: Default::default(),
        findings: runtime.findings.clone(),
        master: runtime.master.clone(),
        narrator: None,
        links: Vec::new(),
    });
    let app = router(state, 1 << 26);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let metrics = runtime.metrics.clone();
    let server = tokio::spawn(async move {
        let limits = jidoka_service::http::HttpLimits::default();
        let _ = jidoka_service::http::serve(listener, app, limits, metrics, std::future::pending()).await;
    });
    Ok(Served { addr, token, integrator, runtime, server, _dir: dir })
}

/// Options of `jidoka bench api`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Units of the default plant whose events are posted (about 50 events each, 40 of them
    /// tightenings with curves).
    #[arg(long, default_value_t = 200)]
    pub units: u64,
    /// Events per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Concurrent keep-alive connections, each sending its next request when the last is answered.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[arg(long)]
    pub json: bool,
}

/// The default plant's simulation of `units` units (seed 1, every curve) and its master data.
fn default_plant(units: u64) -> anyhow::Result<(jidoka_sim::Simulation, jidoka_agents::Master)> {
    let (plant, _) = jidoka_service::demo::load_plant(None)?;
    let master = jidoka_service::config::master_from(plant.master_data())?;
    Ok((jidoka_sim::Simulation::new(plant, 1, Some(units), jidoka_sim::CurveMode::All), master))
}

/// `jidoka bench api`: ingest over HTTP into the full service (all agents, governance, audit):
/// events/s and the latency of each request, closed loop.
pub async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let (mut sim, master) = default_plant(args.units)?;
    let mut events: Vec<Vec<u8>> = Vec::new();
    while sim.has_more() {
        for e in sim.next_slot().events {
            events.push(serde_json::to_vec(&e)?);
        }
    }
    let bytes: usize = events.iter().map(Vec::len).sum();
    let batch = args.batch.max(1);
    let bodies: Vec<Vec<u8>> = events
        .chunks(batch)
        .map(|chunk| {
            if batch == 1 {
                chunk[0].clone()
            } else {
                let mut b = b"[".to_vec();
                for (i, e) in chunk.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    b.extend_from_slice(e);
                }
                b.push(b']');
                b
            }
        })
        .collect();
    let Served { addr, token, runtime, server, _dir, .. } =
        serve_for_bench(jidoka_agents::AgentsConfig::default(), master).await?;
    let connections = args.connections.max(1);
    let bar = progress(bodies.len() as u64, "bench api");
    let start = Instant::now();
    let mut workers = Vec::new();
    for c in 0..connections {
        let mine: Vec<Vec<u8>> = bodies.iter().skip(c).step_by(connections).cloned().collect();
        let (token, bar) = (token.clone(), bar.clone());
        workers.push(tokio::spawn(async move {
            let mut stream = tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await?);
            let mut latencies = Vec::with_capacity(mine.len());
            for body in mine {
                let t0 = Instant::now();
                let status = post(&mut stream, &token, &body).await?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(status == 200, "ingest answered {status}");
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    server.abort();
    let _ = server.await;
    let (findings, audit) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, usize)> {
        runtime.wait_for_agents(Duration::from_secs(60));
        let stats = runtime.store.stats()?;
        let (mut audit, mut after) = (0, 0);
        while let Some(last) = runtime.store.audit_after(after, 10_000)?.last().map(|r| r.seq) {
            audit = last as usize;
            after = last;
        }
        runtime.shutdown();
        Ok((stats.findings, audit))
    })
    .await??;
    latencies.sort_by(f64::total_cmp);
    let mut report = Report::new(format!(
        "bench api: {} events of {} units of the default plant over HTTP, {batch} per request, {connections} connections, all agents",
        events.len(),
        args.units
    ));
    report
        .add("events", "events", events.len(), "")
        .add("mean_event_bytes", "mean event size", (bytes / events.len().max(1)) as u64, "bytes")
        .add("requests", "requests", bodies.len(), "")
        .add("events_per_s", "throughput", (events.len() as f64 / elapsed).round(), "events/s")
        .add("p50_ms", "request latency p50", percentile(&latencies, 50.0), "ms")
        .add("p99_ms", "request latency p99", percentile(&latencies, 99.0), "ms")
        .add("max_ms", "request latency max", percentile(&latencies, 100.0), "ms")
        .add("findings", "findings stored", findings, "")
        .add("audit_records", "audit records written", audit, "")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}

async fn end_to_end(
    args: &SequenceArgs,
    master: jidoka_agents::Master,
    master_data: &jidoka_model::master::MasterData,
    rng: &mut jidoka_sim::rng::Rng,
) -> anyhow::Result<EndToEnd> {
    let mut agents = jidoka_agents::AgentsConfig::default();
    agents.torque_window.enabled = false;
    let Served { addr, token, integrator, runtime, server, _dir } = serve_for_bench(agents, master).await?;
    // Every 20th scan is wrong, so about 5 % of events raise an Andon alert.
    let units = ((args.rate * args.seconds) as usize / 700).max(2);
    let values = synthetic_events(master_data, units, 20, rng);
    let total = values.len().min((args.rate * args.seconds) as usize);
    // Parsed once: their ids time the findings, and the peer writes the same rows afterwards,
    // at the same pace.
    let now = chrono::Utc::now();
    let events: Vec<Event> = values
        .iter()
        .take(total)
        .map(|v| Event::parse(v.clone(), now))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
    let rows: Vec<[String; 9]> = events.iter().map(event_row).collect();
    let mut findings_rx = runtime.findings.subscribe();
    let sent_at: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let collector = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut lagged = 0u64;
            loop {
                match findings_rx.recv().await {
                    // Only a HOLD raises the Andon action being timed.
                    Ok(f) if f.kind.starts_with("sequence.") && f.verdict == jidoka_model::Verdict::Hold => {
                        let t0 = f.evidence.first().and_then(|e| sent_at.lock().ok().and_then(|m| m.get(e).copied()));
                        if let Some(t0) = t0 {
                            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged += n,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            (latencies, lagged)
        })
    };
    let connections = args.connections;
    let interval = Duration::from_secs_f64(connections as f64 / args.rate as f64);
    let bar = progress(total as u64, "end-to-end");
    let mut senders = Vec::new();
    for c in 0..connections {
        let mine: Vec<(String, Vec<u8>)> = values
            .iter()
            .zip(&events)
            .skip(c)
            .step_by(connections)
            .map(|(v, e)| (e.event_id.clone(), serde_json::to_vec(v).unwrap_or_default()))
            .collect();
        let (token, sent_at, bar) = (token.clone(), sent_at.clone(), bar.clone());
        senders.push(tokio::spawn(async move {
            let mut stream = tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await?);
            let start = tokio::time::Instant::now() + Duration::from_millis(50);
            for (k, (id, body)) in mine.into_iter().enumerate() {
                // The clock starts at the scheduled send time, so a stall that delays later
                // sends counts against the latency (no coordinated omission).
                let scheduled = start + interval * k as u32;
                if let Ok(mut m) = sent_at.lock() {
                    m.insert(id, scheduled.into_std());
                }
                tokio::time::sleep_until(scheduled).await;
                let status = post(&mut stream, &token, &body).await?;
                anyhow::ensure!(status == 200, "ingest answered {status}");
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // Events are spread over the connections, so a unit's events can arrive out of order; the
    // run compares latencies only, never findings.
    for s in senders {
        s.await??;
    }
    bar.finish_and_clear();
    let commits = runtime.metrics.group_commits.load(std::sync::atomic::Ordering::Relaxed);
    let eco = eco_in_force(addr, &token, &integrator, &runtime, args.ecos_released).await?;
    server.abort();
    let _ = server.await;
    tokio::task::spawn_blocking(move || {
        runtime.wait_for_agents(Duration::from_secs(30));
        runtime.shutdown();
    })
    .await?;
    let (mut latencies, lagged) = collector.await?;
    latencies.sort_by(f64::total_cmp);
    Ok(EndToEnd { sent: total, latencies, lagged, eco, rows, commits })
}

/// ECOs released over the API on the service the end-to-end run has just fed, each followed at
/// once by a scan of the part it supersedes: how long from the API accepting an ECO to the
/// first scan judged by it (the `sequence.superseded` finding that names it), and how many
/// scans it judged.
struct EcoInForce {
    latencies: Vec<f64>,
    judged_by_it: usize,
}

async fn eco_in_force(
    addr: std::net::SocketAddr,
    token: &str,
    integrator: &str,
    runtime: &Runtime,
    releases: usize,
) -> anyhow::Result<EcoInForce> {
    // P00040 sits at S00 with no option rule and no ECO of the synthetic plant.
    let (part, station) = ("P00040", "S00");
    let mut stream = tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await?);
    let mut findings = runtime.findings.subscribe();
    let mut out = EcoInForce { latencies: Vec::new(), judged_by_it: 0 };
    let event = |txn: String, kind: &str, data: serde_json::Value| json!({"source": "bench-eco", "source_txn_id": txn, "occurred_at": "2026-11-24T09:00:00Z", "kind": kind, "data": data});
    for k in 0..releases {
        let vin = format!("ECOBN{k:012}");
        let change_id = format!("ECO-BENCH-{k}");
        let mut change = json!({"revision": change_id, "rows": {"changes": [{"change_id": change_id,
            "old_part_number": part, "new_part_number": format!("{part}-R{k}"), "cut_in": {"from_sequence": 1}}]}});
        if k > 0 {
            change["changes_withdrawn"] = json!([format!("ECO-BENCH-{}", k - 1)]);
        }
        let status = post_to(&mut stream, "/api/master-data", integrator, &serde_json::to_vec(&change)?).await?;
        anyhow::ensure!(status == 200, "master data change answered {status}");
        let accepted = Instant::now();
        // The next unit at the station (requirements are fixed when a unit enters) scans the
        // part the ECO has just superseded.
        let scan =
            event(format!("S{k}"), "component_scanned", json!({"vin": vin, "station": station, "part_number": part}));
        let scan_id = Event::parse(scan.clone(), chrono::Utc::now()).map(|e| e.event_id).unwrap_or_default();
        let unit = json!([
            event(
                format!("W{k}"),
                "work_order_released",
                json!({"work_order": format!("WO-ECO{k}"), "vin": vin, "model": "M", "options": [], "sequence": 1_000_000 + k})
            ),
            event(format!("E{k}"), "unit_entered_station", json!({"vin": vin, "station": station})),
            scan,
        ]);
        anyhow::ensure!(post(&mut stream, token, &serde_json::to_vec(&unit)?).await? == 200, "unit not accepted");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), findings.recv()).await {
                Ok(Ok(f)) if f.evidence.first() == Some(&scan_id) => {
                    if f.kind == "sequence.superseded" && f.reason.contains(&change_id) {
                        out.judged_by_it += 1;
                        out.latencies.push(accepted.elapsed().as_secs_f64() * 1000.0);
                    }
                    break;
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                _ => {}
            }
        }
    }
    out.latencies.sort_by(f64::total_cmp);
    Ok(out)
}

/// Options of `jidoka bench outbox`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutboxArgs {
    /// OData service root of the MES (`scripts/mes-peer.sh PORT` starts a local one at
    /// `http://127.0.0.1:PORT/sit-svc/Application/AppJidoka/odata`).
    #[arg(long)]
    pub mes_url: String,
    /// Approved Nonconformance actions to deliver.
    #[arg(long, default_value_t = 500)]
    pub actions: usize,
    #[arg(long)]
    pub json: bool,
}

/// `jidoka bench outbox`: approved actions delivered per second to an OData MES (each is a
/// read-back by key and a command), through the real outbox.
pub fn outbox(args: OutboxArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("jidoka.sqlite"))?);
    let run = chrono::Utc::now().timestamp_millis().to_string();
    let mut findings = Vec::with_capacity(args.actions);
    let mut actions = Vec::with_capacity(args.actions);
    for i in 0..args.actions {
        let finding_id = format!("F-bench-{run}-{i}");
        findings.push(jidoka_model::Finding {
            finding_id: finding_id.clone(),
            agent: "bench".into(),
            agent_version: "1".into(),
            kind: "torque.cross_thread".into(),
            verdict: jidoka_model::Verdict::Hold,
            severity: jidoka_model::Severity::Critical,
            confidence: 0.95,
            reason: "bench".into(),
            subject: jidoka_model::Subject { vin: Some("1HGCM82633A004352".into()), ..Default::default() },
            evidence: vec![format!("ev-{i}")],
            correlation_id: format!("bench:{i}"),
            source_txn_id: format!("T{i}"),
            occurred_at: chrono::Utc::now(),
            details: serde_json::Value::Null,
        });
        actions.push(jidoka_model::Action {
            action_id: format!("A-bench-{run}-{i}"),
            finding_id,
            kind: jidoka_model::ActionKind::CreateNonconformance,
            status: jidoka_model::ActionStatus::Approved,
            payload: serde_json::json!({"severity": "critical", "reason": "bench", "subject": {"vin": "1HGCM82633A004352"}}),
            idempotency_key: format!("jidoka:bench-{run}-{i}"),
            correlation_id: format!("bench:{i}"),
            created_at: chrono::Utc::now(),
        });
    }
    store.commit_findings("bench", 0, &findings, &actions)?;
    let sink = jidoka_connectors::odata::OdataSinkConfig {
        name: "mes".into(),
        base_url: args.mes_url.clone(),
        profile_name: "opcenter".into(),
        profile: None,
        token_env: None,
        oauth2: None,
        ca_file: None,
        timeout_ms: 10_000,
        kinds: Vec::new(),
    };
    let runtime_config = RuntimeConfig { outbox_poll_ms: 10, ..RuntimeConfig::default() };
    let start = Instant::now();
    let runtime = Runtime::start(
        store.clone(),
        RuntimeParts {
            runtime: runtime_config,
            agents: None,
            master: None,
            sinks: vec![jidoka_connectors::SinkConfig::Odata(Box::new(sink))],
            own_sinks: Default::default(),
            governance: Default::default(),
        },
    )?;
    let bar = progress(args.actions as u64, "bench outbox");
    let query = jidoka_store::ActionQuery {
        status: Some(jidoka_model::ActionStatus::Delivered),
        limit: 10_000,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut done = 0;
    while done < args.actions && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        done = store.actions(&query)?.items.len();
        bar.set_position(done as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    runtime.shutdown();
    anyhow::ensure!(done == args.actions, "only {done} of {} delivered within 600 s", args.actions);
    let mut report =
        Report::new(format!("bench outbox: {} approved Nonconformances to {}", args.actions, args.mes_url));
    report
        .add("actions", "actions delivered", done, "")
        .add("actions_per_s", "throughput", (done as f64 / elapsed * 10.0).round() / 10.0, "actions/s")
        .add("ms_per_action", "per action (read-back by key + command)", elapsed * 1000.0 / done.max(1) as f64, "ms")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}

/// Options of `jidoka bench dashboard`.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// Findings in the store when the pages are timed (a simulated run's findings, copied under
    /// new ids up to this number, each with its proposed actions and audit records).
    #[arg(long, default_value_t = 100_000)]
    pub findings: usize,
    /// Units of the default plant simulated first (their events fill the line view).
    #[arg(long, default_value_t = 300)]
    pub units: u64,
    /// Requests per page.
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    #[arg(long)]
    pub json: bool,
}

/// `jidoka bench dashboard`: server time of each dashboard page (request in, page out,
/// in-process, no network) with a store of `--findings` findings.
pub async fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    use jidoka_service::api::{AppState, router};
    use tower::ServiceExt;
    let (mut sim, master) = default_plant(args.units)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("jidoka.sqlite"))?);
    let runtime = bench_runtime(store.clone(), Some(jidoka_agents::AgentsConfig::default()), master)?;
    let ingest = runtime.ingest();
    let page_ingest = runtime.ingest();
    let mut events = 0usize;
    while sim.has_more() {
        let slot = sim.next_slot().events;
        events += slot.len();
        ingest.append(slot, None).await.map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
    }
    let fill_store = store.clone();
    let target = args.findings;
    let (real, total) = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize)> {
        runtime.wait_for_agents(Duration::from_secs(120));
        let mut real = Vec::new();
        let mut after = 0;
        loop {
            let page = fill_store.findings_in_order(after, 1000)?;
            let Some(next) = page.next_cursor else {
                real.extend(page.items);
                break;
            };
            real.extend(page.items);
            after = next;
        }
        anyhow::ensure!(!real.is_empty(), "the simulated run produced no findings");
        let policies = Vec::new();
        let (n_real, mut total) = (real.len(), real.len());
        let mut i = 0;
        while total < target {
            let chunk: Vec<jidoka_model::Finding> = (0..(target - total).min(2000))
                .map(|k| {
                    let mut f = real[(i + k) % n_real].clone();
                    f.finding_id = format!("{}-copy{}", f.finding_id, i + k);
                    f
                })
                .collect();
            let actions = jidoka_service::governance::propose_all(&chunk, &policies);
            fill_store.commit_findings("bench-fill", 0, &chunk, &actions)?;
            total += chunk.len();
            i += chunk.len();
        }
        runtime.shutdown();
        Ok((n_real, total))
    })
    .await??;
    let mut auth = jidoka_service::auth::Auth::default();
    let (supervisor, _) = jidoka_service::auth::new_token()?;
    let (quality, _) = jidoka_service::auth::new_token()?;
    auth.add_token(&supervisor, "bench-supervisor", jidoka_service::auth::Role::Supervisor);
    auth.add_token(&quality, "bench-quality", jidoka_service::auth::Role::QualityEngineer);
    let (findings_tx, _) = tokio::sync::broadcast::channel(16);
    let state = Arc::new(AppState {
        // Pages never ingest: the stopped runtime's handle is enough.
        ingest: page_ingest,
        store: store.clone(),
        metrics: Default::default(),
        auth,
        max_batch_events: 100,
        metrics_open_to_loopback: false,
        agents: Vec::new(),
        approval_ttl_minutes: 100_000,
        view: Default::default(),
        findings: findings_tx,
        master: Default::default(),
        narrator: None,
        links: Vec::new(),
    });
    let mut after = 0;
    let mut ncrs = Vec::new();
    loop {
        let page = store.events_after(after, 5000)?;
        let Some(last) = page.last_seq() else { break };
        state.view.apply(&page.events);
        ncrs.extend(page.events.iter().filter(|e| e.event.kind() == jidoka_model::EventKind::NcrCreated).cloned());
        after = last;
    }
    // A full defect window for the Pareto page: the run's NCRs repeated under new ids.
    let real_ncrs = ncrs.len();
    if !ncrs.is_empty() {
        let fill: Vec<jidoka_model::StoredEvent> = (0..jidoka_service::dashboard::view::DEFECT_WINDOW)
            .map(|i| {
                let mut e = ncrs[i % ncrs.len()].clone();
                e.event.event_id = format!("{}-copy{i}", e.event.event_id);
                e
            })
            .collect();
        state.view.apply(&fill);
    }
    let app = router(state.clone(), 1 << 20);
    // A torque HOLD with its curve, and one of its actions, as a supervisor would open them.
    let hold = store
        .findings(&jidoka_store::FindingQuery {
            verdict: Some(jidoka_model::Verdict::Hold),
            agent: Some("torque-audit".into()),
            limit: 1,
            ..Default::default()
        })?
        .items
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no torque HOLD in the simulated run"))?;
    let action = store
        .actions(&jidoka_store::ActionQuery {
            finding_id: Some(hold.finding_id.clone()),
            limit: 1,
            ..Default::default()
        })?
        .items
        .into_iter()
        .next()
        .map(|a| a.action.action_id)
        .unwrap_or_default();
    let pages: Vec<(&str, String, &str, usize)> = vec![
        ("line", "/ui".into(), &supervisor, args.requests),
        ("queue", "/ui/queue".into(), &supervisor, args.requests),
        ("queue_hold", "/ui/queue?verdict=HOLD".into(), &supervisor, args.requests),
        ("finding", format!("/ui/findings/{}", hold.finding_id), &supervisor, args.requests),
        ("defects", "/ui/patterns".into(), &quality, args.requests),
        ("audit", "/ui/audit".into(), &quality, args.requests),
        ("audit_ref", format!("/ui/audit?ref={action}"), &quality, args.requests),
        ("audit_verify", "/ui/audit?verify=1".into(), &quality, 3),
    ];
    let audit_records = store.audit_head()?;
    let mut report = Report::new(format!(
        "bench dashboard: server time per page, {total} findings ({real} from {} units of the default plant, the rest copies), {audit_records} audit records",
        args.units
    ));
    report
        .add("findings", "findings stored", total, "")
        .add("events", "events stored", events, "")
        .add("defects", "defects in the Pareto window", state.view.defects().len(), "")
        .add("defects_real", "of which NCRs of the run", real_ncrs, "");
    for (key, uri, token, n) in pages {
        let mut times = Vec::with_capacity(n);
        let mut bytes = 0;
        for _ in 0..n {
            let req = axum::http::Request::builder()
                .uri(&uri)
                .header("cookie", format!("jidoka_session={token}"))
                .body(axum::body::Body::empty())?;
            let t0 = Instant::now();
            let resp = app.clone().oneshot(req).await?;
            anyhow::ensure!(resp.status() == 200, "{uri} answered {}", resp.status());
            bytes = axum::body::to_bytes(resp.into_body(), 1 << 26).await?.len();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        report
            .add(
                &format!("{key}_p50_ms"),
                &format!("{uri} p50"),
                (percentile(&times, 50.0) * 10.0).round() / 10.0,
                "ms",
            )
            .add(
                &format!("{key}_p99_ms"),
                &format!("{uri} p99"),
                (percentile(&times, 99.0) * 10.0).round() / 10.0,
                "ms",
            )
            .add(&format!("{key}_kib"), &format!("{uri} size"), bytes / 1024, "KiB");
    }
    report.add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}
