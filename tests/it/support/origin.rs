//! A scripted in-process origin: hyper 1 HTTP/1.1 on `127.0.0.1:0`.
//! Counts requests per path, keeps every request (headers included), serves scripted replies
//! (status, headers, body, delay, slowly streamed body), a switchable `/health`, and a catch-all
//! reply naming the origin. `stop()` (or drop) closes the listener and every open connection.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// One request as the origin saw it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// 1-based count of requests for this path, this one included.
    pub(crate) n: usize,
}

impl Req {
    /// A header value as text (`None` when absent); several values are joined with ", ".
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Full(Bytes),
    /// `count` chunks of `chunk` bytes, one every `every` (the first right after the headers).
    Stream {
        chunk: Bytes,
        count: usize,
        every: Duration,
    },
    /// Bytes `start..start+len` of the endless [`pattern`], generated as sent.
    Pattern {
        start: u64,
        len: u64,
    },
}

/// Period of [`pattern`]: a prime, so no power-of-two slice size is a multiple of it.
pub(crate) const PATTERN_PERIOD: usize = 65_521;

/// Two periods of the pattern byte `i % PATTERN_PERIOD` (any window of up to one period is a
/// zero-copy slice of it).
pub(crate) fn pattern() -> &'static Bytes {
    static P: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut x: u32 = 0x2545_f491;
        let one: Vec<u8> = (0..PATTERN_PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        [one.clone(), one].concat().into()
    })
}

/// Whether `data` is the pattern's bytes from position `at` on.
pub(crate) fn is_pattern(data: &[u8], at: u64) -> bool {
    let p = pattern();
    let mut pos = at;
    data.chunks(PATTERN_PERIOD).all(|c| {
        let off = (pos % PATTERN_PERIOD as u64) as usize;
        pos += c.len() as u64;
        p[off..off + c.len()] == *c
    })
}

/// `bytes=a-b` / `bytes=a-` of a request (`b` = `u64::MAX` when open).
fn single_range(req: &Req) -> Option<(u64, u64)> {
    let r = req.header("range")?;
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().ok()?
    };
    Some((a, b))
}

/// A scripted response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    delay: Duration,
}

impl Reply {
    /// 200 with `body`.
    pub(crate) fn ok(body: impl Into<Bytes>) -> Self {
        Self::status(200, body)
    }

    /// Any status with `body`.
    pub(crate) fn status(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: ReplyBody::Full(body.into()),
            delay: Duration::ZERO,
        }
    }

    /// 304 Not Modified (no body, no content-type).
    pub(crate) fn not_modified() -> Self {
        Self {
            status: 304,
            headers: Vec::new(),
            body: ReplyBody::Full(Bytes::new()),
            delay: Duration::ZERO,
        }
    }

    /// 200 whose body of `count * chunk_size` bytes (`'x'`) is sent one chunk every `every`.
    pub(crate) fn stream(chunk_size: usize, count: usize, every: Duration) -> Self {
        let total = chunk_size * count;
        Self {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("content-length".into(), total.to_string()),
            ],
            body: ReplyBody::Stream {
                chunk: Bytes::from(vec![b'x'; chunk_size]),
                count,
                every,
            },
            delay: Duration::ZERO,
        }
    }

    /// Like [`Reply::stream`] but without Content-Length: the body goes out chunked.
    pub(crate) fn chunked(chunk_size: usize, count: usize, every: Duration) -> Self {
        let mut r = Self::stream(chunk_size, count, every);
        r.headers.retain(|(k, _)| k != "content-length");
        r
    }

    /// Adds a response header (repeatable).
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Body bytes this reply sends (streamed ones counted in full).
    fn body_len(&self) -> u64 {
        match &self.body {
            ReplyBody::Full(b) => b.len() as u64,
            ReplyBody::Stream { chunk, count, .. } => (chunk.len() * count) as u64,
            ReplyBody::Pattern { len, .. } => *len,
        }
    }

    /// A Range-capable reply from `body` (RFC 9110 §14): one `bytes=` range gives 206 with
    /// Content-Range (416 with `bytes */LEN` past the end), anything else 200 in full;
    /// `If-Match` other than `etag` gives 412, `If-None-Match: etag` 304. Always `ETag: etag`, `Accept-Ranges: bytes`.
    pub(crate) fn ranged(req: &Req, body: &Bytes, etag: &str) -> Self {
        let len = body.len() as u64;
        let base = |r: Reply| {
            r.header("etag", etag)
                .header("accept-ranges", "bytes")
                .header("content-type", "video/mp4")
        };
        if req.header("if-match").is_some_and(|m| m.trim() != etag) {
            return base(Reply::status(412, ""));
        }
        if req
            .header("if-none-match")
            .is_some_and(|m| m.trim() == etag)
        {
            return Reply::not_modified().header("etag", etag);
        }
        let range = req.header("range").and_then(|r| {
            let spec = r.strip_prefix("bytes=")?.to_string();
            let (a, b) = spec.split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                u64::MAX
            } else {
                b.parse().ok()?
            };
            Some((a, b))
        });
        match range {
            None => base(Reply {
                headers: Vec::new(),
                ..Reply::ok(body.clone())
            }),
            Some((a, _)) if a >= len => Reply {
                headers: Vec::new(),
                ..Reply::status(416, "")
            }
            .header("content-range", format!("bytes */{len}")),
            Some((a, b)) => {
                let end = b.min(len - 1);
                let part = body.slice(a as usize..=end as usize);
                base(Reply {
                    headers: Vec::new(),
                    ..Reply::status(206, part)
                })
                .header("content-range", format!("bytes {a}-{end}/{len}"))
            }
        }
    }

    /// Like [`Reply::ranged`] for an object of `len` bytes of the [`pattern`], generated as
    /// it is sent (objects of any size, no memory). No `If-Match` support.
    pub(crate) fn pattern_ranged(req: &Req, len: u64, etag: &str) -> Self {
        let (status, start, end) = match single_range(req) {
            None => (200, 0, len),
            Some((a, _)) if a >= len => {
                return Reply {
                    headers: Vec::new(),
                    ..Reply::status(416, "")
                }
                .header("content-range", format!("bytes */{len}"));
            }
            Some((a, b)) => (206, a, b.min(len - 1) + 1),
        };
        let mut r = Reply {
            status,
            headers: vec![("content-length".into(), (end - start).to_string())],
            body: ReplyBody::Pattern {
                start,
                len: end - start,
            },
            delay: Duration::ZERO,
        }
        .header("etag", etag)
        .header("accept-ranges", "bytes")
        .header("content-type", "video/mp4");
        if status == 206 {
            r = r.header("content-range", format!("bytes {start}-{}/{len}", end - 1));
        }
        r
    }

    /// Waits this long before sending the response head.
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

