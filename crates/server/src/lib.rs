//! The hyper HTTP server: module registry, hot reload with the handoff protocol, middleware,
//! the WebSocket relay, admin endpoints and graceful shutdown.
//!
//! Not yet built: this crate is filled by the server issue. It is the only crate that knows
//! HTTP, WebSocket and JSON.
