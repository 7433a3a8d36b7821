//! RFC 9111 shared-cache policy, pure: may a response be stored and for how long
//! (`decide`), may a stored one answer this request (`hit_verdict`), what a 304 and an
//! unsafe method do (`merge_304`, `invalidates`). Called by `cache.rs` from the cache
//! phases; no I/O, no clock reads (times come in as `SystemTime`), no pingora `Session`.

use crate::cache::key::{self, VaryFields};
use crate::config::{CacheConfig, ClientCacheControl};
use http::{header, HeaderName, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest delta-seconds value; bigger ones (and overflows) become this (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u32 = 1 << 31;
/// Upper bound of a heuristic freshness lifetime (RFC 9111 §4.2.2 leaves it to the cache).
pub const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);
/// Heuristically cacheable status codes (RFC 9110 §15.1).
const HEURISTIC_STATUSES: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Configuration inputs of the policy; applied only where the origin is silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Status → lifetime when the response has no explicit or heuristic freshness.
    pub default_ttl: BTreeMap<u16, Duration>,
    /// `stale-while-revalidate` when the response has no such directive.
    pub swr: Duration,
    /// `stale-if-error` when the response has no such directive.
    pub sie: Duration,
    /// Whether request `Cache-Control`/`Pragma` count (see [`request_directives`]).
    pub client: ClientCacheControl,
}

impl Defaults {
    /// Takes the `[cache]` settings that the policy needs.
    pub fn from_config(cfg: &CacheConfig) -> Self {
        Defaults {
            default_ttl: cfg.default_ttl.clone(),
            swr: cfg.stale_while_revalidate,
            sie: cfg.stale_if_error,
            client: cfg.client_cache_control,
        }
    }
}

impl Default for Defaults {
    /// No default TTLs, no default stale windows, client directives honoured.
    fn default() -> Self {
        Defaults {
            default_ttl: BTreeMap::new(),
            swr: Duration::ZERO,
            sie: Duration::ZERO,
            client: ClientCacheControl::Honor,
        }
    }
}

/// Outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store the response with this freshness.
    Store(Freshness),
    /// Do not store it (and answer this request from the origin response as is).
    Skip(SkipReason),
}

/// Why a response is not stored; [`SkipReason::as_str`] is the `Cache-Status` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Request method other than GET/HEAD (RFC 9111 §3).
    Method,
    /// Non-final or partial (206) status, or `must-understand` with an unknown status (§3, §5.2.2.3).
    Status,
    /// `no-store` in the response (§5.2.2.5) or the request (§5.2.1.5).
    NoStore,
    /// Unqualified `private` (§5.2.2.7).
    Private,
    /// Request had `Authorization`, response lacks public/s-maxage/must-revalidate (§3.5).
    Authorization,
    /// `Set-Cookie` without an explicit `public` (outpost rule, interface.md §4).
    SetCookie,
    /// `Vary: *` can never be matched (§4.1).
    VaryStar,
    /// Nothing makes it storable: no explicit or heuristic freshness, no `public`, no default TTL (§3).
    NoFreshness,
}

impl SkipReason {
    /// Short token for `Cache-Status: ...; detail=<token>` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Method => "method",
            SkipReason::Status => "status",
            SkipReason::NoStore => "no-store",
            SkipReason::Private => "private",
            SkipReason::Authorization => "authorization",
            SkipReason::SetCookie => "set-cookie",
            SkipReason::VaryStar => "vary-star",
            SkipReason::NoFreshness => "no-freshness",
        }
    }
}

/// Where a freshness lifetime came from (RFC 9111 §4.2.1 order, then outpost defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessSource {
    /// `s-maxage` (§5.2.2.10).
    SMaxAge,
    /// `max-age` (§5.2.2.1).
    MaxAge,
    /// `Expires` − `Date` (§5.3).
    Expires,
    /// 10% of `Date` − `Last-Modified`, capped at [`HEURISTIC_MAX`] (§4.2.2).
    Heuristic,
    /// `cache.default_ttl[status]`.
    DefaultTtl,
    /// Stored for revalidation only (`public` or `no-cache` with a validator): lifetime 0.
    Unspecified,
}

