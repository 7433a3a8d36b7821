//! Object storage behind `pingora_cache::storage::Storage`: a byte-bounded moka memory tier,
//! an optional foyer disk tier behind it (lookups memory → disk, disk hits promoted, fills
//! written through), streaming partial writes (readers join an in-flight fill; a fill whose
//! body exceeds `cache.max_object` passes through unstored, see `fill.rs`), Vary-aware
//! indexes and the ban records that make purges O(matching). Called by pingora through
//! `cache.rs` and by the purge engine (`purge.rs`). Does not decide cacheability (`policy.rs`).

mod backend;
mod disk;
mod engine;
pub(crate) mod entry;
mod fill;
mod hit;
mod index;
mod memory;
mod resume;
#[cfg(test)]
mod tests;

use crate::cache::bans::log::PurgeLog;
use crate::cache::bans::Bans;
use crate::config::{CacheConfig, DiskConfig};
pub use backend::{FreshHit, HitBody};
/// Moves a damaged file outpost owns out of the way (also used by the purge log).
use disk::DiskTier;
use fill::Fills;
use hit::StorageHit;
use index::Index;
use memory::MemoryTier;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::HitHandler;
use pingora_cache::CacheKey;
pub use resume::{Resume, ResumeBody};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Ban records are kept at least this long (a request that started before a purge may
/// still be on its way to the storage).
const BAN_GRACE: Duration = Duration::from_secs(60);

/// Which tier served a hit (the `tier` label of `outpost_cache_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The moka memory tier (also in-flight fills).
    Memory,
    /// The foyer disk tier.
    Disk,
}

impl Tier {
    /// The metric label: `memory` or `disk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
    }
}

/// Counters of one tier (`/status` `cache.memory` / `cache.disk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierStats {
    /// Objects stored (Vary variants count separately). Disk: an estimate, objects written
    /// (also by earlier runs on the same directory) scaled down once more was written than
    /// fits; a hard purge of everything starts it over.
    pub objects: u64,
    /// Bytes charged: serialized meta + header + body. Disk: written, at most the size.
    pub bytes: u64,
    /// Lookups answered by this tier.
    pub hits: u64,
    /// Lookups this tier could not answer.
    pub misses: u64,
}

/// Counters and state of the disk tier (`/status` `cache.disk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskStats {
    /// Objects, bytes, hits and misses.
    #[serde(flatten)]
    pub tier: TierStats,
    /// `ok`, or `degraded` while the tier is out after repeated read failures (the cache
    /// runs on memory only; it is tried again after a pause).
    pub state: &'static str,
    /// Failed reads and corrupt or incomplete entries since start
    /// (`outpost_cache_disk_errors_total`).
    pub errors: u64,
    /// Times the tier was taken out since start.
    pub degraded_total: u64,
}

/// Counters of every tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StorageStats {
    /// The memory tier.
    pub memory: TierStats,
    /// The disk tier, when `[cache.disk]` is configured.
    pub disk: Option<DiskStats>,
}

/// Why the storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk tier's directory is unusable.
    #[error("cache.disk.path {}: {reason}", path.display())]
    Disk {
        /// `cache.disk.path`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The purge sequence at some instant. Put it in `CacheKey::extensions` when the request
/// starts (`key.extensions.insert(storage.purge_epoch())`): a fill or revalidation then
/// counts as started at that instant, so a purge that lands while the origin is still
/// answering wins over the (possibly old) content. Optional: without it, fills count as
/// started when pingora asks for the miss handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeEpoch(u64);

/// Tiered object storage; see the module docs. Use it as `&'static` (`Box::leak`).
pub struct Storage {
    memory: MemoryTier,
    disk: Option<DiskTier>,
    /// The purge log (with a disk tier only).
    log: Option<PurgeLog>,
    index: Arc<Mutex<Index>>,
    fills: Fills,
    bans: Arc<Bans>,
    ids: AtomicU64,
    /// Larger objects are streamed through (and written to disk) but not kept in memory.
    mem_object_limit: u64,
    /// `cache.max_object`: fills with larger bodies pass through (streamed, never stored).
    /// Pingora enforces it only for responses with a Content-Length.
    max_object: u64,
    /// Purge sequence numbers whose eager removal is still running (multiset).
    pending: Mutex<BTreeMap<u64, usize>>,
    ban_grace: Duration,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("memory", &self.memory)
            .field("disk", &self.disk)
            .field("mem_object_limit", &self.mem_object_limit)
            .field("max_object", &self.max_object)
            .finish_non_exhaustive()
    }
}

