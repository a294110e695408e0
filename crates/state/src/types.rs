//! The values the [`Store`](crate::Store) trait takes and returns, and the store's configuration.

/// A module's private key space, with its quota.
///
/// Two namespaces never see each other's keys: the same key in two namespaces is two entries,
/// and listing never crosses a namespace. The name is at most [`MAX_NAMESPACE_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace's name, usually the module's name.
    pub name: String,
    /// How much the namespace may hold; checked inside every write transaction.
    pub quota: Quota,
}

impl Namespace {
    /// A namespace with the default (generous) [`Quota`].
    pub fn new(name: impl Into<String>) -> Namespace {
        Namespace {
            name: name.into(),
            quota: Quota::default(),
        }
    }
}

/// The longest namespace name, in bytes (the name's length is stored in one byte).
pub const MAX_NAMESPACE_BYTES: usize = 255;

/// What one namespace may hold. A write that would take the namespace past either limit is
/// refused and writes nothing; writes that shrink the namespace are always allowed, even above a
/// lowered quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most keys the namespace may hold.
    pub max_keys: u64,
    /// Most bytes the namespace may hold: the sum of the lengths of its keys and values.
    pub max_bytes: u64,
}

impl Default for Quota {
    /// 1,000,000 keys and 1 GiB.
    fn default() -> Quota {
        Quota {
            max_keys: 1_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// A stored value and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The revision of the write that stored this value: what
    /// [`Store::compare_and_swap`](crate::Store::compare_and_swap) compares. Revisions come from
    /// one counter per store, so they strictly increase and are never reused.
    pub revision: u64,
}

/// One page of a [`Store::list`](crate::Store::list).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The keys, in byte order.
    pub keys: Vec<Vec<u8>>,
    /// `Some` when more keys may follow: pass it back to `list` to continue after this page.
    /// Opaque; valid only with the same namespace and prefix.
    pub cursor: Option<Vec<u8>>,
}

/// The result of a [`Store::compare_and_swap`](crate::Store::compare_and_swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expectation held and the write (or delete) happened.
    Swapped {
        /// The entry's new revision; 0 when the swap deleted the key.
        revision: u64,
    },
    /// The expectation failed; nothing was written.
    Conflict {
        /// The key's revision now, `None` when it is absent.
        current: Option<u64>,
    },
}

/// One write of a [`Store::batch`](crate::Store::batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Store `value` under `key`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` (nothing happens when it is absent).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// As [`Store::compare_and_swap`](crate::Store::compare_and_swap); a failed expectation
    /// cancels the whole batch.
    CompareAndSwap {
        /// The key.
        key: Vec<u8>,
        /// `Some(revision)`: the entry must exist with that revision; `None`: it must be absent.
        expected: Option<u64>,
        /// `Some`: write this value; `None`: delete the key.
        value: Option<Vec<u8>>,
    },
}

/// The result of a [`Store::batch`](crate::Store::batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every operation was applied, in one transaction.
    Applied,
    /// The compare-and-swap at `index` failed; nothing was written.
    Conflict {
        /// The failed operation's index in the batch.
        index: u32,
        /// The key's revision at that point of the batch, `None` when absent.
        current: Option<u64>,
    },
}

/// What a namespace holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Number of keys.
    pub keys: u64,
    /// Sum of the lengths of the keys and their values.
    pub bytes: u64,
}

/// Per-call size limits, the same for every namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (256).
    pub max_key_bytes: usize,
    /// Largest value, in bytes (1 MiB).
    pub max_value_bytes: usize,
    /// Most keys one [`Store::list`](crate::Store::list) page may ask for (1000).
    pub max_page_keys: u32,
    /// Most operations in one [`Store::batch`](crate::Store::batch) (1000).
    pub max_batch_ops: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key_bytes: 256,
            max_value_bytes: 1 << 20,
            max_page_keys: 1000,
            max_batch_ops: 1000,
        }
    }
}

/// When a write reaches the disk, relative to the call returning ([`RedbStore`](crate::RedbStore)
/// only; a [`MemoryStore`](crate::MemoryStore) keeps nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write transaction is fsync'd before the call returns: an acknowledged write
    /// survives a process crash and a power loss.
    #[default]
    Immediate,
    /// Every write is committed (atomic, and seen by every later call on this store) but not
    /// fsync'd: redb 4's `Durability::None`. redb keeps such commits out of the file's header
    /// until a durable commit, so they become durable only at the next durable commit, which
    /// `RedbStore` makes on the first write at least [`EVENTUAL_FLUSH_INTERVAL`] after the last
    /// one, on [`RedbStore::flush`](crate::RedbStore::flush) and when the store is dropped.
    /// A process crash or power loss loses the writes since the last durable commit (however
    /// old, if writing stopped); the file reopens at that commit, consistent, never torn.
    Eventual,
}

/// With [`Durability::Eventual`], a write at least this long after the last durable commit is
/// committed durably, taking every earlier write with it.
pub const EVENTUAL_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How a store behaves; `Config::default()` is the production setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Size limits of keys, values, pages and batches.
    pub limits: Limits,
    /// When writes reach the disk.
    pub durability: Durability,
    /// Most memory the [`RedbStore`](crate::RedbStore) keeps for pages it has read or written
    /// (default [`DEFAULT_CACHE_BYTES`]). Pages beyond it are read from the file (and the
    /// kernel's page cache) again. Without a bound, redb keeps every page it touches up to
    /// 1 GiB, so a growing table grows the process by its own size.
    pub cache_bytes: usize,
}

/// The default [`Config::cache_bytes`]: 32 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            durability: Durability::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}
