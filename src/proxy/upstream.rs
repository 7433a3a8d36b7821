//! Upstream side of a request: server choice (with retries on connect failure),
//! proxy headers to the origin, and bookkeeping of the origin's answer.

use super::ctx::RequestCtx;
use super::headers;
use crate::upstream::pool::{Pool, Server};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use std::time::Instant;

/// `upstream_peer`: a healthy server not yet tried by this request.
pub fn pick(session: &Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(pool) = ctx.pool.clone() else {
        return Err(Error::explain(ErrorType::HTTPStatus(404), "no route"));
    };
    if let Some(peer) = owner_peer(session, ctx, &pool) {
        return Ok(peer);
    }
    ctx.attempts += 1;
    let key = session
        .req_header()
        .uri
        .path_and_query()
        .map_or(b"/".as_slice(), |p| p.as_str().as_bytes());
    // After a failure on a reused connection, prefer another server, but that one is still usable.
    let preferred = ctx.avoid.take().and_then(|a| {
        let mut exclude = ctx.tried.clone();
        exclude.push(a);
        pool.select(key, &exclude)
    });
    let server = match preferred.or_else(|| pool.select(key, &ctx.tried)) {
        Some(s) => s,
        None if !ctx.tried.is_empty() => {
            return Err(Error::explain(
                ErrorType::ConnectRefused,
                "every server tried failed to connect",
            )
            .into_up());
        }
        None => {
            return Err(Error::explain(ErrorType::HTTPStatus(503), "no healthy server").into_up())
        }
    };
    let peer = peer_for(&pool, &server);
    ctx.active = Some(server.begin());
    ctx.server = Some(server);
    ctx.upstream_started = Some(Instant::now());
    ctx.cache.request_time = Some(std::time::SystemTime::now());
    Ok(Box::new(peer))
}

/// Peering: the owner of this request's cache key when it is another node, the request
/// may be cached, has not taken a peer hop yet, and the owner has not failed it.
fn owner_peer(session: &Session, ctx: &mut RequestCtx, pool: &Pool) -> Option<Box<HttpPeer>> {
    if ctx.peer_failed || !ctx.cacheable_route {
        return None;
    }
    let rt = ctx.rt.clone();
    let ring = rt.ring.as_ref()?;
    let req = session.req_header();
    if !matches!(req.method.as_str(), "GET" | "HEAD") || crate::fleet::peering::looped(req) {
        return None;
    }
    let key = super::caching::object_url(session, ctx);
    let owner = ring.owner(key.as_str().as_bytes())?;
    let peer = pool.plain_peer(owner);
    ctx.peer = Some(owner);
    ctx.upstream_started = Some(Instant::now());
    ctx.cache.request_time = Some(std::time::SystemTime::now());
    Some(Box::new(peer))
}

/// The purge floor a node sends its owning peer (see [`crate::fleet::Fleet::floor`]).
pub const FLOOR_HEADER: &str = "outpost-fleet-floor";

/// The peer for `server` of the origin (TLS, SNI, CA, timeouts): [`Pool::peer`].
pub fn peer_for(pool: &Pool, server: &Server) -> HttpPeer {
    pool.peer(server)
}

/// `fail_to_connect`: passive health, then retry idempotent requests on another server.
pub fn connect_failed(
    session: &Session,
    peer: &HttpPeer,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    ctx.active = None;
    if ctx.peer.take().is_some() {
        // The owner is down or slow: ask the origin (not counted against `retries`).
        tracing::debug!(owner = ?peer.address(), "peer owner unreachable; going to the origin");
        ctx.peer_failed = true;
        e.set_retry(true);
        return e;
    }
    if let (Some(pool), Some(addr)) = (ctx.pool.as_ref(), peer.address().as_inet()) {
        pool.report_connect_failure(addr);
        ctx.tried.push(*addr);
        let idempotent = matches!(
            session.req_header().method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );
        if idempotent && ctx.attempts <= pool.cfg.retries {
            e.set_retry(true);
        }
    }
    e
}

/// Retries after a failed *reused* connection that do not count against `retries`.
const FREE_RETRIES: u8 = 2;

