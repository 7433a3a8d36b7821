//! Disk tier: a foyer `HybridCache` (block engine on `cache.disk.path`) used as a plain
//! persistent key-value store; the memory tier in front of it is moka. Objects are a head
//! record plus body chunks smaller than a block (`format.rs`, crc-checked). Written on
//! insertion (survives `kill -9`), tombstone log on (removals survive restarts), quiet
//! recovery. Corrupt or incomplete objects read as misses and are removed.

mod body;
mod dir;
mod format;
mod health;
mod records;
mod upkeep;

pub(crate) use body::DiskBody;

use super::entry::{Body, Entry, EntryInfo};
use super::StorageError;
use crate::config::DiskConfig;
use bytes::Bytes;
pub(crate) use dir::prepare_dir;
use dir::{allocate_files, discard_objects, fit_to_filesystem};
pub(crate) use format::Head;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, Load, RecoverMode, Spawner,
};
use pingora::{Error, ErrorType};
use pingora_cache::key::HashBinary;
pub(crate) use records::{DiskKey, DiskValue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use upkeep::{maintain, Counts};

const MIB: u64 = 1 << 20;

/// Record bytes async writers submit to foyer before waiting for its flusher: the size of
/// its write batches, so about half of the memory its two write buffers occupy.
const SUBMIT_BUDGET: u64 = 4 * MIB;

/// Disk reads that failed or found a corrupt or incomplete entry, including failures in the
/// middle of a streamed body (`outpost_cache_disk_errors_total`).
pub(crate) static DISK_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records foyer did not accept (its submit queue was full): the object they belonged to was
/// not made visible. Not an I/O error; see [`DiskTier::put`].
pub(crate) static DISK_DROPPED_WRITES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// See the module docs.
pub(crate) struct DiskTier {
    hc: HybridCache<DiskKey, DiskValue>,
    path: PathBuf,
    chunk_size: usize,
    /// Larger objects are not written.
    pub(crate) object_limit: u64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    /// Objects and bytes written (foyer reclaims whole blocks without telling which objects
    /// went, so these only grow), carried across restarts; reported scaled to `capacity`,
    /// see [`DiskTier::objects`].
    counts: Arc<Counts>,
    /// `cache.disk.size`.
    capacity: u64,
    /// Record bytes submitted to foyer since the last completed [`DiskTier::throttle`] wait.
    submitted: AtomicU64,
    /// Above this many `submitted` bytes, async writers wait for foyer's flushers first.
    submit_budget: u64,
    /// Serializes submissions; see [`DiskTier::put`].
    submit: parking_lot::Mutex<()>,
    /// Taken out (memory-only) after repeated read failures; see `health.rs`.
    health: Arc<health::Health>,
}

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier")
            .field("path", &self.path)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

fn unusable(path: &Path, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Disk {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl DiskTier {
    /// Opens (creating) the tier in `cfg.path`; recovers what a previous run wrote.
    /// With `discard`, the objects of a previous run are removed first (their purge log
    /// could not be trusted, see [`crate::cache::bans::log::PurgeLog::open`]).
    pub(crate) async fn open(
        cfg: &DiskConfig,
        max_object: u64,
        discard: bool,
    ) -> Result<DiskTier, StorageError> {
        let path = cfg.path.clone();
        if discard {
            discard_objects(&path);
        }
        // What the filesystem can hold: foyer's files are allocated up front (below), so a
        // tier larger than the free space would fail its writes later (cut fills, panics
        // in foyer's flushers). It is shrunk to fit, with a warning.
        let size = fit_to_filesystem(&path, cfg.size);
        // Block = eviction unit and the largest record: 1..16 MiB, at least ~64 blocks.
        let block = (size / 64)
            .clamp(MIB, 16 * MIB)
            .next_power_of_two()
            .min(16 * MIB);
        let size = size - size % block;
        let chunk_size = (block / 4).min(MIB) as usize;
        if size < 8 * block {
            let reason = if size < cfg.size {
                format!(
                    "only {} free on its filesystem, the disk tier needs at least {}",
                    crate::config::format_size(size),
                    crate::config::format_size(8 * block)
                )
            } else {
                format!(
                    "cache.disk.size {} is too small (at least {})",
                    cfg.size,
                    8 * block
                )
            };
            return Err(unusable(&path, reason));
        }
        // foyer's flushers and I/O run on their own runtime: they must outlive whatever
        // runtime `open` happens to be called from (dropped safely in the background).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outpost-disk")
            .enable_all()
            .build()
            .map_err(|e| unusable(&path, format!("cannot start disk I/O threads: {e}")))?;
        let counts = Arc::new(Counts::load(&path));
        let health = Arc::new(health::Health::new(health::TRIP, health::PAUSE));
        runtime.spawn(maintain(counts.clone(), health.clone(), path.clone()));
        let spawner = Spawner::from(runtime); // from here on dropped without blocking
        let queue = (2 * max_object).clamp(64 * MIB, 1024 * MIB) as usize;
        // foyer's flusher drains everything queued into a buffer of this size (dropping what
        // does not fit) while the previous one is being written. The pages it touches stay
        // resident, so the buffers cost about twice the largest batch: async writers keep
        // batches near `SUBMIT_BUDGET` (RSS), the size leaves room for sync bursts.
        let buffer_pool = (4 * block).max(16 * MIB) as usize;
        let device = FsDeviceBuilder::new(&path)
            .with_capacity(size as usize)
            .build()
            .map_err(|e| unusable(&path, e))?;
        let engine = BlockEngineConfig::new(device)
            .with_block_size(block as usize)
            .with_tombstone_log(true)
            .with_buffer_pool_size(buffer_pool)
            .with_submit_queue_size_threshold(queue);
        let hc = HybridCacheBuilder::new()
            .with_name("outpost-disk")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .memory(8 * MIB as usize)
            .with_weighter(|_k: &DiskKey, v: &DiskValue| v.0.len() + 28)
            .storage()
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .with_spawner(spawner)
            .build()
            .await
            .map_err(|e| unusable(&path, e))?;
        // foyer created its files (sparse) while building.
        let dir = path.clone();
        let _ = tokio::task::spawn_blocking(move || allocate_files(&dir)).await;
        Ok(DiskTier {
            hc,
            path,
            chunk_size,
            object_limit: (size / 8).min(max_object.max(MIB)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            counts,
            capacity: size,
            submitted: AtomicU64::new(0),
            // foyer drops a record when its submit queue is over `queue`, and also when the
            // flusher's buffer (`buffer_pool` with one flusher) fills up while the previous
            // batch is being written: stay well below both.
            submit_budget: SUBMIT_BUDGET.min((queue.min(buffer_pool) / 4) as u64),
            submit: parking_lot::Mutex::new(()),
            health,
        })
    }

    /// Submits a record. False when foyer did not take it: over its submit-queue threshold
    /// it drops records silently (`BlockEngine::enqueue`). A record foyer took sits in its
    /// write queue (the keeper) or is indexed, so `may_contains` sees it right away; one it
    /// dropped is in neither (barring a hash collision). It can still be dropped later, if the
    /// flusher's buffer overflows: [`DiskTier::has_chunks`] before trusting it.
    pub(super) fn put(&self, key: DiskKey, record: Vec<u8>) -> bool {
        if !self.health.usable() {
            return false;
        }
        // What it takes in foyer's flush buffer: key, value and entry header, page-aligned.
        let size = ((record.len() + 28 + 64) as u64).next_multiple_of(4096);
        self.submitted.fetch_add(size, Ordering::Relaxed);
        let probe = key.clone();
        {
            // foyer numbers a record (`sequence.fetch_add`) and then queues it for its
            // flusher; two threads can queue theirs in the opposite order. Recovery stops
            // reading a block at the first record whose sequence is lower than the one
            // before it (`BlockRecoverRunner::run`), losing the rest of the block after a
            // restart. One submission at a time keeps queue order = sequence order.
            let _one = self.submit.lock();
            self.hc
                .storage_writer(key)
                .force()
                .insert(DiskValue(Bytes::from(record)));
        }
        let taken = self.hc.storage().may_contains(&probe);
        if !taken {
            DISK_DROPPED_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Backpressure for async writers: once more than the budget was submitted since the
    /// last wait, waits until foyer's flushers processed everything submitted so far, so
    /// its queues do not overflow and drop records. Sync call sites do not wait.
    pub(crate) async fn throttle(&self) {
        let seen = self.submitted.load(Ordering::Relaxed);
        if seen <= self.submit_budget {
            return;
        }
        self.hc.storage().wait().await;
        // What was submitted before the wait has been processed (written or dropped).
        let _ = self
            .submitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(seen))
            });
    }

    /// Whether every body chunk of generation `gen` (`parts` of them) is still there:
    /// an index check without I/O (a rare false positive is possible, never a false
    /// negative). Objects missing one can only be served partially.
    pub(crate) fn has_chunks(&self, key: HashBinary, gen: u64, parts: usize) -> bool {
        self.has_chunks_from(key, gen, 0, parts)
    }

    /// [`DiskTier::has_chunks`] for chunks `from..to`.
    pub(crate) fn has_chunks_from(
        &self,
        key: HashBinary,
        gen: u64,
        from: usize,
        to: usize,
    ) -> bool {
        (from..to).all(|i| self.hc.contains(&DiskKey::chunk(key, gen, i)))
    }

    async fn get(&self, key: &DiskKey) -> Option<Bytes> {
        match self.hc.storage().load(key).await {
            Ok(Load::Entry { value, .. }) => {
                self.health.ok(&self.path);
                Some(value.0)
            }
            Ok(Load::Piece { piece, .. }) => Some(piece.value().0.clone()),
            Ok(Load::Throttled | Load::Miss) => None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "disk cache read failed");
                self.read_failed(&e);
                None
            }
        }
    }

    /// A read that failed with an I/O error: counted in `outpost_cache_disk_errors_total`;
    /// repeated ones take the tier out (`health.rs`).
    fn read_failed(&self, error: &dyn std::fmt::Display) {
        DISK_ERRORS.fetch_add(1, Ordering::Relaxed);
        self.health.failed(&self.path, error);
    }

    /// A record that was read but is not usable: corrupt, from another format version, or
    /// a chunk that is gone. Counted in `outpost_cache_disk_errors_total`, but not a sign of
    /// a failing device (foyer checksums what it reads; after an upgrade every old entry is
    /// like this), so it never takes the tier out.
    pub(crate) fn unusable_record(&self) {
        DISK_ERRORS.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the tier is out (memory-only) after repeated failures; see `health.rs`.
    pub(crate) fn degraded(&self) -> bool {
        self.health.degraded()
    }

    /// Times the tier was taken out since start.
    pub(crate) fn degraded_times(&self) -> u64 {
        self.health.trips()
    }

    /// `cache.disk.path`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Writes body chunk `part` of generation `gen`; returns its crc32 and whether foyer
    /// took the record (see [`DiskTier::put`]).
    pub(crate) fn put_chunk(
        &self,
        key: HashBinary,
        gen: u64,
        part: usize,
        data: &[u8],
    ) -> (u32, bool) {
        let (record, crc) = format::encode_chunk(data);
        (crc, self.put(DiskKey::chunk(key, gen, part), record))
    }

    /// Drops body chunk `part` of generation `gen` (a fill that will not be stored). A chunk
    /// still in foyer's write queue stays readable until flushed; the tombstone (a newer
    /// sequence) then wins, and its space is reclaimed with its block.
    pub(crate) fn remove_chunk(&self, key: HashBinary, gen: u64, part: usize) {
        self.hc.remove(&DiskKey::chunk(key, gen, part));
    }

    /// Writes the head that makes an object visible (after all its chunks).
    pub(crate) fn put_head(&self, key: HashBinary, head: &Head) {
        if self.put(DiskKey::head(key), head.encode()) {
            self.counts.objects.fetch_add(1, Ordering::Relaxed);
            self.counts
                .bytes
                .fetch_add(head.weight(), Ordering::Relaxed);
        }
    }

    /// Writes an object: chunks first, the head last (a torn write leaves no head). Waits
    /// for foyer's flushers when much was submitted ([`DiskTier::throttle`]); writes no head
    /// when foyer dropped a chunk (the object is then simply not on disk).
    pub(crate) async fn write(&self, key: HashBinary, entry: &Entry) {
        if entry.weight() > self.object_limit || !self.health.usable() {
            return;
        }
        let mut crcs = Vec::new();
        let mut whole = true;
        let mut buf = Vec::with_capacity(self.chunk_size.min(entry.body.len()));
        let mut i = 0;
        while let Some(chunk) = entry.body.chunk(i) {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (self.chunk_size - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == self.chunk_size {
                    self.throttle().await;
                    let (crc, taken) = self.put_chunk(key, entry.id, crcs.len(), &buf);
                    crcs.push(crc);
                    whole &= taken;
                    buf.clear();
                }
            }
            i += 1;
        }
        if !buf.is_empty() {
            self.throttle().await;
            let (crc, taken) = self.put_chunk(key, entry.id, crcs.len(), &buf);
            crcs.push(crc);
            whole &= taken;
        }
        if !whole || !self.has_chunks(key, entry.id, crcs.len()) {
            tracing::debug!(path = %self.path.display(), "disk write dropped by foyer: object not stored on disk");
            return;
        }
        let head = self.head_for(
            entry.id,
            entry.stamp,
            entry.body.len() as u64,
            crcs,
            &entry.meta,
            &entry.info,
        );
        self.put_head(key, &head);
    }

    /// The head record of an object with these parts.
    pub(crate) fn head_for(
        &self,
        gen: u64,
        stamp: u64,
        body_len: u64,
        chunk_crcs: Vec<u32>,
        meta: &(Vec<u8>, Vec<u8>),
        info: &EntryInfo,
    ) -> Head {
        Head {
            gen,
            stamp,
            body_len,
            chunk_size: self.chunk_size as u32,
            chunk_crcs,
            primary: info.primary,
            meta: meta.clone(),
            url: info.url.to_string(),
            tags: info.tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// The head of `key`, if stored and intact (a corrupt one is removed).
    pub(crate) async fn head(&self, key: HashBinary) -> Option<Head> {
        if !self.health.usable() {
            return None;
        }
        let rec = self.get(&DiskKey::head(key)).await?;
        if rec[..] == format::REMOVED[..] {
            return None;
        }
        match Head::decode(&rec) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), reason = e.0, "corrupt disk cache entry removed");
                self.unusable_record();
                self.remove(key);
                None
            }
        }
    }

    /// Rewrites a head (a 304 refreshed the meta).
    pub(crate) fn rewrite_head(&self, key: HashBinary, head: &Head) {
        self.put(DiskKey::head(key), head.encode());
    }

    /// Chunk `i` of an object, verified against its head.
    pub(crate) async fn chunk(
        &self,
        key: HashBinary,
        head: &Head,
        i: usize,
    ) -> Result<Bytes, format::Corrupt> {
        let crc = *head
            .chunk_crcs
            .get(i)
            .ok_or(format::Corrupt("chunk index"))?;
        self.load_chunk(key, head.gen, i, crc, head.chunk_len(i))
            .await
    }

    /// Body chunk `part` of generation `gen`, verified against `crc` and `len`.
    pub(crate) async fn load_chunk(
        &self,
        key: HashBinary,
        gen: u64,
        part: usize,
        crc: u32,
        len: usize,
    ) -> Result<Bytes, format::Corrupt> {
        let rec = self
            .get(&DiskKey::chunk(key, gen, part))
            .await
            .ok_or(format::Corrupt("missing chunk"))?;
        format::decode_chunk(&rec, crc, len)
    }

    /// The whole body (for promotion to memory); `None` (and the object removed) if any
    /// chunk is missing or corrupt.
    pub(crate) async fn body(&self, key: HashBinary, head: &Head) -> Option<Body> {
        let mut chunks = Vec::with_capacity(head.chunk_crcs.len());
        for i in 0..head.chunk_crcs.len() {
            match self.chunk(key, head, i).await {
                Ok(c) => chunks.push(c),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), reason = e.0, "incomplete disk cache entry removed");
                    self.unusable_record();
                    self.remove(key);
                    return None;
                }
            }
        }
        Some(Body::new(chunks))
    }

    /// Forgets an object (its chunks are left for foyer to reclaim). A foyer delete does not
    /// cover a record still in its write queue, so a removal marker replaces the head first.
    pub(crate) fn remove(&self, key: HashBinary) {
        self.put(DiskKey::head(key), format::REMOVED.to_vec());
        self.hc.remove(&DiskKey::head(key));
    }

    pub(crate) async fn close(&self) -> Result<(), StorageError> {
        self.health.retire();
        let closed = self.hc.close().await.map_err(|e| unusable(&self.path, e));
        let (counts, path) = (self.counts.clone(), self.path.clone());
        let _ = tokio::task::spawn_blocking(move || counts.save(&path)).await;
        closed
    }

    /// Starts the counts over (everything on disk was purged).
    pub(crate) fn reset_counts(&self) {
        self.counts.objects.store(0, Ordering::Relaxed);
        self.counts.bytes.store(0, Ordering::Relaxed);
    }

    /// Objects on disk, estimated: once more was written than fits, the count is scaled by
    /// the share that can still be there (foyer evicts whole blocks, oldest first).
    pub(crate) fn objects(&self) -> u64 {
        let (objects, written) = self.counts.get();
        if written <= self.capacity || written == 0 {
            return objects;
        }
        u64::try_from(u128::from(objects) * u128::from(self.capacity) / u128::from(written))
            .unwrap_or(objects)
    }

    /// Bytes on disk, estimated: what this process wrote, at most the device's capacity.
    pub(crate) fn bytes(&self) -> u64 {
        self.counts.get().1.min(self.capacity)
    }
}

