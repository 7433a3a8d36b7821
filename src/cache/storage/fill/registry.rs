//! The registry of in-flight fills (`Fills`: what lookups join) and the pingora miss handler
//! that writes one (`FillWriter`).

use super::*;
use crate::cache::storage::Storage;
use async_trait::async_trait;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{HandleMiss, MissFinishType};
use std::collections::HashMap;

#[derive(Debug, Default)]
struct FillMaps {
    /// Latest fill per key: what `lookup()` joins.
    by_key: HashMap<HashBinary, Arc<Fill>>,
    /// Every fill by id: what `lookup_streaming_write()` finds (even after a purge).
    by_id: HashMap<u64, Arc<Fill>>,
}

/// Registry of in-flight fills. Small: bounded by concurrent misses.
#[derive(Debug, Default)]
pub(crate) struct Fills {
    maps: Mutex<FillMaps>,
}

impl Fills {
    pub(crate) fn register(&self, fill: Arc<Fill>) {
        let mut m = self.maps.lock();
        m.by_key.insert(fill.key, fill.clone());
        m.by_id.insert(fill.id, fill);
    }

    fn unregister(&self, fill: &Fill) {
        let mut m = self.maps.lock();
        m.by_id.remove(&fill.id);
        if m.by_key.get(&fill.key).is_some_and(|f| f.id == fill.id) {
            m.by_key.remove(&fill.key);
        }
    }

    /// Stops new readers from joining `fill` (it passes through).
    fn unlist(&self, fill: &Fill) {
        let mut m = self.maps.lock();
        if m.by_key.get(&fill.key).is_some_and(|f| f.id == fill.id) {
            m.by_key.remove(&fill.key);
        }
    }

    /// The fill a reader of `key` should join, if one is still healthy and being stored.
    pub(crate) fn latest(&self, key: &HashBinary) -> Option<Arc<Fill>> {
        let m = self.maps.lock();
        m.by_key
            .get(key)
            .filter(|f| f.state() != FillState::Failed && !f.passing())
            .cloned()
    }

    pub(crate) fn by_id(&self, id: u64) -> Option<Arc<Fill>> {
        self.maps.lock().by_id.get(&id).cloned()
    }

    /// Lowest stamp of any in-flight fill (bans newer than it may still matter to it).
    pub(crate) fn min_stamp(&self) -> Option<u64> {
        self.maps.lock().by_id.values().map(|f| f.stamp).min()
    }

    /// Stops new readers from joining the fill of `key`. True if there was one.
    pub(crate) fn detach(&self, key: &HashBinary) -> bool {
        self.maps.lock().by_key.remove(key).is_some()
    }
}

/// The `MissHandler` of [`Storage`].
#[derive(Debug)]
pub(crate) struct FillWriter {
    storage: &'static Storage,
    fill: Arc<Fill>,
    tag: U64WriteId,
    finished: bool,
}

impl FillWriter {
    pub(crate) fn new(storage: &'static Storage, fill: Arc<Fill>) -> Self {
        let tag = U64WriteId::from(fill.id);
        FillWriter {
            storage,
            fill,
            tag,
            finished: false,
        }
    }
}

#[async_trait]
impl HandleMiss for FillWriter {
    /// Never fails: an oversized body switches the fill to pass-through instead (pingora
    /// would fail the whole client request on an error here).
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> pingora::Result<()> {
        if let Some(disk) = self.fill.disk.filter(|_| self.fill.spilling()) {
            disk.throttle().await;
        }
        if self.fill.push(data) {
            self.storage.fills.unlist(&self.fill);
            tracing::debug!(
                id = self.fill.id,
                "cache fill over its size limit: streaming it through without storing"
            );
        }
        Ok(())
    }

    /// `Created(0)` for a pass-through fill: nothing was stored, and pingora only uses the
    /// size for its eviction manager (none is configured).
    async fn finish(mut self: Box<Self>) -> pingora::Result<MissFinishType> {
        self.finished = true;
        let done = self.fill.complete();
        let size = self.storage.commit(&self.fill, done).await;
        Ok(MissFinishType::Created(
            usize::try_from(size).unwrap_or(usize::MAX),
        ))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.tag.as_bytes())
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.fail();
        }
        self.storage.fills.unregister(&self.fill);
    }
}
