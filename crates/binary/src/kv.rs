//! [`KvRequest`] / [`KvResponse`]: what crosses the host/guest boundary through the `kv`
//! import, and [`KvErrorKind`], the key-value error codes both sides share.

use crate::codec::{Cursor, Envelope, sealed};
use crate::error::{DecodeError, DecodeErrorKind};

/// One key-value operation a module asks of its host.
///
/// Layout (see `docs/wire-format.md`): `store` (u64 length + UTF-8; empty = the module's own
/// store), then the [`KvOp`] (u32 tag + its fields).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct KvRequest {
    /// `""` for the module's own store, or the name of a shared store it has been granted.
    pub store: String,
    /// What to do.
    pub op: KvOp,
}

impl KvRequest {
    /// An operation on the module's own store.
    pub fn own(op: KvOp) -> KvRequest {
        KvRequest {
            store: String::new(),
            op,
        }
    }
}

/// A key-value operation. Revisions are positive; an expected revision of `0` means "the key
/// must not exist".
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum KvOp {
    /// Tag 0. Answered with [`KvResponse::Entry`] or [`KvResponse::Missing`].
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Tag 1. Answered with [`KvResponse::Revision`], the entry's new revision.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Tag 2. Answered with [`KvResponse::Bool`]: whether a key was removed.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Tag 3. Answered with [`KvResponse::Bool`].
    Exists {
        /// The key.
        key: Vec<u8>,
    },
    /// Tag 4. Keys starting with `prefix`, in byte order, after `cursor` (empty = from the
    /// start). Answered with [`KvResponse::Keys`].
    List {
        /// Only keys starting with these bytes.
        prefix: Vec<u8>,
        /// The cursor of the previous page, or empty for the first.
        cursor: Vec<u8>,
        /// Most keys in the page (1 to the host's page limit).
        limit: u32,
    },
    /// Tag 5. Adds `delta` to the decimal integer stored at `key` (a missing key counts as
    /// 0). Answered with [`KvResponse::Integer`], the new value.
    Increment {
        /// The key.
        key: Vec<u8>,
        /// What to add (may be negative).
        delta: i64,
    },
    /// Tag 6. Writes `value` (or deletes, for `None`) only if the entry's revision is
    /// `expected` (`0`: only if the key does not exist). Answered with
    /// [`KvResponse::Revision`] (0 after a delete) or [`KvResponse::Conflict`].
    CompareAndSwap {
        /// The key.
        key: Vec<u8>,
        /// The revision the entry must have; 0 = absent.
        expected: u64,
        /// The new value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Tag 7. Every write in one atomic transaction: all of them or, when a
    /// compare-and-swap's expectation fails, none. Answered with [`KvResponse::Applied`] or
    /// [`KvResponse::Conflict`].
    Batch {
        /// The writes, in order.
        writes: Vec<KvWrite>,
    },
}

impl KvOp {
    /// The operation's name in messages and metrics: `get`, `set`, `delete`, `exists`,
    /// `list`, `increment`, `cas`, `batch`.
    pub fn name(&self) -> &'static str {
        match self {
            KvOp::Get { .. } => "get",
            KvOp::Set { .. } => "set",
            KvOp::Delete { .. } => "delete",
            KvOp::Exists { .. } => "exists",
            KvOp::List { .. } => "list",
            KvOp::Increment { .. } => "increment",
            KvOp::CompareAndSwap { .. } => "cas",
            KvOp::Batch { .. } => "batch",
        }
    }
}

