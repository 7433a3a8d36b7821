//! Table tests for object names: every rule of the module doc, with its neighbours.
#![allow(clippy::unwrap_used)]

use super::*;

fn filter() -> QueryFilter {
    QueryFilter::new(&[
        "utm_*".to_owned(),
        "fbclid".to_owned(),
        "*_ts".to_owned(),
        "a*b*c".to_owned(),
    ])
}

#[test]
fn requests_name_objects_canonically() {
    #[rustfmt::skip]
    let cases = [
        ("plain", Scheme::Http, "example.test", "/a/b", "http://example.test/a/b"),
        ("https", Scheme::Https, "example.test", "/", "https://example.test/"),
        ("empty path", Scheme::Http, "example.test", "", "http://example.test/"),
        ("path case kept, escapes upper-cased (RFC 3986 §6.2.2.1)", Scheme::Http, "example.test", "/A%2fB", "http://example.test/A%2FB"),
        ("unreserved escapes decoded", Scheme::Http, "h", "/%7Euser/%61", "http://h/~user/a"),
        ("dot segments removed", Scheme::Http, "h", "/x/../a//b", "http://h/a/b"),
        ("%2e%2e is a dot segment", Scheme::Http, "h", "/static/%2e%2e/api", "http://h/api"),
        ("query kept in order", Scheme::Http, "h", "/p?b=2&a=1", "http://h/p?b=2&a=1"),
        ("ignored params removed", Scheme::Http, "h", "/p?utm_source=x&id=1&fbclid=y", "http://h/p?id=1"),
        ("order of the rest kept", Scheme::Http, "h", "/p?z=1&utm_medium=m&a=2", "http://h/p?z=1&a=2"),
        ("no ? when nothing remains", Scheme::Http, "h", "/p?utm_source=x&fbclid=y", "http://h/p"),
        ("empty query", Scheme::Http, "h", "/p?", "http://h/p"),
        ("empty params dropped", Scheme::Http, "h", "/p?&a=1&&b=2&", "http://h/p?a=1&b=2"),
        ("param without value", Scheme::Http, "h", "/p?flag&fbclid", "http://h/p?flag"),
        ("glob suffix", Scheme::Http, "h", "/p?cache_ts=1&ts=2", "http://h/p?ts=2"),
        ("glob middle", Scheme::Http, "h", "/p?aXbYc=1&abc=2&acb=3", "http://h/p?acb=3"),
        ("names are case-sensitive", Scheme::Http, "h", "/p?UTM_source=x", "http://h/p?UTM_source=x"),
        ("percent-encoded name matches", Scheme::Http, "h", "/p?utm%5Fsource=x&k=v", "http://h/p?k=v"),
        ("prefix is not a match", Scheme::Http, "h", "/p?fbclid2=1", "http://h/p?fbclid2=1"),
        ("fragment dropped", Scheme::Http, "h", "/p?a=1#frag", "http://h/p?a=1"),
    ];
    for (case, scheme, host, pq, want) in cases {
        let u = ObjectUrl::from_request(scheme, host, pq, &filter());
        assert_eq!(u.as_str(), want, "{case}");
    }
}

#[test]
fn api_urls_parse_to_the_request_spelling() {
    let f = filter();
    #[rustfmt::skip]
    let cases = [
        ("scheme case", "HTTP://example.test/a", "http://example.test/a"),
        ("host case", "http://Example.TEST/a", "http://example.test/a"),
        ("trailing dot", "http://example.test./a", "http://example.test/a"),
        ("default port", "http://example.test:80/a", "http://example.test/a"),
        ("default https port", "https://example.test:443/a", "https://example.test/a"),
        ("other port: not part of the name", "http://example.test:8080/a", "http://example.test/a"),
        ("trailing dot and port", "http://example.test.:8080/a", "http://example.test/a"),
        ("empty port", "http://example.test:/a", "http://example.test/a"),
        ("IPv6", "http://[::1]/a", "http://[::1]/a"),
        ("IPv6 with port, upper-case hex", "http://[FE80::1]:8080/a", "http://[fe80::1]/a"),
        ("no path", "https://a.test", "https://a.test/"),
        ("query without path", "http://a.test?x=1", "http://a.test/?x=1"),
        ("percent-encoding", "http://h/caf%c3%a9/%7e", "http://h/caf%C3%A9/~"),
        ("dot segments", "http://h/a/./b/../c", "http://h/a/c"),
        ("%2e%2e", "http://h/static/%2E%2E/api/user", "http://h/api/user"),
        ("merged slashes", "http://h//a///b", "http://h/a/b"),
        ("ignored params", "http://h/a?utm_x=1&v=2#top", "http://h/a?v=2"),
    ];
    for (case, raw, want) in cases {
        assert_eq!(
            ObjectUrl::parse(raw, &f)
                .map(ObjectUrl::into_string)
                .as_deref(),
            Ok(want),
            "{case}"
        );
    }
    #[rustfmt::skip]
    let refused = [
        ("relative", "/a.css", UrlError::NotAbsolute),
        ("other scheme", "ftp://h/a", UrlError::NotAbsolute),
        ("no host", "http:///a", UrlError::NoHost),
        ("userinfo", "http://user@h/a", UrlError::Userinfo),
        ("userinfo with password", "http://u:p@h/a", UrlError::Userinfo),
        ("bad port", "http://h:99999/a", UrlError::BadHost),
        ("space in host", "http://a b/", UrlError::BadHost),
        ("unclosed IPv6", "http://[::1/a", UrlError::BadHost),
        ("encoded slash next to ..", "http://h/a%2f..%2fb", UrlError::AmbiguousPath),
        ("backslash dots", "http://h/a\\..\\b", UrlError::AmbiguousPath),
    ];
    for (case, raw, want) in refused {
        assert_eq!(ObjectUrl::parse(raw, &f), Err(want), "{case}");
    }
}

