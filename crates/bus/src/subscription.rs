//! [`Subscription`]: the handle that keeps a subscription alive, its counters, and the delivery
//! thread of a handler subscription.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use binary::Message;
use crossbeam_channel::Receiver;

use crate::bus::{Counters, Inner};

/// Where a subscription is in its life, kept in [`Shared::state`] as its `u8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Created but not yet receiving; waits for [`crate::Bus::handover`].
    Dormant = 0,
    /// In the subscriber table, receiving.
    Live = 1,
    /// Still in the table, but its mailbox said [`crate::Offer::Closed`]; removed at the next
    /// chance.
    Gone = 2,
    /// Out of the table for good: cancelled, retired, closed or gone.
    Removed = 3,
}

impl State {
    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Dormant,
            1 => State::Live,
            2 => State::Gone,
            _ => State::Removed,
        }
    }
}

/// The state one subscription shares between its [`Subscription`] handle, its entry in the
/// subscriber table and (for handler subscriptions) its delivery thread.
///
/// `state` changes only under the table's write lock, except `Live -> Gone`, which publishers
/// make under the read lock with a compare-and-swap.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) topic: String,
    pub(crate) state: AtomicU8,
    /// Set by cancel and close: a handler thread starts no further handler call.
    pub(crate) stop: AtomicBool,
    pub(crate) handler_panics: AtomicU64,
    /// Written by publishers on every delivery, so kept off the cache lines the delivery
    /// thread reads (`stop`) for every message.
    pub(crate) counts: DeliveryCounts,
}

/// The per-delivery counters, alone on their own pair of cache lines (128 bytes: x86 CPUs
/// fetch lines in adjacent pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct DeliveryCounts {
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
}

impl Shared {
    pub(crate) fn new(id: u64, topic: &str, state: State) -> Shared {
        Shared {
            id,
            topic: topic.to_owned(),
            state: AtomicU8::new(state as u8),
            stop: AtomicBool::new(false),
            handler_panics: AtomicU64::new(0),
            counts: DeliveryCounts::default(),
        }
    }

    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// `Live -> Gone`, once, when a mailbox reports [`crate::Offer::Closed`].
    pub(crate) fn mark_gone(&self) {
        let _ = self.state.compare_exchange(
            State::Live as u8,
            State::Gone as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Counters of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Messages its mailbox accepted.
    pub delivered: u64,
    /// Messages dropped because its mailbox was full.
    pub dropped_full: u64,
    /// Handler calls that panicked (handler subscriptions only).
    pub handler_panics: u64,
}

/// A live (or dormant) subscription. Cancel it with [`Subscription::cancel`] or by dropping it.
///
/// After `cancel` returns, no new message is put in its mailbox; for a handler subscription no
/// handler call starts any more, except one that had already passed its cancellation check
/// (at most one, possibly still running). Messages still waiting in a handler subscription's
/// mailbox are discarded. A subscription retired by [`crate::Bus::handover`] is different: it
/// stops receiving but its handler still runs for every message already in its mailbox, and
/// cancelling or dropping it afterwards does not cut that short.
///
/// The handle does not keep the bus alive: when the last [`crate::Bus`] handle is dropped,
/// the bus closes and every subscription ends.
#[must_use = "dropping a Subscription cancels it"]
pub struct Subscription {
    pub(crate) shared: Arc<Shared>,
    pub(crate) bus: Weak<Inner>,
}

impl Subscription {
    /// The subscription's id, unique within its bus.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The topic or pattern it was made with.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Whether it currently receives messages: not dormant, cancelled, retired, closed, and
    /// its mailbox not gone.
    pub fn is_active(&self) -> bool {
        self.shared.state() == State::Live
    }

    /// Whether it was made dormant and has not been activated (or cancelled) yet.
    pub fn is_dormant(&self) -> bool {
        self.shared.state() == State::Dormant
    }

    /// Its counters so far.
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            delivered: self.shared.counts.delivered.load(Ordering::Relaxed),
            dropped_full: self.shared.counts.dropped_full.load(Ordering::Relaxed),
            handler_panics: self.shared.handler_panics.load(Ordering::Relaxed),
        }
    }

    /// Removes it from the bus. The same happens on drop; this spells it out.
    pub fn cancel(self) {
        // Drop does the work.
    }

