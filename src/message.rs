//! HTTP message helpers that both the proxy and the cache layer need (neutral: this module
//! names no other module of the crate).

use pingora::http::{RequestHeader, ResponseHeader};

/// Removes hop-by-hop fields (RFC 9110 §7.6.1) from request headers.
pub fn strip_hop_by_hop_req(h: &mut RequestHeader) {
    for name in nominated(&h.headers) {
        h.remove_header(&name);
    }
    for name in HOP {
        h.remove_header(*name);
    }
}

/// Removes hop-by-hop fields from response headers.
pub fn strip_hop_by_hop_resp(h: &mut ResponseHeader) {
    for name in nominated(&h.headers) {
        h.remove_header(&name);
    }
    for name in HOP {
        h.remove_header(*name);
    }
}

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
];

/// Field names listed in Connection (never the framing fields).
fn nominated(h: &http::HeaderMap) -> Vec<String> {
    h.get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| {
            !s.is_empty()
                && s != "content-length"
                && s != "transfer-encoding"
                && s != "close"
                && s != "keep-alive"
        })
        .collect()
}
