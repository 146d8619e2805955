//! The Open Protocol controller link as a source of the service: results appended through the
//! runtime's durable ingest before they are acknowledged to the controller.

use crate::runtime::{Ingest, IngestStore};
use jidoka_connectors::openprotocol::client::{self, LinkStats, OpenProtocolSourceConfig};
use jidoka_connectors::reject::RejectFile;
use jidoka_store::Store;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Run one controller link until `stop`, resuming from its stored checkpoint; results that
/// cannot be stored are kept in `<data-dir>/rejected/op-<name>.jsonl`.
pub fn source(
    cfg: OpenProtocolSourceConfig,
    ingest: Ingest,
    store: Arc<dyn Store>,
    data_dir: &std::path::Path,
    stop: Arc<AtomicBool>,
    stats: Arc<LinkStats>,
) {
    let checkpoint = match store.checkpoint(&cfg.checkpoint_name()) {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(source = %cfg.name, error = %err, "cannot read checkpoint; source not started");
            return;
        }
    };
    let path = RejectFile::path_for(data_dir, "op", &cfg.name);
    let mut rejects = match RejectFile::open(&path) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(source = %cfg.name, error = %e, "cannot open the rejected-results file; source not started");
            return;
        }
    };
    let mut sink = IngestStore { ingest, checkpoint_name: cfg.checkpoint_name() };
    client::run(&cfg, &mut sink, &mut rejects, checkpoint, &stop, &stats);
    tracing::info!(
        source = %cfg.name,
        stored = LinkStats::get(&stats.results_stored),
        duplicates = LinkStats::get(&stats.duplicates),
        recovered = LinkStats::get(&stats.recovered),
        rejected = LinkStats::get(&stats.rejected),
        "open protocol link stopped"
    );
}