    pub(crate) fn belongs_to(&self, inner: &Arc<Inner>) -> bool {
        std::ptr::eq(self.bus.as_ptr(), Arc::as_ptr(inner))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.bus.upgrade() {
            inner.cancel(&self.shared);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.state() {
            State::Dormant => "dormant",
            State::Live => "live",
            _ => "ended",
        };
        f.debug_struct("Subscription")
            .field("id", &self.shared.id)
            .field("topic", &self.shared.topic)
            .field("state", &state)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The loop of a handler subscription's delivery thread: one handler call per message, in
/// mailbox order, each inside `catch_unwind`. Ends when the mailbox is empty and disconnected
/// (the subscription left the table) or when `stop` is set.
pub(crate) fn run_handler<H>(
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    mut handler: H,
) where
    H: FnMut(Message) + Send + 'static,
{
    for message in receiver.iter() {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        // The handler owns whatever it captured; if one call panics half-way, the next call
        // sees that state. That is the handler's business: the bus promises only that a
        // panic ends that one call and is counted.
        if catch_unwind(AssertUnwindSafe(|| handler(message))).is_err() {
            shared.handler_panics.fetch_add(1, Ordering::Relaxed);
            counters.handler_panics.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    use crossbeam_channel::RecvTimeoutError;

    use super::*;
    use crate::test_support::{PATIENCE, exit_signal, wait_for_exit};
    use crate::{Bus, BusConfig};

    #[test]
    fn cancel_stops_delivery_at_once_and_the_inbox_disconnects_after_draining() {
        let bus = Bus::new();
        let (subscription, inbox) = bus.subscribe_channel("t").unwrap();
        assert!(subscription.is_active());
        assert!(!subscription.is_dormant());
        assert_eq!(subscription.topic(), "t");
        bus.publish(Message::event("t", b"before".to_vec()))
            .unwrap();
        let stats = subscription.stats();
        subscription.cancel();

        let report = bus.publish(Message::event("t", b"after".to_vec())).unwrap();
        assert_eq!(report.delivered, 0);
        assert_eq!(stats.delivered, 1);
        assert_eq!(inbox.recv_timeout(PATIENCE).unwrap().payload, b"before");
        assert_eq!(
            inbox.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
        assert!(bus.topics().is_empty());
    }

    #[test]
    fn dropping_the_handle_cancels() {
        let bus = Bus::new();
        let (subscription, inbox) = bus.subscribe_channel("t").unwrap();
        drop(subscription);
        assert_eq!(
            bus.publish(Message::event("t", vec![])).unwrap().delivered,
            0
        );
        assert_eq!(
            inbox.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn ids_are_unique_and_debug_shows_state() {
        let bus = Bus::new();
        let (first, _first_inbox) = bus.subscribe_channel("a").unwrap();
        let (second, _second_inbox) = bus.subscribe_channel("a").unwrap();
        assert_ne!(first.id(), second.id());
        let shown = format!("{first:?}");
        assert!(shown.contains("\"a\"") && shown.contains("live"), "{shown}");
    }

    #[test]
    fn no_handler_call_starts_after_cancel_returns() {
        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: 16,
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let (entered_sender, entered) = crossbeam_channel::bounded(1);
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let (signal, handler_gone) = exit_signal();
        let handler_calls = Arc::clone(&calls);
        let subscription = bus
            .subscribe("t", move |_| {
                let _ = &signal;
                handler_calls.fetch_add(1, Ordering::SeqCst);
                let _ = entered_sender.try_send(());
                let _ = released.recv();
            })
            .unwrap();
        for _ in 0..5 {
            bus.publish(Message::event("t", vec![])).unwrap();
        }
        entered.recv_timeout(PATIENCE).unwrap();
        // The handler is stuck in call 1 with 4 messages queued; cancel does not wait for it.
        subscription.cancel();
        drop(release);
        wait_for_exit(&handler_gone);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_handler_may_cancel_its_own_subscription() {
        let bus = Bus::new();
        let (slot_sender, slot) = crossbeam_channel::bounded::<Subscription>(1);
        let (signal, handler_gone) = exit_signal();
        let subscription = bus
            .subscribe("t", move |_| {
                let _ = &signal;
                if let Ok(own) = slot.try_recv() {
                    own.cancel();
                }
            })
            .unwrap();
        let watcher = Arc::clone(&subscription.shared);
        slot_sender.send(subscription).unwrap();
        bus.publish(Message::event("t", vec![])).unwrap();
        wait_for_exit(&handler_gone);
        assert_eq!(watcher.state(), State::Removed);
        assert!(bus.topics().is_empty());
    }

    #[test]
    fn handler_threads_are_named_after_the_topic() {
        let bus = Bus::new();
        let (name_sender, name) = crossbeam_channel::bounded(1);
        let _subscription = bus
            .subscribe("users.*", move |_| {
                let _ = name_sender.try_send(thread::current().name().map(str::to_owned));
            })
            .unwrap();
        bus.publish(Message::event("users.created", vec![]))
            .unwrap();
        assert_eq!(
            name.recv_timeout(PATIENCE).unwrap().as_deref(),
            Some("bus:users.*")
        );
    }
}
