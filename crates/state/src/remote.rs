//! `RemoteStore`: the [`Store`] semantics over a remote key-value service that only offers
//! single-key compare-and-set on a per-key sequence number (NATS JetStream KV, reached through
//! the `cluster` crate), made atomic across keys by one commit record per namespace.
//!
//! # Layout (one remote bucket per namespace; the [`RemoteKv`] maps names to buckets)
//!
//! | remote key      | value                                                        |
//! |-----------------|--------------------------------------------------------------|
//! | `k.<hex(key)>`  | `[revision: u64 LE][value]`, as `RedbStore`'s entry table     |
//! | `m.head`        | the commit record: commits, last revision, usage, pending ops |
//!
//! Lowercase hex keeps any key bytes a valid subject token and keeps byte order.
//!
//! # Protocol
//!
//! Every write transaction of a namespace (set, delete, increment, compare-and-swap, batch)
//! runs the shared engine against the namespace as it stands after the last commit, then
//! commits by one compare-and-set of `m.head` on the sequence it read, writing the new usage
//! and revision counter and the transaction's changes (each key's new record and the key's
//! sequence it was read at). That compare-and-set is the commit point: once it succeeds the
//! transaction is durable and decided; quotas and compare-and-swap expectations were checked
//! against exactly the state it replaced. If another writer committed first, the transaction
//! runs again on the new head (backing off a little), for at most the retry budget.
//!
//! After the commit the writer applies the changes to the `k.` keys, each a compare-and-set on
//! the sequence recorded in the head, then clears the head's pending list. Applying is
//! idempotent and anyone may do it: a writer that finds pending changes in the head applies
//! them before running its own transaction, and a change whose compare-and-set fails was
//! already applied (while the head holds a commit, only that commit's changes may write its
//! keys, and a key's sequence never goes back). So a writer that crashes, stalls or loses NATS
//! between commit and apply leaves nothing half done: the next writer, on any node, finishes
//! it, and a stale writer's late writes all fail.
//!
//! Readers never write. A read fetches the head first and sees pending changes through it
//! (the head's record wins over the key's), so a read never sees part of a committed batch,
//! and once any change of a commit is seen, every later read sees all of it. A list rescans
//! when a commit slipped in during its scan. Reads are not snapshots across calls: two `get`s
//! may see two different commits, as with any store between transactions.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::engine::{self, Backend, ReadTables, Stored, WriteTables};
use crate::error::StoreErrorKind;
use crate::stats::Recorder;
use crate::types::{Limits, Usage};

/// The remote key of a namespace's commit record.
pub const HEAD_KEY: &str = "m.head";
/// Every entry's remote key starts with this, followed by the key's lowercase hex.
pub const DATA_PREFIX: &str = "k.";

/// The last record of one remote key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The sequence of the key's last record (a write or a deletion); 0 when it has none.
    pub sequence: u64,
    /// The value, `None` when the last record is a deletion or there is none.
    pub value: Option<Vec<u8>>,
}

/// A remote key-value service with per-key sequences and compare-and-set: what
/// [`RemoteStore`] needs. Each namespace is its own bucket (the implementation maps the name
/// and creates the bucket on first use). Keys are `[A-Za-z0-9._-]` strings. Errors are
/// [`StoreErrorKind::Unavailable`] when the service cannot be reached or does not answer in
/// time, [`StoreErrorKind::Storage`] otherwise.
pub trait RemoteKv: Send + Sync + std::fmt::Debug {
    /// The key's last record.
    fn get(&self, namespace: &str, key: &str) -> Result<Record, StoreErrorKind>;
    /// Writes `value` if the key's last sequence is `expected` (0: the key has no record).
    /// `Some(new sequence)`, or `None` when the key's last sequence is another.
    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind>;
    /// Records the key's deletion, with the same expectation as [`RemoteKv::put`].
    fn delete(
        &self,
        namespace: &str,
        key: &str,
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind>;
    /// Every key of the namespace whose last record is a write and that starts with `prefix`,
    /// in any order.
    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StoreErrorKind>;
    /// The largest record the service takes (the head carries a transaction's values).
    fn max_record_bytes(&self) -> usize;
}

/// How a [`RemoteStore`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Size limits of keys, values, pages and batches.
    pub limits: Limits,
    /// How long a write keeps retrying while writers on other nodes win the namespace's commit
    /// record (default 5 s); then it fails with [`StoreErrorKind::Unavailable`].
    pub retry_for: Duration,
}