/// One write of a [`KvOp::Batch`].
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum KvWrite {
    /// Tag 0.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Tag 1. Deleting a missing key is not an error.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Tag 2. As [`KvOp::CompareAndSwap`]; a failed expectation cancels the whole batch.
    CompareAndSwap {
        /// The key.
        key: Vec<u8>,
        /// The revision the entry must have; 0 = absent.
        expected: u64,
        /// The new value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
}

/// The host's answer to a [`KvRequest`].
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum KvResponse {
    /// Tag 0: the key's value and revision.
    Entry {
        /// The stored bytes.
        value: Vec<u8>,
        /// The entry's revision (what a compare-and-swap compares).
        revision: u64,
    },
    /// Tag 1: the key does not exist.
    Missing,
    /// Tag 2: the write's new revision (0 when it deleted).
    Revision {
        /// The new revision.
        revision: u64,
    },
    /// Tag 3: `delete` (whether a key was removed) or `exists`.
    Bool {
        /// The answer.
        value: bool,
    },
    /// Tag 4: one page of keys.
    Keys {
        /// The keys, in byte order.
        keys: Vec<Vec<u8>>,
        /// Pass it back for the next page; empty when this was the last.
        cursor: Vec<u8>,
    },
    /// Tag 5: the value after an increment.
    Integer {
        /// The new value.
        value: i64,
    },
    /// Tag 6: a compare-and-swap's expectation failed; nothing was written.
    Conflict {
        /// Which write of a batch failed (0 for a single compare-and-swap).
        index: u32,
        /// The key's current revision; 0 = absent.
        current: u64,
    },
    /// Tag 7: a batch was applied.
    Applied,
    /// Tag 8: the operation was refused or failed; nothing was written.
    Error {
        /// Why, as a code both sides share.
        kind: KvErrorKind,
        /// A sentence naming the module, the store and the reason.
        message: String,
    },
}

/// Why a key-value operation failed. Encoded as a `u32` (the discriminant below); a code this
/// version does not know decodes as [`KvErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KvErrorKind {
    /// 1: the request itself is wrong: an empty key, a zero or over-limit page size, an
    /// invalid store name.
    Invalid = 1,
    /// 2: a key, value or batch is larger than the host allows.
    TooLarge = 2,
    /// 3: the write would take the store over its quota of keys or bytes.
    Quota = 3,
    /// 4: the module has no grant for the named store.
    Denied = 4,
    /// 5: `increment` found a value that is not a decimal integer.
    NotAnInteger = 5,
    /// 6: `increment` would overflow an `i64`.
    Overflow = 6,
    /// 7: a list cursor that this store did not hand out for this prefix.
    BadCursor = 7,
    /// 8: the storage refuses writes (a read-only or full disk); reads still work.
    ReadOnly = 8,
    /// 9: any other storage failure.
    Storage = 9,
    /// 10: the host has no key-value store, or its store (the cluster's, in NATS) cannot be
    /// reached or did not answer in time; a write that failed this way may have been committed.
    Unavailable = 10,
    /// 0, or a code this version does not know.
    Other = 0,
}

impl KvErrorKind {
    /// The kind for a wire code; unknown codes are [`KvErrorKind::Other`].
    pub fn from_code(code: u32) -> KvErrorKind {
        match code {
            1 => KvErrorKind::Invalid,
            2 => KvErrorKind::TooLarge,
            3 => KvErrorKind::Quota,
            4 => KvErrorKind::Denied,
            5 => KvErrorKind::NotAnInteger,
            6 => KvErrorKind::Overflow,
            7 => KvErrorKind::BadCursor,
            8 => KvErrorKind::ReadOnly,
            9 => KvErrorKind::Storage,
            10 => KvErrorKind::Unavailable,
            _ => KvErrorKind::Other,
        }
    }

    /// The wire code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// A short lowercase name, for metrics labels: `invalid`, `too_large`, `quota`, ...
    pub fn name(self) -> &'static str {
        match self {
            KvErrorKind::Invalid => "invalid",
            KvErrorKind::TooLarge => "too_large",
            KvErrorKind::Quota => "quota",
            KvErrorKind::Denied => "denied",
            KvErrorKind::NotAnInteger => "not_an_integer",
            KvErrorKind::Overflow => "overflow",
            KvErrorKind::BadCursor => "bad_cursor",
            KvErrorKind::ReadOnly => "read_only",
            KvErrorKind::Storage => "storage",
            KvErrorKind::Unavailable => "unavailable",
            KvErrorKind::Other => "other",
        }
    }
}

impl<Context> bincode::Decode<Context> for KvErrorKind {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(KvErrorKind::from_code(
            <u32 as bincode::Decode<Context>>::decode(decoder)?,
        ))
    }
}

bincode::impl_borrow_decode!(KvErrorKind);

impl bincode::Encode for KvErrorKind {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        bincode::Encode::encode(&self.code(), encoder)
    }
}

fn option_len(value: &Option<Vec<u8>>) -> usize {
    1 + value.as_ref().map_or(0, |bytes| 8 + bytes.len())
}

impl KvWrite {
    fn encoded_len(&self) -> usize {
        4 + match self {
            KvWrite::Set { key, value } => 16 + key.len() + value.len(),
            KvWrite::Delete { key } => 8 + key.len(),
            KvWrite::CompareAndSwap {
                key,
                expected: _,
                value,
            } => 8 + key.len() + 8 + option_len(value),
        }
    }

    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<KvWrite, DecodeError> {
        let tag_offset = cursor.offset();
        match cursor.u32("write")? {
            0 => Ok(KvWrite::Set {
                key: cursor.bytes("key")?.to_vec(),
                value: cursor.bytes("value")?.to_vec(),
            }),
            1 => Ok(KvWrite::Delete {
                key: cursor.bytes("key")?.to_vec(),
            }),
            2 => Ok(KvWrite::CompareAndSwap {
                key: cursor.bytes("key")?.to_vec(),
                expected: cursor.u64("expected")?,
                value: cursor.option_bytes("value")?,
            }),
            value => Err(cursor.error_at(
                "write",
                tag_offset,
                DecodeErrorKind::UnknownTag { value, max: 2 },
            )),
        }
    }
}

