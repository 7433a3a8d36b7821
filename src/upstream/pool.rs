//! One origin pool: its servers, their health and load, and the selection algorithm.
//! Selection reuses pingora-load-balancing's algorithms (round robin, random, ketama);
//! least-connections is ours. Health is ours too, so active and passive checks share it.

use crate::config::{OriginConfig, Selection};
use crate::metrics::Metrics;
use pingora::lb::selection::{
    BackendIter, BackendSelection, Consistent, Random, RoundRobin, UniqueIterator,
};
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a server ejected by passive checks stays out when the origin has no active checks.
const PASSIVE_RETRY: Duration = Duration::from_secs(10);

/// One origin server and its live state.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub weight: usize,
    /// `addr` as text, the `server` metric label.
    pub label: String,
    healthy: AtomicBool,
    fails: AtomicUsize,
    passes: AtomicUsize,
    active: AtomicUsize,
    /// Millis since `Pool::epoch` when a passive ejection ends (0 = none).
    retry_at_ms: AtomicU64,
    up: Gauge,
    /// `outpost_origin_requests_total` per status class.
    pub requests: [Counter; 5],
}

impl Server {
    /// Whether the server is in rotation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Requests currently in flight to this server.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Marks one more request in flight; the guard undoes it on drop.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// Takes over another server's health state (config reload).
    pub fn copy_health(&self, other: &Server, origin: &str) {
        self.fails
            .store(other.fails.load(Ordering::Relaxed), Ordering::Relaxed);
        self.passes
            .store(other.passes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.set_healthy(other.is_healthy(), origin);
    }

    fn set_healthy(&self, healthy: bool, origin: &str) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            self.up.set(i64::from(healthy));
            if healthy {
                tracing::info!(origin, server = %self.addr, "server back in rotation");
            } else {
                tracing::warn!(origin, server = %self.addr, "server taken out of rotation");
            }
        }
    }
}

/// Decrements a server's in-flight count when dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Server>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Selector {
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Consistent(Arc<Consistent>),
    LeastConn,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RoundRobin(_) => "RoundRobin",
            Self::Random(_) => "Random",
            Self::Consistent(_) => "Consistent",
            Self::LeastConn => "LeastConn",
        })
    }
}

/// An origin pool.
#[derive(Debug)]
pub struct Pool {
    pub cfg: OriginConfig,
    /// `origin.ca`, loaded once: the CAs that verify this origin's certificate.
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    pub servers: Vec<Arc<Server>>,
    selector: Selector,
    epoch: Instant,
    /// `outpost_origin_duration_seconds{origin}`
    pub duration: Histogram,
    /// The same times for the dashboard.
    pub latency: Arc<crate::metrics::Latency>,
}

/// How long an idle pooled origin connection is kept: below the 5 s keep-alive timeout of
/// Node.js and Apache httpd, so outpost closes it before the origin does (a request sent on
/// a connection the origin is closing fails; see `proxy::upstream::proxy_error`).
pub const UPSTREAM_IDLE: Duration = Duration::from_secs(4);

impl Pool {
    /// The one peer builder: how outpost connects to `server` of this origin (TLS with SNI,
    /// `origin.ca` and `origin.verify`, this origin's timeouts). Used for proxied requests,
    /// its own requests (resumes, slices) and active health checks.
    pub fn peer(&self, server: &Server) -> HttpPeer {
        let cfg = &self.cfg;
        let sni = if cfg.sni.is_empty() {
            server.addr.ip().to_string()
        } else {
            cfg.sni.clone()
        };
        if !cfg.tls {
            return self.plain_peer(server.addr);
        }
        let mut peer = HttpPeer::new(server.addr, true, sni);
        self.timeouts(&mut peer);
        let o = &mut peer.options;
        o.verify_cert = cfg.verify;
        o.verify_hostname = cfg.verify;
        o.ca = self.ca.clone();
        peer
    }

