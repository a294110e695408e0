//! Swaps that hand a module's in-memory state over (`snapshot` / `restore`), with the real
//! `counter` example module under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;

fn counter(tag: &str) -> Vec<u8> {
    testkit::retagged(&testkit::example_module("counter"), tag)
}

async fn post(addr: std::net::SocketAddr, path: &str) -> Reply {
    request(addr, "POST", path, &[], b"").await
}

async fn wait_for_swaps(server: &server::ServerHandle, swaps: u64) {
    let monitor = server.monitor();
    eventually(Duration::from_secs(20), || {
        let monitor = monitor.clone();
        async move {
            monitor
                .module("counter")
                .is_some_and(|module| module.swaps >= swaps)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_survives_swaps_under_load_and_no_request_fails() {
    let project = Project::new("snapshot-load");
    project.install("counter", &counter("v0"));
    let server = project.start().await;
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, acknowledged, failures) =
                (stop.clone(), acknowledged.clone(), failures.clone());
            tokio::spawn(async move {
                // The counter is shared, so what one client sees can only grow.
                let mut last_seen = 0u64;
                let mut backwards = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = post(addr, "/m/counter").await;
                    if reply.status != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    let value: u64 = reply.body.parse().unwrap();
                    if value <= last_seen {
                        backwards.push((last_seen, value));
                    }
                    last_seen = value;
                    let reply = get(addr, "/m/counter").await;
                    if reply.status != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let value: u64 = reply.body.parse().unwrap();
                    if value < last_seen {
                        backwards.push((last_seen, value));
                    }
                    last_seen = value;
                }
                backwards
            })
        })
        .collect();

    let swaps = 5;
    for swap in 1..=swaps {
        // Let some increments land on this version first.
        let before = acknowledged.load(Ordering::Relaxed);
        eventually(Duration::from_secs(10), || {
            let acknowledged = acknowledged.clone();
            async move { acknowledged.load(Ordering::Relaxed) >= before + 20 }
        })
        .await;
        project.install("counter", &counter(&format!("v{swap}")));
        wait_for_swaps(&server, swap).await;
    }
    let before = acknowledged.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), || {
        let acknowledged = acknowledged.clone();
        async move { acknowledged.load(Ordering::Relaxed) >= before + 20 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let backwards = client.await.unwrap();
        assert!(
            backwards.is_empty(),
            "the count went backwards: {backwards:?}"
        );
    }

    let total = acknowledged.load(Ordering::Relaxed);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "of {total} POSTs");
    let value: u64 = get(addr, "/m/counter").await.body.parse().unwrap();
    assert_eq!(
        value, total,
        "every acknowledged increment is counted, once"
    );
    let state = get(addr, "/m/counter/state").await.body;
    assert!(state.contains(&format!("\"handoffs\":{swaps}")), "{state}");

    let status = server.status();
    let module = status
        .iter()
        .find(|module| module.name == "counter")
        .unwrap();
    assert_eq!(module.swaps, swaps);
    assert!(module.last_rejected.is_none(), "{:?}", module.last_rejected);
    let last = module.last_swap.clone().unwrap();
    assert_eq!(last.handoff, "snapshot");
    // The state handed over last: `{"count":N,"handoffs":4}` as the old version saved it.
    assert!(last.state_bytes.is_some_and(|bytes| bytes > 20), "{last:?}");
    let held_ms = last.held_ms.unwrap();
    let holds = server.monitor().hold_stats();
    assert_eq!(holds.count, swaps);
    eprintln!(
        "{swaps} swaps under load: {total} POSTs; hold: last {held_ms:.2} ms, mean {:.2} ms, {} requests held in all",
        holds.sum_seconds * 1e3 / holds.count as f64,
        holds.held_requests
    );
    let metrics = get(addr, "/_admin/metrics").await.body;
    assert!(
        metrics.contains(&format!("modhost_swap_hold_seconds_count {swaps}")),
        "{metrics}"
    );
    assert!(metrics.contains("modhost_swap_hold_seconds_bucket{le=\"+Inf\"}"));
    let admin: serde_json::Value =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    let last_swap = &admin[0]["last_swap"];
    assert_eq!(last_swap["handoff"], "snapshot", "{admin}");
    assert!(last_swap["held_ms"].as_f64().is_some(), "{admin}");
    assert!(last_swap["state_bytes"].as_u64().is_some(), "{admin}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_restore_keeps_the_old_version_serving_with_its_count() {
    let project = Project::new("snapshot-refused");
    project.install("counter", &counter("good"));
    let server = project.start().await;
    let addr = server.addr();
    for expected in 1..=3 {
        assert_eq!(post(addr, "/m/counter").await.body, expected.to_string());
    }
    let serving = server.status()[0].version.clone();

    // A new "counter" whose restore refuses every state; and one whose restore traps.
    let refusing = answering(
        200,
        "refusing",
        "",
        "",
        r#"(func (export "restore") (param i32 i32) (result i32) (i32.const 1))"#,
    );
    let trapping = answering(
        200,
        "trapping",
        "",
        "",
        r#"(func (export "restore") (param i32 i32) (result i32) unreachable)"#,
    );
    for (bad, reason) in [
        (refusing, "restore refused the state (returned 1)"),
        (trapping, "restore trapped"),
    ] {
        let monitor = server.monitor();
        project.install("counter", &bad);
        eventually(Duration::from_secs(20), || {
            let monitor = monitor.clone();
            async move {
                monitor.modules()[0]
                    .last_rejected
                    .as_ref()
                    .is_some_and(|rejection| rejection.reason.contains(reason))
            }
        })
        .await;
        let status = server.status();
        assert_eq!(status[0].version, serving, "the old version still serves");
        assert_eq!(status[0].swaps, 0);
        let admin = get(addr, "/_admin/modules").await.body;
        assert!(admin.contains(reason), "{admin}");
        assert!(admin.contains("state handoff failed"), "{admin}");
    }
    // The old version kept its state and serves on.
    assert_eq!(get(addr, "/m/counter").await.body, "3");
    assert_eq!(post(addr, "/m/counter").await.body, "4");
    assert_eq!(server.monitor().hold_stats().count, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_over_the_hold_timeout_is_refused_and_held_requests_go_to_the_old_version() {
    // The old version's drain always asks for another second: the handoff can't finish
    // within a 300 ms hold.
    let stateful_old = r#"(func (export "drain") (result i32) (i32.const 1000))
      (func (export "snapshot") (result i64) (i64.const 0))"#;
    let new = r#"(func (export "restore") (param i32 i32) (result i32) (i32.const 0))"#;
    let project = Project::new("snapshot-timeout");
    project.install("stuck", &answering(200, "old", "", "", stateful_old));
    let mut config = project.config();
    config.handoffs.insert(
        "stuck".into(),
        server::HandoffConfig {
            hold_timeout: Duration::from_millis(300),
            max_held: 1024,
        },
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut replies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(addr, "/m/stuck").await;
                    replies.push((reply.status, reply.body));
                }
                replies
            })
        })
        .collect();
    project.install("stuck", &answering(200, "new", "", "", new));
    let monitor = server.monitor();
    eventually(Duration::from_secs(20), || {
        let monitor = monitor.clone();
        async move { monitor.modules()[0].last_rejected.is_some() }
    })
    .await;
    // A few more requests after the hold, then stop.
    let after = get(addr, "/m/stuck").await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        for (status, body) in client.await.unwrap() {
            assert_eq!((status, body.as_str()), (200, "old"));
            total += 1;
        }
    }
    assert_eq!((after.status, after.body.as_str()), (200, "old"));
    let status = server.status();
    let rejection = status[0].last_rejected.clone().unwrap();
    assert!(
        rejection
            .reason
            .contains("the old version did not finish draining within 300ms"),
        "{}",
        rejection.reason
    );
    assert_eq!(status[0].swaps, 0);
    let holds = server.monitor().hold_stats();
    assert_eq!(holds.count, 1);
    assert!(
        holds.sum_seconds >= 0.3,
        "the hold lasted {} s",
        holds.sum_seconds
    );
    eprintln!(
        "{total} requests, {} held for {:.0} ms, all answered by the old version",
        holds.held_requests,
        holds.sum_seconds * 1e3
    );
    server.shutdown().await;
}
