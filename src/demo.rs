//! `outpost demo`: a sample origin (text, JSON, a multi-MiB media file with Range
//! support, `/health`) on loopback, and the proxy in front of it with an embedded config.
#![allow(clippy::print_stdout)]

use crate::error::Error;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

const MEDIA_SIZE: usize = 8 << 20;

/// Starts the demo origin and serves the proxy in front of it until SIGTERM/SIGINT.
pub fn run() -> Result<(), Error> {
    let origin = start_origin()?;
    let proxy = free_or_any(8080);
    let admin = free_or_any(9090);
    let text = demo_config(proxy, admin, origin);
    let cfg = crate::config::parse(&text, std::path::Path::new("."))?;
    let built = crate::app::build(cfg, false)?;
    let p = built.bound.proxy.first().copied().unwrap_or(proxy);
    let admin_addr = built.bound.admin;
    let banner = format!(
        "outpost demo\n  proxy:  http://{p}/\n  origin: http://{origin}/   (sample content, served through the proxy)\n  \
         admin:  http://{admin_addr}/status   (also /metrics, /readyz)\n  \
         dashboard: http://{admin_addr}/dashboard   (live charts; tools/demo-traffic.sh sends traffic)\n\nTry:\n  \
         curl -si http://{p}/hello.txt | grep -i cache-status     # 1st: miss, stored\n  \
         curl -si http://{p}/hello.txt | grep -i cache-status     # 2nd: hit\n  \
         curl -si -X PURGE http://{p}/hello.txt                   # purge it\n\
         Also: http://{p}/api/items (JSON), http://{p}/media/sample.bin (8 MiB, try Range: bytes=0-99)\n\
         Stop with Ctrl-C."
    );
    crate::app::announce_when_accepting(&built.bound, Some(banner));
    crate::app::serve(built, std::time::Duration::from_secs(2));
    Ok(())
}

fn free_or_any(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn demo_config(proxy: SocketAddr, admin: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = ["{proxy}"]
grace_period = "2s"

[admin]
listen = "{admin}"

[cache]
memory = "128MiB"

[log]
access = "off"
level = "info"

[[origin]]
name = "demo"
servers = ["{origin}"]

[origin.health]
path = "/health"
interval = "2s"

[[route]]
host = "*"
prefix = "/"
origin = "demo"
"#
    )
}

/// Binds the sample origin on 127.0.0.1:0 and serves it on a background thread.
fn start_origin() -> Result<SocketAddr, Error> {
    let std_listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("demo origin: cannot listen", e))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| Error::io("demo origin", e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("demo origin", e))?;
    let media: Arc<Bytes> = Arc::new(
        (0..MEDIA_SIZE)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into(),
    );
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let media = media.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| serve(req, media.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        })
        .map_err(|e| Error::io("demo origin", e))?;
    Ok(addr)
}

async fn serve(
    req: Request<Incoming>,
    media: Arc<Bytes>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match req.uri().path() {
        "/health" => reply(
            StatusCode::OK,
            "text/plain",
            "no-store",
            Bytes::from_static(b"ok\n"),
        ),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "max-age=60",
            Bytes::from_static(INDEX.as_bytes()),
        ),
        "/hello.txt" => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "public, max-age=300",
            Bytes::from_static(b"Hello from the outpost demo origin.\n"),
        ),
        "/api/items" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let body = format!("{{\"items\":[{{\"id\":1,\"name\":\"lamp\"}},{{\"id\":2,\"name\":\"desk\"}}],\"generated_at\":{now}}}\n");
            reply(
                StatusCode::OK,
                "application/json",
                "max-age=10",
                Bytes::from(body),
            )
        }
        "/media/sample.bin" => media_reply(&req, &media),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "max-age=30",
            Bytes::from_static(b"not found\n"),
        ),
    };
    Ok(resp)
}

const INDEX: &str = "outpost demo origin\n/hello.txt  text, cached 5 min, tag demo-text\n/api/items  JSON, cached 10 s\n/media/sample.bin  8 MiB, Range supported\n/health\n";

fn reply(status: StatusCode, ctype: &str, cc: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = ctype.parse() {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = cc.parse() {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = "demo".parse() {
        h.insert("surrogate-key", v);
    }
    r
}

/// The media file, honouring a single `Range: bytes=a-b`.
fn media_reply(req: &Request<Incoming>, media: &Bytes) -> Response<Full<Bytes>> {
    let len = media.len();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let mut r = match range {
        Some((a, b)) => {
            let mut r = reply(
                StatusCode::PARTIAL_CONTENT,
                "application/octet-stream",
                "max-age=3600",
                media.slice(a..=b),
            );
            if let Ok(v) = format!("bytes {a}-{b}/{len}").parse() {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        None => reply(
            StatusCode::OK,
            "application/octet-stream",
            "max-age=3600",
            media.clone(),
        ),
    };
    if let Ok(v) = "bytes".parse() {
        r.headers_mut().insert(header::ACCEPT_RANGES, v);
    }
    if let Ok(v) = "\"sample-v1\"".parse() {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn parse_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: usize = suffix.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=2000-", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
    }
}
