//! Every route and error status.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_routes_and_errors() {
    let project = Project::new("routes");
    project.install("hello", &hello("hi there"));
    project.install("trap", &answering(200, "never", "", "unreachable", ""));
    project.install(
        "quiet",
        &wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap(),
    );
    project.install("broken", b"not wasm");
    let server = project.start().await;
    let addr = server.addr();

    let reply = get(addr, "/m/hello").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "hi there"));
    assert_eq!(reply.headers["content-type"], "text/plain");
    assert_eq!(get(addr, "/m/hello/sub/path?x=1").await.status, 200);

    let reply = get(addr, "/m/nobody").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "no module named \"nobody\"")
    );
    let reply = get(addr, "/m/trap").await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        "module \"trap\" trapped; details are in the server log"
    );
    let reply = get(addr, "/m/quiet").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "module \"quiet\" does not handle HTTP requests")
    );
    assert_eq!(
        get(addr, "/m/broken").await.status,
        404,
        "a module that never loaded is not routable"
    );
    assert_eq!(get(addr, "/healthz").await.body, "ok");
    assert_eq!(get(addr, "/elsewhere").await.status, 404);

    // 413 beyond the body limit (1 MiB by default). The server may answer and close before
    // the body is sent: a raw connection reads the answer whatever happens to the write.
    let head = b"POST /m/hello HTTP/1.1\r\nhost: x\r\ncontent-length: 1048577\r\n\r\n";
    let body = vec![b'x'; 1024 * 1024 + 1];
    let (response, _) =
        crate::limits::raw_exchange(addr, head, &body, std::time::Duration::from_secs(5)).await;
    assert!(
        crate::limits::status_line(&response).starts_with("HTTP/1.1 413"),
        "{response}"
    );

    // Admin status: loaded modules with counters, the broken one with its reason.
    let reply = get(addr, "/_admin/modules").await;
    assert_eq!(reply.status, 200);
    let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let by_name = |name: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|module| module["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("hello")["requests"], 2);
    assert_eq!(by_name("trap")["traps"], 1);
    assert!(
        by_name("broken")["last_rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("bad magic number")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_a_503_with_retry_after() {
    let project = Project::new("overload");
    project.install("slowpoke", fixture_guest());
    let mut config = project.config();
    config.modules.insert(
        "slowpoke".into(),
        wasi_host::ModuleConfig {
            inbox_capacity: 1,
            ..Default::default()
        },
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let slow = tokio::spawn(async move { get(addr, "/m/slowpoke/sleep?ms=600").await.status });
    // While it sleeps, one request can wait in the inbox; a burst of others gets 503s.
    eventually(Duration::from_secs(10), || {
        let server = &server;
        async move { server.status()[0].requests == 1 }
    })
    .await;
    let burst: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(addr, "/m/slowpoke/echo").await }))
        .collect();
    let mut statuses = Vec::new();
    for reply in burst {
        let reply = reply.await.unwrap();
        if reply.status == 503 {
            assert_eq!(reply.headers["retry-after"], "1");
        }
        statuses.push(reply.status);
    }
    assert_eq!(slow.await.unwrap(), 200);
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 503),
        "{statuses:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_passes_or_answers() {
    let project = Project::new("middleware");
    project.install("hello", &hello("target reached"));
    project.install("secret", &hello("secret data"));
    // "a-pass" runs before every module and passes; "b-block" guards only "secret".
    let pass = binary::HttpResponse::new(200, Vec::new())
        .with_header(binary::header::PASS, binary::header::PASS_VALUE);
    project.install("a-pass", &wat_response_module(&pass));
    project.rule("a-pass", "*");
    project.install(
        "b-block",
        &answering(401, "blocked by middleware", "", "", ""),
    );
    project.rule("b-block", "secret");
    let server = project.start().await;
    let addr = server.addr();
    let reply = get(addr, "/m/hello").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "target reached"));
    let reply = get(addr, "/m/secret").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "blocked by middleware")
    );
    // A middleware is routable itself, and never runs before itself.
    assert_eq!(get(addr, "/m/b-block").await.status, 401);
    let status = server.status();
    let count = |name: &str| {
        status
            .iter()
            .find(|module| module.name == name)
            .unwrap()
            .requests
    };
    assert_eq!(count("a-pass"), 3, "before hello, secret and b-block");
    assert_eq!(count("b-block"), 2, "before secret, and called directly");
    assert_eq!(count("secret"), 0, "short-circuited");
    // The admin JSON names rules and compile sources with string enums, not Debug output.
    let modules: Vec<serde_json::Value> =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    let module = |name: &str| {
        modules
            .iter()
            .find(|module| module["name"] == name)
            .unwrap()
    };
    assert_eq!(
        module("b-block")["middleware"],
        serde_json::json!({"applies_to": "only", "modules": ["secret"]})
    );
    assert_eq!(module("a-pass")["middleware"]["applies_to"], "all");
    assert!(module("hello")["middleware"].is_null());
    assert!(
        ["compiled", "memory_cache", "disk_cache"]
            .contains(&module("hello")["compiled_from"].as_str().unwrap()),
        "{}",
        module("hello")
    );
    // A target that itself passes leaves nobody to answer.
    let reply = get(addr, "/m/a-pass").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            404,
            "module \"a-pass\" passed the request and nothing else answers it"
        )
    );
    server.shutdown().await;
}

