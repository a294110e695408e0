//! modhost's wire format: the [`Message`] that travels on the bus and between host and guest,
//! the [`HttpRequest`] / [`HttpResponse`] envelopes that cross the host/guest boundary, and the
//! [`KvRequest`] / [`KvResponse`] of the key-value import, and the [`OutboundResponse`] of the
//! outbound HTTP import.
//!
//! It is also where the protocol's other shared facts live, defined once for the host and the
//! guest SDK alike: topic syntax and matching ([`topic`]), the imports' return codes
//! ([`abi::Code`]), the reserved `x-modhost-*` header names ([`header`]) and percent-decoding
//! ([`url`]).
//!
//! Every type is encoded with bincode 2.0.1 in one fixed configuration ([`CONFIG`]):
//! little-endian, fixed-width integers, `u64` length prefixes, `u32` enum tags. The byte layout
//! is specified field by field in `docs/wire-format.md` so a module written in Go or C can
//! implement it; golden vectors under `crates/binary/test_data/` hold the spec and this code
//! to the same bytes.
//!
//! Decoding is hardened for untrusted input (bytes that came from a guest or a socket): it
//! never panics, never allocates more than the input can justify (a length prefix is checked
//! against the bytes that are actually there before anything is allocated), refuses inputs
//! above a configurable maximum size, and reports a typed [`DecodeError`] naming the field and
//! the byte offset.
//!
//! [`Snapshot`] is the host's envelope around a module's in-memory state during a hot swap:
//! a fixed layout with a magic, a format version and a CRC-32 rather than bincode.
//!
//! This crate does no I/O and knows nothing about tokio, wasmer or hyper; it builds for
//! `wasm32-wasip1`, where guests use it.
//!
//! ```
//! use binary::{Envelope, Message, MessageKind};
//!
//! let message = Message::event("users.created", b"{\"id\":7}".to_vec());
//! let bytes = message.encode();
//! assert_eq!(Message::decode(&bytes)?, message);
//! assert_eq!(message.kind, MessageKind::Event);
//! # Ok::<(), binary::DecodeError>(())
//! ```

#![warn(missing_docs)]

pub mod abi;
mod codec;
mod error;
pub mod header;
mod http;
mod kv;
mod message;
mod outbound;
mod snapshot;
pub mod topic;
pub mod url;
#[doc(hidden)]
pub mod vectors;

pub use codec::{CONFIG, Config, DEFAULT_MAX_SIZE, DecodeOptions, Envelope};
pub use error::{DecodeError, DecodeErrorKind};
pub use http::{Header, HttpRequest, HttpResponse};
pub use kv::{KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite};
pub use message::{Message, MessageBatch, MessageBatchReader, MessageKind};
pub use outbound::{OutboundErrorKind, OutboundResponse};
pub use snapshot::{DEFAULT_MAX_SNAPSHOT_BYTES, Snapshot, crc32};

#[cfg(test)]
mod tests;
