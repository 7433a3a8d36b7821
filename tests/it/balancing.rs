//! Server selection (interface.md §2 `origin.selection`): round_robin, weighted, consistent,
//! random, least_conn. Routes are `cache = false` so every request reaches a server.

use crate::support::{ms, Origin, OriginSpec, Outpost, Reply};
use std::collections::HashMap;

/// `n` sequential GETs of `path`; returns how many each origin name answered.
async fn spread(outpost: &Outpost, path: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = outpost.get("site.test", path).await;
        assert_eq!(r.status, 200, "{r:?}");
        *seen
            .entry(r.header("x-origin").unwrap_or_default())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_two_servers_split_evenly() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&a)
                .server(&b)
                .selection("round_robin"),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;

    let seen = spread(&outpost, "/rr", 100).await;
    assert_eq!(a.hits("/rr") + b.hits("/rr"), 100, "{seen:?}");
    for o in [&a, &b] {
        let n = o.hits("/rr");
        assert!(
            (40..=60).contains(&n),
            "{} got {n} of 100: {seen:?}",
            o.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_one_to_two_split_follows_weights() {
    let light = Origin::named("light").start().await;
    let heavy = Origin::named("heavy").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .weighted(&light, 1)
                .weighted(&heavy, 2)
                .selection("weighted"),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;

    let seen = spread(&outpost, "/w", 300).await;
    let (l, h) = (light.hits("/w"), heavy.hits("/w"));
    assert_eq!(l + h, 300, "{seen:?}");
    assert!(
        (70..=130).contains(&l),
        "weight 1 got {l} of 300 (want ~100)"
    );
    assert!(
        (170..=230).contains(&h),
        "weight 2 got {h} of 300 (want ~200)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_same_path_sticks_and_survives_server_removal() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let c = Origin::named("c").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&a)
                .server(&b)
                .server(&c)
                .selection("consistent")
                .retries(2),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;

    let paths: Vec<String> = (0..30).map(|i| format!("/k/{i}")).collect();
    let mut owner = HashMap::new();
    for path in &paths {
        for round in 0..3 {
            let r = outpost.get("site.test", path).await;
            assert_eq!(r.status, 200, "{path}: {r:?}");
            let who = r.header("x-origin").unwrap_or_default();
            let first = owner.entry(path.clone()).or_insert_with(|| who.clone());
            assert_eq!(*first, who, "{path} moved on round {round}");
        }
    }
    let used: std::collections::HashSet<_> = owner.values().collect();
    assert!(used.len() >= 2, "30 keys all on one server: {owner:?}");

    c.stop().await;
    for path in &paths {
        let r = outpost.get("site.test", path).await;
        assert_eq!(r.status, 200, "{path} after stopping c: {r:?}");
        let who = r.header("x-origin").unwrap_or_default();
        assert_ne!(who, "c", "{path}");
        if owner[path] != "c" {
            assert_eq!(
                owner[path], who,
                "{path} moved although its server stayed up"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_two_servers_both_get_traffic() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&a)
                .server(&b)
                .selection("random"),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;

    let seen = spread(&outpost, "/rand", 60).await;
    assert_eq!(a.hits("/rand") + b.hits("/rand"), 60);
    assert!(a.hits("/rand") >= 10, "{seen:?}");
    assert!(b.hits("/rand") >= 10, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_conn_slow_server_gets_fewer_requests() {
    let slow = Origin::named("slow")
        .route("/lc", Reply::ok("slow").delay(ms(400)))
        .start()
        .await;
    let fast = Origin::named("fast")
        .route("/lc", Reply::ok("fast"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&slow)
                .server(&fast)
                .selection("least_conn"),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;

    // 6 clients, 8 requests each: the slow server keeps connections busy, so it should be
    // picked far less often than the fast one.
    let workers = (0..6).map(|_| async {
        for _ in 0..8 {
            let r = outpost.get("site.test", "/lc").await;
            assert_eq!(r.status, 200, "{r:?}");
        }
    });
    futures::future::join_all(workers).await;
    let (s, f) = (slow.hits("/lc"), fast.hits("/lc"));
    assert_eq!(s + f, 48);
    assert!(f >= 3 * s, "least_conn: slow got {s}, fast got {f}");
}
