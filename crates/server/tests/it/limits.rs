//! HTTP and WebSocket hardening: size limits, slow clients, the connection cap, and a
//! graceful shutdown under load that loses no accepted request. Raw TCP where a well-behaved
//! client library wouldn't send what an attacker does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

/// Sends `head` (and `body`) on a fresh connection, then reads until the server closes or
/// `limit` passes; returns what came back and how long it took.
pub(crate) async fn raw_exchange(
    addr: std::net::SocketAddr,
    head: &[u8],
    body: &[u8],
    limit: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = stream.write_all(body).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

pub(crate) fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused() {
    let project = Project::new("oversized");
    project.install("echo", fixture_guest());
    let mut config = project.config();
    config.http.max_header_bytes = 8 * 1024;
    config.http.max_body_bytes = 1024;
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    // A head over the limit: 431, and the connection is closed.
    let head = format!(
        "GET /m/echo/echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (response, _) = raw_exchange(addr, head.as_bytes(), b"", Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );

    // A declared length over the limit: 413 before the body is read.
    let reply = request(addr, "POST", "/m/echo/echo", &[], &[7; 2048]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.body.contains("limit of 1024 bytes"), "{}", reply.body);

    // A chunked body (no length up front) that grows past the limit: 413 as well.
    let head = b"POST /m/echo/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("3e8\r\n{}\r\n", "b".repeat(1000));
    let body = format!("{chunk}{chunk}0\r\n\r\n");
    let (response, _) = raw_exchange(addr, head, body.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 413"),
        "{response}"
    );

    // Under the limit it all works.
    let reply = request(addr, "POST", "/m/echo/echo", &[], &[b'x'; 1000]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_slow_modules_hit_their_deadlines() {
    let project = Project::new("slow-clients");
    project.install("sleepy", fixture_guest());
    let mut config = project.config();
    config.http.header_read_timeout = Duration::from_millis(300);
    config.http.request_timeout = Duration::from_millis(500);
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    // Slow-loris on the head: half a request line, then silence. Closed at the timeout.
    let (response, took) = raw_exchange(
        addr,
        b"GET /m/sleepy/echo HTTP/1.1\r\nHost: x\r\n",
        b"",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}: {response}"
    );
    assert!(
        response.is_empty() || status_line(&response).starts_with("HTTP/1.1 408"),
        "{response}"
    );

    // Slow-loris on the body: 10 of 100 declared bytes, then silence. 408 at the deadline.
    let (response, took) = raw_exchange(
        addr,
        b"POST /m/sleepy/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        b"0123456789",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 408"),
        "{response}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A module slower than the request deadline: 504, on time.
    let started = Instant::now();
    let reply = get(addr, "/m/sleepy/sleep?ms=2000").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        reply.body.contains("did not answer within 500ms"),
        "{}",
        reply.body
    );
    assert!(started.elapsed() < Duration::from_millis(1500));

    // Everyone else was served all along.
    assert_eq!(get(addr, "/healthz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_their_turn() {
    let project = Project::new("cap");
    project.install("hello", &hello("hello"));
    let mut config = project.config();
    config.http.max_connections = 2;
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    // Two idle connections take both places.
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let third = tokio::spawn(async move { get(addr, "/m/hello").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");

    // One leaves: the waiting one is served.
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a place was free")
        .unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_over_the_limit_close_the_client() {
    let project = Project::new("ws-limit");
    let mut config = project.config();
    config.websocket.max_message_bytes = 1024;
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?topic=t"))
        .await
        .unwrap();
    // The send may fail once the server has closed; the close frame is what matters.
    let _ = socket.send(Frame::Binary(vec![0u8; 4096].into())).await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Frame::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.unwrap();
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason.as_str(), "message too big");
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.monitor().websocket().clients > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the client is unregistered");
    server.shutdown().await;
}

/// 16 keep-alive clients call a module (20 ms of work each) in a loop; the server shuts down
/// in the middle. Every request the module took must have reached its client as a 200: the
/// only failures allowed are connections the server no longer accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_under_load_loses_no_accepted_request() {
    let project = Project::new("shutdown-load");
    project.install("work", fixture_guest());
    let mut config = project.config();
    config.modules.insert(
        "work".into(),
        wasi_host::ModuleConfig {
            instances: Some(4),
            ..Default::default()
        },
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let monitor = server.monitor();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (stop, ok, refused) = (stop.clone(), ok.clone(), refused.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(format!("http://{addr}/m/work/sleep?ms=20"))
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    match client.request(request).await {
                        Ok(response) => {
                            assert_eq!(response.status(), 200);
                            http_body_util::BodyExt::collect(response.into_body())
                                .await
                                .expect("a response that started must finish");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            // Refused at connect (the listener is gone) or the connection
                            // was closed before a request on it was read: nothing accepted.
                            assert!(
                                error.is_connect()
                                    || format!("{error:?}").contains("Canceled")
                                    || format!("{error:?}").contains("IncompleteMessage"),
                                "{error:?}"
                            );
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(10), || {
        let ok = ok.clone();
        async move { ok.load(Ordering::Relaxed) >= 100 }
    })
    .await;
    server.shutdown().await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let handled = monitor.module_stats("work").unwrap().requests;
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "shutdown under load: module handled {handled}, clients got {ok} × 200, {} refused",
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(
        handled, ok,
        "every request the module took reached its client"
    );
}
