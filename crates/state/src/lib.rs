//! `state` is modhost's durable key-value store for modules: byte keys and values in
//! per-module [`Namespace`]s, with quotas, revisions, compare-and-swap, atomic increments,
//! prefix listing and atomic batches, behind the backend-neutral [`Store`] trait.
//!
//! It does not know WebAssembly, HTTP or NATS: `wasi-host` exposes a `Store` to guests through
//! host imports, and the `cluster` crate runs [`RemoteStore`] over NATS JetStream KV (a
//! per-entry revision is all compare-and-swap compares).
//!
//! Backends: [`RedbStore`] (one redb 4 file, the production store), [`MemoryStore`] (the same
//! semantics in memory) and [`RemoteStore`] (over a [`RemoteKv`] service with per-key
//! compare-and-set shared by several processes: NATS JetStream KV in cluster mode, provided by
//! the `cluster` crate). All run the shared logic of `engine` — validation, quotas, revisions,
//! list cursors, every write — and differ only in how they open transactions.
//!
//! # On-disk layout (`RedbStore`, [`FORMAT_VERSION`] 1)
//!
//! | table     | key                                            | value                          |
//! |-----------|------------------------------------------------|--------------------------------|
//! | `entries` | `[namespace length: u8][namespace][key]`       | `[revision: u64 LE][value]`    |
//! | `usage`   | namespace name (`&str`)                        | `(keys: u64, bytes: u64)`      |
//! | `meta`    | `"format_version"`, `"revision"`               | `u64`                          |
//!
//! The length byte keeps namespaces apart (`"a"` + `"bc"` ≠ `"ab"` + `"c"`), so a namespace's
//! keys are one contiguous, byte-ordered range and a prefix listing is one range scan. `usage`
//! counts keys and the sum of key and value lengths (a namespace at zero has no row);
//! `revision` is the last revision handed out. A write transaction updates all three together.
//!
//! # Invariants
//!
//! - Revisions come from one counter per store, bumped in the same write transaction as the
//!   entry: strictly increasing, never reused, even after a delete.
//! - Quotas are checked inside the write transaction: a write that would take a namespace past
//!   its quota is refused and writes nothing.
//! - A failed call writes nothing (see [`StoreErrorKind`] for the one caveat: a commit that the
//!   disk fails part-way may still have become durable, as redb documents).
//! - An acknowledged write with [`Durability::Immediate`] survives a process crash or power
//!   loss; see [`Durability::Eventual`] for what the cheaper mode keeps.
//!
//! # Modules
//!
//! - `store`: the [`Store`] trait.
//! - `types`: [`Namespace`], [`Quota`], [`Entry`], [`Page`], [`WriteOp`], the outcomes,
//!   [`Limits`], [`Durability`], [`Config`].
//! - `error`: [`StoreError`] / [`StoreErrorKind`], [`OpenError`] / [`OpenErrorKind`].
//! - `stats`: [`StoreStats`] and its [`LatencyHistogram`].
//! - `engine`: the logic both backends share (private).
//! - `redb_store`: [`RedbStore`]. `memory`: [`MemoryStore`].
//! - `remote`: [`RemoteStore`] and the [`RemoteKv`] it runs over, with its commit protocol.

#![warn(missing_docs)]

mod engine;
mod error;
mod memory;
mod redb_store;
mod remote;
mod stats;
mod store;
mod types;

pub use error::{OpenError, OpenErrorKind, StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use redb_store::{FORMAT_VERSION, RedbStore};
pub use remote::{DATA_PREFIX, HEAD_KEY, Record, RemoteConfig, RemoteKv, RemoteStore, data_key};
pub use stats::{COMMIT_LATENCY_BUCKETS, LatencyHistogram, StoreStats};
pub use store::Store;
pub use types::{
    BatchOutcome, CasOutcome, Config, DEFAULT_CACHE_BYTES, Durability, EVENTUAL_FLUSH_INTERVAL,
    Entry, Limits, MAX_NAMESPACE_BYTES, Namespace, Page, Quota, Usage, WriteOp,
};
