//! `RedbStore`: the [`Store`] in one redb file (the layout is in the crate's docs).

use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::engine::{Backend, ReadTables, Stored, WriteTables};
use crate::error::{OpenError, OpenErrorKind, StoreErrorKind};
use crate::stats::Recorder;
use crate::types::{Config, Durability, EVENTUAL_FLUSH_INTERVAL, Limits, Usage};

/// Full key (`[namespace length: u8][namespace][key]`) → `[revision: u64 LE][value]`.
const ENTRIES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("entries");
/// Namespace name → (keys, bytes).
const USAGE: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("usage");
/// `"format_version"` → [`FORMAT_VERSION`], `"revision"` → the last revision handed out.
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

const FORMAT_VERSION_KEY: &str = "format_version";
const REVISION_KEY: &str = "revision";

/// The layout version this build reads and writes; a file with another one is refused.
pub const FORMAT_VERSION: u64 = 1;

/// The [`Store`] in one redb database file: ACID transactions, checksummed copy-on-write
/// pages, crash-safe. Open a file once per process (redb locks it).
///
/// ```no_run
/// use state::{Config, Namespace, RedbStore, Store};
///
/// let store = RedbStore::open("/var/lib/modhost/state/modhost.redb".as_ref(), Config::default())?;
/// store.set(&Namespace::new("users"), b"alice", b"admin")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedbStore {
    db: redb::Database,
    path: PathBuf,
    config: Config,
    recorder: Recorder,
    /// When a commit last reached the disk (drives [`Durability::Eventual`]'s flushes).
    last_durable: Mutex<Instant>,
    /// Commits made since the last durable one (only [`Durability::Eventual`] makes them).
    pending: AtomicBool,
    /// The file system refused a write: redb then refuses writes until reopened, and reports
    /// `PreviousIo`, which is classified `ReadOnly` too.
    write_refused: AtomicBool,
}

impl RedbStore {
    /// Opens the database at `path`, creating it (and its parent directories) if missing.
    ///
    /// A file that is not a redb database of this layout, or is damaged, is an [`OpenError`]
    /// and is left exactly as it was.
    pub fn open(path: &Path, config: Config) -> Result<RedbStore, OpenError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| OpenError::new(path, OpenErrorKind::Io(error)))?;
        }
        RedbStore::open_with(path, config, || {
            redb::Builder::new()
                .set_cache_size(config.cache_bytes)
                .create(path)
        })
    }

    /// Opens the database `open` returns; `path` names it in errors.
    fn open_with(
        path: &Path,
        config: Config,
        open: impl FnOnce() -> Result<redb::Database, redb::DatabaseError>,
    ) -> Result<RedbStore, OpenError> {
        let fail = |kind| OpenError::new(path, kind);
        // redb documents that opening a file damaged outside redb may panic rather than return
        // an error; a damaged file must not take the host down.
        let db = match catch_unwind(AssertUnwindSafe(open)) {
            Ok(Ok(db)) => db,
            Ok(Err(error)) => return Err(fail(open_error_kind(error.into()))),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("redb panicked");
                return Err(fail(OpenErrorKind::Corrupt(message.to_owned())));
            }
        };
        init_tables(&db).map_err(fail)?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            config,
            recorder: Recorder::default(),
            last_durable: Mutex::new(Instant::now()),
            pending: AtomicBool::new(false),
            write_refused: AtomicBool::new(false),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every committed write durable now (an fsync'd commit). Only useful with
    /// [`Durability::Eventual`]; with `Immediate` every write already is, and with nothing
    /// pending it does nothing. The error has no namespace: a flush is for the whole store.
    pub fn flush(&self) -> Result<(), StoreErrorKind> {
        if !self.pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|error| self.kind(error))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|error| self.kind(error))?;
        self.commit(txn, true)
    }

    /// Classifies a redb error, remembering a refused write for the `PreviousIo` that follows.
    fn kind(&self, error: impl Into<redb::Error>) -> StoreErrorKind {
        match error.into() {
            redb::Error::Io(error) => {
                let kind = StoreErrorKind::from_io(&error);
                if matches!(kind, StoreErrorKind::ReadOnly(_)) {
                    self.write_refused.store(true, Ordering::Relaxed);
                }
                kind
            }
            redb::Error::PreviousIo if self.write_refused.load(Ordering::Relaxed) => {
                StoreErrorKind::ReadOnly(
                    "an earlier write was refused; writes resume once the store is reopened"
                        .to_owned(),
                )
            }
            other => StoreErrorKind::Storage(other.to_string()),
        }
    }

    fn commit(&self, txn: redb::WriteTransaction, durable: bool) -> Result<(), StoreErrorKind> {
        let started = Instant::now();
        // Set while this transaction holds redb's write lock, so the flag follows commit order.
        let was_pending = self.pending.swap(!durable, Ordering::AcqRel);
        if let Err(error) = txn.commit() {
            self.pending
                .store(was_pending || !durable, Ordering::Release);
            return Err(self.kind(error));
        }
        self.recorder.commit(started.elapsed());
        if durable {
            *self
                .last_durable
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        Ok(())
    }

    /// Whether the next commit goes to the disk (see [`Durability::Eventual`]).
    fn next_commit_durable(&self) -> bool {
        match self.config.durability {
            Durability::Immediate => true,
            Durability::Eventual => {
                let last = *self
                    .last_durable
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                last.elapsed() >= EVENTUAL_FLUSH_INTERVAL
            }
        }
    }
}

