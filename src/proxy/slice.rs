//! Sliced caching (route `slice`, interface.md §4 "Slicing"), called from `request_filter`:
//! GET and HEAD on a slice route are answered here from slice objects, each an aligned
//! range of the object stored under its own key (`cache::slice`), filled from the origin
//! only where the request needs it (`fetch`). A response is assembled from one
//! representation only: the first slice fixes the validator and the length, a stored slice
//! of another is a reason to drop every slice of the URL and start over, and a fill that
//! finds another one mid-response cuts the response (never splices). Returns `false`
//! (the normal path answers) when the origin does not slice, before anything was sent.

mod fetch;

use super::ctx::RequestCtx;
use super::failure;
use super::headers;
use crate::cache::slice::{self, Rep, Span, Want};
use crate::cache::storage::Storage;
use crate::cache::CacheLayer;
use crate::metrics::{LookupResult, TierLabel};
use crate::state::Runtime;
use crate::upstream::pool::Pool;
use bytes::Bytes;
use fetch::Stop;
use pingora::cache::{CacheKey, CacheMeta, HitHandler};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompression;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::SystemTime;

/// How often a request starts over after finding two representations among the slices.
const RESTARTS: usize = 2;

/// What the fills of one request share.
#[derive(Debug)]
pub(crate) struct Job {
    storage: &'static Storage,
    pool: Arc<Pool>,
    rt: Arc<Runtime>,
    /// The origin request of a slice, but its Range and precondition.
    req: RequestHeader,
    /// The URL's cache key (with the purge epoch the fills are stamped with).
    base: CacheKey,
    /// The route's slice size.
    size: u64,
}

impl Job {
    fn key(&self, index: u64) -> CacheKey {
        slice::slice_key(&self.base, self.size, index)
    }

    /// The same job after a purge: fills started from now on are stored again.
    fn renewed(&self) -> Arc<Job> {
        let mut base = self.base.clone();
        base.extensions.insert(self.storage.purge_epoch());
        Arc::new(Job {
            storage: self.storage,
            pool: self.pool.clone(),
            rt: self.rt.clone(),
            req: self.req.clone(),
            base,
            size: self.size,
        })
    }

    fn slice_len(&self, rep: &Rep, index: u64) -> u64 {
        let start = index.saturating_mul(self.size);
        rep.total.saturating_sub(start).min(self.size)
    }
}

/// A slice found in storage (or filling) for this request.
struct Got {
    meta: CacheMeta,
    hit: HitHandler,
    /// Stored before this request (not a fill in flight).
    cached: bool,
}

/// What one attempt at answering came to.
enum Outcome {
    Done,
    /// Not sliceable: the normal path answers (nothing was sent).
    Fallback,
    /// Slices of two representations: drop them all and start over (nothing was sent).
    Restart,
}

/// Request-wide facts of a sliced answer.
struct Plan {
    rep: Rep,
    span: Span,
    first: u64,
    last: u64,
}

/// `request_filter`: answers GET/HEAD on a slice route. `Ok(true)` when answered here.
pub async fn serve(
    layer: &'static CacheLayer,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let Some(mut job) = prepare(layer, session, ctx).await? else {
        return Ok(false);
    };
    for _ in 0..=RESTARTS {
        match answer(&job, session, ctx).await? {
            Outcome::Done => return Ok(true),
            Outcome::Fallback => return Ok(false),
            Outcome::Restart => {
                tracing::info!(
                    url = %String::from_utf8_lossy(job.base.primary_key()),
                    "slices of two representations: dropping every slice of the URL"
                );
                job.storage.drop_url(&job.base).await;
                job = job.renewed();
            }
        }
    }
    let text = "the origin's representation kept changing while slices were fetched";
    failure::respond(session, ctx, 502, "uri-miss", "slice-mismatch", text).await?;
    Ok(true)
}

/// The job of a request this module answers, or `None` (the normal path answers).
async fn prepare(
    layer: &'static CacheLayer,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<Option<Arc<Job>>> {
    let (Some(rt), Some(pool)) = (ctx.rt.clone(), ctx.pool.clone()) else {
        return Ok(None);
    };
    let Some(route) = ctx.route.and_then(|i| rt.cfg.routes.get(i)) else {
        return Ok(None);
    };
    let req = session.req_header();
    let size = route.slice;
    if size == 0
        || !route.cache
        || !matches!(req.method.as_str(), "GET" | "HEAD")
        || req.headers.contains_key(http::header::AUTHORIZATION)
    {
        return Ok(None);
    }
    if size > layer.storage.max_storable() {
        tracing::debug!(size, "slice larger than any tier stores: served unsliced");
        return Ok(None);
    }
    let base = crate::cache::cache_key(layer, session, ctx)?;
    // An object the normal path stored whole (its origin does not slice) is served as such
    // (and a fresh error page the normal path stored, too).
    if fetch::unsliced(&base) {
        return Ok(None);
    }
    if let Some(whole) = layer.storage.peek(&base).await {
        if whole.response_header().status == 200 || whole.is_fresh(SystemTime::now()) {
            return Ok(None);
        }
    }
    let mut up = req.clone();
    up.set_method(http::Method::GET);
    for name in [
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    ] {
        up.remove_header(name);
    }
    super::upstream::prepare_request(session, &mut up, ctx)?;
    // Byte ranges of one coding only: the identity representation.
    up.insert_header("accept-encoding", "identity")?;
    Ok(Some(Arc::new(Job {
        storage: layer.storage,
        pool,
        rt,
        req: up,
        base,
        size,
    })))
}

