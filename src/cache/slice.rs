//! Sliced objects (route `slice`, interface.md §4 "Slicing"): the pure parts. Slice keys
//! (a slice is a variant of its URL, so every purge of the URL reaches all of them), the
//! client's `Range` and `If-Range`, the stored slice's representation (strong validator and
//! total length from `Content-Range`) and the conditional checks. No I/O, no clock reads:
//! `proxy/slice.rs` does the fetching and the answering.

use pingora::cache::key::hash_key;
use pingora::cache::CacheKey;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::SystemTime;

/// The key of slice `index` (slices of `size` bytes) of the object under `base`: the URL's
/// primary key with a variance naming the slice, so a purge of the URL (any variant) or of
/// its host, tag or prefix covers every slice.
pub fn slice_key(base: &CacheKey, size: u64, index: u64) -> CacheKey {
    let mut k = base.clone();
    k.set_variance_key(hash_key(format!("outpost-slice/{size}/{index}")));
    k
}

/// The origin request range of slice `index`: `bytes=k*S-((k+1)*S-1)`.
pub fn origin_range(size: u64, index: u64) -> String {
    let first = index.saturating_mul(size);
    format!("bytes={first}-{}", first.saturating_add(size - 1))
}

/// What the client asked for (RFC 9110 §14.1.2), before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The whole representation (no Range, a multi-range or unparsable one: answered 200).
    Full,
    /// `bytes=first-` or `bytes=first-last` (inclusive).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a `Range` value. Anything but one well-formed byte range is `Full`: a server may
/// ignore Range (§14.2), and multiple ranges are answered 200 in full (interface.md §4).
pub fn parse_range(value: Option<&str>) -> Want {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Want::Full;
    };
    if spec.contains(',') {
        return Want::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse().map_or(Want::Full, Want::Suffix),
        (false, true) => a.parse().map_or(Want::Full, |a| Want::From(a, None)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Want::From(a, Some(b)),
            _ => Want::Full,
        },
        (true, true) => Want::Full,
    }
}

/// The bytes to send, `start..end` (exclusive), for a representation of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    /// A 206 (else the whole body, 200).
    pub partial: bool,
}

