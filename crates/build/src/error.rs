//! [`Error`]: what stops the build library as a whole (a module's own failure is a
//! [`crate::Outcome::Failed`], not an error).

use std::path::PathBuf;

/// A failure of the library itself: the modules directory can't be read, the watcher can't be
/// set up, a requested module doesn't exist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file or directory failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done: `"reading"`, `"writing"`, ...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file watcher failed.
    #[error("watching {}: {source}", path.display())]
    Watch {
        /// The directory being watched.
        path: PathBuf,
        /// The cause.
        source: notify_debouncer_full::notify::Error,
    },
    /// A module asked for by name doesn't exist.
    #[error("no module named {name:?} in {} (found: {})", dir.display(), known.join(", "))]
    UnknownModule {
        /// The name asked for.
        name: String,
        /// The modules directory.
        dir: PathBuf,
        /// The modules that do exist.
        known: Vec<String>,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
