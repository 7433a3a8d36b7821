//! Operations behind the admin API: purge, config reload/rollback, status of the cache.
//! The purge path (`run_purge`) takes a parsed request and does not care whether it came
//! from the admin API, the PURGE method or (later) a fleet message bus.

use crate::admin::Ops;
use crate::cache::key;
use crate::cache::purge::PurgeRequest;
use crate::config::Config;
use crate::state::{Runtime, Shared};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// The live implementation of `admin::Ops`.
#[derive(Debug)]
pub struct LiveOps {
    shared: Arc<Shared>,
    /// The config before the last successful reload or rollback.
    previous: Mutex<Option<Arc<Config>>>,
    /// `disk_errors()` when the metric was last brought up to date.
    disk_errors_seen: std::sync::atomic::AtomicU64,
}

impl LiveOps {
    /// Operations over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            previous: Mutex::new(None),
            disk_errors_seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Swaps in `cfg` atomically; in-flight requests keep the runtime they started with.
    fn swap(&self, cfg: Arc<Config>) -> Value {
        let old = self.shared.runtime.load_full();
        let restart: Vec<&str> = [
            (old.cfg.server.listen != cfg.server.listen, "server.listen"),
            (old.cfg.admin.listen != cfg.admin.listen, "admin.listen"),
            (
                old.cfg.server.threads != cfg.server.threads,
                "server.threads",
            ),
            (old.cfg.cache.memory != cfg.cache.memory, "cache.memory"),
            (
                old.cfg.tls.as_ref().map(|t| &t.listen) != cfg.tls.as_ref().map(|t| &t.listen),
                "tls.listen",
            ),
            (
                old.cfg.cache.disk.as_ref().map(|d| &d.path)
                    != cfg.cache.disk.as_ref().map(|d| &d.path),
                "cache.disk",
            ),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect();
        let hash = cfg.hash.clone();
        if let (Some(store), Some(tls)) = (&self.shared.certs, &cfg.tls) {
            // New handshakes get the new certificates; open connections keep theirs.
            match store.reload(tls) {
                Ok(()) => tracing::info!(certs = tls.certs.len(), "TLS certificates reloaded"),
                Err(e) => tracing::error!("TLS certificates not reloaded, the old ones stay: {e}"),
            }
        }
        let rt = Runtime::new(cfg, &self.shared.metrics);
        rt.pools.inherit_health(&old.pools);
        self.shared.runtime.store(Arc::new(rt));
        *self.previous.lock() = Some(old.cfg.clone());
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "config changes that need a restart were not applied");
        }
        tracing::info!(hash, "config swapped");
        json!({ "ok": true, "hash": hash, "previous_hash": old.cfg.hash, "restart_required": restart })
    }
}

/// Absolute URL → primary keys for both schemes (a purge by URL hits http and https copies).
fn url_keys(url: &str, filter: &key::QueryFilter) -> Vec<String> {
    let (rest, _) = match url.split_once("://") {
        Some((s, r)) => (r, s),
        None => (url, "http"),
    };
    let (authority, pq) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = match authority.rsplit_once(':') {
        Some((h, p))
            if p.parse::<u16>().is_ok() && !h.ends_with(']')
                || authority.starts_with('[') && p.parse::<u16>().is_ok() =>
        {
            h
        }
        _ => authority,
    };
    let pq = if pq.starts_with('?') {
        format!("/{pq}")
    } else {
        pq.to_string()
    };
    ["http", "https"]
        .iter()
        .map(|s| key::primary_key(s, host, &pq, filter))
        .collect()
}