impl Envelope for KvRequest {
    const NAME: &'static str = "KvRequest";

    fn encoded_len(&self) -> usize {
        8 + self.store.len()
            + 4
            + match &self.op {
                KvOp::Get { key } | KvOp::Delete { key } | KvOp::Exists { key } => 8 + key.len(),
                KvOp::Set { key, value } => 16 + key.len() + value.len(),
                KvOp::List { prefix, cursor, .. } => 16 + prefix.len() + cursor.len() + 4,
                KvOp::Increment { key, .. } => 8 + key.len() + 8,
                KvOp::CompareAndSwap { key, value, .. } => 8 + key.len() + 8 + option_len(value),
                KvOp::Batch { writes } => {
                    8 + writes.iter().map(KvWrite::encoded_len).sum::<usize>()
                }
            }
    }
}

impl sealed::Fields for KvRequest {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<KvRequest, DecodeError> {
        let store = cursor.str("store")?.to_owned();
        let tag_offset = cursor.offset();
        let op = match cursor.u32("op")? {
            0 => KvOp::Get {
                key: cursor.bytes("key")?.to_vec(),
            },
            1 => KvOp::Set {
                key: cursor.bytes("key")?.to_vec(),
                value: cursor.bytes("value")?.to_vec(),
            },
            2 => KvOp::Delete {
                key: cursor.bytes("key")?.to_vec(),
            },
            3 => KvOp::Exists {
                key: cursor.bytes("key")?.to_vec(),
            },
            4 => KvOp::List {
                prefix: cursor.bytes("prefix")?.to_vec(),
                cursor: cursor.bytes("cursor")?.to_vec(),
                limit: cursor.u32("limit")?,
            },
            5 => KvOp::Increment {
                key: cursor.bytes("key")?.to_vec(),
                delta: cursor.i64("delta")?,
            },
            6 => KvOp::CompareAndSwap {
                key: cursor.bytes("key")?.to_vec(),
                expected: cursor.u64("expected")?,
                value: cursor.option_bytes("value")?,
            },
            7 => {
                // Each write is at least a tag and a key length: 12 bytes.
                let count = cursor.len("writes", 12)?;
                let mut writes = Vec::with_capacity(count);
                for _ in 0..count {
                    writes.push(KvWrite::decode_fields(cursor)?);
                }
                KvOp::Batch { writes }
            }
            value => {
                return Err(cursor.error_at(
                    "op",
                    tag_offset,
                    DecodeErrorKind::UnknownTag { value, max: 7 },
                ));
            }
        };
        Ok(KvRequest { store, op })
    }
}

impl Envelope for KvResponse {
    const NAME: &'static str = "KvResponse";

    fn encoded_len(&self) -> usize {
        4 + match self {
            KvResponse::Entry { value, .. } => 8 + value.len() + 8,
            KvResponse::Missing | KvResponse::Applied => 0,
            KvResponse::Revision { .. } | KvResponse::Integer { .. } => 8,
            KvResponse::Bool { .. } => 1,
            KvResponse::Keys { keys, cursor } => {
                8 + keys.iter().map(|key| 8 + key.len()).sum::<usize>() + 8 + cursor.len()
            }
            KvResponse::Conflict { .. } => 4 + 8,
            KvResponse::Error { message, .. } => 4 + 8 + message.len(),
        }
    }
}

impl sealed::Fields for KvResponse {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<KvResponse, DecodeError> {
        let tag_offset = cursor.offset();
        Ok(match cursor.u32("response")? {
            0 => KvResponse::Entry {
                value: cursor.bytes("value")?.to_vec(),
                revision: cursor.u64("revision")?,
            },
            1 => KvResponse::Missing,
            2 => KvResponse::Revision {
                revision: cursor.u64("revision")?,
            },
            3 => KvResponse::Bool {
                value: cursor.bool("value")?,
            },
            4 => {
                let count = cursor.len("keys", 8)?;
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    keys.push(cursor.bytes("key")?.to_vec());
                }
                KvResponse::Keys {
                    keys,
                    cursor: cursor.bytes("cursor")?.to_vec(),
                }
            }
            5 => KvResponse::Integer {
                value: cursor.i64("value")?,
            },
            6 => KvResponse::Conflict {
                index: cursor.u32("index")?,
                current: cursor.u64("current")?,
            },
            7 => KvResponse::Applied,
            8 => KvResponse::Error {
                kind: KvErrorKind::from_code(cursor.u32("kind")?),
                message: cursor.str("message")?.to_owned(),
            },
            value => {
                return Err(cursor.error_at(
                    "response",
                    tag_offset,
                    DecodeErrorKind::UnknownTag { value, max: 8 },
                ));
            }
        })
    }
}
