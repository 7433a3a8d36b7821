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
        let pools = cfg.origins.iter().map(|o| Arc::new(Pool::new(o.clone(), metrics))).collect();
        Self { pools }
    }

    /// The pool at `index` (route targets are validated indices).
    pub fn get(&self, index: usize) -> Option<&Arc<Pool>> {
        self.pools.get(index)
    }
}
