//! Purge engine shared by `POST /purge` (admin) and the `PURGE` method (proxy): parses and
//! validates a purge request, records ban records (`bans.rs`) so the next lookup of any
//! matching object misses (hard) or revalidates (soft), and removes matching memory objects
//! eagerly through the storage indexes. Cost is O(1) + O(matching objects), never a scan.

#[cfg(test)]
mod tests;

use crate::cache::storage::Storage;
use crate::url::{canonical_host, ObjectUrl, QueryFilter, Scheme};
use pingora_cache::key::CacheHashKey;
use pingora_cache::CacheKey;
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime};

/// A purge: the body of `POST /purge` (interface.md §5). Everything listed is purged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Absolute URLs in primary-key form (`http://example.test/a.css`): every Vary variant.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Objects whose `Surrogate-Key` / `Cache-Tag` carried one of these (exact match).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Absolute URL prefixes (`http://example.test/img/`); scheme and host are case-insensitive.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Hosts (`example.test`), any scheme and port.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Everything.
    #[serde(default)]
    pub all: bool,
    /// Mark stale (revalidate on next use, may serve stale) instead of removing.
    #[serde(default)]
    pub soft: bool,
    /// With `[cluster]`: `false` answers without waiting for the other nodes' receipts.
    #[serde(default, skip_serializing)]
    pub wait: Option<bool>,
}

/// A purge request that cannot be run; the message is meant for the API client (400).
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// Not JSON, wrong types, or an unknown field.
    #[error("invalid purge request: {0}")]
    Json(#[from] serde_json::Error),
    /// `{}` or only empty lists.
    #[error("nothing to purge: give at least one of \"urls\", \"tags\", \"prefixes\", \"hosts\" (non-empty lists) or \"all\": true")]
    Empty,
    /// One item is malformed.
    #[error("{field}[{index}]: {reason}")]
    Item {
        /// `urls`, `tags`, `prefixes` or `hosts`.
        field: &'static str,
        /// Zero-based position in the list.
        index: usize,
        /// What was expected.
        reason: String,
    },
}

/// A purge resolved to canonical names ([`ObjectUrl`]): what [`run`] executes. Built from a
/// [`PurgeRequest`] by [`PurgeRequest::resolve`], or directly by the proxy (PURGE method,
/// RFC 9111 §4.4 invalidation) from the request's own object name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// Objects (every Vary variant of each).
    pub urls: Vec<ObjectUrl>,
    /// Exact surrogate keys / cache tags.
    pub tags: Vec<String>,
    /// URL prefixes (canonical scheme, host and path).
    pub prefixes: Vec<ObjectUrl>,
    /// Canonical hosts (any scheme, any port).
    pub hosts: Vec<String>,
    /// Everything.
    pub all: bool,
    /// Mark stale instead of removing.
    pub soft: bool,
}

impl Purge {
    /// A hard purge of these objects.
    pub fn urls(urls: Vec<ObjectUrl>) -> Purge {
        Purge {
            urls,
            ..Purge::default()
        }
    }
}

/// Items per kind in one purge (for `outpost_purges_total{kind, soft}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Objects named by URL (one URL of a request names both schemes).
    pub url: u64,
    /// `tags` given.
    pub tag: u64,
    /// `prefixes` given.
    pub prefix: u64,
    /// `hosts` given.
    pub host: u64,
    /// 1 for `"all": true`.
    pub all: u64,
}

impl PurgeCounts {
    /// `(kind label, count)` for every kind, in metric label form.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("url", self.url),
            ("tag", self.tag),
            ("prefix", self.prefix),
            ("host", self.host),
            ("all", self.all),
        ]
        .into_iter()
    }
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeResult {
    /// The purge's sequence number: unique and increasing (usable as the API's `id`).
    pub id: u64,
    /// Objects (Vary variants count separately) purged, when known.
    pub purged: Option<u64>,
    /// Time spent, until every later lookup was guaranteed to miss (or revalidate).
    pub took: Duration,
    /// Whether it was a soft purge.
    pub soft: bool,
    /// Items per kind in the request.
    pub counts: PurgeCounts,
}

// === impl PurgeRequest ===

impl PurgeRequest {
    /// Parses and validates a `POST /purge` body.
    pub fn from_json(body: &[u8]) -> Result<PurgeRequest, PurgeError> {
        let mut req: PurgeRequest = serde_json::from_slice(body)?;
        req.validate()?;
        Ok(req)
    }

    /// A hard purge of one URL and all its variants (the `PURGE` method).
    pub fn url(url: impl Into<String>) -> PurgeRequest {
        PurgeRequest {
            urls: vec![url.into()],
            ..PurgeRequest::default()
        }
    }

