//! Hit handlers: a complete object (zero-copy slices of its chunks, seekable for ranges), an
//! in-flight fill (streams chunks as the writer appends them; not seekable; an error if the
//! writer fails), or a large object streamed from disk chunk by chunk (seekable). All carry
//! the tier they came from for the lookup metrics.

use super::disk::{DiskBody, DISK_ERRORS};
use super::entry::Body;
use super::fill::{Fill, FillState, Slot};
use super::Tier;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::{Error, ErrorType};
use pingora_cache::storage::{HandleHit, Storage as StorageTrait};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheKey;
use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// The `HitHandler` of [`super::Storage`].
#[derive(Debug)]
pub(crate) struct StorageHit {
    pub(crate) tier: Tier,
    body: HitBody,
}

#[derive(Debug)]
enum HitBody {
    Complete(CompleteBody),
    Partial(PartialBody),
    Disk(DiskBody),
}

impl StorageHit {
    pub(crate) fn complete(tier: Tier, body: Arc<Body>) -> Self {
        let end = body.len();
        StorageHit {
            tier,
            body: HitBody::Complete(CompleteBody {
                body,
                pos: 0,
                end,
                chunk: 0,
                chunk_start: 0,
            }),
        }
    }

    pub(crate) fn streams_from_disk(&self) -> bool {
        matches!(self.body, HitBody::Disk(_))
    }

    pub(crate) fn set_resume(&mut self, resume: Box<dyn super::Resume>) {
        if let HitBody::Disk(d) = &mut self.body {
            d.set_resume(resume);
        }
    }

    pub(crate) fn disk(body: DiskBody) -> Self {
        StorageHit {
            tier: Tier::Disk,
            body: HitBody::Disk(body),
        }
    }

    /// A reader of an in-flight fill, from its first byte. `None` if the fill already
    /// released its start (it passes through; the caller treats it as a miss).
    pub(crate) fn partial(fill: Arc<Fill>) -> Option<Self> {
        let progress = fill.attach()?;
        let rx = fill.subscribe();
        Some(StorageHit {
            tier: Tier::Memory,
            body: HitBody::Partial(PartialBody {
                fill,
                rx,
                next: 0,
                progress,
            }),
        })
    }
}

#[derive(Debug)]
struct CompleteBody {
    body: Arc<Body>,
    pos: usize,
    end: usize,
    /// Chunk holding `pos`, and its start offset.
    chunk: usize,
    chunk_start: usize,
}

impl CompleteBody {
    fn read(&mut self) -> Option<Bytes> {
        while self.pos < self.end {
            let chunk = self.body.chunk(self.chunk)?;
            let within = self.pos - self.chunk_start;
            if within >= chunk.len() {
                self.chunk += 1;
                self.chunk_start += chunk.len();
                continue;
            }
            let take = (chunk.len() - within).min(self.end - self.pos);
            let out = chunk.slice(within..within + take);
            self.pos += take;
            return Some(out);
        }
        None
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> pingora::Result<()> {
        let len = self.body.len();
        if start >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {len}"),
            );
        }
        self.pos = start;
        // An end past the last byte is allowed: serve what there is.
        self.end = end.map_or(len, |e| e.min(len));
        (self.chunk, self.chunk_start) = self.body.locate(start);
        Ok(())
    }
}

#[derive(Debug)]
struct PartialBody {
    fill: Arc<Fill>,
    rx: watch::Receiver<FillState>,
    next: usize,
    /// `next`, shared with the fill: a pass-through fill frees what every reader read.
    progress: Arc<AtomicUsize>,
}

impl PartialBody {
    async fn load(&self, slot: Slot) -> pingora::Result<Bytes> {
        let (part, start, end, len, crc) = match slot {
            Slot::Mem(b) | Slot::Disk { mem: Some(b), .. } => return Ok(b),
            Slot::Disk {
                mem: None,
                part,
                start,
                end,
                len,
                crc,
            } => (part, start, end, len, crc),
        };
        let Some(disk) = self.fill.disk else {
            return Error::e_explain(ErrorType::InternalError, "spilled fill without a disk tier");
        };
        let why = match disk
            .load_chunk(self.fill.key, self.fill.id, part, crc, len)
            .await
        {
            Ok(chunk) if start <= end && end <= chunk.len() => return Ok(chunk.slice(start..end)),
            Ok(_) => "spilled chunk shorter than published".to_string(),
            Err(e) => format!("spilled chunk unreadable: {}", e.0),
        };
        // Only a reader that joined after the memory copy was dropped gets here. The body
        // is incomplete on disk: fail this reader (never a clean EOF) and store nothing.
        DISK_ERRORS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(id = self.fill.id, reason = %why, "cache fill: spilled chunk lost");
        self.fill.stop_storing();
        Error::e_explain(ErrorType::InternalError, why)
    }

    async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        loop {
            let state = *self.rx.borrow_and_update();
            let available = match state {
                FillState::Failed => {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "cache fill failed: the origin response was not completed",
                    );
                }
                FillState::Writing(n) | FillState::Done(n) => n,
            };
            if self.next < available {
                let Some(slot) = self.fill.slot(self.next) else {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "cache fill released a piece before this reader read it",
                    );
                };
                // Advance only once loaded: pingora may drop this future mid-way.
                let data = self.load(slot).await?;
                self.next += 1;
                self.progress.store(self.next, Ordering::Release);
                self.fill.release_consumed();
                return Ok(Some(data));
            }
            if matches!(state, FillState::Done(_)) {
                return Ok(None);
            }
            if self.rx.changed().await.is_err() {
                return Error::e_explain(ErrorType::InternalError, "cache fill went away");
            }
        }
    }
}

#[async_trait]
impl HandleHit for StorageHit {
    async fn read_body(&mut self) -> pingora::Result<Option<Bytes>> {
        match &mut self.body {
            HitBody::Complete(c) => Ok(c.read()),
            HitBody::Partial(p) => p.read().await,
            HitBody::Disk(d) => d.read().await,
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn StorageTrait + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> pingora::Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        !matches!(self.body, HitBody::Partial(_))
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> pingora::Result<()> {
        match &mut self.body {
            HitBody::Complete(c) => c.seek(start, end),
            HitBody::Disk(d) => d.seek(start, end),
            HitBody::Partial(_) => {
                Error::e_explain(ErrorType::InternalError, "seek not supported while filling")
            }
        }
    }

    fn should_count_access(&self) -> bool {
        !matches!(self.body, HitBody::Partial(_))
    }

    fn get_eviction_weight(&self) -> usize {
        match &self.body {
            HitBody::Complete(c) => c.body.len(),
            HitBody::Disk(d) => d.len() as usize,
            HitBody::Partial(_) => 0,
        }
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
