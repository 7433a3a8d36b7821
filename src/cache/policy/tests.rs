//! Table tests for the RFC 9111 policy: one directive per case, each citing its section.
//! Times are fixed (`T0` = 2023-11-14T22:13:20Z); nothing sleeps or reads the clock.
#![allow(clippy::unwrap_used)]

use super::*;

/// Header list of a table row.
type Headers<'a> = &'a [(&'a str, &'a str)];
use std::time::UNIX_EPOCH;

const T0: u64 = 1_700_000_000;

fn t(offset: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0.checked_add_signed(offset).unwrap())
}

/// Test-only IMF-fixdate formatter (H. Hinnant's `civil_from_days`).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        WD[usize::try_from(days % 7).unwrap()],
        MON[usize::try_from(m - 1).unwrap()],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, b"/", None).unwrap();
    for (n, v) in headers {
        r.append_header(n.to_string(), *v).unwrap();
    }
    r
}

fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).unwrap();
    for (n, v) in headers {
        r.append_header(n.to_string(), *v).unwrap();
    }
    r
}

/// What a table row expects from `decide`: lifetime in seconds and its source, or a skip.
#[derive(Debug, PartialEq)]
enum Got {
    Store(u64, FreshnessSource),
    Skip(SkipReason),
}

use FreshnessSource::{DefaultTtl, Expires, Heuristic, MaxAge, SMaxAge, Unspecified};
use SkipReason::{
    Authorization, Method as BadMethod, NoFreshness, NoStore, Private, SetCookie, Status, VaryStar,
};

fn got(d: Decision) -> Got {
    match d {
        Decision::Store(f) => Got::Store(f.lifetime.as_secs(), f.source),
        Decision::Skip(r) => Got::Skip(r),
    }
}

/// `decide` for a GET with no request headers, sent and answered at `T0`.
fn decide_resp(status: u16, headers: &[(&str, &str)], d: &Defaults) -> Decision {
    decide(&req("GET", &[]), &resp(status, headers), t(0), t(0), d)
}

fn store(d: Decision) -> Freshness {
    match d {
        Decision::Store(f) => f,
        Decision::Skip(r) => panic!("expected Store, got Skip({r:?})"),
    }
}

const MAX: u64 = 1 << 31;

