//! Validated configuration: only valid states are representable.
//! Built by `validate.rs` from the raw TOML shape; read by every other module.
//! Nothing here parses text or touches the disk.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole validated configuration (interface.md §2).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: Option<TlsConfig>,
    pub admin: AdminConfig,
    pub cache: CacheConfig,
    pub compression: CompressionConfig,
    pub log: LogConfig,
    pub origins: Vec<OriginConfig>,
    pub routes: Vec<RouteConfig>,
    /// `[cluster]`; `None` = a single node.
    pub cluster: Option<ClusterConfig>,
    /// Hex digest of the file text (shown by `/status` and `/config`).
    pub hash: String,
    /// The file it came from, if any (`None` for the embedded demo config).
    pub source: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 in the file is resolved to the core count here.
    pub threads: usize,
    #[serde(serialize_with = "ser::duration")]
    pub grace_period: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub max_request_header: u64,
    /// More request header fields → 431.
    pub max_headers: usize,
    /// A longer request-target → 414.
    pub max_uri: u64,
    /// A request's head must arrive within this (from its first byte), else the connection closes.
    #[serde(serialize_with = "ser::duration")]
    pub header_timeout: Duration,
    /// Keep-alive connections idle longer than this are closed.
    #[serde(serialize_with = "ser::duration")]
    pub idle_timeout: Duration,
    /// Open client connections over all listeners; more are closed at accept.
    pub max_connections: usize,
    /// Open client connections per client address; 0 = no cap.
    pub max_connections_per_ip: usize,
    /// Hand-over socket for `run --upgrade`.
    pub upgrade_sock: PathBuf,
}

/// `[tls]`
#[derive(Debug, Clone, Serialize)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub certs: Vec<CertConfig>,
}

/// `[[tls.cert]]`
#[derive(Debug, Clone, Serialize)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_names: Vec<String>,
}

/// `[admin]`
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token_env: String,
    /// The token read from `token_env` at load time; `None` when unset or empty. Never serialized.
    #[serde(serialize_with = "ser::redacted")]
    pub token: Option<String>,
}

/// Whether request `Cache-Control`/`Pragma` from clients is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCacheControl {
    Honor,
    Ignore,
}

/// `[cache]`
#[derive(Debug, Clone, Serialize)]
pub struct CacheConfig {
    pub memory: u64,
    pub max_object: u64,
    #[serde(serialize_with = "ser::duration")]
    pub lock_timeout: Duration,
    /// Status code → TTL, used only when the origin gives no freshness information.
    #[serde(serialize_with = "ser::ttl_map")]
    pub default_ttl: BTreeMap<u16, Duration>,
    #[serde(serialize_with = "ser::duration")]
    pub stale_while_revalidate: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub stale_if_error: Duration,
    /// Glob patterns (`*` wildcard) of query parameter names removed from the cache key.
    pub ignore_query_params: Vec<String>,
    pub purge_allow: Vec<IpNet>,
    /// RFC 9213 §3: `CDN-Cache-Control` is forwarded downstream unless this is false.
    pub forward_cdn_cache_control: bool,
    pub client_cache_control: ClientCacheControl,
    pub disk: Option<DiskConfig>,
}

/// `[cache.disk]`
#[derive(Debug, Clone, Serialize)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub size: u64,
}

/// A compression algorithm, in the client-preference order of `compression.algorithms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Br,
    Zstd,
    Gzip,
}

/// `[compression]`
#[derive(Debug, Clone, Serialize)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// MIME types; `text/*` style wildcards allowed.
    pub types: Vec<String>,
    pub min_size: u64,
    pub algorithms: Vec<Algorithm>,
}

/// Where the JSON access log goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

/// `[log]`
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub access: AccessLog,
    /// A tracing filter directive such as `info` or `outpost=debug,warn`.
    pub level: String,
    /// Server log format.
    pub format: LogFormat,
}

/// `log.format`: the server (not access) log's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[cluster]`
#[derive(Debug, Clone, Serialize)]
pub struct ClusterConfig {
    /// This node's unique name (default: the host name).
    pub node: String,
    /// NATS server URLs (JetStream enabled).
    pub nats: Vec<String>,
    /// JetStream stream carrying purges.
    pub stream: String,
    /// How long a purge waits for the other nodes' acks.
    #[serde(serialize_with = "ser::duration")]
    pub purge_wait: Duration,
    /// Proxy addresses of every peering node, this one included; empty = no peering.
    pub peers: Vec<SocketAddr>,
    /// This node's entry in `peers` (`None` when peering is off).
    #[serde(rename = "self")]
    pub self_addr: Option<SocketAddr>,
}

/// How an origin pool picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    RoundRobin,
    /// Never produced by the loader: `selection = "weighted"` is read as `RoundRobin`
    /// (weights apply to every selection but `LeastConn`). Kept for callers that match on it.
    Weighted,
    Consistent,
    Random,
    LeastConn,
}

/// One server of an origin pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    pub weight: usize,
}

/// `[[origin]]`
#[derive(Debug, Clone, Serialize)]
pub struct OriginConfig {
    pub name: String,
    pub servers: Vec<ServerAddr>,
    pub selection: Selection,
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub read_timeout: Duration,
    pub retries: usize,
    pub tls: bool,
    /// Empty = the server's host.
    pub sni: String,
    /// PEM file of CAs that verify the origin's certificate; `None` = system roots.
    pub ca: Option<PathBuf>,
    /// false skips certificate verification.
    pub verify: bool,
    /// Empty = the client's Host.
    pub host: String,
    pub health: Option<HealthConfig>,
}

/// `[origin.health]`
#[derive(Debug, Clone, Serialize)]
pub struct HealthConfig {
    pub path: String,
    #[serde(serialize_with = "ser::duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    pub fails: usize,
    pub passes: usize,
    pub expect_status: Vec<u16>,
}

/// The host part of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HostMatch {
    /// `"*"`
    Any,
    /// `"example.test"` (lower-cased)
    Exact(String),
    /// `"*.example.test"`, stored as `".example.test"` (lower-cased)
    Suffix(String),
}

/// `[[route]]`
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    pub host: HostMatch,
    pub prefix: String,
    /// Index into `Config::origins` (validated to exist).
    pub origin: usize,
    pub cache: bool,
    /// Client networks allowed on this route (empty = all); others get 403.
    pub allow: Vec<IpNet>,
    /// Client networks refused with 403.
    pub deny: Vec<IpNet>,
    /// Per-client-address request rate; `None` = off.
    pub rate_limit: Option<RateLimitConfig>,
    /// Slice size in bytes for large objects; 0 = off.
    pub slice: u64,
}

/// `[[route]] rate_limit`: `requests` per `per`, with `burst` extra requests allowed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimitConfig {
    pub requests: u64,
    #[serde(serialize_with = "ser::duration")]
    pub per: Duration,
    pub burst: u64,
}

/// Human-readable serialization for `GET /config` (durations as "5s", secrets redacted).
mod ser {
    use serde::ser::{SerializeMap, Serializer};
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn ttl_map<S: Serializer>(
        m: &BTreeMap<u16, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(&k.to_string(), &humantime::format_duration(*v).to_string())?;
        }
        map.end()
    }

    pub(super) fn redacted<S: Serializer>(t: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(_) => s.serialize_str("<redacted>"),
            None => s.serialize_none(),
        }
    }
}