    /// A plain-HTTP peer at `addr` with this origin's timeouts (an owning peer of the fleet).
    pub fn plain_peer(&self, addr: std::net::SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        self.timeouts(&mut peer);
        peer
    }

    fn timeouts(&self, peer: &mut HttpPeer) {
        let o = &mut peer.options;
        o.connection_timeout = Some(self.cfg.connect_timeout);
        o.total_connection_timeout = Some(self.cfg.connect_timeout);
        o.read_timeout = Some(self.cfg.read_timeout);
        o.write_timeout = Some(self.cfg.read_timeout);
        o.idle_timeout = Some(UPSTREAM_IDLE);
    }

    /// Builds the pool; every server starts healthy.
    pub fn new(cfg: OriginConfig, metrics: &Metrics) -> Self {
        if cfg.tls && !cfg.verify {
            tracing::warn!(origin = %cfg.name, "origin.verify = false: the origin's TLS certificate is not verified");
        }
        let ca = cfg.ca.as_deref().and_then(|path| load_ca(&cfg.name, path));
        let servers: Vec<Arc<Server>> = cfg
            .servers
            .iter()
            .map(|s| {
                let label = s.addr.to_string();
                let up = metrics.origin_up(&cfg.name, &label);
                up.set(1);
                Arc::new(Server {
                    addr: s.addr,
                    weight: s.weight,
                    requests: metrics.origin_counters(&cfg.name, &label),
                    label,
                    healthy: AtomicBool::new(true),
                    fails: AtomicUsize::new(0),
                    passes: AtomicUsize::new(0),
                    active: AtomicUsize::new(0),
                    retry_at_ms: AtomicU64::new(0),
                    up,
                })
            })
            .collect();
        let backends: BTreeSet<Backend> = servers
            .iter()
            .map(|s| {
                let weight = if cfg.selection == Selection::LeastConn {
                    1
                } else {
                    s.weight
                };
                let mut b =
                    Backend::new_with_weight(&s.label, weight).unwrap_or_else(|_| Backend {
                        addr: pingora::protocols::l4::socket::SocketAddr::Inet(s.addr),
                        weight,
                        ext: Default::default(),
                    });
                b.weight = weight;
                b
            })
            .collect();
        let selector = match cfg.selection {
            Selection::RoundRobin | Selection::Weighted => {
                Selector::RoundRobin(Arc::new(RoundRobin::build(&backends)))
            }
            Selection::Random => Selector::Random(Arc::new(Random::build(&backends))),
            Selection::Consistent => Selector::Consistent(Arc::new(Consistent::build(&backends))),
            Selection::LeastConn => Selector::LeastConn,
        };
        let duration = metrics.origin_duration(&cfg.name);
        let latency = metrics.origin_latency(&cfg.name);
        Self {
            latency,
            ca,
            cfg,
            servers,
            selector,
            epoch: Instant::now(),
            duration,
        }
    }

