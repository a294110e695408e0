//! Tests against the real Rust guest in `tests/fixtures/guest`.

use std::sync::Arc;
use std::time::Duration;

use binary::{HttpRequest, Message};
use wasi_host::{
    CallError, CallErrorKind, Grants, Host, LoadedModule, LogLevel, LogSource, ModuleConfig,
};

/// The fixture guest's `.wasm`, built once per test run.
pub fn guest_wasm() -> &'static [u8] {
    testkit::fixture_guest()
}

pub fn get(module: &LoadedModule, path_and_query: &str) -> Result<(u16, String), CallError> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let request = HttpRequest {
        query: query.into(),
        ..HttpRequest::new("GET", path)
    };
    module.handle_blocking(request).map(|response| {
        (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
    })
}

fn load(host: &Host, name: &str, config: &ModuleConfig) -> LoadedModule {
    host.load(name, guest_wasm(), config)
        .expect("fixture loads")
}

#[test]
fn echo_round_trips_the_whole_request() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "fixture", &ModuleConfig::default());
    assert_eq!(module.abi(), wasi_host::AbiVersion::V1);
    let request = HttpRequest {
        query: "a=1".into(),
        body: b"hi".to_vec(),
        ..HttpRequest::new("POST", "/echo")
    };
    let response = module.handle_blocking(request).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.body, b"POST /echo a=1 hi");
    module.close();
}

#[test]
fn stdout_and_stderr_reach_the_log_line_by_line() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "printer", &ModuleConfig::default());
    assert_eq!(get(&module, "/print").unwrap().0, 200);
    let logs = module.recent_logs();
    let find = |text: &str| {
        logs.iter()
            .find(|line| line.text == text)
            .unwrap_or_else(|| panic!("{text:?} not in {logs:?}"))
    };
    assert_eq!(find("hello from stdout").source, LogSource::Stdout);
    assert_eq!(find("partial line").level, LogLevel::Info);
    let stderr = find("hello from stderr");
    assert_eq!(
        (stderr.source, stderr.level),
        (LogSource::Stderr, LogLevel::Warn)
    );
    assert!(
        logs.iter()
            .any(|line| line.source == LogSource::Import && line.text == "init subscribed: 0")
    );
}

#[test]
fn sleep_clocks_and_random_work() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "sleeper", &ModuleConfig::default());
    let (status, slept) = get(&module, "/sleep?ms=60").unwrap();
    assert_eq!(status, 200);
    assert!(slept.parse::<u64>().unwrap() >= 60, "slept {slept} ms");
    let (status, time) = get(&module, "/time").unwrap();
    assert_eq!(status, 200);
    let seconds: u64 = time.split(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 1_700_000_000, "{time}");
}

#[test]
fn a_panic_is_a_trap_and_the_instance_is_replaced() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "panicky", &ModuleConfig::default());
    assert_eq!(get(&module, "/count").unwrap().1, "1");
    assert_eq!(get(&module, "/count").unwrap().1, "2");
    let error = get(&module, "/panic").unwrap_err();
    match &error {
        CallError {
            module,
            export,
            kind: CallErrorKind::Trap { message, .. },
        } => {
            assert_eq!((module.as_str(), *export), ("panicky", "handle"));
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("module \"panicky\": handle: trapped: "),
        "{error}"
    );
    // One line; the guest's frames are data beside it.
    assert!(!error.to_string().contains('\n'), "{error}");
    assert!(!error.backtrace().is_empty(), "{error:?}");
    // The fresh instance has fresh state and serves normally.
    assert_eq!(get(&module, "/count").unwrap().1, "1");
    let stats = module.stats();
    assert_eq!(
        (stats.traps, stats.replacements, stats.request_errors),
        (1, 1, 1)
    );
    // The panic message went to stderr.
    assert!(
        module
            .recent_logs()
            .iter()
            .any(|line| line.text.contains("fixture panics on purpose"))
    );
}