/// How long a stored response stays fresh, in RFC 9111 terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (§4.2.1); 0 for `no-cache` and invalid freshness information.
    pub lifetime: Duration,
    /// `corrected_initial_age` (§4.2.3): max(apparent age from `Date`, `Age` + response delay).
    pub initial_age: Duration,
    /// Stale-while-revalidate window after expiry (RFC 5861 §3); 0 when `no_stale`.
    pub swr: Duration,
    /// Stale-if-error window after expiry (RFC 5861 §4); 0 when `no_stale`.
    pub sie: Duration,
    /// `no-cache`: validate before every use (§5.2.2.4).
    pub revalidate_always: bool,
    /// must-revalidate, proxy-revalidate, s-maxage (§5.2.2.10 implies proxy-revalidate), no-cache.
    pub no_stale: bool,
    /// Where `lifetime` came from.
    pub source: FreshnessSource,
    /// Lower-cased fields named by qualified `private="…"`/`no-cache="…"`: remove before storing.
    pub strip_fields: Vec<String>,
}

impl Freshness {
    /// The instant the response was generated at the origin: `response_time − initial_age`.
    /// Use as pingora's epoch override so the emitted `Age` (now − epoch) counts the incoming `Age`.
    pub fn epoch(&self, response_time: SystemTime) -> SystemTime {
        response_time
            .checked_sub(self.initial_age)
            .unwrap_or(UNIX_EPOCH)
    }

    /// `epoch + lifetime` (§4.2: fresh while lifetime > current age). A response already stale on
    /// arrival gets at most `response_time − 1s`, so pingora never sees it fresh.
    pub fn fresh_until(&self, response_time: SystemTime) -> SystemTime {
        let end = self.epoch(response_time) + self.lifetime;
        if self.lifetime > self.initial_age {
            end
        } else {
            end.min(
                response_time
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or(UNIX_EPOCH),
            )
        }
    }

    /// `swr` in whole seconds for `CacheMeta::new`.
    pub fn swr_secs(&self) -> u32 {
        secs_u32(self.swr)
    }

    /// `sie` in whole seconds for `CacheMeta::new`.
    pub fn sie_secs(&self) -> u32 {
        secs_u32(self.sie)
    }

    /// Removes `strip_fields` from the header about to be stored (§5.2.2.4, §5.2.2.7).
    pub fn strip(&self, resp: &mut ResponseHeader) {
        for name in &self.strip_fields {
            resp.remove_header(name.as_str());
        }
    }
}

fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs())
        .unwrap_or(DELTA_SECONDS_MAX)
        .min(DELTA_SECONDS_MAX)
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

/// Decides whether `resp` (answering `req`) may be stored by a shared cache, and its freshness.
///
/// `request_time`/`response_time` are when the request was sent upstream and the response
/// header arrived (§4.2.3). `CDN-Cache-Control` (RFC 9213), when present and valid, replaces
/// `Cache-Control` *and* `Expires`. For a revalidation pass the merged header
/// ([`merge_304`]); a bare 304 is accepted too and judged as the 200 it validates.
pub fn decide(
    req: &RequestHeader,
    resp: &ResponseHeader,
    request_time: SystemTime,
    response_time: SystemTime,
    d: &Defaults,
) -> Decision {
    let (dirs, targeted) = response_directives(resp);
    let status = match resp.status.as_u16() {
        304 => 200,
        s => s,
    };
    if let Err(reason) = storable(req, resp, &dirs, status, d) {
        return Decision::Skip(reason);
    }
    let date = header_date(resp, header::DATE);
    let origin_date = date.unwrap_or(response_time);
    let public = dirs.has("public");
    let no_cache = dirs.unqualified("no-cache");
    let has_validator =
        resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED);

    // §4.2.1: s-maxage > max-age > Expires; §4.2.2 heuristic only without explicit expiry.
    let found = explicit_lifetime(&dirs, !targeted, resp, origin_date)
        .or_else(|| {
            heuristic(resp, status, public, origin_date).map(|l| (l, FreshnessSource::Heuristic))
        })
        .or_else(|| {
            d.default_ttl
                .get(&status)
                .map(|l| (*l, FreshnessSource::DefaultTtl))
        });
    let (lifetime, source) = match found {
        Some(found) => found,
        None if public || (no_cache && has_validator) => {
            (Duration::ZERO, FreshnessSource::Unspecified)
        }
        None => return Decision::Skip(SkipReason::NoFreshness),
    };
    let no_stale = no_cache
        || dirs.has("must-revalidate")
        || dirs.has("proxy-revalidate")
        || dirs.has("s-maxage");
    let window = |name: &str, default: Duration| match dirs.delta(name) {
        _ if no_stale => Duration::ZERO,
        None => default,
        Some(v) => secs(v.unwrap_or(0)),
    };
    let mut strip_fields = dirs.field_names("private");
    strip_fields.extend(dirs.field_names("no-cache"));
    Decision::Store(Freshness {
        lifetime: if no_cache { Duration::ZERO } else { lifetime },
        initial_age: initial_age(resp, date, request_time, response_time),
        swr: window("stale-while-revalidate", d.swr),
        sie: window("stale-if-error", d.sie),
        revalidate_always: no_cache,
        no_stale,
        source,
        strip_fields,
    })
}

