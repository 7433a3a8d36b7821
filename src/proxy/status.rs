//! `Cache-Status` (RFC 9211) values of interface.md §4, derived from the cache phase and
//! what the request context recorded; also the lookup result for metrics.

use super::ctx::RequestCtx;
use crate::metrics::{LookupResult, TierLabel};
use pingora::cache::CachePhase;
use pingora::proxy::Session;
use std::time::SystemTime;

/// Seconds of freshness left (negative when stale), as `ttl=` shows it.
fn ttl(session: &Session) -> i64 {
    let Some(meta) = session.cache.maybe_cache_meta() else {
        return 0;
    };
    let now = SystemTime::now();
    match meta.fresh_until().duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs().max(1)).unwrap_or(i64::MAX),
    }
}

fn fwd(ctx: &RequestCtx, default: &'static str) -> &'static str {
    if ctx.cache.forced {
        "request"
    } else if ctx.cache.vary_miss {
        "vary-miss"
    } else {
        default
    }
}

fn stored(ctx: &RequestCtx) -> String {
    match (ctx.cache.stored, ctx.cache.not_stored) {
        (_, Some(reason)) => format!("; detail={reason}"),
        (true, None) => "; stored".to_string(),
        (false, None) => String::new(),
    }
}

/// The Cache-Status value for the response being sent.
pub fn cache_status(session: &Session, ctx: &RequestCtx) -> String {
    match session.cache.phase() {
        CachePhase::Hit if session.cache.lock_duration().is_some() => {
            "outpost; fwd=uri-miss; collapsed".to_string()
        }
        CachePhase::Hit => format!("outpost; hit; ttl={}", ttl(session)),
        CachePhase::Stale => format!("outpost; hit; ttl={}; detail=stale-if-error", ttl(session)),
        CachePhase::StaleUpdating => format!(
            "outpost; hit; ttl={}; detail=stale-while-revalidate",
            ttl(session)
        ),
        CachePhase::Miss => format!("outpost; fwd={}{}", fwd(ctx, "uri-miss"), stored(ctx)),
        CachePhase::Expired => {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let _ = status;
            format!("outpost; fwd={}{}", fwd(ctx, "stale"), stored(ctx))
        }
        CachePhase::Revalidated => {
            format!("outpost; fwd={}; fwd-status=304; stored", fwd(ctx, "stale"))
        }
        CachePhase::RevalidatedNoCache(_) => {
            format!("outpost; fwd={}; fwd-status=304", fwd(ctx, "stale"))
        }
        CachePhase::Bypass => "outpost; fwd=bypass".to_string(),
        _ => match ctx.cache.bypass {
            Some("bypass") if ctx.cache.stored => "outpost; fwd=bypass; stored".to_string(),
            Some("method") => "outpost; fwd=method".to_string(),
            Some(_) => "outpost; fwd=bypass".to_string(),
            None if ctx.cache.not_stored.is_some() => {
                format!("outpost; fwd=uri-miss{}", stored(ctx))
            }
            None => "outpost; fwd=bypass".to_string(),
        },
    }
}

/// The lookup result and tier for `outpost_cache_lookups_total`.
pub fn lookup_result(session: &Session, ctx: &RequestCtx) -> (LookupResult, TierLabel) {
    if let Some(sliced) = ctx.cache.sliced {
        return sliced;
    }
    let tier = match ctx.cache.tier {
        Some(crate::cache::storage::Tier::Memory) => TierLabel::Memory,
        Some(crate::cache::storage::Tier::Disk) => TierLabel::Disk,
        None => TierLabel::None,
    };
    match session.cache.phase() {
        CachePhase::Hit => (LookupResult::Hit, tier),
        CachePhase::Stale | CachePhase::StaleUpdating => (LookupResult::Stale, tier),
        CachePhase::Miss => (LookupResult::Miss, TierLabel::None),
        CachePhase::Expired | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => {
            (LookupResult::Expired, tier)
        }
        _ => (LookupResult::Pass, TierLabel::None),
    }
}
