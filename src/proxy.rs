//! The request path. Read `impl ProxyHttp` top to bottom: each phase delegates to one
//! function in `proxy/` or `cache`.
//!
//! ```text
//! request_filter ─ validate, route, PURGE, slice routes ─▶ request_cache_filter ─ cache on? ─▶ cache lookup
//!    │ (404/400/431 answered here)   hit ─▶ cache_hit_filter ─▶ response_filter ─▶ logging
//!    ▼                               miss/stale ─▶ proxy_upstream_filter ─▶ upstream_peer
//! upstream_request_filter ─▶ upstream_response_filter ─▶ response_cache_filter (policy)
//!    ─▶ response_filter ─▶ logging
//! errors: fail_to_connect (retry) ─▶ should_serve_stale ─▶ fail_to_proxy (502/503/504)
//! ```

pub mod caching;
pub mod compress;
pub mod ctx;
pub mod failure;
pub mod finish;
pub mod headers;
pub mod limits;
pub mod purge;
pub mod request;
pub mod response;
pub mod resume;
pub mod route;
pub mod slice;
pub mod status;
pub mod upstream;

use crate::cache::CacheLayer;
use crate::state::Shared;
use async_trait::async_trait;
use ctx::RequestCtx;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

/// The proxy application.
#[derive(Debug)]
pub struct Outpost {
    pub shared: Arc<Shared>,
    pub cache: &'static CacheLayer,
}

#[async_trait]
impl ProxyHttp for Outpost {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // The request keeps the config it started with, even across a reload.
        RequestCtx::new(self.shared.runtime.load_full())
    }

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        modules.add_module(
            pingora::modules::http::compression::ResponseCompressionBuilder::enable(
                compress::LEVEL,
            ),
        );
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        compress::prepare_request(session, &ctx.rt.cfg.compression);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if request::admit(&self.shared, session, ctx).await? {
            return Ok(true);
        }
        if purge::maybe_purge(&self.shared, session, ctx).await? {
            return Ok(true);
        }
        if slice::serve(self.cache, session, ctx).await? {
            return Ok(true);
        }
        caching::serve_fresh_hit(self.cache, session, ctx).await
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        caching::enable(self.cache, session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        caching::lookup_key(self.cache, session, ctx)
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::vary(meta, ctx, req)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        let forced = caching::on_hit(meta, hit, ctx);
        if forced.is_none() {
            resume::attach(session, meta, hit, ctx);
        }
        Ok(forced)
    }

    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if caching::may_go_upstream(ctx) {
            return Ok(true);
        }
        failure::respond(
            session,
            ctx,
            504,
            crate::cache::status::Fwd::UriMiss,
            "only-if-cached",
            "not in cache (only-if-cached)",
        )
        .await?;
        Ok(false)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        caching::may_serve_stale(ctx, error)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream::pick(session, ctx)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        upstream::connect_failed(session, peer, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        upstream::proxy_error(peer, session, e, ctx, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.cache.enabled()
            && session
                .req_header()
                .headers
                .contains_key(http::header::RANGE)
        {
            // A ranged miss fills the whole object while the client has its part: Pingora
            // would read the client's next request as stray body bytes and fail it. Close
            // this connection after the answer instead (`Connection: close`).
            session.set_keepalive(None);
        }
        upstream::prepare_request(session, req, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.peer.is_some() && resp.status.as_u16() >= 500 {
            // The owning peer failed: the origin is asked instead (interface.md §4 Peering).
            ctx.peer = None;
            ctx.peer_failed = true;
            let mut e = Error::explain(ErrorType::HTTPStatus(502), "owning peer answered 5xx");
            e.set_retry(true);
            return Err(e);
        }
        response::check_upstream(resp, ctx)?;
        upstream::on_response(resp, ctx);
        caching::on_upstream_response(session, resp, ctx);
        Ok(())
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(caching::decide(self.cache, session, resp, ctx))
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        purge::invalidate_on_unsafe(&self.shared, session, resp, ctx).await;
        response::decorate(session, resp, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        failure::fail(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        finish::finish(&self.shared, session, e, ctx);
    }
}
