//! State one module version shares between its instances, its worker threads and the host
//! imports: identity, limits, the subscription table, counters and logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use binary::Message;

use crate::config::Limits;
use crate::inbox::InboxSender;
use crate::kv::KvAccess;
use crate::logs::GuestLog;
use crate::worker::Job;

/// Receives every `ws_broadcast` a module makes; the server relays them to WebSocket clients.
pub trait BroadcastSink: Send + Sync + 'static {
    /// Called on the module's worker thread: must not block for long.
    fn broadcast(&self, module: &str, topic: &str, payload: &[u8]);
}

/// A sink that drops broadcasts (the default when no server is attached).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBroadcast;

impl BroadcastSink for NoBroadcast {
    fn broadcast(&self, _module: &str, _topic: &str, _payload: &[u8]) {}
}

/// Counters for one module version. All are totals since it was loaded.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub inline_requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub messages: AtomicU64,
    pub message_errors: AtomicU64,
    pub message_batches: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub replacements: AtomicU64,
    pub overloaded: AtomicU64,
    pub published: AtomicU64,
    pub broadcasts: AtomicU64,
    pub import_errors: AtomicU64,
    pub kv_operations: AtomicU64,
    pub kv_errors: AtomicU64,
    pub outbound_requests: AtomicU64,
    pub outbound_errors: AtomicU64,
}

/// A snapshot of a module version's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleStats {
    /// `handle` calls completed or failed.
    pub requests: u64,
    /// Of those, the calls run inline, on the thread that received the request (the rest
    /// went to an instance's worker thread).
    pub inline_requests: u64,
    /// `handle` calls that failed.
    pub request_errors: u64,
    /// Bus messages taken from the inbox for delivery, one each whether `on_message` or an
    /// `on_messages` batch delivered it.
    pub messages: u64,
    /// Messages whose delivery failed: the `on_message` call failed, or the `on_messages`
    /// call failed while the guest was handling that message (one per failed batch call).
    pub message_errors: u64,
    /// `on_messages` calls (each delivering two or more messages), failed ones included.
    pub message_batches: u64,
    /// Guest traps (any export).
    pub traps: u64,
    /// Calls interrupted at their deadline.
    pub timeouts: u64,
    /// Instances replaced after a trap, deadline or bad pointer.
    pub replacements: u64,
    /// Calls refused because the inbox was full.
    pub overloaded: u64,
    /// Messages the module published.
    pub published: u64,
    /// `ws_broadcast` calls.
    pub broadcasts: u64,
    /// Import calls refused (bad topic, too many subscriptions, oversized message, ...).
    pub import_errors: u64,
    /// Key-value operations (`kv` import calls that reached the store or were refused by it).
    pub kv_operations: u64,
    /// Key-value operations answered with an error.
    pub kv_errors: u64,
    /// Outbound HTTP requests (`http_send` calls that decoded), answered or not.
    pub outbound_requests: u64,
    /// Outbound HTTP requests answered with an error (refused, failed, timed out).
    pub outbound_errors: u64,
    /// Log lines dropped by the rate limit.
    pub logs_dropped: u64,
    /// Bus subscriptions held.
    pub subscriptions: u64,
}

/// Feeds a module's inbox from the bus: one mailbox for all of its subscriptions.
pub(crate) struct InboxMailbox {
    pub jobs: InboxSender,
}

impl bus::Mailbox for InboxMailbox {
    fn offer(&self, message: Message) -> bus::Offer {
        match self.jobs.try_send(Job::Message(message)) {
            Ok(()) => bus::Offer::Accepted,
            Err(crossbeam_channel::TrySendError::Full(_)) => bus::Offer::Full,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => bus::Offer::Closed,
        }
    }

    /// The inbox also queues HTTP requests, so this is room for any job: a waiting publisher
    /// (`publish_batch`) gets a slot only when the module has one free.
    fn has_room(&self) -> bool {
        !self.jobs.is_full()
    }
}

/// Subscriptions by topic. Made dormant until the version goes live, so a swap can move them
/// from the old version to the new in one `bus::Bus::handover`.
#[derive(Default)]
pub(crate) struct SubscriptionTable {
    pub live: bool,
    pub by_topic: BTreeMap<String, bus::Subscription>,
}

/// Why a subscribe import was refused.
#[derive(Debug)]
pub(crate) enum SubscribeRefusal {
    TooMany(usize),
    Bus(bus::BusError),
}

pub(crate) struct Shared {
    pub name: String,
    pub version: String,
    pub limits: Limits,
    pub bus: bus::Bus,
    pub broadcast: Arc<dyn BroadcastSink>,
    pub counters: Counters,
    pub log: Arc<GuestLog>,
    pub subscriptions: Mutex<SubscriptionTable>,
    pub jobs: InboxSender,
    pub kv: KvAccess,
    pub outbound: Option<Arc<dyn crate::Outbound>>,
}

impl Shared {
    pub(crate) fn subscribe(&self, topic: &str) -> Result<(), SubscribeRefusal> {
        let mut table = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.by_topic.contains_key(topic) {
            return Ok(());
        }
        if table.by_topic.len() >= self.limits.max_subscriptions {
            return Err(SubscribeRefusal::TooMany(self.limits.max_subscriptions));
        }
        let mailbox = InboxMailbox {
            jobs: self.jobs.clone(),
        };
        let subscription = if table.live {
            self.bus.subscribe_mailbox(topic, mailbox)
        } else {
            self.bus.subscribe_mailbox_dormant(topic, mailbox)
        }
        .map_err(SubscribeRefusal::Bus)?;
        table.by_topic.insert(topic.to_owned(), subscription);
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, topic: &str) -> bool {
        let removed = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_topic
            .remove(topic);
        match removed {
            Some(subscription) => {
                subscription.cancel();
                true
            }
            None => false,
        }
    }

    pub(crate) fn stats(&self) -> ModuleStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        ModuleStats {
            requests: load(&counters.requests),
            inline_requests: load(&counters.inline_requests),
            request_errors: load(&counters.request_errors),
            messages: load(&counters.messages),
            message_errors: load(&counters.message_errors),
            message_batches: load(&counters.message_batches),
            traps: load(&counters.traps),
            timeouts: load(&counters.timeouts),
            replacements: load(&counters.replacements),
            overloaded: load(&counters.overloaded),
            published: load(&counters.published),
            broadcasts: load(&counters.broadcasts),
            import_errors: load(&counters.import_errors),
            kv_operations: load(&counters.kv_operations),
            kv_errors: load(&counters.kv_errors),
            outbound_requests: load(&counters.outbound_requests),
            outbound_errors: load(&counters.outbound_errors),
            logs_dropped: self.log.dropped(),
            subscriptions: self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_topic
                .len() as u64,
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
