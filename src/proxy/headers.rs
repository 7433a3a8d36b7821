//! Request and response header rules of interface.md §3: request validation
//! (431/400/501 before anything is forwarded), proxy headers to the origin, hop-by-hop removal.

use ipnet::IpNet;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// The `Via` token outpost adds.
pub const VIA: &str = "1.1 outpost";

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    TooLarge,
    TooManyFields,
    UriTooLong,
    Malformed(&'static str),
    BadHost,
    UnknownCoding,
}

/// Request size limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_request_header`: bytes of the whole head.
    pub header_bytes: u64,
    /// `max_headers`: header fields.
    pub fields: usize,
    /// `max_uri`: bytes of the request-target.
    pub uri: u64,
}

/// Checks the raw HTTP/1 header block (when there is one) and the parsed header.
/// Pingora drops Content-Length when Transfer-Encoding is present; the raw block still shows both.
pub fn validate(raw: Option<&[u8]>, req: &RequestHeader, limits: &Limits) -> Result<(), Reject> {
    if req.raw_path().len() as u64 > limits.uri {
        return Err(Reject::UriTooLong);
    }
    // Origin-form (`/path`), absolute-form (`http://host/path`) or `*` (OPTIONS) only.
    let target = req.raw_path();
    let origin_form = target.first() == Some(&b'/');
    let absolute_form = req.uri.scheme().is_some() && req.uri.authority().is_some();
    let asterisk = target == b"*" && req.method == http::Method::OPTIONS;
    if !(origin_form || absolute_form || asterisk) {
        return Err(Reject::Malformed("invalid request-target"));
    }
    if req.headers.len() > limits.fields {
        return Err(Reject::TooManyFields);
    }
    if let Some(raw) = raw {
        if raw.len() as u64 > limits.header_bytes {
            return Err(Reject::TooLarge);
        }
        // RFC 9112 §2.2: a bare LF may be accepted, but a proxy that does so while the origin
        // does not disagrees with it on where fields end. Refuse it, and NUL anywhere.
        let bare_lf = raw
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
        if bare_lf {
            return Err(Reject::Malformed("bare LF line ending"));
        }
        if raw.contains(&0) {
            return Err(Reject::Malformed("NUL in the request head"));
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
    if raw.contains('@') {
        return None;
    }
    // `example.test.` names the same host as `example.test` (route, key and purge agree).
    crate::url::canonical_host(raw).ok().map(|h| h.into_owned())
}

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The client of a request from `peer`: the peer, or behind trusted proxies the right-most
/// X-Forwarded-For address that is not one (the X-Real-IP of [`forwarded_for`], without
/// building the header).
pub fn real_client(xff: Option<&str>, peer: IpAddr, nets: &[IpNet]) -> IpAddr {
    if !trusted(peer, nets) {
        return peer;
    }
    let Some(xff) = xff else {
        return peer;
    };
    let mut first = None;
    for ip in xff
        .rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
    {
        if !trusted(ip, nets) {
            return ip;
        }
        first = Some(ip);
    }
    first.unwrap_or(peer)
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
