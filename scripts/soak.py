#!/usr/bin/env python3
"""Soak: `jidoka serve` fed with a simulated plant at high speed while a bounded hostile load
runs against it (stalled bodies, idle sockets, live streams, bad sign-ins, bad events), killed
with SIGKILL every few minutes and restarted on the same store. At the end it prints one JSON
object: events acknowledged / stored / lost / duplicated, peak RSS, /health latency, audit
verify. Only loopback is touched; every loop is bounded in count and time.

Usage: scripts/soak.py [--minutes 30] [--kill-every 180] [--binary target/release/jidoka]
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--minutes", type=float, default=30.0)
p.add_argument("--kill-every", type=float, default=180.0, help="seconds between SIGKILLs")
p.add_argument("--binary", default="target/release/jidoka")
p.add_argument("--units", type=int, default=4000, help="simulated units to feed (the feed wraps around)")
args = p.parse_args()

work = tempfile.mkdtemp(prefix="jidoka-soak-")
data = os.path.join(work, "data")
deadline = time.time() + args.minutes * 60
stop = threading.Event()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# Tokens: an integrator feeds events, a supervisor watches the live stream.
def token():
    out = run([args.binary, "token", "new", "--name", "soak", "--role", "integrator"]).stdout
    tok = next(l.strip() for l in out.splitlines() if l.strip().startswith("jdk_"))
    sha = next(l.split("=")[1].strip().strip('"') for l in out.splitlines() if l.strip().startswith("sha256"))
    return tok, sha


feeder_token, feeder_sha = token()
viewer_token, viewer_sha = token()
config = os.path.join(work, "plant.toml")
with open(config, "w") as f:
    f.write(f"""[store]
data_dir = {json.dumps(data)}

[api]
listen = "127.0.0.1:0"
max_connections = 200
max_connections_per_peer = 150
idle_timeout_seconds = 5
request_timeout_seconds = 10

[[api.tokens]]
name = "feeder"
role = "integrator"
sha256 = "{feeder_sha}"

[[api.tokens]]
name = "viewer"
role = "supervisor"
sha256 = "{viewer_sha}"
""")

# The plant's events, simulated once.
sim = os.path.join(work, "sim")
run([args.binary, "sim", "--units", str(args.units), "--seed", "11", "--out", sim])
with open(os.path.join(sim, "events.jsonl")) as f:
    events = [json.loads(l) for l in f if l.strip()]

server = {"proc": None, "port": None}
rss_peak_kib = 0
lock = threading.Lock()


def start():
    proc = subprocess.Popen([args.binary, "serve", "--config", config], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("jidoka listening on "):
            port = int(line.strip().rsplit(":", 1)[1])
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            with lock:
                server["proc"], server["port"] = proc, port
            return
    raise SystemExit("jidoka did not start")


def rss(proc):
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    return int(l.split()[1])
    except OSError:
        pass
    return 0


def port():
    with lock:
        return server["port"]


def post(path, body, tok, timeout=15):
    c = http.client.HTTPConnection("127.0.0.1", port(), timeout=timeout)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Authorization": f"Bearer {tok}",
                                                                 "Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


acked = set()       # (source, source_txn_id) the service acknowledged as stored or duplicate
sent = 0


def feeder():
    global sent
    i = 0
    batch = 50
    while not stop.is_set() and time.time() < deadline:
        chunk = events[i:i + batch]
        if not chunk:
            i = 0
            continue
        try:
            status, body = post("/api/events", chunk, feeder_token)
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)  # the service is down (killed): retry the same chunk
            continue
        if status == 200:
            res = json.loads(body)
            for item, r in zip(chunk, res["results"]):
                if r["status"] in ("stored", "duplicate"):
                    acked.add((item["source"], item["source_txn_id"]))
            sent += len(chunk)
            i += batch
        else:
            time.sleep(0.2)


def hostile():
    """Bounded misbehaviour: each kind a few times a second at most."""
    n = 0
    held = []
    while not stop.is_set() and time.time() < deadline and n < 200_000:
        n += 1
        try:
            kind = n % 5
            if kind == 0:  # a body that stalls half way
                s = socket.create_connection(("127.0.0.1", port()), timeout=2)
                s.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{\"user\":")
                held.append(s)
            elif kind == 1:  # an idle socket
                held.append(socket.create_connection(("127.0.0.1", port()), timeout=2))
            elif kind == 2:  # a bad sign-in
                post("/api/login", {"user": "mallory", "password": "guess"}, "", timeout=5)
            elif kind == 3:  # a bad event
                post("/api/events", {"source": "x", "kind": "tightening_result", "data": {}}, feeder_token, timeout=5)
            else:  # a live stream, dropped later
                s = socket.create_connection(("127.0.0.1", port()), timeout=2)
                s.sendall(f"GET /ui/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: jidoka_session={viewer_token}\r\n\r\n".encode())
                held.append(s)
        except OSError:
            pass
        if len(held) > 60:
            for s in held[:30]:
                s.close()
            del held[:30]
        time.sleep(0.05)
    for s in held:
        s.close()


health = []


def prober():
    while not stop.is_set() and time.time() < deadline:
        t0 = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port(), timeout=5)
            c.request("GET", "/health")
            ok = c.getresponse().status == 200
            c.close()
            if ok:
                health.append((time.time() - t0) * 1000)
        except (OSError, http.client.HTTPException):
            pass  # down between a kill and the restart: not a health latency
        time.sleep(0.2)


start()
threads = [threading.Thread(target=f, daemon=True) for f in (feeder, hostile, prober)]
for t in threads:
    t.start()
kills = 0
next_kill = time.time() + args.kill_every
while time.time() < deadline:
    time.sleep(0.5)
    with lock:
        proc = server["proc"]
    rss_peak_kib = max(rss_peak_kib, rss(proc))
    if time.time() >= next_kill and time.time() < deadline - 10:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        start()
        next_kill = time.time() + args.kill_every
stop.set()
for t in threads:
    t.join(timeout=30)
with lock:
    proc = server["proc"]
rss_peak_kib = max(rss_peak_kib, rss(proc))
proc.send_signal(signal.SIGTERM)
proc.wait(timeout=60)

# What the store holds.
import sqlite3
db = sqlite3.connect(f"file:{os.path.join(data, 'jidoka.sqlite')}?mode=ro", uri=True)
stored = set(db.execute("SELECT source, source_txn_id FROM events").fetchall())
dupes = db.execute("SELECT COUNT(*) - COUNT(DISTINCT source || char(0) || source_txn_id) FROM events").fetchone()[0]
db.close()
verify = subprocess.run([args.binary, "audit", "verify", "--config", config, "--json"], capture_output=True, text=True)
try:
    verdict = json.loads(verify.stdout)
except ValueError:
    verdict = {"intact": False, "output": verify.stdout[-500:] + verify.stderr[-500:]}
health.sort()
p99 = health[min(len(health) - 1, int(len(health) * 0.99))] if health else None
print(json.dumps({
    "minutes": args.minutes, "kills": kills,
    "events_sent": sent, "events_acknowledged": len(acked), "events_stored": len(stored),
    "lost": len(acked - stored), "duplicated": dupes,
    "peak_rss_mb": round(rss_peak_kib / 1024, 1),
    "health_checks": len(health), "health_p50_ms": health[len(health) // 2] if health else None, "health_p99_ms": p99,
    "audit_intact": bool(verdict.get("intact")),
}))
