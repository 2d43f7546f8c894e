#!/usr/bin/env python3
"""Ingest throughput with the dashboard open and a browser connected, against
http.listen = "" (issue 13: the HTTP side must not slow ingest).

    python3 benches/dashboard.py [--rounds 3] [--boards 100] [--count 20000]

Builds the release binary, then per round and mode (alternating): starts `sensorlog serve`
on loopback with a fresh CSV and
- `off`: `--http-listen ""`;
- `events`: the dashboard on, one `curl -N /events` client (the daemon's own cost);
- `browser`: the dashboard open in headless Chromium, which follows /events and redraws
  values and charts every second (the daemon's cost plus the browser's CPU, on the same
  machine);
waits 3 s for the client to connect; then runs `sensorlog simulate --rate 0` (boards flat out,
JSON, no acks) and times from its start until the CSV stops growing (polled every 2 ms;
done = last growth seen, confirmed by 300 ms without change). Every row is counted
afterwards (2 rows per reading); a shortfall is reported as lost. Prints each round and
the median readings/s per mode, and their ratio.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "sensorlog")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1100,760",
]


def wait_line(path, pattern, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.02)
    raise SystemExit(f"bench: no {pattern!r} in {path} within {timeout} s")


def one_round(mode, boards, count, work):
    csv = os.path.join(work, f"{mode}.csv")
    log = os.path.join(work, f"{mode}.log")
    for p in (csv, log):
        if os.path.exists(p):
            os.remove(p)
    http = "" if mode == "off" else "127.0.0.1:0"
    with open(log, "w") as lf:
        daemon = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--csv", csv, "--http-listen", http,
             "--stats-interval-secs", "0",
             # Every simulated board connects from 127.0.0.1: lift the per-address cap
             # (server.max_connections_per_ip, 64 by default) above the board count.
             "--max-connections-per-ip", str(max(boards, 64))],
            stderr=lf, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "info"})
    browser = None
    try:
        addr = wait_line(log, r"Listening on (\S+?)\. ").group(1)
        if mode == "events":
            url = "http://" + wait_line(log, r"Dashboard at http://(\S+?)/ ").group(1) + "/events"
            browser = subprocess.Popen(["curl", "-sN", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3.0)
        if mode == "browser":
            url = "http://" + wait_line(log, r"Dashboard at http://(\S+?)/ ").group(1) + "/"
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            if not chromium:
                raise SystemExit("bench: chromium is not installed (apt-get install -y chromium)")
            profile = tempfile.mkdtemp(prefix="chromium-", dir=work)
            browser = subprocess.Popen(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3.0)
        start = time.time()
        sim = subprocess.Popen(
            [BIN, "simulate", "--addr", addr, "--boards", str(boards), "--count", str(count),
             "--rate", "0", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        last_size, last_change = -1, start
        while True:
            size = os.path.getsize(csv) if os.path.exists(csv) else 0
            now = time.time()
            if size != last_size:
                last_size, last_change = size, now
            elif sim.poll() is not None and now - last_change > 0.3:
                break
            if now - start > 600:
                break
            time.sleep(0.002)
        out, _ = sim.communicate(timeout=60)
        sent = json.loads(out.decode().strip().splitlines()[-1])["sent"]
        with open(csv, "rb") as f:
            rows = sum(1 for _ in f) - 1
        readings = rows // 2
        elapsed = last_change - start
        return readings / elapsed, sent - readings, elapsed
    finally:
        if browser:
            browser.send_signal(signal.SIGTERM)
            browser.wait(timeout=20)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--boards", type=int, default=100)
    ap.add_argument("--count", type=int, default=20000)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sensorlog-dash-bench-")
    results = {"off": [], "events": [], "browser": []}
    any_lost = False
    try:
        for r in range(a.rounds):
            for mode in results:
                rate, lost, elapsed = one_round(mode, a.boards, a.count, work)
                results[mode].append(rate)
                any_lost = any_lost or lost != 0
                print(f"round {r + 1} {mode:7}: {a.boards}x{a.count} readings in {elapsed:.2f} s = "
                      f"{rate:,.0f} readings/s, lost {lost}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if any_lost:
        print("NOT VALID: readings were lost (see the rounds above); the rates measure something else",
              flush=True)
    off = statistics.median(results["off"])
    ev, br = statistics.median(results["events"]), statistics.median(results["browser"])
    print(f"median readings/s: http.listen = \"\": {off:,.0f}; /events client: {ev:,.0f} "
          f"(ratio {ev / off:.3f}); browser on the dashboard: {br:,.0f} (ratio {br / off:.3f})")
    return 1 if any_lost else 0


if __name__ == "__main__":
    sys.exit(main())
