//! Configuration: the host's, and each module's limits, pool size and capability grants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a [`crate::Host`] is set up.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Directory of the on-disk compiled-module cache; `None` disables it (every load
    /// compiles).
    pub cache_dir: Option<PathBuf>,
    /// The tokio runtime wasmer-wasix runs its tasks on. `None` makes the host start a small
    /// runtime of its own. Guests are never called on a tokio worker thread either way.
    pub tokio: Option<tokio::runtime::Handle>,
    /// The key-value store modules reach through the `kv` import (every version and instance
    /// of a module sees the same keys). `None`: the import answers "no store".
    pub store: Option<Arc<dyn state::Store>>,
    /// The pool size of a module that declares itself shared-nothing and whose
    /// [`ModuleConfig::instances`] is not set: one instance per thread that runs requests, so
    /// each of them can find one free and run its request inline. `None`: the machine's
    /// available parallelism (tokio's default number of worker threads).
    pub request_threads: Option<usize>,
    /// The compiler that turns modules into machine code.
    pub compiler: Compiler,
}

/// Which wasmer compiler a [`crate::Host`] uses. Compiled-module cache entries are kept
/// apart per compiler (the engine's identity is part of their name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compiler {
    /// Cranelift: an optimising compiler; the default.
    #[default]
    Cranelift,
    /// Singlepass: compiles in one pass over the code, several times faster than Cranelift,
    /// into code that runs slower. Made for `modhost dev`, where every edit is new code.
    Singlepass,
}

/// Per-module settings: limits, instance count and capability grants.
#[derive(Debug, Clone)]
pub struct ModuleConfig {
    /// Resource limits.
    pub limits: Limits,
    /// Instances in the module's pool. Each runs on its own thread and takes jobs from one
    /// shared inbox; set more than one only for modules whose HTTP handler keeps no state
    /// between requests. `None` (the default) lets the module decide: one, or
    /// [`HostConfig::request_threads`] for a module that exports `modhost_shared_nothing`
    /// (`docs/ABI.md`).
    pub instances: Option<usize>,
    /// Jobs that may wait in the inbox (default 1024). A full inbox makes calls fail at once
    /// with [`crate::CallError::Overloaded`].
    pub inbox_capacity: usize,
    /// What the sandbox lets the module reach.
    pub grants: Grants,
    /// The module's key-value quota and the shared stores it may open.
    pub kv: KvConfig,
    /// Where the module's outbound HTTP requests (`http_send`) go; the server builds one per
    /// module from its `allowed_hosts`. `None` (the default): the import answers
    /// `unavailable`.
    pub outbound: Option<Arc<dyn crate::Outbound>>,
    /// Whether a request may run on the caller's thread when the module's calls are short and
    /// an instance is free, instead of hopping to the instance's worker thread and back
    /// (default `true`). Still one call at a time per instance, under the same deadline; a
    /// module that imports something that waits never does, and one that turns slow goes
    /// back to its worker (`docs/ARCHITECTURE.md`).
    pub inline: bool,
}

impl Default for ModuleConfig {
    fn default() -> ModuleConfig {
        ModuleConfig {
            limits: Limits::default(),
            instances: None,
            inline: true,
            inbox_capacity: 1024,
            grants: Grants::default(),
            kv: KvConfig::default(),
            outbound: None,
        }
    }
}

/// A module's reach into the key-value store. Its own store (namespace: its name) is always
/// there; shared stores need a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvConfig {
    /// Shared stores the module may open by name (`a-z 0-9 - _ .`, at most 64 bytes; other
    /// names never match).
    pub stores: Vec<String>,
    /// Most keys and bytes the module's own store may hold.
    pub quota: state::Quota,
}