#[test]
fn a_spinning_guest_is_interrupted_at_its_deadline() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.handle_deadline = Duration::from_millis(200);
    let module = load(&host, "spinner", &config);
    let started = std::time::Instant::now();
    let error = get(&module, "/spin").unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            error,
            CallError {
                export: "handle",
                kind: CallErrorKind::Deadline { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(took < Duration::from_secs(3), "interrupt took {took:?}");
    assert_eq!(get(&module, "/echo").unwrap().0, 200);
    assert_eq!(module.stats().timeouts, 1);
    assert_eq!(module.stats().replacements, 1);
}

#[test]
fn a_sleeping_guest_is_woken_and_stopped_at_its_deadline() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.handle_deadline = Duration::from_millis(200);
    let module = load(&host, "sleeper", &config);
    // Sleeps shorter than the deadline are untouched.
    let (status, slept) = get(&module, "/sleep?ms=50").unwrap();
    assert_eq!(status, 200);
    assert!(slept.parse::<u64>().unwrap() >= 50, "{slept}");
    // A 30 s sleep (WASI poll_oneoff) ends at the deadline, and the call is stopped there.
    let started = std::time::Instant::now();
    let error = get(&module, "/sleep?ms=30000").unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            error,
            CallError {
                export: "handle",
                kind: CallErrorKind::Deadline { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(get(&module, "/echo").unwrap().0, 200);
    assert_eq!(module.stats().timeouts, 1);
}

#[test]
fn the_sandbox_grants_nothing_by_default() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "sandboxed", &ModuleConfig::default());
    let (status, env) = get(&module, "/env").unwrap();
    assert_eq!(
        (status, env.as_str()),
        (200, ""),
        "no environment variables by default"
    );
    let (status, body) = get(&module, "/passwd").unwrap();
    assert_eq!(status, 403, "reading /etc/passwd must fail: {body}");
    let (status, body) = get(&module, "/socket").unwrap();
    assert_eq!(status, 403, "opening a socket must fail: {body}");
}

#[test]
fn granted_environment_variables_are_visible() {
    let host = Host::standalone().unwrap();
    let config = ModuleConfig {
        grants: Grants {
            env: vec![("GREETING".into(), "hello".into())],
            ..Grants::default()
        },
        ..ModuleConfig::default()
    };
    let module = load(&host, "granted", &config);
    assert_eq!(get(&module, "/env").unwrap().1, "GREETING=hello");
}

#[test]
fn subscriptions_from_init_are_dormant_until_live() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "subscriber", &ModuleConfig::default());
    assert_eq!(module.subscriptions(), vec!["fixture.in".to_owned()]);
    assert!(!module.is_live());
    let report = host
        .bus()
        .publish(Message::event("fixture.in", b"early".to_vec()))
        .unwrap();
    assert_eq!(report.delivered, 0, "dormant subscriptions receive nothing");
    module.go_live().unwrap();
    let report = host
        .bus()
        .publish(Message::event("fixture.in", b"late".to_vec()))
        .unwrap();
    assert_eq!(report.delivered, 1);
    wait_for(|| get(&module, "/seen").unwrap().1 == "late");
}

#[test]
fn take_over_moves_subscriptions_in_one_step() {
    let host = Host::standalone().unwrap();
    let old = load(&host, "swap", &ModuleConfig::default());
    old.go_live().unwrap();
    host.bus()
        .publish(Message::event("fixture.in", b"one".to_vec()))
        .unwrap();
    let new = host
        .load("swap", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    new.take_over_from(&old).unwrap();
    assert!(new.is_live() && !old.is_live());
    assert!(old.subscriptions().is_empty());
    host.bus()
        .publish(Message::event("fixture.in", b"two".to_vec()))
        .unwrap();
    wait_for(|| get(&new, "/seen").unwrap().1 == "two");
    assert_eq!(get(&old, "/seen").unwrap().1, "one");
    let report = old.drain(Duration::from_secs(1));
    assert!(report.completed(), "{report:?}");
    old.close();
    assert!(matches!(
        get(&old, "/echo"),
        Err(CallError {
            kind: CallErrorKind::Closed,
            ..
        })
    ));
}

#[test]
fn request_reply_between_modules() {
    let host = Host::standalone().unwrap();
    let responder = load(&host, "responder", &ModuleConfig::default());
    responder.go_live().unwrap();
    // The host asks the module...
    let reply = host
        .bus()
        .request(
            Message::request("fixture.in", 0, b"ping".to_vec()),
            Duration::from_secs(2),
        )
        .unwrap();
    assert_eq!(reply.payload, b"echo:ping");
    // ...and a module asks another one (the asker is not subscribed to the topic).
    let asker = host
        .load("asker", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    let request = HttpRequest {
        query: "topic=fixture.in".into(),
        body: b"pong".to_vec(),
        ..HttpRequest::new("POST", "/request")
    };
    let response = asker.handle_blocking(request).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "Response echo:pong"
    );
    // Nobody listens: a clear code, quickly.
    let request = HttpRequest {
        query: "topic=nobody.home".into(),
        ..HttpRequest::new("POST", "/request")
    };
    let response = asker.handle_blocking(request).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "request failed: -5"
    );
}

