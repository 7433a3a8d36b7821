#!/usr/bin/env python3
"""Disk-tier measurements of the real outpost binary (issue "Disk tier").

    tools/bench-disk.py [--bin target/release/outpost] [--parts throughput,rss,restart]
    cargo bench --bench tiers          # the same, with the binary cargo just built

Prints markdown (paste it under "## Disk tier" in benches/RESULTS.md). Parts:

1. throughput: memory-hit vs disk-hit req/s and MiB/s for 1 KiB, 100 KiB and 10 MiB objects.
   Memory hits: outpost with a memory-only cache big enough for every object. Disk hits:
   outpost with `[cache.disk] size = "2GiB"` and `cache.memory = "8MiB"` (the memory tier
   keeps objects <= memory/8 = 1 MiB when a disk tier exists, so 10 MiB objects are disk-only;
   1 KiB / 100 KiB objects are many times the memory size and read in random order, so most
   lookups miss memory). Objects are filled, outpost is restarted (empty memory), then `wrk`
   reads random objects for BENCH_SECONDS. The tier that served is taken from
   `outpost_cache_lookups_total{result,tier}` deltas on /metrics.
2. rss: a 1 GiB object (origin sends Content-Length) with max_object 2GiB, memory 64MiB,
   disk 3GiB (and 9GiB: the disk tier only keeps objects <= disk size/8): VmRSS sampled every
   100 ms during the fill and a full cached read; sha256 of the client's body vs the origin's;
   a Range read in the middle (206, exact bytes).
3. restart: fill 30000 x 1 KiB + 20 x 100 KiB + 4 x 10 MiB objects (8 clients), stop outpost
   (SIGTERM 1 s after the fill; SIGKILL 1 s after; SIGKILL at once), stop the origin, start
   outpost on the same disk path: every object must be a hit with the right body and
   ttl ~= 3600 - elapsed. Then the origin comes back, 500 new objects are filled and the
   recovered objects are read again.

Outpost's WARN/ERROR lines are summarised under each part (BENCH_RUST_LOG=... sets RUST_LOG
for outpost). Options: --parts, --seconds (BENCH_SECONDS), --conns, --threads, --scale (object
counts of part 1), --big (bytes), --big-disk (disk sizes for part 2), --workdir (kept).

The origin is a python3 http.server (a child process of this script, 127.0.0.1:0) serving
`/o/<size>/<name>` with a deterministic body of <size> bytes, `Cache-Control: max-age=3600`
and Content-Length; it counts requests (`/_count`). Everything listens on 127.0.0.1 port 0;
processes are stopped by PID; every wait is bounded.
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
BLOCK = MIB
_BASE = random.Random(20261127).randbytes(2 * BLOCK)


# --- deterministic bodies -------------------------------------------------------------------


def _seed(name):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") % BLOCK


def _block(name, seed, b, size):
    """Block b (BLOCK bytes, last one shorter) of the body of `name`: a window of the random
    base shifted per object and per block, starting with a stamp naming object and block."""
    off = (seed + b * 7919) % BLOCK
    n = min(BLOCK, size - b * BLOCK)
    data = bytearray(_BASE[off : off + n])
    stamp = f"<{name}#{b}>".encode()[:n]
    data[: len(stamp)] = stamp
    return bytes(data)


def body_range(name, size, start, end):
    """Bytes [start, end) of the body of `name` (size bytes)."""
    seed = _seed(name)
    out = []
    b = start // BLOCK
    while b * BLOCK < end:
        blk = _block(name, seed, b, size)
        lo = max(start - b * BLOCK, 0)
        hi = min(end - b * BLOCK, len(blk))
        out.append(blk[lo:hi])
        b += 1
    return b"".join(out)


def body_chunks(name, size):
    seed = _seed(name)
    for b in range((size + BLOCK - 1) // BLOCK):
        yield _block(name, seed, b, size)


def body_sha256(name, size):
    h = hashlib.sha256()
    for c in body_chunks(name, size):
        h.update(c)
    return h.hexdigest()


# --- origin (child process) -----------------------------------------------------------------


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    counts = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def log_error(self, fmt, *args):
        sys.stderr.write(f"origin: {fmt % args}\n")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/_count":
            with self.lock:
                body = json.dumps(self.counts).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        m = re.fullmatch(r"/o/(\d+)/([\w.-]+)", path)
        if not m:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
        size = int(m.group(1))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for c in body_chunks(path, size):
                self.wfile.write(c)
        except (BrokenPipeError, ConnectionResetError) as e:
            sys.stderr.write(f"origin: {path}: client went away mid-body: {e!r}\n")
            self.close_connection = True


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256


def origin_main():
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    srv = ThreadingServer(("127.0.0.1", port), OriginHandler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


class Origin:
    def __init__(self, port=0):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "origin", str(port)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        CHILDREN.append(self.proc)
        line = self.proc.stdout.readline()  # bounded: the child prints its port at once or dies
        if not line:
            raise SystemExit("origin did not start")
        self.port = int(line)
        self.addr = f"127.0.0.1:{self.port}"

    def count(self, path=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/_count")
        counts = json.loads(c.getresponse().read())
        c.close()
        return counts.get(path, 0) if path else sum(counts.values())

    def stop(self):
        stop_pid(self.proc, signal.SIGTERM, 5)


CHILDREN = []  # every process started here, stopped by PID on exit


def stop_pid(proc, sig, wait_s):
    """Signal one child by PID; SIGKILL it if it has not exited after wait_s. Returns rc."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


