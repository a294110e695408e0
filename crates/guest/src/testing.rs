//! A recording stand-in for the host, so a module's logic can be unit-tested with `cargo test`
//! on the developer's machine (every target except `wasm32`).
//!
//! On those targets the SDK's host calls land here instead of in the `env` imports: published
//! messages, broadcasts, log lines and subscriptions are recorded per thread (each `#[test]`
//! runs on its own thread, so tests don't see each other's calls), and [`request`](crate::request)
//! is answered by the responder you install with [`set_responder`] (without one it fails with
//! [`ErrorKind::NoSubscriber`], as a host with nobody listening would). Log lines are also
//! printed to stderr, which the test harness captures.
//!
//! ```
//! use guest::{Message, testing};
//!
//! testing::set_responder(|request| Ok(request.response(b"pong".to_vec())));
//! let reply = guest::request("ping", b"ping".to_vec(), std::time::Duration::from_millis(50))?;
//! assert_eq!(reply.payload, b"pong");
//!
//! guest::publish("users.created", b"{\"id\":1}")?;
//! assert_eq!(testing::take_published(), [Message::event("users.created", b"{\"id\":1}".to_vec())]);
//! # Ok::<(), guest::Error>(())
//! ```
//!
//! Drive a module through [`Instance`](crate::Instance), as the generated exports do:
//! `Instance::new(MyModule::default())`, then `init`, `handle(Request::new(..))` and
//! `on_message(..)` go through the module's router and topic table, and an error returned by
//! `init` or `on_message` shows up in [`take_logs`].
//!
//! Outbound HTTP ([`crate::http::send`]) is answered from a script: [`script_http`] sets the
//! response for a URL, [`script_http_error`] the error; any other URL is refused as a host
//! without a grant would be. [`take_http_sent`] returns what the module sent.
//!
//! This module does not exist when compiling for `wasm32`.

use std::cell::RefCell;

use binary::Message;

pub(crate) mod kv;
pub(crate) mod outbound;

pub use outbound::{script_http, script_http_error, take_http_sent};

use crate::{ErrorKind, Level};

/// Answers a request in tests: the reply (`message.response(..)` or `message.error_reply(..)`),
/// or the error the host would report.
type Responder = Box<dyn FnMut(&Message) -> Result<Message, ErrorKind>>;

#[derive(Default)]
struct State {
    published: Vec<Message>,
    broadcasts: Vec<(String, Vec<u8>)>,
    logs: Vec<(Level, String)>,
    subscriptions: Vec<String>,
    responder: Option<Responder>,
    next_request_id: u32,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(body: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| body(&mut state.borrow_mut()))
}

/// Messages published on this thread since the last call (events and replies alike).
pub fn take_published() -> Vec<Message> {
    with(|state| std::mem::take(&mut state.published))
}

/// `(topic, payload)` of every `ws_broadcast` on this thread since the last call.
pub fn take_broadcasts() -> Vec<(String, Vec<u8>)> {
    with(|state| std::mem::take(&mut state.broadcasts))
}

/// Log lines written on this thread since the last call.
pub fn take_logs() -> Vec<(Level, String)> {
    with(|state| std::mem::take(&mut state.logs))
}

/// The topics and patterns this thread is subscribed to, in subscription order.
pub fn subscriptions() -> Vec<String> {
    with(|state| state.subscriptions.clone())
}

/// Installs the function that answers [`crate::request`] on this thread. It receives the
/// request as the host would deliver it (kind `Request`, a fresh id).
pub fn set_responder(responder: impl FnMut(&Message) -> Result<Message, ErrorKind> + 'static) {
    with(|state| state.responder = Some(Box::new(responder)));
}

/// Forgets everything recorded on this thread, the responder, and the key-value store.
pub fn reset() {
    with(|state| *state = State::default());
    kv::reset();
    outbound::reset();
}

/// Grants this thread's module the shared key-value store `name`, as `stores = ["name"]` in
/// the server's configuration would ([`crate::kv::Store::shared`]).
pub fn grant_store(name: &str) {
    kv::grant(name);
}

