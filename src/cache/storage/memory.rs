//! Memory tier: a moka `future::Cache` of `Arc<Entry>` bounded in bytes (weigher = serialized
//! meta + header + body). Eviction is LRU (predictable for a CDN edge: a new object is always
//! admitted). Keeps exact byte/object counters through the eviction listener, and runs moka's
//! pending maintenance whenever an insert pushes the total over the bound, so the tier never
//! sits above `capacity` for long.

use super::entry::Entry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use pingora_cache::key::HashBinary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    objects: AtomicU64,
}

/// See the module docs.
pub(crate) struct MemoryTier {
    /// foldhash instead of SipHash: keys are already hashes, hashing them is per lookup.
    cache: Cache<HashBinary, Arc<Entry>, foldhash::quality::RandomState>,
    capacity: u64,
    counters: Arc<Counters>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("capacity", &self.capacity)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn weigh(entry: &Entry) -> u32 {
    u32::try_from(entry.weight()).unwrap_or(u32::MAX)
}

impl MemoryTier {
    /// `on_removed(key, entry)` runs for every entry leaving the cache (evicted, invalidated),
    /// not for one replaced by a newer value under the same key. It must not call into moka.
    pub(crate) fn new(
        capacity: u64,
        on_removed: impl Fn(&HashBinary, &Entry) + Send + Sync + 'static,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let cache = Cache::builder()
            .name("outpost-memory")
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_k: &HashBinary, v: &Arc<Entry>| weigh(v))
            .eviction_listener(move |k: Arc<HashBinary>, v: Arc<Entry>, cause| {
                c.bytes.fetch_sub(u64::from(weigh(&v)), Ordering::Relaxed);
                c.objects.fetch_sub(1, Ordering::Relaxed);
                if cause != RemovalCause::Replaced {
                    on_removed(&k, &v);
                }
            })
            .build_with_hasher(foldhash::quality::RandomState::default());
        MemoryTier {
            cache,
            capacity,
            counters,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Every key held now (the hot set: the tier keeps the most recently used objects).
    pub(crate) fn keys(&self) -> Vec<HashBinary> {
        self.cache.iter().map(|(k, _)| *k).collect()
    }

    pub(crate) async fn get(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        self.cache.get(key).await
    }

    fn added(&self, entry: &Entry) {
        self.counters
            .bytes
            .fetch_add(u64::from(weigh(entry)), Ordering::Relaxed);
        self.counters.objects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) async fn insert(&self, key: HashBinary, entry: Arc<Entry>) {
        self.added(&entry);
        self.cache.insert(key, entry).await;
        self.enforce_bound().await;
    }

    /// Evicts now rather than at moka's next maintenance when over the byte bound.
    async fn enforce_bound(&self) {
        if self.counters.bytes.load(Ordering::Relaxed) > self.capacity {
            self.cache.run_pending_tasks().await;
        }
    }

    /// Atomically replaces or removes the entry under `key`: `f` sees the current entry and
    /// returns `Some(new)` to replace it, `None` to leave it; `Remove` via [`Self::remove_if`].
    /// Returns true if it replaced.
    pub(crate) async fn replace_with(
        &self,
        key: HashBinary,
        f: impl FnOnce(&Arc<Entry>) -> Option<Arc<Entry>>,
    ) -> bool {
        let mut put = false;
        self.cache
            .entry(key)
            .and_compute_with(|cur| {
                let op = match cur.as_ref().and_then(|e| f(e.value())) {
                    Some(new) => {
                        // Counted before moka reports the replaced value (no underflow).
                        self.added(&new);
                        put = true;
                        Op::Put(new)
                    }
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        if put {
            self.enforce_bound().await;
        }
        put
    }

    /// Removes the entry under `key` if `pred` holds for it. True if removed.
    pub(crate) async fn remove_if(
        &self,
        key: HashBinary,
        pred: impl FnOnce(&Entry) -> bool,
    ) -> bool {
        let mut removed = false;
        self.cache
            .entry(key)
            .and_compute_with(|cur| {
                let op = match cur {
                    Some(e) if pred(e.value()) => {
                        removed = true;
                        Op::Remove
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        removed
    }

    /// Drops everything (moka removes lazily; lookups never see invalidated entries).
    pub(crate) fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Runs moka's pending maintenance (evictions, listener calls). Tests and stats use it.
    pub(crate) async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn objects(&self) -> u64 {
        self.counters.objects.load(Ordering::Relaxed)
    }
}
