//! The import-boundary harness: a live puppet module (`puppet.wat`) whose `handle` runs a
//! script of host import calls with fuzzer-chosen arguments, next to a responder (`echo.wat`)
//! that answers `request`s on `echo.*`.
//!
//! A [`Script`] is derived from the fuzz input with `arbitrary`: each [`Op`] is one import
//! call (or a `memory.grow`, or a trap), and each pointer argument is either raw (any
//! address and length, also relative to the end of memory) or points at fuzzer-chosen bytes
//! shipped in the request body: raw bytes, a topic, or an encoded `Message` (possibly with a
//! bad kind or cut short). [`Harness::run`] sends it and checks that the host kept its
//! promises (`docs/ABI.md`): every result is a documented value, a bad call fails only that
//! call with a typed `CallError`, and the module answers again afterwards.
//!
//! Script format (the request body, little-endian): `count: u32`, then `count` records of six
//! `i32` (`op, mode, a, b, c, d`), then the data the pointers refer to. `mode` bits 0–1 say
//! how the puppet resolves `a`, bits 2–3 the same for `c`: 0 absolute, 1 relative to the
//! body, 2 relative to the end of memory. Ops: 0 `publish(a, b, c, d)`, 1 `subscribe(a, b,
//! c)`, 2 `ws_broadcast(a, b, c, d)`, 3 `log(a, b)`, 4 `publish_message(a, b)`,
//! 5 `subscribe_topic(a, b, c)`, 6 `unsubscribe(a, b)`, 7 `request(a, b, c)`,
//! 8 `log_at(c, a, b)`, 9 `memory.grow(b)`, 10 `unreachable`. The response body holds one
//! little-endian `i64` per op: what the import (or `memory.grow`) returned, 0 for void ones.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use binary::HttpRequest;
use wasi_host::{CallError, CallErrorKind, Host, Limits, LoadedModule, ModuleConfig};

/// At most this many operations per script.
pub const MAX_OPS: usize = 64;

/// A handle deadline short enough that a script waiting on `request`s costs little, long
/// enough that a normal script never hits it.
const HANDLE_DEADLINE: Duration = Duration::from_millis(500);

/// Topics that other operations (and the responder) use too, so subscriptions, publishes
/// and requests meet.
const KNOWN_TOPICS: &[&str] = &[
    "echo.ping",
    "echo.*",
    "puppet.self",
    "puppet.*",
    "*",
    "",
    "a..b",
    "trailing.",
    "*.x",
];

/// A topic argument.
#[derive(Debug, Arbitrary)]
pub enum Topic {
    /// One of [`KNOWN_TOPICS`].
    Known(u8),
    /// Anything, including invalid patterns and long strings.
    Any(String),
    /// Bytes that need not be UTF-8.
    Bytes(Vec<u8>),
}

impl Topic {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Topic::Known(index) => KNOWN_TOPICS[*index as usize % KNOWN_TOPICS.len()]
                .as_bytes()
                .to_vec(),
            Topic::Any(text) => text.as_bytes().to_vec(),
            Topic::Bytes(bytes) => bytes.clone(),
        }
    }
}

/// Bytes shipped in the request body for a pointer to refer to.
#[derive(Debug, Arbitrary)]
pub enum Data {
    /// Anything.
    Raw(Vec<u8>),
    /// A topic.
    Topic(Topic),
    /// An encoded `Message`: `kind` is the raw tag (0..=3 valid), `cut` shortens the
    /// encoding by that many bytes.
    Message {
        topic: Topic,
        kind: u8,
        id: u32,
        payload: Vec<u8>,
        cut: u8,
    },
}