#[test]
fn storability_shared_cache_rules() {
    #[rustfmt::skip]
    type Row<'a> = (&'a str, &'a str, Headers<'a>, u16, Headers<'a>, Got);
    #[rustfmt::skip]
    let cases: &[Row] = &[
        ("§3 GET", "GET", &[], 200, &[("cache-control", "max-age=60")], Got::Store(60, MaxAge)),
        ("§3 HEAD", "HEAD", &[], 200, &[("cache-control", "max-age=60")], Got::Store(60, MaxAge)),
        ("§3 POST", "POST", &[], 200, &[("cache-control", "max-age=60")], Got::Skip(BadMethod)),
        ("§3 M-SEARCH", "M-SEARCH", &[], 200, &[("cache-control", "max-age=60")], Got::Skip(BadMethod)),
        ("§3 non-final", "GET", &[], 103, &[("cache-control", "max-age=60")], Got::Skip(Status)),
        ("§3 206 partial", "GET", &[], 206, &[("cache-control", "max-age=60")], Got::Skip(Status)),
        ("§4.3.4 bare 304 = its 200", "GET", &[], 304, &[("cache-control", "max-age=60")], Got::Store(60, MaxAge)),
        ("§5.2.2.5 no-store", "GET", &[], 200, &[("cache-control", "no-store")], Got::Skip(NoStore)),
        ("§5.2 case-insensitive", "GET", &[], 200, &[("cache-control", "No-StOrE")], Got::Skip(NoStore)),
        ("§5.2.2.5 beats max-age", "GET", &[], 200, &[("cache-control", "max-age=60, no-store")], Got::Skip(NoStore)),
        ("§5.2.2.5 on its own line", "GET", &[], 200, &[("cache-control", "max-age=60"), ("cache-control", "no-store")], Got::Skip(NoStore)),
        ("§5.2.1.5 request no-store", "GET", &[("cache-control", "no-store")], 200, &[("cache-control", "max-age=60")], Got::Skip(NoStore)),
        ("§5.2.2.3 must-understand", "GET", &[], 200, &[("cache-control", "must-understand, no-store, max-age=60")], Got::Store(60, MaxAge)),
        ("§5.2.2.3 unknown status", "GET", &[], 599, &[("cache-control", "must-understand, no-store, max-age=60")], Got::Skip(Status)),
        ("§5.2.2.7 private", "GET", &[], 200, &[("cache-control", "private, max-age=60")], Got::Skip(Private)),
        ("§5.2.2.7 PRIVATE", "GET", &[], 200, &[("cache-control", "max-age=60, PRIVATE")], Got::Skip(Private)),
        ("§5.2.2.7 qualified private", "GET", &[], 200, &[("cache-control", "private=\"x-a\", max-age=60")], Got::Store(60, MaxAge)),
        ("§3.5 authorization", "GET", &[("authorization", "Basic eA==")], 200, &[("cache-control", "max-age=60")], Got::Skip(Authorization)),
        ("§3.5 + public", "GET", &[("authorization", "Basic eA==")], 200, &[("cache-control", "public, max-age=60")], Got::Store(60, MaxAge)),
        ("§3.5 + s-maxage", "GET", &[("authorization", "Basic eA==")], 200, &[("cache-control", "s-maxage=60")], Got::Store(60, SMaxAge)),
        ("§3.5 + must-revalidate", "GET", &[("authorization", "Basic eA==")], 200, &[("cache-control", "must-revalidate, max-age=60")], Got::Store(60, MaxAge)),
        ("outpost set-cookie", "GET", &[], 200, &[("cache-control", "max-age=60"), ("set-cookie", "a=b")], Got::Skip(SetCookie)),
        ("outpost set-cookie + public", "GET", &[], 200, &[("cache-control", "public, max-age=60"), ("set-cookie", "a=b")], Got::Store(60, MaxAge)),
        ("§4.1 Vary: *", "GET", &[], 200, &[("cache-control", "max-age=60"), ("vary", "*")], Got::Skip(VaryStar)),
        ("§4.1 Vary: Foo, *", "GET", &[], 200, &[("cache-control", "max-age=60"), ("vary", "Foo, *")], Got::Skip(VaryStar)),
        ("§4.1 Vary: Foo", "GET", &[], 200, &[("cache-control", "max-age=60"), ("vary", "Foo")], Got::Store(60, MaxAge)),
        ("§3 nothing storable", "GET", &[], 200, &[], Got::Skip(NoFreshness)),
        ("§3 public alone", "GET", &[], 200, &[("cache-control", "public")], Got::Store(0, Unspecified)),
        ("§5.2.2.4 no-cache + ETag", "GET", &[], 200, &[("cache-control", "no-cache"), ("etag", "\"a\"")], Got::Store(0, Unspecified)),
        ("§5.2.2.4 no-cache, no validator", "GET", &[], 200, &[("cache-control", "no-cache")], Got::Skip(NoFreshness)),
        ("§5.2.2.4 no-cache beats max-age", "GET", &[], 200, &[("cache-control", "max-age=10000, No-CaChE")], Got::Store(0, MaxAge)),
    ];
    for (cite, method, rq, status, rs, want) in cases {
        let d = decide(
            &req(method, rq),
            &resp(*status, rs),
            t(0),
            t(0),
            &Defaults::default(),
        );
        assert_eq!(got(d), *want, "{cite}: {method} {rq:?} → {status} {rs:?}");
    }
}