/// RFC 9111 §3 storability checks, in the order that lets the strongest reason win.
fn storable(
    req: &RequestHeader,
    resp: &ResponseHeader,
    dirs: &Directives,
    status: u16,
    d: &Defaults,
) -> Result<(), SkipReason> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(SkipReason::Method);
    }
    // §3: final status; outpost stores whole objects only, so no 206.
    let must_understand = dirs.has("must-understand");
    if status < 200 || status == 206 || (must_understand && !understood(status)) {
        return Err(SkipReason::Status);
    }
    // §5.2.2.3: must-understand with an understood status overrides the response's no-store.
    if (dirs.has("no-store") && !must_understand) || request_directives(req, d.client).no_store {
        return Err(SkipReason::NoStore);
    }
    if dirs.unqualified("private") {
        return Err(SkipReason::Private);
    }
    let public = dirs.has("public");
    let auth_ok = public || dirs.has("s-maxage") || dirs.has("must-revalidate");
    if req.headers.contains_key(header::AUTHORIZATION) && !auth_ok {
        return Err(SkipReason::Authorization);
    }
    if resp.headers.contains_key(header::SET_COOKIE) && !public {
        return Err(SkipReason::SetCookie);
    }
    if key::vary_fields(resp) == VaryFields::Star {
        return Err(SkipReason::VaryStar);
    }
    Ok(())
}

/// Status codes whose semantics this cache implements (for `must-understand`, §5.2.2.3).
fn understood(status: u16) -> bool {
    matches!(status, 200..=208 | 226 | 300..=308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451)
        || matches!(status, 500..=508 | 510 | 511)
}

/// §4.2.1. Invalid values (non-integer, negative, quoted garbage, several `Expires`) mean
/// "already stale" (lifetime 0), as §4.2.1 and §5.3 recommend.
fn explicit_lifetime(
    dirs: &Directives,
    use_expires: bool,
    resp: &ResponseHeader,
    date: SystemTime,
) -> Option<(Duration, FreshnessSource)> {
    if let Some(v) = dirs.delta("s-maxage") {
        return Some((secs(v.unwrap_or(0)), FreshnessSource::SMaxAge));
    }
    if let Some(v) = dirs.delta("max-age") {
        return Some((secs(v.unwrap_or(0)), FreshnessSource::MaxAge));
    }
    if !use_expires {
        return None; // RFC 9213 §2.2: a valid targeted field also overrides Expires.
    }
    let mut all = resp.headers.get_all(header::EXPIRES).iter();
    let lifetime = match (all.next(), all.next()) {
        (None, _) => return None,
        (Some(v), None) => http_date::parse(v.as_bytes())
            .and_then(|exp| exp.duration_since(date).ok())
            .unwrap_or(Duration::ZERO),
        (Some(_), Some(_)) => Duration::ZERO,
    };
    Some((
        lifetime.min(secs(DELTA_SECONDS_MAX)),
        FreshnessSource::Expires,
    ))
}

