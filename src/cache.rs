//! HTTP caching on pingora-cache: key, RFC 9111 policy, storage tiers, purge.
//! The proxy phases call into this module; policy decisions live in `policy.rs` (pure).

pub mod key;
pub mod policy;
pub mod purge;
pub mod status;
pub mod storage;

/// Per-request cache state kept in `RequestCtx`.
#[derive(Debug, Default)]
pub struct CacheCtx {
    /// Why the cache was not used (`fwd=bypass` / `fwd=method`), when it was not.
    pub bypass: Option<&'static str>,
    /// Why a fetched response was not stored (`detail=` of a miss).
    pub not_stored: Option<&'static str>,
}

impl CacheCtx {
    /// The `fwd=` value for an error page.
    pub fn fwd_for_error(&self) -> &'static str {
        self.bypass.map_or("uri-miss", |_| "bypass")
    }
}
