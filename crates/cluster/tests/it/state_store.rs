//! The JetStream store across processes' worth of clients and through NATS faults.

use std::time::Duration;

use state::{BatchOutcome, Namespace, RemoteKv as _, Store, StoreErrorKind, Usage, WriteOp};

use crate::{Nats, connect, runtime, wait_for};

#[test]
fn two_nodes_incrementing_at_once_lose_nothing() {
    let nats = Nats::start();
    let (runtime_a, runtime_b) = (runtime(), runtime());
    // Two stores with their own connections and runtimes: two nodes of one cluster.
    let node_a = connect(&runtime_a, &nats, "shop");
    let node_b = connect(&runtime_b, &nats, "shop");
    let ns = Namespace::new("module/counter");
    let (threads, increments) = (3, 40);
    std::thread::scope(|scope| {
        for node in [&node_a, &node_b] {
            for _ in 0..threads {
                let ns = &ns;
                scope.spawn(move || {
                    for _ in 0..increments {
                        node.increment(ns, b"hits", 1).unwrap();
                    }
                });
            }
        }
    });
    let total = (2 * threads * increments).to_string().into_bytes();
    assert_eq!(node_a.get(&ns, b"hits").unwrap().unwrap().value, total);
    assert_eq!(node_b.get(&ns, b"hits").unwrap().unwrap().value, total);
    assert_eq!(node_b.usage(&ns).unwrap(), Usage { keys: 1, bytes: 7 });
    // Another cluster on the same NATS server sees none of it.
    let other = connect(&runtime_a, &nats, "other");
    assert_eq!(other.get(&ns, b"hits").unwrap(), None);
}

#[test]
fn a_batch_on_one_node_is_whole_on_the_other_and_a_failed_one_writes_nothing() {
    let nats = Nats::start();
    let (runtime_a, runtime_b) = (runtime(), runtime());
    let node_a = connect(&runtime_a, &nats, "shop");
    let node_b = connect(&runtime_b, &nats, "shop");
    let ns = Namespace::new("module/users");
    let revision = node_a.set(&ns, b"email:ada", b"1").unwrap();
    let stale = [
        WriteOp::Set {
            key: b"user:2".to_vec(),
            value: b"grace".to_vec(),
        },
        WriteOp::CompareAndSwap {
            key: b"email:ada".to_vec(),
            expected: None,
            value: Some(b"2".to_vec()),
        },
    ];
    assert_eq!(
        node_b.batch(&ns, &stale).unwrap(),
        BatchOutcome::Conflict {
            index: 1,
            current: Some(revision)
        }
    );
    assert_eq!(node_a.get(&ns, b"user:2").unwrap(), None);
    let fresh = [
        WriteOp::Set {
            key: b"user:2".to_vec(),
            value: b"grace".to_vec(),
        },
        WriteOp::CompareAndSwap {
            key: b"email:ada".to_vec(),
            expected: Some(revision),
            value: None,
        },
    ];
    assert_eq!(node_b.batch(&ns, &fresh).unwrap(), BatchOutcome::Applied);
    assert_eq!(node_a.get(&ns, b"user:2").unwrap().unwrap().value, b"grace");
    assert!(!node_a.exists(&ns, b"email:ada").unwrap());
    assert_eq!(
        node_a.list(&ns, b"", None, 10).unwrap().keys,
        vec![b"user:2".to_vec()]
    );
}

