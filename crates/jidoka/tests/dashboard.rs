//! The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core,
//! against `jidoka demo`. The browser script (tests/dashboard/e2e.mjs) signs in as an
//! operator, a supervisor and a quality engineer, watches a HOLD arrive live, approves it with a
//! reason, sees it delivered and finds its audit record; then this test checks the store.
//! Screenshots: target/dashboard-artifacts/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

mod common;

use common::jidoka_bin;
use jidoka_store::{SqliteStore, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Install (once) Chromium and playwright-core; the folder of node_modules.
fn browser_tools() -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/browser.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/browser.sh");
    assert!(out.status.success(), "scripts/browser.sh failed: the browser tests cannot run without Chromium");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Demo {
    child: Child,
    url: String,
    tokens: HashMap<String, String>,
    passwords: HashMap<String, String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(dir: &std::path::Path) -> Demo {
    let mut child = jidoka_bin()
        .args(["demo", "--listen", "127.0.0.1:0", "--speed", "60", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn jidoka demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut tokens, mut passwords) = (HashMap::new(), HashMap::new());
    let mut section = "";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.starts_with("one-time API tokens") {
            section = "tokens";
        } else if line.starts_with("one-time dashboard logins") {
            section = "logins";
        } else if let Some(url) = line.strip_prefix("jidoka listening on ") {
            std::thread::spawn(move || for _ in lines {});
            return Demo { child, url: url.trim().to_string(), tokens, passwords };
        } else if let Some((k, v)) = line.trim().split_once(char::is_whitespace) {
            let target = if section == "tokens" { &mut tokens } else { &mut passwords };
            target.insert(k.to_string(), v.trim().to_string());
        }
    }
    let _ = child.kill();
    panic!("jidoka demo did not report its address");
}

#[test]
fn supervisor_approves_a_live_hold_in_the_browser_and_the_operator_cannot() {
    let node_path = browser_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = start_demo(dir.path());
    let artifacts = repo().join("target/dashboard-artifacts");
    let out = Command::new("node")
        .arg(repo().join("tests/dashboard/e2e.mjs"))
        .env("BASE", &demo.url)
        .env("NODE_PATH", &node_path)
        .env("ARTIFACTS", &artifacts)
        .env("SUP_USER", "demo-supervisor")
        .env("SUP_PASS", &demo.passwords["demo-supervisor"])
        .env("QE_USER", "demo-quality")
        .env("QE_PASS", &demo.passwords["demo-quality"])
        .env("OP_USER", "demo-operator")
        .env("OP_PASS", &demo.passwords["demo-operator"])
        .env("OP_TOKEN", &demo.tokens["operator"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the browser script printed no report: {stdout}"));
    eprintln!("browser report: {report}");
    assert!(out.status.success() && report["ok"] == true, "browser checks failed: {report}");
    assert_eq!(report["operator_api_status"], 403);
    assert_eq!(report["operator_form_status"], 403);
    assert_eq!(report["status_after_approval"], "delivered");
    // axe-core, WCAG 2 A and AA (contrast included), on every page.
    assert_eq!(report["a11y_pages"], 9, "{report}");
    // The material forecast lists the parts the line has taken, the frame among them.
    assert!(report["shortage_rows"].as_u64().unwrap_or(0) >= 10, "{report}");
    assert_eq!(report["shortage_frame"], true, "{report}");
    // The build queue: the frozen head shown, the proposal's figures beside doing nothing, the
    // approval delivered to the simulated line.
    assert_eq!(report["build_queue_frozen_rows"], 30, "{report}");
    let figures = report["proposal_figures"].as_array().expect("the proposal's figures");
    let lost = figures.iter().find(|r| r[0].as_str().is_some_and(|l| l.starts_with("Takts lost"))).expect("takts lost");
    let cell = |i: usize| lost[i].as_str().and_then(|c| c.parse::<u64>().ok()).expect("a count");
    assert!(cell(1) > 0 && cell(3) == 0, "the proposal removes the line stops: {lost}");
    assert_eq!(report["resequence_status"], "delivered", "{report}");
    assert!(report["resequence_history"].as_str().is_some_and(|h| h.contains("re-sequenced")), "{report}");
    assert_eq!(report["hold_declared"], true, "{report}");
    assert_eq!(report["a11y_violations"], serde_json::json!([]), "{report}");
    let history: Vec<&str> =
        report["audit_history"].as_array().map(|h| h.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert_eq!(history, ["action_proposed", "action_approved", "action_delivered"], "{report}");
    for shot in ["01-operator-line-tablet", "02-supervisor-line-live-hold", "04-supervisor-finding-after-approval"] {
        let png = std::fs::read(artifacts.join(format!("{shot}.png"))).expect("screenshot saved");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot} is a real screenshot");
    }
    // What the browser did is in the store: the approval by the supervisor with the reason,
    // exactly once, and the operator's attempts left no trace.
    let action_id = report["action_id"].as_str().expect("action id").to_string();
    drop(demo);
    let store = SqliteStore::open(dir.path().join("jidoka.sqlite")).expect("store");
    let record = store.action(&action_id).expect("read").expect("the action is stored");
    assert_eq!(record.action.status.as_str(), "delivered");
    let mut approvals = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.audit_after(after, 1000).expect("audit");
        let Some(last) = rows.last().map(|r| r.seq) else { break };
        for r in rows {
            let v: Value = serde_json::from_str(&r.body).expect("audit body");
            if v["details"]["action_id"] == action_id.as_str() && v["what"] == "action_approved" {
                approvals.push(v);
            }
        }
        after = last;
    }
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["actor"], "user:demo-supervisor");
    assert!(approvals[0]["details"]["note"].as_str().is_some_and(|n| n.contains("hold the unit for rework")));
    // The line followed the approved sequence: its MES released the moved work orders again with
    // the numbers the proposal gave them.
    let reseq = store.action(report["resequence_action"].as_str().expect("resequence action")).unwrap().unwrap();
    let proposed: HashMap<String, u64> = reseq.action.payload["details"]["resequence"]
        .as_array()
        .expect("the proposal's numbers")
        .iter()
        .map(|c| (c["vin"].as_str().unwrap().to_string(), c["to_sequence"].as_u64().unwrap()))
        .collect();
    let mut released: HashMap<String, u64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 5000).expect("events");
        let Some(last) = page.last_seq() else { break };
        for e in page.events {
            if let jidoka_model::EventPayload::WorkOrderReleased(w) = &e.event.payload {
                released.insert(w.vin.clone(), w.sequence);
            }
        }
        after = last;
    }
    let followed = proposed.iter().filter(|(vin, n)| released.get(*vin) == Some(*n)).count();
    assert_eq!(followed, proposed.len(), "every moved work order released again with its new number");
}