#[cfg(test)]
impl DiskTier {
    /// Whether foyer holds a head record for `key` (whatever the tier's state).
    pub(crate) fn holds_head(&self, key: HashBinary) -> bool {
        self.hc.contains(&DiskKey::head(key))
    }

    /// One write probe of the directory, as the maintenance task does every 10 s.
    pub(crate) async fn probe_now(&self) {
        let dir = self.path.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || upkeep::write_probe(&dir)).await {
            self.health.failed_now(&self.path, &e);
        }
    }

    /// Waits until foyer's flushers processed everything submitted so far.
    pub(crate) async fn wait_all(&self) {
        self.hc.storage().wait().await;
    }

    /// Record bytes submitted since the last throttle wait.
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// Waits (up to 10 s) until `key` is no longer in foyer's write queue.
    pub(crate) async fn wait_flushed(&self, key: &DiskKey) {
        let t0 = std::time::Instant::now();
        while matches!(self.hc.storage().load(key).await, Ok(Load::Piece { .. }))
            && t0.elapsed() < std::time::Duration::from_secs(10)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
pub(super) fn encode_chunk_for_tests(data: &[u8]) -> Vec<u8> {
    format::encode_chunk(data).0
}

impl Head {
    pub(crate) fn info(&self) -> EntryInfo {
        EntryInfo::from_parts(
            self.primary,
            &self.url,
            self.tags.iter().map(|t| t.as_str().into()).collect(),
        )
    }

    pub(crate) fn weight(&self) -> u64 {
        (self.meta.0.len() + self.meta.1.len()) as u64 + self.body_len
    }
}
