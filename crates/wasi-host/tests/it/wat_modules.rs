//! Small WAT modules: the original ABI, and the load-time checks.

use std::time::Duration;

use binary::HttpRequest;
use wasi_host::{AbiVersion, CallError, CallErrorKind, Host, LoadError, ModuleConfig};

pub fn wasm(source: &str) -> Vec<u8> {
    wat::parse_str(source).expect("valid WAT")
}

pub fn load(host: &Host, name: &str, source: &str) -> Result<wasi_host::LoadedModule, LoadError> {
    host.load(name, &wasm(source), &ModuleConfig::default())
}

pub use testkit::ORIGINAL_ABI;

#[test]
fn an_original_abi_module_is_served() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "legacy", ORIGINAL_ABI).unwrap();
    assert_eq!(module.abi(), AbiVersion::V0);
    let request = HttpRequest {
        query: "x=1".into(),
        ..HttpRequest::new("GET", "/hello")
    };
    let response = module.handle_blocking(request).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "v0 says: GET\n/hello?x=1\n"
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        module
            .recent_logs()
            .iter()
            .any(|line| line.text == "original init")
    );
}

#[test]
fn an_export_with_the_wrong_type_is_named() {
    let host = Host::standalone().unwrap();
    let error = load(
        &host,
        "users",
        r#"(module (memory (export "memory") 1)
             (func (export "modhost_abi_version") (result i32) (i32.const 1))
             (func (export "alloc") (param i32) (result i32) (i32.const 0))
             (func (export "handle") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "module \"users\": export \"handle\" has type (i32) -> i32, expected (i32, i32) -> i64"
    );
}

#[test]
fn an_unknown_import_is_named() {
    let host = Host::standalone().unwrap();
    let error = load(&host, "odd", r#"(module (import "env" "launch_missiles" (func (param i32))) (memory (export "memory") 1))"#)
        .unwrap_err();
    assert!(matches!(error, LoadError::UnknownImport { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "module \"odd\": unknown import \"env\".\"launch_missiles\" of type (i32) -> ()"
    );
    let error = load(
        &host,
        "odd",
        r#"(module (import "env" "log" (func (param i32))) (memory (export "memory") 1))"#,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("expected (i32, i32) -> ()"),
        "{error}"
    );
}

#[test]
fn a_missing_allocator_is_a_load_error() {
    let host = Host::standalone().unwrap();
    let error = load(&host, "noalloc", r#"(module (memory (export "memory") 1) (func (export "handle") (param i32 i32) (result i32) (i32.const 0)))"#)
        .unwrap_err();
    assert!(
        matches!(error, LoadError::MissingExport { ref export, .. } if export == "alloc"),
        "{error}"
    );
}

#[test]
fn an_unsupported_abi_version_is_refused() {
    let host = Host::standalone().unwrap();
    let error = load(&host, "future", r#"(module (memory (export "memory") 1) (func (export "modhost_abi_version") (result i32) (i32.const 7)))"#)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "module \"future\": ABI version 7 is not supported (this host speaks 0 and 1)"
    );
}

#[test]
fn a_module_without_handle_is_not_routable() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "quiet", r#"(module (memory (export "memory") 1))"#).unwrap();
    assert!(!module.has_handle());
    let error = module
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(
        matches!(
            error,
            CallError {
                export: "handle",
                kind: CallErrorKind::NotExported { name: "handle" },
                ..
            }
        ),
        "{error}"
    );
}

/// `drain` asks for 150 ms twice, then says done.
const SLOW_DRAIN: &str = r#"
(module
  (memory (export "memory") 1)
  (global $left (mut i32) (i32.const 2))
  (func (export "drain") (result i32)
    (if (result i32) (i32.eqz (global.get $left))
      (then (i32.const 0))
      (else (global.set $left (i32.sub (global.get $left) (i32.const 1))) (i32.const 150))))
)
"#;

#[test]
fn drain_waits_as_long_as_the_module_asks() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "slow", SLOW_DRAIN).unwrap();
    let report = module.drain(Duration::from_secs(5));
    assert!(report.completed(), "{report:?}");
    assert_eq!(
        report.instances,
        vec![wasi_host::DrainOutcome::Done { polls: 3 }]
    );
    assert!(report.elapsed >= Duration::from_millis(300), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(2), "{report:?}");
    module.close();
}

#[test]
fn a_drain_that_never_ends_times_out_with_a_warning_value() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "stubborn", r#"(module (memory (export "memory") 1) (func (export "drain") (result i32) (i32.const 50)))"#).unwrap();
    let report = module.drain(Duration::from_millis(300));
    assert!(!report.completed());
    assert!(
        matches!(
            report.instances[0],
            wasi_host::DrainOutcome::TimedOut {
                last_requested_ms: 50,
                ..
            }
        ),
        "{report:?}"
    );
    assert!(
        report.elapsed >= Duration::from_millis(300) && report.elapsed < Duration::from_secs(2),
        "{report:?}"
    );
    module.close();
}

/// A module with one `handle`, with or without the shared-nothing marker and `snapshot`.
fn pool_module(shared_nothing: bool, snapshot: bool) -> String {
    let marker = if shared_nothing {
        r#"(func (export "modhost_shared_nothing"))"#
    } else {
        ""
    };
    let snapshot = if snapshot {
        r#"(func (export "snapshot") (result i64) (i64.const 0))
           (func (export "restore") (param i32 i32) (result i32) (i32.const 0))"#
    } else {
        ""
    };
    format!(
        r#"(module (memory (export "memory") 1)
             (func (export "modhost_abi_version") (result i32) (i32.const 1))
             (func (export "alloc") (param i32) (result i32) (i32.const 1024))
             (func (export "handle") (param i32 i32) (result i64) (i64.const 0))
             {marker} {snapshot})"#
    )
}

#[test]
fn a_shared_nothing_module_gets_an_instance_per_request_thread_unless_configured() {
    let host = Host::new(
        wasi_host::HostConfig {
            request_threads: Some(3),
            ..Default::default()
        },
        bus::Bus::new(),
        std::sync::Arc::new(wasi_host::NoBroadcast),
    )
    .unwrap();
    let pool = |name: &str, source: String, config: &ModuleConfig| {
        let module = host.load(name, &wasm(&source), config).unwrap();
        let instances = module.instances();
        module.close();
        instances
    };
    let default = ModuleConfig::default();
    assert_eq!(pool("plain", pool_module(false, false), &default), 1);
    assert_eq!(pool("stateless", pool_module(true, false), &default), 3);
    let two = ModuleConfig {
        instances: Some(2),
        ..ModuleConfig::default()
    };
    assert_eq!(
        pool("configured", pool_module(true, false), &two),
        2,
        "the operator's setting wins"
    );
    assert_eq!(pool("plain-configured", pool_module(false, false), &two), 2);
    assert_eq!(
        pool("contradiction", pool_module(true, true), &default),
        1,
        "a module that hands in-memory state over keeps one instance"
    );
}

#[test]
fn the_shared_nothing_marker_must_take_and_give_nothing() {
    let host = Host::standalone().unwrap();
    let error = load(
        &host,
        "odd",
        r#"(module (memory (export "memory") 1)
             (func (export "modhost_abi_version") (result i32) (i32.const 1))
             (func (export "modhost_shared_nothing") (result i32) (i32.const 1)))"#,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "module \"odd\": export \"modhost_shared_nothing\" has type () -> i32, expected () -> ()"
    );
}