/// §4.2.2: 10% of the time since `Last-Modified`, for heuristically cacheable statuses or `public`.
fn heuristic(
    resp: &ResponseHeader,
    status: u16,
    public: bool,
    date: SystemTime,
) -> Option<Duration> {
    if !(public || HEURISTIC_STATUSES.contains(&status)) {
        return None;
    }
    let modified = header_date(resp, header::LAST_MODIFIED)?;
    let since = date.duration_since(modified).ok()?;
    Some((since / 10).min(HEURISTIC_MAX))
}

/// §4.2.3 `corrected_initial_age`. A non-numeric or negative `Age` is ignored; of several
/// values (lines or list members) the first counts.
fn initial_age(
    resp: &ResponseHeader,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent = date
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or_default();
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    let age_value = resp
        .headers
        .get(header::AGE)
        .and_then(|v| v.as_bytes().split(|b| *b == b',').next().map(trim_ows))
        .and_then(parse_delta)
        .map(secs)
        .unwrap_or_default();
    apparent.max(age_value + delay).min(secs(DELTA_SECONDS_MAX))
}

fn header_date(resp: &ResponseHeader, name: HeaderName) -> Option<SystemTime> {
    http_date::parse(resp.headers.get(name)?.as_bytes())
}

/// Whether a stored response forbids serving it stale (must-revalidate, proxy-revalidate,
/// s-maxage, no-cache; §4.2.4). For [`hit_verdict`] on a stored header.
pub fn forbids_stale(resp: &ResponseHeader) -> bool {
    let (dirs, _) = response_directives(resp);
    ["must-revalidate", "proxy-revalidate", "s-maxage"]
        .iter()
        .any(|n| dirs.has(n))
        || dirs.unqualified("no-cache")
}

/// Request `Cache-Control` directives (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`, §5.4): validate first.
    pub no_cache: bool,
    /// `no-store`: do not store the response (a stored one may still answer).
    pub no_store: bool,
    /// `max-age=N`: accept a response at most N seconds old.
    pub max_age: Option<u32>,
    /// `max-stale` (`Some(None)`: any staleness) or `max-stale=N`.
    pub max_stale: Option<Option<u32>>,
    /// `min-fresh=N`: must stay fresh for at least N more seconds.
    pub min_fresh: Option<u32>,
    /// `only-if-cached`: answer 504 rather than contact the origin (§5.2.1.7).
    pub only_if_cached: bool,
}

/// Parses the request's directives. Invalid numeric values drop that directive. In
/// [`ClientCacheControl::Ignore`] mode everything is default except `only_if_cached`, which
/// can only spare the origin and is kept.
pub fn request_directives(req: &RequestHeader, mode: ClientCacheControl) -> RequestDirectives {
    let cc = req.headers.get_all(header::CACHE_CONTROL);
    let dirs = Directives::parse(cc.iter().map(|v| v.as_bytes()));
    let only_if_cached = dirs.has("only-if-cached");
    if mode == ClientCacheControl::Ignore {
        return RequestDirectives {
            only_if_cached,
            ..RequestDirectives::default()
        };
    }
    let pragma_no_cache = || {
        let pragma = req.headers.get_all(header::PRAGMA);
        let pragma = Directives::parse(pragma.iter().map(|v| v.as_bytes()));
        cc.iter().next().is_none() && pragma.has("no-cache")
    };
    RequestDirectives {
        no_cache: dirs.has("no-cache") || pragma_no_cache(),
        no_store: dirs.has("no-store"),
        max_age: dirs.delta("max-age").flatten(),
        max_stale: match dirs.get("max-stale") {
            Some(Arg::Empty) => Some(None),
            Some(_) => dirs.delta("max-stale").flatten().map(Some),
            None => None,
        },
        min_fresh: dirs.delta("min-fresh").flatten(),
        only_if_cached,
    }
}

