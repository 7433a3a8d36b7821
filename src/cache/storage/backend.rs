//! `impl pingora_cache::storage::Storage for Storage`: the calls pingora makes. Lookup order
//! is in-flight fill → memory → disk (a disk hit is promoted); every object found is judged
//! by the ban records first. Nothing here panics on a missing entry.

use super::disk::{DiskBody, DISK_ERRORS};
use super::entry::{empty_header_bin, Body, Entry, EntryInfo, HeaderWire};
use super::fill::{Fill, FillWriter};
use super::hit::StorageHit;
use super::{Storage, Tier};
use crate::cache::bans::Verdict;
use async_trait::async_trait;
use pingora::{Error, ErrorType};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{
    HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage as StorageTrait,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// A fresh memory-tier object ([`Storage::fresh_hit`]).
#[derive(Debug)]
pub struct FreshHit {
    /// The stored response header.
    pub header: pingora::http::ResponseHeader,
    pub body: HitBody,
    /// Seconds since the stored response was generated (the `Age` to send, RFC 9111 §4.2.3).
    pub age: u64,
    /// Seconds of freshness left.
    pub ttl: i64,
}

/// The body of a [`FreshHit`]: shared with the stored object, never copied.
#[derive(Debug)]
pub struct HitBody(Arc<Body>);

impl HitBody {
    /// The chunks, in order.
    pub fn chunks(&self) -> &[bytes::Bytes] {
        self.0.chunks()
    }
}

type Found = Option<(CacheMeta, HitHandler)>;

impl Storage {
    /// A reader of an in-flight fill; `None` when it can no longer be read from its start
    /// (a pass-through fill that already released data).
    fn partial_hit(&self, fill: Arc<Fill>, v: Verdict) -> pingora::Result<Found> {
        let mut meta = super::entry::cache_meta_with(&fill.meta, || fill.decoded.clone())?;
        if let Verdict::Expire(at) = v {
            meta.expire_at(at);
        }
        Ok(StorageHit::partial(fill).map(|h| (meta, Box::new(h) as HitHandler)))
    }

    /// After a binary upgrade: reads `keys` (the old process's memory tier) back from disk
    /// into memory, stopping once memory is full. Purged objects are not revived (the
    /// lookup judges bans). Returns how many were promoted.
    pub(crate) async fn warm(&'static self, keys: &[HashBinary]) -> usize {
        let mut promoted = 0;
        for k in keys {
            if self.memory.bytes() >= self.memory.capacity() {
                break;
            }
            if self.memory.get(k).await.is_some() {
                continue;
            }
            if self.lookup_disk(*k).await.is_some() && self.memory.get(k).await.is_some() {
                promoted += 1;
            }
        }
        promoted
    }

    /// A memory-tier object that may be served exactly as stored, for the lean hit path
    /// (`proxy/caching.rs`): fresh, not purged (hard or soft), no `Vary`, and no fill of the
    /// same key in flight. `None` means "take the full path", never "miss".
    pub async fn fresh_hit(&'static self, key: &CacheKey) -> Option<FreshHit> {
        let k = key.combined_bin();
        if self.fills.latest(&k).is_some() {
            return None;
        }
        let entry = self.memory.get(&k).await?;
        if self.bans.verdict(entry.stamp, entry.info.subject()) != Verdict::Keep {
            return None;
        }
        let meta = CacheMeta::deserialize(&entry.meta.0, empty_header_bin()?).ok()?;
        let now = SystemTime::now();
        if meta.fresh_until() <= now || meta.variance().is_some() {
            return None;
        }
        let header = entry.header.decode().ok()?;
        if header.headers.contains_key(http::header::VARY) {
            return None;
        }
        self.memory.hits.fetch_add(1, Ordering::Relaxed);
        let ttl = meta.fresh_until().duration_since(now).unwrap_or_default();
        Some(FreshHit {
            header,
            body: HitBody(entry.body.clone()),
            age: now
                .duration_since(meta.epoch())
                .unwrap_or_default()
                .as_secs(),
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        })
    }

    async fn lookup_memory(&self, k: HashBinary) -> Found {
        let entry = self.memory.get(&k).await?;
        let v = self.bans.verdict(entry.stamp, entry.info.subject());
        if v == Verdict::Gone {
            self.memory.remove_if(k, |e| e.id == entry.id).await;
            return None;
        }
        let mut meta = entry.cache_meta().ok()?;
        if let Verdict::Expire(at) = v {
            meta.expire_at(at);
        }
        let hit = StorageHit::complete(Tier::Memory, entry.body.clone());
        Some((meta, Box::new(hit)))
    }

    async fn lookup_disk(&'static self, k: HashBinary) -> Found {
        let disk = self.disk.as_ref()?;
        let head = disk.head(k).await?;
        let info = Arc::new(head.info());
        let v = self.bans.verdict_disk(head.stamp, info.subject());
        if v == Verdict::Gone {
            disk.remove(k);
            return None;
        }
        let Ok(mut meta) = CacheMeta::deserialize(&head.meta.0, &head.meta.1) else {
            disk.remove(k);
            return None;
        };
        if let Verdict::Expire(at) = v {
            meta.expire_at(at);
        }
        if head.weight() > self.mem_object_limit {
            // Streamed: once the 200 and its Content-Length are out, a missing chunk can
            // only cut the body short. Serve only objects whose chunks are all there.
            if !disk.has_chunks(k, head.gen, head.chunk_crcs.len()) {
                DISK_ERRORS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    reason = "missing chunk",
                    "incomplete disk cache entry removed"
                );
                disk.remove(k);
                return None;
            }
            let body = DiskBody::new(disk, k, head);
            return Some((meta, Box::new(StorageHit::disk(body))));
        }
        let body = Arc::new(disk.body(k, &head).await?);
        let entry = Entry {
            id: head.gen,
            stamp: head.stamp,
            meta: head.meta,
            body: body.clone(),
            info,
            header: HeaderWire::of(meta.response_header()),
        };
        self.store(k, entry, false).await; // promote
        Some((meta, Box::new(StorageHit::complete(Tier::Disk, body))))
    }
}

