//! Response compression (`[compression]`) on Pingora's downstream compression module:
//! the client's `Accept-Encoding` is reordered by `compression.algorithms` before the module
//! reads it, and `response_filter` switches compression off for types not listed, bodies
//! below `min_size`, partial content and already-encoded responses. The cache keeps the
//! origin's representation; compression happens on the way out.

use crate::config::{Algorithm, CompressionConfig};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompression;
use pingora::proxy::Session;

/// Compression level used for every algorithm (a balance of ratio and CPU on a hit path).
pub const LEVEL: u32 = 5;

fn token(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Br => "br",
        Algorithm::Zstd => "zstd",
        Algorithm::Gzip => "gzip",
    }
}

/// `early_request_filter`: rewrite `Accept-Encoding` to the accepted algorithms in the
/// operator's preference order (q=0 entries dropped), so the module picks the preferred one.
pub fn prepare_request(session: &mut Session, cfg: &CompressionConfig) {
    if !cfg.enabled {
        if let Some(c) = session
            .downstream_modules_ctx
            .get_mut::<ResponseCompression>()
        {
            c.adjust_level(0);
        }
        return;
    }
    reorder_accept_encoding(session.req_header_mut(), cfg);
}

fn reorder_accept_encoding(req: &mut RequestHeader, cfg: &CompressionConfig) {
    let Some(ae) = req
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let accepted: Vec<String> = ae
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            (!refused && !name.is_empty()).then_some(name)
        })
        .collect();
    let wildcard = accepted.iter().any(|a| a == "*");
    let ordered: Vec<&str> = cfg
        .algorithms
        .iter()
        .map(|a| token(*a))
        .filter(|t| wildcard || accepted.iter().any(|a| a == t))
        .collect();
    let value = if ordered.is_empty() {
        "identity".to_string()
    } else {
        ordered.join(", ")
    };
    let _ = req.insert_header(http::header::ACCEPT_ENCODING, value);
}

fn type_matches(ct: &str, types: &[String]) -> bool {
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    types.iter().any(|t| match t.strip_suffix("/*") {
        Some(major) => mime.split('/').next() == Some(major),
        None => *t == mime,
    })
}

/// Every Content-Type value is a listed type (several values are malformed: be conservative).
fn content_type_listed(resp: &ResponseHeader, types: &[String]) -> bool {
    let mut values = resp
        .headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .peekable();
    values.peek().is_some() && values.all(|v| v.to_str().is_ok_and(|ct| type_matches(ct, types)))
}

/// `response_filter`: keep compression on only for eligible responses.
pub fn decide(session: &mut Session, resp: &ResponseHeader, cfg: &CompressionConfig) {
    let eligible = cfg.enabled
        && resp.status.as_u16() == 200
        && !resp.headers.contains_key(http::header::CONTENT_ENCODING)
        && !resp.headers.contains_key(http::header::CONTENT_RANGE)
        && content_type_listed(resp, &cfg.types)
        && resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|len| len >= cfg.min_size);
    if !eligible {
        if let Some(c) = session
            .downstream_modules_ctx
            .get_mut::<ResponseCompression>()
        {
            if c.is_header_phase() {
                c.adjust_level(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            types: vec!["text/*".into(), "application/json".into()],
            min_size: 1024,
            algorithms: vec![Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip],
        }
    }

    fn rewritten(ae: &str) -> String {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("accept-encoding", ae).unwrap();
        reorder_accept_encoding(&mut req, &cfg());
        req.headers
            .get("accept-encoding")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn accept_encoding_follows_operator_preference() {
        assert_eq!(rewritten("gzip, br"), "br, gzip");
        assert_eq!(rewritten("gzip, deflate"), "gzip");
        assert_eq!(rewritten("br;q=0, gzip"), "gzip");
        assert_eq!(rewritten("*"), "br, zstd, gzip");
        assert_eq!(rewritten("deflate"), "identity");
    }

    #[test]
    fn types_match_with_wildcards_and_parameters() {
        let c = cfg();
        assert!(type_matches("text/html; charset=utf-8", &c.types));
        assert!(type_matches("Application/JSON", &c.types));
        assert!(!type_matches("image/png", &c.types));
        assert!(!type_matches("textual/x", &c.types));
    }
}
