#!/usr/bin/env python3
"""Memory per idle client connection (issue 10 target: <= 16 KiB each).

Starts outpost (target/release/outpost if built, else target/debug/outpost) on loopback with
a tiny origin, opens N idle connections (bounded: N, and 60 s overall), in two kinds:
  fresh  - connected, nothing sent (waiting for a first request)
  reused - one request answered, then idle on keep-alive
and prints the RSS growth per connection for each. Usage: tools/idle-conns.py [N]
"""
import http.server, os, resource, socket, subprocess, sys, tempfile, threading, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = next((p for p in (f"{ROOT}/target/release/outpost", f"{ROOT}/target/debug/outpost") if os.path.exists(p)), None)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * N + 256)), hard))

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.send_header("Cache-Control", "max-age=60"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass

origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=origin.serve_forever, daemon=True).start()
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
proxy, admin = free(), free()
d = tempfile.mkdtemp()
cfg = f"""[server]\nlisten = ["127.0.0.1:{proxy}"]\nthreads = 2\nmax_connections = {4 * N}\n[admin]\nlisten = "127.0.0.1:{admin}"\n[log]\naccess = "off"\nlevel = "warn"\n[[origin]]\nname = "o"\nservers = ["127.0.0.1:{origin.server_address[1]}"]\n[[route]]\norigin = "o"\n"""
open(f"{d}/c.toml", "w").write(cfg)
p = subprocess.Popen([BIN, "run", "-c", f"{d}/c.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])  # KiB
try:
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", proxy), 0.2).close(); break
        except OSError:
            if time.time() > deadline: raise SystemExit("outpost did not start")
            time.sleep(0.05)
    warm = socket.create_connection(("127.0.0.1", proxy))
    for _ in range(50):
        warm.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); warm.recv(4096)
    time.sleep(1)
    started = time.time()
    for kind in ("fresh", "reused"):
        before = rss(); socks = []
        for i in range(N):
            if time.time() - started > 60: break
            s = socket.create_connection(("127.0.0.1", proxy))
            if kind == "reused":
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        if kind == "reused":
            for s in socks:
                s.settimeout(5); s.recv(4096)
        time.sleep(2)
        after = rss()
        print(f"{kind:6}: {len(socks)} idle connections, RSS {before} -> {after} KiB: {(after - before) / max(1, len(socks)):.1f} KiB per connection")
        for s in socks: s.close()
        time.sleep(2)
finally:
    p.terminate(); p.wait(10); origin.shutdown()
