//! RFC 9111 shared-cache behaviour (interface.md §4): what is stored, for how long, how it is
//! revalidated, served stale, invalidated and answered (Vary, Range, HEAD, conditionals).
//! Every case is proven with the origin's request counter, not only with Cache-Status.

use crate::support::{
    eventually, ms, raw_header, raw_status, Origin, OriginSpec, Outpost, Reply, Req,
};
use std::time::Duration;

/// A 200 with `body` and `Cache-Control: cc`.
fn cc(body: &str, cc: &str) -> Reply {
    Reply::ok(body.to_owned()).header("cache-control", cc)
}

/// `Cache-Control: max-age=60`, body "v<n>" where n counts requests for the path.
fn versioned(req: &Req) -> Reply {
    cc(&format!("v{}", req.n), "max-age=60")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_miss_then_hit_reports_status_and_age() {
    let origin = Origin::new().handler("/mh", versioned).start().await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let miss = outpost.get("site.test", "/mh").await;
    assert_eq!((miss.status, miss.text().as_str()), (200, "v1"));
    let cs = miss.cache_status();
    assert!(
        cs.starts_with("outpost") && cs.contains("fwd=uri-miss") && cs.contains("stored"),
        "{miss:?}"
    );

    let hit = outpost.get("site.test", "/mh").await;
    assert_eq!((hit.status, hit.text().as_str()), (200, "v1"));
    assert!(hit.is_hit(), "{hit:?}");
    let ttl = hit.ttl().unwrap_or_else(|| panic!("no ttl: {hit:?}"));
    assert!((55..=60).contains(&ttl), "{hit:?}");
    assert!(hit.age().is_some_and(|a| a <= 5), "Age: {hit:?}");
    assert_eq!(origin.hits("/mh"), 1);

    // Counted in the logging phase, which may run just after the client has the response.
    let lookups = |result: &'static str| {
        let outpost = &outpost;
        async move {
            outpost
                .metric("outpost_cache_lookups_total", &[("result", result)])
                .await
        }
    };
    let counted = eventually(Duration::from_secs(2), || async {
        lookups("hit").await >= 1.0 && lookups("miss").await >= 1.0
    })
    .await;
    assert!(
        counted,
        "lookups: hit={} miss={}",
        lookups("hit").await,
        lookups("miss").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_freshness_from_default_ttl_and_incoming_age() {
    let origin = Origin::new()
        .route("/silent", Reply::ok("no freshness info"))
        .route("/aged", cc("aged", "max-age=60").header("age", "50"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "default_ttl", r#"{ "200" = "5m" }"#)
        .site("site.test", &origin)
        .start()
        .await;

    for path in ["/silent", "/aged"] {
        outpost.get("site.test", path).await;
    }
    let silent = outpost.get("site.test", "/silent").await;
    assert!(silent.is_hit(), "default_ttl should apply: {silent:?}");
    assert!(
        silent.ttl().is_some_and(|t| (290..=300).contains(&t)),
        "{silent:?}"
    );
    let aged = outpost.get("site.test", "/aged").await;
    assert!(aged.is_hit(), "{aged:?}");
    assert!(
        aged.ttl().is_some_and(|t| t <= 10),
        "incoming Age counts: {aged:?}"
    );
    assert!(aged.age().is_some_and(|a| a >= 50), "{aged:?}");
    assert_eq!(origin.hits("/silent") + origin.hits("/aged"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_max_age_expiry_refetches_from_origin() {
    let origin = Origin::new()
        .handler("/exp", |r| cc(&format!("v{}", r.n), "max-age=1"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "stale_while_revalidate", r#""0s""#)
        .site("site.test", &origin)
        .start()
        .await;

    assert_eq!(outpost.get("site.test", "/exp").await.text(), "v1");
    let hit = outpost.get("site.test", "/exp").await;
    assert!(hit.is_hit() && hit.text() == "v1", "{hit:?}");
    tokio::time::sleep(ms(1500)).await;
    let expired = outpost.get("site.test", "/exp").await;
    assert_eq!(expired.text(), "v2", "{expired:?}");
    assert!(!expired.is_hit(), "{expired:?}");
    assert_eq!(origin.hits("/exp"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_unstorable_responses_are_not_stored() {
    let origin = Origin::new()
        .route("/no-store", cc("a", "no-store"))
        .route("/private", cc("b", "private, max-age=60"))
        .route("/cookie", cc("c", "max-age=60").header("set-cookie", "s=1"))
        .route("/auth", cc("d", "max-age=60"))
        .route("/vary-star", cc("e", "max-age=60").header("vary", "*"))
        // The explicit exceptions are stored.
        .route(
            "/cookie-public",
            cc("f", "public, max-age=60").header("set-cookie", "s=1"),
        )
        .route("/auth-smaxage", cc("g", "s-maxage=60"))
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;
    let auth = [("authorization", "Bearer secret")];

    for path in ["/no-store", "/private", "/cookie", "/auth", "/vary-star"] {
        let headers: &[(&str, &str)] = if path == "/auth" { &auth } else { &[] };
        for round in 0..2 {
            let r = outpost.request("GET", "site.test", path, headers).await;
            assert_eq!(r.status, 200, "{path}: {r:?}");
            let cs = r.cache_status();
            assert!(
                !r.is_hit() && !cs.contains("stored"),
                "{path} round {round}: {r:?}"
            );
        }
        assert_eq!(origin.hits(path), 2, "{path} was served from cache");
    }
    for path in ["/cookie-public", "/auth-smaxage"] {
        let headers: &[(&str, &str)] = if path == "/auth-smaxage" { &auth } else { &[] };
        outpost.request("GET", "site.test", path, headers).await;
        let r = outpost.request("GET", "site.test", path, headers).await;
        assert!(r.is_hit(), "{path} should be stored: {r:?}");
        assert_eq!(origin.hits(path), 1, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_cdn_cache_control_wins_and_is_forwarded_unless_configured_off() {
    let origin = Origin::new()
        .route(
            "/cdn",
            cc("cdn", "no-store").header("cdn-cache-control", "max-age=60"),
        )
        .start()
        .await;
    // RFC 9213 §3: forwarded downstream by default, for CDNs further down.
    let outpost = Outpost::builder().site("site.test", &origin).start().await;
    let first = outpost.get("site.test", "/cdn").await;
    assert_eq!(
        first.header("cdn-cache-control").as_deref(),
        Some("max-age=60"),
        "{first:?}"
    );
    assert_eq!(first.header("cache-control").as_deref(), Some("no-store"));
    let second = outpost.get("site.test", "/cdn").await;
    assert!(second.is_hit(), "{second:?}");
    assert_eq!(
        second.header("cdn-cache-control").as_deref(),
        Some("max-age=60"),
        "{second:?}"
    );
    assert_eq!(origin.hits("/cdn"), 1);

    // forward_cdn_cache_control = false strips it, on misses and hits alike.
    let stripping = Outpost::builder()
        .set("cache", "forward_cdn_cache_control", "false")
        .site("site.test", &origin)
        .start()
        .await;
    let miss = stripping.get("site.test", "/cdn").await;
    assert!(miss.header("cdn-cache-control").is_none(), "{miss:?}");
    let hit = stripping.get("site.test", "/cdn").await;
    assert!(
        hit.is_hit(),
        "CDN-Cache-Control still governs storage: {hit:?}"
    );
    assert!(hit.header("cdn-cache-control").is_none(), "{hit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_vary_variants_are_stored_separately() {
    let origin = Origin::new()
        .handler("/v", |r| {
            let lang = r.header("accept-language").unwrap_or_default();
            cc(&format!("lang={lang}"), "max-age=60").header("vary", "Accept-Language")
        })
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;
    let outpost = &outpost;
    let get = |lang: &'static str| async move {
        outpost
            .request("GET", "site.test", "/v", &[("accept-language", lang)])
            .await
    };

    let en = get("en").await;
    assert_eq!(en.text(), "lang=en");
    let fr = get("fr").await;
    assert_eq!(fr.text(), "lang=fr");
    assert!(fr.cache_status().contains("fwd=vary-miss"), "{fr:?}");
    let en2 = get("en").await;
    assert!(en2.is_hit() && en2.text() == "lang=en", "{en2:?}");
    let fr2 = get("fr").await;
    assert!(fr2.is_hit() && fr2.text() == "lang=fr", "{fr2:?}");
    assert_eq!(origin.hits("/v"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_accept_encoding_variants_are_normalised() {
    let origin = Origin::new()
        .route(
            "/ae",
            cc("plain text", "max-age=60").header("vary", "Accept-Encoding"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    for ae in [
        "gzip, deflate, br",
        "br, gzip, deflate",
        "br;q=1.0, gzip;q=0.8, deflate",
        "gzip,deflate,br",
    ] {
        let r = outpost
            .request("GET", "site.test", "/ae", &[("accept-encoding", ae)])
            .await;
        assert_eq!(r.status, 200, "{ae}: {r:?}");
    }
    assert_eq!(
        origin.hits("/ae"),
        1,
        "equivalent Accept-Encoding values made separate variants"
    );

    let identity = outpost.get("site.test", "/ae").await;
    assert_eq!(identity.text(), "plain text");
    assert!(
        identity.header("content-encoding").is_none(),
        "{identity:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_ignored_query_params_share_one_entry() {
    let origin = Origin::new().handler("/q", versioned).start().await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let a = outpost.get("site.test", "/q?id=1&utm_source=mail").await;
    let b = outpost
        .get("site.test", "/q?id=1&utm_source=web&fbclid=x")
        .await;
    assert_eq!((a.text().as_str(), b.text().as_str()), ("v1", "v1"));
    assert!(b.is_hit(), "{b:?}");
    let other = outpost.get("site.test", "/q?id=2").await;
    assert_eq!(other.text(), "v2", "different kept param, different key");
    assert_eq!(origin.hits("/q"), 2);
    let first = &origin.requests()[0];
    assert!(
        first
            .query
            .as_deref()
            .is_some_and(|q| q.contains("utm_source=mail")),
        "the request itself keeps its query: {:?}",
        first.query
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_origin_304_revalidation_updates_stored_headers() {
    let origin = Origin::new()
        .handler("/etag", |r| {
            if r.header("if-none-match").as_deref() == Some("\"v1\"") {
                Reply::not_modified()
                    .header("etag", "\"v1\"")
                    .header("cache-control", "max-age=60")
                    .header("x-version", "2")
            } else {
                cc("body", "no-cache")
                    .header("etag", "\"v1\"")
                    .header("x-version", "1")
            }
        })
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let first = outpost.get("site.test", "/etag").await;
    assert_eq!(first.header("x-version").as_deref(), Some("1"), "{first:?}");
    // no-cache: stored, but revalidated before use.
    let reval = outpost.get("site.test", "/etag").await;
    assert_eq!(
        (reval.status, reval.text().as_str()),
        (200, "body"),
        "{reval:?}"
    );
    assert_eq!(reval.header("x-version").as_deref(), Some("2"), "{reval:?}");
    let cs = reval.cache_status();
    assert!(
        cs.contains("fwd=stale") && cs.contains("fwd-status=304"),
        "{reval:?}"
    );
    let seen = origin.last("/etag").expect("revalidation request");
    assert_eq!(seen.header("if-none-match").as_deref(), Some("\"v1\""));

    let hit = outpost.get("site.test", "/etag").await;
    assert!(hit.is_hit(), "now fresh for 60 s: {hit:?}");
    assert_eq!(hit.header("x-version").as_deref(), Some("2"), "{hit:?}");
    assert_eq!(hit.text(), "body");
    assert_eq!(origin.hits("/etag"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_client_conditional_is_answered_304_from_cache() {
    let origin = Origin::new()
        .route("/inm", cc("tagged", "max-age=60").header("etag", "\"abc\""))
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    outpost.get("site.test", "/inm").await;
    let r = outpost
        .request("GET", "site.test", "/inm", &[("if-none-match", "\"abc\"")])
        .await;
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());
    assert!(r.age().is_some(), "304 from cache carries Age: {r:?}");
    let other = outpost
        .request("GET", "site.test", "/inm", &[("if-none-match", "\"zzz\"")])
        .await;
    assert_eq!((other.status, other.text().as_str()), (200, "tagged"));
    assert_eq!(origin.hits("/inm"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_only_if_cached_miss_returns_504() {
    let origin = Origin::new().handler("/oic", versioned).start().await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;
    let oic = [("cache-control", "only-if-cached")];

    let r = outpost.request("GET", "site.test", "/oic", &oic).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(origin.hits("/oic"), 0);

    outpost.get("site.test", "/oic").await;
    let r = outpost.request("GET", "site.test", "/oic", &oic).await;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"), "{r:?}");
    assert_eq!(origin.hits("/oic"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_client_no_cache_forces_a_fetch() {
    let origin = Origin::new().handler("/force", versioned).start().await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    outpost.get("site.test", "/force").await;
    let forced = outpost
        .request(
            "GET",
            "site.test",
            "/force",
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(forced.text(), "v2", "{forced:?}");
    assert!(forced.cache_status().contains("fwd=request"), "{forced:?}");
    let hit = outpost.get("site.test", "/force").await;
    assert!(
        hit.is_hit() && hit.text() == "v2",
        "the forced fetch is stored: {hit:?}"
    );
    assert_eq!(origin.hits("/force"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let origin = Origin::new()
        .handler("/swr", |r| {
            if r.n == 1 {
                cc("v1", "max-age=1, stale-while-revalidate=30")
            } else {
                cc(&format!("v{}", r.n), "max-age=5, stale-while-revalidate=30").delay(ms(800))
            }
        })
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    outpost.get("site.test", "/swr").await;
    tokio::time::sleep(ms(1500)).await;
    let stale = futures::future::join_all((0..5).map(|_| outpost.get("site.test", "/swr"))).await;
    for r in &stale {
        assert_eq!((r.status, r.text().as_str()), (200, "v1"), "{r:?}");
        assert!(
            r.elapsed < ms(500),
            "stale answer waited for the origin: {r:?}"
        );
    }
    assert!(
        stale
            .iter()
            .any(|r| r.cache_status().contains("detail=stale-while-revalidate")),
        "{stale:?}"
    );
    let refreshed = eventually(Duration::from_secs(3), || async {
        origin.hits("/swr") >= 2
    })
    .await;
    assert!(refreshed, "no background refresh");
    tokio::time::sleep(ms(1000)).await;
    assert_eq!(origin.hits("/swr"), 2, "exactly one background refresh");
    let fresh = outpost.get("site.test", "/swr").await;
    assert!(fresh.is_hit() && fresh.text() == "v2", "{fresh:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stale_if_error_serves_stale_on_500_timeout_and_down_origin() {
    let failing = Origin::named("failing")
        .handler("/sie", |r| {
            if r.n == 1 {
                cc("v1", "max-age=1, stale-if-error=60")
            } else {
                Reply::status(500, "boom")
            }
        })
        .start()
        .await;
    let dying = Origin::named("dying")
        .route("/sie", cc("v1", "max-age=1, stale-if-error=60"))
        .start()
        .await;
    let slow = Origin::named("slow")
        .handler("/sie", |r| {
            let reply = cc("v1", "max-age=1, stale-if-error=60");
            if r.n == 1 {
                reply
            } else {
                reply.delay(ms(3000))
            }
        })
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "stale_while_revalidate", r#""0s""#)
        .site("failing.test", &failing)
        .site("dying.test", &dying)
        .origin(
            OriginSpec::new("slow")
                .server(&slow)
                .read_timeout("400ms")
                .retries(0),
        )
        .route("slow.test", "/", "slow")
        .start()
        .await;

    let hosts = ["failing.test", "dying.test", "slow.test"];
    for host in hosts {
        assert_eq!(outpost.get(host, "/sie").await.text(), "v1");
    }
    dying.stop().await;
    tokio::time::sleep(ms(1500)).await;
    for host in hosts {
        // New connections: connection reuse after a stale answer has its own test below.
        let r = outpost.get_fresh(host, "/sie").await;
        assert_eq!((r.status, r.text().as_str()), (200, "v1"), "{host}: {r:?}");
        assert!(
            r.cache_status().contains("detail=stale-if-error"),
            "{host}: {r:?}"
        );
    }
    assert_eq!(failing.hits("/sie"), 2, "the origin was asked first");
    assert_eq!(slow.hits("/sie"), 2, "the origin was asked first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stale_if_error_answer_keeps_its_keep_alive_promise() {
    let dying = Origin::new()
        .route("/sie", cc("v1", "max-age=1, stale-if-error=60"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "stale_while_revalidate", r#""0s""#)
        .site("site.test", &dying)
        .start()
        .await;
    outpost.get("site.test", "/sie").await;
    dying.stop().await;
    tokio::time::sleep(ms(1500)).await;

    let req = b"GET /sie HTTP/1.1\r\nHost: site.test\r\n\r\n";
    let (first, second) = outpost.raw_twice(req, req).await;
    assert_eq!(raw_status(&first), 200, "{first}");
    let closing = raw_header(&first, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
    if !closing {
        assert_eq!(
            raw_status(&second),
            200,
            "the stale answer did not say `Connection: close`, yet the connection was closed:\n{first}\n---\n{second:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_objects_above_max_object_stream_through_unstored() {
    let big = "b".repeat(256 * 1024);
    let origin = Origin::new()
        .route("/huge", cc(&big, "max-age=60"))
        .route("/fits", cc("small", "max-age=60"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "max_object", r#""64KiB""#)
        .site("site.test", &origin)
        .start()
        .await;

    for _ in 0..2 {
        let r = outpost.get("site.test", "/huge").await;
        assert_eq!(r.body.len(), big.len(), "{r:?}");
        assert!(!r.is_hit(), "{r:?}");
        outpost.get("site.test", "/fits").await;
    }
    assert_eq!(
        origin.hits("/huge"),
        2,
        "an object above max_object was stored"
    );
    assert_eq!(origin.hits("/fits"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_chunked_body_above_max_object_reaches_every_client_whole() {
    // No Content-Length: the size is only known while streaming. The client fed from the fill
    // (and any waiter) must still get every byte; the object is just not stored.
    let origin = Origin::new()
        .route(
            "/chunked",
            Reply::chunked(64 * 1024, 48, ms(0)).header("cache-control", "max-age=60"),
        )
        .route(
            "/slow-chunked",
            Reply::chunked(64 * 1024, 24, ms(20)).header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "max_object", r#""1MiB""#)
        .site("site.test", &origin)
        .start()
        .await;

    for _ in 0..3 {
        let r = outpost.get("site.test", "/chunked").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body.len(),
            48 * 64 * 1024,
            "truncated: {:?}",
            r.header("cache-status")
        );
        assert!(r.body.iter().all(|b| *b == b'x'));
        assert!(!r.is_hit(), "{r:?}");
    }
    assert_eq!(origin.hits("/chunked"), 3);

    let replies =
        futures::future::join_all((0..3).map(|_| outpost.get("site.test", "/slow-chunked"))).await;
    for r in &replies {
        assert_eq!(
            (r.status, r.body.len()),
            (200, 24 * 64 * 1024),
            "{:?}",
            r.header("cache-status")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_must_revalidate_forbids_serving_stale() {
    let failing = Origin::named("failing")
        .handler("/mr", |r| {
            if r.n == 1 {
                cc(
                    "v1",
                    "max-age=1, must-revalidate, stale-if-error=60, stale-while-revalidate=60",
                )
            } else {
                Reply::status(500, "boom")
            }
        })
        .start()
        .await;
    let dying = Origin::named("dying")
        .route(
            "/mr",
            cc("v1", "max-age=1, must-revalidate, stale-if-error=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder()
        .site("failing.test", &failing)
        .site("dying.test", &dying)
        .start()
        .await;

    for host in ["failing.test", "dying.test"] {
        assert_eq!(outpost.get(host, "/mr").await.text(), "v1");
    }
    dying.stop().await;
    tokio::time::sleep(ms(1500)).await;
    let r = outpost.get("failing.test", "/mr").await;
    assert_eq!(r.status, 500, "the origin's error, not stale: {r:?}");
    let r = outpost.get("dying.test", "/mr").await;
    assert!(matches!(r.status, 502 | 504), "an error, not stale: {r:?}");
    assert_ne!(r.text(), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_unsafe_method_invalidates_url() {
    let origin = Origin::new()
        .handler("/p", |r| {
            if r.method == "GET" {
                cc(&format!("get{}", r.n), "max-age=60")
            } else {
                Reply::ok("posted")
            }
        })
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    assert_eq!(outpost.get("site.test", "/p").await.text(), "get1");
    assert!(outpost.get("site.test", "/p").await.is_hit());
    let post = outpost
        .request_with_body("POST", "site.test", "/p", &[], "x=1")
        .await;
    assert_eq!((post.status, post.text().as_str()), (200, "posted"));
    assert!(post.cache_status().contains("fwd=method"), "{post:?}");
    let after = outpost.get("site.test", "/p").await;
    assert_eq!(after.text(), "get3", "POST must invalidate: {after:?}");
    let gets = origin
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(gets, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_range_and_head_are_served_from_cache() {
    let body: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let origin = Origin::new()
        .route(
            "/range",
            cc(&body, "max-age=60").header("content-type", "application/octet-stream"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    assert_eq!(outpost.get("site.test", "/range").await.body.len(), 1000);
    let r = outpost
        .request("GET", "site.test", "/range", &[("range", "bytes=10-19")])
        .await;
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 10-19/1000")
    );
    assert_eq!(r.text(), body[10..20]);
    let tail = outpost
        .request("GET", "site.test", "/range", &[("range", "bytes=-5")])
        .await;
    assert_eq!(tail.status, 206, "{tail:?}");
    assert_eq!(tail.text(), body[995..]);

    let head = outpost.request("HEAD", "site.test", "/range", &[]).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty());
    assert!(head.is_hit(), "{head:?}");
    assert_eq!(
        origin.hits("/range"),
        1,
        "Range and HEAD went to the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_route_disabled_bypasses_and_never_stores() {
    let origin = Origin::new().handler("/nc", versioned).start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("app").server(&origin))
        .route_uncached("*", "/", "app")
        .start()
        .await;

    for n in 1..=2 {
        let r = outpost.get("site.test", "/nc").await;
        assert_eq!(r.text(), format!("v{n}"));
        assert!(r.cache_status().contains("fwd=bypass"), "{r:?}");
    }
    assert_eq!(origin.hits("/nc"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_tag_headers_are_stripped_from_client_responses() {
    let origin = Origin::new()
        .route(
            "/tagged",
            cc("t", "max-age=60")
                .header("surrogate-key", "red blue")
                .header("cache-tag", "x,y"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    for round in 0..2 {
        let r = outpost.get("site.test", "/tagged").await;
        assert_eq!(r.status, 200);
        assert!(r.header("surrogate-key").is_none(), "round {round}: {r:?}");
        assert!(r.header("cache-tag").is_none(), "round {round}: {r:?}");
    }
    assert_eq!(origin.hits("/tagged"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_plain_hits_answer_as_the_full_cache_path_does() {
    // A plain GET/HEAD hit is served by the lean hit path, one with request directives by
    // pingora-cache's state machine: the client must not be able to tell them apart.
    let origin = Origin::new()
        .route(
            "/same",
            cc("same body", "max-age=600")
                .header("etag", "\"v1\"")
                .header("surrogate-key", "t1")
                .header("x-origin", "yes"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("*", &origin).start().await;
    assert_eq!(outpost.get("site.test", "/same").await.status, 200);
    let lean = outpost.get("site.test", "/same").await;
    let full = outpost
        .request(
            "GET",
            "site.test",
            "/same",
            &[("cache-control", "max-stale=1")],
        )
        .await;
    let lean_head = outpost.request("HEAD", "site.test", "/same", &[]).await;
    assert_eq!(origin.hits("/same"), 1, "both were hits");
    assert!(lean.is_hit() && full.is_hit() && lean_head.is_hit());
    assert_eq!(lean.body, full.body);
    assert!(lean_head.body.is_empty());
    let names = |r: &crate::support::Resp| {
        let mut n: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&lean), names(&full));
    assert_eq!(names(&lean_head), names(&full));
    for field in ["etag", "x-origin", "content-length", "via", "cache-control"] {
        assert_eq!(lean.header(field), full.header(field), "{field}");
    }
    assert_eq!(lean.header("surrogate-key"), None, "tags stripped");
    let ttl = |r: &crate::support::Resp| r.cache_status();
    assert!(
        ttl(&lean).starts_with("outpost; hit; ttl="),
        "{}",
        ttl(&lean)
    );
    // Request metrics are recorded just after the response is sent.
    let counted = eventually(Duration::from_secs(2), || async {
        outpost
            .metric(
                "outpost_cache_lookups_total",
                &[("result", "hit"), ("tier", "memory")],
            )
            .await
            == 3.0
    })
    .await;
    assert!(counted, "three memory hits counted");
}
