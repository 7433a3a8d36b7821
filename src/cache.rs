//! HTTP caching on pingora-cache: key, RFC 9111 policy, storage tiers, purge.
//! The proxy phases call into `CacheLayer`; policy decisions live in `policy.rs` (pure).

pub mod key;
pub mod policy;
pub mod purge;
pub mod storage;