/// Slice `index`: stored, or filled now (joining a fill in flight). With `expect`, of that
/// representation only (`Stop::Mismatch` otherwise).
async fn obtain(job: &Arc<Job>, index: u64, expect: Option<&Rep>) -> Result<Got, Stop> {
    let key = job.key(index);
    let mut filled = false;
    for _ in 0..3 {
        if let Some((meta, hit)) = fetch::lookup(job.storage, &key).await {
            if let Some(rep) = expect {
                if !slice::is_slice_of(meta.response_header(), rep, job.size, index) {
                    return Err(Stop::Mismatch);
                }
            }
            let cached = !filled && !Storage::hit_is_filling(&hit);
            return Ok(Got { meta, hit, cached });
        }
        fetch::fill(job, index, expect).await?;
        filled = true;
    }
    Err(Stop::Failed(
        ErrorType::InternalError,
        format!("slice {index} was not stored"),
    ))
}

/// The header of slice `index` as stored, when it is fresh.
async fn peek(job: &Job, index: u64) -> Option<CacheMeta> {
    let meta = job.storage.peek(&job.key(index)).await?;
    meta.is_fresh(SystemTime::now()).then_some(meta)
}

/// The header of a fresh stored slice of the object: slice 0, else any in memory.
async fn any_slice(job: &Job) -> Option<CacheMeta> {
    if let Some(meta) = peek(job, 0).await {
        return Some(meta);
    }
    let now = SystemTime::now();
    job.storage
        .peek_variant(&job.base, |m| {
            m.is_fresh(now) && m.response_header().headers.contains_key("content-range")
        })
        .await
}