/// Runs a purge from any source (API, PURGE method, CLI): applied here, then, with
/// `[cluster]`, sent to every node (the answer gains `fleet`; 202 when some live node has not
/// acknowledged within `purge_wait`).
pub async fn run_purge(shared: &Shared, req: PurgeRequest, who: &str, via: &str) -> (u16, Value) {
    let wait = req.wait.unwrap_or(true);
    let input = req.clone();
    let (status, mut body) = apply_purge(shared, req, who, via).await;
    let Some(fleet) = shared.fleet.as_ref().filter(|_| status == 200) else {
        return (status, body);
    };
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let (complete, answer) = fleet.broadcast(&input, &id, wait).await;
    if complete {
        shared
            .metrics
            .cluster_purge_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    body["fleet"] = answer;
    (if complete || !wait { 200 } else { 202 }, body)
}

/// Applies a purge on this node only; returns the API's status and JSON answer.
/// Logs one audit line and counts `outpost_purges_total`.
pub async fn apply_purge(
    shared: &Shared,
    mut req: PurgeRequest,
    who: &str,
    via: &str,
) -> (u16, Value) {
    if let Err(e) = req.validate() {
        return (400, json!({ "error": e.to_string() }));
    }
    let rt = shared.runtime.load();
    let input = req.clone();
    req.urls = req
        .urls
        .iter()
        .flat_map(|u| url_keys(u, &rt.cache.filter))
        .collect();
    let result = crate::cache::purge::run(shared.cache.storage, &req).await;
    for (kind, n) in result.counts.iter() {
        for _ in 0..n.min(1) {
            shared.metrics.purge(kind, result.soft);
        }
    }
    let took_ms = (result.took.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    tracing::info!(
        target: "audit",
        who, via, urls = ?input.urls, tags = ?input.tags, prefixes = ?input.prefixes, hosts = ?input.hosts,
        all = input.all, soft = input.soft, purged = ?result.purged, took_ms, "purge"
    );
    shared
        .dashboard
        .record_purge(crate::dashboard::PurgeRecord {
            at: crate::dashboard::now_ms(),
            id: result.id.to_string(),
            via: via.to_string(),
            who: who.to_string(),
            what: crate::dashboard::describe(&input),
            soft: result.soft,
            purged: result.purged,
            took_ms,
        });
    (
        200,
        json!({ "id": result.id.to_string(), "purged": result.purged, "took_ms": took_ms }),
    )
}

#[async_trait]
impl Ops for LiveOps {
    async fn purge(&self, body: &[u8], who: &str) -> (u16, Value) {
        match PurgeRequest::from_json(body) {
            Ok(req) => run_purge(&self.shared, req, who, "admin").await,
            Err(e) => (400, json!({ "error": e.to_string() })),
        }
    }

    async fn reload(&self) -> (u16, Value) {
        let current = self.shared.runtime.load_full();
        let Some(path) = current.cfg.source.clone() else {
            return (
                409,
                json!({ "error": "this config was not loaded from a file (demo)" }),
            );
        };
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&path)).await;
        match loaded {
            Ok(Ok(cfg)) => (200, self.swap(Arc::new(cfg))),
            Ok(Err(errs)) => {
                let lines: Vec<String> = errs.0.clone();
                tracing::warn!(errors = lines.len(), "config reload refused");
                (
                    422,
                    json!({ "error": "invalid configuration; the running config is unchanged", "errors": lines }),
                )
            }
            Err(e) => (500, json!({ "error": format!("reload failed: {e}") })),
        }
    }

    async fn rollback(&self) -> (u16, Value) {
        let previous = self.previous.lock().clone();
        match previous {
            Some(cfg) => (200, self.swap(cfg)),
            None => (
                409,
                json!({ "error": "no previous config to roll back to" }),
            ),
        }
    }

    fn config(&self) -> Value {
        let rt = self.shared.runtime.load();
        json!({ "hash": rt.cfg.hash, "source": rt.cfg.source, "config": &*rt.cfg })
    }

    fn cache_status(&self) -> Value {
        let stats = self.shared.cache.storage.stats();
        self.shared
            .metrics
            .set_tier("memory", stats.memory.objects, stats.memory.bytes);
        if let Some(d) = stats.disk {
            let m = &self.shared.metrics;
            m.set_tier("disk", d.tier.objects, d.tier.bytes);
            if let Some(path) = self.shared.cache.storage.disk_path() {
                m.set_disk_up(path, d.state == "ok");
            }
        }
        let errors = self.shared.cache.storage.disk_errors();
        let seen = self
            .disk_errors_seen
            .swap(errors, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .metrics
            .disk_errors
            .inc_by(errors.saturating_sub(seen));
        serde_json::to_value(stats).unwrap_or(Value::Null)
    }
}

/// Work done once at shutdown, after requests drained: flush and close the disk tier.
pub async fn shutdown_hooks(shared: &Shared) {
    shared.cache.storage.close().await;
}

#[cfg(test)]
mod tests {
    use super::url_keys;
    use crate::cache::key::QueryFilter;

    #[test]
    fn purge_urls_cover_both_schemes_and_drop_ports() {
        let f = QueryFilter::new(&["utm_*".to_string()]);
        assert_eq!(
            url_keys("http://Example.Test:8080/a.css?utm_x=1&v=2", &f),
            vec![
                "http://example.test/a.css?v=2".to_string(),
                "https://example.test/a.css?v=2".to_string()
            ]
        );
        assert_eq!(url_keys("https://a.test", &f)[0], "http://a.test/");
    }
}
