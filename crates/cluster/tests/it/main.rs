//! The `cluster` integration tests against a real `nats-server`: the `state` crate's behaviour
//! suite and concurrency tests run unchanged against the JetStream store, then its faults.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

// The very files `state` runs against its embedded backends: one definition of the behaviour.
#[path = "../../../state/tests/it/concurrency.rs"]
mod concurrency;
#[path = "../../../state/tests/it/suite.rs"]
mod suite;

mod bench;
mod state_store;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use state::Store;

/// A `nats-server` with JetStream whose `max_payload` (8 MB) carries the store's largest value
/// (1 MiB) inside a commit record; killed and cleaned up on drop.
pub(crate) struct Nats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub(crate) fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        nats.start_again();
        nats
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Starts the server (again) on its port, with its store, and waits until it listens.
    pub(crate) fn start_again(&mut self) {
        let config = self.dir.path().join("nats.conf");
        std::fs::write(&config, "max_payload: 8MB\n").unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-c"])
            .arg(&config)
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nats-server (apt-get install nats-server)");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Kills the server (SIGKILL).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A runtime and a NATS server kept alive beside a store (dropped after it).
struct Guard {
    _runtime: tokio::runtime::Runtime,
    _nats: Nats,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A JetStream store of cluster `cluster` on `nats`, connected.
pub(crate) fn connect(
    runtime: &tokio::runtime::Runtime,
    nats: &Nats,
    cluster: &str,
) -> cluster::JetStreamStore {
    let mut config = cluster::StateStoreConfig::new(nats.url(), cluster);
    config.request_timeout = Duration::from_secs(2);
    let store = runtime
        .block_on(cluster::connect_state_store(config))
        .unwrap();
    wait_for(Duration::from_secs(10), || store.remote().is_connected());
    store
}

/// The backends the shared suites run against: a JetStream store on a fresh NATS server.
fn backends() -> Vec<(&'static str, Box<dyn Store>, Guard)> {
    let runtime = runtime();
    let nats = Nats::start();
    let store = connect(&runtime, &nats, "suite");
    vec![(
        "jetstream",
        Box::new(store),
        Guard {
            _runtime: runtime,
            _nats: nats,
        },
    )]
}