struct State {
    name: String,
    port: u16,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<Req>>,
    routes: Mutex<HashMap<String, Handler>>,
    health: AtomicU16,
    bytes: AtomicU64,
}

impl State {
    fn record(&self, mut req: Req) -> Req {
        let mut hits = self.hits.lock();
        let n = hits.entry(req.path.clone()).or_insert(0);
        *n += 1;
        req.n = *n;
        self.requests.lock().push(req.clone());
        req
    }

    fn reply_for(&self, req: &Req) -> Reply {
        let handler = self.routes.lock().get(&req.path).cloned();
        match handler {
            Some(h) => h(req),
            None if req.path == "/health" => {
                let status = self.health.load(Ordering::SeqCst);
                Reply::status(status, if status == 200 { "ok" } else { "failing" })
            }
            None => Reply::ok(format!("{} {}", self.name, self.port))
                .header("cache-control", "no-store")
                .header("x-origin", self.name.clone()),
        }
    }
}

/// Builder for an [`Origin`].
pub(crate) struct OriginBuilder {
    name: String,
    routes: HashMap<String, Handler>,
}

impl OriginBuilder {
    /// Serves `reply` for every request to exactly `path` (query ignored).
    pub(crate) fn route(self, path: &str, reply: Reply) -> Self {
        self.handler(path, move |_| reply.clone())
    }

    /// Serves whatever `f` returns for `path`; `f` sees the request (and its per-path count `n`).
    pub(crate) fn handler(
        mut self,
        path: &str,
        f: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.routes.insert(path.to_owned(), Arc::new(f));
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub(crate) async fn start(self) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin local addr");
        let state = Arc::new(State {
            name: self.name,
            port: addr.port(),
            hits: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            routes: Mutex::new(self.routes),
            health: AtomicU16::new(200),
            bytes: AtomicU64::new(0),
        });
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, state.clone(), tasks.clone()));
        Origin {
            state,
            addr,
            accept: Mutex::new(Some(accept)),
            tasks,
        }
    }
}

/// A running scripted origin. Dropping it stops it.
pub(crate) struct Origin {
    state: Arc<State>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({} at {})", self.state.name, self.addr)
    }
}

impl Origin {
    /// An origin named "origin". Returns the builder so tests read like STYLE.md example E.
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new() -> OriginBuilder {
        Self::named("origin")
    }

