#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: schemathesis (from PyPI, in a virtualenv under target/)
# reads GET /openapi.json from a running `jidoka serve` and calls every operation with generated
# input, as an admin. It fails on any server error, an undocumented status code or content type,
# or a response that does not match its schema.
#
# Usage: scripts/api-fuzz.sh [path to the jidoka binary]   (default: target/debug/jidoka)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/jidoka}")
venv=$(pwd)/target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi

work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
JIDOKA_FUZZ_TOKEN="jdk_$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
export JIDOKA_FUZZ_TOKEN
cat > "$work/plant.toml" <<TOML
[store]
data_dir = "$work/data"

[api]
listen = "127.0.0.1:$port"

[[api.tokens]]
name = "fuzz"
role = "admin"
env = "JIDOKA_FUZZ_TOKEN"
TOML

"$bin" serve --config "$work/plant.toml" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

# Run from the scratch folder: schemathesis keeps a cache in its working directory.
cd "$work"
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $JIDOKA_FUZZ_TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${JIDOKA_FUZZ_EXAMPLES:-40}" \
    --workers 1 \
    --no-color
