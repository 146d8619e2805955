//! Shared by the agent tests: a simulated stream, and the sentence encoder when installed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jidoka_agents::encoder::Encoder;
use jidoka_model::StoredEvent;
use std::path::PathBuf;

/// The default plant's events for `units` units, numbered as the store would.
pub fn simulate(units: u64, seed: u64) -> Vec<StoredEvent> {
    let plant = jidoka_sim::Plant::default_plant().expect("default plant");
    let mut sim = jidoka_sim::Simulation::new(plant, seed, Some(units), jidoka_sim::CurveMode::None);
    let mut events = Vec::new();
    while sim.has_more() {
        events.extend(sim.next_slot().events);
    }
    events.into_iter().enumerate().map(|(i, event)| StoredEvent { seq: i as u64 + 1, event }).collect()
}

/// The all-MiniLM-L6-v2 encoder, installed by `scripts/minilm.sh`. Under CI=true a failed
/// install fails the test; elsewhere the test says it did not run.
pub fn encoder() -> Option<Encoder> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/minilm.sh");
    match std::process::Command::new("bash").arg(&script).output() {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Some(Encoder::load(std::path::Path::new(&dir)).expect("the installed model loads"))
        }
        other => {
            assert!(std::env::var("CI").is_err(), "scripts/minilm.sh failed under CI: {other:?}");
            eprintln!("sentence encoder not installed ({other:?}): not run");
            None
        }
    }
}
