//! `jidoka serve` and `jidoka demo`: open the store, start the runtime, the configured sources
//! and the HTTP API, and shut all of it down in order on Ctrl-C / SIGTERM.

use crate::api::{self, AppState};
use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::demo::DemoFeed;
use crate::runtime::{Ingest, Runtime, RuntimeParts};
use anyhow::Context;
use jidoka_agents::{Router, build_agents};
use jidoka_connectors::jsonl::{Position, read_chunk};
use jidoka_connectors::{FileSourceConfig, SourceConfig};
use jidoka_store::{Checkpoint, SqliteStore, Store};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long in-flight HTTP requests may take to finish after a shutdown signal.
const HTTP_DRAIN: Duration = Duration::from_secs(30);

/// Open (or create) the store in `data_dir`. The folder is made readable by its owner only: it
/// holds every event, finding and audit record of the plant.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(err) = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)) {
            tracing::warn!(dir = %data_dir.display(), error = %err, "cannot make the data folder private to its owner");
        }
    }
    let store = SqliteStore::open(data_dir.join("jidoka.sqlite"))?;
    Ok(Arc::new(store))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight work");
}

/// What `jidoka demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Plant time runs this many times faster than real time.
    pub speed: f64,
    pub seed: u64,
    /// Stop feeding after this many units (`None`: until stopped).
    pub units: Option<u64>,
    /// Plant description; `None`: the embedded default.
    pub plant: Option<PathBuf>,
}

/// `jidoka demo`: the simulated plant feeding all agents, with one-time logins printed for the
/// roles a plant has, until a shutdown signal.
pub async fn demo(options: DemoOptions) -> anyhow::Result<()> {
    let DemoOptions { data_dir, listen, speed, seed, units, plant } = options;
    anyhow::ensure!(speed > 0.0 && speed.is_finite(), "--speed must be a positive number");
    let (plant, _) = crate::demo::load_plant(plant.as_deref())?;
    let mut config = Config::default();
    config.store.data_dir = data_dir.clone();
    config.api.listen = listen;
    config.sinks.push(jidoka_connectors::SinkConfig::Jsonl(jidoka_connectors::JsonlSinkConfig {
        name: "demo-mes-outbox".into(),
        path: data_dir.join("mes-actions.jsonl"),
        kinds: Vec::new(),
    }));
    let mut logins = Vec::new();
    std::fs::create_dir_all(&data_dir)?;
    println!(
        "jidoka demo: {} ({} JPH, {} stations), seed {seed}, {speed}x real time, data in {}",
        plant.line.name,
        plant.line.jph,
        plant.stations.len(),
        data_dir.display()
    );
    println!("one-time API tokens for this run (valid until it stops):");
    for role in [Role::Admin, Role::Supervisor, Role::QualityEngineer, Role::Operator] {
        let (token, _) = crate::auth::new_token()?;
        println!("  {:<17} {token}", role.as_str());
        logins.push((token, format!("demo-{}", role.as_str()), role));
    }
    // People sign in to the dashboard with a password, as in a plant; two supervisors
    // so four-eyes approvals can be tried.
    println!("one-time dashboard logins for this run (user  password):");
    for (name, role) in [
        ("demo-supervisor", Role::Supervisor),
        ("demo-supervisor-2", Role::Supervisor),
        ("demo-quality", Role::QualityEngineer),
        ("demo-operator", Role::Operator),
        ("demo-admin", Role::Admin),
    ] {
        let password = crate::auth::new_password()?;
        println!("  {name:<17} {password}");
        config.api.users.push(crate::auth::UserConfig {
            name: name.into(),
            role,
            password_hash: crate::auth::hash_password(&password)?,
        });
    }
    let ground_truth = data_dir.join("ground_truth.jsonl");
    let feed = DemoFeed { plant, seed, speed, units, release_ahead: crate::demo::RELEASE_AHEAD, ground_truth };
    serve(config, logins, Some(feed)).await
}

