#!/usr/bin/env bash
# Installs (once) what the dashboard's browser tests need: Debian's Chromium and
# playwright-core from npm (no browser download: it drives /usr/bin/chromium), under
# target/dashboard-e2e. Prints the node_modules folder to use.
#
# Usage: scripts/browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "Chromium is missing and installing it needs root: apt-get install chromium" >&2
        exit 1
    fi
    (
        flock 9
        if [ ! -x /usr/bin/chromium ]; then
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q >&2
            apt-get install -y -q --no-install-recommends chromium >&2
        fi
    ) 9> /tmp/jidoka-chromium-install.lock
fi
dir=$(pwd)/target/dashboard-e2e
mkdir -p "$dir"
(
    flock 9
    if [ ! -d "$dir/node_modules/playwright-core" ] || [ tests/dashboard/package.json -nt "$dir/package.json" ]; then
        cp tests/dashboard/package.json "$dir/"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
        touch "$dir/package.json"
    fi
) 9> "$dir/.install.lock"
echo "$dir/node_modules"
