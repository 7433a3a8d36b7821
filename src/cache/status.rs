//! `Cache-Status` (RFC 9211) values of interface.md §4, derived from the cache phase.

use crate::proxy::ctx::RequestCtx;
use pingora::proxy::Session;

/// The Cache-Status value for the response being sent.
pub fn cache_status(session: &Session, ctx: &RequestCtx) -> String {
    let _ = session;
    match ctx.cache.bypass {
        Some("method") => "outpost; fwd=method".to_string(),
        _ => "outpost; fwd=bypass".to_string(),
    }
}
