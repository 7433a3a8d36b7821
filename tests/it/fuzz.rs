//! A bounded, seeded fuzz run (issue: hostile clients): 10,000 mutated HTTP/1 requests over
//! fresh connections. The process survives, every answer is a well-formed status line, and
//! the origin never receives a request that is malformed.

use crate::support::{ms, OriginSpec, Outpost};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// xorshift64*: a small deterministic generator (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const BASES: [&[u8]; 4] = [
    b"GET /static/a.css?v=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /api/items HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"GET /x HTTP/1.0\r\nHost: site.test\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
];

const NASTY: [&[u8]; 16] = [
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b"\t",
    b":",
    b"\r\n",
    b"\r\n ",
    b"%2e%2e/",
    b"/../",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Host: other.test\r\n",
    b"\xff\xfe",
    b"Transfer-Encoding: gzip\r\n",
    b"Content-Length: -1\r\n",
];

fn mutate(rng: &mut Rng) -> Vec<u8> {
    let mut req = BASES[rng.below(BASES.len())].to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(req.len() + 1);
        match rng.below(6) {
            0 => {
                if at < req.len() {
                    req[at] = rng.next() as u8;
                }
            }
            1 => {
                let n = NASTY[rng.below(NASTY.len())];
                req.splice(at..at, n.iter().copied());
            }
            2 => {
                let end = (at + rng.below(8)).min(req.len());
                req.drain(at..end);
            }
            3 => req.truncate(at),
            4 => {
                let n = 1 + rng.below(20_000);
                req.splice(at..at, std::iter::repeat_n(b'a', n));
            }
            _ => {
                let line = b"X-Dup: v\r\n";
                let head_end = req
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(0, |p| p + 2);
                for _ in 0..rng.below(300) {
                    req.splice(head_end..head_end, line.iter().copied());
                }
            }
        }
    }
    req
}

/// Problems of a request as the origin received it (empty = well-formed).
fn malformed(head: &[u8]) -> Option<String> {
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return Some("bare LF".into());
    }
    if head.contains(&0) {
        return Some("NUL".into());
    }
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        other => return Some(format!("does not parse: {other:?}")),
    }
    let path = req.path.unwrap_or_default();
    if !path.starts_with('/')
        || path.contains("/../")
        || path.contains("/./")
        || path.contains("//")
    {
        return Some(format!("path {path:?}"));
    }
    let has = |n: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    if has("content-length") > 0 && has("transfer-encoding") > 0 {
        return Some("Content-Length with Transfer-Encoding".into());
    }
    if has("host") != 1 {
        return Some(format!("{} Host fields", has("host")));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_never_reach_the_origin_malformed() {
    // A raw origin: reads one head, checks it, answers and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin_addr = listener.local_addr().expect("addr");
    let bad: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let received = Arc::new(AtomicUsize::new(0));
    let (bad2, received2) = (bad.clone(), received.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (bad, received) = (bad2.clone(), received2.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let end = head
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(head.len(), |p| p + 4);
                received.fetch_add(1, Ordering::Relaxed);
                if let Some(why) = malformed(&head[..end]) {
                    bad.lock().push(format!(
                        "{why}: {:?}",
                        String::from_utf8_lossy(&head[..end.min(300)])
                    ));
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nCache-Control: no-store\r\n\r\nok")
                    .await;
            });
        }
    });
    let outpost = Outpost::builder()
        .set("server", "header_timeout", "\"1s\"")
        .origin(OriginSpec::new("app").server_addr(origin_addr, 1))
        .route("*", "/", "app")
        .start()
        .await;
    let proxy = outpost.proxy_addr();
    let seed = 0x05ee_d0f0_u64 ^ 0x9e37_79b9_7f4a_7c15;
    let answered = Arc::new(AtomicUsize::new(0));
    let garbled = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (answered, garbled) = (answered.clone(), garbled.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_add(w.wrapping_mul(0x1234_5678_9abc_def1)) | 1);
            for _ in 0..1250 {
                let req = mutate(&mut rng);
                let Ok(mut s) = tokio::net::TcpStream::connect(proxy).await else {
                    garbled.lock().push("connect refused".into());
                    continue;
                };
                let _ = s.write_all(&req).await;
                let _ = s.shutdown().await;
                let mut out = Vec::new();
                let mut buf = [0u8; 4096];
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    if n == 0 || out.len() > 64 * 1024 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                if out.is_empty() {
                    continue; // closed without an answer (an incomplete head at EOF)
                }
                answered.fetch_add(1, Ordering::Relaxed);
                let ok = out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 ");
                if !ok {
                    garbled
                        .lock()
                        .push(String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned());
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(ms(200)).await;
    let r = outpost.get("site.test", "/after").await;
    assert_eq!(
        r.status,
        200,
        "outpost stopped serving after the fuzz run ({elapsed:?}): {r:?}\n{}",
        outpost.output()
    );
    let bad = bad.lock();
    assert!(
        bad.is_empty(),
        "seed {seed:#x}: the origin received {} malformed requests, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let garbled = garbled.lock();
    assert!(
        garbled.is_empty(),
        "seed {seed:#x}: {} answers were not HTTP, e.g. {:?}",
        garbled.len(),
        &garbled[..garbled.len().min(3)]
    );
    let answered = answered.load(Ordering::Relaxed);
    assert!(
        answered > 5_000,
        "only {answered} of 10000 requests were answered"
    );
    assert!(
        received.load(Ordering::Relaxed) > 500,
        "too few requests got through to mean anything"
    );
}
