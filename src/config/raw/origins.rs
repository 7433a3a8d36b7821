//! File shape of `[[origin]]` (with `[origin.health]` and its server list) and
//! `[[route]]`: keys, types and defaults. Cross-checks (unique names, weights,
//! route → origin) are in `config/routing.rs`.

use super::secs;
use crate::config::reader::{self, items, Errors, Item, KeyPath, Section};
use crate::config::types::Selection;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Value;

#[derive(Debug)]
pub(in crate::config) struct RawOrigin {
    pub(in crate::config) at: KeyPath,
    pub(in crate::config) name: Option<String>,
    pub(in crate::config) servers: Vec<Item<RawServerAddr>>,
    pub(in crate::config) servers_given: bool,
    pub(in crate::config) selection: Selection,
    pub(in crate::config) connect_timeout: Duration,
    pub(in crate::config) read_timeout: Duration,
    pub(in crate::config) retries: u64,
    pub(in crate::config) tls: bool,
    pub(in crate::config) sni: String,
    pub(in crate::config) ca: String,
    pub(in crate::config) verify: bool,
    pub(in crate::config) host: String,
    pub(in crate::config) health: Option<RawHealth>,
}

#[derive(Debug)]
pub(in crate::config) struct RawServerAddr {
    pub(in crate::config) addr: SocketAddr,
    pub(in crate::config) weight: u64,
}

#[derive(Debug)]
pub(in crate::config) struct RawHealth {
    pub(in crate::config) at: KeyPath,
    pub(in crate::config) path: String,
    pub(in crate::config) interval: Duration,
    pub(in crate::config) timeout: Duration,
    pub(in crate::config) fails: u64,
    pub(in crate::config) passes: u64,
    pub(in crate::config) expect_status: Vec<Item<u64>>,
    pub(in crate::config) expect_status_given: bool,
}

const SELECTIONS: [(&str, Selection); 5] = [
    ("round_robin", Selection::RoundRobin),
    // interface.md: "weighted = round_robin"; weights apply to every selection but least_conn.
    ("weighted", Selection::RoundRobin),
    ("consistent", Selection::Consistent),
    ("random", Selection::Random),
    ("least_conn", Selection::LeastConn),
];

pub(super) fn origin(mut s: Section<'_>) -> RawOrigin {
    let raw = RawOrigin {
        at: s.at().clone(),
        name: s.get("name", &reader::string),
        servers_given: s.given("servers"),
        servers: s.list("servers", &server_addr).unwrap_or_default(),
        selection: s.get_or(
            "selection",
            &|v, at, e| reader::choice(v, at, e, &SELECTIONS),
            Selection::RoundRobin,
        ),
        connect_timeout: s.get_or("connect_timeout", &reader::duration, secs(2)),
        read_timeout: s.get_or("read_timeout", &reader::duration, secs(30)),
        retries: s.get_or("retries", &reader::uint, 1),
        tls: s.get_or("tls", &reader::boolean, false),
        sni: s.get_or("sni", &reader::string, String::new()),
        ca: s.get_or("ca", &reader::string, String::new()),
        verify: s.get_or("verify", &reader::boolean, true),
        host: s.get_or("host", &reader::string, String::new()),
        health: s.optional_section("health").map(health),
    };
    s.finish();
    raw
}

/// `"ip:port"` or `{ addr = "ip:port", weight = N }` (weight defaults to 1).
fn server_addr(v: &Value, at: &KeyPath, errs: &Errors) -> Option<RawServerAddr> {
    match v {
        Value::Table(t) => {
            let mut s = Section::nested(t, at.clone(), errs);
            let addr_at = at.field("addr");
            let addr = match s.value("addr") {
                Some(v) => reader::addr(v, &addr_at, errs),
                None => {
                    errs.add(&addr_at, reader::MISSING);
                    None
                }
            };
            let weight = s.get_or("weight", &reader::uint, 1);
            s.finish();
            addr.map(|addr| RawServerAddr { addr, weight })
        }
        Value::String(_) => reader::addr(v, at, errs).map(|addr| RawServerAddr { addr, weight: 1 }),
        other => {
            let got = reader::describe(other);
            errs.add(
                at,
                format!("expected \"ip:port\" or {{ addr = \"ip:port\", weight = N }}, got {got}"),
            );
            None
        }
    }
}

fn health(mut s: Section<'_>) -> RawHealth {
    let status_at = s.at().field("expect_status");
    let raw = RawHealth {
        at: s.at().clone(),
        path: s.get_or("path", &reader::string, "/health".to_string()),
        interval: s.get_or("interval", &reader::duration, secs(5)),
        timeout: s.get_or("timeout", &reader::duration, secs(1)),
        fails: s.get_or("fails", &reader::uint, 2),
        passes: s.get_or("passes", &reader::uint, 2),
        expect_status_given: s.given("expect_status"),
        expect_status: s
            .list("expect_status", &reader::uint)
            .unwrap_or_else(|| items(&status_at, vec![200])),
    };
    s.finish();
    raw
}

// === [[route]] ===

#[derive(Debug)]
pub(in crate::config) struct RawRoute {
    pub(in crate::config) at: KeyPath,
    pub(in crate::config) host: String,
    pub(in crate::config) prefix: String,
    pub(in crate::config) origin: Option<String>,
    pub(in crate::config) cache: bool,
    pub(in crate::config) allow: Vec<IpNet>,
    pub(in crate::config) deny: Vec<IpNet>,
    pub(in crate::config) rate_limit: RawRateLimit,
    /// Slice size in bytes; 0 = off.
    pub(in crate::config) slice: u64,
}

/// `rate_limit = { requests = N, per = "1s", burst = M }`; `requests = 0` is off.
#[derive(Debug)]
pub(in crate::config) struct RawRateLimit {
    pub(in crate::config) at: KeyPath,
    pub(in crate::config) requests: u64,
    pub(in crate::config) per: Duration,
    pub(in crate::config) burst: u64,
}

pub(super) fn route(mut s: Section<'_>) -> RawRoute {
    let raw = RawRoute {
        at: s.at().clone(),
        host: s.get_or("host", &reader::string, "*".to_string()),
        prefix: s.get_or("prefix", &reader::string, "/".to_string()),
        origin: s.get("origin", &reader::string),
        cache: s.get_or("cache", &reader::boolean, true),
        allow: s.list_or("allow", &reader::cidr, Vec::new()),
        deny: s.list_or("deny", &reader::cidr, Vec::new()),
        rate_limit: rate_limit(s.section("rate_limit")),
        slice: s.get_or("slice", &reader::size, 0),
    };
    s.finish();
    raw
}

fn rate_limit(mut s: Section<'_>) -> RawRateLimit {
    let raw = RawRateLimit {
        at: s.at().clone(),
        requests: s.get_or("requests", &reader::uint, 0),
        per: s.get_or("per", &reader::duration, secs(1)),
        burst: s.get_or("burst", &reader::uint, 0),
    };
    s.finish();
    raw
}