#[test]
fn freshness_lifetime_order_and_parsing() {
    let now = http_date(t(0));
    let hour = http_date(t(3600));
    let past = http_date(t(-10_000));
    let earlier = http_date(t(-100));
    let later = http_date(t(3500));
    let year_ago = http_date(t(-365 * 86_400));
    let future = http_date(t(100));
    #[rustfmt::skip]
    let cases: &[(&str, u16, Headers, Got)] = &[
        ("§4.2.1 s-maxage > max-age", 200, &[("cache-control", "s-maxage=10, max-age=60")], Got::Store(10, SMaxAge)),
        ("§4.2.1 s-maxage > max-age, reversed", 200, &[("cache-control", "max-age=3600, s-maxage=1")], Got::Store(1, SMaxAge)),
        ("§4.2.1 s-maxage on another line", 200, &[("cache-control", "max-age=3600"), ("cache-control", "s-maxage=1")], Got::Store(1, SMaxAge)),
        ("§4.2.1 max-age > Expires", 200, &[("cache-control", "max-age=60"), ("expires", &hour), ("date", &now)], Got::Store(60, MaxAge)),
        ("§4.2.1 max-age=0 > future Expires", 200, &[("cache-control", "max-age=0"), ("expires", &hour), ("date", &now)], Got::Store(0, MaxAge)),
        ("§4.2.1 max-age > invalid Expires", 200, &[("cache-control", "max-age=3600"), ("expires", "0"), ("date", &now)], Got::Store(3600, MaxAge)),
        ("§5.3 Expires − Date", 200, &[("expires", &hour), ("date", &now)], Got::Store(3600, Expires)),
        ("§5.3 Expires − Date, skewed origin clock", 200, &[("expires", &later), ("date", &earlier)], Got::Store(3600, Expires)),
        ("§5.3 Expires without Date: response_time", 200, &[("expires", &hour)], Got::Store(3600, Expires)),
        ("§5.3 Expires in the past", 200, &[("expires", &past), ("date", &now)], Got::Store(0, Expires)),
        ("§5.3 invalid Expires = past", 200, &[("expires", "0")], Got::Store(0, Expires)),
        ("§4.2.1 two Expires = stale", 200, &[("expires", &hour), ("expires", &hour)], Got::Store(0, Expires)),
        ("§4.2.2 heuristic 10%", 200, &[("last-modified", &past), ("date", &now)], Got::Store(1000, Heuristic)),
        ("§4.2.2 heuristic 404", 404, &[("last-modified", &past), ("date", &now)], Got::Store(1000, Heuristic)),
        ("§4.2.2 heuristic 501", 501, &[("last-modified", &past), ("date", &now)], Got::Store(1000, Heuristic)),
        ("§4.2.2 403 not heuristic", 403, &[("last-modified", &past), ("date", &now)], Got::Skip(NoFreshness)),
        ("§4.2.2 503 not heuristic", 503, &[("last-modified", &past), ("date", &now)], Got::Skip(NoFreshness)),
        ("§4.2.2 public makes 599 heuristic", 599, &[("cache-control", "public"), ("last-modified", &past), ("date", &now)], Got::Store(1000, Heuristic)),
        ("§4.2.2 heuristic capped", 200, &[("last-modified", &year_ago), ("date", &now)], Got::Store(86_400, Heuristic)),
        ("§4.2.2 Last-Modified in the future", 200, &[("last-modified", &future), ("date", &now)], Got::Skip(NoFreshness)),
        ("§4.2.2 not with explicit expiry", 200, &[("cache-control", "max-age=5"), ("last-modified", &past)], Got::Store(5, MaxAge)),
        ("§5.2 MaX-aGe", 200, &[("cache-control", "MaX-aGe=3600")], Got::Store(3600, MaxAge)),
        ("§5.2 quoted value", 200, &[("cache-control", "max-age=\"3600\"")], Got::Store(3600, MaxAge)),
        ("§5.2 single quotes invalid", 200, &[("cache-control", "max-age='3600'")], Got::Store(0, MaxAge)),
        ("§5.2 quoted phrase ignored", 200, &[("cache-control", "extension=\"max-age=100\", max-age=1")], Got::Store(1, MaxAge)),
        ("§5.2 quoted phrase ignored, after", 200, &[("cache-control", "max-age=1, extension=\"max-age=100\"")], Got::Store(1, MaxAge)),
        ("§5.2 quoted comma", 200, &[("cache-control", "ext=\"a, no-store\", max-age=7")], Got::Store(7, MaxAge)),
        ("§5.2 space before =", 200, &[("cache-control", "max-age =100")], Got::Store(0, MaxAge)),
        ("§5.2 space after =", 200, &[("cache-control", "max-age= 100")], Got::Store(0, MaxAge)),
        ("§1.2.2 leading zeros", 200, &[("cache-control", "max-age=003600")], Got::Store(3600, MaxAge)),
        ("§4.2.1 invalid max-age: leading alpha", 200, &[("cache-control", "max-age=a100")], Got::Store(0, MaxAge)),
        ("§4.2.1 invalid max-age: trailing alpha", 200, &[("cache-control", "max-age=100a")], Got::Store(0, MaxAge)),
        ("§4.2.1 invalid max-age: negative", 200, &[("cache-control", "max-age=-100")], Got::Store(0, MaxAge)),
        ("§4.2.1 invalid max-age: decimal", 200, &[("cache-control", "max-age=3600.5")], Got::Store(0, MaxAge)),
        ("§4.2.1 invalid max-age: no value", 200, &[("cache-control", "max-age")], Got::Store(0, MaxAge)),
        ("§1.2.2 2^31", 200, &[("cache-control", "max-age=2147483648")], Got::Store(MAX, MaxAge)),
        ("§1.2.2 overflow clamps", 200, &[("cache-control", "max-age=99999999999")], Got::Store(MAX, MaxAge)),
        ("§4.2.1 duplicate: first wins", 200, &[("cache-control", "max-age=1800, max-age=1")], Got::Store(1800, MaxAge)),
        ("§4.2.1 duplicate lines: first wins", 200, &[("cache-control", "max-age=1800"), ("cache-control", "max-age=1")], Got::Store(1800, MaxAge)),
        ("§5.2.3 extension ignored", 200, &[("cache-control", "foobar, max-age=3600")], Got::Store(3600, MaxAge)),
    ];
    for (cite, status, headers, want) in cases {
        assert_eq!(
            got(decide_resp(*status, headers, &Defaults::default())),
            *want,
            "{cite}: {headers:?}"
        );
    }
}

