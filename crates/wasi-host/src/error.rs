//! Typed errors: [`LoadError`] when a module can't be loaded, [`CallError`] when one call into
//! it fails. A guest's own failure (a trap, a bad pointer it handed over, a deadline it blew)
//! is kept apart from a host failure.

use std::time::Duration;

/// Why a module could not be loaded. Every message names the module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly module.
    #[error("module \"{module}\": invalid wasm: {reason}")]
    InvalidWasm {
        /// Module name.
        module: String,
        /// The validator's or compiler's words.
        reason: String,
    },
    /// An export we call has the wrong type.
    #[error("module \"{module}\": export \"{export}\" has type {found}, expected {expected}")]
    ExportSignature {
        /// Module name.
        module: String,
        /// Export name.
        export: String,
        /// Its type, e.g. `(i32) -> i32`.
        found: String,
        /// The type the ABI requires.
        expected: String,
    },
    /// An export the ABI needs is missing.
    #[error("module \"{module}\": missing export \"{export}\": {why}")]
    MissingExport {
        /// Module name.
        module: String,
        /// Export name.
        export: String,
        /// What needs it.
        why: &'static str,
    },
    /// The module imports something the host does not provide.
    #[error("module \"{module}\": unknown import \"{namespace}\".\"{name}\" of type {ty}")]
    UnknownImport {
        /// Module name.
        module: String,
        /// Import namespace.
        namespace: String,
        /// Import name.
        name: String,
        /// Its type.
        ty: String,
    },
    /// `modhost_abi_version` returned a version this host does not speak.
    #[error(
        "module \"{module}\": ABI version {version} is not supported (this host speaks 0 and 1)"
    )]
    UnsupportedAbi {
        /// Module name.
        module: String,
        /// The version the module reported.
        version: i32,
    },
    /// The module's memory declares a minimum above the module's memory limit.
    #[error(
        "module \"{module}\": memory over limit: declared minimum of {declared_pages} pages \
         ({} bytes) exceeds the limit of {limit_pages} pages ({} bytes)",
        u64::from(*declared_pages) * 65536,
        u64::from(*limit_pages) * 65536
    )]
    MemoryOverLimit {
        /// Module name.
        module: String,
        /// The minimum the module declares, in 64 KiB pages.
        declared_pages: u32,
        /// The limit, in 64 KiB pages.
        limit_pages: u32,
    },
    /// Instantiation failed (linking, memory creation, a trapping start function).
    #[error("module \"{module}\": instantiation failed: {reason}")]
    Instantiate {
        /// Module name.
        module: String,
        /// Details.
        reason: String,
    },
    /// `_initialize` or `init` failed.
    #[error("module \"{module}\": init failed: {source}")]
    Init {
        /// Module name.
        module: String,
        /// The failed call.
        #[source]
        source: CallError,
    },
    /// A capability grant can't be honoured.
    #[error("module \"{module}\": grant refused: {reason}")]
    Grant {
        /// Module name.
        module: String,
        /// Details.
        reason: String,
    },
    /// The host itself failed (threads, the WASI environment).
    #[error("module \"{module}\": host failure: {reason}")]
    Host {
        /// Module name.
        module: String,
        /// Details.
        reason: String,
    },
}

impl LoadError {
    /// The module that could not be loaded.
    pub fn module(&self) -> &str {
        match self {
            LoadError::InvalidWasm { module, .. }
            | LoadError::ExportSignature { module, .. }
            | LoadError::MissingExport { module, .. }
            | LoadError::UnknownImport { module, .. }
            | LoadError::UnsupportedAbi { module, .. }
            | LoadError::MemoryOverLimit { module, .. }
            | LoadError::Instantiate { module, .. }
            | LoadError::Init { module, .. }
            | LoadError::Grant { module, .. }
            | LoadError::Host { module, .. } => module,
        }
    }
}

/// Why one call into a module failed: the module, the export that was running (or was to
/// run), and what went wrong.
///
/// Displays on one line, like `module "users": handle: trapped: unreachable`; a trap's guest
/// backtrace is data ([`CallError::backtrace`]), not part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module \"{module}\": {export}: {kind}")]
pub struct CallError {
    /// Module name.
    pub module: String,
    /// The export the call was for: `"handle"`, `"on_message"`, `"init"`, `"drain"`, ...
    pub export: &'static str,
    /// What went wrong.
    pub kind: CallErrorKind,
}

/// The ways one call into a module fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The guest trapped (unreachable, a Rust panic, out-of-bounds access, stack overflow).
    /// The instance is replaced by a fresh one.
    #[error("trapped: {message}")]
    Trap {
        /// The trap's message.
        message: String,
        /// The guest's frames, innermost first.
        backtrace: Vec<Frame>,
    },
    /// The call ran past its deadline and was interrupted. The instance is replaced.
    #[error("exceeded its deadline of {deadline:?}")]
    Deadline {
        /// The deadline it had.
        deadline: Duration,
    },
    /// The guest passed a pointer/length outside its memory to an import or returned one.
    #[error("bad pointer in {place}: {detail}")]
    BadPointer {
        /// The import or export involved, e.g. `import "publish"`.
        place: String,
        /// Offsets and sizes.
        detail: String,
    },
    /// The guest returned bytes that don't decode, or broke the ABI another way.
    #[error("broke the ABI: {detail}")]
    Abi {
        /// What was wrong.
        detail: String,
    },
    /// The request or message is larger than the module's limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The module lacks an export the call needs (no `handle`, no `alloc`).
    #[error("no \"{name}\" export")]
    NotExported {
        /// The missing export.
        name: &'static str,
    },
    /// The inbox is full; try again later.
    #[error("overloaded ({capacity} jobs waiting)")]
    Overloaded {
        /// The inbox capacity.
        capacity: usize,
    },
    /// The module version was closed; the call never ran.
    #[error("version is closed")]
    Closed,
    /// No instance is left to run the call (replacement after a failure failed too).
    #[error("instance gone: {reason}")]
    InstanceGone {
        /// Why.
        reason: String,
    },
}

