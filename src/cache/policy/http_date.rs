//! HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms.
//! Strict where the suite of record (cache-tests.fyi) requires it (`UTC`, two-digit years in
//! IMF-fixdate, missing commas, extra spaces are invalid); tolerant of letter case, a wrong
//! weekday and asctime's padded day.
use std::time::SystemTime;

/// `None` when the value is not a date (callers treat that per field: §5.3 "in the past").
pub(super) fn parse(v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if let Ok(t) = httpdate::parse_http_date(s) {
        return Some(t);
    }
    // Tolerated (RFC 9110 §5.6.7 asks recipients to be liberal where unambiguous):
    // wrong letter case, and asctime with its space-padded day.
    let toks: Vec<&str> = s.split(' ').collect();
    let rest = match toks[..] {
        [wd, mon, "", day, time, year] | [wd, mon, day, time, year]
            if !wd.ends_with(',') && !day.is_empty() && day.len() <= 2 =>
        {
            format!("{day:0>2} {} {year} {time} GMT", title(mon))
        }
        [wd, day, mon, year, time, zone]
            if wd.ends_with(',') && zone.eq_ignore_ascii_case("gmt") =>
        {
            format!("{day} {} {year} {time} GMT", title(mon))
        }
        _ => return None,
    };
    // The weekday is redundant; asctime senders often get it wrong.
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|wd| httpdate::parse_http_date(&format!("{wd}, {rest}")).ok())
}

fn title(t: &str) -> String {
    let lower = t.to_ascii_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}
