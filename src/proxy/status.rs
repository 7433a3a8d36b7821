//! The [`CacheStatus`] of a response, derived from pingora's cache phase and what the request
//! context recorded; also the lookup result for metrics.

use super::ctx::RequestCtx;
use crate::cache::status::{Bypass, CacheStatus, Detail, Fwd};
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

fn fwd(ctx: &RequestCtx, default: Fwd) -> Fwd {
    if ctx.cache.forced {
        Fwd::Request
    } else if ctx.cache.vary_miss {
        Fwd::VaryMiss
    } else {
        default
    }
}

/// A forwarded answer with what happened to the response (stored, or why not).
fn forwarded(ctx: &RequestCtx, fwd: Fwd) -> CacheStatus {
    let s = CacheStatus::fwd(fwd).stored(ctx.cache.stored);
    match ctx.cache.not_stored {
        Some(n) => s.with(Detail::NotStored(n)),
        None => s,
    }
}

/// The Cache-Status for the response being sent.
pub fn cache_status(session: &Session, ctx: &RequestCtx) -> CacheStatus {
    match session.cache.phase() {
        CachePhase::Hit if session.cache.lock_duration().is_some() => {
            CacheStatus::fwd(Fwd::UriMiss).collapsed()
        }
        CachePhase::Hit => CacheStatus::hit(Some(ttl(session))),
        CachePhase::Stale => CacheStatus::hit(Some(ttl(session))).with(Detail::StaleIfError),
        CachePhase::StaleUpdating => {
            CacheStatus::hit(Some(ttl(session))).with(Detail::StaleWhileRevalidate)
        }
        CachePhase::Miss => forwarded(ctx, fwd(ctx, Fwd::UriMiss)),
        CachePhase::Expired => forwarded(ctx, fwd(ctx, Fwd::Stale)),
        CachePhase::Revalidated => CacheStatus::fwd(fwd(ctx, Fwd::Stale))
            .fwd_status(304)
            .stored(true),
        CachePhase::RevalidatedNoCache(_) => CacheStatus::fwd(fwd(ctx, Fwd::Stale)).fwd_status(304),
        CachePhase::Bypass => CacheStatus::fwd(Fwd::Bypass),
        _ => match ctx.cache.bypass {
            Some(b @ (Bypass::Route | Bypass::Remembered)) => {
                CacheStatus::fwd(b.into()).stored(ctx.cache.stored)
            }
            Some(Bypass::Method) => CacheStatus::fwd(Fwd::Method),
            None if ctx.cache.not_stored.is_some() => forwarded(ctx, Fwd::UriMiss),
            None => CacheStatus::fwd(Fwd::Bypass),
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
