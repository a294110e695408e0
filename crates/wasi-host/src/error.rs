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
    /// The module's declared memory doesn't fit the limit.
    #[error("module \"{module}\": memory over limit: {reason}")]
    MemoryOverLimit {
        /// Module name.
        module: String,
        /// Details.
        reason: String,
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

/// Why one call into a module failed. Every message names the module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The guest trapped (unreachable, a Rust panic, out-of-bounds access, stack overflow).
    /// The instance is replaced by a fresh one.
    #[error(
        "module \"{module}\": {export} trapped: {message}{}",
        backtrace_suffix(backtrace)
    )]
    Trap {
        /// Module name.
        module: String,
        /// The export that was running.
        export: &'static str,
        /// The trap's message.
        message: String,
        /// The guest's frames, innermost first, one per line.
        backtrace: String,
    },
    /// The call ran past its deadline and was interrupted. The instance is replaced.
    #[error("module \"{module}\": {export} exceeded its deadline of {deadline:?}")]
    Deadline {
        /// Module name.
        module: String,
        /// The export that was running.
        export: &'static str,
        /// The deadline it had.
        deadline: Duration,
    },
    /// The guest passed a pointer/length outside its memory to an import or returned one.
    #[error("module \"{module}\": bad pointer in {place}: {detail}")]
    BadPointer {
        /// Module name.
        module: String,
        /// The import or export involved, e.g. `import "publish"`.
        place: String,
        /// Offsets and sizes.
        detail: String,
    },
    /// The guest returned bytes that don't decode, or broke the ABI another way.
    #[error("module \"{module}\": {export} broke the ABI: {detail}")]
    Abi {
        /// Module name.
        module: String,
        /// The export involved.
        export: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The request or message is larger than the module's limit.
    #[error("module \"{module}\": {what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Module name.
        module: String,
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The module has no export for this kind of call (e.g. no `handle`).
    #[error("module \"{module}\": no \"{export}\" export")]
    NotExported {
        /// Module name.
        module: String,
        /// The missing export.
        export: &'static str,
    },
    /// The inbox is full; try again later.
    #[error("module \"{module}\": overloaded ({capacity} jobs waiting)")]
    Overloaded {
        /// Module name.
        module: String,
        /// The inbox capacity.
        capacity: usize,
    },
    /// The module version was closed; the call never ran.
    #[error("module \"{module}\": version is closed")]
    Closed {
        /// Module name.
        module: String,
    },
    /// No instance is left to run the call (replacement after a failure failed too).
    #[error("module \"{module}\": instance gone: {reason}")]
    InstanceGone {
        /// Module name.
        module: String,
        /// Why.
        reason: String,
    },
}

fn backtrace_suffix(backtrace: &str) -> String {
    if backtrace.is_empty() {
        String::new()
    } else {
        format!("\n{backtrace}")
    }
}

impl CallError {
    /// The module the call was for.
    pub fn module(&self) -> &str {
        match self {
            CallError::Trap { module, .. }
            | CallError::Deadline { module, .. }
            | CallError::BadPointer { module, .. }
            | CallError::Abi { module, .. }
            | CallError::TooLarge { module, .. }
            | CallError::NotExported { module, .. }
            | CallError::Overloaded { module, .. }
            | CallError::Closed { module }
            | CallError::InstanceGone { module, .. } => module,
        }
    }

    /// Whether the guest is to blame and the instance was (or will be) replaced.
    pub fn replaces_instance(&self) -> bool {
        matches!(
            self,
            CallError::Trap { .. } | CallError::Deadline { .. } | CallError::BadPointer { .. }
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
    #[error("trapped: {message}{}", backtrace_suffix(backtrace))]
    Trap {
        /// The trap's message.
        message: String,
        /// The guest's frames, innermost first.
        backtrace: String,
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
        let kind = match error {
            CallError::Trap {
                message, backtrace, ..
            } => SnapshotErrorKind::Trap { message, backtrace },
            CallError::Deadline { deadline, .. } => SnapshotErrorKind::Deadline { deadline },
            CallError::BadPointer { place, detail, .. } => SnapshotErrorKind::Abi {
                detail: format!("bad pointer in {place}: {detail}"),
            },
            CallError::Abi { detail, .. } => SnapshotErrorKind::Abi { detail },
            CallError::TooLarge { size, limit, .. } => SnapshotErrorKind::TooLarge { size, limit },
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
