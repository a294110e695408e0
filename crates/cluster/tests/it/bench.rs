//! A measurement, not a check (ignored by default): the JetStream store against the embedded
//! redb store, same machine, same run, interleaved. Run it with
//! `cargo test --release -p cluster --test it -- --ignored --nocapture store_throughput`.

use std::time::{Duration, Instant};

use state::{Config, Durability, Namespace, RedbStore, Store};

use crate::{Nats, connect, runtime};

const ROUND: Duration = Duration::from_secs(2);

/// Calls of `op` per second from `threads` threads over one `ROUND`, and the median latency.
fn measure(threads: usize, op: &(dyn Fn(u64) + Sync)) -> (f64, Duration) {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut turn = thread as u64 * 1_000_000;
                    while started.elapsed() < ROUND {
                        let call = Instant::now();
                        op(turn);
                        latencies.push(call.elapsed());
                        turn += 1;
                    }
                    latencies
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    latencies.sort();
    let ops = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (ops, latencies[latencies.len() / 2])
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn store_throughput() {
    let nats = Nats::start();
    let runtime = runtime();
    let jetstream = connect(&runtime, &nats, "bench");
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, durability| {
        let config = Config {
            durability,
            ..Config::default()
        };
        RedbStore::open(&dir.path().join(name), config).unwrap()
    };
    let immediate = open("immediate.redb", Durability::Immediate);
    let eventual = open("eventual.redb", Durability::Eventual);
    let stores: [(&str, &dyn Store); 3] = [
        ("redb immediate", &immediate),
        ("redb eventual", &eventual),
        ("jetstream", &jetstream),
    ];
    let ns = Namespace::new("bench");
    let value = vec![b'v'; 64];
    for (_, store) in stores {
        for key in 0..100u64 {
            store
                .set(&ns, format!("k{key}").as_bytes(), &value)
                .unwrap();
        }
    }
    let key = |turn: u64| format!("k{}", turn % 100);
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("| op | threads | store | ops/s | p50 |");
    println!("|---|---|---|---|---|");
    for (op, threads) in [("get", 1), ("set", 1), ("increment", 1), ("increment", 4)] {
        for (name, store) in stores {
            let call = |turn: u64| match op {
                "get" => {
                    store.get(&ns, key(turn).as_bytes()).unwrap().unwrap();
                }
                "set" => {
                    store.set(&ns, key(turn).as_bytes(), &value).unwrap();
                }
                _ => {
                    store.increment(&ns, b"counter", 1).unwrap();
                }
            };
            let (ops, p50) = measure(threads, &call);
            println!("| {op} | {threads} | {name} | {ops:.0} | {p50:?} |");
        }
    }
    // JetStream only: the same key from two nodes (two connections) at once, then four
    // threads each on its own namespace (writes to different namespaces do not contend).
    let other_runtime = crate::runtime();
    let other_node = connect(&other_runtime, &nats, "bench");
    let nodes: [&dyn Store; 2] = [&jetstream, &other_node];
    let (ops, p50) = measure(4, &|turn: u64| {
        let node = nodes[usize::from(turn / 1_000_000 % 2 == 1)];
        node.increment(&ns, b"shared", 1).unwrap();
    });
    println!("| increment, 2 nodes x 2 threads, one key | 4 | jetstream | {ops:.0} | {p50:?} |");
    let namespaces: Vec<Namespace> = (0..4)
        .map(|n| Namespace::new(format!("bench-{n}")))
        .collect();
    let (ops, p50) = measure(4, &|turn: u64| {
        let namespace = &namespaces[usize::try_from(turn / 1_000_000).unwrap() % 4];
        jetstream.increment(namespace, b"counter", 1).unwrap();
    });
    println!("| increment, 4 namespaces | 4 | jetstream | {ops:.0} | {p50:?} |");
}
