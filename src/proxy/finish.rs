//! `logging`: request metrics and the JSON access log line (interface.md §6, §7).

use super::ctx::RequestCtx;
use crate::state::Shared;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// Records the finished request.
pub fn finish(shared: &Shared, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    ctx.active = None;
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.local_status)
        .unwrap_or_else(|| e.map_or(0, |e| super::failure::classify(e).0));
    let elapsed = ctx.started.elapsed();
    shared
        .metrics
        .request_duration
        .observe(elapsed.as_secs_f64());
    {
        let rt = &ctx.rt;
        if status > 0 {
            if let Some(c) = rt
                .counters(ctx.route)
                .and_then(|c| c.get(crate::metrics::class_index(status)))
            {
                c.inc();
            }
        }
    }
    if status > 0 {
        if let Some(c) = shared
            .metrics
            .requests_by_class
            .get(crate::metrics::class_index(status))
        {
            c.inc();
        }
    }
    if session.subrequest_ctx.is_some() {
        return;
    }
    shared
        .metrics
        .sent_bytes
        .inc_by(u64::try_from(session.body_bytes_sent()).unwrap_or(0));
    if ctx.route.is_some() && ctx.local_status.is_none() {
        let (result, tier) = super::status::lookup_result(session, ctx);
        shared.metrics.lookup(result, tier);
        if session.cache.lock_duration().is_some() {
            shared.metrics.coalesced.inc();
        }
    }
    if !shared.access_log.enabled() {
        return;
    }
    let req = session.req_header();
    let id = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let line = serde_json::json!({
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "client": ctx.client_ip.map(|ip| ip.to_string()),
        "method": req.method.as_str(),
        "host": ctx.host,
        "path": req.uri.path_and_query().map_or("/", |p| p.as_str()),
        "status": status,
        "bytes": session.body_bytes_sent(),
        "duration_ms": (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "cache": ctx.cache_status,
        "origin": ctx.upstream_ms.filter(|_| ctx.peer.is_none()).and(ctx.pool.as_ref()).map(|p| p.name()),
        // Peering: the owning node that answered instead of the origin.
        "peer": ctx.peer.map(|p| p.to_string()),
        "server": ctx.upstream_ms.and(ctx.server.as_ref()).map(|s| s.label.as_str()),
        "upstream_ms": ctx.upstream_ms.map(|m| (m * 1000.0).round() / 1000.0),
        "request_id": format!("{:x}-{id:x}", std::process::id()),
    });
    shared.access_log.write(line.to_string());
}
