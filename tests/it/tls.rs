//! TLS listeners (interface.md §2 `[tls]`, §3): SNI picks the certificate (exact name, then
//! `*.suffix`, the first `[[tls.cert]]` for unknown or absent SNI), requests over TLS are
//! proxied with `X-Forwarded-Proto: https`, HTTP/2 is offered via ALPN and routed by the URI
//! authority, and `check` rejects a key that belongs to another certificate.
//! Certificates are generated per test (rcgen) into a temp dir; the client is rustls through
//! `pingora::tls`, trusting exactly the generated certificates.

use crate::support::{raw_header, raw_status, run_outpost, Origin, Outpost, Reply};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use pingora::tls::{
    CertificateDer, ClientConfig, ClientTlsStream, CryptoProvider, DigitallySignedStruct,
    HandshakeSignatureValid, RootCertStore, RusTlsError, ServerCertVerified, ServerCertVerifier,
    ServerName, SignatureScheme, TlsConnector, UnixTime,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A self-signed certificate written as PEM files, with its DER for comparisons.
struct TestCert {
    der: Vec<u8>,
    key_der: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate with CN = the first name and every name as a DNS SAN.
fn make_cert(dir: &Path, file: &str, names: &[&str]) -> TestCert {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(sans).expect("certificate params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let cert_path = dir.join(format!("{file}.pem"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    TestCert {
        der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        cert: cert_path,
        key: key_path,
    }
}

/// `[tls]` on a port-0 loopback listener with one `[[tls.cert]]` per `(cert, server_names)`.
fn tls_toml(certs: &[(&TestCert, &[&str])]) -> String {
    let mut out = String::from("[tls]\nlisten = [\"127.0.0.1:0\"]\n");
    for (c, names) in certs {
        let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        out.push_str(&format!(
            "[[tls.cert]]\ncert = {:?}\nkey = {:?}\nserver_names = [{}]\n",
            c.cert.display().to_string(),
            c.key.display().to_string(),
            names.join(", ")
        ));
    }
    out
}

/// A client trusting exactly `trusted` (each self-signed cert is its own anchor).
fn client_config(trusted: &[&TestCert], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    pingora::tls::install_default_crypto_provider();
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots
            .add(CertificateDer::from(c.der.clone()))
            .expect("add trust anchor");
    }
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Accepts any server certificate: only for looking at which one the server picks for a name
/// no certificate covers (the fallback), where verification must fail by design.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, RusTlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_config() -> Arc<ClientConfig> {
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .expect("default crypto provider")
        .clone();
    let cfg = ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// TCP + TLS handshake to `addr` with `server_name` (a DNS name is sent as SNI; an IP address
/// sends none), bounded in time. Errors are returned as text.
async fn try_connect(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
    server_name: &str,
) -> Result<ClientTlsStream<TcpStream>, String> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(cfg).connect(name, tcp).await
    };
    match tokio::time::timeout(IO_TIMEOUT, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("handshake to {addr} as {server_name}: {e}")),
        Err(_) => Err(format!("handshake to {addr} as {server_name}: timed out")),
    }
}

async fn connect(
    outpost: &Outpost,
    cfg: Arc<ClientConfig>,
    server_name: &str,
) -> ClientTlsStream<TcpStream> {
    try_connect(outpost.tls_addr(), cfg, server_name)
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- output ---\n{}", outpost.output()))
}

/// The leaf certificate the server presented.
fn peer_leaf(s: &ClientTlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .expect("server presented a certificate")
}

/// One HTTP/1.1 request with `Connection: close` over TLS; everything read until the peer
/// closes (or the timeout), as text.
async fn h1_get(
    outpost: &Outpost,
    cfg: Arc<ClientConfig>,
    sni: &str,
    host: &str,
    path: &str,
) -> String {
    let mut s = connect(outpost, cfg, sni).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        s.flush().await?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A close without close_notify still ends a Connection: close answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    };
    let out = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET https://{host}{path}: timed out\n{}", outpost.output()))
        .unwrap_or_else(|e| panic!("GET https://{host}{path}: {e}\n{}", outpost.output()));
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a raw HTTP/1.1 answer (Content-Length or close-delimited; not chunked).
fn raw_body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// One HTTP/2 answer, fully read.
#[derive(Debug)]
struct H2Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl H2Resp {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn is_hit(&self) -> bool {
        self.header("cache-status")
            .split(';')
            .any(|p| p.trim() == "hit")
    }
}