/// `error_while_proxy`: an idempotent request (body fully buffered) whose *reused*
/// connection failed before any response byte is sent again, preferably to another server.
/// That is an origin that closed the idle pooled connection as it was being reused (its
/// keep-alive timeout: Node's is 5 s): the failure is on the write, or on reading the head.
/// Pingora itself only retries the second kind. Two such retries are free, later ones count
/// in `retries`.
pub fn proxy_error(
    peer: &HttpPeer,
    session: &Session,
    mut e: Box<Error>,
    ctx: &mut RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    ctx.active = None;
    let idempotent = session.req_header().method.is_idempotent();
    if !idempotent || session.as_ref().retry_buffer_truncated() {
        e.set_retry(false);
        return e;
    }
    let before_answer = ctx.upstream_ms.is_none()
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        );
    if client_reused && before_answer {
        e.set_retry(true);
    } else {
        e.retry.decide_reuse(client_reused);
    }
    if !e.retry() {
        return e;
    }
    let retries = ctx.pool.as_ref().map_or(0, |p| p.cfg.retries);
    if ctx.free_retries < FREE_RETRIES {
        ctx.free_retries += 1;
        ctx.attempts = ctx.attempts.saturating_sub(1);
    } else if ctx.attempts > retries {
        e.set_retry(false);
        return e;
    }
    ctx.avoid = peer.address().as_inet().copied();
    e
}

/// `upstream_request_filter`: Host, X-Forwarded-*, X-Real-IP, Via; hop-by-hop removed.
pub fn prepare_request(session: &Session, req: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    crate::message::strip_hop_by_hop_req(req);
    let client_host = session
        .req_header()
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            session
                .req_header()
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let pool_host = ctx.pool.as_ref().map(|p| p.cfg.host.as_str()).unwrap_or("");
    if ctx.peer.is_none() {
        // Fleet-internal: never sent to an origin.
        req.remove_header(FLOOR_HEADER);
    }
    if ctx.peer.is_some() {
        // The owner routes and keys by the client's Host, like this node did.
        if !client_host.is_empty() {
            req.insert_header("host", client_host.as_str())?;
        }
        let hop = match req.headers.get("cdn-loop").and_then(|v| v.to_str().ok()) {
            Some(v) if !v.trim().is_empty() => {
                format!("{v}, {}", crate::fleet::peering::LOOP_TOKEN)
            }
            _ => crate::fleet::peering::LOOP_TOKEN.to_string(),
        };
        req.insert_header("cdn-loop", hop)?;
        if let Some(floor) = ctx.fleet_floor {
            req.insert_header(FLOOR_HEADER, floor.to_string())?;
        }
    } else if !pool_host.is_empty() {
        req.insert_header("host", pool_host)?;
    } else if req.headers.get("host").is_none() && !client_host.is_empty() {
        req.insert_header("host", client_host.as_str())?;
    }
    if req.headers.get("host").is_none() {
        // An HTTP/1.0 client may omit Host; an HTTP/1.1 origin must get one (RFC 9112 §3.2).
        let server = ctx.server.as_ref().map(|s| s.addr.to_string());
        req.insert_header("host", server.as_deref().unwrap_or("localhost"))?;
    }
    if req.uri.scheme().is_some() {
        // Absolute-form from the client: origins get origin-form (RFC 9112 §3.2.1).
        let pq = req
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Ok(uri) = pq.parse::<http::Uri>() {
            req.set_uri(uri);
        }
    }
    if let (Some(ip), rt) = (ctx.client_ip, &ctx.rt) {
        let existing = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (xff, real) =
            headers::forwarded_for(existing.as_deref(), ip, &rt.cfg.server.trusted_proxies);
        req.insert_header("x-forwarded-for", xff)?;
        req.insert_header("x-real-ip", real.to_string())?;
    }
    let proto = super::caching::scheme(session).as_str();
    req.insert_header("x-forwarded-proto", proto)?;
    if !client_host.is_empty() {
        req.insert_header("x-forwarded-host", client_host)?;
    }
    if session.cache.enabled() {
        // Only the codings the Vary key distinguishes, so a stored variant never holds a coding
        // (e.g. deflate) that another client sharing its key cannot decode.
        req.insert_header(
            "accept-encoding",
            crate::cache::key::accept_encoding_key(session.req_header()),
        )?;
    }
    let via = headers::via(req.headers.get("via").and_then(|v| v.to_str().ok()));
    req.insert_header("via", via)?;
    Ok(())
}

/// `upstream_response_filter`: origin timing, per-server counters, passive success.
pub fn on_response(resp: &ResponseHeader, ctx: &mut RequestCtx) {
    if let Some(t) = ctx.upstream_started {
        let secs = t.elapsed().as_secs_f64();
        ctx.upstream_ms = Some(secs * 1000.0);
        if let Some(pool) = &ctx.pool {
            pool.duration.observe(secs);
            pool.latency.record(secs);
        }
    }
    if let Some(server) = &ctx.server {
        if let Some(c) = server
            .requests
            .get(crate::metrics::class_index(resp.status.as_u16()))
        {
            c.inc();
        }
        if let Some(pool) = &ctx.pool {
            pool.report_success(&server.addr);
        }
    }
}
