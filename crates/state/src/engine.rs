//! What both backends share: validation, key encoding, list cursors, quotas and every write,
//! written once over the two small table traits a backend implements.
//!
//! A backend (`RedbStore`, `MemoryStore`) only reads and writes encoded entries inside a
//! transaction it opens; all meaning — revisions, usage, quotas, compare-and-swap — lives here.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::{StoreError, StoreErrorKind};
use crate::stats::{Op, Recorder};
use crate::types::{
    BatchOutcome, CasOutcome, Entry, Limits, MAX_NAMESPACE_BYTES, Namespace, Page, Usage, WriteOp,
};

/// An entry as a backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) revision: u64,
    pub(crate) value: Vec<u8>,
}

/// Reads inside one transaction (or snapshot) of a backend. Keys are full keys, see
/// [`full_key`].
pub(crate) trait ReadTables {
    fn entry(&self, full_key: &[u8]) -> Result<Option<Stored>, StoreErrorKind>;
    /// At most `limit` full keys within the bounds, in byte order.
    fn keys(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreErrorKind>;
    /// A namespace's usage; zero when it has never been written.
    fn usage(&self, namespace: &str) -> Result<Usage, StoreErrorKind>;
}

/// Writes inside one write transaction of a backend, on top of its reads.
pub(crate) trait WriteTables: ReadTables {
    fn put(&mut self, full_key: &[u8], stored: &Stored) -> Result<(), StoreErrorKind>;
    fn remove(&mut self, full_key: &[u8]) -> Result<(), StoreErrorKind>;
    fn set_usage(&mut self, namespace: &str, usage: Usage) -> Result<(), StoreErrorKind>;
    /// The store's revision counter: the last revision handed out (0 for a new store).
    fn last_revision(&self) -> Result<u64, StoreErrorKind>;
    fn set_last_revision(&mut self, revision: u64) -> Result<(), StoreErrorKind>;
}

/// A store backend: transactions over its tables.
pub(crate) trait Backend {
    fn limits(&self) -> &Limits;
    fn recorder(&self) -> &Recorder;
    /// Runs `read` on a consistent snapshot of `namespace` (the only namespace it reads).
    fn read<R>(
        &self,
        namespace: &str,
        read: impl FnOnce(&dyn ReadTables) -> Result<R, StoreErrorKind>,
    ) -> Result<R, StoreErrorKind>;
    /// Runs `write` in one write transaction over `namespace` (write transactions are
    /// serialised), and commits only when it returns `Ok((_, true))`; on `Ok((_, false))` or an
    /// error nothing is written. A backend with optimistic transactions may run `write` again
    /// after a conflict, so it must not have effects of its own.
    fn write<R>(
        &self,
        namespace: &str,
        write: impl Fn(&mut dyn WriteTables) -> Result<(R, bool), StoreErrorKind>,
    ) -> Result<R, StoreErrorKind>;
}

/// Every backend is a [`Store`] through the functions below: backends differ only in their
/// tables and transactions, never in what an operation means.
impl<B: Backend + Send + Sync + std::fmt::Debug> crate::store::Store for B {
    fn get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        get(self, ns, key)
    }

    fn set(&self, ns: &Namespace, key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
        set(self, ns, key, value)
    }

    fn delete(&self, ns: &Namespace, key: &[u8]) -> Result<bool, StoreError> {
        delete(self, ns, key)
    }

    fn exists(&self, ns: &Namespace, key: &[u8]) -> Result<bool, StoreError> {
        exists(self, ns, key)
    }

    fn list(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        list(self, ns, prefix, cursor, limit)
    }

    fn increment(&self, ns: &Namespace, key: &[u8], delta: i64) -> Result<i64, StoreError> {
        increment(self, ns, key, delta)
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &[u8],
        expected: Option<u64>,
        value: Option<&[u8]>,
    ) -> Result<CasOutcome, StoreError> {
        compare_and_swap(self, ns, key, expected, value)
    }

