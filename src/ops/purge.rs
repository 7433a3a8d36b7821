//! The purge service: one entry for every source of a purge (the admin API, the PURGE method,
//! the `purge` CLI through the API, fleet messages). Typed in and out: a [`PurgeRequest`] in,
//! a [`PurgeOutcome`] or a [`PurgeError`] back; the edges map them to HTTP
//! ([`answer`]).

use crate::cache::purge::{self, PurgeError, PurgeRequest, PurgeResult};
use crate::fleet::Receipts;
use crate::state::Shared;
use serde_json::{json, Value};
use std::time::Instant;

/// What a purge did: here, and with `[cluster]`, on the other nodes.
#[derive(Debug, Clone)]
pub struct PurgeOutcome {
    /// This node's result.
    pub result: PurgeResult,
    /// With a fleet: the other nodes' receipts.
    pub fleet: Option<Receipts>,
    /// Whether the client asked to wait for the receipts (`"wait"`, default true).
    pub waited: bool,
}

impl PurgeOutcome {
    /// 200, or 202 when the client waited and some live node did not acknowledge in time.
    pub fn http_status(&self) -> u16 {
        match &self.fleet {
            Some(f) if self.waited && !f.complete => 202,
            _ => 200,
        }
    }

    /// The answer body of interface.md §5.
    pub fn to_json(&self) -> Value {
        let took_ms = took_ms(&self.result);
        let mut v = json!({ "id": self.result.id.to_string(), "purged": self.result.purged, "took_ms": took_ms });
        if let Some(f) = &self.fleet {
            v["fleet"] = serde_json::to_value(f).unwrap_or(Value::Null);
        }
        v
    }
}

/// The HTTP status and JSON body of a purge's result: 200/202 with the outcome, 400 with the
/// reason it was refused (what the admin API and the PURGE method answer).
pub fn answer(result: &Result<PurgeOutcome, PurgeError>) -> (u16, Value) {
    match result {
        Ok(outcome) => (outcome.http_status(), outcome.to_json()),
        Err(e) => (400, json!({ "error": e.to_string() })),
    }
}

fn took_ms(r: &PurgeResult) -> f64 {
    (r.took.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Runs a purge from any source: applied here, then, with `[cluster]`, sent to every node
/// (waiting up to `purge_wait` for their receipts unless `"wait": false`).
pub async fn run(
    shared: &Shared,
    req: PurgeRequest,
    who: &str,
    via: &str,
) -> Result<PurgeOutcome, PurgeError> {
    let waited = req.wait.unwrap_or(true);
    let mut outcome = apply(shared, &req, who, via).await?;
    outcome.waited = waited;
    let Some(fleet) = shared.fleet.as_ref() else {
        return Ok(outcome);
    };
    let started = Instant::now();
    let receipts = fleet
        .broadcast(&req, &outcome.result.id.to_string(), waited)
        .await;
    if receipts.complete {
        shared
            .metrics
            .cluster_purge_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    outcome.fleet = Some(receipts);
    Ok(outcome)
}

/// Applies a purge on this node only (a fleet message, a resync). Logs one audit line,
/// counts `outpost_purges_total` and records it for the dashboard.
pub async fn apply(
    shared: &Shared,
    req: &PurgeRequest,
    who: &str,
    via: &str,
) -> Result<PurgeOutcome, PurgeError> {
    let purge = req.resolve(&shared.runtime.load().cache.filter)?;
    let result = purge::run(shared.cache.storage, &purge).await;
    for (kind, n) in result.counts.iter() {
        if n > 0 {
            shared.metrics.purge(kind, result.soft);
        }
    }
    let took_ms = took_ms(&result);
    tracing::info!(
        target: "audit",
        who, via, urls = ?req.urls, tags = ?req.tags, prefixes = ?req.prefixes, hosts = ?req.hosts,
        all = req.all, soft = req.soft, purged = ?result.purged, took_ms, "purge"
    );
    shared
        .dashboard
        .record_purge(crate::dashboard::PurgeRecord {
            at: crate::dashboard::now_ms(),
            id: result.id.to_string(),
            via: via.to_string(),
            who: who.to_string(),
            what: crate::dashboard::describe(req),
            soft: result.soft,
            purged: result.purged,
            took_ms,
        });
    Ok(PurgeOutcome {
        result,
        fleet: None,
        waited: true,
    })
}
