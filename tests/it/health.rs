//! Active health checks and failover (interface.md §3 "Health", §5 `/readyz`, §6
//! `outpost_origin_up`): a failing server is taken out and put back, and a server dying under
//! load fails no GET.

use crate::support::{eventually, ms, Health, Origin, OriginSpec, Outpost};
use std::time::{Duration, Instant};

async fn origin_up(outpost: &Outpost, server: &Origin) -> f64 {
    let addr = server.addr().to_string();
    outpost
        .metric(
            "outpost_origin_up",
            &[("origin", "app"), ("server", addr.as_str())],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_failing_server_is_ejected_then_returns() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&a)
                .server(&b)
                .health(Health::every("200ms").fails(2).passes(2)),
        )
        .route_uncached("*", "/", "app")
        .start()
        .await;
    let up = eventually(Duration::from_secs(2), || async {
        origin_up(&outpost, &a).await == 1.0
    })
    .await;
    assert!(up, "a starts healthy: {}", outpost.metrics_text().await);

    a.set_health(500);
    // fails × interval + one interval, plus scheduling slack.
    tokio::time::sleep(ms(2 * 200 + 200 + 200)).await;
    let before = a.hits_total();
    for _ in 0..20 {
        let r = outpost.get("site.test", "/h").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(
        a.hits_total(),
        before,
        "ejected server a still got requests"
    );
    assert_eq!(b.hits("/h"), 20);

    let ready = outpost.admin_get("/readyz").await;
    assert_eq!(ready.status, 200, "b is still healthy: {ready:?}");
    let json = ready.json();
    assert_eq!(json["ready"], true, "{json}");
    assert_eq!(json["origins"]["app"]["healthy"], 1, "{json}");
    assert_eq!(json["origins"]["app"]["servers"], 2, "{json}");
    assert_eq!(origin_up(&outpost, &a).await, 0.0);
    assert_eq!(origin_up(&outpost, &b).await, 1.0);

    a.set_health(200);
    let back = eventually(Duration::from_secs(4), || async {
        outpost.get("site.test", "/back").await;
        a.hits("/back") > 0
    })
    .await;
    assert!(back, "a never got traffic again after /health returned 200");
    assert_eq!(origin_up(&outpost, &a).await, 1.0);
    let json = outpost.admin_get("/readyz").await.json();
    assert_eq!(json["origins"]["app"]["healthy"], 2, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_all_servers_down_reports_not_ready() {
    let a = Origin::named("a").start().await;
    let outpost = Outpost::builder()
        .origin(
            OriginSpec::new("app")
                .server(&a)
                .health(Health::every("200ms")),
        )
        .route("*", "/", "app")
        .start()
        .await;
    a.set_health(503);
    let down = eventually(Duration::from_secs(3), || async {
        outpost.admin_get("/readyz").await.status == 503
    })
    .await;
    assert!(down, "/readyz stayed 200 with every server failing /health");
    let json = outpost.admin_get("/readyz").await.json();
    assert_eq!(json["ready"], false, "{json}");
    assert_eq!(json["origins"]["app"]["healthy"], 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_server_stopped_mid_run_fails_no_get() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("app").server(&a).server(&b).retries(1))
        .route_uncached("*", "/", "app")
        .start()
        .await;

    // Three clients hammer for 2 s; a dies after 0.5 s.
    let started = Instant::now();
    let clients = (0..3).map(|_| async {
        let mut statuses = Vec::new();
        while started.elapsed() < Duration::from_secs(2) {
            let r = outpost.get("site.test", "/f").await;
            statuses.push((r.status, r.cache_status()));
        }
        statuses
    });
    let killer = async {
        tokio::time::sleep(ms(500)).await;
        a.stop().await;
        a.hits("/f")
    };
    let (results, a_hits_at_stop) = tokio::join!(futures::future::join_all(clients), killer);
    let all: Vec<_> = results.into_iter().flatten().collect();
    let failed: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed: {failed:?}\n{}",
        failed.len(),
        all.len(),
        outpost.output()
    );
    assert!(a_hits_at_stop > 0, "a got no traffic before it stopped");
    assert_eq!(a.hits("/f"), a_hits_at_stop, "a answered after it stopped?");
    assert!(b.hits("/f") > a_hits_at_stop, "b did not take over");
}
