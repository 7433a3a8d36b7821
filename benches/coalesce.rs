//! Coalescing and memory-bound benchmark of the real binary (issues "Coalescing" and
//! "Memory bound"). `cargo bench --bench coalesce` (a plain `fn main`, no criterion); cargo
//! builds `outpost` in the release (bench) profile first. `OUTPOST_BIN=path` runs another
//! binary; `BENCH_ROUNDS` (default 3) cold URLs in part 1; `BENCH_CONCURRENCY` (default 200).
//!
//! 1. Coalescing: an in-process hyper origin on 127.0.0.1:0 answers `/cold/N` after 500 ms
//!    with a 64 KiB body (`Cache-Control: public, max-age=600`) and counts requests per path.
//!    For each round, 200 concurrent clients (one connection each) GET one cold URL through
//!    outpost. Reported: origin requests for that URL (target: exactly 1), how many of the
//!    200 got status 200 with the full, byte-exact body, their Cache-Status values, and
//!    p50/p99/max latency (request sent → last body byte).
//! 2. Memory bound: a second outpost with `cache.memory = "64MiB"`; 1024 distinct cacheable
//!    objects of 256 KiB (4 × the bound) are fetched through it (8 in flight). Then
//!    `/status` `cache.memory.bytes` / limit (target <= 1.05) and the process's VmRSS/VmHWM
//!    (/proc/PID/status), right after the fill and again 2 s later; then the last 64 objects
//!    are read again to see how many are still hits. Then the same with 131,072 objects of
//!    1 KiB (32 in flight; `BENCH_SMALL=0` skips it): per-object overhead that the byte bound
//!    does not charge shows up as RSS above the limit.
//!
//! Everything is loopback with port 0 (outpost's `listening proxy=`/`listening admin=` lines
//! are read from its stderr); outpost is stopped with SIGTERM by PID (SIGKILL after 10 s).
//!
//! Reference result (this machine: 2 vCPU, 2026-11-27 11:01 UTC; full output in benches/RESULTS.md):
//! coalescing: 3 rounds, each 1 origin request, 200/200 byte-exact bodies (199 `collapsed`,
//! 1 `stored`), p50 525/534/549 ms, p99 539/549/569 ms. Memory bound, 1024 × 256 KiB:
//! `/status` bytes 66,896,955 = 0.997 of 64 MiB, 255 objects, VmRSS 88 MiB (12 MiB empty).
//! 131,072 × 1 KiB: 1.000 of the bound, 55,084 objects, VmRSS 180 MiB (per-object overhead is
//! not charged, see RESULTS.md).

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COLD_DELAY: Duration = Duration::from_millis(500);
const COLD_BODY: usize = 64 * 1024;
const OBJ_BODY: usize = 256 * 1024;
const SMALL_BODY: usize = 1024;
const LIMIT: u64 = 64 * 1024 * 1024;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A body that depends on the path, so a body from the wrong object is detected.
fn body_for(path: &str, len: usize) -> Bytes {
    let seed = path
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut v = Vec::with_capacity(len);
    let mut x = seed | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(b'a' + (x % 26) as u8);
    }
    Bytes::from(v)
}

// --- origin ---

