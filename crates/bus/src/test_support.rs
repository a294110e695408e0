//! Helpers shared by the unit tests: a patience deadline, numbered messages, exit signals.

use std::time::Duration;

use binary::Message;
use crossbeam_channel::{Receiver, Sender};

/// How long a test waits for something that should happen at once. Generous, so a loaded
/// machine does not fail a test; a hang still fails instead of blocking forever.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// An event whose payload is `publisher` (1 byte) then `sequence` (8 bytes, little-endian).
pub(crate) fn numbered(topic: &str, publisher: u8, sequence: u64) -> Message {
    let mut payload = Vec::with_capacity(9);
    payload.push(publisher);
    payload.extend_from_slice(&sequence.to_le_bytes());
    Message::event(topic, payload)
}

/// The `(publisher, sequence)` of a [`numbered`] message.
pub(crate) fn number(message: &Message) -> (u8, u64) {
    let sequence = u64::from_le_bytes(message.payload[1..9].try_into().unwrap());
    (message.payload[0], sequence)
}

/// Disconnects its channel when dropped: move one into a handler to learn when the handler
/// (and so its delivery thread) is gone.
pub(crate) struct ExitSignal {
    _sender: Sender<()>,
}

pub(crate) fn exit_signal() -> (ExitSignal, Receiver<()>) {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    (ExitSignal { _sender: sender }, receiver)
}

/// Waits until the [`ExitSignal`] paired with `receiver` is dropped.
pub(crate) fn wait_for_exit(receiver: &Receiver<()>) {
    match receiver.recv_timeout(PATIENCE) {
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
        other => panic!("expected the handler to be dropped, got {other:?}"),
    }
}

/// Checks that, per publisher, sequences strictly increase.
pub(crate) fn assert_ordered(received: &[(u8, u64)]) {
    let mut last: std::collections::HashMap<u8, u64> = std::collections::HashMap::new();
    for &(publisher, sequence) in received {
        if let Some(previous) = last.insert(publisher, sequence) {
            assert!(
                sequence > previous,
                "publisher {publisher}: {sequence} arrived after {previous}"
            );
        }
    }
}
