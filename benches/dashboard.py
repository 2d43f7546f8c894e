#!/usr/bin/env python3
"""Ingest throughput with the dashboard open and a browser connected, against
http.listen = "" (issue 13: the HTTP side must not slow ingest).

    python3 benches/dashboard.py [--rounds 3] [--boards 100] [--count 20000] [--modes off,flood]

Builds the release binary, then per round and mode (alternating): starts `sensorlog serve`
on loopback with a fresh CSV and
- `off`: `--http-listen ""`;
- `events`: the dashboard on, one `curl -N /events` client (the daemon's own cost);
- `browser`: the dashboard open in headless Chromium, which follows /events and redraws
  values and charts every second (the daemon's cost plus the browser's CPU, on the same
  machine);
- `flood`: a hostile HTTP client instead: up to 200 connections held open with a request
  that never ends (past `http.max_connections` they get 503; the held ones 408 after
  `http.request_timeout_secs`, and are opened again), and 4 threads fetching
  `/api/boards?series=1` and `/metrics` back to back (what the dashboard port must take
  without slowing the boards; the counts of answers by status are printed);
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
import socket
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SENSORLOG_BENCH_SERVER_BIN: another build to measure (an older one, say), generator included.
BIN = os.environ.get("SENSORLOG_BENCH_SERVER_BIN") or os.path.join(ROOT, "target", "release", "sensorlog")
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


class Flood:
    """The `flood` mode's HTTP client: idle connections held open, and heavy GETs back to
    back, until stopped. Bounded: 200 sockets at most, every socket timed out."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.addr = (host, int(port))
        self.stop = threading.Event()
        self.statuses = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.hold, daemon=True)]
        self.threads += [threading.Thread(target=self.fetch, args=(p,), daemon=True)
                         for p in ["/api/boards?series=1", "/metrics"] * 2]
        for t in self.threads:
            t.start()

    def count(self, reply):
        status = reply.split(b" ", 2)[1].decode(errors="replace") if reply.startswith(b"HTTP/") else "none"
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def hold(self):
        held = []
        while not self.stop.is_set():
            held = [s for s in held if not self.closed(s)]
            while len(held) < 200 and not self.stop.is_set():
                try:
                    s = socket.create_connection(self.addr, timeout=5)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    s.setblocking(False)
                    held.append(s)
                except OSError:
                    break
            time.sleep(0.05)
        for s in held:
            s.close()

    def closed(self, s):
        try:
            data = s.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            self.count(data)
        s.close()
        return True

    def fetch(self, path):
        while not self.stop.is_set():
            try:
                with socket.create_connection(self.addr, timeout=10) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    reply = b""
                    while len(reply) < 64 << 20:
                        chunk = s.recv(1 << 16)
                        if not chunk:
                            break
                        reply += chunk
                self.count(reply)
            except OSError:
                self.count(b"")

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=20)
        return dict(sorted(self.statuses.items()))


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
    flood = None
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
        if mode == "flood":
            flood = Flood(wait_line(log, r"Dashboard at http://(\S+?)/ ").group(1))
            time.sleep(1.0)
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
        if flood:
            print(f"  flood answers by status: {flood.finish()}", flush=True)
            flood = None
        return readings / elapsed, sent - readings, elapsed
    finally:
        if flood:
            flood.finish()
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
    ap.add_argument("--modes", default="off,events,browser,flood",
                    help="comma-separated, from off, events, browser, flood")
    a = ap.parse_args()
    modes = a.modes.split(",")
    if "off" not in modes or not set(modes) <= {"off", "events", "browser", "flood"}:
        raise SystemExit("bench: --modes takes off (always) and any of events, browser, flood")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sensorlog-dash-bench-")
    results = {m: [] for m in modes}
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
    names = {"events": "/events client", "browser": "browser on the dashboard", "flood": "HTTP flood"}
    others = "; ".join(f"{names[m]}: {statistics.median(results[m]):,.0f} (ratio "
                       f"{statistics.median(results[m]) / off:.3f})" for m in modes if m != "off")
    print(f"median readings/s: http.listen = \"\": {off:,.0f}; {others}")
    return 1 if any_lost else 0


if __name__ == "__main__":
    sys.exit(main())
