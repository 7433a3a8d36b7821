//! Cache-Control list parsing (RFC 9111 §5.2) and CDN-Cache-Control as a Structured Field
//! Dictionary (RFC 9213, RFC 8941). Pure parsing; the rules that use it are in `policy.rs`.

use super::DELTA_SECONDS_MAX;
use http::header;
use pingora::http::ResponseHeader;

/// The directives that govern a response and whether they came from `CDN-Cache-Control`.
pub(super) fn response_directives(resp: &ResponseHeader) -> (Directives, bool) {
    if let Some(dirs) = cdn_directives(resp) {
        return (dirs, true);
    }
    let cc = resp.headers.get_all(header::CACHE_CONTROL);
    (Directives::parse(cc.iter().map(|v| v.as_bytes())), false)
}

/// Directives whose value must be an Integer in `CDN-Cache-Control`.
const DELTA_DIRECTIVES: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// RFC 9213 §2.1: `CDN-Cache-Control` is a Structured Field Dictionary (RFC 8941). An empty
/// field, a parse error, or a non-Integer delta directive makes the whole field ignored
/// (`None`). Keys are accepted in any case (lenient: `MaX-aGe=60`).
fn cdn_directives(resp: &ResponseHeader) -> Option<Directives> {
    let lines: Vec<&[u8]> = resp
        .headers
        .get_all("cdn-cache-control")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let members = sf::dictionary(&lines.join(&b", "[..]).to_ascii_lowercase())?;
    let mut dirs = Directives::default();
    for (name, item) in members {
        let delta = DELTA_DIRECTIVES.contains(&name.as_str());
        let arg = match item {
            sf::Item::Bool(false) => continue,
            sf::Item::Bool(true) if !delta => Arg::Empty,
            sf::Item::Int(n) => Arg::Value(n.to_string()), // negative → invalid delta → stale
            sf::Item::Str(s) if !delta => Arg::Value(s),
            _ if delta => return None,
            _ => Arg::Malformed,
        };
        dirs.0.retain(|(n, _)| *n != name); // RFC 8941 §4.2.2: the last duplicate wins
        dirs.0.push((name, arg));
    }
    (!dirs.0.is_empty()).then_some(dirs)
}

/// Argument of a `Cache-Control` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    /// No `=value`.
    Empty,
    /// Token or unescaped quoted-string.
    Value(String),
    /// Unreadable (`max-age =5`, `max-age= 5`, unterminated quote).
    Malformed,
}

/// Parsed `Cache-Control` (RFC 9111 §5.2): lower-cased names in field order, duplicates kept.
#[derive(Debug, Default)]
pub(super) struct Directives(Vec<(String, Arg)>);

impl Directives {
    /// Parses field lines as `#( token [ "=" ( token / quoted-string ) ] )`, quote-aware.
    pub(super) fn parse<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut out = Vec::new();
        for line in lines {
            let mut p = Cursor { s: line, i: 0 };
            loop {
                p.skip(|b| matches!(b, b' ' | b'\t' | b','));
                if p.eof() {
                    break;
                }
                let name = p.take(is_tchar);
                if name.is_empty() {
                    p.skip_element();
                    continue;
                }
                let mut arg = Arg::Empty;
                if p.eat(b'=') {
                    let token =
                        |p: &mut Cursor<'_>| Some(String::from_utf8_lossy(p.take(is_tchar)).into());
                    arg = match p.quoted().unwrap_or_else(|| token(&mut p)) {
                        Some(v) if !v.is_empty() => Arg::Value(v),
                        _ => Arg::Malformed,
                    };
                }
                p.skip(|b| matches!(b, b' ' | b'\t'));
                if !p.eof() && !p.eat(b',') {
                    p.skip_element();
                    arg = Arg::Malformed;
                }
                out.push((String::from_utf8_lossy(name).to_ascii_lowercase(), arg));
            }
        }
        Directives(out)
    }

    /// First occurrence (§4.2.1: "the first occurrence should be used").
    pub(super) fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Present without a usable field list (an unreadable argument counts: be conservative).
    pub(super) fn unqualified(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(n, a)| n == name && !matches!(a, Arg::Value(_)))
    }

    /// Field names of the qualified form (`private="a, b"`), lower-cased.
    pub(super) fn field_names(&self, name: &str) -> Vec<String> {
        let values = self
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, a)| match a {
                Arg::Value(v) => Some(v),
                _ => None,
            });
        values
            .flat_map(|v| v.split(','))
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// `None`: absent; `Some(None)`: present but not delta-seconds; `Some(Some(n))`: valid.
    pub(super) fn delta(&self, name: &str) -> Option<Option<u32>> {
        Some(match self.get(name)? {
            Arg::Value(v) => parse_delta(v.as_bytes()),
            Arg::Empty | Arg::Malformed => None,
        })
    }
}

