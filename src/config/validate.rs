//! Raw → validated config: rules that relate values to each other or to the
//! world outside the file (env vars, cert files), collecting every problem with
//! its dotted path. The only producer of `types::Config`; binds nothing.
//! Origins and routes are in `routing.rs`, certificate checks in `certs.rs`.

use super::raw::{self, RawAdmin, RawCache, RawCluster, RawCompression, RawLog, RawServer, RawTls};
use super::reader::{Errors, Item, MISSING};
use super::types::{
    AccessLog, AdminConfig, CacheConfig, CertConfig, ClusterConfig, CompressionConfig, Config,
    DiskConfig, LogConfig, ServerConfig, TlsConfig,
};
use super::{certs, routing, units};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every problem found in a config file, one per line, each starting with its dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// One problem.
    pub fn single(msg: impl Into<String>) -> Self {
        Self(vec![msg.into()])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(super) fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigErrors::single(syntax_error(text, &e)))?;
    let errs = Errors::default();
    let raw = raw::read(&table, &errs);
    let (mut origins, names_known) = routing::origins(raw.origins, &errs);
    for (i, o) in origins.iter_mut().enumerate() {
        if let Some(ca) = o.ca.take() {
            let path = resolve(base, &ca.to_string_lossy());
            certs::check_ca(&path, &format!("origin[{i}].ca"), &errs);
            o.ca = Some(path);
        }
    }
    let routes = routing::routes(raw.routes, &origins, names_known, &errs);
    listeners(&raw.server, raw.tls.as_ref(), &raw.admin, &errs);
    let cluster = raw.cluster.map(|c| cluster(c, &raw.server, &errs));
    let cfg = Config {
        server: server(raw.server, raw.tls.is_some(), &errs),
        tls: raw.tls.map(|t| tls(t, base, &errs)),
        admin: admin(raw.admin, &errs),
        cache: cache(raw.cache, base, &errs),
        compression: compression(raw.compression, &errs),
        log: log(raw.log, base, &errs),
        origins,
        routes,
        cluster,
        hash: units::text_hash(text),
        source: None,
    };
    let mut problems = errs.into_vec();
    // Shape errors are found before cross-field ones; list both in file order.
    problems.sort_by_key(|p| file_order(p));
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(problems))
    }
}

const SECTIONS: [&str; 9] = [
    "server",
    "tls",
    "admin",
    "cache",
    "compression",
    "log",
    "origin",
    "route",
    "cluster",
];

/// Sort key of a problem: its section in interface.md order, then its `[N]` index.
fn file_order(problem: &str) -> (usize, usize) {
    let head = problem.split(['.', '[', ':']).next().unwrap_or_default();
    let section = SECTIONS
        .iter()
        .position(|s| *s == head)
        .unwrap_or(SECTIONS.len());
    let index = problem
        .strip_prefix(head)
        .and_then(|rest| rest.strip_prefix('['))
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (section, index)
}

/// `line 3, column 7: invalid TOML: ...` from the parser's byte span.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return format!("invalid TOML: {msg}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: invalid TOML: {msg}")
}

/// Relative paths in the file are relative to the file's directory.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn server(raw: RawServer, has_tls: bool, errs: &Errors) -> ServerConfig {
    errs.require(
        !raw.listen.is_empty() || raw.listen_given || has_tls,
        &raw.at.field("listen"),
        "no listener: list at least one address here or add a [tls] section",
    );
    errs.require(
        raw.max_request_header > 0,
        &raw.at.field("max_request_header"),
        "must be greater than 0",
    );
    for (ok, key) in [
        (raw.max_headers > 0, "max_headers"),
        (raw.max_uri > 0, "max_uri"),
        (raw.max_connections > 0, "max_connections"),
        (!raw.header_timeout.is_zero(), "header_timeout"),
        (!raw.idle_timeout.is_zero(), "idle_timeout"),
    ] {
        errs.require(ok, &raw.at.field(key), "must be greater than 0");
    }
    errs.require(
        !raw.upgrade_sock.trim().is_empty(),
        &raw.at.field("upgrade_sock"),
        "must be a socket path",
    );
    // A request-target longer than max_request_header meets that limit first (431): not an
    // error, since lowering max_request_header alone is a common, valid change.
    let threads = match raw.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    ServerConfig {
        listen: raw.listen.into_iter().map(|i| i.value).collect(),
        threads,
        grace_period: raw.grace_period,
        trusted_proxies: raw.trusted_proxies,
        max_request_header: raw.max_request_header,
        max_headers: usize::try_from(raw.max_headers).unwrap_or(usize::MAX),
        max_uri: raw.max_uri,
        header_timeout: raw.header_timeout,
        idle_timeout: raw.idle_timeout,
        max_connections: usize::try_from(raw.max_connections).unwrap_or(usize::MAX),
        max_connections_per_ip: usize::try_from(raw.max_connections_per_ip).unwrap_or(usize::MAX),
        upgrade_sock: PathBuf::from(raw.upgrade_sock),
    }
}