    fn batch(&self, ns: &Namespace, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
        batch(self, ns, ops)
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, StoreError> {
        usage(self, ns)
    }

    fn stats(&self) -> crate::stats::StoreStats {
        self.recorder().snapshot()
    }
}

/// The bytes every full key of `namespace` starts with: `[name length: u8][name]`. The length
/// byte keeps `"a"`'s keys apart from `"ab"`'s.
pub(crate) fn namespace_prefix(namespace: &str) -> Result<Vec<u8>, StoreErrorKind> {
    let name = namespace.as_bytes();
    let len = u8::try_from(name.len()).map_err(|_| StoreErrorKind::NamespaceTooLong {
        len: name.len(),
        max: MAX_NAMESPACE_BYTES,
    })?;
    let mut prefix = Vec::with_capacity(1 + name.len());
    prefix.push(len);
    prefix.extend_from_slice(name);
    Ok(prefix)
}

/// `[name length: u8][name][key]`: the key of an entry in the backend's one entry table.
pub(crate) fn full_key(namespace_prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(namespace_prefix.len() + key.len());
    full.extend_from_slice(namespace_prefix);
    full.extend_from_slice(key);
    full
}

/// The smallest byte string greater than every string starting with `prefix`, `None` when
/// there is none (the prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn check_key(limits: &Limits, key: &[u8]) -> Result<(), StoreErrorKind> {
    if key.is_empty() {
        return Err(StoreErrorKind::KeyEmpty);
    }
    if key.len() > limits.max_key_bytes {
        return Err(StoreErrorKind::KeyTooLong {
            len: key.len(),
            max: limits.max_key_bytes,
        });
    }
    Ok(())
}

fn check_value(limits: &Limits, value: &[u8]) -> Result<(), StoreErrorKind> {
    if value.len() > limits.max_value_bytes {
        return Err(StoreErrorKind::ValueTooLarge {
            len: value.len(),
            max: limits.max_value_bytes,
        });
    }
    Ok(())
}

/// Cursor layout: `[version = 1][tag: u64 LE][last key returned]`, where the tag is FNV-1a of
/// the namespace prefix and the list prefix. The tag only catches a cursor passed to the wrong
/// list (it is no secret: listing is confined to the namespace and prefix whatever the cursor).
const CURSOR_VERSION: u8 = 1;
const CURSOR_HEADER: usize = 1 + 8;

fn cursor_tag(namespace_prefix: &[u8], prefix: &[u8]) -> u64 {
    // FNV-1a 64: stable across builds and processes, so a cursor outlives a hot swap.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let length = u64::try_from(prefix.len())
        .unwrap_or(u64::MAX)
        .to_le_bytes();
    for byte in namespace_prefix.iter().chain(&length).chain(prefix) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn encode_cursor(namespace_prefix: &[u8], prefix: &[u8], last_key: &[u8]) -> Vec<u8> {
    let mut cursor = Vec::with_capacity(CURSOR_HEADER + last_key.len());
    cursor.push(CURSOR_VERSION);
    cursor.extend_from_slice(&cursor_tag(namespace_prefix, prefix).to_le_bytes());
    cursor.extend_from_slice(last_key);
    cursor
}

/// The last key of the previous page, if `cursor` was made by a list of this namespace and
/// prefix.
fn decode_cursor<'c>(
    limits: &Limits,
    namespace_prefix: &[u8],
    prefix: &[u8],
    cursor: &'c [u8],
) -> Result<&'c [u8], StoreErrorKind> {
    let (header, key) = cursor
        .split_at_checked(CURSOR_HEADER)
        .ok_or(StoreErrorKind::CursorInvalid)?;
    let tag = cursor_tag(namespace_prefix, prefix).to_le_bytes();
    if header[0] != CURSOR_VERSION
        || header[1..] != tag
        || !key.starts_with(prefix)
        || check_key(limits, key).is_err()
    {
        return Err(StoreErrorKind::CursorInvalid);
    }
    Ok(key)
}

/// Runs one call: errors get the namespace, the call and its outcome are counted.
fn call<B: Backend, T>(
    backend: &B,
    op: Op,
    namespace: &Namespace,
    run: impl FnOnce(&Limits) -> Result<T, StoreErrorKind>,
) -> Result<T, StoreError> {
    let result = run(backend.limits()).map_err(|kind| StoreError::new(&namespace.name, kind));
    backend.recorder().call(op, result)
}

pub(crate) fn get<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
) -> Result<Option<Entry>, StoreError> {
    call(backend, Op::Get, namespace, |limits| {
        check_key(limits, key)?;
        let full = full_key(&namespace_prefix(&namespace.name)?, key);
        let stored = backend.read(&namespace.name, |tables| tables.entry(&full))?;
        Ok(stored.map(|stored| Entry {
            value: stored.value,
            revision: stored.revision,
        }))
    })
}

