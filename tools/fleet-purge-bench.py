#!/usr/bin/env python3
"""Fleet purge latency (issue 13 target: accept on one node -> acked by all of 3 nodes,
p99 < 50 ms over 1,000 purges on loopback). Starts nats-server (JetStream, temp store) and
three outpost nodes (target/release/outpost if built, else debug) on free loopback ports,
sends N purges to node A one after another and reports the fleet answer's took_ms
(accept -> last receipt). Usage: tools/fleet-purge-bench.py [N]
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = next(p for p in (f"{ROOT}/target/release/outpost", f"{ROOT}/target/debug/outpost") if os.path.exists(p))
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"

def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(port, secs=20):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")

tmp = tempfile.mkdtemp()
nport = free()
procs = [subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", str(nport), "-sd", f"{tmp}/nats"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
try:
    wait_port(nport)
    admins = []
    for name in "abc":
        proxy, admin = free(), free()
        cfg = f"""[server]\nlisten = ["127.0.0.1:{proxy}"]\n[admin]\nlisten = "127.0.0.1:{admin}"\n[log]\naccess = "off"\nlevel = "warn"\n[[origin]]\nname = "o"\nservers = ["127.0.0.1:1"]\n[[route]]\norigin = "o"\n[cluster]\nnode = "edge-{name}"\nnats = ["nats://127.0.0.1:{nport}"]\nstream = "BENCH"\n"""
        path = f"{tmp}/{name}.toml"
        open(path, "w").write(cfg)
        env = dict(os.environ, OUTPOST_ADMIN_TOKEN="t")
        procs.append(subprocess.Popen([BIN, "run", "-c", path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        admins.append(admin)
    for a in admins:
        wait_port(a)
    def status(a):
        return json.load(urllib.request.urlopen(f"http://127.0.0.1:{a}/status", timeout=5))["cluster"]
    end = time.time() + 30
    while time.time() < end and not all(sum(n["live"] for n in status(a)["nodes"]) >= 2 for a in admins):
        time.sleep(0.2)
    took, incomplete = [], 0
    started = time.time()
    for i in range(N):
        body = json.dumps({"urls": [f"http://site.test/o{i}"]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{admins[0]}/purge", data=body,
                                     headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            f = json.load(r)["fleet"]
        if f["complete"] and len(f["nodes"]) == 2:
            took.append(f["took_ms"])
        else:
            incomplete += 1
        if time.time() - started > 300:
            break
    took.sort()
    pct = lambda q: took[min(len(took) - 1, int(q * len(took)))] if took else float("nan")
    print(f"{len(took)} purges acked by both other nodes ({incomplete} incomplete) in {time.time() - started:.1f} s")
    print(f"accept -> all acked: p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f} ms, p99 {pct(0.99):.2f} ms, max {took[-1] if took else 0:.2f} ms")
finally:
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
