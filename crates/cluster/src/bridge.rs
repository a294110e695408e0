//! The bus and WebSocket halves of the bridge: [`BusBridge`] sends local publishes and
//! unanswered requests out; the loops here check what comes in and hand it to the bus or the
//! WebSocket relay.

use std::sync::{Arc, Weak};
use std::time::Duration;

use binary::{DecodeOptions, Envelope as _, Message, MessageBatch, MessageKind};
use bus::RequestError;
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::node::{Inner, Payload};
use crate::stats::bump;
use crate::subject;

/// The longest a request from another node may ask this node to wait.
const MAX_REMOTE_TIMEOUT: Duration = Duration::from_secs(300);

/// The bus's [`bus::Bridge`]: holds the bridge weakly, so a stopped cluster leaves a bus that
/// works locally.
pub(crate) struct BusBridge {
    pub(crate) inner: Weak<Inner>,
}

impl bus::Bridge for BusBridge {
    fn published(&self, message: Message) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let subject = subject::bus(&inner.config.cluster_name, &message.topic);
        inner.send(subject, || Payload::Bus(message));
    }

    fn request(&self, message: Message, timeout: Duration) -> Result<Message, RequestError> {
        let topic = message.topic.clone();
        let no_responders = || RequestError::NoResponders {
            topic: topic.clone(),
        };
        let Some(inner) = self.inner.upgrade() else {
            return Err(no_responders());
        };
        let responders = inner
            .peers
            .responders(&message.topic, inner.config.heartbeat_timeout);
        if responders.is_empty() || !inner.connected() {
            return Err(no_responders());
        }
        let id = message.id;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let task_inner = inner.clone();
        inner.runtime.spawn(async move {
            // Most recently heard first; a node that went away since its last heartbeat
            // answers "no responders" at once, and the next one is asked within the same
            // timeout.
            let deadline = tokio::time::Instant::now() + timeout;
            let mut outcome = Err(RequestError::NoResponders {
                topic: message.topic.clone(),
            });
            for node in responders {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                outcome = remote_request(&task_inner, &node, message.clone(), left).await;
                if !matches!(outcome, Err(RequestError::NoResponders { .. })) || left.is_zero() {
                    break;
                }
            }
            let _ = sender.send(outcome);
        });
        bump(&inner.counters.requests_out);
        // The task ends by the NATS request's own timeout; a little slack for the reply's
        // way back.
        match receiver.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(outcome) => outcome,
            Err(_) => Err(RequestError::Timeout {
                topic,
                id,
                after: timeout,
            }),
        }
    }
}

async fn remote_request(
    inner: &Inner,
    node: &str,
    message: Message,
    timeout: Duration,
) -> Result<Message, RequestError> {
    let topic = message.topic.clone();
    let id = message.id;
    let mut headers = inner.origin_headers();
    headers.insert(
        subject::TIMEOUT_MS,
        timeout.as_millis().to_string().as_str(),
    );
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(Bytes::from(message.encode()))
        .timeout(Some(timeout));
    let subject = subject::request(&inner.config.cluster_name, node);
    let reply = match inner.client.send_request(subject, request).await {
        Ok(reply) => reply,
        Err(error) => {
            return Err(match error.kind() {
                async_nats::RequestErrorKind::TimedOut => RequestError::Timeout {
                    topic,
                    id,
                    after: timeout,
                },
                _ => RequestError::NoResponders { topic },
            });
        }
    };
    let failure = reply
        .headers
        .as_ref()
        .and_then(|headers| headers.get(subject::ERROR))
        .map(|value| value.as_str().to_owned());
    if let Some(failure) = failure {
        return Err(match failure.as_str() {
            "timeout" => RequestError::Timeout {
                topic,
                id,
                after: timeout,
            },
            "busy" => RequestError::MailboxesFull { topic, full: 1 },
            "closed" => RequestError::Closed { topic },
            _ => RequestError::NoResponders { topic },
        });
    }
    let options = DecodeOptions {
        max_size: inner.config.max_message_bytes,
    };
    match Message::decode_with(&reply.payload, &options) {
        Ok(reply) if reply.kind == MessageKind::Error => Err(RequestError::Remote {
            topic,
            id,
            reason: String::from_utf8_lossy(&reply.payload).into_owned(),
        }),
        Ok(reply) if reply.kind == MessageKind::Response => Ok(Message::new(
            topic,
            MessageKind::Response,
            id,
            reply.payload,
        )),
        Ok(_) | Err(_) => {
            bump(&inner.counters.dropped);
            Err(RequestError::Remote {
                topic,
                id,
                reason: "invalid reply from another node".to_owned(),
            })
        }
    }
}

/// Checks one bus message from the wire (origin, subject, envelope, and for a batch its
/// [`subject::BATCH`] count); `Some` with its events, in order, to deliver them. A batch with
/// one bad event is dropped whole.
pub(crate) fn accept_bus(inner: &Inner, message: &async_nats::Message) -> Option<Vec<Message>> {
    if !inner.accept_origin(message) {
        return None;
    }
    let checked = (|| {
        let topic = subject::bus_topic(&inner.config.cluster_name, message.subject.as_str())?;
        binary::topic::validate_topic(topic).ok()?;
        let options = DecodeOptions {
            max_size: inner.config.max_message_bytes,
        };
        let batch = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(subject::BATCH));
        let events = match batch {
            None => vec![Message::decode_with(&message.payload, &options).ok()?],
            Some(count) => {
                let count: usize = count.as_str().parse().ok()?;
                if !(2..=subject::MAX_BATCH).contains(&count) {
                    return None;
                }
                let events = MessageBatch::decode_with(&message.payload, &options).ok()?;
                (events.len() == count).then_some(events)?
            }
        };
        events
            .iter()
            .all(|event| event.kind == MessageKind::Event && event.topic == topic)
            .then_some(events)
    })();
    if checked.is_none() {
        bump(&inner.counters.dropped);
    }
    checked
}

