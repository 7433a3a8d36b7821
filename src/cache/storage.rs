//! Object storage behind `pingora_cache::storage::Storage`: a byte-bounded moka memory tier
//! with streaming partial writes (readers join an in-flight fill), Vary-aware indexes and the
//! ban records that make purges O(matching). Called by pingora through `cache.rs` and by the
//! purge engine (`purge.rs`). Does not decide cacheability; that is `policy.rs`.

pub(crate) mod entry;
mod fill;
mod hit;
mod index;
mod memory;
#[cfg(test)]
mod tests;

use crate::cache::purge::bans::{Bans, Verdict};
use crate::config::CacheConfig;
use async_trait::async_trait;
use entry::{Body, Entry, EntryInfo};
use fill::{Fill, FillWriter, Fills};
use hit::StorageHit;
use index::Index;
use memory::MemoryTier;
use parking_lot::Mutex;
use pingora::{Error, ErrorType};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{
    HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage as StorageTrait,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use serde::Serialize;
use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Purges touching at most this many objects remove them before returning; larger ones
/// (a popular tag) return at once and remove in a background task (lookups already miss).
const INLINE_APPLY: usize = 1024;
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
    /// Objects stored (Vary variants count separately).
    pub objects: u64,
    /// Bytes charged: serialized meta + header + body.
    pub bytes: u64,
    /// Lookups answered by this tier.
    pub hits: u64,
    /// Lookups this tier could not answer.
    pub misses: u64,
}

/// Counters of every tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StorageStats {
    /// The memory tier.
    pub memory: TierStats,
    /// The disk tier, when `[cache.disk]` is configured.
    pub disk: Option<TierStats>,
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

/// Two-tier object storage; see the module docs. Use it as `&'static` (`Box::leak`).
pub struct Storage {
    memory: MemoryTier,
    index: Arc<Mutex<Index>>,
    fills: Fills,
    bans: Bans,
    ids: AtomicU64,
    /// Larger objects are streamed through but not kept in memory.
    mem_object_limit: u64,
    /// Purge sequence numbers whose eager removal is still running (multiset).
    pending: Mutex<BTreeMap<u64, usize>>,
    ban_grace: Duration,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("memory", &self.memory)
            .field("mem_object_limit", &self.mem_object_limit)
            .finish_non_exhaustive()
    }
}

// === impl Storage ===

impl Storage {
    /// Memory-only storage bounded by `cfg.memory` bytes.
    pub fn new(cfg: &CacheConfig) -> Self {
        Self::with_memory(cfg.memory)
    }

    /// Opens the storage for `cfg`. The disk tier is not built yet: `[cache.disk]` is
    /// ignored with a warning and this never fails.
    pub async fn open(cfg: &CacheConfig) -> Result<Storage, StorageError> {
        if let Some(disk) = &cfg.disk {
            tracing::warn!(path = %disk.path.display(), "disk cache tier not implemented yet; memory only");
        }
        Ok(Self::new(cfg))
    }

