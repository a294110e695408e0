//! [`Bus`]: subscribe, publish, topics, stats and close, over one shared subscriber table.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;

use binary::Message;
use crossbeam_channel::Receiver;

use crate::error::BusError;
use crate::mailbox::{Mailbox, Target};
use crate::registry::{Entry, Registry};
use crate::request::Requests;
use crate::subscription::{DORMANT, LIVE, Shared, Subscription, run_handler};
use crate::topic::Filter;

/// The default [`BusConfig::mailbox_capacity`].
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// Settings for [`Bus::with_config`].
///
/// ```
/// let config = bus::BusConfig { mailbox_capacity: 64, ..bus::BusConfig::default() };
/// let bus = bus::Bus::with_config(config);
/// # drop(bus);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Capacity of the mailbox the bus creates for [`Bus::subscribe`] and
    /// [`Bus::subscribe_channel`]. A message that finds it full is dropped and counted.
    /// `0` is treated as `1`. Default [`DEFAULT_MAILBOX_CAPACITY`].
    pub mailbox_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> BusConfig {
        BusConfig {
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
        }
    }
}

/// What one [`Bus::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PublishReport {
    /// Mailboxes that accepted the message (for a reply: 1 if a waiting request took it).
    pub delivered: usize,
    /// Mailboxes that were full; the message was dropped for them.
    pub full: usize,
    /// Mailboxes whose owner was gone; those subscriptions are removed.
    pub closed: usize,
}

impl PublishReport {
    /// Whether every matching subscriber got the message (also true when none matched).
    pub fn is_complete(&self) -> bool {
        self.full == 0 && self.closed == 0
    }
}

/// The live subscriptions of one topic or pattern ([`Bus::topic_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// The exact topic or the `prefix.*` pattern subscribed to.
    pub topic: String,
    /// Live subscriptions to it.
    pub subscribers: usize,
    /// Messages delivered to those subscriptions.
    pub delivered: u64,
    /// Messages dropped at those subscriptions because their mailbox was full.
    pub dropped_full: u64,
}

/// Counters of a whole bus since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusStats {
    /// Messages published to topic subscribers (replies are not counted here).
    pub published: u64,
    /// Mailbox deliveries: one message to three subscribers counts three.
    pub delivered: u64,
    /// Messages dropped because a mailbox was full.
    pub dropped_full: u64,
    /// Messages offered to a mailbox whose owner was gone.
    pub closed: u64,
    /// Replies that found no waiting request: late, duplicate or unknown id.
    pub late_replies: u64,
    /// Handler calls that panicked.
    pub handler_panics: u64,
}

/// The bus-wide counters. Separate from [`Inner`] so delivery threads can count panics
/// without keeping the bus alive. Deliveries and full mailboxes are counted per subscription
/// only (one atomic add per delivery) and summed by [`Bus::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
}

/// What every [`Bus`] clone points to.
pub(crate) struct Inner {
    config: BusConfig,
    registry: RwLock<Registry>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) requests: Requests,
    next_subscription_id: AtomicU64,
}

impl Inner {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // The table is left consistent at every point a panic could unwind from, so a
        // poisoned lock is safe to keep using.
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes one subscription (cancel or drop of its handle). A handler subscription's
    /// thread starts no further handler call.
    pub(crate) fn cancel(&self, shared: &Shared) {
        let entry = self.write().take(shared);
        if let Some(entry) = entry {
            entry.shared.stop.store(true, Ordering::Release);
            // Dropped here, outside the lock: a mailbox's Drop may do anything.
            drop(entry);
        }
    }

    fn close(&self) {
        let entries = {
            let mut registry = self.write();
            if registry.closed {
                return;
            }
            registry.closed = true;
            registry.take_all()
        };
        for entry in &entries {
            entry.shared.stop.store(true, Ordering::Release);
        }
        drop(entries);
        self.requests.fail_all();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// An in-process publish/subscribe hub. A cheap handle: clones share one bus.
///
/// Delivery never blocks the publisher: each subscriber has a bounded mailbox, a message that
/// finds it full is dropped for that subscriber and counted ([`PublishReport::full`],
/// [`SubscriptionStats::dropped_full`](crate::SubscriptionStats),
/// [`BusStats::dropped_full`]). Order is kept per publisher and subscriber.
///
/// Dropping the last handle closes the bus. A handler that captures a `Bus` clone keeps it
/// alive until [`Bus::close`] or until that subscription is cancelled.
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new()
    }
}

