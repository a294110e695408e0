//! The WebSocket relay: `GET /ws?topic=T` upgrades to a WebSocket that receives every
//! `ws_broadcast` a module makes on topic `T`.
//!
//! - A payload that is valid UTF-8 goes out as a text frame, anything else as binary.
//! - Each client has a bounded queue ([`crate::WebSocketConfig::client_queue`]). A client that
//!   falls that far behind is disconnected with close code 1008 and reason
//!   `client too slow`, and counted: memory stays bounded and fast clients never wait for a
//!   slow one.
//! - The server pings every `ping_interval`; a client that sends nothing (not even a pong) for
//!   two intervals is dropped.
//! - Clients may not publish: a text or binary frame from a client is answered with close
//!   code 1008 `clients may not send messages`. (Bus writes from browsers would need per-topic
//!   authorisation that no module can declare yet; the safe default is read-only.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::config::WebSocketConfig;
use crate::http::{App, Body, query_param, text};

/// What a client's writer task is told to send.
enum Outgoing {
    Frame(Frame),
    Close(CloseCode, &'static str),
}

struct Client {
    id: u64,
    queue: mpsc::Sender<Outgoing>,
}

/// Counters of the relay.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct HubStats {
    /// Clients connected now.
    pub clients: u64,
    /// Frames queued to clients.
    pub frames: u64,
    /// Clients disconnected for being too slow.
    pub slow_disconnects: u64,
}

/// Topic → connected clients.
pub struct Hub {
    config: WebSocketConfig,
    topics: Mutex<HashMap<String, Vec<Client>>>,
    next_id: AtomicU64,
    clients: AtomicU64,
    frames: AtomicU64,
    slow: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub(crate) fn new(config: WebSocketConfig) -> Hub {
        Hub {
            config,
            topics: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            clients: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// The relay's counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            clients: self.clients.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            slow_disconnects: self.slow.load(Ordering::Relaxed),
        }
    }

    /// Clients subscribed to `topic` now.
    pub fn clients_of(&self, topic: &str) -> usize {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .map_or(0, Vec::len)
    }

