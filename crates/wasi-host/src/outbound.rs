//! The outbound HTTP capability: what the `http_send` import hands a module's requests to.
//! This crate knows no HTTP client; the server implements [`Outbound`] (allow-list, name
//! resolution, TLS, limits) and passes one per module in [`crate::ModuleConfig::outbound`].

use std::fmt;
use std::time::Instant;

use binary::{HttpRequest, OutboundResponse};

/// Sends one module's outbound HTTP requests.
pub trait Outbound: Send + Sync + fmt::Debug + 'static {
    /// Sends `request` — its `path` an absolute URL (`https://host[:port]/path[?query]`),
    /// its `query`, when not empty, appended after a `?` — and waits for the answer, never
    /// past `deadline` (the calling export's own). Called on the module's worker thread,
    /// never on a tokio worker: it may block.
    fn send(&self, request: HttpRequest, deadline: Instant) -> OutboundResponse;
}