#[derive(Default)]
struct Counts {
    by_path: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

impl Counts {
    fn get(&self, path: &str) -> u64 {
        self.by_path
            .lock()
            .expect("counts")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn start_origin() -> (SocketAddr, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let c = c.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        *c.by_path
                            .lock()
                            .expect("counts")
                            .entry(path.clone())
                            .or_default() += 1;
                        c.total.fetch_add(1, Ordering::Relaxed);
                        let (len, delay) = if path.starts_with("/cold/") {
                            (COLD_BODY, COLD_DELAY)
                        } else if path.starts_with("/obj/") {
                            (OBJ_BODY, Duration::ZERO)
                        } else if path.starts_with("/small/") {
                            (SMALL_BODY, Duration::ZERO)
                        } else {
                            (2, Duration::ZERO)
                        };
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let resp = Response::builder()
                            .header("content-type", "application/octet-stream")
                            .header("cache-control", "public, max-age=600")
                            .body(Full::new(body_for(&path, len)))
                            .expect("response");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, counts)
}

// --- outpost process ---

struct Outpost {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    /// From the `listening` lines to both listeners accepting.
    ready_after: Duration,
    /// Connection attempts refused in that window.
    refused: u64,
    _dir: tempfile::TempDir,
}

fn outpost_bin() -> String {
    std::env::var("OUTPOST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_outpost").to_string())
}

fn addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    let at = line.find(key)? + key.len();
    line[at..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .parse()
        .ok()
}

impl Outpost {
    fn start(origin: SocketAddr, cache_memory: &str) -> Outpost {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("outpost.toml");
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\nlevel = \"warn\"\naccess = \"off\"\n\n\
             [cache]\nmemory = \"{cache_memory}\"\nmax_object = \"16MiB\"\n\n\
             [[origin]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
             [[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\n"
        );
        std::fs::write(&config, text).expect("write config");
        let mut child = Command::new(outpost_bin())
            .arg("run")
            .arg("-c")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn outpost (build it with cargo build --release)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut proxy, mut admin, mut sent) = (None, None, false);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                proxy = proxy.or_else(|| addr_after(&line, "listening proxy="));
                admin = admin.or_else(|| addr_after(&line, "listening admin="));
                if !sent {
                    if let (Some(p), Some(a)) = (proxy, admin) {
                        let _ = tx.send((p, a));
                        sent = true;
                    }
                }
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("outpost: {line}");
                }
            }
        });
        let (proxy, admin) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("outpost did not print its listening addresses within 30 s");
            }
        };
        // `listening proxy=ADDR` is printed before the listener accepts (app.rs reserves the
        // port with a throw-away socket); wait until both accept, and say how long it took.
        let printed = Instant::now();
        let deadline = printed + Duration::from_secs(20);
        let mut refused = 0u64;
        while std::net::TcpStream::connect(proxy).is_err()
            || std::net::TcpStream::connect(admin).is_err()
        {
            refused += 1;
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("outpost printed its addresses but does not accept connections");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ready_after = printed.elapsed();
        Outpost {
            child,
            proxy,
            admin,
            ready_after,
            refused,
            _dir: dir,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> (f64, f64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) {
        // SIGTERM by PID (our own child), then SIGKILL after 10 s.
        unsafe_free_sigterm(self.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -TERM PID` through the `kill` command (the crate forbids `unsafe`, so no libc::kill).
fn unsafe_free_sigterm(pid: i32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

// --- client ---

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

struct Got {
    status: u16,
    body: Bytes,
    cache_status: String,
    took: Duration,
}

async fn get(c: &reqwest::Client, url: &str) -> Result<Got, String> {
    let start = Instant::now();
    let r = c
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{}: {e:?}", chain(&e)))?;
    let status = r.status().as_u16();
    let cache_status = r
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.bytes().await.map_err(|e| chain(&e))?;
    Ok(Got {
        status,
        body,
        cache_status,
        took: start.elapsed(),
    })
}

/// An error with all its sources ("a: b: c").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn coalescing(origin: SocketAddr, counts: &Counts) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let conc: usize = env_or("BENCH_CONCURRENCY", 200);
    let o = Outpost::start(origin, "256MiB");
    println!(
        "### Coalescing: {conc} concurrent GETs of one cold URL, origin takes {} ms\n",
        COLD_DELAY.as_millis()
    );
    println!(
        "outpost pid {}, proxy {}, admin {}; listeners accepted {:.0} ms after the `listening` lines ({} connects refused before)\n",
        o.pid(),
        o.proxy,
        o.admin,
        o.ready_after.as_secs_f64() * 1e3,
        o.refused
    );
    println!("| round | origin requests | full correct bodies | errors | Cache-Status seen | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---|---:|---:|---:|");
    for round in 1..=rounds {
        let path = format!("/cold/{round}");
        let url = format!("http://{}{path}", o.proxy);
        let want = body_for(&path, COLD_BODY);
        // One client per request: 200 separate connections, as 200 browsers would open.
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { get(&client(), &url).await })
            })
            .collect();
        let mut ok = 0usize;
        let mut errors = 0usize;
        let mut lat = Vec::new();
        let mut statuses: HashMap<String, usize> = HashMap::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(g) => {
                    if g.status == 200 && g.body == want {
                        ok += 1;
                    }
                    lat.push(g.took.as_secs_f64() * 1e3);
                    let cs = g.cache_status.trim_start_matches("outpost; ").to_string();
                    *statuses.entry(format!("{} {cs}", g.status)).or_default() += 1;
                }
                Err(e) => {
                    errors += 1;
                    *statuses.entry(format!("error: {e}")).or_default() += 1;
                }
            }
        }
        lat.sort_by(f64::total_cmp);
        let mut seen: Vec<_> = statuses.into_iter().collect();
        seen.sort_by_key(|b| std::cmp::Reverse(b.1));
        let seen: Vec<String> = seen.iter().map(|(s, n)| format!("{n}× `{s}`")).collect();
        println!(
            "| {round} | {} | {ok}/{conc} | {errors} | {} | {:.0} | {:.0} | {:.0} |",
            counts.get(&path),
            seen.join(", "),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
    }
    o.stop();
    println!();
}

async fn status_memory(c: &reqwest::Client, admin: SocketAddr) -> (u64, u64) {
    let v: serde_json::Value = c
        .get(format!("http://{admin}/status"))
        .send()
        .await
        .expect("/status")
        .bytes()
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .expect("/status json");
    let m = &v["cache"]["memory"];
    (
        m["bytes"].as_u64().unwrap_or(0),
        m["objects"].as_u64().unwrap_or(0),
    )
}

async fn memory_bound(
    origin: SocketAddr,
    counts: &Counts,
    kind: &'static str,
    size: usize,
    objects: usize,
    in_flight: usize,
) {
    let o = Outpost::start(origin, "64MiB");
    let c = client();
    let (rss0, _) = o.rss();
    let before = counts.total.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut bad = 0usize;
    let mut max_ratio = 0f64;
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut tasks = Vec::new();
    for i in 0..objects {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let tc = c.clone();
        let url = format!("http://{}/{kind}/{i}", o.proxy);
        tasks.push(tokio::spawn(async move {
            let path = format!("/{kind}/{i}");
            let r = get(&tc, &url).await;
            drop(permit);
            match r {
                Ok(g) if g.status == 200 && g.body == body_for(&path, size) => true,
                Ok(g) => {
                    eprintln!(
                        "{path}: status {} body {} bytes, cache-status {:?}",
                        g.status,
                        g.body.len(),
                        g.cache_status
                    );
                    false
                }
                Err(e) => {
                    eprintln!("{path}: {e}");
                    false
                }
            }
        }));
        if i % (objects / 16) == objects / 16 - 1 {
            let (bytes, _) = status_memory(&c, o.admin).await;
            max_ratio = max_ratio.max(bytes as f64 / LIMIT as f64);
        }
    }
    for t in tasks {
        if !t.await.expect("task") {
            bad += 1;
        }
    }
    let fill = start.elapsed();
    let fetched = counts.total.load(Ordering::Relaxed) - before;
    let (bytes1, objects1) = status_memory(&c, o.admin).await;
    let (rss1, hwm1) = o.rss();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (bytes2, objects2) = status_memory(&c, o.admin).await;
    let (rss2, hwm2) = o.rss();
    // The most recent objects should still be there (LRU).
    let mut hits = 0;
    for i in objects - 64..objects {
        if let Ok(g) = get(&c, &format!("http://{}/{kind}/{i}", o.proxy)).await {
            hits += usize::from(g.cache_status.contains("hit"));
        }
    }
    println!(
        "### Memory bound: cache.memory = 64MiB, {objects} × {} KiB objects ({:.1}× the bound in bodies alone), {in_flight} in flight\n",
        size / 1024,
        (objects * size) as f64 / LIMIT as f64
    );
    println!(
        "fill: {:.2} s, {fetched} origin fetches, {bad} wrong/failed responses, outpost pid {}; \
         listeners accepted {:.0} ms after the `listening` lines ({} connects refused before)\n",
        fill.as_secs_f64(),
        o.pid(),
        o.ready_after.as_secs_f64() * 1e3,
        o.refused
    );
    println!("| when | /status bytes | bytes / limit | objects | VmRSS MiB | VmHWM MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("| before fill | | | | {rss0:.0} | |");
    println!(
        "| right after fill | {bytes1} | {:.3} | {objects1} | {rss1:.0} | {hwm1:.0} |",
        bytes1 as f64 / LIMIT as f64
    );
    println!(
        "| 2 s later | {bytes2} | {:.3} | {objects2} | {rss2:.0} | {hwm2:.0} |",
        bytes2 as f64 / LIMIT as f64
    );
    println!(
        "\nmax bytes/limit seen by /status during the fill (16 times): {max_ratio:.3}; \
         last 64 objects re-read: {hits}/64 hits\n"
    );
    o.stop();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (origin, counts) = start_origin().await;
        println!("## outpost coalescing / memory-bound bench\n");
        println!("binary: {}\n", outpost_bin());
        coalescing(origin, &counts).await;
        memory_bound(origin, &counts, "obj", OBJ_BODY, 1024, 8).await;
        if env_or("BENCH_SMALL", 1) == 1 {
            memory_bound(origin, &counts, "small", SMALL_BODY, 131_072, 32).await;
        }
    });
}
