//! Hostile clients and careless origins (interface.md §3): one spelling of path and host for
//! routing, key and origin; malformed and oversized requests answered by outpost itself with
//! `Cache-Status` and never forwarded; origin responses that cannot be trusted not stored;
//! per-route ACLs and rate limits; admin auth and body limits.

use crate::support::{
    assert_proxy_error, ms, raw_header, raw_status, Origin, OriginSpec, Outpost, Reply, TOKEN,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_slashes_route_key_and_forward_as_one_path() {
    // A pass-through /api/ and a cached /: the private answer must never be stored.
    let origin = Origin::new()
        .route(
            "/api/user",
            Reply::ok("private").header("cache-control", "max-age=600"),
        )
        .start()
        .await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("app").server(&origin))
        .route_uncached("*", "/api/", "app")
        .route("*", "/", "app")
        .start()
        .await;
    let variants = [
        "/api/user",
        "/static/../api/user",
        "/static/%2e%2e/api/user",
        "/static/%2E%2E/api/user",
        "/static/.%2e/api/user",
        "//api/user",
        "/.//api/./user",
        "/%61pi/user",
        "/a/b/../../api/user",
    ];
    for (i, path) in variants.iter().enumerate() {
        let answer = outpost.raw(&get(path, "site.test")).await;
        assert_eq!(raw_status(&answer), 200, "{path}: {answer:.300}");
        let cs = raw_header(&answer, "cache-status").unwrap_or_default();
        assert!(
            cs.contains("fwd=bypass"),
            "{path} was not routed to /api/: {cs}"
        );
        assert_eq!(
            origin.hits("/api/user"),
            i + 1,
            "{path} was not forwarded as /api/user"
        );
    }
    // Encoded separators next to dot segments have no single meaning: refused, not forwarded.
    for path in [
        "/static%2f..%2fapi/user",
        "/static/..%2Fapi/user",
        "/static%5c..%5capi/user",
    ] {
        let answer = outpost.raw(&get(path, "site.test")).await;
        assert_eq!(raw_status(&answer), 400, "{path}: {answer:.300}");
        assert!(
            raw_header(&answer, "cache-status").is_some_and(|c| c.contains("fwd=")),
            "{answer:.300}"
        );
    }
    assert_eq!(
        origin.hits_total(),
        variants.len(),
        "a refused request reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_dot_host_routes_keys_and_purges_as_the_host() {
    let a = Origin::named("exact").start().await;
    let other = Origin::named("other").start().await;
    let outpost = Outpost::builder()
        .token()
        .origin(OriginSpec::new("exact").server(&a))
        .origin(OriginSpec::new("other").server(&other))
        .route("example.test", "/", "exact")
        .route("*", "/", "other")
        .start()
        .await;
    a.set_route("/t", Reply::ok("v1").header("cache-control", "max-age=600"));
    let first = outpost.get("example.test.", "/t").await;
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "v1"),
        "{first:?}"
    );
    for host in ["example.test", "EXAMPLE.test.", "example.test.:80"] {
        let r = outpost.get(host, "/t").await;
        assert!(r.is_hit(), "{host} has a cache entry of its own: {r:?}");
    }
    a.set_route("/t", Reply::ok("v2").header("cache-control", "max-age=600"));
    outpost
        .purge(r#"{"urls": ["http://example.test/t"]}"#)
        .await;
    let after = outpost.get("example.test.", "/t").await;
    assert_eq!(
        after.text(),
        "v2",
        "the dotted spelling kept the purged body: {after:?}"
    );
    assert_eq!(other.hits_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx_with_cache_status_and_never_reach_the_origin() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "max_uri", "\"1KiB\"")
        .set("server", "max_headers", "10")
        .site("*", &origin)
        .access_log()
        .start()
        .await;
    let long = format!("/{}", "a".repeat(2000));
    let mut many = String::from("GET /many HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n");
    for i in 0..12 {
        many.push_str(&format!("X-F{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("request-target over max_uri", get(&long, "site.test"), 414),
        ("more fields than max_headers", many.into_bytes(), 431),
        ("bare LF line ends", b"GET /lf HTTP/1.1\nHost: site.test\nConnection: close\n\n".to_vec(), 400),
        (
            "bare LF in one field",
            b"GET /lf2 HTTP/1.1\r\nHost: site.test\nX-A: b\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "CL and TE",
            b"POST /x HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        ("bad Host", get("/h", "a b"), 400),
        // Rejected by Pingora's parser before outpost's code runs: still outpost's answer.
        (
            "obs-fold",
            b"GET /f HTTP/1.1\r\nHost: site.test\r\nX-A: b\r\n c\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "invalid field name",
            b"GET /n HTTP/1.1\r\nHost: site.test\r\nBad Name: v\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
    ];
    for (what, bytes, want) in cases {
        let answer = outpost.raw(&bytes).await;
        assert_eq!(raw_status(&answer), want, "{what}: {answer:.300}");
        let cs = raw_header(&answer, "cache-status").unwrap_or_default();
        assert!(
            cs.starts_with("outpost") && cs.contains("fwd="),
            "{what}: {answer:.300}"
        );
    }
    // Every one of them has an access-log line.
    tokio::time::sleep(ms(300)).await;
    let refused = outpost
        .access_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["status"].as_u64().is_some_and(|s| s >= 400))
        .count();
    assert!(
        refused >= 9,
        "{refused} access-log lines for 9 refused requests:\n{}",
        outpost.access_log()
    );
    // Just inside the limits still works.
    let r = outpost
        .get("site.test", &format!("/{}", "b".repeat(900)))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        origin.hits_total(),
        1,
        "a refused request reached the origin"
    );
}

/// What a raw origin has seen: requests and connections.
#[derive(Clone, Default)]
struct RawCounts {
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

/// An origin that answers every request with `answer` (raw bytes), counting requests and
/// connections.
async fn raw_origin(answer: &'static [u8]) -> (std::net::SocketAddr, RawCounts) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let counts = RawCounts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let c = c.clone();
            c.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        c.requests.fetch_add(1, Ordering::Relaxed);
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrustworthy_origin_responses_are_never_stored() {
    // Content-Length and Transfer-Encoding together (RFC 9112 §6.3: possible response
    // splitting): refused with 502 like nginx, never stored, the connection never reused; in
    // either order, with a right or a wrong length, with a coding list.
    const FRAMINGS: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for answer in FRAMINGS {
        let (addr, counts) = raw_origin(answer).await;
        let outpost = Outpost::builder()
            .origin(OriginSpec::new("raw").server_addr(addr, 1))
            .route("*", "/", "raw")
            .start()
            .await;
        for _ in 0..3 {
            let r = outpost.get("site.test", "/framing").await;
            assert_proxy_error(&r, 502);
            assert!(!r.text().contains("hello"), "{r:?}");
        }
        let seen = counts.requests.load(Ordering::Relaxed);
        assert!(seen >= 3, "stored after {seen} fetches");
        assert_eq!(
            counts.connections.load(Ordering::Relaxed),
            seen,
            "an upstream connection was reused after a conflicting-framing response"
        );
    }
    // The same origin with one framing only is fine (and stored).
    let (addr, counts) = raw_origin(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("raw").server_addr(addr, 1))
        .route("*", "/", "raw")
        .start()
        .await;
    for _ in 0..2 {
        let r = outpost.get("site.test", "/framing").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r:?}");
    }
    assert_eq!(counts.requests.load(Ordering::Relaxed), 1);

    // 200 KB of response header: refused (502), not passed on or stored.
    let big = "v".repeat(200 * 1024);
    let origin = Origin::new()
        .route(
            "/big",
            Reply::ok("body")
                .header("cache-control", "max-age=600")
                .header("x-big", big),
        )
        .route(
            "/fine",
            Reply::ok("fine").header("x-some", "v".repeat(8 * 1024)),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("*", &origin).start().await;
    for _ in 0..2 {
        let r = outpost.get("site.test", "/big").await;
        assert_proxy_error(&r, 502);
        assert!(r.header("x-big").is_none());
    }
    assert_eq!(origin.hits("/big"), 2, "the oversized answer was stored");
    assert_eq!(outpost.get("site.test", "/fine").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_acls_refuse_with_403_on_the_resolved_client_address() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "trusted_proxies", "[\"127.0.0.2/32\"]")
        .origin(OriginSpec::new("app").server(&origin))
        .raw("[[route]]\nhost = \"*\"\nprefix = \"/office/\"\norigin = \"app\"\nallow = [\"10.0.0.0/8\"]")
        .raw("[[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\ndeny = [\"127.0.0.1\", \"192.0.2.0/24\"]")
        .start()
        .await;
    let r = outpost.get("site.test", "/office/a").await;
    assert_proxy_error(&r, 403);
    let r = outpost.get("site.test", "/public").await;
    assert_proxy_error(&r, 403);
    // X-Forwarded-For from an untrusted peer does not change who the client is.
    let r = outpost
        .request(
            "GET",
            "site.test",
            "/office/a",
            &[("x-forwarded-for", "10.1.2.3")],
        )
        .await;
    assert_proxy_error(&r, 403);
    assert_eq!(
        origin.hits_total(),
        0,
        "a refused request reached the origin"
    );
    assert_eq!(
        outpost
            .metric("outpost_refused_total", &[("reason", "acl")])
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rate_limit_answers_429_with_retry_after_per_client() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "trusted_proxies", "[\"127.0.0.1/32\"]")
        .origin(OriginSpec::new("app").server(&origin))
        .raw("[[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\nrate_limit = { requests = 3, per = \"1m\", burst = 1 }")
        .start()
        .await;
    let client = [("x-forwarded-for", "203.0.113.7")];
    for i in 0..4 {
        let r = outpost
            .request("GET", "site.test", &format!("/r{i}"), &client)
            .await;
        assert_eq!(r.status, 200, "request {i} within requests + burst: {r:?}");
    }
    let r = outpost.request("GET", "site.test", "/r4", &client).await;
    assert_proxy_error(&r, 429);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "Retry-After {retry}: {r:?}");
    // Another client address has its own budget.
    let other = outpost
        .request(
            "GET",
            "site.test",
            "/r5",
            &[("x-forwarded-for", "203.0.113.8")],
        )
        .await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(
        origin.hits("/r4"),
        0,
        "a refused request reached the origin"
    );
    assert_eq!(
        outpost
            .metric("outpost_refused_total", &[("reason", "rate_limit")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bearer_scheme_is_case_insensitive_and_big_purge_bodies_are_413() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().token().site("*", &origin).start().await;
    let body = r#"{"all": true}"#;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = outpost
            .admin_post_raw(
                "/purge",
                body,
                &[("authorization", &format!("{scheme} {TOKEN}"))],
            )
            .await;
        assert_eq!(r.status, 200, "{scheme}: {r:?}");
    }
    let big = format!("{{\"urls\": [\"{}\"]}}", "x".repeat(2 << 20));
    let r = outpost
        .admin_post_raw(
            "/purge",
            &big,
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    tokio::time::sleep(ms(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_honours_q_values_and_no_transform() {
    let text = "compressible text ".repeat(500);
    let origin = Origin::new()
        .route(
            "/t",
            Reply::ok(text.clone()).header("content-type", "text/plain"),
        )
        .route(
            "/nt",
            Reply::ok(text.clone())
                .header("content-type", "text/plain")
                .header("cache-control", "max-age=60, no-transform"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("*", &origin).start().await;
    for (ae, want) in [
        ("gzip;q=1.0, br;q=0.5", Some("gzip")),
        ("br;q=0.5, gzip;q=0.9", Some("gzip")),
        ("gzip;q=0.3, identity;q=0.8", None),
        ("gzip;q=0, br;q=0", None),
        ("gzip, br", Some("br")),
    ] {
        let r = outpost
            .request("GET", "site.test", "/t", &[("accept-encoding", ae)])
            .await;
        assert_eq!(r.header("content-encoding").as_deref(), want, "{ae}: {r:?}");
    }
    for _ in 0..2 {
        let r = outpost
            .request(
                "GET",
                "site.test",
                "/nt",
                &[("accept-encoding", "gzip, br")],
            )
            .await;
        assert_eq!(
            r.header("content-encoding"),
            None,
            "no-transform was compressed: {r:?}"
        );
        assert_eq!(r.body.len(), text.len());
    }
}

/// Whether the server closed `stream` within `within` (EOF or reset), reading and discarding
/// whatever it sent first.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_at_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "header_timeout", "\"1s\"")
        .site("*", &origin)
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(outpost.proxy_addr())
        .await
        .expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: site.test\r\n")
        .await
        .expect("write");
    // One header byte every 200 ms: each read is quick, the head never completes.
    let started = std::time::Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if s.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        if closed_within(&mut s, ms(200)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickled for 8 s was not cut");
    assert!(
        started.elapsed() >= ms(900),
        "cut before header_timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(origin.hits_total(), 0);
    // A normal request right after is fine.
    assert_eq!(outpost.get("site.test", "/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_at_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "idle_timeout", "\"1s\"")
        .site("*", &origin)
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(outpost.proxy_addr())
        .await
        .expect("connect");
    s.write_all(b"GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n")
        .await
        .expect("write");
    // The answer arrives and the connection stays open a moment (keep-alive)...
    assert!(
        !closed_within(&mut s, ms(300)).await,
        "closed right after the response"
    );
    // ...and is closed once idle for about idle_timeout.
    assert!(
        closed_within(&mut s, ms(4000)).await,
        "idle keep-alive connection still open"
    );
    assert_eq!(origin.hits("/a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_close_new_connections_at_accept() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "max_connections", "3")
        .set("server", "max_connections_per_ip", "2")
        .site("*", &origin)
        .start()
        .await;
    let connect_from = |ip: &'static str| {
        let addr = outpost.proxy_addr();
        async move {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind(format!("{ip}:0").parse().expect("addr"))
                .expect("bind");
            sock.connect(addr).await.expect("connect")
        }
    };
    tokio::time::sleep(ms(300)).await; // the start-up probes are gone
    let mut a1 = connect_from("127.0.0.1").await;
    let a2 = connect_from("127.0.0.1").await;
    tokio::time::sleep(ms(100)).await;
    let mut a3 = connect_from("127.0.0.1").await;
    assert!(
        closed_within(&mut a3, ms(2000)).await,
        "third connection from one address kept"
    );
    let mut b1 = connect_from("127.0.0.2").await;
    tokio::time::sleep(ms(100)).await;
    let mut b2 = connect_from("127.0.0.2").await;
    assert!(
        closed_within(&mut b2, ms(2000)).await,
        "connection over max_connections kept"
    );
    assert!(!closed_within(&mut a1, ms(100)).await && !closed_within(&mut b1, ms(100)).await);
    assert_eq!(
        outpost
            .metric("outpost_connections", &[("listener", "proxy")])
            .await,
        3.0
    );
    assert_eq!(
        outpost
            .metric("outpost_refused_total", &[("reason", "conn_limit")])
            .await,
        2.0
    );
    drop(a2);
    tokio::time::sleep(ms(200)).await;
    let mut a4 = connect_from("127.0.0.1").await;
    assert!(
        !closed_within(&mut a4, ms(300)).await,
        "a freed slot was not reused"
    );
    drop((a1, a4, b1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_miss_does_not_break_the_next_request_on_the_connection() {
    let body = "0123456789".repeat(100_000);
    let origin = Origin::new()
        .route(
            "/big",
            Reply::ok(body.clone()).header("cache-control", "max-age=600"),
        )
        .route("/next", Reply::ok("next"))
        .start()
        .await;
    let outpost = Outpost::builder().site("*", &origin).start().await;
    for i in 0..5 {
        let path = format!("/big?{i}");
        origin.set_route(
            "/big",
            Reply::ok(body.clone()).header("cache-control", "max-age=600"),
        );
        let r = outpost
            .request("GET", "site.test", &path, &[("range", "bytes=0-9")])
            .await;
        assert!(r.status == 206 || r.status == 200, "{r:?}");
        // The same client (connection pool) right after: must be answered.
        let n = outpost.get("site.test", "/next").await;
        assert_eq!(
            (n.status, n.text().as_str()),
            (200, "next"),
            "round {i}: {n:?}"
        );
    }
}
