//! `jidoka serve` with MQTT against a real broker (Debian's Mosquitto, started here on
//! loopback): a plant's JSON topics, Jidoka events and Sparkplug B become events; bad messages
//! are kept with their reasons while the link stays up; a broker restart and a kill -9 of
//! Jidoka lose no QoS 1 message; findings and Andon alerts are published with the station's
//! retained state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http, jidoka_bin};
use jidoka_connectors::mqtt::sink::Message;
use jidoka_connectors::mqtt::sparkplug::{Metric, MetricValue, Payload, PropertySet, PropertyValue, datatype};
use jidoka_connectors::mqtt::{BrokerLogin, Publisher};
use jidoka_lab::mqtt::Broker;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn broker(dir: &Path) -> Broker {
    Broker::start(&dir.join("broker")).expect("mosquitto must be installed (scripts/mosquitto.sh)")
}

/// Start `jidoka serve`; returns the child and its base URL.
fn serve(config: &Path, data: &Path) -> (Child, String) {
    let mut child = jidoka_bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn jidoka");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(url) = line.strip_prefix("jidoka listening on ") {
            std::thread::spawn(move || for _ in lines {});
            return (child, url.trim().to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("jidoka did not start");
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn query_i64(db: &Path, sql: &str) -> i64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0)
}

fn payloads(db: &Path, kind: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st =
        conn.prepare("SELECT payload FROM events WHERE source = 'mqtt:line' AND kind = ?1 ORDER BY seq").unwrap();
    st.query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|p| serde_json::from_str::<Value>(&p.unwrap()).unwrap()["data"].clone())
        .collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn mosquitto_pub(port: u16, topic: &str, payload: &[u8]) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (scripts/mosquitto.sh installs it)");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    assert!(child.wait().unwrap().success(), "mosquitto_pub {topic}");
}

fn publisher(addr: &str, id: &str) -> Publisher {
    let login =
        BrokerLogin { broker: addr, client_id: id.into(), username: None, password_env: None, keep_alive_s: 30 };
    Publisher::connect(&login, Duration::from_secs(5)).unwrap()
}

fn sp_metric(name: Option<&str>, alias: u64, value: f64) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias: Some(alias),
        datatype: Some(datatype::DOUBLE),
        value: Some(MetricValue::DoubleValue(value)),
        properties: name.map(|_| PropertySet {
            keys: vec!["engUnit".into()],
            values: vec![PropertyValue { r#type: Some(12), is_null: None, string_value: Some("bar".into()) }],
        }),
        ..Metric::default()
    }
}

fn sp(topic: &str, seq: u64, metrics: Vec<Metric>) -> Message {
    let payload = Payload { timestamp: Some(1_764_000_000_000 + seq), metrics, seq: Some(seq), ..Payload::default() };
    Message { topic: topic.into(), payload: payload.to_bytes(), retain: false }
}

