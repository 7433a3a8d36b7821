//! Filling one slice from the origin: `Range: bytes=k*S-((k+1)*S-1)` to a healthy server of
//! the route's origin, checked (206, the exact Content-Range, a strong validator, the
//! representation the request is assembling), stored through the storage's miss handler in
//! a task of its own (so it completes when the client leaves) and coalesced: concurrent
//! misses on one slice wait for the one fill, then read it from storage as it streams in.

use super::Job;
use crate::cache::slice::{self, Rep};
use crate::cache::storage::Storage;
use crate::proxy::resume::connector;
use crate::proxy::upstream::peer_for;
use parking_lot::Mutex;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::trace::{Span, SpanHandle};
use pingora::cache::{CacheKey, Storage as _};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Why a slice could not be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not sliceable: the origin ignored Range (200), sent no strong validator, or the
    /// slice may not be stored (`unsliced`: remember the URL), or answered another status.
    /// The request goes the normal (unsliced) way when nothing was sent yet.
    Fallback { unsliced: bool },
    /// 416: the slice starts past the end (the total length when the origin said it).
    Unsatisfiable(Option<u64>),
    /// The origin has another representation than the one being assembled (412, or a
    /// slice of another validator or length).
    Mismatch,
    /// The origin could not be reached, timed out or broke the response (the error kind
    /// picks 502, 503 or 504).
    Failed(ErrorType, String),
}

/// How a fill ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// The slice is stored (or being stored) from the origin's 206.
    Fetched,
    /// A stale stored slice was refreshed by a 304.
    Revalidated,
    /// Someone else's fill had stored it meanwhile.
    Found,
}

/// Slices being fetched (until their fill is registered in storage): one fetch per slice.
type Waiting = watch::Receiver<Option<Result<Filled, Stop>>>;
static INFLIGHT: LazyLock<Mutex<HashMap<HashBinary, Waiting>>> = LazyLock::new(Mutex::default);

/// URLs whose origin does not slice (see [`Stop::Fallback`]), with when they were seen:
/// served unsliced for [`UNSLICED_FOR`]. Bounded: cleared when it grows past the cap.
static UNSLICED: LazyLock<Mutex<HashMap<HashBinary, Instant>>> = LazyLock::new(Mutex::default);
const UNSLICED_FOR: Duration = Duration::from_secs(600);
const UNSLICED_CAP: usize = 10_000;

/// Whether the URL of `key` is served unsliced for now.
pub(crate) fn unsliced(key: &CacheKey) -> bool {
    let pk = key.primary_bin();
    let mut m = UNSLICED.lock();
    match m.get(&pk) {
        Some(at) if at.elapsed() < UNSLICED_FOR => true,
        Some(_) => {
            m.remove(&pk);
            false
        }
        None => false,
    }
}

fn mark_unsliced(key: &CacheKey) {
    let mut m = UNSLICED.lock();
    if m.len() >= UNSLICED_CAP {
        m.clear();
    }
    m.insert(key.primary_bin(), Instant::now());
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

/// A fresh stored (or filling) slice `index`, as found in storage.
pub(crate) async fn lookup(
    storage: &'static Storage,
    key: &CacheKey,
) -> Option<(pingora::cache::CacheMeta, pingora::cache::HitHandler)> {
    let found = storage.lookup(key, &span()).await.ok()??;
    found.0.is_fresh(SystemTime::now()).then_some(found)
}

/// Makes sure slice `index` is stored or filling: joins the fill in flight or starts one
/// (fetched with `expect`'s precondition). Returns once the fill is registered in storage
/// (look it up then) or failed.
pub(crate) async fn fill(job: &Arc<Job>, index: u64, expect: Option<&Rep>) -> Result<Filled, Stop> {
    let key = job.key(index);
    let bin = key.combined_bin();
    let mut rx = {
        let mut m = INFLIGHT.lock();
        match m.get(&bin) {
            Some(rx) => rx.clone(),
            None => {
                let (tx, rx) = watch::channel(None);
                m.insert(bin, rx.clone());
                tokio::spawn(run(job.clone(), index, key, expect.cloned(), tx));
                rx
            }
        }
    };
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    };
    outcome.unwrap_or(Err(Stop::Failed(
        ErrorType::InternalError,
        "slice fill went away".into(),
    )))
}

