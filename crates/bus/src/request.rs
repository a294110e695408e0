//! Request/reply over the bus: [`Bus::request`], [`Bus::reply`] and the table of requests
//! waiting for their reply.

use std::collections::HashMap;
use std::collections::hash_map;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use binary::{Message, MessageKind};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::bus::Bus;
use crate::error::{BusError, RequestError};
use crate::topic;

/// Requests waiting for a reply, by correlation id. Locked once per request and once per
/// reply, never per published event.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    next_id: AtomicU32,
    pending: Mutex<HashMap<u32, Sender<Message>>>,
}

impl Requests {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Sender<Message>>> {
        // Every critical section is a single map operation; poisoning cannot leave it torn.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id (never 0, never one still waiting) and the channel its reply will come on.
    fn register(&self) -> (u32, Receiver<Message>) {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let mut pending = self.lock();
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id == 0 {
                continue;
            }
            if let hash_map::Entry::Vacant(slot) = pending.entry(id) {
                slot.insert(sender);
                return (id, receiver);
            }
        }
    }

    /// Stops waiting for `id`. `true` if it was still waiting; `false` if a reply took the
    /// entry first (and is then already in the request's channel) or the bus closed.
    fn forget(&self, id: u32) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Hands a reply to the request waiting for its id. `false` if none is waiting.
    fn complete(&self, reply: Message) -> bool {
        let mut pending = self.lock();
        match pending.remove(&reply.id) {
            // Sent while the lock is held, so a request that times out at this very moment
            // and finds its entry gone can count on the reply being in its channel. A fresh
            // bounded(1) channel with one send never blocks.
            Some(sender) => sender.try_send(reply).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting request (their channels disconnect).
    pub(crate) fn fail_all(&self) {
        let pending = std::mem::take(&mut *self.lock());
        drop(pending);
    }
}

/// Forgets a pending request however [`Bus::request`] returns, even by unwinding.
struct PendingGuard<'a> {
    requests: &'a Requests,
    id: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.requests.forget(self.id);
    }
}

impl Bus {
    /// Publishes `message` as a `Request` on `message.topic` and waits up to `timeout` for
    /// the first reply.
    ///
    /// The bus overwrites `message.kind` with `Request` and `message.id` with a fresh
    /// correlation id, registered before the request is published. A responder answers with
    /// [`Bus::reply`] (or [`Bus::publish`]) of `request.response(..)` or
    /// `request.error_reply(..)`; the first reply wins and later ones count as
    /// [`crate::BusStats::late_replies`].
    ///
    /// Fails at once with [`RequestError::NoResponders`] when no live subscriber matches, and
    /// with [`RequestError::MailboxesFull`] when every matching mailbox is full. An `Error`
    /// reply becomes [`RequestError::Remote`]. Calling `request` from a handler whose own
    /// subscription is the only responder blocks that handler until the timeout.
    ///
    /// With a [`crate::Bridge`] set (cluster mode), a request no local subscriber matches is
    /// handed to the bridge, which answers it from another process.
    pub fn request(&self, message: Message, timeout: Duration) -> Result<Message, RequestError> {
        self.request_with(message, timeout, true)
    }

    /// Like [`Bus::request`], but answered by local subscribers only, never through the
    /// bridge: how a request that came from another process is served.
    pub fn request_local(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        self.request_with(message, timeout, false)
    }

