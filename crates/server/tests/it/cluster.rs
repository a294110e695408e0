//! Cluster mode against a real `nats-server` started by each test: joining, the bus and
//! `ws_broadcast` across nodes, forwarded module calls, and the faults (NATS down at start,
//! NATS restarted, a node killed, a stuck remote module, hostile wire input).

use std::time::{Duration, Instant};

use binary::{Envelope as _, Message, MessageBatch};
use futures_util::StreamExt;
use server::{ClusterConfig, ServerBuilder, ServerHandle};
use testkit::NatsServer;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::*;

/// Patience for anything that crosses NATS.
const PATIENCE: Duration = Duration::from_secs(15);

/// A cluster config with quick heartbeats, so tests don't wait seconds for peers.
fn cluster_config(url: &str, cluster: &str, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(url);
    config.cluster_name = cluster.to_owned();
    config.node_name = node.to_owned();
    config.heartbeat_interval = Duration::from_millis(200);
    config.heartbeat_timeout = Duration::from_secs(2);
    config
}

/// A node: a temp project with `modules` installed, started in-process in cluster mode.
async fn node(
    url: &str,
    cluster: &str,
    name: &str,
    modules: &[(&str, &[u8])],
) -> (Project, ServerHandle) {
    let project = Project::new(name);
    for (module, bytes) in modules {
        project.install(module, bytes);
    }
    let mut config = project.config();
    config.cluster = Some(cluster_config(url, cluster, name));
    let server = ServerBuilder::new(config).start().await.unwrap();
    (project, server)
}

fn peer_names(server: &ServerHandle) -> Vec<String> {
    let status = server.cluster_status().unwrap();
    status.peers.into_iter().map(|peer| peer.node).collect()
}