/// HEAD answered from a stored slice's header, as a 200 of the whole object.
async fn head_from(
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

/// One attempt at answering the request from slices.
async fn answer(job: &Arc<Job>, session: &mut Session, ctx: &mut RequestCtx) -> Result<Outcome> {
    let req = session.req_header();
    let field = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut want = slice::parse_range(field("range").as_deref());
    let if_range = field("if-range");
    let head = session.req_header().method == http::Method::HEAD;
    let mut k0 = match want {
        Want::From(a, _) => a / job.size,
        Want::Full | Want::Suffix(_) => 0,
    };
    // HEAD without a range: any stored slice has the header.
    if head && want == Want::Full && if_range.is_none() {
        if let Some(meta) = any_slice(job).await {
            if let Some((rep, _, _)) = Rep::of(meta.response_header()) {
                return head_from(job, session, ctx, &meta, &rep).await;
            }
        }
    }
    // The length from a stored slice, when the range starts past slice 0: a range past the
    // end or a suffix needs no other slice to be fetched.
    if want != Want::Full && k0 != 0 || matches!(want, Want::Suffix(_)) {
        let known = any_slice(job).await;
        if let Some((rep, _, _)) = known.as_ref().and_then(|m| Rep::of(m.response_header())) {
            match slice::resolve(want, rep.total) {
                None if if_range.is_none() => {
                    return unsatisfiable(session, ctx, rep.total, true).await
                }
                None => {}
                Some(span) => k0 = span.start / job.size,
            }
        }
    }
    let mut first = match obtain(job, k0, None).await {
        Ok(got) => got,
        Err(Stop::Unsatisfiable(Some(total))) if want != Want::Full => {
            return unsatisfiable(session, ctx, total, false).await;
        }
        Err(stop) => return settle(session, stop),
    };
    let Some((rep, _, _)) = Rep::of(first.meta.response_header()) else {
        return Ok(Outcome::Restart);
    };
    if if_range.is_some_and(|v| !slice::if_range_holds(&v, first.meta.response_header())) {
        want = Want::Full;
    }
    let Some(span) = slice::resolve(want, rep.total) else {
        return unsatisfiable(session, ctx, rep.total, first.cached).await;
    };
    if slice::not_modified(session.req_header(), first.meta.response_header()) {
        return not_modified(session, ctx, &first).await;
    }
    let plan = Plan {
        first: span.start / job.size,
        last: span.end.saturating_sub(1) / job.size,
        rep,
        span,
    };
    if plan.first != k0 {
        first = match obtain(job, plan.first, Some(&plan.rep)).await {
            Ok(got) => got,
            Err(stop) => return settle(session, stop),
        };
    }
    // Which slices are stored, and of this representation only (HEAD needs only one).
    let mut stored = usize::from(first.cached);
    let mut missing = None;
    let others = if head { 0 } else { plan.last - plan.first };
    for k in plan.first + 1..=plan.first + others {
        match peek(job, k).await {
            Some(m) if slice::is_slice_of(m.response_header(), &plan.rep, job.size, k) => {
                stored += 1;
            }
            Some(_) => return Ok(Outcome::Restart),
            None => {
                missing.get_or_insert(k);
            }
        }
    }
    // A stored first slice may be of a representation the origin no longer has: ask for
    // the first missing slice before anything is sent, so a change means a clean restart.
    if let (true, Some(k)) = (first.cached, missing) {
        if let Err(stop) = fetch::fill(job, k, Some(&plan.rep)).await {
            return match stop {
                Stop::Mismatch | Stop::Unsatisfiable(_) => Ok(Outcome::Restart),
                stop => settle(session, stop),
            };
        }
    }
    let count = others as usize + 1;
    let status = if stored == count || plan.span.end == plan.span.start {
        Status::Hit
    } else if stored > 0 {
        Status::Partial
    } else {
        Status::Miss
    };
    respond(job, session, ctx, first, &plan, status).await?;
    Ok(Outcome::Done)
}

/// What a failed first slice means for the request, before anything was sent.
fn settle(session: &mut Session, stop: Stop) -> Result<Outcome> {
    match stop {
        Stop::Fallback { .. } | Stop::Unsatisfiable(_) => {
            // The normal path fills from a 200 in full; it is sent in full too (a server
            // may ignore Range, RFC 9110 §14.2): Pingora's range filter on a miss that is
            // being stored breaks the connection for the next request.
            let req = session.req_header_mut();
            req.remove_header("range");
            req.remove_header("if-range");
            Ok(Outcome::Fallback)
        }
        Stop::Mismatch => Ok(Outcome::Restart),
        Stop::Failed(kind, why) => Err(Error::explain(kind, why).into_up()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Hit,
    Partial,
    Miss,
}

fn cache_status(status: Status, first: &CacheMeta) -> String {
    match status {
        Status::Hit => format!(
            "outpost; hit; ttl={}",
            slice::ttl(first.fresh_until(), SystemTime::now())
        ),
        Status::Partial => "outpost; fwd=partial; stored".to_string(),
        Status::Miss => "outpost; fwd=uri-miss; stored".to_string(),
    }
}

/// The client's response header from the first slice's stored one.
fn client_header(
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
    headers::strip_hop_by_hop_resp(&mut resp);
    if !job.rt.cfg.cache.forward_cdn_cache_control {
        resp.remove_header("cdn-cache-control");
    }
    let age = SystemTime::now()
        .duration_since(first.epoch())
        .unwrap_or_default()
        .as_secs();
    resp.insert_header("age", age.to_string())?;
    resp.insert_header("via", headers::via(None))?;
    let cs = cache_status(status, first);
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.cache_status = Some(cs);
    ctx.cache.stored = status != Status::Hit;
    let result = match status {
        Status::Hit => LookupResult::Hit,
        Status::Partial | Status::Miss => LookupResult::Miss,
    };
    ctx.cache.sliced = Some((result, tier));
    Ok(resp)
}

/// The `tier` label of the lookup metric: where the first slice came from.
fn tier_label(first: &Got) -> TierLabel {
    if !first.cached {
        return TierLabel::None;
    }
    match Storage::hit_tier(&first.hit) {
        crate::cache::storage::Tier::Memory => TierLabel::Memory,
        crate::cache::storage::Tier::Disk => TierLabel::Disk,
    }
}

fn no_compression(session: &mut Session) {
    if let Some(c) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        c.adjust_level(0);
    }
}

/// 416 with `Content-Range: bytes */LEN` (RFC 9110 §15.5.17); the length came from a
/// stored slice when `cached`, else from the origin.
async fn unsatisfiable(
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
        ("outpost; hit", LookupResult::Hit)
    } else {
        ("outpost; fwd=uri-miss", LookupResult::Miss)
    };
    resp.insert_header("cache-status", cs)?;
    ctx.cache_status = Some(cs.to_string());
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
async fn not_modified(session: &mut Session, ctx: &mut RequestCtx, first: &Got) -> Result<Outcome> {
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
async fn respond(
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
