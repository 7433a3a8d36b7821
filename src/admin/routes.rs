//! Admin endpoints. Read-only ones need no auth; mutating ones check the bearer token.

use super::{auth, Admin};
use async_trait::async_trait;
use http::Response;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

/// Operations the admin API triggers elsewhere (cache purge, config reload), kept behind
/// a trait so the API does not care how they are done.
#[async_trait]
pub trait Ops: Send + Sync + std::fmt::Debug {
    /// `POST /purge` (the body parsed) → what the purge did, or why it was refused.
    async fn purge(
        &self,
        req: crate::cache::purge::PurgeRequest,
        who: &str,
    ) -> Result<crate::ops::purge::PurgeOutcome, crate::cache::purge::PurgeError>;
    /// `POST /config/reload`.
    async fn reload(&self) -> (u16, Value);
    /// `POST /config/rollback`.
    async fn rollback(&self) -> (u16, Value);
    /// `GET /config`.
    fn config(&self) -> Value;
    /// Cache section of `/status`; also refreshes cache gauges.
    fn cache_status(&self) -> Value;
}

const MAX_BODY: usize = 1 << 20;

pub(super) async fn handle(admin: &Admin, session: &mut ServerSession) -> Response<Vec<u8>> {
    let method = session.req_header().method.as_str().to_string();
    let path = session.req_header().uri.path().to_string();
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/healthz") => text(200, "ok\n"),
        ("GET" | "HEAD", "/readyz") => readyz(admin),
        ("GET" | "HEAD", "/metrics") => {
            let _ = admin.ops.cache_status();
            let body = admin.shared.metrics.encode();
            reply(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.into_bytes(),
            )
        }
        ("GET" | "HEAD", "/status") => status(admin),
        ("GET" | "HEAD", "/dashboard" | "/dashboard/") => super::dashboard::page(),
        ("GET" | "HEAD", "/dashboard/data") => {
            let since = session
                .req_header()
                .uri
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let cache = admin.ops.cache_status();
            let data = crate::dashboard::data(&admin.shared, cache, since);
            let mut r = reply(
                200,
                "application/json",
                serde_json::to_vec(&data).unwrap_or_default(),
            );
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            r
        }
        ("GET" | "HEAD", "/config") => json_reply(200, &admin.ops.config()),
        ("POST", "/purge" | "/config/reload" | "/config/rollback") => {
            let auth_header = session
                .req_header()
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let token = admin.shared.runtime.load().cfg.admin.token.clone();
            if let Err((code, msg)) = auth::check(auth_header.as_deref(), token.as_deref()) {
                return json_reply(code, &json!({ "error": msg }));
            }
            let who = session
                .client_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let (code, v) = match path.as_str() {
                "/purge" => match read_body(session).await {
                    Ok(body) => {
                        let done = match crate::cache::purge::PurgeRequest::from_json(&body) {
                            Ok(req) => admin.ops.purge(req, &who).await,
                            Err(e) => Err(e),
                        };
                        crate::ops::purge::answer(&done)
                    }
                    Err((code, msg)) => (code, json!({ "error": msg })),
                },
                "/config/reload" => admin.ops.reload().await,
                _ => admin.ops.rollback().await,
            };
            json_reply(code, &v)
        }
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/config" | "/purge"
            | "/config/reload" | "/config/rollback" | "/dashboard" | "/dashboard/data",
        ) => json_reply(
            405,
            &json!({ "error": format!("method {method} not allowed on {path}") }),
        ),
        _ => json_reply(
            404,
            &json!({ "error": format!("no admin endpoint {path}") }),
        ),
    }
}

/// The request body, at most `MAX_BODY` bytes: larger is 413 (announced by Content-Length
/// or found while reading), unreadable 400. An oversized body is read on and discarded for a
/// while (like nginx's lingering close), so that the client, still sending, gets to read the
/// 413 instead of a reset; the connection is closed after the answer.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, (u16, String)> {
    let too_large = || (413, format!("request body larger than {MAX_BODY} bytes"));
    let announced = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        discard_body(session).await;
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    discard_body(session).await;
                    return Err(too_large());
                }
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err((400, format!("cannot read request body: {e}"))),
        }
    }
}

/// Reads and drops what is left of a request body, up to 64 MiB or 2 s, then marks the
/// connection for closing.
async fn discard_body(session: &mut ServerSession) {
    const LINGER_BYTES: usize = 64 << 20;
    let drain = async {
        let mut seen = 0;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            seen += chunk.len();
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    session.set_keepalive(None);
}

fn readyz(admin: &Admin) -> Response<Vec<u8>> {
    let rt = admin.shared.runtime.load();
    let mut origins = serde_json::Map::new();
    let mut ready = true;
    for p in &rt.pools.pools {
        let healthy = p.healthy_count();
        ready &= healthy > 0;
        origins.insert(
            p.name().to_string(),
            json!({ "healthy": healthy, "servers": p.servers.len() }),
        );
    }
    json_reply(
        if ready { 200 } else { 503 },
        &json!({ "ready": ready, "origins": origins }),
    )
}

fn status(admin: &Admin) -> Response<Vec<u8>> {
    let rt = admin.shared.runtime.load();
    let origins: Vec<Value> = rt
        .pools
        .pools
        .iter()
        .map(|p| {
            let servers: Vec<Value> = p
                .servers
                .iter()
                .map(|s| json!({ "addr": s.label, "weight": s.weight, "healthy": s.is_healthy(), "active": s.active() }))
                .collect();
            json!({ "name": p.name(), "selection": format!("{:?}", p.cfg.selection), "servers": servers })
        })
        .collect();
    let mut body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": rt.cfg.hash,
        "uptime_s": admin.shared.started.elapsed().as_secs(),
        "origins": origins,
        "cache": admin.ops.cache_status(),
    });
    if let Some(f) = &admin.shared.fleet {
        body["cluster"] = f.status();
    }
    json_reply(200, &body)
}

fn text(code: u16, body: &str) -> Response<Vec<u8>> {
    reply(code, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

fn json_reply(code: u16, v: &Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    reply(code, "application/json", body)
}

pub(super) fn reply(code: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}
