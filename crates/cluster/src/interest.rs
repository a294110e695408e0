//! Per-pattern bus subscriptions: a node subscribes only to the bus subjects its local
//! subscribers select (their patterns mapped by [`subject::bus_interest`], overlaps removed by
//! [`subject::bus_cover`]), kept in step with the bus as modules load, unload and swap, and it
//! delivers each event once even while two of its subscriptions overlap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::node::Inner;
use crate::subject;

/// How many sequence numbers below the highest one seen from a node are remembered: a copy of
/// an event that arrives through a second subscription is recognised if fewer than this many
/// newer events of that node arrived first.
const WINDOW: u64 = 1 << 16;

/// The longest [`sync`] waits for the server to confirm new subscriptions (a round trip).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the duplicate check keeps a node it no longer hears from.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// The node's bus subscriptions on NATS and what the duplicate check remembers.
#[derive(Default)]
pub(crate) struct Interest {
    /// NATS subject filter → the task delivering what arrives on it.
    subscriptions: Mutex<BTreeMap<String, Active>>,
    /// Serialises [`sync`]: the periodic check and the heartbeat both run it.
    syncing: tokio::sync::Mutex<()>,
    /// Per sending node id: the sequence numbers of its events delivered here recently.
    seen: Mutex<HashMap<String, Window>>,
}

impl Interest {
    /// The subject filters subscribed now.
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Runs `deliver` unless the event `key` (sending node id, sequence number) was delivered
    /// here already; `None` for a second copy. An event without a key is always delivered.
    /// The check and the delivery happen under one lock, so the copy that loses the race
    /// cannot let a later event through before the winner delivered.
    pub(crate) fn once<R>(
        &self,
        key: Option<(&str, u64)>,
        deliver: impl FnOnce() -> R,
    ) -> Option<R> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((origin, seq)) = key {
            let new = match seen.get_mut(origin) {
                Some(window) => window.insert(seq),
                None => {
                    let mut window = Window::new();
                    window.insert(seq);
                    seen.insert(origin.to_owned(), window);
                    true
                }
            };
            if !new {
                return None;
            }
        }
        Some(deliver())
    }

    /// Stops every subscription's task (their subscribers unsubscribe as they drop).
    pub(crate) fn stop(&self) {
        let subscriptions = std::mem::take(
            &mut *self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for active in subscriptions.values() {
            active.task.abort();
        }
    }
}

/// One subscription's task, and the sender whose drop tells it to unsubscribe, deliver what
/// it has and end.
struct Active {
    task: JoinHandle<()>,
    _retire: tokio::sync::oneshot::Sender<()>,
}

/// The sequence numbers seen from one node: a bit per number in a ring of [`WINDOW`] bits
/// below the highest.
struct Window {
    highest: u64,
    bits: Vec<u64>,
    used: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            highest: 0,
            bits: vec![0; (WINDOW / 64) as usize],
            used: Instant::now(),
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let index = seq % WINDOW;
        // WINDOW / 64 words: the index fits a usize on every target.
        #[allow(clippy::cast_possible_truncation)]
        let word = (index / 64) as usize;
        (word, 1 << (index % 64))
    }

    /// Marks `seq` seen; `false` if it was already. A number older than the window is taken
    /// as new: nothing remembers it either way, and losing an event is worse than the
    /// unlikely second copy.
    fn insert(&mut self, seq: u64) -> bool {
        self.used = Instant::now();
        if seq > self.highest {
            if seq - self.highest >= WINDOW {
                self.bits.fill(0);
            } else {
                for skipped in self.highest + 1..=seq {
                    let (word, bit) = Window::slot(skipped);
                    self.bits[word] &= !bit;
                }
            }
            self.highest = seq;
        } else if self.highest - seq >= WINDOW {
            return true;
        }
        let (word, bit) = Window::slot(seq);
        let new = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        new
    }
}

