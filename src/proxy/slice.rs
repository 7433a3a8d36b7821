//! Sliced caching (route `slice`, interface.md §4 "Slicing"), called from `request_filter`:
//! GET and HEAD on a slice route are answered here from slice objects, each an aligned
//! range of the object stored under its own key (`cache::slice`), filled from the origin
//! only where the request needs it (`fetch`). A response is assembled from one
//! representation only: the first slice fixes the validator and the length, a stored slice
//! of another is a reason to drop every slice of the URL and start over, and a fill that
//! finds another one mid-response cuts the response (never splices). Returns `false`
//! (the normal path answers) when the origin does not slice, before anything was sent.

mod fetch;
mod reply;

use super::ctx::RequestCtx;
use super::failure;
use crate::cache::slice::{self, Rep, Span, Want};
use crate::cache::status::Fwd;
use crate::cache::storage::Storage;
use crate::cache::CacheLayer;
use crate::state::Runtime;
use crate::upstream::pool::Pool;
use fetch::{Filled, Stop};
use pingora::cache::{CacheKey, CacheMeta, HitHandler};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use reply::{head_from, not_modified, respond, unsatisfiable, Status};
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
    /// Stored before this request (not a fill in flight), or refreshed by a 304.
    cached: bool,
    /// Refreshed by a 304 for this request.
    revalidated: bool,
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
    failure::respond(session, ctx, 502, Fwd::UriMiss, "slice-mismatch", text).await?;
    Ok(true)
}

/// The job of a request this module answers, or `None` (the normal path answers).
async fn prepare(
    layer: &'static CacheLayer,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<Option<Arc<Job>>> {
    let (rt, Some(pool)) = (ctx.rt.clone(), ctx.pool.clone()) else {
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
    let base = super::caching::cache_key(layer, session, ctx)?;
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
    for name in super::resume::DROPPED {
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
    let mut filled = None;
    for _ in 0..3 {
        if let Some((meta, hit)) = fetch::lookup(job.storage, &key).await {
            if let Some(rep) = expect {
                if !slice::is_slice_of(meta.response_header(), rep, job.size, index) {
                    return Err(Stop::Mismatch);
                }
            }
            let revalidated = filled == Some(Filled::Revalidated);
            let cached = revalidated || filled.is_none() && !Storage::hit_is_filling(&hit);
            return Ok(Got {
                meta,
                hit,
                cached,
                revalidated,
            });
        }
        filled = Some(fetch::fill(job, index, expect).await?);
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
    let head = req.method == http::Method::HEAD;
    let k0 = match early(job, session, ctx, want, if_range.is_some(), head).await? {
        Ok(k0) => k0,
        Err(done) => return Ok(done),
    };
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
        // HEAD needs only the first slice.
        last: if head {
            span.start / job.size
        } else {
            span.end.saturating_sub(1) / job.size
        },
        rep,
        span,
    };
    if plan.first != k0 {
        first = match obtain(job, plan.first, Some(&plan.rep)).await {
            Ok(got) => got,
            Err(stop) => return settle(session, stop),
        };
    }
    let status = match inventory(job, &plan, &first).await {
        Ok(status) => status,
        Err(Stop::Mismatch | Stop::Unsatisfiable(_)) => return Ok(Outcome::Restart),
        Err(stop) => return settle(session, stop),
    };
    respond(job, session, ctx, first, &plan, status).await?;
    Ok(Outcome::Done)
}

/// What can be answered before any slice is fetched: HEAD without a range from any
/// stored slice, and a range past the end or a suffix from a stored slice's length.
/// `Ok(index)` of the slice to start with otherwise.
async fn early(
    job: &Arc<Job>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    want: Want,
    if_range: bool,
    head: bool,
) -> Result<std::result::Result<u64, Outcome>> {
    let k0 = match want {
        Want::From(a, _) => a / job.size,
        Want::Full | Want::Suffix(_) => 0,
    };
    let needs_length = want != Want::Full && k0 != 0 || matches!(want, Want::Suffix(_));
    let header_only = head && want == Want::Full && !if_range;
    if !needs_length && !header_only {
        return Ok(Ok(k0));
    }
    let known = any_slice(job).await;
    let Some((meta, rep)) = known.and_then(|m| Rep::of(m.response_header()).map(|r| (m, r.0)))
    else {
        return Ok(Ok(k0));
    };
    if header_only {
        return head_from(job, session, ctx, &meta, &rep).await.map(Err);
    }
    match slice::resolve(want, rep.total) {
        None if !if_range => unsatisfiable(session, ctx, rep.total, true).await.map(Err),
        None => Ok(Ok(k0)),
        Some(span) => Ok(Ok(span.start / job.size)),
    }
}

/// Which of the plan's slices after the first are stored, all of the representation the
/// first one fixed (`Stop::Mismatch` otherwise). A stored first slice may be of a
/// representation the origin no longer has: the first missing slice is asked for now,
/// before anything is sent, so a change is a clean restart rather than a cut.
async fn inventory(job: &Arc<Job>, plan: &Plan, first: &Got) -> Result<Status, Stop> {
    // A slice just revalidated is of the origin's current representation.
    let first_cached = first.cached && !first.revalidated;
    let mut stored = usize::from(first.cached);
    let mut missing = None;
    for k in plan.first + 1..=plan.last {
        match peek(job, k).await {
            Some(m) if slice::is_slice_of(m.response_header(), &plan.rep, job.size, k) => {
                stored += 1;
            }
            Some(_) => return Err(Stop::Mismatch),
            None => {
                missing.get_or_insert(k);
            }
        }
    }
    if let (true, Some(k)) = (first_cached, missing) {
        fetch::fill(job, k, Some(&plan.rep)).await?;
    }
    let count = (plan.last - plan.first + 1) as usize;
    Ok(if stored == count && first.revalidated {
        Status::Revalidated
    } else if stored == count || plan.span.end == plan.span.start {
        Status::Hit
    } else if stored > 0 {
        Status::Partial
    } else {
        Status::Miss
    })
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