type Tx = watch::Sender<Option<Result<Filled, Stop>>>;

/// Ends the waiting of a fill's requesters (after the fill is registered, so a lookup
/// after this finds it).
fn publish(tx: &Tx, bin: &HashBinary, outcome: Result<Filled, Stop>) {
    INFLIGHT.lock().remove(bin);
    let _ = tx.send(Some(outcome));
}

async fn run(job: Arc<Job>, index: u64, key: CacheKey, expect: Option<Rep>, tx: Tx) {
    let bin = key.combined_bin();
    // A fill may have been registered between the requester's lookup and its INFLIGHT check.
    if lookup(job.storage, &key).await.is_some() {
        return publish(&tx, &bin, Ok(Filled::Found));
    }
    // A stale copy of this representation is revalidated (a 304 refreshes it in place).
    let stale = job.storage.peek(&key).await.filter(|m| {
        expect
            .as_ref()
            .is_none_or(|rep| slice::is_slice_of(m.response_header(), rep, job.size, index))
    });
    let (mut http, peer, meta) = match head(&job, index, expect.as_ref(), stale.as_ref()).await {
        Ok(Head::Fill(http, peer, meta)) => (http, peer, meta),
        Ok(Head::Revalidated(http, peer, meta)) => {
            let refreshed = job.storage.update_meta(&key, &meta, &span()).await;
            let outcome = match refreshed {
                Ok(true) => Ok(Filled::Revalidated),
                Ok(false) => Err(Stop::Failed(
                    ErrorType::InternalError,
                    "revalidated slice is gone".into(),
                )),
                Err(e) => Err(failed(e)),
            };
            publish(&tx, &bin, outcome);
            return release(http, &peer).await;
        }
        Err(stop) => {
            if matches!(stop, Stop::Fallback { unsliced: true }) {
                mark_unsliced(&key);
            }
            return publish(&tx, &bin, Err(stop));
        }
    };
    let mut writer = match job.storage.get_miss_handler(&key, &meta, &span()).await {
        Ok(w) => w,
        Err(e) => return publish(&tx, &bin, Err(failed(e))),
    };
    publish(&tx, &bin, Ok(Filled::Fetched));
    let want = Rep::of(meta.response_header()).map_or(0, |(_, first, last)| last - first + 1);
    let mut got = 0u64;
    loop {
        match http.read_response_body().await {
            Ok(Some(data)) => {
                got += data.len() as u64;
                if got > want || writer.write_body(data, false).await.is_err() {
                    return; // dropping the writer fails the fill: readers get an error
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, index, "slice fill: origin body failed");
                return;
            }
        }
    }
    if got != want {
        tracing::debug!(
            got,
            want,
            index,
            "slice fill: origin body of the wrong length"
        );
        return;
    }
    if let Err(e) = writer.finish().await {
        tracing::debug!(error = %e, index, "slice fill: storing failed");
    }
    release(http, &peer).await;
}

/// Puts the origin connection back in the pool when its response is complete.
async fn release(mut http: HttpSession, peer: &HttpPeer) {
    if http.response_done() {
        connector()
            .release_http_session(http, peer, peer.options.idle_timeout)
            .await;
    }
}

/// What the origin's answer to a slice request allows.
enum Head {
    /// A 206 to store: its body follows on the session.
    Fill(HttpSession, HttpPeer, pingora::cache::CacheMeta),
    /// A 304 to the stale slice's validator: the refreshed meta to store.
    Revalidated(HttpSession, HttpPeer, pingora::cache::CacheMeta),
}

fn failed(e: Box<Error>) -> Stop {
    Stop::Failed(e.etype().clone(), e.to_string())
}

