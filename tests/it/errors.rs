//! Errors outpost answers itself (interface.md §3): each with its status, a `Cache-Status`
//! header and a short body, and none of them reaching (or needing) the origin.

use crate::support::{
    assert_proxy_error, dead_addr, eventually, ms, raw_header, raw_status, Health, Origin,
    OriginSpec, Outpost, Reply,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_header_returns_431_untouched() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .set("server", "max_request_header", r#""4KiB""#)
        .site("*", &origin)
        .start()
        .await;

    let big = "a".repeat(8 * 1024);
    let answer = outpost
        .raw(
            format!(
                "GET /big HTTP/1.1\r\nHost: site.test\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(raw_status(&answer), 431, "{answer:.300}");
    let cs = raw_header(&answer, "cache-status").unwrap_or_default();
    assert!(
        cs.starts_with("outpost") && cs.contains("fwd="),
        "{answer:.300}"
    );

    // Just under the limit still works.
    let fine = "a".repeat(2 * 1024);
    let r = outpost
        .request("GET", "site.test", "/ok", &[("x-fine", &fine)])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(origin.hits("/big"), 0);
    assert_eq!(origin.hits("/ok"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_length_and_chunked_returns_400_never_forwarded() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().site("*", &origin).start().await;

    let answer = outpost
        .raw(
            b"POST /smuggle HTTP/1.1\r\n\
              Host: site.test\r\n\
              Content-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n\
              0\r\n\r\nGET /inner HTTP/1.1\r\nHost: site.test\r\n\r\n",
        )
        .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    let cs = raw_header(&answer, "cache-status").unwrap_or_default();
    assert!(cs.starts_with("outpost"), "{answer}");
    tokio::time::sleep(ms(200)).await;
    assert_eq!(origin.hits_total(), 0, "forwarded: {:?}", origin.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_host_returns_400_never_forwarded() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().site("*", &origin).start().await;

    // The second element says whether outpost itself answers (with Cache-Status). Pingora's
    // HTTP/1 parser already refuses duplicate Host and userinfo in Host with a bare 400
    // before any hook runs; those must still be 400 and never forwarded.
    let requests: [(&[u8], bool); 4] = [
        (
            b"GET /h1 HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n",
            true,
        ),
        (b"GET /h4 HTTP/1.1\r\nConnection: close\r\n\r\n", true),
        (
            b"GET /h2 HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET /h3 HTTP/1.1\r\nHost: user@site.test\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    let mut problems = Vec::new();
    for (req, ours) in requests {
        let answer = outpost.raw(req).await;
        let cs = raw_header(&answer, "cache-status").unwrap_or_default();
        if raw_status(&answer) != 400 || (ours && !cs.starts_with("outpost")) {
            problems.push(format!("{}-> {answer}", String::from_utf8_lossy(req)));
        }
    }
    assert!(
        problems.is_empty(),
        "want 400 + Cache-Status:\n{}",
        problems.join("\n")
    );
    tokio::time::sleep(ms(100)).await;
    assert_eq!(origin.hits_total(), 0, "forwarded: {:?}", origin.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_health_checked_down_returns_503() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&origin)
                .health(Health::every("200ms")),
        )
        .route("*", "/", "app")
        .start()
        .await;
    origin.set_health(500);
    let down = eventually(Duration::from_secs(3), || async {
        outpost.admin_get("/readyz").await.status == 503
    })
    .await;
    assert!(down, "the only server was never marked down");

    let r = outpost.get("site.test", "/down").await;
    assert_proxy_error(&r, 503);
    assert_eq!(origin.hits("/down"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_after_retries_returns_502() {
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server_addr(dead_addr().await, 1)
                .server_addr(dead_addr().await, 1)
                .retries(1),
        )
        .route("*", "/", "app")
        .start()
        .await;

    let r = outpost.get("site.test", "/refused").await;
    assert_proxy_error(&r, 502);
    assert!(r.elapsed < Duration::from_secs(3), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_slower_than_read_timeout_returns_504() {
    let origin = Origin::new()
        .route("/slow", Reply::ok("late").delay(ms(2500)))
        .start()
        .await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&origin)
                .read_timeout("300ms")
                .retries(0),
        )
        .route("*", "/", "app")
        .start()
        .await;

    let r = outpost.get("site.test", "/slow").await;
    assert_proxy_error(&r, 504);
    assert!(
        r.elapsed < Duration::from_millis(2000),
        "did not time out early: {r:?}"
    );
    assert_eq!(origin.hits("/slow"), 1);
}