#[test]
fn cdn_cache_control_takes_precedence() {
    let now = http_date(t(0));
    let hour = http_date(t(3600));
    let past = http_date(t(-10_000));
    let cdn = "cdn-cache-control";
    let cc = "cache-control";
    #[rustfmt::skip]
    let cases: &[(&str, Headers, Got)] = &[
        ("RFC 9213 §2.2 max-age", &[(cdn, "max-age=3600")], Got::Store(3600, MaxAge)),
        ("§2.2 beats short CC", &[(cc, "max-age=1"), (cdn, "max-age=3600")], Got::Store(3600, MaxAge)),
        ("§2.2 beats long CC", &[(cc, "max-age=3600"), (cdn, "max-age=1")], Got::Store(1, MaxAge)),
        ("§2.2 private", &[(cdn, "private"), (cc, "max-age=10000")], Got::Skip(Private)),
        ("§2.2 no-store", &[(cc, "max-age=10000"), (cdn, "no-store")], Got::Skip(NoStore)),
        ("§2.2 over CC no-store", &[(cc, "no-store"), (cdn, "max-age=10000")], Got::Store(10_000, MaxAge)),
        ("§2.2 no-cache", &[(cdn, "no-cache"), (cc, "max-age=10000"), ("etag", "\"a\"")], Got::Store(0, Unspecified)),
        ("§2.2 past Expires ignored", &[(cdn, "max-age=3600"), ("expires", &past), ("date", &now)], Got::Store(3600, MaxAge)),
        ("§2.2 future Expires ignored", &[(cdn, "max-age=0"), ("expires", &hour), ("date", &now)], Got::Store(0, MaxAge)),
        ("§2.2 Expires ignored without max-age", &[(cdn, "foo"), ("expires", &hour)], Got::Skip(NoFreshness)),
        ("§2.2 s-maxage", &[(cdn, "s-maxage=60, max-age=5")], Got::Store(60, SMaxAge)),
        ("§2.1 overflow clamps", &[(cdn, "max-age=99999999999")], Got::Store(MAX, MaxAge)),
        ("§2.1 lenient key case", &[(cdn, "MaX-aGe=3600")], Got::Store(3600, MaxAge)),
        ("§2.1 ?0 is absent", &[(cc, "max-age=5"), (cdn, "no-store=?0, max-age=60")], Got::Store(60, MaxAge)),
        ("§2.1 duplicate: last wins (RFC 8941)", &[(cdn, "max-age=1, max-age=60")], Got::Store(60, MaxAge)),
        ("§2.1 parse error → CC", &[(cdn, "max-age=10000, &&&&&"), (cc, "no-store")], Got::Skip(NoStore)),
        ("§2.1 String max-age → CC", &[(cdn, "max-age=\"10000\""), (cc, "no-store")], Got::Skip(NoStore)),
        ("§2.1 space before = → CC", &[(cc, "max-age=1"), (cdn, "max-age =100")], Got::Store(1, MaxAge)),
        ("§2.1 space after = → CC", &[(cc, "max-age=1"), (cdn, "max-age= 100")], Got::Store(1, MaxAge)),
        ("§2.1 trailing comma → CC", &[(cc, "max-age=1"), (cdn, "max-age=100,")], Got::Store(1, MaxAge)),
        ("§2.1 empty → CC", &[(cc, "max-age=1"), (cdn, "")], Got::Store(1, MaxAge)),
    ];
    for (cite, headers, want) in cases {
        assert_eq!(
            got(decide_resp(200, headers, &Defaults::default())),
            *want,
            "{cite}: {headers:?}"
        );
    }
}

#[test]
fn default_ttl_applies_only_where_origin_is_silent() {
    let d = Defaults {
        default_ttl: BTreeMap::from([
            (200, Duration::from_secs(600)),
            (502, Duration::from_secs(5)),
        ]),
        ..Defaults::default()
    };
    let now = http_date(t(0));
    let past = http_date(t(-10_000));
    #[rustfmt::skip]
    let cases: &[(&str, u16, Headers, Got)] = &[
        ("default_ttl[200]", 200, &[], Got::Store(600, DefaultTtl)),
        ("default_ttl for a 304 is the 200's", 304, &[], Got::Store(600, DefaultTtl)),
        ("default_ttl[502] (config opts in)", 502, &[], Got::Store(5, DefaultTtl)),
        ("no entry for 404", 404, &[], Got::Skip(NoFreshness)),
        ("explicit beats default", 200, &[("cache-control", "max-age=5")], Got::Store(5, MaxAge)),
        ("heuristic beats default", 200, &[("last-modified", &past), ("date", &now)], Got::Store(1000, Heuristic)),
        ("no-store still wins", 200, &[("cache-control", "no-store")], Got::Skip(NoStore)),
    ];
    for (cite, status, headers, want) in cases {
        assert_eq!(got(decide_resp(*status, headers, &d)), *want, "{cite}");
    }
}

