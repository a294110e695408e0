//! The bus and the browser relay: publish, subscribe, request/reply, `ws_broadcast`, and
//! [`Topics`], which dispatches incoming messages to handlers by topic pattern.

use std::fmt;
use std::time::Duration;

use binary::{Envelope, Message, MessageBatch, MessageKind};

use crate::error::{Error, ErrorKind};
use crate::sys;

/// Publishes `payload` as an `Event` on `topic`. Returns how many mailboxes it reached.
///
/// ```
/// guest::publish("users.created", br#"{"id":7}"#)?;
/// # Ok::<(), guest::Error>(())
/// ```
pub fn publish(topic: &str, payload: impl AsRef<[u8]>) -> Result<usize, Error> {
    publish_message(&Message::event(topic, payload.as_ref().to_vec()))
}

/// Publishes a complete [`Message`]. An `Event` or `Request` goes to the topic's subscribers;
/// a `Response` or `Error` goes to the module waiting for the reply with that `id` (prefer
/// [`reply`] / [`reply_error`] for those). Returns how many mailboxes it reached (for a reply:
/// 1 = taken, 0 = nobody was waiting any more).
pub fn publish_message(message: &Message) -> Result<usize, Error> {
    let code = sys::publish_message(&message.encode());
    usize::try_from(code)
        .map_err(|_| Error::new("publish", &message.topic, ErrorKind::from_code(code)))
}

/// Publishes the messages of `batch` in order, in one host call, each once every mailbox it
/// goes to has room: while a subscriber's mailbox is full the host waits (sleeping, not
/// spinning) up to `timeout`, and never past the calling export's own deadline. Returns how
/// many messages, from the first, were published; the rest were offered to nobody (send them
/// again, or give up). With a zero `timeout` it publishes what fits now.
///
/// This is the way to publish many messages without losing any to a full mailbox and without
/// a retry loop around [`publish`] (`docs/ABI.md`, `publish_batch`). A batch larger than the
/// host's message limit (1 MiB by default) is refused whole, as is one with an invalid topic.
///
/// ```
/// use std::time::Duration;
/// use guest::MessageBatch;
///
/// let mut batch = MessageBatch::new();
/// for id in 0..3 {
///     batch.push_event("users.created", format!("{id}").as_bytes());
/// }
/// assert_eq!(guest::publish_batch(&batch, Duration::from_secs(1))?, 3);
/// assert_eq!(guest::testing::take_published().len(), 3);
/// # Ok::<(), guest::Error>(())
/// ```
pub fn publish_batch(batch: &MessageBatch, timeout: Duration) -> Result<usize, Error> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let code = sys::publish_batch(batch.as_bytes(), timeout_ms);
    usize::try_from(code).map_err(|_| {
        Error::new(
            "publish_batch",
            format!("{} messages", batch.len()),
            ErrorKind::from_code(code),
        )
    })
}

/// Answers `request` (a message of kind `Request` received in `on_message`) with `payload`.
/// Returns whether the requester was still waiting.
pub fn reply(request: &Message, payload: impl Into<Vec<u8>>) -> Result<bool, Error> {
    publish_message(&request.response(payload)).map(|taken| taken > 0)
}

/// Answers `request` with an `Error` reply carrying `reason`; the requester's
/// [`request`] returns [`ErrorKind::ErrorReply`] with it. Returns whether the requester was
/// still waiting.
pub fn reply_error(request: &Message, reason: impl Into<String>) -> Result<bool, Error> {
    publish_message(&request.error_reply(reason)).map(|taken| taken > 0)
}

/// Subscribes this module to `pattern`: an exact topic (`users.created`), every topic under a
/// prefix (`users.*`: starts with `users.` and has more after it) or everything (`*`).
/// Matching messages arrive in [`Module::on_message`](crate::Module::on_message).
///
/// Calls made in `init` are recorded by the host and go live when this version is swapped in,
/// so a new version never receives messages before it is serving. Subscribing twice to
/// overlapping patterns (`users.*` and `*`) makes the host deliver a message once per
/// matching subscription.
pub fn subscribe(pattern: &str) -> Result<(), Error> {
    // The handler index is not passed back by the host (docs/ABI.md); dispatch is by topic.
    match sys::subscribe_topic(pattern, 0) {
        code if code < 0 => Err(Error::new("subscribe", pattern, ErrorKind::from_code(code))),
        _ => Ok(()),
    }
}

/// Cancels the subscription to `pattern`. Returns whether there was one.
pub fn unsubscribe(pattern: &str) -> Result<bool, Error> {
    match sys::unsubscribe(pattern) {
        code if code < 0 => Err(Error::new(
            "unsubscribe",
            pattern,
            ErrorKind::from_code(code),
        )),
        code => Ok(code > 0),
    }
}

