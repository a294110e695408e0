//! Hostile and broken modules: each gets a clear error naming the module, and the host keeps
//! serving a healthy module loaded beside it.

use std::time::Duration;

use binary::HttpRequest;
use wasi_host::{CallError, CallErrorKind, Host, LoadError, ModuleConfig};

use crate::wat_modules::{ORIGINAL_ABI, load, wasm};

/// A v1 module with a bump allocator, the `log` and `publish` imports, and `body`.
fn v1(body: &str) -> String {
    testkit::v1_module(
        r#"(import "env" "log" (func $log (param i32 i32)))
  (import "env" "publish" (func $publish (param i32 i32 i32 i32)))"#,
        body,
    )
}

fn healthy(host: &Host) -> wasi_host::LoadedModule {
    load(host, "healthy", ORIGINAL_ABI).unwrap()
}

fn still_serves(module: &wasi_host::LoadedModule) {
    let response = module
        .handle_blocking(HttpRequest::new("GET", "/ok"))
        .unwrap();
    assert_eq!(response.status, 200);
}

fn load_error(host: &Host, source_or_bytes: Result<&str, &[u8]>) -> LoadError {
    let bytes = match source_or_bytes {
        Ok(source) => wasm(source),
        Err(bytes) => bytes.to_vec(),
    };
    host.load("hostile", &bytes, &ModuleConfig::default())
        .unwrap_err()
}

#[test]
fn broken_binaries_are_refused_with_the_reason() {
    let host = Host::standalone().unwrap();
    let healthy = healthy(&host);
    let valid = wasm(ORIGINAL_ABI);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            "bad magic number",
        ),
        ("empty", Vec::new(), "too short"),
        (
            "wrong magic",
            [b"\0asn".as_slice(), &valid[4..]].concat(),
            "bad magic number",
        ),
        (
            "truncated",
            valid[..valid.len() / 2].to_vec(),
            "invalid wasm",
        ),
    ];
    for (case, bytes, expected) in cases {
        let error = host
            .load("hostile", &bytes, &ModuleConfig::default())
            .unwrap_err();
        assert!(
            matches!(error, LoadError::InvalidWasm { .. }),
            "{case}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("module \"hostile\": "),
            "{case}: {message}"
        );
        assert!(message.contains(expected), "{case}: {message}");
        still_serves(&healthy);
    }
}

#[test]
fn no_exports_at_all_is_a_missing_memory() {
    let host = Host::standalone().unwrap();
    let error = load_error(&host, Ok("(module)"));
    assert!(
        matches!(error, LoadError::MissingExport { ref export, .. } if export == "memory"),
        "{error}"
    );
}

