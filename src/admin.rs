//! Admin API on its own listener (interface.md §5): health, readiness, status, metrics,
//! purge and config endpoints. Mutating calls need the bearer token (`auth.rs`).

pub mod auth;
mod dashboard;
mod routes;

use crate::state::Shared;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP application.
#[derive(Debug)]
pub struct Admin {
    pub shared: Arc<Shared>,
    pub ops: Arc<dyn routes::Ops>,
}

pub use routes::Ops;

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        routes::handle(self, session).await
    }
}
