//! Operations behind the admin API: purge, config reload/rollback, status of the cache.
//! The purge path takes a parsed request and does not care whether it came from the
//! admin API, the PURGE method or (later) a fleet message bus.

use crate::admin::Ops;
use crate::state::Shared;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

/// The live implementation of `admin::Ops`.
#[derive(Debug)]
pub struct LiveOps {
    shared: Arc<Shared>,
}

impl LiveOps {
    /// Operations over the shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl Ops for LiveOps {
    async fn purge(&self, _body: &[u8], _who: &str) -> (u16, Value) {
        (503, json!({ "error": "cache not available" }))
    }

    async fn reload(&self) -> (u16, Value) {
        (501, json!({ "error": "reload not implemented yet" }))
    }

    async fn rollback(&self) -> (u16, Value) {
        (501, json!({ "error": "rollback not implemented yet" }))
    }

    fn config(&self) -> Value {
        let rt = self.shared.runtime.load();
        json!({ "hash": rt.cfg.hash, "source": rt.cfg.source })
    }

    fn cache_status(&self) -> Value {
        json!({ "memory": { "objects": 0, "bytes": 0, "hits": 0, "misses": 0 }, "disk": null })
    }
}

/// Work done once at shutdown, after requests drained (disk index flush).
pub async fn shutdown_hooks(_shared: &Shared) {}
