//! The write and purge paths of [`Storage`]: publishing a finished fill (ban check, index,
//! memory, write-through to disk), promoting disk hits, recording a purge (bans + log) and
//! applying it to the matched objects. The ordering rules that keep purged content from
//! coming back live here.

use super::entry::{expire_bin, Body, Entry};
use super::fill::{Completed, Fill};
use super::index::{Index, KeySet};
use super::Storage;
use crate::cache::bans::log::LogLine;
use crate::cache::bans::{BanWriter, Verdict};
use pingora_cache::key::HashBinary;
use std::sync::Arc;
use std::time::SystemTime;

/// Purges touching at most this many objects remove them before returning; larger ones
/// (a popular tag) return at once and remove in a background task (lookups already miss).
const INLINE_APPLY: usize = 1024;

/// A recorded purge.
pub(crate) struct Banned {
    /// Its sequence number.
    pub(crate) seq: u64,
    /// Indexed (memory) objects it matched.
    pub(crate) keys: KeySet,
    /// How many objects it matched.
    pub(crate) count: u64,
    log: Vec<LogLine>,
}

impl Storage {
    /// Publishes a finished fill. Returns its weight.
    pub(super) async fn commit(&self, fill: &Fill, done: Completed) -> u64 {
        let chunks = match done {
            Completed::Memory(chunks) => chunks,
            Completed::PassedThrough => return 0,
            Completed::Spilled { body_len, crcs } => {
                return self.commit_spilled(fill, body_len, crcs)
            }
        };
        let header = fill.header_wire();
        let meta = match self.disk {
            None => super::entry::lean_meta(fill.meta.clone(), &header),
            Some(_) => fill.meta.clone(),
        };
        let entry = Entry {
            id: fill.id,
            stamp: fill.stamp,
            meta,
            body: Arc::new(Body::new(chunks)),
            info: fill.info.clone(),
            header,
        };
        let weight = entry.weight();
        self.store(fill.key, entry, true).await;
        weight
    }

    /// A fill that spilled has its chunks on disk already: write the head that makes it
    /// visible, unless a purge newer than the fill forbids it.
    fn commit_spilled(&self, fill: &Fill, body_len: u64, crcs: Vec<u32>) -> u64 {
        let Some(disk) = fill.disk else { return 0 };
        let parts = crcs.len();
        let mut head = disk.head_for(fill.id, fill.stamp, body_len, crcs, &fill.meta, &fill.info);
        let weight = head.weight();
        if weight > disk.object_limit {
            return weight;
        }
        // foyer may have dropped a chunk (full write queue): never make a partial object
        // visible.
        if !disk.has_chunks(fill.key, fill.id, parts) {
            tracing::debug!(id = fill.id, "spilled fill lost a disk chunk: not stored");
            return weight;
        }
        match self.bans.verdict(fill.stamp, fill.info.subject()) {
            Verdict::Gone => return weight,
            Verdict::Expire(at) => match expire_bin(&head.meta, at) {
                Ok(meta) => head.meta = meta,
                Err(_) => return weight,
            },
            Verdict::Keep => {}
        }
        disk.put_head(fill.key, &head);
        weight
    }