/// Brings the NATS subscriptions in line with the bus's patterns now: subscribes the new ones
/// first (and waits for the server to have them), then retires the ones no longer wanted
/// (each unsubscribes and still delivers what reached it before), so a subscriber that stays
/// never misses an event while the set changes; the copies that arrive
/// through both an old and a new subscription in between are delivered once (the sequence
/// check). What the change does not keep: two such events published within the moment of the
/// change can reach a local subscriber out of order, as the two subscriptions are read
/// independently. Returns the topics and patterns it saw, which are subscribed when it
/// returns (unless NATS is down: the client subscribes again when it reconnects).
pub(crate) async fn sync(inner: &Arc<Inner>) -> Vec<String> {
    let interest = &inner.interest;
    let _syncing = interest.syncing.lock().await;
    let topics = inner.bus.topics();
    let cluster = &inner.config.cluster_name;
    let wanted: BTreeSet<String> = topics
        .iter()
        .filter_map(|pattern| subject::bus_interest(cluster, pattern))
        .collect();
    let wanted = subject::bus_cover(&wanted);
    let added: Vec<String> = {
        let subscriptions = interest
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        wanted
            .iter()
            .filter(|subject| !subscriptions.contains_key(*subject))
            .cloned()
            .collect()
    };
    let mut subscribed = Vec::new();
    for subject in added {
        match inner.client.subscribe(subject.clone()).await {
            Ok(subscriber) => subscribed.push((subject, subscriber)),
            Err(error) => tracing::warn!(%subject, "cluster: bus subscription failed: {error}"),
        }
    }
    // A round trip through the server: when it returns, the server has the new
    // subscriptions, and every event it sent only to a subscription about to be retired has
    // reached that subscription's queue here (the server answers in order). While NATS is down
    // it gives up after a while; the subscriptions count as made either way (the client sends
    // them again when it reconnects).
    if !subscribed.is_empty() && !round_trip(inner).await {
        tracing::debug!("cluster: new bus subscriptions not confirmed yet");
    }
    let mut subscriptions = interest
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (subject, subscriber) in subscribed {
        let (retire, retired) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(crate::bridge::bus_loop(inner.clone(), subscriber, retired));
        subscriptions.insert(
            subject,
            Active {
                task,
                _retire: retire,
            },
        );
    }
    // A dropped entry's task unsubscribes, delivers what it already has and ends.
    subscriptions.retain(|subject, _| wanted.contains(subject));
    drop(subscriptions);
    interest
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|_, window| window.used.elapsed() < FORGET_AFTER);
    topics
}

/// A request to [`subject::sync`], answered "no responders" by the server: `true` once that
/// answer came back within [`FLUSH_TIMEOUT`].
pub(crate) async fn round_trip(inner: &Inner) -> bool {
    let request = async_nats::Request::new().timeout(Some(FLUSH_TIMEOUT));
    let subject = subject::sync(&inner.config.cluster_name, &inner.id);
    match inner.client.send_request(subject, request).await {
        Err(error) => error.kind() == async_nats::RequestErrorKind::NoResponders,
        Ok(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_is_refused_and_order_does_not_matter() {
        let mut window = Window::new();
        assert!(window.insert(1));
        assert!(window.insert(3));
        assert!(!window.insert(3));
        assert!(window.insert(2), "late but new");
        assert!(!window.insert(1));
        assert!(!window.insert(2));
        // Far ahead: the ring is cleared, and the numbers it now covers are new.
        assert!(window.insert(3 + WINDOW));
        assert!(window.insert(4));
        assert!(!window.insert(4));
        // Older than the window: taken as new rather than lost.
        assert!(window.insert(2));
    }

    #[test]
    fn numbers_skipped_over_are_new_when_the_ring_wraps() {
        let mut window = Window::new();
        for seq in 1..=WINDOW {
            assert!(window.insert(seq));
        }
        // WINDOW + 5 shares a slot with 5: advancing clears it.
        assert!(window.insert(WINDOW + 5));
        assert!(window.insert(WINDOW + 3));
        assert!(!window.insert(WINDOW + 3));
        assert!(!window.insert(WINDOW));
    }

    #[test]
    fn nodes_are_told_apart() {
        let interest = Interest::default();
        assert_eq!(interest.once(Some(("a-1", 1)), || 1), Some(1));
        assert_eq!(interest.once(Some(("b-2", 1)), || 2), Some(2));
        assert_eq!(interest.once(Some(("a-1", 1)), || 3), None);
        assert_eq!(interest.once(None, || 4), Some(4));
        assert_eq!(interest.once(None, || 5), Some(5));
    }
}
