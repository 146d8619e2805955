#!/usr/bin/env bash
# Installs (once) what the MQTT tests and `jidoka bench mqtt` need: Debian's Mosquitto broker
# and its command-line clients. Nothing is started here: each test starts its own broker on a
# free loopback port with its own persistence folder (`jidoka_lab::mqtt::Broker`).
#
# Usage: scripts/mosquitto.sh
set -euo pipefail
have() { [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null; }
if have && command -v mosquitto_sub >/dev/null && command -v mosquitto_pub >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "Mosquitto is missing and installing it needs root: apt-get install mosquitto mosquitto-clients" >&2
    exit 1
fi
(
    flock 9
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients >&2
) 9> /tmp/jidoka-mosquitto-install.lock
