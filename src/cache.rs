//! HTTP caching on pingora-cache, below the proxy: `key` builds keys, `policy` decides
//! (pure RFC 9111), `storage` stores (memory and disk tiers), `purge` bans, `slice` cuts
//! media into slice objects. The proxy phases that drive it are `proxy/caching.rs`; nothing
//! here names a proxy, admin or operations type (`tests/it/layering.rs` checks).

pub(crate) mod bans;
pub(crate) mod files;
pub mod key;
pub mod policy;
pub mod purge;
pub mod slice;
pub mod status;
pub mod storage;

use crate::config::CacheConfig;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::predictor::Predictor;
use pingora::cache::CacheMeta;
use pingora::http::{RequestHeader, ResponseHeader};
use policy::{Decision, Defaults, RequestDirectives};
use std::time::{Duration, SystemTime};
use storage::Storage;

/// Config-derived cache rules (swapped with the config on reload).
#[derive(Debug)]
pub struct Rules {
    pub defaults: Defaults,
    pub filter: crate::url::QueryFilter,
    pub max_object: usize,
    pub lock_timeout: Duration,
}

impl Rules {
    /// Rules of a `[cache]` section.
    pub fn from_config(cfg: &CacheConfig) -> Self {
        Self {
            defaults: Defaults::from_config(cfg),
            filter: crate::url::QueryFilter::new(&cfg.ignore_query_params),
            max_object: usize::try_from(cfg.max_object).unwrap_or(usize::MAX),
            lock_timeout: cfg.lock_timeout,
        }
    }
}

/// The process-wide cache: storage, lock table and predictor, all `'static` for pingora.
pub struct CacheLayer {
    pub storage: &'static Storage,
    lock: &'static CacheKeyLockImpl,
    predictor: &'static Predictor<16>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// `NoCacheReason::Custom` values that depend on the request, not the URL: never
/// remembered by the predictor (the next request may well be cacheable).
fn request_dependent(reason: &'static str) -> bool {
    matches!(
        reason,
        "authorization" | "request-no-store" | "status" | "method"
    )
}

impl CacheLayer {
    /// Turns pingora's cache on for one request with this layer's storage, predictor and lock.
    pub fn enable_on(
        &self,
        cache: &mut pingora::cache::HttpCache,
        overrides: pingora::cache::CacheOptionOverrides,
    ) {
        cache.enable(
            self.storage,
            None,
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
    }

    /// Wraps an opened storage; leaks the pieces pingora needs as `'static`.
    pub fn new(storage: Storage, lock_age_timeout: Duration) -> Self {
        let lock: &'static CacheLock = Box::leak(CacheLock::new_boxed(
            lock_age_timeout.max(Duration::from_secs(1)),
        ));
        Self {
            storage: Box::leak(Box::new(storage)),
            lock,
            predictor: Box::leak(Box::new(Predictor::<16>::new(
                1024,
                Some(request_dependent),
            ))),
        }
    }
}

/// Per-request cache state kept in `RequestCtx`.
#[derive(Debug, Default)]
pub struct CacheCtx {
    /// Why the cache was not used, when it was not.
    pub bypass: Option<status::Bypass>,
    /// Why a fetched response was not stored (`detail=` of a miss).
    pub not_stored: Option<status::NotStored>,
    /// The response was stored (or its stored copy refreshed).
    pub stored: bool,
    /// The lookup found a stored variant for another `Vary` value.
    pub vary_miss: bool,
    /// The client forced validation (no-cache, max-age, min-fresh).
    pub forced: bool,
    pub directives: RequestDirectives,
    /// Tier of the stored object that was found.
    pub tier: Option<storage::Tier>,
    /// Serving stale because of an upstream error (vs. while revalidating).
    pub stale_error: bool,
    /// SystemTime the upstream request was sent / its header received (RFC 9111 §4.2.3).
    pub request_time: Option<SystemTime>,
    pub response_time: Option<SystemTime>,
    /// The origin's 304, kept to merge every field into the stored header (§3.2).
    pub not_modified: Option<Box<ResponseHeader>>,
    /// Lookup result and tier of a request answered outside pingora-cache: from slices
    /// (`proxy/slice.rs`) or by the lean hit path (`proxy/caching.rs`).
    pub sliced: Option<(crate::metrics::LookupResult, crate::metrics::TierLabel)>,
    /// The cache key the lean hit path built before it fell through (reused, not rebuilt).
    pub key: Option<pingora::cache::CacheKey>,
}

impl CacheCtx {
    /// The `fwd=` value for an error page.
    pub fn fwd_for_error(&self) -> status::Fwd {
        self.bypass.map_or(status::Fwd::UriMiss, status::Fwd::from)
    }
}

/// The `CacheMeta` a slice (an origin 206) is stored with: RFC 9111 storability and
/// freshness judged as for the 200 it is part of; the stored header keeps the 206's fields
/// (Content-Range included). `Err(reason)` when it may not be stored.
pub fn slice_meta(
    req: &RequestHeader,
    resp: &ResponseHeader,
    request_time: SystemTime,
    response_time: SystemTime,
    defaults: &Defaults,
) -> std::result::Result<CacheMeta, &'static str> {
    let mut whole = resp.clone();
    whole.set_status(200).map_err(|_| "status")?;
    whole.remove_header("content-range");
    match policy::decide(req, &whole, request_time, response_time, defaults) {
        Decision::Store(f) => {
            let mut header = resp.clone();
            f.strip(&mut header);
            crate::message::strip_hop_by_hop_resp(&mut header);
            let mut meta = CacheMeta::new(
                f.fresh_until(response_time),
                SystemTime::now(),
                f.swr_secs(),
                f.sie_secs(),
                header,
            );
            meta.set_epoch_override(f.epoch(response_time));
            Ok(meta)
        }
        Decision::Skip(reason) => Err(reason.as_str()),
    }
}
