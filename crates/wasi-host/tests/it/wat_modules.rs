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
