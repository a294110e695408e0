//! The hostile-module corpus: broken, malicious and greedy modules loaded into one running
//! server, each with its expected outcome asserted, next to a healthy module that a client
//! keeps calling the whole time and that must never fail.
//!
//! A module refused at load is tried twice: under a fresh name (it must not become routable,
//! and `/_admin/modules` must say why) and as a new version of a module that works (the
//! last good version must keep serving). A module that loads is called twice over HTTP: the
//! second call shows that the server replaced or kept the instance and still answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasi_host::ModuleConfig;

use crate::support::{Project, answering, fixture_guest, get, hello};

/// What a case must do.
enum Expect {
    /// Refused at load with an error containing this text.
    Refused(&'static str),
    /// Loads; `GET /m/<name><path>` answers with one of `statuses` and a body that contains
    /// `body` (or is exactly `body` when `exact`), every time it is asked.
    Answers {
        path: &'static str,
        statuses: &'static [u16],
        body: &'static str,
        exact: bool,
    },
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    limits: fn(&mut wasi_host::Limits),
    expect: Expect,
}

fn defaults(_: &mut wasi_host::Limits) {}

fn answers(path: &'static str, status: &'static [u16], body: &'static str) -> Expect {
    Expect::Answers {
        path,
        statuses: status,
        body,
        exact: false,
    }
}

fn wat(source: &str) -> Vec<u8> {
    wat::parse_str(source).unwrap()
}

/// A v1 module with a bump allocator and the given extra items (exports, data, imports).
fn v1(imports: &str, body: &str) -> Vec<u8> {
    wat(&testkit::v1_module(imports, body))
}

const LOG: &str = r#"(import "env" "log" (func $log (param i32 i32)))"#;
const PUBLISH: &str = r#"(import "env" "publish" (func $publish (param i32 i32 i32 i32)))"#;
const KV: &str = r#"(import "env" "kv" (func $kv (param i32 i32) (result i64)))"#;
const HTTP_SEND: &str = r#"(import "env" "http_send" (func $send (param i32 i32) (result i64)))"#;

fn corpus() -> Vec<Case> {
    let valid = hello("valid");
    let fixture = fixture_guest().to_vec();
    vec![
        // Not WebAssembly, or not whole.
        Case {
            name: "garbage",
            bytes: b"this is not wasm at all, just some bytes".to_vec(),
            limits: defaults,
            expect: Expect::Refused("bad magic number"),
        },
        Case {
            name: "empty",
            bytes: Vec::new(),
            limits: defaults,
            expect: Expect::Refused("too short"),
        },
        Case {
            name: "wrong-magic",
            bytes: [b"\0asn".as_slice(), &valid[4..]].concat(),
            limits: defaults,
            expect: Expect::Refused("bad magic number"),
        },
        Case {
            name: "truncated",
            bytes: valid[..valid.len() / 2].to_vec(),
            limits: defaults,
            expect: Expect::Refused("invalid wasm"),
        },
        // Valid WebAssembly that doesn't fit the ABI.
        Case {
            name: "no-exports",
            bytes: wat("(module)"),
            limits: defaults,
            expect: Expect::Refused("missing export \"memory\""),
        },
        Case {
            name: "wrong-signature",
            bytes: wat(r#"(module (memory (export "memory") 1)
                 (func (export "modhost_abi_version") (result i32) (i32.const 1))
                 (func (export "alloc") (param i32) (result i32) (i32.const 0))
                 (func (export "handle") (param i32) (result i32) (i32.const 0)))"#),
            limits: defaults,
            expect: Expect::Refused(
                "export \"handle\" has type (i32) -> i32, expected (i32, i32) -> i64",
            ),
        },
        Case {
            name: "unknown-import",
            bytes: wat(
                r#"(module (import "env" "launch_missiles" (func (param i32)))
                 (memory (export "memory") 1))"#,
            ),
            limits: defaults,
            expect: Expect::Refused("unknown import \"env\".\"launch_missiles\""),
        },
        Case {
            name: "import-wrong-type",
            bytes: wat(r#"(module (import "env" "log" (func (param i32)))
                 (memory (export "memory") 1))"#),
            limits: defaults,
            expect: Expect::Refused("expected (i32, i32) -> ()"),
        },
        Case {
            name: "no-allocator",
            bytes: wat(r#"(module (memory (export "memory") 1)
                 (func (export "handle") (param i32 i32) (result i32) (i32.const 0)))"#),
            limits: defaults,
            expect: Expect::Refused("missing export \"alloc\""),
        },
        Case {
            name: "future-abi",
            bytes: wat(r#"(module (memory (export "memory") 1)
                 (func (export "modhost_abi_version") (result i32) (i32.const 7)))"#),
            limits: defaults,
            expect: Expect::Refused("ABI version 7 is not supported"),
        },
        // Refused while starting.
        Case {
            name: "start-traps",
            bytes: wat(r#"(module (memory (export "memory") 1)
                 (func $start unreachable) (start $start))"#),
            limits: defaults,
            expect: Expect::Refused("start function trapped"),
        },
        Case {
            name: "init-traps",
            bytes: wat(
                r#"(module (memory (export "memory") 1) (func (export "init") unreachable))"#,
            ),
            limits: defaults,
            expect: Expect::Refused("init: trapped"),
        },
        Case {
            name: "init-never-returns",
            bytes: wat(r#"(module (memory (export "memory") 1)
                 (func (export "init") (loop $forever (br $forever))))"#),
            limits: |limits| limits.init_deadline = Duration::from_millis(300),
            expect: Expect::Refused("deadline"),
        },
        Case {
            name: "huge-memory",
            bytes: wat(r#"(module (memory (export "memory") 2000))"#),
            limits: defaults,
            expect: Expect::Refused("declared minimum of 2000 pages"),
        },
        // Loads, then misbehaves in `handle`.
        Case {
            name: "handle-traps",
            bytes: answering(200, "unreachable", "", "unreachable", ""),
            limits: defaults,
            expect: answers("", &[500], "module \"handle-traps\" trapped"),
        },
        Case {
            name: "handle-loops",
            bytes: answering(200, "unreachable", "", "(loop $forever (br $forever))", ""),
            limits: |limits| limits.handle_deadline = Duration::from_millis(300),
            expect: answers("", &[500], "module \"handle-loops\" exceeded its deadline"),
        },
        Case {
            // 8 MiB = 128 pages: growing by 100 from 1 fits; the next 100 must fail with -1.
            name: "grows-past-limit",
            bytes: answering(
                200,
                "capped",
                "",
                "(drop (memory.grow (i32.const 100)))
                 (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))",
                "",
            ),
            limits: |limits| limits.max_memory_bytes = 8 * 1024 * 1024,
            expect: answers("", &[200], "capped"),
        },
        Case {
            name: "result-out-of-bounds",
            bytes: v1(
                "",
                r#"(func (export "handle") (param i32 i32) (result i64) (i64.const 0x7fff000000000100))"#,
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"result-out-of-bounds\" broke the ABI"),
        },
        Case {
            name: "result-garbage",
            bytes: v1(
                "",
                r#"(data (i32.const 0) "\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff")
                   (func (export "handle") (param i32 i32) (result i64) (i64.const 12))"#,
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"result-garbage\" broke the ABI"),
        },
        Case {
            name: "result-too-large",
            bytes: v1(
                "",
                r#"(func (export "handle") (param i32 i32) (result i64) (i64.const 8192))"#,
            ),
            limits: |limits| limits.max_response_bytes = 1024,
            expect: answers(
                "",
                &[500],
                "module \"result-too-large\" answered over the response size limit",
            ),
        },
        Case {
            name: "log-out-of-bounds",
            bytes: v1(
                LOG,
                r#"(func (export "handle") (param i32 i32) (result i64)
                     (call $log (i32.const 0xfffffff0) (i32.const 64)) (i64.const 0))"#,
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"log-out-of-bounds\" broke the ABI"),
        },
        Case {
            name: "publish-out-of-bounds",
            bytes: v1(
                PUBLISH,
                r#"(func (export "handle") (param i32 i32) (result i64)
                     (call $publish (i32.const 0) (i32.const 4) (i32.const 65000) (i32.const 10000))
                     (i64.const 0))"#,
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"publish-out-of-bounds\" broke the ABI"),
        },
        // The key-value import with bad input: a bad pointer fails the call; undecodable or
        // oversized requests are refused with -1 (the module traps if it gets anything else).
        Case {
            name: "kv-out-of-bounds",
            bytes: v1(
                KV,
                r#"(func (export "handle") (param i32 i32) (result i64)
                     (drop (call $kv (i32.const 0xfffffff0) (i32.const 64))) (i64.const 0))"#,
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"kv-out-of-bounds\" broke the ABI"),
        },
        Case {
            name: "kv-garbage",
            bytes: answering(
                200,
                "kv refused",
                KV,
                "(if (i64.ne (call $kv (i32.const 0) (i32.const 16)) (i64.const -1)) (then unreachable))",
                "",
            ),
            limits: defaults,
            expect: answers("", &[200], "kv refused"),
        },
        Case {
            name: "kv-huge-length",
            bytes: answering(
                200,
                "kv refused",
                KV,
                "(if (i64.ne (call $kv (i32.const 0) (i32.const 0x7fffffff)) (i64.const -1)) (then unreachable))",
                "",
            ),
            limits: defaults,
            expect: answers("", &[200], "kv refused"),
        },
        // The outbound HTTP import with bad input, as for `kv`: a bad pointer fails the call,
        // an undecodable or oversized request is refused with -1 before anything is sent
        // (`outbound.rs` has the refusals and faults of decodable requests).
        Case {
            name: "http-send-out-of-bounds",
            bytes: v1(
                HTTP_SEND,
                r#"(func (export "handle") (param i32 i32) (result i64)
                     (drop (call $send (i32.const 0xfffffff0) (i32.const 64))) (i64.const 0))"#,
            ),
            limits: defaults,
            expect: answers(
                "",
                &[500],
                "module \"http-send-out-of-bounds\" broke the ABI",
            ),
        },
        Case {
            name: "http-send-garbage",
            bytes: answering(
                200,
                "http_send refused",
                HTTP_SEND,
                "(if (i64.ne (call $send (i32.const 0) (i32.const 16)) (i64.const -1)) (then unreachable))",
                "",
            ),
            limits: defaults,
            expect: answers("", &[200], "http_send refused"),
        },
        Case {
            name: "http-send-huge-length",
            bytes: answering(
                200,
                "http_send refused",
                HTTP_SEND,
                "(if (i64.ne (call $send (i32.const 0) (i32.const 0x7fffffff)) (i64.const -1)) (then unreachable))",
                "",
            ),
            limits: defaults,
            expect: answers("", &[200], "http_send refused"),
        },
        Case {
            name: "recursion",
            bytes: answering(
                200,
                "unreachable",
                "",
                "(drop (call $down (i32.const 0)))",
                "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))",
            ),
            limits: defaults,
            expect: answers("", &[500], "module \"recursion\" trapped"),
        },
        // Floods: bounded by limits, the module keeps answering, nobody else notices.
        Case {
            // One million publishes in one call: either it finishes or the deadline stops it.
            name: "publish-flood",
            bytes: answering(
                200,
                "flooded",
                PUBLISH,
                "(local $i i32)
                 (loop $again
                   (call $publish (i32.const 8100) (i32.const 4) (i32.const 8100) (i32.const 4))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br_if $again (i32.lt_u (local.get $i) (i32.const 1000000))))",
                r#"(data (i32.const 8100) "spam")"#,
            ),
            limits: |limits| limits.handle_deadline = Duration::from_millis(500),
            expect: answers("", &[200, 500], ""),
        },
        Case {
            // 100k distinct topics (`t` + 5 letters) from `init`: 1024 are kept, the rest refused.
            name: "subscribe-flood",
            bytes: answering(
                200,
                "subscribed",
                r#"(import "env" "subscribe_topic" (func $subscribe (param i32 i32 i32) (result i32)))"#,
                "",
                r#"(data (i32.const 8100) "t")
                   (func (export "init")
                     (local $i i32)
                     (loop $again
                       (i32.store8 (i32.const 8101) (i32.add (i32.const 0x61) (i32.and (local.get $i) (i32.const 15))))
                       (i32.store8 (i32.const 8102) (i32.add (i32.const 0x61) (i32.and (i32.shr_u (local.get $i) (i32.const 4)) (i32.const 15))))
                       (i32.store8 (i32.const 8103) (i32.add (i32.const 0x61) (i32.and (i32.shr_u (local.get $i) (i32.const 8)) (i32.const 15))))
                       (i32.store8 (i32.const 8104) (i32.add (i32.const 0x61) (i32.and (i32.shr_u (local.get $i) (i32.const 12)) (i32.const 15))))
                       (i32.store8 (i32.const 8105) (i32.add (i32.const 0x61) (i32.and (i32.shr_u (local.get $i) (i32.const 16)) (i32.const 15))))
                       (drop (call $subscribe (i32.const 8100) (i32.const 6) (i32.const 0)))
                       (local.set $i (i32.add (local.get $i) (i32.const 1)))
                       (br_if $again (i32.lt_u (local.get $i) (i32.const 100000)))))"#,
            ),
            limits: defaults,
            expect: answers("", &[200], "subscribed"),
        },
        Case {
            name: "log-flood",
            bytes: answering(
                200,
                "logged",
                LOG,
                "(local $i i32)
                 (loop $again
                   (call $log (i32.const 8100) (i32.const 5))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))",
                r#"(data (i32.const 8100) "flood")"#,
            ),
            limits: |limits| limits.log_lines_per_second = 50,
            expect: answers("", &[200], "logged"),
        },
        // A Rust guest (std, WASI) trying to get out of the sandbox, panicking and spinning.
        Case {
            name: "rust-reads-passwd",
            bytes: fixture.clone(),
            limits: defaults,
            expect: answers("/passwd", &[403], "denied"),
        },
        Case {
            name: "rust-reads-env",
            bytes: fixture.clone(),
            limits: defaults,
            expect: Expect::Answers {
                path: "/env",
                statuses: &[200],
                body: "",
                exact: true,
            },
        },
        Case {
            name: "rust-opens-socket",
            bytes: fixture.clone(),
            limits: defaults,
            expect: answers("/socket", &[403], "denied"),
        },
        Case {
            name: "rust-panics",
            bytes: fixture.clone(),
            limits: defaults,
            expect: answers("/panic", &[500], "module \"rust-panics\" trapped"),
        },
        Case {
            name: "rust-sleeps",
            bytes: fixture.clone(),
            limits: |limits| limits.handle_deadline = Duration::from_millis(300),
            expect: answers(
                "/sleep?ms=30000",
                &[500],
                "module \"rust-sleeps\" exceeded its deadline",
            ),
        },
        Case {
            name: "rust-spins",
            bytes: fixture,
            limits: |limits| limits.handle_deadline = Duration::from_millis(300),
            expect: answers(
                "/spin",
                &[500],
                "module \"rust-spins\" exceeded its deadline",
            ),
        },
    ]
}