/// A host import's refusal of the running call (a bad pointer, say), carried through wasmer
/// as a `RuntimeError::user` and made into a [`CallError`] naming the module and the export by
/// the call that was running.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ImportFault(pub CallErrorKind);

/// One frame of a guest backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The function's name from the module's name section, or `func[N]`.
    pub function: String,
    /// The module's name as the engine knows it.
    pub module: String,
    /// The offset of the instruction in the module's code.
    pub offset: usize,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {} ({}+{:#x})",
            self.function, self.module, self.offset
        )
    }
}

impl CallError {
    /// A failed call of `export` in `module`.
    pub fn new(module: impl Into<String>, export: &'static str, kind: CallErrorKind) -> CallError {
        CallError {
            module: module.into(),
            export,
            kind,
        }
    }

    /// The module the call was for.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The guest's frames when the call trapped, innermost first; empty otherwise.
    pub fn backtrace(&self) -> &[Frame] {
        match &self.kind {
            CallErrorKind::Trap { backtrace, .. } => backtrace,
            _ => &[],
        }
    }

    /// Whether the guest is to blame and the instance was (or will be) replaced.
    pub fn replaces_instance(&self) -> bool {
        matches!(
            self.kind,
            CallErrorKind::Trap { .. }
                | CallErrorKind::Deadline { .. }
                | CallErrorKind::BadPointer { .. }
        )
    }
}

/// Why handing a module's in-memory state from one version to the next failed: the old
/// version's `snapshot`, or the new version's `restore` (`docs/ABI.md`). Names the module
/// once and the export that failed; the details are in [`SnapshotErrorKind`].
///
/// Displays like `module "counter": restore refused the state (returned 3)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module \"{module}\": {export} {kind}")]
pub struct SnapshotError {
    /// Module name.
    pub module: String,
    /// The export that failed: `"snapshot"` or `"restore"`.
    pub export: &'static str,
    /// What went wrong.
    pub kind: SnapshotErrorKind,
}

/// The ways a snapshot or a restore fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotErrorKind {
    /// The export trapped. The instance is replaced, as after any trap.
    #[error("trapped: {message}")]
    Trap {
        /// The trap's message.
        message: String,
        /// The guest's frames, innermost first.
        backtrace: Vec<Frame>,
    },
    /// The export ran past its deadline ([`crate::Limits::snapshot_deadline`]).
    #[error("exceeded its deadline of {deadline:?}")]
    Deadline {
        /// The deadline it had.
        deadline: Duration,
    },
    /// `snapshot` returned a negative value: the guest could not produce its state.
    #[error("returned error code {code}")]
    Failed {
        /// The value it returned.
        code: i64,
    },
    /// `restore` returned non-zero: the new version does not accept the state.
    #[error("refused the state (returned {code})")]
    Refused {
        /// The value it returned.
        code: i32,
    },
    /// A pointer or length outside guest memory, or another ABI breach.
    #[error("broke the ABI: {detail}")]
    Abi {
        /// What was wrong.
        detail: String,
    },
    /// The state is larger than [`crate::Limits::max_snapshot_bytes`].
    #[error("state of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The snapshot envelope handed to `restore` does not decode or check.
    #[error("got an invalid snapshot envelope: {0}")]
    Envelope(binary::DecodeError),
    /// The snapshot envelope was taken from another module.
    #[error("got the state of module \"{found}\"")]
    OtherModule {
        /// The module named in the envelope.
        found: String,
    },
    /// The call could not run: no such export, the version is closed, no live instance.
    #[error("could not run: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl SnapshotError {
    /// Whether the guest broke its part (trapped, blew the deadline, broke the ABI), as
    /// opposed to declining (`Failed`, `Refused`) or the host refusing the input.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self.kind,
            SnapshotErrorKind::Trap { .. }
                | SnapshotErrorKind::Deadline { .. }
                | SnapshotErrorKind::Abi { .. }
        )
    }

    /// Classifies a failed guarded call of `export`.
    pub(crate) fn from_call(module: &str, export: &'static str, error: CallError) -> SnapshotError {
        let kind = match error.kind {
            CallErrorKind::Trap { message, backtrace } => {
                SnapshotErrorKind::Trap { message, backtrace }
            }
            CallErrorKind::Deadline { deadline } => SnapshotErrorKind::Deadline { deadline },
            CallErrorKind::BadPointer { place, detail } => SnapshotErrorKind::Abi {
                detail: format!("bad pointer in {place}: {detail}"),
            },
            CallErrorKind::Abi { detail } => SnapshotErrorKind::Abi { detail },
            CallErrorKind::TooLarge { size, limit, .. } => {
                SnapshotErrorKind::TooLarge { size, limit }
            }
            other => SnapshotErrorKind::Unavailable {
                reason: other.to_string(),
            },
        };
        SnapshotError {
            module: module.to_owned(),
            export,
            kind,
        }
    }
}