    fn request_with(
        &self,
        mut message: Message,
        timeout: Duration,
        bridged: bool,
    ) -> Result<Message, RequestError> {
        topic::check_published(&message.topic)
            .map_err(|error| RequestError::from_bus(&message.topic, error))?;
        let topic = message.topic.clone();
        let requests = &self.inner.requests;
        let (id, receiver) = requests.register();
        let _pending = PendingGuard { requests, id };
        message.kind = MessageKind::Request;
        message.id = id;
        let bridge = if bridged {
            self.inner.bridge.get()
        } else {
            None
        };
        let spare = bridge.map(|_| message.clone());

        let report = self
            .deliver(message)
            .map_err(|error| RequestError::from_bus(&topic, error))?;
        if report.delivered == 0
            && report.full == 0
            && let (Some(bridge), Some(spare)) = (bridge, spare)
        {
            return bridge.request(spare, timeout);
        }
        if report.delivered == 0 {
            return Err(if report.full > 0 {
                RequestError::MailboxesFull {
                    topic,
                    full: report.full,
                }
            } else {
                RequestError::NoResponders { topic }
            });
        }

        let reply = match receiver.recv_timeout(timeout) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                let timed_out = RequestError::Timeout {
                    topic: topic.clone(),
                    id,
                    after: timeout,
                };
                if requests.forget(id) {
                    return Err(timed_out);
                }
                // A reply took the entry between the timeout and `forget`; it is in the
                // channel already (see `Requests::complete`).
                receiver.try_recv().map_err(|_| timed_out)?
            }
            Err(RecvTimeoutError::Disconnected) => return Err(RequestError::Closed { topic }),
        };
        match reply.kind {
            MessageKind::Error => Err(RequestError::Remote {
                topic,
                id,
                reason: String::from_utf8_lossy(&reply.payload).into_owned(),
            }),
            _ => Ok(reply),
        }
    }

    /// Hands a `Response` or `Error` to the [`Bus::request`] waiting for its id.
    ///
    /// `Ok(true)` if a request took it; `Ok(false)` if none was waiting (it timed out, was
    /// already answered, or the id is unknown): the reply is dropped and counted in
    /// [`crate::BusStats::late_replies`]. Topic subscribers never see replies.
    pub fn reply(&self, message: Message) -> Result<bool, BusError> {
        if !message.kind.is_reply() {
            return Err(BusError::NotAReply {
                topic: message.topic,
                id: message.id,
                kind: message.kind,
            });
        }
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        if self.inner.requests.complete(message) {
            Ok(true)
        } else {
            self.inner
                .counters
                .late_replies
                .fetch_add(1, Ordering::Relaxed);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::BusConfig;
    use crate::test_support::PATIENCE;

    /// A responder on `topic` that answers every request with `answer(request)`.
    fn responder(
        bus: &Bus,
        topic: &str,
        answer: impl Fn(&Message) -> Message + Send + 'static,
    ) -> crate::Subscription {
        let replies = bus.clone();
        bus.subscribe(topic, move |request| {
            let _ = replies.reply(answer(&request));
        })
        .unwrap()
    }

    #[test]
    fn a_request_gets_its_response_under_a_fresh_correlation_id() {
        let bus = Bus::new();
        let (seen_sender, seen) = crossbeam_channel::unbounded();
        let replies = bus.clone();
        let _responder = bus
            .subscribe("users.get", move |request| {
                seen_sender.send((request.kind, request.id)).unwrap();
                let mut payload = b"user ".to_vec();
                payload.extend_from_slice(&request.payload);
                replies.reply(request.response(payload)).unwrap();
            })
            .unwrap();

        let first = bus
            .request(Message::event("users.get", b"7".to_vec()), PATIENCE)
            .unwrap();
        let second = bus
            .request(Message::request("users.get", 0, b"8".to_vec()), PATIENCE)
            .unwrap();
        assert_eq!(first.kind, MessageKind::Response);
        assert_eq!(first.payload, b"user 7");
        assert_eq!(second.payload, b"user 8");
        let (kind, first_id) = seen.try_recv().unwrap();
        let (_, second_id) = seen.try_recv().unwrap();
        assert_eq!(kind, MessageKind::Request);
        assert_eq!((first.id, second.id), (first_id, second_id));
        assert_ne!(first_id, 0);
        assert_ne!(first_id, second_id);
        assert_eq!(bus.stats().late_replies, 0);
        bus.close();
    }

    #[test]
    fn an_error_reply_becomes_a_remote_error() {
        let bus = Bus::new();
        let _responder = responder(&bus, "users.get", |request| {
            request.error_reply("no such user")
        });
        let error = bus
            .request(Message::event("users.get", vec![]), PATIENCE)
            .unwrap_err();
        match &error {
            RequestError::Remote { topic, reason, .. } => {
                assert_eq!(topic, "users.get");
                assert_eq!(reason, "no such user");
            }
            other => panic!("expected Remote, got {other:?}"),
        }
        assert!(
            error
                .to_string()
                .ends_with("failed in the responder: no such user")
        );
        bus.close();
    }

    #[test]
    fn no_live_subscriber_fails_at_once() {
        let bus = Bus::new();
        let (sender, _receiver) = crossbeam_channel::bounded(1);
        let _dormant = bus.subscribe_mailbox_dormant("users.get", sender).unwrap();
        // A timeout this long would hang the test if the bus waited for it.
        let error = bus
            .request(Message::event("users.get", vec![]), Duration::MAX)
            .unwrap_err();
        assert!(matches!(&error, RequestError::NoResponders { topic } if topic == "users.get"));
        assert_eq!(
            error.to_string(),
            "request on topic \"users.get\": no live subscriber"
        );
        assert!(bus.inner.requests.lock().is_empty());
    }

    #[test]
    fn full_mailboxes_fail_at_once() {
        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: 1,
        });
        let (_subscription, _inbox) = bus.subscribe_channel("busy").unwrap();
        bus.publish(Message::event("busy", vec![])).unwrap();
        let error = bus
            .request(Message::event("busy", vec![]), Duration::MAX)
            .unwrap_err();
        assert!(matches!(error, RequestError::MailboxesFull { full: 1, .. }));
        assert_eq!(bus.stats().dropped_full, 1);
    }

    #[test]
    fn a_timeout_is_a_clear_error_and_the_late_reply_is_dropped_and_counted() {
        let bus = Bus::new();
        let (_silent, requests) = bus.subscribe_channel("slow").unwrap();
        let error = bus
            .request(Message::event("slow", vec![]), Duration::from_millis(20))
            .unwrap_err();
        let RequestError::Timeout { topic, id, after } = &error else {
            panic!("expected Timeout, got {error:?}");
        };
        assert_eq!(
            (topic.as_str(), *after),
            ("slow", Duration::from_millis(20))
        );
        assert_eq!(
            error.to_string(),
            format!("request on topic \"slow\" (id {id}) timed out after 20ms")
        );
        assert!(
            bus.inner.requests.lock().is_empty(),
            "the pending entry is removed"
        );

        let request = requests.try_recv().unwrap();
        assert_eq!(request.id, *id);
        assert!(!bus.reply(request.response(b"too late".to_vec())).unwrap());
        assert_eq!(bus.stats().late_replies, 1);
    }

    #[test]
    fn only_the_first_reply_counts() {
        let bus = Bus::new();
        let (_first, first_inbox) = bus.subscribe_channel("both").unwrap();
        let (_second, second_inbox) = bus.subscribe_channel("both").unwrap();
        let requester = bus.clone();
        let waiting =
            thread::spawn(move || requester.request(Message::event("both", vec![]), PATIENCE));
        let to_first = first_inbox.recv_timeout(PATIENCE).unwrap();
        let to_second = second_inbox.recv_timeout(PATIENCE).unwrap();
        assert_eq!(to_first.id, to_second.id);
        assert!(bus.reply(to_second.response(b"second".to_vec())).unwrap());
        assert!(!bus.reply(to_first.response(b"first".to_vec())).unwrap());
        assert_eq!(waiting.join().unwrap().unwrap().payload, b"second");
        assert_eq!(bus.stats().late_replies, 1);
    }

    #[test]
    fn a_published_reply_goes_to_the_request_not_to_topic_subscribers() {
        let bus = Bus::new();
        let (_responder, requests) = bus.subscribe_channel("ask").unwrap();
        let requester = bus.clone();
        let waiting =
            thread::spawn(move || requester.request(Message::event("ask", vec![]), PATIENCE));
        let request = requests.recv_timeout(PATIENCE).unwrap();
        let report = bus.publish(request.response(b"yes".to_vec())).unwrap();
        assert_eq!(report.delivered, 1);
        assert_eq!(waiting.join().unwrap().unwrap().payload, b"yes");
        assert!(
            requests.try_recv().is_err(),
            "the reply was not published to the topic"
        );
        // A reply nobody waits for: counted, not routed.
        let report = bus
            .publish(Message::new("ask", MessageKind::Response, 999, vec![]))
            .unwrap();
        assert_eq!(report.delivered, 0);
        assert_eq!(bus.stats().late_replies, 1);
        assert_eq!(
            bus.stats().published,
            1,
            "replies are not counted as published"
        );
    }

    #[test]
    fn close_fails_waiting_requests() {
        let bus = Bus::new();
        let (_responder, requests) = bus.subscribe_channel("never").unwrap();
        let requester = bus.clone();
        let waiting =
            thread::spawn(move || requester.request(Message::event("never", vec![]), PATIENCE));
        // Once the request is in the inbox it is registered and waiting.
        requests.recv_timeout(PATIENCE).unwrap();
        bus.close();
        let error = waiting.join().unwrap().unwrap_err();
        assert!(matches!(&error, RequestError::Closed { topic } if topic == "never"));
        assert_eq!(
            error.to_string(),
            "request on topic \"never\": bus is closed"
        );
        // Later requests and replies fail too.
        let later = bus
            .request(Message::event("never", vec![]), PATIENCE)
            .unwrap_err();
        assert!(matches!(later, RequestError::Closed { .. }));
        let reply = Message::new("never", MessageKind::Response, 1, vec![]);
        assert!(matches!(bus.reply(reply), Err(BusError::Closed)));
    }

    #[test]
    fn reply_refuses_messages_that_are_not_replies() {
        let bus = Bus::new();
        let error = bus.reply(Message::request("t", 4, vec![])).unwrap_err();
        assert!(matches!(
            error,
            BusError::NotAReply {
                kind: MessageKind::Request,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "message on topic \"t\" (id 4) is a Request, not a reply"
        );
    }

    #[test]
    fn request_topics_must_be_concrete() {
        let bus = Bus::new();
        let error = bus
            .request(Message::event("users.*", vec![]), PATIENCE)
            .unwrap_err();
        assert!(matches!(
            error,
            RequestError::Bus(BusError::InvalidTopic(_))
        ));
    }

    #[test]
    fn correlation_ids_skip_zero_and_ids_still_waiting() {
        let requests = Requests::default();
        requests.next_id.store(u32::MAX - 1, Ordering::Relaxed);
        let (last, _last_receiver) = requests.register();
        assert_eq!(last, u32::MAX);
        let (wrapped, _wrapped_receiver) = requests.register();
        assert_eq!(wrapped, 1, "0 is skipped");
        requests.next_id.store(0, Ordering::Relaxed);
        let (next, _next_receiver) = requests.register();
        assert_eq!(next, 2, "1 is still waiting");
    }
}
