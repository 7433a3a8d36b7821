//! The client-connection layer in front of Pingora's HTTP proxy app (interface.md §2
//! `[server]`): counts open connections (`outpost_connections{listener}`), closes new ones at
//! accept over `max_connections` or `max_connections_per_ip` (counted in
//! `outpost_refused_total{reason="conn_limit"}`), closes keep-alive connections idle longer
//! than `idle_timeout`, and closes a connection whose request head has not arrived within
//! `header_timeout` of its first byte (slowloris). HTTP/2 connections are counted and limited
//! the same way and then handed to Pingora as they are.

use crate::cache::status::{CacheStatus, Fwd};
use crate::proxy::Outpost;
use crate::state::Shared;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The proxy service's app: [`HttpProxy`] behind connection accounting and timeouts.
pub struct Front {
    inner: Arc<HttpProxy<Outpost>>,
    shared: Arc<Shared>,
    open: Arc<OpenConnections>,
    gauges: [Gauge; 2],
}

impl Front {
    pub fn new(inner: HttpProxy<Outpost>, shared: Arc<Shared>) -> Self {
        let gauge = |l: &str| {
            shared
                .metrics
                .connections
                .get_or_create(&vec![("listener", l.to_string())])
                .clone()
        };
        let gauges = [gauge("proxy"), gauge("tls")];
        Front {
            inner: Arc::new(inner),
            shared: shared.clone(),
            open: Arc::new(OpenConnections {
                total: shared.connections.clone(),
                per_ip: Mutex::new(HashMap::new()),
            }),
            gauges,
        }
    }
}

