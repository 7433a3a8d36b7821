//! Purge and lookup benchmark of the memory storage (issue "Purge").
//!
//! `cargo bench --bench purge` (a plain `fn main`, no criterion). Knobs (environment):
//! `BENCH_OBJECTS` (default 1000000), `BENCH_MEMORY` (cache.memory, default "2GiB"),
//! `BENCH_LOOKUPS` (timed lookups per phase, default 200000), `BENCH_FILL_SECS` (stop filling
//! after this long and report what was filled, default 600).
//!
//! What it does, in this order:
//! 1. Fills a memory-only `Storage` (`Storage::new`, leaked) through the pingora `Storage`
//!    trait (get_miss_handler / write_body / finish), one object at a time, with N objects of
//!    200 bytes at `http://h{i%100}.test/d{(i/100)%100}/o{i}` (100 hosts, 100 dirs per host).
//!    Tags (`Surrogate-Key` in the stored response header), 10,000 tags in all:
//!    every object has `t{i % 9999}`; every 10th also `big` (100k objects at N = 1M);
//!    every 30th also `t{(i/30+5000) % 9999}` (so objects carry 1-3 tags, a `t` tag ~103).
//! 2. Lookup latency (single task, random keys, each call timed): hits before any purge, then
//!    after 10,000 tag purges + 100 prefix purges that match nothing (so every object is
//!    still a hit but its stamp is older than the latest purge: the full ban check runs).
//!    Also 2 tasks on 2 threads (aggregate lookups/s), same two states.
//! 3. Purge latency (`purge::run` until it returns; "drained" = until the background
//!    removal task of large purges finished): 20 small tags, the `big` tag, 20 one-dir
//!    prefixes, a one-host prefix, a host, and `all`; each soft first, then hard on the same
//!    target. Finally, how long moka's lazy `invalidate_all` takes to empty the counters.
//!
//! `BENCH_PROBE=0` turns off the probe thread (lookups of random keys back to back while each
//! purge row runs; its slowest lookup is the last column of the purge table).
//!
//! Reference result: this machine (2 vCPU AMD EPYC, 23.5 GiB RAM, Linux 6.18, glibc malloc),
//! 2026-11-27 10:57 UTC, `cargo bench --bench purge`, N = 1,000,000. Other builds were
//! running (load average about 5), and runs vary 2 to 3×; ranges over 5 runs, the jemalloc
//! comparison and the analysis are in benches/RESULTS.md. Target from the issue: a hard purge
//! of a tag with 100k objects in a cache of 1M returns in well under 100 ms (here 3.9 ms;
//! 2.7 to 11.4 ms over 5 runs).
//!
//! ```text
//! ## outpost purge bench
//!
//! objects: 1000000 (target 1000000), cache.memory 2GiB, body 200 B, 10,000 tags, 100 hosts
//! fill: 14.8 s (67387 objects/s, 14.84 us/object, one task)
//! after fill: stats objects 1000000 bytes 370878482 (371 B/object charged); RSS 1690 MiB (+1684 MiB, 1766 B/object)
//!
//! ### Lookup latency (hits, one task, 200000 random keys, each call timed)
//!
//! | state | p50 ns | p99 ns | mean ns | max ns | 2 tasks on 2 threads, lookups/s |
//! |---|---:|---:|---:|---:|---:|
//! | no purge yet | 4486 | 40610 | 5628 | 5255390 | 170354 |
//! | 10k tag bans + 100 prefix bans | 5548 | 55072 | 7248 | 1883560 | 141377 |
//!
//! parts of a lookup, same keys, each timed alone (p50 / mean ns): CacheKey::combined_bin 180 / 180; CacheMeta::deserialize of a stored meta 2193 / 2240
//!
//! (recording the bans: 10,000 tag purges in 5 ms = 0.5 us each; 100 prefix purges in 0.6 ms)
//!
//! ### Purge latency (cache of 1000000; soft first, then hard on the same target)
//!
//! | purge | mode | objects matched | returned in (ms) | took (PurgeResult, ms) | until background removal done (ms) | then moka sync (ms) | concurrent lookups: count, > 1 ms, > 10 ms, max ms |
//! |---|---|---:|---:|---:|---:|---:|---|
//! | tag, small (20 tags, one call each) | soft | 104-104 each | p50 1.219, max 9.290 | p50 1.219, max 9.290 | 49.9 | 0.0 | 3754, 5, 0, 6.0 |
//! | tag, small (20 tags, one call each) | hard | 101-104 each | p50 0.962, max 5.849 | p50 0.961, max 5.849 | 40.7 | 0.0 | 3035, 6, 0, 5.1 |
//! | tag `big` | soft | 99741 | 10.725 | 10.725 | 1929.1 | 0.1 | 156408, 161, 6, 120.4 |
//! | tag `big` | hard | 99741 | 3.887 | 3.887 | 2113.8 | 7.9 | 164243, 8, 1, 381.5 |
//! | prefix, small: `http://h3.test/d{1..20}/` (one call each) | soft | 100-100 each | p50 2.773, max 302.143 | p50 2.772, max 302.142 | 358.6 | 0.0 | 26451, 36, 1, 10.6 |
//! | prefix, small: `http://h3.test/d{1..20}/` (one call each) | hard | 100-100 each | p50 1.817, max 2.008 | p50 1.816, max 2.007 | 35.3 | 0.2 | 1870, 3, 0, 1.1 |
//! | prefix `http://h4.test/` | soft | 9979 | 12.127 | 12.126 | 218.4 | 4.2 | 25276, 5, 1, 21.0 |
//! | prefix `http://h4.test/` | hard | 9979 | 15.617 | 15.615 | 201.5 | 3.8 | 16386, 3, 2, 32.9 |
//! | host `h5.test` | soft | 9979 | 36.875 | 36.873 | 229.8 | 8.8 | 25268, 3, 2, 35.0 |
//! | host `h5.test` | hard | 9979 | 14.848 | 14.846 | 205.5 | 1.2 | 15496, 4, 2, 33.2 |
//! | all | soft | 876224 | 0.040 | 0.040 | 0.0 | 5.9 | 563, 2, 0, 2.8 |
//! | all | hard | 876224 | 675.739 | 675.738 | 675.7 | 138.1 | 2987, 9, 3, 675.8 |
//!
//! objects before `all`: 876224; after hard `all` + sync: objects 875456 bytes 324346519; RSS 1557 MiB
//! ```