/// Waits until every node sees the others (and so their subscriptions are in place: a node
/// subscribes before its first heartbeat, on the same connection).
async fn wait_joined(servers: &[&ServerHandle]) {
    let expected = servers.len() - 1;
    let deadline = Instant::now() + PATIENCE;
    for server in servers {
        while peer_names(server).len() != expected {
            assert!(
                Instant::now() < deadline,
                "nodes did not see each other: {:?}",
                server.cluster_status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until `server` has a NATS subscription for the bus subject `subject` (a node maps its
/// local subscriptions' patterns to NATS subscriptions in the background, as they change).
async fn wait_subscribed(server: &ServerHandle, subject: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let subscriptions = server.cluster_status().unwrap().subscriptions;
        if subscriptions.iter().any(|one| one == subject) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no subscription {subject}: {subscriptions:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn admin_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let reply = get(addr, path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

async fn next_text(
    socket: &mut (impl StreamExt<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> String {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        match frame {
            Frame::Ping(_) | Frame::Pong(_) => {}
            Frame::Text(text) => return text.as_str().to_owned(),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_admin_shows_the_cluster() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "shop", "a", &[]).await;
    let (_b, node_b) = node(&url, "shop", "b", &[("hello", &hello("from b"))]).await;
    // Another cluster on the same NATS server is not a peer.
    let (_c, node_c) = node(&url, "other", "c", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    assert_eq!(peer_names(&node_a), ["b"]);
    assert_eq!(peer_names(&node_b), ["a"]);
    assert!(peer_names(&node_c).is_empty());

    let view = admin_json(node_a.addr(), "/_admin/cluster").await;
    assert_eq!(view["enabled"], true);
    assert_eq!(view["cluster"], "shop");
    assert_eq!(view["node"], "a");
    assert_eq!(view["state"], "connected");
    assert_eq!(view["peers"][0]["node"], "b");
    assert_eq!(view["peers"][0]["modules"][0], "hello");
    assert_eq!(view["messages"]["not_bridged"], 0);
    let metrics = get(node_a.addr(), "/_admin/metrics").await.body;
    assert!(metrics.contains("modhost_cluster_connected 1"), "{metrics}");
    assert!(metrics.contains("modhost_cluster_peers 1"), "{metrics}");

    // A node without --cluster says so, and has no cluster metrics.
    let project = Project::new("single");
    let single = project.start().await;
    let view = admin_json(single.addr(), "/_admin/cluster").await;
    assert_eq!(view, serde_json::json!({ "enabled": false }));
    assert!(
        !get(single.addr(), "/_admin/metrics")
            .await
            .body
            .contains("modhost_cluster")
    );

    // The same cluster name is required for a peer, and names are checked.
    let bad_project = Project::new("bad");
    let mut bad = bad_project.config();
    bad.cluster = Some(cluster_config(&url, "no spaces", "x"));
    let error = ServerBuilder::new(bad).start().await.unwrap_err();
    assert!(
        format!("{error:#}").contains("invalid cluster name"),
        "{error:#}"
    );

    for server in [node_a, node_b, node_c, single] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_events_reach_every_node_once_and_in_order() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "bus", "a", &[]).await;
    let (_b, node_b) = node(&url, "bus", "b", &[]).await;
    let (_c, node_c) = node(&url, "bus", "c", &[]).await;
    wait_joined(&[&node_a, &node_b, &node_c]).await;

    let (_local, local_inbox) = node_a.bus().subscribe_channel("orders.*").unwrap();
    let (_exact, b_inbox) = node_b.bus().subscribe_channel("orders.created").unwrap();
    let (_all, c_inbox) = node_c.bus().subscribe_channel("*").unwrap();
    wait_subscribed(&node_b, "modhost.bus.bus.orders.created").await;
    wait_subscribed(&node_c, "modhost.bus.bus.>").await;
    // Only what local subscribers select.
    let b = node_b.cluster_status().unwrap();
    assert_eq!(b.subscriptions, ["modhost.bus.bus.orders.created"]);
    // What goes on the wire, seen by a plain NATS client.
    let observer = async_nats::connect(url.as_str()).await.unwrap();
    let mut wire = observer.subscribe("modhost.bus.bus.>").await.unwrap();
    // A round trip (the server's "no responders"): the subscription is in place after it.
    let _ = observer.request("modhost.bus.nobody", "".into()).await;
    const COUNT: usize = 500;
    for index in 0..COUNT {
        let report = node_a
            .bus()
            .publish(Message::event(
                "orders.created",
                format!("{index}").into_bytes(),
            ))
            .unwrap();
        assert_eq!(report.delivered, 1, "the local subscriber, once");
    }
    // A topic that cannot be a NATS subject stays local and is counted.
    node_a
        .bus()
        .publish(Message::event("orders..odd", b"x".to_vec()))
        .unwrap();
    for inbox in [&local_inbox, &b_inbox, &c_inbox] {
        for index in 0..COUNT {
            let message = inbox.recv_timeout(PATIENCE).unwrap();
            assert_eq!(message.topic, "orders.created");
            assert_eq!(message.payload, format!("{index}").as_bytes());
        }
    }
    assert_eq!(
        local_inbox.recv_timeout(PATIENCE).unwrap().topic,
        "orders..odd"
    );
    // Exactly once: nothing more arrives anywhere.
    for inbox in [&local_inbox, &b_inbox, &c_inbox] {
        assert!(inbox.recv_timeout(Duration::from_millis(300)).is_err());
    }
    // On the wire: consecutive events on one subject share a message (`Modhost-Batch`), and
    // the numbers run on without a gap from one message to the next.
    let (mut events, mut messages, mut batches, mut next_seq) = (0, 0, 0, 1_u64);
    while events < COUNT {
        let message = tokio::time::timeout(PATIENCE, wire.next())
            .await
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().unwrap();
        let seq: u64 = headers
            .get("Modhost-Seq")
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert_eq!(seq, next_seq, "numbered on from the last message");
        let decoded = match headers.get("Modhost-Batch") {
            Some(count) => {
                let batch = MessageBatch::decode(&message.payload).unwrap();
                assert_eq!(count.as_str(), batch.len().to_string());
                assert!((2..=256).contains(&batch.len()), "{}", batch.len());
                batches += 1;
                batch
            }
            None => vec![Message::decode(&message.payload).unwrap()],
        };
        let carried = decoded.len() as u64;
        for event in decoded {
            assert_eq!(event.payload, format!("{events}").as_bytes());
            events += 1;
        }
        next_seq = seq + carried;
        messages += 1;
    }
    assert_eq!(events, COUNT);
    assert!(
        batches > 0 && messages < COUNT,
        "{COUNT} events published at once went as {messages} messages, {batches} batches"
    );
    let a = node_a.cluster_status().unwrap().messages;
    assert_eq!(a.bus_out, COUNT as u64);
    assert_eq!(a.not_bridged, 1);
    assert_eq!(a.bus_in, 0, "a never gets its own messages back");
    let b = node_b.cluster_status().unwrap().messages;
    assert_eq!((b.bus_in, b.dropped), (COUNT as u64, 0));

    for server in [node_a, node_b, node_c] {
        server.shutdown().await;
    }
}

/// Reads bus messages off the wire until `count` events have passed: (NATS messages, of them
/// batches).
async fn read_wire(wire: &mut async_nats::Subscriber, count: usize) -> (usize, usize) {
    let (mut events, mut messages, mut batches) = (0, 0, 0);
    while events < count {
        let message = tokio::time::timeout(PATIENCE, wire.next())
            .await
            .expect("bus messages on the wire")
            .unwrap();
        messages += 1;
        match message
            .headers
            .as_ref()
            .and_then(|h| h.get("Modhost-Batch"))
        {
            Some(_) => {
                batches += 1;
                events += MessageBatch::decode(&message.payload).unwrap().len();
            }
            None => events += 1,
        }
    }
    assert_eq!(events, count, "no more than published");
    (messages, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_events_go_one_by_one_while_a_node_that_cannot_read_batches_is_heard() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "mixed", "a", &[]).await;
    let (_b, node_b) = node(&url, "mixed", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    let (_sub, b_inbox) = node_b.bus().subscribe_channel("t.x").unwrap();
    wait_subscribed(&node_b, "modhost.mixed.bus.t.x").await;
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let mut wire = client.subscribe("modhost.mixed.bus.>").await.unwrap();
    let _ = client.request("modhost.mixed.nobody", "".into()).await;
    // A node of an older version: its heartbeats have no `batches`.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let old = tokio::spawn({
        let client = client.clone();
        async move {
            let beat = r#"{"node":"old","id":"old-1","modules":[],"topics":[]}"#;
            let mut stopped = stopped;
            loop {
                client
                    .publish("modhost.mixed.heartbeat", beat.into())
                    .await
                    .unwrap();
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    });
    eventually(PATIENCE, || {
        let names = peer_names(&node_a);
        async move { names.contains(&"old".to_owned()) }
    })
    .await;
    const COUNT: usize = 500;
    let burst = |tag: &'static str| {
        for index in 0..COUNT {
            node_a
                .bus()
                .publish(Message::event("t.x", format!("{tag}{index}").into_bytes()))
                .unwrap();
        }
    };
    burst("one-by-one ");
    let (messages, batches) = read_wire(&mut wire, COUNT).await;
    assert_eq!(
        (messages, batches),
        (COUNT, 0),
        "no batch while the old node is heard"
    );
    // Once it is no longer heard from (the heartbeat timeout), batches go out again.
    stop.send(()).unwrap();
    old.await.unwrap();
    eventually(PATIENCE, || {
        let names = peer_names(&node_a);
        async move { !names.contains(&"old".to_owned()) }
    })
    .await;
    burst("batched ");
    let (messages, batches) = read_wire(&mut wire, COUNT).await;
    assert!(
        batches > 0 && messages < COUNT,
        "{messages} messages, {batches} batches"
    );
    // b got every event of both bursts, in order.
    for tag in ["one-by-one ", "batched "] {
        for index in 0..COUNT {
            let message = b_inbox.recv_timeout(PATIENCE).unwrap();
            assert_eq!(message.payload, format!("{tag}{index}").as_bytes());
        }
    }
    for server in [node_a, node_b] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_what_its_subscribers_select_and_overlaps_deliver_once() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "interest", "a", &[]).await;
    let (_b, node_b) = node(&url, "interest", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    assert!(node_b.cluster_status().unwrap().subscriptions.is_empty());
    let (exact, exact_inbox) = node_b.bus().subscribe_channel("orders.created").unwrap();
    wait_subscribed(&node_b, "modhost.interest.bus.orders.created").await;

    // Traffic no subscriber on b selects never reaches b.
    for index in 0..50_u32 {
        node_a
            .bus()
            .publish(Message::event(
                "stock.changed",
                index.to_le_bytes().to_vec(),
            ))
            .unwrap();
    }
    node_a
        .bus()
        .publish(Message::event("orders.created", b"first".to_vec()))
        .unwrap();
    assert_eq!(
        exact_inbox.recv_timeout(PATIENCE).unwrap().payload,
        b"first"
    );
    let counts = node_b.cluster_status().unwrap().messages;
    assert_eq!((counts.bus_in, counts.dropped), (1, 0), "{counts:?}");
    assert_eq!(node_a.cluster_status().unwrap().messages.bus_out, 51);

    // While a publishes steadily, b's subscriptions widen (orders.* covers orders.created,
    // then * covers both) and narrow again: the subscriber that stays gets every event once.
    let collector = std::thread::spawn(move || {
        // Read as it comes (a full mailbox would drop); done 2 s after the last event.
        let mut received = Vec::new();
        while let Ok(message) = exact_inbox.recv_timeout(Duration::from_secs(2)) {
            received.push(u32::from_le_bytes(message.payload.try_into().unwrap()));
        }
        received
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (bus_a, stop) = (node_a.bus().clone(), stop.clone());
        std::thread::spawn(move || {
            let mut index = 0_u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || index < 1000 {
                bus_a
                    .publish(Message::event(
                        "orders.created",
                        index.to_le_bytes().to_vec(),
                    ))
                    .unwrap();
                index += 1;
                if index.is_multiple_of(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            index
        })
    };
    let (wide, _wide_inbox) = node_b.bus().subscribe_channel("orders.*").unwrap();
    wait_subscribed(&node_b, "modhost.interest.bus.orders.>").await;
    let (all, _all_inbox) = node_b.bus().subscribe_channel("*").unwrap();
    wait_subscribed(&node_b, "modhost.interest.bus.>").await;
    assert_eq!(
        node_b.cluster_status().unwrap().subscriptions,
        ["modhost.interest.bus.>"],
        "covered subscriptions are dropped"
    );
    drop((wide, all));
    wait_subscribed(&node_b, "modhost.interest.bus.orders.created").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.join().unwrap();
    let mut received = collector.join().unwrap();
    assert_eq!(received.len(), published as usize, "every event once");
    received.sort_unstable();
    assert_eq!(received, (0..published).collect::<Vec<_>>());
    let status = node_b.cluster_status().unwrap();
    assert_eq!(
        status.subscriptions,
        ["modhost.interest.bus.orders.created"]
    );
    drop(exact);
    for server in [node_a, node_b] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_nodes_and_no_responders_is_immediate() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "req", "a", &[]).await;
    let (_b, node_b) = node(&url, "req", "b", &[]).await;
    let replies = node_b.bus().clone();
    let _responder = node_b
        .bus()
        .subscribe("users.get", move |request| {
            let answer = if request.payload == b"7" {
                request.response(b"{\"id\":7}".to_vec())
            } else {
                request.error_reply("no such user")
            };
            let _ = replies.reply(answer);
        })
        .unwrap();
    wait_joined(&[&node_a, &node_b]).await;
    // b's heartbeat lists its new subscription within an interval.
    let bus = node_a.bus().clone();
    let reply = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match bus.request(
                Message::event("users.get", b"7".to_vec()),
                Duration::from_secs(5),
            ) {
                Err(bus::RequestError::NoResponders { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other,
            }
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.payload, b"{\"id\":7}");
    assert_eq!(reply.kind, binary::MessageKind::Response);

    let bus = node_a.bus().clone();
    let (error, nobody, elapsed) = tokio::task::spawn_blocking(move || {
        let error = bus
            .request(
                Message::event("users.get", b"8".to_vec()),
                Duration::from_secs(5),
            )
            .unwrap_err();
        let started = Instant::now();
        let nobody = bus
            .request(
                Message::event("nobody.here", vec![]),
                Duration::from_secs(5),
            )
            .unwrap_err();
        (error, nobody, started.elapsed())
    })
    .await
    .unwrap();
    assert!(
        matches!(&error, bus::RequestError::Remote { reason, .. } if reason == "no such user"),
        "{error}"
    );
    assert!(
        matches!(nobody, bus::RequestError::NoResponders { .. }),
        "{nobody}"
    );
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    let served = node_b.cluster_status().unwrap().messages.requests_served;
    assert!(served >= 2, "{served}");

    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_broadcasts_reach_clients_on_every_node() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "ws", "a", &[]).await;
    let (_b, node_b) = node(&url, "ws", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    let mut on_a = ws_connect(node_a.addr(), "chat.room").await;
    let mut on_b = ws_connect(node_b.addr(), "chat.room").await;
    let (monitor_a, monitor_b) = (node_a.monitor(), node_b.monitor());
    eventually(PATIENCE, || {
        let (monitor_a, monitor_b) = (monitor_a.clone(), monitor_b.clone());
        async move { monitor_a.ws_clients("chat.room") == 1 && monitor_b.ws_clients("chat.room") == 1 }
    })
    .await;
    for index in 0..100 {
        node_a.ws_broadcast("chat.room", format!("line {index}").as_bytes());
    }
    for index in 0..100 {
        assert_eq!(next_text(&mut on_a).await, format!("line {index}"));
        assert_eq!(next_text(&mut on_b).await, format!("line {index}"));
    }
    assert_eq!(node_b.cluster_status().unwrap().messages.ws_in, 100);
    node_a.shutdown().await;
    node_b.shutdown().await;
}

/// A v1 module whose `handle` spins forever (until its deadline).
fn stuck() -> Vec<u8> {
    answering(200, "never", "", "(loop (br 0))", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_modules_on_other_nodes_are_forwarded() {
    let nats = NatsServer::start();
    let url = nats.url();
    let hello_a = hello("hello from a");
    let (_a, node_a) = node(
        &url,
        "calls",
        "a",
        &[("greeter", &hello_a), ("stuck", &stuck())],
    )
    .await;
    let (_b, node_b) = node(&url, "calls", "b", &[("greeter", &hello("hello from b"))]).await;
    let project_c = Project::new("c");
    let mut config = project_c.config();
    config.cluster = Some(cluster_config(&url, "calls", "c"));
    config.http.request_timeout = Duration::from_secs(1);
    let node_c = ServerBuilder::new(config).start().await.unwrap();
    wait_joined(&[&node_a, &node_b, &node_c]).await;

    // A local module is always called locally.
    for _ in 0..20 {
        assert_eq!(get(node_b.addr(), "/m/greeter").await.body, "hello from b");
    }
    // c has no greeter: the cluster answers, from a node that has it.
    let addr_c = node_c.addr();
    eventually(PATIENCE, || async move {
        get(addr_c, "/m/greeter").await.status == 200
    })
    .await;
    for _ in 0..20 {
        let reply = get(addr_c, "/m/greeter/x?y=1").await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.starts_with("hello from "), "{}", reply.body);
        assert_eq!(reply.headers["content-type"], "text/plain");
    }
    // Nobody has it: 503 at once.
    let started = Instant::now();
    let reply = get(addr_c, "/m/nowhere").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("no node in the cluster serves module \"nowhere\""),
        "{}",
        reply.body
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // A stuck module on another node: 504 within c's deadline, never a hang.
    eventually(PATIENCE, || {
        let monitor = node_a.cluster_status();
        async move { monitor.is_some_and(|status| status.serving.contains(&"stuck".to_owned())) }
    })
    .await;
    let started = Instant::now();
    let reply = get(addr_c, "/m/stuck").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A body over the limit is refused on the node it came to, as for a local call.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let reply = request(addr_c, "POST", "/m/greeter", &[], &big).await;
    assert_eq!(reply.status, 413);

    let c = node_c.cluster_status().unwrap().messages;
    assert!(c.calls_out >= 21, "{c:?}");
    for server in [node_a, node_b, node_c] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_locally_until_nats_comes_up_then_joins() {
    let mut nats = NatsServer::reserve();
    let url = nats.url();
    let (_a, node_a) = node(&url, "late", "a", &[("greeter", &hello("local"))]).await;
    let addr = node_a.addr();
    let (_sub, inbox) = node_a.bus().subscribe_channel("t.*").unwrap();
    let mut socket = ws_connect(addr, "t.ws").await;
    let monitor = node_a.monitor();
    eventually(PATIENCE, || {
        let monitor = monitor.clone();
        async move { monitor.ws_clients("t.ws") == 1 }
    })
    .await;
    assert_ne!(
        node_a.cluster_status().unwrap().state,
        cluster_state("connected")
    );
    // Local HTTP, bus and WebSocket all work without NATS.
    for index in 0..20 {
        assert_eq!(get(addr, "/m/greeter").await.body, "local");
        node_a
            .bus()
            .publish(Message::event("t.x", vec![index]))
            .unwrap();
        assert_eq!(inbox.recv_timeout(PATIENCE).unwrap().payload, [index]);
        node_a.ws_broadcast("t.ws", format!("{index}").as_bytes());
        assert_eq!(next_text(&mut socket).await, format!("{index}"));
    }
    let status = node_a.cluster_status().unwrap();
    assert_eq!(status.messages.not_bridged, 40, "{status:?}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = local_load(&node_a, stop.clone());
    nats.start_again();
    let (_b, node_b) = node(&url, "late", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (calls, failures) = load.await.unwrap();
    assert!(
        calls > 0 && failures.is_empty(),
        "{calls} calls, failures: {failures:?}"
    );
    assert_eq!(
        node_a.cluster_status().unwrap().state,
        cluster_state("connected")
    );
    let (_on_b, b_inbox) = node_b.bus().subscribe_channel("t.*").unwrap();
    wait_subscribed(&node_b, "modhost.late.bus.t.>").await;
    node_a
        .bus()
        .publish(Message::event("t.x", b"joined".to_vec()))
        .unwrap();
    assert_eq!(b_inbox.recv_timeout(PATIENCE).unwrap().payload, b"joined");
    node_a.shutdown().await;
    node_b.shutdown().await;
}

/// Local traffic that must never fail while NATS comes and goes: HTTP calls to `greeter`
/// and bus round trips on `node`, until `stop` is set. Returns (calls, failures).
fn local_load(
    node: &ServerHandle,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    let addr = node.addr();
    let bus = node.bus().clone();
    let (subscription, inbox) = bus.subscribe_channel("load.local").unwrap();
    tokio::spawn(async move {
        let _subscription = subscription;
        let (mut calls, mut failures) = (0_u64, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let reply = get(addr, "/m/greeter").await;
            if reply.status != 200 {
                failures.push(format!("HTTP {}: {}", reply.status, reply.body));
            }
            match bus.publish(Message::event("load.local", calls.to_le_bytes().to_vec())) {
                Ok(report) if report.delivered == 1 => {}
                other => failures.push(format!("publish: {other:?}")),
            }
            match inbox.recv_timeout(Duration::from_secs(5)) {
                Ok(message) if message.payload == calls.to_le_bytes() => {}
                other => failures.push(format!("local delivery: {other:?}")),
            }
            calls += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (calls, failures)
    })
}

fn cluster_state(name: &str) -> server::ClusterState {
    match name {
        "connected" => server::ClusterState::Connected,
        _ => server::ClusterState::Disconnected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_is_survived_and_counted() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "restart", "a", &[("greeter", &hello("local"))]).await;
    let (_b, node_b) = node(&url, "restart", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    let (_local, local_inbox) = node_a.bus().subscribe_channel("r.*").unwrap();
    let (_remote, b_inbox) = node_b.bus().subscribe_channel("r.*").unwrap();
    wait_subscribed(&node_b, "modhost.restart.bus.r.>").await;
    node_a
        .bus()
        .publish(Message::event("r.x", b"before".to_vec()))
        .unwrap();
    assert_eq!(b_inbox.recv_timeout(PATIENCE).unwrap().payload, b"before");
    assert_eq!(
        local_inbox.recv_timeout(PATIENCE).unwrap().payload,
        b"before"
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = local_load(&node_a, stop.clone());
    nats.stop();
    let addr = node_a.addr();
    eventually(PATIENCE, || {
        let state = node_a.cluster_status().unwrap().state;
        async move { state != cluster_state("connected") }
    })
    .await;
    // Local work goes on with no errors; messages meanwhile are not bridged, and counted.
    for index in 0..50u8 {
        assert_eq!(get(addr, "/m/greeter").await.status, 200);
        node_a
            .bus()
            .publish(Message::event("r.x", vec![index]))
            .unwrap();
        assert_eq!(local_inbox.recv_timeout(PATIENCE).unwrap().payload, [index]);
    }
    let status = node_a.cluster_status().unwrap();
    // 50 of ours, plus the background load's while NATS was down: none silent.
    assert!(status.messages.not_bridged >= 50, "{status:?}");
    assert!(
        b_inbox.try_recv().is_err(),
        "nothing crossed while NATS was down"
    );

    nats.start_again();
    eventually(PATIENCE, || {
        let (a, b) = (
            node_a.cluster_status().unwrap(),
            node_b.cluster_status().unwrap(),
        );
        async move {
            a.state == cluster_state("connected")
                && b.state == cluster_state("connected")
                && a.reconnects >= 1
                && !a.peers.is_empty()
                && !b.peers.is_empty()
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (calls, failures) = load.await.unwrap();
    assert!(
        calls > 0 && failures.is_empty(),
        "{calls} calls, failures: {failures:?}"
    );
    node_a
        .bus()
        .publish(Message::event("r.x", b"after".to_vec()))
        .unwrap();
    assert_eq!(b_inbox.recv_timeout(PATIENCE).unwrap().payload, b"after");
    let status = node_a.cluster_status().unwrap();
    let metrics = get(addr, "/_admin/metrics").await.body;
    assert!(
        metrics.contains("modhost_cluster_reconnects_total 1"),
        "{metrics}"
    );
    let not_bridged = format!(
        "modhost_cluster_not_bridged_total {}",
        status.messages.not_bridged
    );
    assert!(metrics.contains(&not_bridged), "{metrics}");
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_wire_input_is_dropped_and_counted() {
    let nats = NatsServer::start();
    let url = nats.url();
    let project = Project::new("hostile-node");
    let mut config = project.config();
    let mut cluster = cluster_config(&url, "evil", "a");
    cluster.max_message_bytes = 4096;
    config.cluster = Some(cluster);
    let node_a = ServerBuilder::new(config).start().await.unwrap();
    let (_sub, inbox) = node_a.bus().subscribe_channel("*").unwrap();
    let own_id = node_a.cluster_status().unwrap().id;
    let mut socket = ws_connect(node_a.addr(), "w").await;

    let client = async_nats::connect(url.as_str()).await.unwrap();
    // A heartbeat lists only topics the node has subscribed on NATS when it goes out.
    let mut heartbeats = client.subscribe("modhost.evil.heartbeat").await.unwrap();
    loop {
        let heartbeat = tokio::time::timeout(PATIENCE, heartbeats.next())
            .await
            .unwrap()
            .unwrap();
        let heartbeat: serde_json::Value = serde_json::from_slice(&heartbeat.payload).unwrap();
        assert_eq!(heartbeat["id"], own_id.as_str());
        if heartbeat["topics"] == serde_json::json!(["*"]) {
            break;
        }
    }
    assert_eq!(
        node_a.cluster_status().unwrap().subscriptions,
        ["modhost.evil.bus.>"]
    );
    let headers = |origin: &str| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Modhost-Origin", origin);
        headers
    };
    let numbered = |origin: &str, seq: &str| {
        let mut headers = headers(origin);
        headers.insert("Modhost-Seq", seq);
        headers
    };
    let good = |payload: &str| {
        bytes::Bytes::from(Message::event("t.a", payload.as_bytes().to_vec()).encode())
    };
    let batched = |origin: &str, seq: &str, count: &str| {
        let mut headers = numbered(origin, seq);
        headers.insert("Modhost-Batch", count);
        headers
    };
    let batch = |messages: &[Message]| {
        let mut batch = MessageBatch::new();
        for message in messages {
            batch.push(message);
        }
        bytes::Bytes::from(batch.into_bytes())
    };
    let event = |topic: &str, payload: &str| Message::event(topic, payload.as_bytes().to_vec());
    let two = || batch(&[event("t.a", "1"), event("t.a", "2")]);
    let subject = "modhost.evil.bus.t.a";
    let mut hostile: Vec<(&str, async_nats::HeaderMap, bytes::Bytes)> = vec![
        // Too large.
        (
            subject,
            headers("x-1"),
            bytes::Bytes::from(Message::event("t.a", vec![0; 8000]).encode()),
        ),
        // Not an envelope.
        (
            subject,
            headers("x-1"),
            bytes::Bytes::from_static(b"\xff\xff garbage"),
        ),
        // The topic disagrees with the subject.
        (
            subject,
            headers("x-1"),
            bytes::Bytes::from(Message::event("t.b", b"x".to_vec()).encode()),
        ),
        // A reply kind.
        (
            subject,
            headers("x-1"),
            bytes::Bytes::from(
                Message::event("t.a", vec![])
                    .response(b"r".to_vec())
                    .encode(),
            ),
        ),
        // No origin.
        (subject, async_nats::HeaderMap::new(), good("no origin")),
        // This node's own id: a loop or a forgery, never a second delivery.
        (subject, headers(&own_id), good("own")),
        // A WebSocket payload over the limit.
        (
            "modhost.evil.ws.w",
            headers("x-1"),
            bytes::Bytes::from(vec![b'x'; 8000]),
        ),
        // Batches: a count under 2, a count that disagrees with the batch, a count that is
        // not a number, a count over 256, bytes that are not a batch, and a batch with one
        // event on another topic or of a reply kind: each dropped whole.
        (
            subject,
            batched("x-3", "10", "1"),
            batch(&[event("t.a", "1")]),
        ),
        (subject, batched("x-3", "10", "3"), two()),
        (subject, batched("x-3", "10", "many"), two()),
        (subject, batched("x-3", "10", "257"), two()),
        (
            subject,
            batched("x-3", "10", "2"),
            bytes::Bytes::from_static(b"\x02\0\0\0\0\0\0\0 not messages"),
        ),
        (
            subject,
            batched("x-3", "10", "2"),
            batch(&[event("t.a", "1"), event("t.b", "2")]),
        ),
        (
            subject,
            batched("x-3", "10", "2"),
            batch(&[event("t.a", "1"), Message::request("t.a", 4, b"2".to_vec())]),
        ),
    ];
    for (subject, headers, payload) in hostile.drain(..) {
        client
            .publish_with_headers(subject, headers, payload)
            .await
            .unwrap();
    }
    // A numbered event sent twice (as overlapping subscriptions would deliver it) arrives
    // once; the same number from another node is another event.
    for origin in ["x-1", "x-1", "x-2"] {
        client
            .publish_with_headers(subject, numbered(origin, "7"), good(origin))
            .await
            .unwrap();
    }
    // A good batch is events 10, 11 and 12 of its node: sent twice it arrives once, and
    // event 12 sent alone afterwards is a second copy too.
    let good_batch = batch(&[
        event("t.a", "b10"),
        event("t.a", "b11"),
        event("t.a", "b12"),
    ]);
    for (headers, payload) in [
        (batched("x-3", "10", "3"), good_batch.clone()),
        (batched("x-3", "10", "3"), good_batch),
        (numbered("x-3", "12"), good("b12 again")),
    ] {
        client
            .publish_with_headers(subject, headers, payload)
            .await
            .unwrap();
    }
    // Then a good message and a good broadcast: they arrive, after everything above.
    client
        .publish_with_headers(subject, headers("x-1"), good("fine"))
        .await
        .unwrap();
    client
        .publish_with_headers(
            "modhost.evil.ws.w",
            headers("x-1"),
            bytes::Bytes::from_static(b"ws fine"),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    for expected in ["x-1", "x-2", "b10", "b11", "b12", "fine"] {
        let delivered = inbox.recv_timeout(PATIENCE).unwrap();
        assert_eq!(
            (delivered.topic.as_str(), &delivered.payload[..]),
            ("t.a", expected.as_bytes())
        );
    }
    assert_eq!(next_text(&mut socket).await, "ws fine");
    assert!(
        inbox.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing else got through"
    );
    let counts = node_a.cluster_status().unwrap().messages;
    assert_eq!(counts.dropped, 14, "{counts:?}");
    assert_eq!(counts.own_origin, 1, "{counts:?}");
    assert_eq!(counts.duplicates, 5, "{counts:?}");
    assert_eq!((counts.bus_in, counts.ws_in), (6, 1), "{counts:?}");

    // A forwarded call with a broken envelope gets a 400 answer, and the node keeps serving.
    project.install("greeter", &hello("still here"));
    node_a.reload("greeter").await.unwrap();
    eventually(PATIENCE, || {
        let status = node_a.cluster_status().unwrap();
        async move { status.serving.contains(&"greeter".to_owned()) }
    })
    .await;
    let answer = client
        .send_request(
            "modhost.evil.call.greeter",
            async_nats::Request::new()
                .headers(headers("x-1"))
                .payload(bytes::Bytes::from_static(b"not a request"))
                .timeout(Some(PATIENCE)),
        )
        .await
        .unwrap();
    let response = binary::HttpResponse::decode(&answer.payload).unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(get(node_a.addr(), "/m/greeter").await.body, "still here");
    node_a.shutdown().await;
}

/// A `modhost serve --cluster ...` child, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_killed_node_answer_503_within_the_deadline() {
    let nats = NatsServer::start();
    let url = nats.url();
    let project_a = Project::new("killed");
    project_a.install("greeter", &hello("from the process"));
    let (child, addr_a) = testkit::spawn_modhost_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_modhost")),
        &project_a.root,
        &project_a.root.join("modhost.log"),
        &["--cluster", &url, "--cluster-name", "kill", "--node", "a"],
    );
    let mut child = Child(child);
    let (_b, node_b) = node(&url, "kill", "b", &[]).await;
    let addr_b = node_b.addr();
    eventually(PATIENCE, || async move {
        get(addr_b, "/m/greeter").await.status == 200
    })
    .await;
    assert_eq!(get(addr_b, "/m/greeter").await.body, "from the process");
    let view = admin_json(addr_a, "/_admin/cluster").await;
    assert_eq!(view["node"], "a");
    assert_eq!(view["serving"][0], "greeter");

    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let started = Instant::now();
    let reply = get(addr_b, "/m/greeter").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // And the dead node leaves the peer list after the heartbeat timeout.
    eventually(PATIENCE, || {
        let peers = node_b.cluster_status().unwrap().peers;
        async move { peers.is_empty() }
    })
    .await;
    node_b.shutdown().await;
}

/// One client loop's calls: (started after the kill, status, body) each.
type Calls = Vec<(bool, u16, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fall_back_to_another_node_when_one_is_killed() {
    const LOOPS: usize = 4;
    const DEADLINE: Duration = Duration::from_secs(2);
    let nats = NatsServer::start();
    let url = nats.url();
    // greeter on a (a process, to SIGKILL) and on b; c has none and forwards every call.
    let project_a = Project::new("fallback-a");
    project_a.install("greeter", &hello("a"));
    let (child, addr_a) = testkit::spawn_modhost_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_modhost")),
        &project_a.root,
        &project_a.root.join("modhost.log"),
        &[
            "--cluster",
            &url,
            "--cluster-name",
            "fallback",
            "--node",
            "a",
        ],
    );
    let mut child = Child(child);
    let (_b, node_b) = node(&url, "fallback", "b", &[("greeter", &hello("b"))]).await;
    let project_c = Project::new("fallback-c");
    let mut config = project_c.config();
    config.cluster = Some(cluster_config(&url, "fallback", "c"));
    config.http.request_timeout = DEADLINE;
    let node_c = ServerBuilder::new(config).start().await.unwrap();
    let addr_c = node_c.addr();
    eventually(PATIENCE, || {
        let mut peers = peer_names(&node_c);
        peers.sort();
        async move { peers == ["a", "b"] }
    })
    .await;
    eventually(PATIENCE, || async move {
        admin_json(addr_a, "/_admin/cluster").await["serving"][0] == "greeter"
    })
    .await;
    wait_subscribed_call(&node_b).await;
    // The queue group spreads c's calls over a and b.
    let mut answered_by = std::collections::BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while answered_by.len() < 2 {
        let reply = get(addr_c, "/m/greeter").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        answered_by.insert(reply.body);
        assert!(Instant::now() < deadline, "only {answered_by:?} answered");
    }

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let killed = std::sync::Arc::new(AtomicBool::new(false));
    let made = std::sync::Arc::new(AtomicUsize::new(0));
    let loops: Vec<tokio::task::JoinHandle<Calls>> = (0..LOOPS)
        .map(|_| {
            let (killed, made) = (killed.clone(), made.clone());
            tokio::spawn(async move {
                let mut calls = Calls::new();
                while calls.iter().filter(|(after, ..)| *after).count() < 20 {
                    let after = killed.load(Ordering::SeqCst);
                    let reply = get(addr_c, "/m/greeter").await;
                    calls.push((after, reply.status, reply.body));
                    made.fetch_add(1, Ordering::SeqCst);
                }
                calls
            })
        })
        .collect();
    // Mid-run: the loops are calling.
    let made_now = made.clone();
    eventually(PATIENCE, || {
        let made = made_now.clone();
        async move { made.load(Ordering::SeqCst) >= 10 * LOOPS }
    })
    .await;
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    killed.store(true, Ordering::SeqCst);

    // What the design allows: a call a had taken when it died, or that NATS routed to a before
    // it saw a's connection close, gets no answer and fails with 504 at its deadline; a
    // loop's next call starts after that, when a is long gone. So each loop fails at most
    // once, with 504; every other call answers 200, and after the kill only b answers.
    for task in loops {
        let calls = task.await.unwrap();
        let failures: Vec<_> = calls
            .iter()
            .filter(|(_, status, _)| *status != 200)
            .collect();
        assert!(failures.len() <= 1, "{failures:?}");
        for (_, status, body) in &failures {
            assert_eq!(*status, 504, "{body}");
        }
        for (after, status, body) in &calls {
            if *status == 200 {
                assert!(body == "b" || (body == "a" && !after), "{after} {body}");
            }
        }
        assert!(
            calls
                .iter()
                .filter(|(after, status, _)| *after && *status == 200)
                .count()
                >= 19
        );
    }
    node_c.shutdown().await;
    node_b.shutdown().await;
}

/// Waits until `server` answers forwarded calls for `greeter`.
async fn wait_subscribed_call(server: &ServerHandle) {
    let deadline = Instant::now() + PATIENCE;
    while !server
        .cluster_status()
        .unwrap()
        .serving
        .contains(&"greeter".to_owned())
    {
        assert!(Instant::now() < deadline, "greeter is not served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_act_as_one_application() {
    let sender = testkit::example_module("sender");
    let receiver = testkit::example_module("receiver");
    let users = testkit::example_module("users");
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "app", "a", &[("sender", &sender), ("users", &users)]).await;
    let (_b, node_b) = node(
        &url,
        "app",
        "b",
        &[("receiver", &receiver), ("asker", &sender)],
    )
    .await;
    let (_c, node_c) = node(&url, "app", "c", &[]).await;
    wait_joined(&[&node_a, &node_b, &node_c]).await;
    // receiver subscribed to greetings.* in init.
    wait_subscribed(&node_b, "modhost.app.bus.greetings.>").await;

    // A browser on c; sender on a publishes, receiver on b relays.
    let mut socket = ws_connect(node_c.addr(), "greetings.hello").await;
    let monitor = node_c.monitor();
    eventually(PATIENCE, || {
        let monitor = monitor.clone();
        async move { monitor.ws_clients("greetings.hello") == 1 }
    })
    .await;
    const COUNT: usize = 200;
    for index in 0..COUNT {
        let reply = request(
            node_a.addr(),
            "POST",
            "/m/sender/send",
            &[],
            format!("m{index}").as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let mut seen = Vec::new();
    while seen.len() < COUNT {
        let text = next_text(&mut socket).await;
        // Each sender says hello on init; that may or may not reach this late browser.
        if text != "sender started" {
            seen.push(text);
        }
    }
    let expected: Vec<String> = (0..COUNT).map(|index| format!("m{index}")).collect();
    assert_eq!(seen, expected, "every message, in order");

    // users lives on a only; c answers for it.
    let addr_c = node_c.addr();
    eventually(PATIENCE, || async move {
        get(addr_c, "/m/users").await.status == 200
    })
    .await;
    let created = request(
        addr_c,
        "POST",
        "/m/users",
        &[("content-type", "application/json")],
        br#"{"name":"Ada","email":"ada@example.com"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let user: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let id = user["id"].as_u64().unwrap();
    let read = get(addr_c, &format!("/m/users/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("ada@example.com"), "{}", read.body);
    // A module on b asks users (on a) over the bus: request/reply crosses nodes.
    let addr_b = node_b.addr();
    let asked = loop_until_answered(addr_b, &id.to_string()).await;
    assert!(asked.contains("ada@example.com"), "{asked}");

    for server in [node_a, node_b, node_c] {
        server.shutdown().await;
    }
}

/// `POST /m/asker/ask` until b has heard a's heartbeat listing `users.get`.
async fn loop_until_answered(addr: std::net::SocketAddr, id: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = request(
            addr,
            "POST",
            "/m/asker/ask?topic=users.get&timeout_ms=2000",
            &[],
            id.as_bytes(),
        )
        .await;
        if reply.status == 200 {
            return reply.body;
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(
            Instant::now() < deadline,
            "users.get never answered across nodes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reaches_every_node_including_later_ones() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (_a, node_a) = node(&url, "dep", "a", &[]).await;
    let (_b, node_b) = node(&url, "dep", "b", &[]).await;
    wait_joined(&[&node_a, &node_b]).await;
    let (addr_a, addr_b) = (node_a.addr(), node_b.addr());

    // Through the admin endpoint of one node: both install and serve it locally.
    let reply = request(addr_a, "POST", "/_admin/deploy/greeter", &[], &hello("v1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deployed: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(deployed["module"], "greeter");
    for addr in [addr_a, addr_b] {
        eventually(PATIENCE, || async move {
            get(addr, "/m/greeter").await.body == "v1"
        })
        .await;
    }
    // b may first answer by forwarding to a, which installed it sooner: wait for b's own copy.
    let node_b_ref = &node_b;
    eventually(PATIENCE, || async move {
        node_b_ref
            .status()
            .iter()
            .any(|module| module.name == "greeter")
    })
    .await;
    // Refused before it reaches the store: not wasm, a bad name.
    let reply = request(addr_a, "POST", "/_admin/deploy/greeter", &[], b"not wasm").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let reply = request(addr_a, "POST", "/_admin/deploy/Bad.Name", &[], &hello("x")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // Through the command line: a new version hot-swaps in everywhere.
    let file = _a.root.join("greeter-v2.wasm");
    std::fs::write(&file, hello("v2")).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_modhost"))
        .args(["deploy", "greeter"])
        .arg(&file)
        .args(["--cluster", &url, "--cluster-name", "dep"])
        .status()
        .unwrap();
    assert!(status.success());
    for addr in [addr_a, addr_b] {
        eventually(PATIENCE, || async move {
            get(addr, "/m/greeter").await.body == "v2"
        })
        .await;
    }

    // A node that joins later installs what the cluster has (not just forwards to it).
    let (_c, node_c) = node(&url, "dep", "c", &[]).await;
    let monitor = node_c.monitor();
    eventually(PATIENCE, || {
        let monitor = monitor.clone();
        async move { monitor.module("greeter").is_some() }
    })
    .await;
    assert_eq!(get(node_c.addr(), "/m/greeter").await.body, "v2");
    // The dist watcher may swap the new file in before the install that wrote it returns and
    // is counted: wait for the count, then check that it is one.
    let node_c_ref = &node_c;
    eventually(PATIENCE, || async move {
        node_c_ref
            .cluster_status()
            .is_some_and(|status| status.messages.deploys_installed > 0)
    })
    .await;
    let installed = node_c.cluster_status().unwrap().messages.deploys_installed;
    assert_eq!(installed, 1, "only the latest version");

    // Without cluster mode there is nothing to deploy to.
    let project = Project::new("single-deploy");
    let single = project.start().await;
    let reply = request(
        single.addr(),
        "POST",
        "/_admin/deploy/greeter",
        &[],
        &hello("x"),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    for server in [node_a, node_b, node_c, single] {
        server.shutdown().await;
    }
}
