//! The one canonical name of a cached object: [`ObjectUrl`], `scheme://host/path?query`.
//! Every path that names an object goes through it: the request's cache key, the PURGE
//! method, the admin purge API, RFC 9111 §4.4 invalidation, ban subjects, fleet purges
//! (each node resolves the message's URLs here) and slices (their keys extend the request's).
//! A purge is correct because there is only one spelling to agree on.
//!
//! The rules (table-tested in `url/tests.rs`):
//! - scheme `http` or `https`, lower-cased;
//! - host lower-cased, a trailing dot dropped (`example.test.` is `example.test`), IPv6
//!   literals kept in brackets; the port is not part of the name (outpost serves a host alike
//!   on every listener, so a purge of `http://h/a` covers `h:8080` too); userinfo
//!   (`user@host`) is refused: RFC 9110 §4.2.4 treats it as an error;
//! - path per RFC 3986 §6.2.2 ([`normalize_path`]): unreserved escapes decoded (`%7E` → `~`,
//!   `%2e` → `.`), other escapes upper-cased, `//` merged, dot segments removed (`/a/../b` is
//!   `/b`, `%2e%2e` too). A path that would only resolve differently once an encoded `/` or
//!   `\` is decoded (`/a%2f..%2fb`) is refused ([`UrlError::AmbiguousPath`]): routing, the
//!   cache key and the origin must see one path, and that one cannot be given one meaning;
//! - query parameters whose names match `cache.ignore_query_params` removed, empty ones too,
//!   the rest kept in order; no `?` when none remain; a fragment dropped.
//!
//! Neutral: this module names no other module of the crate.

#[cfg(test)]
mod tests;

use std::borrow::Cow;

/// Why a string does not name an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://…` or `https://…`.
    #[error("expected an absolute http(s) URL like \"http://example.test/a.css\"")]
    NotAbsolute,
    /// Nothing between `://` and the path.
    #[error("URL has no host")]
    NoHost,
    /// `user@host`.
    #[error("the URL carries userinfo (user@host), which never names a cached object")]
    Userinfo,
    /// Characters a host name cannot have, or a bad port.
    #[error("invalid host")]
    BadHost,
    /// An encoded `/` or `\` next to dot segments.
    #[error("ambiguous path: an encoded / or \\ next to a dot segment")]
    AmbiguousPath,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `http`/`https` in any case.
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// Query-parameter names left out of object names (`cache.ignore_query_params`), precompiled.
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
        if self.globs.is_empty() {
            return false;
        }
        let decoded = percent_decode(name);
        self.globs
            .iter()
            .any(|g| g.matches(name) || g.matches(&decoded))
    }
}

/// An object's canonical absolute URL; its text is the cache's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    text: String,
    /// Where the host starts and the path starts in `text`.
    host_at: usize,
    path_at: usize,
}

impl ObjectUrl {
    /// The object a request names: `host` as [`canonical_host`] gave it (the proxy's
    /// routing host), `path_and_query` the request-target's. One allocation. A path that
    /// cannot be normalised is kept as received (the proxy refused it with 400 before).
    pub fn from_request(
        scheme: Scheme,
        host: &str,
        path_and_query: &str,
        filter: &QueryFilter,
    ) -> ObjectUrl {
        let target = path_and_query.split('#').next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = normalize_path(path).unwrap_or(Cow::Borrowed(path));
        Self::assemble(scheme, host, &path, query, filter)
    }

    /// Parses an absolute URL given by an API client (a purge, a fleet message).
    pub fn parse(url: &str, filter: &QueryFilter) -> Result<ObjectUrl, UrlError> {
        let (scheme, host, path, query) = split_absolute(url)?;
        let path = normalize_path(path).map_err(|_| UrlError::AmbiguousPath)?;
        Ok(Self::assemble(scheme, &host, &path, query, filter))
    }

