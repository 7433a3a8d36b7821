//! Purge (interface.md §5 `POST /purge`, PURGE method, `outpost purge` CLI, §6
//! `outpost_purges_total`): every purge is proven with the origin counter: the purged object
//! is a miss next time, unrelated objects stay hits.

use crate::support::{eventually, run_outpost, Origin, OriginSpec, Outpost, Reply, Req, TOKEN};
use std::time::Duration;

/// `max-age=60`, body "<path> v<n>", plus the tags given by the path (see `tagged_origin`).
fn versioned(req: &Req) -> Reply {
    Reply::ok(format!("{} v{}", req.path, req.n)).header("cache-control", "max-age=60")
}

/// Warms `paths` on `host` (each must then be a hit).
async fn warm(outpost: &Outpost, host: &str, paths: &[&str]) {
    for path in paths {
        outpost.get(host, path).await;
        let r = outpost.get(host, path).await;
        assert!(r.is_hit(), "{host}{path} not cached: {r:?}");
    }
}

/// Asserts which of `paths` are now misses (origin asked again) and which stay hits.
async fn assert_purged(
    outpost: &Outpost,
    origin: &Origin,
    host: &str,
    purged: &[&str],
    kept: &[&str],
) {
    for path in purged {
        let before = origin.hits(path);
        let r = outpost.get(host, path).await;
        assert!(!r.is_hit(), "{host}{path} still cached: {r:?}");
        assert_eq!(origin.hits(path), before + 1, "{host}{path}");
    }
    for path in kept {
        let before = origin.hits(path);
        let r = outpost.get(host, path).await;
        assert!(r.is_hit(), "{host}{path} was purged too: {r:?}");
        assert_eq!(origin.hits(path), before, "{host}{path}");
    }
}

