//! Table tests for cache keys: primary URL canonicalisation, query filtering, Vary parsing
//! and variance normalisation (RFC 9111 §4.1).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::url::{ObjectUrl, QueryFilter, Scheme};

/// Header list of a table row.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn req(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).unwrap();
    for (n, v) in headers {
        r.append_header(n.to_string(), *v).unwrap();
    }
    r
}

fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(200, None).unwrap();
    for (n, v) in headers {
        r.append_header(n.to_string(), *v).unwrap();
    }
    r
}

#[test]
fn vary_fields_combine_lines_and_lists() {
    let fields = |v: &[&str]| VaryFields::Fields(v.iter().map(|s| s.to_string()).collect());
    #[rustfmt::skip]
    let cases: &[(&str, Headers, VaryFields)] = &[
        ("none", &[], VaryFields::None),
        ("empty", &[("vary", "")], VaryFields::None),
        ("one, lower-cased", &[("vary", "Accept-Encoding")], fields(&["accept-encoding"])),
        ("list", &[("vary", "Foo, Bar,Baz")], fields(&["foo", "bar", "baz"])),
        ("lines", &[("vary", "Foo"), ("vary", "Bar")], fields(&["foo", "bar"])),
        ("duplicates", &[("vary", "Foo, foo"), ("vary", "FOO")], fields(&["foo"])),
        ("empty members", &[("vary", ", Foo,,")], fields(&["foo"])),
        ("RFC 9111 §4.1 *", &[("vary", "*")], VaryFields::Star),
        ("*, *", &[("vary", "*, *")], VaryFields::Star),
        (", *", &[("vary", ", *")], VaryFields::Star),
        ("* on another line", &[("vary", ""), ("vary", "*")], VaryFields::Star),
        ("*, Foo", &[("vary", "*, Foo")], VaryFields::Star),
        ("Foo, *", &[("vary", "Foo, *")], VaryFields::Star),
    ];
    for (case, headers, want) in cases {
        assert_eq!(vary_fields(&resp(headers)), *want, "{case}");
    }
}

fn var(vary: &[&str], headers: &[(&str, &str)]) -> Option<HashBinary> {
    let v = if vary.is_empty() {
        VaryFields::None
    } else {
        VaryFields::Fields(vary.iter().map(|s| s.to_string()).collect())
    };
    variance(&v, &req(headers))
}

#[test]
fn variance_matches_per_rfc9111_4_1() {
    let foo = ["foo"];
    // (case, vary, first request, second request, same variant?)
    #[rustfmt::skip]
    type Row<'a> = (&'a str, &'a [&'a str], Headers<'a>, Headers<'a>, bool);
    #[rustfmt::skip]
    let cases: &[Row] = &[
        ("equal values", &foo, &[("foo", "1")], &[("foo", "1")], true),
        ("different values", &foo, &[("foo", "1")], &[("foo", "2")], false),
        ("header not in Vary ignored", &foo, &[("foo", "1"), ("other", "2")], &[("foo", "1"), ("other", "3")], true),
        ("whitespace around members", &foo, &[("foo", "1,2")], &[("foo", " 1, 2 ")], true),
        ("combined lines", &foo, &[("foo", "1, 2")], &[("foo", "1"), ("foo", "2")], true),
        ("inner whitespace runs", &foo, &[("foo", "a  b")], &[("foo", "a b")], true),
        ("quoted comma is not a separator", &foo, &[("foo", "\"a,b\"")], &[("foo", "\"a, b\"")], false),
        ("member order matters", &foo, &[("foo", "en, de")], &[("foo", "de, en")], false),
        ("value case matters", &foo, &[("foo", "A")], &[("foo", "a")], false),
        ("absent matches absent", &foo, &[], &[], true),
        ("absent ≠ present", &foo, &[("foo", "1")], &[], false),
        ("absent ≠ empty", &foo, &[("foo", "")], &[], false),
        ("empty = empty members", &foo, &[("foo", "")], &[("foo", " , ")], true),
        ("two fields, order-insensitive", &["foo", "bar"], &[("foo", "1"), ("bar", "2")], &[("bar", "2"), ("foo", "1")], true),
        ("two fields, one differs", &["foo", "bar"], &[("foo", "1"), ("bar", "2")], &[("foo", "1"), ("bar", "3")], false),
        ("two fields, one omitted", &["foo", "bar"], &[("foo", "1")], &[("foo", "1"), ("bar", "")], false),
        ("AE: codings sorted", &["accept-encoding"], &[("accept-encoding", "gzip, deflate, br")], &[("accept-encoding", "br,gzip")], true),
        ("AE: missing = identity", &["accept-encoding"], &[], &[("accept-encoding", "identity")], true),
        ("AE: gzip ≠ identity", &["accept-encoding"], &[("accept-encoding", "gzip")], &[], false),
    ];
    for (case, vary, a, b, same) in cases {
        let (va, vb) = (var(vary, a), var(vary, b));
        assert!(
            va.is_some() && vb.is_some(),
            "{case}: a varying response always has a variance"
        );
        assert_eq!(va == vb, *same, "{case}");
    }
}

