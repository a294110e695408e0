//! `StoreError` (a call failed, for one namespace) and `OpenError` (a database file would not open).

use std::io;
use std::path::{Path, PathBuf};

/// A store call failed. Carries the namespace once; the reason is in [`StoreErrorKind`].
///
/// Displays as `store "users": key of 300 bytes exceeds the limit of 256 bytes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store {namespace:?}: {kind}")]
pub struct StoreError {
    namespace: String,
    kind: StoreErrorKind,
}

impl StoreError {
    /// An error of `kind` in the namespace named `namespace`.
    pub fn new(namespace: impl Into<String>, kind: StoreErrorKind) -> StoreError {
        StoreError {
            namespace: namespace.into(),
            kind,
        }
    }

    /// The namespace the call was for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Why the call failed.
    pub fn kind(&self) -> &StoreErrorKind {
        &self.kind
    }
}

/// Why a store call failed.
///
/// Every kind up to [`Overflow`](StoreErrorKind::Overflow) is the caller's doing, found before
/// anything is committed: the call wrote nothing. [`ReadOnly`](StoreErrorKind::ReadOnly) and
/// [`Storage`](StoreErrorKind::Storage) are the host's; the call's writes are all there or all
/// absent, and usually absent, but a commit the disk failed part-way may, as redb documents,
/// already have become durable, so a caller must not assume it was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The key is empty.
    #[error("key is empty")]
    KeyEmpty,
    /// The key is longer than [`Limits::max_key_bytes`](crate::Limits::max_key_bytes).
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The write would take the namespace past [`Quota::max_keys`](crate::Quota::max_keys).
    #[error("write would exceed the namespace's quota of {max} keys")]
    QuotaKeys {
        /// The quota.
        max: u64,
    },
    /// The write would take the namespace past [`Quota::max_bytes`](crate::Quota::max_bytes).
    #[error("write would exceed the namespace's quota of {max} bytes")]
    QuotaBytes {
        /// The quota.
        max: u64,
    },
    /// A list page size outside `1..=`[`Limits::max_page_keys`](crate::Limits::max_page_keys).
    #[error("list limit of {requested} keys is outside 1..={max}")]
    PageLimit {
        /// The limit asked for.
        requested: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A batch longer than [`Limits::max_batch_ops`](crate::Limits::max_batch_ops).
    #[error("batch of {len} operations exceeds the limit of {max}")]
    BatchTooLarge {
        /// The batch's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The namespace name is longer than [`MAX_NAMESPACE_BYTES`](crate::MAX_NAMESPACE_BYTES).
    #[error("namespace name of {len} bytes exceeds the limit of {max} bytes")]
    NamespaceTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The list cursor was not made by a `list` of this namespace and prefix.
    #[error("list cursor does not belong to this namespace and prefix")]
    CursorInvalid,
    /// `increment` found a value that is not ASCII decimal i64 text.
    #[error("value is not a decimal 64-bit integer")]
    NotAnInteger,
    /// `increment` would leave the range of i64.
    #[error("increment overflows a 64-bit integer")]
    Overflow,
    /// The file system refused a write: a read-only file system, a full disk (ENOSPC), a file
    /// size or disk quota limit, or a permission. Reads keep working.
    #[error("storage refused the write: {0}")]
    ReadOnly(String),
    /// Any other I/O or database error.
    #[error("storage error: {0}")]
    Storage(String),
    /// A remote store (see [`RemoteStore`](crate::RemoteStore)) could not be reached or did
    /// not answer within its deadline, or other writers kept winning the namespace's commit
    /// record for longer than the retry budget. A write that failed this way may still have
    /// been committed (its acknowledgement may be what was lost); a read wrote nothing.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreErrorKind {
    /// `ReadOnly` when the file system refused a write, otherwise `Storage`.
    pub(crate) fn from_io(error: &io::Error) -> StoreErrorKind {
        if refuses_writes(error.kind()) {
            StoreErrorKind::ReadOnly(error.to_string())
        } else {
            StoreErrorKind::Storage(error.to_string())
        }
    }
}

/// Whether an I/O error means the file system will not take writes (as opposed to a fault).
pub(crate) fn refuses_writes(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::StorageFull
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge
    )
}

/// A state database would not open. Names the file.
///
/// Displays as `state database "/x/state/modhost.redb" is corrupt or not a redb file: ...`.
#[derive(Debug, thiserror::Error)]
#[error("state database {path:?} {kind}")]
pub struct OpenError {
    path: PathBuf,
    kind: OpenErrorKind,
}

impl OpenError {
    pub(crate) fn new(path: &Path, kind: OpenErrorKind) -> OpenError {
        OpenError {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why it would not open.
    pub fn kind(&self) -> &OpenErrorKind {
        &self.kind
    }
}

/// Why a database file would not open. The file is left as it was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenErrorKind {
    /// The file is not a redb database, or is damaged (truncated, overwritten).
    #[error("is corrupt or not a redb file: {0}")]
    Corrupt(String),
    /// The file was written by a newer modhost (its format version is unknown here).
    #[error("has format version {found}, this build reads version {supported}")]
    UnsupportedFormat {
        /// The file's version.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// Another process (or another `RedbStore` in this one) has the file open.
    #[error("is already open in another process or store")]
    AlreadyOpen,
    /// The file or its directory could not be created, read or written.
    #[error("could not be opened: {0}")]
    Io(#[source] io::Error),
    /// Any other database error.
    #[error("could not be opened: {0}")]
    Storage(String),
}
