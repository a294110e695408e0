//! The `http_send` import: what reaches the module's [`wasi_host::Outbound`] (the request, the
//! call's deadline), what comes back, the per-call cap, a host without outbound HTTP, and the
//! counters. The server's client (allow-list, TLS, faults) is tested in the server's suite.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binary::{Envelope, HttpRequest, HttpResponse, OutboundErrorKind, OutboundResponse};
use wasi_host::{Host, ModuleConfig, Outbound};

/// Records each request and how long it was given, and answers `200` with the URL.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Duration)>>,
}

impl Outbound for Recorder {
    fn send(&self, request: HttpRequest, deadline: Instant) -> OutboundResponse {
        let left = deadline.saturating_duration_since(Instant::now());
        self.seen.lock().unwrap().push((request.path.clone(), left));
        OutboundResponse::Response(HttpResponse::new(200, request.path.into_bytes()))
    }
}

/// An ABI 1 module whose `handle` passes its own request to `http_send` `times` times and
/// answers `200` with the last encoded `OutboundResponse` as the body.
fn relay(times: u32) -> Vec<u8> {
    wat::parse_str(testkit::v1_module(
        r#"(import "env" "http_send" (func $send (param i32 i32) (result i64)))"#,
        &format!(
            r#"(func (export "handle") (param $ptr i32) (param $len i32) (result i64)
                 (local $packed i64) (local $out i32) (local $n i32) (local $left i32)
                 (local.set $left (i32.const {times}))
                 (loop $again
                   (local.set $packed (call $send (local.get $ptr) (local.get $len)))
                   (if (i64.lt_s (local.get $packed) (i64.const 0)) (then unreachable))
                   (local.set $left (i32.sub (local.get $left) (i32.const 1)))
                   (br_if $again (local.get $left)))
                 (local.set $out (i32.wrap_i64 (i64.shr_u (local.get $packed) (i64.const 32))))
                 (local.set $n (i32.wrap_i64 (local.get $packed)))
                 (i32.store16 (i32.const 40000) (i32.const 200))
                 (i64.store (i32.const 40002) (i64.const 0))
                 (i64.store (i32.const 40010) (i64.extend_i32_u (local.get $n)))
                 (memory.copy (i32.const 40018) (local.get $out) (local.get $n))
                 (i64.or (i64.shl (i64.const 40000) (i64.const 32))
                         (i64.extend_i32_u (i32.add (local.get $n) (i32.const 18)))))"#
        ),
    ))
    .unwrap()
}

fn answer(module: &wasi_host::LoadedModule, url: &str) -> OutboundResponse {
    let response = module
        .handle_blocking(HttpRequest::new("GET", url))
        .unwrap();
    assert_eq!(response.status, 200);
    OutboundResponse::decode(&response.body).unwrap()
}

#[test]
fn requests_reach_the_outbound_with_the_calls_deadline_and_answers_come_back() {
    let host = Host::standalone().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut config = ModuleConfig {
        outbound: Some(recorder.clone()),
        ..ModuleConfig::default()
    };
    config.limits.handle_deadline = Duration::from_secs(3);
    let module = host.load("caller", &relay(1), &config).unwrap();
    assert_eq!(
        answer(&module, "http://api.test/x"),
        OutboundResponse::Response(HttpResponse::new(200, "http://api.test/x"))
    );
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "http://api.test/x");
    assert!(
        seen[0].1 <= Duration::from_secs(3) && seen[0].1 > Duration::from_secs(2),
        "given {:?}",
        seen[0].1
    );
    let stats = module.stats();
    assert_eq!((stats.outbound_requests, stats.outbound_errors), (1, 0));
    module.close();
}

#[test]
fn past_the_per_call_cap_requests_are_refused_unsent_and_the_count_restarts_per_call() {
    let host = Host::standalone().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut config = ModuleConfig {
        outbound: Some(recorder.clone()),
        ..ModuleConfig::default()
    };
    config.limits.max_outbound_per_call = 2;
    let module = host.load("greedy", &relay(3), &config).unwrap();
    for call in 1..=2 {
        match answer(&module, "http://api.test/") {
            OutboundResponse::Error { kind, message } => {
                assert_eq!(kind, OutboundErrorKind::Limit);
                assert_eq!(
                    message,
                    "module \"greedy\": more than 2 outbound requests in one call"
                );
            }
            other => panic!("expected a limit error, got {other:?}"),
        }
        assert_eq!(recorder.seen.lock().unwrap().len(), 2 * call);
    }
    let stats = module.stats();
    assert_eq!((stats.outbound_requests, stats.outbound_errors), (6, 2));
    module.close();
}

#[test]
fn without_an_outbound_the_import_answers_unavailable() {
    let host = Host::standalone().unwrap();
    let module = host
        .load("offline", &relay(1), &ModuleConfig::default())
        .unwrap();
    assert_eq!(
        answer(&module, "http://api.test/"),
        OutboundResponse::error(
            OutboundErrorKind::Unavailable,
            "module \"offline\": this host offers no outbound HTTP"
        )
    );
    assert_eq!(module.stats().outbound_errors, 1);
    module.close();
}