    pub(crate) fn with_memory(capacity: u64) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let idx = index.clone();
        let memory = MemoryTier::new(capacity, move |k, e| {
            idx.lock().remove(k, Some(e.id));
        });
        Storage {
            memory,
            index,
            fills: Fills::default(),
            bans: Bans::default(),
            ids: AtomicU64::new(1),
            mem_object_limit: capacity / 2,
            pending: Mutex::new(BTreeMap::new()),
            ban_grace: BAN_GRACE,
        }
    }

    /// Per-tier counters (objects/bytes are exact once moka's pending work has run).
    pub fn stats(&self) -> StorageStats {
        StorageStats {
            memory: TierStats {
                objects: self.memory.objects(),
                bytes: self.memory.bytes(),
                hits: self.memory.hits.load(Ordering::Relaxed),
                misses: self.memory.misses.load(Ordering::Relaxed),
            },
            disk: None,
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

    /// Publishes a finished fill: checks the bans, indexes it, inserts it. Returns its weight.
    async fn commit(&self, fill: &Fill, chunks: Vec<bytes::Bytes>) -> u64 {
        let mut entry = Entry {
            id: fill.id,
            stamp: fill.stamp,
            meta: fill.meta.clone(),
            body: Arc::new(Body::new(chunks)),
            info: fill.info.clone(),
        };
        let weight = entry.weight();
        if weight > self.mem_object_limit {
            return weight;
        }
        let first = {
            let mut idx = self.index.lock();
            let v = self.bans.verdict(entry.stamp, &entry.info);
            match v {
                Verdict::Gone => return weight,
                Verdict::Expire(at) => match entry.expired_at(at) {
                    Ok(e) => entry = e,
                    Err(_) => return weight,
                },
                Verdict::Keep => {}
            }
            idx.insert(fill.key, entry.id, &entry.info);
            v
        };
        let entry = Arc::new(entry);
        self.memory.insert(fill.key, entry.clone()).await;
        // A purge recorded between the index insert and the moka insert may have missed it.
        let again = self.bans.verdict(entry.stamp, &entry.info);
        if again != first {
            self.apply_verdict(fill.key, entry.id, again).await;
        }
        weight
    }

    async fn apply_verdict(&self, key: HashBinary, id: u64, v: Verdict) {
        match v {
            Verdict::Keep => {}
            Verdict::Gone => {
                self.memory.remove_if(key, |e| e.id == id).await;
            }
            Verdict::Expire(at) => {
                self.memory
                    .replace_with(key, |e| {
                        (e.id == id)
                            .then(|| e.expired_at(at).ok().map(Arc::new))
                            .flatten()
                    })
                    .await;
            }
        }
    }

    /// Records one purge and collects the indexed objects it matches. `select` runs with
    /// the index and ban locks held. Returns (purge sequence, matched objects, count).
    pub(crate) fn ban(
        &self,
        soft: bool,
        at: SystemTime,
        select: impl FnOnce(
            &mut Index,
            &mut crate::cache::purge::bans::BanWriter<'_>,
            &mut HashSet<HashBinary>,
        ) -> Option<u64>,
    ) -> (u64, HashSet<HashBinary>, u64) {
        let mut keys = HashSet::new();
        let mut idx = self.index.lock();
        let mut w = self.bans.begin(soft, at);
        let counted = select(&mut idx, &mut w, &mut keys);
        let seq = w.seq;
        *self.pending.lock().entry(seq).or_default() += 1;
        drop(w);
        drop(idx);
        let count = counted.unwrap_or(keys.len() as u64);
        (seq, keys, count)
    }

    /// Removes (hard) or expires (soft) the objects a purge matched, then lets the ban
    /// records it no longer needs go. Inline for small sets, in the background for large.
    pub(crate) async fn apply(
        &'static self,
        seq: u64,
        keys: HashSet<HashBinary>,
        soft: bool,
        at: SystemTime,
    ) -> u64 {
        if keys.len() <= INLINE_APPLY {
            return self.apply_now(seq, keys, soft, at).await;
        }
        tokio::spawn(self.apply_now(seq, keys, soft, at));
        0
    }

    async fn apply_now(
        &self,
        seq: u64,
        keys: HashSet<HashBinary>,
        soft: bool,
        at: SystemTime,
    ) -> u64 {
        let mut done = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let hit = if soft {
                self.memory
                    .replace_with(key, |e| {
                        (e.stamp < seq)
                            .then(|| e.expired_at(at).ok().map(Arc::new))
                            .flatten()
                    })
                    .await
            } else {
                self.memory.remove_if(key, |e| e.stamp < seq).await
            };
            done += u64::from(hit);
            if i % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
        {
            let mut pending = self.pending.lock();
            if let Some(n) = pending.get_mut(&seq) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&seq);
                }
            }
        }
        self.gc_bans(false);
        done
    }

    /// Drops the whole memory tier (hard `all` purge): O(1), moka clears lazily.
    pub(crate) fn drop_all(&self) {
        self.memory.invalidate_all();
    }

    /// Forgets ban records that no stored or in-flight object can need any more.
    pub(crate) fn gc_bans(&self, force: bool) {
        // `current` first: a purge recorded after this read is above the floor.
        let mut floor = self.bans.current();
        if let Some(s) = self.fills.min_stamp() {
            floor = floor.min(s);
        }
        if let Some((&s, _)) = self.pending.lock().first_key_value() {
            floor = floor.min(s.saturating_sub(1));
        }
        self.bans.gc(floor, self.ban_grace, force);
    }

    /// Purge of one URL (every variant) for pingora's `purge`/`expire`.
    async fn purge_url(&'static self, primary: HashBinary, soft: bool) -> u64 {
        let at = SystemTime::now();
        let (seq, keys, _) = self.ban(soft, at, |idx, w, keys| {
            w.url(primary);
            keys.extend(idx.variants(&primary).iter().copied());
            None
        });
        let fills: u64 = if soft {
            0
        } else {
            keys.iter().map(|k| u64::from(self.fills.detach(k))).sum()
        };
        self.apply(seq, keys, soft, at).await + fills
    }

    fn partial_hit(&self, fill: Arc<Fill>, v: Verdict) -> pingora::Result<(CacheMeta, HitHandler)> {
        let mut meta = CacheMeta::deserialize(&fill.meta.0, &fill.meta.1)?;
        if let Verdict::Expire(at) = v {
            meta.expire_at(at);
        }
        Ok((meta, Box::new(StorageHit::partial(fill))))
    }
}

