//! Request and response header rules of interface.md §3: request validation
//! (431/400/501 before anything is forwarded), proxy headers to the origin, hop-by-hop removal.

use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;

/// The `Via` token outpost adds.
pub const VIA: &str = "1.1 outpost";

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    TooLarge,
    Malformed(&'static str),
    BadHost,
    UnknownCoding,
}

/// Checks the raw HTTP/1 header block (when there is one) and the parsed header.
/// Pingora drops Content-Length when Transfer-Encoding is present; the raw block still shows both.
pub fn validate(raw: Option<&[u8]>, req: &RequestHeader, max_header: u64) -> Result<(), Reject> {
    if let Some(raw) = raw {
        if raw.len() as u64 > max_header {
            return Err(Reject::TooLarge);
        }
        let (mut cl, mut te) = (0, false);
        for line in raw.split(|b| *b == b'\n').skip(1) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            if name.eq_ignore_ascii_case(b"content-length") {
                cl += 1;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te = true;
            }
        }
        if cl > 0 && te {
            return Err(Reject::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    // Iterated in place: no allocation per request.
    let cls = || req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = cls().next() {
        if cls().any(|v| v != first) {
            return Err(Reject::Malformed("conflicting Content-Length values"));
        }
        if first
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_none()
        {
            return Err(Reject::Malformed("invalid Content-Length"));
        }
    }
    for te in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        let Ok(s) = te.to_str() else {
            return Err(Reject::UnknownCoding);
        };
        if s.split(',')
            .map(str::trim)
            .any(|c| !c.eq_ignore_ascii_case("chunked"))
        {
            return Err(Reject::UnknownCoding);
        }
    }
    if req.headers.get_all(http::header::HOST).iter().count() > 1 {
        return Err(Reject::BadHost);
    }
    Ok(())
}

/// The request's host, lower-cased, without port: the URI authority (h2, absolute form)
/// or the Host header. `None` when missing or not a valid host.
pub fn host_of(req: &RequestHeader) -> Option<String> {
    let raw = match req.uri.authority() {
        Some(a) => a.as_str(),
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = split_port(raw.trim())?;
    let valid = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        });
    valid.then(|| host.to_ascii_lowercase())
}

fn split_port(hostport: &str) -> Option<&str> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()))
        {
            return None;
        }
        return Some(&hostport[..end + 2]);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => Some(h),
        Some(_) => None,
        None => Some(hostport),
    }
}

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// X-Forwarded-For value and X-Real-IP for a request from `peer`.
/// Untrusted peer: XFF replaced by the peer. Trusted: the peer is appended, and the real
/// client is the right-most address that is not a trusted proxy.
pub fn forwarded_for(existing: Option<&str>, peer: IpAddr, nets: &[IpNet]) -> (String, IpAddr) {
    if !trusted(peer, nets) {
        return (peer.to_string(), peer);
    }
    let Some(existing) = existing.filter(|s| !s.trim().is_empty()) else {
        return (peer.to_string(), peer);
    };
    let chain: Vec<IpAddr> = existing
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let real = chain
        .iter()
        .rev()
        .find(|ip| !trusted(**ip, nets))
        .or(chain.first())
        .copied()
        .unwrap_or(peer);
    (format!("{existing}, {peer}"), real)
}

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

/// Appends `VIA` to an existing Via value.
pub fn via(existing: Option<&str>) -> String {
    match existing {
        Some(v) if !v.trim().is_empty() => format!("{v}, {VIA}"),
        _ => VIA.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xff_untrusted_peer_replaces() {
        let (xff, real) = forwarded_for(Some("1.2.3.4"), "10.0.0.9".parse().unwrap(), &[]);
        assert_eq!(xff, "10.0.0.9");
        assert_eq!(real.to_string(), "10.0.0.9");
    }

    #[test]
    fn xff_trusted_peer_appends_and_finds_rightmost_untrusted() {
        let nets: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let (xff, real) = forwarded_for(
            Some("203.0.113.7, 10.1.1.1"),
            "127.0.0.1".parse().unwrap(),
            &nets,
        );
        assert_eq!(xff, "203.0.113.7, 10.1.1.1, 127.0.0.1");
        assert_eq!(real.to_string(), "203.0.113.7");
    }

    #[test]
    fn host_parsing() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("Host", "Example.Test:8080").unwrap();
        assert_eq!(host_of(&req).as_deref(), Some("example.test"));
        req.insert_header("Host", "bad host").unwrap();
        assert_eq!(host_of(&req), None);
        req.insert_header("Host", "a.test:xx").unwrap();
        assert_eq!(host_of(&req), None);
        req.insert_header("Host", "[::1]:80").unwrap();
        assert_eq!(host_of(&req).as_deref(), Some("[::1]"));
    }
}