pub(crate) fn exists<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
) -> Result<bool, StoreError> {
    call(backend, Op::Exists, namespace, |limits| {
        check_key(limits, key)?;
        let full = full_key(&namespace_prefix(&namespace.name)?, key);
        backend.read(&namespace.name, |tables| Ok(tables.entry(&full)?.is_some()))
    })
}

pub(crate) fn list<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    prefix: &[u8],
    cursor: Option<&[u8]>,
    limit: u32,
) -> Result<Page, StoreError> {
    call(backend, Op::List, namespace, |limits| {
        if limit == 0 || limit > limits.max_page_keys {
            return Err(StoreErrorKind::PageLimit {
                requested: limit,
                max: limits.max_page_keys,
            });
        }
        if prefix.len() > limits.max_key_bytes {
            return Err(StoreErrorKind::KeyTooLong {
                len: prefix.len(),
                max: limits.max_key_bytes,
            });
        }
        let namespace_prefix = namespace_prefix(&namespace.name)?;
        let scan_prefix = full_key(&namespace_prefix, prefix);
        // From the prefix itself, or from just after the previous page's last key.
        let after = match cursor {
            None => None,
            Some(cursor) => Some(full_key(
                &namespace_prefix,
                decode_cursor(limits, &namespace_prefix, prefix, cursor)?,
            )),
        };
        let start = after
            .as_deref()
            .map_or(Bound::Included(scan_prefix.as_slice()), Bound::Excluded);
        let end = prefix_end(&scan_prefix);
        let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        // `limit` <= max_page_keys (a u32), so this fits in usize; one extra key tells whether
        // more follow.
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut keys = backend.read(&namespace.name, |tables| {
            tables.keys(start, end, wanted.saturating_add(1))
        })?;
        let more = keys.len() > wanted;
        keys.truncate(wanted);
        for key in &mut keys {
            key.drain(..namespace_prefix.len());
        }
        let cursor = match (more, keys.last()) {
            (true, Some(last)) => Some(encode_cursor(&namespace_prefix, prefix, last)),
            _ => None,
        };
        Ok(Page { keys, cursor })
    })
}

pub(crate) fn usage<B: Backend>(backend: &B, namespace: &Namespace) -> Result<Usage, StoreError> {
    call(backend, Op::Usage, namespace, |_| {
        namespace_prefix(&namespace.name)?;
        backend.read(&namespace.name, |tables| tables.usage(&namespace.name))
    })
}

pub(crate) fn set<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
    value: &[u8],
) -> Result<u64, StoreError> {
    call(backend, Op::Set, namespace, |limits| {
        check_key(limits, key)?;
        check_value(limits, value)?;
        transact(backend, namespace, |mutation| {
            mutation.write(key, value.to_vec())
        })
    })
}

pub(crate) fn delete<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
) -> Result<bool, StoreError> {
    call(backend, Op::Delete, namespace, |limits| {
        check_key(limits, key)?;
        transact(backend, namespace, |mutation| mutation.delete(key))
    })
}

pub(crate) fn increment<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
    delta: i64,
) -> Result<i64, StoreError> {
    call(backend, Op::Increment, namespace, |limits| {
        check_key(limits, key)?;
        transact(backend, namespace, |mutation| {
            let current = match mutation.current(key)? {
                None => 0,
                Some(stored) => parse_integer(&stored.value)?,
            };
            let next = current.checked_add(delta).ok_or(StoreErrorKind::Overflow)?;
            mutation.write(key, next.to_string().into_bytes())?;
            Ok(next)
        })
    })
}

/// ASCII decimal i64 text, as `increment` writes it (an optional sign, then digits).
fn parse_integer(value: &[u8]) -> Result<i64, StoreErrorKind> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(StoreErrorKind::NotAnInteger)
}

pub(crate) fn compare_and_swap<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    key: &[u8],
    expected: Option<u64>,
    value: Option<&[u8]>,
) -> Result<CasOutcome, StoreError> {
    call(backend, Op::Cas, namespace, |limits| {
        check_key(limits, key)?;
        if let Some(value) = value {
            check_value(limits, value)?;
        }
        transact(backend, namespace, |mutation| {
            mutation.compare_and_swap(key, expected, value.map(<[u8]>::to_vec))
        })
    })
}

