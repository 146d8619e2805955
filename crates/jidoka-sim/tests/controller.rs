//! The Open Protocol client against the emulated controller: results and traces arrive whole,
//! revisions are negotiated down, and nothing is lost or doubled across dropped connections,
//! garbage, resends and a store that fails.
//!
//! The store here is an in-memory stand-in (`MemStore`) that keeps events by source transaction
//! id as the real store does; the binary's tests run the same link into the SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use jidoka_connectors::openprotocol::client::{self, LinkStats, OpenProtocolSourceConfig};
use jidoka_connectors::{ResultStore, Stored};
use jidoka_model::{Event, EventPayload, TighteningResult};
use jidoka_sim::controller::{Controller, EmulatorConfig, Faults};
use jidoka_sim::line::{CurveMode, Simulation};
use jidoka_sim::plant::Plant;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tightenings of station ST010 from the simulated line, with curves.
fn tightenings(n: usize) -> Vec<(TighteningResult, DateTime<Utc>)> {
    let plant = Plant::default_plant().unwrap();
    let mut sim = Simulation::new(plant, 11, Some(400), CurveMode::All);
    let mut out = Vec::new();
    while sim.has_more() && out.len() < n {
        for e in sim.next_slot().events {
            if let EventPayload::TighteningResult(t) = e.payload
                && t.station == "ST010"
            {
                out.push((t, e.occurred_at));
            }
        }
    }
    out.truncate(n);
    out
}

/// In-memory stand-in for the durable store: idempotent by source transaction id, keeps the
/// checkpoint, and can be told to fail appends.
#[derive(Default)]
struct MemStore {
    events: BTreeMap<String, Event>,
    checkpoint: Option<String>,
    fail_next: usize,
    /// Fail every append that carries events (a checkpoint alone still goes through).
    fail_events: bool,
    appends: usize,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemStore>>);

impl ResultStore for Shared {
    fn append(&mut self, events: Vec<Event>, checkpoint: String) -> Result<Vec<Stored>, String> {
        let mut s = self.0.lock().unwrap();
        s.appends += 1;
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err("disk full (simulated)".into());
        }
        if s.fail_events && !events.is_empty() {
            return Err("events table locked (simulated)".into());
        }
        let out = events
            .into_iter()
            .map(|e| {
                if s.events.contains_key(&e.source_txn_id) {
                    Stored::Duplicate
                } else {
                    s.events.insert(e.source_txn_id.clone(), e);
                    Stored::Stored
                }
            })
            .collect();
        s.checkpoint = Some(checkpoint);
        Ok(out)
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    stats: Arc<LinkStats>,
    thread: std::thread::JoinHandle<()>,
}

fn link(cfg: OpenProtocolSourceConfig, store: &Shared) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LinkStats::default());
    let (s2, st2, mut store) = (stop.clone(), stats.clone(), store.clone());
    let checkpoint = store.0.lock().unwrap().checkpoint.clone();
    let thread = std::thread::spawn(move || {
        let mut rejects = jidoka_connectors::reject::RejectMemory::default();
        client::run(&cfg, &mut store, &mut rejects, checkpoint, &s2, &st2);
        assert!(rejects.0.is_empty(), "no result refused: {:?}", rejects.0);
    });
    Running { stop, stats, thread }
}

impl Running {
    fn stop(self) -> Arc<LinkStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.stats
    }
}

fn config(c: &Controller) -> OpenProtocolSourceConfig {
    let mut cfg = OpenProtocolSourceConfig::new("st010", &c.addr().to_string(), "ST010");
    cfg.joints.insert("11".into(), "SUBFRAME".into());
    cfg.trace_wait_ms = 2000;
    cfg.reply_timeout_ms = 1000;
    cfg
}

/// The checkpoint's high mark, or the whole checkpoint when results are still held in it (so a
/// comparison with the mark alone fails then).
fn mark(checkpoint: &Option<String>) -> Option<&str> {
    let cp = checkpoint.as_deref()?;
    if cp.contains("\nheld ") { Some(cp) } else { cp.lines().next() }
}

