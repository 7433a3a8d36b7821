//! Purges triggered on the proxy listener: the `PURGE` method (from `cache.purge_allow`
//! only) and RFC 9111 §4.4 invalidation after a successful unsafe request.

use super::ctx::RequestCtx;
use super::failure::respond;
use crate::cache::purge::{Purge, PurgeRequest};
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::{key, policy};
use crate::state::Shared;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::Arc;

/// Handles `PURGE /path`: purges that URL (every variant, every tier) and answers with the
/// same JSON as `POST /purge`. Returns `Ok(true)` when it answered.
pub async fn maybe_purge(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    if session.req_header().method.as_str() != "PURGE" {
        return Ok(false);
    }
    let rt = ctx.rt.clone();
    let allowed = ctx
        .client_ip
        .is_some_and(|ip| rt.cfg.cache.purge_allow.iter().any(|n| n.contains(&ip)));
    if !allowed {
        respond(
            session,
            ctx,
            403,
            Fwd::Bypass,
            "purge-denied",
            "PURGE not allowed from this address",
        )
        .await?;
        return Ok(true);
    }
    let url = super::caching::object_url(session, ctx);
    let who = ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let req = PurgeRequest::url(url.into_string());
    let (status, body) =
        crate::ops::purge::answer(&crate::ops::purge::run(shared, req, &who, "PURGE").await);
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", text.len().to_string())?;
    let cs = CacheStatus::answer(Fwd::Bypass, "purge").to_string();
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.local_status = Some(status);
    ctx.cache_status = Some(cs);
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(text)), true)
        .await?;
    Ok(true)
}

/// RFC 9111 §4.4: a 2xx/3xx answer to an unsafe method invalidates the target URI and the
/// same-host `Location` / `Content-Location`.
pub async fn invalidate_on_unsafe(
    shared: &Shared,
    session: &Session,
    resp: &ResponseHeader,
    ctx: &RequestCtx,
) {
    let method = &session.req_header().method;
    if !policy::invalidates(method, resp.status.as_u16()) || ctx.route.is_none() {
        return;
    }
    let rt = &ctx.rt;
    let pq = session
        .req_header()
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str());
    let urls = key::invalidation_urls(
        super::caching::scheme(session),
        &ctx.host,
        pq,
        resp,
        &rt.cache.filter,
    );
    let _ = crate::cache::purge::run(shared.cache.storage, &Purge::urls(urls)).await;
}
