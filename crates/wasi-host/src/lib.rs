//! Runs modhost modules on wasmer + wasmer-wasix: load (validate, compile with an in-memory
//! and an on-disk compiled-module cache, check the ABI), instantiate, `init`, serve calls,
//! drain and close; the host imports; limits; trap containment.
//!
//! Each instance has a worker thread that takes jobs from its module's bounded inbox, and sits
//! behind a mutex, so it never runs two calls at once: async callers await the worker's reply,
//! or, for a module whose calls are short, run the request inline when an instance is free
//! (`worker::Inline`), saving the hop to the worker thread and back. A guest failure — trap, deadline, bad pointer — is a
//! [`CallError`] value, after which the instance is replaced by a fresh one; a failure to load
//! is a [`LoadError`]. Both name the module.
//!
//! This is the only crate that names wasmer types; it knows nothing of HTTP servers. The
//! contract with guests is `docs/ABI.md`.
//!
//! ```no_run
//! use wasi_host::{Host, ModuleConfig};
//!
//! let host = Host::standalone()?;
//! let bytes = std::fs::read("modules/dist/users.wasm")?;
//! let users = host.load("users", &bytes, &ModuleConfig::default())?;
//! users.go_live()?;
//! let response = users.handle_blocking(binary::HttpRequest::new("GET", ""))?;
//! println!("{} {}", response.status, String::from_utf8_lossy(&response.body));
//! users.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod abi;
mod cache;
mod config;
mod dirs;
mod error;
mod host;
mod imports;
mod inbox;
mod instance;
mod kv;
mod logs;
mod memory;
mod module;
mod outbound;
mod shared;
mod tunables;
mod watchdog;
mod worker;

pub use abi::{
    ABI_VERSION_EXPORT, AbiVersion, ON_MESSAGES_EXPORT, RESTORE_EXPORT, SNAPSHOT_EXPORT,
};
pub use config::{
    Compiler, DirGrant, Grants, HostConfig, KvConfig, Limits, ModuleConfig, check_guest_dir,
};
pub use error::{CallError, CallErrorKind, Frame, LoadError, SnapshotError, SnapshotErrorKind};
pub use host::{CompileSource, Compiled, Host};
pub use kv::valid_store_name;
pub use logs::{LogLevel, LogLine, LogSource};
pub use module::{DrainReport, LoadedModule, QueuedJobs};
pub use outbound::Outbound;
pub use shared::{BroadcastSink, ModuleStats, NoBroadcast};
pub use worker::DrainOutcome;

/// SHA-256 of `bytes` as lowercase hex: a module's content hash. A [`LoadedModule`]'s version
/// is its first 16 digits.
pub fn content_hash(bytes: &[u8]) -> String {
    cache::sha256_hex(bytes)
}
