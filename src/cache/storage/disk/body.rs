//! `DiskBody`: a large object streamed from the disk tier chunk by chunk (bounded memory),
//! seekable for ranges. A chunk that cannot be read switches the body to its
//! [`Resume`](crate::cache::storage::Resume) source for the rest, when the proxy gave one;
//! otherwise the body fails (never a short one that looks complete).

use super::*;
use crate::cache::storage::{Resume, ResumeBody};

/// A large object streamed from disk chunk by chunk (bounded memory), seekable.
pub(crate) struct DiskBody {
    disk: &'static DiskTier,
    key: HashBinary,
    head: Arc<Head>,
    pos: u64,
    end: u64,
    /// Where the rest comes from if a chunk cannot be read.
    resume: Option<Box<dyn Resume>>,
    /// The rest, once resumed.
    remote: Option<Box<dyn ResumeBody>>,
}

impl std::fmt::Debug for DiskBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBody")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .field("resumable", &self.resume.is_some())
            .field("resumed", &self.remote.is_some())
            .finish_non_exhaustive()
    }
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
            resume: None,
            remote: None,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.head.body_len
    }

    pub(crate) fn set_resume(&mut self, resume: Box<dyn Resume>) {
        self.resume = Some(resume);
    }

    pub(crate) async fn read(&mut self) -> pingora::Result<Option<Bytes>> {
        if self.remote.is_some() {
            return self.read_remote().await;
        }
        if self.pos >= self.end {
            return Ok(None);
        }
        let size = u64::from(self.head.chunk_size);
        let i = (self.pos / size) as usize;
        let chunk = match self.disk.chunk(self.key, &self.head, i).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %self.disk.path.display(), reason = e.0, "disk cache entry unreadable mid-body: removed");
                self.disk.unusable_record();
                self.disk.remove(self.key);
                return self.resume_or_fail(e.0).await;
            }
        };
        let within = (self.pos - i as u64 * size) as usize;
        let take =
            ((chunk.len() - within.min(chunk.len())) as u64).min(self.end - self.pos) as usize;
        if take == 0 {
            let why = "disk cache entry shorter than its head";
            self.disk.unusable_record();
            self.disk.remove(self.key);
            return self.resume_or_fail(why).await;
        }
        self.pos += take as u64;
        Ok(Some(chunk.slice(within..within + take)))
    }

    /// After a failed chunk: the rest from the resume source, or an error.
    async fn resume_or_fail(&mut self, why: &'static str) -> pingora::Result<Option<Bytes>> {
        if let Some(resume) = &self.resume {
            match resume.fetch(self.pos, self.end, self.head.body_len).await {
                Ok(body) => {
                    tracing::warn!(
                        from = self.pos,
                        to = self.end,
                        "disk cache read failed mid-body: the rest comes from the origin"
                    );
                    self.remote = Some(body);
                    return self.read_remote().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "disk cache read failed mid-body and the origin could not supply the rest");
                }
            }
        }
        Error::e_explain(
            ErrorType::InternalError,
            format!("disk cache entry unreadable: {why}"),
        )
    }

    async fn read_remote(&mut self) -> pingora::Result<Option<Bytes>> {
        let Some(remote) = self.remote.as_mut() else {
            return Ok(None);
        };
        if self.pos >= self.end {
            return Ok(None);
        }
        match remote.read().await? {
            Some(b) => {
                let take = (b.len() as u64).min(self.end - self.pos) as usize;
                self.pos += take as u64;
                Ok(Some(b.slice(..take)))
            }
            None => Error::e_explain(
                ErrorType::InternalError,
                "origin ended the resumed body early",
            ),
        }
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
        self.remote = None;
        Ok(())
    }
}
