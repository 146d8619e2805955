#!/usr/bin/env bash
# Installs (once, under target/) and starts the test MES: an OData v4 service shaped like
# Opcenter, served by SAP CAP (@sap/cds; its licence allows testing, so it is a test dependency
# and never shipped), bound to 127.0.0.1. Runs in the foreground until killed; several may run
# at once on different ports.
#
# Usage: scripts/mes-peer.sh [port]   (default: a free port)
set -euo pipefail
cd "$(dirname "$0")/.."
peer=$(pwd)/target/mes-peer
mkdir -p "$peer"
(
    flock 9
    if [ ! -d "$peer/node_modules/@sap/cds" ] || [ tests/mes-peer/package.json -nt "$peer/package.json" ]; then
        cp tests/mes-peer/package.json "$peer/"
        (cd "$peer" && npm install --no-audit --no-fund --loglevel=error >&2)
        touch "$peer/package.json"
    fi
) 9> "$peer/.install.lock"
port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# Each instance runs from its own folder; node finds the shared node_modules one level up.
run="$peer/run-$port"
rm -rf "$run"
mkdir -p "$run"
cp -r tests/mes-peer/db tests/mes-peer/srv tests/mes-peer/server.js tests/mes-peer/faults.js tests/mes-peer/package.json "$run/"
cd "$run"
exec node "$peer/node_modules/@sap/cds/bin/serve.js" all --port "$port" --in-memory
