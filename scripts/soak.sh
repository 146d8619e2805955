#!/usr/bin/env bash
# Soak: the service fed with a simulated plant while a bounded hostile load runs, killed with
# SIGKILL every few minutes and restarted; prints one JSON object (lost, duplicated, peak RSS,
# /health latency, audit verify). Loopback only.
#
# Usage: scripts/soak.sh [--minutes 30] [--kill-every 180]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p jidoka >&2
exec python3 scripts/soak.py --binary target/release/jidoka "$@"
