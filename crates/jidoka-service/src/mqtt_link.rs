//! MQTT in the service: the subscriber as a source (messages acknowledged to the broker only
//! once stored or kept as rejected) and the findings publisher (REVIEW / HOLD findings and the
//! stations' retained status, resumed from a checkpoint).

use crate::runtime::{Ingest, IngestStore};
use jidoka_connectors::mqtt::sink::{Message, finding_messages};
use jidoka_connectors::mqtt::source;
use jidoka_connectors::mqtt::{MqttSinkConfig, MqttSourceConfig, Publisher, SourceStats};
use jidoka_connectors::reject::RejectFile;
use jidoka_connectors::{reconnect_delay, sleep_unless};
use jidoka_store::{AppendBatch, Checkpoint, Store};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Run one MQTT source until `stop`.
pub fn source(cfg: MqttSourceConfig, ingest: Ingest, data_dir: &Path, stop: Arc<AtomicBool>, stats: Arc<SourceStats>) {
    let path = RejectFile::path_for(data_dir, "mqtt", &cfg.name);
    let mut rejects = match RejectFile::open(&path) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(source = %cfg.name, error = %e, "cannot open the rejected-messages file; source not started");
            return;
        }
    };
    let mut store = IngestStore { ingest, checkpoint_name: cfg.source() };
    source::run(&cfg, &mut store, &mut rejects, &stop, &stats);
    tracing::info!(
        source = %cfg.name,
        messages = SourceStats::get(&stats.messages),
        stored = SourceStats::get(&stats.events_stored),
        duplicates = SourceStats::get(&stats.duplicates),
        rejected = SourceStats::get(&stats.rejected_messages),
        "mqtt source stopped"
    );
}

/// Publish every REVIEW / HOLD finding in store order from this sink's checkpoint, each page
/// confirmed by the broker before the checkpoint moves past it. On its first start it begins
/// at the newest finding, so adding the sink to a running plant does not replay its history.
pub fn publish_findings(cfg: MqttSinkConfig, store: Arc<dyn Store>, stop: Arc<AtomicBool>) {
    let checkpoint_name = format!("mqtt-findings:{}", cfg.name);
    let mut after: i64 = match store.checkpoint(&checkpoint_name) {
        Ok(Some(p)) => p.parse().unwrap_or(0),
        Ok(None) => match store.last_finding_position() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(sink = %cfg.name, error = %e, "cannot read findings; findings are not published");
                return;
            }
        },
        Err(e) => {
            tracing::error!(sink = %cfg.name, error = %e, "cannot read checkpoint; findings are not published");
            return;
        }
    };
    let mut publisher = match Publisher::connect(&cfg.login("findings"), Duration::from_millis(cfg.publish_timeout_ms))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(sink = %cfg.name, error = %e, "findings are not published");
            return;
        }
    };
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let page = match store.findings_in_order(after, 200) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(sink = %cfg.name, error = %e, "cannot read findings");
                sleep_unless(&stop, Duration::from_secs(1));
                continue;
            }
        };
        let Some(last) = page.next_cursor else {
            sleep_unless(&stop, Duration::from_millis(250));
            continue;
        };
        let messages: Vec<Message> = page.items.iter().flat_map(|f| finding_messages(&cfg.topic_prefix, f)).collect();
        if let Err(e) = publisher.publish(&messages) {
            failures = failures.saturating_add(1);
            tracing::warn!(sink = %cfg.name, error = %e, "findings not published yet; retrying");
            sleep_unless(&stop, reconnect_delay(failures));
            continue;
        }
        failures = 0;
        let cp = Checkpoint { source: checkpoint_name.clone(), position: last.to_string() };
        if let Err(e) = store.append(&[AppendBatch { events: &[], checkpoint: Some(&cp) }]) {
            // Published but not recorded: the page goes out again after a restart, and the
            // receivers drop it by finding id.
            tracing::warn!(sink = %cfg.name, error = %e, "cannot record the findings checkpoint");
        }
        after = last;
    }
}
