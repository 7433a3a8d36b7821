//! Active HTTP health checks: a background service probing every server of every
//! origin that has an `[origin.health]` section, each at its own interval.
//! Results go to `Pool::observe_check`; this module never picks servers.

use super::{Pool, Server};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs the active checks of every pool that has them, following config reloads.
#[derive(Debug)]
pub struct HealthChecks {
    pub shared: Arc<crate::state::Shared>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let rt = self.shared.runtime.load_full();
            let tasks: Vec<_> = rt
                .pools
                .pools
                .iter()
                .filter(|p| p.cfg.health.is_some())
                .map(|p| tokio::spawn(run_pool(p.clone())))
                .collect();
            // Restart the probes when the config (and so the pools) is swapped.
            let swapped = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if !Arc::ptr_eq(&rt, &self.shared.runtime.load_full()) {
                        break;
                    }
                }
            };
            let stop = tokio::select! {
                _ = shutdown.changed() => true,
                _ = swapped => false,
            };
            for t in tasks {
                t.abort();
            }
            if stop {
                return;
            }
        }
    }
}

async fn run_pool(pool: Arc<Pool>) {
    let Some(h) = pool.cfg.health.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(h.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checks = pool.servers.iter().map(|s| {
            let pool = pool.clone();
            let s = s.clone();
            async move {
                let ok = probe(&pool, &s).await;
                pool.observe_check(&s, ok);
            }
        });
        futures_join_all(checks).await;
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// One probe: `GET path` with `Connection: close`; healthy when the status is expected.
/// Plain origins get a raw request (cheap); TLS origins go through Pingora's connector with
/// the same peer as proxied requests (SNI, `origin.ca`, `origin.verify`).
async fn probe(pool: &Pool, server: &Server) -> bool {
    let Some(h) = pool.cfg.health.as_ref() else {
        return true;
    };
    let host = if pool.cfg.host.is_empty() {
        server.label.clone()
    } else {
        pool.cfg.host.clone()
    };
    let status = if pool.cfg.tls {
        tokio::time::timeout(h.timeout, probe_tls(pool, server, &h.path, &host)).await
    } else {
        tokio::time::timeout(h.timeout, probe_plain(server, &h.path, &host)).await
    };
    match status {
        Ok(Some(status)) => h.expect_status.contains(&status),
        _ => false,
    }
}

async fn probe_plain(server: &Server, path: &str, host: &str) -> Option<u16> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: outpost-health\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(server.addr).await.ok()?;
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = stream.read(&mut buf[n..]).await.ok()?;
        if r == 0 {
            break;
        }
        n += r;
    }
    status_of(&buf[..n])
}

async fn probe_tls(pool: &Pool, server: &Server, path: &str, host: &str) -> Option<u16> {
    use pingora::connectors::http::Connector;
    use std::sync::OnceLock;
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    let connector = CONNECTOR.get_or_init(|| Connector::new(None));
    let peer = pool.peer(server);
    let mut req = pingora::http::RequestHeader::build("GET", path.as_bytes(), None).ok()?;
    req.insert_header("host", host).ok()?;
    req.insert_header("user-agent", "outpost-health").ok()?;
    req.insert_header("connection", "close").ok()?;
    let (mut http, _) = match connector.get_http_session(&peer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(server = %server.label, error = %e, "TLS health probe failed to connect");
            return None;
        }
    };
    http.write_request_header(Box::new(req)).await.ok()?;
    http.read_response_header().await.ok()?;
    http.response_header().map(|r| r.status.as_u16())
}

/// Status code of an `HTTP/1.x NNN` status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    if !line.starts_with("HTTP/1.") {
        return None;
    }
    line.get(9..12)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_line_parsing() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(status_of(b"SSH-2.0"), None);
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
    }
}
