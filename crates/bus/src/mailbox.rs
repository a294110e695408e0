//! [`Mailbox`]: where the bus puts a subscriber's messages, and what [`Offer`] it got back.

use std::any::Any;
use std::sync::Arc;

use binary::Message;
use crossbeam_channel::{Sender, TrySendError};

/// What happened to a message offered to a [`Mailbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    /// The mailbox took the message.
    Accepted,
    /// The mailbox is full; the message is dropped and counted
    /// ([`crate::PublishReport::full`], [`crate::SubscriptionStats::dropped_full`],
    /// [`crate::BusStats::dropped_full`]).
    Full,
    /// The mailbox's owner is gone for good; the message is dropped, counted in
    /// [`crate::PublishReport::closed`], and the subscription is removed from the bus.
    Closed,
}

/// A subscriber's inbox as the bus sees it.
///
/// [`Mailbox::offer`] runs on the publisher's thread while the bus holds its subscriber table
/// for reading, so it must return at once: never block, never call back into the bus
/// (subscribing or cancelling from inside `offer` deadlocks), and never panic (the panic
/// unwinds into the publisher). The usual implementation is a `try_send` into a bounded
/// channel that the owner drains on its own thread; [`crossbeam_channel::Sender<Message>`]
/// implements this trait that way.
///
/// One mailbox may back many subscriptions (a worker that owns a single inbox fed by several
/// topics): share it as a cloned `Sender` or as an `Arc<M>`.
pub trait Mailbox: Send + Sync + 'static {
    /// Takes the message, or says why not. Must not block.
    fn offer(&self, message: Message) -> Offer;

    /// Whether an offer made now would find room. [`crate::Bus::publish_waiting`] asks every
    /// matching mailbox before it offers a message and waits while one says no. Like
    /// `offer`, it must return at once. The default, `true`, makes a waiting publish treat
    /// this mailbox as [`crate::Bus::publish`] does (offer, and count a drop if it is full).
    fn has_room(&self) -> bool {
        true
    }
}

impl Mailbox for Sender<Message> {
    #[inline]
    fn offer(&self, message: Message) -> Offer {
        match self.try_send(message) {
            Ok(()) => Offer::Accepted,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Disconnected(_)) => Offer::Closed,
        }
    }

    #[inline]
    fn has_room(&self) -> bool {
        !self.is_full()
    }
}

impl<M: Mailbox + ?Sized> Mailbox for Arc<M> {
    fn offer(&self, message: Message) -> Offer {
        (**self).offer(message)
    }

    fn has_room(&self) -> bool {
        (**self).has_room()
    }
}

impl<M: Mailbox + ?Sized> Mailbox for Box<M> {
    fn offer(&self, message: Message) -> Offer {
        (**self).offer(message)
    }

    fn has_room(&self) -> bool {
        (**self).has_room()
    }
}

/// A mailbox as the subscriber table stores it: a channel sender directly, so the common case
/// is an inlined `try_send` rather than a call through a vtable; anything else boxed.
pub(crate) enum Target {
    Channel(Sender<Message>),
    Custom(Box<dyn Mailbox>),
}

impl Target {
    /// Stores `mailbox`, recognising a plain channel sender whatever way it was passed in.
    pub(crate) fn new<M: Mailbox>(mailbox: M) -> Target {
        match (&mailbox as &dyn Any).downcast_ref::<Sender<Message>>() {
            Some(sender) => Target::Channel(sender.clone()),
            None => Target::Custom(Box::new(mailbox)),
        }
    }

    #[inline]
    pub(crate) fn offer(&self, message: Message) -> Offer {
        match self {
            Target::Channel(sender) => sender.offer(message),
            Target::Custom(mailbox) => mailbox.offer(message),
        }
    }

    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        match self {
            Target::Channel(sender) => !sender.is_full(),
            Target::Custom(mailbox) => mailbox.has_room(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_sender_reports_accepted_full_and_closed() {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        assert_eq!(
            sender.offer(Message::event("a", b"1".to_vec())),
            Offer::Accepted
        );
        assert_eq!(
            sender.offer(Message::event("a", b"2".to_vec())),
            Offer::Full
        );
        assert_eq!(receiver.recv().unwrap().payload, b"1");
        drop(receiver);
        assert_eq!(
            sender.offer(Message::event("a", b"3".to_vec())),
            Offer::Closed
        );
    }

    #[test]
    fn a_channel_sender_is_stored_as_such_and_anything_else_boxed() {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let target = Target::new(sender);
        assert!(matches!(target, Target::Channel(_)));
        assert_eq!(target.offer(Message::event("a", vec![])), Offer::Accepted);
        assert_eq!(target.offer(Message::event("a", vec![])), Offer::Full);
        drop(receiver);
        assert_eq!(target.offer(Message::event("a", vec![])), Offer::Closed);

        let (sender, _receiver) = crossbeam_channel::bounded(1);
        let shared = Target::new(Arc::new(sender));
        assert!(matches!(shared, Target::Custom(_)));
        assert_eq!(shared.offer(Message::event("a", vec![])), Offer::Accepted);
    }

    #[test]
    fn shared_mailboxes_forward_offers() {
        let (sender, receiver) = crossbeam_channel::bounded(2);
        let shared: Arc<dyn Mailbox> = Arc::new(sender);
        let boxed: Box<dyn Mailbox> = Box::new(Arc::clone(&shared));
        assert_eq!(
            shared.offer(Message::event("a", b"1".to_vec())),
            Offer::Accepted
        );
        assert_eq!(
            boxed.offer(Message::event("a", b"2".to_vec())),
            Offer::Accepted
        );
        assert_eq!(boxed.offer(Message::event("a", b"3".to_vec())), Offer::Full);
        assert_eq!(receiver.len(), 2);
        assert!(!shared.has_room() && !boxed.has_room());
        receiver.recv().unwrap();
        assert!(shared.has_room() && boxed.has_room());
    }

    #[test]
    fn room_is_what_a_channel_has_left_and_always_for_a_mailbox_that_cannot_tell() {
        struct Counter;
        impl Mailbox for Counter {
            fn offer(&self, _message: Message) -> Offer {
                Offer::Full
            }
        }
        assert!(Target::new(Counter).has_room());
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let target = Target::new(sender);
        assert!(target.has_room());
        assert_eq!(target.offer(Message::event("a", vec![])), Offer::Accepted);
        assert!(!target.has_room());
        receiver.recv().unwrap();
        assert!(target.has_room());
    }
}
