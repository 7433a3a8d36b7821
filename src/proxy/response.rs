//! `response_filter` (runs on hits and misses): hop-by-hop cleanup, Via, tags and
//! CDN-Cache-Control stripped, `Cache-Status` set.

use super::ctx::RequestCtx;
use super::headers;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Decorates the response going to the client.
pub fn decorate(
    session: &mut Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    headers::strip_hop_by_hop_resp(resp);
    if ctx.cache.stale_error {
        // pingora does not reuse a connection whose upstream failed; say so to the client.
        session.set_keepalive(None);
    }
    for name in [
        "surrogate-key",
        "cache-tag",
        "cdn-cache-control",
        "surrogate-control",
    ] {
        resp.remove_header(name);
    }
    let via = headers::via(resp.headers.get("via").and_then(|v| v.to_str().ok()));
    resp.insert_header("via", via)?;
    crate::cache::fix_age(session, resp);
    if let Some(rt) = ctx.rt.as_ref() {
        super::compress::decide(session, resp, &rt.cfg.compression);
    }
    let status = crate::cache::status::cache_status(session, ctx);
    resp.insert_header("cache-status", status.as_str())?;
    ctx.cache_status = Some(status);
    Ok(())
}
