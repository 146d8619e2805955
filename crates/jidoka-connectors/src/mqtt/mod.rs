//! MQTT: station scans, Andon signals and PLC values from the plant's broker, and findings and
//! Andon alerts published back for the boards and HMIs that already listen there.
//!
//! - [`topic`]: topic filters and matching.
//! - [`mapping`]: a plant's own JSON topics mapped to events by configuration.
//! - [`sparkplug`]: Sparkplug B payloads and the host state machine (aliases, sequence
//!   numbers, rebirth requests).
//! - [`source`]: the subscriber: QoS 1 on a persistent session, messages acknowledged to the
//!   broker only after their events are durable (or the message is kept as rejected).
//! - [`sink`]: the publisher: approved actions, REVIEW / HOLD findings and retained station
//!   state, each published with QoS 1 and confirmed by the broker before it counts.

pub mod mapping;
pub mod sink;
pub mod source;
pub mod sparkplug;
pub mod topic;

pub use mapping::{Format, TopicConfig};
pub use sink::{MqttSink, MqttSinkConfig, Publisher};
pub use source::{MqttSourceConfig, SourceStats};

use std::time::Duration;

/// Where the broker is and how to log in; shared by the source and the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerLogin<'a> {
    pub broker: &'a str,
    pub client_id: String,
    pub username: Option<&'a str>,
    pub password_env: Option<&'a str>,
    pub keep_alive_s: u64,
}

/// The largest packet the client will read; larger messages are refused by the source's
/// own limit (with a reason) rather than by dropping the connection, which would only make
/// the broker deliver the same message again.
pub const MAX_PACKET_BYTES: usize = 268_435_455;

impl BrokerLogin<'_> {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if let Err(e) = split_host_port(self.broker) {
            errors.push((format!("{path}.broker"), e));
        }
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            errors.push((format!("{path}.client_id"), "must be 1-128 characters".into()));
        }
        if self.password_env.is_some() && self.username.is_none() {
            errors.push((format!("{path}.password_env"), "needs a username".into()));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            errors.push((format!("{path}.keep_alive_s"), "must be between 5 and 3600".into()));
        }
    }

    /// Client options; the password is read from the environment here and never logged.
    pub fn options(&self) -> Result<rumqttc::MqttOptions, String> {
        let (host, port) = split_host_port(self.broker)?;
        let mut opts = rumqttc::MqttOptions::new(self.client_id.clone(), host, port);
        opts.set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some(user) = self.username {
            let password = match self.password_env {
                Some(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
                None => String::new(),
            };
            opts.set_credentials(user, password);
        }
        Ok(opts)
    }
}

/// `host:port`, checked without a DNS lookup.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("`{address}` is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("`{address}` is not host:port"));
    }
    Ok((host.to_string(), port))
}
