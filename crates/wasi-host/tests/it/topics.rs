//! The protocol facts from the host's side: a guest's topics and patterns are judged by
//! `binary::topic` (the vectors in `crates/binary/test_data/topics.txt`, which the bus and the
//! guest SDK also run) and refused with `binary::abi::Code`.

use binary::abi::Code;
use binary::topic::MAX_TOPIC_BYTES;
use binary::{Envelope, HttpRequest, HttpResponse, Message};
use wasi_host::{Host, ModuleConfig};

use crate::wat_modules::wasm;

/// One import call the test module makes, and the code the host must return.
struct Call {
    /// `subscribe_topic` or `unsubscribe` (a pattern), or `publish_message` (an encoded
    /// event).
    import: &'static str,
    bytes: Vec<u8>,
    /// The length passed.
    len: usize,
    expected: Expected,
    line: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Accepted,
    Refused(Code),
}

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A module whose `handle` makes every call and answers with their return codes, four bytes
/// each, as the response body.
fn module(calls: &[Call]) -> Vec<u8> {
    let mut data = String::new();
    let mut body = String::new();
    let mut offset = 0usize;
    let codes = calls.len() * 4;
    for (index, call) in calls.iter().enumerate() {
        data.push_str(&format!(
            "(data (i32.const {offset}) \"{}\")\n",
            wat_bytes(&call.bytes)
        ));
        let invocation = match call.import {
            "subscribe_topic" => format!(
                "(call $subscribe (i32.const {offset}) (i32.const {}) (i32.const 0))",
                call.len
            ),
            "unsubscribe" => format!(
                "(call $unsubscribe (i32.const {offset}) (i32.const {}))",
                call.len
            ),
            _ => format!(
                "(call $publish (i32.const {offset}) (i32.const {}))",
                call.len
            ),
        };
        body.push_str(&format!(
            "(i32.store (i32.add (global.get $codes) (i32.const {})) {invocation})\n",
            index * 4
        ));
        offset += call.bytes.len().max(call.len);
    }
    let response = HttpResponse::new(200, vec![0; codes]).encode();
    let response_at = offset;
    let codes_at = response_at + response.len() - codes;
    assert!(
        response_at + response.len() < 65536,
        "the data fits in the first page"
    );
    wasm(&format!(
        r#"(module
  (import "env" "subscribe_topic" (func $subscribe (param i32 i32 i32) (result i32)))
  (import "env" "publish_message" (func $publish (param i32 i32) (result i32)))
  (import "env" "unsubscribe" (func $unsubscribe (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $codes i32 (i32.const {codes_at}))
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $ptr))
  {data}
  (data (i32.const {response_at}) "{}")
  (func (export "handle") (param i32 i32) (result i64)
    {body}
    (i64.or (i64.shl (i64.const {response_at}) (i64.const 32)) (i64.const {}))))"#,
        wat_bytes(&response),
        response.len()
    ))
}

fn calls() -> Vec<Call> {
    let mut calls = Vec::new();
    for fields in binary::vectors::topics() {
        let line = fields.join(" ");
        let (import, bytes, expected) = match fields[..] {
            ["pattern", pattern] => ("subscribe_topic", pattern.as_bytes().to_vec(), true),
            ["!pattern", pattern] => ("subscribe_topic", pattern.as_bytes().to_vec(), false),
            ["topic", topic] => (
                "publish_message",
                Message::event(topic, vec![]).encode(),
                true,
            ),
            ["!topic", topic] => (
                "publish_message",
                Message::event(topic, vec![]).encode(),
                false,
            ),
            _ => continue, // matching is the bus's, tested there
        };
        let expected = if expected {
            Expected::Accepted
        } else {
            Expected::Refused(Code::Invalid)
        };
        if import == "subscribe_topic" {
            // Unsubscribing judges the pattern the same way (a valid one: 0, not subscribed yet).
            calls.push(Call {
                import: "unsubscribe",
                len: bytes.len(),
                bytes: bytes.clone(),
                expected,
                line: format!("{line} (unsubscribe)"),
            });
        }
        calls.push(Call {
            import,
            len: bytes.len(),
            bytes,
            expected,
            line: line.to_owned(),
        });
    }
    // The length limit, which the host checks before reading the topic out of memory.
    calls.push(Call {
        import: "subscribe_topic",
        bytes: vec![b'a'; MAX_TOPIC_BYTES],
        len: MAX_TOPIC_BYTES,
        expected: Expected::Accepted,
        line: "a pattern of MAX_TOPIC_BYTES".to_owned(),
    });
    calls.push(Call {
        import: "subscribe_topic",
        bytes: vec![b'b'; MAX_TOPIC_BYTES + 1],
        len: MAX_TOPIC_BYTES + 1,
        expected: Expected::Refused(Code::Invalid),
        line: "a pattern of MAX_TOPIC_BYTES + 1".to_owned(),
    });
    let long_event = Message::event("c".repeat(MAX_TOPIC_BYTES + 1), vec![]).encode();
    calls.push(Call {
        import: "publish_message",
        len: long_event.len(),
        bytes: long_event,
        expected: Expected::Refused(Code::Invalid),
        line: "a published topic of MAX_TOPIC_BYTES + 1".to_owned(),
    });
    calls
}

#[test]
fn guest_topics_follow_the_shared_vectors_and_codes() {
    let host = Host::standalone().unwrap();
    let calls = calls();
    let module = host
        .load("topics", &module(&calls), &ModuleConfig::default())
        .unwrap();
    let response = module.handle_blocking(HttpRequest::new("GET", "")).unwrap();
    assert_eq!(response.body.len(), calls.len() * 4);
    let mut refused = 0;
    for (call, code) in calls.iter().zip(response.body.chunks_exact(4)) {
        let code = i32::from_le_bytes([code[0], code[1], code[2], code[3]]);
        let got = match Code::from_i32(code) {
            Some(code) => Expected::Refused(code),
            None => {
                assert!(code >= 0, "{}: {code}", call.line);
                Expected::Accepted
            }
        };
        assert_eq!(got, call.expected, "{}", call.line);
        refused += u64::from(matches!(got, Expected::Refused(_)));
    }
    assert!(refused > 10, "{refused}");
    assert_eq!(module.stats().import_errors, refused);
}
