//! outpost: a caching edge node on Pingora.
//!
//! Layout:
//! - `cli`: command line (`run`, `check`, `demo`, `purge`)
//! - `config`: TOML → validated `Config` (every error with its dotted path)
//! - `app`: `Config` → Pingora server (proxy, admin, health services)
//! - `proxy`: the `ProxyHttp` request path (routing, headers, errors, cache hooks)
//! - `cache`: cache key, RFC 9111 policy, storage tiers, purge
//! - `upstream`: origin pools, selection, health checks
//! - `admin`: admin API (health, readiness, status, metrics, purge)
//! - `metrics`: every metric in one registry
//! - `demo`: the built-in sample origin

pub mod cache;
pub mod config;
