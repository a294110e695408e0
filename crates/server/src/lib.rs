//! The modhost server: a hyper HTTP server over a registry of wasm modules, with hot reload
//! by the handoff protocol, a middleware pipeline, a WebSocket relay for module broadcasts,
//! admin endpoints and graceful shutdown. The `modhost` binary is a thin command line over
//! this library.
//!
//! Routes: `/m/{name}[/rest]` (middlewares, then the module's `handle`), `GET /ws?topic=T`
//! (WebSocket relay), `GET /_admin/modules`, `POST /_admin/reload/{name}`, `GET /healthz`,
//! plus any an application adds with [`ServerBuilder::route`].
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use server::{ServerBuilder, ServerConfig};
//!
//! let mut config = ServerConfig::at("/srv/app");
//! config.listen = "127.0.0.1:0".parse()?;
//! config.watch_dist = false; // this application drives reloads itself
//! let server = ServerBuilder::new(config)
//!     .route("/version", |_request| async { server::text_response(200, "1.0") })
//!     .start()
//!     .await?;
//! println!("listening on {}", server.addr());
//! server.reload("users").await.map_err(anyhow::Error::msg)?;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! This is the only crate that knows HTTP, WebSocket and JSON; it names no wasmer type.

#![warn(missing_docs)]

mod config;
mod http;
mod metrics;
mod middleware;
mod outbound;
mod registry;
mod server;
mod watch;
mod ws;

pub use config::{
    CompiledCache, FileConfig, FileModule, FileOutbound, HandoffConfig, HttpLimits, ServerConfig,
    StateConfig, WebSocketConfig,
};
pub use http::{Body, RouteHandler};
pub use metrics::ProcessStats;
pub use middleware::Rule;
pub use outbound::{HostPattern, OutboundConfig, OutboundHostStats, OutboundHub, OutboundPolicy};
pub use registry::{
    CompiledFrom, Entry, HOLD_BUCKETS, HoldStats, MiddlewareStatus, ModuleStatus, Registry,
    Rejection, ReloadOutcome, SwapInfo, module_name_of, valid_name,
};
pub use server::{ServerBuilder, ServerHandle};
pub use watch::DistWatcher;
pub use ws::{Hub, HubStats};

/// A plain-text response, for application routes.
pub fn text_response(status: u16, body: impl Into<String>) -> ::http::Response<Body> {
    let mut response = ::http::Response::new(Body::new(bytes::Bytes::from(body.into())));
    *response.status_mut() =
        ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
