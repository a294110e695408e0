//! `MemoryStore`: the [`Store`] semantics held in memory, for tests and for embedders who want
//! no file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use crate::engine::{Backend, ReadTables, Stored, WriteTables};
use crate::error::StoreErrorKind;
use crate::stats::Recorder;
use crate::types::{Config, Limits, Usage};

/// A [`Store`] in memory: the same validation, quotas, revisions and atomicity as
/// [`RedbStore`](crate::RedbStore) (the logic is shared), nothing persisted.
/// [`Config::durability`] is ignored.
///
/// ```
/// use state::{MemoryStore, Namespace, Store};
///
/// let store = MemoryStore::default();
/// let users = Namespace::new("users");
/// assert_eq!(store.increment(&users, b"visits", 2)?, 2);
/// assert_eq!(store.get(&users, b"visits")?.map(|entry| entry.value), Some(b"2".to_vec()));
/// # Ok::<(), state::StoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    limits: Limits,
    tables: RwLock<MemoryTables>,
    recorder: Recorder,
}

impl MemoryStore {
    /// An empty store with `config`'s limits.
    pub fn new(config: Config) -> MemoryStore {
        MemoryStore {
            limits: config.limits,
            ..MemoryStore::default()
        }
    }
}

/// The tables: the same full keys as `RedbStore`'s entry table.
#[derive(Debug, Default)]
struct MemoryTables {
    entries: BTreeMap<Vec<u8>, Stored>,
    usage: HashMap<String, Usage>,
    revision: u64,
}

impl ReadTables for MemoryTables {
    fn entry(&self, full_key: &[u8]) -> Result<Option<Stored>, StoreErrorKind> {
        Ok(self.entries.get(full_key).cloned())
    }

    fn keys(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreErrorKind> {
        // `BTreeMap::range` panics on an empty or inverted range; such a range holds nothing.
        if let (Bound::Included(from) | Bound::Excluded(from), Bound::Excluded(to)) = (start, end)
            && from >= to
        {
            return Ok(Vec::new());
        }
        Ok(self
            .entries
            .range::<[u8], _>((start, end))
            .take(limit)
            .map(|(key, _)| key.clone())
            .collect())
    }

    fn usage(&self, namespace: &str) -> Result<Usage, StoreErrorKind> {
        Ok(self.usage.get(namespace).copied().unwrap_or_default())
    }
}

impl WriteTables for MemoryTables {
    fn put(&mut self, full_key: &[u8], stored: &Stored) -> Result<(), StoreErrorKind> {
        self.entries.insert(full_key.to_vec(), stored.clone());
        Ok(())
    }

    fn remove(&mut self, full_key: &[u8]) -> Result<(), StoreErrorKind> {
        self.entries.remove(full_key);
        Ok(())
    }

    fn set_usage(&mut self, namespace: &str, usage: Usage) -> Result<(), StoreErrorKind> {
        if usage == Usage::default() {
            self.usage.remove(namespace);
        } else {
            self.usage.insert(namespace.to_owned(), usage);
        }
        Ok(())
    }

    fn last_revision(&self) -> Result<u64, StoreErrorKind> {
        Ok(self.revision)
    }

    fn set_last_revision(&mut self, revision: u64) -> Result<(), StoreErrorKind> {
        self.revision = revision;
        Ok(())
    }
}

impl Backend for MemoryStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn read<R>(
        &self,
        _namespace: &str,
        read: impl FnOnce(&dyn ReadTables) -> Result<R, StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        // A panic while the lock was held cannot leave the tables half-written: changes are
        // applied by `Mutation::finish` with infallible map operations.
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        read(&*tables)
    }

    fn write<R>(
        &self,
        _namespace: &str,
        write: impl Fn(&mut dyn WriteTables) -> Result<(R, bool), StoreErrorKind>,
    ) -> Result<R, StoreErrorKind> {
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let (result, changed) = write(&mut *tables)?;
        if changed {
            self.recorder.commit(started.elapsed());
        }
        Ok(result)
    }
}
