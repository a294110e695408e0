//! The bridge's counters and [`ClusterStatus`], what `/_admin/cluster` shows.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::peers::PeerStatus;

/// The bridge's counters, bumped by its tasks and by publishers' threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bus_out: AtomicU64,
    pub(crate) bus_in: AtomicU64,
    pub(crate) ws_out: AtomicU64,
    pub(crate) ws_in: AtomicU64,
    pub(crate) not_bridged: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) own_origin: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) requests_out: AtomicU64,
    pub(crate) requests_served: AtomicU64,
    pub(crate) calls_out: AtomicU64,
    pub(crate) calls_served: AtomicU64,
    pub(crate) deploys_installed: AtomicU64,
    pub(crate) deploys_refused: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, count: u64) {
    counter.fetch_add(count, Ordering::Relaxed);
}

/// Message counts since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MessageCounts {
    /// Bus events sent to the other nodes.
    pub bus_out: u64,
    /// Bus events from other nodes delivered to this node's bus.
    pub bus_in: u64,
    /// WebSocket broadcasts sent to the other nodes.
    pub ws_out: u64,
    /// WebSocket broadcasts from other nodes relayed to this node's clients.
    pub ws_in: u64,
    /// Local messages that did not go out: disconnected from NATS, outbound queue full, over
    /// the size limit, or a topic that is not a subject.
    pub not_bridged: u64,
    /// Messages from the wire refused: over the size limit, not a valid envelope, wrong
    /// kind, a topic that disagrees with the subject, no origin, or this node's own id.
    pub dropped: u64,
    /// Of `dropped`: messages that claimed to come from this node.
    pub own_origin: u64,
    /// Bus events that arrived a second time through overlapping subscriptions (while the
    /// subscriptions changed) and were not delivered again; not part of `dropped`.
    pub duplicates: u64,
    /// Bus requests sent to another node.
    pub requests_out: u64,
    /// Bus requests from other nodes answered here.
    pub requests_served: u64,
    /// HTTP calls forwarded to another node.
    pub calls_out: u64,
    /// HTTP calls from other nodes answered here.
    pub calls_served: u64,
    /// Deployed modules installed on this node.
    pub deploys_installed: u64,
    /// Deployed modules this node refused (invalid name, not a module, over the limit).
    pub deploys_refused: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> MessageCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MessageCounts {
            bus_out: load(&self.bus_out),
            bus_in: load(&self.bus_in),
            ws_out: load(&self.ws_out),
            ws_in: load(&self.ws_in),
            not_bridged: load(&self.not_bridged),
            dropped: load(&self.dropped),
            own_origin: load(&self.own_origin),
            duplicates: load(&self.duplicates),
            requests_out: load(&self.requests_out),
            requests_served: load(&self.requests_served),
            calls_out: load(&self.calls_out),
            calls_served: load(&self.calls_served),
            deploys_installed: load(&self.deploys_installed),
            deploys_refused: load(&self.deploys_refused),
        }
    }
}

/// The NATS connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Connecting for the first time.
    Pending,
    /// Connected.
    Connected,
    /// Lost; reconnecting.
    Disconnected,
}

/// What `GET /_admin/cluster` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster name.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// This node's id on the wire.
    pub id: String,
    /// The NATS server's URL.
    pub url: String,
    /// The connection's state now.
    pub state: ConnectionState,
    /// Times the connection came back after it was lost.
    pub reconnects: u64,
    /// Times the connection was lost.
    pub disconnects: u64,
    /// Other nodes heard from within the heartbeat timeout, by name.
    pub peers: Vec<PeerStatus>,
    /// Modules this node answers forwarded calls for.
    pub serving: Vec<String>,
    /// The NATS subjects this node receives bus events on: its local subscriptions' patterns
    /// as subjects, none covered by another.
    pub subscriptions: Vec<String>,
    /// Message counts.
    pub messages: MessageCounts,
}
