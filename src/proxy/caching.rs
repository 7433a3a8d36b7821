//! The cache's proxy phases: each function is the body of one `ProxyHttp` cache hook
//! (`proxy.rs` delegates to them). They read and write the request context and hand the
//! pure decisions to `cache::policy` / `cache::key`; the cache layer itself never sees a
//! proxy type.

use super::ctx::RequestCtx;
use crate::cache::policy::{self, Decision, HitVerdict};
use crate::cache::status::{Bypass, CacheStatus, NotStored};
use crate::cache::storage::Storage;
use crate::cache::{key, CacheLayer};
use crate::url::{ObjectUrl, Scheme};
use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, NoCacheReason,
    RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorSource;
use std::time::SystemTime;

/// `request_cache_filter`: turn the cache on for GET/HEAD on caching routes.
pub fn enable(layer: &CacheLayer, session: &mut Session, ctx: &mut RequestCtx) {
    if ctx.route.is_none() || session.cache.enabled() {
        return;
    }
    if !ctx.cacheable_route {
        ctx.cache.bypass = Some(Bypass::Route);
        return;
    }
    if !matches!(session.req_header().method.as_str(), "GET" | "HEAD") {
        ctx.cache.bypass = Some(Bypass::Method);
        return;
    }
    let rt = &ctx.rt;
    ctx.cache.directives =
        policy::request_directives(session.req_header(), rt.cache.defaults.client);
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(rt.cache.lock_timeout);
    overrides.max_lock_retries = Some(4);
    layer.enable_on(&mut session.cache, overrides);
}

/// `cache_key_callback`: `scheme://host/path?query` minus ignored parameters.
pub fn cache_key(layer: &CacheLayer, session: &Session, ctx: &RequestCtx) -> Result<CacheKey> {
    let mut k = CacheKey::new(object_url(session, ctx).into_string(), "");
    k.extensions.insert(layer.storage.purge_epoch());
    Ok(k)
}

/// `cache_key_callback`: the key the lean hit path built when it fell through, else
/// [`cache_key`].
pub fn lookup_key(layer: &CacheLayer, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
    match ctx.cache.key.take() {
        Some(mut k) => {
            k.extensions.insert(layer.storage.purge_epoch());
            Ok(k)
        }
        None => cache_key(layer, session, ctx),
    }
}

/// The object this request names (its primary key): scheme, routing host, request-target.
pub fn object_url(session: &Session, ctx: &RequestCtx) -> ObjectUrl {
    let pq = session
        .req_header()
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str());
    ObjectUrl::from_request(scheme(session), &ctx.host, pq, &ctx.rt.cache.filter)
}

/// `http` or `https`, from the downstream connection.
pub fn scheme(session: &Session) -> Scheme {
    if session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
    {
        Scheme::Https
    } else {
        Scheme::Http
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
        session
            .cache
            .set_max_file_size_bytes(ctx.rt.cache.max_object);
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
    let rt = ctx.rt.clone();
    if session.cache.bypassing() {
        // The predictor remembered this key as uncacheable (hit-for-pass).
        ctx.cache.bypass = Some(Bypass::Remembered);
    }
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|len| len > layer.storage.max_storable()) {
        // Larger than max_object or than any tier keeps: streamed through, not stored.
        ctx.cache.not_stored = Some(NotStored::TooLarge);
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    if ctx.cache.directives.no_store {
        ctx.cache.not_stored = Some(NotStored::RequestNoStore);
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
            crate::message::strip_hop_by_hop_resp(&mut header);
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
            ctx.cache.not_stored = Some(NotStored::Policy(reason));
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

/// The lean hit path (issue "Performance"): a fresh memory-tier hit for a plain GET or HEAD
/// is answered here, from `request_filter`, without pingora-cache's state machine (about
/// 10 µs of CPU per hit, `benches/README.md`). "Plain" means no request field that any
/// RFC 9111 rule or outpost feature could answer differently: no `Cache-Control`/`Pragma`
/// (request directives), no conditionals (304s), no `Range`, no `Authorization`, no body,
/// no `Upgrade`; and a stored object that is fresh, not purged, without `Vary`, with no fill
/// of it in flight ([`Storage::fresh_hit`]). Everything else, and every miss, takes the full
/// path (`Ok(false)`), which answers exactly as before. The answer is the one the full path
/// gives: the stored header with `Age`, decorated by `response::decorate_as`, `Cache-Status`
/// `hit; ttl=`, compression and access-log and metrics as for any hit.
pub async fn serve_fresh_hit(
    layer: &CacheLayer,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    if ctx.route.is_none() || !ctx.cacheable_route || ctx.fleet_behind {
        return Ok(false);
    }
    let req = session.req_header();
    let head = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Ok(false),
    };
    if !plain_request(req) {
        return Ok(false);
    }
    let key = CacheKey::new(object_url(session, ctx).into_string(), "");
    let Some(hit) = layer.storage.fresh_hit(&key).await else {
        ctx.cache.key = Some(key);
        return Ok(false);
    };
    ctx.cache.tier = Some(crate::cache::storage::Tier::Memory);
    ctx.cache.sliced = Some((
        crate::metrics::LookupResult::Hit,
        crate::metrics::TierLabel::Memory,
    ));
    let crate::cache::storage::FreshHit {
        header: mut resp,
        body,
        age,
        ttl,
    } = hit;
    let chunks = body.chunks();
    resp.set_version(http::Version::HTTP_11);
    resp.insert_header(http::header::AGE, age)?;
    // As pingora's range filter on the full path: a 200 with a length may be asked in ranges.
    let ranged = resp.status == http::StatusCode::OK
        && resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<u64>().is_ok());
    if ranged {
        resp.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    }
    // As pingora's hit header: a body without a length goes chunked.
    let bodiless = matches!(resp.status.as_u16(), 204 | 304) || resp.status.is_informational();
    if !bodiless && !resp.headers.contains_key(http::header::CONTENT_LENGTH) {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    super::response::decorate_as(session, &mut resp, ctx, CacheStatus::hit(Some(ttl)))?;
    let no_body = head || chunks.is_empty();
    session
        .write_response_header(Box::new(resp), no_body)
        .await?;
    if !no_body {
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            session
                .write_response_body(Some(chunk.clone()), i == last)
                .await?;
        }
    }
    Ok(true)
}

/// No request field the full cache path would act on (see [`serve_fresh_hit`]).
fn plain_request(req: &RequestHeader) -> bool {
    use http::header;
    const FIELDS: [header::HeaderName; 12] = [
        header::CACHE_CONTROL,
        header::PRAGMA,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    FIELDS.iter().all(|f| !req.headers.contains_key(f))
}