#[test]
fn initial_age_is_corrected_initial_age() {
    let earlier = http_date(t(-100));
    let future = http_date(t(50));
    // (cite, headers, request_time offset, expected initial_age secs)
    #[rustfmt::skip]
    let cases: &[(&str, Headers, i64, u64)] = &[
        ("§4.2.3 nothing", &[], 0, 0),
        ("§4.2.3 Age", &[("age", "15")], 0, 15),
        ("§4.2.3 Age + response delay", &[("age", "10")], -5, 15),
        ("§4.2.3 response delay alone", &[], -5, 5),
        ("§4.2.3 apparent age from Date", &[("date", &earlier)], 0, 100),
        ("§4.2.3 max(apparent, Age)", &[("date", &earlier), ("age", "30")], 0, 100),
        ("§4.2.3 max(apparent, Age), Age larger", &[("date", &earlier), ("age", "300")], 0, 300),
        ("§4.2.3 Date in the future", &[("date", &future)], 0, 0),
        ("§5.1 non-numeric Age ignored", &[("age", "abc")], 0, 0),
        ("§5.1 negative Age ignored", &[("age", "-7200")], 0, 0),
        ("§5.1 float Age ignored", &[("age", "7200.0")], 0, 0),
        ("§5.1 first list member", &[("age", "7200,0")], 0, 7200),
        ("§5.1 first list member, 0 first", &[("age", "0, 7200")], 0, 0),
        ("§5.1 first line", &[("age", "0"), ("age", "7200")], 0, 0),
        ("§1.2.2 huge Age clamps", &[("age", "99999999999")], 0, MAX),
    ];
    for (cite, headers, sent, want) in cases {
        let mut h = vec![("cache-control", "max-age=60")];
        h.extend_from_slice(headers);
        let f = store(decide(
            &req("GET", &[]),
            &resp(200, &h),
            t(*sent),
            t(0),
            &Defaults::default(),
        ));
        assert_eq!(f.initial_age.as_secs(), *want, "{cite}: {headers:?}");
    }
}

#[test]
fn freshness_converts_to_pingora_times() {
    // RFC 9111 §4.2: fresh while lifetime > current age; Age counts (§4.2.3).
    let f = store(decide_resp(
        200,
        &[("cache-control", "max-age=60"), ("age", "15")],
        &Defaults::default(),
    ));
    assert_eq!(f.epoch(t(0)), t(-15), "epoch = response_time − initial_age");
    assert_eq!(f.fresh_until(t(0)), t(45));
    let f = store(decide_resp(
        200,
        &[("cache-control", "max-age=10"), ("age", "15")],
        &Defaults::default(),
    ));
    assert_eq!(
        f.fresh_until(t(0)),
        t(-5),
        "stale on arrival keeps the real expiry"
    );
    let f = store(decide_resp(
        200,
        &[("cache-control", "max-age=0")],
        &Defaults::default(),
    ));
    assert!(f.fresh_until(t(0)) < t(0), "max-age=0 is never fresh");
    let f = store(decide_resp(
        200,
        &[(
            "cache-control",
            "max-age=99999999999, stale-while-revalidate=99999999999",
        )],
        &Defaults::default(),
    ));
    assert_eq!((f.swr_secs(), f.sie_secs()), (1 << 31, 0));
}

#[test]
fn stale_windows_and_revalidation_flags() {
    let d = Defaults {
        swr: Duration::from_secs(10),
        sie: Duration::from_secs(300),
        ..Defaults::default()
    };
    // (cite, headers, swr, sie, revalidate_always, no_stale)
    #[rustfmt::skip]
    let cases: &[(&str, Headers, u64, u64, bool, bool)] = &[
        ("defaults when the origin is silent", &[("cache-control", "max-age=60")], 10, 300, false, false),
        ("RFC 5861 §3 stale-while-revalidate", &[("cache-control", "max-age=60, stale-while-revalidate=30")], 30, 300, false, false),
        ("RFC 5861 §4 stale-if-error", &[("cache-control", "max-age=60, stale-if-error=60")], 10, 60, false, false),
        ("RFC 5861 explicit 0", &[("cache-control", "max-age=60, stale-while-revalidate=0")], 0, 300, false, false),
        ("RFC 5861 invalid value = 0", &[("cache-control", "max-age=60, stale-if-error=soon")], 10, 0, false, false),
        ("§5.2.2.2 must-revalidate", &[("cache-control", "max-age=60, must-revalidate, stale-while-revalidate=30")], 0, 0, false, true),
        ("§5.2.2.8 proxy-revalidate", &[("cache-control", "max-age=60, proxy-revalidate")], 0, 0, false, true),
        ("§5.2.2.10 s-maxage implies proxy-revalidate", &[("cache-control", "s-maxage=60, stale-if-error=60")], 0, 0, false, true),
        ("§5.2.2.4 no-cache", &[("cache-control", "no-cache"), ("etag", "\"a\"")], 0, 0, true, true),
        ("RFC 9213 targeted stale-while-revalidate", &[("cdn-cache-control", "max-age=60, stale-while-revalidate=5")], 5, 300, false, false),
    ];
    for (cite, headers, swr, sie, always, no_stale) in cases {
        let f = store(decide_resp(200, headers, &d));
        let row = (
            f.swr.as_secs(),
            f.sie.as_secs(),
            f.revalidate_always,
            f.no_stale,
        );
        assert_eq!(row, (*swr, *sie, *always, *no_stale), "{cite}: {headers:?}");
        let stored = resp(200, headers);
        assert_eq!(forbids_stale(&stored), *no_stale, "{cite}: forbids_stale");
    }
}