/// Creates the tables of a new file, or checks an existing file's format version.
fn init_tables(db: &redb::Database) -> Result<(), OpenErrorKind> {
    let storage = |error: redb::Error| open_error_kind(error);
    let txn = db.begin_write().map_err(|error| storage(error.into()))?;
    {
        let entries = txn
            .open_table(ENTRIES)
            .map_err(|error| storage(error.into()))?;
        txn.open_table(USAGE)
            .map_err(|error| storage(error.into()))?;
        let mut meta = txn
            .open_table(META)
            .map_err(|error| storage(error.into()))?;
        let found = meta
            .get(FORMAT_VERSION_KEY)
            .map_err(|error| storage(error.into()))?
            .map(|version| version.value());
        match found {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(OpenErrorKind::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => {
                if !entries.is_empty().map_err(|error| storage(error.into()))? {
                    return Err(OpenErrorKind::Corrupt(
                        "entries without a format version".to_owned(),
                    ));
                }
                meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                    .map_err(|error| storage(error.into()))?;
            }
        }
    }
    txn.commit().map_err(|error| storage(error.into()))
}

fn open_error_kind(error: redb::Error) -> OpenErrorKind {
    match error {
        redb::Error::DatabaseAlreadyOpen => OpenErrorKind::AlreadyOpen,
        redb::Error::Corrupted(reason) => OpenErrorKind::Corrupt(reason),
        redb::Error::Io(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            OpenErrorKind::Corrupt(error.to_string())
        }
        redb::Error::Io(error) => OpenErrorKind::Io(error),
        other => OpenErrorKind::Storage(other.to_string()),
    }
}

fn decode_stored(bytes: &[u8]) -> Result<Stored, StoreErrorKind> {
    let (revision, value) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreErrorKind::Storage("an entry is shorter than its revision".into()))?;
    Ok(Stored {
        revision: u64::from_le_bytes(*revision),
        value: value.to_vec(),
    })
}

/// The tables of one transaction: `E`/`U` are read-only tables in a read transaction and
/// writable ones in a write transaction; `M` is the meta table (unused by reads).
struct Tables<'s, E, U, M> {
    store: &'s RedbStore,
    entries: E,
    usage: U,
    meta: M,
}