impl Data {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Raw(bytes) => bytes.clone(),
            Data::Topic(topic) => topic.bytes(),
            Data::Message {
                topic,
                kind,
                id,
                payload,
                cut,
            } => {
                let topic = topic.bytes();
                let mut bytes = Vec::new();
                bytes.extend_from_slice(&(topic.len() as u64).to_le_bytes());
                bytes.extend_from_slice(&topic);
                // Mostly valid kinds, sometimes not.
                bytes.extend_from_slice(&(u32::from(*kind) % 5).to_le_bytes());
                bytes.extend_from_slice(&id.to_le_bytes());
                bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
                bytes.extend_from_slice(payload);
                let keep = bytes.len().saturating_sub(usize::from(*cut % 8));
                bytes.truncate(keep);
                bytes
            }
        }
    }
}

/// A pointer/length argument pair.
#[derive(Debug, Arbitrary)]
pub enum Pointer {
    /// Fuzzer-chosen bytes in the body: always in bounds.
    Data(Data),
    /// Any address and length: in bounds, out of bounds, wrapping past 4 GiB, huge lengths.
    Absolute { address: u32, len: u32 },
    /// `back` bytes below the end of memory, `len` long: straddles the end when `len > back`.
    FromEnd { back: u16, len: u32 },
}

/// A `request` timeout in milliseconds.
#[derive(Debug, Arbitrary)]
pub enum Timeout {
    /// 0..=31 ms.
    Short(u8),
    /// Anything, negative and huge included (the handle deadline bounds the wait).
    Raw(i32),
}

/// One import call.
#[derive(Debug, Arbitrary)]
pub enum Op {
    Publish {
        topic: Pointer,
        payload: Pointer,
    },
    Subscribe {
        topic: Pointer,
        handler: i32,
    },
    WsBroadcast {
        topic: Pointer,
        payload: Pointer,
    },
    Log {
        message: Pointer,
    },
    PublishMessage {
        message: Pointer,
    },
    SubscribeTopic {
        topic: Pointer,
        handler: i32,
    },
    Unsubscribe {
        topic: Pointer,
    },
    Request {
        message: Pointer,
        timeout: Timeout,
    },
    LogAt {
        level: i32,
        message: Pointer,
    },
    /// `memory.grow` by this many pages (huge values fail with -1).
    Grow {
        pages: u32,
    },
    /// `unreachable`: the call traps.
    Trap,
}

