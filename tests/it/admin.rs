//! The admin listener (interface.md §5, §6): `/healthz`, `/status` JSON shape, `/metrics`
//! with the contract's metric names.

use crate::support::{eventually, ms, Origin, OriginSpec, Outpost, Reply, TOKEN};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_healthz_answers_ok_without_auth() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().token().site("*", &origin).start().await;
    let r = outpost.admin_get("/healthz").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text().trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_json_has_documented_shape() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("app").server(&a).weighted(&b, 3))
        .route("*", "/", "app")
        .start()
        .await;

    let r = outpost.admin_get("/status").await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = r.json();
    assert!(s["version"].is_string(), "{s}");
    assert!(
        s["config_hash"].as_str().is_some_and(|h| !h.is_empty()),
        "{s}"
    );
    assert!(s["uptime_s"].is_number(), "{s}");
    let origins = s["origins"].as_array().expect("origins array");
    assert_eq!(origins.len(), 1, "{s}");
    assert_eq!(origins[0]["name"], "app");
    let servers = origins[0]["servers"].as_array().expect("servers array");
    assert_eq!(servers.len(), 2, "{s}");
    let b_addr = b.addr().to_string();
    let b_entry = servers
        .iter()
        .find(|x| x["addr"] == b_addr.as_str())
        .unwrap_or_else(|| panic!("server {b_addr} missing: {s}"));
    assert_eq!(b_entry["weight"], 3, "{s}");
    assert_eq!(b_entry["healthy"], true, "{s}");
    for key in ["objects", "bytes", "hits", "misses"] {
        assert!(
            s["cache"]["memory"][key].is_number(),
            "cache.memory.{key}: {s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_metrics_expose_contract_names() {
    let origin = Origin::new()
        .route("/m", Reply::ok("m").header("cache-control", "max-age=60"))
        .start()
        .await;
    let outpost = Outpost::builder().token().site("*", &origin).start().await;
    outpost.get("site.test", "/m").await;
    outpost.get("site.test", "/m").await;
    outpost.get("site.test", "/nothing-cached").await;

    // Request metrics may be recorded just after the response is sent.
    let counted = eventually(Duration::from_secs(2), || async {
        outpost.metric("outpost_requests_total", &[]).await >= 3.0
    })
    .await;
    let r = outpost.admin_get("/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    let text = r.text();
    // A counter may be declared without `_total` in its `# TYPE` line (OpenMetrics).
    let names = [
        "outpost_requests_total",
        "outpost_cache_lookups_total",
        "outpost_cache_objects",
        "outpost_cache_bytes",
        "outpost_cache_coalesced_total",
        "outpost_origin_requests_total",
        "outpost_origin_up",
        "outpost_purges_total",
        "outpost_request_duration_seconds",
        "outpost_origin_duration_seconds",
    ];
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !text.contains(n.trim_end_matches("_total")))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");

    assert!(
        counted,
        "outpost_requests_total < 3:
{text}"
    );
    assert!(
        outpost
            .metric("outpost_origin_requests_total", &[("origin", "site0")])
            .await
            >= 2.0,
        "{text}"
    );
    assert!(
        outpost
            .metric("outpost_request_duration_seconds_count", &[])
            .await
            >= 3.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_swaps_servers_rejects_bad_files_and_rolls_back() {
    let a = Origin::named("a")
        .route("/slow", Reply::ok("slow-a").delay(ms(600)))
        .start()
        .await;
    let b = Origin::named("b").start().await;
    let base = Outpost::builder().token();
    let with = |server: &Origin, route_to: &str| {
        base.clone()
            .origin(OriginSpec::new("app").server(server))
            .route_uncached("*", "/", route_to)
            .config_text()
    };
    let outpost = base
        .clone()
        .origin(OriginSpec::new("app").server(&a))
        .route_uncached("*", "/", "app")
        .start()
        .await;
    let served_by = |path: &'static str| {
        let outpost = &outpost;
        async move {
            let r = outpost.get("site.test", path).await;
            assert_eq!(r.status, 200, "{r:?}");
            r.header("x-origin").unwrap_or_default()
        }
    };
    assert_eq!(served_by("/x").await, "a");
    let hash0 = outpost.admin_get("/status").await.json()["config_hash"].clone();

    // A valid file swaps the server; a request in flight on the old one still completes.
    let in_flight = outpost.get("site.test", "/slow");
    let reload = async {
        tokio::time::sleep(ms(150)).await;
        outpost.write_config(&with(&b, "app"));
        outpost.admin_post("/config/reload", "", Some(TOKEN)).await
    };
    let (slow, reloaded) = tokio::join!(in_flight, reload);
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(
        (slow.status, slow.text().as_str()),
        (200, "slow-a"),
        "{slow:?}"
    );
    assert_eq!(served_by("/x").await, "b");
    let hash1 = outpost.admin_get("/status").await.json()["config_hash"].clone();
    assert_ne!(hash0, hash1, "config_hash did not change");

    // An invalid file is refused with every error, and the running config stays.
    outpost.write_config(&with(&a, "apps"));
    let refused = outpost.admin_post("/config/reload", "", Some(TOKEN)).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(refused.text().contains("route[0].origin"), "{refused:?}");
    assert_eq!(served_by("/x").await, "b");

    // Mutating calls need the token.
    let anonymous = outpost.admin_post("/config/reload", "", None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");

    let back = outpost
        .admin_post("/config/rollback", "", Some(TOKEN))
        .await;
    assert_eq!(back.status, 200, "{back:?}");
    assert_eq!(served_by("/x").await, "a");

    let config = outpost.admin_get("/config").await;
    assert_eq!(config.status, 200, "{config:?}");
    config.json();
    assert!(
        !config.text().contains(TOKEN),
        "the token leaks: {config:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_gauges_are_right_on_the_first_scrape() {
    // No /status before: the first /metrics scrape already counts what is stored.
    let origin = Origin::new()
        .route(
            "/g1",
            Reply::ok("one").header("cache-control", "max-age=60"),
        )
        .route(
            "/g2",
            Reply::ok("two!").header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("*", &origin).start().await;
    outpost.get("site.test", "/g1").await;
    outpost.get("site.test", "/g2").await;
    let stored = eventually(Duration::from_secs(2), || async {
        outpost
            .metric("outpost_cache_objects", &[("tier", "memory")])
            .await
            == 2.0
    })
    .await;
    assert!(stored, "{}", outpost.metrics_text().await);
    assert!(
        outpost
            .metric("outpost_cache_bytes", &[("tier", "memory")])
            .await
            > 0.0
    );
}