#[test]
fn qualified_private_and_no_cache_fields_are_stripped() {
    // §5.2.2.7 private="…" and §5.2.2.4 no-cache="…": store the rest without those fields.
    let headers = [
        ("cache-control", "private=\"X-A, Set-Cookie2\", max-age=60"),
        ("cache-control", "no-cache=\"x-b\""),
        ("x-a", "1"),
        ("x-b", "2"),
        ("x-c", "3"),
        ("set-cookie2", "a=b"),
    ];
    let f = store(decide_resp(200, &headers, &Defaults::default()));
    assert_eq!(f.strip_fields, ["x-a", "set-cookie2", "x-b"]);
    assert_eq!(
        (f.lifetime.as_secs(), f.revalidate_always),
        (60, false),
        "qualified no-cache is not no-cache"
    );
    let mut stored = resp(200, &headers);
    f.strip(&mut stored);
    assert!(stored.headers.get("x-a").is_none() && stored.headers.get("x-b").is_none());
    assert!(stored.headers.get("set-cookie2").is_none());
    assert_eq!(stored.headers.get("x-c").unwrap(), "3");
}

#[test]
fn request_directives_parse() {
    use ClientCacheControl::{Honor, Ignore};
    let rd = RequestDirectives::default;
    #[rustfmt::skip]
    let cases: &[(&str, Headers, ClientCacheControl, RequestDirectives)] = &[
        ("none", &[], Honor, rd()),
        ("§5.2.1.4 no-cache", &[("cache-control", "no-cache")], Honor, RequestDirectives { no_cache: true, ..rd() }),
        ("§5.2 case-insensitive", &[("cache-control", "NO-CACHE")], Honor, RequestDirectives { no_cache: true, ..rd() }),
        ("§5.4 Pragma without Cache-Control", &[("pragma", "no-cache")], Honor, RequestDirectives { no_cache: true, ..rd() }),
        ("§5.4 Pragma with Cache-Control", &[("pragma", "no-cache"), ("cache-control", "max-age=5")], Honor, RequestDirectives { max_age: Some(5), ..rd() }),
        ("§5.4 Pragma extension", &[("pragma", "unrecognised-extension")], Honor, rd()),
        ("§5.2.1.5 no-store", &[("cache-control", "no-store")], Honor, RequestDirectives { no_store: true, ..rd() }),
        ("§5.2.1.1 max-age=0", &[("cache-control", "max-age=0")], Honor, RequestDirectives { max_age: Some(0), ..rd() }),
        ("§5.2.1.1 invalid max-age dropped", &[("cache-control", "max-age=soon")], Honor, rd()),
        ("§5.2.1.2 max-stale", &[("cache-control", "max-stale")], Honor, RequestDirectives { max_stale: Some(None), ..rd() }),
        ("§5.2.1.2 max-stale=100", &[("cache-control", "max-stale=100")], Honor, RequestDirectives { max_stale: Some(Some(100)), ..rd() }),
        ("§5.2.1.2 invalid max-stale dropped", &[("cache-control", "max-stale=x")], Honor, rd()),
        ("§5.2.1.3 min-fresh", &[("cache-control", "min-fresh=10")], Honor, RequestDirectives { min_fresh: Some(10), ..rd() }),
        ("§5.2.1.7 only-if-cached", &[("cache-control", "only-if-cached")], Honor, RequestDirectives { only_if_cached: true, ..rd() }),
        ("ignore mode", &[("cache-control", "no-cache, no-store, max-age=0"), ("pragma", "no-cache")], Ignore, rd()),
        ("ignore mode keeps only-if-cached", &[("cache-control", "no-cache, only-if-cached")], Ignore, RequestDirectives { only_if_cached: true, ..rd() }),
    ];
    for (cite, headers, mode, want) in cases {
        assert_eq!(
            request_directives(&req("GET", headers), *mode),
            *want,
            "{cite}: {headers:?}"
        );
    }
}

#[test]
fn request_no_store_is_ignored_in_ignore_mode() {
    let d = Defaults {
        client: ClientCacheControl::Ignore,
        ..Defaults::default()
    };
    let r = req("GET", &[("cache-control", "no-store")]);
    let decision = decide(
        &r,
        &resp(200, &[("cache-control", "max-age=60")]),
        t(0),
        t(0),
        &d,
    );
    assert_eq!(got(decision), Got::Store(60, MaxAge));
}

