//! `RedbStore` on real files: reopening, damaged files, a second opener, and SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use state::{Config, Durability, Namespace, OpenErrorKind, RedbStore, Store, Usage};

fn open(path: &Path) -> RedbStore {
    RedbStore::open(path, Config::default()).expect("open the database")
}

#[test]
fn entries_revisions_and_usage_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/modhost.redb");
    let ns = Namespace::new("users");
    let last = {
        let store = open(&path);
        store.set(&ns, b"alice", b"admin").unwrap();
        store.set(&ns, b"bob", b"guest").unwrap();
        let last = store.set(&ns, b"gone", b"x").unwrap();
        assert!(store.delete(&ns, b"gone").unwrap());
        last
    };
    let store = open(&path);
    assert_eq!(store.path(), path);
    assert_eq!(store.get(&ns, b"alice").unwrap().unwrap().value, b"admin");
    assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 2, bytes: 18 });
    // The revision counter is persisted: the deleted key's revision is not handed out again.
    assert!(store.set(&ns, b"carol", b"x").unwrap() > last);
}

#[test]
fn eventual_writes_are_kept_by_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modhost.redb");
    let ns = Namespace::new("lazy");
    let config = Config {
        durability: Durability::Eventual,
        ..Config::default()
    };
    {
        let store = RedbStore::open(&path, config).unwrap();
        for index in 0..50 {
            store
                .set(&ns, format!("k{index}").as_bytes(), b"v")
                .unwrap();
        }
        store.flush().unwrap();
        store.set(&ns, b"after-flush", b"v").unwrap();
    }
    let store = open(&path);
    assert_eq!(store.usage(&ns).unwrap().keys, 51);
    assert!(store.exists(&ns, b"after-flush").unwrap());
}

#[test]
fn a_store_far_larger_than_its_cache_reads_back_whole() {
    // 2 MiB of values through caches of nothing and of 64 KiB, with Eventual commits (redb
    // keeps those pages in its write buffer, which the cache bound also limits); then read
    // back, listed, and read again after a reopen with the default cache.
    for cache_bytes in [0, 64 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("modhost.redb");
        let ns = Namespace::new("big");
        let value = |index: u32| vec![(index % 251) as u8; 1000 + (index % 7) as usize];
        for durability in [Durability::Immediate, Durability::Eventual] {
            let config = Config {
                cache_bytes,
                durability,
                ..Config::default()
            };
            let store = RedbStore::open(&path, config).unwrap();
            let offset = if durability == Durability::Immediate {
                0
            } else {
                1000
            };
            for index in offset..offset + 1000 {
                store
                    .set(&ns, format!("k{index:05}").as_bytes(), &value(index))
                    .unwrap();
            }
            for index in (0..offset + 1000).step_by(97) {
                let entry = store.get(&ns, format!("k{index:05}").as_bytes()).unwrap();
                assert_eq!(
                    entry.unwrap().value,
                    value(index),
                    "cache {cache_bytes}, k{index}"
                );
            }
        }
        let store = open(&path);
        assert_eq!(store.usage(&ns).unwrap().keys, 2000);
        let page = store.list(&ns, b"k0199", None, 3).unwrap();
        assert_eq!(page.keys, [&b"k01990"[..], b"k01991", b"k01992"]);
        assert_eq!(
            store.get(&ns, b"k01999").unwrap().unwrap().value,
            value(1999)
        );
    }
}

#[test]
fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modhost.redb");
    let _first = open(&path);
    let error = RedbStore::open(&path, Config::default()).unwrap_err();
    assert!(
        matches!(error.kind(), OpenErrorKind::AlreadyOpen),
        "{error}"
    );
}

/// 64 KiB of deterministic noise (xorshift), different from any redb header.
fn noise() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Opening `path` fails as corrupt, names the file, and leaves its bytes alone.
fn assert_refused_untouched(path: &Path) {
    let before = std::fs::read(path).unwrap();
    let error = RedbStore::open(path, Config::default()).unwrap_err();
    assert!(
        matches!(error.kind(), OpenErrorKind::Corrupt(_)),
        "{error:?}"
    );
    assert_eq!(error.path(), path);
    let message = error.to_string();
    eprintln!("{message}");
    let expected = format!("state database {path:?} is corrupt or not a redb file: ");
    assert!(message.starts_with(&expected), "{message}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was modified"
    );
}

#[test]
fn a_file_of_random_bytes_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modhost.redb");
    std::fs::write(&path, noise()).unwrap();
    assert_refused_untouched(&path);
}

#[test]
fn a_truncated_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.redb");
    {
        let store = open(&whole);
        let ns = Namespace::new("bulk");
        for index in 0..200 {
            store
                .set(&ns, format!("key-{index}").as_bytes(), &[7; 2000])
                .unwrap();
        }
    }
    let bytes = std::fs::read(&whole).unwrap();
    let path = dir.path().join("half.redb");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused_untouched(&path);
}