    /// Parses a URL prefix (`http://example.test/img/`): scheme and host as for an object,
    /// the path normalised, the query kept as given (no parameter is ignored).
    pub fn parse_prefix(url: &str) -> Result<ObjectUrl, UrlError> {
        let (scheme, host, path, query) = split_absolute(url)?;
        let path = normalize_path(path).map_err(|_| UrlError::AmbiguousPath)?;
        let mut u = Self::assemble(scheme, &host, &path, "", &QueryFilter::default());
        if !query.is_empty() {
            u.text.push('?');
            u.text.push_str(query);
        }
        Ok(u)
    }

    fn assemble(
        scheme: Scheme,
        host: &str,
        path: &str,
        query: &str,
        filter: &QueryFilter,
    ) -> ObjectUrl {
        let scheme = scheme.as_str();
        let mut text =
            String::with_capacity(scheme.len() + 3 + host.len() + path.len() + 1 + query.len());
        text.push_str(scheme);
        text.push_str("://");
        let host_at = text.len();
        text.push_str(host);
        let path_at = text.len();
        if !path.starts_with('/') {
            text.push('/');
        }
        text.push_str(path);
        let kept = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| !filter.is_ignored(p.split('=').next().unwrap_or_default()));
        for (i, param) in kept.enumerate() {
            text.push(if i == 0 { '?' } else { '&' });
            text.push_str(param);
        }
        ObjectUrl {
            text,
            host_at,
            path_at,
        }
    }

    /// The same object under the other scheme (a purge by URL covers both).
    pub fn with_scheme(&self, scheme: Scheme) -> ObjectUrl {
        let host = &self.text[self.host_at..self.path_at];
        let rest = &self.text[self.path_at..];
        let s = scheme.as_str();
        ObjectUrl {
            text: format!("{s}://{host}{rest}"),
            host_at: s.len() + 3,
            path_at: s.len() + 3 + host.len(),
        }
    }

    /// The canonical text (the primary key).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host, lower-cased, without port.
    pub fn host(&self) -> &str {
        &self.text[self.host_at..self.path_at]
    }

    /// `/path?query`.
    pub fn path_and_query(&self) -> &str {
        &self.text[self.path_at..]
    }

    /// The canonical text, owned.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `scheme`, canonical host, raw path, raw query of an absolute URL.
fn split_absolute(url: &str) -> Result<(Scheme, String, &str, &str), UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAbsolute)?;
    let scheme = Scheme::parse(scheme).ok_or(UrlError::NotAbsolute)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(UrlError::NoHost);
    }
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    let host = canonical_host(authority)?;
    let tail = tail.split('#').next().unwrap_or_default();
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Ok((scheme, host.into_owned(), path, query))
}

/// A host as outpost names it: `host[:port]` (a Host header, a URL's authority, a purge's
/// host) → lower-cased, without port and trailing dot, IPv6 literal in brackets. Borrows
/// when the input is already canonical.
pub fn canonical_host(hostport: &str) -> Result<Cow<'_, str>, UrlError> {
    let host = strip_port(hostport.trim())?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && if host.starts_with('[') {
            host.len() > 2
                && host[1..host.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        } else {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
    if !valid {
        return Err(UrlError::BadHost);
    }
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn strip_port(hostport: &str) -> Result<&str, UrlError> {
    let port_ok = |p: &str| p.is_empty() || p.parse::<u16>().is_ok();
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or(UrlError::BadHost)?;
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            None if after.is_empty() => Ok(&hostport[..end + 2]),
            Some(p) if port_ok(p) => Ok(&hostport[..end + 2]),
            _ => Err(UrlError::BadHost),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if port_ok(p) => Ok(h),
        Some(_) => Err(UrlError::BadHost),
        None => Ok(hostport),
    }
}

/// The host of a primary key (an [`ObjectUrl`]'s text), without allocating. Keys written by
/// older versions may still carry a port or upper case: those are canonicalised (allocating).
pub fn host_of_key(key: &str) -> Cow<'_, str> {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    canonical_host(authority).unwrap_or_else(|_| Cow::Owned(authority.to_ascii_lowercase()))
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
