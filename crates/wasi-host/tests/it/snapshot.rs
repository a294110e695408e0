//! The state handoff: `snapshot` on one version, `restore` on the next, the envelope between
//! them, and every way it can fail, with small WAT modules.

use std::time::Duration;

use wasi_host::{Host, LoadError, LoadedModule, ModuleConfig, SnapshotErrorKind};

use crate::wat_modules::wasm;

/// An ABI 1 module whose state is one i32 (`$count`, set to `initial` by `init`).
/// `snapshot` writes it at 16 and returns `(16 << 32) | 4`; `restore` takes exactly 4
/// bytes (else returns 2), logs `restored`, and stores them in `$count`. `snapshot_body` /
/// `restore_body` replace the default bodies.
fn stateful(initial: i32, snapshot_body: Option<&str>, restore_body: Option<&str>) -> String {
    let snapshot = snapshot_body.unwrap_or(
        "(i32.store (i32.const 16) (global.get $count))
         (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 4))",
    );
    let restore = restore_body.unwrap_or(
        "(if (i32.ne (local.get $len) (i32.const 4)) (then (return (i32.const 2))))
         (call $log (i32.const 32) (i32.const 8))
         (global.set $count (i32.load (local.get $ptr)))
         (i32.const 0)",
    );
    testkit::v1_module(
        r#"(import "env" "log" (func $log (param i32 i32)))"#,
        &format!(
            r#"(global $count (mut i32) (i32.const 0))
  (data (i32.const 32) "restored")
  (func (export "init") (global.set $count (i32.const {initial})))
  (func (export "snapshot") (result i64) {snapshot})
  (func (export "restore") (param $ptr i32) (param $len i32) (result i32) {restore})"#
        ),
    )
}

fn load_with(host: &Host, name: &str, source: &str, config: &ModuleConfig) -> LoadedModule {
    host.load(name, &wasm(source), config).unwrap()
}

fn load(host: &Host, name: &str, source: &str) -> LoadedModule {
    load_with(host, name, source, &ModuleConfig::default())
}

fn state_of(module: &LoadedModule) -> Vec<u8> {
    binary::Snapshot::decode(&module.snapshot().unwrap())
        .unwrap()
        .payload
}

#[test]
fn state_moves_from_the_old_version_to_every_instance_of_the_new_one() {
    let host = Host::standalone().unwrap();
    let old = load(&host, "keeper", &stateful(41, None, None));
    assert!(old.exports_snapshot() && old.exports_restore());
    let envelope = old.snapshot().unwrap();
    let snapshot = binary::Snapshot::decode(&envelope).unwrap();
    assert_eq!(snapshot.module, "keeper");
    assert_eq!(snapshot.from_version, old.version());
    assert_eq!(snapshot.payload, 41i32.to_le_bytes());

    let config = ModuleConfig {
        instances: Some(3),
        ..ModuleConfig::default()
    };
    let new = load_with(&host, "keeper", &stateful(0, None, None), &config);
    assert_eq!(state_of(&new), 0i32.to_le_bytes());
    assert_eq!(new.restore(&envelope).unwrap(), 4);
    assert_eq!(state_of(&new), 41i32.to_le_bytes());
    let restores = new
        .recent_logs()
        .iter()
        .filter(|line| line.text == "restored")
        .count();
    assert_eq!(restores, 3, "restore runs on every instance");
    old.close();
    new.close();
}

#[test]
fn a_module_without_the_exports_takes_no_part() {
    let host = Host::standalone().unwrap();
    let plain = load(&host, "plain", &testkit::v1_module("", ""));
    assert!(!plain.exports_snapshot() && !plain.exports_restore());
    let error = plain.snapshot().unwrap_err();
    assert!(matches!(error.kind, SnapshotErrorKind::Unavailable { .. }));
    // ABI 0 modules never take part, whatever they export.
    let legacy = load(
        &host,
        "legacy",
        r#"(module (memory (export "memory") 1)
             (func (export "snapshot") (result i32) (i32.const 0)))"#,
    );
    assert!(!legacy.exports_snapshot());
}

