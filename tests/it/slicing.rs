//! Sliced caching (interface.md §4 "Slicing", `[[route]] slice`): a Range-capable origin that
//! counts requests and bytes; every case checks the bytes the client got against the object
//! and what the origin had to send.

use crate::support::{eventually, Origin, OriginSpec, Outpost, Reply, Req};
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Slice size of the test route.
const S: usize = 64 * 1024;
/// A multi-MiB object whose last slice is short.
const LEN: usize = 4 * 1024 * 1024 + 123;
const PATH: &str = "/v.mp4";

/// Deterministic bytes that differ per `seed` and position.
fn object(seed: u8, len: usize) -> Bytes {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The object the origin currently serves (swappable) and its ETag.
type Current = Arc<Mutex<(Bytes, String)>>;

async fn media_origin(current: &Current, extra: &[(&'static str, &'static str)]) -> Origin {
    let cur = current.clone();
    let extra: Vec<(&'static str, &'static str)> = extra.to_vec();
    Origin::new()
        .handler(PATH, move |req: &Req| {
            let (body, etag) = cur.lock().clone();
            let mut r = Reply::ranged(req, &body, &etag).header("cache-control", "max-age=600");
            for (k, v) in &extra {
                r = r.header(k, *v);
            }
            r
        })
        .start()
        .await
}

async fn sliced(origin: &Origin) -> Outpost {
    Outpost::builder()
        .token()
        .origin(OriginSpec::new("media").server(origin))
        .route_sliced("*", "/", "media", "64KiB")
        .start()
        .await
}

async fn range(outpost: &Outpost, spec: &str) -> crate::support::Resp {
    outpost
        .request("GET", "media.test", PATH, &[("range", spec)])
        .await
}

fn setup(seed: u8) -> (Current, Bytes) {
    let body = object(seed, LEN);
    (Arc::new(Mutex::new((body.clone(), "\"v1\"".into()))), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_range_fetches_only_the_slices_it_touches_and_is_then_a_hit() {
    let (current, body) = setup(1);
    let origin = media_origin(&current, &[]).await;
    let outpost = sliced(&origin).await;

    let r = range(&outpost, "bytes=0-1023").await;
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 0-1023/{LEN}")
    );
    assert_eq!(r.body, body.slice(0..1024));
    assert_eq!(r.cache_status(), "outpost; fwd=uri-miss; stored");
    assert!(
        origin.hits(PATH) <= 2,
        "{} origin requests",
        origin.hits(PATH)
    );
    assert!(
        origin.bytes_sent() <= 2 * S as u64,
        "{} bytes",
        origin.bytes_sent()
    );
    let req = origin.last(PATH).unwrap();
    assert_eq!(req.header("range").unwrap(), format!("bytes=0-{}", S - 1));

    let before = origin.hits(PATH);
    let r = range(&outpost, "bytes=100-2000").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body.slice(100..2001));
    assert!(r.is_hit(), "{r:?}");
    assert_eq!(
        origin.hits(PATH),
        before,
        "a second range on the slice is a hit"
    );
    assert!(r.age().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_get_after_a_partial_fill_is_partial_then_a_hit_and_every_byte_is_right() {
    let (current, body) = setup(2);
    let origin = media_origin(&current, &[]).await;
    let outpost = sliced(&origin).await;
    range(&outpost, "bytes=0-1023").await;
    let sent_before = origin.bytes_sent();

    let r = outpost.get("media.test", PATH).await;
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.header("content-length").unwrap(), LEN.to_string());
    assert!(r.body == body, "full body differs from the object");
    assert_eq!(r.cache_status(), "outpost; fwd=partial; stored");
    let slices = LEN.div_ceil(S);
    assert_eq!(
        origin.bytes_sent(),
        LEN as u64,
        "every slice fetched exactly once ({sent_before} before the full GET)"
    );
    assert_eq!(origin.hits(PATH), slices);

    let r = outpost.get("media.test", PATH).await;
    assert!(r.is_hit(), "{r:?}");
    assert!(r.body == body);
    // Ranges across slice boundaries, a suffix and an open end, all from cache.
    for (spec, want) in [
        (format!("bytes={}-{}", S - 10, S + 10), (S - 10)..(S + 11)),
        ("bytes=-100".to_string(), (LEN - 100)..LEN),
        (format!("bytes={}-", LEN - S - 5), (LEN - S - 5)..LEN),
        (format!("bytes=5-{}", 3 * S), 5..(3 * S + 1)),
    ] {
        let r = range(&outpost, &spec).await;
        assert_eq!(r.status, 206, "{spec}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {}-{}/{LEN}", want.start, want.end - 1)
        );
        assert!(r.body == body.slice(want), "{spec}: wrong bytes");
        assert!(r.is_hit(), "{spec}: {}", r.cache_status());
    }
    assert_eq!(origin.hits(PATH), slices, "nothing more from the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_past_the_end_are_416_and_head_comes_from_a_stored_slice() {
    let (current, _) = setup(3);
    let origin = media_origin(&current, &[]).await;
    let outpost = sliced(&origin).await;

    // Cold: the origin's 416 says the length.
    let r = range(&outpost, &format!("bytes={}-", LEN + S * 3)).await;
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.header("content-range").unwrap(), format!("bytes */{LEN}"));

    // Fill slice 0, then HEAD and an out-of-range request from it alone.
    range(&outpost, "bytes=0-10").await;
    let before = origin.hits(PATH);
    let r = range(&outpost, &format!("bytes={LEN}-")).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").unwrap(), format!("bytes */{LEN}"));
    let r = outpost.request("HEAD", "media.test", PATH, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length").unwrap(), LEN.to_string());
    assert_eq!(r.header("etag").unwrap(), "\"v1\"");
    assert_eq!(r.header("accept-ranges").unwrap(), "bytes");
    assert!(r.body.is_empty());
    assert_eq!(
        origin.hits(PATH),
        before,
        "416 and HEAD answered from slice 0"
    );

    // Conditionals: If-None-Match gives 304, an If-Range that no longer holds the whole body.
    let r = outpost
        .request("GET", "media.test", PATH, &[("if-none-match", "\"v1\"")])
        .await;
    assert_eq!(r.status, 304);
    let r = outpost
        .request(
            "GET",
            "media.test",
            PATH,
            &[("range", "bytes=0-10"), ("if-range", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_representation_drops_every_slice_and_is_never_spliced() {
    let (current, v1) = setup(4);
    let origin = media_origin(&current, &[]).await;
    let outpost = sliced(&origin).await;
    let r = range(&outpost, "bytes=0-1023").await;
    assert_eq!(r.body, v1.slice(0..1024));

    // The origin now has another object of the same length.
    let v2 = object(5, LEN);
    *current.lock() = (v2.clone(), "\"v2\"".into());
    let r = outpost.get("media.test", PATH).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag").unwrap(), "\"v2\"");
    assert!(r.body == v2, "the full body must be v2 only");
    // Slice 0 of v1 was dropped too: ranges in it now give v2.
    let r = range(&outpost, "bytes=0-1023").await;
    assert!(r.is_hit(), "{r:?}");
    assert_eq!(r.body, v2.slice(0..1024));

    // An origin that ignores If-Match: the slice's own ETag gives the change away.
    let v3 = object(6, LEN);
    *current.lock() = (v3.clone(), "\"v3\"".into());
    outpost
        .purge(r#"{"urls": ["http://media.test/v.mp4"]}"#)
        .await;
    range(&outpost, "bytes=0-10").await;
    let v4 = object(7, LEN);
    let cur = current.clone();
    *cur.lock() = (v4.clone(), "\"v4\"".into());
    origin.set_handler(PATH, move |req: &Req| {
        let (body, etag) = cur.lock().clone();
        let mut plain = req.clone();
        plain.headers.remove("if-match");
        Reply::ranged(&plain, &body, &etag).header("cache-control", "max-age=600")
    });
    let r = range(&outpost, &format!("bytes=0-{}", 2 * S)).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("etag").unwrap(), "\"v4\"");
    assert!(r.body == v4.slice(0..=2 * S), "the range must be v4 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_ignores_range_gets_a_normal_fill() {
    let body = object(8, 300 * 1024);
    let full = body.clone();
    let origin = Origin::new()
        .handler(PATH, move |_| {
            Reply::ok(full.clone())
                .header("etag", "\"whole\"")
                .header("cache-control", "max-age=600")
        })
        .start()
        .await;
    let outpost = sliced(&origin).await;
    let r = range(&outpost, "bytes=0-1023").await;
    assert!(r.status == 206 || r.status == 200, "{r:?}");
    let got = if r.status == 206 {
        r.body.clone()
    } else {
        r.body.slice(0..1024)
    };
    assert_eq!(got, body.slice(0..1024));
    let after_first = origin.hits(PATH);
    assert!(after_first <= 2);
    let r = outpost.get("media.test", PATH).await;
    assert_eq!(r.status, 200);
    assert!(r.body == body);
    assert!(r.is_hit(), "stored by the normal fill: {r:?}");
    let r = range(&outpost, "bytes=1000-1999").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body.slice(1000..2000));
    assert_eq!(origin.hits(PATH), after_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_by_url_and_tag_remove_every_slice() {
    let (current, body) = setup(9);
    let origin = media_origin(&current, &[("surrogate-key", "film-9")]).await;
    let outpost = sliced(&origin).await;
    let r = outpost.get("media.test", PATH).await;
    assert!(r.body == body);
    assert!(
        r.header("surrogate-key").is_none(),
        "tags are not forwarded"
    );
    let slices = LEN.div_ceil(S);
    assert_eq!(origin.hits(PATH), slices);

    // PURGE method on the URL.
    let r = outpost.request("PURGE", "media.test", PATH, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    for (i, spec) in ["bytes=0-10", &format!("bytes={}-", LEN - 10)]
        .iter()
        .enumerate()
    {
        let r = range(&outpost, spec).await;
        assert!(!r.is_hit(), "{spec}: {r:?}");
        assert_eq!(origin.hits(PATH), slices + i + 1, "{spec}: refetched");
    }

    // Purge by tag (the tag came with every slice).
    let before = origin.hits(PATH);
    outpost.purge(r#"{"tags": ["film-9"]}"#).await;
    let r = range(&outpost, "bytes=0-10").await;
    assert!(!r.is_hit(), "{r:?}");
    assert_eq!(origin.hits(PATH), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_slice_make_one_origin_request() {
    let (current, body) = setup(10);
    let cur = current.clone();
    let origin = Origin::new()
        .handler(PATH, move |req: &Req| {
            let (b, etag) = cur.lock().clone();
            Reply::ranged(req, &b, &etag)
                .header("cache-control", "max-age=600")
                .delay(Duration::from_millis(300))
        })
        .start()
        .await;
    let outpost = sliced(&origin).await;
    let replies = futures::future::join_all((0..10).map(|i| {
        let spec = format!("bytes={}-{}", i * 100, i * 100 + 99);
        let o = &outpost;
        async move { (i, range(o, &spec).await) }
    }))
    .await;
    for (i, r) in replies {
        assert_eq!(r.status, 206);
        assert_eq!(r.body, body.slice(i * 100..i * 100 + 100));
    }
    assert_eq!(origin.hits(PATH), 1, "one origin request for slice 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_survive_a_restart_with_the_disk_tier() {
    let (current, body) = setup(11);
    let origin = media_origin(&current, &[]).await;
    let mut outpost = Outpost::builder()
        .disk("64MiB")
        .origin(OriginSpec::new("media").server(&origin))
        .route_sliced("*", "/", "media", "64KiB")
        .start()
        .await;
    let r = range(&outpost, &format!("bytes={}-{}", S / 2, 3 * S - 1)).await;
    assert!(r.body == body.slice(S / 2..3 * S));
    let fetched = origin.hits(PATH);
    assert_eq!(fetched, 3, "slices 0, 1 and 2");
    // Slices are stored after their bytes went out: wait until the disk tier has all three
    // (a loaded machine may still be writing the last one when the client has its answer).
    let written = eventually(Duration::from_secs(5), || async {
        outpost.admin_get("/status").await.json()["cache"]["disk"]["objects"].as_u64() >= Some(3)
    })
    .await;
    assert!(written, "the disk tier never held the three slices");
    outpost.restart(true).await;
    let r = range(&outpost, &format!("bytes={}-{}", S + 7, 2 * S + 7)).await;
    assert_eq!(r.status, 206);
    assert!(r.body == body.slice(S + 7..=2 * S + 7));
    assert!(r.is_hit(), "{r:?}\n{}", outpost.output());
    assert_eq!(origin.hits(PATH), fetched, "slices 1 and 2 came from disk");
    // A range reaching past the stored slices: partly from disk, partly from the origin.
    let r = range(&outpost, &format!("bytes={}-{}", 2 * S, 4 * S - 1)).await;
    assert!(r.body == body.slice(2 * S..4 * S));
    assert_eq!(r.cache_status(), "outpost; fwd=partial; stored");
    assert_eq!(origin.hits(PATH), fetched + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_found_after_the_header_cuts_the_response() {
    let len = 4 * S;
    let v1 = object(12, len);
    let current: Current = Arc::new(Mutex::new((v1.clone(), "\"v1\"".into())));
    let cur = current.clone();
    // Slices after the first come slowly, so the object can change in between.
    let origin = Origin::new()
        .handler(PATH, move |req: &Req| {
            let (b, etag) = cur.lock().clone();
            let late = !req
                .header("range")
                .is_some_and(|r| r.starts_with("bytes=0-"));
            let r = Reply::ranged(req, &b, &etag).header("cache-control", "max-age=600");
            if late {
                r.delay(Duration::from_millis(300))
            } else {
                r
            }
        })
        .start()
        .await;
    let outpost = sliced(&origin).await;
    let url = outpost.url(PATH);
    let client = outpost.client().clone();
    let get = tokio::spawn(async move {
        let r = client.get(url).header("host", "media.test").send().await?;
        r.bytes().await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v2 = object(13, len);
    *current.lock() = (v2.clone(), "\"v2\"".into());
    match get.await.unwrap() {
        Err(_) => {}
        // Only when the whole body was of one version (a very slow start).
        Ok(b) => assert!(b == v1 || b == v2, "a complete body must be of one version"),
    }
    // Every slice of v1 is gone: the next full GET is v2 throughout.
    let r = outpost.get("media.test", PATH).await;
    assert!(r.body == v2, "after the cut: v2 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_416_come_from_any_stored_slice() {
    let (current, body) = setup(14);
    let origin = media_origin(&current, &[]).await;
    let outpost = sliced(&origin).await;
    let r = range(&outpost, &format!("bytes={}-{}", 5 * S, 5 * S + 10)).await;
    assert_eq!(r.body, body.slice(5 * S..=5 * S + 10));
    assert_eq!(origin.hits(PATH), 1, "slice 5 only");

    let r = outpost.request("HEAD", "media.test", PATH, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length").unwrap(), LEN.to_string());
    assert!(r.is_hit(), "{r:?}");
    let r = range(&outpost, &format!("bytes={}-", LEN + 5)).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").unwrap(), format!("bytes */{LEN}"));
    let r = range(&outpost, "bytes=-10").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body.slice(LEN - 10..));
    assert_eq!(
        origin.hits(PATH),
        2,
        "HEAD and 416 from slice 5, the suffix fetched its slice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_without_a_strong_validator_and_errors_take_the_normal_path() {
    let body = object(15, 200 * 1024);
    let full = body.clone();
    // 206 with only a weak ETag: slices cannot be proven to be of one representation.
    let origin = Origin::new()
        .handler(PATH, move |req: &Req| {
            let mut plain = req.clone();
            plain.headers.remove("if-match");
            let mut r = Reply::ranged(&plain, &full, "W/\"weak\"");
            r = r.header("cache-control", "max-age=600");
            r
        })
        .route("/missing.mp4", Reply::status(404, "no such file"))
        .start()
        .await;
    let outpost = sliced(&origin).await;
    let r = range(&outpost, "bytes=0-99").await;
    assert!(r.status == 200 || r.status == 206, "{r:?}");
    let r = outpost.get("media.test", PATH).await;
    assert!(r.body == body);
    assert!(r.is_hit(), "stored whole by the normal path: {r:?}");

    let r = outpost
        .request(
            "GET",
            "media.test",
            "/missing.mp4",
            &[("range", "bytes=0-9")],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.text(), "no such file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_slice_is_revalidated_on_its_own() {
    let (current, body) = setup(16);
    let cur = current.clone();
    let origin = Origin::new()
        .handler(PATH, move |req: &Req| {
            let (b, etag) = cur.lock().clone();
            Reply::ranged(req, &b, &etag).header("cache-control", "max-age=3")
        })
        .start()
        .await;
    let outpost = sliced(&origin).await;
    let r = range(&outpost, "bytes=0-1023").await;
    assert_eq!(r.body, body.slice(0..1024));
    let sent = origin.bytes_sent();
    tokio::time::sleep(Duration::from_millis(3600)).await;

    let r = range(&outpost, "bytes=10-19").await;
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, body.slice(10..20));
    assert_eq!(
        r.cache_status(),
        "outpost; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(origin.hits(PATH), 2);
    let req = origin.last(PATH).unwrap();
    assert_eq!(req.header("if-none-match").as_deref(), Some("\"v1\""));
    assert_eq!(origin.bytes_sent(), sent, "a 304, no body");
    let r = range(&outpost, "bytes=20-29").await;
    assert!(r.is_hit(), "refreshed by the 304: {r:?}");
    assert_eq!(origin.hits(PATH), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_is_a_502_on_a_slice_route() {
    let dead = crate::support::dead_addr().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("media").server_addr(dead, 1).retries(0))
        .route_sliced("*", "/", "media", "64KiB")
        .start()
        .await;
    let r = range(&outpost, "bytes=0-10").await;
    crate::support::assert_proxy_error(&r, 502);
    assert!(r.cache_status().contains("fwd=uri-miss"), "{r:?}");
}
