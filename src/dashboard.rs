//! State behind `GET /dashboard` (interface.md §5): a short history of rates sampled once a
//! second (so the page has charts as soon as it opens) and the last purges with their
//! latency. The page itself is `admin/dashboard.html`; its data is `GET /dashboard/data`.

use crate::state::Shared;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

/// Samples kept: 5 minutes at one a second.
const HISTORY: usize = 300;
/// Purges kept for the page.
const PURGES: usize = 20;

/// One point of the charts: rates over the second before `t`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix time in milliseconds.
    pub t: u64,
    /// Client requests per second.
    pub rps: f64,
    /// 5xx answers per second.
    pub err_ps: f64,
    /// Response body bytes per second to clients.
    pub bps: f64,
    /// Share of cacheable lookups answered from cache (hit or stale), any tier.
    pub hit: Option<f64>,
    /// Memory-tier lookups that hit.
    pub hit_memory: Option<f64>,
    /// Disk-tier lookups that hit.
    pub hit_disk: Option<f64>,
    /// Mean origin response time (ms) per origin; `None` when it had no response.
    pub latency_ms: BTreeMap<String, Option<f64>>,
}

/// A purge as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeRecord {
    /// Unix time in milliseconds.
    pub at: u64,
    pub id: String,
    /// `admin`, `method`, `cli`, ...
    pub via: String,
    pub who: String,
    /// What was purged, e.g. `tags: product-42` (shortened).
    pub what: String,
    pub soft: bool,
    pub purged: Option<u64>,
    pub took_ms: f64,
}

/// Counters at the previous sample.
#[derive(Debug, Default)]
struct Prev {
    t: u64,
    requests: u64,
    errors: u64,
    bytes: u64,
    /// (hits incl. stale, cacheable lookups)
    lookups: (u64, u64),
    memory: (u64, u64),
    disk: (u64, u64),
    latency: BTreeMap<String, (u64, u64)>,
}

