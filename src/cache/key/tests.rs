//! Table tests for cache keys: primary URL canonicalisation, query filtering, Vary parsing
//! and variance normalisation (RFC 9111 §4.1).
#![allow(clippy::unwrap_used)]

use super::*;

/// Header list of a table row.
type Headers<'a> = &'a [(&'a str, &'a str)];

fn filter() -> QueryFilter {
    QueryFilter::new(&[
        "utm_*".to_owned(),
        "fbclid".to_owned(),
        "*_ts".to_owned(),
        "a*b*c".to_owned(),
    ])
}

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
fn primary_key_is_a_canonical_url() {
    #[rustfmt::skip]
    let cases = [
        ("plain", "http", "example.test", "/a/b", "http://example.test/a/b"),
        ("host lower-cased", "http", "Example.TEST", "/", "http://example.test/"),
        ("scheme lower-cased", "HTTPS", "example.test", "/", "https://example.test/"),
        ("port kept", "http", "example.test:8080", "/", "http://example.test:8080/"),
        ("default http port dropped", "http", "example.test:80", "/", "http://example.test/"),
        ("default https port dropped", "https", "example.test:443", "/", "https://example.test/"),
        ("443 is not default for http", "http", "example.test:443", "/", "http://example.test:443/"),
        ("IPv6 literal", "http", "[::1]:8080", "/", "http://[::1]:8080/"),
        ("empty path", "http", "example.test", "", "http://example.test/"),
        ("path case kept, escapes upper-cased (RFC 3986 §6.2.2.1)", "http", "example.test", "/A%2fB", "http://example.test/A%2FB"),
        ("query kept in order", "http", "h", "/p?b=2&a=1", "http://h/p?b=2&a=1"),
        ("ignored params removed", "http", "h", "/p?utm_source=x&id=1&fbclid=y", "http://h/p?id=1"),
        ("order of the rest kept", "http", "h", "/p?z=1&utm_medium=m&a=2", "http://h/p?z=1&a=2"),
        ("no ? when nothing remains", "http", "h", "/p?utm_source=x&fbclid=y", "http://h/p"),
        ("empty query", "http", "h", "/p?", "http://h/p"),
        ("empty params dropped", "http", "h", "/p?&a=1&&b=2&", "http://h/p?a=1&b=2"),
        ("param without value", "http", "h", "/p?flag&fbclid", "http://h/p?flag"),
        ("glob suffix", "http", "h", "/p?cache_ts=1&ts=2", "http://h/p?ts=2"),
        ("glob middle", "http", "h", "/p?aXbYc=1&abc=2&acb=3", "http://h/p?acb=3"),
        ("names are case-sensitive", "http", "h", "/p?UTM_source=x", "http://h/p?UTM_source=x"),
        ("percent-encoded name matches", "http", "h", "/p?utm%5Fsource=x&k=v", "http://h/p?k=v"),
        ("prefix is not a match", "http", "h", "/p?fbclid2=1", "http://h/p?fbclid2=1"),
        ("fragment dropped", "http", "h", "/p?a=1#frag", "http://h/p?a=1"),
    ];
    for (case, scheme, host, pq, want) in cases {
        assert_eq!(primary_key(scheme, host, pq, &filter()), want, "{case}");
    }
}

#[test]
fn empty_filter_keeps_everything() {
    let key = primary_key("http", "h", "/p?utm_source=x", &QueryFilter::default());
    assert_eq!(key, "http://h/p?utm_source=x");
    assert!(QueryFilter::new(&["*".to_owned()]).is_ignored("anything"));
}

#[test]
fn split_primary_inverts_primary_key() {
    let key = primary_key("https", "Example.test:8443", "/a?b=1", &filter());
    assert_eq!(
        split_primary(&key),
        Some(("https", "example.test:8443", "/a?b=1"))
    );
    assert_eq!(split_primary("http://h"), Some(("http", "h", "/")));
    assert_eq!(split_primary("not a key"), None);
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
        invalidation_keys("http", "h.test", "/dir/post?x=1", &resp(headers), &f)
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

#[test]
fn paths_normalise_to_one_spelling() {
    let n = |p: &str| normalize_path(p).map(|c| c.into_owned());
    for (raw, want) in [
        ("/a/b", "/a/b"),
        ("/", "/"),
        ("/static/../api/user", "/api/user"),
        ("/static/%2e%2e/api/user", "/api/user"),
        ("/static/%2E%2E/api/user", "/api/user"),
        ("/static/.%2e/api/user", "/api/user"),
        ("//api/user", "/api/user"),
        ("/a//b///c", "/a/b/c"),
        ("/./api/./user", "/api/user"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/../../etc", "/etc"),
        ("/dir/", "/dir/"),
        ("/%7Euser/%61", "/~user/a"),
        ("/a%2fb", "/a%2Fb"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/100%", "/100%"),
    ] {
        assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
    }
    for bad in [
        "/static%2f..%2fapi/user",
        "/static/..%2Fapi",
        "/a\\..\\api",
        "/x%5c..%5capi",
    ] {
        assert_eq!(n(bad), Err(AmbiguousPath), "{bad}");
    }
    assert!(matches!(
        normalize_path("/plain/path.css"),
        Ok(Cow::Borrowed(_))
    ));
}

#[test]
fn trailing_dot_hosts_share_the_key() {
    let f = QueryFilter::default();
    assert_eq!(
        primary_key("http", "example.test.", "/a", &f),
        primary_key("http", "example.test", "/a", &f)
    );
    assert_eq!(
        primary_key("http", "example.test.:8080", "/a", &f),
        "http://example.test:8080/a"
    );
    assert_eq!(primary_key("http", "h", "/x/../a//b", &f), "http://h/a/b");
}