/// Environment variable that turns `sigkill_child_writer` into the writer (its database path).
const CHILD_DATABASE: &str = "STATE_TEST_SIGKILL_DATABASE";
/// `eventual` makes the child write with `Durability::Eventual`; anything else, `Immediate`.
const CHILD_DURABILITY: &str = "STATE_TEST_SIGKILL_DURABILITY";
const CHILD_NAMESPACE: &str = "durable";

/// The child role of the SIGKILL tests; passes trivially when run as an ordinary test. Writes
/// keys `key-00000000`, `key-00000001`, … and prints `ack <n>` after each write returns, for at
/// most 30 s (in case the parent is gone).
#[test]
fn sigkill_child_writer() {
    let Some(path) = std::env::var_os(CHILD_DATABASE) else {
        return;
    };
    let durability = match std::env::var(CHILD_DURABILITY).as_deref() {
        Ok("eventual") => Durability::Eventual,
        _ => Durability::Immediate,
    };
    let config = Config {
        durability,
        ..Config::default()
    };
    let store = RedbStore::open(Path::new(&path), config).unwrap();
    let ns = Namespace::new(CHILD_NAMESPACE);
    let started = Instant::now();
    let mut index: u64 = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let key = format!("key-{index:08}");
        store
            .set(&ns, key.as_bytes(), &index.to_le_bytes())
            .unwrap();
        println!("ack {index}");
        index += 1;
    }
}

/// The index of an `ack N` line. The first one shares its line with the harness's
/// `test files::sigkill_child_writer ... ` (printed without a newline under `--nocapture`).
fn ack(line: &str) -> Option<u64> {
    let at = line.find("ack ")?;
    Some(line[at + 4..].trim().parse().unwrap())
}

/// Runs the child writer on `path`, SIGKILLs it after `acks` acknowledgements, and returns
/// every index it acknowledged (including those still in the pipe at the kill).
fn write_then_sigkill(path: &Path, durability: &str, acks: usize) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "files::sigkill_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATABASE, path)
        .env(CHILD_DURABILITY, durability)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    // The child stops by itself after 30 s, closing stdout, so this loop is bounded.
    while acknowledged.len() < acks {
        let Some(line) = lines.next() else { break };
        if let Some(index) = ack(&line.unwrap()) {
            acknowledged.push(index);
        }
    }
    assert_eq!(
        acknowledged.len(),
        acks,
        "the child stopped acknowledging early"
    );
    child.kill().unwrap(); // SIGKILL
    // Acks already in the pipe count too: those writes returned before the kill.
    for line in lines {
        if let Some(index) = ack(&line.unwrap()) {
            acknowledged.push(index);
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was not killed: {status}");
    acknowledged
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modhost.redb");
    let acknowledged = write_then_sigkill(&path, "immediate", 300);

    let store = open(&path);
    let ns = Namespace::new(CHILD_NAMESPACE);
    for index in &acknowledged {
        let key = format!("key-{index:08}");
        let entry = store.get(&ns, key.as_bytes()).unwrap();
        assert_eq!(
            entry.map(|entry| entry.value),
            Some(index.to_le_bytes().to_vec()),
            "acknowledged {key} was lost"
        );
    }
    let usage = store.usage(&ns).unwrap();
    // At most the one write in flight at the kill may have landed unacknowledged.
    let acked = acknowledged.len() as u64;
    assert!(
        usage.keys == acked || usage.keys == acked + 1,
        "{usage:?} for {acked} acks"
    );
    store.set(&ns, b"after", b"reopen").unwrap();
}

/// What `Durability::Eventual` documents: a SIGKILL may lose the writes since the last durable
/// commit, but the file reopens consistent, holding exactly a prefix of the writes.
#[test]
fn eventual_writes_after_sigkill_are_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modhost.redb");
    let acknowledged = write_then_sigkill(&path, "eventual", 300);

    let store = open(&path);
    let ns = Namespace::new(CHILD_NAMESPACE);
    let usage = store.usage(&ns).unwrap();
    let kept = usage.keys;
    assert!(kept <= acknowledged.len() as u64 + 1, "{usage:?}");
    // The usage row, the entries and the revision counter were committed together.
    let mut listed = 0;
    let mut cursor = None;
    loop {
        let page = store.list(&ns, b"key-", cursor.as_deref(), 1000).unwrap();
        for key in &page.keys {
            assert_eq!(
                key,
                format!("key-{listed:08}").as_bytes(),
                "a hole in the prefix"
            );
            listed += 1;
        }
        let Some(next) = page.cursor else { break };
        cursor = Some(next);
    }
    assert_eq!(listed, kept);
    eprintln!(
        "eventual: {kept} of {} acknowledged writes kept",
        acknowledged.len()
    );
    let revision = store.set(&ns, b"after", b"reopen").unwrap();
    assert!(
        revision > kept,
        "revision {revision} reused after the crash"
    );
}
