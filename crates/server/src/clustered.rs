//! Cluster mode's side in the server: the [`cluster::LocalNode`] the bridge calls into (the
//! registry, the WebSocket hub), the broadcast sink that also feeds the other nodes, what a
//! forwarded call answers, and the `/_admin/cluster` and metrics views. A server without a
//! `cluster` config never builds any of it.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Response;
use http_body_util::BodyExt as _;

use crate::http::Body;
use crate::registry::Registry;
use crate::ws::Hub;

/// Where the server keeps its cluster bridge once it started (it needs the host, which needs
/// the broadcast sink, so the sink reaches the bridge through this slot).
pub(crate) type Slot = Arc<OnceLock<Arc<cluster::Cluster>>>;

/// The node as the bridge sees it.
pub(crate) struct Node {
    pub registry: Arc<Registry>,
    pub hub: Arc<Hub>,
}

impl cluster::LocalNode for Node {
    fn modules(&self) -> Vec<String> {
        self.registry
            .entries()
            .iter()
            .map(|entry| entry.name().to_owned())
            .collect()
    }

    fn ws_deliver(&self, topic: &str, payload: &[u8]) {
        self.hub.broadcast(topic, payload);
    }

    fn call(
        &self,
        module: String,
        request: binary::HttpRequest,
        timeout: Duration,
    ) -> cluster::CallFuture {
        let registry = self.registry.clone();
        Box::pin(async move {
            let answered = tokio::time::timeout(
                timeout,
                crate::http::call_target(&registry, &module, request),
            )
            .await;
            let response = match answered {
                Ok(Some(response)) => response,
                Ok(None) => unavailable(&module),
                Err(_) => crate::http::timed_out(&module, timeout),
            };
            to_envelope(response).await
        })
    }
}

/// Module broadcasts: to this node's clients, then to the other nodes.
pub(crate) struct ClusterSink {
    pub hub: Arc<Hub>,
    pub slot: Slot,
}

impl wasi_host::BroadcastSink for ClusterSink {
    fn broadcast(&self, _module: &str, topic: &str, payload: &[u8]) {
        self.hub.broadcast(topic, payload);
        if let Some(cluster) = self.slot.get() {
            cluster.ws_broadcast(topic, payload);
        }
    }
}

/// `503`: no node has the module.
pub(crate) fn unavailable(module: &str) -> Response<Body> {
    crate::text_response(
        503,
        format!("no node in the cluster serves module \"{module}\""),
    )
}

/// The answer to a call forwarded to another node.
pub(crate) fn forwarded(
    module: &str,
    outcome: Result<binary::HttpResponse, cluster::ForwardError>,
    timeout: Duration,
) -> Response<Body> {
    use cluster::ForwardError;
    match outcome {
        Ok(response) => crate::http::from_envelope(module, response),
        Err(ForwardError::Timeout { .. }) => crate::http::timed_out(module, timeout),
        Err(error @ ForwardError::TooLarge { .. }) => crate::text_response(413, error.to_string()),
        Err(error @ ForwardError::BadReply { .. }) => crate::text_response(502, error.to_string()),
        Err(error) => {
            let mut response = crate::text_response(503, error.to_string());
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            response
        }
    }
}

async fn to_envelope(response: Response<Body>) -> binary::HttpResponse {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    binary::HttpResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| binary::Header::new(name.as_str(), value.as_bytes()))
            .collect(),
        body,
    }
}

/// `GET /_admin/cluster`.
#[derive(serde::Serialize)]
pub(crate) struct AdminView {
    /// Whether this node runs in cluster mode.
    enabled: bool,
    #[serde(flatten)]
    status: Option<cluster::ClusterStatus>,
}

pub(crate) fn admin_view(cluster: Option<&cluster::Cluster>) -> AdminView {
    AdminView {
        enabled: cluster.is_some(),
        status: cluster.map(cluster::Cluster::status),
    }
}

/// The cluster's lines of `/_admin/metrics` (none when not clustered).
pub(crate) fn metrics(cluster: Option<&cluster::Cluster>) -> String {
    let Some(cluster) = cluster else {
        return String::new();
    };
    let status = cluster.status();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(
        "modhost_cluster_connected",
        "1 while connected to the cluster's NATS server",
        "gauge",
        u64::from(status.state == cluster::ConnectionState::Connected),
    );
    gauge(
        "modhost_cluster_peers",
        "other nodes heard from within the heartbeat timeout",
        "gauge",
        status.peers.len() as u64,
    );
    gauge(
        "modhost_cluster_reconnects_total",
        "times the NATS connection came back after it was lost",
        "counter",
        status.reconnects,
    );
    let messages = status.messages;
    for (name, help, value) in [
        (
            "bus_out",
            "bus events sent to the other nodes",
            messages.bus_out,
        ),
        (
            "bus_in",
            "bus events from other nodes delivered here",
            messages.bus_in,
        ),
        (
            "ws_out",
            "WebSocket broadcasts sent to the other nodes",
            messages.ws_out,
        ),
        (
            "ws_in",
            "WebSocket broadcasts from other nodes relayed here",
            messages.ws_in,
        ),
        (
            "not_bridged",
            "local messages that did not go out (disconnected, queue full, too large, topic not a subject)",
            messages.not_bridged,
        ),
        (
            "dropped",
            "messages from the wire refused (too large, undecodable, wrong subject or kind, no or own origin)",
            messages.dropped,
        ),
        (
            "own_origin",
            "of dropped: messages claiming this node's id",
            messages.own_origin,
        ),
        (
            "requests_out",
            "bus requests sent to another node",
            messages.requests_out,
        ),
        (
            "requests_served",
            "bus requests from other nodes answered here",
            messages.requests_served,
        ),
        (
            "calls_out",
            "HTTP calls forwarded to another node",
            messages.calls_out,
        ),
        (
            "calls_served",
            "HTTP calls from other nodes answered here",
            messages.calls_served,
        ),
    ] {
        gauge(
            &format!("modhost_cluster_{name}_total"),
            help,
            "counter",
            value,
        );
    }
    out
}
