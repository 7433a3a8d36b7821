//! Value syntax of the config language: sizes, durations, CIDRs, "did you mean"
//! suggestions and the file hash. Pure functions on strings; no I/O, no error
//! collection (that is `reader.rs`).

use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// `"256MiB"`, `"10 GiB"`, `"1.5KiB"` or a plain byte count such as `"4096"`.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    s.parse::<bytesize::ByteSize>().ok().map(|b| b.as_u64())
}

/// `"500ms"`, `"5s"`, `"10m"`, `"1h"`, `"1h 30m"` (humantime syntax).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// A CIDR (`"10.0.0.0/8"`, `"::1/128"`) or a bare address, which means a /32 or /128.
/// Host bits are cleared so that `10.1.2.3/8` reads back as `10.0.0.0/8`.
pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = s
        .parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))?;
    Some(net.trunc())
}

const BINARY_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// The inverse of [`parse_size`] for display: `268435456` → `"256MiB"`, `1536` → `"1.5KiB"`.
pub(super) fn format_size(n: u64) -> String {
    if let Some((unit, f)) = BINARY_UNITS
        .iter()
        .find(|(_, f)| n >= *f && n.is_multiple_of(*f))
    {
        return format!("{}{unit}", n / f);
    }
    if let Some((unit, f)) = BINARY_UNITS.iter().find(|(_, f)| n >= *f) {
        return format!("{:.1}{unit}", n as f64 / *f as f64);
    }
    format!("{n}B")
}

/// The candidate closest to `input`, if it is close enough to be a likely typo.
/// Case is ignored; both edit distance and shared prefixes count
/// (`memroy` → `memory`, `grace` → `grace_period`).
pub(super) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let input = input.to_lowercase();
    let max_edits = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let edits = strsim::damerau_levenshtein(&input, &lower);
            let jw = strsim::jaro_winkler(&input, &lower);
            (edits <= max_edits || jw >= 0.85).then_some((edits, c))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, c)| c)
}

/// `" (did you mean \"x\"?)"` or nothing; appended to messages.
pub(super) fn suggestion<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(input, candidates)
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// 64-bit FNV-1a of the file text as 16 hex digits: stable across builds and
/// platforms (unlike `DefaultHasher`), so `/status` hashes can be compared.
pub(super) fn text_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