/// Open client connections, in total and (only while a per-address cap is set) per address.
#[derive(Debug, Default)]
struct OpenConnections {
    /// Shared with [`Shared::connections`] (a binary upgrade waits for it to reach 0).
    total: Arc<AtomicUsize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its slot back when dropped.
struct Slot {
    open: Arc<OpenConnections>,
    ip: Option<IpAddr>,
    gauge: Gauge,
}

impl OpenConnections {
    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        max: usize,
        per_ip: usize,
        gauge: &Gauge,
    ) -> Option<Slot> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let counted_ip = match ip {
            Some(ip) if per_ip > 0 => {
                let mut map = self.per_ip.lock();
                let n = map.entry(ip).or_insert(0);
                if *n >= per_ip {
                    drop(map);
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                *n += 1;
                Some(ip)
            }
            _ => None,
        };
        gauge.inc();
        Some(Slot {
            open: self.clone(),
            ip: counted_ip,
            gauge: gauge.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
        self.open.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.open.per_ip.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// Seconds for Pingora's keep-alive timer (whole seconds, at least 1).
fn whole_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (max, per_ip, header_timeout, idle) = {
            let rt = self.shared.runtime.load();
            let s = &rt.cfg.server;
            (
                s.max_connections,
                s.max_connections_per_ip,
                s.header_timeout,
                s.idle_timeout,
            )
        };
        let tls = stream.get_ssl_digest().is_some();
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let gauge = &self.gauges[usize::from(tls)];
        let Some(_slot) = self.open.admit(ip, max, per_ip, gauge) else {
            self.shared.metrics.refused_conn_limit.inc();
            tracing::debug!(client = ?ip, "connection refused: connection limit");
            return None;
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return Box::pin(self.inner.process_new(stream, shutdown)).await;
        }
        let idle = whole_secs(idle);
        let mut stream: Stream =
            Box::new(HeadTimer::new(stream, header_timeout, self.shared.clone()));
        let mut persistent = None;
        let mut fresh = true;
        loop {
            // Wait for a request's first byte here, in this small future: the proxy's own
            // (much larger) state is only allocated once there is a request to serve, so an
            // idle connection costs a few KiB instead of ~100 KiB.
            if !first_byte(&mut stream, Duration::from_secs(idle), shutdown, fresh).await {
                return None;
            }
            fresh = false;
            let mut session = ServerSession::new_http1(stream);
            if let Some(p) = persistent.take() {
                let p: pingora::apps::HttpPersistentSettings = p;
                p.apply_to_session(&mut session);
            }
            session.set_keepalive((!*shutdown.borrow()).then_some(idle));
            let result = Box::pin(self.inner.process_new_http(session, shutdown)).await;
            let (next, settings) = result?.consume();
            stream = next;
            persistent = settings;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// How long a connection accepted just before a shutdown (or hand-over) still gets to
/// send its first request: the client is sending it, it must not see a close.
const FRESH_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// Waits until the client sends a byte (peeked, not consumed), up to `idle`; false when the
/// connection closed, failed or stayed idle that long. At shutdown an idle keep-alive
/// connection is closed at once, a `fresh` one waits up to [`FRESH_AT_SHUTDOWN`]. Streams
/// that cannot peek (TLS) go straight on (Pingora's keep-alive timer applies).
async fn first_byte(
    stream: &mut Stream,
    idle: Duration,
    shutdown: &ShutdownWatch,
    fresh: bool,
) -> bool {
    let mut one = [0u8; 1];
    if *shutdown.borrow() {
        if !fresh {
            return false;
        }
        let r = tokio::time::timeout(FRESH_AT_SHUTDOWN.min(idle), stream.try_peek(&mut one)).await;
        return matches!(r, Ok(Ok(_)));
    }
    let mut watch = shutdown.clone();
    tokio::select! {
        r = tokio::time::timeout(idle, stream.try_peek(&mut one)) => matches!(r, Ok(Ok(_))),
        _ = watch.changed() => {
            if !fresh {
                return false;
            }
            let r = tokio::time::timeout(FRESH_AT_SHUTDOWN.min(idle), stream.try_peek(&mut one)).await;
            matches!(r, Ok(Ok(_)))
        }
    }
}

/// Where a connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request head (the keep-alive timer applies).
    Idle,
    /// Reading a head: it must be complete before the deadline.
    Head,
    /// Past the head (body, or waiting for the response).
    Past,
}

/// A client stream that fails reads once a request head takes longer than `limit` from its
/// first byte to its blank line. A response status line (not 1xx) starts the next request.
///
/// It also stands in for Pingora's bare `400` to requests its HTTP/1 parser rejects (they
/// never reach outpost's own code): that answer is replaced by outpost's error page with
/// `Cache-Status`, and an access-log line is written.
struct HeadTimer {
    inner: Stream,
    limit: Duration,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// The last bytes read, to find `\r\n\r\n` (or `\n\n`) across reads.
    tail: [u8; 3],
    shared: Arc<Shared>,
    /// A replacement being written: (bytes, written so far, length of the caller's buffer).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl std::fmt::Debug for HeadTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadTimer({:?}, {:?})", self.inner, self.phase)
    }
}

/// Pingora's own error answer (no `Cache-Status`: every answer outpost writes has one).
fn is_bare_400(buf: &[u8]) -> bool {
    buf.starts_with(b"HTTP/1.1 400 ")
        && !buf
            .windows(b"cache-status:".len())
            .any(|w| w.eq_ignore_ascii_case(b"cache-status:"))
}

fn malformed_status() -> CacheStatus {
    CacheStatus::answer(Fwd::Bypass, "bad-request")
}

/// The error page outpost answers malformed requests with (interface.md §3).
fn malformed_answer() -> Vec<u8> {
    let body = "400 Bad Request: malformed request\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-status: {}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        malformed_status()
    )
    .into_bytes()
}

impl HeadTimer {
    fn new(inner: Stream, limit: Duration, shared: Arc<Shared>) -> Self {
        HeadTimer {
            inner,
            limit,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(limit)),
            tail: [0; 3],
            shared,
            replacing: None,
        }
    }

    /// The access-log line and request count of a request the parser rejected.
    fn log_malformed(&self) {
        let m = &self.shared.metrics;
        if let Some(c) = m.requests_by_class.get(crate::metrics::class_index(400)) {
            c.inc();
        }
        if !self.shared.access_log.enabled() {
            return;
        }
        let client = self.inner.get_socket_digest().and_then(|d| {
            d.peer_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string())
        });
        let line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "client": client,
            "method": null,
            "host": null,
            "path": null,
            "status": 400,
            "bytes": 0,
            "duration_ms": null,
            "cache": malformed_status().to_string(),
            "origin": null,
            "server": null,
            "upstream_ms": null,
            "request_id": null,
        });
        self.shared.access_log.write(line.to_string());
    }

    /// Writes the pending replacement; `Ok(n)` (the caller's length) once all of it is out.
    fn flush_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        while let Some((data, written, _)) = &mut self.replacing {
            if *written >= data.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &data[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let len = self.replacing.take().map_or(0, |(_, _, len)| len);
        Poll::Ready(Ok(len))
    }

    /// Starts replacing Pingora's bare 400 in `buf`, if it is one.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        if !is_bare_400(buf) {
            return false;
        }
        self.log_malformed();
        self.replacing = Some((malformed_answer(), 0, buf.len()));
        self.phase = Phase::Idle;
        true
    }

    /// Tracks the head's end in newly read bytes.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.tail = [0; 3];
            let at = Instant::now() + self.limit;
            self.deadline.as_mut().reset(at);
        }
        if self.phase != Phase::Head {
            return;
        }
        let mut window = self.tail;
        for &b in bytes {
            if b == b'\n' && (window[2] == b'\n' || (window[2] == b'\r' && window[1] == b'\n')) {
                self.phase = Phase::Past;
                return;
            }
            window = [window[1], window[2], b];
        }
        self.tail = window;
    }

    /// A write that starts a final response (`HTTP/1.x NNN` with NNN ≥ 200) ends the request.
    fn wrote(&mut self, bytes: &[u8]) {
        if bytes.len() >= 10 && bytes.starts_with(b"HTTP/1.") && bytes[9] != b'1' {
            self.phase = Phase::Idle;
        }
    }
}

impl AsyncRead for HeadTimer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Head && this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not complete within server.header_timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            // A head still incomplete is read again, and that poll registers the deadline.
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for HeadTimer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_some() || self.intercept(buf) {
            return self.flush_replacement(cx);
        }
        self.wrote(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_some() {
            return self.flush_replacement(cx);
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            let first: &[u8] = first;
            if self.intercept(first) {
                return self.flush_replacement(cx);
            }
            self.wrote(first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadTimer {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadTimer {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadTimer {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadTimer {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadTimer {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadTimer {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadTimer {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
