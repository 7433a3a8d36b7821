//! Criterion micro-benchmarks of the hit path's parts (issue "Performance"; the ban check of
//! issue "Architecture"): the cache key, the RFC 9111 policy decision, a memory-tier lookup,
//! and the ban check with 0, 1,000 and 100,000 purges recorded.
//!
//! `cargo bench --bench micro` (add `-- ban` to run one group). Results and the machine are
//! in benches/README.md.
//!
//! The ban check is measured as what it costs a hit: a memory-tier lookup of an object
//! stored *before* every purge (so the full check runs; newer objects skip it), none of the
//! purges matching it. Purges are a mix: a quarter each by URL, tag, prefix (of 40 distinct
//! lengths) and host, so the prefix check, once a walk over every prefix, is in the figure.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use outpost::cache::policy::{self, Defaults};
use outpost::cache::purge::{self, PurgeRequest};
use outpost::cache::storage::Storage;
use outpost::url::{ObjectUrl, QueryFilter, Scheme};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora_cache::trace::{Span, SpanHandle};
use pingora_cache::{CacheKey, CacheMeta, Storage as _};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn cache_config() -> outpost::config::CacheConfig {
    let text = "[cache]\nmemory = \"256MiB\"\nignore_query_params = [\"utm_*\", \"fbclid\"]\n\n\
                [[origin]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n\
                [[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\n";
    match outpost::config::parse(text, Path::new(".")) {
        Ok(cfg) => cfg.cache,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn response() -> ResponseHeader {
    let mut h = ResponseHeader::build(200, None).expect("header");
    for (n, v) in [
        ("content-type", "text/css"),
        ("content-length", "1024"),
        ("cache-control", "public, max-age=3600"),
        ("date", "Fri, 04 Dec 2026 20:00:00 GMT"),
        ("etag", "\"abc\""),
        ("surrogate-key", "css site"),
    ] {
        h.append_header(n, v).expect("header");
    }
    h
}

fn key(c: &mut Criterion) {
    let filter = QueryFilter::new(&["utm_*".to_string(), "fbclid".to_string()]);
    let mut g = c.benchmark_group("key");
    g.bench_function("plain", |b| {
        b.iter(|| {
            ObjectUrl::from_request(
                Scheme::Https,
                black_box("static.example.test"),
                black_box("/assets/app.3f2a.css"),
                &filter,
            )
        })
    });
    g.bench_function("query_filtered", |b| {
        b.iter(|| {
            ObjectUrl::from_request(
                Scheme::Https,
                black_box("static.example.test"),
                black_box("/search?q=shoes&utm_source=x&page=2&fbclid=y"),
                &filter,
            )
        })
    });
    g.finish();
}

fn decision(c: &mut Criterion) {
    let defaults = Defaults::from_config(&cache_config());
    let req = RequestHeader::build("GET", b"/assets/app.css", None).expect("request");
    let resp = response();
    let now = SystemTime::now();
    c.bench_function("policy/decide_cacheable_200", |b| {
        b.iter(|| policy::decide(black_box(&req), black_box(&resp), now, now, &defaults))
    });
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

fn url(i: usize) -> String {
    format!("http://h{}.test/d{}/o{i}", i % 100, (i / 100) % 100)
}

async fn put(s: &'static Storage, i: usize) {
    let key = CacheKey::new(url(i), "");
    let now = SystemTime::now();
    let meta = CacheMeta::new(now + Duration::from_secs(86_400), now, 0, 0, response());
    let mut w = s
        .get_miss_handler(&key, &meta, &span())
        .await
        .expect("miss handler");
    w.write_body(Bytes::from_static(&[b'x'; 1024]), true)
        .await
        .expect("write_body");
    w.finish().await.expect("finish");
}

/// Records `n` purges that match none of the stored objects (see the module doc).
async fn record_purges(s: &'static Storage, from: usize, to: usize) {
    let filter = QueryFilter::default();
    for j in from..to {
        let mut r = PurgeRequest::default();
        match j % 4 {
            0 => r.urls = vec![format!("http://h{}.test/none/{j}", j % 100)],
            1 => r.tags = vec![format!("nomatch-{j}")],
            2 => {
                let pad = "p".repeat(j % 40);
                r.prefixes = vec![format!("http://h{}.test/{pad}/{j}/", j % 100)]
            }
            _ => r.hosts = vec![format!("nomatch{j}.test")],
        }
        let p = r.resolve(&filter).expect("valid purge");
        purge::run(s, &p).await;
    }
}

fn lookups(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s: &'static Storage = Box::leak(Box::new(Storage::new(&cache_config())));
    const OBJECTS: usize = 10_000;
    rt.block_on(async {
        for i in 0..OBJECTS {
            put(s, i).await;
        }
    });
    let keys: Vec<CacheKey> = (0..1024)
        .map(|i| CacheKey::new(url(i * 7 % OBJECTS), ""))
        .collect();
    let mut i = 0;
    let mut hit = |b: &mut criterion::Bencher| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let found = rt.block_on(s.lookup(&keys[i], &span())).expect("lookup");
            assert!(found.is_some(), "every lookup is a hit");
            found
        })
    };
    c.bench_function("tier/memory_hit", &mut hit);
    // The ban check: stamps older than every purge (records kept: memory-only storage keeps
    // them for its 60 s grace, longer than this group runs).
    let mut g = c.benchmark_group("ban_check");
    g.measurement_time(Duration::from_secs(3));
    let mut recorded = 0;
    for n in [0usize, 1_000, 100_000] {
        rt.block_on(record_purges(s, recorded, n));
        recorded = n;
        g.bench_with_input(BenchmarkId::new("hit_with_purges", n), &n, |b, _| hit(b));
    }
    g.finish();
}

criterion_group!(benches, key, decision, lookups);
criterion_main!(benches);
