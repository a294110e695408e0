//! Outbound HTTP (`http_send`, `allowed_hosts`): the `proxy` example module, compiled for
//! wasm32-wasip1, in the real server, against upstreams on loopback made for each fault — a
//! hyper server, one that never answers, one that resets, one whose body never ends, TLS
//! servers with a trusted and an untrusted certificate. Every refusal and failure must reach
//! the guest as a clear error, the module must keep serving, and a healthy module beside it
//! must never notice.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use server::{HostPattern, OutboundPolicy, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use wasi_host::ModuleConfig;

use crate::support::{Project, answering, get, hello, request};

/// What the upstream saw: requests served, and the most in flight at once on `/slow`.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A hyper upstream on loopback: `/` answers `upstream ok`, `/echo` its body and content
/// type, `/redirect?to=URL` a 302 there, `/loop` a 302 to itself, `/slow` after 150 ms.
async fn upstream() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counters = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = counters.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(route(request, &seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn route(request: hyper::Request<Incoming>, seen: &Seen) -> hyper::Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let content_type = request.headers().get("content-type").cloned();
    let answer = |status: u16, body: Vec<u8>| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response
    };
    match path.as_str() {
        "/echo" => {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut response = answer(200, body.to_vec());
            if let Some(content_type) = content_type {
                response.headers_mut().insert("content-type", content_type);
            }
            response
        }
        "/redirect" => {
            let mut response = answer(302, Vec::new());
            let to = query.strip_prefix("to=").unwrap_or("/");
            response
                .headers_mut()
                .insert("location", to.parse().unwrap());
            response
        }
        "/loop" => {
            let mut response = answer(302, Vec::new());
            response
                .headers_mut()
                .insert("location", "/loop".parse().unwrap());
            response
        }
        "/slow" => {
            let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer(200, b"slow ok".to_vec())
        }
        _ => answer(200, b"upstream ok".to_vec()),
    }
}

/// A raw TCP upstream that does `behave` with each connection.
async fn raw_upstream<F, Fut>(behave: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(behave(stream));
        }
    });
    addr
}

