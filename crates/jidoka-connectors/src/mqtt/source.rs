//! The MQTT subscriber: QoS 1 on a persistent session (`clean_session = false`, a fixed
//! client id), so the broker keeps what arrives while Jidoka is away and redelivers whatever
//! was not acknowledged. Acknowledgements are manual: a message is acknowledged (PUBACK) only
//! after its events are durable in the store, or, when it makes no event, after it is kept in
//! the rejected-messages file with its topic and reasons. A crash before that leaves the
//! message unacknowledged, and the broker sends it again; the store absorbs the duplicate by
//! its transaction id.
//!
//! Messages are taken in groups (what the broker has sent, up to `max_batch`) and stored in
//! one durable append, so one fsync serves many messages.

use super::mapping::{Format, Mapping, TopicConfig};
use super::sparkplug::Host;
use super::{BrokerLogin, topic};
use crate::reject::{RejectLog, RejectedMessage};
use crate::{ResultStore, Stored, reconnect_delay, sleep_unless};
use jidoka_model::{Event, Timestamp};
use rumqttc::{Client, Packet, QoS, RecvTimeoutError, TryRecvError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// `[[sources]] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Name of the source; events come from `mqtt:<name>`.
    pub name: String,
    /// Broker address, `host:port`.
    pub broker: String,
    /// The persistent session's client id (default `jidoka-<name>`); must be unique on the
    /// broker and must not change, or the broker forgets what it kept.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// Most messages stored in one durable append.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Larger messages are refused (and kept as rejected) rather than parsed.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Which topics, and how their messages become events; the first matching entry wins.
    pub topics: Vec<TopicConfig>,
}

fn default_keep_alive_s() -> u64 {
    30
}
fn default_max_batch() -> usize {
    200
}
fn default_max_message_bytes() -> usize {
    16 << 20
}

impl MqttSourceConfig {
    /// A source for `broker` with no topics yet (tests and benchmarks).
    pub fn new(name: &str, broker: &str) -> MqttSourceConfig {
        MqttSourceConfig {
            name: name.into(),
            broker: broker.into(),
            client_id: None,
            username: None,
            password_env: None,
            keep_alive_s: default_keep_alive_s(),
            max_batch: default_max_batch(),
            max_message_bytes: default_max_message_bytes(),
            topics: Vec::new(),
        }
    }

    pub fn source(&self) -> String {
        format!("mqtt:{}", self.name)
    }

    pub fn login(&self) -> BrokerLogin<'_> {
        BrokerLogin {
            broker: &self.broker,
            client_id: self.client_id.clone().unwrap_or_else(|| format!("jidoka-{}", self.name)),
            username: self.username.as_deref(),
            password_env: self.password_env.as_deref(),
            keep_alive_s: self.keep_alive_s,
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        self.login().validate(path, errors);
        if !(1..=10_000).contains(&self.max_batch) {
            errors.push((format!("{path}.max_batch"), "must be between 1 and 10000".into()));
        }
        if !(1024..=super::MAX_PACKET_BYTES).contains(&self.max_message_bytes) {
            errors.push((format!("{path}.max_message_bytes"), "must be between 1024 and 268435455".into()));
        }
        if self.topics.is_empty() {
            errors.push((format!("{path}.topics"), "subscribes to nothing: add [[sources.topics]]".into()));
        }
        for (i, t) in self.topics.iter().enumerate() {
            t.compile(&format!("{path}.topics[{i}]"), errors);
        }
    }

    /// The compiled mappings (configuration already validated).
    pub fn mappings(&self) -> Result<Vec<Mapping>, String> {
        let mut errors = Vec::new();
        let out: Vec<Mapping> = self
            .topics
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.compile(&format!("topics[{i}]"), &mut errors))
            .collect();
        match errors.first() {
            Some((path, reason)) => Err(format!("{path}: {reason}")),
            None => Ok(out),
        }
    }
}

/// Counters of one source, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub connects: AtomicU64,
    pub messages: AtomicU64,
    pub events_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected_messages: AtomicU64,
    pub acknowledged: AtomicU64,
    pub sequence_gaps: AtomicU64,
    pub rebirths_requested: AtomicU64,
    pub metrics_skipped: AtomicU64,
}

impl SourceStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// What becomes of one message.
struct Taken {
    publish: rumqttc::Publish,
    received_at: Timestamp,
    generation: u64,
    events: Vec<Event>,
    reasons: Vec<String>,
}

/// The per-message logic without a network: mapping, Sparkplug state, size limit.
#[derive(Debug)]
pub struct Decoder {
    source: String,
    mappings: Vec<Mapping>,
    max_message_bytes: usize,
    pub host: Host,
}

