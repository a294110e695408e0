//! [`Cluster`]: joining (connect, subscribe, heartbeat) and the outbound queue, over the
//! NATS client; [`LocalNode`]: what the bridge asks of the server it runs in.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use binary::{Envelope as _, Message, MessageBatch};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, ForwardError};
use crate::peers::{Heartbeat, Peers};
use crate::stats::{ClusterStatus, ConnectionState, Counters, add, bump};
use crate::subject;

/// A future answering a forwarded call.
pub type CallFuture = Pin<Box<dyn Future<Output = binary::HttpResponse> + Send>>;

/// What the bridge needs from the node it runs in: its modules, its WebSocket relay and a way
/// to call a module.
pub trait LocalNode: Send + Sync + 'static {
    /// Modules loaded on this node, which it answers forwarded calls for.
    fn modules(&self) -> Vec<String>;
    /// Relays a broadcast from another node to this node's WebSocket clients of `topic`.
    fn ws_deliver(&self, topic: &str, payload: &[u8]);
    /// Calls `module`'s `handle` here (no middleware: that ran on the node the request came
    /// to), answering within `timeout` exactly as a local call would (504 when it passes).
    fn call(&self, module: String, request: binary::HttpRequest, timeout: Duration) -> CallFuture;
    /// Installs a module deployed to the cluster (writes it where this node loads modules
    /// from and loads it, hot-swapping a running version); `Err` says why it was refused.
    fn install(&self, module: String, wasm: Vec<u8>) -> InstallFuture;
}

/// A future installing a deployed module.
pub type InstallFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What waits in the outbound queue.
pub(crate) enum Payload {
    /// A bus event, encoded when it is sent (consecutive events on one subject go as one
    /// batch).
    Bus(Message),
    /// A WebSocket broadcast's bytes.
    Ws(Bytes),
}

impl Payload {
    /// The bytes it takes on the wire alone.
    fn len(&self) -> usize {
        match self {
            Payload::Bus(message) => message.encoded_len(),
            Payload::Ws(bytes) => bytes.len(),
        }
    }
}

pub(crate) struct Outbound {
    pub(crate) subject: String,
    pub(crate) payload: Payload,
}

/// What the bridge's tasks share.
pub(crate) struct Inner {
    pub(crate) config: ClusterConfig,
    pub(crate) id: String,
    pub(crate) client: async_nats::Client,
    pub(crate) counters: Arc<Counters>,
    pub(crate) peers: Peers,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) bus: bus::Bus,
    pub(crate) local: Arc<dyn LocalNode>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Modules with a call subscription, and the task serving it.
    pub(crate) serving: Mutex<BTreeMap<String, JoinHandle<()>>>,
    pub(crate) modules_changed: Notify,
    /// The bus subscriptions on NATS and the duplicate check.
    pub(crate) interest: crate::interest::Interest,
}

impl Inner {
    pub(crate) fn state(&self) -> ConnectionState {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => ConnectionState::Connected,
            async_nats::connection::State::Disconnected => ConnectionState::Disconnected,
            async_nats::connection::State::Pending => ConnectionState::Pending,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// Queues a local message for the other nodes; counts it as not bridged when it cannot go.
    pub(crate) fn send(&self, subject: Option<String>, payload: impl FnOnce() -> Payload) {
        let Some(subject) = subject else {
            bump(&self.counters.not_bridged);
            return;
        };
        let payload = payload();
        if payload.len() > self.config.max_message_bytes || !self.connected() {
            bump(&self.counters.not_bridged);
            return;
        }
        let message = Outbound { subject, payload };
        if self.outbound.try_send(message).is_err() {
            bump(&self.counters.not_bridged);
        }
    }

    pub(crate) fn origin_headers(&self) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subject::ORIGIN, self.id.as_str());
        headers
    }

    /// Checks a message's origin header: `true` to accept it. A missing origin or this node's
    /// own id drops it (counted).
    pub(crate) fn accept_origin(&self, message: &async_nats::Message) -> bool {
        let origin = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(subject::ORIGIN))
            .map(async_nats::HeaderValue::as_str);
        match origin {
            Some(origin) if origin == self.id => {
                bump(&self.counters.own_origin);
                bump(&self.counters.dropped);
                false
            }
            Some(_) => true,
            None => {
                bump(&self.counters.dropped);
                false
            }
        }
    }
}