#[test]
fn hit_verdicts() {
    use HitVerdict::{ClientRevalidate, Fresh, MustRevalidate, Stale, StaleAllowed};
    let rd = RequestDirectives::default;
    // (cite, age, lifetime, request directives, no_stale, verdict)
    #[rustfmt::skip]
    let cases: &[(&str, u64, u64, RequestDirectives, bool, HitVerdict)] = &[
        ("§4.2 fresh", 10, 60, rd(), false, Fresh),
        ("§4.2 age == lifetime is stale", 60, 60, rd(), false, Stale),
        ("§4.2 stale", 70, 60, rd(), false, Stale),
        ("§4.2.4 must-revalidate", 70, 60, rd(), true, MustRevalidate),
        ("§4.2.4 must-revalidate while fresh", 10, 60, rd(), true, Fresh),
        ("§5.2.1.4 no-cache", 10, 60, RequestDirectives { no_cache: true, ..rd() }, false, ClientRevalidate),
        ("§5.2.1.1 max-age=0", 1, 60, RequestDirectives { max_age: Some(0), ..rd() }, false, ClientRevalidate),
        ("§5.2.1.1 max-age not exceeded", 5, 60, RequestDirectives { max_age: Some(10), ..rd() }, false, Fresh),
        ("§5.2.1.1 max-age exceeded", 1800, 3600, RequestDirectives { max_age: Some(600), ..rd() }, false, ClientRevalidate),
        ("§5.2.1.3 min-fresh met", 10, 60, RequestDirectives { min_fresh: Some(50), ..rd() }, false, Fresh),
        ("§5.2.1.3 min-fresh unmet", 1000, 1500, RequestDirectives { min_fresh: Some(1000), ..rd() }, false, ClientRevalidate),
        ("§5.2.1.3 min-fresh on stale", 70, 60, RequestDirectives { min_fresh: Some(0), ..rd() }, false, ClientRevalidate),
        ("§5.2.1.2 max-stale any", 1000, 60, RequestDirectives { max_stale: Some(None), ..rd() }, false, StaleAllowed),
        ("§5.2.1.2 max-stale within", 2000, 1500, RequestDirectives { max_stale: Some(Some(1000)), ..rd() }, false, StaleAllowed),
        ("§5.2.1.2 max-stale exceeded", 3000, 1500, RequestDirectives { max_stale: Some(Some(1000)), ..rd() }, false, Stale),
        ("§5.2.2.2 must-revalidate beats max-stale", 70, 60, RequestDirectives { max_stale: Some(None), ..rd() }, true, MustRevalidate),
        ("§5.2.1.2 max-stale on fresh", 10, 60, RequestDirectives { max_stale: Some(None), ..rd() }, false, Fresh),
    ];
    for (cite, age, lifetime, rd, no_stale, want) in cases {
        let v = hit_verdict(
            Duration::from_secs(*age),
            Duration::from_secs(*lifetime),
            rd,
            *no_stale,
        );
        assert_eq!(v, *want, "{cite}");
    }
}

#[test]
fn unsafe_methods_invalidate_on_success() {
    #[rustfmt::skip]
    let cases: &[(&str, Method, u16, bool)] = &[
        ("§4.4 POST 200", Method::POST, 200, true),
        ("§4.4 PUT 201", Method::PUT, 201, true),
        ("§4.4 DELETE 204", Method::DELETE, 204, true),
        ("§4.4 PATCH 303", Method::PATCH, 303, true),
        ("§4.4 unknown method", Method::from_bytes(b"M-SEARCH").unwrap(), 200, true),
        ("§4.4 error status", Method::POST, 500, false),
        ("§4.4 client error", Method::DELETE, 404, false),
        ("§4.4 informational", Method::POST, 100, false),
        ("§4.4 safe GET", Method::GET, 200, false),
        ("§4.4 safe HEAD", Method::HEAD, 200, false),
        ("§4.4 safe OPTIONS", Method::OPTIONS, 200, false),
        ("§4.4 safe TRACE", Method::TRACE, 200, false),
    ];
    for (cite, method, status, want) in cases {
        assert_eq!(invalidates(method, *status), *want, "{cite}");
    }
}