/// One message's events and the reasons any part of it was refused.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub reasons: Vec<String>,
    /// A Sparkplug rebirth request to publish.
    pub command: Option<super::sparkplug::Command>,
    pub notes: Vec<String>,
}

impl Decoder {
    pub fn new(cfg: &MqttSourceConfig) -> Result<Decoder, String> {
        Ok(Decoder {
            source: cfg.source(),
            mappings: cfg.mappings()?,
            max_message_bytes: cfg.max_message_bytes,
            host: Host::new(),
        })
    }

    /// The filters to subscribe to, each once.
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.mappings.iter().map(|m| m.filter.clone()).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    pub fn decode(&mut self, topic: &str, payload: &[u8], received_at: Timestamp) -> Decoded {
        let mut out = Decoded::default();
        if payload.len() > self.max_message_bytes {
            out.reasons.push(format!("payload: {} bytes; at most {} are taken", payload.len(), self.max_message_bytes));
            return out;
        }
        let Some(mapping) = self.mappings.iter().find(|m| topic::matches(&m.filter, topic)) else {
            out.reasons.push(format!("topic: `{topic}` matches no configured filter"));
            return out;
        };
        let results = match mapping.format {
            Format::SparkplugB => {
                let h = self.host.handle(&self.source, topic, payload, received_at, &mapping.stations);
                out.command = h.rebirth;
                out.notes = h.notes;
                h.events
            }
            Format::Json | Format::Event => mapping.events(&self.source, topic, payload, received_at),
        };
        for r in results {
            match r {
                Ok(ev) => out.events.push(ev),
                Err(e) => out.reasons.push(e.to_string()),
            }
        }
        out
    }
}

/// Run the subscriber until `stop`. Returns when stopped (or the configuration cannot work).
pub fn run(
    cfg: &MqttSourceConfig,
    store: &mut dyn ResultStore,
    rejects: &mut dyn RejectLog,
    stop: &AtomicBool,
    stats: &SourceStats,
) {
    let (mut decoder, mut opts) = match Decoder::new(cfg).and_then(|d| Ok((d, cfg.login().options()?))) {
        Ok(setup) => setup,
        Err(e) => {
            tracing::error!(source = %cfg.name, error = %e, "mqtt source not started");
            return;
        }
    };
    opts.set_clean_session(false).set_manual_acks(true);
    // Acknowledgements wait in the request channel until the connection is next polled.
    let (client, mut connection) = Client::new(opts, cfg.max_batch * 2 + 64);
    let filters = decoder.filters();
    let mut generation = 0u64;
    let mut failures = 0u32;
    let mut taken: Vec<Taken> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let first = connection.recv_timeout(Duration::from_millis(100));
        let mut next = match first {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        while let Some(event) = next.take() {
            match event {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(ack))) => {
                    generation += 1;
                    failures = 0;
                    add(&stats.connects, 1);
                    tracing::info!(source = %cfg.name, session_present = ack.session_present, "mqtt connected");
                    let subs = filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(subs) {
                        tracing::warn!(source = %cfg.name, error = %e, "cannot subscribe");
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::SubAck(ack))) => {
                    for (f, code) in filters.iter().zip(&ack.return_codes) {
                        if matches!(code, rumqttc::SubscribeReasonCode::Failure) {
                            tracing::error!(source = %cfg.name, filter = %f, "the broker refused the subscription");
                        }
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                    add(&stats.messages, 1);
                    let received_at = chrono::Utc::now();
                    let d = decoder.decode(&p.topic, &p.payload, received_at);
                    for note in &d.notes {
                        tracing::warn!(source = %cfg.name, topic = %p.topic, "{note}");
                    }
                    if let Some(cmd) = d.command
                        && let Err(e) = client.try_publish(cmd.topic.clone(), QoS::AtMostOnce, false, cmd.payload)
                    {
                        tracing::warn!(source = %cfg.name, topic = %cmd.topic, error = %e, "cannot send rebirth request");
                    }
                    taken.push(Taken { publish: p, received_at, generation, events: d.events, reasons: d.reasons });
                }
                Ok(_) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Acknowledgements for the lost connection's messages must not reach the next one.
                    generation += 1;
                    tracing::warn!(source = %cfg.name, error = %e, "mqtt connection lost; reconnecting");
                    // Messages of the lost connection are still stored below; the broker
                    // redelivers them (same transaction ids) because they were not acknowledged.
                    if !taken.is_empty() {
                        flush(cfg, store, rejects, &client, &mut taken, generation, stop, stats);
                    }
                    sleep_unless(stop, reconnect_delay(failures));
                    break;
                }
            }
            if taken.len() < cfg.max_batch {
                next = match connection.try_recv() {
                    Ok(event) => Some(event),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                };
            }
        }
        if !taken.is_empty() {
            flush(cfg, store, rejects, &client, &mut taken, generation, stop, stats);
        }
        let h = decoder.host.stats;
        stats.sequence_gaps.store(h.sequence_gaps, Ordering::Relaxed);
        stats.rebirths_requested.store(h.rebirths_requested, Ordering::Relaxed);
        stats.metrics_skipped.store(h.metrics_skipped, Ordering::Relaxed);
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out so the broker keeps the session rather than waiting it out.
    let _ = connection.recv_timeout(Duration::from_millis(200));
}

