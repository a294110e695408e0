//! Module state in cluster mode against a real `nats-server`: nodes of one cluster share one
//! store (JetStream KV) through the `kv` import, exactly (no increment lost under load from
//! two nodes), atomically (a failed batch writes nothing anywhere), durably (a restarted node
//! finds it) and with a clear error while NATS is down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use binary::{KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite};
use server::{ClusterConfig, ServerBuilder, ServerHandle};
use testkit::NatsServer;

use crate::state::value;
use crate::support::{Project, fixture_guest};

const PATIENCE: Duration = Duration::from_secs(15);

/// A node of cluster `shop` serving `project` (which has the fixture guest installed).
async fn node(project: &Project, url: &str, name: &str) -> ServerHandle {
    let mut config = project.config();
    let mut cluster = ClusterConfig::new(url);
    cluster.cluster_name = "shop".to_owned();
    cluster.node_name = name.to_owned();
    config.cluster = Some(cluster);
    ServerBuilder::new(config).start().await.unwrap()
}

fn project(tag: &str) -> Project {
    let project = Project::new(tag);
    project.install("fixture", fixture_guest());
    project
}

/// Sends `op` on the fixture module's own namespace through its `/kv` route on `addr`.
async fn kv(addr: SocketAddr, op: KvOp) -> KvResponse {
    crate::state::kv(addr, KvRequest::own(op)).await
}

fn increment(key: &str) -> KvOp {
    KvOp::Increment {
        key: key.into(),
        delta: 1,
    }
}

fn get_key(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

/// Waits until the node's store answers (its own NATS connection is up).
async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while matches!(kv(addr, get_key("ready")).await, KvResponse::Error { .. }) {
        assert!(Instant::now() < deadline, "the shared store never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_nodes_under_load_all_count() {
    let nats = NatsServer::start();
    let (project_a, project_b) = (project("kv-a"), project("kv-b"));
    let node_a = node(&project_a, &nats.url(), "a").await;
    let node_b = node(&project_b, &nats.url(), "b").await;
    wait_ready(node_a.addr()).await;
    wait_ready(node_b.addr()).await;
    let (clients, increments) = (4, 25);
    let mut tasks = tokio::task::JoinSet::new();
    for addr in [node_a.addr(), node_b.addr()] {
        for _ in 0..clients {
            tasks.spawn(async move {
                for _ in 0..increments {
                    match kv(addr, increment("hits")).await {
                        KvResponse::Integer { .. } => {}
                        other => panic!("increment failed: {other:?}"),
                    }
                }
            });
        }
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    let total = (2 * clients * increments).to_string();
    assert_eq!(
        value(kv(node_a.addr(), get_key("hits")).await),
        Some(total.clone())
    );
    assert_eq!(value(kv(node_b.addr(), get_key("hits")).await), Some(total));
    // Neither node opened a state file of its own.
    for project in [&project_a, &project_b] {
        assert!(!project.root.join("state/modhost.redb").exists());
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_failing_compare_and_swap_writes_nothing_on_any_node() {
    let nats = NatsServer::start();
    let (project_a, project_b) = (project("kv-batch-a"), project("kv-batch-b"));
    let node_a = node(&project_a, &nats.url(), "a").await;
    let node_b = node(&project_b, &nats.url(), "b").await;
    wait_ready(node_a.addr()).await;
    wait_ready(node_b.addr()).await;
    let KvResponse::Revision { revision } = kv(
        node_a.addr(),
        KvOp::Set {
            key: "email:ada".into(),
            value: "1".into(),
        },
    )
    .await
    else {
        panic!("set failed");
    };
    let claim = |expected| KvOp::Batch {
        writes: vec![
            KvWrite::Set {
                key: "user:2".into(),
                value: "grace".into(),
            },
            KvWrite::CompareAndSwap {
                key: "email:ada".into(),
                expected,
                value: Some("2".into()),
            },
        ],
    };
    // Node B expects the address to be free; node A took it: nothing is written.
    assert_eq!(
        kv(node_b.addr(), claim(0)).await,
        KvResponse::Conflict {
            index: 1,
            current: revision
        }
    );
    for addr in [node_a.addr(), node_b.addr()] {
        assert_eq!(value(kv(addr, get_key("user:2")).await), None);
        assert_eq!(
            value(kv(addr, get_key("email:ada")).await).as_deref(),
            Some("1")
        );
    }
    assert_eq!(
        kv(node_b.addr(), claim(revision)).await,
        KvResponse::Applied
    );
    for addr in [node_a.addr(), node_b.addr()] {
        assert_eq!(
            value(kv(addr, get_key("user:2")).await).as_deref(),
            Some("grace")
        );
        assert_eq!(
            value(kv(addr, get_key("email:ada")).await).as_deref(),
            Some("2")
        );
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_outlives_a_node_restart_and_nats_down_is_a_clear_error() {
    let mut nats = NatsServer::start();
    let project_a = project("kv-restart");
    let node_a = node(&project_a, &nats.url(), "a").await;
    wait_ready(node_a.addr()).await;
    assert_eq!(
        kv(node_a.addr(), increment("visits")).await,
        KvResponse::Integer { value: 1 }
    );
    node_a.shutdown().await;
    let node_a = node(&project_a, &nats.url(), "a").await;
    wait_ready(node_a.addr()).await;
    assert_eq!(
        value(kv(node_a.addr(), get_key("visits")).await).as_deref(),
        Some("1")
    );

    // NATS goes away: the module gets a normal error with the "unavailable" code, promptly.
    nats.stop();
    let deadline = Instant::now() + PATIENCE;
    let error = loop {
        match kv(node_a.addr(), increment("visits")).await {
            KvResponse::Error { kind, message } => break (kind, message),
            KvResponse::Integer { .. } => {
                // The client has not noticed yet; that write went through before the stop.
                assert!(
                    Instant::now() < deadline,
                    "writes kept succeeding without NATS"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected answer: {other:?}"),
        }
    };
    assert_eq!(error.0, KvErrorKind::Unavailable, "{}", error.1);
    assert!(error.1.contains("NATS"), "{}", error.1);
    // Local HTTP keeps working meanwhile.
    assert_eq!(
        crate::support::get(node_a.addr(), "/healthz").await.status,
        200
    );

    // NATS comes back (same store dir): the store recovers by itself, with its data.
    nats.start_again();
    wait_ready(node_a.addr()).await;
    let Some(visits) = value(kv(node_a.addr(), get_key("visits")).await) else {
        panic!("visits lost");
    };
    assert!(visits.parse::<i64>().unwrap() >= 1, "{visits}");
    node_a.shutdown().await;
}