/// A script for the puppet.
#[derive(Debug)]
pub struct Script {
    pub ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Script {
    fn arbitrary(input: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Script> {
        let mut ops = Vec::new();
        input.arbitrary_loop(Some(0), Some(MAX_OPS as u32), |input| {
            ops.push(Op::arbitrary(input)?);
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        Ok(Script { ops })
    }
}

/// Resolves a pointer argument to `(value, length, mode)`, appending data to `data` (whose
/// offset inside the body is `data_start` + its current length).
fn place(pointer: &Pointer, data_start: usize, data: &mut Vec<u8>) -> (i32, i32, i32) {
    match pointer {
        Pointer::Data(bytes) => {
            let bytes = bytes.bytes();
            let at = data_start + data.len();
            data.extend_from_slice(&bytes);
            (at as i32, bytes.len() as i32, 1)
        }
        Pointer::Absolute { address, len } => (*address as i32, *len as i32, 0),
        Pointer::FromEnd { back, len } => (-i32::from(*back), *len as i32, 2),
    }
}

impl Script {
    /// The request body the puppet runs.
    pub fn encode(&self) -> Vec<u8> {
        let data_start = 4 + 24 * self.ops.len();
        let mut data = Vec::new();
        let mut records: Vec<[i32; 6]> = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            // An import taking two pointer/length pairs, or one pair and a plain `c`.
            let pair = |code: i32, first: &Pointer, second: &Pointer, data: &mut Vec<u8>| {
                let (a, b, mode_a) = place(first, data_start, data);
                let (c, d, mode_c) = place(second, data_start, data);
                [code, mode_a | (mode_c << 2), a, b, c, d]
            };
            let single = |code: i32, pointer: &Pointer, c: i32, data: &mut Vec<u8>| {
                let (a, b, mode) = place(pointer, data_start, data);
                [code, mode, a, b, c, 0]
            };
            records.push(match op {
                Op::Publish { topic, payload } => pair(0, topic, payload, &mut data),
                Op::WsBroadcast { topic, payload } => pair(2, topic, payload, &mut data),
                Op::Subscribe { topic, handler } => single(1, topic, *handler, &mut data),
                Op::Log { message } => single(3, message, 0, &mut data),
                Op::PublishMessage { message } => single(4, message, 0, &mut data),
                Op::SubscribeTopic { topic, handler } => single(5, topic, *handler, &mut data),
                Op::Unsubscribe { topic } => single(6, topic, 0, &mut data),
                Op::Request { message, timeout } => {
                    let timeout = match timeout {
                        Timeout::Short(ms) => i32::from(*ms % 32),
                        Timeout::Raw(ms) => *ms,
                    };
                    single(7, message, timeout, &mut data)
                }
                Op::LogAt { level, message } => single(8, message, *level, &mut data),
                Op::Grow { pages } => [9, 0, 0, *pages as i32, 0, 0],
                Op::Trap => [10, 0, 0, 0, 0, 0],
            });
        }
        let mut body = Vec::with_capacity(data_start + data.len());
        body.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for record in &records {
            for field in record {
                body.extend_from_slice(&field.to_le_bytes());
            }
        }
        body.extend_from_slice(&data);
        body
    }
}

/// The host, the puppet and the responder, created once per process.
#[derive(Debug)]
pub struct Harness {
    pub host: Host,
    pub puppet: LoadedModule,
    pub echo: LoadedModule,
}

fn config() -> ModuleConfig {
    ModuleConfig {
        limits: Limits {
            handle_deadline: HANDLE_DEADLINE,
            ..Limits::default()
        },
        ..ModuleConfig::default()
    }
}

impl Harness {
    /// The process-wide harness.
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(|| {
            let host = Host::standalone().expect("a host");
            let load = |name: &str, source: &str| {
                let bytes = wat::parse_str(source).expect("valid WAT");
                let module = host
                    .load(name, &bytes, &config())
                    .unwrap_or_else(|error| panic!("{error}"));
                module.go_live().expect("the bus is open");
                module
            };
            let puppet = load("puppet", include_str!("puppet.wat"));
            let echo = load("echo", include_str!("echo.wat"));
            Harness { host, puppet, echo }
        })
    }

    /// Runs `script` once and checks every promise; panics (a crash for libFuzzer) when one
    /// is broken. Then removes the subscriptions it made, so inputs stay independent.
    pub fn run(&self, script: &Script) {
        let outcome = self.call(script.encode());
        match outcome {
            Ok(results) => {
                assert_eq!(results.len(), script.ops.len(), "one result per op");
                for (op, result) in script.ops.iter().zip(results) {
                    check_result(op, result);
                }
                assert!(
                    !script.ops.iter().any(|op| matches!(op, Op::Trap)),
                    "a script with a trap ran to the end"
                );
            }
            Err(error) => check_failure(script, &error),
        }
        // Whatever happened, the module answers (a fresh instance if the last one failed).
        let results = self
            .call(Script { ops: Vec::new() }.encode())
            .unwrap_or_else(|error| panic!("the puppet no longer answers: {error}"));
        assert!(results.is_empty());
        self.unsubscribe_all();
    }

    /// Sends one script; returns the per-op results. A full inbox (the script's own
    /// publishes to itself queue `on_message` jobs) is waited out, with a deadline.
    fn call(&self, body: Vec<u8>) -> Result<Vec<i64>, CallError> {
        let request = HttpRequest {
            body,
            ..HttpRequest::default()
        };
        let give_up = Instant::now() + Duration::from_secs(20);
        let response = loop {
            match self.puppet.handle_blocking(request.clone()) {
                Err(CallError {
                    kind: CallErrorKind::Overloaded { .. },
                    ..
                }) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                outcome => break outcome?,
            }
        };
        assert_eq!(response.status, 200);
        assert!(response.headers.is_empty());
        assert_eq!(response.body.len() % 8, 0);
        Ok(response
            .body
            .chunks_exact(8)
            .map(|chunk| i64::from_le_bytes(chunk.try_into().expect("8 bytes")))
            .collect())
    }

    fn unsubscribe_all(&self) {
        let topics = self.puppet.subscriptions();
        for chunk in topics.chunks(MAX_OPS) {
            let ops = chunk
                .iter()
                .map(|topic| Op::Unsubscribe {
                    topic: Pointer::Data(Data::Raw(topic.as_bytes().to_vec())),
                })
                .collect();
            let results = self
                .call(Script { ops }.encode())
                .unwrap_or_else(|error| panic!("unsubscribing failed: {error}"));
            assert!(results.iter().all(|&result| result == 1), "{results:?}");
        }
        assert_eq!(self.puppet.subscriptions(), Vec::<String>::new());
    }
}

/// Codes from docs/ABI.md.
const INVALID: i64 = -1;
const LIMIT: i64 = -2;
const CLOSED: i64 = -3;
const TIMEOUT: i64 = -4;
const NO_RESPONDERS: i64 = -5;
const BUSY: i64 = -6;

fn check_result(op: &Op, result: i64) {
    let documented = match op {
        Op::Publish { .. }
        | Op::Subscribe { .. }
        | Op::WsBroadcast { .. }
        | Op::Log { .. }
        | Op::LogAt { .. } => result == 0,
        Op::PublishMessage { .. } => {
            (0..=i64::from(i32::MAX)).contains(&result) || result == INVALID || result == CLOSED
        }
        Op::SubscribeTopic { .. } => [0, INVALID, LIMIT, CLOSED].contains(&result),
        Op::Unsubscribe { .. } => [0, 1, INVALID].contains(&result),
        Op::Request { .. } => {
            // (ptr << 32) | len of an encoded Message on the puppet's heap, or a code.
            let (ptr, len) = ((result >> 32) as u32, result as u32);
            (result >= 0 && ptr >= 4096 && len >= 24)
                || [INVALID, CLOSED, TIMEOUT, NO_RESPONDERS, BUSY].contains(&result)
        }
        Op::Grow { .. } => result == -1 || (1..=65536).contains(&result),
        Op::Trap => false,
    };
    assert!(
        documented,
        "{op:?} returned {result}, which docs/ABI.md does not allow"
    );
}

fn check_failure(script: &Script, error: &CallError) {
    let message = error.to_string();
    assert!(
        message.starts_with("module \"puppet\": "),
        "the error does not name the module: {message}"
    );
    let has = |wanted: fn(&Op) -> bool| script.ops.iter().any(wanted);
    let allowed = error.export == "handle"
        && match &error.kind {
        // A raw pointer, or a reply the allocator could not place.
        CallErrorKind::BadPointer { place, .. } => {
            place.starts_with("import \"")
                && has(|op| {
                    matches!(op, Op::Request { .. })
                        || op_pointers(op).any(|pointer| !matches!(pointer, Pointer::Data(_)))
                })
        }
        CallErrorKind::Trap { .. } => has(|op| matches!(op, Op::Trap)),
        // Waiting for replies can use the whole deadline; so can a long script of huge
        // log lines or publishes on a slow (instrumented) build, rarely.
        CallErrorKind::Deadline { .. } => true,
        _ => false,
    };
    assert!(allowed, "unexpected failure for {script:?}: {message}");
    assert!(error.replaces_instance(), "{message}");
}

fn op_pointers(op: &Op) -> impl Iterator<Item = &Pointer> {
    let (first, second) = match op {
        Op::Publish { topic, payload } | Op::WsBroadcast { topic, payload } => {
            (Some(topic), Some(payload))
        }
        Op::Subscribe { topic, .. }
        | Op::SubscribeTopic { topic, .. }
        | Op::Unsubscribe { topic } => (Some(topic), None),
        Op::Log { message }
        | Op::LogAt { message, .. }
        | Op::PublishMessage { message }
        | Op::Request { message, .. } => (Some(message), None),
        Op::Grow { .. } | Op::Trap => (None, None),
    };
    first.into_iter().chain(second)
}
