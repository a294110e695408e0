//! The WebSocket relay, and module → module → browser pub/sub.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::*;

async fn next_frame(
    socket: &mut (impl StreamExt<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Frame {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        if !matches!(frame, Frame::Ping(_) | Frame::Pong(_)) {
            return frame;
        }
    }
}

/// `sender` publishes its request body on `news.in` (via the fixture guest's /publish);
/// `relay` (ABI 0) subscribes to `news.in` in init and `ws_broadcast`s each payload on `news`.
fn relay_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "env" "subscribe" (func $subscribe (param i32 i32 i32)))
  (import "env" "ws_broadcast" (func $broadcast (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "news.in")
  (data (i32.const 16) "news")
  (func (export "malloc") (param $len i32) (result i32)
    (if (i32.gt_u (global.get $heap) (i32.const 60000)) (then (global.set $heap (i32.const 1024))))
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $len))))
  (func (export "init") (call $subscribe (i32.const 0) (i32.const 7) (i32.const 0)))
  (func (export "on_message") (param $ptr i32) (param $len i32)
    (call $broadcast (i32.const 16) (i32.const 4) (local.get $ptr) (local.get $len))))"#,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_a_browser_through_another_module() {
    let project = Project::new("pubsub");
    project.install("sender", fixture_guest());
    project.install("relay", &relay_module());
    let server = project.start().await;
    let addr = server.addr();
    let mut socket = ws_connect(addr, "news").await;
    let monitor = server.monitor();
    eventually(Duration::from_secs(5), || {
        let monitor = monitor.clone();
        async move { monitor.ws_clients("news") == 1 }
    })
    .await;

    let reply = request(
        addr,
        "POST",
        "/m/sender/publish?topic=news.in",
        &[],
        b"hello browser",
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "1"),
        "one subscriber reached"
    );
    assert_eq!(next_frame(&mut socket).await, Frame::text("hello browser"));

    // A burst of 1,000 arrives complete and in order.
    for index in 0..1000 {
        server
            .bus()
            .publish(binary::Message::event(
                "news.in",
                format!("message {index}").into_bytes(),
            ))
            .unwrap();
    }
    for index in 0..1000 {
        assert_eq!(
            next_frame(&mut socket).await,
            Frame::text(format!("message {index}"))
        );
    }
    // Non-UTF-8 payloads are binary frames.
    server
        .bus()
        .publish(binary::Message::event("news.in", vec![0xff, 0x00]))
        .unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        Frame::binary(vec![0xff, 0x00])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topics_are_refused_before_the_upgrade() {
    let project = Project::new("ws-bad");
    let server = project.start().await;
    let addr = server.addr();
    for path in ["/ws", "/ws?topic=", "/ws?topic=a*b"] {
        let error = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap_err();
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 400, "{path}")
            }
            other => panic!("{path}: expected an HTTP 400, got {other}"),
        }
    }
    // A plain GET (no upgrade) is a 400 too.
    assert_eq!(get(addr, "/ws?topic=x").await.status, 400);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_may_not_publish_and_slow_clients_are_cut_off() {
    let project = Project::new("ws-policy");
    let mut config = project.config();
    config.websocket.client_queue = 4;
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    let mut talker = ws_connect(addr, "t").await;
    futures_util::SinkExt::send(&mut talker, Frame::text("let me in"))
        .await
        .unwrap();
    match next_frame(&mut talker).await {
        Frame::Close(Some(close)) => {
            assert_eq!(close.reason.as_str(), "clients may not send messages")
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    // A client that never reads: its socket buffers fill, then its queue, then it is cut off.
    let _sleeper = ws_connect(addr, "firehose").await;
    let monitor = server.monitor();
    eventually(Duration::from_secs(5), || {
        let monitor = monitor.clone();
        async move { monitor.ws_clients("firehose") == 1 }
    })
    .await;
    let payload = vec![b'x'; 60 * 1024];
    let mut sent = 0;
    while monitor.websocket().slow_disconnects == 0 {
        server.ws_broadcast("firehose", &payload);
        sent += 1;
        assert!(sent < 20_000, "a stalled client was never disconnected");
        if sent % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(monitor.ws_clients("firehose"), 0);
    server.shutdown().await;
}
