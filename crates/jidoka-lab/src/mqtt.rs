//! MQTT in the lab: a Mosquitto broker for tests and benchmarks, and `jidoka bench mqtt` (the
//! service's source beside `mosquitto_sub` on the same queue).

use anyhow::Context;
use jidoka_connectors::mqtt::sink::Message;
use jidoka_connectors::mqtt::{MqttSourceConfig, Publisher, SourceStats, TopicConfig};
use jidoka_service::mqtt_link::source;
use jidoka_service::report::{Report, machine};
use jidoka_store::{SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A Mosquitto broker on loopback with persistence in a folder of its own, for the tests and
/// benchmarks (Debian's `mosquitto`; `scripts/mosquitto.sh` installs it).
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

fn mosquitto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("JIDOKA_MOSQUITTO") {
        return PathBuf::from(p);
    }
    ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

impl Broker {
    /// Start a broker keeping its state in `dir`, on a free port.
    pub fn start(dir: &Path) -> anyhow::Result<Broker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut b = Broker { child: None, port, dir: dir.to_path_buf() };
        b.launch()?;
        Ok(b)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let conf = self.dir.join("mosquitto.conf");
        // `user root` keeps the broker able to write its folder when started by root (CI);
        // it is ignored otherwise. Queues are unbounded so a benchmark can preload them.
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             autosave_interval 1\nmax_inflight_messages 100\nmax_queued_messages 0\nmax_queued_bytes 0\n\
             log_dest file {dir}/mosquitto.log\nuser root\n",
            port = self.port,
            dir = self.dir.display()
        );
        std::fs::write(&conf, text)?;
        let bin = mosquitto_binary();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (scripts/mosquitto.sh installs it)", bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("mosquitto did not listen on port {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stop with SIGTERM, so the broker saves its persistent sessions and queues.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and start again on the same port with the same saved state.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages to publish (simulated line events, one JSON event per message).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    #[arg(long)]
    pub json: bool,
}

/// `jidoka bench mqtt`: a queue of messages preloaded on a local Mosquitto, then drained by
/// `mosquitto_sub` into a file (the broker's raw rate) and by Jidoka's source into the durable
/// store, both QoS 1 on a persistent session; messages/s of each and their ratio.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let n = args.messages.max(1);
    let (plant, _) = jidoka_service::demo::load_plant(None)?;
    let mut sim = jidoka_sim::Simulation::new(plant, 1, None, jidoka_sim::CurveMode::None);
    let mut messages = Vec::with_capacity(n);
    while messages.len() < n && sim.has_more() {
        for e in sim.next_slot().events {
            if messages.len() == n {
                break;
            }
            messages.push(Message {
                topic: format!("plant/{}", e.kind()),
                payload: serde_json::to_vec(&e)?,
                retain: false,
            });
        }
    }
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    let dir = tempfile::tempdir()?;
    let mut broker = Broker::start(&dir.path().join("broker"))?;

    let preload = |client: &str| -> anyhow::Result<f64> {
        let mut publisher = Publisher::connect(
            &jidoka_connectors::mqtt::BrokerLogin {
                broker: &broker.addr(),
                client_id: client.into(),
                username: None,
                password_env: None,
                keep_alive_s: 30,
            },
            Duration::from_secs(60),
        )
        .map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        for chunk in messages.chunks(500) {
            publisher.publish(chunk).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(t0.elapsed().as_secs_f64())
    };

    // The broker's own rate: mosquitto_sub on a persistent session, writing to a file.
    let port = broker.port.to_string();
    let sub = || {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-c", "-i", "bench-raw", "-t", "plant/#"])
            .stderr(Stdio::null());
        cmd
    };
    let registered = sub().arg("-E").status().context("cannot run mosquitto_sub (scripts/mosquitto.sh installs it)")?;
    anyhow::ensure!(registered.success(), "mosquitto_sub could not subscribe");
    let publish_s = preload("bench-pub-1")?;
    let out_path = dir.path().join("raw.txt");
    let t0 = Instant::now();
    let out = sub().args(["-C", &n.to_string()]).stdout(std::fs::File::create(&out_path)?).status()?;
    let raw_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.success(), "mosquitto_sub failed");
    let raw_lines = std::fs::read_to_string(&out_path)?.lines().count();
    anyhow::ensure!(raw_lines >= n, "mosquitto_sub wrote {raw_lines} of {n} messages");

    // Jidoka: the same queue through the source into the durable store.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("jidoka.sqlite"))?);
    let runtime = jidoka_service::runtime::bench_runtime(store.clone(), None, Default::default())?;
    let mut cfg = MqttSourceConfig::new("bench", &broker.addr());
    cfg.topics.push(TopicConfig::new("plant/#", jidoka_connectors::mqtt::Format::Event));
    let run_source = |stop: Arc<AtomicBool>, stats: Arc<SourceStats>| {
        let (cfg, ingest, data) = (cfg.clone(), runtime.ingest(), dir.path().to_path_buf());
        std::thread::spawn(move || source(cfg, ingest, &data, stop, stats))
    };
    // Register the persistent session, then leave.
    {
        let (stop, stats) = (Arc::new(AtomicBool::new(false)), Arc::new(SourceStats::default()));
        let t = run_source(stop.clone(), stats.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while SourceStats::get(&stats.connects) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    preload("bench-pub-2")?;
    let (stop, stats) = (Arc::new(AtomicBool::new(false)), Arc::new(SourceStats::default()));
    let t0 = Instant::now();
    let t = run_source(stop.clone(), stats.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    while (SourceStats::get(&stats.events_stored) + SourceStats::get(&stats.duplicates)) < n as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let jidoka_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = t.join();
    let stored = SourceStats::get(&stats.events_stored);
    runtime.shutdown();
    broker.stop();
    anyhow::ensure!(stored as usize == n, "only {stored} of {n} messages stored");
    let in_store = store.last_seq()?;
    anyhow::ensure!(in_store as usize == n, "the store holds {in_store} events, expected {n}");

    let raw_rate = n as f64 / raw_s;
    let jidoka_rate = n as f64 / jidoka_s;
    let mut report = Report::new(format!(
        "bench mqtt: {n} simulated line events as QoS 1 messages preloaded on a local Mosquitto, drained on a persistent session"
    ));
    report
        .add("messages", "messages", n, "")
        .add("mean_bytes", "mean message size", bytes / n, "B")
        .add("publish_per_s", "publisher → broker (QoS 1, confirmed per 500)", n as f64 / publish_s, "msgs/s")
        .add("raw_per_s", "broker → mosquitto_sub → file", raw_rate, "msgs/s")
        .add("jidoka_per_s", "broker → Jidoka → durable store (ack after commit)", jidoka_rate, "msgs/s")
        .add("ratio", "Jidoka / mosquitto_sub", jidoka_rate / raw_rate, "")
        .add("machine", "machine", machine(), "");
    report.print(args.json);
    Ok(())
}