#[test]
fn concurrent_callers_are_serialized_on_one_instance() {
    let host = Host::standalone().unwrap();
    let module = Arc::new(load(&host, "counter", &ModuleConfig::default()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let module = module.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    assert_eq!(get(&module, "/count").unwrap().0, 200);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(get(&module, "/count").unwrap().1, "401");
    assert_eq!(module.stats().requests, 401);
}

#[test]
fn a_full_inbox_is_an_overloaded_error() {
    let host = Host::standalone().unwrap();
    let config = ModuleConfig {
        inbox_capacity: 1,
        ..ModuleConfig::default()
    };
    let module = Arc::new(load(&host, "busy", &config));
    let busy = {
        let module = module.clone();
        std::thread::spawn(move || get(&module, "/sleep?ms=500"))
    };
    // Once the worker has taken the slow request, one job fits in the inbox; the next doesn't.
    wait_for(|| module.stats().requests == 1);
    module
        .deliver(Message::event("direct", b"fills the inbox".to_vec()))
        .unwrap();
    let error = get(&module, "/echo").unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::Overloaded { capacity: 1 }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "module \"busy\": handle: overloaded (1 jobs waiting)"
    );
    assert!(busy.join().unwrap().is_ok());
    // Once the worker has taken the queued message, the inbox has room again.
    wait_for(|| module.stats().messages == 1);
    assert_eq!(get(&module, "/echo").unwrap().0, 200);
    assert_eq!(module.stats().overloaded, 1);
}

#[test]
fn memory_is_capped_by_the_limit() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.max_memory_bytes = 8 * 1024 * 1024;
    let module = load(&host, "grower", &config);
    let mut last = Ok((200, String::new()));
    for _ in 0..16 {
        last = get(&module, "/grow");
        if last.is_err() {
            break;
        }
    }
    // The Rust allocator can't grow past 8 MiB: the guest aborts (a trap), the host lives.
    let error = last.unwrap_err();
    assert!(matches!(error.kind, CallErrorKind::Trap { .. }), "{error}");
    assert_eq!(get(&module, "/echo").unwrap().0, 200);
}

#[test]
fn the_disk_cache_is_used_and_damage_is_recompiled() {
    let dir = std::env::temp_dir().join(format!("modhost-it-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = wasi_host::HostConfig {
        cache_dir: Some(dir.clone()),
        ..Default::default()
    };
    let fresh = || {
        Host::new(
            config.clone(),
            bus::Bus::new(),
            Arc::new(wasi_host::NoBroadcast),
        )
        .unwrap()
    };
    let first = fresh().compile("cached", guest_wasm()).unwrap();
    assert_eq!(first.source(), wasi_host::CompileSource::Compiled);
    let host = fresh();
    let second = host.compile("cached", guest_wasm()).unwrap();
    assert_eq!(second.source(), wasi_host::CompileSource::DiskCache);
    assert_eq!(
        host.compile("cached", guest_wasm()).unwrap().source(),
        wasi_host::CompileSource::MemoryCache
    );
    // A damaged entry is detected by its checksum and replaced.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let third = fresh().compile("cached", guest_wasm()).unwrap();
    assert_eq!(third.source(), wasi_host::CompileSource::Compiled);
    let module = fresh()
        .load("cached", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    assert_eq!(module.compile_source(), wasi_host::CompileSource::DiskCache);
    assert_eq!(get(&module, "/echo").unwrap().0, 200);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Polls `condition` for up to 5 s.
pub fn wait_for(condition: impl FnMut() -> bool) {
    testkit::wait_for(Duration::from_secs(5), condition);
}