/// Whether a stored response may answer a request (RFC 9111 §4.2.4, §5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitVerdict {
    /// Fresh and acceptable: serve it (pingora: no forced freshness).
    Fresh,
    /// Stale, but the request's `max-stale` accepts it: serve it (pingora `ForceFresh`).
    StaleAllowed,
    /// Stale: usual path, the stored SWR/SIE windows apply (pingora: no forced freshness).
    Stale,
    /// Stale and the response forbids serving stale: validate now, no SWR/SIE (`ForceExpired`).
    MustRevalidate,
    /// The request demands validation (no-cache, max-age, min-fresh): `ForceExpired`,
    /// `Cache-Status: fwd=request`.
    ClientRevalidate,
}

/// `age` = now − epoch; `lifetime` = fresh_until − epoch (pingora `CacheMeta`); `no_stale` from
/// [`Freshness::no_stale`] or [`forbids_stale`]. `only_if_cached` is left to the caller:
/// anything but `Fresh`/`StaleAllowed` then becomes a 504 (§5.2.1.7).
pub fn hit_verdict(
    age: Duration,
    lifetime: Duration,
    rd: &RequestDirectives,
    no_stale: bool,
) -> HitVerdict {
    let too_old = rd.max_age.is_some_and(|m| age > secs(m)); // §5.2.1.1
    let remaining = lifetime.checked_sub(age).filter(|r| !r.is_zero());
    // §5.2.1.3: min-fresh needs that much freshness left; a stale response has none.
    let not_fresh_enough = rd
        .min_fresh
        .is_some_and(|m| remaining.is_none_or(|r| r < secs(m)));
    if rd.no_cache || too_old || not_fresh_enough {
        return HitVerdict::ClientRevalidate; // §5.2.1.4 for no-cache
    }
    if remaining.is_some() {
        return HitVerdict::Fresh;
    }
    if no_stale {
        return HitVerdict::MustRevalidate; // §5.2.2.2: beats max-stale
    }
    let staleness = age.saturating_sub(lifetime);
    match rd.max_stale {
        Some(None) => HitVerdict::StaleAllowed,
        Some(Some(n)) if staleness <= secs(n) => HitVerdict::StaleAllowed, // §5.2.1.2
        _ => HitVerdict::Stale,
    }
}

/// §4.4: a non-error (2xx/3xx) response to an unsafe method (anything but GET, HEAD,
/// OPTIONS, TRACE; unknown methods count as unsafe) invalidates the target URI and the
/// same-origin `Location`/`Content-Location` (see `key::invalidation_keys`).
pub fn invalidates(method: &Method, status: u16) -> bool {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    !safe && (200..400).contains(&status)
}

/// Header fields a 304 must not overwrite: body framing/coding of the stored body (§3.2),
/// hop-by-hop fields (§3.1), and `Vary`, which the stored entry's secondary key depends on.
const NOT_UPDATED: [HeaderName; 13] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
    header::CONTENT_RANGE,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-authentication-info"),
    header::VARY,
];

/// RFC 9111 §4.3.4 / §3.2: the stored header updated by a 304. Every field of the 304
/// replaces all stored values of that name, except [`NOT_UPDATED`] and fields listed in the
/// 304's `Connection`. Status and body-related fields stay. The stored `Date` and `Age`
/// describe the old message, so they are dropped when the 304 has none (else the refreshed
/// entry would look old); the caller may add a `Date` when serving.
pub fn merge_304(stored: &ResponseHeader, not_modified: &ResponseHeader) -> ResponseHeader {
    let mut merged = stored.clone();
    let connection = not_modified.headers.get_all(header::CONNECTION);
    let listed = Directives::parse(connection.iter().map(|v| v.as_bytes()));
    for name in not_modified.headers.keys() {
        if NOT_UPDATED.contains(name) || listed.has(name.as_str()) {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            // Cannot fail: the value is already a valid `HeaderValue`.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    for name in [header::DATE, header::AGE] {
        if !not_modified.headers.contains_key(&name) {
            merged.remove_header(&name);
        }
    }
    merged
}

mod directives;
mod http_date;

use directives::{parse_delta, response_directives, trim_ows, Arg, Directives};

#[cfg(test)]
mod tests;
