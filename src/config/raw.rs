//! The file shape of interface.md §2: which keys exist, their types and defaults.
//! Each value is parsed in isolation (addresses, sizes, durations, choices);
//! rules that relate values to each other live in `validate.rs`.
//! The `Raw*` types never leave `config/`.

mod origins;

use super::reader::{self, items, Errors, Item, KeyPath, Section};
use super::types::{Algorithm, ClientCacheControl, LogFormat};
use ipnet::IpNet;
use origins::{origin, route};
pub(super) use origins::{RawHealth, RawOrigin, RawRoute};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use toml::{Table, Value};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

pub(super) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[derive(Debug)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) tls: Option<RawTls>,
    pub(super) admin: RawAdmin,
    pub(super) cache: RawCache,
    pub(super) compression: RawCompression,
    pub(super) log: RawLog,
    /// `None` when `origin` is not an array of tables (already reported).
    pub(super) origins: Option<Vec<RawOrigin>>,
    /// `None` when `route` is not an array of tables (already reported).
    pub(super) routes: Option<Vec<RawRoute>>,
    pub(super) cluster: Option<RawCluster>,
}

/// Reads the whole file; problems go to `errs`, defaults fill their place.
pub(super) fn read(table: &Table, errs: &Errors) -> RawConfig {
    let mut root = Section::root(table, errs);
    let raw = RawConfig {
        server: server(root.section("server")),
        tls: root.optional_section("tls").map(tls),
        admin: admin(root.section("admin")),
        cache: cache(root.section("cache")),
        compression: compression(root.section("compression")),
        log: log(root.section("log")),
        origins: root
            .sections("origin")
            .map(|v| v.into_iter().map(origin).collect()),
        routes: root
            .sections("route")
            .map(|v| v.into_iter().map(route).collect()),
        cluster: root.optional_section("cluster").map(cluster),
    };
    root.finish();
    raw
}

// === [server] ===

#[derive(Debug)]
pub(super) struct RawServer {
    pub(super) at: KeyPath,
    pub(super) listen: Vec<Item<SocketAddr>>,
    /// The file lists something under `listen`, even if invalid.
    pub(super) listen_given: bool,
    pub(super) threads: u64,
    pub(super) grace_period: Duration,
    pub(super) trusted_proxies: Vec<IpNet>,
    pub(super) max_request_header: u64,
    pub(super) max_headers: u64,
    pub(super) max_uri: u64,
    pub(super) header_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: u64,
    pub(super) max_connections_per_ip: u64,
    pub(super) upgrade_sock: String,
}

fn server(mut s: Section<'_>) -> RawServer {
    let listen_at = s.at().field("listen");
    let raw = RawServer {
        listen_given: s.given("listen"),
        listen: s
            .list("listen", &reader::addr)
            .unwrap_or_else(|| items(&listen_at, vec![loopback(8080)])),
        threads: s.get_or("threads", &reader::uint, 0),
        grace_period: s.get_or("grace_period", &reader::duration, secs(10)),
        trusted_proxies: s.list_or("trusted_proxies", &reader::cidr, Vec::new()),
        max_request_header: s.get_or("max_request_header", &reader::size, 64 * KIB),
        max_headers: s.get_or("max_headers", &reader::uint, 100),
        max_uri: s.get_or("max_uri", &reader::size, 8 * KIB),
        header_timeout: s.get_or("header_timeout", &reader::duration, secs(10)),
        idle_timeout: s.get_or("idle_timeout", &reader::duration, secs(60)),
        max_connections: s.get_or("max_connections", &reader::uint, 10_000),
        max_connections_per_ip: s.get_or("max_connections_per_ip", &reader::uint, 0),
        upgrade_sock: s.get_or(
            "upgrade_sock",
            &reader::string,
            "/tmp/outpost-upgrade.sock".to_string(),
        ),
        at: s.at().clone(),
    };
    s.finish();
    raw
}

// === [tls] ===

#[derive(Debug)]
pub(super) struct RawTls {
    pub(super) at: KeyPath,
    pub(super) listen: Vec<Item<SocketAddr>>,
    pub(super) certs: Vec<RawCert>,
    pub(super) certs_given: bool,
}

#[derive(Debug)]
pub(super) struct RawCert {
    pub(super) at: KeyPath,
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) server_names: Vec<Item<String>>,
}