/// Resource limits for one module. The defaults suit a small backend feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory in bytes (default 64 MiB). `memory.grow` beyond it returns -1;
    /// a module whose declared minimum exceeds it fails to load.
    pub max_memory_bytes: u64,
    /// Deadline of one `handle` call, allocation and copying included (default 5 s).
    pub handle_deadline: Duration,
    /// Deadline of one `on_message` call, and of one `on_messages` call whatever the number
    /// of messages in it (default 5 s).
    pub message_deadline: Duration,
    /// Most messages one `on_messages` call hands over (default 256); 1 delivers every
    /// message with its own `on_message` call. Only for modules that export `on_messages`.
    pub max_message_batch: usize,
    /// Deadline of `_initialize` + `init` (default 5 s).
    pub init_deadline: Duration,
    /// Deadline of one `drain` call (default 1 s); the drain timeout as a whole is the
    /// caller's.
    pub drain_call_deadline: Duration,
    /// Deadline of one `snapshot` or `restore` call during a hot swap (default 5 s); each
    /// instance's `restore` has its own.
    pub snapshot_deadline: Duration,
    /// Largest state `snapshot` may return (default 16 MiB,
    /// [`binary::DEFAULT_MAX_SNAPSHOT_BYTES`]).
    pub max_snapshot_bytes: usize,
    /// Largest encoded request passed to `handle` (default 16 MiB).
    pub max_request_bytes: usize,
    /// Largest response read back from `handle` (default 16 MiB).
    pub max_response_bytes: usize,
    /// Largest message a module may publish or receive (default 1 MiB).
    pub max_message_bytes: usize,
    /// Most bus subscriptions a module may hold at once (default 1024).
    pub max_subscriptions: usize,
    /// Longest log line kept; longer lines are cut (default 4 KiB).
    pub max_log_line_bytes: usize,
    /// Log lines per second a module may emit before lines are dropped and counted
    /// (default 1000).
    pub log_lines_per_second: u32,
    /// Most outbound HTTP requests (`http_send`) one export call may make (default 100); more
    /// are answered with a `limit` error without being sent.
    pub max_outbound_per_call: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory_bytes: 64 * 1024 * 1024,
            handle_deadline: Duration::from_secs(5),
            message_deadline: Duration::from_secs(5),
            max_message_batch: 256,
            init_deadline: Duration::from_secs(5),
            drain_call_deadline: Duration::from_secs(1),
            snapshot_deadline: Duration::from_secs(5),
            max_snapshot_bytes: binary::DEFAULT_MAX_SNAPSHOT_BYTES,
            max_request_bytes: 16 * 1024 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            max_subscriptions: 1024,
            max_log_line_bytes: 4096,
            log_lines_per_second: 1000,
            max_outbound_per_call: 100,
        }
    }
}

/// Capabilities granted to a module's WASI sandbox. The default grants nothing: no
/// environment variables, no directories, no network. Clocks, random numbers and sleeping
/// always work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables the module sees, as `(name, value)`.
    pub env: Vec<(String, String)>,
    /// Arguments after the program name (`argv[1..]`).
    pub args: Vec<String>,
    /// Host directories the module sees at guest paths (preopened through WASI), confined to
    /// the directory: see [`DirGrant`].
    pub dirs: Vec<DirGrant>,
}

/// One directory grant: the host directory `host` is preopened in the module's WASI sandbox
/// as `guest` (`/assets`). The guest reaches nothing outside it: `..` that climbs out, a
/// symlink whose target leaves it, and any path outside every grant are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Where the guest sees it: `/` and one name (`/assets`), see [`check_guest_dir`].
    pub guest: String,
    /// The host directory (absolute, or relative to the host process's working directory).
    /// It must exist when the module is loaded.
    pub host: PathBuf,
    /// Refuse every write: opening for writing, creating, removing, renaming (default).
    pub read_only: bool,
}

/// Checks a grant's guest path: `/` followed by one name of `A-Z a-z 0-9 - _ .` (not `.` or
/// `..`), at most 64 bytes in all. The reason, when it is not one.
pub fn check_guest_dir(guest: &str) -> Result<(), String> {
    let Some(name) = guest.strip_prefix('/') else {
        return Err(format!("guest path {guest:?} must start with /"));
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!(
            "guest path {guest:?} must name a directory under /"
        ));
    }
    if guest.len() > 64 {
        return Err(format!("guest path {guest:?} is longer than 64 bytes"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "guest path {guest:?} must be / and one name of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}
