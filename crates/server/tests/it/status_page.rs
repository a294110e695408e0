//! The status page and its event stream over plain HTTP: `/_admin` renders the module table,
//! `/_admin/events` pushes snapshots (a refused reload within a second), streams are bounded,
//! end at shutdown, and answer only under the admin policy. The page in a real browser is in
//! `browser.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use crate::support::*;

/// An open `/_admin/events` stream and the bytes read from it but not yet parsed.
pub struct Events {
    body: Incoming,
    buffer: String,
}

impl Events {
    pub async fn open(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Result<Events, u16> {
        let mut builder = http::Request::get(format!("http://{addr}/_admin/events"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(builder.body(Empty::new()).unwrap()),
        )
        .await
        .expect("the event stream's headers within 10 s")
        .unwrap();
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(Events {
            body: response.into_body(),
            buffer: String::new(),
        })
    }

    /// The next snapshot; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data = event.lines().find_map(|line| line.strip_prefix("data: "))?;
                assert!(event.contains("event: snapshot\n"), "{event:?}");
                return Some(serde_json::from_str(data).unwrap());
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event or the end within 10 s")?;
            let frame = frame.unwrap();
            if let Some(data) = frame.data_ref() {
                self.buffer.push_str(std::str::from_utf8(data).unwrap());
            }
        }
    }

    /// Reads snapshots until `check` holds for one, returning it; panics after `limit`.
    pub async fn until(
        &mut self,
        limit: Duration,
        mut check: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let snapshot = self.next().await.expect("the stream ended");
            if check(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot as expected within {limit:?}; the last: {snapshot:#}"
            );
        }
    }
}

