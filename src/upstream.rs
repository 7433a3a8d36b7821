//! Origin pools: one `Pool` per `[[origin]]`, server selection and health state.
//! `proxy` asks a pool for a server; `health` flips servers in and out of rotation.

pub mod health;
pub mod pool;

pub use pool::{Pool, Server};

use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::Arc;

/// Every origin pool, indexed like `Config::origins`.
#[derive(Debug)]
pub struct OriginPools {
    pub pools: Vec<Arc<Pool>>,
}

impl OriginPools {
    /// Builds the pools of a validated config.
    pub fn from_config(cfg: &Config, metrics: &Metrics) -> Self {
        let pools = cfg
            .origins
            .iter()
            .map(|o| Arc::new(Pool::new(o.clone(), metrics)))
            .collect();
        Self { pools }
    }

    /// Carries health state over from the pools of the previous config, for servers that
    /// stay (same origin name and address), so a reload does not put dead servers back.
    pub fn inherit_health(&self, old: &OriginPools) {
        for pool in &self.pools {
            let Some(prev) = old.pools.iter().find(|p| p.name() == pool.name()) else {
                continue;
            };
            for s in &pool.servers {
                if let Some(o) = prev.servers.iter().find(|o| o.addr == s.addr) {
                    s.copy_health(o, pool.name());
                }
            }
        }
    }

    /// The pool at `index` (route targets are validated indices).
    pub fn get(&self, index: usize) -> Option<&Arc<Pool>> {
        self.pools.get(index)
    }
}
