//! The `kv` import: a real guest reaching the host's store, shared by versions and instances,
//! with grants, limits and hostile calls.

use std::sync::Arc;

use binary::{Envelope, HttpRequest, KvErrorKind, KvOp, KvRequest, KvResponse};
use wasi_host::{CallErrorKind, Host, HostConfig, KvConfig, LoadedModule, ModuleConfig};

use crate::fixture::guest_wasm;
use crate::wat_modules::load;

fn host_with(store: Arc<dyn state::Store>) -> Host {
    let config = HostConfig {
        store: Some(store),
        ..HostConfig::default()
    };
    Host::new(config, bus::Bus::new(), Arc::new(wasi_host::NoBroadcast)).unwrap()
}

fn memory_store() -> Arc<dyn state::Store> {
    Arc::new(state::MemoryStore::new(state::Config::default()))
}

fn call(module: &LoadedModule, request: &KvRequest) -> KvResponse {
    let http = HttpRequest {
        body: request.encode(),
        ..HttpRequest::new("POST", "/kv")
    };
    let response = module.handle_blocking(http).unwrap();
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    KvResponse::decode(&response.body).unwrap()
}

fn set(key: &str, value: &str) -> KvRequest {
    KvRequest::own(KvOp::Set {
        key: key.into(),
        value: value.into(),
    })
}

fn get(key: &str) -> KvRequest {
    KvRequest::own(KvOp::Get { key: key.into() })
}

fn value_of(response: KvResponse) -> Option<Vec<u8>> {
    match response {
        KvResponse::Entry { value, .. } => Some(value),
        KvResponse::Missing => None,
        other => panic!("not a get answer: {other:?}"),
    }
}

#[test]
fn keys_outlive_versions_traps_and_instances() {
    let host = host_with(memory_store());
    let old = host
        .load("users", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    assert!(matches!(
        call(&old, &set("ada", "1")),
        KvResponse::Revision { .. }
    ));
    // A trap replaces the instance; the key is still there.
    let trap = old
        .handle_blocking(HttpRequest::new("GET", "/panic"))
        .unwrap_err();
    assert!(matches!(trap.kind, CallErrorKind::Trap { .. }), "{trap}");
    assert_eq!(
        value_of(call(&old, &get("ada"))).as_deref(),
        Some(&b"1"[..])
    );
    // A new version, with four instances, sees the same keys.
    let pool = ModuleConfig {
        instances: Some(4),
        ..ModuleConfig::default()
    };
    let new = host.load("users", guest_wasm(), &pool).unwrap();
    old.close();
    for _ in 0..8 {
        assert_eq!(
            value_of(call(&new, &get("ada"))).as_deref(),
            Some(&b"1"[..])
        );
    }
    // Increments from four threads at once land on the pool's four instances: none is lost.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    let increment = KvRequest::own(KvOp::Increment {
                        key: "n".into(),
                        delta: 1,
                    });
                    assert!(matches!(call(&new, &increment), KvResponse::Integer { .. }));
                }
            });
        }
    });
    assert_eq!(value_of(call(&new, &get("n"))).as_deref(), Some(&b"40"[..]));
    let usage = new.kv_usage().unwrap();
    assert_eq!(usage.keys, 2);
    assert_eq!(new.stats().kv_operations, 8 + 40 + 1);
    // Another module does not see them.
    let other = host
        .load("billing", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    assert_eq!(value_of(call(&other, &get("ada"))), None);
}

