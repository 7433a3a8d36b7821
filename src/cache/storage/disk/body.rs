//! `DiskBody`: a large object streamed from the disk tier chunk by chunk (bounded memory),
//! seekable for ranges. A chunk that cannot be read fails the body (never a short one).

use super::*;

/// A large object streamed from disk chunk by chunk (bounded memory), seekable.
#[derive(Debug)]
pub(crate) struct DiskBody {
    disk: &'static DiskTier,
    key: HashBinary,
    head: Arc<Head>,
    pos: u64,
    end: u64,
}

impl DiskBody {
    pub(crate) fn new(disk: &'static DiskTier, key: HashBinary, head: Head) -> Self {
        let end = head.body_len;
        DiskBody {
            disk,
            key,
            head: Arc::new(head),
            pos: 0,
            end,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.head.body_len
    }

    pub(crate) async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let size = u64::from(self.head.chunk_size);
        let i = (self.pos / size) as usize;
        let chunk = match self.disk.chunk(self.key, &self.head, i).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %self.disk.path.display(), reason = e.0, "disk cache entry unreadable mid-body: removed");
                self.disk.chunk_failed(e);
                self.disk.remove(self.key);
                return Error::e_explain(
                    ErrorType::InternalError,
                    format!("disk cache entry unreadable: {}", e.0),
                );
            }
        };
        let within = (self.pos - i as u64 * size) as usize;
        let take =
            ((chunk.len() - within.min(chunk.len())) as u64).min(self.end - self.pos) as usize;
        if take == 0 {
            self.disk
                .read_failed(&"disk cache entry shorter than its head");
            self.disk.remove(self.key);
            return Error::e_explain(
                ErrorType::InternalError,
                "disk cache entry shorter than its head",
            );
        }
        self.pos += take as u64;
        Ok(Some(chunk.slice(within..within + take)))
    }

    pub(crate) fn seek(&mut self, start: usize, end: Option<usize>) -> pingora::Result<()> {
        let len = self.head.body_len;
        if start as u64 >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {len}"),
            );
        }
        self.pos = start as u64;
        self.end = end.map_or(len, |e| (e as u64).min(len));
        Ok(())
    }
}
