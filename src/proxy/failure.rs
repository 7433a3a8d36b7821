//! Responses the proxy writes itself: refusals before forwarding (404/400/431/501) and
//! upstream failures (502/503/504), each with a short text body and `Cache-Status`.

use super::ctx::RequestCtx;
use crate::cache::status::{CacheStatus, Fwd};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use pingora::ErrorSource;

/// Writes a complete plain-text response with a `Cache-Status` of `fwd` and `detail`.
pub async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    fwd: Fwd,
    detail: &'static str,
    text: &str,
) -> Result<()> {
    write_error(session, ctx, status, fwd, None, detail, text).await
}

/// [`respond`] with one extra response field (`Retry-After` of a 429), `fwd=bypass`.
pub async fn respond_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    extra: (&'static str, &str),
    detail: &'static str,
    text: &str,
) -> Result<()> {
    write_error(session, ctx, status, Fwd::Bypass, Some(extra), detail, text).await
}

async fn write_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    fwd: Fwd,
    extra: Option<(&'static str, &str)>,
    detail: &'static str,
    text: &str,
) -> Result<()> {
    let body = Bytes::from(format!("{status} {}: {text}\n", reason(status)));
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    if let Some((name, value)) = extra {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    let cs = CacheStatus::answer(fwd, detail).to_string();
    resp.insert_header("cache-status", cs.as_str())?;
    ctx.cache_status = Some(cs);
    ctx.local_status = Some(status);
    if status >= 400 && status != 404 {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Maps a proxy error to its status and Cache-Status detail (interface.md §3).
pub fn classify(e: &Error) -> (u16, &'static str) {
    match e.etype() {
        ErrorType::HTTPStatus(503) => (503, "no-healthy-server"),
        ErrorType::InvalidHTTPHeader if e.esource() == &ErrorSource::Upstream => {
            (502, "origin-bad-response")
        }
        ErrorType::HTTPStatus(c) => (*c, "origin-error"),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            (504, "origin-timeout")
        }
        _ => match e.esource() {
            ErrorSource::Upstream => (502, "origin-unreachable"),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, "client-gone")
                }
                _ => (400, "bad-request"),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, "internal"),
        },
    }
}

/// `ProxyHttp::fail_to_proxy`: answer with our error page unless something was already sent.
pub async fn fail(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let (code, detail) = classify(e);
    let already = session.response_written().is_some();
    if code > 0 && !already {
        let fwd = ctx.cache.fwd_for_error();
        let name = ctx
            .pool
            .as_ref()
            .map(|p| p.name().to_string())
            .unwrap_or_default();
        let text = match code {
            502 if detail == "origin-bad-response" => {
                format!("origin \"{name}\" sent an invalid response header")
            }
            502 => format!("could not connect to origin \"{name}\""),
            503 => format!("no healthy server in origin \"{name}\""),
            504 => format!("origin \"{name}\" timed out"),
            400 => "malformed request".to_string(),
            _ => format!("{e}"),
        };
        if let Err(err) = respond(session, ctx, code, fwd, detail, &text).await {
            tracing::debug!("failed to write error response: {err}");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}