/// Resolves `want` against the length; `None` when it cannot be satisfied (416).
pub fn resolve(want: Want, total: u64) -> Option<Span> {
    let full = Span {
        start: 0,
        end: total,
        partial: false,
    };
    match want {
        Want::Full => Some(full),
        Want::From(a, _) if a >= total => None,
        Want::From(a, b) => Some(Span {
            start: a,
            end: b.map_or(total, |b| b.saturating_add(1).min(total)),
            partial: true,
        }),
        Want::Suffix(0) => None,
        Want::Suffix(_) if total == 0 => None,
        Want::Suffix(n) => Some(Span {
            start: total - n.min(total),
            end: total,
            partial: true,
        }),
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`).
pub fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

/// The total length of a 416's `Content-Range: bytes */LEN`.
pub fn unsatisfied_length(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

fn header<'a>(h: &'a ResponseHeader, name: &str) -> Option<&'a str> {
    h.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A strong validator (RFC 9110 §8.8.1): a strong ETag, else Last-Modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validator {
    ETag(String),
    LastModified(String),
}

/// One representation of a sliced object: every slice must carry the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rep {
    pub validator: Validator,
    pub total: u64,
}

impl Rep {
    /// The representation a slice's 206 header names, with the slice's `(first, last)`.
    /// `None` without a strong validator or a complete Content-Range.
    pub fn of(resp: &ResponseHeader) -> Option<(Rep, u64, u64)> {
        let (first, last, total) = header(resp, "content-range").and_then(content_range)?;
        let etag = header(resp, "etag").filter(|e| e.trim_start().starts_with('"'));
        let validator = match etag {
            Some(e) => Validator::ETag(e.trim().to_string()),
            None => Validator::LastModified(header(resp, "last-modified")?.trim().to_string()),
        };
        let rep = Rep {
            validator,
            total: total?,
        };
        (first <= last).then_some((rep, first, last))
    }

    /// The conditional that makes the origin answer 304 when it still has this
    /// representation (RFC 9110 §13.1.2, §13.1.3).
    pub fn revalidation(&self) -> (&'static str, &str) {
        match &self.validator {
            Validator::ETag(e) => ("if-none-match", e),
            Validator::LastModified(d) => ("if-modified-since", d),
        }
    }

    /// The request field that makes the origin refuse (412) any other representation.
    pub fn precondition(&self) -> (&'static str, &str) {
        match &self.validator {
            Validator::ETag(e) => ("if-match", e),
            Validator::LastModified(d) => ("if-unmodified-since", d),
        }
    }
}

/// Whether a slice header belongs to `rep` and is slice `index` of `size`-byte slices.
pub fn is_slice_of(resp: &ResponseHeader, rep: &Rep, size: u64, index: u64) -> bool {
    let Some((r, first, last)) = Rep::of(resp) else {
        return false;
    };
    let start = index.saturating_mul(size);
    let end = start.saturating_add(size).min(rep.total);
    r == *rep && first == start && last.saturating_add(1) == end
}

/// `If-Range` (RFC 9110 §13.1.5) against the stored slice header: true when the Range
/// applies (the value is the strong ETag, or exactly the Last-Modified date).
pub fn if_range_holds(value: &str, stored: &ResponseHeader) -> bool {
    let value = value.trim();
    if value.starts_with('"') {
        return header(stored, "etag").is_some_and(|e| e.trim() == value);
    }
    if value.starts_with("W/") {
        return false;
    }
    header(stored, "last-modified").is_some_and(|lm| lm.trim() == value)
}

/// Whether a GET/HEAD is answered 304 from the stored header (RFC 9110 §13.1.2, §13.1.3):
/// `If-None-Match` (weak comparison) wins over `If-Modified-Since`.
pub fn not_modified(req: &RequestHeader, stored: &ResponseHeader) -> bool {
    let get = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(inm) = get("if-none-match") {
        let Some(etag) = header(stored, "etag") else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let ours = weak(etag);
        return inm.split(',').any(|t| t.trim() == "*" || weak(t) == ours);
    }
    let (Some(ims), Some(lm)) = (get("if-modified-since"), header(stored, "last-modified")) else {
        return false;
    };
    match (
        httpdate::parse_http_date(ims),
        httpdate::parse_http_date(lm),
    ) {
        (Ok(ims), Ok(lm)) => lm <= ims,
        _ => false,
    }
}

/// Seconds of freshness left (negative when stale) of a stored slice.
pub fn ttl(fresh_until: SystemTime, now: SystemTime) -> i64 {
    match fresh_until.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs().max(1)).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(206, None).unwrap();
        for (k, v) in fields {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn ranges_parse_one_byte_range_or_full() {
        let cases = [
            (None, Want::Full),
            (Some("bytes=0-1023"), Want::From(0, Some(1023))),
            (Some("bytes=500-"), Want::From(500, None)),
            (Some("bytes=-200"), Want::Suffix(200)),
            (Some("bytes=0-1,5-9"), Want::Full),
            (Some("bytes=9-1"), Want::Full),
            (Some("items=0-1"), Want::Full),
            (Some("bytes=x-1"), Want::Full),
            (Some("bytes=-"), Want::Full),
        ];
        for (v, want) in cases {
            assert_eq!(parse_range(v), want, "{v:?}");
        }
    }

    #[test]
    fn spans_resolve_against_the_length() {
        let span = |s, e, p| {
            Some(Span {
                start: s,
                end: e,
                partial: p,
            })
        };
        assert_eq!(resolve(Want::Full, 10), span(0, 10, false));
        assert_eq!(resolve(Want::From(2, Some(4)), 10), span(2, 5, true));
        assert_eq!(resolve(Want::From(2, Some(400)), 10), span(2, 10, true));
        assert_eq!(resolve(Want::From(2, None), 10), span(2, 10, true));
        assert_eq!(resolve(Want::From(10, None), 10), None);
        assert_eq!(resolve(Want::Suffix(3), 10), span(7, 10, true));
        assert_eq!(resolve(Want::Suffix(30), 10), span(0, 10, true));
        assert_eq!(resolve(Want::Suffix(0), 10), None);
    }

    #[test]
    fn content_range_parses_the_three_parts() {
        assert_eq!(content_range("bytes 10-19/100"), Some((10, 19, Some(100))));
        assert_eq!(content_range("bytes 10-19/*"), Some((10, 19, None)));
        assert_eq!(content_range("bytes */100"), None);
        assert_eq!(content_range("items 1-2/3"), None);
        assert_eq!(unsatisfied_length("bytes */100"), Some(100));
    }

    #[test]
    fn rep_needs_a_strong_validator_and_a_length() {
        let r = resp(&[("content-range", "bytes 0-9/100"), ("etag", "\"a\"")]);
        let (rep, first, last) = Rep::of(&r).unwrap();
        assert_eq!((rep.total, first, last), (100, 0, 9));
        assert_eq!(rep.precondition(), ("if-match", "\"a\""));
        let weak = resp(&[("content-range", "bytes 0-9/100"), ("etag", "W/\"a\"")]);
        assert!(Rep::of(&weak).is_none());
        let lm = resp(&[
            ("content-range", "bytes 0-9/100"),
            ("etag", "W/\"a\""),
            ("last-modified", "Tue, 01 Dec 2026 00:00:00 GMT"),
        ]);
        assert_eq!(
            Rep::of(&lm).unwrap().0.precondition().0,
            "if-unmodified-since"
        );
        let unknown = resp(&[("content-range", "bytes 0-9/*"), ("etag", "\"a\"")]);
        assert!(Rep::of(&unknown).is_none());
    }

    #[test]
    fn slices_must_match_position_and_representation() {
        let r = resp(&[("content-range", "bytes 10-19/25"), ("etag", "\"a\"")]);
        let rep = Rep::of(&r).unwrap().0;
        assert!(is_slice_of(&r, &rep, 10, 1));
        assert!(!is_slice_of(&r, &rep, 10, 0));
        let last = resp(&[("content-range", "bytes 20-24/25"), ("etag", "\"a\"")]);
        assert!(is_slice_of(&last, &rep, 10, 2));
        let other = resp(&[("content-range", "bytes 20-24/25"), ("etag", "\"b\"")]);
        assert!(!is_slice_of(&other, &rep, 10, 2));
    }

    #[test]
    fn if_range_and_conditionals() {
        let lm = "Tue, 01 Dec 2026 00:00:00 GMT";
        let stored = resp(&[("etag", "\"a\""), ("last-modified", lm)]);
        assert!(if_range_holds("\"a\"", &stored));
        assert!(!if_range_holds("\"b\"", &stored));
        assert!(!if_range_holds("W/\"a\"", &stored));
        assert!(if_range_holds(lm, &stored));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("if-none-match", "\"x\", W/\"a\"")
            .unwrap();
        assert!(not_modified(&req, &stored));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("if-modified-since", lm).unwrap();
        assert!(not_modified(&req, &stored));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("if-modified-since", "Mon, 30 Nov 2026 00:00:00 GMT")
            .unwrap();
        assert!(!not_modified(&req, &stored));
    }
}