impl Default for RemoteConfig {
    fn default() -> RemoteConfig {
        RemoteConfig {
            limits: Limits::default(),
            retry_for: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] over a [`RemoteKv`] shared by several processes: the same validation, quotas,
/// compare-and-swap and batches as [`RedbStore`](crate::RedbStore) (the engine is shared),
/// made atomic across keys and processes by the commit protocol in this module's docs.
///
/// Differences from the embedded store: revisions come from one counter per namespace (still
/// strictly increasing and never reused within it, which is all compare-and-swap compares);
/// a transaction's changes travel in one record, so a write or batch whose encoded changes
/// exceed [`RemoteKv::max_record_bytes`] is refused as
/// [`ValueTooLarge`](StoreErrorKind::ValueTooLarge) with the record's size; writes to one
/// namespace are serialised cluster-wide; and listing reads the namespace's whole key set.
#[derive(Debug)]
pub struct RemoteStore<K: RemoteKv> {
    kv: K,
    config: RemoteConfig,
    recorder: Recorder,
    /// One lock per namespace: this process's writers queue here instead of racing each
    /// other for the commit record.
    writers: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl<K: RemoteKv> RemoteStore<K> {
    /// A store over `kv`.
    pub fn new(kv: K, config: RemoteConfig) -> RemoteStore<K> {
        RemoteStore {
            kv,
            config,
            recorder: Recorder::default(),
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// The remote service.
    pub fn remote(&self) -> &K {
        &self.kv
    }

    fn writer_lock(&self, namespace: &str) -> Arc<Mutex<()>> {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        writers.entry(namespace.to_owned()).or_default().clone()
    }

    /// The namespace's commit record and its sequence.
    fn head(&self, namespace: &str) -> Result<(u64, Head), StoreErrorKind> {
        let record = self.kv.get(namespace, HEAD_KEY)?;
        let head = match &record.value {
            Some(bytes) => Head::decode(bytes).ok_or_else(|| {
                StoreErrorKind::Storage(format!(
                    "the commit record of namespace {namespace:?} is corrupt"
                ))
            })?,
            None => Head::default(),
        };
        Ok((record.sequence, head))
    }

    /// Applies a commit's changes to their keys; a change already applied is skipped.
    fn apply(&self, namespace: &str, changes: &[Change]) -> Result<(), StoreErrorKind> {
        for change in changes {
            let key = data_key(&change.key);
            match &change.stored {
                Some(stored) => {
                    self.kv
                        .put(namespace, &key, &encode_stored(stored), change.expected)?;
                }
                None => {
                    self.kv.delete(namespace, &key, change.expected)?;
                }
            }
        }
        Ok(())
    }
}

/// Errors that come from the remote service rather than from the transaction's logic: they end
/// a write at once.
fn is_remote_failure(kind: &StoreErrorKind) -> bool {
    matches!(
        kind,
        StoreErrorKind::Unavailable(_) | StoreErrorKind::Storage(_) | StoreErrorKind::ReadOnly(_)
    )
}

impl<K: RemoteKv> Backend for RemoteStore<K> {
    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn read<R>(
        &self,
        namespace: &str,
        read: impl FnOnce(&dyn ReadTables) -> Result<R, StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        let (_, head) = self.head(namespace)?;
        let tables = Tables::new(self, namespace, head, true);
        read(&tables)
    }

    fn write<R>(
        &self,
        namespace: &str,
        write: impl Fn(&mut dyn WriteTables) -> Result<(R, bool), StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        let lock = self.writer_lock(namespace);
        let _queued = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let mut lost = 0u32;
        loop {
            let (sequence, mut head) = self.head(namespace)?;
            if !head.pending.is_empty() {
                // A commit whose writer has not finished (or never will): finish it first, so
                // the keys read below are the committed state.
                self.apply(namespace, &head.pending)?;
                head.pending.clear();
            }
            let commits = head.commits;
            let mut tables = Tables::new(self, namespace, head, false);
            match write(&mut tables) {
                Ok((result, true)) => {
                    let next = tables.commit_record()?;
                    let bytes = next.encode();
                    let max = self.kv.max_record_bytes();
                    if bytes.len() > max {
                        return Err(StoreErrorKind::ValueTooLarge {
                            len: bytes.len(),
                            max,
                        });
                    }
                    if let Some(committed) = self.kv.put(namespace, HEAD_KEY, &bytes, sequence)? {
                        // Committed. Applying and clearing may fail (NATS gone): the commit
                        // stands, readers see it through the head and the next writer
                        // finishes it.
                        if self.apply(namespace, &next.pending).is_ok() {
                            let cleared = Head {
                                pending: Vec::new(),
                                ..next
                            };
                            let _ = self
                                .kv
                                .put(namespace, HEAD_KEY, &cleared.encode(), committed);
                        }
                        self.recorder.commit(started.elapsed());
                        return Ok(result);
                    }
                }
                Err(error) if is_remote_failure(&error) => return Err(error),
                outcome => {
                    // Nothing to write (a conflict, a refusal, a no-op): the answer stands if
                    // no commit slipped in while the keys were read.
                    let (_, now) = self.head(namespace)?;
                    if now.commits == commits {
                        return outcome.map(|(result, _)| result);
                    }
                }
            }
            lost = lost.saturating_add(1);
            if started.elapsed() >= self.config.retry_for {
                return Err(StoreErrorKind::Unavailable(format!(
                    "other writers kept committing first ({lost} attempts in {:?})",
                    self.config.retry_for
                )));
            }
            std::thread::sleep(backoff(lost));
        }
    }
}

/// A short randomised pause before running a lost transaction again: up to 0.2 ms after the
/// first loss, growing to 5 ms.
fn backoff(lost: u32) -> Duration {
    let ceiling = 200u64.saturating_mul(u64::from(lost.min(25)));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| u64::from(now.subsec_nanos()));
    Duration::from_micros(nanos % ceiling.max(1))
}

/// One namespace as a transaction sees it.
struct Tables<'s, K: RemoteKv> {
    store: &'s RemoteStore<K>,
    namespace: &'s str,
    /// The head read at the start; in a read, its pending changes overlay the keys.
    head: RefCell<Head>,
    /// Whether this is a read (which may rescan a list when a commit slips in).
    read_only: bool,
    /// The records the transaction read, by key: what its changes expect.
    reads: RefCell<HashMap<Vec<u8>, Record>>,
    /// The changes: `Some` = write, `None` = delete.
    writes: BTreeMap<Vec<u8>, Option<Stored>>,
    usage: Usage,
    last_revision: u64,
}

impl<'s, K: RemoteKv> Tables<'s, K> {
    fn new(store: &'s RemoteStore<K>, namespace: &'s str, head: Head, read_only: bool) -> Self {
        Tables {
            store,
            namespace,
            usage: head.usage,
            last_revision: head.last_revision,
            head: RefCell::new(head),
            read_only,
            reads: RefCell::new(HashMap::new()),
            writes: BTreeMap::new(),
        }
    }

    /// The entry key inside a full key (`[ns length][ns][key]`).
    fn key_of<'k>(&self, full_key: &'k [u8]) -> &'k [u8] {
        let skip = 1 + self.namespace.len();
        full_key.get(skip..).unwrap_or_default()
    }

    fn fetch(&self, key: &[u8]) -> Result<Record, StoreErrorKind> {
        if let Some(record) = self.reads.borrow().get(key) {
            return Ok(record.clone());
        }
        let record = self.store.kv.get(self.namespace, &data_key(key))?;
        self.reads.borrow_mut().insert(key.to_vec(), record.clone());
        Ok(record)
    }

    /// The next head: the changes, each with the sequence its key was read at.
    fn commit_record(&self) -> Result<Head, StoreErrorKind> {
        let mut pending = Vec::with_capacity(self.writes.len());
        for (key, stored) in &self.writes {
            let read = self.fetch(key)?;
            if stored.is_none() && read.value.is_none() {
                continue; // deleting what was never there
            }
            pending.push(Change {
                key: key.clone(),
                expected: read.sequence,
                stored: stored.clone(),
            });
        }
        let head = self.head.borrow();
        Ok(Head {
            commits: head.commits.wrapping_add(1),
            last_revision: self.last_revision,
            usage: self.usage,
            pending,
        })
    }

    fn scan(&self) -> Result<BTreeSet<Vec<u8>>, StoreErrorKind> {
        let mut keys = BTreeSet::new();
        for remote in self.store.kv.keys(self.namespace, DATA_PREFIX)? {
            let Some(key) = remote.strip_prefix(DATA_PREFIX).and_then(decode_hex) else {
                continue; // not an entry of this layout
            };
            keys.insert(key);
        }
        for change in &self.head.borrow().pending {
            if change.stored.is_some() {
                keys.insert(change.key.clone());
            } else {
                keys.remove(&change.key);
            }
        }
        Ok(keys)
    }
}

impl<K: RemoteKv> ReadTables for Tables<'_, K> {
    fn entry(&self, full_key: &[u8]) -> Result<Option<Stored>, StoreErrorKind> {
        let key = self.key_of(full_key);
        if let Some(change) = self
            .head
            .borrow()
            .pending
            .iter()
            .find(|change| change.key == key)
        {
            return Ok(change.stored.clone());
        }
        match self.fetch(key)?.value {
            None => Ok(None),
            Some(bytes) => decode_stored(&bytes).map(Some).ok_or_else(|| {
                StoreErrorKind::Storage(format!(
                    "the record of a key in namespace {:?} is corrupt",
                    self.namespace
                ))
            }),
        }
    }

