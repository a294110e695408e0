//! The server's typed errors: [`ReloadError`] when a reload of a module fails (the version
//! serving before keeps serving), and [`HandoffError`] when a swap that hands the in-memory
//! state over fails part way.

use std::path::PathBuf;
use std::time::Duration;

use wasi_host::{CallError, LoadError, SnapshotError};

/// Why [`crate::ServerHandle::reload`] (and the dist watcher, and `POST /_admin/reload/NAME`)
/// refused a new version of a module. Every message names the module; whatever served before
/// keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The name is not a module name (`[a-z0-9_-]`, 1 to 64 characters, not starting with
    /// `-`).
    #[error("invalid module name {name:?}")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A path given as a module file is not `<dist>/<name>.wasm`.
    #[error("{} is not a module file", path.display())]
    NotAModuleFile {
        /// The path given.
        path: PathBuf,
    },
    /// The module file could not be read.
    #[error("module \"{module}\": reading {}: {source}", path.display())]
    Read {
        /// Module name.
        module: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The new version did not load: invalid wasm, a missing export, a trapping `init`, a
    /// grant that can't be honoured (the message names the module).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new version's bus subscriptions could not be made live.
    #[error("module \"{module}\": subscriptions: {source}")]
    Subscriptions {
        /// Module name.
        module: String,
        /// The bus's refusal.
        #[source]
        source: bus::BusError,
    },
    /// The swap handing the in-memory state over failed; the old version keeps serving with
    /// its state.
    #[error("module \"{module}\": state handoff failed: {source}")]
    Handoff {
        /// Module name.
        module: String,
        /// The step that failed.
        #[source]
        source: HandoffError,
    },
    /// The task loading the module panicked or was cancelled.
    #[error("module \"{module}\": loader task failed: {reason}")]
    Task {
        /// Module name.
        module: String,
        /// The join error.
        reason: String,
    },
}

impl ReloadError {
    /// The module the reload was for, when the error names one.
    pub fn module(&self) -> Option<&str> {
        match self {
            ReloadError::InvalidName { .. } | ReloadError::NotAModuleFile { .. } => None,
            ReloadError::Load(error) => Some(error.module()),
            ReloadError::Read { module, .. }
            | ReloadError::Subscriptions { module, .. }
            | ReloadError::Handoff { module, .. }
            | ReloadError::Task { module, .. } => Some(module),
        }
    }
}

/// The step of a swap with a state handoff that failed (`docs/ABI.md`, "Snapshot and
/// restore"). Nothing has moved when it is returned: routing and the bus still point at the
/// old version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoffError {
    /// A version could not be paused (an instance did not acknowledge).
    #[error("pausing the {which} version: {source}")]
    Pause {
        /// `"old"` or `"new"`.
        which: &'static str,
        /// Why.
        #[source]
        source: CallError,
    },
    /// The old version still had work when the drain timeout passed.
    #[error(
        "the old version did not finish draining within {timeout:?} ({unfinished} of \
         {instances} instances unfinished)"
    )]
    NotDrained {
        /// The drain timeout.
        timeout: Duration,
        /// Instances that did not finish.
        unfinished: usize,
        /// Instances in all.
        instances: usize,
    },
    /// The old version's `snapshot` failed.
    #[error(transparent)]
    Snapshot(SnapshotError),
    /// The new version's `restore` failed or refused the state.
    #[error(transparent)]
    Restore(SnapshotError),
    /// The handoff took longer than the module's hold timeout.
    #[error("the handoff held requests for {held:?}, over the hold timeout of {timeout:?}")]
    HoldTimeout {
        /// How long requests were held.
        held: Duration,
        /// The hold timeout.
        timeout: Duration,
    },
    /// The bus subscriptions could not be moved to the new version.
    #[error("moving subscriptions: {0}")]
    Subscriptions(#[source] bus::BusError),
    /// The blocking task running the handoff panicked or was cancelled.
    #[error("the handoff task failed: {0}")]
    Task(String),
}
