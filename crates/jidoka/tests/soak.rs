//! The soak in short: `scripts/soak.py` for two minutes against the binary under test, killed
//! with SIGKILL every 40 s under a bounded hostile load. The long run (30 minutes and more)
//! is `scripts/soak.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn two_minutes_of_kills_and_hostile_load_lose_nothing_and_double_nothing() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/soak.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--minutes", "2", "--kill-every", "40", "--units", "600", "--binary", env!("CARGO_BIN_EXE_jidoka")])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("soak: {report}");
    assert!(report["kills"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["events_acknowledged"].as_u64().unwrap() > 1000, "{report}");
    assert_eq!(report["lost"], 0, "every acknowledged event is stored: {report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert_eq!(report["audit_intact"], true, "{report}");
    assert!(report["health_checks"].as_u64().unwrap() > 100, "the service answered through the run: {report}");
}