    /// The origin's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Healthy server count.
    pub fn healthy_count(&self) -> usize {
        self.servers.iter().filter(|s| self.usable(s)).count()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Healthy, or a passive ejection whose retry time has come (no active checks).
    fn usable(&self, s: &Server) -> bool {
        if s.is_healthy() {
            return true;
        }
        let at = s.retry_at_ms.load(Ordering::Relaxed);
        at != 0 && self.now_ms() >= at
    }

    fn by_addr(&self, addr: &SocketAddr) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.addr == *addr)
    }

    /// Picks a healthy server not in `exclude`. `key` drives consistent hashing.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<Arc<Server>> {
        let ok = |s: &Server| self.usable(s) && !exclude.contains(&s.addr);
        let max = self.servers.iter().map(|s| s.weight).sum::<usize>().max(1) * 2 + 16;
        let addr = match &self.selector {
            Selector::RoundRobin(sel) => self.walk(sel.iter(key), max, &ok),
            Selector::Random(sel) => self.walk(sel.iter(key), max, &ok),
            Selector::Consistent(sel) => self.walk(sel.iter(key), max, &ok),
            Selector::LeastConn => {
                return self
                    .servers
                    .iter()
                    .filter(|s| ok(s))
                    .min_by(|a, b| {
                        // Compare active/weight without division: a.active * b.weight vs b.active * a.weight.
                        (a.active() * b.weight).cmp(&(b.active() * a.weight))
                    })
                    .cloned();
            }
        }?;
        self.by_addr(&addr).cloned()
    }

    fn walk<I: BackendIter>(
        &self,
        iter: I,
        max: usize,
        ok: &dyn Fn(&Server) -> bool,
    ) -> Option<SocketAddr> {
        let mut it = UniqueIterator::new(iter, max);
        while let Some(b) = it.get_next() {
            let Some(addr) = b.addr.as_inet().copied() else {
                continue;
            };
            if self.by_addr(&addr).is_some_and(|s| ok(s)) {
                return Some(addr);
            }
        }
        // The walk may end early on a small weighted list; fall back to any usable server.
        self.servers.iter().find(|s| ok(s)).map(|s| s.addr)
    }

    /// Records an active check result, flipping the server at the `fails`/`passes` thresholds.
    pub fn observe_check(&self, server: &Server, ok: bool) {
        let (fails, passes) = self
            .cfg
            .health
            .as_ref()
            .map_or((1, 1), |h| (h.fails, h.passes));
        if ok {
            server.fails.store(0, Ordering::Relaxed);
            let n = server.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if !server.is_healthy() && n >= passes {
                server.retry_at_ms.store(0, Ordering::Relaxed);
                server.set_healthy(true, &self.cfg.name);
            }
        } else {
            server.passes.store(0, Ordering::Relaxed);
            let n = server.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if server.is_healthy() && n >= fails {
                server.set_healthy(false, &self.cfg.name);
            }
        }
    }

    /// Passive check: a connection to `addr` failed. Counts like a failed active check;
    /// without active checks the server is retried after `PASSIVE_RETRY`.
    pub fn report_connect_failure(&self, addr: &SocketAddr) {
        let Some(server) = self.by_addr(addr) else {
            return;
        };
        self.observe_check(server, false);
        if self.cfg.health.is_none() && !server.is_healthy() {
            let at = self.now_ms() + u64::try_from(PASSIVE_RETRY.as_millis()).unwrap_or(10_000);
            server.retry_at_ms.store(at, Ordering::Relaxed);
        }
    }

    /// Passive check: a response came back from `addr`.
    pub fn report_success(&self, addr: &SocketAddr) {
        let Some(server) = self.by_addr(addr) else {
            return;
        };
        if self.cfg.health.is_none() {
            server.fails.store(0, Ordering::Relaxed);
            if !server.is_healthy() {
                server.retry_at_ms.store(0, Ordering::Relaxed);
                server.set_healthy(true, &self.cfg.name);
            }
        }
    }
}

/// The certificates of a PEM file (`origin.ca`, checked when the config was loaded).
fn load_ca(origin: &str, path: &std::path::Path) -> Option<Arc<pingora::protocols::tls::CaType>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs: Vec<pingora::utils::tls::WrappedX509> = match CertificateDer::pem_file_iter(path) {
        Ok(iter) => iter
            .filter_map(Result::ok)
            // Only certificates rustls accepts as roots (and so parse as X.509).
            .filter(|der| {
                pingora::tls::RootCertStore::empty()
                    .add(der.clone())
                    .is_ok()
            })
            .map(|der| {
                pingora::utils::tls::WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509)
            })
            .collect(),
        Err(e) => {
            tracing::error!(%origin, path = %path.display(), error = %e, "cannot read origin.ca");
            Vec::new()
        }
    };
    if certs.is_empty() {
        tracing::error!(%origin, path = %path.display(), "origin.ca holds no usable certificate: using the system roots");
        return None;
    }
    Some(Arc::from(certs.into_boxed_slice()))
}
