//! In-flight fills (streaming partial write). A miss handler appends body pieces to a shared
//! `Fill` and bumps a `watch` channel; readers (the writer's own downstream and any request
//! that looks the key up meanwhile) stream the pieces as they arrive. `finish()` publishes
//! the object; a writer dropped without `finish()` marks the fill failed, so its readers get
//! an error instead of a silently truncated body, and nothing is stored.
//!
//! Memory stays bounded for objects larger than the memory tier takes: once a fill passes
//! that size and a disk tier exists it spills, writing fixed-size disk chunks as they fill
//! up. Readers never depend on a spilled copy being readable (foyer can drop a record when
//! its write queue is full): each spilled piece is published with a memory copy, which the
//! fill drops once every attached reader has read past it (the same progress tracking as
//! pass-through below). Only readers that join later read those pieces back from disk, and
//! they join only if the chunks are still indexed. A fill that finds one of its chunks
//! dropped switches to pass-through (not stored).
//!
//! Objects that cannot be stored at all (body over `cache.max_object`, or over what any tier
//! takes) switch the fill to *pass-through*: nothing is stored (spilled chunks are dropped,
//! spilling stops), `finish()` still succeeds, new lookups no longer join, and the readers
//! already attached keep streaming every byte. Each attached reader registers its progress;
//! in pass-through the fill drops the pieces every live reader has consumed, so a huge
//! chunked response held by one client costs only the backlog of its slowest reader.

mod registry;

pub(crate) use registry::{FillWriter, Fills};

use super::disk::DiskTier;
use super::entry::{EntryInfo, MetaBin};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pingora::http::ResponseHeader;
use pingora_cache::key::HashBinary;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::watch;

/// Progress of a fill, as seen by its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillState {
    /// This many slots are readable; more may come.
    Writing(usize),
    /// The body is complete with this many slots.
    Done(usize),
    /// The writer went away before `finish()`: the body is incomplete.
    Failed,
}

/// One readable piece of a fill's body.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    /// Held in memory.
    Mem(Bytes),
    /// Bytes `start..end` of disk chunk `part` (which is `len` long with crc `crc`), and
    /// those bytes in memory until every attached reader has read them.
    Disk {
        mem: Option<Bytes>,
        part: usize,
        start: usize,
        end: usize,
        len: usize,
        crc: u32,
    },
}

/// How a fill ended, for `commit`.
#[derive(Debug)]
pub(crate) enum Completed {
    /// The whole body, in memory.
    Memory(Vec<Bytes>),
    /// The body is on disk as chunks with these crcs; only the head is left to write.
    Spilled { body_len: u64, crcs: Vec<u32> },
    /// Too large to store: streamed to its readers only.
    PassedThrough,
}

/// Writer-side state of a spilling fill.
#[derive(Debug)]
struct Spill {
    /// Bytes of disk chunk `next_part`, being assembled.
    pending: Vec<u8>,
    next_part: usize,
    crcs: Vec<u32>,
    /// Body bytes already visible to readers.
    published: u64,
}

/// Writer-side state of a fill.
#[derive(Debug, Default)]
struct Writing {
    /// Body bytes held in memory before spilling.
    mem: u64,
    /// Body bytes written so far.
    total: u64,
    spill: Option<Spill>,
}

/// The published slots: slot `i` is `items[i - base]`; slots below `base` were released
/// (pass-through only) after every attached reader consumed them. Disk slots below
/// `demoted` no longer hold their memory copy (every reader attached then had read them).
#[derive(Debug, Default)]
struct Slots {
    base: usize,
    demoted: usize,
    items: VecDeque<Slot>,
    /// Index of the next slot each attached reader will read (dead ones are pruned).
    readers: Vec<Weak<AtomicUsize>>,
}

