//! [`BusError`] for subscribe, publish and handover; [`RequestError`] for request/reply.

use std::time::Duration;

use binary::MessageKind;

/// Why a bus operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// [`crate::Bus::close`] was called (or every [`crate::Bus`] handle was dropped).
    #[error("bus is closed")]
    Closed,
    /// The topic breaks `binary::topic`'s rules: empty, over 1 KiB, or uses `*` somewhere
    /// other than a whole `*` or a final `.*` (subscribe), or contains `*` at all (publish).
    #[error(transparent)]
    InvalidTopic(#[from] binary::topic::TopicError),
    /// The delivery thread of a handler subscription could not be started.
    #[error("subscription to {topic:?}: cannot start its delivery thread: {source}")]
    Spawn {
        /// The subscription's topic.
        topic: String,
        /// The error from the operating system.
        source: std::io::Error,
    },
    /// [`crate::Bus::reply`] was given a message that is not a `Response` or `Error`.
    #[error("message on topic {topic:?} (id {id}) is a {kind:?}, not a reply")]
    NotAReply {
        /// The message's topic.
        topic: String,
        /// The message's correlation id.
        id: u32,
        /// The message's kind.
        kind: MessageKind,
    },
    /// [`crate::Bus::publish_waiting`]: a matching mailbox still had no room at the deadline;
    /// the message was offered to nobody.
    #[error("publish on topic {topic:?}: a matching mailbox had no room within {waited:?}")]
    Full {
        /// The message's topic.
        topic: String,
        /// How long the publish waited.
        waited: Duration,
    },
    /// [`crate::Bus::handover`] was refused; nothing was changed.
    #[error("handover: subscription {id} to {topic:?} {reason}")]
    Handover {
        /// The offending subscription's id.
        id: u64,
        /// The offending subscription's topic.
        topic: String,
        /// Why it cannot take part, e.g. `cannot be activated: it was cancelled`.
        reason: &'static str,
    },
}

/// Why [`crate::Bus::request`] did not return a reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The bus was closed before the request was sent or while it waited for its reply.
    #[error("request on topic {topic:?}: bus is closed")]
    Closed {
        /// The request's topic.
        topic: String,
    },
    /// No live subscriber matches the topic, so nobody could answer.
    #[error("request on topic {topic:?}: no live subscriber")]
    NoResponders {
        /// The request's topic.
        topic: String,
    },
    /// Subscribers match the topic but every one of their mailboxes was full, so the request
    /// reached nobody.
    #[error("request on topic {topic:?}: all {full} matching mailboxes are full")]
    MailboxesFull {
        /// The request's topic.
        topic: String,
        /// How many mailboxes refused the request.
        full: usize,
    },
    /// No reply came in time. A reply that arrives later is dropped and counted in
    /// [`crate::BusStats::late_replies`].
    #[error("request on topic {topic:?} (id {id}) timed out after {after:?}")]
    Timeout {
        /// The request's topic.
        topic: String,
        /// The correlation id the bus gave the request.
        id: u32,
        /// The timeout that passed.
        after: Duration,
    },
    /// The responder answered with an `Error` reply.
    #[error("request on topic {topic:?} (id {id}) failed in the responder: {reason}")]
    Remote {
        /// The request's topic.
        topic: String,
        /// The correlation id the bus gave the request.
        id: u32,
        /// The `Error` reply's payload, as (lossy) UTF-8.
        reason: String,
    },
    /// The request itself was refused, e.g. an invalid topic.
    #[error(transparent)]
    Bus(BusError),
}

impl RequestError {
    /// Wraps a bus error, keeping "closed" as [`RequestError::Closed`] so callers match one
    /// variant for it.
    pub(crate) fn from_bus(topic: &str, error: BusError) -> RequestError {
        match error {
            BusError::Closed => RequestError::Closed {
                topic: topic.to_owned(),
            },
            other => RequestError::Bus(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_thing_and_the_reason() {
        assert_eq!(BusError::Closed.to_string(), "bus is closed");
        let timeout = RequestError::Timeout {
            topic: "users.get".to_owned(),
            id: 7,
            after: Duration::from_millis(250),
        };
        assert_eq!(
            timeout.to_string(),
            "request on topic \"users.get\" (id 7) timed out after 250ms"
        );
        let remote = RequestError::Remote {
            topic: "users.get".to_owned(),
            id: 7,
            reason: "no such user".to_owned(),
        };
        assert_eq!(
            remote.to_string(),
            "request on topic \"users.get\" (id 7) failed in the responder: no such user"
        );
        let handover = BusError::Handover {
            id: 3,
            topic: "users.*".to_owned(),
            reason: "cannot be activated: it was cancelled",
        };
        assert_eq!(
            handover.to_string(),
            "handover: subscription 3 to \"users.*\" cannot be activated: it was cancelled"
        );
    }

    #[test]
    fn closed_maps_to_the_request_variant() {
        let error = RequestError::from_bus("a", BusError::Closed);
        assert!(matches!(error, RequestError::Closed { topic } if topic == "a"));
        let invalid = BusError::from(binary::topic::validate_topic("").unwrap_err());
        assert!(matches!(
            RequestError::from_bus("", invalid),
            RequestError::Bus(_)
        ));
    }
}
