//! [`Bus`]: subscribe, publish, topics, stats and close, over one shared subscriber table.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use binary::Message;
use crossbeam_channel::Receiver;

use crate::bridge::Bridge;
use crate::error::BusError;
use crate::mailbox::{Mailbox, Target};
use crate::registry::{Entry, Registry};
use crate::request::Requests;
use crate::subscription::{Shared, State, Subscription, run_handler};
use crate::topic::Filter;

/// The default [`BusConfig::mailbox_capacity`].
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// [`Bus::publish_waiting`]'s first sleep when a mailbox is full; each further sleep for the
/// same message doubles, up to [`MAX_ROOM_PAUSE`]. A mailbox drains at the speed of its
/// consumer (a module's `on_message`: about 2 µs a message), so a short first pause frees a
/// few dozen slots and the publisher rarely sleeps longer than the consumer needs.
const FIRST_ROOM_PAUSE: Duration = Duration::from_micros(20);

/// The longest single sleep of [`Bus::publish_waiting`].
const MAX_ROOM_PAUSE: Duration = Duration::from_millis(1);

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
    /// Cluster mode's hook; unset in a single process.
    pub(crate) bridge: OnceLock<Arc<dyn Bridge>>,
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
                bridge: OnceLock::new(),
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
        self.add_handler(topic, handler, State::Live)
    }

    /// Like [`Bus::subscribe`], but the subscription is dormant: it receives nothing until
    /// [`Bus::handover`] activates it.
    pub fn subscribe_dormant<H>(&self, topic: &str, handler: H) -> Result<Subscription, BusError>
    where
        H: FnMut(Message) + Send + 'static,
    {
        self.add_handler(topic, handler, State::Dormant)
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
        self.add(topic, Target::new(mailbox), State::Live)
    }

    /// Like [`Bus::subscribe_mailbox`], but the subscription is dormant: it receives nothing
    /// until [`Bus::handover`] activates it.
    pub fn subscribe_mailbox_dormant(
        &self,
        topic: &str,
        mailbox: impl Mailbox,
    ) -> Result<Subscription, BusError> {
        self.add(topic, Target::new(mailbox), State::Dormant)
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
        let subscription = self.add(topic, Target::Channel(sender), State::Live)?;
        Ok((subscription, receiver))
    }

    fn add_handler<H>(
        &self,
        topic: &str,
        handler: H,
        state: State,
    ) -> Result<Subscription, BusError>
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

    fn add(&self, topic: &str, mailbox: Target, state: State) -> Result<Subscription, BusError> {
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

    fn new_shared(&self, topic: &str, state: State) -> Arc<Shared> {
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
        match self.inner.bridge.get() {
            None => self.deliver(message),
            Some(bridge) => {
                let copy = message.clone();
                let report = self.deliver(message)?;
                bridge.published(copy);
                Ok(report)
            }
        }
    }

    /// Like [`Bus::publish`], but instead of dropping the message for a subscriber whose
    /// mailbox is full, waits until every matching mailbox has room, then delivers it to all
    /// of them in one pass; gives up at `deadline` with [`BusError::Full`], having offered
    /// the message to nobody. The publisher sleeps while it waits (20 µs at first, doubling
    /// up to 1 ms), so it leaves the CPU to the consumers it waits for.
    ///
    /// A mailbox that cannot tell whether it has room ([`Mailbox::has_room`]'s default) is
    /// offered the message as `publish` would. Between the check and the offer another
    /// publisher can fill a mailbox; the message is then dropped for that subscriber and
    /// counted, as with `publish`. A reply kind is routed as [`Bus::publish`] routes it,
    /// without waiting. Order per publisher and subscriber, the bridge hook and the
    /// handover rules are those of `publish`.
    pub fn publish_waiting(
        &self,
        message: Message,
        deadline: Instant,
    ) -> Result<PublishReport, BusError> {
        if message.kind.is_reply() {
            return self.publish(message);
        }
        let started = Instant::now();
        // A copy for the bridge, made once however often the message waits.
        let copy = self.inner.bridge.get().map(|_| message.clone());
        let mut message = message;
        let mut pause = FIRST_ROOM_PAUSE;
        loop {
            match self.deliver_if_room(message)? {
                Ok(report) => {
                    if let (Some(bridge), Some(copy)) = (self.inner.bridge.get(), copy) {
                        bridge.published(copy);
                    }
                    return Ok(report);
                }
                Err(back) => message = back,
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BusError::Full {
                    topic: message.topic,
                    waited: now - started,
                });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_ROOM_PAUSE);
        }
    }

    /// Sets the [`Bridge`] that carries this bus's traffic to other processes. A bus takes
    /// one bridge for its lifetime: `false` (and no change) if one is set already.
    pub fn set_bridge(&self, bridge: Arc<dyn Bridge>) -> bool {
        self.inner.bridge.set(bridge).is_ok()
    }

    /// Delivers a message that came from another process to the local subscribers only: the
    /// bridge does not see it again. A reply kind goes to the waiting request, as with
    /// [`Bus::reply`].
    pub fn publish_bridged(&self, message: Message) -> Result<PublishReport, BusError> {
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
        self.count(&report);
        Ok(report)
    }

    /// [`Bus::deliver`] if every matching mailbox has room; else the message back.
    fn deliver_if_room(
        &self,
        message: Message,
    ) -> Result<Result<PublishReport, Message>, BusError> {
        let registry = self.inner.read();
        if registry.closed {
            return Err(BusError::Closed);
        }
        let outcome = registry.deliver_if_room(message)?;
        drop(registry);
        if let Ok(report) = &outcome {
            self.count(report);
        }
        Ok(outcome)
    }

    /// Counts a delivery and removes the subscriptions it found gone.
    #[inline]
    fn count(&self, report: &PublishReport) {
        let counters = &self.inner.counters;
        counters.published.fetch_add(1, Ordering::Relaxed);
        if report.closed != 0 {
            counters
                .closed
                .fetch_add(report.closed as u64, Ordering::Relaxed);
            self.remove_gone();
        }
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
mod tests;