#[test]
fn trapping_start_and_init_are_load_errors() {
    let host = Host::standalone().unwrap();
    let healthy = healthy(&host);
    let error = load_error(
        &host,
        Ok(r#"(module (memory (export "memory") 1) (func $start unreachable) (start $start))"#),
    );
    assert!(matches!(error, LoadError::Instantiate { .. }), "{error}");
    assert!(
        error.to_string().contains("start function trapped"),
        "{error}"
    );
    let error = load_error(
        &host,
        Ok(r#"(module (memory (export "memory") 1) (func (export "init") unreachable))"#),
    );
    assert!(
        matches!(
            error,
            LoadError::Init {
                source: CallError {
                    export: "init",
                    kind: CallErrorKind::Trap { .. },
                    ..
                },
                ..
            }
        ),
        "{error}"
    );
    still_serves(&healthy);
}

#[test]
fn an_init_that_never_returns_is_interrupted() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.init_deadline = Duration::from_millis(200);
    let bytes = wasm(
        r#"(module (memory (export "memory") 1) (func (export "init") (loop $forever (br $forever))))"#,
    );
    let error = host.load("hostile", &bytes, &config).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::Init {
                source: CallError {
                    export: "init",
                    kind: CallErrorKind::Deadline { .. },
                    ..
                },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_huge_declared_minimum_memory_is_refused() {
    let host = Host::standalone().unwrap();
    let error = load_error(&host, Ok(r#"(module (memory (export "memory") 2000))"#));
    assert!(
        matches!(error, LoadError::MemoryOverLimit { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("declared minimum of 2000 pages"),
        "{error}"
    );
}

#[test]
fn memory_grow_stops_at_the_limit() {
    let host = Host::standalone().unwrap();
    // 64 MiB = 1024 pages: growing by 1000 from 1 fits, the next 100 doesn't.
    let module = load(
        &host,
        "grow",
        &v1(r#"(func (export "handle") (param i32 i32) (result i64)
                 (drop (memory.grow (i32.const 1000)))
                 (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
                 (i64.const 0))"#),
    )
    .unwrap();
    // Returning (0 << 32 | 0) is an empty, undecodable response: an ABI error, not a trap.
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(matches!(error.kind, CallErrorKind::Abi { .. }), "{error}");
}

#[test]
fn handle_returning_out_of_bounds_is_a_bad_pointer() {
    let host = Host::standalone().unwrap();
    let healthy = healthy(&host);
    let module = load(
        &host,
        "liar",
        &v1(r#"(func (export "handle") (param i32 i32) (result i64) (i64.const 0x7fff000000000100))"#),
    )
    .unwrap();
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::BadPointer { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("export \"handle\" result"),
        "{error}"
    );
    still_serves(&healthy);
}

#[test]
fn imports_called_with_bad_pointers_fail_the_call_not_the_host() {
    let host = Host::standalone().unwrap();
    let healthy = healthy(&host);
    let module = load(
        &host,
        "scribbler",
        &v1(r#"(func (export "handle") (param i32 i32) (result i64)
                 (call $log (i32.const 0xfffffff0) (i32.const 64))
                 (i64.const 0))"#),
    )
    .unwrap();
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::BadPointer { ref place, .. } if place == "import \"log\""),
        "{error}"
    );
    assert_eq!(module.stats().replacements, 1);
    let module = load(
        &host,
        "scribbler",
        &v1(r#"(func (export "handle") (param i32 i32) (result i64)
                 (call $publish (i32.const 0) (i32.const 4) (i32.const 65000) (i32.const 10000))
                 (i64.const 0))"#),
    )
    .unwrap();
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::BadPointer { ref place, .. } if place == "import \"publish\""),
        "{error}"
    );
    still_serves(&healthy);
}

#[test]
fn unbounded_recursion_is_a_trap() {
    let host = Host::standalone().unwrap();
    let module = load(
        &host,
        "recursive",
        &v1(r#"(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
               (func (export "handle") (param i32 i32) (result i64) (drop (call $down (i32.const 0))) (i64.const 0))"#),
    )
    .unwrap();
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    match &error.kind {
        CallErrorKind::Trap { message, .. } => {
            assert!(message.to_lowercase().contains("stack"), "{message}")
        }
        other => panic!("expected a stack overflow trap, got {other}"),
    }
    assert_eq!(module.stats().replacements, 1);
}

#[test]
fn a_publish_flood_is_cut_by_the_deadline() {
    let host = Host::standalone().unwrap();
    let healthy = healthy(&host);
    let mut config = ModuleConfig::default();
    config.limits.handle_deadline = Duration::from_millis(300);
    // Publishes a 4-byte event one million times in one call (or until interrupted).
    let bytes = wasm(&v1(r#"(data (i32.const 0) "spam")
        (func (export "handle") (param i32 i32) (result i64)
          (local $i i32)
          (loop $again
            (call $publish (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 4))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 1000000))))
          (i64.const 0))"#));
    let module = host.load("flooder", &bytes, &config).unwrap();
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    // Either it finished (an empty response is an ABI error) or the deadline stopped it.
    assert!(
        matches!(
            error.kind,
            CallErrorKind::Deadline { .. } | CallErrorKind::Abi { .. }
        ),
        "{error}"
    );
    assert!(module.stats().published > 0);
    still_serves(&healthy);
}

#[test]
fn too_many_subscriptions_are_refused_and_counted() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.max_subscriptions = 100;
    // Subscribes to 100k distinct topics ("t" + 4 bytes of the counter) in init.
    let bytes = wasm(
        r#"(module
  (import "env" "subscribe_topic" (func $subscribe (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "t")
  (func (export "init")
    (local $i i32)
    (loop $again
      (i32.store (i32.const 1) (i32.add (i32.const 0x30303030) (i32.and (local.get $i) (i32.const 0x0f0f0f0f))))
      (drop (call $subscribe (i32.const 0) (i32.const 5) (i32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100000))))))"#,
    );
    let module = host.load("greedy", &bytes, &config).unwrap();
    let stats = module.stats();
    assert_eq!(stats.subscriptions, 100);
    assert!(stats.import_errors > 0, "{stats:?}");
    module.close();
    assert!(
        host.bus().topics().is_empty(),
        "closing the module cancels its subscriptions"
    );
}

#[test]
fn a_log_flood_is_rate_limited() {
    let host = Host::standalone().unwrap();
    let mut config = ModuleConfig::default();
    config.limits.log_lines_per_second = 50;
    let bytes = wasm(&v1(r#"(data (i32.const 0) "flood")
        (func (export "handle") (param i32 i32) (result i64)
          (local $i i32)
          (loop $again
            (call $log (i32.const 0) (i32.const 5))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 10000))))
          (i64.const 0))"#));
    let module = host.load("chatty", &bytes, &config).unwrap();
    let _ = module.handle_blocking(HttpRequest::new("GET", ""));
    let stats = module.stats();
    assert!(stats.logs_dropped >= 9000, "{stats:?}");
    assert!(module.recent_logs().len() <= 256);
}