#[async_trait]
impl StorageTrait for Storage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora::Result<Option<(CacheMeta, HitHandler)>> {
        let k = key.combined_bin();
        // An in-flight fill first: a refreshed object must be visible before it completes.
        if let Some(fill) = self.fills.latest(&k) {
            let v = self.bans.verdict(fill.stamp, &fill.info);
            if v != Verdict::Gone {
                self.memory.hits.fetch_add(1, Ordering::Relaxed);
                return self.partial_hit(fill, v).map(Some);
            }
        }
        if let Some(entry) = self.memory.get(&k).await {
            let v = self.bans.verdict(entry.stamp, &entry.info);
            if v == Verdict::Gone {
                self.memory.remove_if(k, |e| e.id == entry.id).await;
            } else if let Ok(mut meta) = entry.cache_meta() {
                if let Verdict::Expire(at) = v {
                    meta.expire_at(at);
                }
                self.memory.hits.fetch_add(1, Ordering::Relaxed);
                let hit = StorageHit::complete(Tier::Memory, entry.body.clone());
                return Ok(Some((meta, Box::new(hit))));
            }
        }
        self.memory.misses.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> pingora::Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id = U64WriteId::try_from(tag)
            .map(u64::from)
            .map_err(|_| Error::explain(ErrorType::InternalError, "bad streaming write tag"))?;
        match self.fills.by_id(id) {
            Some(fill) => self.partial_hit(fill, Verdict::Keep).map(Some),
            None => Error::e_explain(ErrorType::InternalError, "no fill for streaming write tag"),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora::Result<MissHandler> {
        let url = String::from_utf8_lossy(key.primary_key());
        let info = Arc::new(EntryInfo::new(
            key.primary_bin(),
            &url,
            meta.response_header(),
        ));
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let fill = Arc::new(Fill::new(
            id,
            key.combined_bin(),
            self.stamp_for(key),
            meta.serialize()?,
            info,
        ));
        self.fills.register(fill.clone());
        Ok(Box::new(FillWriter::new(self, fill)))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> pingora::Result<PurgeOutcome> {
        if let PurgeTarget::Exact(e) = target {
            if e.entry_id().is_some() {
                return Ok(PurgeOutcome::NotFound); // we never hand out entry ids
            }
        }
        let ck = target.key();
        let whole_url = matches!(target, PurgeTarget::Active(_))
            && ck.variance_bin().is_none()
            && matches!(purge_type, PurgeType::Invalidation);
        let removed = if whole_url {
            self.purge_url(ck.primary_bin(), false).await
        } else {
            u64::from(self.memory.remove_if(ck.combined_bin(), |_| true).await)
        };
        Ok(if removed > 0 {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> pingora::Result<PurgeOutcome> {
        if let PurgeTarget::Exact(e) = target {
            if e.entry_id().is_some() {
                return Ok(PurgeOutcome::NotFound);
            }
        }
        let ck = target.key();
        let expired = if ck.variance_bin().is_none() {
            self.purge_url(ck.primary_bin(), true).await
        } else {
            let at = SystemTime::now();
            let hit = self
                .memory
                .replace_with(ck.combined_bin(), |e| e.expired_at(at).ok().map(Arc::new))
                .await;
            u64::from(hit)
        };
        Ok(if expired > 0 {
            PurgeOutcome::Expired
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> pingora::Result<bool> {
        let k = key.combined_bin();
        let bin = meta.serialize()?;
        let stamp = self.stamp_for(key);
        let mut updated = None;
        let replaced = self
            .memory
            .replace_with(k, |e| {
                if self.bans.verdict(e.stamp, &e.info) == Verdict::Gone {
                    return None;
                }
                let info = Arc::new(e.info.with_header(meta.response_header()));
                updated = Some((e.id, info.clone()));
                Some(Arc::new(Entry {
                    id: e.id,
                    stamp,
                    meta: bin,
                    body: e.body.clone(),
                    info,
                }))
            })
            .await;
        if let Some((id, info)) = updated.filter(|_| replaced) {
            self.index.lock().retag(&k, id, &info);
        }
        Ok(replaced)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
