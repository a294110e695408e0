//! End to end: the example modules built by the real pipeline, the real server, real HTTP and
//! WebSocket clients. Serving and relaying (`users`, `sender` → `receiver` → a browser), a
//! source edit hot-swapped under load, a drain that delays the close of the old version, and
//! a module written against the original ABI only.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tests::{Project, eventually, get, request};
use tokio_tungstenite::tungstenite::Message as Frame;

const AUTH: (&str, &str) = ("authorization", "Bearer letmein");

async fn next_text(
    socket: &mut (impl StreamExt<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        match frame {
            Frame::Text(text) => return text.as_str().to_owned(),
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// HTTP + WebSocket against `users`, `sender`, `receiver`, and module → module (A →
/// module B → browser, a burst of 1,000 in order), and an original-ABI module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_http_websocket_and_pubsub() {
    let project = Project::copy("integration");
    {
        let _target = tests::SHARED_TARGET.lock().await;
        project.build_all();
    }
    std::fs::write(
        project.dist().join("legacy.wasm"),
        wat::parse_str(ORIGINAL_ABI).unwrap(),
    )
    .unwrap();
    let server = project.start().await;
    let addr = server.addr();

    // users is loaded, behind the auth middleware.
    assert_eq!(
        get(addr, "/m/users").await.status,
        401,
        "auth runs before users"
    );
    let reply = request(addr, "GET", "/m/users", &[AUTH], b"")
        .await
        .unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "[]"));
    let reply = request(
        addr,
        "POST",
        "/m/users",
        &[AUTH, ("content-type", "application/json")],
        br#"{"name":"Ada","email":"ada@example.org"}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let created: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(created["name"], "Ada");
    let reply = request(
        addr,
        "GET",
        &format!("/m/users/{}", created["id"]),
        &[AUTH],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["email"],
        "ada@example.org"
    );
    let reply = request(
        addr,
        "POST",
        "/m/users",
        &[AUTH],
        br#"{"name":"","email":"nope"}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);

    // sender publishes → receiver's on_message → ws_broadcast → this client.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?topic=greetings.hello"))
            .await
            .unwrap();
    let monitor = server.monitor();
    eventually(Duration::from_secs(5), || {
        let monitor = monitor.clone();
        async move { monitor.ws_clients("greetings.hello") == 1 }
    })
    .await;
    let reply = request(
        addr,
        "POST",
        "/m/sender/send?topic=greetings.hello",
        &[],
        b"hello browser",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(next_text(&mut socket).await, "hello browser");

    // A burst of 1,000 publishes by the module arrives complete and in order.
    let started = Instant::now();
    for index in 0..1000 {
        let reply = request(
            addr,
            "POST",
            "/m/sender/send?topic=greetings.hello",
            &[],
            format!("burst {index}").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
    }
    for index in 0..1000 {
        assert_eq!(next_text(&mut socket).await, format!("burst {index}"));
    }
    eprintln!(
        "relay: 1000 messages sender → receiver → WebSocket in {:?}",
        started.elapsed()
    );

    // A module written only against the original ABI.
    let reply = get(addr, "/m/legacy/hello?x=1").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "v0 says: GET\n/hello?x=1\n")
    );
    server.shutdown().await;
}

/// Hot reload: edit `modules/users/wasm/src/lib.rs`, the build watcher rebuilds it, the server
/// swaps it, the client loop sees the new behaviour with zero failed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_hot_reload_from_source_loses_no_request() {
    // Held to the end: the watcher builds into the shared target until the edit is live.
    let _target = tests::SHARED_TARGET.lock().await;
    let project = Project::copy("hot-reload");
    let builder = build::Builder::new(project.build_config());
    let users = builder.select(&["users".to_owned()]).unwrap();
    assert!(
        builder
            .build(&users)
            .iter()
            .all(|report| !report.is_failed())
    );
    let server = project.start().await;
    let addr = server.addr();
    let _watcher = build::Watcher::start(
        builder,
        build::Selection::Only(vec!["users".into()]),
        |event| {
            if let build::WatchEvent::Built(report) = event {
                eprintln!("hot reload: {report}");
            }
        },
    )
    .unwrap();
    assert_eq!(get(addr, "/m/users/version").await.body, "1");

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match request(addr, "GET", "/m/users/version", &[], b"").await {
                        Ok(reply) if reply.status == 200 => {}
                        Ok(reply) => {
                            eprintln!("failed request: {} {}", reply.status, reply.body);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            eprintln!("failed request: {error}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let source = project.modules().join("users/wasm/src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(text.contains("const VERSION: &str = \"1\";"));
    let edited_at = Instant::now();
    std::fs::write(
        &source,
        text.replace(
            "const VERSION: &str = \"1\";",
            "const VERSION: &str = \"2\";",
        ),
    )
    .unwrap();
    eventually(Duration::from_secs(120), || async move {
        get(addr, "/m/users/version").await.body == "2"
    })
    .await;
    let edit_to_live = edited_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "hot reload: edit-to-live {edit_to_live:?}; {served} requests during the run, {failed} failed"
    );
    assert_eq!(failed, 0, "of {served} requests");
    assert!(served > 0);
    assert_eq!(
        server
            .status()
            .iter()
            .find(|module| module.name == "users")
            .unwrap()
            .swaps,
        1
    );
    server.shutdown().await;
}

/// Appends a custom section: a new version (new content hash) with the same behaviour.
fn with_custom_section(mut wasm: Vec<u8>, tag: &str) -> Vec<u8> {
    let mut section = vec![tag.len() as u8];
    section.extend_from_slice(tag.as_bytes());
    wasm.push(0);
    wasm.push(section.len() as u8);
    wasm.extend_from_slice(&section);
    wasm
}

/// Drain: `slow`'s old version is kept alive by `drain()` for as long as its pending work
/// needs, and requests it already accepted complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_drain_delays_the_close_of_the_old_version() {
    let project = Project::copy("drain");
    let builder = build::Builder::new(project.build_config());
    let slow = builder.select(&["slow".to_owned()]).unwrap();
    {
        let _target = tests::SHARED_TARGET.lock().await;
        assert!(
            builder
                .build(&slow)
                .iter()
                .all(|report| !report.is_failed())
        );
    }
    let server = project.start().await;
    let addr = server.addr();

    let reply = request(addr, "POST", "/m/slow/work?ms=1500", &[], b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let accepted_at = Instant::now();
    // Requests in flight across the swap.
    let in_flight: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get(addr, "/m/slow").await.status }))
        .collect();
    let wasm = std::fs::read(project.dist().join("slow.wasm")).unwrap();
    let temp = project.dist().join(".slow.wasm.tmp");
    std::fs::write(&temp, with_custom_section(wasm, "v2")).unwrap();
    std::fs::rename(&temp, project.dist().join("slow.wasm")).unwrap();
    let monitor = server.monitor();
    eventually(Duration::from_secs(30), || {
        let server = &server;
        async move { server.status()[0].swaps == 1 }
    })
    .await;
    let swapped_at = Instant::now();
    let work_left = Duration::from_millis(1500).saturating_sub(accepted_at.elapsed());
    if work_left > Duration::from_millis(300) {
        assert_eq!(monitor.draining(), 1, "the old version is draining");
    }
    eventually(Duration::from_secs(10), || {
        let monitor = monitor.clone();
        async move { monitor.draining() == 0 }
    })
    .await;
    let lived = accepted_at.elapsed();
    let drained = swapped_at.elapsed();
    eprintln!(
        "drain: old version closed {lived:?} after accepting 1500 ms of work ({drained:?} of drain for {work_left:?} of work left)"
    );
    assert!(
        lived >= Duration::from_millis(1400),
        "closed after {lived:?}, before its work was done"
    );
    assert!(
        drained < work_left + Duration::from_millis(2500),
        "drained {drained:?} for {work_left:?} of work: closed by the 5 s timeout, not by drain()"
    );
    for status in in_flight {
        assert_eq!(status.await.unwrap(), 200);
    }
    server.shutdown().await;
}

use testkit::ORIGINAL_ABI;
