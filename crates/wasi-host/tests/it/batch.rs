//! `publish_batch` from a WAT guest: order, waiting for room within the timeout, stopping
//! where the time ran out, and refusing a bad batch whole.

use std::time::Duration;

use binary::abi::Code;
use binary::{Envelope, HttpRequest, HttpResponse, Message, MessageBatch};
use wasi_host::{Host, LoadedModule, ModuleConfig};

use crate::wat_modules::wasm;

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A module whose `handle` calls `publish_batch(batch, timeout_ms)` once and answers with its
/// return value, four bytes little-endian.
fn module(batch: &[u8], timeout_ms: i32) -> Vec<u8> {
    let response = HttpResponse::new(200, vec![0; 4]).encode();
    let response_at = batch.len();
    let code_at = response_at + response.len() - 4;
    wasm(&format!(
        r#"(module
  (import "env" "publish_batch" (func $publish_batch (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $ptr))
  (data (i32.const 0) "{}")
  (data (i32.const {response_at}) "{}")
  (func (export "handle") (param i32 i32) (result i64)
    (i32.store (i32.const {code_at})
      (call $publish_batch (i32.const 0) (i32.const {}) (i32.const {timeout_ms})))
    (i64.or (i64.shl (i64.const {response_at}) (i64.const 32)) (i64.const {}))))"#,
        wat_bytes(batch),
        wat_bytes(&response),
        batch.len(),
        response.len()
    ))
}

fn call(module: &LoadedModule) -> i32 {
    let response = module
        .handle_blocking(HttpRequest::new("POST", ""))
        .unwrap();
    i32::from_le_bytes(response.body[..4].try_into().unwrap())
}

fn events(topic: &str, count: u8) -> MessageBatch {
    let mut batch = MessageBatch::new();
    for index in 0..count {
        batch.push_event(topic, &[index]);
    }
    batch
}

#[test]
fn a_batch_is_published_in_order_and_stops_where_room_ran_out() {
    let host = Host::standalone().unwrap();
    let (sender, inbox) = crossbeam_channel::bounded::<Message>(2);
    let _subscription = host.bus().subscribe_mailbox("batch.t", sender).unwrap();
    let batch = events("batch.t", 3);

    // No waiting: two fit, the third finds the mailbox full and is not published.
    let publisher = host
        .load(
            "batcher",
            &module(batch.as_bytes(), 0),
            &ModuleConfig::default(),
        )
        .unwrap();
    assert_eq!(call(&publisher), 2);
    let payloads: Vec<Vec<u8>> = inbox.try_iter().map(|message| message.payload).collect();
    assert_eq!(payloads, [vec![0], vec![1]]);
    assert_eq!(
        host.bus().stats().dropped_full,
        0,
        "waited for, not dropped"
    );
    assert_eq!(publisher.stats().published, 2);
    publisher.close();

    // Waiting: a reader frees room while the batch waits; all three arrive, in order.
    let patient = host
        .load(
            "patient",
            &module(batch.as_bytes(), 10_000),
            &ModuleConfig::default(),
        )
        .unwrap();
    let reader = std::thread::spawn(move || {
        (0..3)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(2));
                inbox.recv_timeout(Duration::from_secs(10)).unwrap().payload
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(call(&patient), 3);
    assert_eq!(reader.join().unwrap(), [vec![0], vec![1], vec![2]]);
    assert_eq!(host.bus().stats().dropped_full, 0);
    patient.close();
}

#[test]
fn a_bad_batch_is_refused_whole() {
    let host = Host::standalone().unwrap();
    let (_subscription, inbox) = host.bus().subscribe_channel("*").unwrap();
    let mut bad_topic = events("ok", 2);
    bad_topic.push_event("not*ok", b"x");
    let mut truncated = events("ok", 2).as_bytes().to_vec();
    truncated.pop();
    for (what, bytes) in [
        ("an invalid topic", bad_topic.as_bytes().to_vec()),
        ("a truncated batch", truncated),
        ("no count", Vec::new()),
    ] {
        let module = host
            .load("bad", &module(&bytes, 0), &ModuleConfig::default())
            .unwrap();
        assert_eq!(call(&module), Code::Invalid.get(), "{what}");
        assert_eq!(module.stats().import_errors, 1, "{what}");
        module.close();
    }
    assert!(
        inbox.try_recv().is_err(),
        "nothing of a refused batch went out"
    );
    // An empty batch publishes nothing and is no error.
    let empty = host
        .load(
            "empty",
            &module(MessageBatch::new().as_bytes(), 0),
            &ModuleConfig::default(),
        )
        .unwrap();
    assert_eq!(call(&empty), 0);
    assert_eq!(empty.stats().import_errors, 0);
}
