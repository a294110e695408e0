//! The `state` integration tests: one behaviour suite run against every backend, real-file
//! faults (corrupt, truncated, SIGKILL) and concurrency.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod concurrency;
mod files;
mod suite;

use state::{Config, Durability, MemoryStore, RedbStore, Store};

/// Every backend the suites run against, each in a fresh state, with the temp dir that holds
/// its file (if any) kept alive beside it.
fn backends() -> Vec<(&'static str, Box<dyn Store>, Option<tempfile::TempDir>)> {
    let mut backends: Vec<(&'static str, Box<dyn Store>, Option<tempfile::TempDir>)> =
        vec![("memory", Box::new(MemoryStore::default()), None)];
    for (name, durability) in [
        ("redb immediate", Durability::Immediate),
        ("redb eventual", Durability::Eventual),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            durability,
            ..Config::default()
        };
        let store = RedbStore::open(&dir.path().join("state/modhost.redb"), config)
            .expect("open a new database");
        backends.push((name, Box::new(store), Some(dir)));
    }
    backends
}