/// The sending node's id and sequence number of a bus message (its first event's, for a
/// batch), when it has both.
fn origin_seq(message: &async_nats::Message) -> Option<(&str, u64)> {
    let headers = message.headers.as_ref()?;
    let origin = headers.get(subject::ORIGIN)?.as_str();
    let seq = headers.get(subject::SEQ)?.as_str().parse().ok()?;
    Some((origin, seq))
}

/// Delivers what arrives on one bus subscription to this node's bus, once per event across
/// all of them. When `retire` fires (or its sender is dropped) it unsubscribes and delivers
/// what had arrived before it ends, so an event the server sent only to this subscription
/// (before a replacing one existed) is not lost.
pub(crate) async fn bus_loop(
    inner: Arc<Inner>,
    mut messages: async_nats::Subscriber,
    mut retire: tokio::sync::oneshot::Receiver<()>,
) {
    let mut retiring = false;
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut retire, if !retiring => {
                retiring = true;
                if let Err(error) = messages.unsubscribe().await {
                    tracing::debug!("cluster: bus unsubscribe: {error}");
                }
                continue;
            }
            message = messages.next() => message,
        };
        let Some(message) = message else {
            break;
        };
        let Some(events) = accept_bus(&inner, &message) else {
            continue;
        };
        // A batch's events are numbered from its sequence number on.
        let first = origin_seq(&message);
        for (event, number) in events.into_iter().zip(0_u64..) {
            let key = first.map(|(origin, seq)| (origin, seq.saturating_add(number)));
            let delivered = inner
                .interest
                .once(key, || inner.bus.publish_bridged(event));
            match delivered {
                Some(Ok(_)) => bump(&inner.counters.bus_in),
                Some(Err(error)) => tracing::debug!("cluster: bus event not delivered: {error}"),
                None => bump(&inner.counters.duplicates),
            }
        }
    }
}

pub(crate) async fn ws_loop(inner: Arc<Inner>, mut messages: async_nats::Subscriber) {
    while let Some(message) = messages.next().await {
        if !inner.accept_origin(&message) {
            continue;
        }
        let topic = subject::ws_topic(&inner.config.cluster_name, message.subject.as_str());
        match topic {
            Some(topic) if message.payload.len() <= inner.config.max_message_bytes => {
                inner.local.ws_deliver(topic, &message.payload);
                bump(&inner.counters.ws_in);
            }
            _ => bump(&inner.counters.dropped),
        }
    }
}

pub(crate) async fn request_loop(inner: Arc<Inner>, mut messages: async_nats::Subscriber) {
    while let Some(message) = messages.next().await {
        let inner = inner.clone();
        tokio::spawn(async move { serve_request(&inner, message).await });
    }
}

/// Answers a bus request from another node with this node's local subscribers.
async fn serve_request(inner: &Arc<Inner>, message: async_nats::Message) {
    let Some(reply_to) = message.reply.clone() else {
        bump(&inner.counters.dropped);
        return;
    };
    if !inner.accept_origin(&message) {
        return;
    }
    let options = DecodeOptions {
        max_size: inner.config.max_message_bytes,
    };
    let request = match Message::decode_with(&message.payload, &options) {
        Ok(request) if request.kind == MessageKind::Request => request,
        Ok(_) | Err(_) => {
            bump(&inner.counters.dropped);
            return;
        }
    };
    let timeout = timeout_header(&message).unwrap_or(Duration::from_secs(5));
    let bus = inner.bus.clone();
    let answered = tokio::task::spawn_blocking(move || bus.request_local(request, timeout)).await;
    let mut headers = inner.origin_headers();
    let payload = match answered {
        Ok(Ok(reply)) => Bytes::from(reply.encode()),
        Ok(Err(RequestError::Remote {
            topic, id, reason, ..
        })) => {
            Bytes::from(Message::new(topic, MessageKind::Error, id, reason.into_bytes()).encode())
        }
        Ok(Err(error)) => {
            let code = match error {
                RequestError::Timeout { .. } => "timeout",
                RequestError::MailboxesFull { .. } => "busy",
                RequestError::Closed { .. } => "closed",
                _ => "no-responders",
            };
            headers.insert(subject::ERROR, code);
            Bytes::new()
        }
        Err(_) => {
            headers.insert(subject::ERROR, "closed");
            Bytes::new()
        }
    };
    bump(&inner.counters.requests_served);
    if let Err(error) = inner
        .client
        .publish_with_headers(reply_to, headers, payload)
        .await
    {
        tracing::debug!("cluster: request reply not sent: {error}");
    }
}

/// The sender's remaining wait, capped.
pub(crate) fn timeout_header(message: &async_nats::Message) -> Option<Duration> {
    let millis: u64 = message
        .headers
        .as_ref()?
        .get(subject::TIMEOUT_MS)?
        .as_str()
        .parse()
        .ok()?;
    Some(Duration::from_millis(millis).min(MAX_REMOTE_TIMEOUT))
}