fn tls(raw: RawTls, base: &Path, errs: &Errors) -> TlsConfig {
    errs.require(
        raw.certs_given,
        &raw.at.field("cert"),
        "at least one [[tls.cert]] is required",
    );
    let mut certs = Vec::new();
    for c in raw.certs {
        errs.require(c.cert.is_some(), &c.at.field("cert"), MISSING);
        errs.require(c.key.is_some(), &c.at.field("key"), MISSING);
        let server_names = c
            .server_names
            .into_iter()
            .filter_map(|n| server_name(n, errs))
            .collect();
        if let (Some(cert), Some(key)) = (c.cert, c.key) {
            let cert = CertConfig {
                cert: resolve(base, &cert),
                key: resolve(base, &key),
                server_names,
            };
            certs::check_pair(&cert, &c.at, errs);
            certs.push(cert);
        }
    }
    TlsConfig {
        listen: raw.listen.into_iter().map(|i| i.value).collect(),
        certs,
    }
}

/// `example.test` or `*.example.test`, lower-cased.
fn server_name(n: Item<String>, errs: &Errors) -> Option<String> {
    let name = n.value.trim().to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    let ok = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !bare.starts_with('.')
        && !bare.ends_with('.');
    errs.require(
        ok,
        &n.at,
        format!(
            "expected a host name like \"example.test\" or \"*.example.test\", got {:?}",
            n.value
        ),
    );
    ok.then_some(name)
}

fn admin(raw: RawAdmin, errs: &Errors) -> AdminConfig {
    let env_at = raw.at.field("token_env");
    let env_ok = !raw.token_env.is_empty() && !raw.token_env.contains(['=', '\0']);
    errs.require(
        env_ok,
        &env_at,
        format!("not a valid environment variable name: {:?}", raw.token_env),
    );
    let token = env_ok
        .then(|| std::env::var(&raw.token_env).ok())
        .flatten()
        .filter(|t| !t.is_empty());
    errs.require(
        token.is_some() || raw.listen.ip().is_loopback(),
        &raw.at.field("listen"),
        format!(
            "{} is not a loopback address, so the admin API needs a token: set the environment variable {} \
             (admin.token_env) or listen on 127.0.0.1",
            raw.listen, raw.token_env
        ),
    );
    AdminConfig {
        listen: raw.listen,
        token_env: raw.token_env,
        token,
    }
}

/// No address may be bound twice across server.listen, tls.listen and admin.listen.
/// Port 0 never collides; a wildcard address collides with any address on its port.
fn listeners(server: &RawServer, tls: Option<&RawTls>, admin: &RawAdmin, errs: &Errors) {
    let admin_item = Item {
        at: admin.at.field("listen"),
        value: admin.listen,
    };
    let all: Vec<&Item<SocketAddr>> = server
        .listen
        .iter()
        .chain(tls.into_iter().flat_map(|t| t.listen.iter()))
        .chain(std::iter::once(&admin_item))
        .collect();
    for (j, b) in all.iter().enumerate() {
        let earlier = all[..j].iter().find(|a| collide(a.value, b.value));
        if let Some(a) = earlier {
            let msg = if a.value == b.value {
                format!("{} is already used by {}", b.value, a.at)
            } else {
                format!("{} overlaps {} ({})", b.value, a.at, a.value)
            };
            errs.add(&b.at, msg);
        }
    }
}

fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn cache(raw: RawCache, base: &Path, errs: &Errors) -> CacheConfig {
    for p in &raw.ignore_query_params {
        errs.require(!p.value.is_empty(), &p.at, "must not be empty");
    }
    let disk = raw.disk.map(|d| {
        errs.require(!d.path.is_empty(), &d.at.field("path"), "must not be empty");
        let size_at = d.at.field("size");
        errs.require(d.size > 0, &size_at, "must be greater than 0");
        errs.require(
            d.size >= raw.max_object || d.size == 0,
            &size_at,
            format!(
                "{} is smaller than cache.max_object ({})",
                units::format_size(d.size),
                units::format_size(raw.max_object)
            ),
        );
        DiskConfig {
            path: resolve(base, &d.path),
            size: d.size,
        }
    });
    CacheConfig {
        memory: raw.memory,
        max_object: raw.max_object,
        lock_timeout: raw.lock_timeout,
        default_ttl: raw.default_ttl,
        stale_while_revalidate: raw.stale_while_revalidate,
        stale_if_error: raw.stale_if_error,
        ignore_query_params: raw
            .ignore_query_params
            .into_iter()
            .map(|i| i.value)
            .collect(),
        purge_allow: raw.purge_allow,
        forward_cdn_cache_control: raw.forward_cdn_cache_control,
        client_cache_control: raw.client_cache_control,
        disk,
    }
}

