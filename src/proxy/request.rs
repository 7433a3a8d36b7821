//! `request_filter`: validate the request, resolve its route, answer what we answer
//! ourselves (404, 400, 431, 501) before anything reaches an origin.

use super::ctx::RequestCtx;
use super::failure::{respond, respond_with};
use super::headers::{self, Reject};
use super::limits::{self, Verdict};
use crate::cache::status::Fwd;
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
    let rt = ctx.rt.clone();
    ctx.inflight = Some(shared.begin_request());
    ctx.client_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let limits = headers::Limits {
        header_bytes: rt.cfg.server.max_request_header,
        fields: rt.cfg.server.max_headers,
        uri: rt.cfg.server.max_uri,
    };
    let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
    let verdict = headers::validate(raw.as_deref(), session.req_header(), &limits);
    if let Err(r) = verdict {
        let (status, detail, text) = match r {
            Reject::TooLarge => (431, "header-too-large", "request header too large"),
            Reject::TooManyFields => (431, "header-too-large", "too many request header fields"),
            Reject::UriTooLong => (414, "uri-too-long", "request-target too long"),
            Reject::Malformed(why) => (400, "bad-request", why),
            Reject::BadHost => (400, "bad-host", "invalid Host header"),
            Reject::UnknownCoding => (501, "bad-request", "unsupported transfer coding"),
        };
        respond(session, ctx, status, Fwd::Bypass, detail, text).await?;
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
            Fwd::Bypass,
            "bad-host",
            "missing or invalid Host header",
        )
        .await?;
        return Ok(true);
    };
    ctx.host = host;
    // Routing, the cache key and the origin see one spelling of the path.
    match crate::url::normalize_path(session.req_header().uri.path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => {}
        Ok(std::borrow::Cow::Owned(path)) => {
            if !set_path(session, &path) {
                respond(
                    session,
                    ctx,
                    400,
                    Fwd::Bypass,
                    "bad-request",
                    "invalid request-target",
                )
                .await?;
                return Ok(true);
            }
        }
        Err(_) => {
            let text = "ambiguous path (an encoded / or \\ next to a dot segment)";
            respond(session, ctx, 400, Fwd::Bypass, "bad-request", text).await?;
            return Ok(true);
        }
    }
    let path = session.req_header().uri.path();
    let Some(route_idx) = rt.routes.resolve(&ctx.host, path) else {
        let text = format!("no route for host \"{}\"", ctx.host);
        respond(session, ctx, 404, Fwd::Bypass, "no-route", &text).await?;
        return Ok(true);
    };
    ctx.route = Some(route_idx);
    let Some(route) = rt.cfg.routes.get(route_idx) else {
        return Ok(false);
    };
    if !route.allow.is_empty() || !route.deny.is_empty() || route.rate_limit.is_some() {
        if let Some(peer) = ctx.client_ip {
            let req = session.req_header();
            let xff = req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let client = headers::real_client(xff, peer, &rt.cfg.server.trusted_proxies);
            let limiter = rt.limiters.get(route_idx).and_then(Option::as_ref);
            match limits::judge(route, limiter, client) {
                Verdict::Pass => {}
                Verdict::Acl => {
                    shared.metrics.refused_acl.inc();
                    let text = "client address not allowed on this route";
                    respond(session, ctx, 403, Fwd::Bypass, "acl", text).await?;
                    return Ok(true);
                }
                Verdict::Limited { retry_after_s } => {
                    shared.metrics.refused_rate_limit.inc();
                    let retry = retry_after_s.to_string();
                    let text = "rate limit exceeded";
                    respond_with(
                        session,
                        ctx,
                        429,
                        ("retry-after", &retry),
                        "rate-limit",
                        text,
                    )
                    .await?;
                    return Ok(true);
                }
            }
        }
    }
    if let Some(fleet) = &shared.fleet {
        fleet_marks(session, ctx, fleet, rt.ring.is_some());
    }
    ctx.pool = rt.pools.get(route.origin).cloned();
    ctx.cacheable_route = route.cache;
    Ok(false)
}

/// Peering and purges: a peer's request whose purge floor this node has not reached yet is
/// answered only after revalidation; a request this node may send to a peer carries ours.
fn fleet_marks(session: &Session, ctx: &mut RequestCtx, fleet: &crate::fleet::Fleet, ring: bool) {
    let req = session.req_header();
    if crate::fleet::peering::looped(req) {
        let floor = req
            .headers
            .get(super::upstream::FLOOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        ctx.fleet_behind = floor.is_some_and(|f| f > fleet.cursor());
    } else if ring {
        ctx.fleet_floor = Some(fleet.floor());
    }
}

/// Replaces the request's path (keeping scheme, authority and query). False when the
/// result is not a valid URI.
fn set_path(session: &mut Session, path: &str) -> bool {
    let uri = &session.req_header().uri;
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = http::uri::Builder::new();
    if let Some(s) = uri.scheme() {
        parts = parts.scheme(s.clone());
    }
    if let Some(a) = uri.authority() {
        parts = parts.authority(a.clone());
    }
    match parts.path_and_query(pq).build() {
        Ok(new) => {
            session.req_header_mut().set_uri(new);
            true
        }
        Err(_) => false,
    }
}
