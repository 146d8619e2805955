//! Helpers shared by the integration tests that drive the binary over HTTP.

use std::process::Command;
use std::time::Duration;

/// The binary under test.
pub fn jidoka_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jidoka"))
}

#[allow(dead_code)] // not every test binary speaks HTTP itself
/// An HTTP client that returns error statuses as responses, with a 10 s bound per request.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}