use bytes::Bytes;
use outpost::cache::purge::{PurgeRequest, PurgeResult};
use outpost::cache::storage::Storage;
use pingora::http::ResponseHeader;
use pingora_cache::key::CacheHashKey as _;
use pingora_cache::storage::Storage as _;
use pingora_cache::trace::{Span, SpanHandle};
use pingora_cache::{CacheKey, CacheMeta};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

const HOSTS: usize = 100;
const DIRS: usize = 100;
const TTAGS: usize = 9_999;
const BODY: usize = 200;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn url(i: usize) -> String {
    format!("http://h{}.test/d{}/o{i}", i % HOSTS, (i / HOSTS) % DIRS)
}

fn tags(i: usize) -> String {
    let mut s = format!("t{}", i % TTAGS);
    if i.is_multiple_of(10) {
        s.push_str(" big");
    }
    if i.is_multiple_of(30) {
        s.push_str(&format!(" t{}", (i / 30 + 5000) % TTAGS));
    }
    s
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

fn meta(tags: &str) -> CacheMeta {
    let mut h = ResponseHeader::build(200, None).expect("header");
    h.append_header("content-type", "text/plain")
        .expect("header");
    h.append_header("content-length", BODY.to_string())
        .expect("header");
    h.append_header("cache-control", "public, max-age=86400")
        .expect("header");
    h.append_header("surrogate-key", tags.to_string())
        .expect("header");
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(86_400), now, 0, 0, h)
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Lat {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

fn summarize(mut ns: Vec<u64>) -> Lat {
    ns.sort_unstable();
    let pick = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize] as f64;
    Lat {
        p50: pick(0.50),
        p99: pick(0.99),
        mean: ns.iter().sum::<u64>() as f64 / ns.len() as f64,
        max: *ns.last().unwrap_or(&0) as f64,
    }
}

async fn put(s: &'static Storage, i: usize, body: &[u8]) {
    let key = CacheKey::new(url(i), "");
    let mut w = s
        .get_miss_handler(&key, &meta(&tags(i)), &span())
        .await
        .expect("miss handler");
    w.write_body(Bytes::copy_from_slice(body), true)
        .await
        .expect("write_body");
    w.finish().await.expect("finish");
}

/// Times `count` lookups of random filled keys (one task). Every one must be a hit.
async fn lookups(s: &'static Storage, n: usize, count: usize, seed: u64) -> Lat {
    let mut rng = Rng(seed);
    let keys: Vec<CacheKey> = (0..count)
        .map(|_| CacheKey::new(url(rng.next() as usize % n), ""))
        .collect();
    let mut ns = Vec::with_capacity(count);
    let mut misses = 0usize;
    for k in &keys {
        let t = Instant::now();
        let hit = s.lookup(k, &span()).await.expect("lookup");
        ns.push(t.elapsed().as_nanos() as u64);
        misses += usize::from(hit.is_none());
    }
    assert_eq!(misses, 0, "every lookup in this phase must be a hit");
    summarize(ns)
}

/// Lookups/s with `tasks` tasks in parallel on the multi-thread runtime.
async fn lookup_throughput(s: &'static Storage, n: usize, tasks: usize, per_task: usize) -> f64 {
    let mut handles = Vec::new();
    let start = Instant::now();
    for t in 0..tasks {
        handles.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            for _ in 0..per_task {
                let k = CacheKey::new(url(rng.next() as usize % n), "");
                let hit = s.lookup(&k, &span()).await.expect("lookup");
                assert!(hit.is_some());
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

/// Waits until every spawned task (the background removal of a large purge) has finished.
async fn drained() {
    let m = tokio::runtime::Handle::current().metrics();
    while m.num_alive_tasks() > 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Costs inside a lookup that do not depend on the storage: hashing the key, parsing meta.
fn breakdown(count: usize) -> (Lat, Lat) {
    let mut rng = Rng(7);
    let keys: Vec<CacheKey> = (0..count)
        .map(|_| CacheKey::new(url(rng.next() as usize % 1_000_000), ""))
        .collect();
    let mut ns = Vec::with_capacity(count);
    let mut sink = 0u8;
    for k in &keys {
        let t = Instant::now();
        let b = k.combined_bin();
        ns.push(t.elapsed().as_nanos() as u64);
        sink ^= b[0];
    }
    let hash = summarize(ns);
    let bin = meta(&tags(30)).serialize().expect("serialize");
    let mut ns = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let m = CacheMeta::deserialize(&bin.0, &bin.1).expect("deserialize");
        ns.push(t.elapsed().as_nanos() as u64);
        sink ^= u8::from(m.is_fresh(SystemTime::now()));
    }
    std::hint::black_box(sink);
    (hash, summarize(ns))
}

/// A thread of its own (current-thread runtime) doing lookups of random keys back to back
/// while the purges run, keeping the slowest one: what a request sees during a purge.
#[derive(Default)]
struct Probe {
    stop: AtomicBool,
    max_ns: AtomicU64,
    count: AtomicU64,
    over_1ms: AtomicU64,
    over_10ms: AtomicU64,
}

impl Probe {
    fn start(s: &'static Storage, n: usize) -> &'static Probe {
        let p: &'static Probe = Box::leak(Box::default());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            rt.block_on(async move {
                let mut rng = Rng(99);
                while !p.stop.load(Ordering::Relaxed) {
                    let k = CacheKey::new(url(rng.next() as usize % n), "");
                    let t = Instant::now();
                    let _ = s.lookup(&k, &span()).await;
                    let ns = t.elapsed().as_nanos() as u64;
                    p.max_ns.fetch_max(ns, Ordering::Relaxed);
                    p.count.fetch_add(1, Ordering::Relaxed);
                    if ns > 1_000_000 {
                        p.over_1ms.fetch_add(1, Ordering::Relaxed);
                    }
                    if ns > 10_000_000 {
                        p.over_10ms.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        });
        p
    }

    /// (lookups, > 1 ms, > 10 ms, max ms) since the last call.
    fn take(&self) -> (u64, u64, u64, f64) {
        (
            self.count.swap(0, Ordering::Relaxed),
            self.over_1ms.swap(0, Ordering::Relaxed),
            self.over_10ms.swap(0, Ordering::Relaxed),
            self.max_ns.swap(0, Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

struct PurgeRow {
    what: String,
    soft: bool,
    purged: String,
    returned_ms: Vec<f64>,
    took_ms: Vec<f64>,
    drained_ms: f64,
    sync_ms: f64,
    probe: Option<(u64, u64, u64, f64)>,
}

async fn run_purge(
    s: &'static Storage,
    probe: Option<&'static Probe>,
    what: &str,
    reqs: Vec<PurgeRequest>,
) -> PurgeRow {
    if let Some(p) = probe {
        p.take();
    }
    let soft = reqs.first().is_some_and(|r| r.soft);
    let mut returned = Vec::new();
    let mut took = Vec::new();
    let mut purged = Vec::new();
    let start = Instant::now();
    for mut r in reqs {
        r.validate().expect("valid purge");
        let purge = r.resolve(&Default::default()).expect("valid purge");
        let t = Instant::now();
        let res: PurgeResult = outpost::cache::purge::run(s, &purge).await;
        returned.push(t.elapsed().as_secs_f64() * 1e3);
        took.push(res.took.as_secs_f64() * 1e3);
        purged.push(res.purged.map_or("?".to_string(), |p| p.to_string()));
    }
    drained().await;
    let drained_ms = start.elapsed().as_secs_f64() * 1e3;
    // moka's own maintenance for the removals/replacements (otherwise billed to the next
    // caller that triggers it).
    let t = Instant::now();
    s.sync().await;
    let sync_ms = t.elapsed().as_secs_f64() * 1e3;
    let probe = probe.map(Probe::take);
    let purged = if purged.len() == 1 {
        purged.remove(0)
    } else {
        let nums: Vec<u64> = purged.iter().filter_map(|p| p.parse().ok()).collect();
        format!(
            "{}-{} each",
            nums.iter().min().unwrap_or(&0),
            nums.iter().max().unwrap_or(&0)
        )
    };
    PurgeRow {
        what: what.to_string(),
        soft,
        purged,
        returned_ms: returned,
        took_ms: took,
        drained_ms,
        sync_ms,
        probe,
    }
}

fn req(soft: bool, f: impl FnOnce(&mut PurgeRequest)) -> PurgeRequest {
    let mut r = PurgeRequest {
        soft,
        ..PurgeRequest::default()
    };
    f(&mut r);
    r
}

fn cache_config(memory: &str) -> outpost::config::CacheConfig {
    let text = format!(
        "[cache]\nmemory = \"{memory}\"\n\n[[origin]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n\
         [[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\n"
    );
    match outpost::config::parse(&text, Path::new(".")) {
        Ok(cfg) => cfg.cache,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n_target: usize = env_or("BENCH_OBJECTS", 1_000_000);
    let memory: String = env_or("BENCH_MEMORY", "2GiB".to_string());
    let n_lookups: usize = env_or("BENCH_LOOKUPS", 200_000);
    let fill_cap = Duration::from_secs(env_or("BENCH_FILL_SECS", 600));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cfg = cache_config(&memory);
        let s: &'static Storage = Box::leak(Box::new(Storage::new(&cfg)));
        let rss0 = rss_mib();

        // --- 1. fill ---
        let body = vec![b'x'; BODY];
        let start = Instant::now();
        let mut n = 0;
        while n < n_target {
            put(s, n, &body).await;
            n += 1;
            if n % 100_000 == 0 {
                eprintln!(
                    "filled {n} in {:.1}s, rss {:.0} MiB",
                    start.elapsed().as_secs_f64(),
                    rss_mib()
                );
                if start.elapsed() > fill_cap {
                    eprintln!("fill time cap reached: stopping at {n} objects");
                    break;
                }
            }
        }
        let fill = start.elapsed();
        s.sync().await;
        let st = s.stats();
        let rss1 = rss_mib();
        println!("## outpost purge bench\n");
        println!(
            "objects: {n} (target {n_target}), cache.memory {memory}, body {BODY} B, 10,000 tags, {HOSTS} hosts"
        );
        println!(
            "fill: {:.1} s ({:.0} objects/s, {:.2} us/object, one task)",
            fill.as_secs_f64(),
            n as f64 / fill.as_secs_f64(),
            fill.as_secs_f64() * 1e6 / n as f64
        );
        println!(
            "after fill: stats objects {} bytes {} ({:.0} B/object charged); RSS {:.0} MiB (+{:.0} MiB, {:.0} B/object)\n",
            st.memory.objects,
            st.memory.bytes,
            st.memory.bytes as f64 / st.memory.objects.max(1) as f64,
            rss1,
            rss1 - rss0,
            (rss1 - rss0) * 1048576.0 / n as f64
        );
        assert_eq!(st.memory.objects, n as u64, "nothing may be evicted while filling");

        // --- 2. lookups ---
        s.sync().await;
        let parts = breakdown(n_lookups);
        let before = lookups(s, n, n_lookups, 42).await;
        let tput_before = lookup_throughput(s, n, 2, n_lookups / 2).await;

        let t = Instant::now();
        for j in 0..10_000 {
            let r = req(false, |r| r.tags = vec![format!("nomatch-{j}")]);
            outpost::cache::purge::run(s, &r.resolve(&Default::default()).expect("valid")).await;
        }
        let tag_bans = t.elapsed();
        let t = Instant::now();
        for j in 0..100 {
            let r = req(false, |r| {
                r.prefixes = vec![format!("http://h{}.test/nomatch{j}/", j % HOSTS)]
            });
            outpost::cache::purge::run(s, &r.resolve(&Default::default()).expect("valid")).await;
        }
        let prefix_bans = t.elapsed();
        drained().await;
        let after = lookups(s, n, n_lookups, 43).await;
        let tput_after = lookup_throughput(s, n, 2, n_lookups / 2).await;

        println!("### Lookup latency (hits, one task, {n_lookups} random keys, each call timed)\n");
        println!("| state | p50 ns | p99 ns | mean ns | max ns | 2 tasks on 2 threads, lookups/s |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, l, tp) in [
            ("no purge yet", &before, tput_before),
            ("10k tag bans + 100 prefix bans", &after, tput_after),
        ] {
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                l.p50, l.p99, l.mean, l.max, tp
            );
        }
        println!(
            "\nparts of a lookup, same keys, each timed alone (p50 / mean ns): \
             CacheKey::combined_bin {:.0} / {:.0}; CacheMeta::deserialize of a stored meta {:.0} / {:.0}",
            parts.0.p50, parts.0.mean, parts.1.p50, parts.1.mean
        );
        println!(
            "\n(recording the bans: 10,000 tag purges in {:.0} ms = {:.1} us each; 100 prefix purges in {:.1} ms)\n",
            tag_bans.as_secs_f64() * 1e3,
            tag_bans.as_secs_f64() * 1e6 / 10_000.0,
            prefix_bans.as_secs_f64() * 1e3
        );

        // --- 3. purges ---
        let probe = (env_or("BENCH_PROBE", 1) == 1).then(|| Probe::start(s, n));
        let mut rows = Vec::new();
        for soft in [true, false] {
            let small: Vec<PurgeRequest> = (1..=20)
                .map(|j| req(soft, |r| r.tags = vec![format!("t{j}")]))
                .collect();
            rows.push(run_purge(s, probe, "tag, small (20 tags, one call each)", small).await);
        }
        for soft in [true, false] {
            let r = req(soft, |r| r.tags = vec!["big".to_string()]);
            rows.push(run_purge(s, probe, "tag `big`", vec![r]).await);
        }
        for soft in [true, false] {
            let small: Vec<PurgeRequest> = (1..=20)
                .map(|d| req(soft, |r| r.prefixes = vec![format!("http://h3.test/d{d}/")]))
                .collect();
            rows.push(run_purge(s, probe, "prefix, small: `http://h3.test/d{1..20}/` (one call each)", small).await);
        }
        for soft in [true, false] {
            let r = req(soft, |r| r.prefixes = vec!["http://h4.test/".to_string()]);
            rows.push(run_purge(s, probe, "prefix `http://h4.test/`", vec![r]).await);
        }
        for soft in [true, false] {
            let r = req(soft, |r| r.hosts = vec!["h5.test".to_string()]);
            rows.push(run_purge(s, probe, "host `h5.test`", vec![r]).await);
        }
        let before_all = s.stats().memory.objects;
        for soft in [true, false] {
            let r = req(soft, |r| r.all = true);
            rows.push(run_purge(s, probe, "all", vec![r]).await);
        }
        if let Some(p) = probe {
            p.stop.store(true, Ordering::Relaxed);
        }
        s.sync().await;
        let end = s.stats().memory;

        println!("### Purge latency (cache of {n}; soft first, then hard on the same target)\n");
        println!("| purge | mode | objects matched | returned in (ms) | took (PurgeResult, ms) | until background removal done (ms) | then moka sync (ms) | concurrent lookups: count, > 1 ms, > 10 ms, max ms |");
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for r in &rows {
            let fmt = |v: &[f64]| {
                if v.len() == 1 {
                    format!("{:.3}", v[0])
                } else {
                    let mut v = v.to_vec();
                    v.sort_by(f64::total_cmp);
                    format!("p50 {:.3}, max {:.3}", v[v.len() / 2], v[v.len() - 1])
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} |",
                r.what,
                if r.soft { "soft" } else { "hard" },
                r.purged,
                fmt(&r.returned_ms),
                fmt(&r.took_ms),
                r.drained_ms,
                r.sync_ms,
                r.probe.map_or("(off)".to_string(), |(c, a, b, m)| format!("{c}, {a}, {b}, {m:.1}"))
            );
        }
        println!(
            "\nobjects before `all`: {before_all}; after hard `all` + sync: objects {} bytes {}; RSS {:.0} MiB",
            end.objects,
            end.bytes,
            rss_mib()
        );
        // moka's invalidate_all is lazy: how long until the counters (and memory) drop?
        let t = Instant::now();
        let mut calls = 0u32;
        while s.stats().memory.objects > 0 && t.elapsed() < Duration::from_secs(30) {
            s.sync().await;
            calls += 1;
        }
        let left = s.stats().memory;
        println!(
            "then `sync()` in a loop: objects {} bytes {} after {calls} calls / {:.0} ms; RSS {:.0} MiB",
            left.objects,
            left.bytes,
            t.elapsed().as_secs_f64() * 1e3,
            rss_mib()
        );
    });
}
