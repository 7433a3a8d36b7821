//! The disk tier (interface.md §4 "Tiers", §5 purge): objects survive clean and unclean
//! restarts, and a purge holds across a restart.

use crate::support::{ms, Origin, Outpost, Reply, Req};

fn versioned(req: &Req) -> Reply {
    Reply::ok(format!("{} v{}", req.path, req.n)).header("cache-control", "max-age=600")
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
async fn disk_tier_survives_restarts_and_keeps_purges() {
    let origin = Origin::new()
        .handler("/d1", versioned)
        .handler("/d2", versioned)
        .start()
        .await;
    let mut outpost = Outpost::builder()
        .token()
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;

    assert_eq!(outpost.get("site.test", "/d1").await.text(), "/d1 v1");
    // Slack for a write-behind disk tier; the contract has no explicit flush.
    tokio::time::sleep(ms(1000)).await;
    outpost.restart(false).await;
    assert_hit(&outpost, &origin, "/d1", "after SIGKILL").await;

    assert_eq!(outpost.get("site.test", "/d2").await.text(), "/d2 v1");
    outpost.restart(true).await;
    assert_hit(&outpost, &origin, "/d1", "after SIGTERM").await;
    assert_hit(&outpost, &origin, "/d2", "after SIGTERM").await;

    outpost.purge(r#"{"urls": ["http://site.test/d1"]}"#).await;
    outpost.restart(false).await;
    let r = outpost.get("site.test", "/d1").await;
    assert_eq!(
        r.text(),
        "/d1 v2",
        "purged object came back after a restart: {r:?}"
    );
    assert_hit(&outpost, &origin, "/d2", "after purge of /d1 and SIGKILL").await;
}
