//! Durable key-value state: [`get`], [`set`], [`delete`], [`exists`], [`list`],
//! [`increment`], [`compare_and_swap`] and [`Batch`], on the module's own store or on a
//! shared [`Store`] it has been granted.
//!
//! Everything a module keeps here outlives the instance: a hot swap, a trap, a restart of the
//! server, and every instance of a pool see the same keys. Each call is one host round trip
//! (the `kv` import, `docs/ABI.md`); by default a write is on disk before it returns.
//!
//! ```
//! use guest::kv;
//!
//! let id = kv::increment("next_id", 1)?;
//! let key = format!("user/{id}");
//! kv::set(&key, "ada")?;
//! assert_eq!(kv::get(&key)?.as_deref(), Some(&b"ada"[..]));
//!
//! // Create-if-absent: only one of two racing writers wins.
//! let email = "email/ada@example.org";
//! assert!(kv::compare_and_swap(email, None, Some(key.as_bytes()))?.swapped());
//! assert!(!kv::compare_and_swap(email, None, Some(b"user/8"))?.swapped());
//!
//! // All or nothing:
//! let outcome = kv::Batch::new()
//!     .create("email/bob@example.org", "user/9")
//!     .set("user/9", "bob")
//!     .commit()?;
//! assert!(outcome.applied());
//! assert_eq!(kv::list("user/", None, 100)?.keys, ["user/1", "user/9"]);
//! # Ok::<(), guest::Error>(())
//! ```
//!
//! In `cargo test` (every target but `wasm32`) the calls go to an in-memory store per test
//! thread with the host's limits; [`crate::testing::reset`] empties it.

use binary::{Envelope, KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite};

use crate::error::{Error, ErrorKind};

/// A key's value and revision. The revision changes on every write of the key; pass it to
/// [`compare_and_swap`] to write only if nobody else has since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The entry's revision (positive).
    pub revision: u64,
}

/// One page of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Keys in byte order (keys that are not UTF-8 are shown lossily).
    pub keys: Vec<String>,
    /// Pass it to the next [`list`] call for the next page; `None` after the last.
    pub cursor: Option<Vec<u8>>,
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// The write happened; the entry's new revision (0 when it deleted).
    Swapped(u64),
    /// The entry's revision was not the expected one (`None`: the key does not exist);
    /// nothing was written.
    Conflict(Option<u64>),
}

impl Cas {
    /// Whether the write happened.
    pub fn swapped(self) -> bool {
        matches!(self, Cas::Swapped(_))
    }
}

/// What a [`Batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every write happened.
    Applied,
    /// Write `index` was a compare-and-swap whose expectation failed (the key's revision is
    /// `current`); nothing was written.
    Conflict {
        /// Which write.
        index: u32,
        /// The key's revision now (`None`: absent).
        current: Option<u64>,
    },
}

impl BatchOutcome {
    /// Whether the batch was written.
    pub fn applied(self) -> bool {
        matches!(self, BatchOutcome::Applied)
    }
}

/// A key-value store: the module's own ([`Store::own`], what the free functions use) or a
/// shared one it was granted in the server's configuration (`stores = ["sessions"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    name: String,
}

impl Store {
    /// The module's own store: no other module sees its keys.
    pub fn own() -> Store {
        Store {
            name: String::new(),
        }
    }

    /// The shared store `name`. Opening is free; without a grant every call fails with
    /// [`KvErrorKind::Denied`].
    pub fn shared(name: impl Into<String>) -> Store {
        Store { name: name.into() }
    }