impl<E, U, M> ReadTables for Tables<'_, E, U, M>
where
    E: ReadableTable<&'static [u8], &'static [u8]>,
    U: ReadableTable<&'static str, (u64, u64)>,
{
    fn entry(&self, full_key: &[u8]) -> Result<Option<Stored>, StoreErrorKind> {
        let found = self
            .entries
            .get(full_key)
            .map_err(|error| self.store.kind(error))?;
        found.map(|bytes| decode_stored(bytes.value())).transpose()
    }

    fn keys(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreErrorKind> {
        let range = self
            .entries
            .range::<&[u8]>((start, end))
            .map_err(|error| self.store.kind(error))?;
        range
            .take(limit)
            .map(|item| {
                item.map(|(key, _)| key.value().to_vec())
                    .map_err(|error| self.store.kind(error))
            })
            .collect()
    }

    fn usage(&self, namespace: &str) -> Result<Usage, StoreErrorKind> {
        let found = self
            .usage
            .get(namespace)
            .map_err(|error| self.store.kind(error))?;
        Ok(found.map_or(Usage::default(), |usage| {
            let (keys, bytes) = usage.value();
            Usage { keys, bytes }
        }))
    }
}

type WriteTablesOf<'s, 'txn> = Tables<
    's,
    redb::Table<'txn, &'static [u8], &'static [u8]>,
    redb::Table<'txn, &'static str, (u64, u64)>,
    redb::Table<'txn, &'static str, u64>,
>;

impl WriteTables for WriteTablesOf<'_, '_> {
    fn put(&mut self, full_key: &[u8], stored: &Stored) -> Result<(), StoreErrorKind> {
        let mut bytes = Vec::with_capacity(8 + stored.value.len());
        bytes.extend_from_slice(&stored.revision.to_le_bytes());
        bytes.extend_from_slice(&stored.value);
        self.entries
            .insert(full_key, bytes.as_slice())
            .map_err(|error| self.store.kind(error))?;
        Ok(())
    }

    fn remove(&mut self, full_key: &[u8]) -> Result<(), StoreErrorKind> {
        self.entries
            .remove(full_key)
            .map_err(|error| self.store.kind(error))?;
        Ok(())
    }

    fn set_usage(&mut self, namespace: &str, usage: Usage) -> Result<(), StoreErrorKind> {
        let result = if usage == Usage::default() {
            self.usage.remove(namespace).map(drop)
        } else {
            self.usage
                .insert(namespace, (usage.keys, usage.bytes))
                .map(drop)
        };
        result.map_err(|error| self.store.kind(error))
    }

    fn last_revision(&self) -> Result<u64, StoreErrorKind> {
        let found = self
            .meta
            .get(REVISION_KEY)
            .map_err(|error| self.store.kind(error))?;
        Ok(found.map_or(0, |revision| revision.value()))
    }

    fn set_last_revision(&mut self, revision: u64) -> Result<(), StoreErrorKind> {
        self.meta
            .insert(REVISION_KEY, revision)
            .map_err(|error| self.store.kind(error))?;
        Ok(())
    }
}

impl Backend for RedbStore {
    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn read<R>(
        &self,
        _namespace: &str,
        read: impl FnOnce(&dyn ReadTables) -> Result<R, StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        let txn = self.db.begin_read().map_err(|error| self.kind(error))?;
        let tables = Tables {
            store: self,
            entries: txn.open_table(ENTRIES).map_err(|error| self.kind(error))?,
            usage: txn.open_table(USAGE).map_err(|error| self.kind(error))?,
            meta: (),
        };
        read(&tables)
    }

    fn write<R>(
        &self,
        _namespace: &str,
        write: impl Fn(&mut dyn WriteTables) -> Result<(R, bool), StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        // redb runs one write transaction at a time: `begin_write` waits for the others, so the
        // reads and writes of `write` are one atomic step.
        let mut txn = self.db.begin_write().map_err(|error| self.kind(error))?;
        let durable = self.next_commit_durable();
        let durability = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(durability)
            .map_err(|error| self.kind(error))?;
        let (result, changed) = {
            let mut tables = Tables {
                store: self,
                entries: txn.open_table(ENTRIES).map_err(|error| self.kind(error))?,
                usage: txn.open_table(USAGE).map_err(|error| self.kind(error))?,
                meta: txn.open_table(META).map_err(|error| self.kind(error))?,
            };
            write(&mut tables)?
        };
        if changed {
            self.commit(txn, durable)?;
        }
        // Otherwise dropping `txn` aborts it: nothing to write, no fsync to pay.
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::refuses_writes;
    use crate::{Namespace, Store};

    /// A real file whose writes the "file system" can start refusing, as a full disk or a
    /// read-only remount would. Tests run as root, where `chmod` stops nothing, and mounting
    /// needs privileges a test does not have; redb's storage backend is where the kernel's
    /// errors enter, so that is where this injects them.
    #[derive(Debug)]
    struct RefusingFile {
        file: redb::backends::FileBackend,
        refuse: Arc<AtomicBool>,
        refusal: std::io::ErrorKind,
    }

    impl RefusingFile {
        fn check(&self) -> std::io::Result<()> {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(std::io::Error::from(self.refusal));
            }
            Ok(())
        }
    }

    impl redb::StorageBackend for RefusingFile {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }

        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }

        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }

        fn try_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_range(start, end)
        }

        fn try_lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_shared_range(start, end)
        }

        fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
            self.file.lock_range(start, end)
        }

        fn lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.file.lock_shared_range(start, end)
        }

        fn unlock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.file.unlock_range(start, end)
        }

        fn query_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.query_lock_range(start, end)
        }
    }

    fn open_refusing(
        path: &Path,
        refusal: std::io::ErrorKind,
        durability: Durability,
    ) -> (RedbStore, Arc<AtomicBool>) {
        let refuse = Arc::new(AtomicBool::new(false));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        let backend = RefusingFile {
            file: redb::backends::FileBackend::new(file).unwrap(),
            refuse: Arc::clone(&refuse),
            refusal,
        };
        let config = Config {
            durability,
            ..Config::default()
        };
        let store = RedbStore::open_with(path, config, || {
            redb::Builder::new().create_with_backend(backend)
        })
        .unwrap();
        (store, refuse)
    }

    #[test]
    fn a_refused_write_is_read_only_and_reads_keep_working() {
        use std::io::ErrorKind;
        for refusal in [
            ErrorKind::StorageFull,
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::PermissionDenied,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("modhost.redb");
            let ns = Namespace::new("users");
            {
                let (store, refuse) = open_refusing(&path, refusal, Durability::Immediate);
                store.set(&ns, b"kept", b"1").unwrap();
                refuse.store(true, Ordering::SeqCst);
                for attempt in [&b"refused"[..], b"again"] {
                    let error = store.set(&ns, attempt, b"2").unwrap_err();
                    assert!(
                        matches!(error.kind(), StoreErrorKind::ReadOnly(_)),
                        "{refusal:?}: {error}"
                    );
                    assert!(
                        error
                            .to_string()
                            .starts_with(r#"store "users": storage refused the write: "#)
                    );
                }
                assert_eq!(store.get(&ns, b"kept").unwrap().unwrap().value, b"1");
                assert_eq!(
                    store.list(&ns, b"", None, 10).unwrap().keys,
                    vec![b"kept".to_vec()]
                );
                assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 1, bytes: 5 });
                assert!(store.stats().errors >= 2);
            }
            // Once the file system takes writes again, a reopened store writes.
            let store = RedbStore::open(&path, Config::default()).unwrap();
            assert_eq!(store.get(&ns, b"kept").unwrap().unwrap().value, b"1");
            assert!(!store.exists(&ns, b"again").unwrap());
            store.set(&ns, b"later", b"3").unwrap();
        }
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("modhost.redb");
        drop(RedbStore::open(&path, Config::default()).unwrap());
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(FORMAT_VERSION_KEY, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let error = RedbStore::open(&path, Config::default()).unwrap_err();
        assert!(matches!(
            error.kind(),
            OpenErrorKind::UnsupportedFormat {
                found: 99,
                supported: 1
            }
        ));
        assert_eq!(
            error.to_string(),
            format!("state database {path:?} has format version 99, this build reads version 1")
        );
    }

    #[test]
    fn eventual_commits_go_to_disk_after_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("modhost.redb");
        let store = RedbStore::open(
            &path,
            Config {
                durability: Durability::Eventual,
                ..Config::default()
            },
        )
        .unwrap();
        assert!(!store.next_commit_durable());
        *store.last_durable.lock().unwrap() = Instant::now() - EVENTUAL_FLUSH_INTERVAL;
        assert!(store.next_commit_durable());
        store.set(&Namespace::new("n"), b"k", b"v").unwrap();
        assert!(
            !store.next_commit_durable(),
            "the durable commit resets the clock"
        );
    }

    #[test]
    fn refused_writes_are_read_only_other_io_is_storage() {
        use std::io::{Error, ErrorKind};
        for kind in [
            ErrorKind::ReadOnlyFilesystem,
            ErrorKind::StorageFull,
            ErrorKind::PermissionDenied,
            ErrorKind::QuotaExceeded,
            ErrorKind::FileTooLarge,
        ] {
            assert!(refuses_writes(kind), "{kind:?}");
            assert!(matches!(
                StoreErrorKind::from_io(&Error::from(kind)),
                StoreErrorKind::ReadOnly(_)
            ));
        }
        assert!(matches!(
            StoreErrorKind::from_io(&Error::from(ErrorKind::InvalidData)),
            StoreErrorKind::Storage(_)
        ));
    }
}