// === impl Storage ===

impl Storage {
    /// Memory-only storage bounded by `cfg.memory` bytes (`[cache.disk]` is ignored; use
    /// [`Storage::open`] for it).
    pub fn new(cfg: &CacheConfig) -> Self {
        let mut s = Self::with_memory(cfg.memory, false);
        s.max_object = cfg.max_object;
        s
    }

    /// Opens the storage for `cfg`: memory, plus the disk tier when `[cache.disk]` is set
    /// (recovering the objects and purges of previous runs). Fails with a message naming
    /// the path when the disk directory is unusable.
    pub async fn open(cfg: &CacheConfig) -> Result<Storage, StorageError> {
        Self::open_parts(cfg.memory, cfg.max_object, cfg.disk.as_ref()).await
    }

    pub(crate) async fn open_parts(
        memory: u64,
        max_object: u64,
        disk: Option<&DiskConfig>,
    ) -> Result<Storage, StorageError> {
        let Some(d) = disk else {
            let mut s = Self::with_memory(memory, false);
            s.max_object = max_object;
            return Ok(s);
        };
        let mut s = Self::with_memory(memory, true);
        s.max_object = max_object;
        let lost = disk::prepare_dir(&d.path)?;
        let opened = PurgeLog::open(&d.path, &s.bans).map_err(|reason| StorageError::Disk {
            path: d.path.clone(),
            reason,
        })?;
        let tier = DiskTier::open(d, max_object, lost || opened.reset).await?;
        s.disk = Some(tier);
        s.log = Some(opened.log);
        Ok(s)
    }