fn tls(mut s: Section<'_>) -> RawTls {
    let listen_at = s.at().field("listen");
    let raw = RawTls {
        at: s.at().clone(),
        listen: s
            .list("listen", &reader::addr)
            .unwrap_or_else(|| items(&listen_at, vec![loopback(8443)])),
        certs_given: s.given("cert"),
        certs: s
            .sections("cert")
            .unwrap_or_default()
            .into_iter()
            .map(cert)
            .collect(),
    };
    s.finish();
    raw
}

fn cert(mut s: Section<'_>) -> RawCert {
    let raw = RawCert {
        at: s.at().clone(),
        cert: s.get("cert", &reader::string),
        key: s.get("key", &reader::string),
        server_names: s.list("server_names", &reader::string).unwrap_or_default(),
    };
    s.finish();
    raw
}

// === [admin] ===

#[derive(Debug)]
pub(super) struct RawAdmin {
    pub(super) at: KeyPath,
    pub(super) listen: SocketAddr,
    pub(super) token_env: String,
}

fn admin(mut s: Section<'_>) -> RawAdmin {
    let raw = RawAdmin {
        at: s.at().clone(),
        listen: s.get_or("listen", &reader::addr, loopback(9090)),
        token_env: s.get_or(
            "token_env",
            &reader::string,
            "OUTPOST_ADMIN_TOKEN".to_string(),
        ),
    };
    s.finish();
    raw
}

// === [cache] ===

#[derive(Debug)]
pub(super) struct RawCache {
    pub(super) memory: u64,
    pub(super) max_object: u64,
    pub(super) lock_timeout: Duration,
    pub(super) default_ttl: BTreeMap<u16, Duration>,
    pub(super) stale_while_revalidate: Duration,
    pub(super) stale_if_error: Duration,
    pub(super) ignore_query_params: Vec<Item<String>>,
    pub(super) purge_allow: Vec<IpNet>,
    pub(super) forward_cdn_cache_control: bool,
    pub(super) client_cache_control: ClientCacheControl,
    pub(super) disk: Option<RawDisk>,
}

#[derive(Debug)]
pub(super) struct RawDisk {
    pub(super) at: KeyPath,
    pub(super) path: String,
    pub(super) size: u64,
}

fn cache(mut s: Section<'_>) -> RawCache {
    let ignore_at = s.at().field("ignore_query_params");
    let default_ignore = ["utm_*", "fbclid", "gclid"].map(String::from).to_vec();
    let default_allow = vec![
        IpNet::from(std::net::IpAddr::from(Ipv4Addr::LOCALHOST)),
        IpNet::from(std::net::IpAddr::from(Ipv6Addr::LOCALHOST)),
    ];
    let ccc = [
        ("honor", ClientCacheControl::Honor),
        ("ignore", ClientCacheControl::Ignore),
    ];
    let raw = RawCache {
        memory: s.get_or("memory", &reader::size, 256 * MIB),
        max_object: s.get_or("max_object", &reader::size, 64 * MIB),
        lock_timeout: s.get_or("lock_timeout", &reader::duration, secs(5)),
        default_ttl: default_ttl(&mut s),
        stale_while_revalidate: s.get_or("stale_while_revalidate", &reader::duration, secs(10)),
        stale_if_error: s.get_or("stale_if_error", &reader::duration, secs(300)),
        ignore_query_params: s
            .list("ignore_query_params", &reader::string)
            .unwrap_or_else(|| items(&ignore_at, default_ignore)),
        purge_allow: s.list_or("purge_allow", &reader::cidr, default_allow),
        forward_cdn_cache_control: s.get_or("forward_cdn_cache_control", &reader::boolean, true),
        client_cache_control: s.get_or(
            "client_cache_control",
            &|v, at, e| reader::choice(v, at, e, &ccc),
            ClientCacheControl::Honor,
        ),
        disk: s.optional_section("disk").map(disk),
    };
    s.finish();
    raw
}

