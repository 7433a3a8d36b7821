//! Cache keys: the primary key is an object's canonical URL ([`crate::url::ObjectUrl`]); this
//! module adds the `Vary` secondary key (RFC 9111 §4.1) and the URLs an unsafe request
//! invalidates (§4.4). Called from the proxy's cache phases and by purge; pure, no I/O.

use crate::url::{canonical_host, ObjectUrl, QueryFilter, Scheme};
use pingora::cache::{key::HashBinary, VarianceBuilder};
use pingora::http::{RequestHeader, ResponseHeader};

/// Objects to invalidate after an unsafe request succeeded (RFC 9111 §4.4): the target URI
/// plus `Location` and `Content-Location` when they point to the same origin (scheme, host
/// and port). Relative references resolve against the request path.
pub fn invalidation_urls(
    scheme: Scheme,
    host: &str,
    path_and_query: &str,
    resp: &ResponseHeader,
    ignore: &QueryFilter,
) -> Vec<ObjectUrl> {
    let mut urls = vec![ObjectUrl::from_request(
        scheme,
        host,
        path_and_query,
        ignore,
    )];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let value = resp.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(target) = value.and_then(|v| same_origin(scheme, host, path_and_query, v.trim()))
        else {
            continue;
        };
        let url = ObjectUrl::from_request(scheme, host, &target, ignore);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

/// The path-and-query of `reference` if it is on `scheme://host` at the scheme's default port.
fn same_origin(scheme: Scheme, host: &str, base: &str, reference: &str) -> Option<String> {
    let is_scheme = |s: &str| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    let absolute = match reference.split_once("://") {
        Some((s, rest)) if is_scheme(s) => Some((Scheme::parse(s), rest)),
        _ => reference
            .strip_prefix("//")
            .map(|rest| (Some(scheme), rest)),
    };
    if let Some((ref_scheme, rest)) = absolute {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let default_port = match scheme {
            Scheme::Http => "80",
            Scheme::Https => "443",
        };
        let port_ok = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with('[') && !p.contains(']') => {
                p.is_empty() || p == default_port
            }
            _ => true,
        };
        let same = ref_scheme == Some(scheme)
            && port_ok
            && canonical_host(authority).is_ok_and(|h| h == host);
        return same.then(|| rest[end..].to_owned());
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    let base_path = base.split(['?', '#']).next().unwrap_or_default();
    let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
    Some(format!("{dir}{reference}"))
}

/// The `Vary` of a response (RFC 9110 §12.5.5), all lines and list members combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryFields {
    /// No `Vary` (or only empty members): one variant per URL.
    None,
    /// `*` anywhere in the list: never reusable (RFC 9111 §4.1); `decide` refuses to store.
    Star,
    /// Lower-cased field names, first occurrence order, without duplicates.
    Fields(Vec<String>),
}

/// Reads every `Vary` line of `resp`.
pub fn vary_fields(resp: &ResponseHeader) -> VaryFields {
    let mut names: Vec<String> = Vec::new();
    for value in resp.headers.get_all(http::header::VARY) {
        for member in list_members(value.as_bytes()) {
            if member == b"*" {
                return VaryFields::Star;
            }
            let name = String::from_utf8_lossy(member).to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        VaryFields::None
    } else {
        VaryFields::Fields(names)
    }
}

/// Marker value of a selecting field absent from the request; header values cannot hold NUL.
const ABSENT: &[u8] = b"\0";

/// The secondary key of `req` for a response varying on `vary` (`None` when it does not vary;
/// also for `Star`, which is never stored). RFC 9111 §4.1 normalisation: lines are combined,
/// list members trimmed, empty members dropped and inner whitespace runs collapsed, so
/// `a,b`, ` a, b ` and two lines `a` + `b` match. An absent field only matches an absent one
/// (an empty field is present). `Accept-Encoding` becomes [`accept_encoding_key`].
pub fn variance(vary: &VaryFields, req: &RequestHeader) -> Option<HashBinary> {
    let VaryFields::Fields(names) = vary else {
        return None;
    };
    let mut builder = VarianceBuilder::new();
    for name in names {
        let value = if name == "accept-encoding" {
            accept_encoding_key(req).as_bytes().to_vec()
        } else {
            normalized_value(req, name)
        };
        builder.add_owned_value(name.as_str(), value);
    }
    builder.finalize()
}

fn normalized_value(req: &RequestHeader, name: &str) -> Vec<u8> {
    let mut values = req.headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return ABSENT.to_vec();
    }
    let mut out = Vec::new();
    for member in values.flat_map(|v| list_members(v.as_bytes())) {
        if !out.is_empty() {
            out.push(b',');
        }
        let mut space = false;
        for &b in member {
            let ws = b == b' ' || b == b'\t';
            if !(ws && space) {
                out.push(if ws { b' ' } else { b });
            }
            space = ws;
        }
    }
    out
}

/// Non-empty, OWS-trimmed members of a comma list; commas inside quoted strings do not split.
fn list_members(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    v.split(move |&b| {
        let split = b == b',' && !quoted;
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
        split
    })
    .map(|m| {
        let start = m
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(m.len());
        let end = m
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(start, |e| e + 1);
        &m[start..end]
    })
    .filter(|m| !m.is_empty())
}

/// Canonical `Accept-Encoding` for the variance key and the upstream request: the codings
/// the cache distinguishes (br, gzip, zstd) that the client accepts with q > 0, sorted and
/// comma-joined, else `identity` (also for a missing header). `x-gzip` counts as gzip; `*`
/// adds the codings not refused explicitly. It is itself a valid `Accept-Encoding` value:
/// send it upstream so the stored variant matches its key.
pub fn accept_encoding_key(req: &RequestHeader) -> &'static str {
    const KEYS: [&str; 8] = [
        "identity",
        "br",
        "gzip",
        "br,gzip",
        "zstd",
        "br,zstd",
        "gzip,zstd",
        "br,gzip,zstd",
    ];
    let (mut accepted, mut refused, mut star) = (0usize, 0usize, false);
    for value in req.headers.get_all(http::header::ACCEPT_ENCODING) {
        for member in list_members(value.as_bytes()) {
            let member = String::from_utf8_lossy(member).to_ascii_lowercase();
            let mut parts = member.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            let bit = match coding {
                "br" => 1,
                "gzip" | "x-gzip" => 2,
                "zstd" => 4,
                "*" => {
                    star |= !q_zero;
                    continue;
                }
                _ => continue,
            };
            if q_zero {
                refused |= bit;
            } else {
                accepted |= bit;
            }
        }
    }
    if star {
        accepted |= 7;
    }
    KEYS[accepted & !refused & 7]
}

#[cfg(test)]
mod tests;
