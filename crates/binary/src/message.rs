//! [`Message`]: what travels on the bus and into a guest's `on_message`.

use crate::codec::{Cursor, Envelope, sealed};
use crate::error::{DecodeError, DecodeErrorKind};

/// What a [`Message`] is: a fire-and-forget event, or one half of a request/reply exchange.
///
/// Encoded as a `u32` little-endian tag: the discriminant below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum MessageKind {
    /// A published event; `id` is informational (0 unless the publisher sets one).
    Event = 0,
    /// A request; the responder answers with a `Response` or `Error` carrying the same `id`.
    Request = 1,
    /// A successful reply to the `Request` with the same `id`.
    Response = 2,
    /// A failed reply to the `Request` with the same `id`; the payload says why (UTF-8 text
    /// by convention).
    Error = 3,
}

impl MessageKind {
    /// The kind for a wire tag, or `None` for a tag outside `0..=3`.
    pub fn from_tag(tag: u32) -> Option<MessageKind> {
        match tag {
            0 => Some(MessageKind::Event),
            1 => Some(MessageKind::Request),
            2 => Some(MessageKind::Response),
            3 => Some(MessageKind::Error),
            _ => None,
        }
    }

    /// The wire tag.
    pub fn tag(self) -> u32 {
        self as u32
    }

    /// Whether this kind answers a request (`Response` or `Error`).
    pub fn is_reply(self) -> bool {
        matches!(self, MessageKind::Response | MessageKind::Error)
    }
}

/// A bus message: a topic, a kind, a correlation id and an opaque payload.
///
/// Layout (see `docs/wire-format.md`): `topic` (u64 length + UTF-8), `kind` (u32),
/// `id` (u32), `payload` (u64 length + bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Message {
    /// The topic it was published on, e.g. `users.created`.
    pub topic: String,
    /// Event, request or reply.
    pub kind: MessageKind,
    /// Correlates a `Request` with its `Response`/`Error`.
    pub id: u32,
    /// Opaque bytes; the format is a contract between publisher and subscribers.
    pub payload: Vec<u8>,
}

impl Message {
    /// A message of any kind.
    pub fn new(
        topic: impl Into<String>,
        kind: MessageKind,
        id: u32,
        payload: impl Into<Vec<u8>>,
    ) -> Message {
        Message {
            topic: topic.into(),
            kind,
            id,
            payload: payload.into(),
        }
    }

    /// An `Event` with id 0.
    pub fn event(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Message {
        Message::new(topic, MessageKind::Event, 0, payload)
    }

    /// A `Request` with the given correlation id.
    pub fn request(topic: impl Into<String>, id: u32, payload: impl Into<Vec<u8>>) -> Message {
        Message::new(topic, MessageKind::Request, id, payload)
    }

    /// The `Response` to this message: same topic and id.
    pub fn response(&self, payload: impl Into<Vec<u8>>) -> Message {
        Message::new(self.topic.clone(), MessageKind::Response, self.id, payload)
    }

    /// The `Error` reply to this message: same topic and id, `reason` as the payload.
    pub fn error_reply(&self, reason: impl Into<String>) -> Message {
        Message::new(
            self.topic.clone(),
            MessageKind::Error,
            self.id,
            reason.into().into_bytes(),
        )
    }
}

impl Envelope for Message {
    const NAME: &'static str = "Message";

    fn encoded_len(&self) -> usize {
        8 + self.topic.len() + 4 + 4 + 8 + self.payload.len()
    }
}

impl sealed::Fields for Message {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<Message, DecodeError> {
        let topic = cursor.str("topic")?.to_owned();
        let kind_offset = cursor.offset();
        let tag = cursor.u32("kind")?;
        let kind = MessageKind::from_tag(tag).ok_or_else(|| {
            cursor.error_at(
                "kind",
                kind_offset,
                DecodeErrorKind::UnknownKind { value: tag },
            )
        })?;
        let id = cursor.u32("id")?;
        let payload = cursor.bytes("payload")?.to_vec();
        Ok(Message {
            topic,
            kind,
            id,
            payload,
        })
    }
}