/// One node's membership in a cluster. Dropping it stops the bridge's tasks; the bus keeps
/// working locally.
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cluster", &self.inner.config.cluster_name)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Joins the cluster: sets the bus's bridge and starts the bridge's tasks. Returns at once
    /// even when NATS is not reachable yet: the client keeps trying in the background and the
    /// node serves locally meanwhile. Must run inside a tokio runtime.
    pub async fn start(
        config: ClusterConfig,
        bus: bus::Bus,
        local: Arc<dyn LocalNode>,
    ) -> Result<Cluster, ClusterError> {
        config.validate()?;
        let id = format!("{}-{:08x}", config.node_name, random_suffix());
        let counters = Arc::new(Counters::default());
        let events = counters.clone();
        let log_id = id.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("modhost {}/{id}", config.cluster_name))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * u64::try_from(attempts.min(10)).unwrap_or(10))
            })
            .event_callback(move |event| {
                let events = events.clone();
                let log_id = log_id.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            bump(&events.connects);
                            tracing::info!(node = %log_id, "cluster: connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            bump(&events.disconnects);
                            tracing::warn!(node = %log_id, "cluster: lost NATS; serving locally, reconnecting");
                        }
                        other => tracing::info!(node = %log_id, "cluster: NATS {other}"),
                    }
                }
            });
        let client = options
            .connect(config.url.as_str())
            .await
            .map_err(|error| ClusterError::Nats(format!("{}: {error}", config.url)))?;
        let (outbound, queue) = mpsc::channel(config.outbound_queue.max(1));
        let inner = Arc::new(Inner {
            id,
            client: client.clone(),
            counters,
            peers: Peers::default(),
            outbound,
            bus: bus.clone(),
            local,
            runtime: tokio::runtime::Handle::current(),
            serving: Mutex::new(BTreeMap::new()),
            modules_changed: Notify::new(),
            interest: crate::interest::Interest::default(),
            config,
        });
        if inner.state() != ConnectionState::Connected {
            tracing::warn!(url = %inner.config.url, "cluster: NATS not reachable yet; serving locally and joining when it comes up");
        }
        let cluster_name = inner.config.cluster_name.clone();
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client.subscribe(subject.clone()).await.map_err(|error| {
                    ClusterError::Nats(format!("subscribing to {subject}: {error}"))
                })
            }
        };
        let ws_in = subscribe(subject::ws_all(&cluster_name)).await?;
        let heartbeats = subscribe(subject::heartbeat(&cluster_name)).await?;
        let requests = subscribe(subject::request(&cluster_name, &inner.id)).await?;

        let tasks = vec![
            tokio::spawn(publish_loop(inner.clone(), queue)),
            tokio::spawn(crate::bridge::ws_loop(inner.clone(), ws_in)),
            tokio::spawn(crate::bridge::request_loop(inner.clone(), requests)),
            tokio::spawn(heartbeat_loop(inner.clone())),
            tokio::spawn(listen_heartbeats(inner.clone(), heartbeats)),
            tokio::spawn(crate::calls::sync_loop(inner.clone())),
            tokio::spawn(crate::deploy::watch_loop(inner.clone())),
        ];
        bus.set_bridge(Arc::new(crate::bridge::BusBridge {
            inner: Arc::downgrade(&inner),
        }));
        tracing::info!(cluster = %inner.config.cluster_name, node = %inner.id, url = %inner.config.url, "cluster mode");
        Ok(Cluster {
            inner,
            tasks: Mutex::new(tasks),
        })
    }

    /// This node's id on the wire.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Whether the NATS connection is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.connected()
    }

    /// Sends a `ws_broadcast` made on this node to the other nodes (the caller relays it to
    /// this node's own clients).
    pub fn ws_broadcast(&self, topic: &str, payload: &[u8]) {
        let subject = subject::ws(&self.inner.config.cluster_name, topic);
        self.inner
            .send(subject, || Payload::Ws(Bytes::copy_from_slice(payload)));
    }

    /// Calls `module` on a node that has it, waiting at most `timeout`.
    pub async fn forward(
        &self,
        module: &str,
        request: &binary::HttpRequest,
        timeout: Duration,
    ) -> Result<binary::HttpResponse, ForwardError> {
        crate::calls::forward(&self.inner, module, request, timeout).await
    }

    /// Deploys `wasm` as module `module` to every node of the cluster (this one included)
    /// through the cluster's object store.
    pub async fn deploy(&self, module: &str, wasm: &[u8]) -> Result<crate::Deployed, ClusterError> {
        crate::deploy::put(
            &self.inner.client,
            &self.inner.config.cluster_name,
            module,
            wasm,
        )
        .await
    }

    /// Asks the bridge to update the modules it answers calls for now, rather than at its next
    /// periodic check (a quarter of a second).
    pub fn modules_changed(&self) {
        self.inner.modules_changed.notify_one();
    }

    /// The connection, the other nodes and the counters.
    pub fn status(&self) -> ClusterStatus {
        let inner = &self.inner;
        let connects = inner.counters.connects.load(Ordering::Relaxed);
        ClusterStatus {
            cluster: inner.config.cluster_name.clone(),
            node: inner.config.node_name.clone(),
            id: inner.id.clone(),
            url: inner.config.url.clone(),
            state: inner.state(),
            reconnects: connects.saturating_sub(1),
            disconnects: inner.counters.disconnects.load(Ordering::Relaxed),
            peers: inner.peers.list(inner.config.heartbeat_timeout),
            serving: inner
                .serving
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned()
                .collect(),
            subscriptions: inner.interest.subjects(),
            messages: inner.counters.snapshot(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Cluster {
    /// Leaves the cluster: stops every task of the bridge (heartbeats, subscriptions, the
    /// outbound queue). The bus keeps working locally; later publishes are not bridged.
    /// Calling it again does nothing.
    pub fn leave(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in &tasks {
            task.abort();
        }
        let serving = std::mem::take(
            &mut *self
                .inner
                .serving
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in serving.values() {
            task.abort();
        }
        self.inner.interest.stop();
    }
}

fn random_suffix() -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    // Truncation intended: 32 random bits are plenty to tell nodes of one name apart.
    #[allow(clippy::cast_possible_truncation)]
    let suffix = hasher.finish() as u32;
    suffix
}

/// Most queued messages taken per wake-up of [`publish_loop`], and so most bus events in one
/// batch on the wire.
const PUBLISH_BATCH: usize = subject::MAX_BATCH;

/// Sends queued messages in order; one task, so per-publisher order holds on the wire. Bus
/// events carry this node's sequence number ([`subject::SEQ`]) besides its origin, and
/// consecutive ones on one subject go as one NATS message ([`subject::BATCH`]) as long as
/// they fit `max_message_bytes` and every live peer's heartbeat says it reads batches: one
/// publish, one header map and one wake-up of the connection for up to [`PUBLISH_BATCH`]
/// events.
async fn publish_loop(inner: Arc<Inner>, mut queue: mpsc::Receiver<Outbound>) {
    let origin = inner.origin_headers();
    let mut seq = 0_u64;
    let mut taken = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut taken, PUBLISH_BATCH).await > 0 {
        // A node of a version before batches drops them; while one is heard from, none go.
        let batching = inner.peers.all_read_batches(inner.config.heartbeat_timeout);
        let mut queued = taken.drain(..).peekable();
        while let Some(first) = queued.next() {
            let subject = first.subject;
            let mut headers = origin.clone();
            let (payload, events) = match first.payload {
                Payload::Ws(bytes) => (bytes, 0),
                Payload::Bus(message) => {
                    let limit = batching.then_some(inner.config.max_message_bytes);
                    let (payload, events) = bus_payload(message, &subject, &mut queued, limit);
                    headers.insert(subject::SEQ, (seq + 1).to_string());
                    if events > 1 {
                        headers.insert(subject::BATCH, events.to_string());
                    }
                    (payload, events)
                }
            };
            seq += events;
            if !inner.connected() {
                add(&inner.counters.not_bridged, events.max(1));
                continue;
            }
            let sent = inner
                .client
                .publish_with_headers(subject, headers, payload)
                .await;
            match sent {
                Ok(()) if events == 0 => bump(&inner.counters.ws_out),
                Ok(()) => add(&inner.counters.bus_out, events),
                Err(error) => {
                    add(&inner.counters.not_bridged, events.max(1));
                    tracing::debug!("cluster: publish failed: {error}");
                }
            }
        }
    }
}

/// The payload of one bus message on the wire and the events it carries: `first` alone as a
/// `Message`, or, with a `limit` (batches allowed), a `MessageBatch` of `first` and the bus
/// events queued right behind it on the same `subject`, as many as fit `limit` bytes.
fn bus_payload(
    first: Message,
    subject: &str,
    queued: &mut std::iter::Peekable<impl Iterator<Item = Outbound>>,
    limit: Option<usize>,
) -> (Bytes, u64) {
    let Some(limit) = limit else {
        return (Bytes::from(first.encode()), 1);
    };
    let mut batch: Option<MessageBatch> = None;
    let mut size = 8 + first.encoded_len();
    while let Some(next) = queued.next_if(|next| {
        next.subject == subject
            && matches!(next.payload, Payload::Bus(_))
            && size + next.payload.len() <= limit
    }) {
        let Payload::Bus(next) = next.payload else {
            unreachable!("only bus events are taken")
        };
        size += next.encoded_len();
        batch
            .get_or_insert_with(|| {
                let mut batch = MessageBatch::new();
                batch.push(&first);
                batch
            })
            .push(&next);
    }
    match batch {
        Some(batch) => {
            let events = batch.len() as u64;
            (Bytes::from(batch.into_bytes()), events)
        }
        None => (Bytes::from(first.encode()), 1),
    }
}

async fn heartbeat_loop(inner: Arc<Inner>) {
    let subject = subject::heartbeat(&inner.config.cluster_name);
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        inner.peers.prune(inner.config.heartbeat_timeout);
        if !inner.connected() {
            continue;
        }
        // The topics a heartbeat lists are subscribed on NATS by the time it goes out.
        let topics = crate::interest::sync(&inner).await;
        let heartbeat = Heartbeat {
            node: inner.config.node_name.clone(),
            id: inner.id.clone(),
            modules: inner.local.modules(),
            topics,
            batches: true,
        };
        let Ok(payload) = serde_json::to_vec(&heartbeat) else {
            continue;
        };
        if let Err(error) = inner
            .client
            .publish_with_headers(subject.clone(), inner.origin_headers(), payload.into())
            .await
        {
            tracing::debug!("cluster: heartbeat not sent: {error}");
        }
    }
}

/// Largest heartbeat read off the wire.
const MAX_HEARTBEAT_BYTES: usize = 1024 * 1024;

async fn listen_heartbeats(inner: Arc<Inner>, mut heartbeats: async_nats::Subscriber) {
    while let Some(message) = heartbeats.next().await {
        if message.payload.len() > MAX_HEARTBEAT_BYTES {
            bump(&inner.counters.dropped);
            continue;
        }
        match serde_json::from_slice::<Heartbeat>(&message.payload) {
            Ok(heartbeat) if heartbeat.id == inner.id => {
                bump(&inner.counters.own_origin);
                bump(&inner.counters.dropped);
            }
            Ok(heartbeat)
                if crate::config::valid_token(&heartbeat.node)
                    && crate::config::valid_id(&heartbeat.id) =>
            {
                inner.peers.seen(heartbeat);
            }
            Ok(_) | Err(_) => bump(&inner.counters.dropped),
        }
    }
}