    /// Trims items and checks there is something well-formed to purge.
    pub fn validate(&mut self) -> Result<(), PurgeError> {
        if self.urls.is_empty()
            && self.tags.is_empty()
            && self.prefixes.is_empty()
            && self.hosts.is_empty()
            && !self.all
        {
            return Err(PurgeError::Empty);
        }
        check(&mut self.urls, "urls", absolute_url)?;
        check(&mut self.prefixes, "prefixes", absolute_url)?;
        check(&mut self.tags, "tags", |t| {
            (!t.is_empty())
                .then_some(())
                .ok_or_else(|| "empty tag".to_string())
        })?;
        check(&mut self.hosts, "hosts", |h| {
            if h.is_empty() || h.contains(['/', ' ', '\t']) {
                Err(format!(
                    "expected a host name like \"example.test\", got {h:?}"
                ))
            } else {
                Ok(())
            }
        })
    }

    /// Validates and resolves every name to its canonical form: a URL names the object under
    /// both schemes (a purge by URL hits the http and the https copy), ignored query
    /// parameters (`filter`) removed as in the cache key.
    pub fn resolve(&self, filter: &QueryFilter) -> Result<Purge, PurgeError> {
        let mut req = self.clone();
        req.validate()?;
        let item = |field: &'static str| {
            move |(index, e): (usize, crate::url::UrlError)| PurgeError::Item {
                field,
                index,
                reason: e.to_string(),
            }
        };
        let mut urls = Vec::with_capacity(req.urls.len() * 2);
        for (i, u) in req.urls.iter().enumerate() {
            let url = ObjectUrl::parse(u, filter).map_err(|e| item("urls")((i, e)))?;
            for scheme in [Scheme::Http, Scheme::Https] {
                let v = url.with_scheme(scheme);
                if !urls.contains(&v) {
                    urls.push(v);
                }
            }
        }
        let prefixes = req
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| ObjectUrl::parse_prefix(p).map_err(|e| item("prefixes")((i, e))))
            .collect::<Result<Vec<_>, _>>()?;
        let hosts = req
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                canonical_host(h)
                    .map(|h| h.into_owned())
                    .map_err(|e| item("hosts")((i, e)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Purge {
            urls,
            tags: req.tags,
            prefixes,
            hosts,
            all: req.all,
            soft: req.soft,
        })
    }
}

fn check(
    items: &mut [String],
    field: &'static str,
    ok: impl Fn(&str) -> Result<(), String>,
) -> Result<(), PurgeError> {
    for (index, item) in items.iter_mut().enumerate() {
        let trimmed = item.trim();
        if trimmed.len() != item.len() {
            *item = trimmed.to_string();
        }
        ok(item).map_err(|reason| PurgeError::Item {
            field,
            index,
            reason,
        })?;
    }
    Ok(())
}

fn absolute_url(u: &str) -> Result<(), String> {
    ObjectUrl::parse_prefix(u)
        .map(drop)
        .map_err(|e| format!("{e}, got {u:?}"))
}

/// Runs a (validated) purge on `storage`. When it returns, no lookup serves the purged
/// content fresh (hard: a miss; soft: stale, revalidated), in any tier, also after a restart
/// (the purge is in the disk tier's log). Large sets are freed in the background.
pub async fn run(storage: &'static Storage, req: &Purge) -> PurgeResult {
    let start = Instant::now();
    let soft = req.soft;
    let at = SystemTime::now();
    let counts = PurgeCounts {
        url: req.urls.len() as u64,
        tag: req.tags.len() as u64,
        prefix: req.prefixes.len() as u64,
        host: req.hosts.len() as u64,
        all: u64::from(req.all),
    };
    let mut url_keys = Vec::new();
    let mut old_index = None;
    let mut banned = storage.ban(soft, at, |idx, w, keys| {
        for url in &req.urls {
            let mut pks = idx.primaries_of_url(url.as_str());
            let hashed = CacheKey::new(url.as_str(), "").primary_bin();
            if !pks.contains(&hashed) {
                pks.push(hashed);
            }
            for pk in pks {
                w.url(pk);
                url_keys.push(pk);
                let variants = idx.variants(&pk);
                url_keys.extend(variants.iter().copied());
                keys.extend(variants);
            }
        }
        for tag in &req.tags {
            w.tag(tag);
            idx.tagged(tag, !soft, keys);
        }
        for prefix in &req.prefixes {
            w.prefix(prefix.as_str());
            idx.with_prefix(prefix.as_str(), keys);
        }
        for host in &req.hosts {
            w.host(host);
            idx.on_host(host, keys);
        }
        if req.all {
            w.all();
            let n = idx.len() as u64;
            keys.clear(); // soft: applied lazily at lookup; hard: dropped wholesale below
            if !soft {
                old_index = Some(idx.take());
            }
            return Some(n);
        }
        None
    });
    if let Some(old) = old_index {
        // Free the old index off the request path, with no lock held.
        drop(tokio::task::spawn_blocking(move || drop(old)));
    }
    storage.persist(&mut banned).await;
    if !soft {
        storage.forget_on_disk(url_keys);
        if req.all {
            storage.drop_all();
        }
    }
    let (id, count) = (banned.seq, banned.count);
    storage.apply(banned, soft, at).await;
    PurgeResult {
        id,
        purged: storage.counts_exact().then_some(count),
        took: start.elapsed(),
        soft,
        counts,
    }
}