#[test]
fn shared_stores_need_a_grant() {
    let host = host_with(memory_store());
    let granted = ModuleConfig {
        kv: KvConfig {
            stores: vec!["sessions".into()],
            ..KvConfig::default()
        },
        ..ModuleConfig::default()
    };
    let users = host.load("users", guest_wasm(), &granted).unwrap();
    let auth = host.load("auth", guest_wasm(), &granted).unwrap();
    let plain = host
        .load("plain", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    let shared_set = KvRequest {
        store: "sessions".into(),
        op: KvOp::Set {
            key: "token".into(),
            value: "ada".into(),
        },
    };
    assert!(matches!(
        call(&users, &shared_set),
        KvResponse::Revision { .. }
    ));
    let shared_get = KvRequest {
        store: "sessions".into(),
        op: KvOp::Get {
            key: "token".into(),
        },
    };
    assert_eq!(
        value_of(call(&auth, &shared_get)).as_deref(),
        Some(&b"ada"[..])
    );
    match call(&plain, &shared_get) {
        KvResponse::Error { kind, message } => {
            assert_eq!(kind, KvErrorKind::Denied);
            assert!(
                message.contains("module \"plain\" has no grant for store \"sessions\""),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plain.stats().kv_errors, 1);
}

#[test]
fn limits_answer_with_their_code() {
    let host = host_with(memory_store());
    let quota = ModuleConfig {
        kv: KvConfig {
            quota: state::Quota {
                max_keys: 2,
                ..state::Quota::default()
            },
            ..KvConfig::default()
        },
        ..ModuleConfig::default()
    };
    let module = host.load("small", guest_wasm(), &quota).unwrap();
    let expect = |request: KvRequest, kind: KvErrorKind| match call(&module, &request) {
        KvResponse::Error {
            kind: found,
            message,
        } => {
            assert_eq!(found, kind, "{message}");
            assert!(message.starts_with("module \"small\": "), "{message}");
        }
        other => panic!("expected {kind:?}, got {other:?}"),
    };
    expect(set(&"k".repeat(257), "v"), KvErrorKind::TooLarge);
    expect(set("", "v"), KvErrorKind::Invalid);
    expect(
        KvRequest::own(KvOp::Set {
            key: "big".into(),
            value: vec![0; 1024 * 1024 + 1],
        }),
        KvErrorKind::TooLarge,
    );
    call(&module, &set("a", "1"));
    call(&module, &set("b", "1"));
    expect(set("c", "1"), KvErrorKind::Quota);
    expect(
        KvRequest::own(KvOp::Increment {
            key: "a".into(),
            delta: i64::MAX,
        }),
        KvErrorKind::Overflow,
    );
    call(&module, &set("word", "x"));
    expect(
        KvRequest::own(KvOp::List {
            prefix: Vec::new(),
            cursor: Vec::new(),
            limit: 1001,
        }),
        KvErrorKind::Invalid,
    );
    expect(
        KvRequest::own(KvOp::List {
            prefix: b"a".to_vec(),
            cursor: b"zzz-forged".to_vec(),
            limit: 10,
        }),
        KvErrorKind::BadCursor,
    );
    // A compare-and-swap on a missing key expecting a revision is a conflict, not an error.
    let cas = KvRequest::own(KvOp::CompareAndSwap {
        key: "missing".into(),
        expected: 7,
        value: Some(b"x".to_vec()),
    });
    assert_eq!(
        call(&module, &cas),
        KvResponse::Conflict {
            index: 0,
            current: 0
        }
    );
}

#[test]
fn without_a_store_the_import_says_so() {
    let host = Host::standalone().unwrap();
    let module = host
        .load("lonely", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    assert!(matches!(
        call(&module, &get("k")),
        KvResponse::Error {
            kind: KvErrorKind::Unavailable,
            ..
        }
    ));
}

#[test]
fn garbage_requests_and_bad_pointers_are_contained() {
    let host = host_with(memory_store());
    let fixture = host
        .load("fixture", guest_wasm(), &ModuleConfig::default())
        .unwrap();
    // Undecodable bytes: the import answers -1 (INVALID) and counts a refused import.
    let garbage = fixture
        .handle_blocking(HttpRequest {
            body: b"\xff\xff not a request".to_vec(),
            ..HttpRequest::new("POST", "/kv")
        })
        .unwrap();
    assert_eq!((garbage.status, garbage.body.as_slice()), (500, &b"-1"[..]));
    assert_eq!(fixture.stats().import_errors, 1);
    // A pointer outside memory fails the call as a bad pointer and replaces the instance.
    let scribbler = load(
        &host,
        "scribbler",
        &testkit::v1_module(
            r#"(import "env" "kv" (func $kv (param i32 i32) (result i64)))"#,
            r#"(func (export "handle") (param i32 i32) (result i64)
                 (drop (call $kv (i32.const 0xfffffff0) (i32.const 64)))
                 (i64.const 0))"#,
        ),
    )
    .unwrap();
    let error = scribbler
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    assert!(
        matches!(error.kind, CallErrorKind::BadPointer { ref place, .. } if place == "import \"kv\""),
        "{error}"
    );
    // A length over the request limit is refused before anything is read.
    let huge = load(
        &host,
        "huge",
        &testkit::v1_module(
            r#"(import "env" "kv" (func $kv (param i32 i32) (result i64)))"#,
            r#"(func (export "handle") (param i32 i32) (result i64)
                 (if (i64.ne (call $kv (i32.const 0) (i32.const 0x7fffffff)) (i64.const -1))
                   (then unreachable))
                 (i64.const 0))"#,
        ),
    )
    .unwrap();
    let error = huge
        .handle_blocking(HttpRequest::new("GET", ""))
        .unwrap_err();
    // Returning (0 << 32 | 0) from handle is an empty, undecodable response: an ABI error,
    // not the trap the guest raises when the import answers anything but -1.
    assert!(!matches!(error.kind, CallErrorKind::Trap { .. }), "{error}");
    assert!(matches!(
        call(&fixture, &set("still", "works")),
        KvResponse::Revision { .. }
    ));
}