    fn keys(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreErrorKind> {
        let mut keys = self.scan()?;
        if self.read_only {
            // A commit that landed during the scan may be half applied in it: scan again
            // against the newer head until a scan spans no commit.
            let started = Instant::now();
            loop {
                let (_, now) = self.store.head(self.namespace)?;
                if now.commits == self.head.borrow().commits {
                    break;
                }
                if started.elapsed() >= self.store.config.retry_for {
                    return Err(StoreErrorKind::Unavailable(
                        "the namespace kept changing during a list".to_owned(),
                    ));
                }
                *self.head.borrow_mut() = now;
                keys = self.scan()?;
            }
        }
        let prefix = engine::namespace_prefix(self.namespace)?;
        let range = (start, end);
        Ok(keys
            .into_iter()
            .map(|key| engine::full_key(&prefix, &key))
            .filter(|full| std::ops::RangeBounds::contains(&range, full.as_slice()))
            .take(limit)
            .collect())
    }

    fn usage(&self, _namespace: &str) -> Result<Usage, StoreErrorKind> {
        Ok(self.usage)
    }
}

impl<K: RemoteKv> WriteTables for Tables<'_, K> {
    fn put(&mut self, full_key: &[u8], stored: &Stored) -> Result<(), StoreErrorKind> {
        let key = self.key_of(full_key).to_vec();
        self.writes.insert(key, Some(stored.clone()));
        Ok(())
    }

