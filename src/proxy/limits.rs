//! Per-route client ACLs (`allow` / `deny`) and rate limits (`rate_limit`, a token bucket
//! per client address: governor's GCRA), judged on the client address after trusted-proxy
//! resolution. A refused request is answered here (403 / 429 + `Retry-After`) and counted
//! in `outpost_refused_total{reason}`; it never reaches an origin.

use crate::config::{RateLimitConfig, RouteConfig};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The rate limiter of one route.
#[derive(Debug)]
pub struct RouteLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// Checks between sweeps of addresses whose bucket is full again (bounds the memory).
const SWEEP_EVERY: u64 = 4096;

impl RouteLimiter {
    /// `requests` per `per`, plus `burst` more at once: a bucket of `requests + burst`
    /// tokens, refilled at one token every `per / requests`.
    pub fn new(cfg: &RateLimitConfig) -> Option<Self> {
        let requests = u32::try_from(cfg.requests).ok().and_then(NonZeroU32::new)?;
        let capacity = u32::try_from(cfg.requests.saturating_add(cfg.burst))
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MAX);
        let every = (cfg.per / requests.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(every)?.allow_burst(capacity);
        Some(RouteLimiter {
            limiter: RateLimiter::dashmap(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// `None` when `ip` may go on, else how long until it may.
    fn check(&self, ip: IpAddr) -> Option<Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
        }
    }
}

/// What to do with a request on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Outside `allow` or inside `deny`: 403.
    Acl,
    /// Over the rate limit: 429 with `Retry-After` (whole seconds, at least 1).
    Limited {
        retry_after_s: u64,
    },
}

/// Judges `ip` on `route` (deny wins over allow; the rate limit is only charged for
/// requests the ACL lets through).
pub fn judge(route: &RouteConfig, limiter: Option<&RouteLimiter>, ip: IpAddr) -> Verdict {
    let ip = canonical(ip);
    if route.deny.iter().any(|n| n.contains(&ip))
        || (!route.allow.is_empty() && !route.allow.iter().any(|n| n.contains(&ip)))
    {
        return Verdict::Acl;
    }
    match limiter.and_then(|l| l.check(ip)) {
        None => Verdict::Pass,
        Some(wait) => Verdict::Limited {
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        },
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is judged as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::HostMatch;

    fn route(allow: &[&str], deny: &[&str]) -> RouteConfig {
        RouteConfig {
            host: HostMatch::Any,
            prefix: "/".into(),
            origin: 0,
            cache: true,
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
            rate_limit: None,
            slice: 0,
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let r = route(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert_eq!(judge(&r, None, ip("10.1.2.3")), Verdict::Pass);
        assert_eq!(judge(&r, None, ip("10.9.2.3")), Verdict::Acl);
        assert_eq!(judge(&r, None, ip("192.0.2.1")), Verdict::Acl);
        assert_eq!(judge(&r, None, ip("::ffff:10.1.2.3")), Verdict::Pass);
        assert_eq!(
            judge(&route(&[], &[]), None, ip("192.0.2.1")),
            Verdict::Pass
        );
    }

    #[test]
    fn bucket_holds_requests_plus_burst_per_address() {
        let cfg = RateLimitConfig {
            requests: 2,
            per: Duration::from_secs(60),
            burst: 1,
        };
        let l = RouteLimiter::new(&cfg).unwrap();
        let r = route(&[], &[]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(judge(&r, Some(&l), a), Verdict::Pass);
        }
        match judge(&r, Some(&l), a) {
            Verdict::Limited { retry_after_s } => assert!((1..=30).contains(&retry_after_s)),
            v => panic!("{v:?}"),
        }
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            judge(&r, Some(&l), b),
            Verdict::Pass,
            "buckets are per address"
        );
    }
}