    pub(crate) fn with_memory(capacity: u64, with_disk: bool) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let idx = index.clone();
        let memory = MemoryTier::new(capacity, move |k, e| {
            idx.lock().remove(k, Some(e.id));
        });
        // Ids double as disk generations: start from the clock so runs never reuse one.
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Storage {
            memory,
            disk: None,
            log: None,
            index,
            fills: Fills::default(),
            bans: Arc::new(Bans::default()),
            ids: AtomicU64::new(seed),
            mem_object_limit: if with_disk {
                capacity / 8
            } else {
                capacity / 2
            },
            max_object: u64::MAX,
            pending: Mutex::new(BTreeMap::new()),
            ban_grace: BAN_GRACE,
        }
    }

    /// Body size beyond which a fill passes through (not stored): `cache.max_object`, or
    /// less when no tier takes objects that large.
    pub(crate) fn pass_limit(&self) -> u64 {
        let tiers = self.disk.as_ref().map_or(self.mem_object_limit, |d| {
            d.object_limit.max(self.mem_object_limit)
        });
        self.max_object.min(tiers)
    }

    /// The largest body (bytes) any tier stores with this config: `cache.max_object`, or
    /// less when neither the memory tier (its per-object limit) nor the disk tier (at most
    /// `cache.disk.size / 8`) takes objects that large. A response with a larger
    /// Content-Length is streamed through and not stored. (Objects near the limit may
    /// still not be stored: the limits also count the serialized headers.)
    pub fn max_storable(&self) -> u64 {
        self.pass_limit()
    }

    /// Disk records foyer dropped because its write queue was full (process-wide); the
    /// objects they belonged to were not stored on disk.
    pub fn disk_dropped_writes(&self) -> u64 {
        disk::DISK_DROPPED_WRITES.load(Ordering::Relaxed)
    }

    /// Flushes and closes the disk tier (call once on shutdown; a no-op without disk).
    /// Objects written before are found by the next run even without it (`kill -9`).
    /// File in the disk directory listing the memory tier's keys at a binary upgrade.
    const HOT_KEYS: &'static str = "outpost-hot-keys";

    /// Binary upgrade, old process: writes the memory tier's keys beside the disk tier so the
    /// new process can read those objects back into memory. Without a disk tier: nothing.
    pub fn save_hot_keys(&self) {
        let Some(dir) = self.disk_path() else {
            return;
        };
        let keys = self.memory.keys();
        let bytes: Vec<u8> = keys.iter().flat_map(|k| k.iter().copied()).collect();
        let tmp = dir.join(format!("{}.tmp", Self::HOT_KEYS));
        let done = std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, dir.join(Self::HOT_KEYS)));
        match done {
            Ok(()) => tracing::info!(
                objects = keys.len(),
                "memory tier's keys saved for the new process"
            ),
            Err(e) => tracing::warn!(error = %e, "memory tier's keys not saved"),
        }
    }

    /// Binary upgrade, new process: takes the keys the old process saved (the file is removed).
    pub fn take_hot_keys(&self) -> Vec<HashBinary> {
        let Some(path) = self.disk_path().map(|d| d.join(Self::HOT_KEYS)) else {
            return Vec::new();
        };
        let bytes = std::fs::read(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        bytes
            .chunks_exact(16)
            .filter_map(|c| <HashBinary>::try_from(c).ok())
            .collect()
    }

    /// Reads `keys` back from disk into memory (see [`Storage::save_hot_keys`]).
    pub async fn warm_up(&'static self, keys: Vec<HashBinary>) {
        let started = std::time::Instant::now();
        let promoted = self.warm(&keys).await;
        tracing::info!(
            promoted,
            of = keys.len(),
            ms = started.elapsed().as_millis() as u64,
            "memory tier warmed from disk"
        );
    }

    pub async fn close(&self) {
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.close().await {
                tracing::warn!(error = %e, "closing the disk cache failed");
            }
        }
    }

    /// Per-tier counters (memory objects/bytes are exact once moka's pending work ran).
    pub fn stats(&self) -> StorageStats {
        StorageStats {
            memory: TierStats {
                objects: self.memory.objects(),
                bytes: self.memory.bytes(),
                hits: self.memory.hits.load(Ordering::Relaxed),
                misses: self.memory.misses.load(Ordering::Relaxed),
            },
            disk: self.disk.as_ref().map(|d| DiskStats {
                tier: TierStats {
                    objects: d.objects(),
                    bytes: d.bytes(),
                    hits: d.hits.load(Ordering::Relaxed),
                    misses: d.misses.load(Ordering::Relaxed),
                },
                state: if d.degraded() { "degraded" } else { "ok" },
                errors: self.disk_errors(),
                degraded_total: d.degraded_times(),
            }),
        }
    }

    /// `cache.disk.path` of the disk tier this storage opened.
    pub fn disk_path(&self) -> Option<&std::path::Path> {
        self.disk.as_ref().map(DiskTier::path)
    }

    /// Disk-tier I/O errors and corrupt entries seen since start (process-wide).
    pub fn disk_errors(&self) -> u64 {
        disk::DISK_ERRORS.load(Ordering::Relaxed)
    }

    /// Whether `h` streams a large object from disk: the only kind of hit whose body can
    /// fail after the response started (see [`Resume`]).
    pub fn streams_from_disk(h: &HitHandler) -> bool {
        h.as_any()
            .downcast_ref::<StorageHit>()
            .is_some_and(StorageHit::streams_from_disk)
    }

    /// Lets a hit that streams from disk fetch the rest of its body from `resume` when a
    /// disk read fails mid-body (no-op for other hits).
    pub fn set_resume(h: &mut HitHandler, resume: Box<dyn Resume>) {
        if let Some(hit) = h.as_any_mut().downcast_mut::<StorageHit>() {
            hit.set_resume(resume);
        }
    }

    /// The tier a hit handler returned by this storage reads from (`Memory` for others).
    pub fn hit_tier(h: &HitHandler) -> Tier {
        h.as_any()
            .downcast_ref::<StorageHit>()
            .map_or(Tier::Memory, |h| h.tier)
    }

    /// The current purge sequence; see [`PurgeEpoch`].
    pub fn purge_epoch(&self) -> PurgeEpoch {
        PurgeEpoch(self.bans.current())
    }

    /// Runs pending memory-tier maintenance (evictions) so `stats()` is exact.
    pub async fn sync(&self) {
        self.memory.sync().await;
    }

    fn stamp_for(&self, key: &CacheKey) -> u64 {
        let now = self.bans.current();
        key.extensions
            .get::<PurgeEpoch>()
            .map_or(now, |e| e.0.min(now))
    }
}
