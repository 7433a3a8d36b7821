//! State shared by the proxy, the admin API and background services.
//! Config-derived parts live in `Runtime`, swapped atomically (arc-swap) so a reload
//! never blocks or tears a request: each request holds the `Arc<Runtime>` it started with.

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::route::RouteTable;
use crate::upstream::OriginPools;
use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything derived from one config.
#[derive(Debug)]
pub struct Runtime {
    pub cfg: Arc<Config>,
    pub routes: RouteTable,
    pub pools: OriginPools,
    /// Cache rules of this config.
    pub cache: crate::cache::Rules,
    /// `outpost_requests_total` handles per route; the last entry is `route="none"`.
    pub route_counters: Vec<[Counter; 5]>,
    /// Rate limiters per route (`None` = no `rate_limit`). A reload starts them afresh.
    pub limiters: Vec<Option<crate::proxy::limits::RouteLimiter>>,
    /// Consistent-hash peering over `cluster.peers` (`None` = off).
    pub ring: Option<crate::fleet::peering::Ring>,
}

impl Runtime {
    /// Builds pools, routes and metric handles for `cfg`.
    pub fn new(cfg: Arc<Config>, metrics: &Metrics) -> Self {
        let routes = RouteTable::new(&cfg.routes);
        let pools = OriginPools::from_config(&cfg, metrics);
        let mut route_counters: Vec<[Counter; 5]> = cfg
            .routes
            .iter()
            .map(|r| metrics.route_counters(&route_label(r)))
            .collect();
        route_counters.push(metrics.route_counters("none"));
        let cache = crate::cache::Rules::from_config(&cfg.cache);
        let limiters = cfg
            .routes
            .iter()
            .map(|r| {
                r.rate_limit
                    .as_ref()
                    .and_then(crate::proxy::limits::RouteLimiter::new)
            })
            .collect();
        let ring = cfg
            .cluster
            .as_ref()
            .and_then(|c| crate::fleet::peering::Ring::new(&c.peers, c.self_addr));
        Self {
            cfg,
            routes,
            pools,
            cache,
            route_counters,
            limiters,
            ring,
        }
    }

    /// Request counters of a route (`None` = no route matched).
    pub fn counters(&self, route: Option<usize>) -> Option<&[Counter; 5]> {
        match route {
            Some(i) => self.route_counters.get(i),
            None => self.route_counters.last(),
        }
    }
}

/// The `route` label: host pattern + prefix, e.g. `*/` or `example.test/api/`.
pub fn route_label(r: &crate::config::RouteConfig) -> String {
    use crate::config::HostMatch;
    let host = match &r.host {
        HostMatch::Any => "*".to_string(),
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(s) => format!("*{s}"),
    };
    format!("{host}{}", r.prefix)
}

/// Process-wide shared state.
#[derive(Debug)]
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub cache: &'static crate::cache::CacheLayer,
    pub started: Instant,
    /// Rate history and recent purges for `GET /dashboard`.
    pub dashboard: crate::dashboard::Dashboard,
    inflight: AtomicUsize,
    /// Open client connections on the proxy listeners (counted by `front`).
    pub connections: Arc<AtomicUsize>,
    /// The TLS listeners' certificates (`None` without `[tls]`); reloads swap them.
    pub certs: Option<crate::tls::CertStore>,
    /// Fleet membership (`None` without `[cluster]`).
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}

impl Shared {
    /// Wraps the first runtime.
    pub fn new(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        cache: &'static crate::cache::CacheLayer,
        certs: Option<crate::tls::CertStore>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Self {
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            cache,
            started: Instant::now(),
            dashboard: crate::dashboard::Dashboard::default(),
            inflight: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
            certs,
            fleet,
        }
    }

    /// Counts a request in flight until the guard drops (graceful shutdown waits on it).
    pub fn begin_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Requests being served now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Open client connections on the proxy listeners (kept by `front`).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Decrements the in-flight count on drop.
#[derive(Debug)]
pub struct InflightGuard(Arc<Shared>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}