/// `1*DIGIT`, clamped to [`DELTA_SECONDS_MAX`] (§1.2.2); anything else is invalid.
pub(super) fn parse_delta(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u64, |n, d| {
        (n * 10 + u64::from(d - b'0')).min(u64::from(DELTA_SECONDS_MAX))
    });
    u32::try_from(n).ok()
}

pub(super) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Byte cursor shared by the list and Structured Field parsers.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    pub(super) fn take(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        self.skip(f);
        &self.s[start..self.i]
    }

    pub(super) fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    /// A `quoted-string` at the cursor: `None` if there is none, `Some(None)` if unterminated.
    pub(super) fn quoted(&mut self) -> Option<Option<String>> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(Some(String::from_utf8_lossy(&out).into_owned())),
                b'\\' => {
                    out.extend(self.peek());
                    self.i += 1;
                }
                _ => out.push(b),
            }
        }
        Some(None)
    }

    /// Skips to just past the next comma outside a quoted-string.
    pub(super) fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let _ = self.quoted();
                }
                b',' => {
                    self.i += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
    }
}

/// Just enough RFC 8941 to validate a Dictionary and read its Integer/Boolean/String members.
mod sf {
    use super::Cursor;

    /// A member value; other types (decimal, token, bytes, inner list) are `Other`.
    pub(super) enum Item {
        Bool(bool),
        Int(i64),
        Str(String),
        Other,
    }

    /// RFC 8941 §4.2.2 `parse_dictionary`; `None` on any syntax error.
    pub(super) fn dictionary(s: &[u8]) -> Option<Vec<(String, Item)>> {
        let mut p = Cursor { s, i: 0 };
        let mut out = Vec::new();
        p.skip(|b| b == b' ');
        while !p.eof() {
            let key = key(&mut p)?;
            let item = if p.eat(b'=') {
                member(&mut p)?
            } else {
                params(&mut p).map(|_| Item::Bool(true))?
            };
            out.push((key, item));
            p.skip(|b| b == b' ' || b == b'\t');
            if p.eof() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
            p.skip(|b| b == b' ' || b == b'\t');
            if p.eof() {
                return None; // trailing comma
            }
        }
        Some(out)
    }

    pub(super) fn key(p: &mut Cursor<'_>) -> Option<String> {
        if !p
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        let k = p.take(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        Some(String::from_utf8_lossy(k).into_owned())
    }

    pub(super) fn member(p: &mut Cursor<'_>) -> Option<Item> {
        if !p.eat(b'(') {
            let item = bare(p)?;
            return params(p).map(|_| item);
        }
        loop {
            p.skip(|b| b == b' ');
            if p.eat(b')') {
                return params(p).map(|_| Item::Other);
            }
            bare(p)?;
            params(p)?;
            if !matches!(p.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    pub(super) fn params(p: &mut Cursor<'_>) -> Option<()> {
        while p.eat(b';') {
            p.skip(|b| b == b' ');
            key(p)?;
            if p.eat(b'=') {
                bare(p)?;
            }
        }
        Some(())
    }

    pub(super) fn bare(p: &mut Cursor<'_>) -> Option<Item> {
        match p.peek()? {
            b'-' | b'0'..=b'9' => number(p),
            b'"' => string(p),
            b'?' => {
                p.i += 1;
                let v = p.peek().filter(|b| matches!(b, b'0' | b'1'))?;
                p.i += 1;
                Some(Item::Bool(v == b'1'))
            }
            b':' => {
                p.i += 1;
                p.skip(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                p.eat(b':').then_some(Item::Other)
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                p.skip(|b| super::is_tchar(b) || b == b':' || b == b'/');
                Some(Item::Other)
            }
            _ => None,
        }
    }

    pub(super) fn number(p: &mut Cursor<'_>) -> Option<Item> {
        let negative = p.eat(b'-');
        let int = p.take(|b| b.is_ascii_digit());
        if p.eat(b'.') {
            let frac = p.take(|b| b.is_ascii_digit());
            let ok = (1..=12).contains(&int.len()) && (1..=3).contains(&frac.len());
            return ok.then_some(Item::Other);
        }
        if !(1..=15).contains(&int.len()) {
            return None;
        }
        let n = int.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        Some(Item::Int(if negative { -n } else { n }))
    }

    pub(super) fn string(p: &mut Cursor<'_>) -> Option<Item> {
        p.i += 1;
        let mut out = Vec::new();
        loop {
            let b = p.peek()?;
            p.i += 1;
            match b {
                b'"' => return Some(Item::Str(String::from_utf8_lossy(&out).into_owned())),
                b'\\' => {
                    out.push(p.peek().filter(|b| matches!(b, b'"' | b'\\'))?);
                    p.i += 1;
                }
                0x20..=0x7e => out.push(b),
                _ => return None,
            }
        }
    }
}
