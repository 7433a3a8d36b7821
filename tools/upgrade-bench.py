#!/usr/bin/env python3
"""Binary upgrade under load (issue "Production hardening"): hit ratio and memory-tier share in
the 10 s before `run --upgrade` + SIGQUIT against the 10 s after, and failed requests.

    tools/upgrade-bench.py [--bin target/release/outpost] [--objects 2000] [--seconds 10]

outpost runs with a 64 MiB memory tier and a 256 MiB disk tier in a temp dir; a python origin
(127.0.0.1, port 0) serves `/o/<n>` (1 KiB, max-age=3600) and counts requests. The objects are
filled, then 4 client threads (keep-alive, random objects) run for `--seconds`, the new
process is started with `--upgrade`, the old one gets SIGQUIT, and the clients run another
`--seconds`. Each response's `Cache-Status` says hit or not; each process's
`outpost_cache_lookups_total{result="hit",tier}` says which tier answered. A request that fails
on a reused keep-alive connection the old process closed is retried once on a new connection,
as HTTP clients do for idempotent requests (counted as "retried"); anything else that is not a
200 with the right body is a failure. Processes are stopped by PID; every wait is bounded.
"""

import argparse
import http.client
import http.server
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BODY = b"x" * 1024


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_GET(self):
        with Origin.lock:
            Origin.count += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def lookups(admin_port):
    """{tier: hits} from /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    hits = {}
    for m in re.finditer(r'outpost_cache_lookups_total\{result="hit",tier="(\w+)"\} (\d+)', text):
        hits[m.group(1)] = int(m.group(2))
    return hits


class Load:
    def __init__(self, port, objects):
        self.port, self.objects = port, objects
        self.lock = threading.Lock()
        self.phase = "before"
        self.stats = {p: {"ok": 0, "hit": 0, "failed": 0, "retried": 0} for p in ("before", "after")}
        self.stop = threading.Event()

    def one(self, conn, path):
        conn.request("GET", path, headers={"Host": "site.test"})
        r = conn.getresponse()
        body = r.read()
        return r.status, r.getheader("cache-status") or "", body

    def run(self, deadline):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        fresh = True
        while not self.stop.is_set() and time.monotonic() < deadline:
            path = f"/o/{random.randrange(self.objects)}"
            phase = self.phase
            retried = False
            try:
                status, cs, body = self.one(conn, path)
                fresh = False
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if fresh:
                    status, cs, body = 0, "", b""
                else:
                    retried = True
                    try:
                        status, cs, body = self.one(conn, path)
                    except (OSError, http.client.HTTPException):
                        status, cs, body = 0, "", b""
                fresh = status == 0
            with self.lock:
                s = self.stats[phase]
                s["retried"] += retried
                if status == 200 and body == BODY:
                    s["ok"] += 1
                    s["hit"] += "; hit" in cs
                else:
                    s["failed"] += 1
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/outpost")
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="outpost-upgrade-")
    port, admin = free_port(), free_port()
    cfg = os.path.join(work, "outpost.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{port}"]
upgrade_sock = "{work}/upgrade.sock"
[admin]
listen = "127.0.0.1:{admin}"
[cache]
memory = "64MiB"
[cache.disk]
path = "{work}/disk"
size = "256MiB"
[log]
access = "off"
level = "info"
[[origin]]
name = "o"
servers = ["127.0.0.1:{origin.server_address[1]}"]
[[route]]
host = "*"
prefix = "/"
origin = "o"
""")
    logs = [open(os.path.join(work, f"outpost-{i}.log"), "w") for i in (1, 2)]
    old = subprocess.Popen([a.bin, "run", "-c", cfg], stdout=logs[0], stderr=subprocess.STDOUT)
    new = None
    try:
        if not wait_port(port, time.monotonic() + 20):
            sys.exit(f"outpost did not start, see {work}")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(a.objects):
            c.request("GET", f"/o/{i}", headers={"Host": "site.test"})
            c.getresponse().read()
        c.close()
        time.sleep(1.5)  # disk writes are asynchronous
        filled = Origin.count

        load = Load(port, a.objects)
        end = time.monotonic() + 2 * a.seconds + 30
        threads = [threading.Thread(target=load.run, args=(end,)) for _ in range(4)]
        h0 = lookups(admin)
        for t in threads:
            t.start()
        time.sleep(a.seconds)
        h1 = lookups(admin)
        load.phase = "after"
        new = subprocess.Popen([a.bin, "run", "--upgrade", "-c", cfg], stdout=logs[1],
                               stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(os.path.join(work, "outpost-2.log")) as f:
                if "waiting for the running outpost" in f.read():
                    break
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(old.pid, signal.SIGQUIT)
        t_quit = time.monotonic()
        time.sleep(a.seconds)
        load.stop.set()
        for t in threads:
            t.join(30)
        old_code = old.wait(30)
        h2 = lookups(admin)  # the new process's counters: all of its traffic
        with open(os.path.join(work, "outpost-2.log")) as f:
            warmed = re.findall(r"memory tier warmed from disk.*", f.read())

        def share(s):
            n = s["ok"] + s["failed"]
            return f"{s['hit'] / max(1, s['ok']):.4f}", n
        b, af = load.stats["before"], load.stats["after"]
        mem_before = (h1.get("memory", 0) - h0.get("memory", 0))
        all_before = sum(h1.values()) - sum(h0.values())
        print(f"| window | requests | hit ratio (Cache-Status) | memory-tier share of hits | failed | retried |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| {a.seconds} s before | {share(b)[1]} | {share(b)[0]} | "
              f"{mem_before / max(1, all_before):.4f} | {b['failed']} | {b['retried']} |")
        mem_after = h2.get("memory", 0)
        print(f"| {a.seconds} s after SIGQUIT | {share(af)[1]} | {share(af)[0]} | "
              f"{mem_after / max(1, sum(h2.values())):.4f} (new process; the old one served the "
              f"first part of the window) | {af['failed']} | {af['retried']} |")
        print(f"\nobjects {a.objects}, origin fetches: fill {filled}, during the load "
              f"{Origin.count - filled}; old process exit code {old_code} after "
              f"{time.monotonic() - t_quit:.1f} s; {warmed[0] if warmed else 'no warm-up line'}")
    finally:
        for p in (old, new):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        origin.shutdown()


if __name__ == "__main__":
    main()