/// Sends `payload` to every browser connected to `/ws?topic=<topic>`. Fire and forget.
pub fn ws_broadcast(topic: &str, payload: impl AsRef<[u8]>) {
    sys::ws_broadcast(topic, payload.as_ref());
}

/// Sends a `Request` on `topic` and blocks until the reply or `timeout`, whichever is first
/// (the calling export's own deadline also bounds it).
///
/// Returns the `Response` message. An `Error` reply becomes [`ErrorKind::ErrorReply`] with
/// its payload as the reason; the host's refusals become their codes' kinds
/// ([`ErrorKind::TimedOut`], [`ErrorKind::NoSubscriber`], ...). A module that requests a topic
/// it serves itself times out: it cannot read its own inbox while it waits.
///
/// ```
/// # guest::testing::set_responder(|request| Ok(request.response(b"{\"id\":7}".to_vec())));
/// use std::time::Duration;
///
/// let reply = guest::request("users.get", b"7".to_vec(), Duration::from_millis(500))?;
/// assert_eq!(reply.payload, b"{\"id\":7}");
/// # Ok::<(), guest::Error>(())
/// ```
pub fn request(
    topic: &str,
    payload: impl Into<Vec<u8>>,
    timeout: Duration,
) -> Result<Message, Error> {
    // The host sets the kind and a fresh id; these are placeholders.
    let message = Message::request(topic, 0, payload);
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let fail = |kind| Error::new("request", topic, kind);
    let bytes = sys::request(&message.encode(), timeout_ms)
        .map_err(|code| fail(ErrorKind::from_code(code)))?;
    let reply = Message::decode(&bytes).map_err(|error| fail(ErrorKind::BadReply(error)))?;
    match reply.kind {
        MessageKind::Error => Err(fail(ErrorKind::ErrorReply(
            String::from_utf8_lossy(&reply.payload).into_owned(),
        ))),
        _ => Ok(reply),
    }
}

/// Whether `topic` matches the subscription `pattern`, by the bus's rules
/// ([`binary::topic`]): `*` matches every topic, `prefix.*` every topic that starts with
/// `prefix.` and has more after it, any other valid pattern only itself. A pattern the bus
/// refuses (`users*`, `.*`, `a.*.b`) matches nothing.
///
/// ```
/// assert!(guest::topic_matches("users.*", "users.created"));
/// assert!(!guest::topic_matches("users.*", "users."));
/// assert!(!guest::topic_matches("users.*", "users"));
/// assert!(guest::topic_matches("*", "anything"));
/// assert!(!guest::topic_matches("users*", "users*"));
/// ```
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    binary::topic::matches(pattern, topic)
}

pub(crate) type Handler<M> = Box<dyn Fn(&mut M, Message) -> Result<(), Error>>;

/// Message handlers by topic pattern: what [`Module::topics`](crate::Module::topics) returns.
///
/// The host calls one `on_message` for every subscription, without saying which one matched;
/// `Topics` finds the handler by the message's topic. Patterns are tried in the order they
/// were added and the **first** match wins, so put specific patterns before general ones.
/// A module's table is built once per instance; the generated `init` subscribes to every
/// pattern ([`Topics::subscribe_all`]) and `on_message` dispatches with it, so one table
/// declares both. A handler returns what [`Module::on_message`](crate::Module::on_message)
/// does: an error is logged.
///
/// ```
/// use guest::{Instance, Message, Module, Topics};
///
/// #[derive(Default)]
/// struct Audit { created: u32, other: u32 }
///
/// impl Module for Audit {
///     fn topics() -> Topics<Audit> {
///         Topics::new()
///             .on("users.created", Audit::created)
///             .on("*", |audit: &mut Audit, _| {
///                 audit.other += 1;
///                 Ok(())
///             })
///     }
/// }
///
/// impl Audit {
///     fn created(&mut self, message: Message) -> Result<(), guest::Error> {
///         self.created += 1;
///         guest::publish("audit.seen", &message.topic)?;
///         Ok(())
///     }
/// }
///
/// let mut audit = Instance::new(Audit::default());
/// audit.init();
/// assert_eq!(guest::testing::subscriptions(), ["users.created", "*"]);
/// audit.on_message(Message::event("users.created", vec![]));
/// audit.on_message(Message::event("orders.paid", vec![]));
/// assert_eq!((audit.module().created, audit.module().other), (1, 1));
/// ```
pub struct Topics<M> {
    handlers: Vec<(String, Handler<M>)>,
}