/// `default_ttl = { "200" = "10m", ... }`: keys are status codes. A table in the
/// file replaces the default table entirely (it is not merged).
fn default_ttl(s: &mut Section<'_>) -> BTreeMap<u16, Duration> {
    let at = s.at().field("default_ttl");
    let errs = s.errs();
    let table = match s.value("default_ttl") {
        None => return BTreeMap::from([(200, secs(600)), (301, secs(3600)), (404, secs(60))]),
        Some(Value::Table(t)) => t,
        Some(other) => {
            errs.add(
                &at,
                format!(
                    "expected a table of status = duration, got {}",
                    reader::describe(other)
                ),
            );
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, v) in table {
        let key_at = at.field(key);
        let status = key.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        let ttl = reader::duration(v, &key_at, errs);
        match (status, ttl) {
            (Some(code), Some(ttl)) => {
                out.insert(code, ttl);
            }
            (None, _) => errs.add(&key_at, "expected an HTTP status code (100-599) as the key"),
            (Some(_), None) => {}
        }
    }
    out
}

fn disk(mut s: Section<'_>) -> RawDisk {
    let raw = RawDisk {
        at: s.at().clone(),
        path: s.get_or("path", &reader::string, "/var/cache/outpost".to_string()),
        size: s.get_or("size", &reader::size, 10 * GIB),
    };
    s.finish();
    raw
}

// === [compression] and [log] ===

#[derive(Debug)]
pub(super) struct RawCompression {
    pub(super) enabled: bool,
    pub(super) types: Vec<Item<String>>,
    pub(super) min_size: u64,
    pub(super) algorithms: Vec<Algorithm>,
}

fn compression(mut s: Section<'_>) -> RawCompression {
    let types_at = s.at().field("types");
    let default_types = [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
    ];
    let algorithms = [
        ("br", Algorithm::Br),
        ("zstd", Algorithm::Zstd),
        ("gzip", Algorithm::Gzip),
    ];
    let raw = RawCompression {
        enabled: s.get_or("enabled", &reader::boolean, true),
        types: s
            .list("types", &reader::string)
            .unwrap_or_else(|| items(&types_at, default_types.map(String::from).to_vec())),
        min_size: s.get_or("min_size", &reader::size, KIB),
        algorithms: s.list_or(
            "algorithms",
            &|v, at, e| reader::choice(v, at, e, &algorithms),
            algorithms.map(|(_, a)| a).to_vec(),
        ),
    };
    s.finish();
    raw
}

#[derive(Debug)]
pub(super) struct RawLog {
    pub(super) at: KeyPath,
    pub(super) access: String,
    pub(super) level: String,
    pub(super) format: LogFormat,
}

fn log(mut s: Section<'_>) -> RawLog {
    let raw = RawLog {
        at: s.at().clone(),
        access: s.get_or("access", &reader::string, "stdout".to_string()),
        level: s.get_or("level", &reader::string, "info".to_string()),
        format: s.get_or(
            "format",
            &|v, at, e| {
                reader::choice(
                    v,
                    at,
                    e,
                    &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                )
            },
            LogFormat::Text,
        ),
    };
    s.finish();
    raw
}

// === [cluster] ===

#[derive(Debug)]
pub(super) struct RawCluster {
    pub(super) at: KeyPath,
    pub(super) node: String,
    pub(super) nats: Vec<Item<String>>,
    pub(super) stream: String,
    pub(super) purge_wait: Duration,
    pub(super) peers: Vec<Item<SocketAddr>>,
    pub(super) self_addr: Option<Item<SocketAddr>>,
}

fn cluster(mut s: Section<'_>) -> RawCluster {
    let nats_at = s.at().field("nats");
    let self_at = s.at().field("self");
    let raw = RawCluster {
        at: s.at().clone(),
        node: s.get_or("node", &reader::string, String::new()),
        nats: s
            .list("nats", &reader::string)
            .unwrap_or_else(|| items(&nats_at, vec!["nats://127.0.0.1:4222".to_string()])),
        stream: s.get_or("stream", &reader::string, "OUTPOST_PURGES".to_string()),
        purge_wait: s.get_or("purge_wait", &reader::duration, secs(2)),
        peers: s.list("peers", &reader::addr).unwrap_or_default(),
        self_addr: match s.get("self", &reader::string) {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                let parsed = reader::addr(&Value::String(v), &self_at, s.errs());
                parsed.map(|value| Item {
                    at: self_at.clone(),
                    value,
                })
            }
        },
    };
    s.finish();
    raw
}