/// Store the taken messages' events in one durable append, keep the rejected ones, then
/// acknowledge. Nothing is acknowledged unless it is kept; on stop, what is not kept stays
/// unacknowledged and the broker sends it again next time.
#[allow(clippy::too_many_arguments)]
fn flush(
    cfg: &MqttSourceConfig,
    store: &mut dyn ResultStore,
    rejects: &mut dyn RejectLog,
    client: &Client,
    taken: &mut Vec<Taken>,
    generation: u64,
    stop: &AtomicBool,
    stats: &SourceStats,
) {
    let events: Vec<Event> = taken.iter().flat_map(|t| t.events.iter().cloned()).collect();
    let mut failures = 0u32;
    let outcomes = loop {
        if events.is_empty() {
            break Vec::new();
        }
        match store.append(events.clone(), String::new()) {
            Ok(o) => break o,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::error!(source = %cfg.name, error = %e, "cannot store messages; holding them unacknowledged");
                if stop.load(Ordering::Relaxed) {
                    taken.clear();
                    return;
                }
                sleep_unless(stop, reconnect_delay(failures));
            }
        }
    };
    let mut outcomes = outcomes.into_iter();
    for t in taken.drain(..) {
        let mut reasons = t.reasons;
        let mut stored = 0usize;
        for (ev, outcome) in t.events.iter().zip(outcomes.by_ref()) {
            match outcome {
                Stored::Stored => stored += 1,
                Stored::Duplicate => add(&stats.duplicates, 1),
                Stored::Rejected(r) => reasons.push(format!("{}: {r}", ev.source_txn_id)),
            }
        }
        add(&stats.events_stored, stored);
        if !reasons.is_empty() {
            tracing::warn!(source = %cfg.name, topic = %t.publish.topic, reason = %reasons[0], more = reasons.len() - 1, "message refused");
            let record = RejectedMessage::new(
                cfg.source(),
                t.publish.topic.clone(),
                t.received_at,
                reasons,
                &t.publish.payload,
                stored,
            );
            let mut failures = 0u32;
            loop {
                match rejects.keep(&record) {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(source = %cfg.name, error = %e, "cannot keep a rejected message");
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        failures = failures.saturating_add(1);
                        sleep_unless(stop, reconnect_delay(failures));
                    }
                }
            }
            add(&stats.rejected_messages, 1);
        }
        // An acknowledgement belongs to the connection the message came on; after a reconnect
        // the broker sends it again and that copy is acknowledged.
        if t.publish.qos != QoS::AtMostOnce && t.generation == generation {
            match client.try_ack(&t.publish) {
                Ok(()) => add(&stats.acknowledged, 1),
                Err(e) => tracing::warn!(source = %cfg.name, error = %e, "cannot acknowledge; the broker will resend"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_named_with_their_path() {
        let cfg: MqttSourceConfig = toml::from_str(
            r#"
            name = "line"
            broker = "localhost"
            keep_alive_s = 1
            max_batch = 0
            password_env = "X"
            topics = []
        "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut errors = Vec::new();
        cfg.validate("sources[0]", &mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
        for p in [
            "sources[0].broker",
            "sources[0].keep_alive_s",
            "sources[0].max_batch",
            "sources[0].password_env",
            "sources[0].topics",
        ] {
            assert!(paths.contains(&p), "{p} missing from {errors:?}");
        }
    }

    #[test]
    fn decoder_refuses_with_the_topic_or_size() {
        let mut cfg = MqttSourceConfig::new("line", "127.0.0.1:1883");
        cfg.max_message_bytes = 1024;
        cfg.topics.push(TopicConfig::new("jidoka/events/#", Format::Event));
        let mut d = Decoder::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
        let now = chrono::Utc::now();
        let out = d.decode("other/topic", b"{}", now);
        assert!(out.reasons[0].contains("matches no configured filter"), "{:?}", out.reasons);
        let out = d.decode("jidoka/events/x", &vec![b' '; 2048], now);
        assert!(out.reasons[0].contains("2048 bytes"), "{:?}", out.reasons);
    }
}