/// Sends the slice request and judges the origin's response head.
async fn head(
    job: &Job,
    index: u64,
    expect: Option<&Rep>,
    stale: Option<&pingora::cache::CacheMeta>,
) -> Result<Head, Stop> {
    let pq = job
        .req
        .uri
        .path_and_query()
        .map_or(b"/".as_slice(), |p| p.as_str().as_bytes());
    let server = job
        .pool
        .select(pq, &[])
        .ok_or_else(|| Stop::Failed(ErrorType::HTTPStatus(503), "no healthy server".into()))?;
    let peer = peer_for(&job.pool, &server);
    let mut req = job.req.clone();
    req.insert_header("range", slice::origin_range(job.size, index))
        .map_err(failed)?;
    if let Some(rep) = expect {
        let (name, value) = rep.precondition();
        req.insert_header(name, value).map_err(failed)?;
    }
    // If-Match passes first (RFC 9110 §13.2.2), then If-None-Match gives the 304.
    let stale_rep = stale.and_then(|m| Rep::of(m.response_header()));
    if let Some((rep, _, _)) = &stale_rep {
        let (name, value) = rep.revalidation();
        req.insert_header(name, value).map_err(failed)?;
    }
    let request_time = SystemTime::now();
    let mut http = None;
    for attempt in 0..2 {
        let (mut h, reused) = match connector().get_http_session(&peer).await {
            Ok(got) => got,
            Err(e) => {
                job.pool.report_connect_failure(&server.addr);
                return Err(failed(e));
            }
        };
        let sent = async {
            h.write_request_header(Box::new(req.clone())).await?;
            h.finish_request_body().await?;
            h.read_response_header().await
        }
        .await;
        match sent {
            Ok(()) => {
                http = Some(h);
                break;
            }
            // The origin closed an idle pooled connection as it was reused: once more.
            Err(_) if reused && attempt == 0 => continue,
            Err(e) => return Err(failed(e)),
        }
    }
    let http =
        http.ok_or_else(|| Stop::Failed(ErrorType::ConnectError, "origin did not answer".into()))?;
    let response_time = SystemTime::now();
    let resp = http.response_header().ok_or_else(|| {
        Stop::Failed(
            ErrorType::InvalidHTTPHeader,
            "origin sent no response header".into(),
        )
    })?;
    let status = resp.status.as_u16();
    if let Some(c) = server.requests.get(crate::metrics::class_index(status)) {
        c.inc();
    }
    job.pool.report_success(&server.addr);
    let got = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
    if let (304, Some(stale)) = (status, stale) {
        let merged = crate::cache::policy::merge_304(stale.response_header(), resp);
        let defaults = &job.rt.cache.defaults;
        let meta =
            crate::cache::slice_meta(&job.req, &merged, request_time, response_time, defaults)
                .map_err(|_| Stop::Fallback { unsliced: true })?;
        return Ok(Head::Revalidated(http, peer, meta));
    }
    match status {
        206 => {}
        200 => return Err(Stop::Fallback { unsliced: true }),
        412 => return Err(Stop::Mismatch),
        416 => {
            let total = got("content-range").and_then(slice::unsatisfied_length);
            return Err(Stop::Unsatisfiable(total));
        }
        _ => return Err(Stop::Fallback { unsliced: false }),
    }
    let Some((rep, first, last)) = Rep::of(resp) else {
        return Err(Stop::Fallback { unsliced: true });
    };
    let start = index.saturating_mul(job.size);
    let end = start.saturating_add(job.size).min(rep.total);
    if first != start || last.saturating_add(1) != end {
        return Err(Stop::Failed(
            ErrorType::InvalidHTTPHeader,
            format!(
                "origin's Content-Range {:?} is not slice {index}",
                got("content-range")
            ),
        ));
    }
    if expect.is_some_and(|e| *e != rep) {
        return Err(Stop::Mismatch);
    }
    let defaults = &job.rt.cache.defaults;
    let meta = crate::cache::slice_meta(&job.req, resp, request_time, response_time, defaults)
        .map_err(|reason| {
            tracing::debug!(reason, "slice not storable: served unsliced");
            Stop::Fallback { unsliced: true }
        })?;
    Ok(Head::Fill(http, peer, meta))
}
