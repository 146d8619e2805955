//! Publishing to the plant's broker: approved actions through the outbox (an Andon alert also
//! as the station's retained Andon state), and REVIEW / HOLD findings with the station's
//! retained status. Every message is QoS 1 and counts only once the broker acknowledged it
//! (PUBACK), so the outbox marks an action delivered only then. Delivery is at least once;
//! each message carries the action's idempotency key or the finding id for receivers to
//! drop a repeat.
//!
//! Topics under `topic_prefix` (default `jidoka`):
//! - `{prefix}/actions/{kind}`: each approved action of the kinds the sink takes;
//! - `{prefix}/station/{station}/andon` (retained): the latest Andon alert at the station;
//! - `{prefix}/findings/{station}/{verdict}`: each REVIEW / HOLD finding (`publish_findings`);
//! - `{prefix}/station/{station}/status` (retained): the station's latest REVIEW / HOLD.

use super::BrokerLogin;
use super::topic::level;
use crate::reconnect_delay;
use crate::sink::{Receipt, Sink, SinkError};
use jidoka_model::{Action, ActionKind, Finding};
use rumqttc::{Client, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `[[sinks]] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    pub name: String,
    /// Broker address, `host:port`.
    pub broker: String,
    /// Client id prefix: actions go out as `<client_id>-out`, findings as
    /// `<client_id>-findings` (default prefix `jidoka-<name>`).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Action kinds this sink takes (the outbox gives each action to the first sink that
    /// takes its kind, so list the MES sink first when both take a kind).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<ActionKind>,
    /// Also publish every REVIEW / HOLD finding and the stations' retained status.
    #[serde(default)]
    pub publish_findings: bool,
    /// How long the broker may take to acknowledge a publish.
    #[serde(default = "default_timeout_ms")]
    pub publish_timeout_ms: u64,
}

fn default_keep_alive_s() -> u64 {
    30
}
fn default_prefix() -> String {
    "jidoka".into()
}
fn default_kinds() -> Vec<ActionKind> {
    vec![ActionKind::RaiseAndon]
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl MqttSinkConfig {
    pub fn new(name: &str, broker: &str) -> MqttSinkConfig {
        MqttSinkConfig {
            name: name.into(),
            broker: broker.into(),
            client_id: None,
            username: None,
            password_env: None,
            keep_alive_s: default_keep_alive_s(),
            topic_prefix: default_prefix(),
            kinds: default_kinds(),
            publish_findings: false,
            publish_timeout_ms: default_timeout_ms(),
        }
    }

    pub fn login(&self, role: &str) -> BrokerLogin<'_> {
        BrokerLogin {
            broker: &self.broker,
            client_id: self
                .client_id
                .clone()
                .map(|c| format!("{c}-{role}"))
                .unwrap_or_else(|| format!("jidoka-{}-{role}", self.name)),
            username: self.username.as_deref(),
            password_env: self.password_env.as_deref(),
            keep_alive_s: self.keep_alive_s,
        }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        self.login("out").validate(path, errors);
        if self.topic_prefix.is_empty()
            || super::topic::check_filter(&self.topic_prefix).is_err()
            || self.topic_prefix.contains(['+', '#'])
        {
            errors.push((format!("{path}.topic_prefix"), "must be a topic name without wildcards".into()));
        }
        if self.kinds.is_empty() && !self.publish_findings {
            errors.push((format!("{path}.kinds"), "takes no action kind and publishes no findings".into()));
        }
        if !(100..=120_000).contains(&self.publish_timeout_ms) {
            errors.push((format!("{path}.publish_timeout_ms"), "must be between 100 and 120000".into()));
        }
    }
}

/// One message to publish with QoS 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

fn station_of(subject: &Value) -> String {
    level(subject.get("station").and_then(Value::as_str).unwrap_or("plant"))
}

/// The messages for one approved action.
pub fn action_messages(prefix: &str, action: &Action) -> Vec<Message> {
    let body = json!({
        "action_id": action.action_id,
        "finding_id": action.finding_id,
        "kind": action.kind,
        "idempotency_key": action.idempotency_key,
        "correlation_id": action.correlation_id,
        "created_at": jidoka_model::event::rfc3339::format(&action.created_at),
        "payload": action.payload,
    });
    let mut out = vec![Message {
        topic: format!("{prefix}/actions/{}", action.kind.as_str()),
        payload: body.to_string().into_bytes(),
        retain: false,
    }];
    if action.kind == ActionKind::RaiseAndon {
        let subject = action.payload.get("subject").cloned().unwrap_or(Value::Null);
        let state = json!({
            "station": subject.get("station"),
            "active": true,
            "reason": action.payload.get("reason"),
            "finding_kind": action.payload.get("finding_kind"),
            "severity": action.payload.get("severity"),
            "vin": subject.get("vin"),
            "action_id": action.action_id,
            "idempotency_key": action.idempotency_key,
            "raised_at": jidoka_model::event::rfc3339::format(&action.created_at),
        });
        out.push(Message {
            topic: format!("{prefix}/station/{}/andon", station_of(&subject)),
            payload: state.to_string().into_bytes(),
            retain: true,
        });
    }
    out
}

/// The messages for one finding: nothing for a PASS.
pub fn finding_messages(prefix: &str, finding: &Finding) -> Vec<Message> {
    if finding.verdict == jidoka_model::Verdict::Pass {
        return Vec::new();
    }
    let station = level(finding.subject.station.as_deref().unwrap_or("plant"));
    let body = json!({
        "finding_id": finding.finding_id,
        "agent": finding.agent,
        "agent_version": finding.agent_version,
        "kind": finding.kind,
        "verdict": finding.verdict,
        "severity": finding.severity,
        "confidence": finding.confidence,
        "reason": finding.reason,
        "subject": finding.subject,
        "correlation_id": finding.correlation_id,
        "source_txn_id": finding.source_txn_id,
        "occurred_at": jidoka_model::event::rfc3339::format(&finding.occurred_at),
        "link": format!("/ui/findings/{}", finding.finding_id),
    });
    let status = json!({
        "station": finding.subject.station,
        "verdict": finding.verdict,
        "kind": finding.kind,
        "reason": finding.reason,
        "vin": finding.subject.vin,
        "finding_id": finding.finding_id,
        "occurred_at": jidoka_model::event::rfc3339::format(&finding.occurred_at),
    });
    vec![
        Message {
            topic: format!("{prefix}/findings/{station}/{}", finding.verdict.as_str()),
            payload: body.to_string().into_bytes(),
            retain: false,
        },
        Message {
            topic: format!("{prefix}/station/{station}/status"),
            payload: status.to_string().into_bytes(),
            retain: true,
        },
    ]
}

#[derive(Debug)]
enum Note {
    Sent(u16),
    Acked(u16),
    Lost(String),
}

/// A QoS 1 publisher whose `publish` returns once the broker has acknowledged every message.
/// A thread keeps the connection (keep-alives, reconnects with backoff) between calls.
pub struct Publisher {
    client: Client,
    notes: mpsc::Receiver<Note>,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn connect(login: &BrokerLogin<'_>, timeout: Duration) -> Result<Publisher, String> {
        let mut opts = login.options()?;
        // A fresh session: after a failure the caller publishes again, so the client must not
        // also replay its own copy.
        opts.set_clean_session(true);
        let (client, mut connection) = Client::new(opts, 256);
        let (tx, notes) = mpsc::channel();
        let name = login.client_id.clone();
        std::thread::Builder::new()
            .name(format!("mqtt-{name}"))
            .spawn(move || {
                let mut failures = 0u32;
                for event in connection.iter() {
                    let note = match event {
                        Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) => Note::Sent(pkid),
                        Ok(rumqttc::Event::Incoming(Packet::PubAck(ack))) => Note::Acked(ack.pkid),
                        Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                            failures = 0;
                            continue;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            let _ = tx.send(Note::Lost(e.to_string()));
                            std::thread::sleep(reconnect_delay(failures));
                            continue;
                        }
                    };
                    if tx.send(note).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the publisher thread: {e}"))?;
        Ok(Publisher { client, notes, timeout })
    }

    /// Publish every message with QoS 1 and wait until the broker acknowledged them all.
    pub fn publish(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        while self.notes.try_recv().is_ok() {} // what is left from an earlier call
        for m in messages {
            self.client
                .publish(m.topic.clone(), QoS::AtLeastOnce, m.retain, m.payload.clone())
                .map_err(|e| SinkError::Transient(format!("cannot publish to {}: {e}", m.topic)))?;
        }
        let deadline = Instant::now() + self.timeout;
        let mut sent: HashSet<u16> = HashSet::new();
        let (mut n_sent, mut n_acked) = (0usize, 0usize);
        while n_acked < messages.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok(Note::Sent(pkid)) => {
                    n_sent += 1;
                    sent.insert(pkid);
                }
                Ok(Note::Acked(pkid)) => {
                    if sent.remove(&pkid) {
                        n_acked += 1;
                    }
                }
                Ok(Note::Lost(e)) => {
                    return Err(SinkError::Transient(format!("broker connection lost: {e}")));
                }
                Err(_) => {
                    return Err(SinkError::Transient(format!(
                        "the broker acknowledged {n_acked} of {} messages ({n_sent} sent) within {} ms",
                        messages.len(),
                        self.timeout.as_millis()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// The outbox's MQTT sink.
#[derive(Debug)]
pub struct MqttSink {
    config: MqttSinkConfig,
    publisher: Publisher,
}

impl MqttSink {
    pub fn new(config: &MqttSinkConfig) -> Result<MqttSink, SinkError> {
        let publisher = Publisher::connect(&config.login("out"), Duration::from_millis(config.publish_timeout_ms))
            .map_err(SinkError::Permanent)?;
        Ok(MqttSink { config: config.clone(), publisher })
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn accepts(&self, kind: ActionKind) -> bool {
        self.config.kinds.contains(&kind)
    }

    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError> {
        self.publisher.publish(&action_messages(&self.config.topic_prefix, action))?;
        Ok(Receipt::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jidoka_model::{ActionStatus, Severity, Subject, Verdict};

    #[test]
    fn an_andon_alert_also_sets_the_station_state() {
        let action = Action {
            action_id: "A1".into(),
            finding_id: "F1".into(),
            kind: ActionKind::RaiseAndon,
            status: ActionStatus::Approved,
            payload: json!({"subject": {"station": "ST/040", "vin": "V1"}, "reason": "wrong part"}),
            idempotency_key: "jidoka:A1".into(),
            correlation_id: "c".into(),
            created_at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
        };
        let m = action_messages("plant1/jidoka", &action);
        assert_eq!(m[0].topic, "plant1/jidoka/actions/raise_andon");
        assert!(!m[0].retain);
        assert_eq!(m[1].topic, "plant1/jidoka/station/ST_040/andon");
        assert!(m[1].retain);
        let v: Value = serde_json::from_slice(&m[1].payload).unwrap_or_default();
        assert_eq!(v["reason"], "wrong part");
        assert_eq!(v["idempotency_key"], "jidoka:A1");
    }

    #[test]
    fn a_pass_is_not_published() {
        let mut f = Finding {
            finding_id: "F".into(),
            agent: "a".into(),
            agent_version: "1".into(),
            kind: "torque.soft_joint".into(),
            verdict: Verdict::Pass,
            severity: Severity::Warning,
            confidence: 0.9,
            reason: "r".into(),
            subject: Subject { station: Some("ST040".into()), ..Subject::default() },
            evidence: vec![],
            correlation_id: "c".into(),
            source_txn_id: "t".into(),
            occurred_at: chrono::Utc::now(),
            details: Value::Null,
        };
        assert!(finding_messages("j", &f).is_empty());
        f.verdict = Verdict::Hold;
        let m = finding_messages("j", &f);
        assert_eq!(m[0].topic, "j/findings/ST040/HOLD");
        assert_eq!(m[1].topic, "j/station/ST040/status");
        assert!(m[1].retain);
    }
}