pub(crate) fn batch<B: Backend>(
    backend: &B,
    namespace: &Namespace,
    ops: &[WriteOp],
) -> Result<BatchOutcome, StoreError> {
    call(backend, Op::Batch, namespace, |limits| {
        if ops.len() > limits.max_batch_ops {
            return Err(StoreErrorKind::BatchTooLarge {
                len: ops.len(),
                max: limits.max_batch_ops,
            });
        }
        for op in ops {
            match op {
                WriteOp::Set { key, value }
                | WriteOp::CompareAndSwap {
                    key,
                    value: Some(value),
                    ..
                } => {
                    check_key(limits, key)?;
                    check_value(limits, value)?;
                }
                WriteOp::Delete { key } | WriteOp::CompareAndSwap { key, .. } => {
                    check_key(limits, key)?;
                }
            }
        }
        if ops.is_empty() {
            namespace_prefix(&namespace.name)?;
            return Ok(BatchOutcome::Applied);
        }
        transact(backend, namespace, |mutation| {
            for (index, op) in ops.iter().enumerate() {
                match op {
                    WriteOp::Set { key, value } => {
                        mutation.write(key, value.clone())?;
                    }
                    WriteOp::Delete { key } => {
                        mutation.delete(key)?;
                    }
                    WriteOp::CompareAndSwap {
                        key,
                        expected,
                        value,
                    } => {
                        let outcome = mutation.compare_and_swap(key, *expected, value.clone())?;
                        if let CasOutcome::Conflict { current } = outcome {
                            mutation.cancel();
                            return Ok(BatchOutcome::Conflict {
                                // ops.len() <= max_batch_ops; a limit beyond u32 saturates.
                                index: u32::try_from(index).unwrap_or(u32::MAX),
                                current,
                            });
                        }
                    }
                }
            }
            Ok(BatchOutcome::Applied)
        })
    })
}

/// Runs `apply` in one write transaction of `backend` over `namespace`, then checks the quota
/// and writes what `apply` changed.
fn transact<B: Backend, R>(
    backend: &B,
    namespace: &Namespace,
    apply: impl Fn(&mut Mutation<'_>) -> Result<R, StoreErrorKind>,
) -> Result<R, StoreErrorKind> {
    let namespace_prefix = namespace_prefix(&namespace.name)?;
    backend.write(&namespace.name, |tables| {
        let mut mutation = Mutation::begin(tables, namespace, &namespace_prefix)?;
        let result = apply(&mut mutation)?;
        let changed = mutation.finish()?;
        Ok((result, changed))
    })
}

/// The changes of one write transaction to one namespace, held until [`Mutation::finish`]: a
/// call that fails half-way, or a batch that hits a conflict, leaves the tables untouched.
struct Mutation<'t> {
    tables: &'t mut dyn WriteTables,
    namespace: &'t Namespace,
    namespace_prefix: &'t [u8],
    /// Changed keys (without the namespace prefix): `Some` = written, `None` = deleted.
    pending: BTreeMap<Vec<u8>, Option<Stored>>,
    before: Usage,
    usage: Usage,
    first_revision: u64,
    revision: u64,
}

