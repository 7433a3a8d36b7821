//! Process lifecycle (interface.md §1): SIGTERM is a graceful shutdown that lets in-flight
//! requests finish and exits 0.

use crate::support::{ms, Origin, Outpost, Reply};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_request_and_exits_zero() {
    let origin = Origin::new()
        .route("/slow", Reply::ok("finished").delay(ms(600)))
        .start()
        .await;
    let mut outpost = Outpost::builder().site("*", &origin).start().await;

    let url = outpost.url("/slow");
    let client = outpost.client().clone();
    let in_flight = tokio::spawn(async move {
        let r = client.get(url).header("host", "site.test").send().await;
        match r {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, format!("{e:?}")),
        }
    });
    tokio::time::sleep(ms(200)).await;
    assert_eq!(origin.hits("/slow"), 1, "request not in flight yet");
    outpost.terminate();

    let (status, body) = in_flight.await.expect("join");
    assert_eq!(
        (status, body.as_str()),
        (200, "finished"),
        "in-flight request cut off"
    );
    let exit = outpost.wait_exit(Duration::from_secs(10)).await;
    let output = outpost.output();
    let exit = exit.unwrap_or_else(|| panic!("still running 10 s after SIGTERM\n{output}"));
    assert_eq!(exit.code(), Some(0), "{exit}\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_miss_then_hit_and_stops_on_sigterm() {
    let mut demo = Outpost::demo().await;
    let output = demo.output();
    let first_url = output
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("demo printed no URL:\n{output}"));
    assert!(
        first_url.starts_with(&format!("http://{}", demo.proxy_addr())),
        "the first URL is not the proxy's ({}): {first_url}\n{output}",
        demo.proxy_addr()
    );

    let first = demo.get("localhost", "/hello.txt").await;
    assert_eq!(first.status, 200, "{first:?}");
    let second = demo.get("localhost", "/hello.txt").await;
    assert!(second.is_hit(), "{second:?}");
    assert_eq!(first.body, second.body);

    demo.terminate();
    let exit = demo.wait_exit(Duration::from_secs(10)).await;
    assert!(
        exit.is_some_and(|e| e.code() == Some(0)),
        "{exit:?}\n{}",
        demo.output()
    );
}