#[test]
fn snapshot_failures_are_typed_and_named() {
    let host = Host::standalone().unwrap();
    let trapping = load(&host, "trapper", &stateful(1, Some("unreachable"), None));
    let error = trapping.snapshot().unwrap_err();
    assert_eq!(
        (error.module.as_str(), error.export),
        ("trapper", "snapshot")
    );
    assert!(
        matches!(error.kind, SnapshotErrorKind::Trap { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("module \"trapper\": snapshot trapped: "),
        "{error}"
    );
    assert!(error.is_guest_fault());

    let declining = load(
        &host,
        "decliner",
        &stateful(1, Some("(i64.const -3)"), None),
    );
    let error = declining.snapshot().unwrap_err();
    assert_eq!(error.kind, SnapshotErrorKind::Failed { code: -3 });
    assert_eq!(
        error.to_string(),
        "module \"decliner\": snapshot returned error code -3"
    );

    let config = ModuleConfig {
        limits: wasi_host::Limits {
            max_snapshot_bytes: 2,
            ..wasi_host::Limits::default()
        },
        ..ModuleConfig::default()
    };
    let big = load_with(&host, "big", &stateful(1, None, None), &config);
    let error = big.snapshot().unwrap_err();
    assert_eq!(
        error.kind,
        SnapshotErrorKind::TooLarge { size: 4, limit: 2 }
    );

    let wild = load(
        &host,
        "wild",
        &stateful(
            1,
            Some("(i64.or (i64.shl (i64.const 65530) (i64.const 32)) (i64.const 100))"),
            None,
        ),
    );
    let error = wild.snapshot().unwrap_err();
    assert!(
        matches!(error.kind, SnapshotErrorKind::Abi { .. }),
        "{error}"
    );
}

#[test]
fn restore_failures_are_typed_and_named() {
    let host = Host::standalone().unwrap();
    let old = load(&host, "m", &stateful(5, None, None));
    let envelope = old.snapshot().unwrap();

    let refusing = load(&host, "m", &stateful(0, None, Some("(i32.const 7)")));
    let error = refusing.restore(&envelope).unwrap_err();
    assert_eq!(error.kind, SnapshotErrorKind::Refused { code: 7 });
    assert_eq!(
        error.to_string(),
        "module \"m\": restore refused the state (returned 7)"
    );
    assert!(!error.is_guest_fault());

    let trapping = load(&host, "m", &stateful(0, None, Some("unreachable")));
    let error = trapping.restore(&envelope).unwrap_err();
    assert_eq!(error.export, "restore");
    assert!(
        matches!(error.kind, SnapshotErrorKind::Trap { .. }),
        "{error}"
    );

    let config = ModuleConfig {
        limits: wasi_host::Limits {
            snapshot_deadline: Duration::from_millis(200),
            ..wasi_host::Limits::default()
        },
        ..ModuleConfig::default()
    };
    let spinning = load_with(
        &host,
        "m",
        &stateful(0, None, Some("(loop $forever (br $forever)) (i32.const 0)")),
        &config,
    );
    let started = std::time::Instant::now();
    let error = spinning.restore(&envelope).unwrap_err();
    assert_eq!(
        error.kind,
        SnapshotErrorKind::Deadline {
            deadline: Duration::from_millis(200)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        error.to_string(),
        "module \"m\": restore exceeded its deadline of 200ms"
    );
}

#[test]
fn an_envelope_from_another_module_or_corrupted_is_refused() {
    let host = Host::standalone().unwrap();
    let other = load(&host, "other", &stateful(5, None, None));
    let foreign = other.snapshot().unwrap();
    let new = load(&host, "m", &stateful(0, None, None));
    let error = new.restore(&foreign).unwrap_err();
    assert_eq!(
        error.kind,
        SnapshotErrorKind::OtherModule {
            found: "other".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "module \"m\": restore got the state of module \"other\""
    );

    let mut corrupted = binary::Snapshot::new("m", "v", 5i32.to_le_bytes()).encode();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x40;
    let error = new.restore(&corrupted).unwrap_err();
    let SnapshotErrorKind::Envelope(decode) = &error.kind else {
        panic!("expected an envelope error, got {error}");
    };
    assert_eq!(decode.field(), "checksum");
    assert!(
        error
            .to_string()
            .starts_with("module \"m\": restore got an invalid snapshot envelope: decoding Snapshot: field \"checksum\""),
        "{error}"
    );
    let error = new.restore(b"MHSN").unwrap_err();
    assert!(
        matches!(error.kind, SnapshotErrorKind::Envelope(_)),
        "{error}"
    );
    // Nothing reached the guest.
    assert_eq!(state_of(&new), 0i32.to_le_bytes());
}

#[test]
fn snapshot_and_restore_with_the_wrong_types_are_refused_at_load() {
    let host = Host::standalone().unwrap();
    let error = host
        .load(
            "m",
            &wasm(&testkit::v1_module(
                "",
                r#"(func (export "snapshot") (result i32) (i32.const 0))"#,
            )),
            &ModuleConfig::default(),
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::ExportSignature { .. }));
    assert_eq!(
        error.to_string(),
        "module \"m\": export \"snapshot\" has type () -> i32, expected () -> i64"
    );
    let error = host
        .load(
            "m",
            &wasm(&testkit::v1_module(
                "",
                r#"(func (export "restore") (param i32 i32))"#,
            )),
            &ModuleConfig::default(),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "module \"m\": export \"restore\" has type (i32, i32) -> (), expected (i32, i32) -> i32"
    );
}

/// An ABI 1 module subscribed to `t` (in `init`) that counts messages and checks that their
/// one-byte payloads arrive as 0, 1, 2, …; `snapshot` returns `count` and `disorder` (8 bytes),
/// `restore` takes them back.
fn message_counter() -> String {
    testkit::v1_module(
        r#"(import "env" "subscribe_topic" (func $subscribe (param i32 i32 i32) (result i32)))"#,
        r#"(global $count (mut i32) (i32.const 0))
  (global $disorder (mut i32) (i32.const 0))
  (data (i32.const 48) "t")
  (func (export "init") (drop (call $subscribe (i32.const 48) (i32.const 1) (i32.const 0))))
  ;; An encoded Message with topic "t": the payload's first byte is at ptr + 25.
  (func (export "on_message") (param $ptr i32) (param $len i32)
    (if (i32.ne (i32.load8_u (i32.add (local.get $ptr) (i32.const 25))) (global.get $count))
      (then (global.set $disorder (i32.const 1))))
    (global.set $count (i32.add (global.get $count) (i32.const 1))))
  (func (export "snapshot") (result i64)
    (i32.store (i32.const 16) (global.get $count))
    (i32.store (i32.const 20) (global.get $disorder))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 8)))
  (func (export "restore") (param $ptr i32) (param $len i32) (result i32)
    (global.set $count (i32.load (local.get $ptr)))
    (global.set $disorder (i32.load (i32.add (local.get $ptr) (i32.const 4))))
    (i32.const 0))"#,
    )
}

fn counted(module: &LoadedModule) -> (u32, u32) {
    let state = state_of(module);
    let word =
        |at: usize| u32::from_le_bytes([state[at], state[at + 1], state[at + 2], state[at + 3]]);
    (word(0), word(4))
}

/// The bus half of the swap with a state handoff, as the server drives it: messages that
/// arrive while both versions are paused are neither lost nor delivered twice, and the new
/// version sees them after the restored state and before anything newer, in order.
#[test]
fn messages_during_the_hold_reach_the_new_version_once_and_in_order() {
    let host = Host::standalone().unwrap();
    let bus = host.bus().clone();
    let publish = |byte: u8| {
        bus.publish(binary::Message::event("t", vec![byte]))
            .unwrap();
    };
    let old = load(&host, "m", &message_counter());
    old.go_live().unwrap();
    for byte in 0..5 {
        publish(byte);
    }
    testkit::wait_for(Duration::from_secs(5), || old.stats().messages == 5);

    let new = load(&host, "m", &message_counter());
    new.pause().unwrap();
    old.pause().unwrap();
    for byte in 5..10 {
        publish(byte); // waits in the old version's inbox
    }
    let envelope = old.snapshot().unwrap();
    new.restore(&envelope).unwrap();
    new.take_over_from(&old).unwrap();
    for byte in 10..15 {
        publish(byte); // waits in the new version's inbox, behind the moved ones
    }
    let waiting = old.take_queued();
    assert_eq!(waiting.len(), 5);
    new.resume(waiting);
    testkit::wait_for(Duration::from_secs(5), || new.stats().messages == 10);
    assert_eq!(counted(&new), (15, 0), "all 15 counted once, in order");
    old.close();
    assert_eq!(
        old.stats().messages,
        5,
        "the old version ran only what came before"
    );
    new.close();
}