    /// An origin whose catch-all body is `"{name} {port}"` (and header `x-origin: name`).
    pub(crate) fn named(name: &str) -> OriginBuilder {
        OriginBuilder {
            name: name.to_owned(),
            routes: HashMap::new(),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests seen for `path` (query ignored).
    pub(crate) fn hits(&self, path: &str) -> usize {
        self.state.hits.lock().get(path).copied().unwrap_or(0)
    }

    /// Requests seen on every path but `/health`.
    pub(crate) fn hits_total(&self) -> usize {
        self.state
            .hits
            .lock()
            .iter()
            .filter(|(p, _)| p.as_str() != "/health")
            .map(|(_, n)| n)
            .sum()
    }

    /// Response body bytes sent so far (HEAD responses counted as if they had a body).
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.state.bytes.load(Ordering::SeqCst)
    }

    /// The most recent request for `path`.
    pub(crate) fn last(&self, path: &str) -> Option<Req> {
        self.state
            .requests
            .lock()
            .iter()
            .rev()
            .find(|r| r.path == path)
            .cloned()
    }

    /// Every request so far, oldest first.
    pub(crate) fn requests(&self) -> Vec<Req> {
        self.state.requests.lock().clone()
    }

    /// Replaces (or adds) the reply for `path` while running.
    pub(crate) fn set_route(&self, path: &str, reply: Reply) {
        self.state
            .routes
            .lock()
            .insert(path.to_owned(), Arc::new(move |_| reply.clone()));
    }

    /// Replaces the handler of `path`.
    pub(crate) fn set_handler(
        &self,
        path: &str,
        f: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) {
        self.state
            .routes
            .lock()
            .insert(path.to_owned(), Arc::new(f));
    }

    /// The status `/health` answers from now on (200 at start).
    pub(crate) fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection; connects are refused afterwards.
    pub(crate) async fn stop(&self) {
        let accept = self.accept.lock().take();
        if let Some(accept) = accept {
            accept.abort();
            let _ = accept.await;
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().take() {
            accept.abort();
        }
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        let task = tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut tasks = tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

async fn handle(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let req = state.record(Req {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        n: 0,
    });
    let reply = state.reply_for(&req);
    if req.method != "HEAD" {
        state.bytes.fetch_add(reply.body_len(), Ordering::SeqCst);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    // hyper leaves the body out of HEAD responses itself (keeping Content-Length).
    Ok(build_response(reply))
}

fn build_response(reply: Reply) -> hyper::Response<Body> {
    let body: Body = match reply.body {
        ReplyBody::Full(bytes) => Full::new(bytes).boxed(),
        ReplyBody::Stream {
            chunk,
            count,
            every,
        } => {
            let chunks = futures::stream::iter(0..count).then(move |i| {
                let chunk = chunk.clone();
                async move {
                    if i > 0 {
                        tokio::time::sleep(every).await;
                    }
                    Ok::<_, Infallible>(Frame::data(chunk))
                }
            });
            BodyExt::boxed(StreamBody::new(chunks))
        }
        ReplyBody::Pattern { start, len } => {
            let end = start + len;
            let chunks = futures::stream::unfold(start, move |pos| async move {
                if pos >= end {
                    return None;
                }
                let off = (pos % PATTERN_PERIOD as u64) as usize;
                let take = (end - pos).min(PATTERN_PERIOD as u64) as usize;
                let data = pattern().slice(off..off + take);
                Some((Ok::<_, Infallible>(Frame::data(data)), pos + take as u64))
            });
            BodyExt::boxed(StreamBody::new(chunks))
        }
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in reply.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = HeaderValue::from_str(&value).expect("valid header value");
        resp.headers_mut().append(name, value);
    }
    resp
}

// === harness self-checks (no outpost involved) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_counts_scripts_and_stops_refusing_connections() {
    let origin = Origin::named("o")
        .route("/s", Reply::status(201, "made").header("x-a", "1"))
        .handler("/n", |r| Reply::ok(format!("n={}", r.n)))
        .start()
        .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("http://{}", origin.addr());
    let r = client
        .get(format!("{base}/s?q=1"))
        .header("x-in", "yes")
        .send()
        .await
        .expect("get /s");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-a"], "1");
    assert_eq!(r.text().await.expect("body"), "made");
    for n in 1..=2 {
        let body = client
            .get(format!("{base}/n"))
            .send()
            .await
            .expect("get /n");
        assert_eq!(body.text().await.expect("body"), format!("n={n}"));
    }
    let default = client
        .get(format!("{base}/x"))
        .send()
        .await
        .expect("get /x");
    assert_eq!(default.headers()["x-origin"], "o");
    assert_eq!(origin.hits("/s"), 1);
    assert_eq!(origin.hits_total(), 4);
    let last = origin.last("/s").expect("recorded");
    assert_eq!(last.query.as_deref(), Some("q=1"));
    assert_eq!(last.header("x-in").as_deref(), Some("yes"));

    origin.set_health(500);
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 500);
    assert_eq!(
        origin.hits_total(),
        4,
        "/health is not counted in the total"
    );

    // The pooled keep-alive connection is closed too, and new connects are refused.
    origin.stop().await;
    assert!(client.get(format!("{base}/s")).send().await.is_err());
    assert!(tokio::net::TcpStream::connect(origin.addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_streams_body_in_timed_chunks_and_delays_head() {
    let origin = Origin::new()
        .route(
            "/stream",
            Reply::stream(1000, 4, Duration::from_millis(100)),
        )
        .route("/late", Reply::ok("late").delay(Duration::from_millis(200)))
        .start()
        .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let mut r = client
        .get(format!("http://{}/stream", origin.addr()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["content-length"], "4000");
    let mut first = None;
    let mut len = 0;
    while let Some(c) = r.chunk().await.expect("chunk") {
        first.get_or_insert(started.elapsed());
        len += c.len();
    }
    assert_eq!(len, 4000);
    assert!(
        first.is_some_and(|f| f < Duration::from_millis(150)),
        "{first:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = std::time::Instant::now();
    let late = client
        .head(format!("http://{}/late", origin.addr()))
        .send()
        .await
        .expect("head");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(late.headers()["content-length"], "4");
}