    /// The value at `key`, or `None`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get_entry(key)?.map(|entry| entry.value))
    }

    /// The value and revision at `key`, or `None`.
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry>, Error> {
        match self.call(key, KvOp::Get { key: key.into() })? {
            KvResponse::Entry { value, revision } => Ok(Some(Entry { value, revision })),
            KvResponse::Missing => Ok(None),
            other => Err(unexpected("get", key, other)),
        }
    }

    /// Writes `value` at `key`; returns the new revision.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<u64, Error> {
        let op = KvOp::Set {
            key: key.into(),
            value: value.as_ref().to_vec(),
        };
        match self.call(key, op)? {
            KvResponse::Revision { revision } => Ok(revision),
            other => Err(unexpected("set", key, other)),
        }
    }

    /// Removes `key`; `true` if it existed.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.bool("delete", key, KvOp::Delete { key: key.into() })
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.bool("exists", key, KvOp::Exists { key: key.into() })
    }

    /// Up to `limit` keys starting with `prefix`, after `cursor` (the previous page's).
    pub fn list(&self, prefix: &str, cursor: Option<&[u8]>, limit: u32) -> Result<Page, Error> {
        let op = KvOp::List {
            prefix: prefix.into(),
            cursor: cursor.unwrap_or_default().to_vec(),
            limit,
        };
        match self.call(prefix, op)? {
            KvResponse::Keys { keys, cursor } => Ok(Page {
                keys: keys
                    .into_iter()
                    .map(|key| String::from_utf8_lossy(&key).into_owned())
                    .collect(),
                cursor: (!cursor.is_empty()).then_some(cursor),
            }),
            other => Err(unexpected("list", prefix, other)),
        }
    }

    /// Every key starting with `prefix`, page by page (1,000 at a time).
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(prefix, cursor.as_deref(), 1000)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the decimal integer at `key` (missing = 0) atomically; returns the
    /// new value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let op = KvOp::Increment {
            key: key.into(),
            delta,
        };
        match self.call(key, op)? {
            KvResponse::Integer { value } => Ok(value),
            other => Err(unexpected("increment", key, other)),
        }
    }

    /// Writes `value` (or deletes, for `None`) only if the entry's revision is `expected`
    /// (`None`: only if the key does not exist).
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Option<&[u8]>,
    ) -> Result<Cas, Error> {
        let op = KvOp::CompareAndSwap {
            key: key.into(),
            expected: expected.unwrap_or(0),
            value: value.map(<[u8]>::to_vec),
        };
        match self.call(key, op)? {
            KvResponse::Revision { revision } => Ok(Cas::Swapped(revision)),
            KvResponse::Conflict { current, .. } => Ok(Cas::Conflict(revision(current))),
            other => Err(unexpected("cas", key, other)),
        }
    }

    /// Applies `batch` to this store.
    pub fn commit(&self, batch: Batch) -> Result<BatchOutcome, Error> {
        let label = batch.first_key.clone();
        match self.call(
            &label,
            KvOp::Batch {
                writes: batch.writes,
            },
        )? {
            KvResponse::Applied => Ok(BatchOutcome::Applied),
            KvResponse::Conflict { index, current } => Ok(BatchOutcome::Conflict {
                index,
                current: revision(current),
            }),
            other => Err(unexpected("batch", &label, other)),
        }
    }

    fn bool(&self, call: &'static str, key: &str, op: KvOp) -> Result<bool, Error> {
        match self.call(key, op)? {
            KvResponse::Bool { value } => Ok(value),
            other => Err(unexpected(call, key, other)),
        }
    }

    fn call(&self, key: &str, op: KvOp) -> Result<KvResponse, Error> {
        let call = call_name(&op);
        let request = KvRequest {
            store: self.name.clone(),
            op,
        };
        let bytes = crate::sys::kv(&request.encode())
            .map_err(|code| Error::new(call, key, ErrorKind::from_code(code)))?;
        match KvResponse::decode(&bytes) {
            Ok(KvResponse::Error { kind, message }) => {
                Err(Error::new(call, key, ErrorKind::Kv { kind, message }))
            }
            Ok(response) => Ok(response),
            Err(error) => Err(Error::new(call, key, ErrorKind::BadReply(error))),
        }
    }
}

fn revision(wire: u64) -> Option<u64> {
    (wire != 0).then_some(wire)
}

fn call_name(op: &KvOp) -> &'static str {
    match op {
        KvOp::Get { .. } => "kv get",
        KvOp::Set { .. } => "kv set",
        KvOp::Delete { .. } => "kv delete",
        KvOp::Exists { .. } => "kv exists",
        KvOp::List { .. } => "kv list",
        KvOp::Increment { .. } => "kv increment",
        KvOp::CompareAndSwap { .. } => "kv cas",
        KvOp::Batch { .. } => "kv batch",
    }
}

