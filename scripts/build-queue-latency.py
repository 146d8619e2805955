#!/usr/bin/env python3
"""How long a supervisor waits for a re-sequencing proposal in the running service.

Starts `jidoka demo` (the simulated plant, its MES releasing four hours ahead), then N times:
declares the roof glass short from 40 to 160 minutes ahead of the line's time over the API,
waits until the build queue shows the new plan, and clears the disruption. Prints the time from
the declaration to the plan being visible (through the writer, the planner, the log and the
agent), the planner's own first-proposal and search times, and the plan's takts lost beside no
action and the push-back rule.

Usage: scripts/build-queue-latency.py [JIDOKA_BINARY] [N]   (default target/release/jidoka, 10)
"""

import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/jidoka"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
data = tempfile.mkdtemp(prefix="jidoka-latency-")
demo = subprocess.Popen(
    [binary, "demo", "--listen", "127.0.0.1:0", "--speed", "20", "--data-dir", data],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
token, base = None, None
for line in demo.stdout:
    words = line.split()
    if len(words) == 2 and words[0] == "supervisor":
        token = words[1]
    if line.startswith("jidoka listening on "):
        base = line.split()[-1]
        break
if not (token and base):
    demo.kill()
    sys.exit("jidoka demo did not start")


def call(path, body=None):
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    return json.load(urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers)))


try:
    deadline = time.time() + 30
    while not call("/api/build-queue?limit=1").get("now") and time.time() < deadline:
        time.sleep(0.2)
    waits, firsts, searches, lost = [], [], [], []
    for i in range(runs):
        view = call("/api/build-queue?limit=1")
        now = datetime.datetime.fromisoformat(view["now"].replace("Z", "+00:00"))
        at = lambda m: (now + datetime.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
        before = (view["plan"] or {}).get("computed_from_seq")
        start = time.perf_counter()
        call("/api/build-queue/disruptions",
             {"disruption_id": f"GLASS-{i}", "kind": "unavailable", "resource": "ROOF-GLASS",
              "from": at(40), "until": at(160)})
        while True:
            plan = call("/api/build-queue?limit=1")["plan"]
            if plan and plan["computed_from_seq"] != before:
                break
            time.sleep(0.002)
        waits.append((time.perf_counter() - start) * 1000)
        r = plan["result"]
        firsts.append(r.get("first_ms", 0.0))
        searches.append(r.get("search_ms", 0.0))
        lost.append((r["before"]["lost_takts"], r["push_back"]["lost_takts"], r["after"]["lost_takts"]))
        call("/api/build-queue/disruptions", {"disruption_id": f"GLASS-{i}", "kind": "cleared"})
        time.sleep(1.0)
    print(json.dumps({
        "runs": runs, "queued_units": view["queued"],
        "declaration_to_plan_ms": {"median": round(statistics.median(waits), 1), "max": round(max(waits), 1)},
        "planner_first_proposal_ms_median": round(statistics.median(firsts), 2),
        "planner_search_ms_median": round(statistics.median(searches), 1),
        "lost_takts_none_push_back_proposal": lost,
    }))
finally:
    demo.terminate()
    demo.wait()
    shutil.rmtree(data, ignore_errors=True)
