//! Finishing a disk hit from the origin (`cache::storage::Resume`). A large object streamed
//! from disk whose chunk cannot be read mid-body gets the rest with a `Range` request to a
//! healthy server of its origin, guarded by `If-Range` with the stored strong `ETag` (or
//! `Last-Modified`): the origin answers 206 only if it still has that representation, and
//! the answer is used only if its `Content-Range` is exactly the missing part of a body of the
//! stored length. Otherwise the client's response fails as before (cut, never spliced).

use super::ctx::RequestCtx;
use super::upstream::{peer_for, prepare_request};
use crate::cache::storage::{Resume, ResumeBody, Storage};
use crate::upstream::pool::Pool;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::{CacheMeta, HitHandler};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use std::sync::{Arc, OnceLock};

/// Request headers that must not reach the origin on a resume or slice request (the client's own
/// conditionals and ranges; the resume sets its own).
pub(super) const DROPPED: [&str; 6] = [
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// `cache_hit_filter`: makes a disk-streamed hit resumable from its origin, when the
/// stored response has a validator `If-Range` can use.
pub fn attach(session: &Session, meta: &CacheMeta, hit: &mut HitHandler, ctx: &RequestCtx) {
    if !Storage::streams_from_disk(hit) {
        return;
    }
    let Some(pool) = ctx.pool.clone() else { return };
    let stored = meta.response_header();
    let header = |name: &str| {
        stored
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header("etag").filter(|e| e.starts_with('"'));
    let Some(validator) = etag.clone().or_else(|| header("last-modified")) else {
        return;
    };
    let mut req = session.req_header().clone();
    req.set_method(http::Method::GET);
    for name in DROPPED {
        req.remove_header(name);
    }
    if prepare_request(session, &mut req, ctx).is_err()
        || req.insert_header("if-range", validator).is_err()
    {
        return;
    }
    Storage::set_resume(
        hit,
        Box::new(OriginResume {
            pool,
            req,
            etag,
            encoding: header("content-encoding"),
        }),
    );
}

struct OriginResume {
    pool: Arc<Pool>,
    req: RequestHeader,
    /// The stored strong ETag, which a 206 must repeat when it sends one.
    etag: Option<String>,
    /// The stored Content-Encoding: the bytes must be of the same coding.
    encoding: Option<String>,
}

/// The origin connector of requests outpost makes on its own (resumes, slice fills).
pub(crate) fn connector() -> &'static Connector {
    static C: OnceLock<Connector> = OnceLock::new();
    C.get_or_init(|| Connector::new(None))
}

fn refused(why: impl Into<String>) -> Box<Error> {
    Error::explain(ErrorType::InternalError, why.into())
}

use crate::cache::slice::content_range;

#[async_trait]
impl Resume for OriginResume {
    async fn fetch(&self, start: u64, end: u64, total: u64) -> Result<Box<dyn ResumeBody>> {
        if start >= end {
            return Err(refused("nothing to resume"));
        }
        let key = self
            .req
            .uri
            .path_and_query()
            .map_or(b"/".as_slice(), |p| p.as_str().as_bytes());
        let server = self
            .pool
            .select(key, &[])
            .ok_or_else(|| refused("no healthy server to resume from"))?;
        let peer = peer_for(&self.pool, &server);
        let mut req = self.req.clone();
        req.insert_header("range", format!("bytes={start}-{}", end - 1))?;
        let (mut http, _reused) = connector().get_http_session(&peer).await?;
        http.write_request_header(Box::new(req)).await?;
        http.finish_request_body().await?;
        http.read_response_header().await?;
        let resp = http
            .response_header()
            .ok_or_else(|| refused("origin sent no response header"))?;
        if let Some(c) = server
            .requests
            .get(crate::metrics::class_index(resp.status.as_u16()))
        {
            c.inc();
        }
        if resp.status.as_u16() != 206 {
            return Err(refused(format!(
                "origin answered {} to the resume range (representation changed?)",
                resp.status
            )));
        }
        let got = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
        let span = got("content-range").and_then(content_range);
        let exact = |(first, last, len): (u64, u64, Option<u64>)| {
            first == start && last + 1 == end && len.is_none_or(|l| l == total)
        };
        if !span.is_some_and(exact) {
            return Err(refused(format!(
                "origin's Content-Range {:?} is not bytes {start}-{}/{total}",
                got("content-range"),
                end - 1
            )));
        }
        if let (Some(want), Some(etag)) = (self.etag.as_deref(), got("etag")) {
            if want != etag {
                return Err(refused("origin's ETag differs from the stored one"));
            }
        }
        if got("content-encoding") != self.encoding.as_deref() {
            return Err(refused(
                "origin's Content-Encoding differs from the stored one",
            ));
        }
        Ok(Box::new(OriginBody { http }))
    }
}

struct OriginBody {
    http: HttpSession,
}

#[async_trait]
impl ResumeBody for OriginBody {
    async fn read(&mut self) -> Result<Option<Bytes>> {
        self.http.read_response_body().await
    }
}