    /// Every topic with clients, and how many, sorted by topic.
    pub fn topic_clients(&self) -> Vec<(String, usize)> {
        let mut topics: Vec<(String, usize)> = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(topic, clients)| (topic.clone(), clients.len()))
            .collect();
        topics.sort_unstable();
        topics
    }

    /// Queues `payload` for every client of `topic`; never blocks.
    pub fn broadcast(&self, topic: &str, payload: &[u8]) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(clients) = topics.get_mut(topic) else {
            return;
        };
        let frame = match std::str::from_utf8(payload) {
            Ok(text) => Frame::text(text.to_owned()),
            Err(_) => Frame::binary(Bytes::copy_from_slice(payload)),
        };
        clients.retain(|client| match client.queue.try_send(Outgoing::Frame(frame.clone())) {
            Ok(()) => {
                self.frames.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %topic, client = client.id, "WebSocket client too slow ({} frames queued): disconnecting", self.config.client_queue);
                // The close goes through a fresh reservation-free path: the writer sees the
                // queue closed (this sender dropped) and sends the close frame itself.
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if clients.is_empty() {
            topics.remove(topic);
        }
    }

    /// Closes every client with code 1001 (server going away), e.g. at shutdown.
    pub fn close_all(&self, reason: &'static str) {
        let topics =
            std::mem::take(&mut *self.topics.lock().unwrap_or_else(PoisonError::into_inner));
        for client in topics.into_values().flatten() {
            let _ = client
                .queue
                .try_send(Outgoing::Close(CloseCode::Away, reason));
        }
    }

    fn register(&self, topic: &str) -> (u64, mpsc::Receiver<Outgoing>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(self.config.client_queue.max(1));
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_default()
            .push(Client { id, queue });
        self.clients.fetch_add(1, Ordering::Relaxed);
        (id, receiver)
    }

    fn unregister(&self, topic: &str, id: u64) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(clients) = topics.get_mut(topic) {
            clients.retain(|client| client.id != id);
            if clients.is_empty() {
                topics.remove(topic);
            }
        }
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs one client connection until it ends.
    pub(crate) async fn serve<S>(self: Arc<Self>, io: S, topic: String)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_bytes))
            .max_frame_size(Some(self.config.max_message_bytes));
        let stream =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, Some(config))
                .await;
        let (mut sink, mut incoming) = stream.split();
        let (id, mut queue) = self.register(&topic);
        tracing::debug!(topic = %topic, client = id, "WebSocket client connected");
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        let close = loop {
            tokio::select! {
                outgoing = queue.recv() => match outgoing {
                    Some(Outgoing::Frame(frame)) => {
                        // Write whatever else is queued too, then flush once.
                        let mut batch = vec![frame];
                        let mut closing = None;
                        while batch.len() < 64 {
                            match queue.try_recv() {
                                Ok(Outgoing::Frame(frame)) => batch.push(frame),
                                Ok(Outgoing::Close(code, reason)) => {
                                    closing = Some((code, reason));
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let mut failed = false;
                        for frame in batch {
                            if sink.feed(frame).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        if failed || sink.flush().await.is_err() {
                            break None;
                        }
                        if closing.is_some() {
                            break closing;
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => break Some((code, reason)),
                    // The hub dropped our queue: we were too slow.
                    None => break Some((CloseCode::Policy, "client too slow")),
                },
                frame = incoming.next() => match frame {
                    Some(Ok(Frame::Text(_) | Frame::Binary(_))) => {
                        break Some((CloseCode::Policy, "clients may not send messages"));
                    }
                    Some(Ok(Frame::Close(_))) | None => break None,
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(error))) => {
                        tracing::debug!(topic = %topic, client = id, "WebSocket client sent too much: {error}");
                        break Some((CloseCode::Size, "message too big"));
                    }
                    Some(Err(error)) => {
                        tracing::debug!(topic = %topic, client = id, "WebSocket client error: {error}");
                        break Some((CloseCode::Protocol, "protocol error"));
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.config.ping_interval * 2 {
                        break Some((CloseCode::Away, "no pong"));
                    }
                    if sink.send(Frame::Ping(Bytes::new())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        self.unregister(&topic, id);
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                sink.send(Frame::Close(Some(frame))),
            )
            .await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
        tracing::debug!(topic = %topic, client = id, "WebSocket client disconnected");
    }
}

/// Feeds module broadcasts into the hub.
pub(crate) struct HubSink(pub Arc<Hub>);

impl wasi_host::BroadcastSink for HubSink {
    fn broadcast(&self, _module: &str, topic: &str, payload: &[u8]) {
        self.0.broadcast(topic, payload);
    }
}

/// Valid `/ws` topics: 1–256 bytes of visible ASCII, no `*`.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 256
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'*')
}

/// The `GET /ws?topic=T` handshake: checks it, answers 101 and hands the upgraded connection
/// to the hub.
pub(crate) fn upgrade(app: &App, mut request: Request<Incoming>) -> Response<Body> {
    let Some(topic) = query_param(request.uri().query(), "topic") else {
        return text(StatusCode::BAD_REQUEST, "missing topic: use /ws?topic=NAME");
    };
    if !valid_topic(&topic) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid topic {topic:?}: 1-256 visible ASCII characters, no '*'"),
        );
    }
    let headers = request.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|value| value == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake: missing sec-websocket-key",
        );
    };
    if request.method() != Method::GET || !is_upgrade || !version_ok {
        return text(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake (GET, upgrade: websocket, version 13)",
        );
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let hub = app.hub.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                hub.serve(hyper_util::rt::TokioIo::new(upgraded), topic)
                    .await
            }
            Err(error) => tracing::debug!("WebSocket upgrade failed: {error}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
