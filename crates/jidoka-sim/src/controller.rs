//! A tightening controller's side of Open Protocol, fed by the plant simulation: the peer the
//! connector's tests and benchmarks talk to, since no registry offers one that sends correct
//! results and traces.
//!
//! It answers communication start (MID 0001) up to its highest revision and with error 97 above
//! it, as Nexo and others do; accepts result (0060), trace (0008 for 0900) and alarm (0070)
//! subscriptions; sends each result made after the subscription as MID 0061 in the subscribed
//! revision, followed by its angle and torque traces (MID 0900), and waits for the
//! acknowledgement (0062), resending after a timeout; keeps its last results for old-result
//! upload (0064 → 0065, error 15 when it no longer has one); echoes keep-alives (9999). It
//! accepts one integrator at a time.
//!
//! With `link_ack` it reports sequence number support (MID 0002 revision 6 and up), and once
//! the integrator numbers its telegrams it works at link level: every numbered telegram
//! received is acknowledged at once (MID 9997 with its sequence number; the same number again
//! is a resend, acknowledged and not acted on), and every telegram it sends is numbered 1 to
//! 99 and sent one at a time, each after the acknowledgement of the one before, again after
//! `ack_timeout` or a refusal (MID 9998), and the connection closed after three tries. The
//! acknowledgement of a result stands for MID 0062. Keep-alives stay unnumbered.
//!
//! [`Faults`] make it misbehave as real links do: drop the connection after a number of
//! results, delay every answer, never answer, send a result twice, put garbage on the wire.

use crate::rng::Rng;
use chrono::{DateTime, Utc};
use jidoka_connectors::openprotocol::fields::{Lookup, Value};
use jidoka_connectors::openprotocol::{self as op, Body, Framed, Framer, Telegram, trace};
use jidoka_model::TighteningResult;
use jidoka_model::event::OkNok;
use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the emulated controller behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// Controller name sent in MID 0002 and 0061.
    pub name: String,
    /// Highest MID 0001 revision answered; above it, error 97.
    pub max_comm_revision: u16,
    /// Highest MID 0060 / 0064 revision served; above it, error 97.
    pub max_result_revision: u16,
    /// Results kept for old-result upload.
    pub history: usize,
    /// A result not acknowledged within this time is sent again.
    pub ack_timeout: Duration,
    /// Support link-level acknowledgement (MID 9997 / 9998 with header sequence numbers).
    pub link_ack: bool,
    /// Answer every request at the revision asked for, with a revision-1 body (MID 0002,
    /// results, and MID 0004 at the requested revision for what it does not know: `00260004007
    /// 006499`), never with error 97, as some controllers and public simulators do.
    pub revision1_bodies: bool,
    /// Serve old-result upload (MID 0064); without it, error 99 (unknown MID).
    pub old_results: bool,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            name: "JIDOKA-SIM PF6000".into(),
            max_comm_revision: 7,
            max_result_revision: 7,
            history: 10_000,
            ack_timeout: Duration::from_millis(2000),
            link_ack: false,
            revision1_bodies: false,
            old_results: true,
            faults: Faults::default(),
        }
    }
}

/// Ways to misbehave; all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Close the connection after every this many results sent.
    pub drop_after_results: Option<u64>,
    /// Wait this long before every answer and every result.
    pub delay: Duration,
    /// Never answer anything (a controller that hangs).
    pub silent: bool,
    /// Send every this-many-th result twice.
    pub resend_every: Option<u64>,
    /// Put a broken telegram on the wire before every this-many-th result.
    pub garbage_every: Option<u64>,
    /// Do not send traces even when subscribed.
    pub no_traces: bool,
    /// Send every this-many-th live result with its first data field spoiled (letters where the
    /// cell id's digits belong): framed correctly, but not decodable. Uploads stay correct.
    pub corrupt_every: Option<u64>,
    /// At link level, refuse every this-many-th numbered telegram received (MID 9998, invalid
    /// sequence number) instead of acknowledging it.
    pub refuse_every: Option<u64>,
    /// At link level, act on every this-many-th numbered telegram received but leave it
    /// unacknowledged, as if the acknowledgement were lost.
    pub withhold_ack_every: Option<u64>,
    /// Spoil this share (0 to 1) of the live results on the wire, as a noisy line does: cut
    /// short (with or without its terminator), a wrong length field, or noise bytes inside. A
    /// spoiled result is not acknowledged, so it is sent again after `ack_timeout`. Not at link
    /// level, where the link would resend it at once.
    pub line_corruption: f64,
    /// Seed of the corruption draws.
    pub seed: u64,
}

