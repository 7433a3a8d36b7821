//! Operations behind the admin API: purge, config reload/rollback, status of the cache.
//! The purge service (`ops/purge.rs`) takes a typed request and does not care whether it came
//! from the admin API, the PURGE method or a fleet message.

pub mod purge;

use crate::admin::Ops;
use crate::cache::purge::{PurgeError, PurgeRequest};
use crate::config::Config;
use crate::state::{Runtime, Shared};
use async_trait::async_trait;
use parking_lot::Mutex;
use purge::PurgeOutcome;
use serde_json::{json, Value};
use std::sync::Arc;

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

#[async_trait]
impl Ops for LiveOps {
    async fn purge(&self, req: PurgeRequest, who: &str) -> Result<PurgeOutcome, PurgeError> {
        purge::run(&self.shared, req, who, "admin").await
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
