//! `response_filter` (runs on hits and misses): hop-by-hop cleanup, Via, tags stripped
//! (and CDN-Cache-Control when `cache.forward_cdn_cache_control = false`), `Cache-Status`
//! set. `check_upstream`: what an origin's response head must satisfy to be used at all.

use super::ctx::RequestCtx;
use super::headers;
use crate::cache::status::CacheStatus;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::ConflictingFraming;
use pingora::proxy::Session;

/// Decorates the response going to the client (its Cache-Status from the cache phase).
pub fn decorate(
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    super::caching::fix_age(session, resp);
    let status = super::status::cache_status(session, ctx);
    decorate_as(session, resp, ctx, status)
}

/// [`decorate`] with a given Cache-Status (answers written outside pingora's cache).
pub fn decorate_as(
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    status: CacheStatus,
) -> Result<()> {
    crate::message::strip_hop_by_hop_resp(resp);
    if ctx.cache.stale_error {
        // pingora does not reuse a connection whose upstream failed; say so to the client.
        session.set_keepalive(None);
    }
    for name in ["surrogate-key", "cache-tag", "surrogate-control"] {
        resp.remove_header(name);
    }
    if !ctx.rt.cfg.cache.forward_cdn_cache_control {
        resp.remove_header("cdn-cache-control");
    }
    let via = headers::via(resp.headers.get("via").and_then(|v| v.to_str().ok()));
    resp.insert_header("via", via)?;
    super::compress::decide(session, resp, &ctx.rt.cfg.compression);
    let mut status = status.to_string();
    if ctx.peer.is_some() {
        // RFC 9211 list order: the owning peer's entry first, then this node's.
        if let Some(theirs) = resp
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
        {
            status = format!("{theirs}, {status}");
        }
    }
    resp.insert_header("cache-status", status.as_str())?;
    ctx.cache_status = Some(status);
    Ok(())
}

/// The smallest cap on an origin's response head, whatever `max_request_header` says.
const MIN_RESPONSE_HEAD: u64 = 64 * 1024;

/// An origin response head larger than `max(server.max_request_header, 64KiB)` is refused
/// (502, never stored or forwarded), like an oversized request head is; so is one with both
/// Content-Length and Transfer-Encoding (RFC 9112 §6.3: it may be response splitting; nginx
/// answers 502 too). The patched Pingora client (vendor/README.md) has already dropped the
/// Content-Length, marked the head and taken the connection out of reuse.
pub fn check_upstream(resp: &ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if resp.extensions.get::<ConflictingFraming>().is_some() {
        let mut e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "origin response has both Content-Length and Transfer-Encoding",
        );
        e.as_up();
        return Err(e);
    }
    let cap = ctx.rt.cfg.server.max_request_header.max(MIN_RESPONSE_HEAD);
    let size: u64 = resp
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64)
        .sum();
    if size > cap {
        let mut e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            format!("origin response header of {size} bytes is over the {cap}-byte limit"),
        );
        e.as_up();
        return Err(e);
    }
    Ok(())
}
