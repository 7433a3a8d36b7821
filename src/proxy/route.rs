//! Route table: Host/authority + path → route index.
//! Exact host beats the longest `*.suffix` beats `*`; within a host match, the longest prefix wins.
//! A host tier with no matching prefix falls through to the next tier.

use crate::config::{HostMatch, RouteConfig};
use std::collections::HashMap;

/// Routes grouped for lookup; indices refer to `Config::routes`.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<(String, usize)>>,
    /// (".suffix", prefixes), longest suffix first.
    suffix: Vec<(String, Vec<(String, usize)>)>,
    any: Vec<(String, usize)>,
}

impl RouteTable {
    /// Builds the table; prefixes are kept longest first.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let entry = (r.prefix.clone(), i);
            match &r.host {
                HostMatch::Any => t.any.push(entry),
                HostMatch::Exact(h) => t.exact.entry(h.clone()).or_default().push(entry),
                HostMatch::Suffix(s) => match t.suffix.iter_mut().find(|(k, _)| k == s) {
                    Some((_, v)) => v.push(entry),
                    None => t.suffix.push((s.clone(), vec![entry])),
                },
            }
        }
        let by_len = |v: &mut Vec<(String, usize)>| {
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)))
        };
        t.exact.values_mut().for_each(by_len);
        t.suffix.iter_mut().for_each(|(_, v)| by_len(v));
        by_len(&mut t.any);
        t.suffix.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        t
    }

    /// The route for a lower-cased host (no port) and a path.
    pub fn resolve(&self, host: &str, path: &str) -> Option<usize> {
        let longest = |v: &[(String, usize)]| {
            v.iter()
                .find(|(p, _)| path.starts_with(p.as_str()))
                .map(|(_, i)| *i)
        };
        if let Some(v) = self.exact.get(host) {
            if let Some(i) = longest(v) {
                return Some(i);
            }
        }
        for (suffix, v) in &self.suffix {
            if host.ends_with(suffix.as_str()) && host.len() > suffix.len() {
                if let Some(i) = longest(v) {
                    return Some(i);
                }
            }
        }
        longest(&self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: HostMatch, prefix: &str) -> RouteConfig {
        RouteConfig {
            host,
            prefix: prefix.into(),
            origin: 0,
            cache: true,
            allow: Vec::new(),
            deny: Vec::new(),
            rate_limit: None,
            slice: 0,
        }
    }

    #[test]
    fn exact_beats_suffix_beats_any_then_longest_prefix() {
        let t = RouteTable::new(&[
            route(HostMatch::Any, "/"),
            route(HostMatch::Suffix(".example.test".into()), "/"),
            route(HostMatch::Exact("www.example.test".into()), "/"),
            route(HostMatch::Exact("www.example.test".into()), "/api/"),
            route(HostMatch::Suffix(".b.example.test".into()), "/"),
        ]);
        assert_eq!(t.resolve("www.example.test", "/api/x"), Some(3));
        assert_eq!(t.resolve("www.example.test", "/index"), Some(2));
        assert_eq!(t.resolve("img.example.test", "/"), Some(1));
        assert_eq!(t.resolve("x.b.example.test", "/"), Some(4));
        assert_eq!(t.resolve("example.test", "/"), Some(0));
        assert_eq!(t.resolve("other.test", "/"), Some(0));
    }

    #[test]
    fn no_match_without_catch_all() {
        let t = RouteTable::new(&[route(HostMatch::Exact("a.test".into()), "/static/")]);
        assert_eq!(t.resolve("a.test", "/other"), None);
        assert_eq!(t.resolve("b.test", "/static/x"), None);
    }
}