fn compression(raw: RawCompression, errs: &Errors) -> CompressionConfig {
    for t in &raw.types {
        let ok = t
            .value
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'));
        errs.require(
            ok,
            &t.at,
            format!(
                "expected a MIME type like \"text/html\" or \"text/*\", got {:?}",
                t.value
            ),
        );
    }
    CompressionConfig {
        enabled: raw.enabled,
        types: raw
            .types
            .into_iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect(),
        min_size: raw.min_size,
        algorithms: raw.algorithms,
    }
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn log(raw: RawLog, base: &Path, errs: &Errors) -> LogConfig {
    LogConfig {
        access: access_log(&raw, base, errs),
        level: log_level(&raw, errs),
        format: raw.format,
    }
}

/// `"stdout"`, `"off"` or a file path. A path must look like one (contain `/` or
/// `.`), so that a misspelt keyword is reported instead of becoming a file name.
fn access_log(raw: &RawLog, base: &Path, errs: &Errors) -> AccessLog {
    match raw.access.as_str() {
        "stdout" => AccessLog::Stdout,
        "off" => AccessLog::Off,
        p if p.contains(['/', '.']) => AccessLog::File(resolve(base, p)),
        other => {
            let hint = units::suggestion(other, ["stdout", "off"]);
            errs.add(
                &raw.at.field("access"),
                format!("expected \"stdout\", \"off\" or a file path, got {other:?}{hint}"),
            );
            AccessLog::Stdout
        }
    }
}

/// A tracing filter (`info`, `outpost=debug,warn`). A single bare word must be a
/// level: tracing would read `debg` as a target name and silently log nothing.
fn log_level(raw: &RawLog, errs: &Errors) -> String {
    let at = raw.at.field("level");
    let level = raw.level.trim();
    let bare_word = !level.contains(['=', ',', '[', ':']);
    if bare_word && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        let hint = units::suggestion(level, LEVELS);
        errs.add(
            &at,
            format!(
                "expected a level ({}) or a tracing filter, got {level:?}{hint}",
                LEVELS.join(", ")
            ),
        );
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        errs.add(&at, format!("invalid tracing filter {level:?}: {e}"));
    }
    level.to_string()
}

/// `[cluster]`: node name (default: the host name), NATS URLs, and peering, where
/// `self` must be one of `peers` (when absent, the peer that is one of this node's
/// own `server.listen` addresses).
fn cluster(raw: RawCluster, server: &RawServer, errs: &Errors) -> ClusterConfig {
    let node = match raw.node.trim() {
        "" => host_name(),
        n => n.to_string(),
    };
    errs.require(
        node.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        &raw.at.field("node"),
        format!("expected letters, digits, '-', '_' or '.', got {node:?}"),
    );
    errs.require(
        !raw.nats.is_empty(),
        &raw.at.field("nats"),
        "at least one NATS server URL is required",
    );
    let mut nats = Vec::new();
    for item in raw.nats {
        let url = item.value.trim().to_string();
        let rest = url
            .strip_prefix("nats://")
            .or_else(|| url.strip_prefix("tls://"))
            .unwrap_or(&url);
        let rest = rest.rsplit('@').next().unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', ' ']) {
            errs.add(
                &item.at,
                format!("expected a NATS URL like \"nats://127.0.0.1:4222\", got {url:?}"),
            );
        }
        nats.push(url);
    }
    let stream_ok = !raw.stream.is_empty()
        && raw
            .stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    errs.require(
        stream_ok,
        &raw.at.field("stream"),
        format!(
            "expected a JetStream stream name (letters, digits, '_', '-'), got {:?}",
            raw.stream
        ),
    );
    errs.require(
        !raw.purge_wait.is_zero(),
        &raw.at.field("purge_wait"),
        "must be greater than 0s",
    );
    let peers: Vec<SocketAddr> = raw.peers.iter().map(|p| p.value).collect();
    for (i, p) in raw.peers.iter().enumerate() {
        if let Some(first) = raw.peers[..i].iter().find(|q| q.value == p.value) {
            errs.add(
                &p.at,
                format!("duplicate peer {} (also {})", p.value, first.at),
            );
        }
    }
    let self_addr = match &raw.self_addr {
        Some(s) => {
            errs.require(
                peers.contains(&s.value),
                &s.at,
                format!("{} is not one of cluster.peers", s.value),
            );
            Some(s.value)
        }
        None if peers.is_empty() => None,
        None => {
            let own = peers
                .iter()
                .copied()
                .find(|p| server.listen.iter().any(|l| l.value == *p));
            errs.require(
                own.is_some(),
                &raw.at.field("self"),
                "required when cluster.peers is set (this node's own entry in peers)",
            );
            own
        }
    };
    ClusterConfig {
        node,
        nats,
        stream: raw.stream,
        purge_wait: raw.purge_wait,
        peers,
        self_addr,
    }
}

/// The kernel's host name, or "outpost" where it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "outpost".to_string())
}