#[test]
fn plant_topics_sparkplug_and_bad_messages_over_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let config = dir.path().join("plant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[sources]]
type = "mqtt"
name = "line"
broker = "{addr}"

[[sources.topics]]
filter = "plant/+/scan"
kind = "component_scanned"
txn_id = "{{/id}}"
occurred_at = "{{/ts}}"
fields = {{ vin = "{{/vin}}", station = "{{topic:1}}", part_number = "{{/part}}", quantity = 1 }}

[[sources.topics]]
filter = "plant/+/torque"
kind = "tightening_result"
txn_id = "{{/id}}"
fields = {{ tightening_id = "{{/id}}", station = "{{topic:1}}", tool = "{{/tool}}", pset = "3", joint = "J1", final_torque_nm = "{{/torque}}", final_angle_deg = "{{/angle}}" }}
convert = {{ final_torque_nm = "lbf.ft->N.m" }}

[[sources.topics]]
filter = "spBv1.0/line1/#"
format = "sparkplug_b"
stations = {{ filler = "ST090" }}

[[sources.topics]]
filter = "jidoka/events"
format = "event"
"#,
            addr = broker.addr()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let db = data.join("jidoka.sqlite");
    let (child, _url) = serve(&config, &data);
    // The source has subscribed once its persistent session exists on the broker.
    std::thread::sleep(Duration::from_millis(1500));

    let port = broker.port;
    let scan = |id: u32| {
        json!({"id": format!("S{id}"), "ts": 1_764_000_000_000u64 + u64::from(id), "vin": "1HGCM82633A004352", "part": "P-100"})
            .to_string()
    };
    mosquitto_pub(port, "plant/ST010/scan", scan(1).as_bytes());
    mosquitto_pub(port, "plant/ST020/scan", scan(2).as_bytes());
    // Bad ones: a missing field, not JSON, not UTF-8.
    mosquitto_pub(port, "plant/ST010/scan", br#"{"id": "S3", "ts": 1764000000003, "part": "P-100"}"#);
    mosquitto_pub(port, "plant/ST010/scan", b"{this is not json");
    mosquitto_pub(port, "plant/ST010/scan", b"\xff\xfe\x00garbage");
    mosquitto_pub(port, "plant/ST040/torque", br#"{"id": "T1", "tool": "NR-7", "torque": 18.0, "angle": 190.5}"#);
    let andon = json!({"source_txn_id": "A-1", "occurred_at": "2026-11-24T08:00:00Z", "kind": "andon_raised",
                       "data": {"andon_id": "A-1", "station": "ST030", "fault_code": "E-12", "line_stopped": true}});
    mosquitto_pub(port, "jidoka/events", andon.to_string().as_bytes());
    // After all that the link is still up: a good scan, and a redelivered one.
    mosquitto_pub(port, "plant/ST030/scan", scan(4).as_bytes());
    mosquitto_pub(port, "plant/ST010/scan", scan(1).as_bytes());

    // Sparkplug B: births define aliases, data uses them, a skipped sequence number asks for
    // a rebirth on the node's command topic.
    let mut ncmd = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "spBv1.0/line1/NCMD/edge1",
            "-C",
            "1",
            "-W",
            "30",
            "-N",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut edge = publisher(&broker.addr(), "edge1");
    let bd = Metric {
        name: Some("bdSeq".into()),
        datatype: Some(datatype::UINT64),
        value: Some(MetricValue::LongValue(0)),
        ..Metric::default()
    };
    edge.publish(&[
        sp("spBv1.0/line1/NBIRTH/edge1", 0, vec![bd]),
        sp("spBv1.0/line1/DBIRTH/edge1/filler", 1, vec![sp_metric(Some("Coolant/Pressure"), 1, 2.5)]),
        sp("spBv1.0/line1/DDATA/edge1/filler", 2, vec![sp_metric(None, 1, 2.75)]),
        sp("spBv1.0/line1/DDATA/edge1/filler", 7, vec![sp_metric(None, 1, 2.9)]),
    ])
    .unwrap();
    let out = {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut ncmd.stdout.take().unwrap(), &mut buf).unwrap();
        let _ = ncmd.wait();
        buf
    };
    let cmd = Payload::from_bytes(&out).expect("a Sparkplug rebirth command");
    assert_eq!(cmd.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(cmd.metrics[0].value, Some(MetricValue::BooleanValue(true)));

    assert!(
        wait_until(Duration::from_secs(20), || {
            query_i64(&db, "SELECT count(*) FROM events WHERE source = 'mqtt:line'") >= 8
        }),
        "events stored: {}",
        query_i64(&db, "SELECT count(*) FROM events WHERE source = 'mqtt:line'")
    );
    std::thread::sleep(Duration::from_millis(500));
    let scans = payloads(&db, "component_scanned");
    let stations: Vec<&str> = scans.iter().map(|s| s["station"].as_str().unwrap()).collect();
    assert_eq!(stations, ["ST010", "ST020", "ST030"], "the redelivered scan is stored once");
    let torque = payloads(&db, "tightening_result");
    assert_eq!(torque.len(), 1);
    assert!((torque[0]["final_torque_nm"].as_f64().unwrap() - 24.405).abs() < 0.01, "{torque:?}");
    assert_eq!(payloads(&db, "andon_raised").len(), 1);
    let samples = payloads(&db, "process_parameter_sample");
    let values: Vec<f64> = samples.iter().map(|s| s["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [2.5, 2.75, 2.9]);
    assert!(samples.iter().all(|s| s["station"] == "ST090" && s["unit"] == "bar" && s["equipment"] == "filler"));

    let rejected =
        std::fs::read_to_string(jidoka_connectors::reject::RejectFile::path_for(&data, "mqtt", "line")).unwrap();
    let rejected: Vec<Value> = rejected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rejected.len(), 3, "{rejected:#?}");
    let reasons: Vec<String> = rejected.iter().map(|r| r["reasons"][0].as_str().unwrap().to_string()).collect();
    assert!(reasons[0].starts_with("data.vin:"), "{}", reasons[0]);
    assert!(reasons[1].starts_with("payload: not JSON"), "{}", reasons[1]);
    assert!(reasons[2].starts_with("payload: not UTF-8"), "{}", reasons[2]);
    assert!(rejected.iter().all(|r| r["origin"] == "plant/ST010/scan"));
    assert_eq!(rejected[2]["payload_encoding"], "hex");
    terminate(child);
}

#[test]
fn a_broker_restart_and_a_kill_9_lose_no_message_and_double_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let config = dir.path().join("plant.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"mqtt\"\nname = \"line\"\nbroker = \"{}\"\n\
             [[sources.topics]]\nfilter = \"line/events\"\nformat = \"event\"\n",
            broker.addr()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let db = data.join("jidoka.sqlite");
    let (child, _) = serve(&config, &data);
    std::thread::sleep(Duration::from_millis(1500));
    let total = 1200u32;
    let event = |n: u32| {
        Message {
            topic: "line/events".into(),
            payload: json!({"source_txn_id": format!("P{n}"), "occurred_at": "2026-11-24T08:00:00Z", "kind": "process_parameter_sample",
                            "data": {"equipment": "FILLER-1", "tag": "pressure", "value": f64::from(n) / 10.0}})
            .to_string()
            .into_bytes(),
            retain: false,
        }
    };
    let stored = || query_i64(&db, "SELECT count(*) FROM events WHERE source = 'mqtt:line'");
    let mut line = publisher(&broker.addr(), "plc-1");
    // At least once from the producer's side: a message is published until the broker has it.
    let mut send = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while line.publish(&[event(n)]).is_err() {
            assert!(Instant::now() < deadline, "message {n} never reached the broker");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for n in 0..400 {
        send(n);
    }
    broker.restart().unwrap();
    for n in 400..800 {
        send(n);
    }
    assert!(wait_until(Duration::from_secs(30), || stored() >= 700), "flowing before the kill: {}", stored());
    let mut child = child;
    child.kill().unwrap();
    let _ = child.wait();
    for n in 800..1000 {
        send(n);
    }
    let (child, _) = serve(&config, &data);
    for n in 1000..total {
        send(n);
    }
    assert!(wait_until(Duration::from_secs(60), || stored() >= i64::from(total)), "stored {} of {total}", stored());
    std::thread::sleep(Duration::from_millis(500));
    terminate(child);
    assert_eq!(stored(), i64::from(total));
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT source_txn_id) FROM events WHERE source = 'mqtt:line'"),
        i64::from(total)
    );
}

#[test]
fn findings_and_andon_alerts_are_published_with_the_stations_retained_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let (token, hash) = jidoka_service::auth::new_token().unwrap();
    let config = dir.path().join("plant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[api.tokens]]
name = "integrator"
role = "admin"
sha256 = "{hash}"

[[sinks]]
type = "mqtt"
name = "boards"
broker = "{addr}"
topic_prefix = "plant1/jidoka"
publish_findings = true

[[governance.policies]]
kinds = ["torque.*"]
verdict = "HOLD"
actions = [{{ kind = "raise_andon" }}]
"#,
            addr = broker.addr()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (child, url) = serve(&config, &data);
    let port = broker.port.to_string();
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", "plant1/jidoka/#", "-v", "-C", "4", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let hold = json!({"source": "ctrl-1", "source_txn_id": "T1", "occurred_at": "2026-11-24T08:00:00Z", "kind": "tightening_result",
           "data": {"tightening_id": "T1", "vin": "1HGCM82633A004352", "station": "ST040", "tool": "NR-7", "pset": "3",
                    "joint": "J1", "category": "A", "final_torque_nm": 31.0, "final_angle_deg": 200.0,
                    "torque_min_nm": 22.0, "torque_max_nm": 28.0, "controller_verdict": "NOK"}});
    let agent = http();
    let r = agent
        .post(&format!("{url}/api/events"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(&hold)
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let out = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut topics: Vec<&str> = text.lines().filter_map(|l| l.split_once(' ').map(|(t, _)| t)).collect();
    topics.sort_unstable();
    assert_eq!(
        topics,
        [
            "plant1/jidoka/actions/raise_andon",
            "plant1/jidoka/findings/ST040/HOLD",
            "plant1/jidoka/station/ST040/andon",
            "plant1/jidoka/station/ST040/status"
        ],
        "{text}"
    );
    let finding_line = text.lines().find(|l| l.starts_with("plant1/jidoka/findings/")).unwrap();
    let finding: Value = serde_json::from_str(finding_line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(finding["verdict"], "HOLD");
    assert!(finding["kind"].as_str().unwrap().starts_with("torque."));
    // A board that connects later still sees the station's state (retained).
    let late = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "plant1/jidoka/station/+/andon", "-C", "1", "-W", "5"])
        .output()
        .unwrap();
    let state: Value = serde_json::from_slice(&late.stdout).expect("a retained Andon state");
    assert_eq!(state["station"], "ST040");
    assert_eq!(state["active"], true);
    // The outbox marked the alert delivered only after the broker acknowledged it.
    let delivered = wait_until(Duration::from_secs(10), || {
        let r = agent
            .get(&format!("{url}/api/actions?kind=raise_andon"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .unwrap_or(Value::Null);
        r["items"][0]["status"] == "delivered"
    });
    assert!(delivered, "the Andon action was not marked delivered");
    terminate(child);
}
