//! Validation of `[[origin]]` pools and `[[route]]` rules: unique names, servers
//! and weights, health-check settings, host patterns and route → origin
//! resolution. Part of `validate.rs`, split out to keep each file small.

use super::raw::{RawHealth, RawOrigin, RawRoute};
use super::reader::{Errors, KeyPath, MISSING};
use super::types::{
    HealthConfig, HostMatch, OriginConfig, RateLimitConfig, RouteConfig, ServerAddr,
};
use super::units;
use std::time::Duration;

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn positive(d: Duration, at: &KeyPath, errs: &Errors) {
    errs.require(!d.is_zero(), at, "must be greater than 0s");
}

/// The validated origins, and whether every one of them has a usable name (if not,
/// "no origin named" errors on routes would only echo the first problem).
pub(super) fn origins(raw: Option<Vec<RawOrigin>>, errs: &Errors) -> (Vec<OriginConfig>, bool) {
    let Some(raw) = raw else {
        return (Vec::new(), false);
    };
    errs.require(
        !raw.is_empty(),
        &KeyPath::default().field("origin"),
        "at least one [[origin]] is required",
    );
    let mut names_known = true;
    let mut out: Vec<OriginConfig> = Vec::new();
    let mut seen: Vec<(String, KeyPath)> = Vec::new();
    for o in raw {
        let name_at = o.at.field("name");
        let name = o.name.clone().unwrap_or_default();
        match (&o.name, seen.iter().find(|(n, _)| *n == name)) {
            (None, _) => {
                names_known = false;
                errs.add(&name_at, MISSING);
            }
            (Some(n), _) if n.trim().is_empty() => {
                names_known = false;
                errs.add(&name_at, "must not be empty");
            }
            (Some(_), Some((_, first))) => {
                errs.add(
                    &name_at,
                    format!("duplicate origin name {name:?} (also {first})"),
                );
            }
            (Some(_), None) => seen.push((name.clone(), o.at.clone())),
        }
        out.push(origin(o, name, errs));
    }
    (out, names_known)
}

fn origin(o: RawOrigin, name: String, errs: &Errors) -> OriginConfig {
    let servers_at = o.at.field("servers");
    errs.require(
        o.servers_given,
        &servers_at,
        "must list at least one server",
    );
    let mut servers: Vec<ServerAddr> = Vec::new();
    for (i, s) in o.servers.iter().enumerate() {
        errs.require(
            s.value.weight > 0,
            &s.at.field("weight"),
            "must be at least 1",
        );
        if let Some(j) = o.servers[..i]
            .iter()
            .position(|p| p.value.addr == s.value.addr)
        {
            errs.add(
                &s.at,
                format!(
                    "duplicate server {} (also {})",
                    s.value.addr,
                    servers_at.index(j)
                ),
            );
        }
        servers.push(ServerAddr {
            addr: s.value.addr,
            weight: to_usize(s.value.weight),
        });
    }
    positive(o.connect_timeout, &o.at.field("connect_timeout"), errs);
    positive(o.read_timeout, &o.at.field("read_timeout"), errs);
    OriginConfig {
        name,
        servers,
        selection: o.selection,
        connect_timeout: o.connect_timeout,
        read_timeout: o.read_timeout,
        retries: to_usize(o.retries),
        tls: o.tls,
        sni: o.sni,
        ca: (!o.ca.trim().is_empty()).then(|| std::path::PathBuf::from(o.ca.trim())),
        verify: o.verify,
        host: o.host,
        health: o.health.map(|h| health(h, errs)),
    }
}