async fn purge_site(origin: &Origin) -> Outpost {
    Outpost::builder().token().site("*", origin).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_removes_every_variant() {
    let origin = Origin::new()
        .handler("/a", |r| versioned(r).header("vary", "Accept-Language"))
        .handler("/b", versioned)
        .start()
        .await;
    let outpost = purge_site(&origin).await;
    for lang in ["en", "fr"] {
        for _ in 0..2 {
            outpost
                .request("GET", "site.test", "/a", &[("accept-language", lang)])
                .await;
        }
    }
    warm(&outpost, "site.test", &["/b"]).await;
    assert_eq!(origin.hits("/a"), 2);

    let r = outpost.purge(r#"{"urls": ["http://site.test/a"]}"#).await;
    let json = r.json();
    assert!(json["id"].is_string(), "{json}");
    assert!(json["took_ms"].is_number(), "{json}");
    assert!(
        json["purged"].is_null() || json["purged"].as_u64().is_some_and(|n| n >= 1),
        "{json}"
    );

    for lang in ["en", "fr"] {
        let r = outpost
            .request("GET", "site.test", "/a", &[("accept-language", lang)])
            .await;
        assert!(!r.is_hit(), "variant {lang} survived: {r:?}");
    }
    assert_eq!(origin.hits("/a"), 4);
    assert_purged(&outpost, &origin, "site.test", &[], &["/b"]).await;
    assert!(
        outpost
            .metric("outpost_purges_total", &[("kind", "url")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tag_removes_tagged_objects_only() {
    let origin = Origin::new()
        .handler("/t1", |r| versioned(r).header("surrogate-key", "red blue"))
        .handler("/t2", |r| versioned(r).header("cache-tag", "blue,green"))
        .handler("/t3", |r| versioned(r).header("surrogate-key", "green"))
        .start()
        .await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/t1", "/t2", "/t3"]).await;

    outpost.purge(r#"{"tags": ["blue"]}"#).await;
    assert_purged(&outpost, &origin, "site.test", &["/t1", "/t2"], &["/t3"]).await;
    assert!(
        outpost
            .metric("outpost_purges_total", &[("kind", "tag")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_prefix_removes_matching_paths_only() {
    let origin = Origin::new()
        .handler("/img/1", versioned)
        .handler("/img/2", versioned)
        .handler("/css/1", versioned)
        .start()
        .await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/img/1", "/img/2", "/css/1"]).await;

    outpost
        .purge(r#"{"prefixes": ["http://site.test/img/"]}"#)
        .await;
    assert_purged(
        &outpost,
        &origin,
        "site.test",
        &["/img/1", "/img/2"],
        &["/css/1"],
    )
    .await;
    assert!(
        outpost
            .metric("outpost_purges_total", &[("kind", "prefix")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_host_and_all() {
    let a = Origin::named("a").handler("/x", versioned).start().await;
    let b = Origin::named("b").handler("/x", versioned).start().await;
    let outpost = Outpost::builder()
        .token()
        .site("a.test", &a)
        .site("b.test", &b)
        .start()
        .await;
    warm(&outpost, "a.test", &["/x"]).await;
    warm(&outpost, "b.test", &["/x"]).await;

    outpost.purge(r#"{"hosts": ["a.test"]}"#).await;
    assert_purged(&outpost, &a, "a.test", &["/x"], &[]).await;
    assert_purged(&outpost, &b, "b.test", &[], &["/x"]).await;

    warm(&outpost, "a.test", &["/x"]).await;
    outpost.purge(r#"{"all": true}"#).await;
    assert_purged(&outpost, &a, "a.test", &["/x"], &[]).await;
    assert_purged(&outpost, &b, "b.test", &["/x"], &[]).await;
    assert!(
        outpost
            .metric("outpost_purges_total", &[("kind", "host")])
            .await
            >= 1.0
    );
    assert!(
        outpost
            .metric("outpost_purges_total", &[("kind", "all")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_soft_serves_stale_then_refreshes() {
    let origin = Origin::new().handler("/soft", versioned).start().await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/soft"]).await;

    outpost
        .purge(r#"{"urls": ["http://site.test/soft"], "soft": true}"#)
        .await;
    let stale = outpost.get("site.test", "/soft").await;
    assert_eq!(
        stale.text(),
        "/soft v1",
        "soft purge keeps the copy: {stale:?}"
    );
    assert!(
        stale.cache_status().contains("stale-while-revalidate"),
        "{stale:?}"
    );
    // While the refresh is in flight, requests still get the stale copy.
    let refreshed = eventually(Duration::from_secs(3), || async {
        let r = outpost.get("site.test", "/soft").await;
        r.is_hit() && r.text() == "/soft v2"
    })
    .await;
    assert!(
        refreshed,
        "no refreshed hit after a soft purge: {:?}",
        outpost.get("site.test", "/soft").await
    );
    assert_eq!(origin.hits("/soft"), 2, "exactly one refresh");
    assert!(
        outpost
            .metric("outpost_purges_total", &[("soft", "true")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_api_requires_the_bearer_token() {
    let origin = Origin::new().handler("/keep", versioned).start().await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/keep"]).await;

    let body = r#"{"all": true}"#;
    let none = outpost.admin_post("/purge", body, None).await;
    assert_eq!(none.status, 401, "{none:?}");
    let wrong = outpost
        .admin_post("/purge", body, Some("not-the-token"))
        .await;
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert_purged(&outpost, &origin, "site.test", &[], &["/keep"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_api_rejects_bad_requests_with_400() {
    let origin = Origin::new().handler("/keep", versioned).start().await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/keep"]).await;

    for body in [
        "{",
        r#"{"urlz": ["http://site.test/keep"]}"#,
        "{}",
        r#"{"urls": [], "tags": []}"#,
        r#"{"all": "yes"}"#,
    ] {
        let r = outpost.admin_post("/purge", body, Some(TOKEN)).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(!r.body.is_empty(), "400 without a message for {body}");
    }
    assert_purged(&outpost, &origin, "site.test", &[], &["/keep"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_method_on_proxy_from_loopback_purges_url() {
    let origin = Origin::new()
        .handler("/m", versioned)
        .handler("/other", versioned)
        .start()
        .await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/m", "/other"]).await;

    let r = outpost.request("PURGE", "site.test", "/m", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["id"].is_string(), "{r:?}");
    assert_purged(&outpost, &origin, "site.test", &["/m"], &["/other"]).await;
    assert_eq!(
        origin
            .requests()
            .iter()
            .filter(|r| r.method == "PURGE")
            .count(),
        0,
        "PURGE was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_method_outside_purge_allow_is_forbidden() {
    let origin = Origin::new().handler("/m", versioned).start().await;
    let outpost = Outpost::builder()
        .set("cache", "purge_allow", r#"["10.0.0.0/8"]"#)
        .origin(OriginSpec::new("app").server(&origin))
        .route("*", "/", "app")
        .start()
        .await;
    warm(&outpost, "site.test", &["/m"]).await;

    let r = outpost.request("PURGE", "site.test", "/m", &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_purged(&outpost, &origin, "site.test", &[], &["/m"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_cli_by_tag_exits_zero_and_prints_json() {
    let origin = Origin::new()
        .handler("/c1", |r| versioned(r).header("surrogate-key", "cli"))
        .handler("/c2", versioned)
        .start()
        .await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/c1", "/c2"]).await;

    let config = outpost.config_path().to_str().expect("utf-8").to_owned();
    let admin = format!("http://{}", outpost.admin_addr());
    let out = tokio::task::spawn_blocking(move || {
        run_outpost(
            &["purge", "-c", &config, "--admin", &admin, "--tag", "cli"],
            &[("OUTPOST_ADMIN_TOKEN", TOKEN)],
            Duration::from_secs(10),
        )
    })
    .await
    .expect("join");
    assert_eq!(out.code, Some(0), "{}", out.all);
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not the API's JSON ({e}):\n{}", out.all));
    assert!(json["id"].is_string(), "{json}");
    assert_purged(&outpost, &origin, "site.test", &["/c1"], &["/c2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_cli_with_wrong_token_exits_non_zero() {
    let origin = Origin::new().handler("/c", versioned).start().await;
    let outpost = purge_site(&origin).await;
    warm(&outpost, "site.test", &["/c"]).await;

    let config = outpost.config_path().to_str().expect("utf-8").to_owned();
    let admin = format!("http://{}", outpost.admin_addr());
    let out = tokio::task::spawn_blocking(move || {
        run_outpost(
            &["purge", "-c", &config, "--admin", &admin, "--all"],
            &[("OUTPOST_ADMIN_TOKEN", "wrong")],
            Duration::from_secs(10),
        )
    })
    .await
    .expect("join");
    assert_ne!(out.code, Some(0), "{}", out.all);
    assert_purged(&outpost, &origin, "site.test", &[], &["/c"]).await;
}
