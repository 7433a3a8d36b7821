//! A fully read HTTP response, and the Prometheus text parser behind `Outpost::metric`.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant};

/// A response with its body read completely.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// From sending the request to the end of the body.
    pub(crate) elapsed: Duration,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl Resp {
    pub(crate) async fn read(r: reqwest::Response, started: Instant) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap_or_else(|e| {
            panic!("reading body of a {status} response failed: {e:?}; headers {headers:?}")
        });
        Self {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// A header as text; several values joined with ", ".
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// The `Cache-Status` header ("" when absent).
    pub(crate) fn cache_status(&self) -> String {
        self.header("cache-status").unwrap_or_default()
    }

    /// The `Age` header as a number, if present and numeric.
    pub(crate) fn age(&self) -> Option<u64> {
        self.header("age")?.trim().parse().ok()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// `ttl=N` of a hit's Cache-Status.
    pub(crate) fn ttl(&self) -> Option<i64> {
        self.cache_status()
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("ttl="))
            .and_then(|v| v.parse().ok())
    }

    /// Whether Cache-Status is a hit (`outpost; hit...`).
    pub(crate) fn is_hit(&self) -> bool {
        self.cache_status()
            .split(';')
            .map(str::trim)
            .any(|p| p == "hit")
    }
}

/// Sums every sample of `name` whose labels include `labels` (0 when there is none).
pub(crate) fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_sample)
        .filter(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let (labels, rest) = if line[name_end..].starts_with('{') {
        let close = line.rfind('}')?;
        (parse_labels(&line[name_end + 1..close]), &line[close + 1..])
    } else {
        (Vec::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut escaped = false;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = i + 1;
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        out.push((key, value));
        rest = &body[end.min(body.len())..];
    }
    out
}

#[test]
fn metric_samples_are_summed_over_matching_labels() {
    let text = "# TYPE outpost_x counter\n\
        outpost_x_total{result=\"hit\",tier=\"memory\"} 3\n\
        outpost_x_total{result=\"hit\",tier=\"disk\"} 2\n\
        outpost_x_total{result=\"miss\",tier=\"none\"} 1\n\
        outpost_y 7.5\n";
    assert_eq!(
        parse_metric(text, "outpost_x_total", &[("result", "hit")]),
        5.0
    );
    assert_eq!(parse_metric(text, "outpost_x_total", &[]), 6.0);
    assert_eq!(parse_metric(text, "outpost_y", &[]), 7.5);
    assert_eq!(parse_metric(text, "outpost_z", &[]), 0.0);
}