impl Bus {
    /// A bus with the default [`BusConfig`].
    pub fn new() -> Bus {
        Bus::with_config(BusConfig::default())
    }

    /// A bus with the given settings.
    pub fn with_config(config: BusConfig) -> Bus {
        let config = BusConfig {
            mailbox_capacity: config.mailbox_capacity.max(1),
        };
        Bus {
            inner: Arc::new(Inner {
                config,
                registry: RwLock::new(Registry::default()),
                counters: Arc::new(Counters::default()),
                requests: Requests::default(),
                next_subscription_id: AtomicU64::new(1),
            }),
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Calls `handler` for every message published on `topic`, in order, on a dedicated
    /// thread named `bus:<topic>` that reads a bounded mailbox of
    /// [`BusConfig::mailbox_capacity`].
    ///
    /// `topic` is an exact topic, `prefix.*` (every topic that starts with `prefix.` and has
    /// at least one more character) or `*` (every topic).
    ///
    /// A handler that is slow or stuck delays nobody else: its mailbox fills and further
    /// messages for it are dropped and counted. A handler that panics ends only that call: the
    /// panic is counted ([`BusStats::handler_panics`]) and the next message is handled as
    /// usual (the process's panic hook still runs, so the default hook prints it).
    ///
    /// Cost: one OS thread per handler subscription (by default 2 MiB of address space
    /// reserved for its stack, a few KiB of it resident) plus the mailbox, preallocated at
    /// about 64 bytes per slot (64 KiB at the default capacity), and one thread wake-up per
    /// message when the handler is idle. For many subscriptions
    /// feeding one consumer, prefer [`Bus::subscribe_mailbox`] with a shared inbox.
    pub fn subscribe<H>(&self, topic: &str, handler: H) -> Result<Subscription, BusError>
    where
        H: FnMut(Message) + Send + 'static,
    {
        self.add_handler(topic, handler, LIVE)
    }

    /// Like [`Bus::subscribe`], but the subscription is dormant: it receives nothing until
    /// [`Bus::handover`] activates it.
    pub fn subscribe_dormant<H>(&self, topic: &str, handler: H) -> Result<Subscription, BusError>
    where
        H: FnMut(Message) + Send + 'static,
    {
        self.add_handler(topic, handler, DORMANT)
    }

    /// Offers every message published on `topic` to `mailbox`, on the publisher's thread (see
    /// [`Mailbox`] for what that requires). No thread is created: this is the way to feed one
    /// consumer's inbox from many subscriptions.
    ///
    /// `topic` takes the same forms as in [`Bus::subscribe`].
    pub fn subscribe_mailbox(
        &self,
        topic: &str,
        mailbox: impl Mailbox,
    ) -> Result<Subscription, BusError> {
        self.add(topic, Target::new(mailbox), LIVE)
    }

    /// Like [`Bus::subscribe_mailbox`], but the subscription is dormant: it receives nothing
    /// until [`Bus::handover`] activates it.
    pub fn subscribe_mailbox_dormant(
        &self,
        topic: &str,
        mailbox: impl Mailbox,
    ) -> Result<Subscription, BusError> {
        self.add(topic, Target::new(mailbox), DORMANT)
    }

    /// Subscribes a new bounded channel of [`BusConfig::mailbox_capacity`] and returns its
    /// receiving side. The receiver reports disconnected once the subscription has ended and
    /// its queued messages are read; dropping the receiver ends the subscription at the next
    /// publish on its topic.
    pub fn subscribe_channel(
        &self,
        topic: &str,
    ) -> Result<(Subscription, Receiver<Message>), BusError> {
        let (sender, receiver) = crossbeam_channel::bounded(self.inner.config.mailbox_capacity);
        let subscription = self.add(topic, Target::Channel(sender), LIVE)?;
        Ok((subscription, receiver))
    }

    fn add_handler<H>(&self, topic: &str, handler: H, state: u8) -> Result<Subscription, BusError>
    where
        H: FnMut(Message) + Send + 'static,
    {
        let filter = Filter::parse(topic)?;
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let shared = self.new_shared(topic, state);
        let (sender, receiver) = crossbeam_channel::bounded(self.inner.config.mailbox_capacity);
        let thread_shared = Arc::clone(&shared);
        let counters = Arc::clone(&self.inner.counters);
        thread::Builder::new()
            .name(format!("bus:{}", topic.replace('\0', "?")))
            .spawn(move || run_handler(receiver, thread_shared, counters, handler))
            .map_err(|source| BusError::Spawn {
                topic: topic.to_owned(),
                source,
            })?;
        // If the bus closed meanwhile, `insert` fails, the sender is dropped and the thread
        // ends.
        self.insert(Entry {
            shared: Arc::clone(&shared),
            filter,
            mailbox: Target::Channel(sender),
        })?;
        Ok(Subscription {
            shared,
            bus: Arc::downgrade(&self.inner),
        })
    }

    fn add(&self, topic: &str, mailbox: Target, state: u8) -> Result<Subscription, BusError> {
        let filter = Filter::parse(topic)?;
        let shared = self.new_shared(topic, state);
        self.insert(Entry {
            shared: Arc::clone(&shared),
            filter,
            mailbox,
        })?;
        Ok(Subscription {
            shared,
            bus: Arc::downgrade(&self.inner),
        })
    }

    fn new_shared(&self, topic: &str, state: u8) -> Arc<Shared> {
        let id = self
            .inner
            .next_subscription_id
            .fetch_add(1, Ordering::Relaxed);
        Arc::new(Shared::new(id, topic, state))
    }

    fn insert(&self, entry: Entry) -> Result<(), BusError> {
        let mut registry = self.inner.write();
        if registry.closed {
            drop(registry);
            drop(entry);
            return Err(BusError::Closed);
        }
        registry.insert(entry);
        Ok(())
    }

    /// Delivers `message` to every live subscription whose topic or pattern matches
    /// `message.topic`, which must be a concrete topic (not empty, no `*`).
    ///
    /// Routing uses `message.topic` alone, so the topic a subscriber sees is always the one it
    /// was published on. A message whose kind is a reply (`Response` or `Error`) goes to the
    /// waiting [`Bus::request`] instead, exactly as [`Bus::reply`] does.
    ///
    /// Never blocks on a subscriber: a full mailbox is skipped and counted in the report.
    /// Subscription changes happen entirely before or after any one publish.
    pub fn publish(&self, message: Message) -> Result<PublishReport, BusError> {
        if message.kind.is_reply() {
            let delivered = self.reply(message)?;
            return Ok(PublishReport {
                delivered: usize::from(delivered),
                full: 0,
                closed: 0,
            });
        }
        self.deliver(message)
    }

    /// Delivery to topic subscribers; `message` is not a reply.
    #[inline]
    pub(crate) fn deliver(&self, message: Message) -> Result<PublishReport, BusError> {
        let registry = self.inner.read();
        if registry.closed {
            return Err(BusError::Closed);
        }
        let report = registry.deliver(message)?;
        drop(registry);

        let counters = &self.inner.counters;
        counters.published.fetch_add(1, Ordering::Relaxed);
        if report.closed != 0 {
            counters
                .closed
                .fetch_add(report.closed as u64, Ordering::Relaxed);
            self.remove_gone();
        }
        Ok(report)
    }

    /// Takes out subscriptions whose mailbox said it is closed. Rare: only after a publish
    /// met one, so scanning the whole table is fine.
    fn remove_gone(&self) {
        let gone = self.inner.write().take_gone();
        drop(gone);
    }

    /// Topics and patterns that have at least one live subscription, sorted, without
    /// duplicates. Dormant subscriptions are not listed.
    pub fn topics(&self) -> Vec<String> {
        self.inner.read().topics()
    }

    /// Per topic or pattern with a live subscription: its live subscribers and what they
    /// were delivered and dropped (a subscription that ended takes its counts with it; the
    /// bus-wide totals in [`Bus::stats`] keep them).
    pub fn topic_stats(&self) -> Vec<TopicStats> {
        self.inner.read().topic_stats()
    }

    /// The bus-wide counters.
    pub fn stats(&self) -> BusStats {
        let totals = self.inner.read().totals();
        let counters = &self.inner.counters;
        BusStats {
            published: counters.published.load(Ordering::Relaxed),
            delivered: totals.delivered,
            dropped_full: totals.dropped_full,
            closed: counters.closed.load(Ordering::Relaxed),
            late_replies: counters.late_replies.load(Ordering::Relaxed),
            handler_panics: counters.handler_panics.load(Ordering::Relaxed),
        }
    }

    /// Closes the bus: every subscription ends (handler threads start no further call and
    /// exit; channel receivers disconnect once drained), requests still waiting fail with
    /// [`crate::RequestError::Closed`], and every later subscribe, publish, reply, request or
    /// handover fails with [`BusError::Closed`]. Calling it again does nothing.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`Bus::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.read().closed
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("config", &self.inner.config)
            .field("closed", &self.is_closed())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Barrier, Mutex};
    use std::time::{Duration, Instant};

    use crossbeam_channel::RecvTimeoutError;

    use super::*;
    use crate::test_support::{
        PATIENCE, assert_ordered, exit_signal, number, numbered, wait_for_exit,
    };

    fn small_bus(mailbox_capacity: usize) -> Bus {
        Bus::with_config(BusConfig { mailbox_capacity })
    }

    #[test]
    fn bus_handles_are_cheap_shareable_clones() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_traits::<Bus>();
        assert_send_sync::<Subscription>();
        let bus = Bus::new();
        let (_subscription, inbox) = bus.subscribe_channel("a").unwrap();
        bus.clone().publish(Message::event("a", vec![])).unwrap();
        assert!(inbox.try_recv().is_ok());
        assert_eq!(bus.config().mailbox_capacity, DEFAULT_MAILBOX_CAPACITY);
    }