    fn remove(&mut self, full_key: &[u8]) -> Result<(), StoreErrorKind> {
        let key = self.key_of(full_key).to_vec();
        self.writes.insert(key, None);
        Ok(())
    }

    fn set_usage(&mut self, _namespace: &str, usage: Usage) -> Result<(), StoreErrorKind> {
        self.usage = usage;
        Ok(())
    }

    fn last_revision(&self) -> Result<u64, StoreErrorKind> {
        Ok(self.last_revision)
    }

    fn set_last_revision(&mut self, revision: u64) -> Result<(), StoreErrorKind> {
        self.last_revision = revision;
        Ok(())
    }
}

/// The remote key of an entry key.
pub fn data_key(key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut remote = String::with_capacity(DATA_PREFIX.len() + 2 * key.len());
    remote.push_str(DATA_PREFIX);
    for byte in key {
        remote.push(char::from(HEX[usize::from(byte >> 4)]));
        remote.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    remote
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn encode_stored(stored: &Stored) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + stored.value.len());
    bytes.extend_from_slice(&stored.revision.to_le_bytes());
    bytes.extend_from_slice(&stored.value);
    bytes
}

fn decode_stored(bytes: &[u8]) -> Option<Stored> {
    let (revision, value) = bytes.split_first_chunk::<8>()?;
    Some(Stored {
        revision: u64::from_le_bytes(*revision),
        value: value.to_vec(),
    })
}

/// One committed change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    key: Vec<u8>,
    /// The key's sequence when the transaction read it: applying is a compare-and-set on it.
    expected: u64,
    /// `Some` = write this entry, `None` = delete the key.
    stored: Option<Stored>,
}

/// A namespace's commit record.
///
/// Layout: `"MHKV"`, version `1: u8`, `commits: u64`, `last_revision: u64`, `keys: u64`,
/// `bytes: u64`, `changes: u32`, then per change `key length: u16`, key, `expected: u64`,
/// `kind: u8` (0 delete, 1 write) and for a write `revision: u64`, `value length: u32`, value;
/// integers little-endian.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Head {
    /// Commits so far: a reader or a no-op writer compares it to see whether one slipped in.
    commits: u64,
    last_revision: u64,
    usage: Usage,
    /// The last commit's changes, until they are applied to their keys.
    pending: Vec<Change>,
}