#[test]
fn a_request_and_its_purge_agree() {
    // Whatever spelling a client used, the purge of the canonical URL names the same object.
    let f = filter();
    for (host_header, pq, purge) in [
        (
            "Example.Test.:80",
            "/a/../b?utm_x=1",
            "http://example.test/b",
        ),
        ("EXAMPLE.test", "/%7Eme", "HTTP://example.test./~me"),
        ("[::1]:8080", "//x", "http://[::1]:1/x"),
    ] {
        let host = canonical_host(host_header).unwrap();
        let req = ObjectUrl::from_request(Scheme::Http, &host, pq, &f);
        assert_eq!(
            req,
            ObjectUrl::parse(purge, &f).unwrap(),
            "{host_header}{pq}"
        );
    }
}

#[test]
fn hosts_canonicalise() {
    for (raw, want) in [
        ("Example.Test:8080", Ok("example.test")),
        ("example.test.", Ok("example.test")),
        ("[::1]:80", Ok("[::1]")),
        ("[::1]", Ok("[::1]")),
        ("  a.test ", Ok("a.test")),
        ("bad host", Err(UrlError::BadHost)),
        ("a.test:xx", Err(UrlError::BadHost)),
        ("[::1]x", Err(UrlError::BadHost)),
        ("", Err(UrlError::BadHost)),
        ("a/b", Err(UrlError::BadHost)),
    ] {
        assert_eq!(
            canonical_host(raw).as_deref().map_err(|e| *e),
            want,
            "{raw:?}"
        );
    }
    assert!(matches!(canonical_host("a.test"), Ok(Cow::Borrowed(_))));
}

#[test]
fn keys_give_back_their_host_and_path() {
    let u = ObjectUrl::parse("https://Example.test:8443/a?b=1", &filter()).unwrap();
    assert_eq!(u.host(), "example.test");
    assert_eq!(u.path_and_query(), "/a?b=1");
    assert_eq!(
        u.with_scheme(Scheme::Http).as_str(),
        "http://example.test/a?b=1"
    );
    assert_eq!(u.with_scheme(Scheme::Http).host(), "example.test");
    assert_eq!(host_of_key(u.as_str()), "example.test");
    assert!(matches!(host_of_key(u.as_str()), Cow::Borrowed(_)));
    // Keys of older versions (port, case, userinfo) still give the canonical host.
    assert_eq!(host_of_key("http://Ex.Test:8080/a?b"), "ex.test");
    assert_eq!(host_of_key("https://user@[::1]:443/"), "[::1]");
    assert_eq!(host_of_key("example.test."), "example.test");
}

#[test]
fn prefixes_keep_their_query_and_open_end() {
    assert_eq!(
        ObjectUrl::parse_prefix("HTTP://H.test/img/")
            .unwrap()
            .as_str(),
        "http://h.test/img/"
    );
    assert_eq!(
        ObjectUrl::parse_prefix("http://h.test/img")
            .unwrap()
            .as_str(),
        "http://h.test/img"
    );
    assert_eq!(
        ObjectUrl::parse_prefix("http://h.test/a?utm_x")
            .unwrap()
            .as_str(),
        "http://h.test/a?utm_x"
    );
    assert_eq!(
        ObjectUrl::parse_prefix("http://h.test").unwrap().as_str(),
        "http://h.test/"
    );
    assert_eq!(
        ObjectUrl::parse_prefix("http://u@h.test/"),
        Err(UrlError::Userinfo)
    );
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
