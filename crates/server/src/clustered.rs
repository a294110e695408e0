//! Cluster mode's side in the server: the [`cluster::LocalNode`] the bridge calls into (the
//! registry, the WebSocket hub), the broadcast sink that also feeds the other nodes, what a
//! forwarded call answers, and the `/_admin/cluster` and metrics views. A server without a
//! `cluster` config never builds any of it.

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
    /// Where deployed modules are written (the dist dir).
    pub dist: std::path::PathBuf,
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
                crate::pipeline::call_target_envelope(&registry, &module, request),
            )
            .await;
            let response = match answered {
                Ok(Some(Ok(envelope))) => return envelope,
                Ok(Some(Err(response))) => response,
                Ok(None) => unavailable(&module),
                Err(_) => crate::pipeline::timed_out(&module, timeout),
            };
            to_envelope(response).await
        })
    }

    fn install(&self, module: String, wasm: Vec<u8>) -> cluster::InstallFuture {
        let registry = self.registry.clone();
        let path = self.dist.join(format!("{module}.wasm"));
        Box::pin(async move {
            if !crate::registry::valid_name(&module) {
                return Err(format!("invalid module name {module:?}"));
            }
            // Written like a build writes dist (temp file + rename); the reload below swaps
            // it in whether or not the dist watcher runs, and is a no-op for the same bytes.
            let unchanged = tokio::fs::read(&path).await.is_ok_and(|old| old == wasm);
            if !unchanged {
                tokio::task::spawn_blocking(move || build::write_atomic(&path, &wasm))
                    .await
                    .map_err(|error| error.to_string())?
                    .map_err(|error| format!("writing the module: {error}"))?;
            }
            registry
                .reload(&module)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }
}

/// `POST /_admin/deploy/NAME` (body: the `.wasm`): puts the module into the cluster's object
/// store, from which every node installs it.
pub(crate) async fn admin_deploy(
    cluster: Option<&cluster::Cluster>,
    module: &str,
    request: http::Request<hyper::body::Incoming>,
) -> Response<Body> {
    let Some(cluster) = cluster else {
        return crate::text_response(
            409,
            "deploying needs cluster mode (start with --cluster URL)",
        );
    };
    if !crate::registry::valid_name(module) {
        return crate::text_response(400, format!("invalid module name {module:?}"));
    }
    let limit = cluster::MAX_MODULE_BYTES;
    let body = match http_body_util::Limited::new(request.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return crate::text_response(
                413,
                format!("a deployed module is at most {limit} bytes"),
            );
        }
    };
    if !body.starts_with(b"\0asm") {
        return crate::text_response(
            400,
            "the body is not a WebAssembly module (no \\0asm header)",
        );
    }
    match cluster.deploy(module, &body).await {
        Ok(deployed) => {
            let text = serde_json::to_string_pretty(&deployed).unwrap_or_default();
            let mut response = crate::text_response(200, text);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => crate::text_response(503, error.to_string()),
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
        Ok(response) => crate::pipeline::from_envelope(module, response),
        Err(ForwardError::Timeout { .. }) => crate::pipeline::timed_out(module, timeout),
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

/// The cluster's families in `/_admin/metrics` (written only when clustered).
pub(crate) fn metrics(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    status: &cluster::ClusterStatus,
) -> crate::metrics::Result {
    use crate::metrics::single;
    use prometheus_client::metrics::MetricType::{Counter, Gauge};
    single(
        encoder,
        "modhost_cluster_connected",
        "1 while connected to the cluster's NATS server",
        Gauge,
        u64::from(status.state == cluster::ConnectionState::Connected),
    )?;
    single(
        encoder,
        "modhost_cluster_peers",
        "other nodes heard from within the heartbeat timeout",
        Gauge,
        status.peers.len() as u64,
    )?;
    single(
        encoder,
        "modhost_cluster_reconnects",
        "times the NATS connection came back after it was lost",
        Counter,
        status.reconnects,
    )?;
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
            "duplicates",
            "bus events that arrived twice through overlapping subscriptions, delivered once",
            messages.duplicates,
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
        (
            "deploys_installed",
            "deployed modules installed on this node",
            messages.deploys_installed,
        ),
        (
            "deploys_refused",
            "deployed modules this node refused",
            messages.deploys_refused,
        ),
    ] {
        single(
            encoder,
            &format!("modhost_cluster_{name}"),
            help,
            Counter,
            value,
        )?;
    }
    Ok(())
}