    /// Stores an object in memory (if small enough) and, with `to_disk`, on disk, unless a
    /// purge newer than its stamp forbids it.
    ///
    /// Order: ban check + index insert under the index lock, then the moka insert, then a
    /// second ban check. A purge recorded before the index insert is seen by the first
    /// check; one recorded after it finds the object in the index (and removes it from moka
    /// once inserted) or is seen by the second check.
    pub(super) async fn store(&self, key: HashBinary, mut entry: Entry, to_disk: bool) {
        let weight = entry.weight();
        let to_memory = weight <= self.mem_object_limit;
        let disk = self
            .disk
            .as_ref()
            .filter(|d| to_disk && weight <= d.object_limit);
        if !to_memory && disk.is_none() {
            return;
        }
        let first = {
            let mut idx = self.index.lock();
            let v = self.bans.verdict(entry.stamp, entry.info.subject());
            match v {
                Verdict::Gone => return,
                Verdict::Expire(at) => match entry.expired_at(at) {
                    Ok(e) => entry = e,
                    Err(_) => return,
                },
                Verdict::Keep => {}
            }
            if to_memory {
                idx.insert(key, entry.id, &entry.info);
            }
            v
        };
        if let Some(d) = disk {
            d.write(key, &entry).await;
        }
        if !to_memory {
            return;
        }
        let (id, stamp, info) = (entry.id, entry.stamp, entry.info.clone());
        self.memory.insert(key, Arc::new(entry)).await;
        let again = self.bans.verdict(stamp, info.subject());
        if again != first {
            self.apply_verdict(key, id, again).await;
        }
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
    /// the index and ban locks held and may return the count itself (`all`).
    pub(crate) fn ban(
        &self,
        soft: bool,
        at: SystemTime,
        select: impl FnOnce(&mut Index, &mut BanWriter<'_>, &mut KeySet) -> Option<u64>,
    ) -> Banned {
        let mut keys = KeySet::default();
        let mut idx = self.index.lock();
        let mut w = self.bans.begin(soft, at);
        let counted = select(&mut idx, &mut w, &mut keys);
        let seq = w.seq;
        *self.pending.lock().entry(seq).or_default() += 1;
        let log = w.finish();
        drop(idx);
        let count = counted.unwrap_or(keys.len() as u64);
        Banned {
            seq,
            keys,
            count,
            log,
        }
    }

    /// Makes a recorded purge durable (disk tier only): appended and fsynced to the log.
    pub(crate) async fn persist(&self, banned: &mut Banned) {
        if let Some(log) = &self.log {
            if let Err(e) = log.append(std::mem::take(&mut banned.log)).await {
                tracing::error!(error = %e, "purge not persisted: it will not survive a restart");
            }
        }
    }

    /// Removes objects from the disk tier right away (hard purge of known keys).
    pub(crate) fn forget_on_disk(&self, keys: impl IntoIterator<Item = HashBinary>) {
        if let Some(disk) = &self.disk {
            for k in keys {
                disk.remove(k);
            }
        }
    }

    /// Whether purge counts are exact (not with a disk tier: its objects are not indexed).
    pub(crate) fn counts_exact(&self) -> bool {
        self.disk.is_none()
    }

    /// Removes (hard) or expires (soft) the objects a purge matched, then lets the ban
    /// records it no longer needs go. Inline for small sets, in the background for large.
    /// Returns how many it changed inline.
    pub(crate) async fn apply(&'static self, banned: Banned, soft: bool, at: SystemTime) -> u64 {
        let Banned { seq, keys, .. } = banned;
        if keys.len() <= INLINE_APPLY {
            return self.apply_now(seq, keys, soft, at).await;
        }
        tokio::spawn(self.apply_now(seq, keys, soft, at));
        0
    }

    async fn apply_now(&self, seq: u64, keys: KeySet, soft: bool, at: SystemTime) -> u64 {
        let mut done = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let changed = if soft {
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
            done += u64::from(changed);
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
        self.retire_bans(false).await;
        done
    }

    /// Lets ban records go that nothing needs any more ([`Self::gc_bans`]); when records were
    /// folded into the disk floor, the purge log is compacted to what is left.
    pub(crate) async fn retire_bans(&self, force: bool) {
        if !self.gc_bans(force) {
            return;
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.compact(self.bans.clone()).await {
                tracing::warn!(error = %e, "purge log not compacted (it stays correct, only longer)");
            }
        }
    }

    /// Drops the whole memory tier (hard `all` purge): O(1), moka clears lazily.
    pub(crate) fn drop_all(&self) {
        self.memory.invalidate_all();
        if let Some(disk) = &self.disk {
            disk.reset_counts(); // what is left on disk is banned: it no longer counts
        }
    }

    /// Forgets ban records that no stored or in-flight object can need any more; true when
    /// records were folded into the disk floor.
    pub(crate) fn gc_bans(&self, force: bool) -> bool {
        // `current` first: a purge recorded after this read is above the floor.
        let mut floor = self.bans.current();
        if let Some(s) = self.fills.min_stamp() {
            floor = floor.min(s);
        }
        if let Some((&s, _)) = self.pending.lock().first_key_value() {
            floor = floor.min(s.saturating_sub(1));
        }
        self.bans.gc(floor, self.ban_grace, force)
    }

    /// Purge of one URL (every variant), for pingora's `purge` / `expire`. Returns how many
    /// objects it found (memory objects, fills being written, disk heads).
    pub(super) async fn purge_url(&'static self, primary: HashBinary, soft: bool) -> u64 {
        let at = SystemTime::now();
        let mut banned = self.ban(soft, at, |idx, w, keys| {
            w.url(primary);
            keys.extend(idx.variants(&primary));
            None
        });
        self.persist(&mut banned).await;
        let mut found = 0;
        if let Some(disk) = &self.disk {
            if disk.head(primary).await.is_some() {
                found += 1;
            }
            if !soft {
                self.forget_on_disk(banned.keys.iter().copied().chain([primary]));
            }
        }
        if !soft {
            found += banned
                .keys
                .iter()
                .chain([&primary])
                .map(|k| u64::from(self.fills.detach(k)))
                .sum::<u64>();
        }
        found + self.apply(banned, soft, at).await
    }
}