/// An HTTP/2 client over one TLS connection whose ALPN must have chosen "h2".
async fn h2_client(
    outpost: &Outpost,
    cfg: Arc<ClientConfig>,
    sni: &str,
) -> h2::client::SendRequest<Bytes> {
    let tls = connect(outpost, cfg, sni).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN with h2 offered first"
    );
    let (send, conn) = tokio::time::timeout(IO_TIMEOUT, h2::client::handshake(tls))
        .await
        .expect("h2 handshake timed out")
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// `GET https://{authority}{path}` over `send` (no Host header: h2 carries `:authority`).
async fn h2_get(send: &h2::client::SendRequest<Bytes>, authority: &str, path: &str) -> H2Resp {
    let exchange = async {
        let mut send = send.clone().ready().await?;
        let req = http::Request::get(format!("https://{authority}{path}"))
            .body(())
            .expect("request");
        let (resp, _) = send.send_request(req, true)?;
        let resp = resp.await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        Ok::<_, h2::Error>(H2Resp {
            status,
            headers,
            body: data.into(),
        })
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("h2 GET https://{authority}{path}: timed out"))
        .unwrap_or_else(|e| panic!("h2 GET https://{authority}{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sni_selects_certificate_and_falls_back_to_first() {
    let certs = tempfile::tempdir().expect("temp dir");
    let a = make_cert(certs.path(), "a", &["a.test"]);
    let b = make_cert(certs.path(), "b", &["*.b.test"]);
    let origin = Origin::new().start().await;
    let outpost = Outpost::builder()
        .raw(&tls_toml(&[(&a, &["a.test"]), (&b, &["*.b.test"])]))
        .site("*", &origin)
        .start()
        .await;

    // Names a certificate covers: verified against exactly the generated anchors.
    let trusting = client_config(&[&a, &b], &[b"http/1.1"]);
    let s = connect(&outpost, trusting.clone(), "a.test").await;
    assert!(peer_leaf(&s) == a.der, "SNI a.test must get a.test's cert");
    let s = connect(&outpost, trusting.clone(), "x.b.test").await;
    assert!(
        peer_leaf(&s) == b.der,
        "SNI x.b.test must get the *.b.test cert"
    );
    // SNI matching is case-insensitive (DNS names are).
    let s = connect(&outpost, trusting.clone(), "X.B.TEST").await;
    assert!(
        peer_leaf(&s) == b.der,
        "SNI X.B.TEST must get the *.b.test cert"
    );

    // Names no certificate covers: the first [[tls.cert]] answers. Looked at without
    // verification, since by design it does not match.
    let any = accept_any_config();
    for name in ["unknown.test", "b.test", "y.x.b.test"] {
        let s = connect(&outpost, any.clone(), name).await;
        assert!(
            peer_leaf(&s) == a.der,
            "SNI {name} must fall back to the first cert"
        );
    }
    // No SNI at all (rustls sends none for an IP address).
    let s = connect(&outpost, any.clone(), "127.0.0.1").await;
    assert!(peer_leaf(&s) == a.der, "absent SNI must get the first cert");

    // And a client that trusts only the first cert cannot be fooled for a wildcard name.
    let only_a = client_config(&[&a], &[b"http/1.1"]);
    let err = try_connect(outpost.tls_addr(), only_a, "x.b.test")
        .await
        .expect_err("x.b.test with only a.test trusted must fail verification");
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_request_is_proxied_with_forwarded_proto_https() {
    let certs = tempfile::tempdir().expect("temp dir");
    let a = make_cert(certs.path(), "a", &["a.test"]);
    let origin = Origin::new()
        .route(
            "/page",
            Reply::ok("over tls").header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let outpost = Outpost::builder()
        .raw(&tls_toml(&[(&a, &["a.test"])]))
        .site("a.test", &origin)
        .start()
        .await;
    let cfg = client_config(&[&a], &[b"http/1.1"]);

    let first = h1_get(&outpost, cfg.clone(), "a.test", "a.test", "/page").await;
    assert_eq!(raw_status(&first), 200, "{first}");
    assert_eq!(raw_body(&first), "over tls", "{first}");
    let cs = raw_header(&first, "cache-status").unwrap_or_default();
    assert!(cs.starts_with("outpost"), "Cache-Status {cs:?}: {first}");
    let seen = origin.last("/page").expect("origin saw the request");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("host").as_deref(), Some("a.test"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("a.test"));

    // The TLS listener shares the cache: the second request is a hit.
    let second = h1_get(&outpost, cfg, "a.test", "a.test", "/page").await;
    assert_eq!(raw_status(&second), 200, "{second}");
    assert_eq!(raw_body(&second), "over tls", "{second}");
    let cs = raw_header(&second, "cache-status").unwrap_or_default();
    assert!(
        cs.split(';').any(|p| p.trim() == "hit"),
        "Cache-Status {cs:?}: {second}"
    );
    assert_eq!(origin.hits("/page"), 1);

    // Plain HTTP on the same outpost still says http.
    let plain = outpost.get("a.test", "/plain").await;
    assert_eq!(plain.status, 200, "{plain:?}");
    let seen = origin.last("/plain").expect("origin saw the plain request");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_h2_via_alpn() {
    let certs = tempfile::tempdir().expect("temp dir");
    let a = make_cert(certs.path(), "a", &["a.test"]);
    let b = make_cert(certs.path(), "b", &["*.b.test"]);
    let reply = |body: &str| Reply::ok(body.to_owned()).header("cache-control", "max-age=60");
    let origin_a = Origin::named("a")
        .route("/same", reply("from a"))
        .start()
        .await;
    let origin_b = Origin::named("b")
        .route("/same", reply("from b"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .raw(&tls_toml(&[(&a, &["a.test"]), (&b, &["*.b.test"])]))
        .site("a.test", &origin_a)
        .site("*.b.test", &origin_b)
        .start()
        .await;

    // Only http/1.1 offered: ALPN picks it.
    let h1_only = client_config(&[&a, &b], &[b"http/1.1"]);
    let s = connect(&outpost, h1_only, "a.test").await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(s);

    let h2_cfg = client_config(&[&a, &b], &[b"h2", b"http/1.1"]);
    let send_a = h2_client(&outpost, h2_cfg.clone(), "a.test").await;
    let send_b = h2_client(&outpost, h2_cfg, "x.b.test").await;

    for round in 0..2 {
        let ra = h2_get(&send_a, "a.test", "/same").await;
        let rb = h2_get(&send_b, "x.b.test", "/same").await;
        assert_eq!(
            ra.status,
            200,
            "round {round}: {ra:?}\n{}",
            outpost.output()
        );
        assert_eq!(
            rb.status,
            200,
            "round {round}: {rb:?}\n{}",
            outpost.output()
        );
        assert_eq!(ra.body, "from a", "round {round}: {ra:?}");
        assert_eq!(rb.body, "from b", "round {round}: {rb:?}");
        assert!(
            ra.header("cache-status").starts_with("outpost"),
            "round {round}: {ra:?}"
        );
        if round == 1 {
            assert!(ra.is_hit(), "second h2 GET a.test/same: {ra:?}");
            assert!(rb.is_hit(), "second h2 GET x.b.test/same: {rb:?}");
        }
    }
    assert_eq!(origin_a.hits("/same"), 1, "{:?}", origin_a.requests());
    assert_eq!(origin_b.hits("/same"), 1, "{:?}", origin_b.requests());
    // Upstream is HTTP/1.1: the authority becomes its Host.
    let seen = origin_a.last("/same").expect("origin a saw the request");
    assert_eq!(seen.header("host").as_deref(), Some("a.test"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let seen = origin_b.last("/same").expect("origin b saw the request");
    assert_eq!(seen.header("host").as_deref(), Some("x.b.test"));
}

#[test]
fn check_rejects_mismatched_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = make_cert(dir.path(), "a", &["a.test"]);
    let b = make_cert(dir.path(), "b", &["b.test"]);
    // a.test's certificate with b.test's key.
    let mismatched = TestCert {
        der: a.der.clone(),
        key_der: b.key_der.clone(),
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let body = "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
        [[origin]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\
        [[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"app\"\n";
    let check = |certs: &[(&TestCert, &[&str])]| {
        let file = dir.path().join("outpost.toml");
        std::fs::write(&file, format!("{body}\n{}", tls_toml(certs))).expect("write config");
        let file = file.to_str().expect("utf-8 path").to_owned();
        run_outpost(&["check", "-c", &file], &[], Duration::from_secs(30))
    };

    // The matching pair passes, so the failure below is about the key alone.
    let ok = check(&[(&a, &["a.test"])]);
    assert_eq!(ok.code, Some(0), "{}", ok.all);

    let bad = check(&[(&mismatched, &["a.test"])]);
    assert_eq!(bad.code, Some(2), "{}", bad.all);
    let line = bad
        .all
        .lines()
        .find(|l| l.contains("tls.cert[0].key"))
        .unwrap_or_else(|| panic!("no line names tls.cert[0].key:\n{}", bad.all));
    assert!(
        !line.contains("tls.cert[0].cert"),
        "the key is at fault, not the cert: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_for_new_connections_and_keeps_open_ones() {
    let origin = Origin::new().route("/x", Reply::ok("fine")).start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let old = make_cert(dir.path(), "site", &["site.test"]);
    let outpost = Outpost::builder()
        .raw(&tls_toml(&[(&old, &["site.test"])]))
        .site("*", &origin)
        .start()
        .await;
    let mut open = connect(&outpost, accept_any_config(), "site.test").await;
    assert_eq!(peer_leaf(&open), old.der);

    // New files at the same paths, then SIGHUP.
    let new = make_cert(dir.path(), "site", &["site.test"]);
    assert_ne!(new.der, old.der);
    outpost.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = connect(&outpost, accept_any_config(), "site.test").await;
        if peer_leaf(&s) == new.der {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still the old certificate\n{}",
            outpost.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the reload still works.
    open.write_all(b"GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write on the old connection");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(IO_TIMEOUT, open.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(raw_body(&answer), "fine");
}

/// An HTTPS origin with `cert`: answers every request `200 tls origin` and counts them.
async fn tls_origin(cert: &TestCert) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use pingora::tls::{PrivateKeyDer, ServerConfig, TlsAcceptor};
    pingora::tls::install_default_crypto_provider();
    let key = PrivateKeyDer::try_from(cert.key_der.clone()).expect("key");
    let cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, c) = (acceptor.clone(), c.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\ntls origin")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, count)
}

fn tls_origin_toml(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[origin]]\nname = \"secure\"\nservers = [\"{addr}\"]\ntls = true\nsni = \"origin.test\"\n{extra}\n\
         [origin.health]\npath = \"/health\"\ninterval = \"300ms\"\nfails = 1\npasses = 1\n\n\
         [[route]]\nhost = \"*\"\nprefix = \"/\"\norigin = \"secure\"\ncache = false\n"
    )
}

async fn ready_healthy(outpost: &Outpost) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        last = outpost.admin_get("/readyz").await.json();
        if last["origins"]["secure"]["healthy"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origin_is_verified_with_origin_ca_and_health_checked_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = make_cert(dir.path(), "origin", &["origin.test"]);
    let (addr, hits) = tls_origin(&cert).await;
    let ca = format!("ca = {:?}", cert.cert.display().to_string());
    let outpost = Outpost::builder()
        .raw(&tls_origin_toml(addr, &ca))
        .start()
        .await;
    // Servers start healthy; several probes (300 ms apart, one failure takes it out) later
    // it must still be, and the probes must have reached the origin.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let ready = ready_healthy(&outpost).await;
    assert_eq!(
        ready["origins"]["secure"]["healthy"], 1,
        "health checks over TLS failed: {ready}"
    );
    let probes = hits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        probes >= 2,
        "{probes} probes reached the TLS origin\n{}",
        outpost.output()
    );
    let r = outpost.get("site.test", "/x").await;
    assert_eq!((r.status, r.text().as_str()), (200, "tls origin"), "{r:?}");

    // Without the CA the self-signed origin is refused; with verify = false it is accepted.
    let untrusted = Outpost::builder()
        .raw(&tls_origin_toml(addr, ""))
        .start()
        .await;
    let r = untrusted.get("site.test", "/x").await;
    assert!(
        r.status == 502 || r.status == 503,
        "an unverified origin was used: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let down = untrusted.admin_get("/readyz").await.json();
    assert_eq!(
        down["origins"]["secure"]["healthy"], 0,
        "unverifiable origin still healthy: {down}"
    );
    let unverified = Outpost::builder()
        .raw(&tls_origin_toml(addr, "verify = false"))
        .start()
        .await;
    assert!(
        unverified.output().contains("origin.verify = false"),
        "{}",
        unverified.output()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        ready_healthy(&unverified).await["origins"]["secure"]["healthy"],
        1
    );
    let r = unverified.get("site.test", "/x").await;
    assert_eq!((r.status, r.text().as_str()), (200, "tls origin"), "{r:?}");
}
