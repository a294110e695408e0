//! The modhost server: a hyper HTTP server over a registry of wasm modules, with hot reload
//! by the handoff protocol, a middleware pipeline, a WebSocket relay for module broadcasts,
//! admin endpoints and graceful shutdown. The `modhost` binary is a thin command line over
//! this library.
//!
//! Routes: `/m/{name}[/rest]` (middlewares, then the module's `handle`), `GET /ws?topic=T`
//! (WebSocket relay), `GET /_admin` (the live status page, fed by `GET /_admin/events`),
//! `GET /_admin/modules`, `GET /_admin/cluster`, `POST /_admin/reload/{name}`, `GET /healthz`,
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
//! server.reload("users").await?;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! With [`ServerConfig::cluster`] set, the server joins a cluster of nodes over NATS (the
//! `cluster` crate): the bus and `ws_broadcast` span the nodes, and `/m/{name}` for a module
//! loaded only elsewhere is forwarded to a node that has it.
//!
//! This is the only crate that knows HTTP, WebSocket and JSON; it names no wasmer type.

#![warn(missing_docs)]

mod admin;
mod clustered;
mod config;
mod error;
mod http;
mod latency;
mod metrics;
mod middleware;
mod outbound;
mod pipeline;
mod registry;
mod server;
mod status;
mod summary;
mod watch;
mod ws;

pub use cluster::{ClusterConfig, ClusterStatus, ConnectionState as ClusterState};
pub use config::{
    CompiledCache, HandoffConfig, HttpLimits, ServerConfig, StateConfig, StatePlacement,
    WebSocketConfig,
};
pub use error::{HandoffError, ReloadError};
pub use http::{Body, RouteHandler};
pub use latency::{LATENCY_BUCKETS, LatencyCounts};
pub use outbound::{HostPattern, OutboundConfig, OutboundHostStats, OutboundPolicy};
pub use registry::{
    CompiledFrom, HOLD_BUCKETS, HoldStats, MiddlewareStatus, ModuleStatus, Rejection,
    ReloadOutcome, SwapInfo, valid_name,
};
pub use server::{Monitor, ReloadCounts, ServerBuilder, ServerHandle};
pub use status::{MAX_EVENT_STREAMS, SNAPSHOT_INTERVAL, STREAM_LIFETIME};
pub use summary::startup_summary;
pub use ws::HubStats;

/// A plain-text response, for application routes.
pub fn text_response(status: u16, body: impl Into<String>) -> ::http::Response<Body> {
    let mut response = ::http::Response::new(Body::new(bytes::Bytes::from(body.into())));
    *response.status_mut() =
        ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
