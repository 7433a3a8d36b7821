//! Finishing a body elsewhere. A large object streamed from disk has sent its status and
//! Content-Length before its last chunk is read; if a chunk then turns out unreadable (an
//! I/O error, or foyer evicted it meanwhile), the only alternatives to cutting the response
//! short are to fetch the rest from somewhere that can prove it is the same representation.
//! The proxy supplies that (the origin, with `Range` + `If-Range`); the storage does not
//! know about origins.

use async_trait::async_trait;
use bytes::Bytes;

/// Where the rest of a streamed disk hit can come from.
#[async_trait]
pub trait Resume: Send + Sync {
    /// Bytes `start..end` of the stored body (`total` bytes long), or an error when the
    /// source cannot vouch that they belong to the same representation.
    async fn fetch(&self, start: u64, end: u64, total: u64)
        -> pingora::Result<Box<dyn ResumeBody>>;
}

/// The bytes a [`Resume`] fetched, in order.
#[async_trait]
pub trait ResumeBody: Send + Sync {
    /// The next piece; `None` at the end.
    async fn read(&mut self) -> pingora::Result<Option<Bytes>>;
}
