//! outpost: a caching edge node on Pingora.
//!
//! Layout:
//! - `cli`, `purge_cli`: command line (`run`, `check`, `demo`, `purge`)
//! - `config`: TOML → validated `Config` (every error with its dotted path)
//! - `app`: `Config` → Pingora server (proxy, admin, health services), signals
//! - `front`: client connections: counts, caps, header and idle timeouts
//! - `state`: shared state; config-derived `Runtime` behind arc-swap
//! - `proxy`: the `ProxyHttp` request path (routing, headers, errors, the cache's phases)
//! - `cache`: below the proxy: cache key, RFC 9111 policy, storage tiers, purge, bans,
//!   slices, the typed Cache-Status (never names proxy, admin or ops types)
//! - `url`, `message`: neutral helpers: the canonical object name, hop-by-hop fields
//! - `upstream`: origin pools, selection, health checks
//! - `admin`, `ops`, `dashboard`: admin API, the operations behind it (the purge service,
//!   reload), the live dashboard
//! - `fleet`: purges across nodes (NATS JetStream) and peering
//!
//! The seams run one way (README "Layers"); `tests/it/layering.rs` checks them.
//! - `tls`: TLS listeners (SNI certificate choice, h2)
//! - `metrics`, `access_log`, `logging`: observability
//! - `demo`: the built-in sample origin

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod fleet;
pub mod front;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod proxy;
pub mod purge_cli;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod url;
