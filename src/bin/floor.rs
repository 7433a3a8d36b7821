//! The bench floor (issue "Performance"): a bare Pingora `ProxyHttp`, empty hooks, the same
//! Pingora version, features and server settings as outpost, so that every benchmark figure
//! splits into what Pingora costs and what outpost adds. Not part of the product.
//!
//! ```sh
//! cargo build --release --features floor --bin outpost-floor
//! target/release/outpost-floor --listen 127.0.0.1:8080 --origin 127.0.0.1:9000 [--cache]
//! ```
//!
//! `--static` answers every request itself from `request_filter` (1 KiB, no cache, no
//! origin): the ceiling of a hit path that skips pingora-cache's state machine.
//! `--cache` turns on pingora-cache with its own `MemCache` (unbounded, in-memory), its
//! default key and `resp_cacheable` (RFC freshness from `Cache-Control`/`Expires`, no default
//! TTL) and a cache lock: the least a Pingora cache does. Without it, every request is
//! proxied (the pass-through floor). `--threads N` (default: one per core, like outpost). `--no-work-stealing`: one runtime per
//! thread (Pingora's `work_stealing = false`).
//! Runs until SIGTERM / SIGINT.

use async_trait::async_trait;
use pingora::cache::cache_control::CacheControl;
use pingora::cache::filters::resp_cacheable;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheMetaDefaults, MemCache, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::time::Duration;

const DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

struct Floor {
    origin: SocketAddr,
    /// `--static`: answer every request from `request_filter` with a fixed 1 KiB body (the
    /// ceiling for a hit path that skips pingora-cache's state machine).
    fixed: Option<bytes::Bytes>,
    cache: Option<(&'static MemCache, &'static CacheKeyLockImpl)>,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.origin, false, String::new())))
    }

    async fn request_filter(&self, session: &mut Session, _: &mut ()) -> Result<bool> {
        let Some(body) = &self.fixed else {
            return Ok(false);
        };
        let mut resp = ResponseHeader::build(200, Some(4))?;
        resp.insert_header("content-type", "application/octet-stream")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "max-age=3600")?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(body.clone()), true)
            .await?;
        Ok(true)
    }

    fn request_cache_filter(&self, session: &mut Session, _: &mut ()) -> Result<()> {
        if let Some((storage, lock)) = self.cache {
            session.cache.enable(storage, None, None, Some(lock), None);
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, _: &mut ()) -> Result<CacheKey> {
        let req = session.req_header();
        let host = req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(CacheKey::new(format!("http://{host}{pq}"), ""))
    }

    fn response_cache_filter(
        &self,
        _: &Session,
        resp: &ResponseHeader,
        _: &mut (),
    ) -> Result<RespCacheable> {
        let cc = CacheControl::from_resp_headers(resp);
        Ok(resp_cacheable(cc.as_ref(), resp.clone(), false, &DEFAULTS))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: outpost-floor --listen ADDR --origin ADDR [--cache | --static] [--threads N]";
    let (Some(listen), Some(origin)) = (arg(&args, "--listen"), arg(&args, "--origin")) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(origin) = origin.parse::<SocketAddr>() else {
        eprintln!("--origin: not an address: {origin}\n{usage}");
        std::process::exit(2);
    };
    let threads = arg(&args, "--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cache = args.iter().any(|a| a == "--cache").then(|| {
        let storage: &'static MemCache = Box::leak(Box::new(MemCache::new()));
        let lock: &'static CacheKeyLockImpl =
            Box::leak(CacheLock::new_boxed(Duration::from_secs(2)));
        (storage, lock)
    });
    let conf = ServerConf {
        threads,
        work_stealing: !args.iter().any(|a| a == "--no-work-stealing"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let fixed = args
        .iter()
        .any(|a| a == "--static")
        .then(|| bytes::Bytes::from(vec![b'x'; 1024]));
    let mut svc = http_proxy_service(
        &server.configuration,
        Floor {
            origin,
            fixed,
            cache,
        },
    );
    svc.add_tcp(&listen);
    server.add_service(svc);
    println!("listening proxy={listen}");
    server.run_forever();
}