/// Run until a shutdown signal. `extra_tokens` are added to the configured ones (demo logins).
pub async fn serve(
    config: Config,
    extra_tokens: Vec<(String, String, Role)>,
    demo: Option<DemoFeed>,
) -> anyhow::Result<()> {
    let store = open_store(&config.store.data_dir)?;
    // When the master data file was last changed, taken before it is read: an edit made from
    // here on is seen by the watcher, however late its thread starts.
    let master_file_modified = master_file(&config).and_then(|p| modified(p));
    let master = match &demo {
        Some(feed) => crate::config::master_from(feed.plant.master_data())?,
        None => config.load_master()?,
    };
    // Agents take master data from the log: the configured master data is logged (when it is
    // not what the log already has in force) before any source starts.
    // The demo's line takes approved re-sequencings from its own simulated MES.
    let mut parts = RuntimeParts::from_config(&config, None);
    let mes = demo.as_ref().map(|_| {
        let (sink, rx) = crate::demo::SimulatedMes::new();
        parts.own_sinks = crate::runtime::OwnSinks::new(vec![Box::new(sink)]);
        rx
    });
    let runtime = Runtime::start(store.clone(), parts)?;
    match &master {
        Some(m) => {
            let origin = if demo.is_some() { "demo-plant" } else { config.master_data.origin() };
            let (ingest, in_force, m, last) = (runtime.ingest(), runtime.master.clone(), m.clone(), store.last_seq()?);
            tokio::task::spawn_blocking(move || {
                crate::master_data::offer_blocking(&ingest, &in_force, &m, origin, last)
            })
            .await??;
        }
        None if runtime.master.get().is_none() => {
            tracing::info!("no master data configured or logged ([master_data]): sequence checks are off")
        }
        None => tracing::info!("master data from the log stays in force"),
    }
    let mut auth = Auth::from_config(&config.api.tokens, &config.api.users);
    for (token, name, role) in &extra_tokens {
        auth.add_token(token, name, *role);
    }
    if auth.is_empty() {
        tracing::warn!("no API tokens configured: every /api/ request will be refused (see `jidoka token new`)");
    }
    let agents = Router::new(build_agents(&config.agents, &master)).agent_names();
    let state = Arc::new(AppState {
        ingest: runtime.ingest(),
        store: store.clone(),
        metrics: runtime.metrics.clone(),
        auth,
        max_batch_events: config.api.max_batch_events,
        metrics_open_to_loopback: config.api.metrics_open_to_loopback,
        agents,
        approval_ttl_minutes: config.governance.approval_ttl_minutes,
        view: Arc::new(crate::dashboard::view::LineView::new(config.agents.torque_audit.drift.clone())),
        findings: runtime.findings.clone(),
        master: runtime.master.clone(),
        narrator: config.narrative.clone().map(|n| Arc::new(crate::narrate::Narrator::new(n))),
        links: config
            .sources
            .iter()
            .filter_map(|s| match s {
                SourceConfig::OpenProtocol(c) => Some(api::ControllerLink {
                    name: c.name.clone(),
                    station: c.station.clone(),
                    address: c.address.clone(),
                    stats: Arc::default(),
                }),
                _ => None,
            })
            .collect(),
    });
    let (view_stop, view_stop_rx) = tokio::sync::watch::channel(false);
    let closing_view = state.view.clone();
    let follower = tokio::spawn(crate::dashboard::view::follow(store.clone(), state.view.clone(), view_stop_rx));
    let tls = match &config.api.tls {
        Some(t) => Some(t.acceptor().map_err(|(field, reason)| anyhow::anyhow!("api.tls.{field}: {reason}"))?),
        None => None,
    };
    let links = state.links.clone();
    let mut app = api::router(state, config.api.max_body_bytes);
    if tls.is_some() {
        app = app.layer(axum::middleware::map_response(|r| async move { crate::tls::secure_response(r) }));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    println!("jidoka listening on {scheme}://{addr}");
    println!("dashboard: {scheme}://{addr}/ui");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, data_dir = %config.store.data_dir.display(), "serving");

    let stop = Arc::new(AtomicBool::new(false));
    let mut source_threads = Vec::new();
    for source in &config.sources {
        match source {
            SourceConfig::File(c) => {
                let (c, ingest, store, stop) = (c.clone(), runtime.ingest(), store.clone(), stop.clone());
                source_threads.push(
                    std::thread::Builder::new()
                        .name(format!("source-{}", c.name))
                        .spawn(move || file_source(c, ingest, store, stop))?,
                );
            }
            SourceConfig::Odata(c) => {
                let (c, ingest, store, stop) = ((**c).clone(), runtime.ingest(), store.clone(), stop.clone());
                source_threads.push(
                    std::thread::Builder::new()
                        .name(format!("source-{}", c.name))
                        .spawn(move || odata_source(c, ingest, store, stop))?,
                );
            }
            SourceConfig::OpenProtocol(c) => {
                let (c, ingest, store, stop) = ((**c).clone(), runtime.ingest(), store.clone(), stop.clone());
                let data_dir = config.store.data_dir.clone();
                let stats = links.iter().find(|l| l.name == c.name).map(|l| l.stats.clone()).unwrap_or_default();
                source_threads.push(
                    std::thread::Builder::new()
                        .name(format!("source-{}", c.name))
                        .spawn(move || crate::op_link::source(c, ingest, store, &data_dir, stop, stats))?,
                );
            }
            SourceConfig::Mqtt(c) => {
                let (c, ingest, stop) = ((**c).clone(), runtime.ingest(), stop.clone());
                let data_dir = config.store.data_dir.clone();
                let stats = Arc::new(jidoka_connectors::mqtt::SourceStats::default());
                source_threads.push(
                    std::thread::Builder::new()
                        .name(format!("source-{}", c.name))
                        .spawn(move || crate::mqtt_link::source(c, ingest, &data_dir, stop, stats))?,
                );
            }
        }
    }
    for sink in &config.sinks {
        if let jidoka_connectors::SinkConfig::Mqtt(c) = sink
            && c.publish_findings
        {
            let (c, store, stop) = ((**c).clone(), store.clone(), stop.clone());
            source_threads.push(
                std::thread::Builder::new()
                    .name(format!("findings-{}", c.name))
                    .spawn(move || crate::mqtt_link::publish_findings(c, store, stop))?,
            );
        }
    }
    if demo.is_none()
        && let Some(every) = config.master_data.poll_interval()
    {
        let (config, ingest, in_force, store, stop) =
            (config.clone(), runtime.ingest(), runtime.master.clone(), store.clone(), stop.clone());
        source_threads.push(std::thread::Builder::new().name("master-data".into()).spawn(move || {
            let watch = MasterWatch { every, last_modified: master_file_modified };
            watch_master_data(&config, &ingest, &in_force, store.as_ref(), &stop, watch)
        })?);
    }
    // The audit chain's head, anchored outside the database on a schedule (and at the end).
    if let Some(path) = config.store.audit_anchor.clone() {
        let every = Duration::from_secs(config.store.audit_anchor_seconds);
        let (store, stop) = (store.clone(), stop.clone());
        source_threads.push(std::thread::Builder::new().name("audit-anchor".into()).spawn(move || {
            loop {
                jidoka_connectors::sleep_unless(&stop, every);
                if let Err(err) = crate::audit::anchor_head(store.as_ref(), &path) {
                    tracing::error!(error = %format!("{err:#}"), "audit head not anchored");
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        })?);
    }
    // Planners: the joint capability on its schedule, off the writer's commit.
    let resequence = jidoka_agents::build_queue::Resequence {
        search_ms: config.planners.resequence_ms,
        ..jidoka_agents::build_queue::Resequence::default()
    };
    let planners = crate::planners::Planners::start(
        vec![
            (
                Arc::new(jidoka_agents::planner::JointCapability::default())
                    as Arc<dyn jidoka_agents::planner::Planner>,
                Duration::from_secs(config.planners.deadline_seconds),
            ),
            (Arc::new(resequence), Duration::from_secs(config.planners.deadline_seconds)),
        ],
        store.clone(),
        runtime.ingest(),
        runtime.metrics.clone(),
    )?;
    let planners = Arc::new(planners);
    if config.planners.joint_capability_minutes > 0 {
        let every = Duration::from_secs(config.planners.joint_capability_minutes * 60);
        let (planners, stop) = (planners.clone(), stop.clone());
        source_threads.push(std::thread::Builder::new().name("planner-schedule".into()).spawn(move || {
            loop {
                jidoka_connectors::sleep_unless(&stop, every);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                planners.request("joint-capability");
            }
        })?);
    }
    // A declared build disruption asks for a re-sequencing proposal from the queue as it is then;
    // a new proposal withdraws the older one still waiting. An urgent shortage warning declares
    // its part unavailable (and its clear ends that), so the queue is re-sequenced around it; a
    // delivery that comes in withdraws its expedite still waiting.
    {
        let mut findings = runtime.findings.subscribe();
        let (planners, store) = (planners.clone(), store.clone());
        let ingest = config.agents.shortage.declare_disruptions.then(|| runtime.ingest());
        tokio::spawn(async move {
            use jidoka_agents::build_queue::{DISRUPTION, PLANNER, PROPOSAL};
            use jidoka_agents::shortage::{CLEARED, EXPEDITE_WITHDRAWN, URGENT};
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match findings.recv().await {
                    Ok(f) if f.kind == URGENT || f.kind == CLEARED => {
                        let Some(ingest) = &ingest else { continue };
                        match crate::shortage::declare_from(ingest, &f).await {
                            Ok(Some(d)) => {
                                tracing::info!(finding = %f.finding_id, disruption = %d, "shortage declared for re-sequencing")
                            }
                            Ok(None) => {}
                            Err(err) => {
                                tracing::warn!(finding = %f.finding_id, error = %err.message, "shortage not declared")
                            }
                        }
                    }
                    // A new proposal withdraws the older one still waiting; a delivery in, its
                    // expedite still waiting.
                    Ok(f) if f.kind == PROPOSAL || f.kind == EXPEDITE_WITHDRAWN => {
                        let withdraw = if f.kind == PROPOSAL {
                            crate::build_queue::supersede
                        } else {
                            crate::shortage::withdraw_expedite
                        };
                        let (store, kind) = (store.clone(), f.kind.clone());
                        match tokio::task::spawn_blocking(move || withdraw(store.as_ref(), &f)).await {
                            Ok(Ok(ids)) if !ids.is_empty() => {
                                tracing::info!(actions = ?ids, finding_kind = %kind, "waiting actions withdrawn")
                            }
                            Ok(Err(err)) => {
                                tracing::error!(error = %err, finding_kind = %kind, "waiting actions not withdrawn")
                            }
                            _ => {}
                        }
                    }
                    // Missed findings may have held a declaration: plan again, it costs a second at most.
                    Ok(f) if f.kind != DISRUPTION => {}
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        planners.request(PLANNER);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    let feed = demo.map(|d| {
        let ingest = runtime.ingest();
        tokio::spawn(async move {
            if let Err(err) = crate::demo::run_demo(ingest, d, mes).await {
                tracing::error!(error = %err, "demo feed stopped");
            }
        })
    });

    // Drain in-flight requests after the signal, but not for ever: a client that stalls
    // mid-request must not keep the plant's service from stopping.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = config.api.http_limits().fitted_to_open_files();
    let hosts: Arc<[String]> = Arc::from(config.api.allowed_hosts.clone());
    let server = crate::http::serve_with(listener, app, limits, runtime.metrics.clone(), tls, hosts, async move {
        shutdown_signal().await;
        // Live dashboard streams would hold the drain open until its deadline.
        closing_view.close();
        let _ = signalled_tx.send(());
    });
    tokio::select! {
        result = server => result?,
        _ = async {
            let _ = signalled_rx.await;
            tokio::time::sleep(HTTP_DRAIN).await;
        } => tracing::warn!("requests still open {} s after the shutdown signal; closing them", HTTP_DRAIN.as_secs()),
    }

    stop.store(true, Ordering::Relaxed);
    let _ = view_stop.send(true);
    follower.abort();
    let _ = follower.await;
    if let Some(feed) = feed {
        feed.abort();
        let _ = feed.await;
    }
    tokio::task::spawn_blocking(move || {
        for t in source_threads {
            let _ = t.join();
        }
        if let Ok(planners) = Arc::try_unwrap(planners) {
            planners.shutdown();
        }
        runtime.shutdown();
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The master data file or plant description the service reads master data from, if any.
fn master_file(config: &Config) -> Option<&std::path::PathBuf> {
    config.master_data.file.as_ref().or(config.master_data.plant.as_ref())
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// How the master data is watched: the poll interval, and when the file was last changed as of
/// the read at start-up.
struct MasterWatch {
    every: Duration,
    last_modified: Option<std::time::SystemTime>,
}

/// Read the configured master data again every `every` and log it when it differs from what is
/// in force. A source that cannot be read, or whose data does not hold together (each row
/// named in the log), changes nothing: the last good master data stays in force.
fn watch_master_data(
    config: &Config,
    ingest: &Ingest,
    in_force: &crate::runtime::MasterInForce,
    store: &dyn Store,
    stop: &AtomicBool,
    watch: MasterWatch,
) {
    let file = master_file(config);
    let MasterWatch { every, mut last_modified } = watch;
    let origin = config.master_data.origin();
    loop {
        jidoka_connectors::sleep_unless(stop, every);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A file is read again only when it changed on disk.
        if let Some(path) = file {
            let now = modified(path);
            if now == last_modified {
                continue;
            }
            last_modified = now;
        }
        match config.load_master() {
            Ok(Some(master)) => {
                let last_seq = store.last_seq().unwrap_or(0);
                if let Err(err) = crate::master_data::offer_blocking(ingest, in_force, &master, origin, last_seq) {
                    tracing::error!(error = %err, "changed master data not logged; the master data in force stays");
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "master data not read again; the master data in force stays")
            }
        }
    }
}

/// Poll an MES over OData for released work orders from the watermark checkpoint; each page's
/// events and the new watermark are committed together.
fn odata_source(
    config: jidoka_connectors::odata::OdataSourceConfig,
    ingest: Ingest,
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
) {
    let checkpoint_name = format!("odata:{}", config.name);
    let poll = Duration::from_millis(config.poll_interval_ms);
    let pause = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
    };
    let client = match config.client() {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(source = %config.name, error = %err, "cannot set up the MES client; source not started");
            return;
        }
    };
    let mut watermark = match store.checkpoint(&checkpoint_name) {
        Ok(w) => w,
        Err(err) => {
            tracing::error!(source = %config.name, error = %err, "cannot read checkpoint; source not started");
            return;
        }
    };
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        match config.poll(&client, watermark.as_deref()) {
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::warn!(source = %config.name, error = %err, "MES poll failed; will retry");
                pause(poll * failures.min(6));
                continue;
            }
            Ok((records, latest)) => {
                failures = 0;
                let mut events = Vec::new();
                for r in records {
                    match r.map_err(|(n, reason)| (n, "record".to_string(), reason)).and_then(|v| {
                        jidoka_model::Event::parse(v, chrono::Utc::now())
                            .map_err(|e| (String::new(), e.field, e.reason))
                    }) {
                        Ok(e) => events.push(e),
                        Err((number, field, reason)) => {
                            tracing::warn!(source = %config.name, work_order = %number, %field, %reason, "record rejected")
                        }
                    }
                }
                let moved = latest.is_some() && latest != watermark;
                if moved || !events.is_empty() {
                    let cp = latest.clone().map(|w| Checkpoint { source: checkpoint_name.clone(), position: w });
                    if let Err(err) = ingest.blocking_append(events, cp) {
                        tracing::warn!(source = %config.name, error = %err, "append failed; will poll again");
                        pause(poll);
                        continue;
                    }
                    watermark = latest;
                }
            }
        }
        pause(poll);
    }
}

/// Follow a JSON Lines file from its checkpoint; each chunk's events and the new position are
/// committed together, so a restart resumes exactly where the last commit ended.
fn file_source(config: FileSourceConfig, ingest: Ingest, store: Arc<dyn Store>, stop: Arc<AtomicBool>) {
    let checkpoint_name = format!("file:{}", config.name);
    let poll = Duration::from_millis(config.poll_interval_ms);
    // Sleep in short steps so a shutdown is not held up by a long poll interval.
    let pause = |d: Duration| {
        let until = std::time::Instant::now() + d;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
    };
    let mut pos = match store.checkpoint(&checkpoint_name) {
        Ok(Some(text)) => Position::decode(&text).unwrap_or_else(|| {
            tracing::warn!(source = %config.name, checkpoint = %text, "checkpoint unreadable; reading the file from the start (duplicates are absorbed)");
            Position::default()
        }),
        Ok(None) => Position::default(),
        Err(err) => {
            tracing::error!(source = %config.name, error = %err, "cannot read checkpoint; source not started");
            return;
        }
    };
    let mut warned_missing = false;
    while !stop.load(Ordering::Relaxed) {
        let file = match std::fs::File::open(&config.path) {
            Ok(f) => f,
            Err(err) => {
                if !warned_missing {
                    tracing::warn!(source = %config.name, path = %config.path.display(), error = %err, "cannot open file; waiting for it");
                    warned_missing = true;
                }
                if !config.follow {
                    return;
                }
                pause(poll);
                continue;
            }
        };
        warned_missing = false;
        // A file shorter than the checkpoint was truncated or replaced (log rotation): start
        // it again from the top; events read twice are absorbed by the store's idempotency.
        if file.metadata().map(|m| m.len() < pos.offset).unwrap_or(false) {
            tracing::warn!(source = %config.name, offset = pos.offset, "file is shorter than its checkpoint; reading it from the start");
            pos = Position::default();
        }
        let mut reader = BufReader::new(file);
        if reader.seek(SeekFrom::Start(pos.offset)).is_err() {
            pause(poll);
            continue;
        }
        let chunk = match read_chunk(&mut reader, pos, 1000, !config.follow, chrono::Utc::now()) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(source = %config.name, error = %err, "read failed; retrying");
                pause(poll);
                continue;
            }
        };
        for e in &chunk.errors {
            tracing::warn!(source = %config.name, line = e.line, field = %e.field, reason = %e.reason, "line rejected");
        }
        if chunk.end != pos {
            let lines: Vec<u64> = chunk.events.iter().map(|(line, _)| *line).collect();
            let events = chunk.events.into_iter().map(|(_, ev)| ev).collect();
            let cp = Checkpoint { source: checkpoint_name.clone(), position: chunk.end.encode() };
            match ingest.blocking_append(events, Some(cp)) {
                Ok(outcomes) => {
                    for (line, outcome) in lines.iter().zip(outcomes) {
                        if let jidoka_store::AppendOutcome::Rejected { error } = outcome {
                            tracing::warn!(source = %config.name, line, field = %error.field, reason = %error.reason, "line rejected by the store");
                        }
                    }
                    pos = chunk.end;
                }
                Err(err) => {
                    tracing::warn!(source = %config.name, error = %err, "append failed; will re-read from the checkpoint");
                    pause(poll);
                    continue;
                }
            }
        }
        if chunk.at_end {
            if !config.follow {
                return;
            }
            pause(poll);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Regression: the data folder was created world-readable (0755), so any account on the
    /// line PC could read the plant's events, findings and audit trail.
    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("plant");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _store = super::open_store(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