/// What the controller did, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct EmulatorStats {
    pub connections: AtomicU64,
    pub results_sent: AtomicU64,
    pub traces_sent: AtomicU64,
    pub acks: AtomicU64,
    pub uploads: AtomicU64,
    pub refused: AtomicU64,
    /// Link-level acknowledgements received for telegrams sent.
    pub link_acks: AtomicU64,
    /// Telegrams sent again at link level (no acknowledgement in time, or refused).
    pub link_resends: AtomicU64,
    /// Numbered telegrams received again with the same sequence number.
    pub link_repeats: AtomicU64,
    /// Live results put on the wire spoiled by `line_corruption`.
    pub results_spoiled: AtomicU64,
    /// Ids of the results sent intact at least once.
    pub sent_intact: Mutex<BTreeSet<u64>>,
}

#[derive(Debug)]
struct Made {
    id: u64,
    result: TighteningResult,
    at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    made: VecDeque<Made>,
    next_id: u64,
}

#[derive(Debug)]
struct Inner {
    cfg: EmulatorConfig,
    state: Mutex<State>,
    stop: AtomicBool,
    stats: EmulatorStats,
}

/// A running emulated controller.
#[derive(Debug)]
pub struct Controller {
    inner: Arc<Inner>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controller {
    /// Listen on `bind` (e.g. `127.0.0.1:0`) and serve integrators in a thread.
    pub fn start(bind: &str, cfg: EmulatorConfig) -> std::io::Result<Controller> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let inner = Arc::new(Inner {
            cfg,
            state: Mutex::new(State { next_id: 1, ..State::default() }),
            stop: AtomicBool::new(false),
            stats: EmulatorStats::default(),
        });
        let serving = inner.clone();
        let thread = std::thread::Builder::new().name("op-controller".into()).spawn(move || {
            while !serving.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        serving.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let _ = Link::new(&serving, stream).and_then(|mut l| l.serve());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
        Ok(Controller { inner, addr, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &EmulatorStats {
        &self.inner.stats
    }

    /// A tightening done by the tool at simulated time `at`; its controller tightening id.
    pub fn push(&self, result: TighteningResult, at: DateTime<Utc>) -> u64 {
        let mut s = lock(&self.inner.state);
        let id = s.next_id;
        s.next_id += 1;
        s.made.push_back(Made { id, result, at });
        while s.made.len() > self.inner.cfg.history {
            s.made.pop_front();
        }
        id
    }

    /// A controller restart that loses its result memory: ids start at 1 again.
    pub fn restart_ids(&self) {
        let mut s = lock(&self.inner.state);
        s.made.clear();
        s.next_id = 1;
    }

    pub fn shutdown(mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One integrator connection.
struct Link<'a> {
    inner: &'a Inner,
    stream: TcpStream,
    framer: Framer,
    started: bool,
    /// Revision of the result subscription.
    subscribed: Option<u16>,
    traces: bool,
    /// Next id to send live.
    next_live: u64,
    /// The result sent and not yet acknowledged: id, when, how often.
    outstanding: Option<(u64, Instant, u32)>,
    sent: u64,
    /// Set once the integrator numbers its telegrams (and `link_ack` is on).
    link: Option<LinkState>,
    /// The revision of the request being answered (for `revision1_bodies`).
    asked: u16,
    rng: Rng,
}

/// Link-level state: telegrams wait in `queue` and go out one at a time.
#[derive(Debug, Default)]
struct LinkState {
    next: u8,
    last_received: Option<u8>,
    /// Numbered telegrams received (for the refuse / withhold faults).
    received: u64,
    /// Telegrams to send, with the result id each carries.
    queue: VecDeque<(Telegram, Option<u64>)>,
    /// The telegram sent and not acknowledged: result id, when to send it again, how often
    /// it has been sent.
    in_flight: Option<(Telegram, Option<u64>, Instant, u32)>,
}

impl<'a> Link<'a> {
    fn new(inner: &'a Inner, stream: TcpStream) -> std::io::Result<Link<'a>> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_millis(5)))?;
        stream.set_nodelay(true)?;
        Ok(Link {
            inner,
            stream,
            framer: Framer::new(),
            started: false,
            subscribed: None,
            traces: false,
            next_live: u64::MAX,
            outstanding: None,
            sent: 0,
            link: None,
            asked: 1,
            rng: Rng::new(inner.cfg.faults.seed ^ inner.stats.connections.load(Ordering::Relaxed)),
        })
    }

    fn faults(&self) -> &'a Faults {
        &self.inner.cfg.faults
    }

    /// Send now, or at link level queue it behind the unacknowledged ones.
    fn send(&mut self, t: &Telegram) -> std::io::Result<()> {
        self.send_result(t, None)
    }

    fn send_result(&mut self, t: &Telegram, result: Option<u64>) -> std::io::Result<()> {
        match &mut self.link {
            Some(link) if !matches!(t.header.mid, 9997..=9999) => {
                link.queue.push_back((t.clone(), result));
                Ok(())
            }
            _ => self.stream.write_all(&t.to_wire()),
        }
    }

    /// At link level: send the next queued telegram once the last one is acknowledged, or the
    /// last one again after `ack_timeout`; false to close the connection after three tries.
    fn pump_link(&mut self) -> std::io::Result<bool> {
        let timeout = self.inner.cfg.ack_timeout;
        let Some(link) = &mut self.link else { return Ok(true) };
        if let Some((t, _, due, tries)) = &mut link.in_flight {
            if Instant::now() < *due {
                return Ok(true);
            }
            if *tries >= 3 {
                return Ok(false);
            }
            *due = Instant::now() + timeout;
            *tries += 1;
            let wire = t.to_wire();
            self.inner.stats.link_resends.fetch_add(1, Ordering::Relaxed);
            self.stream.write_all(&wire)?;
            return Ok(true);
        }
        let Some((mut t, result)) = link.queue.pop_front() else { return Ok(true) };
        t.header.sequence = Some(link.next);
        link.next = if link.next >= 99 { 1 } else { link.next + 1 };
        let wire = t.to_wire();
        link.in_flight = Some((t, result, Instant::now() + timeout, 1));
        self.stream.write_all(&wire)?;
        Ok(true)
    }

    /// Link-level handling of a telegram received; true when it was only about the link.
    fn link_receive(&mut self, t: &Telegram) -> std::io::Result<bool> {
        let seq = t.header.sequence.filter(|&n| n > 0);
        if self.link.is_none() && self.inner.cfg.link_ack && seq.is_some() {
            self.link = Some(LinkState { next: 1, ..LinkState::default() });
        }
        let faults = self.faults();
        let Some(link) = &mut self.link else { return Ok(false) };
        match t.header.mid {
            9997 => {
                if let Some((sent, result, _, _)) = &link.in_flight
                    && sent.header.sequence == seq
                {
                    if result.is_some() && self.outstanding.take().is_some() {
                        self.inner.stats.acks.fetch_add(1, Ordering::Relaxed);
                    }
                    link.in_flight = None;
                    self.inner.stats.link_acks.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(true);
            }
            9998 => {
                if let Some((_, _, due, _)) = &mut link.in_flight {
                    *due = Instant::now();
                }
                return Ok(true);
            }
            _ => {}
        }
        let Some(seq) = seq else { return Ok(false) };
        link.received += 1;
        let n = link.received;
        let mid = i64::from(t.header.mid);
        if faults.refuse_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
            let mut nak =
                op::build(9998, 1, &[("mid", Value::Int(mid)), ("error_code", Value::Int(3))]).map_err(io_err)?;
            nak.header.sequence = Some(seq);
            self.stream.write_all(&nak.to_wire())?;
            return Ok(true);
        }
        let repeat = link.last_received == Some(seq);
        link.last_received = Some(seq);
        if repeat {
            self.inner.stats.link_repeats.fetch_add(1, Ordering::Relaxed);
        } else if faults.withhold_ack_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
            // Acted on, but the acknowledgement is lost: the integrator sends it again.
            return Ok(false);
        }
        let mut ack = op::build(9997, 1, &[("mid", Value::Int(mid))]).map_err(io_err)?;
        ack.header.sequence = Some(seq);
        self.stream.write_all(&ack.to_wire())?;
        Ok(repeat)
    }

    fn serve(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        while !self.inner.stop.load(Ordering::Relaxed) {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
            while let Some(item) = self.framer.take() {
                if let Framed::Telegram(t) = item
                    && !self.link_receive(&t)?
                    && !self.answer(t)?
                {
                    return Ok(());
                }
            }
            if !self.push_results()? || !self.pump_link()? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn reply(&mut self, t: Telegram) -> std::io::Result<()> {
        let faults = self.faults();
        if faults.silent {
            return Ok(());
        }
        if !faults.delay.is_zero() {
            std::thread::sleep(faults.delay);
        }
        let mut t = t;
        if self.inner.cfg.revision1_bodies && t.header.mid != 9999 {
            t.header.revision = Some(self.asked);
        }
        self.send(&t)
    }

    fn error(&mut self, mid: u16, code: i64) -> std::io::Result<()> {
        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        let t = op::build(4, 1, &[("failed_mid", Value::Int(i64::from(mid))), ("error_code", Value::Int(code))]);
        self.reply(t.map_err(io_err)?)
    }

    fn accepted(&mut self, mid: u16) -> std::io::Result<()> {
        self.reply(op::build(5, 1, &[("accepted_mid", Value::Int(i64::from(mid)))]).map_err(io_err)?)
    }

    /// Answer one telegram; false to close the connection.
    fn answer(&mut self, t: Telegram) -> std::io::Result<bool> {
        let (mid, asked) = (t.header.mid, t.header.effective_revision());
        self.asked = asked;
        let cfg = &self.inner.cfg;
        // A revision-1 controller takes any revision and answers with revision-1 bodies.
        let (rev, max_comm, max_result) = match cfg.revision1_bodies {
            true => (1, u16::MAX, u16::MAX),
            false => (asked, cfg.max_comm_revision, cfg.max_result_revision),
        };
        if !self.started && mid != 1 {
            // Communication must start first (error 99-style: unknown in this state).
            self.error(mid, 99)?;
            return Ok(true);
        }
        match mid {
            1 if rev > max_comm => self.error(1, 97)?,
            1 => {
                self.started = true;
                let values = [
                    ("cell_id", Value::Int(1)),
                    ("channel_id", Value::Int(1)),
                    ("controller_name", Value::Text(self.inner.cfg.name.clone())),
                    ("supplier_code", Value::Text("ACT".into())),
                    ("open_protocol_version", Value::Text("2.16.0".into())),
                    ("sequence_number_support", Value::Int(i64::from(self.inner.cfg.link_ack))),
                ];
                self.reply(op::build(2, rev, &values).map_err(io_err)?)?;
            }
            3 => return Ok(false),
            60 if rev > max_result => self.error(60, 97)?,
            60 => {
                self.subscribed = Some(asked);
                self.next_live = lock(&self.inner.state).next_id;
                self.accepted(60)?;
            }
            62 => {
                if self.outstanding.take().is_some() {
                    self.inner.stats.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            63 => {
                self.subscribed = None;
                self.accepted(63)?;
            }
            64 if !self.inner.cfg.old_results => self.error(64, 99)?,
            64 if rev > max_result => self.error(64, 97)?,
            64 => {
                let want = op::decode(&t).ok().and_then(|b| b.fields().int("tightening_id")).unwrap_or(-1);
                let reply = {
                    let s = lock(&self.inner.state);
                    let found = if want == 0 { s.made.back() } else { s.made.iter().find(|m| m.id as i64 == want) };
                    found.map(|m| result_telegram(65, rev, m, &self.inner.cfg.name))
                };
                match reply {
                    Some(r) => {
                        self.inner.stats.uploads.fetch_add(1, Ordering::Relaxed);
                        self.reply(r.map_err(io_err)?)?;
                    }
                    None => self.error(64, 15)?,
                }
            }
            8 => {
                let body = op::decode(&t).unwrap_or(Body::Unknown);
                if body.fields().int("mid") == Some(900) {
                    self.traces = true;
                    self.accepted(8)?;
                } else {
                    self.error(8, 73)?;
                }
            }
            9 => {
                self.traces = false;
                self.accepted(9)?;
            }
            70 | 73 => self.accepted(mid)?,
            72 | 77 | 5 => {}
            9999 => self.reply(Telegram::new(9999, 1, Vec::new()))?,
            _ => self.error(mid, 99)?,
        }
        Ok(true)
    }

    /// The wire bytes of `t` spoiled as a noisy line spoils them, with probability
    /// `line_corruption`; `None` to send it intact.
    fn spoil(&mut self, t: &Telegram) -> Option<Vec<u8>> {
        let p = self.faults().line_corruption;
        if p <= 0.0 || self.link.is_some() || !self.rng.chance(p) {
            return None;
        }
        Some(spoil_wire(t, &mut self.rng))
    }

    /// Send the next live result when nothing is waiting for an acknowledgement, or resend the
    /// one that is; false to close the connection.
    fn push_results(&mut self) -> std::io::Result<bool> {
        let Some(rev) = self.subscribed else { return Ok(true) };
        let faults = self.faults();
        if faults.silent {
            return Ok(true);
        }
        let id = match self.outstanding {
            // At link level the link resends; the result waits for its acknowledgement there.
            Some(_) if self.link.is_some() => return Ok(true),
            Some((id, at, tries)) if at.elapsed() >= self.inner.cfg.ack_timeout => {
                if tries >= 3 {
                    return Ok(false);
                }
                self.outstanding = Some((id, Instant::now(), tries + 1));
                id
            }
            Some(_) => return Ok(true),
            None => {
                let s = lock(&self.inner.state);
                let oldest = s.made.front().map(|m| m.id).unwrap_or(s.next_id);
                if self.next_live >= s.next_id {
                    return Ok(true);
                }
                let id = self.next_live.max(oldest);
                drop(s);
                self.next_live = id + 1;
                self.outstanding = Some((id, Instant::now(), 0));
                id
            }
        };
        let (result, traces) = {
            let s = lock(&self.inner.state);
            let Some(m) = s.made.iter().find(|m| m.id == id) else { return Ok(true) };
            let traces = if self.traces && !faults.no_traces { trace_telegrams(m) } else { Vec::new() };
            let body_rev = if self.inner.cfg.revision1_bodies { 1 } else { rev };
            let result = result_telegram(61, body_rev, m, &self.inner.cfg.name).map(|mut t| {
                t.header.revision = Some(rev);
                t
            });
            (result, traces)
        };
        if !faults.delay.is_zero() {
            std::thread::sleep(faults.delay);
        }
        self.sent += 1;
        if faults.garbage_every.is_some_and(|n| n > 0 && self.sent.is_multiple_of(n)) {
            // Line noise with no terminator of its own, right before a good telegram.
            self.stream.write_all(b"\x01\x7f0042 line noise \xff")?;
        }
        let mut result = result.map_err(io_err)?;
        if faults.corrupt_every.is_some_and(|n| n > 0 && self.sent.is_multiple_of(n)) && result.data.len() >= 6 {
            result.data[2..6].copy_from_slice(b"CELL");
        }
        match self.spoil(&result) {
            Some(wire) => {
                self.inner.stats.results_spoiled.fetch_add(1, Ordering::Relaxed);
                self.stream.write_all(&wire)?;
            }
            None => {
                self.send_result(&result, Some(id))?;
                if let Ok(mut ids) = self.inner.stats.sent_intact.lock() {
                    ids.insert(id);
                }
            }
        }
        self.inner.stats.results_sent.fetch_add(1, Ordering::Relaxed);
        for t in traces {
            self.send(&t.map_err(io_err)?)?;
            self.inner.stats.traces_sent.fetch_add(1, Ordering::Relaxed);
        }
        if faults.resend_every.is_some_and(|n| n > 0 && self.sent.is_multiple_of(n)) {
            self.send_result(&result, Some(id))?;
        }
        if faults.drop_after_results.is_some_and(|n| n > 0 && self.sent.is_multiple_of(n)) {
            return Ok(false);
        }
        Ok(true)
    }
}

/// The wire bytes of `t` spoiled one of the ways a noisy line spoils them: cut short with or
/// without its terminator, a length field that lies, or noise bytes inside.
pub fn spoil_wire(t: &Telegram, rng: &mut Rng) -> Vec<u8> {
    let mut wire = t.to_wire();
    let body = wire.len() - 1;
    match rng.below(4) {
        0 => {
            wire.truncate(1 + rng.below(body - 1));
            wire.push(0);
        }
        1 => wire.truncate(1 + rng.below(body - 1)),
        2 => {
            let claimed = if rng.chance(0.5) { 9999 } else { 20 + rng.below(body * 2) };
            let claimed = if claimed == body { body + 1 } else { claimed };
            wire[..4].copy_from_slice(format!("{:04}", claimed.min(9999)).as_bytes());
        }
        _ => {
            let at = 1 + rng.below(body - 1);
            let noise: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next_u64() as u8).collect();
            wire.splice(at..at, noise);
        }
    }
    wire
}

fn io_err(e: op::OpError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A value × 100 clamped to what `width` digits can carry.
fn scaled(v: f64, factor: f64, width: u32) -> Value {
    let max = 10i64.pow(width) - 1;
    let min = -(10i64.pow(width - 1) - 1);
    Value::Int(((v * factor).round() as i64).clamp(min, max))
}

/// 0 low, 1 OK, 2 high against a window.
fn status(v: f64, lo: Option<f64>, hi: Option<f64>) -> Value {
    Value::Int(if lo.is_some_and(|l| v < l) {
        0
    } else if hi.is_some_and(|h| v > h) {
        2
    } else {
        1
    })
}

/// MID 0061 or 0065 for a made result at `rev`.
fn result_telegram(mid: u16, rev: u16, m: &Made, controller: &str) -> Result<Telegram, op::OpError> {
    let r = &m.result;
    let opt = |v: Option<f64>, factor: f64, width: u32| v.map(|v| scaled(v, factor, width)).unwrap_or(Value::Blank);
    let verdict = r.controller_verdict.map(|v| v == OkNok::Ok).unwrap_or(true);
    let batch = r.batch.clone();
    let values = [
        ("cell_id", Value::Int(1)),
        ("channel_id", Value::Int(1)),
        ("torque_controller_name", Value::Text(controller.chars().take(25).collect())),
        ("vin_number", Value::Text(r.vin.clone().unwrap_or_default().chars().take(25).collect())),
        ("job_id", Value::Int(0)),
        ("parameter_set_id", Value::Int(r.pset.parse::<i64>().unwrap_or(0).clamp(0, 999))),
        ("strategy", Value::Int(1)),
        ("strategy_options", Value::Int(0)),
        ("batch_size", Value::Int(batch.as_ref().map(|b| i64::from(b.size)).unwrap_or(0).min(9999))),
        ("batch_counter", Value::Int(batch.as_ref().map(|b| i64::from(b.counter)).unwrap_or(0).min(9999))),
        ("tightening_status", Value::Int(i64::from(verdict))),
        ("batch_status", Value::Int(2)),
        ("torque_status", status(r.final_torque_nm, r.torque_min_nm, r.torque_max_nm)),
        ("angle_status", status(r.final_angle_deg, r.angle_min_deg, r.angle_max_deg)),
        ("torque_min_limit", opt(r.torque_min_nm, 100.0, 6)),
        ("torque_max_limit", opt(r.torque_max_nm, 100.0, 6)),
        ("torque_final_target", opt(r.torque_target_nm, 100.0, 6)),
        ("torque", scaled(r.final_torque_nm, 100.0, 6)),
        ("angle_min", opt(r.angle_min_deg, 1.0, 5)),
        ("angle_max", opt(r.angle_max_deg, 1.0, 5)),
        ("final_angle_target", Value::Int(0)),
        ("angle", scaled(r.final_angle_deg, 1.0, 5)),
        ("final_angle_decimal", scaled(r.final_angle_deg, 100.0, 7)),
        ("tightening_id", Value::Int(m.id as i64)),
        ("tool_serial_number", Value::Text(r.tool.chars().take(14).collect())),
        ("timestamp", Value::Timestamp(m.at.format("%Y-%m-%d:%H:%M:%S").to_string())),
        ("last_change_in_parameter_set", Value::Timestamp("2026-01-05:06:00:00".into())),
        ("parameter_set_name", Value::Text(format!("{} {}", r.station, r.joint).chars().take(25).collect())),
        ("torque_values_unit", Value::Int(1)),
        ("result_type", Value::Int(1)),
    ];
    let mut t = op::build(mid, rev, &values)?;
    t.header.station_id = None;
    Ok(t)
}

/// The angle and torque traces (MID 0900) of a result with a curve.
fn trace_telegrams(m: &Made) -> Vec<Result<Telegram, op::OpError>> {
    let Some(curve) = &m.result.curve else { return Vec::new() };
    let interval_ms = (curve.time_s.len() >= 2)
        .then(|| (curve.time_s[curve.time_s.len() - 1] - curve.time_s[0]) / (curve.time_s.len() - 1) as f64 * 1000.0)
        .filter(|ms| ms.is_finite() && *ms > 0.0)
        .map(|ms| (ms * 1e4).round() / 1e4);
    let at = m.at.format("%Y-%m-%d:%H:%M:%S").to_string();
    vec![
        trace::build(m.id, &at, trace::TRACE_ANGLE, &curve.angle_deg, interval_ms),
        trace::build(m.id, &at, trace::TRACE_TORQUE, &curve.torque_nm, interval_ms),
    ]
}