impl<M> Topics<M> {
    /// An empty table.
    pub fn new() -> Topics<M> {
        Topics {
            handlers: Vec::new(),
        }
    }

    /// Adds `handler` for messages whose topic matches `pattern` (see [`topic_matches`]).
    ///
    /// # Panics
    /// On a pattern the bus would refuse ([`binary::topic::validate_pattern`]: empty, over
    /// 1 KiB, or a `*` that is not the whole pattern or a final `.*`, like `users*`): its
    /// handler could never run. Patterns are constants in the module's source, so this is a
    /// programming error, found when the table is built (the module's `init`, or a unit test).
    pub fn on(
        mut self,
        pattern: &str,
        handler: impl Fn(&mut M, Message) -> Result<(), Error> + 'static,
    ) -> Self {
        if let Err(error) = binary::topic::validate_pattern(pattern) {
            panic!("Topics::on: {error}");
        }
        self.handlers.push((pattern.to_owned(), Box::new(handler)));
        self
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.handlers.iter().map(|(pattern, _)| pattern.as_str())
    }

    /// Subscribes to every pattern (see [`subscribe`]); stops at the first refusal.
    pub fn subscribe_all(&self) -> Result<(), Error> {
        self.patterns().try_for_each(subscribe)
    }

    /// Whether no handler was added.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// The first handler whose pattern matches `topic`.
    pub(crate) fn find(&self, topic: &str) -> Option<&Handler<M>> {
        self.handlers
            .iter()
            .find(|(pattern, _)| topic_matches(pattern, topic))
            .map(|(_, handler)| handler)
    }

    /// Calls the first handler whose pattern matches the message's topic and returns what
    /// it returned; `None` when no pattern matches (the message is dropped).
    pub fn dispatch(&self, module: &mut M, message: Message) -> Option<Result<(), Error>> {
        let handler = self.find(&message.topic)?;
        Some(handler(module, message))
    }
}

impl<M> Default for Topics<M> {
    fn default() -> Self {
        Topics::new()
    }
}

