//! In-flight fills (streaming partial write). A miss handler appends body chunks to a shared
//! `Fill` and bumps a `watch` channel; readers (the writer's own downstream and any request
//! that looks the key up meanwhile) stream the chunks as they arrive. `finish()` publishes
//! the object; a writer dropped without `finish()` marks the fill failed, so its readers get
//! an error instead of a silently truncated body, and nothing is stored.

use super::entry::{EntryInfo, MetaBin};
use super::Storage;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pingora_cache::key::HashBinary;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{HandleMiss, MissFinishType};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Progress of a fill, as seen by its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillState {
    /// This many chunks are readable; more may come.
    Writing(usize),
    /// The body is complete with this many chunks.
    Done(usize),
    /// The writer went away before `finish()`: the body is incomplete.
    Failed,
}

/// One object being written.
#[derive(Debug)]
pub(crate) struct Fill {
    /// Also the streaming write tag and the id of the entry it becomes.
    pub(crate) id: u64,
    /// The combined (variant) key it is written under.
    pub(crate) key: HashBinary,
    /// Purge sequence when the fill started: purges after it win over this content.
    pub(crate) stamp: u64,
    pub(crate) meta: MetaBin,
    pub(crate) info: Arc<EntryInfo>,
    chunks: RwLock<Vec<Bytes>>,
    state: watch::Sender<FillState>,
}

impl Fill {
    pub(crate) fn new(
        id: u64,
        key: HashBinary,
        stamp: u64,
        meta: MetaBin,
        info: Arc<EntryInfo>,
    ) -> Self {
        let (state, _) = watch::channel(FillState::Writing(0));
        Fill {
            id,
            key,
            stamp,
            meta,
            info,
            chunks: RwLock::new(Vec::new()),
            state,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    pub(crate) fn state(&self) -> FillState {
        *self.state.borrow()
    }

    pub(crate) fn chunk(&self, i: usize) -> Option<Bytes> {
        self.chunks.read().get(i).cloned()
    }

    fn push(&self, data: Bytes) {
        if data.is_empty() || !matches!(self.state(), FillState::Writing(_)) {
            return;
        }
        let n = {
            let mut chunks = self.chunks.write();
            chunks.push(data);
            chunks.len()
        };
        self.state.send_replace(FillState::Writing(n));
    }

    /// Marks the body complete and returns its chunks (cheap `Bytes` clones).
    fn complete(&self) -> Vec<Bytes> {
        let chunks = self.chunks.read().clone();
        self.state.send_replace(FillState::Done(chunks.len()));
        chunks
    }

    fn fail(&self) {
        self.state.send_if_modified(|s| {
            let failed = matches!(s, FillState::Writing(_));
            if failed {
                *s = FillState::Failed;
            }
            failed
        });
    }
}

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

    /// The fill a reader of `key` should join, if one is still healthy.
    pub(crate) fn latest(&self, key: &HashBinary) -> Option<Arc<Fill>> {
        let m = self.maps.lock();
        m.by_key
            .get(key)
            .filter(|f| f.state() != FillState::Failed)
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
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> pingora::Result<()> {
        self.fill.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> pingora::Result<MissFinishType> {
        self.finished = true;
        let chunks = self.fill.complete();
        let size = self.storage.commit(&self.fill, chunks).await;
        Ok(MissFinishType::Created(size as usize))
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