fn wait_for(store: &Shared, n: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if store.0.lock().unwrap().events.len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A controller configured by `emu`, a link to it with the default configuration, and `made`
/// pushed once the link has started.
fn feed(emu: EmulatorConfig, made: &[(TighteningResult, DateTime<Utc>)]) -> (Controller, Shared, Running) {
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let running = link(config(&c), &store);
    std::thread::sleep(Duration::from_millis(300));
    for (t, at) in made {
        c.push(t.clone(), *at);
    }
    (c, store, running)
}

#[test]
fn results_arrive_with_their_curves_and_the_fields_the_line_made() {
    let made = tightenings(40);
    // A controller that speaks communication revision 3 and result revision 5 at most: the
    // client asks for 7 and steps down on error 97.
    let emu = EmulatorConfig { max_comm_revision: 3, max_result_revision: 5, ..EmulatorConfig::default() };
    let (c, store, running) = feed(emu, &made);
    assert!(wait_for(&store, made.len(), 30), "all results stored");
    let stats = running.stop();
    assert!(c.stats().refused.load(Ordering::Relaxed) >= 6, "revisions 7..4 refused for 0001 and 7, 6 for 0060");
    assert_eq!(LinkStats::get(&stats.traces_joined), made.len() as u64);
    let s = store.0.lock().unwrap();
    for (k, (t, at)) in made.iter().enumerate() {
        let id = k as u64 + 1;
        let e = s.events.values().find(|e| e.source_txn_id.starts_with(&format!("{id}@"))).expect("stored");
        assert_eq!(e.source, "op:st010");
        assert_eq!(e.occurred_at.timestamp(), at.timestamp());
        let EventPayload::TighteningResult(r) = &e.payload else { panic!("kind") };
        assert_eq!(r.vin, t.vin);
        assert_eq!(r.joint, t.joint, "pset 11 maps to SUBFRAME and the batch counter numbers the bolt");
        assert_eq!(r.tool, t.tool);
        assert!((r.final_torque_nm - t.final_torque_nm).abs() <= 0.005 + 1e-9);
        assert!((r.final_angle_deg - t.final_angle_deg).abs() <= 0.5 + 1e-9, "revision 5 carries whole degrees");
        assert_eq!(r.controller_verdict, t.controller_verdict);
        let (got, want) = (r.curve.as_ref().unwrap(), t.curve.as_ref().unwrap());
        assert_eq!(got.torque_nm.len(), want.torque_nm.len());
        let peak = want.torque_nm.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = got.torque_nm.iter().zip(&want.torque_nm).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= peak / 30_000.0 + 1e-9, "16-bit samples keep the curve: {worst} of {peak}");
    }
    assert_eq!(mark(&s.checkpoint), Some(made.len().to_string().as_str()));
}

