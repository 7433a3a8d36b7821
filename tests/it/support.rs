//! Test harness: scripted in-process origins (`origin`), the real outpost binary on a temporary
//! config (`outpost`), one-shot CLI runs (`cli`) and fully read responses + metrics (`resp`).
//! Tests talk to outpost only through interface.md: HTTP, admin API, CLI, metrics.

mod cli;
mod origin;
mod outpost;
mod resp;

pub(crate) use cli::{run_outpost, spawn_capture, CliOutput};
pub(crate) use origin::{is_pattern, Origin, Reply, Req, PATTERN_PERIOD};
pub(crate) use outpost::{Health, OriginSpec, Outpost, TOKEN};
pub(crate) use resp::{parse_metric, Resp};

use std::future::Future;
use std::time::{Duration, Instant};

/// A loopback address nobody listens on: a socket bound there but never listening (so a
/// connection is refused) and kept for the rest of the test process, so that no other test's
/// listener can take the port meanwhile (a released port was reused by a parallel test).
pub(crate) async fn dead_addr() -> std::net::SocketAddr {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    s.bind(&any.into()).expect("bind");
    let addr = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local addr");
    std::mem::forget(s);
    addr
}

/// Asserts an error outpost answered itself (interface.md §3): `status`, a `Cache-Status`
/// naming outpost with a `fwd=` reason, and a short plain-text body.
#[track_caller]
pub(crate) fn assert_proxy_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    let cs = r.cache_status();
    assert!(
        cs.starts_with("outpost") && cs.contains("fwd="),
        "Cache-Status {cs:?}: {r:?}"
    );
    assert!(
        !r.body.is_empty() && r.body.len() < 1024,
        "want a short body: {r:?}"
    );
}

/// The status code of a raw HTTP/1.1 answer (0 when there is none).
pub(crate) fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A header of a raw HTTP/1.1 answer (name case-insensitive).
pub(crate) fn raw_header(answer: &str, name: &str) -> Option<String> {
    let head = answer.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// `n` milliseconds.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; returns the last result.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(ms(50)).await;
    }
}
