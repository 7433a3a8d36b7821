//! Routing (interface.md §2 `[[route]]`, §3): exact host beats the longest `*.suffix` beats
//! `"*"`, then the longest prefix wins; no match is a 404 answered by outpost itself.

use crate::support::{Origin, OriginSpec, Outpost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_exact_host_beats_suffix_beats_catch_all() {
    let exact = Origin::named("exact").start().await;
    let short = Origin::named("short").start().await;
    let long = Origin::named("long").start().await;
    let any = Origin::named("any").start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("any").server(&any))
        .origin(OriginSpec::new("short").server(&short))
        .origin(OriginSpec::new("long").server(&long))
        .origin(OriginSpec::new("exact").server(&exact))
        // Declared least specific first: order in the file must not matter.
        .route("*", "/", "any")
        .route("*.site.test", "/", "short")
        .route("*.img.site.test", "/", "long")
        .route("www.site.test", "/", "exact")
        .start()
        .await;

    let cases = [
        ("www.site.test", "exact"),
        ("a.site.test", "short"),
        ("x.img.site.test", "long"),
        ("other.test", "any"),
        ("site.test", "any"),
    ];
    for (host, want) in cases {
        let r = outpost.get(host, "/r").await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert_eq!(r.header("x-origin").as_deref(), Some(want), "{host}: {r:?}");
    }
    assert_eq!(exact.hits("/r"), 1);
    assert_eq!(short.hits("/r"), 1);
    assert_eq!(long.hits("/r"), 1);
    assert_eq!(any.hits("/r"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_host_case_and_port_still_match_exact_route() {
    let exact = Origin::named("exact").start().await;
    let any = Origin::named("any").start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("any").server(&any))
        .origin(OriginSpec::new("exact").server(&exact))
        .route("*", "/", "any")
        .route("www.site.test", "/", "exact")
        .start()
        .await;

    for host in ["WWW.Site.Test", "www.site.test:8080"] {
        let r = outpost.get(host, "/c").await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert_eq!(r.header("x-origin").as_deref(), Some("exact"), "{host}");
    }
    assert_eq!(exact.hits("/c"), 2);
    assert_eq!(any.hits_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_longest_prefix_wins() {
    let root = Origin::named("root").start().await;
    let api = Origin::named("api").start().await;
    let v2 = Origin::named("v2").start().await;
    let outpost = Outpost::builder()
        .origin(OriginSpec::new("root").server(&root))
        .origin(OriginSpec::new("api").server(&api))
        .origin(OriginSpec::new("v2").server(&v2))
        .route("*", "/api/v2/", "v2")
        .route("*", "/", "root")
        .route("*", "/api/", "api")
        .start()
        .await;

    let cases = [
        ("/index.html", "root"),
        ("/api/users", "api"),
        ("/api/v2/users", "v2"),
        ("/api/v3/users", "api"),
        ("/apix", "root"),
    ];
    for (path, want) in cases {
        let r = outpost.get("site.test", path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("x-origin").as_deref(), Some(want), "{path}");
    }
    assert_eq!(root.hits("/index.html") + root.hits("/apix"), 2);
    assert_eq!(api.hits("/api/users") + api.hits("/api/v3/users"), 2);
    assert_eq!(v2.hits("/api/v2/users"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_unknown_host_without_catch_all_returns_404_untouched() {
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder().site("known.test", &origin).start().await;

    let r = outpost.get("unknown.test", "/x").await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.cache_status().starts_with("outpost"), "{r:?}");
    assert!(r.cache_status().contains("fwd="), "{r:?}");
    assert!(
        !r.body.is_empty() && r.body.len() < 1024,
        "short body: {r:?}"
    );
    assert_eq!(origin.hits_total(), 0, "the origin must not be contacted");

    let ok = outpost.get("known.test", "/x").await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(origin.hits("/x"), 1);
}
