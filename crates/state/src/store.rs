//! The `Store` trait: what a module's key-value store offers, whatever the backend.

use crate::error::StoreError;
use crate::stats::StoreStats;
use crate::types::{BatchOutcome, CasOutcome, Entry, Namespace, Page, Usage, WriteOp};

/// A durable key-value store, partitioned into [`Namespace`]s.
///
/// Keys are non-empty byte strings of at most [`Limits::max_key_bytes`](crate::Limits) (any
/// bytes; UTF-8 is not required). Every write gets a revision from one counter per store, so
/// revisions strictly increase and are never reused, even after a delete; compare-and-swap
/// compares them. Every call is one transaction: `increment`, `compare_and_swap` and `batch`
/// read and write under one write transaction, so they are atomic however many threads call.
/// A failed call writes nothing.
///
/// ```
/// use state::{CasOutcome, MemoryStore, Namespace, Store};
///
/// let store = MemoryStore::default();
/// let users = Namespace::new("users");
/// let revision = store.set(&users, b"alice", b"admin")?;
/// // Only the writer who saw `revision` may replace it.
/// let outcome = store.compare_and_swap(&users, b"alice", Some(revision), Some(b"owner"))?;
/// assert!(matches!(outcome, CasOutcome::Swapped { .. }));
/// let stale = store.compare_and_swap(&users, b"alice", Some(revision), None)?;
/// assert!(matches!(stale, CasOutcome::Conflict { current: Some(_) }));
/// assert_eq!(store.list(&users, b"a", None, 10)?.keys, vec![b"alice".to_vec()]);
/// # Ok::<(), state::StoreError>(())
/// ```
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The key's value and revision, `None` when absent.
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Stores `value` under `key`. Returns the entry's new revision.
    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8]) -> Result<u64, StoreError>;

    /// Removes `key`. `true` = a key was removed.
    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, StoreError>;

    /// Whether `key` is present.
    fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool, StoreError>;

    /// Keys starting with `prefix`, in byte order, after `cursor` (exclusive) when given, at
    /// most `limit` (1..=[`Limits::max_page_keys`](crate::Limits), else an error).
    ///
    /// The cursor comes from the previous [`Page`] of the same namespace and prefix (another
    /// one is [`CursorInvalid`](crate::StoreErrorKind::CursorInvalid)); if its key was deleted
    /// since, listing simply continues after it. A prefix longer than the longest key is
    /// [`KeyTooLong`](crate::StoreErrorKind::KeyTooLong).
    fn list(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<Page, StoreError>;

    /// Atomic add; a missing key counts as 0; the value is stored as ASCII decimal i64 text (so
    /// `get` reads `"42"`). A non-integer value is
    /// [`NotAnInteger`](crate::StoreErrorKind::NotAnInteger), leaving the i64 range is
    /// [`Overflow`](crate::StoreErrorKind::Overflow). Returns the new value.
    fn increment(&self, ns: &Namespace, key: &[u8], delta: i64) -> Result<i64, StoreError>;

    /// `expected`: `Some(rev)` = the entry must exist with that revision; `None` = the key must
    /// be absent. `value`: `Some` = write, `None` = delete.
    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &[u8],
        expected: Option<u64>,
        value: Option<&[u8]>,
    ) -> Result<CasOutcome, StoreError>;

    /// All ops in one atomic transaction, applied in order (a compare-and-swap sees the earlier
    /// ops of the batch); if any `CompareAndSwap` op's expectation fails, nothing is written.
    /// The quota is checked against the batch's net effect.
    fn batch(&self, ns: &Namespace, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError>;

    /// What the namespace holds now.
    fn usage(&self, ns: &Namespace) -> Result<Usage, StoreError>;

    /// Counters and the commit-latency histogram, for metrics.
    fn stats(&self) -> StoreStats;
}
