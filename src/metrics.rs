//! Every metric outpost exports, in one registry (interface.md §6).
//! Hot paths take pre-created handles (no label allocation per request);
//! gauges that mirror other state (cache sizes) are refreshed when `/metrics` is scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;
type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Status classes used as label values, indexed by `status / 100 - 1`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into `STATUS_CLASSES` for a status code.
pub fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Result label of `outpost_cache_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    Stale,
    Pass,
    Expired,
}

impl LookupResult {
    const ALL: [LookupResult; 5] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Pass,
        Self::Expired,
    ];
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Pass => "pass",
            Self::Expired => "expired",
        }
    }
}

/// Tier label of `outpost_cache_lookups_total` and the cache gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierLabel {
    Memory,
    Disk,
    None,
}

impl TierLabel {
    const ALL: [TierLabel; 3] = [Self::Memory, Self::Disk, Self::None];
    fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::None => "none",
        }
    }
}

/// The registry and every metric family.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    _lookups: Family<Labels, Counter>,
    lookup_handles: Vec<Counter>,
    /// `outpost_cache_objects{tier}`
    pub cache_objects: Family<Labels, Gauge>,
    /// `outpost_cache_bytes{tier}`
    pub cache_bytes: Family<Labels, Gauge>,
    /// `outpost_cache_coalesced_total`
    pub coalesced: Counter,
    /// `outpost_cache_disk_errors_total`
    pub disk_errors: Counter,
    /// `outpost_cache_disk_up{path}` (no series without a disk tier)
    disk_up: Family<Labels, Gauge>,
    origin_requests: Family<Labels, Counter>,
    origin_up: Family<Labels, Gauge>,
    purges: Family<Labels, Counter>,
    /// `outpost_request_duration_seconds`
    pub request_duration: Histogram,
    origin_duration: HistFamily,
    /// `outpost_refused_total{reason="rate_limit"}`
    pub refused_rate_limit: Counter,
    /// `outpost_refused_total{reason="acl"}`
    pub refused_acl: Counter,
    /// `outpost_refused_total{reason="conn_limit"}`
    pub refused_conn_limit: Counter,
    /// `outpost_connections{listener}`
    pub connections: Family<Labels, Gauge>,
    /// `outpost_cluster_up`
    pub cluster_up: Gauge,
    /// `outpost_cluster_purge_lag`
    pub cluster_lag: Gauge,
    /// `outpost_cluster_purge_seconds`
    pub cluster_purge_seconds: Histogram,
    /// `outpost_sent_bytes_total`: response body bytes sent to clients (not in the contract;
    /// the dashboard's and Grafana's bandwidth).
    pub sent_bytes: Counter,
    /// Client requests per status class (all routes; the dashboard's request rate).
    pub requests_by_class: [Counter; 5],
    /// Origin response times per origin name, for the dashboard (the histogram cannot be read).
    origin_latency: parking_lot::Mutex<std::collections::BTreeMap<String, Arc<Latency>>>,
}

/// Count and sum of origin response times of one origin (read by the dashboard sampler).
#[derive(Debug, Default)]
pub struct Latency {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Latency {
    /// Records one response time.
    pub fn record(&self, secs: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int cast: a negative or NaN duration counts as 0.
        self.micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// (responses, total microseconds) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed),
        )
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let lookups = Family::<Labels, Counter>::default();
        let cache_objects = Family::<Labels, Gauge>::default();
        let cache_bytes = Family::<Labels, Gauge>::default();
        let coalesced = Counter::default();
        let disk_errors = Counter::default();
        let disk_up = Family::<Labels, Gauge>::default();
        let origin_requests = Family::<Labels, Counter>::default();
        let origin_up = Family::<Labels, Gauge>::default();
        let purges = Family::<Labels, Counter>::default();
        let request_duration = duration_histogram();
        let origin_duration: HistFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "outpost_requests",
            "Client requests by route and status class",
            requests.clone(),
        );
        registry.register(
            "outpost_cache_lookups",
            "Cache lookups by result and tier",
            lookups.clone(),
        );
        registry.register(
            "outpost_cache_objects",
            "Objects stored per tier",
            cache_objects.clone(),
        );
        registry.register(
            "outpost_cache_bytes",
            "Bytes stored per tier",
            cache_bytes.clone(),
        );
        registry.register(
            "outpost_cache_coalesced",
            "Requests that waited on another request's fetch",
            coalesced.clone(),
        );
        registry.register(
            "outpost_cache_disk_errors",
            "Disk tier I/O errors",
            disk_errors.clone(),
        );
        registry.register(
            "outpost_cache_disk_up",
            "1 when the disk tier is in use, 0 while it is out after read failures (memory only)",
            disk_up.clone(),
        );
        registry.register(
            "outpost_origin_requests",
            "Requests sent to origin servers",
            origin_requests.clone(),
        );
        registry.register(
            "outpost_origin_up",
            "1 when the origin server is in rotation, 0 when out",
            origin_up.clone(),
        );
        registry.register("outpost_purges", "Purge operations by kind", purges.clone());
        registry.register(
            "outpost_request_duration_seconds",
            "Client request duration",
            request_duration.clone(),
        );
        registry.register(
            "outpost_origin_duration_seconds",
            "Origin response time (to headers)",
            origin_duration.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "outpost_refused",
            "Requests or connections refused by a limit or an ACL",
            refused.clone(),
        );
        let reason = |r: &str| {
            refused
                .get_or_create(&vec![("reason", r.to_string())])
                .clone()
        };
        let (refused_rate_limit, refused_acl, refused_conn_limit) =
            (reason("rate_limit"), reason("acl"), reason("conn_limit"));
        let connections = Family::<Labels, Gauge>::default();
        registry.register(
            "outpost_connections",
            "Open client connections per listener kind",
            connections.clone(),
        );
        for l in ["proxy", "tls"] {
            let _ = connections.get_or_create(&vec![("listener", l.to_string())]);
        }
        let cluster_up = Gauge::default();
        let cluster_lag = Gauge::default();
        let cluster_purge_seconds = duration_histogram();
        registry.register(
            "outpost_cluster_up",
            "1 while connected to the fleet's engine, 0 not",
            cluster_up.clone(),
        );
        registry.register(
            "outpost_cluster_purge_lag",
            "Purges in the stream this node has not applied",
            cluster_lag.clone(),
        );
        registry.register(
            "outpost_cluster_purge_seconds",
            "Fleet purge: accepted here until every live node acknowledged",
            cluster_purge_seconds.clone(),
        );
        let sent_bytes = Counter::default();
        registry.register(
            "outpost_sent_bytes",
            "Response body bytes sent to clients",
            sent_bytes.clone(),
        );
        let mut lookup_handles = Vec::new();
        for r in LookupResult::ALL {
            for t in TierLabel::ALL {
                let labels = vec![
                    ("result", r.as_str().to_string()),
                    ("tier", t.as_str().to_string()),
                ];
                lookup_handles.push(lookups.get_or_create(&labels).clone());
            }
        }
        for t in ["memory", "disk"] {
            let labels = vec![("tier", t.to_string())];
            let _ = cache_objects.get_or_create(&labels);
            let _ = cache_bytes.get_or_create(&labels);
        }
        for kind in ["url", "tag", "prefix", "host", "all"] {
            for soft in ["false", "true"] {
                let _ = purges.get_or_create(&vec![
                    ("kind", kind.to_string()),
                    ("soft", soft.to_string()),
                ]);
            }
        }
        Self {
            registry,
            requests,
            _lookups: lookups,
            lookup_handles,
            cache_objects,
            cache_bytes,
            coalesced,
            disk_errors,
            disk_up,
            origin_requests,
            origin_up,
            purges,
            request_duration,
            origin_duration,
            refused_rate_limit,
            refused_acl,
            refused_conn_limit,
            connections,
            cluster_up,
            cluster_lag,
            cluster_purge_seconds,
            sent_bytes,
            requests_by_class: Default::default(),
            origin_latency: Default::default(),
        }
    }

    /// The dashboard's response-time counters of `origin` (shared by every pool of that name,
    /// so they carry over reloads).
    pub fn origin_latency(&self, origin: &str) -> Arc<Latency> {
        self.origin_latency
            .lock()
            .entry(origin.to_string())
            .or_default()
            .clone()
    }

    /// Cache lookups so far, indexed `[result][tier]` in the order
    /// hit, miss, stale, pass, expired × memory, disk, none.
    pub fn lookup_counts(&self) -> [[u64; 3]; 5] {
        let mut out = [[0u64; 3]; 5];
        for (i, c) in self.lookup_handles.iter().enumerate() {
            if let Some(slot) = out
                .get_mut(i / TierLabel::ALL.len())
                .and_then(|r| r.get_mut(i % TierLabel::ALL.len()))
            {
                *slot = c.get();
            }
        }
        out
    }

    /// Open client connections over every listener kind.
    pub fn open_connections(&self) -> i64 {
        ["proxy", "tls"]
            .iter()
            .map(|l| {
                self.connections
                    .get_or_create(&vec![("listener", l.to_string())])
                    .get()
            })
            .sum()
    }

    /// Pre-created request counters for one route label, one per status class.
    pub fn route_counters(&self, route: &str) -> [Counter; 5] {
        STATUS_CLASSES.map(|c| {
            self.requests
                .get_or_create(&vec![
                    ("route", route.to_string()),
                    ("status_class", c.to_string()),
                ])
                .clone()
        })
    }

    /// Pre-created origin request counters for one server, one per status class.
    pub fn origin_counters(&self, origin: &str, server: &str) -> [Counter; 5] {
        STATUS_CLASSES.map(|c| {
            self.origin_requests
                .get_or_create(&vec![
                    ("origin", origin.to_string()),
                    ("server", server.to_string()),
                    ("status_class", c.to_string()),
                ])
                .clone()
        })
    }

    /// The `outpost_origin_up` gauge of one server.
    pub fn origin_up(&self, origin: &str, server: &str) -> Gauge {
        self.origin_up
            .get_or_create(&vec![
                ("origin", origin.to_string()),
                ("server", server.to_string()),
            ])
            .clone()
    }

    /// The `outpost_origin_duration_seconds` histogram of one origin.
    pub fn origin_duration(&self, origin: &str) -> Histogram {
        self.origin_duration
            .get_or_create(&vec![("origin", origin.to_string())])
            .clone()
    }

    /// Counts one cache lookup.
    pub fn lookup(&self, result: LookupResult, tier: TierLabel) {
        let ri = LookupResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        let ti = TierLabel::ALL.iter().position(|t| *t == tier).unwrap_or(0);
        if let Some(c) = self.lookup_handles.get(ri * TierLabel::ALL.len() + ti) {
            c.inc();
        }
    }

    /// Counts one purge of `kind` (`url|tag|prefix|host|all`).
    pub fn purge(&self, kind: &'static str, soft: bool) {
        self.purges
            .get_or_create(&vec![
                ("kind", kind.to_string()),
                ("soft", soft.to_string()),
            ])
            .inc();
    }

    /// Sets the per-tier cache gauges.
    pub fn set_tier(&self, tier: &'static str, objects: u64, bytes: u64) {
        let labels = vec![("tier", tier.to_string())];
        self.cache_objects
            .get_or_create(&labels)
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        self.cache_bytes
            .get_or_create(&labels)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Sets `outpost_cache_disk_up{path}`.
    pub fn set_disk_up(&self, path: &std::path::Path, up: bool) {
        self.disk_up
            .get_or_create(&vec![("path", path.display().to_string())])
            .set(i64::from(up));
    }

    /// Prometheus text exposition of everything.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
