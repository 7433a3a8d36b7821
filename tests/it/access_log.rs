//! The JSON access log (interface.md §7): one object per request with the documented fields,
//! nulls when no origin was involved, and no secrets.

use crate::support::{eventually, Origin, Outpost};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_json_object_per_request_without_secrets() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .access_log()
        .site("site.test", &origin)
        .start()
        .await;

    let ok = outpost
        .request(
            "GET",
            "site.test",
            "/logged?q=1",
            &[
                ("authorization", "Bearer s3cret-value"),
                ("cookie", "session=c00kie-value"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let not_found = outpost.get("unknown.test", "/nope").await;
    assert_eq!(not_found.status, 404);

    let complete = eventually(Duration::from_secs(3), || async {
        outpost.access_log().lines().count() >= 2
    })
    .await;
    let log = outpost.access_log();
    assert!(complete, "want 2 lines, got:\n{log}\n{}", outpost.output());
    assert!(
        !log.contains("s3cret-value") && !log.contains("c00kie-value"),
        "{log}"
    );
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.starts_with(path)))
            .unwrap_or_else(|| panic!("no entry for {path}: {log}"))
    };

    let e = find("/logged");
    for key in ["time", "client", "request_id", "cache"] {
        assert!(e[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {e}");
    }
    assert!(
        e["client"]
            .as_str()
            .is_some_and(|c| c.contains("127.0.0.1")),
        "{e}"
    );
    assert_eq!(e["method"], "GET", "{e}");
    assert_eq!(e["host"], "site.test", "{e}");
    assert_eq!(e["status"], 200, "{e}");
    assert!(
        e["bytes"].is_number() && e["duration_ms"].is_number(),
        "{e}"
    );
    assert!(
        e["cache"]
            .as_str()
            .is_some_and(|c| c.starts_with("outpost")),
        "{e}"
    );
    assert_eq!(e["origin"], "site0", "{e}");
    assert_eq!(e["server"], origin.addr().to_string().as_str(), "{e}");
    assert!(e["upstream_ms"].is_number(), "{e}");

    let e = find("/nope");
    assert_eq!(e["status"], 404, "{e}");
    for key in ["origin", "server", "upstream_ms"] {
        assert!(
            e[key].is_null(),
            "{key} should be null without an origin: {e}"
        );
    }
}
