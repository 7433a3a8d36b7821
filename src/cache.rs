//! HTTP caching on pingora-cache: the glue between the proxy phases and the cache parts.
//! `key` builds keys, `policy` decides (pure RFC 9111), `storage` stores, `purge` bans,
//! `status` renders `Cache-Status`. Every function here is one proxy phase's body.

pub mod key;
pub mod policy;
pub mod purge;
pub mod slice;
pub mod status;
pub mod storage;

use crate::config::CacheConfig;
use crate::proxy::ctx::RequestCtx;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::predictor::Predictor;
use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, NoCacheReason,
    RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorSource;
use policy::{Decision, Defaults, HitVerdict, RequestDirectives};
use std::time::{Duration, SystemTime};
use storage::Storage;

/// Config-derived cache rules (swapped with the config on reload).
#[derive(Debug)]
pub struct Rules {
    pub defaults: Defaults,
    pub filter: key::QueryFilter,
    pub max_object: usize,
    pub lock_timeout: Duration,
}

impl Rules {
    /// Rules of a `[cache]` section.
    pub fn from_config(cfg: &CacheConfig) -> Self {
        Self {
            defaults: Defaults::from_config(cfg),
            filter: key::QueryFilter::new(&cfg.ignore_query_params),
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
    /// Why the cache was not used (`bypass` / `method`), when it was not.
    pub bypass: Option<&'static str>,
    /// Why a fetched response was not stored (`detail=` of a miss).
    pub not_stored: Option<&'static str>,
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
    /// Lookup result and tier of a request answered from slices (`proxy/slice.rs`).
    pub sliced: Option<(crate::metrics::LookupResult, crate::metrics::TierLabel)>,
}

impl CacheCtx {
    /// The `fwd=` value for an error page.
    pub fn fwd_for_error(&self) -> &'static str {
        match self.bypass {
            Some("method") => "method",
            Some(_) => "bypass",
            None => "uri-miss",
        }
    }
}

/// `request_cache_filter`: turn the cache on for GET/HEAD on caching routes.
pub fn enable(layer: &CacheLayer, session: &mut Session, ctx: &mut RequestCtx) {
    if ctx.route.is_none() || session.cache.enabled() {
        return;
    }
    if !ctx.cacheable_route {
        ctx.cache.bypass = Some("bypass");
        return;
    }
    if !matches!(session.req_header().method.as_str(), "GET" | "HEAD") {
        ctx.cache.bypass = Some("method");
        return;
    }
    let Some(rt) = ctx.rt.clone() else { return };
    ctx.cache.directives =
        policy::request_directives(session.req_header(), rt.cache.defaults.client);
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(rt.cache.lock_timeout);
    overrides.max_lock_retries = Some(4);
    session.cache.enable(
        layer.storage,
        None,
        Some(layer.predictor),
        Some(layer.lock),
        Some(overrides),
    );
}

/// `cache_key_callback`: `scheme://host/path?query` minus ignored parameters.
pub fn cache_key(layer: &CacheLayer, session: &Session, ctx: &RequestCtx) -> Result<CacheKey> {
    let Some(rt) = ctx.rt.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "no runtime");
    };
    let pq = session
        .req_header()
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str());
    let primary = key::primary_key(scheme(session), &ctx.host, pq, &rt.cache.filter);
    let mut k = CacheKey::new(primary, "");
    k.extensions.insert(layer.storage.purge_epoch());
    Ok(k)
}

/// `http` or `https`, from the downstream connection.
pub fn scheme(session: &Session) -> &'static str {
    if session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
    {
        "https"
    } else {
        "http"
    }
}

/// `cache_vary_filter`: the variance of this request for the stored response's `Vary`.
pub fn vary(
    meta: &CacheMeta,
    ctx: &mut RequestCtx,
    req: &RequestHeader,
) -> Option<pingora::cache::key::HashBinary> {
    let fields = key::vary_fields(meta.response_header());
    let v = key::variance(&fields, req);
    if v.is_some() && v.as_ref() != meta.variance().as_ref() {
        ctx.cache.vary_miss = true;
    }
    v
}

/// `cache_hit_filter`: apply the request's own freshness demands (RFC 9111 §5.2.1).
pub fn on_hit(meta: &CacheMeta, hit: &HitHandler, ctx: &mut RequestCtx) -> Option<ForcedFreshness> {
    ctx.cache.tier = Some(Storage::hit_tier(hit));
    let now = SystemTime::now();
    let epoch = meta.epoch();
    let age = now.duration_since(epoch).unwrap_or_default();
    let lifetime = meta.fresh_until().duration_since(epoch).unwrap_or_default();
    let no_stale = policy::forbids_stale(meta.response_header());
    if ctx.fleet_behind {
        // A peer applied a purge this node has not: revalidate, never hand out as is.
        return Some(ForcedFreshness::ForceExpired);
    }
    let verdict = policy::hit_verdict(age, lifetime, &ctx.cache.directives, no_stale);
    if ctx.cache.directives.only_if_cached
        && !matches!(verdict, HitVerdict::Fresh | HitVerdict::StaleAllowed)
    {
        return Some(ForcedFreshness::ForceMiss);
    }
    match verdict {
        HitVerdict::Fresh | HitVerdict::Stale => None,
        HitVerdict::StaleAllowed => Some(ForcedFreshness::ForceFresh),
        HitVerdict::MustRevalidate => Some(ForcedFreshness::ForceExpired),
        HitVerdict::ClientRevalidate => {
            ctx.cache.forced = true;
            Some(ForcedFreshness::ForceExpired)
        }
    }
}

