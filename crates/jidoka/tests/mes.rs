//! Write-back to a real OData v4 MES (SAP CAP, Opcenter-shaped, started by
//! `scripts/mes-peer.sh` on loopback): exactly once through outages, injected 500s, slowness
//! and a kill -9 of Jidoka mid-delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, jidoka_bin};

use jidoka_connectors::SinkConfig;
use jidoka_connectors::odata::OdataSinkConfig;
use jidoka_connectors::sink::Sink;
use jidoka_model::{Action, ActionKind, ActionStatus, Event};
use jidoka_service::config::Config;
use jidoka_service::runtime::{Runtime, RuntimeParts};
use jidoka_store::{ActionQuery, SqliteStore, Store};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: &str = "/sit-svc/Application/AppJidoka/odata";

/// The test MES, stopped when dropped.
struct Peer {
    child: Child,
    base: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the peer, or `None` (said loudly) where node is missing outside CI.
fn peer() -> Option<Peer> {
    peer_with(None)
}

/// The peer, over https with `tls` = (certificate, key, CA) when given.
fn peer_with(tls: Option<(&std::path::Path, &std::path::Path, &[u8])>) -> Option<Peer> {
    if Command::new("node").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "node is needed for the MES peer under CI");
        eprintln!("node not found: MES tests not run");
        return None;
    }
    let port = free_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mes-peer.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(port.to_string()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some((cert, key, _)) = tls {
        cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
    }
    let mut child = cmd.spawn().expect("start the MES peer");
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    // From here the peer is stopped however this ends.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let peer = Peer { child, base: format!("{scheme}://127.0.0.1:{port}{APP}") };
    let agent = match tls {
        Some((_, _, ca)) => {
            let certs = jidoka_connectors::odata::parse_ca(ca).unwrap();
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
            ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into()
        }
        None => http(),
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok(r) = agent.get(&format!("{}/$metadata", peer.base)).call()
            && r.status() == 200
        {
            return Some(peer);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the MES peer did not start within 300 s");
}

impl Peer {
    fn stats(&self) -> Value {
        let mut r = http().get(&format!("{}/Stats()", self.base)).call().unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        serde_json::from_str(v["value"].as_str().unwrap()).unwrap()
    }

    fn faults(&self, every: u32, delay_ms: u32, down: bool) {
        let r = http()
            .post(&format!("{}/SetFaults", self.base))
            .send_json(json!({"every": every, "delayMs": delay_ms, "down": down}))
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    fn sink(&self, name: &str) -> OdataSinkConfig {
        OdataSinkConfig {
            name: name.into(),
            base_url: self.base.clone(),
            profile_name: "opcenter".into(),
            profile: None,
            token_env: None,
            oauth2: None,
            ca_file: None,
            timeout_ms: 5000,
            kinds: Vec::new(),
        }
    }
}

fn nc_action(n: u32) -> Action {
    Action {
        action_id: format!("A{n}"),
        finding_id: format!("F{n}"),
        kind: ActionKind::CreateNonconformance,
        status: ActionStatus::Approved,
        payload: json!({"severity": "critical", "reason": "cross-thread", "finding_kind": "torque.cross_thread",
                        "subject": {"vin": "1HGCM82633A004352", "station": "ST010", "tool": "NR-0101"},
                        "evidence": ["ev-1"], "agent": "torque-audit", "agent_version": "1.0.0"}),
        idempotency_key: format!("jidoka:A{n}"),
        correlation_id: format!("ctrl:T{n}"),
        created_at: chrono::Utc::now(),
    }
}

/// An out-of-window tightening: the default policy drafts a Nonconformance at once.
fn hold_event(n: u32) -> Value {
    json!({"source": "ctrl-1", "source_txn_id": format!("T{n}"), "occurred_at": "2026-11-24T08:00:00Z", "kind": "tightening_result",
           "data": {"tightening_id": format!("T{n}"), "vin": "1HGCM82633A004352", "station": "ST040", "tool": "NR-7", "pset": "3",
                    "joint": "J1", "category": "A", "final_torque_nm": 31.0, "final_angle_deg": 200.0,
                    "torque_min_nm": 22.0, "torque_max_nm": 28.0, "controller_verdict": "NOK"}})
}

#[test]
fn the_sink_writes_a_nonconformance_once_per_key() {
    let Some(peer) = peer() else { return };
    let mut sink = jidoka_connectors::odata::OdataSink::new(&peer.sink("mes")).unwrap();
    let first = sink.deliver(&nc_action(1)).expect("delivered");
    assert!(first.reference.as_deref().is_some_and(|r| r.starts_with("NC-")), "{first:?}");
    assert!(!first.already_delivered);
    // The same key again (a retry after a lost answer): read back, not written twice.
    let again = sink.deliver(&nc_action(1)).expect("delivered");
    assert!(again.already_delivered);
    assert_eq!(again.reference, first.reference);
    assert_eq!(peer.stats()["NonConformance"], 1);
    // A rejected write is permanent; the MES being down is transient.
    peer.faults(0, 0, true);
    let down = sink.deliver(&nc_action(2)).unwrap_err();
    assert!(matches!(down, jidoka_connectors::sink::SinkError::Transient(_)), "{down:?}");
    peer.faults(0, 0, false);
    // The wrong service root answers 404: permanent, and the message says so.
    let mut wrong = peer.sink("wrong");
    wrong.base_url = wrong.base_url.replace("AppJidoka", "NoSuchApp");
    let err = jidoka_connectors::odata::OdataSink::new(&wrong).unwrap().deliver(&nc_action(3)).unwrap_err();
    assert!(matches!(err, jidoka_connectors::sink::SinkError::Permanent(ref m) if m.contains("404")), "{err:?}");
}

/// Start the runtime with the MES sink, ingest `n` HOLD events, return it with the store.
fn run_with_mes(peer: &Peer, n: u32) -> (tempfile::TempDir, Arc<dyn Store>, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("j.sqlite")).unwrap());
    let mut config = Config::default();
    config.runtime.outbox_poll_ms = 100;
    config.sinks.push(SinkConfig::Odata(Box::new(peer.sink("mes"))));
    let runtime = Runtime::start(store.clone(), RuntimeParts::from_config(&config, None)).unwrap();
    let events: Vec<Event> = (0..n).map(|i| Event::parse(hold_event(i), chrono::Utc::now()).unwrap()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(runtime.ingest().append(events, None)).unwrap();
    assert!(runtime.wait_for_agents(Duration::from_secs(10)));
    (dir, store, runtime)
}

fn delivered(store: &dyn Store) -> usize {
    store
        .actions(&ActionQuery { status: Some(ActionStatus::Delivered), limit: 1000, ..Default::default() })
        .unwrap()
        .items
        .len()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn mes_down_then_back_and_failing_every_third_call_still_gets_everything_exactly_once() {
    let Some(peer) = peer() else { return };
    // Down for the whole ingest: nothing delivered, nothing lost.
    peer.faults(0, 0, true);
    let (_dir, store, runtime) = run_with_mes(&peer, 20);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(delivered(store.as_ref()), 0);
    assert_eq!(peer.stats()["NonConformance"], 0);
    // Back, but answering 500 to every third call.
    peer.faults(3, 0, false);
    assert!(
        wait_until(Duration::from_secs(60), || delivered(store.as_ref()) == 20),
        "delivered {}",
        delivered(store.as_ref())
    );
    runtime.shutdown();
    assert_eq!(peer.stats()["NonConformance"], 20, "exactly once on the MES");
}

#[test]
fn a_slow_mes_never_slows_ingest_or_analysis() {
    let Some(peer) = peer() else { return };
    peer.faults(0, 2000, false);
    let t0 = Instant::now();
    let (_dir, store, runtime) = run_with_mes(&peer, 30);
    // All 30 findings were stored while the MES took 2 s per call.
    let analysed = t0.elapsed();
    assert_eq!(store.stats().unwrap().findings, 30);
    assert!(delivered(store.as_ref()) < 30, "deliveries lag behind");
    eprintln!("30 events analysed in {analysed:?} with a 2 s MES");
    runtime.shutdown();
}

/// `jidoka serve` set up by `extra` (sources, sinks...) on a free port with one token of
/// `role`; `start()` launches it and waits for /health.
struct Served {
    _dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    token: &'static str,
}

impl Served {
    fn new(role: &str, extra: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("plant.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\ndata_dir = {:?}\n[api]\nlisten = \"127.0.0.1:{port}\"\n[[api.tokens]]\nname = \"test\"\nrole = \"{role}\"\nenv = \"JIDOKA_TEST_TOKEN\"\n{extra}",
                dir.path().join("data")
            ),
        )
        .unwrap();
        Served { _dir: dir, config, port, token: "jdk_testtesttesttesttesttesttesttest" }
    }

    fn start(&self) -> Child {
        let child = jidoka_bin()
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("JIDOKA_TEST_TOKEN", self.token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let health = format!("http://127.0.0.1:{}/health", self.port);
        assert!(wait_until(Duration::from_secs(30), || http().get(&health).call().is_ok()), "jidoka did not start");
        child
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[test]
fn kill_9_mid_delivery_leaves_no_duplicate_nonconformance() {
    let Some(peer) = peer() else { return };
    let served = Served::new(
        "integrator",
        &format!(
            "[runtime]\noutbox_poll_ms = 50\n[[sinks]]\ntype = \"odata\"\nname = \"mes\"\nbase_url = {:?}\ntimeout_ms = 5000\n",
            peer.base
        ),
    );
    let start = || served.start();
    // Each MES call takes 300 ms, so the kill lands while writes are in flight.
    peer.faults(0, 300, false);
    let mut first = start();
    let batch: Vec<Value> = (0..12).map(hold_event).collect();
    let r = http()
        .post(&served.url("/api/events"))
        .header("Authorization", &format!("Bearer {}", served.token))
        .send_json(Value::Array(batch))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(20), || peer.stats()["NonConformance"].as_u64().unwrap_or(0) >= 3));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = peer.stats()["NonConformance"].as_u64().unwrap();
    assert!(before < 12, "the kill came too late to test anything ({before} written)");
    peer.faults(0, 0, false);
    let mut second = start();
    assert!(
        wait_until(Duration::from_secs(60), || peer.stats()["NonConformance"].as_u64() == Some(12)),
        "{}",
        peer.stats()
    );
    // Give a duplicate every chance to appear, then count.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(peer.stats()["NonConformance"], 12, "no duplicate after kill -9 and restart");
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn bench_outbox_reports_delivered_actions_per_second() {
    let Some(peer) = peer() else { return };
    let out = jidoka_bin()
        .args(["bench", "outbox", "--actions", "40", "--json", "--mes-url", &peer.base])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["actions"], 40);
    assert!(v["actions_per_s"].as_f64().is_some_and(|x| x > 0.0));
    assert_eq!(peer.stats()["NonConformance"], 40);
}

#[test]
fn released_work_orders_are_polled_by_watermark_and_resumed_after_restart() {
    let Some(peer) = peer() else { return };
    let create = |n: u32, minute: u32, status: &str| {
        let body = json!({"Id": format!("WO{n}"), "NId": format!("WO-{n:04}"), "ProductionType": "SEDAN",
                          "Vin": "1HGCM82633A004352", "Sequence": n, "Status": status,
                          "LastUpdatedOn": format!("2026-11-24T08:{minute:02}:00Z")});
        let r = http().post(&format!("{}/WorkOrder", peer.base)).send_json(body).unwrap();
        assert_eq!(r.status(), 201, "creating WO{n}");
    };
    for n in 1..=3 {
        create(n, n, "Released Now");
    }
    // A space in the status: the filter must go out as %20, which CAP insists on.
    create(4, 4, "Planned");
    let served = Served::new(
        "quality_engineer",
        &format!(
            "[[sources]]\ntype = \"odata\"\nname = \"mes\"\nbase_url = {:?}\nstatus_filter = \"Released Now\"\npoll_interval_ms = 200\n",
            peer.base
        ),
    );
    let start = || served.start();
    let released = || -> Vec<String> {
        let mut r = http()
            .get(&served.url("/api/events?limit=100"))
            .header("Authorization", &format!("Bearer {}", served.token))
            .call()
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "work_order_released")
            .map(|e| e["data"]["work_order"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut first = start();
    assert!(wait_until(Duration::from_secs(20), || released().len() == 3), "{:?}", released());
    create(5, 10, "Released Now");
    assert!(wait_until(Duration::from_secs(20), || released().len() == 4), "{:?}", released());
    first.kill().unwrap();
    first.wait().unwrap();
    create(6, 11, "Released Now");
    let mut second = start();
    assert!(wait_until(Duration::from_secs(20), || released().len() == 5), "{:?}", released());
    std::thread::sleep(Duration::from_millis(800));
    let mut got = released();
    got.sort();
    assert_eq!(got, vec!["WO-0001", "WO-0002", "WO-0003", "WO-0005", "WO-0006"], "each once, the planned one never");
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn oauth2_client_credentials_are_fetched_and_renewed_when_refused() {
    let Some(peer) = peer() else { return };
    let r = http()
        .post(&format!("{}/SetFaults", peer.base))
        .send_json(json!({"every": 0, "delayMs": 0, "down": false, "requireToken": true}))
        .unwrap();
    assert_eq!(r.status(), 200);
    let token_url = peer.base.replace(APP, "/oauth/token");
    let oauth = |secret: &str| jidoka_connectors::odata::Credentials::OAuth2 {
        config: jidoka_connectors::odata::OAuth2Config {
            token_url: token_url.clone(),
            client_id: "jidoka".into(),
            client_secret_env: "unused".into(),
            scope: None,
        },
        secret: secret.into(),
    };
    let config = peer.sink("mes");
    let mut sink = jidoka_connectors::odata::OdataSink::with_credentials(&config, oauth("s3cret")).unwrap();
    sink.deliver(&nc_action(1)).expect("delivered with a fetched token");
    sink.deliver(&nc_action(2)).expect("delivered with the cached token");
    assert_eq!(peer.stats()["tokensIssued"], 1, "the token is reused while valid");
    // The MES forgets its tokens: the next call is refused once, renewed, and goes through.
    let r = http()
        .post(&format!("{}/SetFaults", peer.base))
        .send_json(json!({"every": 0, "delayMs": 0, "down": false, "requireToken": true, "revokeTokens": true}))
        .unwrap();
    assert_eq!(r.status(), 200);
    sink.deliver(&nc_action(3)).expect("delivered after renewing");
    assert_eq!(peer.stats()["tokensIssued"], 2);
    assert_eq!(peer.stats()["NonConformance"], 3);
    // Without credentials the MES refuses: permanent, and the message says why.
    let err = jidoka_connectors::odata::OdataSink::new(&peer.sink("anon")).unwrap().deliver(&nc_action(4)).unwrap_err();
    assert!(matches!(err, jidoka_connectors::sink::SinkError::Permanent(ref m) if m.contains("401")), "{err:?}");
    // A wrong secret fails at the token server.
    let err = jidoka_connectors::odata::OdataSink::with_credentials(&config, oauth("nope"))
        .unwrap()
        .deliver(&nc_action(5))
        .unwrap_err();
    assert!(format!("{err:?}").contains("OAuth2 token"), "{err:?}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`.
fn plant_pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Plant CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "mes.key", "-out", "mes.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "mes.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "mes.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("mes.pem"), dir.join("mes.key"), dir.join("ca.pem"))
}

#[test]
fn https_with_the_plants_own_ca_is_trusted_and_anything_else_is_not() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "openssl is needed for the TLS test under CI");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = plant_pki(dir.path());
    let ca_pem = std::fs::read(&ca).unwrap();
    let Some(peer) = peer_with(Some((&cert, &key, &ca_pem))) else { return };
    assert!(peer.base.starts_with("https://"));
    let mut config = peer.sink("mes");
    config.ca_file = Some(ca.clone());
    let mut errors = Vec::new();
    config.validate("sinks[0]", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let mut sink = jidoka_connectors::odata::OdataSink::new(&config).unwrap();
    let receipt = sink.deliver(&nc_action(1)).expect("delivered over https");
    assert!(receipt.reference.is_some_and(|r| r.starts_with("NC-")));
    // Without the plant's CA the certificate is not trusted: nothing is written.
    let mut untrusted = jidoka_connectors::odata::OdataSink::new(&peer.sink("public-roots")).unwrap();
    let err = untrusted.deliver(&nc_action(2)).unwrap_err();
    assert!(format!("{err:?}").to_lowercase().contains("cert"), "{err:?}");
    // A CA file that is not a certificate is a configuration error naming the field.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    config.ca_file = Some(dir.path().join("bad.pem"));
    let mut errors = Vec::new();
    config.validate("sinks[0]", &mut errors);
    assert_eq!(errors.first().map(|e| e.0.as_str()), Some("sinks[0].ca_file"), "{errors:?}");
}

#[test]
fn the_plain_profile_creates_records_by_post_to_the_entity_set() {
    let Some(peer) = peer() else { return };
    let mut config = peer.sink("plain-mes");
    config.base_url = peer.base.replace(APP, "/odata/v4/plain");
    config.profile_name = "plain".into();
    let mut sink = jidoka_connectors::odata::OdataSink::new(&config).unwrap();
    let first = sink.deliver(&nc_action(7)).expect("created by POST");
    assert!(!first.already_delivered && first.reference.is_some(), "{first:?}");
    let again = sink.deliver(&nc_action(7)).expect("read back");
    assert!(again.already_delivered);
    assert_eq!(again.reference, first.reference);
    assert_eq!(peer.stats()["NonConformance"], 1, "one record for one key");
    // The record carries what the MES needs to act on it.
    let mut r = http()
        .get(&format!("{}/NonConformance?$filter=IdempotencyKey%20eq%20'jidoka:A7'", config.base_url))
        .call()
        .unwrap();
    let v: Value = r.body_mut().read_json().unwrap();
    let nc = &v["value"][0];
    assert_eq!((nc["Severity"].as_str(), nc["SerialNumber"].as_str()), (Some("High"), Some("1HGCM82633A004352")));
    assert_eq!(nc["CorrelationId"], "ctrl:T7");
    assert!(nc["Description"].as_str().unwrap_or("").contains("cross-thread"));
}

impl Peer {
    fn post(&self, set: &str, body: Value) {
        let r = http().post(&format!("{}/{set}", self.base)).send_json(&body).unwrap();
        assert_eq!(r.status(), 201, "{set} {body}");
    }

    fn set_faults(&self, faults: Value) {
        let r = http().post(&format!("{}/SetFaults", self.base)).send_json(faults).unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn master_config(peer: &Peer, data_dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "[store]\ndata_dir = \"{}\"\n[master_data.mes]\nbase_url = \"{}\"\ntimeout_ms = 5000\n",
        data_dir.display(),
        peer.base
    ))
    .unwrap()
}

/// Operator certifications read from the MES (one row per operator and work center): an
/// operator per person, certified at each of their work centers at the lowest level of their
/// rows and until the earliest lapse; a row that cannot be read is named and left out.
#[test]
fn operator_certifications_are_read_from_the_mes_one_operator_per_person() {
    let Some(peer) = peer() else { return };
    peer.post("Material", json!({"Id": "m1", "NId": "P-100", "Description": "test part"}));
    peer.post(
        "ToBeConsumedMaterial",
        json!({"Id": "B-1", "ProductionType": "SEDAN", "Material_Id": "m1", "Quantity": 1, "WorkCenter": "ST010"}),
    );
    for row in [
        json!({"Id": "PC-1", "PersonnelNId": "OP-7", "PersonnelName": "Ana", "WorkCenter": "ST010", "Level": 3,
               "ValidUntil": "2027-06-30T00:00:00Z"}),
        json!({"Id": "PC-2", "PersonnelNId": "OP-7", "WorkCenter": "ST020", "Level": 2,
               "ValidUntil": "2027-03-31T00:00:00Z"}),
        json!({"Id": "PC-3", "PersonnelNId": "OP-9", "PersonnelName": "Ben", "WorkCenter": "ST010", "Level": 1}),
        // No level: named and left out, the rest still read.
        json!({"Id": "PC-4", "PersonnelNId": "OP-9", "WorkCenter": "ST030"}),
    ] {
        peer.post("PersonnelCertification", row);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&format!(
        "[store]\ndata_dir = \"{}\"\n[master_data.mes]\nbase_url = \"{}\"\ntimeout_ms = 5000\n\
         [master_data.mes.names]\ncertification_set = \"PersonnelCertification\"\n",
        dir.path().display(),
        peer.base
    ))
    .unwrap();
    let mes = config.master_data.mes.clone().unwrap();
    let read = mes.read(&mes.client().unwrap()).unwrap();
    assert_eq!(read.skipped, vec![("PersonnelCertification(PC-4).Level".to_string(), "missing".to_string())]);
    let ops = &read.master.operators;
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!((ops[0].operator.as_str(), ops[0].name.as_str(), ops[0].certification), ("OP-7", "Ana", 2));
    assert_eq!(ops[0].certified_stations, vec!["ST010".to_string(), "ST020".to_string()]);
    assert_eq!(ops[0].certified_until.map(|t| t.to_rfc3339()), Some("2027-03-31T00:00:00+00:00".into()));
    assert_eq!((ops[1].operator.as_str(), ops[1].certification, ops[1].certified_until), ("OP-9", 1, None));
    assert_eq!(ops[1].certified_stations, vec!["ST010".to_string()]);
    // Loaded as the service loads it: the operators are in the master data put in force.
    assert_eq!(config.load_master().unwrap().expect("master data").operators, *ops);
}

/// With `modified_field`, a poll after a whole read asks only for the rows modified since and
/// puts them in place by key: the same master data as a whole read, from a handful of rows; a
/// change no longer released and a hold lifted come back and go out; every `full_read_every`
/// polls a whole read sees a row the MES deleted.
#[test]
fn master_data_polls_read_only_the_rows_modified_since_and_a_whole_read_now_and_then() {
    let Some(peer) = peer() else { return };
    for i in 0..12 {
        peer.post("Material", json!({"Id": format!("m{i}"), "NId": format!("P-{i}"), "Description": "part"}));
        peer.post(
            "ToBeConsumedMaterial",
            json!({"Id": format!("B-{i:02}"), "ProductionType": "SEDAN", "Material_Id": format!("m{i}"), "Quantity": 1,
                   "WorkCenter": format!("ST{:03}", 10 * (i + 1))}),
        );
    }
    peer.post(
        "ChangePackage",
        json!({"Id": "C-1", "NId": "ECO-1", "OldMaterialNId": "P-1", "NewMaterialNId": "P-2", "CutInSequence": 500,
               "Status": "Released"}),
    );
    peer.post("LotHold", json!({"Id": "H-1", "LotNId": "LOT-7", "Active": true}));
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&format!(
        "[store]\ndata_dir = \"{}\"\n[master_data.mes]\nbase_url = \"{}\"\ntimeout_ms = 5000\n\
         modified_field = \"LastUpdatedOn\"\nlate_commit_seconds = 0\nfull_read_every = 2\n",
        dir.path().display(),
        peer.base
    ))
    .unwrap();
    let mes = config.master_data.mes.clone().unwrap();
    let client = mes.client().unwrap();
    let first = mes.read_since(&client, None).unwrap();
    assert_eq!(first.rows_read, 14, "a whole read: 12 BOM lines, a change, a hold");
    assert_eq!((first.master.bom.len(), first.master.changes.len()), (12, 1));
    std::thread::sleep(Duration::from_millis(20));
    let patch = |path: &str, body: Value| {
        let r = http().patch(&format!("{}/{path}", peer.base)).send_json(&body).unwrap();
        assert_eq!(r.status(), 200, "{path}");
    };
    patch("ToBeConsumedMaterial('B-03')", json!({"Quantity": 4}));
    patch("ChangePackage('C-1')", json!({"Status": "Withdrawn"}));
    patch("LotHold('H-1')", json!({"Active": false}));
    peer.post("LotHold", json!({"Id": "H-2", "LotNId": "LOT-8", "Active": true}));
    let second = mes.read_since(&client, Some(&first.rows)).unwrap();
    assert!(
        second.rows_read <= 5,
        "the 4 rows written since, and those stamped at the newest time: {}",
        second.rows_read
    );
    assert_eq!(second.rows.since_whole, 1);
    assert_eq!(second.master.bom.iter().find(|b| b.part_number == "P-3").map(|b| b.quantity), Some(4.0));
    assert!(second.master.changes.is_empty(), "withdrawn");
    assert_eq!(second.master.lots_on_hold, vec!["LOT-8".to_string()]);
    assert_eq!(second.master, mes.read(&client).unwrap().master, "the same as a whole read");
    // A row deleted in the MES: an incremental read cannot see it; the next read is whole.
    let r = http().delete(&format!("{}/ToBeConsumedMaterial('B-11')", peer.base)).call().unwrap();
    assert_eq!(r.status(), 204);
    let third = mes.read_since(&client, Some(&second.rows)).unwrap();
    assert_eq!(
        (third.rows_read, third.rows.since_whole),
        (12, 0),
        "whole: 11 BOM lines and the active hold (the MES filters the withdrawn change and the lifted hold)"
    );
    assert_eq!(third.master.bom.len(), 11);
    // Through the service's loader: the rows are kept beside the last good read for the next poll.
    config.load_master().unwrap();
    let kept: Value = serde_json::from_slice(&std::fs::read(dir.path().join("master-data-mes.json")).unwrap()).unwrap();
    assert_eq!(kept["rows"]["sets"][0].as_array().map(Vec::len), Some(11), "{}", kept["rows"]);
    assert!(kept["rows"]["newest"].is_string());
}

#[test]
fn master_data_is_read_from_the_mes_in_one_batch_and_kept_for_a_start_while_it_is_down() {
    let Some(peer) = peer() else { return };
    for (id, nid) in [("m1", "P-100"), ("m2", "P-101"), ("m3", "P-200")] {
        peer.post("Material", json!({"Id": id, "NId": nid, "Description": "test part"}));
    }
    peer.post(
        "ToBeConsumedMaterial",
        json!({"Id": "B-1", "ProductionType": "SEDAN", "Material_Id": "m1", "Quantity": 2, "WorkCenter": "ST010",
               "OptionRule": "ENGINE=V6", "EffectiveFromSequence": 1}),
    );
    peer.post(
        "ToBeConsumedMaterial",
        json!({"Id": "B-2", "ProductionType": "SEDAN", "Material_Id": "m3", "Quantity": 1, "WorkCenter": "ST020",
               "EffectiveTo": "2030-01-01T00:00:00Z"}),
    );
    // A line without its material: left out and named, the rest still read.
    peer.post(
        "ToBeConsumedMaterial",
        json!({"Id": "B-3", "ProductionType": "SEDAN", "Quantity": 1, "WorkCenter": "ST030"}),
    );
    peer.post(
        "ChangePackage",
        json!({"Id": "C-1", "NId": "ECO-1", "OldMaterialNId": "P-100", "NewMaterialNId": "P-101",
               "CutInSequence": 500, "OldValidUntilSequence": 520, "Status": "Released"}),
    );
    peer.post(
        "ChangePackage",
        json!({"Id": "C-2", "NId": "ECO-2", "OldMaterialNId": "P-200", "NewMaterialNId": "P-201",
               "CutInSequence": 900, "Status": "Draft"}),
    );
    peer.post("LotHold", json!({"Id": "H-1", "LotNId": "LOT-7", "Active": true}));
    peer.post("LotHold", json!({"Id": "H-2", "LotNId": "LOT-8", "Active": false}));
    peer.post(
        "Equipment",
        json!({"Id": "E-1", "NId": "NR-0101", "EquipmentType": "Nutrunner", "WorkCenter": "ST010",
               "LastCalibratedOn": "2025-11-01T00:00:00Z", "CalibrationDueOn": "2026-11-01T00:00:00Z"}),
    );
    peer.post("Equipment", json!({"Id": "E-2", "NId": "SC-0010", "EquipmentType": "Handheld scanner"}));
    peer.post(
        "WorkInstruction",
        json!({"Id": "W-1", "NId": "WI-010-3", "WorkCenter": "ST010", "OperationNId": "OP010",
               "Name": "Subframe bolts", "Description": "Cross pattern, then re-hit", "MinCertificationLevel": 2}),
    );
    // No station: left out and named.
    peer.post("WorkInstruction", json!({"Id": "W-2", "NId": "WI-X", "Name": "Orphan"}));

    let dir = tempfile::tempdir().unwrap();
    let config = master_config(&peer, dir.path());
    let mes = config.master_data.mes.clone().unwrap();
    let read = mes.read(&mes.client().unwrap()).unwrap();
    assert!(read.batched, "the five sets came in one $batch");
    assert_eq!(peer.stats()["batches"], 1);
    let skipped: Vec<(&str, &str)> = read.skipped.iter().map(|(r, why)| (r.as_str(), why.as_str())).collect();
    assert_eq!(
        skipped,
        vec![("ToBeConsumedMaterial(B-3).Material.NId", "missing"), ("WorkInstruction(WI-X).WorkCenter", "missing")]
    );

    let master = config.load_master().unwrap().expect("master data");
    let parts: Vec<(&str, &str, f64)> =
        master.bom.iter().map(|b| (b.part_number.as_str(), b.station.as_str(), b.quantity)).collect();
    assert_eq!(parts, vec![("P-100", "ST010", 2.0), ("P-200", "ST020", 1.0)]);
    assert_eq!(master.bom[0].option_rule.as_deref(), Some("ENGINE=V6"));
    assert_eq!(master.bom[0].effectivity.from_sequence, Some(1));
    assert!(master.bom[1].effectivity.to_date.is_some());
    assert_eq!(master.changes.len(), 1, "only released changes count");
    assert_eq!(master.changes[0].change_id, "ECO-1");
    assert_eq!(master.changes[0].cut_in.from_sequence, Some(500));
    assert_eq!(master.changes[0].old_valid_until_sequence, Some(520));
    assert_eq!(master.lots_on_hold, vec!["LOT-7".to_string()]);
    use jidoka_model::master::EquipmentKind::{Nutrunner, Other};
    let tools: Vec<(&str, jidoka_model::master::EquipmentKind, bool)> =
        master.equipment.iter().map(|e| (e.equipment.as_str(), e.kind, e.calibration_due.is_some())).collect();
    assert_eq!(tools, vec![("NR-0101", Nutrunner, true), ("SC-0010", Other, false)]);
    let w = &master.instructions;
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].instruction_id.as_str(), w[0].station.as_str(), w[0].min_certification), ("WI-010-3", "ST010", 2));

    // A service without $batch: the same data, one set at a time.
    peer.set_faults(json!({"noBatch": true}));
    let again = mes.read(&mes.client().unwrap()).unwrap();
    assert!(!again.batched);
    assert_eq!(again.master, read.master);
    assert_eq!(peer.stats()["batches"], 2, "the refused batch is not counted; the read and the load before it are");

    // The MES down at start-up: the last good read.
    peer.set_faults(json!({"down": true}));
    assert_eq!(config.load_master().unwrap().unwrap(), master);
    // With no earlier read there is nothing to start from, and it says so.
    let fresh = tempfile::tempdir().unwrap();
    let err = master_config(&peer, fresh.path()).load_master().unwrap_err().to_string();
    assert!(err.contains("503") && err.contains("no earlier read"), "{err}");

    // A released change to a part no BOM line has: refused, named by its MES key.
    peer.set_faults(json!({}));
    peer.post(
        "ChangePackage",
        json!({"Id": "C-3", "NId": "ECO-3", "OldMaterialNId": "P-999", "NewMaterialNId": "P-998",
               "CutInSequence": 10, "Status": "Released"}),
    );
    let err = config.load_master().unwrap_err().to_string();
    assert!(err.contains("ChangePackage(C-3).old_part_number") && err.contains("P-999"), "{err}");
}

/// The build queue's loop against the real MES: the plant's work orders released (in the MES and
/// to Jidoka, with their options), a roof-glass shortage declared by a supervisor, a proposal
/// waiting for approval within seconds, and once approved the MES's work orders renumbered as
/// proposed, in one command, written once.
#[test]
fn an_approved_resequencing_renumbers_the_work_orders_in_the_mes() {
    let Some(peer) = peer() else { return };
    let plant_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plants/default.toml");
    let served = Served::new(
        "admin",
        &format!(
            "[master_data]\nplant = {plant_file:?}\n[runtime]\noutbox_poll_ms = 50\n[[sinks]]\ntype = \"odata\"\nname = \"mes\"\nbase_url = {:?}\ntimeout_ms = 5000\n",
            peer.base
        ),
    );
    let mut child = served.start();
    let auth = format!("Bearer {}", served.token);
    let plant = jidoka_sim::Plant::default_plant().unwrap();
    let units = jidoka_sim::Simulation::new(plant, 3, None, jidoka_sim::CurveMode::None).planned_units(0..200);
    let t0 = chrono::Utc::now();
    let at = |minutes: i64| jidoka_model::event::rfc3339::format(&(t0 + chrono::Duration::minutes(minutes)));
    let mut events = Vec::new();
    for u in &units {
        let n = u.index + 1;
        peer.post(
            "WorkOrder",
            json!({"Id": u.work_order, "NId": u.work_order, "ProductionType": u.model, "Vin": u.vin, "Sequence": n,
                   "Status": "Released", "LastUpdatedOn": at(0)}),
        );
        events.push(
            json!({"source": "mes", "source_txn_id": u.work_order, "occurred_at": at(0), "kind": "work_order_released",
            "data": {"work_order": u.work_order, "vin": u.vin, "model": u.model, "options": u.options, "sequence": n,
                     "planned_start": at(n as i64)}}),
        );
    }
    let r =
        http().post(&served.url("/api/events")).header("Authorization", &auth).send_json(Value::Array(events)).unwrap();
    assert_eq!(r.status(), 200);
    let declared = Instant::now();
    let r = http()
        .post(&served.url("/api/build-queue/disruptions"))
        .header("Authorization", &auth)
        .send_json(json!({"disruption_id": "GLASS-1", "kind": "unavailable", "resource": "ROOF-GLASS",
                          "from": at(45), "until": at(150), "reason": "glass truck late"}))
        .unwrap();
    assert_eq!(r.status(), 200);
    let waiting = || -> Option<Value> {
        let mut r = http()
            .get(&served.url("/api/actions?kind=resequence&status=pending_approval"))
            .header("Authorization", &auth)
            .call()
            .ok()?;
        let v: Value = r.body_mut().read_json().ok()?;
        v["items"].as_array()?.first().cloned()
    };
    assert!(wait_until(Duration::from_secs(30), || waiting().is_some()), "no proposal waiting");
    eprintln!("proposal waiting for approval {:?} after the declaration", declared.elapsed());
    let first = waiting().unwrap();
    // A unit put on hold meanwhile: a new proposal around both, and the first one withdrawn.
    let r = http()
        .post(&served.url("/api/build-queue/disruptions"))
        .header("Authorization", &auth)
        .send_json(json!({"disruption_id": "HOLD-1", "kind": "hold", "vins": [units[60].vin]}))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        wait_until(Duration::from_secs(30), || waiting().is_some_and(|a| a["action_id"] != first["action_id"])),
        "no second proposal"
    );
    let withdrawn = || -> Value {
        let url = served.url(&format!("/api/actions/{}", first["action_id"].as_str().unwrap()));
        http().get(&url).header("Authorization", &auth).call().unwrap().body_mut().read_json().unwrap()
    };
    assert!(wait_until(Duration::from_secs(10), || withdrawn()["status"] == "expired"), "{}", withdrawn());
    assert!(withdrawn()["note"].as_str().unwrap_or("").contains("superseded"), "{}", withdrawn());
    let action = waiting().unwrap();
    assert_eq!(action["payload"]["details"]["removed"], json!([units[60].vin]));
    let details = &action["payload"]["details"];
    assert!(details["before"]["lost_takts"].as_u64().unwrap() > 0, "{details}");
    assert_eq!(details["after"]["lost_takts"], 0, "{details}");
    let changes = details["resequence"].as_array().unwrap().clone();
    assert!(!changes.is_empty());
    // Nothing reaches the MES before a person decides.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(peer.stats()["SequenceChange"], 0);
    let r = http()
        .post(&served.url(&format!("/api/actions/{}/approve", action["action_id"].as_str().unwrap())))
        .header("Authorization", &auth)
        .send_json(json!({"reason": "keep the line running while the glass is late"}))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(30), || peer.stats()["SequenceChange"] == 1), "{}", peer.stats());
    let mut r = http().get(&format!("{}/WorkOrder?$top=1000", peer.base)).call().unwrap();
    let orders: Value = r.body_mut().read_json().unwrap();
    let in_mes: std::collections::HashMap<String, u64> = orders["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["NId"].as_str().unwrap().to_string(), w["Sequence"].as_u64().unwrap()))
        .collect();
    let moved: std::collections::HashMap<&str, u64> =
        changes.iter().map(|c| (c["work_order"].as_str().unwrap(), c["to_sequence"].as_u64().unwrap())).collect();
    for u in &units {
        let expected = moved.get(u.work_order.as_str()).copied().unwrap_or(u.index + 1);
        assert_eq!(in_mes[&u.work_order], expected, "{}", u.work_order);
    }
    let mut numbers: Vec<u64> = in_mes.values().copied().collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=200).collect::<Vec<_>>(), "one unit per number");
    // Delivered once, with the decision on the record.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(peer.stats()["SequenceChange"], 1);
    let mut r = http().get(&format!("{}/SequenceChange", peer.base)).call().unwrap();
    let change: Value = r.body_mut().read_json().unwrap();
    assert!(change["value"][0]["Reason"].as_str().unwrap().contains("keep the line running"), "{change}");
    // The withdrawn proposal, had it been approved anyway, is refused by the MES: its work orders
    // are no longer at the numbers it was computed from. Nothing changes.
    let mut stale: Action = serde_json::from_value(withdrawn()).unwrap();
    stale.status = ActionStatus::Approved;
    let mut sink = jidoka_connectors::odata::OdataSink::new(&peer.sink("mes")).unwrap();
    let err = sink.deliver(&stale).unwrap_err();
    assert!(
        matches!(&err, jidoka_connectors::sink::SinkError::Permanent(m) if m.contains("409") && m.contains("changed since")),
        "{err:?}"
    );
    assert_eq!(peer.stats()["SequenceChange"], 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn expedite_action(call_off: Option<&str>) -> Action {
    Action {
        action_id: "A-exp".into(),
        finding_id: "F-exp".into(),
        kind: ActionKind::ExpediteDelivery,
        status: ActionStatus::Approved,
        payload: json!({"severity": "critical", "reason": "SEAT-STD runs out at ST040", "finding_kind": "shortage.expedite",
                        "subject": {"station": "ST040", "part_number": "SEAT-STD"}, "evidence": ["ev-9"],
                        "agent": "shortage", "agent_version": "1.0.0",
                        "details": {"expedite": {"call_off_id": call_off, "supplier": "SUP-SEAT", "part": "SEAT-STD",
                                                 "station": "ST040", "quantity": 40.0,
                                                 "needed_by": "2026-11-02T13:27:01.000Z"}}}),
        idempotency_key: "jidoka:A-exp".into(),
        correlation_id: "wms:CO-000046".into(),
        created_at: chrono::Utc::now(),
    }
}

#[test]
fn an_approved_expedite_is_one_material_request_in_the_mes() {
    let Some(peer) = peer() else { return };
    let mut sink = jidoka_connectors::odata::OdataSink::new(&peer.sink("mes")).unwrap();
    let first = sink.deliver(&expedite_action(Some("CO-000046"))).expect("delivered");
    assert!(!first.already_delivered);
    // Again (a retry after a lost answer): read back by its key, not written twice.
    assert!(sink.deliver(&expedite_action(Some("CO-000046"))).expect("delivered").already_delivered);
    assert_eq!(peer.stats()["MaterialRequest"], 1);
    let mut r = http().get(&format!("{}/MaterialRequest", peer.base)).call().unwrap();
    let rows: Value = r.body_mut().read_json().unwrap();
    let row = &rows["value"][0];
    assert_eq!(row["CallOffNId"], "CO-000046", "{rows}");
    assert_eq!((row["SupplierNId"].as_str(), row["MaterialNId"].as_str()), (Some("SUP-SEAT"), Some("SEAT-STD")));
    assert_eq!(row["Quantity"].as_f64().or_else(|| row["Quantity"].as_str().and_then(|q| q.parse().ok())), Some(40.0));
    assert!(row["Reason"].as_str().unwrap().contains("runs out at ST040"), "{row}");
    // An expedite that names no call-off is refused before the MES is called, naming the field.
    let mut bad = expedite_action(None);
    bad.idempotency_key = "jidoka:A-exp-2".into();
    let err = sink.deliver(&bad).unwrap_err();
    assert!(
        matches!(&err, jidoka_connectors::sink::SinkError::Permanent(m) if m.contains("details.expedite.call_off_id")),
        "{err:?}"
    );
    assert_eq!(peer.stats()["MaterialRequest"], 1);
}