#[test]
fn nats_down_is_a_clear_error_and_the_store_recovers_with_its_data() {
    let mut nats = Nats::start();
    let runtime = runtime();
    let store = connect(&runtime, &nats, "shop");
    let ns = Namespace::new("module/counter");
    assert_eq!(store.increment(&ns, b"hits", 5).unwrap(), 5);
    nats.stop();
    wait_for(Duration::from_secs(10), || !store.remote().is_connected());
    for error in [
        store.increment(&ns, b"hits", 1).unwrap_err(),
        store.get(&ns, b"hits").unwrap_err(),
    ] {
        assert!(
            matches!(error.kind(), StoreErrorKind::Unavailable(_)),
            "{error}"
        );
        assert!(
            error.to_string().contains("not connected to NATS"),
            "{error}"
        );
    }
    nats.start_again();
    wait_for(Duration::from_secs(15), || store.get(&ns, b"hits").is_ok());
    assert_eq!(store.get(&ns, b"hits").unwrap().unwrap().value, b"5");
    assert_eq!(store.increment(&ns, b"hits", 1).unwrap(), 6);
}

/// A node whose connection dies after a number of writes: what a crash between a batch's
/// commit and the end of its application looks like to the other nodes.
#[derive(Debug)]
struct Dying {
    inner: cluster::JetStreamKv,
    writes_left: std::sync::atomic::AtomicUsize,
}

impl Dying {
    fn write_allowed(&self) -> Result<(), StoreErrorKind> {
        use std::sync::atomic::Ordering;
        self.writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .map(|_| ())
            .map_err(|_| StoreErrorKind::Unavailable("the node died".to_owned()))
    }
}

impl state::RemoteKv for Dying {
    fn get(&self, namespace: &str, key: &str) -> Result<state::Record, StoreErrorKind> {
        self.inner.get(namespace, key)
    }

    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind> {
        self.write_allowed()?;
        self.inner.put(namespace, key, value, expected)
    }

    fn delete(
        &self,
        namespace: &str,
        key: &str,
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind> {
        self.write_allowed()?;
        self.inner.delete(namespace, key, expected)
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StoreErrorKind> {
        self.inner.keys(namespace, prefix)
    }

    fn max_record_bytes(&self) -> usize {
        self.inner.max_record_bytes()
    }
}

#[test]
fn a_node_dying_mid_batch_leaves_no_half_batch_for_the_others() {
    let nats = Nats::start();
    let (runtime_a, runtime_b) = (runtime(), runtime());
    let config = cluster::StateStoreConfig::new(nats.url(), "shop");
    let inner = runtime_a
        .block_on(cluster::JetStreamKv::connect(config))
        .unwrap();
    wait_for(Duration::from_secs(10), || inner.is_connected());
    let dying = state::RemoteStore::new(
        Dying {
            inner,
            writes_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
        },
        state::RemoteConfig::default(),
    );
    let survivor = connect(&runtime_b, &nats, "shop");
    let ns = Namespace::new("module/shop");
    for key in ["a", "b", "c"] {
        dying.set(&ns, key.as_bytes(), b"old").unwrap();
    }
    // The commit record and the first key get through; then the node is gone.
    dying
        .remote()
        .writes_left
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let batch: Vec<WriteOp> = ["a", "b", "c"]
        .into_iter()
        .map(|key| WriteOp::Set {
            key: key.as_bytes().to_vec(),
            value: b"new".to_vec(),
        })
        .collect();
    assert_eq!(dying.batch(&ns, &batch).unwrap(), BatchOutcome::Applied);
    // The raw keys are half written...
    let raw = |key: &[u8]| {
        let record = survivor
            .remote()
            .get("module/shop", &state::data_key(key))
            .unwrap();
        record.value.unwrap()[8..].to_vec()
    };
    assert_eq!((raw(b"a"), raw(b"c")), (b"new".to_vec(), b"old".to_vec()));
    // ...but the other node sees the batch whole, and its next write finishes it.
    for key in ["a", "b", "c"] {
        assert_eq!(
            survivor.get(&ns, key.as_bytes()).unwrap().unwrap().value,
            b"new"
        );
    }
    assert_eq!(survivor.increment(&ns, b"n", 1).unwrap(), 1);
    assert_eq!((raw(b"b"), raw(b"c")), (b"new".to_vec(), b"new".to_vec()));
    assert_eq!(survivor.usage(&ns).unwrap(), Usage { keys: 4, bytes: 14 });
}