/// Never answers: reads the request and holds the connection until the test ends.
async fn silent(mut stream: tokio::net::TcpStream) {
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

/// Resets the connection once the request has arrived.
async fn resetting(mut stream: tokio::net::TcpStream) {
    let mut buffer = [0u8; 4096];
    let _ = stream.read(&mut buffer).await;
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Answers 200 with a chunked body that never ends (until the client goes away).
async fn endless(mut stream: tokio::net::TcpStream) {
    let mut buffer = [0u8; 4096];
    let _ = stream.read(&mut buffer).await;
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(head).await.is_err() {
        return;
    }
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    while stream.write_all(chunk.as_bytes()).await.is_ok() {}
}

/// A certificate authority made for this test run, and a server certificate it signs.
struct Authority {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Authority {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS upstream on loopback for `host`, answering `secure ok` over HTTP/1.1.
    async fn serve(&self, host: &str) -> SocketAddr {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], key_der)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        raw_upstream(move |stream| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("secure ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await
    }
}

fn encode(url: &str) -> String {
    url.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn patterns(entries: &[String]) -> Vec<HostPattern> {
    entries.iter().map(|entry| entry.parse().unwrap()).collect()
}

/// What the proxy answered: status, and the body as JSON when it is JSON.
async fn proxy(addr: SocketAddr, module: &str, url: &str) -> (u16, String) {
    let reply = get(addr, &format!("/m/{module}?url={}", encode(url))).await;
    (reply.status, reply.body)
}

/// Every fault case against one running server, with a healthy module answering throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_faults_reach_the_guest_and_the_module_keeps_serving() {
    let (ok, seen) = upstream().await;
    let quiet = raw_upstream(silent).await;
    let reset = raw_upstream(resetting).await;
    let flood = raw_upstream(endless).await;
    let trusted = Authority::new("modhost test CA");
    let stranger = Authority::new("nobody's CA");
    let secure = trusted.serve("secure.test").await;
    let untrusted = stranger.serve("untrusted.test").await;

    let project = Project::new("outbound");
    let wasm = testkit::example_module("proxy");
    project.install("proxy", &wasm);
    project.install("slowproxy", &wasm);
    project.install("healthy", &hello("healthy"));
    // A module that hands `http_send` a pointer outside its memory when the path is not empty.
    let bad_pointer = answering(
        200,
        "fine",
        r#"(import "env" "http_send" (func $send (param i32 i32) (result i64)))"#,
        "(if (i32.load8_u offset=11 (local.get $ptr)) (then (drop (call $send (i32.const -16) (i32.const 100)))))",
        "",
    );
    project.install("oob", &bad_pointer);
    let ca_file = project.root.join("test-ca.pem");
    std::fs::write(&ca_file, trusted.pem()).unwrap();

    let mut config = project.config();
    config.outbound.ca_files = vec![ca_file];
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    for name in [
        "secure.test",
        "untrusted.test",
        "api.listed.test",
        "api.wild.test",
    ] {
        config.outbound.resolve.insert(name.to_owned(), loopback);
    }
    let allowed = [
        ok.to_string(),
        quiet.to_string(),
        reset.to_string(),
        flood.to_string(),
        "secure.test".to_owned(),
        "untrusted.test".to_owned(),
        "api.listed.test".to_owned(),
        "*.wild.test".to_owned(),
    ];
    config.outbound_policies.insert(
        "proxy".to_owned(),
        OutboundPolicy {
            allowed_hosts: patterns(&allowed),
            timeout: Duration::from_millis(400),
            max_response_bytes: 64 * 1024,
            max_redirects: 3,
            ..OutboundPolicy::default()
        },
    );
    // The same module with a handle deadline shorter than its outbound timeout.
    let mut slow_module = ModuleConfig::default();
    slow_module.limits.handle_deadline = Duration::from_millis(400);
    config.modules.insert("slowproxy".to_owned(), slow_module);
    config.outbound_policies.insert(
        "slowproxy".to_owned(),
        OutboundPolicy {
            allowed_hosts: patterns(&[quiet.to_string(), ok.to_string()]),
            ..OutboundPolicy::default()
        },
    );
    let server = ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    // The healthy module is called all along and must never fail.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut calls = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let reply = get(addr, "/m/healthy").await;
                assert_eq!((reply.status, reply.body.as_str()), (200, "healthy"));
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            calls
        })
    };

    // It works, through the real module: GET, POST with a body, a redirect to an allowed host,
    // HTTPS with a CA trusted by configuration, a private address listed by name.
    assert_eq!(
        proxy(addr, "proxy", &format!("http://{ok}/")).await,
        (200, "upstream ok".to_owned())
    );
    let posted = request(
        addr,
        "POST",
        &format!("/m/proxy?url={}", encode(&format!("http://{ok}/echo"))),
        &[("content-type", "application/json")],
        br#"{"a":1}"#,
    )
    .await;
    assert_eq!((posted.status, posted.body.as_str()), (200, r#"{"a":1}"#));
    assert_eq!(
        posted.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        proxy(addr, "proxy", &format!("http://{ok}/redirect?to=/")).await,
        (200, "upstream ok".to_owned())
    );
    assert_eq!(
        proxy(
            addr,
            "proxy",
            &format!("https://secure.test:{}/", secure.port())
        )
        .await,
        (200, "secure ok".to_owned())
    );
    assert_eq!(
        proxy(
            addr,
            "proxy",
            &format!("http://api.listed.test:{}/", ok.port())
        )
        .await,
        (200, "upstream ok".to_owned())
    );

    // Each refusal or fault: the status the module chose for the error kind, and the host's
    // message naming the module and the host.
    let requests_before = seen.requests.load(Ordering::SeqCst);
    let cases: Vec<(String, u16, &str, Vec<String>)> = vec![
        (
            "not a url".to_owned(),
            400,
            "invalid",
            vec!["does not parse".to_owned()],
        ),
        (
            format!("ftp://{ok}/file"),
            400,
            "invalid",
            vec!["only http and https".to_owned()],
        ),
        (
            "http://api.example.org/".to_owned(),
            403,
            "denied",
            vec![
                "module \\\"proxy\\\"".to_owned(),
                "host \\\"api.example.org\\\"".to_owned(),
                "allowed_hosts".to_owned(),
            ],
        ),
        (
            format!("http://localhost:{}/", ok.port()),
            403,
            "denied",
            vec![format!("host \\\"localhost:{}\\\"", ok.port())],
        ),
        // A name admitted only by `*.wild.test`, on a port no address entry lists.
        (
            format!("http://api.wild.test:{}/", untrusted.port()),
            403,
            "denied",
            vec!["resolves to the internal address 127.0.0.1".to_owned()],
        ),
        (
            format!("http://{ok}/redirect?to=http://localhost:{}/", ok.port()),
            403,
            "denied",
            vec![
                "redirect from".to_owned(),
                format!("host \\\"localhost:{}\\\"", ok.port()),
            ],
        ),
        (
            format!("http://{ok}/loop"),
            429,
            "limit",
            vec!["redirected more than 3 times".to_owned()],
        ),
        (
            format!("http://{quiet}/"),
            504,
            "timeout",
            vec!["outbound timeout of 400 ms".to_owned()],
        ),
        (
            format!("http://{flood}/"),
            502,
            "too_large",
            vec!["larger than 65536 bytes".to_owned()],
        ),
        (
            format!("http://{reset}/"),
            502,
            "connect",
            vec!["connection".to_owned()],
        ),
        (
            format!("https://untrusted.test:{}/", untrusted.port()),
            502,
            "tls",
            vec!["TLS handshake".to_owned(), "certificate".to_owned()],
        ),
    ];
    for (url, status, kind, needles) in &cases {
        let started = Instant::now();
        let (answered, body) = proxy(addr, "proxy", url).await;
        assert_eq!(answered, *status, "{url}: {body}");
        assert!(
            body.contains(&format!("\"kind\":\"{kind}\"")),
            "{url}: {body}"
        );
        assert!(body.contains("http send"), "{url}: {body}");
        for needle in needles {
            assert!(
                body.contains(needle.as_str()),
                "{url}: {needle:?} not in {body}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url} took {:?}",
            started.elapsed()
        );
        // The module keeps serving after each one.
        assert_eq!(get(addr, "/m/proxy/hello").await.body, "hello");
    }
    // Only the redirecting requests reached the upstream: the one redirecting to localhost,
    // and /loop with its 3 followed redirects. No refused request was sent.
    assert_eq!(
        seen.requests.load(Ordering::SeqCst) - requests_before,
        1 + 4
    );

    // 1,000 outbound calls in one handle: the per-call cap (100) lets 100 through, refuses
    // the rest without sending them, and the call ends in time.
    let before = seen.requests.load(Ordering::SeqCst);
    let many = get(
        addr,
        &format!(
            "/m/proxy/many?url={}&n=1000",
            encode(&format!("http://{ok}/"))
        ),
    )
    .await;
    assert_eq!(many.status, 200, "{}", many.body);
    let counts: serde_json::Value = serde_json::from_str(&many.body).unwrap();
    assert_eq!(counts["ok"], 100, "{counts}");
    assert_eq!(counts["errors"]["limit"], 900, "{counts}");
    assert!(
        counts["first_error"]
            .as_str()
            .unwrap()
            .contains("more than 100 outbound requests in one call"),
        "{counts}"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst) - before, 100);

    // An upstream that never answers, with the handle deadline (400 ms) before the outbound
    // timeout (10 s): the call ends at its deadline, and the module serves the next one.
    let started = Instant::now();
    let (status, body) = proxy(addr, "slowproxy", &format!("http://{quiet}/")).await;
    assert!(status >= 500, "{status} {body}");
    assert!(body.contains("deadline"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        proxy(addr, "slowproxy", &format!("http://{ok}/")).await,
        (200, "upstream ok".to_owned())
    );

    // An out-of-bounds pointer: the call fails as a broken ABI (the server log names the
    // import), the instance is replaced, and the module answers the next request.
    let oob = get(addr, "/m/oob/x").await;
    assert_eq!(oob.status, 500, "{}", oob.body);
    assert!(
        oob.body.contains("module \"oob\" broke the ABI"),
        "{}",
        oob.body
    );
    assert_eq!(get(addr, "/m/oob").await.body, "fine");

    // Accounting: per module and host, in /_admin/modules and /_admin/metrics.
    let modules: serde_json::Value =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    let proxy_status = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|module| module["name"] == "proxy")
        .unwrap();
    let by_host = &proxy_status["outbound"];
    assert!(
        by_host[ok.to_string()]["requests"].as_u64().unwrap() >= 104,
        "{by_host}"
    );
    assert_eq!(by_host["api.example.org"]["refused"], 1, "{by_host}");
    assert_eq!(by_host[quiet.to_string()]["errors"], 1, "{by_host}");
    let metrics = get(addr, "/_admin/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "modhost_outbound_refused_total{{module=\"proxy\",host=\"localhost:{}\"}} 1",
            ok.port()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("modhost_outbound_errors_total{module=\"proxy\",host=\"untrusted.test:"),
        "{metrics}"
    );

    stop.store(true, Ordering::SeqCst);
    let calls = watcher.await.unwrap();
    assert!(calls > 0);
    server.shutdown().await;
}

/// At most `outbound_max_concurrent` requests of a module are in flight at once, however many
/// instances call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_has_at_most_its_concurrency_cap_in_flight() {
    let (ok, seen) = upstream().await;
    let project = Project::new("outbound-cap");
    project.install("proxy", &testkit::example_module("proxy"));
    let mut config = project.config();
    config.modules.insert(
        "proxy".to_owned(),
        ModuleConfig {
            instances: Some(4),
            ..ModuleConfig::default()
        },
    );
    config.outbound_policies.insert(
        "proxy".to_owned(),
        OutboundPolicy {
            allowed_hosts: patterns(&[ok.to_string()]),
            max_concurrent: 2,
            ..OutboundPolicy::default()
        },
    );
    let server = ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("http://{ok}/slow");
            tokio::spawn(async move { proxy(addr, "proxy", &url).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), (200, "slow ok".to_owned()));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 8);
    assert_eq!(seen.most_in_flight.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

/// A module with no `allowed_hosts` reaches nothing: deny by default.
#[tokio::test]
async fn without_a_grant_every_host_is_refused() {
    let (ok, seen) = upstream().await;
    let project = Project::new("outbound-none");
    project.install("proxy", &testkit::example_module("proxy"));
    let server = project.start().await;
    let (status, body) = proxy(server.addr(), "proxy", &format!("http://{ok}/")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is not in its allowed_hosts"), "{body}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    server.shutdown().await;
}