impl<'t> Mutation<'t> {
    fn begin(
        tables: &'t mut dyn WriteTables,
        namespace: &'t Namespace,
        namespace_prefix: &'t [u8],
    ) -> Result<Mutation<'t>, StoreErrorKind> {
        let usage = tables.usage(&namespace.name)?;
        let revision = tables.last_revision()?;
        Ok(Mutation {
            tables,
            namespace,
            namespace_prefix,
            pending: BTreeMap::new(),
            before: usage,
            usage,
            first_revision: revision,
            revision,
        })
    }

    /// The key's entry as this transaction sees it so far.
    fn current(&self, key: &[u8]) -> Result<Option<Stored>, StoreErrorKind> {
        match self.pending.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.tables.entry(&full_key(self.namespace_prefix, key)),
        }
    }

    /// Stores `value` under `key` with the next revision, which it returns.
    fn write(&mut self, key: &[u8], value: Vec<u8>) -> Result<u64, StoreErrorKind> {
        let key_len = key.len() as u64;
        match self.current(key)? {
            Some(old) => {
                self.usage.bytes = self
                    .usage
                    .bytes
                    .saturating_sub(key_len + old.value.len() as u64);
            }
            None => self.usage.keys += 1,
        }
        self.usage.bytes += key_len + value.len() as u64;
        self.revision = self
            .revision
            .checked_add(1)
            .ok_or_else(|| StoreErrorKind::Storage("the revision counter is exhausted".into()))?;
        let stored = Stored {
            revision: self.revision,
            value,
        };
        self.pending.insert(key.to_vec(), Some(stored));
        Ok(self.revision)
    }

    /// Removes `key`; `true` when it was there.
    fn delete(&mut self, key: &[u8]) -> Result<bool, StoreErrorKind> {
        let Some(old) = self.current(key)? else {
            return Ok(false);
        };
        self.usage.keys = self.usage.keys.saturating_sub(1);
        self.usage.bytes = self
            .usage
            .bytes
            .saturating_sub(key.len() as u64 + old.value.len() as u64);
        self.pending.insert(key.to_vec(), None);
        Ok(true)
    }

    fn compare_and_swap(
        &mut self,
        key: &[u8],
        expected: Option<u64>,
        value: Option<Vec<u8>>,
    ) -> Result<CasOutcome, StoreErrorKind> {
        let current = self.current(key)?.map(|stored| stored.revision);
        if current != expected {
            return Ok(CasOutcome::Conflict { current });
        }
        let revision = match value {
            Some(value) => self.write(key, value)?,
            None => {
                self.delete(key)?;
                0
            }
        };
        Ok(CasOutcome::Swapped { revision })
    }

    /// Forgets every change: the transaction will write nothing.
    fn cancel(&mut self) {
        self.pending.clear();
        self.usage = self.before;
        self.revision = self.first_revision;
    }

    /// Checks the quota, then writes the changes; `false` when there was nothing to write.
    fn finish(self) -> Result<bool, StoreErrorKind> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let quota = self.namespace.quota;
        // Only growth is refused: a namespace above a lowered quota may still shrink.
        if self.usage.keys > quota.max_keys && self.usage.keys > self.before.keys {
            return Err(StoreErrorKind::QuotaKeys {
                max: quota.max_keys,
            });
        }
        if self.usage.bytes > quota.max_bytes && self.usage.bytes > self.before.bytes {
            return Err(StoreErrorKind::QuotaBytes {
                max: quota.max_bytes,
            });
        }
        for (key, change) in &self.pending {
            let full = full_key(self.namespace_prefix, key);
            match change {
                Some(stored) => self.tables.put(&full, stored)?,
                None => self.tables.remove(&full)?,
            }
        }
        self.tables.set_usage(&self.namespace.name, self.usage)?;
        if self.revision != self.first_revision {
            self.tables.set_last_revision(self.revision)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_keep_names_apart() {
        let a = full_key(&namespace_prefix("a").unwrap(), b"bc");
        let ab = full_key(&namespace_prefix("ab").unwrap(), b"c");
        assert_ne!(a, ab);
        assert_eq!(
            namespace_prefix(&"x".repeat(256)),
            Err(StoreErrorKind::NamespaceTooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn prefix_end_is_the_first_string_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn cursors_are_bound_to_namespace_and_prefix() {
        let limits = Limits::default();
        let users = namespace_prefix("users").unwrap();
        let orders = namespace_prefix("orders").unwrap();
        let cursor = encode_cursor(&users, b"u:", b"u:7");
        assert_eq!(
            decode_cursor(&limits, &users, b"u:", &cursor),
            Ok(&b"u:7"[..])
        );
        let invalid = Err(StoreErrorKind::CursorInvalid);
        assert_eq!(decode_cursor(&limits, &orders, b"u:", &cursor), invalid);
        assert_eq!(decode_cursor(&limits, &users, b"v:", &cursor), invalid);
        assert_eq!(decode_cursor(&limits, &users, b"u:", &cursor[..4]), invalid);
        // The right tag around a key outside the prefix: forged.
        let forged = encode_cursor(&users, b"u:", b"zzz");
        assert_eq!(decode_cursor(&limits, &users, b"u:", &forged), invalid);
        let mut wrong_version = cursor.clone();
        wrong_version[0] = 2;
        assert_eq!(
            decode_cursor(&limits, &users, b"u:", &wrong_version),
            invalid
        );
    }

    #[test]
    fn integers_are_ascii_decimal_i64() {
        assert_eq!(parse_integer(b"42"), Ok(42));
        assert_eq!(parse_integer(b"-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            &b""[..],
            b" 1",
            b"1.5",
            b"0x10",
            b"\xff",
            b"9223372036854775808",
        ] {
            assert_eq!(
                parse_integer(bad),
                Err(StoreErrorKind::NotAnInteger),
                "{bad:?}"
            );
        }
    }
}
