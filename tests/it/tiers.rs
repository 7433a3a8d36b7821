//! The disk tier (interface.md §4 "Tiers", §5 purge): objects survive clean and unclean
//! restarts, and a purge holds across a restart.

use crate::support::{eventually, ms, Origin, Outpost, Reply, Req};
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_tier_stays_within_its_byte_bound() {
    let origin = Origin::new()
        .handler("/obj", |r| {
            Reply::ok(vec![b'm'; 100 * 1024])
                .header("cache-control", "max-age=600")
                .header("x-n", r.n.to_string())
        })
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "memory", r#""1MiB""#)
        .site("*", &origin)
        .start()
        .await;

    // 30 distinct objects of 100 KiB: three times the memory bound.
    for i in 0..30 {
        let r = outpost.get("site.test", &format!("/obj?i={i}")).await;
        assert_eq!(r.body.len(), 100 * 1024);
    }
    let bounded = eventually(Duration::from_secs(3), || async {
        let status = outpost.admin_get("/status").await.json();
        status["cache"]["memory"]["bytes"]
            .as_u64()
            .is_some_and(|b| b > 0 && b <= 1024 * 1024)
    })
    .await;
    let status = outpost.admin_get("/status").await.json();
    assert!(bounded, "memory tier over 1MiB: {}", status["cache"]);
    let gauge = outpost
        .metric("outpost_cache_bytes", &[("tier", "memory")])
        .await;
    assert!(
        gauge <= 1024.0 * 1024.0,
        "outpost_cache_bytes{{tier=memory}} = {gauge}"
    );
    // The newest object is still served from memory.
    let newest = outpost.get("site.test", "/obj?i=29").await;
    assert!(newest.is_hit(), "{newest:?}");
    assert_eq!(origin.hits("/obj"), 30);
}