#[test]
fn merge_304_updates_stored_fields() {
    // RFC 9111 §4.3.4 / §3.2.
    let stored = resp(
        200,
        &[
            ("cache-control", "max-age=1"),
            ("date", "Tue, 14 Nov 2023 21:00:00 GMT"),
            ("age", "100"),
            ("etag", "\"v1\""),
            ("content-type", "text/plain"),
            ("content-length", "42"),
            ("content-encoding", "gzip"),
            ("vary", "Accept-Encoding"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=1"),
            ("x-kept", "stored"),
            ("x-updated", "old"),
        ],
    );
    let not_modified = resp(
        304,
        &[
            ("cache-control", "max-age=3600"),
            ("etag", "\"v1\""),
            ("content-type", "text/plain;charset=utf-8"),
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("vary", "User-Agent"),
            ("set-cookie", "a=2"),
            ("x-updated", "new"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
        ],
    );
    let merged = merge_304(&stored, &not_modified);
    let get = |n: &str| -> Vec<&str> {
        merged
            .headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(merged.status.as_u16(), 200, "status stays");
    assert_eq!(get("cache-control"), ["max-age=3600"], "§3.2 replaced");
    assert_eq!(
        get("content-type"),
        ["text/plain;charset=utf-8"],
        "§3.2 replaced"
    );
    assert_eq!(get("x-updated"), ["new"], "§3.2 replaced");
    assert_eq!(
        get("set-cookie"),
        ["a=2"],
        "§3.2 all stored values replaced"
    );
    assert_eq!(
        get("x-kept"),
        ["stored"],
        "§3.2 fields absent from the 304 stay"
    );
    assert_eq!(
        get("content-length"),
        ["42"],
        "§3.2 Content-Length excepted"
    );
    assert_eq!(
        get("content-encoding"),
        ["gzip"],
        "stored body's coding stays"
    );
    assert_eq!(
        get("vary"),
        ["Accept-Encoding"],
        "the entry's variance depends on Vary"
    );
    assert!(
        get("x-hop").is_empty() && get("keep-alive").is_empty() && get("connection").is_empty(),
        "§3.1 hop-by-hop"
    );
    assert!(
        get("date").is_empty() && get("age").is_empty(),
        "old Date/Age dropped when the 304 has none"
    );

    let with_date = resp(
        304,
        &[("date", "Tue, 14 Nov 2023 22:13:20 GMT"), ("age", "3")],
    );
    let merged = merge_304(&stored, &with_date);
    assert_eq!(
        merged.headers.get("date").unwrap(),
        "Tue, 14 Nov 2023 22:13:20 GMT"
    );
    assert_eq!(merged.headers.get("age").unwrap(), "3");
}

#[test]
fn http_dates_parse() {
    let t0 = Some(t(0));
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<SystemTime>)] = &[
        ("RFC 9110 §5.6.7 IMF-fixdate", "Tue, 14 Nov 2023 22:13:20 GMT", t0),
        ("§5.6.7 RFC 850", "Tuesday, 14-Nov-23 22:13:20 GMT", t0),
        ("§5.6.7 asctime", "Tue Nov 14 22:13:20 2023", t0),
        ("§5.6.7 asctime, padded day", "Sun Nov  6 08:49:37 1994", Some(UNIX_EPOCH + Duration::from_secs(784_111_777))),
        ("tolerated: letter case", "TUE, 14 NOV 2023 22:13:20 gmt", t0),
        ("tolerated: asctime, 1-digit day", "Thu Aug  8 02:01:18 2050", Some(UNIX_EPOCH + Duration::from_secs(2_543_536_878))),
        ("strict (cache-tests expires-parse): invalid zone", "Tue, 14 Nov 2023 22:13:20 UTC", None),
        ("strict (cache-tests expires-parse): invalid comma", "Tue 14 Nov 2023 22:13:20 GMT", None),
        ("strict (cache-tests expires-parse): invalid spaces", "Tue,  14  Nov  2023 22:13:20 GMT", None),
        ("strict (cache-tests expires-parse): invalid dashes", "Tue, 14-Nov-2023 22:13:20 GMT", None),
        ("strict (cache-tests expires-parse): invalid 1-digit hour", "Thu, 01 Jan 1970 2:00:00 GMT", None),
        ("leap day", "Thu, 29 Feb 2024 00:00:00 GMT", Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800))),
        ("§5.3 invalid: 0", "0", None),
        ("invalid: periods", "Tue, 14 Nov 2023 22.13.20 GMT", None),
        ("invalid: 30 Feb", "Thu, 30 Feb 2023 00:00:00 GMT", None),
        ("invalid: hour 24", "Tue, 14 Nov 2023 24:00:00 GMT", None),
        ("invalid: month", "Tue, 14 Foo 2023 22:13:20 GMT", None),
        ("invalid: empty", "", None),
    ];
    for (cite, value, want) in cases {
        assert_eq!(http_date::parse(value.as_bytes()), *want, "{cite}: {value}");
    }
    for offset in [-400 * 86_400, -1, 0, 1, 86_399, 40 * 365 * 86_400] {
        let date = http_date(t(offset));
        assert_eq!(
            http_date::parse(date.as_bytes()),
            Some(t(offset)),
            "round trip {date}"
        );
    }
}

#[test]
fn skip_reasons_have_cache_status_tokens() {
    assert_eq!(SkipReason::NoStore.as_str(), "no-store");
    assert_eq!(SkipReason::VaryStar.as_str(), "vary-star");
}
