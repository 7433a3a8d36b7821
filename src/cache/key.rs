//! Cache keys: the canonical primary URL `scheme://host/path?query` (ignored query parameters
//! removed) and the `Vary` secondary key (RFC 9111 §4.1). Called by `cache.rs` from
//! `cache_key_callback` / `cache_vary_filter` and by purge; pure string work, no I/O.

use pingora::cache::{key::HashBinary, VarianceBuilder};
use pingora::http::{RequestHeader, ResponseHeader};
use std::borrow::Cow;

/// Query-parameter names left out of the key (`cache.ignore_query_params`), precompiled.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    globs: Vec<Glob>,
}

/// A name pattern where `*` matches any run of characters; everything else is literal.
#[derive(Debug, Clone)]
struct Glob {
    /// The pattern split at `*`: one part means an exact match.
    parts: Vec<String>,
}

impl Glob {
    fn matches(&self, s: &str) -> bool {
        let [first, middle @ .., last] = &self.parts[..] else {
            return self.parts.first().is_some_and(|p| p == s);
        };
        let Some(mut rest) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        for part in middle {
            match rest.find(part.as_str()) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last.as_str())
    }
}

impl QueryFilter {
    /// Compiles glob patterns such as `utm_*`, `fbclid`. Names are matched case-sensitively.
    pub fn new(patterns: &[String]) -> Self {
        let globs = patterns
            .iter()
            .map(|p| Glob {
                parts: p.split('*').map(str::to_owned).collect(),
            })
            .collect();
        QueryFilter { globs }
    }

    /// Whether a parameter name (raw or percent-decoded) matches a pattern.
    pub fn is_ignored(&self, name: &str) -> bool {
        let decoded = percent_decode(name);
        self.globs
            .iter()
            .any(|g| g.matches(name) || g.matches(&decoded))
    }
}

/// The primary key: `scheme://host/path?query`. Scheme and host are lower-cased and the
/// default port (`:80` for http, `:443` for https) dropped, other ports kept. The path is kept
/// as received (`/` if empty); a fragment is dropped. Query parameters whose name matches
/// `ignore` are removed, empty ones too, the rest stay in order; no `?` if none remain.
pub fn primary_key(scheme: &str, host: &str, path_and_query: &str, ignore: &QueryFilter) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let host = canonical_host(&scheme, host);
    let target = path_and_query.split('#').next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = normalize_path(path).unwrap_or(Cow::Borrowed(path));
    let slash = if path.starts_with('/') { "" } else { "/" };
    let mut key = format!("{scheme}://{host}{slash}{path}");
    let kept = query.split('&').filter(|p| !p.is_empty()).filter(|p| {
        let name = p.split('=').next().unwrap_or_default();
        !ignore.is_ignored(name)
    });
    for (i, param) in kept.enumerate() {
        key.push(if i == 0 { '?' } else { '&' });
        key.push_str(param);
    }
    key
}

/// Why a request path is refused instead of normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousPath;

/// The one spelling of a request path that routing, the cache key and the origin all see
/// (RFC 3986 §6.2.2): percent-encoded unreserved characters decoded (`%2e` → `.`,
/// `%7E` → `~`), other escapes upper-cased, runs of `/` merged (as nginx's `merge_slashes`),
/// then dot segments removed (§5.2.4; `..` never climbs above the root). A path that would
/// only resolve differently once an encoded `/` or `\` is decoded (`/a%2f..%2fb`, which
/// some origins resolve to `/b`) cannot be given one meaning: `Err`.
/// Borrows when there is nothing to change (the common case: no allocation).
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let b = path.as_bytes();
    let suspicious =
        b.contains(&b'%') || b.contains(&b'\\') || b.windows(2).any(|w| w == b"//" || w == b"/.");
    if !suspicious {
        return Ok(Cow::Borrowed(path));
    }
    // 1. Escapes: unreserved decoded, the rest upper-cased.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                decoded.push(char::from(c));
                i += 3;
            }
            Some(c) => {
                decoded.push_str(&format!("%{c:02X}"));
                i += 3;
            }
            None => {
                // Not an escape: copy one whole UTF-8 character.
                let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
                decoded.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    // 2. Would decoding an encoded separator create dot segments or empty segments?
    let as_origin_may_see = decoded
        .replace("%2F", "/")
        .replace("%5C", "/")
        .replace('\\', "/");
    if as_origin_may_see != decoded
        && merge_and_remove_dots(&as_origin_may_see) != as_origin_may_see
    {
        return Err(AmbiguousPath);
    }
    // 3. Merged slashes, dot segments removed.
    let out = merge_and_remove_dots(&decoded);
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// `//` runs merged and RFC 3986 §5.2.4 remove_dot_segments on an absolute path.
fn merge_and_remove_dots(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        trailing_slash = false;
        match *seg {
            "" if i == 0 => {}
            "" => trailing_slash = i == last,
            "." => trailing_slash = true,
            ".." => {
                segs.pop();
                trailing_slash = true;
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segs.is_empty() {
        out.push('/');
    }
    out
}

/// Splits a primary key back into `(scheme, host, path_and_query)`; `None` if it has no `://`.
pub fn split_primary(key: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = key.split_once("://")?;
    match rest.find('/') {
        Some(i) => Some((scheme, &rest[..i], &rest[i..])),
        None => Some((scheme, rest, "/")),
    }
}

fn canonical_host(scheme: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    // `example.test.` is the same (fully qualified) name as `example.test`.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            format!("{}:{p}", h.strip_suffix('.').unwrap_or(h))
        }
        _ => host.strip_suffix('.').map(str::to_owned).unwrap_or(host),
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => ":",
    };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    host.strip_suffix(':').unwrap_or(host).to_owned()
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex
            .filter(|_| b[i] == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Keys to invalidate after an unsafe request succeeded (RFC 9111 §4.4): the target URI plus
/// `Location` and `Content-Location` when they point to the same scheme and host. Relative
/// references resolve against the request path (dot segments are not removed).
pub fn invalidation_keys(
    scheme: &str,
    host: &str,
    path_and_query: &str,
    resp: &ResponseHeader,
    ignore: &QueryFilter,
) -> Vec<String> {
    let mut keys = vec![primary_key(scheme, host, path_and_query, ignore)];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let value = resp.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(target) = value.and_then(|v| same_origin(scheme, host, path_and_query, v.trim()))
        else {
            continue;
        };
        let key = primary_key(scheme, host, &target, ignore);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The path-and-query of `reference` if it is on `scheme://host`.
fn same_origin(scheme: &str, host: &str, base: &str, reference: &str) -> Option<String> {
    let is_scheme = |s: &str| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    let absolute = match reference.split_once("://") {
        Some((s, rest)) if is_scheme(s) => Some((s, rest)),
        _ => reference.strip_prefix("//").map(|rest| (scheme, rest)),
    };
    if let Some((ref_scheme, rest)) = absolute {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let ref_scheme = ref_scheme.to_ascii_lowercase();
        let same = ref_scheme == scheme.to_ascii_lowercase()
            && canonical_host(&ref_scheme, &rest[..end]) == canonical_host(&ref_scheme, host);
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
