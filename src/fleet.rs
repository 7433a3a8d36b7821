//! The fleet (interface.md §2 `[cluster]`, §5): purges accepted by any node are applied there
//! first, then published to a NATS JetStream stream; every other node consumes the stream
//! through its own durable consumer, applies each purge and acknowledges it, so the
//! accepting node can answer with per-node receipts. Liveness is a heartbeat on core NATS.
//!
//! - Engine down: purges still apply locally and wait in an outbox, published (with the
//!   same message id, so the engine drops duplicates) when the engine is back. Serving never
//!   depends on the engine.
//! - Start with a disk tier: before the listeners accept, the node applies every purge it
//!   missed (its cursor is kept in `outpost-fleet.json` beside the purge log). When the
//!   stream no longer holds what it missed, or the engine cannot be reached while it has a
//!   cursor, it soft-purges everything (objects are revalidated, never served as they were).
//!
//! The engine sits behind [`Bus`] (publish, consume from a cursor, ack, live nodes), so a
//! Redis Streams backend could be added.

mod nats;
pub mod peering;

use crate::cache::purge::PurgeRequest;
use crate::config::ClusterConfig;
use crate::state::Shared;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// A node is live while its heartbeats arrive (one a second) within this.
const LIVE_FOR: Duration = Duration::from_secs(3);
/// Purge ids remembered to drop duplicates (a republished outbox entry, a redelivery).
const SEEN_IDS: usize = 10_000;
/// How long a start waits for the engine to catch up before serving.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The other nodes' receipts for one purge (the answer's `fleet` object, interface.md §5).
#[derive(Debug, Clone, Serialize)]
pub struct Receipts {
    /// Every live node acknowledged within `purge_wait`.
    pub complete: bool,
    /// The engine is down: the purge waits in the outbox.
    pub queued: bool,
    /// Per live node (at the time of the purge): acknowledged, after how many ms.
    pub nodes: std::collections::BTreeMap<String, Receipt>,
    /// Time spent waiting.
    pub took_ms: f64,
}

/// One node's receipt.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Receipt {
    pub acked: bool,
    pub ms: Option<f64>,
}

/// One purge on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeMsg {
    pub v: u32,
    pub id: String,
    pub node: String,
    pub accepted_ms: u64,
    pub req: PurgeRequest,
}

/// What another node last said about itself.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    cursor: u64,
}

/// The durable state beside the purge log.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CursorFile {
    stream: String,
    cursor: u64,
}

/// The fleet membership of this node.
#[derive(Debug)]
pub struct Fleet {
    pub cfg: ClusterConfig,
    connected: AtomicBool,
    /// Stream sequence of the last purge applied (or skipped as our own).
    cursor: AtomicU64,
    /// The stream's last sequence, as last seen.
    last_seq: AtomicU64,
    /// The highest stream sequence of a purge applied or published here.
    floor: AtomicU64,
    cursor_path: Option<PathBuf>,
    nodes: Mutex<HashMap<String, Seen>>,
    outbox: Mutex<VecDeque<PurgeMsg>>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    waiters: Mutex<HashMap<String, mpsc::UnboundedSender<(String, Instant)>>>,
    /// Wakes the engine task when the outbox gets something.
    kick: tokio::sync::Notify,
}

