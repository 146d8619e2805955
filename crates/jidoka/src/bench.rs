//! `jidoka bench ...`: throughput and latency figures, printed as a table or JSON.

use crate::config::RuntimeConfig;
use crate::report::{Report, machine, percentile, progress};
use crate::runtime::{Runtime, RuntimeParts};
use jidoka_model::Event;
use jidoka_store::{SqliteStore, Store};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
    let runtime = Runtime::start(
        store.clone(),
        RuntimeParts { runtime: RuntimeConfig::default(), agents: None, master: None, sinks: Vec::new() },
    )?;
    let now = chrono::Utc::now();
    let events: Vec<Event> = (0..args.events).map(|i| sample_event(i, now)).collect::<anyhow::Result<_>>()?;
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
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}
