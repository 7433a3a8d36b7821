//! Response compression (interface.md §2 `[compression]`): listed types above `min_size`
//! are compressed in the client's best algorithm by the configured preference, and the
//! compressed answers are served from cache.

use crate::support::{Origin, Outpost, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_follows_accept_encoding_type_and_min_size() {
    let text = "outpost compresses text. ".repeat(400);
    let origin = Origin::new()
        .route(
            "/big.txt",
            Reply::ok(text.clone()).header("cache-control", "max-age=60"),
        )
        .route(
            "/small.txt",
            Reply::ok("tiny").header("cache-control", "max-age=60"),
        )
        .route(
            "/img.png",
            Reply::ok(vec![7u8; 8192])
                .header("content-type", "image/png")
                .header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder().site("site.test", &origin).start().await;
    let get = |path: &'static str, ae: &'static str| {
        let outpost = &outpost;
        async move {
            let headers: &[(&str, &str)] = if ae.is_empty() {
                &[]
            } else {
                &[("accept-encoding", ae)]
            };
            outpost.request("GET", "site.test", path, headers).await
        }
    };

    let plain = get("/big.txt", "").await;
    assert!(plain.header("content-encoding").is_none(), "{plain:?}");
    assert_eq!(plain.text(), text);

    let gzip = get("/big.txt", "gzip").await;
    assert_eq!(
        gzip.header("content-encoding").as_deref(),
        Some("gzip"),
        "{gzip:?}"
    );
    assert!(
        gzip.body.len() < text.len() / 4,
        "{} bytes",
        gzip.body.len()
    );
    assert!(
        gzip.header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
        "{gzip:?}"
    );

    let br = get("/big.txt", "gzip, br").await;
    assert_eq!(
        br.header("content-encoding").as_deref(),
        Some("br"),
        "{br:?}"
    );
    // Compressed answers are cached too (whether per encoding or compressed on the way out).
    let fetched = origin.hits("/big.txt");
    for ae in ["gzip", "br, gzip", "gzip, deflate, br", ""] {
        let again = get("/big.txt", ae).await;
        assert!(again.is_hit(), "Accept-Encoding {ae:?}: {again:?}");
    }
    assert_eq!(
        origin.hits("/big.txt"),
        fetched,
        "repeat encodings refetched"
    );

    let small = get("/small.txt", "gzip").await;
    assert!(
        small.header("content-encoding").is_none(),
        "below min_size: {small:?}"
    );
    let png = get("/img.png", "gzip").await;
    assert!(
        png.header("content-encoding").is_none(),
        "type not listed: {png:?}"
    );
}
