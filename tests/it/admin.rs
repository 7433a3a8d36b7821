//! The admin listener (interface.md §5, §6): `/healthz`, `/status` JSON shape, `/metrics`
//! with the contract's metric names.

use crate::support::{eventually, Origin, OriginSpec, Outpost, Reply};
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
