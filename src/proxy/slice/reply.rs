//! The client's side of a sliced answer: the response header built from the first slice's
//! stored one (Cache-Status, Age, Via, no tags or hop-by-hop fields), 416/304/HEAD, and the
//! body: the slices in order, cut to the span, with one slice of read-ahead.

use super::fetch::{self, Stop};
use super::{obtain, peek, Got, Job, Outcome, Plan};
use crate::cache::slice::{self, Rep};
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::storage::Storage;
use crate::metrics::{LookupResult, TierLabel};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::headers;
use bytes::Bytes;
use pingora::cache::{CacheMeta, HitHandler};
use pingora::http::ResponseHeader;
use pingora::modules::http::compression::ResponseCompression;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Hit,
    /// Every slice from cache, the first after a 304.
    Revalidated,
    Partial,
    Miss,
}

pub(super) fn cache_status(status: Status, first: &CacheMeta) -> String {
    match status {
        Status::Hit => CacheStatus::hit(Some(slice::ttl(first.fresh_until(), SystemTime::now()))),
        Status::Revalidated => CacheStatus::fwd(Fwd::Stale).fwd_status(304).stored(true),
        Status::Partial => CacheStatus::fwd(Fwd::Partial).stored(true),
        Status::Miss => CacheStatus::fwd(Fwd::UriMiss).stored(true),
    }
    .to_string()
}

/// The client's response header from the first slice's stored one.
pub(super) fn client_header(
    job: &Job,
    first: &CacheMeta,
    tier: TierLabel,
    code: u16,
    status: Status,
    ctx: &mut RequestCtx,
) -> Result<ResponseHeader> {
    let stored = first.response_header();
    let mut resp = ResponseHeader::build(code, Some(stored.headers.len() + 6))?;
    const SKIP: [&str; 9] = [
        "content-range",
        "content-length",
        "transfer-encoding",
        "age",
        "via",
        "cache-status",
        "surrogate-key",
        "cache-tag",
        "surrogate-control",
    ];
    for (name, value) in stored.headers.iter() {
        if !SKIP.contains(&name.as_str()) {
            resp.append_header(name.clone(), value.clone())?;
        }
    }
    crate::message::strip_hop_by_hop_resp(&mut resp);
    if !job.rt.cfg.cache.forward_cdn_cache_control {
        resp.remove_header("cdn-cache-control");
    }
    let age = SystemTime::now()
        .duration_since(first.epoch())
        .unwrap_or_default()
        .as_secs();
    resp.insert_header("age", age.to_string())?;
    let via = stored.headers.get("via").and_then(|v| v.to_str().ok());
    resp.insert_header("via", headers::via(via))?;
    let cs = cache_status(status, first);
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.cache_status = Some(cs);
    ctx.cache.stored = status != Status::Hit;
    let result = match status {
        Status::Hit => LookupResult::Hit,
        Status::Revalidated => LookupResult::Expired,
        Status::Partial | Status::Miss => LookupResult::Miss,
    };
    ctx.cache.sliced = Some((result, tier));
    Ok(resp)
}

/// The `tier` label of the lookup metric: where the first slice came from.
pub(super) fn tier_label(first: &Got) -> TierLabel {
    if !first.cached {
        return TierLabel::None;
    }
    match Storage::hit_tier(&first.hit) {
        crate::cache::storage::Tier::Memory => TierLabel::Memory,
        crate::cache::storage::Tier::Disk => TierLabel::Disk,
    }
}

pub(super) fn no_compression(session: &mut Session) {
    if let Some(c) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        c.adjust_level(0);
    }
}