/// `proxy_upstream_filter`: `only-if-cached` never reaches the origin (§5.2.1.7).
pub fn may_go_upstream(ctx: &RequestCtx) -> bool {
    !ctx.cache.directives.only_if_cached
}

/// `should_serve_stale`: while revalidating (SWR) always, within the stored window
/// pingora checks; on errors only when the origin failed (stale-if-error).
pub fn may_serve_stale(ctx: &mut RequestCtx, error: Option<&Error>) -> bool {
    match error {
        None => !ctx.cache.forced,
        Some(e) => {
            let upstream = e.esource() == &ErrorSource::Upstream
                || matches!(e.etype(), ErrorType::HTTPStatus(_));
            if upstream {
                ctx.cache.stale_error = true;
            }
            upstream
        }
    }
}

/// `upstream_response_filter` (cache part): size limit, timing for §4.2.3, the 304 for merging.
///
/// `max_object` goes to pingora only for responses with a Content-Length (an oversized one is
/// then simply not stored). Pingora fails the whole request when a *chunked* body crosses its
/// limit while the client is fed from the fill, so for those the storage enforces `max_object`
/// itself: it stops storing and keeps streaming.
pub fn on_upstream_response(session: &mut Session, resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if session.cache.enabled() && resp.headers.contains_key(http::header::CONTENT_LENGTH) {
        if let Some(rt) = ctx.rt.as_ref() {
            session.cache.set_max_file_size_bytes(rt.cache.max_object);
        }
    }
    ctx.cache.response_time = Some(SystemTime::now());
    if resp.status.as_u16() == 304 {
        ctx.cache.not_modified = Some(Box::new(resp.clone()));
    }
}

/// `response_cache_filter`: RFC 9111 storability and freshness, as pingora `CacheMeta`.
pub fn decide(
    layer: &CacheLayer,
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> RespCacheable {
    let Some(rt) = ctx.rt.clone() else {
        return RespCacheable::Uncacheable(NoCacheReason::InternalError);
    };
    if session.cache.bypassing() {
        // The predictor remembered this key as uncacheable (hit-for-pass).
        ctx.cache.bypass = Some("bypass");
    }
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|len| len > layer.storage.max_storable()) {
        // Larger than max_object or than any tier keeps: streamed through, not stored.
        ctx.cache.not_stored = Some("too-large");
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    if ctx.cache.directives.no_store {
        ctx.cache.not_stored = Some("request-no-store");
        return RespCacheable::Uncacheable(NoCacheReason::Custom("request-no-store"));
    }
    // A 304: pingora merged a fixed list of fields; merge every field instead (§3.2).
    let mut header = match (
        ctx.cache.not_modified.as_deref(),
        session.cache.maybe_cache_meta(),
    ) {
        (Some(nm), Some(stored)) => policy::merge_304(stored.response_header(), nm),
        _ => resp.clone(),
    };
    let now = SystemTime::now();
    let request_time = ctx.cache.request_time.unwrap_or(now);
    let response_time = ctx.cache.response_time.unwrap_or(now);
    match policy::decide(
        session.req_header(),
        &header,
        request_time,
        response_time,
        &rt.cache.defaults,
    ) {
        Decision::Store(f) => {
            f.strip(&mut header);
            crate::proxy::headers::strip_hop_by_hop_resp(&mut header);
            let mut meta = CacheMeta::new(
                f.fresh_until(response_time),
                now,
                f.swr_secs(),
                f.sie_secs(),
                header,
            );
            meta.set_epoch_override(f.epoch(response_time));
            ctx.cache.stored = true;
            RespCacheable::Cacheable(meta)
        }
        Decision::Skip(reason) => {
            let r = reason.as_str();
            ctx.cache.not_stored = Some(r);
            let why = match r {
                "authorization" | "status" | "method" => NoCacheReason::Custom(r),
                _ => NoCacheReason::OriginNotCache,
            };
            RespCacheable::Uncacheable(why)
        }
    }
}

/// `Age` of responses built from a stored entry after revalidation: pingora sends the
/// stored header as is there; the age is now − epoch (which counts the origin's `Age`).
pub fn fix_age(session: &Session, resp: &mut ResponseHeader) {
    use pingora::cache::CachePhase;
    if !matches!(
        session.cache.phase(),
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_)
    ) {
        return;
    }
    if let Some(meta) = session.cache.maybe_cache_meta() {
        let age = SystemTime::now()
            .duration_since(meta.epoch())
            .unwrap_or_default()
            .as_secs();
        let _ = resp.insert_header("age", age.to_string());
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
            crate::proxy::headers::strip_hop_by_hop_resp(&mut header);
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
