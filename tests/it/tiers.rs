//! The disk tier (interface.md §4 "Tiers", §5 purge): objects survive clean and unclean
//! restarts, and a purge holds across a restart.

use crate::support::{ms, Origin, Outpost, Reply, Req};

fn versioned(req: &Req) -> Reply {
    Reply::ok(format!("{} v{}", req.path, req.n)).header("cache-control", "max-age=600")
}

async fn disk_site(origin: &Origin) -> Outpost {
    Outpost::builder()
        .token()
        .disk("64MiB")
        .site("*", origin)
        .start()
        .await
}

async fn assert_hit(outpost: &Outpost, origin: &Origin, path: &str, when: &str) {
    let r = outpost.get("site.test", path).await;
    assert!(
        r.is_hit(),
        "{path} not a hit {when}: {r:?}\n{}",
        outpost.output()
    );
    assert_eq!(r.text(), format!("{path} v1"), "{when}");
    assert_eq!(origin.hits(path), 1, "{path} {when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_clean_restart() {
    let origin = Origin::new().handler("/d", versioned).start().await;
    let mut outpost = disk_site(&origin).await;

    assert_eq!(outpost.get("site.test", "/d").await.text(), "/d v1");
    outpost.restart(true).await;
    assert_hit(&outpost, &origin, "/d", "after SIGTERM and restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_unclean_restart() {
    let origin = Origin::new().handler("/d", versioned).start().await;
    let mut outpost = disk_site(&origin).await;

    assert_eq!(outpost.get("site.test", "/d").await.text(), "/d v1");
    // Slack for a write-behind disk tier; the contract has no explicit flush.
    tokio::time::sleep(ms(1000)).await;
    outpost.restart(false).await;
    assert_hit(&outpost, &origin, "/d", "after SIGKILL and restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_purge_holds_across_restart() {
    let origin = Origin::new()
        .handler("/gone", versioned)
        .handler("/kept", versioned)
        .start()
        .await;
    let mut outpost = disk_site(&origin).await;
    for path in ["/gone", "/kept"] {
        outpost.get("site.test", path).await;
    }

    outpost
        .purge(r#"{"urls": ["http://site.test/gone"]}"#)
        .await;
    outpost.restart(true).await;
    let r = outpost.get("site.test", "/gone").await;
    assert_eq!(
        r.text(),
        "/gone v2",
        "purged object came back after a restart: {r:?}"
    );
    assert_hit(&outpost, &origin, "/kept", "after a restart").await;
}