/// The stand-ins for the imports, with the signatures of `crate::sys`.
pub(crate) mod host {
    use binary::abi::Code;
    use binary::topic::{validate_pattern, validate_topic};
    use binary::{Envelope, Message, MessageBatch, MessageKind};

    use super::with;
    use crate::Level;

    pub(crate) fn publish_message(message: &[u8]) -> i32 {
        let Ok(message) = Message::decode(message) else {
            return Code::Invalid.get();
        };
        if validate_topic(&message.topic).is_err() {
            return Code::Invalid.get();
        }
        with(|state| state.published.push(message));
        0
    }

    /// Every message fits at once here: the whole batch is recorded.
    pub(crate) fn publish_batch(batch: &[u8], _timeout_ms: i32) -> i32 {
        let Ok(messages) = MessageBatch::decode(batch) else {
            return Code::Invalid.get();
        };
        if messages
            .iter()
            .any(|message| !message.kind.is_reply() && validate_topic(&message.topic).is_err())
        {
            return Code::Invalid.get();
        }
        let count = i32::try_from(messages.len()).unwrap_or(i32::MAX);
        with(|state| state.published.extend(messages));
        count
    }

    pub(crate) fn subscribe_topic(topic: &str, _handler: u32) -> i32 {
        if validate_pattern(topic).is_err() {
            return Code::Invalid.get();
        }
        with(|state| {
            if !state.subscriptions.iter().any(|known| known == topic) {
                state.subscriptions.push(topic.to_owned());
            }
        });
        0
    }

    pub(crate) fn unsubscribe(topic: &str) -> i32 {
        if validate_pattern(topic).is_err() {
            return Code::Invalid.get();
        }
        with(|state| {
            let before = state.subscriptions.len();
            state.subscriptions.retain(|known| known != topic);
            i32::from(state.subscriptions.len() != before)
        })
    }

    pub(crate) fn ws_broadcast(topic: &str, payload: &[u8]) {
        with(|state| state.broadcasts.push((topic.to_owned(), payload.to_vec())));
    }

    pub(crate) fn log_at(level: i32, text: &str) {
        let level = match level {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            _ => Level::Error,
        };
        eprintln!("[guest {level}] {text}");
        with(|state| state.logs.push((level, text.to_owned())));
    }

    pub(crate) fn request(message: &[u8], _timeout_ms: i32) -> Result<Vec<u8>, i32> {
        let Ok(mut message) = Message::decode(message) else {
            return Err(Code::Invalid.get());
        };
        if validate_topic(&message.topic).is_err() {
            return Err(Code::Invalid.get());
        }
        // Like the host: the kind becomes Request and the id a fresh one.
        message.kind = MessageKind::Request;
        message.id = with(|state| {
            state.next_request_id = state.next_request_id.wrapping_add(1);
            state.next_request_id
        });
        // The responder runs outside the borrow so it may itself publish or log.
        let Some(mut responder) = with(|state| state.responder.take()) else {
            return Err(Code::NoResponders.get());
        };
        let reply = responder(&message);
        with(|state| {
            if state.responder.is_none() {
                state.responder = Some(responder);
            }
        });
        match reply {
            Ok(reply) => Ok(reply.encode()),
            Err(kind) => Err(kind.code().unwrap_or(Code::Invalid.get())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_bus_rules() {
        for good in ["users", "users.created", "users.*", "*", "a.b.*"] {
            assert_eq!(host::subscribe_topic(good, 0), 0, "{good}");
        }
        let long = "a".repeat(binary::topic::MAX_TOPIC_BYTES + 1);
        for bad in ["", "users*", ".*", "a.*.b", "**", "*.users", &long] {
            assert_eq!(host::subscribe_topic(bad, 0), -1, "{bad}");
        }
    }

    #[test]
    fn reset_forgets_everything() {
        host::ws_broadcast("t", b"x");
        host::log_at(2, "hello");
        reset();
        assert!(take_broadcasts().is_empty());
        assert!(take_logs().is_empty());
    }
}
