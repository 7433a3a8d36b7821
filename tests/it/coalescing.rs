//! Request coalescing (interface.md §4 "Coalescing"): concurrent misses for one key make one
//! origin request, waiters get the body as it streams in, and an uncacheable answer releases
//! waiters at once and turns the key into a pass.

use crate::support::{ms, Origin, Outpost, Reply};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalescing_concurrent_cold_misses_reach_origin_once() {
    let body = "0123456789".repeat(1000);
    let origin = Origin::new()
        .route(
            "/cold",
            Reply::ok(body.clone())
                .header("cache-control", "max-age=60")
                .delay(ms(500)),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let replies =
        futures::future::join_all((0..50).map(|_| outpost.get("site.test", "/cold"))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body == body.as_bytes(), "truncated or wrong body: {r:?}");
    }
    assert_eq!(
        origin.hits("/cold"),
        1,
        "coalescing must send exactly one fetch"
    );
    let collapsed = replies
        .iter()
        .filter(|r| r.cache_status().contains("collapsed"))
        .count();
    assert!(
        collapsed >= 1,
        "no waiter says `collapsed`: {:?}",
        replies[0]
    );
    let coalesced = outpost.metric("outpost_cache_coalesced_total", &[]).await;
    assert!(
        coalesced >= 1.0,
        "outpost_cache_coalesced_total = {coalesced}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalescing_waiter_receives_streamed_body_progressively() {
    // 2 MiB in 16 chunks of 128 KiB, one every 150 ms: the origin needs ~2.3 s.
    let origin = Origin::new()
        .route(
            "/big",
            Reply::stream(128 * 1024, 16, ms(150)).header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let leader = outpost.get("site.test", "/big");
    let waiter = async {
        tokio::time::sleep(ms(300)).await;
        let started = Instant::now();
        let mut r = outpost
            .client()
            .get(outpost.url("/big"))
            .header("host", "site.test")
            .send()
            .await
            .expect("waiter request");
        let status = r.status().as_u16();
        let mut first_byte = None;
        let mut len = 0;
        while let Some(chunk) = r.chunk().await.expect("waiter body") {
            if !chunk.is_empty() && first_byte.is_none() {
                first_byte = Some(started.elapsed());
            }
            len += chunk.len();
        }
        (status, first_byte, len, started.elapsed())
    };
    let (leader, (status, first_byte, len, total)) = tokio::join!(leader, waiter);
    assert_eq!(leader.status, 200, "{leader:?}");
    assert_eq!(leader.body.len(), 2 * 1024 * 1024);
    assert_eq!((status, len), (200, 2 * 1024 * 1024));
    let first_byte = first_byte.expect("waiter got bytes");
    assert!(
        first_byte < Duration::from_millis(1000),
        "waiter's first byte after {first_byte:?} (whole body after {total:?}): not streamed"
    );
    assert_eq!(origin.hits("/big"), 1, "the waiter made its own fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalescing_uncacheable_answer_releases_waiters_then_bypasses() {
    let origin = Origin::new()
        .route(
            "/private",
            Reply::ok("mine")
                .header("cache-control", "private")
                .delay(ms(500)),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;

    let started = Instant::now();
    let replies =
        futures::future::join_all((0..10).map(|_| outpost.get("site.test", "/private"))).await;
    let took = started.elapsed();
    assert!(replies
        .iter()
        .all(|r| r.status == 200 && r.text() == "mine"));
    // Serialised waiters would need 10 × 500 ms.
    assert!(
        took < Duration::from_millis(2000),
        "waiters were serialised: {took:?}"
    );
    assert_eq!(
        origin.hits("/private"),
        10,
        "every request goes to the origin"
    );

    let later = outpost.get("site.test", "/private").await;
    assert!(later.cache_status().contains("fwd=bypass"), "{later:?}");
    assert!(later.elapsed < Duration::from_millis(1000), "{later:?}");
    assert_eq!(origin.hits("/private"), 11);
}