impl Storage {
    /// The stored meta of `key` without reading its body (in-flight fill, memory, disk
    /// head), as the ban records judge it: which slices of a sliced object are stored, and
    /// of which representation. `None` when nothing (unpurged) is stored.
    pub async fn peek(&'static self, key: &CacheKey) -> Option<CacheMeta> {
        let k = key.combined_bin();
        let judged = |mut meta: CacheMeta, v: Verdict| match v {
            Verdict::Gone => None,
            Verdict::Expire(at) => {
                meta.expire_at(at);
                Some(meta)
            }
            Verdict::Keep => Some(meta),
        };
        if let Some(fill) = self.fills.latest(&k) {
            let v = self.bans.verdict(fill.stamp, fill.info.subject());
            let meta = super::entry::cache_meta_with(&fill.meta, || fill.decoded.clone()).ok();
            if let Some(found) = meta.and_then(|m| judged(m, v)) {
                return Some(found);
            }
        }
        if let Some(entry) = self.memory.get(&k).await {
            let v = self.bans.verdict(entry.stamp, entry.info.subject());
            if let Some(found) = entry.cache_meta().ok().and_then(|m| judged(m, v)) {
                return Some(found);
            }
        }
        let head = self.disk.as_ref()?.head(k).await?;
        let v = self.bans.verdict_disk(head.stamp, head.info().subject());
        let meta = CacheMeta::deserialize(&head.meta.0, &head.meta.1).ok()?;
        judged(meta, v)
    }

    /// The meta of a memory-tier variant of the URL of `key` that `accept` takes (at most
    /// the first 64 variants are looked at): any stored slice of a sliced object.
    pub async fn peek_variant(
        &'static self,
        key: &CacheKey,
        accept: impl Fn(&CacheMeta) -> bool,
    ) -> Option<CacheMeta> {
        let variants: Vec<HashBinary> = {
            let idx = self.index.lock();
            idx.variants(&key.primary_bin())
                .into_iter()
                .take(64)
                .collect()
        };
        for k in variants {
            let Some(entry) = self.memory.get(&k).await else {
                continue;
            };
            if self.bans.verdict(entry.stamp, entry.info.subject()) != Verdict::Keep {
                continue;
            }
            if let Some(meta) = entry.cache_meta().ok().filter(|m| accept(m)) {
                return Some(meta);
            }
        }
        None
    }