/// Calls `/m/healthy` in a loop until stopped; counts answers and failures.
struct Hammer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Hammer {
    fn start(addr: std::net::SocketAddr) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(addr, "/m/healthy").await;
                    if reply.status == 200 && reply.body == "healthy" {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("healthy failed: {} {}", reply.status, reply.body);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Hammer {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_modules_are_contained_and_the_rest_keeps_serving() {
    let cases = corpus();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let project = Project::new("hostile");
    let mut config = project.config();
    config.watch_dist = false;
    for case in &cases {
        let mut module = ModuleConfig::default();
        (case.limits)(&mut module.limits);
        config.modules.insert(case.name.to_owned(), module);
    }
    project.install("healthy", &hello("healthy"));
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/m/healthy").await.body, "healthy");
    let hammer = Hammer::start(addr);

    let mut table = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let outcome = match &case.expect {
            Expect::Refused(reason) => refused(&project, &server, case, reason).await,
            Expect::Answers {
                path,
                statuses,
                body,
                exact,
            } => answered(&project, &server, case, path, statuses, body, *exact).await,
        };
        assert_eq!(
            get(addr, "/m/healthy").await.body,
            "healthy",
            "{}",
            case.name
        );
        table.push(format!(
            "{:<24} {outcome} ({} ms)",
            case.name,
            started.elapsed().as_millis()
        ));
    }

    // The floods left their marks in the counters, and nothing more.
    let monitor = server.monitor();
    let stats = |name: &str| monitor.module_stats(name).unwrap();
    assert!(stats("publish-flood").published > 0);
    assert_eq!(stats("subscribe-flood").subscriptions, 1024);
    assert!(stats("subscribe-flood").import_errors >= 100_000 - 1024);
    assert!(
        stats("log-flood").logs_dropped > 90_000,
        "{:?}",
        stats("log-flood")
    );
    let status = server.status();
    let flood = status
        .iter()
        .find(|module| module.name == "subscribe-flood")
        .unwrap();
    assert_eq!(flood.subscriptions.len(), 1024);

    let (ok, failed) = hammer.finish().await;
    eprintln!(
        "hostile corpus, {} cases:\n  {}",
        cases.len(),
        table.join("\n  ")
    );
    eprintln!("healthy module: {ok} answers, {failed} failures");
    assert_eq!(failed, 0);
    assert!(ok > 0);
    server.shutdown().await;
}

/// Refused under a fresh name (not routable, reason shown), and refused as a new version of
/// a module that works (the old version keeps serving).
async fn refused(
    project: &Project,
    server: &server::ServerHandle,
    case: &Case,
    reason: &str,
) -> String {
    let name = case.name;
    let addr = server.addr();
    project.install(name, &case.bytes);
    let error = server.reload(name).await.unwrap_err();
    assert_eq!(error.module(), Some(name), "{error}");
    let error = error.to_string();
    assert!(
        error.starts_with(&format!("module \"{name}\": ")),
        "{name}: {error}"
    );
    assert!(error.contains(reason), "{name}: {error}");
    let reply = get(addr, &format!("/m/{name}")).await;
    assert_eq!(reply.status, 404, "{name}: {}", reply.body);
    let admin: serde_json::Value =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    let shown = admin
        .as_array()
        .unwrap()
        .iter()
        .find(|module| module["name"] == name)
        .unwrap_or_else(|| panic!("{name}: not in /_admin/modules: {admin}"));
    assert!(shown["version"].is_null(), "{name}: {shown}");
    let shown_reason = shown["last_rejected"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(shown_reason.contains(reason), "{name}: admin shows {shown}");

    // Now as a swap: a good version first, then the hostile bytes.
    project.install(name, &hello(name));
    server.reload(name).await.unwrap();
    assert_eq!(get(addr, &format!("/m/{name}")).await.body, name);
    project.install(name, &case.bytes);
    let error = server.reload(name).await.unwrap_err().to_string();
    assert!(error.contains(reason), "{name}: {error}");
    let reply = get(addr, &format!("/m/{name}")).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, name),
        "{name}: the last good version keeps serving"
    );
    let status = server.status();
    let entry = status.iter().find(|module| module.name == name).unwrap();
    let rejection = entry.last_rejected.as_ref().unwrap();
    assert!(rejection.reason.contains(reason), "{name}: {rejection:?}");
    format!("refused: {error}")
}

async fn answered(
    project: &Project,
    server: &server::ServerHandle,
    case: &Case,
    path: &str,
    statuses: &[u16],
    body: &str,
    exact: bool,
) -> String {
    let name = case.name;
    project.install(name, &case.bytes);
    server
        .reload(name)
        .await
        .unwrap_or_else(|error| panic!("{name} should load: {error}"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = get(server.addr(), &format!("/m/{name}{path}")).await;
        assert!(
            statuses.contains(&reply.status),
            "{name}: status {} ({})",
            reply.status,
            reply.body
        );
        if exact {
            assert_eq!(reply.body, body, "{name}");
        } else {
            assert!(reply.body.contains(body), "{name}: {}", reply.body);
        }
        seen.push(format!("{} {:?}", reply.status, truncate(&reply.body)));
    }
    format!("answers: {}", seen.join(", then "))
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(60) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// A `drain` that never says done: the swap still happens at once, and the old version is
/// closed when the drain timeout (2 s here) runs out, not before and not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_that_never_ends_is_cut_at_the_timeout() {
    let project = Project::new("drain-forever");
    let mut config = project.config();
    config.watch_dist = false;
    project.install("healthy", &hello("healthy"));
    project.install(
        "stubborn",
        &answering(
            200,
            "stubborn v1",
            "",
            "",
            r#"(func (export "drain") (result i32) (i32.const 100))"#,
        ),
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let hammer = Hammer::start(server.addr());
    assert_eq!(get(server.addr(), "/m/stubborn").await.body, "stubborn v1");

    project.install("stubborn", &hello("stubborn v2"));
    let swapped = Instant::now();
    server.reload("stubborn").await.unwrap();
    assert_eq!(get(server.addr(), "/m/stubborn").await.body, "stubborn v2");
    assert_eq!(server.monitor().draining(), 1);
    while server.monitor().draining() > 0 {
        assert!(swapped.elapsed() < Duration::from_secs(6), "never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_after = swapped.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1900),
        "closed after {closed_after:?}, before the drain timeout"
    );
    let (ok, failed) = hammer.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
    eprintln!("stubborn drain closed after {closed_after:?}; healthy answered {ok} times");
    server.shutdown().await;
}
