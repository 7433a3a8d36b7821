//! Per-request state carried through the proxy phases.

use crate::state::{InflightGuard, Runtime};
use crate::upstream::pool::ActiveGuard;
use crate::upstream::{Pool, Server};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Per-request context (`ProxyHttp::CTX`).
#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    /// The config this request started with (kept across a reload).
    pub rt: Arc<Runtime>,
    pub inflight: Option<InflightGuard>,
    /// Lower-cased host without port.
    pub host: String,
    pub route: Option<usize>,
    pub pool: Option<Arc<Pool>>,
    pub client_ip: Option<IpAddr>,
    /// Servers whose connect failed for this request (not picked again on retry).
    pub tried: Vec<SocketAddr>,
    pub attempts: usize,
    /// A server whose reused connection just failed: avoided by the retry when possible.
    pub avoid: Option<SocketAddr>,
    /// Retries taken after a reused connection failed, not counted in `attempts`.
    pub free_retries: u8,
    pub server: Option<Arc<Server>>,
    pub active: Option<ActiveGuard>,
    pub upstream_started: Option<Instant>,
    pub upstream_ms: Option<f64>,
    /// The Cache-Status value sent (for the access log).
    pub cache_status: Option<String>,
    /// Whether this request may use the cache (route.cache and method).
    pub cacheable_route: bool,
    /// Set when the proxy answered the request itself (error pages, purge).
    pub local_status: Option<u16>,
    pub cache: crate::cache::CacheCtx,
    /// The owning peer this request was sent to (peering), if any.
    pub peer: Option<std::net::SocketAddr>,
    /// The owner failed (connect, 5xx): go to the origin.
    pub peer_failed: bool,
    /// A peer asked with a purge floor this node has not reached: stored copies are
    /// revalidated with the origin, never handed out as they are.
    pub fleet_behind: bool,
    /// With peering and a fleet: the purge floor sent to an owning peer.
    pub fleet_floor: Option<u64>,
}

impl RequestCtx {
    /// A fresh context at request start, on the runtime (config) current now.
    pub fn new(rt: Arc<Runtime>) -> Self {
        Self {
            started: Instant::now(),
            rt,
            inflight: None,
            host: String::new(),
            route: None,
            pool: None,
            client_ip: None,
            tried: Vec::new(),
            attempts: 0,
            avoid: None,
            free_retries: 0,
            server: None,
            active: None,
            upstream_started: None,
            upstream_ms: None,
            cache_status: None,
            cacheable_route: false,
            local_status: None,
            cache: crate::cache::CacheCtx::default(),
            peer: None,
            peer_failed: false,
            fleet_behind: false,
            fleet_floor: None,
        }
    }
}