fn unexpected(call: &'static str, key: &str, response: KvResponse) -> Error {
    Error::new(
        call,
        key,
        ErrorKind::Kv {
            kind: KvErrorKind::Other,
            message: format!("unexpected answer from the host: {response:?}"),
        },
    )
}

/// Writes applied together, atomically: all of them, or — when a compare-and-swap's
/// expectation fails — none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    writes: Vec<KvWrite>,
    first_key: String,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    fn push(mut self, key: &str, write: KvWrite) -> Batch {
        if self.writes.is_empty() {
            self.first_key = key.to_owned();
        }
        self.writes.push(write);
        self
    }

    /// Writes `value` at `key`.
    pub fn set(self, key: &str, value: impl AsRef<[u8]>) -> Batch {
        let write = KvWrite::Set {
            key: key.into(),
            value: value.as_ref().to_vec(),
        };
        self.push(key, write)
    }

    /// Removes `key` (a missing key is not an error).
    pub fn delete(self, key: &str) -> Batch {
        self.push(key, KvWrite::Delete { key: key.into() })
    }

    /// Writes `value` at `key` only if the key does not exist yet.
    pub fn create(self, key: &str, value: impl AsRef<[u8]>) -> Batch {
        self.compare_and_swap(key, None, Some(value.as_ref()))
    }

    /// Writes (or deletes, for `None`) only if the entry's revision is `expected` (`None`:
    /// only if absent).
    pub fn compare_and_swap(self, key: &str, expected: Option<u64>, value: Option<&[u8]>) -> Batch {
        let write = KvWrite::CompareAndSwap {
            key: key.into(),
            expected: expected.unwrap_or(0),
            value: value.map(<[u8]>::to_vec),
        };
        self.push(key, write)
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies it to the module's own store.
    pub fn commit(self) -> Result<BatchOutcome, Error> {
        Store::own().commit(self)
    }
}

/// The value at `key` in the module's own store.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Store::own().get(key)
}

/// The value and revision at `key` in the module's own store.
pub fn get_entry(key: &str) -> Result<Option<Entry>, Error> {
    Store::own().get_entry(key)
}

/// Writes `value` at `key` in the module's own store; returns the new revision.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<u64, Error> {
    Store::own().set(key, value)
}

/// Removes `key` from the module's own store; `true` if it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Store::own().delete(key)
}

/// Whether `key` exists in the module's own store.
pub fn exists(key: &str) -> Result<bool, Error> {
    Store::own().exists(key)
}

/// One page of keys starting with `prefix` in the module's own store.
pub fn list(prefix: &str, cursor: Option<&[u8]>, limit: u32) -> Result<Page, Error> {
    Store::own().list(prefix, cursor, limit)
}

/// Every key starting with `prefix` in the module's own store.
pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
    Store::own().keys(prefix)
}

/// Adds `delta` to the integer at `key` in the module's own store; returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    Store::own().increment(key, delta)
}

/// Compare-and-swap in the module's own store (see [`Store::compare_and_swap`]).
pub fn compare_and_swap(
    key: &str,
    expected: Option<u64>,
    value: Option<&[u8]>,
) -> Result<Cas, Error> {
    Store::own().compare_and_swap(key, expected, value)
}

/// The JSON value at `key` in the module's own store, or `None`.
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            Error::new(
                "kv get",
                key,
                ErrorKind::Kv {
                    kind: KvErrorKind::Other,
                    message: format!("the stored value is not the expected JSON: {error}"),
                },
            )
        }),
        None => Ok(None),
    }
}

/// Stores `value` as JSON at `key` in the module's own store; returns the new revision.
#[cfg(feature = "json")]
pub fn set_json<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> Result<u64, Error> {
    let bytes = serde_json::to_vec(value).map_err(|error| {
        Error::new(
            "kv set",
            key,
            ErrorKind::Kv {
                kind: KvErrorKind::Invalid,
                message: format!("the value does not serialize as JSON: {error}"),
            },
        )
    })?;
    set(key, bytes)
}