    /// Hard-purges the URL of `key`: every variant, so every slice of a sliced object
    /// (two slices of different representations were found). Requests that started
    /// before it must take a new [`super::PurgeEpoch`] to store again.
    pub async fn drop_url(&'static self, key: &CacheKey) {
        self.purge_url(key.primary_bin(), false).await;
    }

    /// Whether a hit reads an in-flight fill (the body is still arriving from the origin).
    pub fn hit_is_filling(h: &HitHandler) -> bool {
        !h.should_count_access()
    }
}

#[async_trait]
impl StorageTrait for Storage {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> pingora::Result<Found> {
        let k = key.combined_bin();
        // An in-flight fill first: a refreshed object must be visible before it completes.
        if let Some(fill) = self.fills.latest(&k) {
            let v = self.bans.verdict(fill.stamp, fill.info.subject());
            if v != Verdict::Gone {
                if let Some(found) = self.partial_hit(fill, v)? {
                    self.memory.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(found));
                }
            }
        }
        if let Some(found) = self.lookup_memory(k).await {
            self.memory.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(found));
        }
        self.memory.misses.fetch_add(1, Ordering::Relaxed);
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        let found = self.lookup_disk(k).await;
        let counter = if found.is_some() {
            &disk.hits
        } else {
            &disk.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(found)
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> pingora::Result<Found> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id = U64WriteId::try_from(tag)
            .map(u64::from)
            .map_err(|_| Error::explain(ErrorType::InternalError, "bad streaming write tag"))?;
        match self.fills.by_id(id) {
            Some(fill) => match self.partial_hit(fill, Verdict::Keep)? {
                Some(found) => Ok(Some(found)),
                None => Error::e_explain(
                    ErrorType::InternalError,
                    "streaming write already released data",
                ),
            },
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
        let stamp = self.stamp_for(key);
        // A disk tier taken out after failures is left alone: memory limits apply.
        let disk = self.disk.as_ref().filter(|d| !d.degraded());
        let pass_after = match disk {
            Some(_) => self.pass_limit(),
            None => self.max_object.min(self.mem_object_limit),
        };
        let fill = Fill::new(id, key.combined_bin(), stamp, meta.serialize()?, info)
            .with_header(meta.response_header_copy())
            .spilling_to(disk, self.mem_object_limit)
            .passing_after(pass_after);
        let fill = Arc::new(fill);
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
        let found = if whole_url {
            self.purge_url(ck.primary_bin(), false).await
        } else {
            let k = ck.combined_bin();
            self.forget_on_disk([k]);
            u64::from(self.memory.remove_if(k, |_| true).await)
        };
        Ok(if found > 0 {
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
        let found = if ck.variance_bin().is_none() {
            self.purge_url(ck.primary_bin(), true).await
        } else {
            let at = SystemTime::now();
            let hit = self
                .memory
                .replace_with(ck.combined_bin(), |e| e.expired_at(at).ok().map(Arc::new))
                .await;
            u64::from(hit)
        };
        Ok(if found > 0 {
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
        let header = HeaderWire::of(meta.response_header());
        let memory_bin = match self.disk {
            None => super::entry::lean_meta(bin.clone(), &header),
            Some(_) => bin.clone(),
        };
        let in_memory = self
            .memory
            .replace_with(k, |e| {
                if self.bans.verdict(e.stamp, e.info.subject()) == Verdict::Gone {
                    return None;
                }
                let info = Arc::new(e.info.with_header(meta.response_header()));
                updated = Some((e.id, info.clone()));
                let meta = memory_bin.clone();
                Some(Arc::new(Entry {
                    id: e.id,
                    stamp,
                    meta,
                    body: e.body.clone(),
                    info,
                    header: header.clone(),
                }))
            })
            .await;
        if let Some((id, info)) = updated.filter(|_| in_memory) {
            self.index.lock().retag(&k, id, &info);
        }
        let mut on_disk = false;
        if let Some(disk) = &self.disk {
            if let Some(mut head) = disk.head(k).await {
                if self.bans.verdict_disk(head.stamp, head.info().subject()) != Verdict::Gone {
                    let info = head.info().with_header(meta.response_header());
                    head.tags = info.tags.iter().map(|t| t.to_string()).collect();
                    head.meta = bin;
                    head.stamp = stamp;
                    disk.rewrite_head(k, &head);
                    on_disk = true;
                }
            }
        }
        Ok(in_memory || on_disk)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