fn health(raw: RawHealth, errs: &Errors) -> HealthConfig {
    let at = &raw.at;
    errs.require(
        raw.path.starts_with('/'),
        &at.field("path"),
        "must start with '/'",
    );
    positive(raw.interval, &at.field("interval"), errs);
    positive(raw.timeout, &at.field("timeout"), errs);
    errs.require(raw.fails > 0, &at.field("fails"), "must be at least 1");
    errs.require(raw.passes > 0, &at.field("passes"), "must be at least 1");
    errs.require(
        !raw.expect_status.is_empty() || raw.expect_status_given,
        &at.field("expect_status"),
        "must list at least one status",
    );
    let mut expect_status = Vec::new();
    for s in &raw.expect_status {
        match u16::try_from(s.value)
            .ok()
            .filter(|c| (100..=599).contains(c))
        {
            Some(code) => expect_status.push(code),
            None => errs.add(
                &s.at,
                format!("expected an HTTP status code (100-599), got {}", s.value),
            ),
        }
    }
    HealthConfig {
        path: raw.path,
        interval: raw.interval,
        timeout: raw.timeout,
        fails: to_usize(raw.fails),
        passes: to_usize(raw.passes),
        expect_status,
    }
}

pub(super) fn routes(
    raw: Option<Vec<RawRoute>>,
    origins: &[OriginConfig],
    names_known: bool,
    errs: &Errors,
) -> Vec<RouteConfig> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    errs.require(
        !raw.is_empty(),
        &KeyPath::default().field("route"),
        "at least one [[route]] is required",
    );
    let mut out: Vec<(KeyPath, RouteConfig)> = Vec::new();
    for r in raw {
        let host = host_match(&r.host, &r.at.field("host"), errs);
        errs.require(
            r.prefix.starts_with('/'),
            &r.at.field("prefix"),
            "must start with '/'",
        );
        let origin = resolve_origin(
            r.origin.as_deref(),
            origins,
            names_known,
            &r.at.field("origin"),
            errs,
        );
        let rl = &r.rate_limit;
        let rate_limit = (rl.requests > 0).then_some(RateLimitConfig {
            requests: rl.requests,
            per: rl.per,
            burst: rl.burst,
        });
        if rate_limit.is_some() {
            positive(rl.per, &rl.at.field("per"), errs);
        } else if rl.burst > 0 {
            errs.add(
                &rl.at.field("burst"),
                "has no effect while requests = 0 (rate limiting is off)",
            );
        }
        let route = RouteConfig {
            host,
            prefix: r.prefix,
            origin: origin.unwrap_or(0),
            cache: r.cache,
            allow: r.allow,
            deny: r.deny,
            rate_limit,
            slice: r.slice,
        };
        if let Some((first, _)) = out
            .iter()
            .find(|(_, o)| o.host == route.host && o.prefix == route.prefix)
        {
            errs.add(
                &r.at,
                format!("same host and prefix as {first}, so it can never match"),
            );
        }
        out.push((r.at, route));
    }
    out.into_iter().map(|(_, r)| r).collect()
}

fn resolve_origin(
    name: Option<&str>,
    origins: &[OriginConfig],
    names_known: bool,
    at: &KeyPath,
    errs: &Errors,
) -> Option<usize> {
    let Some(name) = name else {
        errs.add(at, MISSING);
        return None;
    };
    let found = origins.iter().position(|o| o.name == name);
    if found.is_none() && names_known {
        let hint = units::suggestion(name, origins.iter().map(|o| o.name.as_str()));
        errs.add(at, format!("no origin named {name:?}{hint}"));
    }
    found
}

/// `"*"`, `"*.example.test"` or an exact host; lower-cased.
fn host_match(host: &str, at: &KeyPath, errs: &Errors) -> HostMatch {
    let host = host.trim().to_ascii_lowercase();
    if host == "*" {
        return HostMatch::Any;
    }
    let (suffix, bare) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let ok = !bare.is_empty()
        && !bare.starts_with('.')
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']'));
    if !ok {
        errs.add(
            at,
            format!("expected an exact host, \"*.example.test\" or \"*\", got {host:?}"),
        );
    }
    match suffix {
        true => HostMatch::Suffix(format!(".{bare}")),
        false => HostMatch::Exact(host),
    }
}
