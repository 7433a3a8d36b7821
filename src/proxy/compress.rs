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

/// `early_request_filter`: rewrite `Accept-Encoding` to the acceptable algorithms, best
/// first, so the module picks the best one (RFC 9110 §12.5.3): the highest q wins
/// (q=0 refuses), `compression.algorithms` order breaks ties, and when identity is
/// preferred over every algorithm the value becomes `identity`.
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

/// `(coding, q)` of an Accept-Encoding value; a malformed q counts as 1 (as most servers do).
fn parse_accept_encoding(ae: &str) -> Vec<(String, f32)> {
    ae.split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            (!name.is_empty()).then_some((name, q))
        })
        .collect()
}

fn reorder_accept_encoding(req: &mut RequestHeader, cfg: &CompressionConfig) {
    let Some(ae) = req
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let codings = parse_accept_encoding(ae);
    let q_of = |name: &str| codings.iter().find(|(n, _)| n == name).map(|(_, q)| *q);
    let star = q_of("*");
    // identity is always acceptable as the fallback; it only wins when the client ranks
    // it (explicitly, or through `*`) above every algorithm.
    let identity = q_of("identity").or(star).unwrap_or(0.0);
    let mut ranked: Vec<(usize, &str, f32)> = cfg
        .algorithms
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let t = token(*a);
            let q = q_of(t).or(star).unwrap_or(0.0);
            (q > 0.0 && q >= identity).then_some((i, t, q))
        })
        .collect();
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let value = if ranked.is_empty() {
        "identity".to_string()
    } else {
        ranked
            .iter()
            .map(|(_, t, _)| *t)
            .collect::<Vec<_>>()
            .join(", ")
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

/// `Cache-Control: no-transform` (RFC 9110 §7.7): an intermediary must not change the content.
fn no_transform(resp: &ResponseHeader) -> bool {
    resp.headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// `response_filter`: keep compression on only for eligible responses.
pub fn decide(session: &mut Session, resp: &ResponseHeader, cfg: &CompressionConfig) {
    let eligible = cfg.enabled
        && resp.status.as_u16() == 200
        && !resp.headers.contains_key(http::header::CONTENT_ENCODING)
        && !resp.headers.contains_key(http::header::CONTENT_RANGE)
        && !no_transform(resp)
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
    fn accept_encoding_honours_q_values() {
        assert_eq!(rewritten("gzip;q=1.0, br;q=0.5"), "gzip, br");
        assert_eq!(rewritten("gzip;q=0.3, identity;q=0.8"), "identity");
        assert_eq!(rewritten("gzip;q=0.8, identity;q=0.3"), "gzip");
        assert_eq!(rewritten("br;q=0.5, gzip;q=0.5"), "br, gzip");
        assert_eq!(rewritten("*;q=0.2, gzip"), "gzip, br, zstd");
        assert_eq!(rewritten("gzip;Q=0, br;q=0.000"), "identity");
        assert_eq!(rewritten("zstd ; q=0.9 , br;q=0.1"), "zstd, br");
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
