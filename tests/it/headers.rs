//! Headers outpost adds and removes (interface.md §3): Host, X-Forwarded-*, X-Real-IP, Via,
//! and hop-by-hop headers in both directions.

use crate::support::{Origin, OriginSpec, Outpost, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_untrusted_peer_replace_forwarded_for() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let r = outpost
        .request(
            "GET",
            "site.test",
            "/h",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-real-ip", "203.0.113.8"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = origin.last("/h").expect("origin saw the request");
    assert_eq!(seen.header("host").as_deref(), Some("site.test"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("site.test")
    );
    assert!(seen.header("via").is_some(), "no Via: {:?}", seen.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_trusted_peer_extend_forwarded_for() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "trusted_proxies", r#"["127.0.0.0/8"]"#)
        .site("site.test", &origin)
        .start()
        .await;

    let r = outpost
        .request(
            "GET",
            "site.test",
            "/t",
            &[("x-forwarded-for", "198.51.100.1, 203.0.113.7")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = origin.last("/t").expect("origin saw the request");
    let xff = seen.header("x-forwarded-for").unwrap_or_default();
    let hops: Vec<&str> = xff.split(',').map(str::trim).collect();
    assert_eq!(hops, ["198.51.100.1", "203.0.113.7", "127.0.0.1"], "{xff}");
    // The right-most untrusted address is the client.
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("203.0.113.7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_origin_host_overrides_upstream_host() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&origin)
                .host("backend.internal"),
        )
        .route("*", "/", "app")
        .start()
        .await;

    let r = outpost.get("site.test", "/o").await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = origin.last("/o").expect("origin saw the request");
    assert_eq!(seen.header("host").as_deref(), Some("backend.internal"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("site.test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let origin = Origin::new()
        .route(
            "/hop",
            Reply::ok("hop")
                .header("cache-control", "no-store")
                .header("connection", "x-bar")
                .header("x-bar", "secret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=\"o\"")
                .header("x-end-to-end", "kept"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    // Raw bytes so that exactly these headers go out.
    let answer = outpost
        .raw(
            b"GET /hop HTTP/1.1\r\n\
              Host: site.test\r\n\
              Connection: close, X-Foo\r\n\
              X-Foo: named-by-connection\r\n\
              Keep-Alive: timeout=5\r\n\
              TE: trailers\r\n\
              Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
              X-Keep: yes\r\n\r\n",
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let seen = origin.last("/hop").expect("origin saw the request");
    assert_eq!(
        seen.header("x-keep").as_deref(),
        Some("yes"),
        "{:?}",
        seen.headers
    );
    for h in ["x-foo", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            seen.header(h).is_none(),
            "{h} reached the origin: {:?}",
            seen.headers
        );
    }
    if let Some(conn) = seen.header("connection") {
        assert!(
            !conn.to_ascii_lowercase().contains("x-foo"),
            "Connection: {conn}"
        );
    }

    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(head.contains("\r\nx-end-to-end: kept"), "{head}");
    for h in ["x-bar:", "keep-alive:", "proxy-authenticate:"] {
        assert!(
            !head.contains(&format!("\r\n{h}")),
            "{h} reached the client: {head}"
        );
    }
    assert!(!head.contains("connection: x-bar"), "{head}");
}