impl Fleet {
    /// The fleet state for `cfg`; the cursor is read from the disk tier's directory.
    pub fn new(cfg: ClusterConfig, disk_dir: Option<PathBuf>) -> Self {
        let cursor_path = disk_dir.map(|d| d.join("outpost-fleet.json"));
        let stored: CursorFile = cursor_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let cursor = if stored.stream == cfg.stream {
            stored.cursor
        } else {
            0
        };
        Fleet {
            cfg,
            connected: AtomicBool::new(false),
            cursor: AtomicU64::new(cursor),
            last_seq: AtomicU64::new(cursor),
            floor: AtomicU64::new(cursor),
            cursor_path,
            nodes: Mutex::new(HashMap::new()),
            outbox: Mutex::new(VecDeque::new()),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            waiters: Mutex::new(HashMap::new()),
            kick: tokio::sync::Notify::new(),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn set_connected(&self, shared: &Shared, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        shared.metrics.cluster_up.set(i64::from(up));
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// What a peer must have applied before its copies may refill this node: the highest
    /// purge applied or published here, or "everything" while a purge waits unpublished.
    pub fn floor(&self) -> u64 {
        if self.outbox.lock().is_empty() {
            self.floor.load(Ordering::Relaxed).max(self.cursor())
        } else {
            u64::MAX
        }
    }

    /// A purge of ours got stream sequence `seq`.
    fn published(&self, seq: u64) {
        self.floor.fetch_max(seq, Ordering::Relaxed);
        self.last_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Records that everything up to `seq` was applied (durably when there is a disk tier:
    /// a crash replays at most what came after the last write, and purges are idempotent).
    fn advance(&self, shared: &Shared, seq: u64) {
        self.cursor.fetch_max(seq, Ordering::Relaxed);
        self.last_seq.fetch_max(seq, Ordering::Relaxed);
        self.update_lag(shared);
        if let Some(path) = &self.cursor_path {
            let body = serde_json::to_vec(&CursorFile {
                stream: self.cfg.stream.clone(),
                cursor: self.cursor(),
            })
            .unwrap_or_default();
            let tmp = path.with_extension("json.tmp");
            let done = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = done {
                tracing::warn!(path = %path.display(), error = %e, "fleet cursor not saved");
            }
        }
    }

    fn update_lag(&self, shared: &Shared) {
        let lag = self
            .last_seq
            .load(Ordering::Relaxed)
            .saturating_sub(self.cursor());
        shared
            .metrics
            .cluster_lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// True the first time `id` is seen.
    fn first_sight(&self, id: &str) -> bool {
        let mut seen = self.seen.lock();
        if seen.0.contains(id) {
            return false;
        }
        seen.0.insert(id.to_string());
        seen.1.push_back(id.to_string());
        if seen.1.len() > SEEN_IDS {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
        true
    }

    /// Nodes heard from within [`LIVE_FOR`], this one excluded.
    fn live_others(&self) -> Vec<String> {
        self.nodes
            .lock()
            .iter()
            .filter(|(n, s)| **n != self.cfg.node && s.at.elapsed() < LIVE_FOR)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn heard(&self, node: &str, cursor: u64) {
        if node == self.cfg.node {
            return;
        }
        self.nodes.lock().insert(
            node.to_string(),
            Seen {
                at: Instant::now(),
                cursor,
            },
        );
    }

    fn acked(&self, id: &str, node: &str) {
        if let Some(tx) = self.waiters.lock().get(id) {
            let _ = tx.send((node.to_string(), Instant::now()));
        }
    }

    /// Applies a purge received from another node (not republished).
    async fn apply(&self, shared: &Shared, msg: &PurgeMsg) {
        if !self.first_sight(&msg.id) {
            return;
        }
        let via = format!("fleet:{}", msg.node);
        if let Err(e) = crate::ops::purge::apply(shared, &msg.req, &msg.node, &via).await {
            tracing::warn!(id = %msg.id, from = %msg.node, error = %e, "fleet purge not applied");
        }
    }

    /// Soft-purges everything: what was missed while away is unknown.
    async fn revalidate_all(&self, shared: &Shared, why: &str) {
        tracing::warn!(
            "fleet: {why}: soft-purging everything (objects are revalidated before use)"
        );
        let req = PurgeRequest {
            all: true,
            soft: true,
            ..PurgeRequest::default()
        };
        if let Err(e) = crate::ops::purge::apply(shared, &req, &self.cfg.node, "fleet:resync").await
        {
            tracing::warn!(error = %e, "fleet resync purge not applied");
        }
    }

    /// After a local purge: publish it and wait (unless `wait` is false) for every live node's
    /// receipt, up to `purge_wait`; the receipts are the answer's `fleet` object.
    pub async fn broadcast(&self, req: &PurgeRequest, id: &str, wait: bool) -> Receipts {
        let started = Instant::now();
        let accepted_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let msg = PurgeMsg {
            v: 1,
            id: id.to_string(),
            node: self.cfg.node.clone(),
            accepted_ms,
            req: req.clone(),
        };
        self.first_sight(id);
        let expected = self.live_others();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiters.lock().insert(id.to_string(), tx);
        self.outbox.lock().push_back(msg);
        self.kick.notify_one();
        let mut acks: HashMap<String, f64> = HashMap::new();
        if wait {
            let deadline = tokio::time::Instant::now() + self.cfg.purge_wait;
            while !expected.iter().all(|n| acks.contains_key(n)) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((node, at))) => {
                        let ms = at.duration_since(started).as_secs_f64() * 1000.0;
                        acks.insert(node, (ms * 100.0).round() / 100.0);
                    }
                    _ => break,
                }
            }
        }
        self.waiters.lock().remove(id);
        let complete = wait && expected.iter().all(|n| acks.contains_key(n));
        let nodes = expected
            .iter()
            .map(|n| {
                let ms = acks.get(n).copied();
                (
                    n.clone(),
                    Receipt {
                        acked: ms.is_some(),
                        ms,
                    },
                )
            })
            .collect();
        Receipts {
            complete,
            queued: !self.connected(),
            nodes,
            took_ms: (started.elapsed().as_secs_f64() * 1e5).round() / 100.0,
        }
    }

    /// `/status` "cluster".
    pub fn status(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .lock()
            .iter()
            .map(|(n, s)| json!({ "node": n, "live": s.at.elapsed() < LIVE_FOR, "cursor": s.cursor }))
            .collect();
        json!({
            "node": self.cfg.node,
            "engine": if self.connected() { "connected" } else { "down" },
            "cursor": self.cursor(),
            "pending": self.outbox.lock().len(),
            "nodes": nodes,
        })
    }

    /// Before serving from a disk tier: connect, apply every purge missed, bounded by
    /// [`SYNC_TIMEOUT`]. With a cursor and no engine, everything is soft-purged.
    pub async fn sync_at_start(&self, shared: &Shared) {
        let had_cursor = self.cursor() > 0;
        match tokio::time::timeout(SYNC_TIMEOUT, nats::catch_up(self, shared)).await {
            Ok(Ok(())) => tracing::info!(
                cursor = self.cursor(),
                "fleet: caught up with the purge stream"
            ),
            Ok(Err(e)) if had_cursor => {
                self.revalidate_all(shared, &format!("purge stream unavailable at start ({e})"))
                    .await;
            }
            Err(_) if had_cursor => {
                self.revalidate_all(shared, "purge stream not caught up within 10 s")
                    .await;
            }
            Ok(Err(e)) => tracing::warn!("fleet: engine unavailable at start: {e}"),
            Err(_) => tracing::warn!("fleet: engine not reached within 10 s at start"),
        }
    }
}

/// The background task: keeps the engine connection, consumes, publishes the outbox.
#[derive(Debug)]
pub struct FleetService {
    pub shared: Arc<Shared>,
    pub fleet: Arc<Fleet>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FleetService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            () = nats::run(&self.fleet, &self.shared) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The engine's narrow interface (what a Redis Streams backend would implement too).
#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// Publishes `msg` with its id as the deduplication key; the stream sequence it got.
    async fn publish(&self, msg: &PurgeMsg) -> Result<u64, String>;
    /// Acknowledges `id` to its sender.
    async fn receipt(&self, id: &str, node: &str) -> Result<(), String>;
}
