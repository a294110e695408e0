//! Hot reload: swaps under load, rejected versions, deletes, drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_under_load_fails_no_request() {
    let project = Project::new("swap");
    project.install("hello", &hello("v1"));
    let server = project.start().await;
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            tokio::spawn(async move {
                let mut seen_v2 = false;
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(addr, "/m/hello").await;
                    served.fetch_add(1, Ordering::Relaxed);
                    if reply.status != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    seen_v2 |= reply.body == "v2";
                }
                seen_v2
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Several swaps back and forth, through the file watcher.
    for version in ["v2", "v3", "v2"] {
        project.install("hello", &hello(version));
        eventually(Duration::from_secs(10), || async move {
            get(addr, "/m/hello").await.body == version
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        assert!(client.await.unwrap(), "every client saw the new version");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {} requests",
        served.load(Ordering::Relaxed)
    );
    let status = server.status();
    assert_eq!(status[0].swaps, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_version_keeps_the_old_one_serving() {
    let project = Project::new("broken");
    project.install("hello", &hello("good"));
    let server = project.start().await;
    let addr = server.addr();
    let before = server.status()[0].version.clone();
    let bad_versions = [
        (b"garbage".to_vec(), "too short for a wasm binary"),
        (
            answering(
                200,
                "init traps",
                "",
                "",
                r#"(func (export "init") unreachable)"#,
            ),
            "init failed",
        ),
    ];
    for (bad, reason) in bad_versions {
        project.install("hello", &bad);
        eventually(Duration::from_secs(10), || {
            let server = &server;
            async move {
                server.status()[0]
                    .last_rejected
                    .as_ref()
                    .is_some_and(|rejected| rejected.reason.contains(reason))
            }
        })
        .await;
        assert_eq!(get(addr, "/m/hello").await.body, "good");
        assert_eq!(server.status()[0].version, before);
    }
    let reply = get(addr, "/_admin/modules").await;
    assert!(reply.body.contains("init failed"), "{}", reply.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_file_unloads_the_module() {
    let project = Project::new("delete");
    project.install("hello", &hello("here"));
    let server = project.start().await;
    let addr = server.addr();
    assert_eq!(get(addr, "/m/hello").await.status, 200);
    std::fs::remove_file(project.dist().join("hello.wasm")).unwrap();
    eventually(Duration::from_secs(10), || async move {
        get(addr, "/m/hello").await.status == 404
    })
    .await;
    // And it comes back when the file does.
    project.install("hello", &hello("back"));
    eventually(Duration::from_secs(10), || async move {
        get(addr, "/m/hello").await.body == "back"
    })
    .await;
    server.shutdown().await;
}

/// Reading a module file is not a change. (The reload's own read of the file used to
/// trigger the next reload through the watcher's open/close events, forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_module_file_does_not_reload_it() {
    let project = Project::new("reads");
    let server = project.start().await;
    let addr = server.addr();
    // Installed after the start, so the watcher (not the start-up scan) loads it.
    project.install("hello", &hello("v1"));
    eventually(Duration::from_secs(10), || async move {
        get(addr, "/m/hello").await.body == "v1"
    })
    .await;
    let reloads = || {
        let counts = server.monitor().reloads();
        (
            counts.loaded,
            counts.swapped,
            counts.unchanged,
            counts.unloaded,
            counts.absent,
            counts.rejected,
        )
    };
    // Let the events of the install itself settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = reloads();
    for _ in 0..5 {
        std::fs::read(project.dist().join("hello.wasm")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reloads(), settled, "reads caused reloads");
    assert_eq!(settled.0, 1, "loaded once: {settled:?}");
    assert!(settled.2 <= 1, "unchanged reloads: {settled:?}");
    // A real change still reloads.
    project.install("hello", &hello("v2"));
    eventually(Duration::from_secs(10), || async move {
        get(addr, "/m/hello").await.body == "v2"
    })
    .await;
    // One rename, one reload: the swap, and no second read of the same bytes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = reloads();
    assert_eq!((after.1, after.2), (1, settled.2), "{after:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_reload_without_a_watcher() {
    let project = Project::new("explicit");
    project.install("hello", &hello("one"));
    let mut config = project.config();
    config.watch_dist = false;
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    project.install("hello", &hello("two"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(addr, "/m/hello").await.body,
        "one",
        "no watcher: nothing changes by itself"
    );
    let outcome = server
        .file_event(&project.dist().join("hello.wasm"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, server::ReloadOutcome::Swapped { .. }),
        "{outcome:?}"
    );
    assert_eq!(get(addr, "/m/hello").await.body, "two");
    let reply = request(addr, "POST", "/_admin/reload/hello", &[], b"").await;
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(answer["module"], "hello", "{answer}");
    assert_eq!(answer["outcome"], "unchanged", "{answer}");
    assert!(answer["version"].is_string(), "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_version_is_closed_after_it_says_done() {
    // drain() asks for 250 ms twice, then is done: the old version lives ~500 ms after a swap.
    let drain = r#"(global $left (mut i32) (i32.const 2))
      (func (export "drain") (result i32)
        (if (result i32) (i32.eqz (global.get $left))
          (then (i32.const 0))
          (else (global.set $left (i32.sub (global.get $left) (i32.const 1))) (i32.const 250))))"#;
    let project = Project::new("drain");
    project.install("slow", &answering(200, "v1", "", "", drain));
    let mut config = project.config();
    config.drain_timeout = Duration::from_secs(20);
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let swapped_at = Instant::now();
    project.install("slow", &answering(200, "v2", "", "", drain));
    eventually(Duration::from_secs(10), || async move {
        get(addr, "/m/slow").await.body == "v2"
    })
    .await;
    let monitor = server.monitor();
    eventually(Duration::from_secs(10), || {
        let monitor = monitor.clone();
        async move { monitor.draining() == 0 }
    })
    .await;
    let lived = swapped_at.elapsed();
    assert!(
        lived >= Duration::from_millis(500),
        "old version closed after {lived:?}, before its drain finished"
    );
    assert!(
        lived < Duration::from_secs(15),
        "{lived:?}: closed by the 20 s timeout, not by drain()"
    );
    server.shutdown().await;
}