    #[test]
    fn publish_reaches_exact_and_pattern_subscribers_with_the_published_topic() {
        let bus = Bus::new();
        let (_exact, exact) = bus.subscribe_channel("users.created").unwrap();
        let (_prefix, prefix) = bus.subscribe_channel("users.*").unwrap();
        let (_all, all) = bus.subscribe_channel("*").unwrap();
        let (_other, other) = bus.subscribe_channel("orders.*").unwrap();

        let report = bus
            .publish(Message::event("users.created", b"7".to_vec()))
            .unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 3,
                full: 0,
                closed: 0
            }
        );
        assert!(report.is_complete());
        for inbox in [&exact, &prefix, &all] {
            let message = inbox.try_recv().unwrap();
            assert_eq!(message.topic, "users.created");
            assert_eq!(message.payload, b"7");
        }
        assert!(other.try_recv().is_err());

        let report = bus.publish(Message::event("users", vec![])).unwrap();
        assert_eq!(report.delivered, 1, "only `*` matches the bare prefix");
        assert!(all.try_recv().is_ok());
        assert!(prefix.try_recv().is_err());
    }

    #[test]
    fn topic_stats_count_live_subscriptions_per_topic() {
        let bus = small_bus(1);
        let (_first, first) = bus.subscribe_channel("users.created").unwrap();
        let (_second, _second_inbox) = bus.subscribe_channel("users.created").unwrap();
        let (pattern, _pattern_inbox) = bus.subscribe_channel("users.*").unwrap();
        let _dormant = bus.subscribe_dormant("quiet", |_message| {}).unwrap();
        for _ in 0..2 {
            bus.publish(Message::event("users.created", vec![]))
                .unwrap();
        }
        assert!(first.try_recv().is_ok());
        let stats = bus.topic_stats();
        let topics: Vec<(&str, usize, u64, u64)> = stats
            .iter()
            .map(|stats| {
                let TopicStats {
                    topic,
                    subscribers,
                    delivered,
                    dropped_full,
                    ..
                } = stats;
                (topic.as_str(), *subscribers, *delivered, *dropped_full)
            })
            .collect();
        // Mailboxes of one: each subscription takes the first message and drops the second.
        assert_eq!(
            topics,
            [("users.*", 1, 1, 1), ("users.created", 2, 2, 2)],
            "the dormant subscription is not listed"
        );
        pattern.cancel();
        assert_eq!(
            bus.topic_stats().len(),
            1,
            "a cancelled subscription leaves"
        );
    }

    #[test]
    fn publish_without_subscribers_is_counted_but_reaches_nobody() {
        let bus = Bus::new();
        let report = bus
            .publish(Message::event("nobody.listens", vec![1]))
            .unwrap();
        assert_eq!(report, PublishReport::default());
        assert_eq!(bus.stats().published, 1);
        assert_eq!(bus.stats().delivered, 0);
    }

    #[test]
    fn invalid_topics_are_refused_on_subscribe_and_publish() {
        let bus = Bus::new();
        assert!(matches!(
            bus.subscribe_channel(""),
            Err(BusError::InvalidTopic(_))
        ));
        assert!(matches!(
            bus.subscribe_channel("a.*.b"),
            Err(BusError::InvalidTopic(_))
        ));
        assert!(matches!(
            bus.subscribe("a*", |_| {}),
            Err(BusError::InvalidTopic(_))
        ));
        let (sender, _receiver) = crossbeam_channel::bounded(1);
        assert!(matches!(
            bus.subscribe_mailbox("*x", sender),
            Err(BusError::InvalidTopic(_))
        ));
        // Refused even where a pattern would match it, before anyone sees it.
        let (_everything, inbox) = bus.subscribe_channel("*").unwrap();
        assert!(matches!(
            bus.publish(Message::event("users.*", vec![])),
            Err(BusError::InvalidTopic(_))
        ));
        assert!(inbox.try_recv().is_err());
        assert!(matches!(
            bus.publish(Message::event("", vec![])),
            Err(BusError::InvalidTopic(_))
        ));
        assert_eq!(bus.stats().published, 0);
        assert_eq!(bus.topics(), ["*"]);
    }

    #[test]
    fn topics_are_sorted_deduplicated_and_live_only() {
        let bus = Bus::new();
        let (_b1, _inbox_b1) = bus.subscribe_channel("b").unwrap();
        let (_b2, _inbox_b2) = bus.subscribe_channel("b").unwrap();
        let _a = bus.subscribe("a.*", |_| {}).unwrap();
        let (c, _inbox_c) = bus.subscribe_channel("c").unwrap();
        let (sender, _receiver) = crossbeam_channel::bounded(1);
        let _dormant = bus.subscribe_mailbox_dormant("d", sender).unwrap();
        let (_all, _inbox_all) = bus.subscribe_channel("*").unwrap();
        assert_eq!(bus.topics(), ["*", "a.*", "b", "c"]);
        c.cancel();
        assert_eq!(bus.topics(), ["*", "a.*", "b"]);
    }

    #[test]
    fn order_is_kept_per_publisher_and_subscriber() {
        const PUBLISHERS: u8 = 4;
        const PER_PUBLISHER: u64 = 2_000;
        let total = usize::from(PUBLISHERS) * PER_PUBLISHER as usize;
        // Room for everything: this test is about order, not overflow.
        let bus = small_bus(total);
        let (_channel, channel_inbox) = bus.subscribe_channel("seq.*").unwrap();
        let (handled_sender, handled) = crossbeam_channel::unbounded();
        let _handler = bus
            .subscribe("seq.*", move |message| {
                handled_sender.send(number(&message)).unwrap()
            })
            .unwrap();

        let barrier = Arc::new(Barrier::new(usize::from(PUBLISHERS)));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|publisher| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let topic = format!("seq.{publisher}");
                    for sequence in 0..PER_PUBLISHER {
                        let report = bus.publish(numbered(&topic, publisher, sequence)).unwrap();
                        assert_eq!(report.delivered, 2);
                    }
                })
            })
            .collect();
        for publisher in publishers {
            publisher.join().unwrap();
        }

        let from_channel: Vec<_> = channel_inbox
            .try_iter()
            .map(|message| number(&message))
            .collect();
        let from_handler: Vec<_> = (0..total)
            .map(|_| handled.recv_timeout(PATIENCE).unwrap())
            .collect();
        assert_eq!(from_channel.len(), total);
        assert_ordered(&from_channel);
        assert_ordered(&from_handler);
    }

    #[test]
    fn a_stuck_subscriber_never_blocks_publish_nor_delays_the_others() {
        const MESSAGES: u64 = 200;
        const CAPACITY: usize = 4;
        let bus = small_bus(CAPACITY);

        let (entered_sender, entered) = crossbeam_channel::bounded(1);
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let stuck = bus
            .subscribe("jobs", move |_| {
                let _ = entered_sender.try_send(());
                // Blocks until the test ends and drops `release`.
                let _ = released.recv();
            })
            .unwrap();
        let (other_sender, other) = crossbeam_channel::unbounded();
        let other_subscription = bus
            .subscribe("jobs", move |message| {
                other_sender.send(number(&message).1).unwrap()
            })
            .unwrap();

        // The stuck handler takes message 0 and blocks; everything after queues behind it.
        bus.publish(numbered("jobs", 0, 0)).unwrap();
        entered.recv_timeout(PATIENCE).unwrap();
        assert_eq!(other.recv_timeout(PATIENCE).unwrap(), 0);

        // Publish the rest in lockstep with the other subscriber: each message must reach it
        // while the stuck one stays stuck.
        let (done_sender, done) = crossbeam_channel::bounded(1);
        let publisher_bus = bus.clone();
        thread::spawn(move || {
            let mut full = 0;
            for sequence in 1..MESSAGES {
                let report = publisher_bus
                    .publish(numbered("jobs", 0, sequence))
                    .unwrap();
                full += report.full;
                let received = other.recv_timeout(PATIENCE);
                assert_eq!(
                    received.ok(),
                    Some(sequence),
                    "the other subscriber was delayed"
                );
            }
            done_sender.send(full).unwrap();
        });
        let full = done.recv_timeout(PATIENCE).expect("publishing blocked");

        // Message 0 is in the handler, CAPACITY more wait in the mailbox, the rest dropped.
        let expected_full = MESSAGES - 1 - CAPACITY as u64;
        assert_eq!(full as u64, expected_full);
        assert_eq!(stuck.stats().dropped_full, expected_full);
        assert_eq!(stuck.stats().delivered, 1 + CAPACITY as u64);
        assert_eq!(bus.stats().dropped_full, expected_full);
        assert_eq!(other_subscription.stats().delivered, MESSAGES);
        assert_eq!(other_subscription.stats().dropped_full, 0);
        drop(release);
    }

    #[test]
    fn a_full_mailbox_is_counted_and_reported_never_silent() {
        let bus = small_bus(2);
        let (subscription, inbox) = bus.subscribe_channel("t").unwrap();
        let reports: Vec<_> = (0..5)
            .map(|_| bus.publish(Message::event("t", vec![])).unwrap())
            .collect();
        let full: Vec<_> = reports.iter().map(|report| report.full).collect();
        assert_eq!(full, [0, 0, 1, 1, 1]);
        assert!(!reports[4].is_complete());
        assert_eq!(subscription.stats().delivered, 2);
        assert_eq!(subscription.stats().dropped_full, 3);
        let stats = bus.stats();
        assert_eq!(
            (stats.published, stats.delivered, stats.dropped_full),
            (5, 2, 3)
        );
        assert_eq!(inbox.len(), 2);
        // The bus keeps the counts of subscriptions that have ended.
        subscription.cancel();
        assert_eq!(bus.stats(), stats);
    }

    #[test]
    fn a_panicking_handler_is_counted_and_takes_nothing_down() {
        let bus = Bus::new();
        let (survived_sender, survived) = crossbeam_channel::unbounded();
        let panicky = bus
            .subscribe("work", move |message| {
                let (_, sequence) = number(&message);
                if sequence % 2 == 0 {
                    panic!("handler fails on even message {sequence}");
                }
                survived_sender.send(sequence).unwrap();
            })
            .unwrap();
        let (_other, other) = bus.subscribe_channel("work").unwrap();

        for sequence in 0..10 {
            let report = bus.publish(numbered("work", 0, sequence)).unwrap();
            assert_eq!(report.delivered, 2);
        }
        let odd: Vec<_> = (0..5)
            .map(|_| survived.recv_timeout(PATIENCE).unwrap())
            .collect();
        assert_eq!(odd, [1, 3, 5, 7, 9]);
        assert_eq!(other.try_iter().count(), 10);
        assert_eq!(panicky.stats().handler_panics, 5);
        assert_eq!(bus.stats().handler_panics, 5);
        assert!(panicky.is_active());

        // The bus and the handler thread still work.
        bus.publish(numbered("work", 0, 11)).unwrap();
        assert_eq!(survived.recv_timeout(PATIENCE).unwrap(), 11);
    }

    #[test]
    fn a_dropped_receiver_ends_its_subscription_at_the_next_publish() {
        let bus = Bus::new();
        let (gone, inbox) = bus.subscribe_channel("t").unwrap();
        let (_kept, kept_inbox) = bus.subscribe_channel("t").unwrap();
        drop(inbox);
        let report = bus.publish(Message::event("t", vec![])).unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 1,
                full: 0,
                closed: 1
            }
        );
        assert!(!gone.is_active());
        assert_eq!(bus.stats().closed, 1);

        let report = bus.publish(Message::event("t", vec![])).unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 1,
                full: 0,
                closed: 0
            }
        );
        assert_eq!(kept_inbox.len(), 2);
        drop(_kept);
        assert!(bus.topics().is_empty());
        // Cancelling an ended subscription is harmless.
        gone.cancel();
    }

    #[test]
    fn close_ends_everything_and_later_calls_fail_clearly() {
        let bus = Bus::new();
        let (signal, handler_gone) = exit_signal();
        let handler = bus
            .subscribe("t", move |_| {
                let _ = &signal;
            })
            .unwrap();
        let (channel, inbox) = bus.subscribe_channel("t").unwrap();
        bus.publish(Message::event("t", vec![])).unwrap();

        bus.close();
        bus.close();
        assert!(bus.is_closed());
        wait_for_exit(&handler_gone);
        assert!(!handler.is_active());
        assert!(!channel.is_active());
        // The channel keeps what it had, then reports the end.
        assert!(inbox.recv_timeout(PATIENCE).is_ok());
        assert_eq!(
            inbox.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );

        let error = bus.publish(Message::event("t", vec![])).unwrap_err();
        assert!(matches!(error, BusError::Closed));
        assert_eq!(error.to_string(), "bus is closed");
        assert!(matches!(bus.subscribe("t", |_| {}), Err(BusError::Closed)));
        assert!(matches!(bus.subscribe_channel("t"), Err(BusError::Closed)));
        let (sender, _receiver) = crossbeam_channel::bounded(1);
        assert!(matches!(
            bus.subscribe_mailbox_dormant("t", sender),
            Err(BusError::Closed)
        ));
        assert!(bus.topics().is_empty());
    }

    #[test]
    fn dropping_the_last_bus_handle_ends_handler_threads() {
        let bus = Bus::new();
        let (signal, handler_gone) = exit_signal();
        let subscription = bus
            .subscribe("t", move |_| {
                let _ = &signal;
            })
            .unwrap();
        drop(bus);
        wait_for_exit(&handler_gone);
        assert!(!subscription.is_active());
        drop(subscription);
    }

    /// Cancels a channel subscription and checks that its inbox then holds exactly what the
    /// bus delivered (less the `first` message already read), in order, and disconnects.
    fn cancel_and_check_inbox(
        subscription: Subscription,
        first: Option<Message>,
        inbox: Receiver<Message>,
        topic: &str,
        failures: &Mutex<Vec<String>>,
    ) {
        let stats_handle = Arc::clone(&subscription.shared);
        subscription.cancel();
        // Final now: nothing is delivered after cancel returns.
        let delivered = stats_handle.counts.delivered.load(Ordering::Relaxed);
        let mut received: Vec<Message> = first.into_iter().collect();
        loop {
            match inbox.recv_timeout(PATIENCE) {
                Ok(message) => received.push(message),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{topic}: inbox never disconnected"));
                    return;
                }
            }
        }
        if received.len() as u64 != delivered {
            failures.lock().unwrap().push(format!(
                "{topic}: delivered {delivered}, received {}",
                received.len()
            ));
        }
        assert_ordered(&stress_numbers(received.iter()));
    }

    /// The numbers of the `stress.*` events among `messages` (`*` subscribers also see the
    /// requests on `echo`).
    fn stress_numbers<'a>(messages: impl Iterator<Item = &'a Message>) -> Vec<(u8, u64)> {
        messages
            .filter(|message| message.topic.starts_with("stress."))
            .map(number)
            .collect()
    }

    /// Publishers, churning subscribers (channels and handlers, exact and patterns) and
    /// requesters all at once. Bounded by counts and by a deadline.
    #[test]
    fn many_threads_publishing_subscribing_cancelling_and_requesting_stay_correct() {
        const PUBLISHERS: u8 = 4;
        const PER_PUBLISHER: u64 = 10_000;
        const CHURNERS: usize = 2;
        const CHURN_ROUNDS: usize = 2_000;
        const REQUESTS: u32 = 300;
        let deadline = Instant::now() + Duration::from_secs(4);
        let bus = Bus::new();

        // A stable observer of everything, drained on its own thread.
        let (observer, observer_inbox) = bus.subscribe_channel("stress.*").unwrap();
        let observer_thread = thread::spawn(move || {
            observer_inbox
                .iter()
                .map(|message| number(&message))
                .collect::<Vec<_>>()
        });
        // An echo responder for the requesters.
        let responder = bus.clone();
        let _echo = bus
            .subscribe("echo", move |request| {
                let _ = responder.reply(request.response(request.payload.clone()));
            })
            .unwrap();

        let publishing = Arc::new(AtomicBool::new(true));
        let barrier = Arc::new(Barrier::new(usize::from(PUBLISHERS) + CHURNERS + 1));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|publisher| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let topic = format!("stress.{publisher}");
                    let mut published = 0;
                    while published < PER_PUBLISHER && Instant::now() < deadline {
                        bus.publish(numbered(&topic, publisher, published)).unwrap();
                        published += 1;
                    }
                    published
                })
            })
            .collect();

        let churn_failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let churners: Vec<_> = (0..CHURNERS)
            .map(|churner| {
                let bus = bus.clone();
                let barrier = Arc::clone(&barrier);
                let publishing = Arc::clone(&publishing);
                let failures = Arc::clone(&churn_failures);
                thread::spawn(move || {
                    barrier.wait();
                    let topics = ["stress.0", "stress.1", "stress.*", "*"];
                    let mut round = 0;
                    while round < CHURN_ROUNDS
                        && publishing.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                    {
                        let topic = topics[(round + churner) % topics.len()];
                        if round % 2 == 0 {
                            let (subscription, inbox) = bus.subscribe_channel(topic).unwrap();
                            let first = inbox.try_recv().ok();
                            let listed = bus.topics();
                            if !listed.windows(2).all(|pair| pair[0] < pair[1]) {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("unsorted {listed:?}"));
                            }
                            cancel_and_check_inbox(subscription, first, inbox, topic, &failures);
                        } else {
                            let (sender, handled) = crossbeam_channel::unbounded();
                            let subscription = bus
                                .subscribe(topic, move |message| {
                                    let _ = sender.send(message);
                                })
                                .unwrap();
                            subscription.cancel();
                            let received: Vec<_> = handled.try_iter().collect();
                            assert_ordered(&stress_numbers(received.iter()));
                        }
                        round += 1;
                    }
                    round
                })
            })
            .collect();

        barrier.wait();
        let requester_bus = bus.clone();
        let requester = thread::spawn(move || {
            for index in 0..REQUESTS {
                if Instant::now() >= deadline {
                    return index;
                }
                let payload = index.to_le_bytes().to_vec();
                let request = Message::event("echo", payload.clone());
                let reply = requester_bus.request(request, PATIENCE).unwrap();
                assert_eq!(reply.payload, payload, "a reply went to the wrong request");
            }
            REQUESTS
        });

        let published: Vec<u64> = publishers
            .into_iter()
            .map(|publisher| publisher.join().unwrap())
            .collect();
        publishing.store(false, Ordering::Relaxed);
        let rounds: usize = churners
            .into_iter()
            .map(|churner| churner.join().unwrap())
            .sum();
        assert!(rounds > 0, "no subscription churned while publishers ran");
        let requests = requester.join().unwrap();

        let observer_stats = observer.stats();
        observer.cancel();
        let observed = observer_thread.join().unwrap();
        let events: u64 = published.iter().sum();
        assert!(events > 0);
        assert_eq!(observed.len() as u64, observer_stats.delivered);
        assert_eq!(
            observer_stats.delivered + observer_stats.dropped_full,
            events
        );
        assert_ordered(&observed);
        let failures = churn_failures.lock().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(bus.stats().published, events + u64::from(requests));
        assert_eq!(bus.topics(), ["echo"]);
        bus.close();
    }
}
