//! `Cache-Status` (RFC 9211, interface.md §4) as a typed value with one writer: its
//! `Display`. Whoever answers a request (the cache phases, the slice server, error pages,
//! the PURGE method, the connection layer) builds a [`CacheStatus`]; nobody formats the
//! field by hand. Typed reasons: [`Bypass`] (why the cache was not used) and [`NotStored`]
//! (why a fetched response was not stored).

use super::policy::SkipReason;
use std::fmt;

/// Why the cache was not used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The route does not cache (`cache = false`), or the answer is the proxy's own.
    Route,
    /// A method the cache does not serve (not GET/HEAD): `fwd=method`.
    Method,
    /// The key was remembered as uncacheable (hit-for-pass).
    Remembered,
}

/// Why a fetched response was not stored (`detail=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// RFC 9111 said no.
    Policy(SkipReason),
    /// Larger than `max_object` or any tier.
    TooLarge,
    /// The request had `no-store`.
    RequestNoStore,
}

impl NotStored {
    /// The `detail=` token.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Policy(r) => r.as_str(),
            NotStored::TooLarge => "too-large",
            NotStored::RequestNoStore => "request-no-store",
        }
    }
}

/// The `fwd=` parameter: why the request went forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    UriMiss,
    VaryMiss,
    Stale,
    /// The client forced validation.
    Request,
    Bypass,
    Method,
    /// Some slices of a sliced answer came from the origin.
    Partial,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::Partial => "partial",
        }
    }
}

impl From<Bypass> for Fwd {
    fn from(b: Bypass) -> Fwd {
        match b {
            Bypass::Method => Fwd::Method,
            Bypass::Route | Bypass::Remembered => Fwd::Bypass,
        }
    }
}

/// The `detail=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    StaleIfError,
    StaleWhileRevalidate,
    NotStored(NotStored),
    /// An answer the proxy wrote itself (refusals, upstream failures, purge): the token of
    /// interface.md §3 (`origin-timeout`, `rate-limited`, `purge`, ...).
    Answer(&'static str),
}

impl Detail {
    fn as_str(self) -> &'static str {
        match self {
            Detail::StaleIfError => "stale-if-error",
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::NotStored(n) => n.as_str(),
            Detail::Answer(token) => token,
        }
    }
}

/// Hit or forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from cache; `ttl` seconds of freshness left (negative when stale), if known.
    Hit { ttl: Option<i64> },
    /// Went forward, with the origin's status when it matters (`fwd-status=304`).
    Fwd { fwd: Fwd, status: Option<u16> },
}

/// outpost's `Cache-Status` entry for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    pub outcome: Outcome,
    /// The response was stored (or its stored copy refreshed).
    pub stored: bool,
    /// Waited for another request's fetch (coalesced).
    pub collapsed: bool,
    pub detail: Option<Detail>,
}

impl CacheStatus {
    /// A hit with `ttl` seconds left.
    pub fn hit(ttl: Option<i64>) -> Self {
        Self::of(Outcome::Hit { ttl })
    }

    /// Forwarded for `fwd`.
    pub fn fwd(fwd: Fwd) -> Self {
        Self::of(Outcome::Fwd { fwd, status: None })
    }

    /// An answer the proxy wrote itself (`fwd` and a §3 detail token).
    pub fn answer(fwd: Fwd, detail: &'static str) -> Self {
        Self::fwd(fwd).with(Detail::Answer(detail))
    }

    fn of(outcome: Outcome) -> Self {
        CacheStatus {
            outcome,
            stored: false,
            collapsed: false,
            detail: None,
        }
    }

    /// With a detail.
    pub fn with(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Marked stored.
    pub fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    /// With the origin's status.
    pub fn fwd_status(mut self, status: u16) -> Self {
        if let Outcome::Fwd { status: s, .. } = &mut self.outcome {
            *s = Some(status);
        }
        self
    }

    /// Marked collapsed.
    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outpost")?;
        match self.outcome {
            Outcome::Hit { ttl } => {
                f.write_str("; hit")?;
                if let Some(ttl) = ttl {
                    write!(f, "; ttl={ttl}")?;
                }
            }
            Outcome::Fwd { fwd, status } => {
                write!(f, "; fwd={}", fwd.as_str())?;
                if let Some(s) = status {
                    write!(f, "; fwd-status={s}")?;
                }
            }
        }
        if self.collapsed {
            f.write_str("; collapsed")?;
        }
        match self.detail {
            // A response that was not stored says why instead of "stored".
            Some(d @ Detail::NotStored(_)) => write!(f, "; detail={}", d.as_str()),
            Some(d) => {
                if self.stored {
                    f.write_str("; stored")?;
                }
                write!(f, "; detail={}", d.as_str())
            }
            None if self.stored => f.write_str("; stored"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_renders_as_interface_md_4_says() {
        let cases = [
            (CacheStatus::hit(Some(42)), "outpost; hit; ttl=42"),
            (
                CacheStatus::hit(Some(-3)).with(Detail::StaleIfError),
                "outpost; hit; ttl=-3; detail=stale-if-error",
            ),
            (CacheStatus::hit(None), "outpost; hit"),
            (
                CacheStatus::fwd(Fwd::UriMiss).stored(true),
                "outpost; fwd=uri-miss; stored",
            ),
            (
                CacheStatus::fwd(Fwd::UriMiss).with(Detail::NotStored(NotStored::TooLarge)),
                "outpost; fwd=uri-miss; detail=too-large",
            ),
            (
                CacheStatus::fwd(Fwd::UriMiss)
                    .stored(true)
                    .with(Detail::NotStored(NotStored::Policy(SkipReason::Private))),
                "outpost; fwd=uri-miss; detail=private",
            ),
            (
                CacheStatus::fwd(Fwd::Stale).fwd_status(304).stored(true),
                "outpost; fwd=stale; fwd-status=304; stored",
            ),
            (
                CacheStatus::fwd(Fwd::UriMiss).collapsed(),
                "outpost; fwd=uri-miss; collapsed",
            ),
            (
                CacheStatus::answer(Fwd::Bypass, "purge"),
                "outpost; fwd=bypass; detail=purge",
            ),
            (
                CacheStatus::fwd(Bypass::Method.into()),
                "outpost; fwd=method",
            ),
            (
                CacheStatus::fwd(Bypass::Remembered.into()),
                "outpost; fwd=bypass",
            ),
        ];
        for (status, want) in cases {
            assert_eq!(status.to_string(), want);
        }
    }
}
