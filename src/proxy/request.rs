//! `request_filter`: validate the request, resolve its route, answer what we answer
//! ourselves (404, 400, 431, 501) before anything reaches an origin.

use super::ctx::RequestCtx;
use super::failure::respond;
use super::headers::{self, Reject};
use crate::state::Shared;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// Returns `Ok(true)` when the response has been written here.
pub async fn admit(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let rt = match ctx.rt.clone() {
        Some(rt) => rt,
        None => shared.runtime.load_full(),
    };
    ctx.inflight = Some(shared.begin_request());
    ctx.client_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let max = rt.cfg.server.max_request_header;
    let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
    let verdict = headers::validate(raw.as_deref(), session.req_header(), max);
    ctx.rt = Some(rt.clone());
    if let Err(r) = verdict {
        let (status, detail, text) = match r {
            Reject::TooLarge => (431, "header-too-large", "request header too large"),
            Reject::Malformed(why) => (400, "bad-request", why),
            Reject::BadHost => (400, "bad-host", "invalid Host header"),
            Reject::UnknownCoding => (501, "bad-request", "unsupported transfer coding"),
        };
        respond(session, ctx, status, "bypass", detail, text).await?;
        return Ok(true);
    }
    let req = session.req_header();
    // RFC 9112 §3.2: a 1.1 request without Host is invalid; 1.0 clients may omit it
    // (they then reach only the catch-all routes).
    let http10_without_host = req.version == http::Version::HTTP_10
        && req.uri.authority().is_none()
        && req.headers.get(http::header::HOST).is_none();
    let host = if http10_without_host {
        Some(String::new())
    } else {
        headers::host_of(req)
    };
    let Some(host) = host else {
        respond(
            session,
            ctx,
            400,
            "bypass",
            "bad-host",
            "missing or invalid Host header",
        )
        .await?;
        return Ok(true);
    };
    ctx.host = host;
    let path = session.req_header().uri.path();
    let Some(route_idx) = rt.routes.resolve(&ctx.host, path) else {
        let text = format!("no route for host \"{}\"", ctx.host);
        respond(session, ctx, 404, "bypass", "no-route", &text).await?;
        return Ok(true);
    };
    ctx.route = Some(route_idx);
    let Some(route) = rt.cfg.routes.get(route_idx) else {
        return Ok(false);
    };
    ctx.pool = rt.pools.get(route.origin).cloned();
    ctx.cacheable_route = route.cache;
    Ok(false)
}