const HEAD_MAGIC: &[u8; 4] = b"MHKV";
const HEAD_VERSION: u8 = 1;

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(HEAD_MAGIC);
        out.push(HEAD_VERSION);
        for number in [
            self.commits,
            self.last_revision,
            self.usage.keys,
            self.usage.bytes,
        ] {
            out.extend_from_slice(&number.to_le_bytes());
        }
        // Batches are at most `max_batch_ops` (1000) long and keys at most 256 bytes by
        // default; saturating keeps a misconfigured limit from wrapping (decode then fails).
        let count = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for change in &self.pending {
            let key_len = u16::try_from(change.key.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&key_len.to_le_bytes());
            out.extend_from_slice(&change.key);
            out.extend_from_slice(&change.expected.to_le_bytes());
            match &change.stored {
                None => out.push(0),
                Some(stored) => {
                    out.push(1);
                    out.extend_from_slice(&stored.revision.to_le_bytes());
                    let value_len = u32::try_from(stored.value.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&value_len.to_le_bytes());
                    out.extend_from_slice(&stored.value);
                }
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Head> {
        let mut reader = Reader(bytes);
        if reader.take(4)? != HEAD_MAGIC || reader.take(1)? != [HEAD_VERSION] {
            return None;
        }
        let commits = reader.u64()?;
        let last_revision = reader.u64()?;
        let usage = Usage {
            keys: reader.u64()?,
            bytes: reader.u64()?,
        };
        let count = reader.u32()?;
        let mut pending = Vec::new();
        for _ in 0..count {
            let key_len = usize::from(u16::from_le_bytes(reader.take(2)?.try_into().ok()?));
            let key = reader.take(key_len)?.to_vec();
            let expected = reader.u64()?;
            let stored = match reader.take(1)?[0] {
                0 => None,
                1 => {
                    let revision = reader.u64()?;
                    let value_len = usize::try_from(reader.u32()?).ok()?;
                    Some(Stored {
                        revision,
                        value: reader.take(value_len)?.to_vec(),
                    })
                }
                _ => return None,
            };
            pending.push(Change {
                key,
                expected,
                stored,
            });
        }
        reader.0.is_empty().then_some(Head {
            commits,
            last_revision,
            usage,
            pending,
        })
    }
}

struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize) -> Option<&'b [u8]> {
        let (taken, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(taken)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOutcome, Namespace, Store, WriteOp};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A remote service in memory that can be told to fail every call after a number of
    /// successful writes (a writer that loses its connection mid-transaction).
    #[derive(Debug, Default)]
    struct FlakyKv {
        records: Mutex<HashMap<(String, String), Record>>,
        sequence: Mutex<u64>,
        writes_left: AtomicUsize,
    }

    impl FlakyKv {
        fn healthy() -> FlakyKv {
            FlakyKv {
                writes_left: AtomicUsize::new(usize::MAX),
                ..FlakyKv::default()
            }
        }

        fn write(
            &self,
            namespace: &str,
            key: &str,
            value: Option<&[u8]>,
            expected: u64,
        ) -> Result<Option<u64>, StoreErrorKind> {
            if self
                .writes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_err()
            {
                return Err(StoreErrorKind::Unavailable("connection lost".to_owned()));
            }
            let mut records = self.records.lock().unwrap();
            let slot = records
                .entry((namespace.to_owned(), key.to_owned()))
                .or_default();
            if slot.sequence != expected {
                return Ok(None);
            }
            let mut sequence = self.sequence.lock().unwrap();
            *sequence += 1;
            *slot = Record {
                sequence: *sequence,
                value: value.map(<[u8]>::to_vec),
            };
            Ok(Some(*sequence))
        }
    }

    impl RemoteKv for FlakyKv {
        fn get(&self, namespace: &str, key: &str) -> Result<Record, StoreErrorKind> {
            let records = self.records.lock().unwrap();
            Ok(records
                .get(&(namespace.to_owned(), key.to_owned()))
                .cloned()
                .unwrap_or_default())
        }

        fn put(
            &self,
            namespace: &str,
            key: &str,
            value: &[u8],
            expected: u64,
        ) -> Result<Option<u64>, StoreErrorKind> {
            self.write(namespace, key, Some(value), expected)
        }

        fn delete(
            &self,
            namespace: &str,
            key: &str,
            expected: u64,
        ) -> Result<Option<u64>, StoreErrorKind> {
            self.write(namespace, key, None, expected)
        }

        fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StoreErrorKind> {
            let records = self.records.lock().unwrap();
            Ok(records
                .iter()
                .filter(|((ns, key), record)| {
                    ns == namespace && key.starts_with(prefix) && record.value.is_some()
                })
                .map(|((_, key), _)| key.clone())
                .collect())
        }

        fn max_record_bytes(&self) -> usize {
            1 << 20
        }
    }

    fn batch_of_three() -> Vec<WriteOp> {
        ["a", "b", "c"]
            .into_iter()
            .map(|key| WriteOp::Set {
                key: key.as_bytes().to_vec(),
                value: b"new".to_vec(),
            })
            .collect()
    }

    #[test]
    fn a_batch_cut_off_after_its_commit_is_seen_whole_and_finished_by_the_next_writer() {
        let store = RemoteStore::new(FlakyKv::healthy(), RemoteConfig::default());
        let ns = Namespace::new("cut");
        for key in ["a", "b", "c"] {
            store.set(&ns, key.as_bytes(), b"old").unwrap();
        }
        // The commit record and one key get through; then the connection drops.
        store.kv.writes_left.store(2, Ordering::SeqCst);
        assert_eq!(
            store.batch(&ns, &batch_of_three()),
            Ok(BatchOutcome::Applied)
        );
        store.kv.writes_left.store(usize::MAX, Ordering::SeqCst);
        let raw = |key: &str| store.kv.get("cut", &data_key(key.as_bytes())).unwrap();
        assert_eq!(
            decode_stored(&raw("a").value.unwrap()).unwrap().value,
            b"new"
        );
        assert_eq!(
            decode_stored(&raw("c").value.unwrap()).unwrap().value,
            b"old"
        );
        // Readers see the whole batch through the commit record.
        for key in ["a", "b", "c"] {
            assert_eq!(
                store.get(&ns, key.as_bytes()).unwrap().unwrap().value,
                b"new"
            );
        }
        // Another writer (any process) finishes it before its own write.
        let stale = store.get(&ns, b"c").unwrap().unwrap().revision;
        store.set(&ns, b"d", b"x").unwrap();
        assert_eq!(
            decode_stored(&raw("c").value.unwrap()).unwrap().revision,
            stale
        );
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 4, bytes: 14 });
    }

    #[test]
    fn a_commit_that_never_reached_the_service_writes_nothing() {
        let store = RemoteStore::new(FlakyKv::healthy(), RemoteConfig::default());
        let ns = Namespace::new("lost");
        store.set(&ns, b"a", b"old").unwrap();
        store.kv.writes_left.store(0, Ordering::SeqCst);
        let error = store.batch(&ns, &batch_of_three()).unwrap_err();
        assert!(
            matches!(error.kind(), StoreErrorKind::Unavailable(_)),
            "{error}"
        );
        store.kv.writes_left.store(usize::MAX, Ordering::SeqCst);
        assert_eq!(store.get(&ns, b"a").unwrap().unwrap().value, b"old");
        assert_eq!(store.get(&ns, b"b").unwrap(), None);
    }

    #[test]
    fn the_commit_record_round_trips_and_rejects_garbage() {
        let head = Head {
            commits: 7,
            last_revision: 42,
            usage: Usage { keys: 2, bytes: 9 },
            pending: vec![
                Change {
                    key: b"\x00k".to_vec(),
                    expected: 3,
                    stored: Some(Stored {
                        revision: 42,
                        value: b"v".to_vec(),
                    }),
                },
                Change {
                    key: b"gone".to_vec(),
                    expected: 5,
                    stored: None,
                },
            ],
        };
        let bytes = head.encode();
        assert_eq!(Head::decode(&bytes), Some(head));
        for cut in 0..bytes.len() {
            assert_eq!(Head::decode(&bytes[..cut]), None, "{cut}");
        }
        assert_eq!(data_key(b"\x00\xffA"), "k.00ff41");
        assert_eq!(decode_hex("00ff41"), Some(b"\x00\xffA".to_vec()));
        assert_eq!(decode_hex("0g"), None);
    }
}