/// 416 with `Content-Range: bytes */LEN` (RFC 9110 §15.5.17); the length came from a
/// stored slice when `cached`, else from the origin.
pub(super) async fn unsatisfiable(
    session: &mut Session,
    ctx: &mut RequestCtx,
    total: u64,
    cached: bool,
) -> Result<Outcome> {
    let body = Bytes::from("416 Range Not Satisfiable\n");
    let mut resp = ResponseHeader::build(416, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-range", format!("bytes */{total}"))?;
    resp.insert_header("content-length", body.len().to_string())?;
    let (cs, result) = if cached {
        (CacheStatus::hit(None), LookupResult::Hit)
    } else {
        (CacheStatus::fwd(Fwd::UriMiss), LookupResult::Miss)
    };
    let cs = cs.to_string();
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.cache_status = Some(cs);
    ctx.cache.sliced = Some((result, TierLabel::None));
    no_compression(session);
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(Outcome::Done)
}

/// 304 from the first slice's header (RFC 9110 §15.4.5: the fields a 200 would carry).
pub(super) async fn not_modified(
    session: &mut Session,
    ctx: &mut RequestCtx,
    first: &Got,
) -> Result<Outcome> {
    let stored = first.meta.response_header();
    let mut resp = ResponseHeader::build(304, Some(8))?;
    for name in [
        "etag",
        "last-modified",
        "cache-control",
        "expires",
        "vary",
        "content-location",
        "date",
    ] {
        if let Some(v) = stored.headers.get(name) {
            resp.insert_header(name, v.clone())?;
        }
    }
    let status = if first.cached {
        Status::Hit
    } else {
        Status::Miss
    };
    let cs = cache_status(status, &first.meta);
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.cache_status = Some(cs);
    let result = if first.cached {
        LookupResult::Hit
    } else {
        LookupResult::Miss
    };
    ctx.cache.sliced = Some((result, tier_label(first)));
    no_compression(session);
    session.write_response_header(Box::new(resp), true).await?;
    Ok(Outcome::Done)
}

/// Sends the header, then the slices `plan.first..=plan.last` in order (the next one read
/// ahead from halfway through each), cut to the span.
pub(super) async fn respond(
    job: &Arc<Job>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    first: Got,
    plan: &Plan,
    status: Status,
) -> Result<()> {
    let span = plan.span;
    let len = span.end - span.start;
    let code = if span.partial { 206 } else { 200 };
    let tier = tier_label(&first);
    let mut resp = client_header(job, &first.meta, tier, code, status, ctx)?;
    resp.insert_header("content-length", len.to_string())?;
    resp.insert_header("accept-ranges", "bytes")?;
    if span.partial {
        let range = format!("bytes {}-{}/{}", span.start, span.end - 1, plan.rep.total);
        resp.insert_header("content-range", range)?;
    }
    no_compression(session);
    let head = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head || len == 0)
        .await?;
    if head || len == 0 {
        return Ok(());
    }
    let mut next = Some(first);
    for k in plan.first..=plan.last {
        let got = match next.take() {
            Some(g) => g,
            None => match obtain(job, k, Some(&plan.rep)).await {
                Ok(g) => g,
                Err(stop) => return Err(cut(job, k, stop).await),
            },
        };
        let start = k * job.size;
        let from = span.start.max(start) - start;
        let to = span.end.min(start + job.slice_len(&plan.rep, k)) - start;
        let ahead = (k < plan.last).then(|| (job, k + 1, &plan.rep));
        send_part(session, got.hit, from, to, ahead).await?;
    }
    session.write_response_body(None, true).await
}

/// Starts filling slice `index` in the background unless it is stored or filling.
async fn read_ahead(job: &Arc<Job>, index: u64, rep: &Rep) {
    if peek(job, index).await.is_some() {
        return;
    }
    let (job, rep) = (job.clone(), rep.clone());
    tokio::spawn(async move {
        let _ = fetch::fill(&job, index, Some(&rep)).await;
    });
}

/// The error that ends a response whose slice `index` failed after the header was sent:
/// the connection is closed (the body is cut, never spliced).
async fn cut(job: &Job, index: u64, stop: Stop) -> Box<Error> {
    if stop == Stop::Mismatch {
        tracing::info!(
            url = %String::from_utf8_lossy(job.base.primary_key()),
            index,
            "slice of another representation mid-response: dropping every slice, cutting the response"
        );
        job.storage.drop_url(&job.base).await;
    }
    Error::explain(
        ErrorType::ConnectError,
        format!("slice {index} of the response failed: {stop:?}"),
    )
    .into_up()
}

/// Writes bytes `from..to` of a slice to the client. Halfway through, starts filling the
/// slice `ahead` names: early enough to hide the origin's latency, late enough that only
/// about one and a half slices are in flight per response.
async fn send_part(
    session: &mut Session,
    mut hit: HitHandler,
    from: u64,
    to: u64,
    mut ahead: Option<(&Arc<Job>, u64, &Rep)>,
) -> Result<()> {
    let (from, to) = (from as usize, to as usize);
    let half = from + (to - from) / 2;
    let mut pos = 0;
    if hit.can_seek() && from > 0 {
        hit.seek(from, Some(to))?;
        pos = from;
    }
    while pos < to {
        let Some(chunk) = hit.read_body().await? else {
            break;
        };
        let at = pos;
        pos += chunk.len();
        if pos <= from {
            continue;
        }
        let lo = from.saturating_sub(at);
        let hi = chunk.len().min(to - at);
        session
            .write_response_body(Some(chunk.slice(lo..hi)), false)
            .await?;
        if pos >= half {
            if let Some((job, index, rep)) = ahead.take() {
                read_ahead(job, index, rep).await;
            }
        }
    }
    if let Some((job, index, rep)) = ahead {
        read_ahead(job, index, rep).await;
    }
    if pos < to {
        return Error::e_explain(ErrorType::ReadError, "stored slice shorter than its range");
    }
    Ok(())
}

/// HEAD answered from a stored slice's header, as a 200 of the whole object.
pub(super) async fn head_from(
    job: &Job,
    session: &mut Session,
    ctx: &mut RequestCtx,
    meta: &CacheMeta,
    rep: &Rep,
) -> Result<Outcome> {
    let mut resp = client_header(job, meta, TierLabel::Memory, 200, Status::Hit, ctx)?;
    resp.insert_header("content-length", rep.total.to_string())?;
    resp.insert_header("accept-ranges", "bytes")?;
    no_compression(session);
    session.write_response_header(Box::new(resp), true).await?;
    Ok(Outcome::Done)
}