impl Slots {
    fn end(&self) -> usize {
        self.base + self.items.len()
    }
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
    /// The response header of `meta`, decoded (readers and the entry it becomes use it).
    pub(crate) decoded: Option<ResponseHeader>,
    pub(crate) info: Arc<EntryInfo>,
    slots: RwLock<Slots>,
    state: watch::Sender<FillState>,
    /// Where to spill, and beyond how many in-memory bytes.
    pub(crate) disk: Option<&'static DiskTier>,
    spill_after: u64,
    /// Beyond this many body bytes the object is not stored: pass-through.
    pass_after: u64,
    passing: AtomicBool,
    writing: Mutex<Writing>,
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
            decoded: None,
            info,
            slots: RwLock::new(Slots::default()),
            state,
            disk: None,
            spill_after: u64::MAX,
            pass_after: u64::MAX,
            passing: AtomicBool::new(false),
            writing: Mutex::new(Writing::default()),
        }
    }

    /// The wire form of the response header, for the entry the fill becomes.
    pub(crate) fn header_wire(&self) -> super::entry::HeaderWire {
        match &self.decoded {
            Some(h) => super::entry::HeaderWire::of(h),
            None => pingora_cache::CacheMeta::deserialize(&self.meta.0, &self.meta.1)
                .map(|m| super::entry::HeaderWire::of(m.response_header()))
                .unwrap_or_default(),
        }
    }

    /// Gives the fill the decoded form of its meta's header.
    pub(crate) fn with_header(mut self, header: ResponseHeader) -> Self {
        self.decoded = Some(header);
        self
    }

    /// Lets the fill spill to `disk` once it holds more than `after` bytes.
    pub(crate) fn spilling_to(mut self, disk: Option<&'static DiskTier>, after: u64) -> Self {
        self.disk = disk;
        self.spill_after = after;
        self
    }

    /// Makes the fill pass through (not stored) once its body exceeds `limit` bytes.
    pub(crate) fn passing_after(mut self, limit: u64) -> Self {
        self.pass_after = limit;
        self
    }

    /// Body bytes held in memory (stops growing once the fill spills).
    #[cfg(test)]
    pub(crate) fn mem_bytes(&self) -> u64 {
        self.writing.lock().mem
    }

    /// Body bytes of the in-memory slots the fill still holds.
    #[cfg(test)]
    pub(crate) fn retained_bytes(&self) -> usize {
        let slots = self.slots.read();
        slots
            .items
            .iter()
            .map(|s| match s {
                Slot::Mem(b) => b.len(),
                Slot::Disk { mem, .. } => mem.as_ref().map_or(0, Bytes::len),
            })
            .sum()
    }

    /// Whether the fill writes its body to disk as it arrives.
    fn spilling(&self) -> bool {
        !self.passing() && self.writing.lock().spill.is_some()
    }

    /// Whether the fill switched to pass-through (it will not be stored).
    pub(crate) fn passing(&self) -> bool {
        self.passing.load(Ordering::Acquire)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    pub(crate) fn state(&self) -> FillState {
        *self.state.borrow()
    }

    /// Registers a reader that starts at slot 0; it reports its progress through the
    /// returned counter. `None` once slots were released (it could not read the whole body),
    /// or when a spilled chunk it would have to read back from disk is gone (the fill then
    /// stops storing: the object is incomplete).
    pub(crate) fn attach(&self) -> Option<Arc<AtomicUsize>> {
        let progress = Arc::new(AtomicUsize::new(0));
        // Registered first: nothing more is demoted until this reader has read it.
        let from_disk: Vec<usize> = {
            let mut slots = self.slots.write();
            if slots.base > 0 {
                return None;
            }
            slots.readers.retain(|r| r.strong_count() > 0);
            slots.readers.push(Arc::downgrade(&progress));
            let n = slots.demoted.saturating_sub(slots.base);
            slots
                .items
                .iter()
                .take(n)
                .filter_map(|s| match s {
                    Slot::Disk {
                        mem: None, part, ..
                    } => Some(*part),
                    _ => None,
                })
                .collect()
        };
        if let Some(disk) = self.disk {
            if !from_disk
                .iter()
                .all(|&p| disk.has_chunks_from(self.key, self.id, p, p + 1))
            {
                drop(progress);
                super::disk::DISK_ERRORS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(id = self.id, "cache fill lost a spilled chunk: not stored");
                self.stop_storing();
                return None;
            }
        }
        Some(progress)
    }

    /// Switches a fill still being written to pass-through (it will not be stored), e.g.
    /// because one of its spilled chunks is gone. Attached readers keep streaming.
    pub(crate) fn stop_storing(&self) {
        let mut guard = self.writing.lock();
        if self.passing() || !matches!(self.state(), FillState::Writing(_)) {
            return;
        }
        let written = guard.total;
        self.start_passing(&mut guard, written);
        drop(guard);
        self.release_consumed();
    }

    /// Slot `i`, or `None` if not published yet or already released.
    pub(crate) fn slot(&self, i: usize) -> Option<Slot> {
        let slots = self.slots.read();
        i.checked_sub(slots.base)
            .and_then(|j| slots.items.get(j))
            .cloned()
    }

    fn publish(&self, slot: Slot) {
        let n = {
            let mut slots = self.slots.write();
            slots.items.push_back(slot);
            slots.end()
        };
        self.state.send_replace(FillState::Writing(n));
    }

    /// Drops what every attached reader has read (everything when no reader is left):
    /// in pass-through the slots themselves (freeing the disk chunks of released disk
    /// slots), otherwise the memory copies of spilled slots (later readers read those back
    /// from disk).
    pub(crate) fn release_consumed(&self) {
        let passing = self.passing();
        let released: Vec<Slot> = {
            let mut slots = self.slots.write();
            let mut min = usize::MAX;
            slots.readers.retain(|r| match r.upgrade() {
                Some(p) => {
                    min = min.min(p.load(Ordering::Acquire));
                    true
                }
                None => false,
            });
            let upto = min.min(slots.end());
            if !passing {
                let from = slots.demoted.max(slots.base);
                if upto > from {
                    let base = slots.base;
                    for s in slots.items.range_mut(from - base..upto - base) {
                        if let Slot::Disk { mem, .. } = s {
                            *mem = None;
                        }
                    }
                    slots.demoted = upto;
                }
                return;
            }
            if upto <= slots.base {
                return;
            }
            let n = upto - slots.base;
            slots.base = upto;
            slots.items.drain(..n).collect()
        };
        self.forget_disk_slots(released.iter());
    }

    fn forget_disk_slots<'a>(&self, slots: impl Iterator<Item = &'a Slot>) {
        let Some(disk) = self.disk else { return };
        for s in slots {
            if let Slot::Disk { part, .. } = s {
                disk.remove_chunk(self.key, self.id, *part);
            }
        }
    }

    /// Appends a body piece. True when this piece switched the fill to pass-through.
    fn push(&self, data: Bytes) -> bool {
        if data.is_empty() || !matches!(self.state(), FillState::Writing(_)) {
            return false;
        }
        let mut guard = self.writing.lock();
        let w = &mut *guard;
        let before = w.total;
        w.total = w.total.saturating_add(data.len() as u64);
        if self.passing() {
            self.publish(Slot::Mem(data));
            self.release_consumed();
            return false;
        }
        if w.total > self.pass_after {
            self.start_passing(w, before);
            self.publish(Slot::Mem(data));
            self.release_consumed();
            return true;
        }
        let Some(disk) = self.disk else {
            w.mem += data.len() as u64;
            self.publish(Slot::Mem(data));
            return false;
        };
        let mut whole = true;
        match &mut w.spill {
            None => {
                w.mem += data.len() as u64;
                self.publish(Slot::Mem(data));
                if w.mem > self.spill_after {
                    let (sp, taken) = self.start_spill(disk, w.mem);
                    w.spill = Some(sp);
                    whole = taken;
                }
            }
            Some(sp) => {
                // Chunks are assembled in buffers of exactly `chunk_size` (their memory
                // copy is published as is). After a dropped chunk, the rest stays pending
                // and `start_passing` publishes it.
                let size = disk.chunk_size();
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let room = if whole {
                        size - sp.pending.len()
                    } else {
                        rest.len()
                    };
                    let take = room.min(rest.len());
                    sp.pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if whole && sp.pending.len() == size {
                        let chunk = std::mem::replace(&mut sp.pending, Vec::with_capacity(size));
                        whole = self.spill_chunk(disk, sp, chunk);
                    }
                }
                self.release_consumed();
            }
        }
        if !whole {
            // foyer dropped a chunk: the object cannot be stored whole.
            tracing::debug!(id = self.id, "disk write dropped by foyer: fill not stored");
            let written = w.total;
            self.start_passing(w, written);
            self.release_consumed();
            return true;
        }
        false
    }

    /// Switches to pass-through with `written` body bytes pushed so far: publishes what a
    /// spill had not published yet, stops spilling and frees the disk chunks no published
    /// slot refers to (the others go when their slots are released).
    fn start_passing(&self, w: &mut Writing, written: u64) {
        self.passing.store(true, Ordering::Release);
        let Some(sp) = w.spill.take() else { return };
        // Spilled bytes not yet published are the tail of the chunk being assembled.
        let unpublished = usize::try_from(written.saturating_sub(sp.published))
            .unwrap_or(usize::MAX)
            .min(sp.pending.len());
        if unpublished > 0 {
            let tail = &sp.pending[sp.pending.len() - unpublished..];
            self.publish(Slot::Mem(Bytes::copy_from_slice(tail)));
        }
        let Some(disk) = self.disk else { return };
        let referenced: std::collections::HashSet<usize> = self
            .slots
            .read()
            .items
            .iter()
            .filter_map(|s| match s {
                Slot::Disk { part, .. } => Some(*part),
                Slot::Mem(_) => None,
            })
            .collect();
        for part in (0..sp.next_part).filter(|p| !referenced.contains(p)) {
            disk.remove_chunk(self.key, self.id, part);
        }
    }

    /// Copies what is in memory into disk chunks (readers keep their in-memory slots).
    /// False with it when foyer did not take one of the chunks.
    fn start_spill(&self, disk: &DiskTier, mem: u64) -> (Spill, bool) {
        let mut sp = Spill {
            pending: Vec::with_capacity(disk.chunk_size()),
            next_part: 0,
            crcs: Vec::new(),
            published: mem,
        };
        let mut whole = true;
        let slots: Vec<Slot> = self.slots.read().items.iter().cloned().collect();
        for slot in slots {
            let Slot::Mem(b) = slot else { continue };
            let mut rest = &b[..];
            while !rest.is_empty() {
                let take = (disk.chunk_size() - sp.pending.len()).min(rest.len());
                sp.pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if sp.pending.len() == disk.chunk_size() {
                    let (crc, taken) = disk.put_chunk(self.key, self.id, sp.next_part, &sp.pending);
                    whole &= taken;
                    sp.crcs.push(crc);
                    sp.next_part += 1;
                    sp.pending.clear();
                }
            }
        }
        (sp, whole)
    }

    /// Writes a complete disk chunk and publishes the part readers have not seen yet (with
    /// a memory copy). False when foyer did not take the chunk.
    fn spill_chunk(&self, disk: &DiskTier, sp: &mut Spill, chunk: Vec<u8>) -> bool {
        let part = sp.next_part;
        let (crc, taken) = disk.put_chunk(self.key, self.id, part, &chunk);
        sp.crcs.push(crc);
        sp.next_part += 1;
        let chunk_start = (part * disk.chunk_size()) as u64;
        let chunk_end = chunk_start + chunk.len() as u64;
        if chunk_end > sp.published {
            let start = sp.published.saturating_sub(chunk_start) as usize;
            let len = chunk.len();
            let mem = Bytes::from(chunk).slice(start..);
            self.publish(Slot::Disk {
                mem: Some(mem),
                part,
                start,
                end: len,
                len,
                crc,
            });
            sp.published = chunk_end;
        }
        taken
    }

    /// Marks the body complete and says where it is.
    fn complete(&self) -> Completed {
        let mut guard = self.writing.lock();
        let done = if self.passing() {
            Completed::PassedThrough
        } else {
            match (&mut guard.spill, self.disk) {
                (Some(sp), Some(disk)) => {
                    if !sp.pending.is_empty() {
                        // A dropped last chunk: `commit` finds it missing and stores nothing.
                        let chunk = std::mem::take(&mut sp.pending);
                        self.spill_chunk(disk, sp, chunk);
                    }
                    Completed::Spilled {
                        body_len: sp.published,
                        crcs: std::mem::take(&mut sp.crcs),
                    }
                }
                _ => {
                    let slots = self.slots.read();
                    let chunks = slots.items.iter().filter_map(|s| match s {
                        Slot::Mem(b) => Some(b.clone()),
                        Slot::Disk { .. } => None,
                    });
                    Completed::Memory(chunks.collect())
                }
            }
        };
        let n = self.slots.read().end();
        self.state.send_replace(FillState::Done(n));
        done
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

impl Drop for Fill {
    fn drop(&mut self) {
        // A pass-through fill's spilled chunks that readers still held are garbage now.
        if self.passing() {
            let slots = std::mem::take(self.slots.get_mut());
            self.forget_disk_slots(slots.items.iter());
        }
    }
}