/// A v1 module that answers `response` to every request.
pub fn wat_response_module(response: &binary::HttpResponse) -> Vec<u8> {
    let encoded = binary::Envelope::encode(response);
    let escaped: String = encoded.iter().map(|byte| format!("\\{byte:02x}")).collect();
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) (data (i32.const 0) "{escaped}")
             (func (export "modhost_abi_version") (result i32) (i32.const 1))
             (func (export "alloc") (param i32) (result i32) (i32.const 8192))
             (func (export "handle") (param i32 i32) (result i64) (i64.const {})))"#,
        encoded.len()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_without_the_token_when_one_is_set() {
    let project = Project::new("admin");
    project.install("hello", &hello("v1"));
    let mut config = project.config();
    config.admin_token = Some("s3cret".into());
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/_admin/modules").await.status, 403);
    let reply = request(
        addr,
        "GET",
        "/_admin/modules",
        &[("authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = request(
        addr,
        "POST",
        "/_admin/reload/hello",
        &[("authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"outcome\": \"unchanged\""),
        "{}",
        reply.body
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_traps_and_rejections() {
    let project = Project::new("metrics");
    project.install("hello", &hello("hi"));
    project.install("trapper", &answering(200, "never", "", "unreachable", ""));
    project.install("broken", b"not wasm");
    let server = server::ServerBuilder::new(project.config())
        .start()
        .await
        .unwrap();
    let addr = server.addr();
    for _ in 0..3 {
        assert_eq!(get(addr, "/m/hello").await.status, 200);
    }
    assert_eq!(get(addr, "/m/trapper").await.status, 500);
    let reply = get(addr, "/_admin/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let metrics = reply.body;
    for line in [
        "# TYPE modhost_module_requests_total counter",
        "modhost_module_requests_total{module=\"hello\"} 3",
        "modhost_module_traps_total{module=\"trapper\"} 1",
        "modhost_module_errors_total{module=\"trapper\"} 1",
        "modhost_module_loaded{module=\"hello\"} 1",
        "modhost_module_loaded{module=\"broken\"} 0",
        "modhost_module_rejected{module=\"broken\"} 1",
        "modhost_module_rejected{module=\"hello\"} 0",
        "modhost_modules_draining 0",
        "modhost_ws_clients 0",
        "# TYPE modhost_module_request_seconds histogram",
        "modhost_module_request_seconds_bucket{module=\"hello\",le=\"+Inf\"} 3",
        "modhost_module_request_seconds_count{module=\"hello\"} 3",
        "modhost_module_request_seconds_count{module=\"trapper\"} 1",
    ] {
        assert!(
            metrics.lines().any(|got| got == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    // The latency buckets of a module are cumulative and end at its count.
    let buckets: Vec<u64> = metrics
        .lines()
        .filter(|line| line.starts_with("modhost_module_request_seconds_bucket{module=\"hello\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), server::LATENCY_BUCKETS.len() + 1);
    assert!(
        buckets.windows(2).all(|pair| pair[0] <= pair[1]),
        "{buckets:?}"
    );
    assert!(!metrics.contains("modhost_module_request_seconds_count{module=\"broken\""));
    // The process's own figures, from /proc/self.
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    assert!(value("process_resident_memory_bytes") > 1024 * 1024);
    assert!(value("process_open_fds") > 3);
    assert!(value("process_threads") > 1);
    // Every sample line belongs to a family declared before it.
    let mut declared = std::collections::HashSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            // A histogram's samples are its name + `_bucket`, `_sum` or `_count`.
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .any(|family| declared.contains(family));
            assert!(declared.contains(name) || histogram, "{line}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_routes_sit_beside_the_modules() {
    let project = Project::new("routes-app");
    project.install("hello", &hello("module"));
    let server = server::ServerBuilder::new(project.config())
        .route("/api/", |request| async move {
            server::text_response(200, format!("app saw {}", request.uri().path()))
        })
        .start()
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/api/version").await.body, "app saw /api/version");
    assert_eq!(get(addr, "/m/hello").await.body, "module");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let project = Project::new("shutdown");
    project.install("sleepy", fixture_guest());
    let mut config = project.config();
    config.modules.insert(
        "sleepy".into(),
        wasi_host::ModuleConfig {
            instances: Some(3),
            ..Default::default()
        },
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let in_flight: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "/m/sleepy/sleep?ms=300").await }))
        .collect();
    // All three are running in the module when the shutdown starts.
    eventually(Duration::from_secs(10), || {
        let server = &server;
        async move { server.status()[0].requests == 3 }
    })
    .await;
    server.shutdown().await;
    for reply in in_flight {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // And nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_on_one_module_stay_consistent() {
    let project = Project::new("concurrent");
    project.install("counter", fixture_guest());
    let server = project.start().await;
    let addr = server.addr();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..100 {
                    assert_eq!(get(addr, "/m/counter/count").await.status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(get(addr, "/m/counter/count").await.body, "201");
    server.shutdown().await;
}