fn module<'a>(snapshot: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    snapshot["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|module| module["name"] == name)
        .unwrap_or_else(|| panic!("no module {name} in {snapshot:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_server_rendered_and_self_contained() {
    let project = Project::new("status-page");
    project.install("hello", &hello("v1"));
    project.install("broken", b"not wasm");
    let server = project.start().await;
    let addr = server.addr();
    assert_eq!(get(addr, "/m/hello").await.status, 200);
    for path in ["/_admin", "/_admin/"] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let page = reply.body;
        assert!(page.contains("<tr data-module=\"hello\">"), "{page}");
        assert!(page.contains("<tr data-module=\"broken\">"), "{page}");
        let version = server.status()[1].version.clone().unwrap();
        assert!(
            page.contains(&format!(
                "<td data-field=\"version\" class=\"mono\">{version}</td>"
            )),
            "{page}"
        );
        assert!(
            page.contains("<td data-field=\"requests\" class=\"num\">1</td>"),
            "{page}"
        );
        assert!(page.contains("not loaded"), "the refused module: {page}");
        // Nothing to fetch from elsewhere: no src/href attributes, no URLs but the stream.
        for external in ["src=", "href=", "http://", "https://", "@import"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(page.contains("new EventSource(\"/_admin/events\")"));
    }
    let status: serde_json::Value =
        serde_json::from_str(&get(addr, "/_admin/status").await.body).unwrap();
    assert_eq!(module(&status, "hello")["requests"], 1);
    assert!(
        module(&status, "broken")["last_rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("wasm")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_swaps_and_refusals_at_once() {
    let project = Project::new("status-events");
    project.install("hello", &hello("v1"));
    let server = project.start().await;
    let addr = server.addr();
    let mut events = Events::open(addr, &[]).await.unwrap();
    let first = events.next().await.unwrap();
    let v1 = module(&first, "hello")["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(module(&first, "hello")["last_rejected"].is_null());

    // A refused version: on the stream within a second of the reload finishing.
    project.install("hello", b"\0asm broken");
    let refused = std::time::Instant::now();
    let snapshot = events
        .until(Duration::from_secs(10), |snapshot| {
            !module(snapshot, "hello")["last_rejected"].is_null()
        })
        .await;
    let hello_row = module(&snapshot, "hello");
    assert_eq!(hello_row["version"], v1, "the old version keeps serving");
    assert!(
        !hello_row["last_rejected"]["reason"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    // The file watcher reacts in milliseconds; the snapshot follows the reload at once,
    // not at the next tick.
    assert!(
        refused.elapsed() < Duration::from_secs(1),
        "{:?}",
        refused.elapsed()
    );

    // A swap: the new version, then its drain time once the old one has drained.
    project.install("hello", &hello("v2"));
    let snapshot = events
        .until(Duration::from_secs(10), |snapshot| {
            let swap = &module(snapshot, "hello")["last_swap"];
            !swap.is_null() && swap["drain_ms"].is_number()
        })
        .await;
    let swap = &module(&snapshot, "hello")["last_swap"];
    assert_eq!(swap["old"], v1);
    assert_eq!(swap["new"], module(&snapshot, "hello")["version"]);
    assert_eq!(get(addr, "/m/hello").await.body, "v2");

    // Rates: requests show up as requests/s.
    for _ in 0..20 {
        assert_eq!(get(addr, "/m/hello").await.status, 200);
    }
    events
        .until(Duration::from_secs(10), |snapshot| {
            module(snapshot, "hello")["requests_per_second"]
                .as_f64()
                .unwrap()
                > 0.0
                && module(snapshot, "hello")["p99_ms"].is_number()
        })
        .await;
    server.shutdown().await;
    // What was sent before the shutdown may still be read; then the stream ends.
    let mut after = 0;
    while events.next().await.is_some() {
        after += 1;
        assert!(after < 100, "the stream goes on after shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_and_do_not_hold_shutdown() {
    let project = Project::new("status-bounded");
    project.install("hello", &hello("v1"));
    let server = project.start().await;
    let addr = server.addr();
    // A stream that is never read after its headers: it must not hold anything up. It is
    // opened first, and its headers awaited, so it holds one of the slots.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut idle,
        b"GET /_admin/events HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut idle, &mut byte)
            .await
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut streams = Vec::new();
    for _ in 1..server::MAX_EVENT_STREAMS {
        streams.push(Events::open(addr, &[]).await.unwrap());
    }
    assert_eq!(
        Events::open(addr, &[]).await.err(),
        Some(503),
        "one more than the bound"
    );
    // A closed stream frees its slot.
    drop(streams.pop());
    eventually(Duration::from_secs(5), || async {
        match Events::open(addr, &[]).await {
            Ok(stream) => {
                drop(stream);
                true
            }
            Err(status) => {
                assert_eq!(status, 503);
                false
            }
        }
    })
    .await;
    let mut reading = streams.pop().unwrap();
    assert!(reading.next().await.is_some());
    let started = Instant::now();
    server.shutdown().await;
    // The accept loop gives open connections the request timeout (30 s) to finish: streams
    // that ended at once are far below it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    while reading.next().await.is_some() {}
    for mut stream in streams {
        while stream.next().await.is_some() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_stream_follow_the_admin_policy() {
    let project = Project::new("status-token");
    project.install("hello", &hello("v1"));
    let mut config = project.config();
    config.admin_token = Some("s3cret".to_owned());
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    for path in ["/_admin", "/_admin/status"] {
        assert_eq!(get(addr, path).await.status, 403, "{path}");
        let authorized = request(
            addr,
            "GET",
            path,
            &[("authorization", "Bearer s3cret")],
            b"",
        );
        assert_eq!(authorized.await.status, 200, "{path}");
    }
    assert_eq!(Events::open(addr, &[]).await.err(), Some(403));
    assert_eq!(
        Events::open(addr, &[("authorization", "Bearer wrong")])
            .await
            .err(),
        Some(403)
    );
    let mut events = Events::open(addr, &[("authorization", "Bearer s3cret")])
        .await
        .unwrap();
    assert!(events.next().await.is_some());
    server.shutdown().await;
}

/// A `modhost serve` child, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_table_of_its_modules_once_listening() {
    let project = Project::new("summary");
    for name in ["counter", "receiver"] {
        project.install(name, &testkit::example_module(name));
    }
    project.install("broken", b"not wasm at all");
    let log = project.root.join("modhost.log");
    let (child, addr) = testkit::spawn_modhost(
        std::path::Path::new(env!("CARGO_BIN_EXE_modhost")),
        &project.root,
        &log,
    );
    let _child = Child(child);
    let mut text = String::new();
    eventually(Duration::from_secs(30), || {
        text = std::fs::read_to_string(&log).unwrap();
        let done = text.contains("  websocket    ws://");
        async move { done }
    })
    .await;
    let modules: serde_json::Value =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    let version = |name: &str| -> String {
        modules
            .as_array()
            .unwrap()
            .iter()
            .find(|module| module["name"] == name)
            .unwrap()["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let table: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.contains("modhost listening on http://"))
        .skip(1)
        .collect();
    let row = |name: &str| -> Vec<&str> {
        table
            .iter()
            .find(|line| line.starts_with(&format!("  {name} ")))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
            .split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect()
    };
    assert_eq!(
        table[0].split_whitespace().collect::<Vec<_>>(),
        ["MODULE", "ROUTE", "SUBSCRIPTIONS", "VERSION", "LOADED"],
        "{text}"
    );
    let receiver = row("receiver");
    assert_eq!(
        receiver[..4],
        [
            "receiver",
            "/m/receiver",
            "greetings.*",
            version("receiver").as_str()
        ],
        "{text}"
    );
    assert!(receiver[4].ends_with(" ms, compiled"), "{text}");
    let counter = row("counter");
    assert_eq!(
        counter[..4],
        ["counter", "/m/counter", "-", version("counter").as_str()],
        "{text}"
    );
    let broken = row("broken");
    assert_eq!(broken[..4], ["broken", "-", "-", "refused"], "{text}");
    assert!(broken[4].contains("broken"), "the reason: {text}");
    assert!(
        text.contains(&format!("  status page  http://{addr}/_admin\n")),
        "{text}"
    );
}
