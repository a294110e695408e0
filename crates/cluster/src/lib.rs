//! modhost's cluster mode: the bridge between one node (its bus, its WebSocket relay, its
//! loaded modules) and a NATS server, so that several `modhost` processes with the same
//! cluster name act as one application.
//!
//! What crosses the wire ([`subject`] names every subject and header):
//! - bus events, as `binary::Message` envelopes on `modhost.<cluster>.bus.<topic>`, tagged with
//!   the publishing node's id so no node delivers its own message twice, and with its sequence
//!   number so a node delivers each once; a node subscribes only to the subjects its local
//!   subscribers' patterns select ([`subject::bus_interest`]);
//! - bus requests that no local subscriber answers, sent to one node whose heartbeat lists a
//!   matching subscription (`modhost.<cluster>.req.<node id>`);
//! - `ws_broadcast` payloads, on `modhost.<cluster>.ws.<topic>`;
//! - HTTP calls to a module this node does not have, as `binary::HttpRequest` /
//!   `binary::HttpResponse` envelopes over the queue group `modhost.<cluster>.call.<module>`;
//! - heartbeats (JSON, [`Heartbeat`]) on `modhost.<cluster>.heartbeat`, once a second;
//! - deployed modules, in the JetStream object store `modhost-<cluster>-modules` that every
//!   node watches and installs from ([`deploy`], [`Cluster::deploy`]);
//! - module state, in one JetStream KV bucket per namespace (`modhost-<cluster>-kv-<name>`),
//!   through [`connect_state_store`]: `state`'s [`state::RemoteStore`] over [`JetStreamKv`].
//!
//! Every message that comes off the wire is checked (size, envelope, subject, origin) and
//! dropped and counted when it fails; it never reaches a module. A node that cannot reach NATS
//! keeps serving locally and joins when NATS comes up; what it publishes meanwhile is counted
//! as not bridged.
//!
//! This crate knows `bus`, `binary`, `state` and async-nats; not wasmer, HTTP or JSON over HTTP. The
//! server wires it in through [`LocalNode`]; one node without `--cluster` never starts it.

#![warn(missing_docs)]

mod bridge;
mod calls;
mod config;
mod deploy;
mod error;
mod interest;
mod node;
mod peers;
mod state_store;
mod stats;
pub mod subject;

pub use config::{ClusterConfig, valid_token};
pub use deploy::{Deployed, MAX_MODULE_BYTES, bucket, deploy};
pub use error::{ClusterError, ForwardError};
pub use node::{CallFuture, Cluster, InstallFuture, LocalNode};
pub use peers::{Heartbeat, PeerStatus};
pub use state_store::{
    JetStreamKv, JetStreamStore, StateStoreConfig, connect_state_store, state_bucket,
};
pub use stats::{ClusterStatus, ConnectionState, MessageCounts};
