//! [`Message`]: what travels on the bus and into a guest's `on_message`; [`MessageBatch`]:
//! several of them in one buffer, for the `publish_batch` import and the `on_messages`
//! export; [`MessageBatchReader`]: a batch read one message at a time.

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

/// Several [`Message`]s in one envelope: `list<Message>` (a `u64` count, then each message's
/// encoding back to back), what the `publish_batch` import reads (`docs/ABI.md`).
///
/// [`MessageBatch::push`] and [`MessageBatch::push_event`] append each message's encoding to
/// the batch's buffer at once, so a publisher builds a batch without keeping the messages;
/// [`MessageBatch::decode`] gives them back.
///
/// ```
/// use binary::{Message, MessageBatch};
///
/// let mut batch = MessageBatch::new();
/// batch.push_event("users.created", b"7");
/// batch.push(&Message::request("users.get", 3, b"8".to_vec()));
/// assert_eq!(batch.len(), 2);
/// let messages = MessageBatch::decode(batch.as_bytes())?;
/// assert_eq!(messages[0], Message::event("users.created", b"7".to_vec()));
/// assert_eq!(messages[1].id, 3);
/// # Ok::<(), binary::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBatch {
    /// The encoding: the count (patched as messages are pushed), then the messages.
    bytes: Vec<u8>,
    count: u64,
}

/// The envelope name in decode errors.
const BATCH_NAME: &str = "MessageBatch";

/// The smallest encoded message: empty topic and payload.
const MIN_MESSAGE_BYTES: usize = 24;

impl Default for MessageBatch {
    fn default() -> MessageBatch {
        MessageBatch::new()
    }
}

impl MessageBatch {
    /// An empty batch (its encoding is the count 0: 8 bytes).
    pub fn new() -> MessageBatch {
        MessageBatch {
            bytes: vec![0; 8],
            count: 0,
        }
    }

    /// Appends `message`.
    pub fn push(&mut self, message: &Message) {
        self.push_parts(&message.topic, message.kind, message.id, &message.payload);
    }

    /// Appends an `Event` with id 0, as [`Message::event`] would make it, without building
    /// the message.
    pub fn push_event(&mut self, topic: &str, payload: &[u8]) {
        self.push_parts(topic, MessageKind::Event, 0, payload);
    }

    fn push_parts(&mut self, topic: &str, kind: MessageKind, id: u32, payload: &[u8]) {
        // The layout of `Message` (docs/wire-format.md); `tests` holds it equal to
        // `Message::encode`.
        let bytes = &mut self.bytes;
        bytes.reserve(MIN_MESSAGE_BYTES + topic.len() + payload.len());
        bytes.extend_from_slice(&(topic.len() as u64).to_le_bytes());
        bytes.extend_from_slice(topic.as_bytes());
        bytes.extend_from_slice(&kind.tag().to_le_bytes());
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(payload);
        self.count += 1;
        bytes[..8].copy_from_slice(&self.count.to_le_bytes());
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether it holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoding so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoding, taken.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.truncate(8);
        self.bytes.fill(0);
        self.count = 0;
    }

    /// Decodes a batch with the default [`DecodeOptions`](crate::DecodeOptions).
    pub fn decode(bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        MessageBatch::decode_with(bytes, &crate::DecodeOptions::default())
    }

    /// Decodes a batch: exactly the given bytes, at most `options.max_size` of them.
    pub fn decode_with(
        bytes: &[u8],
        options: &crate::DecodeOptions,
    ) -> Result<Vec<Message>, DecodeError> {
        crate::codec::check_size(BATCH_NAME, bytes, options)?;
        let mut cursor = Cursor::new(BATCH_NAME, bytes);
        let count = cursor.len("messages", MIN_MESSAGE_BYTES)?;
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            messages.push(<Message as sealed::Fields>::decode_fields(&mut cursor)?);
        }
        let left = cursor.remaining();
        if left != 0 {
            return Err(cursor.error("<end>", DecodeErrorKind::TrailingBytes { count: left }));
        }
        Ok(messages)
    }
}

/// The messages of a [`MessageBatch`] one at a time, for a receiver that handles each before
/// decoding the next (the guest side of the `on_messages` export, `docs/ABI.md`).
///
/// It reads the bytes *after* the batch's 8-byte count field, so the receiver keeps that
/// field to write its progress into while it reads the rest.
///
/// ```
/// use binary::{Message, MessageBatch, MessageBatchReader};
///
/// let mut batch = MessageBatch::new();
/// batch.push_event("a", b"1");
/// batch.push_event("b", b"2");
/// let (count, body) = batch.as_bytes().split_at(8);
/// let count = u64::from_le_bytes(count.try_into().unwrap());
/// let topics: Vec<String> = MessageBatchReader::new(count, body)?
///     .map(|message| message.map(|message| message.topic))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(topics, ["a", "b"]);
/// # Ok::<(), binary::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct MessageBatchReader<'a> {
    cursor: Cursor<'a>,
    left: usize,
    done: bool,
}

impl<'a> MessageBatchReader<'a> {
    /// A reader of `count` messages (the value of the batch's count field) from `body` (the
    /// bytes after that field). A count the body cannot hold is refused before anything is
    /// read.
    pub fn new(count: u64, body: &'a [u8]) -> Result<MessageBatchReader<'a>, DecodeError> {
        let cursor = Cursor::new(BATCH_NAME, body);
        let needed = count.saturating_mul(MIN_MESSAGE_BYTES as u64);
        if needed > body.len() as u64 {
            return Err(cursor.error(
                "messages",
                DecodeErrorKind::Truncated {
                    needed,
                    available: body.len(),
                },
            ));
        }
        Ok(MessageBatchReader {
            cursor,
            // `needed <= body.len()`, so the count fits in a usize.
            left: count as usize,
            done: false,
        })
    }

    /// Messages not read yet.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

impl Iterator for MessageBatchReader<'_> {
    type Item = Result<Message, DecodeError>;

    /// The next message; after the last one, an error if bytes are left over. Nothing after
    /// the first error.
    fn next(&mut self) -> Option<Result<Message, DecodeError>> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            let left = self.cursor.remaining();
            return (left != 0).then(|| {
                Err(self
                    .cursor
                    .error("<end>", DecodeErrorKind::TrailingBytes { count: left }))
            });
        }
        self.left -= 1;
        let message = <Message as sealed::Fields>::decode_fields(&mut self.cursor);
        if message.is_err() {
            self.done = true;
        }
        Some(message)
    }
}