#[test]
fn no_vary_means_no_variance() {
    assert_eq!(var(&[], &[("foo", "1")]), None);
    assert_eq!(variance(&VaryFields::Star, &req(&[])), None);
}

#[test]
fn accept_encoding_normalised() {
    #[rustfmt::skip]
    let cases = [
        ("missing", None, "identity"),
        ("identity only", Some("identity"), "identity"),
        ("unknown codings only", Some("deflate, compress"), "identity"),
        ("gzip", Some("gzip"), "gzip"),
        ("x-gzip alias", Some("x-gzip"), "gzip"),
        ("sorted", Some("zstd, gzip, deflate, br"), "br,gzip,zstd"),
        ("case-insensitive", Some("GZip, BR"), "br,gzip"),
        ("q=0 removed", Some("gzip;q=0, br"), "br"),
        ("q=0.000 removed", Some("br; q=0.000, gzip;q=0.5"), "gzip"),
        ("Q=0 removed", Some("gzip;Q=0"), "identity"),
        ("q>0 kept", Some("zstd;q=0.001"), "zstd"),
        ("* adds the rest", Some("*"), "br,gzip,zstd"),
        ("* minus refused", Some("*, br;q=0"), "gzip,zstd"),
        ("*;q=0", Some("*;q=0, gzip"), "gzip"),
        ("refusal wins over acceptance", Some("gzip, gzip;q=0"), "identity"),
        ("empty", Some(""), "identity"),
    ];
    for (case, value, want) in cases {
        let r = match value {
            Some(v) => req(&[("accept-encoding", v)]),
            None => req(&[]),
        };
        assert_eq!(accept_encoding_key(&r), want, "{case}");
    }
}

#[test]
fn invalidation_keys_follow_same_origin_locations() {
    let f = QueryFilter::default();
    let keys = |headers: &[(&str, &str)]| {
        invalidation_urls(Scheme::Http, "h.test", "/dir/post?x=1", &resp(headers), &f)
            .into_iter()
            .map(ObjectUrl::into_string)
            .collect::<Vec<_>>()
    };
    #[rustfmt::skip]
    let cases: &[(&str, Headers, &[&str])] = &[
        ("RFC 9111 §4.4 target only", &[], &["http://h.test/dir/post?x=1"]),
        ("absolute path", &[("location", "/other")], &["http://h.test/dir/post?x=1", "http://h.test/other"]),
        ("relative path", &[("content-location", "item?y=2")], &["http://h.test/dir/post?x=1", "http://h.test/dir/item?y=2"]),
        ("absolute same origin", &[("location", "HTTP://H.test:80/a")], &["http://h.test/dir/post?x=1", "http://h.test/a"]),
        ("network-path", &[("location", "//h.test/b")], &["http://h.test/dir/post?x=1", "http://h.test/b"]),
        ("other host ignored", &[("location", "http://evil.test/a")], &["http://h.test/dir/post?x=1"]),
        ("other scheme ignored", &[("location", "https://h.test/a")], &["http://h.test/dir/post?x=1"]),
        ("other port ignored", &[("location", "http://h.test:8080/a")], &["http://h.test/dir/post?x=1"]),
        ("both, deduplicated", &[("location", "/a"), ("content-location", "/a")], &["http://h.test/dir/post?x=1", "http://h.test/a"]),
        ("query with ://", &[("location", "/a?u=http://x")], &["http://h.test/dir/post?x=1", "http://h.test/a?u=http://x"]),
    ];
    for (case, headers, want) in cases {
        assert_eq!(keys(headers), *want, "{case}");
    }
}