impl<M> fmt::Debug for Topics<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.patterns()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn a_batch_is_published_in_order_or_refused_whole() {
        testing::reset();
        let mut batch = MessageBatch::new();
        batch.push_event("a.b", b"1");
        batch.push(&Message::request("a.c", 4, b"2".to_vec()));
        assert_eq!(publish_batch(&batch, Duration::ZERO).unwrap(), 2);
        assert_eq!(
            testing::take_published(),
            [
                Message::event("a.b", b"1".to_vec()),
                Message::request("a.c", 4, b"2".to_vec())
            ]
        );
        batch.push_event("a*", b"3");
        let error = publish_batch(&batch, Duration::ZERO).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::InvalidInput);
        assert!(
            error
                .to_string()
                .starts_with("publish_batch \"3 messages\": refused"),
            "{error}"
        );
        assert!(testing::take_published().is_empty());
    }

    #[test]
    fn topic_matching_follows_the_bus() {
        assert!(topic_matches("users.created", "users.created"));
        assert!(!topic_matches("users.created", "users.deleted"));
        assert!(topic_matches("users.*", "users.created"));
        assert!(topic_matches("users.*", "users.a.b"));
        assert!(!topic_matches("users.*", "users."));
        assert!(!topic_matches("users.*", "users"));
        assert!(!topic_matches("users.*", "usersx.created"));
        assert!(topic_matches("*", "x"));
        // A pattern the bus refuses matches nothing, not even itself.
        assert!(!topic_matches("users*", "users*"));
        assert!(!topic_matches("users*", "users1"));
        assert!(!topic_matches(".*", "a"));
    }

    /// The vectors `binary::topic` is tested with, through the SDK: a valid pattern is
    /// accepted by `Topics::on` and by the test host's `subscribe`, an invalid one by
    /// neither; `publish` takes exactly the valid topics; dispatch follows `match` lines.
    #[test]
    fn the_sdk_follows_the_shared_topic_vectors() {
        for fields in binary::vectors::topics() {
            let line = fields.join(" ");
            let builds = |pattern: &str| {
                let pattern = pattern.to_owned();
                std::panic::catch_unwind(move || Topics::<()>::new().on(&pattern, |_, _| Ok(())))
            };
            match fields[..] {
                ["pattern", pattern] => {
                    assert!(builds(pattern).is_ok(), "{line}");
                    assert!(subscribe(pattern).is_ok(), "{line}");
                }
                ["!pattern", pattern] => {
                    assert!(builds(pattern).is_err(), "{line}");
                    let error = subscribe(pattern).unwrap_err();
                    assert_eq!(error.kind(), &ErrorKind::InvalidInput, "{line}");
                }
                ["topic", topic] => assert!(publish(topic, b"").is_ok(), "{line}"),
                ["!topic", topic] => assert!(publish(topic, b"").is_err(), "{line}"),
                [expectation @ ("match" | "!match"), pattern, topic] => {
                    let dispatched = builds(pattern).is_ok_and(|topics| {
                        topics
                            .dispatch(&mut (), Message::event(topic, vec![]))
                            .is_some()
                    });
                    assert_eq!(dispatched, expectation == "match", "{line}");
                }
                _ => panic!("bad vector line {line:?}"),
            }
        }
    }

    #[test]
    #[should_panic(expected = "Topics::on: invalid topic \"users*\"")]
    fn a_pattern_the_bus_refuses_is_refused_when_the_table_is_built() {
        let _ = Topics::<()>::new().on("users*", |_, _| Ok(()));
    }

    #[test]
    fn the_first_matching_handler_wins() {
        let topics = Topics::<Vec<&'static str>>::new()
            .on("a.b", |seen, _| {
                seen.push("exact");
                Ok(())
            })
            .on("a.*", |seen, _| {
                seen.push("prefix");
                Ok(())
            })
            .on("*", |seen, _| {
                seen.push("all");
                Ok(())
            });
        let mut seen = Vec::new();
        for topic in ["a.b", "a.c", "b", "a"] {
            assert_eq!(
                topics.dispatch(&mut seen, Message::event(topic, vec![])),
                Some(Ok(()))
            );
        }
        assert_eq!(seen, ["exact", "prefix", "all", "all"]);
        let narrow = Topics::<Vec<&'static str>>::new().on("a.*", |seen, _| {
            seen.push("a");
            Ok(())
        });
        assert_eq!(
            narrow.dispatch(&mut seen, Message::event("b", vec![])),
            None
        );
    }

    #[test]
    fn subscribe_all_subscribes_in_order_and_reports_refusals() {
        let topics = Topics::<()>::new()
            .on("x.*", |_, _| Ok(()))
            .on("y", |_, _| Ok(()));
        topics.subscribe_all().unwrap();
        assert_eq!(testing::subscriptions(), ["x.*", "y"]);
        let error = subscribe("a.*.b").unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::InvalidInput);
        assert_eq!(
            error.to_string(),
            "subscribe \"a.*.b\": refused as invalid input (code -1)"
        );
        assert!(unsubscribe("x.*").unwrap());
        assert!(!unsubscribe("x.*").unwrap());
    }

    #[test]
    fn publish_and_reply_record_the_messages() {
        assert_eq!(publish("users.created", b"1").unwrap(), 0);
        let request = Message::request("users.get", 9, b"7".to_vec());
        reply(&request, b"seven".to_vec()).unwrap();
        reply_error(&request, "no such user").unwrap();
        let published = testing::take_published();
        assert_eq!(published[0], Message::event("users.created", b"1".to_vec()));
        assert_eq!(published[1].kind, MessageKind::Response);
        assert_eq!(
            (published[1].id, &published[1].payload[..]),
            (9, &b"seven"[..])
        );
        assert_eq!(published[2].kind, MessageKind::Error);
        let error = publish("bad.*", b"").unwrap_err();
        assert_eq!((error.call(), error.topic()), ("publish", "bad.*"));
    }

    #[test]
    fn request_maps_replies_and_codes() {
        // Nobody answers.
        let error = request("users.get", b"7".to_vec(), Duration::from_millis(10)).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::NoSubscriber);
        // A response.
        testing::set_responder(|request| {
            assert_eq!(request.kind, MessageKind::Request);
            assert_ne!(request.id, 0, "the host assigns a fresh id");
            match request.payload.as_slice() {
                b"7" => Ok(request.response(b"alice".to_vec())),
                b"slow" => Err(ErrorKind::TimedOut),
                _ => Ok(request.error_reply("no such user")),
            }
        });
        let reply = request("users.get", b"7".to_vec(), Duration::from_secs(1)).unwrap();
        assert_eq!(
            (reply.kind, reply.payload),
            (MessageKind::Response, b"alice".to_vec())
        );
        let error = request("users.get", b"8".to_vec(), Duration::from_secs(1)).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::ErrorReply("no such user".into()));
        assert_eq!(
            error.to_string(),
            "request \"users.get\": answered with an error: no such user"
        );
        let error = request("users.get", b"slow".to_vec(), Duration::from_secs(1)).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::TimedOut);
    }

    #[test]
    fn broadcasts_are_recorded() {
        ws_broadcast("chat", "hello");
        assert_eq!(
            testing::take_broadcasts(),
            [("chat".to_owned(), b"hello".to_vec())]
        );
    }
}