# --- outpost --------------------------------------------------------------------------------


class Outpost:
    def __init__(self, binary, workdir, origin, memory, max_object, disk=None, tag="outpost"):
        self.workdir = workdir
        conf = os.path.join(workdir, f"{tag}.toml")
        text = (
            '[server]\nlisten = ["127.0.0.1:0"]\ngrace_period = "2s"\n\n'
            '[admin]\nlisten = "127.0.0.1:0"\n\n[log]\nlevel = "warn"\naccess = "off"\n\n'
            f'[cache]\nmemory = "{memory}"\nmax_object = "{max_object}"\n\n'
        )
        if disk:
            text += f'[cache.disk]\npath = "{disk[0]}"\nsize = "{disk[1]}"\n\n'
        text += (
            f'[[origin]]\nname = "app"\nservers = ["{origin.addr}"]\nread_timeout = "120s"\n\n'
            '[[route]]\nhost = "*"\nprefix = "/"\norigin = "app"\n'
        )
        with open(conf, "w") as f:
            f.write(text)
        self.log = os.path.join(workdir, f"{tag}.stderr")
        self.errf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [binary, "run", "-c", conf],
            stdout=subprocess.DEVNULL,
            stderr=self.errf,
            stdin=subprocess.DEVNULL,
            env={**{k: v for k, v in os.environ.items() if k != "RUST_LOG"}, "NO_COLOR": "1",
                 **({"RUST_LOG": os.environ["BENCH_RUST_LOG"]} if "BENCH_RUST_LOG" in os.environ else {})},
        )
        CHILDREN.append(self.proc)
        self.pid = self.proc.pid
        start = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self.proxy = self.admin = None
        deadline = time.time() + 60
        while time.time() < deadline and (self.proxy is None or self.admin is None):
            if self.proc.poll() is not None:
                raise SystemExit(f"outpost exited {self.proc.returncode}: {tail(self.log)}")
            with open(self.log, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            m = re.search(r"listening proxy=\"?([\d.]+:\d+)", text)
            self.proxy = m and m.group(1)
            m = re.search(r"listening admin=\"?([\d.]+:\d+)", text)
            self.admin = m and m.group(1)
            time.sleep(0.05)
        if self.proxy is None or self.admin is None:
            stop_pid(self.proc, signal.SIGKILL, 1)
            raise SystemExit("outpost did not print its listening addresses within 60 s")
        self.started = time.time()

    def rss_kib(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                s = f.read()
        except OSError:
            return None, None
        get = lambda k: int(re.search(rf"^{k}:\s+(\d+)", s, re.M).group(1))  # noqa: E731
        return get("VmRSS"), get("VmHWM")

    def metrics(self):
        host, port = self.admin.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        out = {}
        for line in text.splitlines():
            if line.startswith("outpost_cache_disk_errors_total "):
                out[("disk_errors", "total")] = float(line.rsplit(" ", 1)[1])
            if not line.startswith("outpost_cache_lookups_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels.get("result"), labels.get("tier"))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
        return out

    def stop(self, sig=signal.SIGTERM):
        rc = stop_pid(self.proc, sig, 20)
        self.errf.close()
        return rc


def log_errors(o):
    """Distinct ERROR/WARN messages in outpost's stderr (timestamps, ports and hosts stripped)."""
    counts = {}
    try:
        with open(o.log, errors="replace") as f:
            for line in f:
                if " ERROR " not in line and " WARN " not in line:
                    continue
                if "compression dictionary" in line:
                    continue
                msg = re.sub(r"^\S+\s+", "", line.strip())
                msg = re.sub(r"Host: \S+|127\.0\.0\.1:\d+|/o/\d+/[\w.-]+", "…", msg)
                counts[msg] = counts.get(msg, 0) + 1
    except OSError:
        pass
    return counts


def fmt_errors(counts):
    return "; ".join(f"{n}x `{m[:160]}`" for m, n in sorted(counts.items(), key=lambda x: -x[1]))


def drop_page_cache(path):
    """posix_fadvise(DONTNEED) on every file under path (only those files; no global drop)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total // MIB


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""


def metric_delta(a, b):
    keys = set(a) | set(b)
    return {k: b.get(k, 0) - a.get(k, 0) for k in keys if b.get(k, 0) - a.get(k, 0)}


def fmt_lookups(d):
    return ", ".join(f"{r}/{t} {int(v)}" for (r, t), v in sorted(d.items()) if v) or "none"


# --- client ---------------------------------------------------------------------------------

_local = threading.local()


def get(addr, path, headers=None, sink=None, timeout=120, fresh=False):
    """GET through one per-thread keep-alive connection. Returns (status, headers, body); with
    `sink`, the body is passed to sink(chunk) in pieces and `body` is its length."""
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    if fresh and addr in conns:
        conns.pop(addr).close()
    for attempt in range(2):
        c = conns.get(addr)
        if c is None:
            host, port = addr.split(":")
            c = conns[addr] = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if sink is None:
                body = r.read()
            else:
                body = 0
                while True:
                    chunk = r.read(MIB)
                    if not chunk:
                        break
                    body += len(chunk)
                    sink(chunk)
            if r.will_close:
                c.close()
                conns.pop(addr, None)
            return r.status, hdrs, body
        except (http.client.HTTPException, ConnectionError, OSError):
            c.close()
            conns.pop(addr, None)
            if attempt == 1 or sink is not None:
                raise
    raise AssertionError("unreachable")


def ttl_of(cs):
    m = re.search(r"ttl=(-?\d+)", cs or "")
    return int(m.group(1)) if m else None


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- part 1: throughput ---------------------------------------------------------------------

SIZES = [("1 KiB", KIB, 30000), ("100 KiB", 100 * KIB, 2000), ("10 MiB", 10 * MIB, 24)]


def fill(addr, size, n, workers=8):
    bad = []

    def one(i):
        path = f"/o/{size}/{i}"
        st, h, body = get(addr, path)
        if st != 200 or len(body) != size or body != body_range(path, size, 0, size):
            bad.append((path, st, h.get("cache-status")))

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, range(n)))
    return bad


def wrk(addr, size, n, seconds, conns, threads, workdir):
    script = os.path.join(workdir, f"wrk-{size}.lua")
    with open(script, "w") as f:
        f.write(
            "local counter = 0\n"
            "function setup(thread) counter = counter + 1; thread:set('seed', counter * 7919) end\n"
            "function init(args) math.randomseed(seed) end\n"
            f"function request() return wrk.format('GET', '/o/{size}/' .. math.random(0, {n - 1})) end\n"
        )
    cmd = [
        "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s",
        "-s", script, f"http://{addr}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {
        "rps": rps,
        "total": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
        "lat_avg": lat.group(1) if lat else "?",
        "lat_max": lat.group(3) if lat else "?",
        "cmd": " ".join(cmd),
    }


def throughput(args, workdir):
    origin = Origin()
    seconds, conns, threads = args.seconds, args.conns, args.threads
    results = {}
    notes = []
    print("#### 1. Memory-hit vs disk-hit throughput (wrk, random objects)\n")
    global SIZES
    SIZES = [(label, size, max(2, int(n * args.scale))) for label, size, n in SIZES]
    for tier in ("memory", "disk"):
        if tier == "memory":
            cfg = dict(memory="1GiB", max_object="16MiB", disk=None)
        else:
            path = os.path.join(workdir, "disk-throughput")
            cfg = dict(memory="8MiB", max_object="16MiB", disk=(path, "2GiB"))
        o = Outpost(args.bin, workdir, origin, tag=f"tp-{tier}", **cfg)
        t0 = time.time()
        for label, size, n in SIZES:
            bad = fill(o.proxy, size, n)
            if bad:
                notes.append(f"{tier} fill {label}: {len(bad)} bad responses, first {bad[:3]}")
        fill_s = time.time() - t0
        fetched = origin.count()
        if tier == "disk":
            # Restart: the memory tier starts empty, every object is on disk only. The tier
            # uses buffered I/O: drop its files from the page cache so the first reads are
            # real disk reads (later ones in the run hit the page cache again).
            o.stop()
            dropped = drop_page_cache(cfg["disk"][0])
            notes.append(f"disk tier files evicted from the page cache before the disk runs: {dropped} MiB")
            time.sleep(0.5)
            o = Outpost(args.bin, workdir, origin, tag=f"tp-{tier}-2", **cfg)
        for label, size, n in SIZES:
            path = f"/o/{size}/0"
            st, h, body = get(o.proxy, path)
            sample_cs = h.get("cache-status", "")
            ok = st == 200 and body == body_range(path, size, 0, size)
            if not ok:
                notes.append(f"{tier} {label}: sample GET {path} -> {st}, body ok={ok}")
            m0 = o.metrics()
            o0 = origin.count()
            load0 = loadavg()
            w = wrk(o.proxy, size, n, seconds, conns, threads, workdir)
            m1 = o.metrics()
            d = metric_delta(m0, m1)
            results[(tier, label)] = dict(
                w, size=size, n=n, lookups=d, origin=origin.count() - o0, load=load0,
                sample=sample_cs,
            )
        rss, hwm = o.rss_kib()
        errs = log_errors(o)
        if errs:
            notes.append(f"outpost stderr ({tier} config, measuring instance): {fmt_errors(errs)}")
        print(
            f"- {tier} config: `{cfg}`; fill of all objects {fill_s:.1f} s "
            f"({fetched} origin fetches in total so far); VmRSS after the runs {rss // 1024} MiB, "
            f"VmHWM {hwm // 1024} MiB"
        )
        o.stop()
    origin.stop()
    print(
        f"- wrk: {threads} threads, {conns} connections, {seconds} s per cell, a random object "
        f"of the N per request (`{results[('memory', '1 KiB')]['cmd']}`)\n"
    )
    print(
        "| size | N objects | tier | req/s | MiB/s (bodies) | avg / max latency | "
        "lookups during the run (result/tier count) | origin fetches | errors | loadavg before |"
    )
    print("|---|---:|---|---:|---:|---|---|---:|---|---|")
    for label, size, n in SIZES:
        for tier in ("memory", "disk"):
            r = results[(tier, label)]
            err = ""
            if r["non2xx"] or r["errors"]:
                err = f"non-2xx {r['non2xx']} {r['errors']}"
            print(
                f"| {label} | {n} | {tier} | {r['rps']:.0f} | {r['rps'] * size / MIB:.1f} | "
                f"{r['lat_avg']} / {r['lat_max']} | {fmt_lookups(r['lookups'])} | {r['origin']} | "
                f"{err} | {r['load']} |"
            )
    print("\n| size | disk / memory req/s | share of lookups served by disk in the disk run |")
    print("|---|---:|---:|")
    for label, size, n in SIZES:
        m, d = results[("memory", label)], results[("disk", label)]
        disk_hits = d["lookups"].get(("hit", "disk"), 0)
        total = sum(d["lookups"].values()) or 1
        print(f"| {label} | {d['rps'] / m['rps']:.2f} | {disk_hits / total:.0%} |")
    print("\nCache-Status of one sample GET before each run:")
    for (tier, label), r in results.items():
        print(f"- {tier} {label}: `{r['sample']}`")
    for n in notes:
        print(f"- {n}")
    print()


# --- part 2: RSS with a 1 GiB object --------------------------------------------------------


class Sampler:
    def __init__(self, outpost, every=0.1):
        self.o, self.every = outpost, every
        self.samples = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.is_set():
            rss, _ = self.o.rss_kib()
            if rss is not None:
                self.samples.append(rss)
            self.stop_ev.wait(self.every)

    def finish(self):
        self.stop_ev.set()
        self.t.join(5)
        return max(self.samples) if self.samples else None


def big_read(o, path, size, headers=None):
    h = hashlib.sha256()
    s = Sampler(o)
    t0 = time.time()
    try:
        st, hdrs, n = get(o.proxy, path, headers=headers, sink=h.update, timeout=300, fresh=True)
        err = None
    except Exception as e:  # noqa: BLE001 - reported in the table
        st, hdrs, n, err = None, {}, 0, repr(e)
    dt = time.time() - t0
    peak = s.finish()
    return dict(status=st, cs=hdrs.get("cache-status", ""), len=n, sha=h.hexdigest(),
                secs=dt, peak=peak, err=err, samples=len(s.samples))


def rss_part(args, workdir):
    size = args.big
    path = f"/o/{size}/big"
    print(f"#### 2. RSS while filling and serving one {size // MIB} MiB object\n")
    t0 = time.time()
    want = body_sha256(path, size)
    print(f"origin body sha256 `{want}` (computed in {time.time() - t0:.1f} s)\n")
    print(
        "| disk size | step | status | Cache-Status | bytes | sha256 ok | MiB/s | "
        "VmRSS before MiB | peak VmRSS MiB | growth MiB | origin fetches |"
    )
    print("|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
    problems = []
    for disk_size in args.big_disk:
        origin = Origin()
        d = os.path.join(workdir, f"disk-big-{disk_size}")
        o = Outpost(args.bin, workdir, origin, "64MiB", "2GiB", (d, disk_size), tag=f"big-{disk_size}")
        time.sleep(1)
        stored = True
        for step in ("fill", "cached read", "cached read 2"):
            before, _ = o.rss_kib()
            c0 = origin.count()
            r = big_read(o, path, size)
            time.sleep(0.3)
            ok = r["sha"] == want and r["len"] == size
            growth = (r["peak"] - before) / 1024 if r["peak"] else float("nan")
            print(
                f"| {disk_size} | {step} | {r['status']} | `{r['cs']}` | {r['len']} | "
                f"{'yes' if ok else 'NO'} | {r['len'] / MIB / r['secs']:.0f} | {before / 1024:.0f} | "
                f"{r['peak'] / 1024:.0f} | {growth:.0f} | {origin.count() - c0} |"
            )
            if step == "fill":
                stored = "stored" in r["cs"]
            if not ok:
                problems.append(f"{disk_size} {step}: body wrong/short ({r['len']} bytes, {r['err']})")
            if growth > 64:
                problems.append(f"{disk_size} {step}: RSS grew {growth:.0f} MiB (> 64)")
        # Range in the middle, across a chunk boundary.
        start = size // 2 - 300_000
        end = start + 3 * MIB + 12_345  # inclusive end below
        before, _ = o.rss_kib()
        c0 = origin.count()
        try:
            st, h, body = get(o.proxy, path, headers={"Range": f"bytes={start}-{end - 1}"},
                              timeout=120, fresh=True)
        except Exception as e:  # noqa: BLE001 - reported
            st, h, body = repr(e)[:80], {}, b""
        exact = body == body_range(path, size, start, end)
        verdict = ("yes" if exact else "NO") if stored else "n/a, not stored"
        print(
            f"| {disk_size} | Range {start}-{end - 1} | {st} | `{h.get('cache-status', '')}` | "
            f"{len(body)} | {verdict} (Content-Range `{h.get('content-range')}`) | | "
            f"{before / 1024:.0f} | | | {origin.count() - c0} |"
        )
        # Not stored (larger than disk size / 8): the Range goes to this bench's origin, which
        # ignores Range and answers 200 in full. Nothing of outpost's to check then.
        if stored and (st != 206 or not exact):
            problems.append(f"{disk_size} Range: status {st}, exact {exact}")
        m = o.metrics()
        print(f"| {disk_size} | lookups so far | | {fmt_lookups(m)} | | | | | | | |")
        errs = log_errors(o)
        if errs:
            problems.append(f"{disk_size}: outpost stderr: {fmt_errors(errs)}")
        o.stop()
        origin.stop()
        shutil.rmtree(d, ignore_errors=True)
    print()
    for p in problems:
        print(f"- PROBLEM: {p}")
    print()


# --- part 3: restart persistence ------------------------------------------------------------

RESTART_OBJECTS = [(KIB, 30000), (100 * KIB, 20), (10 * MIB, 4)]
NEW_AFTER_RESTART = 500


def read_all(o, paths, workers=8):
    """GET every path; returns (hits, correct bodies, ttls of hits, other Cache-Status counts)."""
    lock = threading.Lock()
    acc = {"hits": 0, "correct": 0, "ttls": [], "others": {}}

    def one(item):
        p, size = item
        try:
            st, h, body = get(o.proxy, p)
        except Exception as e:  # noqa: BLE001 - counted below
            st, h, body = None, {}, repr(e).encode()
        cs = h.get("cache-status", "")
        ok = st == 200 and body == body_range(p, size, 0, size)
        with lock:
            if st == 200 and cs.startswith("outpost; hit"):
                acc["hits"] += 1
                t = ttl_of(cs)
                if t is not None:
                    acc["ttls"].append(t)
            else:
                key = f"{st} {cs}"
                acc["others"][key] = acc["others"].get(key, 0) + 1
            acc["correct"] += int(ok)

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, paths))
    return acc["hits"], acc["correct"], acc["ttls"], acc["others"]


def restart_part(args, workdir):
    total = sum(n for _, n in RESTART_OBJECTS)
    print(
        f"#### 3. Restart persistence (disk 2GiB, memory 64MiB; {total} objects: "
        + ", ".join(f"{n} x {s // KIB} KiB" for s, n in RESTART_OBJECTS)
        + ")\n"
    )
    print(
        "Fill, wait, stop outpost with the signal, stop the origin, start outpost on the same "
        "disk path and GET every object (origin down: anything but a hit is an error). Then the "
        f"origin is started again, {NEW_AFTER_RESTART} new 1 KiB objects are fetched (stored), "
        "and every recovered object is read again.\n"
    )
    print(
        "| stop | wait after fill | hits after restart | correct bodies | ttl expected | "
        "ttl seen (min..max) | other Cache-Status | after "
        f"{NEW_AFTER_RESTART} new fills: hits | correct | other Cache-Status |"
    )
    print("|---|---:|---:|---:|---|---|---|---:|---:|---|")
    problems = []
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0), (signal.SIGKILL, 0.0)):
        name = signal.Signals(sig).name
        d = os.path.join(workdir, f"disk-restart-{name}-{wait}")
        origin = Origin()
        port = origin.port
        o = Outpost(args.bin, workdir, origin, "64MiB", "16MiB", (d, "2GiB"), tag=f"rs-{name}")
        paths = [(f"/o/{size}/r{i}", size) for size, n in RESTART_OBJECTS for i in range(n)]
        filled = time.time()
        fill_hits, _, _, fill_status = read_all(o, paths)
        bad_fill = len(paths) - fill_status.get("200 outpost; fwd=uri-miss; stored", 0)
        time.sleep(wait)
        rc = o.stop(sig)
        origin.stop()
        time.sleep(2)  # let some ttl elapse so the check is meaningful
        o = Outpost(args.bin, workdir, origin, "64MiB", "16MiB", (d, "2GiB"), tag=f"rs-{name}-2")
        hits, correct, ttls, others = read_all(o, paths)
        elapsed = time.time() - filled
        expect = f"{3600 - elapsed:.0f} (3600 - {elapsed:.0f} s since the fill started)"
        lo, hi = (min(ttls), max(ttls)) if ttls else (None, None)
        other = ", ".join(f"{v}x `{k}`" for k, v in others.items())
        # New fills after the restart, then the recovered objects again.
        origin = Origin(port)
        for i in range(NEW_AFTER_RESTART):
            get(o.proxy, f"/o/{KIB}/new{i}")
        time.sleep(2)
        hits2, correct2, _, others2 = read_all(o, paths)
        other2 = ", ".join(f"{v}x `{k}`" for k, v in others2.items())
        print(
            f"| {name} (exit {rc}) | {wait:.0f} s | {hits}/{len(paths)} | {correct} | {expect} | "
            f"{lo}..{hi} | {other} | {hits2}/{len(paths)} | {correct2} | {other2} |"
        )
        if bad_fill:
            problems.append(f"{name}: {bad_fill} fills not `stored` or wrong")
        if hits != len(paths) or correct != len(paths):
            problems.append(f"{name} wait {wait:.0f}s: {hits}/{len(paths)} hits, {correct} correct; {other}")
        if ttls and (hi > 3600 - elapsed + 60 + 2 or lo < 3600 - elapsed - 2):
            problems.append(f"{name}: ttl {lo}..{hi}, expected about {3600 - elapsed:.0f}")
        if hits2 != len(paths):
            problems.append(
                f"{name} wait {wait:.0f}s: after {NEW_AFTER_RESTART} new fills only {hits2}/{len(paths)} "
                f"recovered objects are still hits ({other2})"
            )
        o.stop()
        origin.stop()
        errs = log_errors(o)
        if errs:
            problems.append(f"{name}: outpost stderr after the restart: {fmt_errors(errs)}")
        shutil.rmtree(d, ignore_errors=True)
    print()
    for p in problems:
        print(f"- PROBLEM: {p}")
    print()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "origin":
        return origin_main()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("OUTPOST_BIN", "target/release/outpost"))
    ap.add_argument("--parts", default="throughput,rss,restart")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "10")))
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the object counts of part 1")
    ap.add_argument("--big", type=int, default=GIB, help="size of the RSS-test object (bytes)")
    ap.add_argument("--big-disk", default="3GiB,9GiB", help="disk sizes for the RSS test")
    ap.add_argument("--workdir", default=None, help="default: a fresh temp dir, removed after")
    args = ap.parse_args()
    args.big_disk = [s for s in args.big_disk.split(",") if s]
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin}: not found (cargo build --release)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="outpost-bench-disk-")
    os.makedirs(workdir, exist_ok=True)
    print(f"### outpost disk-tier bench ({time.strftime('%Y-%m-%d %H:%M %Z')})\n")
    print(f"binary `{args.bin}` (mtime {time.ctime(os.path.getmtime(args.bin))}, "
          f"{os.environ.get('BENCH_BUILD', 'build not recorded')}), "
          f"{os.cpu_count()} cores, loadavg at start {loadavg()}\n")
    try:
        parts = args.parts.split(",")
        if "throughput" in parts:
            throughput(args, workdir)
        if "rss" in parts:
            rss_part(args, workdir)
        if "restart" in parts:
            restart_part(args, workdir)
    finally:
        for p in CHILDREN:
            if p.poll() is None:
                stop_pid(p, signal.SIGKILL, 5)
        print(f"loadavg at end {loadavg()}")
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
