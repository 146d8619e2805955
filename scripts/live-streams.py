#!/usr/bin/env python3
"""Live dashboard streams under load: `jidoka demo` on loopback, then many open `/ui/live`
streams (as many tablets at the line would hold, six per signed-in session, the cap), and what
they cost the server: CPU share and RSS of the process, and the `/ui` page's latency, each
measured first without streams and then with them. Prints one JSON object. Only loopback is
touched; every loop is bounded.

Usage: scripts/live-streams.py [--streams 200] [--seconds 20] [--binary target/release/jidoka]
"""

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import selectors
import tempfile
import threading
import time
import urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--streams", type=int, default=200)
p.add_argument("--seconds", type=float, default=20.0, help="length of each measuring window")
p.add_argument("--binary", default="target/release/jidoka")
p.add_argument("--no-read", action="store_true",
               help="never read the streams (stalled clients: what the server buffers for them)")
args = p.parse_args()

work = tempfile.mkdtemp(prefix="jidoka-streams-")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
log = open(os.path.join(work, "demo.log"), "w+")
proc = subprocess.Popen(
    [args.binary, "demo", "--data-dir", os.path.join(work, "data"), "--listen", f"127.0.0.1:{port}", "--speed", "20"],
    stdout=log, stderr=subprocess.STDOUT)
password = None
for _ in range(600):
    log.seek(0)
    m = re.search(r"demo-supervisor\s+(\S+)", log.read())
    if m:
        password = m.group(1)
        break
    time.sleep(0.1)
assert password, "the demo printed no supervisor login"
time.sleep(3)


def sign_in():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = urllib.parse.urlencode({"user": "demo-supervisor", "password": password})
    c.request("POST", "/ui/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie", "")
    c.close()
    m = re.search(r"jidoka_session=([^;]+)", cookie)
    assert m, f"no session cookie ({r.status})"
    return m.group(1)


def cpu_ticks():
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb():
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def window(session):
    """CPU share (of one core), RSS and /ui latencies over one measuring window."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.time(), cpu_ticks()
    latencies = []
    while time.time() - t0 < args.seconds:
        s = time.time()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/ui", headers={"Cookie": f"jidoka_session={session}"})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status == 200:
            latencies.append((time.time() - s) * 1000)
        time.sleep(0.2)
    cpu = (cpu_ticks() - c0) / hz / (time.time() - t0)
    latencies.sort()
    return {"cpu_share": round(cpu, 3), "rss_mb": round(rss_mb(), 1),
            "ui_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "ui_p99_ms": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
            "ui_pages": len(latencies)}


try:
    viewer = sign_in()
    before = window(viewer)
    # Sign in first (each sign-in runs argon2, whose working memory the allocator keeps), so
    # that what the streams cost is measured apart from it.
    sessions = [sign_in() for _ in range(min(1000, -(-args.streams // 6)))]
    time.sleep(1)
    rss_after_sign_ins = round(rss_mb(), 1)
    streams, refused = [], 0
    for session in sessions:
        if len(streams) >= args.streams:
            break
        for _ in range(7):  # one more than the cap: the seventh must be refused
            # Tablets are many addresses: 50 streams from each loopback address, under the
            # listener's per-address cap.
            source = f"127.0.0.{2 + len(streams) // 50}"
            s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
            s.sendall(f"GET /ui/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: jidoka_session={session}\r\n\r\n".encode())
            head = s.recv(64)
            if b" 200 " in head:
                streams.append(s)
            else:
                refused += 1
                s.close()
            if len(streams) >= args.streams:
                break
    done = threading.Event()

    def drain():
        """Read every stream as a tablet's browser would."""
        sel = selectors.DefaultSelector()
        for s in streams:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        while not done.is_set():
            for key, _ in sel.select(timeout=0.5):
                try:
                    key.fileobj.recv(65536)
                except OSError:
                    pass

    reader = None if args.no_read else threading.Thread(target=drain, daemon=True)
    if reader:
        reader.start()
    time.sleep(2)
    during = window(viewer)
    done.set()
    for s in streams:
        s.close()
    print(json.dumps({"streams_open": len(streams), "streams_read": not args.no_read,
                      "rss_mb_after_sign_ins": rss_after_sign_ins, "sessions": len(sessions), "streams_refused_over_cap": refused,
                      "without_streams": before, "with_streams": during}, indent=1))
finally:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