#[test]
fn drops_garbage_resends_and_a_failing_store_lose_nothing_and_double_nothing() {
    let made = tightenings(300);
    let faults =
        Faults { drop_after_results: Some(23), resend_every: Some(7), garbage_every: Some(11), ..Faults::default() };
    let emu = EmulatorConfig { faults, ack_timeout: Duration::from_millis(300), ..EmulatorConfig::default() };
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let mut cfg = config(&c);
    cfg.traces = false;
    let running = link(cfg.clone(), &store);
    std::thread::sleep(Duration::from_millis(300));
    for (k, (t, at)) in made.iter().enumerate() {
        c.push(t.clone(), *at);
        if k == 150 {
            // Two appends fail: the result is not acknowledged and the link starts again.
            store.0.lock().unwrap().fail_next = 2;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        wait_for(&store, made.len(), 60),
        "all {} results stored ({} so far)",
        made.len(),
        store.0.lock().unwrap().events.len()
    );
    let stats = running.stop();
    let s = store.0.lock().unwrap();
    assert_eq!(s.events.len(), made.len(), "exactly one event per tightening");
    assert_eq!(mark(&s.checkpoint), Some("300"));
    eprintln!(
        "connects {} garbage {} recovered {} duplicates {}",
        LinkStats::get(&stats.connects),
        LinkStats::get(&stats.garbage),
        LinkStats::get(&stats.recovered),
        LinkStats::get(&stats.duplicates)
    );
    assert!(LinkStats::get(&stats.connects) >= 3, "the controller dropped the link every 23 results");
    assert!(LinkStats::get(&stats.garbage) >= 1, "garbage was seen and skipped");
    assert!(LinkStats::get(&stats.recovered) > 0, "results made while disconnected were uploaded");
    assert!(LinkStats::get(&stats.duplicates) > 0, "resends were absorbed as duplicates");
    assert_eq!(LinkStats::get(&stats.unrecoverable), 0);
}

/// A link without traces to `c` stores `made[..40]` and stops: its configuration, for the next
/// start after whatever happens while it is down.
fn first_forty(c: &Controller, made: &[(TighteningResult, DateTime<Utc>)], store: &Shared) -> OpenProtocolSourceConfig {
    let mut cfg = config(c);
    cfg.traces = false;
    let running = link(cfg.clone(), store);
    std::thread::sleep(Duration::from_millis(300));
    for (t, at) in &made[..40] {
        c.push(t.clone(), *at);
    }
    assert!(wait_for(store, 40, 20));
    running.stop();
    cfg
}

/// The line goes on while the link is down (`while_down` made), then the link starts again and
/// `after` is made: the running link.
fn resume(
    c: &Controller,
    cfg: OpenProtocolSourceConfig,
    store: &Shared,
    while_down: &[(TighteningResult, DateTime<Utc>)],
    after: &[(TighteningResult, DateTime<Utc>)],
) -> Running {
    for (t, at) in while_down {
        c.push(t.clone(), *at);
    }
    let running = link(cfg, store);
    std::thread::sleep(Duration::from_millis(300));
    for (t, at) in after {
        c.push(t.clone(), *at);
    }
    running
}

/// The `source_gap` events in the store.
fn gaps(s: &MemStore) -> Vec<jidoka_model::event::SourceGap> {
    s.events
        .values()
        .filter_map(|e| match &e.payload {
            EventPayload::SourceGap(g) => Some(g.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restart_uploads_what_was_made_while_the_link_was_down() {
    let made = tightenings(120);
    let c = Controller::start("127.0.0.1:0", EmulatorConfig::default()).unwrap();
    let store = Shared::default();
    let cfg = first_forty(&c, &made, &store);
    let running = resume(&c, cfg, &store, &made[40..100], &made[100..]);
    assert!(wait_for(&store, made.len(), 30), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
    let stats = running.stop();
    // Ids 41..=100 uploaded by MID 0064; on a loaded machine the link may still be recovering
    // when the first of 101..=120 are made, and those are uploaded too.
    let recovered = LinkStats::get(&stats.recovered);
    assert!((60..=80).contains(&recovered), "ids 41..=100 uploaded by MID 0064: {recovered}");
    assert_eq!(mark(&store.0.lock().unwrap().checkpoint), Some("120"));
}

#[test]
fn a_replaced_controller_whose_ids_restart_is_uploaded_from_its_first_result() {
    let made = tightenings(60);
    let store = Shared::default();
    let old = Controller::start("127.0.0.1:0", EmulatorConfig::default()).unwrap();
    let mut cfg = first_forty(&old, &made, &store);
    old.shutdown();
    // The new controller starts counting at 1 and has made 20 results before the link is back.
    let new = Controller::start("127.0.0.1:0", EmulatorConfig::default()).unwrap();
    for (t, at) in &made[40..] {
        new.push(t.clone(), *at);
    }
    cfg.address = new.addr().to_string();
    let running = link(cfg, &store);
    assert!(wait_for(&store, 60, 20), "{} of 60", store.0.lock().unwrap().events.len());
    running.stop();
    assert_eq!(mark(&store.0.lock().unwrap().checkpoint), Some("20"));
}

/// Regression: after the controller restarted (ids from 1 again) while Jidoka was down, and
/// made more results than Jidoka had stored, its new results with ids up to the checkpoint were
/// lost without a log line.
#[test]
fn a_controller_whose_ids_restart_while_the_link_is_down_is_uploaded_from_its_first_result() {
    let made = tightenings(90);
    let c = Controller::start("127.0.0.1:0", EmulatorConfig::default()).unwrap();
    let store = Shared::default();
    let cfg = first_forty(&c, &made, &store);
    assert!(store.0.lock().unwrap().checkpoint.as_deref().is_some_and(|cp| cp.contains("\nlast 40 ")));
    // Restarted, the controller counts from 1 again and makes 50 results before the link is back.
    c.restart_ids();
    for (t, at) in &made[40..] {
        c.push(t.clone(), *at);
    }
    let running = link(cfg, &store);
    assert!(wait_for(&store, 90, 20), "{} of 90", store.0.lock().unwrap().events.len());
    let stats = running.stop();
    assert_eq!(LinkStats::get(&stats.id_restarts), 1);
    assert_eq!(LinkStats::get(&stats.recovered), 50, "ids 1..=50 of the restarted controller");
    assert_eq!(mark(&store.0.lock().unwrap().checkpoint), Some("50"));
}

#[test]
fn a_controller_that_never_answers_is_left_and_retried() {
    let emu = EmulatorConfig { faults: Faults { silent: true, ..Faults::default() }, ..EmulatorConfig::default() };
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let mut cfg = config(&c);
    cfg.reply_timeout_ms = 200;
    let running = link(cfg, &store);
    std::thread::sleep(Duration::from_millis(2500));
    let stats = running.stop();
    assert_eq!(LinkStats::get(&stats.connects), 0, "no session without a communication start answer");
    assert!(c.stats().connections.load(Ordering::Relaxed) >= 2, "the link was retried");
    // What /api/status and /metrics show of it.
    let status = stats.to_json();
    assert_eq!(status["connected"], false);
    assert!(status["since"].is_string(), "down since the first attempt: {status}");
    assert_eq!(status["last_error"]["error"], "no answer to MID 0001 within the reply timeout");
    let mut metrics = String::new();
    stats.metrics("st010", &mut metrics);
    assert!(metrics.contains("jidoka_link_connected{link=\"st010\"} 0\n"), "{metrics}");
}

#[test]
fn link_level_acknowledgement_carries_results_and_traces_whole() {
    let made = tightenings(60);
    let emu = EmulatorConfig { link_ack: true, ..EmulatorConfig::default() };
    let (c, store, running) = feed(emu, &made);
    assert!(wait_for(&store, made.len(), 30), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
    let stats = running.stop();
    assert_eq!(LinkStats::get(&stats.traces_joined), made.len() as u64, "traces follow their acknowledged result");
    let st = c.stats();
    assert_eq!(st.acks.load(Ordering::Relaxed), made.len() as u64, "each result acknowledged once, by MID 9997");
    // Results, two traces each, and the answers to communication start's followers.
    assert!(st.link_acks.load(Ordering::Relaxed) >= 3 * made.len() as u64);
    assert_eq!(st.refused.load(Ordering::Relaxed), 1, "only the first upload request, before any result was made");
    assert_eq!(st.link_resends.load(Ordering::Relaxed), 0);
    let s = store.0.lock().unwrap();
    assert_eq!(mark(&s.checkpoint), Some("60"), "nothing left held once stored");
    assert!(s.appends >= 2 * made.len(), "each result is held durably before its acknowledgement, then stored");
}

#[test]
fn refused_and_lost_link_acknowledgements_lose_nothing_and_double_nothing() {
    let made = tightenings(200);
    let faults = Faults {
        refuse_every: Some(5),
        withhold_ack_every: Some(7),
        drop_after_results: Some(41),
        resend_every: Some(9),
        ..Faults::default()
    };
    let emu =
        EmulatorConfig { link_ack: true, faults, ack_timeout: Duration::from_millis(300), ..EmulatorConfig::default() };
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let mut cfg = config(&c);
    cfg.reply_timeout_ms = 300;
    cfg.traces = true;
    let running = link(cfg, &store);
    std::thread::sleep(Duration::from_millis(300));
    for (t, at) in &made {
        c.push(t.clone(), *at);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(wait_for(&store, made.len(), 90), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
    let stats = running.stop();
    let s = store.0.lock().unwrap();
    assert_eq!(s.events.len(), made.len(), "exactly one event per tightening");
    assert_eq!(mark(&s.checkpoint), Some("200"));
    let st = c.stats();
    eprintln!(
        "connects {} client resends {} controller repeats {} duplicates {} joined {} late {} recovered {}",
        LinkStats::get(&stats.connects),
        LinkStats::get(&stats.link_resends),
        st.link_repeats.load(Ordering::Relaxed),
        LinkStats::get(&stats.duplicates),
        LinkStats::get(&stats.traces_joined),
        LinkStats::get(&stats.traces_late),
        LinkStats::get(&stats.recovered)
    );
    assert!(LinkStats::get(&stats.link_resends) > 0, "refused and unacknowledged telegrams were sent again");
    assert!(st.link_repeats.load(Ordering::Relaxed) > 0, "a telegram whose acknowledgement was lost came again");
    assert!(LinkStats::get(&stats.connects) >= 2, "the controller dropped the link after 41 results");
    assert!(LinkStats::get(&stats.recovered) > 0, "results made while disconnected were uploaded");
    assert_eq!(LinkStats::get(&stats.unrecoverable), 0);
}

#[test]
fn a_result_acknowledged_at_link_level_is_stored_even_when_the_controller_no_longer_has_it() {
    let made = tightenings(1);
    let store = Shared::default();
    store.0.lock().unwrap().fail_events = true;
    let a = Controller::start("127.0.0.1:0", EmulatorConfig { link_ack: true, ..EmulatorConfig::default() }).unwrap();
    let mut cfg = config(&a);
    cfg.traces = false;
    let running = link(cfg.clone(), &store);
    std::thread::sleep(Duration::from_millis(300));
    a.push(made[0].0.clone(), made[0].1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.stats().acks.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.stats().acks.load(Ordering::Relaxed), 1, "the result was acknowledged");
    running.stop();
    a.shutdown();
    {
        let s = store.0.lock().unwrap();
        assert!(s.events.is_empty(), "the store refused the result itself");
        let held = client::Tracker::from_checkpoint(s.checkpoint.as_deref());
        assert_eq!(held.held().keys().copied().collect::<Vec<_>>(), vec![1], "but holds its telegram");
    }
    // A replacement controller that never made it; the store works again.
    store.0.lock().unwrap().fail_events = false;
    let b = Controller::start("127.0.0.1:0", EmulatorConfig { link_ack: true, ..EmulatorConfig::default() }).unwrap();
    cfg.address = b.addr().to_string();
    let running = link(cfg, &store);
    assert!(wait_for(&store, 1, 10), "the held result is stored");
    running.stop();
    let s = store.0.lock().unwrap();
    let e = s.events.values().next().unwrap();
    let EventPayload::TighteningResult(r) = &e.payload else { panic!("kind") };
    assert_eq!(r.vin, made[0].0.vin);
    assert!((r.final_torque_nm - made[0].0.final_torque_nm).abs() <= 0.005 + 1e-9);
    assert_eq!(mark(&s.checkpoint), Some("1"), "stored and no longer held");
}

#[test]
fn an_undecodable_result_is_kept_with_why_and_then_uploaded_whole() {
    let made = tightenings(40);
    let faults = Faults { corrupt_every: Some(5), ..Faults::default() };
    let c = Controller::start("127.0.0.1:0", EmulatorConfig { faults, ..EmulatorConfig::default() }).unwrap();
    let store = Shared::default();
    let mut cfg = config(&c);
    cfg.traces = false;
    let (stop, stats) = (Arc::new(AtomicBool::new(false)), Arc::new(LinkStats::default()));
    let thread = {
        let (stop, stats, mut store) = (stop.clone(), stats.clone(), store.clone());
        std::thread::spawn(move || {
            let mut rejects = jidoka_connectors::reject::RejectMemory::default();
            client::run(&cfg, &mut store, &mut rejects, None, &stop, &stats);
            rejects.0
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for (t, at) in &made {
        c.push(t.clone(), *at);
        std::thread::sleep(Duration::from_millis(5));
    }
    // The spoiled ones are found missing when the next id arrives, and uploaded (MID 0065
    // carries them correctly); the last one by the quiet-link check.
    assert!(wait_for(&store, made.len(), 30), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
    stop.store(true, Ordering::Relaxed);
    let rejects = thread.join().unwrap();
    assert_eq!(rejects.len(), 8, "every fifth live result kept: {rejects:#?}");
    for r in &rejects {
        assert_eq!(r.source, "op:st010");
        assert_eq!(r.origin, "MID 0061 rev 7");
        assert!(r.reasons[0].starts_with("data.cell_id"), "{:?}", r.reasons);
        assert!(r.payload.contains("CELL"), "the telegram as received");
    }
    assert_eq!(store.0.lock().unwrap().events.len(), made.len(), "and each tightening stored once");
    assert!(LinkStats::get(&stats.recovered) >= 7);
}

/// Regression: a controller that answers every request at the revision asked for with a
/// revision-1 body, and MID 0004 at that revision for what it does not know (here old-result
/// upload), kept the default configuration from ever subscribing.
#[test]
fn a_revision_one_controller_subscribes_with_the_default_configuration() {
    let made = tightenings(30);
    let emu = EmulatorConfig { revision1_bodies: true, old_results: false, ..EmulatorConfig::default() };
    let (_controller, store, running) = feed(emu, &made);
    assert!(wait_for(&store, made.len(), 20), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
    let up = running.stats.to_json();
    let stats = running.stop();
    assert_eq!(up["connected"], true, "{up}");
    assert_eq!(up["last_error"], serde_json::Value::Null, "{up}");
    assert_eq!(up["results_stored"], 30);
    assert_eq!(LinkStats::get(&stats.connects), 1, "one connection, no reconnect loop");
    assert_eq!(LinkStats::get(&stats.rejected), 0);
    assert_eq!(LinkStats::get(&stats.traces_joined), made.len() as u64);
    let s = store.0.lock().unwrap();
    for (k, (t, _)) in made.iter().enumerate() {
        let e = s.events.values().find(|e| e.source_txn_id.starts_with(&format!("{}@", k + 1))).expect("stored");
        let EventPayload::TighteningResult(r) = &e.payload else { panic!("kind") };
        assert_eq!(r.vin, t.vin);
        assert!((r.final_torque_nm - t.final_torque_nm).abs() <= 0.005 + 1e-9);
    }
    assert_eq!(mark(&s.checkpoint), Some("30"));
}

/// Regression: results a controller without upload made while the link was down were lost with a
/// WARN line only; they are a `source_gap` (each id once) as soon as a later result shows them.
#[test]
fn results_a_controller_cannot_upload_are_logged_as_a_gap() {
    let made = tightenings(70);
    let emu = EmulatorConfig { old_results: false, ..EmulatorConfig::default() };
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let cfg = first_forty(&c, &made, &store);
    let running = resume(&c, cfg, &store, &made[40..60], &made[60..]);
    assert!(wait_for(&store, 51, 20), "{} events", store.0.lock().unwrap().events.len());
    let stats = running.stop();
    let s = store.0.lock().unwrap();
    let gaps = gaps(&s);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!((gaps[0].first_id, gaps[0].last_id, gaps[0].count), (41, 60, 20));
    assert_eq!(gaps[0].station, "ST010");
    assert!(gaps[0].reason.contains("refused old-result upload"), "{}", gaps[0].reason);
    assert_eq!(LinkStats::get(&stats.unrecoverable), 20);
    assert_eq!(mark(&s.checkpoint), Some("70"), "the checkpoint moves past the gap");
}

/// Regression (found against a public controller simulator without upload): after it restarted
/// and counted from 1 again, its results below the checkpoint were stored but the ones it made
/// before the link was back were lost without a word, and gap detection stayed off until its ids
/// passed the old checkpoint. The first live result below the newest stored, made after it, shows
/// the restart; what the controller made before it is a gap.
#[test]
fn a_controller_without_upload_whose_ids_restart_is_seen_at_its_first_live_result() {
    let made = tightenings(75);
    let emu = EmulatorConfig { old_results: false, ..EmulatorConfig::default() };
    let c = Controller::start("127.0.0.1:0", emu).unwrap();
    let store = Shared::default();
    let cfg = first_forty(&c, &made, &store);
    c.restart_ids();
    // Ten made while the link is down (ids 1..=10), then 25 live (11..=35) of which the ids
    // 21..=30 lie below the checkpoint of 40.
    let running = resume(&c, cfg, &store, &made[40..50], &made[50..]);
    assert!(wait_for(&store, 40 + 25 + 1, 20), "{} events", store.0.lock().unwrap().events.len());
    let stats = running.stop();
    let s = store.0.lock().unwrap();
    assert_eq!(LinkStats::get(&stats.id_restarts), 1);
    let gaps = gaps(&s);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!((gaps[0].first_id, gaps[0].last_id, gaps[0].count), (1, 10, 10));
    assert_eq!(s.events.len(), 40 + 25 + 1, "every live result stored, none doubled");
    assert_eq!(mark(&s.checkpoint), Some("35"));
}

/// Regression: one broken telegram swallowed the good ones behind it (0 of 30 stored at 25 %
/// line corruption, 18 of them sent intact, from a controller without old-result upload). Every
/// result sent intact must be stored; with upload, the spoiled ones too.
#[test]
fn every_intact_result_is_stored_with_a_quarter_of_the_telegrams_spoiled() {
    for old_results in [false, true] {
        let made = tightenings(120);
        let faults = Faults { line_corruption: 0.25, seed: 7, ..Faults::default() };
        let ack_timeout = Duration::from_millis(200);
        let emu = EmulatorConfig { faults, ack_timeout, old_results, ..EmulatorConfig::default() };
        let (c, store, running) = feed(emu, &made);
        // Without upload a result spoiled three times in a row is given up by the controller.
        let least = if old_results { made.len() } else { made.len() - 10 };
        assert!(wait_for(&store, least, 60), "{} of {}", store.0.lock().unwrap().events.len(), made.len());
        std::thread::sleep(Duration::from_millis(500));
        if !old_results {
            // One more, sent intact once the line is clean again: its id shows what is missing.
            let (t, at) = tightenings(121).pop().unwrap();
            let before = store.0.lock().unwrap().events.len();
            c.push(t, at);
            assert!(wait_for(&store, before + 1, 20), "the last tightening stored");
            std::thread::sleep(Duration::from_millis(300));
        }
        let stats = running.stop();
        let spoiled = c.stats().results_spoiled.load(Ordering::Relaxed);
        assert!(spoiled >= 15, "a quarter of the live results spoiled: {spoiled}");
        assert!(LinkStats::get(&stats.garbage) >= spoiled / 2, "spoiled telegrams seen as garbage");
        let s = store.0.lock().unwrap();
        let stored: std::collections::BTreeSet<u64> =
            s.events.values().filter_map(|e| e.source_txn_id.split('@').next()?.parse().ok()).collect();
        let intact = c.stats().sent_intact.lock().unwrap().clone();
        let missed: Vec<_> = intact.difference(&stored).collect();
        assert!(missed.is_empty(), "sent intact but not stored: {missed:?}");
        eprintln!("upload {old_results}: {} stored, {} sent intact, {spoiled} spoiled", stored.len(), intact.len());
        if old_results {
            assert_eq!(stored.len(), made.len(), "exactly one event per tightening");
            assert_eq!(LinkStats::get(&stats.unrecoverable), 0);
        }
        // What cannot be had is logged as gaps (the sequence agent's data_gap findings), each
        // id once.
        let gaps: u64 = gaps(&s).iter().map(|g| g.count).sum();
        assert_eq!(gaps, LinkStats::get(&stats.unrecoverable), "every unrecoverable result in a gap");
        if !old_results {
            assert_eq!(gaps as usize + stored.len(), made.len() + 1, "every tightening stored or in a gap");
        }
    }
}

/// Regression: digits inside a result that read as a trace header (`....0900...`) made the
/// framer wait for that "trace" to end, and the link stalled after 195 results. Every result and
/// trace the emulated controller sends is framed whole, none taken for garbage.
#[test]
fn every_telegram_the_controller_sends_is_framed_whole() {
    use jidoka_connectors::openprotocol::{Framed, Framer, Telegram};
    use std::io::{Read, Write};
    let made = tightenings(400);
    let c = Controller::start("127.0.0.1:0", EmulatorConfig::default()).unwrap();
    let mut s = std::net::TcpStream::connect(c.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    s.write_all(&Telegram::new(1, 1, Vec::new()).to_wire()).unwrap();
    s.write_all(&Telegram::new(60, 7, Vec::new()).to_wire()).unwrap();
    let data = "090000100"; // MID 0900, revision 001, no extra data
    let sub = Telegram::new(8, 1, data.as_bytes().to_vec());
    s.write_all(&sub.to_wire()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for (t, at) in &made {
        c.push(t.clone(), *at);
    }
    let (mut f, mut buf) = (Framer::new(), vec![0u8; 1 << 16]);
    let (mut results, mut traces, mut garbage) = (0, 0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && (results < made.len() || traces < 2 * made.len()) {
        if let Ok(n) = s.read(&mut buf) {
            f.push(&buf[..n]);
        }
        while let Some(item) = f.take() {
            match item {
                Framed::Telegram(t) if t.header.mid == 61 => {
                    results += 1;
                    s.write_all(&Telegram::new(62, 1, Vec::new()).to_wire()).unwrap();
                }
                Framed::Telegram(t) if t.header.mid == 900 => traces += 1,
                Framed::Telegram(_) => {}
                Framed::Garbage { bytes, error } => garbage.push(format!("after {results}: {bytes} bytes, {error}")),
            }
        }
    }
    assert_eq!(results, made.len(), "results framed");
    assert_eq!(traces, 2 * made.len(), "traces framed");
    assert!(garbage.is_empty(), "{garbage:?}");
}

/// The `source_outage` events in the store, oldest first.
fn outages(s: &MemStore) -> Vec<jidoka_model::event::SourceOutage> {
    let mut out: Vec<_> = s
        .events
        .values()
        .filter_map(|e| match &e.payload {
            EventPayload::SourceOutage(o) => Some((e.occurred_at, o.clone())),
            _ => None,
        })
        .collect();
    out.sort_by_key(|(at, o)| (*at, o.until.is_some()));
    out.into_iter().map(|(_, o)| o).collect()
}

/// A link down longer than `outage_after_s` logs the outage once, keeps it across a restart of
/// its own, and logs its end when the controller answers again (with the start it logged).
#[test]
fn an_outage_longer_than_configured_is_logged_once_and_its_end_when_the_link_is_back() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let store = Shared::default();
    let mut cfg = OpenProtocolSourceConfig::new("st010", &addr.to_string(), "ST010");
    cfg.reply_timeout_ms = 500;
    cfg.outage_after_s = 1;
    let running = link(cfg.clone(), &store);
    assert!(wait_for(&store, 1, 10), "the outage is logged about a second after the first refused connect");
    // Several reconnects later the outage is still one event.
    std::thread::sleep(Duration::from_millis(2500));
    running.stop();
    let since = {
        let s = store.0.lock().unwrap();
        let logged = outages(&s);
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].station, "ST010");
        assert_eq!(logged[0].until, None);
        assert!(logged[0].reason.to_lowercase().contains("refused"), "the last error: {}", logged[0].reason);
        assert!(s.checkpoint.as_deref().unwrap_or_default().contains("\noutage "), "kept across a restart");
        logged[0].since
    };
    // Jidoka restarted meanwhile; the controller is back on the same address.
    let c = Controller::start(&addr.to_string(), EmulatorConfig::default()).unwrap();
    let running = link(cfg, &store);
    assert!(wait_for(&store, 2, 10), "the end is logged once the link is subscribed");
    let made = tightenings(3);
    for (t, at) in &made {
        c.push(t.clone(), *at);
    }
    assert!(wait_for(&store, 5, 10));
    running.stop();
    let s = store.0.lock().unwrap();
    let logged = outages(&s);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[1].since, since, "the end names the start that was logged");
    assert!(logged[1].until.is_some_and(|u| u >= since));
    assert!(!s.checkpoint.as_deref().unwrap_or_default().contains("outage"), "nothing left open");
}