/// The dashboard's shared state.
#[derive(Debug, Default)]
pub struct Dashboard {
    history: Mutex<VecDeque<Sample>>,
    purges: Mutex<VecDeque<PurgeRecord>>,
    prev: Mutex<Option<Prev>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ratio(now: (u64, u64), before: (u64, u64)) -> Option<f64> {
    let hits = now.0.saturating_sub(before.0);
    let total = now.1.saturating_sub(before.1);
    (total > 0).then(|| hits as f64 / total as f64)
}

fn per_s(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

impl Dashboard {
    /// Remembers a finished purge (the newest first on the page).
    pub fn record_purge(&self, rec: PurgeRecord) {
        let mut p = self.purges.lock();
        if p.len() == PURGES {
            p.pop_back();
        }
        p.push_front(rec);
    }

    /// Takes one sample of `shared`'s counters (the first call only sets the baseline).
    pub fn sample(&self, shared: &Shared) {
        let t = now_ms();
        let m = &shared.metrics;
        let classes: Vec<u64> = m.requests_by_class.iter().map(|c| c.get()).collect();
        let lookups = m.lookup_counts();
        // hit, miss, stale, pass, expired; pass is not a cacheable lookup.
        let sum = |r: usize| lookups.get(r).map_or(0, |t| t.iter().sum::<u64>());
        let stats = shared.cache.storage.stats();
        let rt = shared.runtime.load();
        let now = Prev {
            t,
            requests: classes.iter().sum(),
            errors: classes.get(4).copied().unwrap_or(0),
            bytes: m.sent_bytes.get(),
            lookups: (sum(0) + sum(2), sum(0) + sum(1) + sum(2) + sum(4)),
            memory: (stats.memory.hits, stats.memory.hits + stats.memory.misses),
            disk: stats
                .disk
                .map_or((0, 0), |d| (d.tier.hits, d.tier.hits + d.tier.misses)),
            latency: rt
                .pools
                .pools
                .iter()
                .map(|p| (p.name().to_string(), p.latency.get()))
                .collect(),
        };
        let mut prev = self.prev.lock();
        if let Some(before) = prev.as_ref() {
            let secs = (t.saturating_sub(before.t) as f64 / 1000.0).max(0.001);
            let latency_ms = now
                .latency
                .iter()
                .map(|(name, &(count, micros))| {
                    let (c0, u0) = before.latency.get(name).copied().unwrap_or((0, 0));
                    let n = count.saturating_sub(c0);
                    let ms = (n > 0).then(|| micros.saturating_sub(u0) as f64 / n as f64 / 1000.0);
                    (name.clone(), ms)
                })
                .collect();
            let s = Sample {
                t,
                rps: per_s(now.requests, before.requests, secs),
                err_ps: per_s(now.errors, before.errors, secs),
                bps: per_s(now.bytes, before.bytes, secs),
                hit: ratio(now.lookups, before.lookups),
                hit_memory: ratio(now.memory, before.memory),
                hit_disk: stats.disk.and_then(|_| ratio(now.disk, before.disk)),
                latency_ms,
            };
            let mut h = self.history.lock();
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(s);
        }
        *prev = Some(now);
    }

    /// Samples newer than `since` (Unix ms).
    fn history_since(&self, since: u64) -> Vec<Sample> {
        self.history
            .lock()
            .iter()
            .filter(|s| s.t > since)
            .cloned()
            .collect()
    }

    fn purges(&self) -> Vec<PurgeRecord> {
        self.purges.lock().iter().cloned().collect()
    }
}

/// Samples `shared` every second on a thread of its own until `shared` is dropped.
pub fn start_sampler(shared: &Arc<Shared>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || loop {
            match weak.upgrade() {
                Some(shared) => shared.dashboard.sample(&shared),
                None => return,
            }
            std::thread::sleep(Duration::from_secs(1));
        });
    if let Err(e) = spawned {
        tracing::warn!("dashboard sampler not started: {e}");
    }
}

/// `GET /dashboard/data?since=MS`: current state plus the samples newer than `since`.
/// `cache` is the cache section of `/status` (the same numbers).
pub fn data(shared: &Shared, cache: Value, since: u64) -> Value {
    let rt = shared.runtime.load();
    let m = &shared.metrics;
    let classes: BTreeMap<&str, u64> = crate::metrics::STATUS_CLASSES
        .iter()
        .zip(m.requests_by_class.iter())
        .map(|(k, c)| (*k, c.get()))
        .collect();
    let lookups = m.lookup_counts();
    let names = ["hit", "miss", "stale", "pass", "expired"];
    let lookups: BTreeMap<&str, u64> = names
        .iter()
        .zip(lookups.iter())
        .map(|(k, t)| (*k, t.iter().sum()))
        .collect();
    let mut tiers = vec![tier_json(
        "memory",
        &cache["memory"],
        rt.cfg.cache.memory,
        "ok",
    )];
    if let Some(d) = &rt.cfg.cache.disk {
        let state = cache["disk"]["state"].as_str().unwrap_or("ok").to_string();
        tiers.push(tier_json("disk", &cache["disk"], d.size, &state));
    }
    let origins: Vec<Value> = rt
        .pools
        .pools
        .iter()
        .map(|p| {
            let servers: Vec<Value> = p
                .servers
                .iter()
                .map(|s| {
                    json!({
                        "addr": s.label,
                        "weight": s.weight,
                        "healthy": s.is_healthy(),
                        "active": s.active(),
                        "requests": s.requests.iter().map(|c| c.get()).sum::<u64>(),
                    })
                })
                .collect();
            json!({ "name": p.name(), "healthy": p.healthy_count(), "servers": servers })
        })
        .collect();
    let cluster = rt.cfg.cluster.as_ref().map(|c| {
        let mut v = shared.fleet.as_ref().map_or_else(
            || json!({ "node": c.node, "engine": "down", "nodes": [] }),
            |f| f.status(),
        );
        v["nats"] = json!(c.nats);
        v["peers"] = json!(c.peers.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        v
    });
    json!({
        "now": now_ms(),
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": rt.cfg.hash,
        "uptime_s": shared.started.elapsed().as_secs(),
        "requests": { "total": classes.values().sum::<u64>(), "by_class": classes },
        "sent_bytes": m.sent_bytes.get(),
        "connections": m.open_connections(),
        "inflight": shared.inflight(),
        "lookups": lookups,
        "tiers": tiers,
        "origins": origins,
        "purges": shared.dashboard.purges(),
        "cluster": cluster,
        "history": shared.dashboard.history_since(since),
    })
}

fn tier_json(name: &str, stats: &Value, bound: u64, state: &str) -> Value {
    json!({
        "tier": name,
        "objects": stats["objects"],
        "bytes": stats["bytes"],
        "bound": bound,
        "hits": stats["hits"],
        "misses": stats["misses"],
        "state": state,
    })
}

/// A short description of what a purge request names, for the purge list.
pub fn describe(req: &crate::cache::purge::PurgeRequest) -> String {
    let mut parts = Vec::new();
    if req.all {
        parts.push("everything".to_string());
    }
    for (label, list) in [
        ("urls", &req.urls),
        ("tags", &req.tags),
        ("prefixes", &req.prefixes),
        ("hosts", &req.hosts),
    ] {
        if !list.is_empty() {
            let mut shown: Vec<&str> = list.iter().take(3).map(String::as_str).collect();
            let more = list.len().saturating_sub(3);
            let extra = if more > 0 {
                format!(" (+{more})")
            } else {
                String::new()
            };
            shown.dedup();
            parts.push(format!("{label}: {}{extra}", shown.join(", ")));
        }
    }
    let mut s = parts.join("; ");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_list_keeps_the_newest_twenty() {
        let d = Dashboard::default();
        for i in 0..25u64 {
            d.record_purge(PurgeRecord {
                at: i,
                id: i.to_string(),
                via: "admin".into(),
                who: String::new(),
                what: String::new(),
                soft: false,
                purged: Some(i),
                took_ms: 0.1,
            });
        }
        let p = d.purges();
        assert_eq!(p.len(), PURGES);
        assert_eq!(p.first().map(|r| r.at), Some(24));
        assert_eq!(p.last().map(|r| r.at), Some(5));
    }

    #[test]
    fn ratios_need_lookups() {
        assert_eq!(ratio((5, 10), (5, 10)), None);
        assert_eq!(ratio((8, 14), (5, 10)), Some(0.75));
    }
}
