//! The subscriber table: exact topics in a map, patterns in a short list, dormant entries aside.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use binary::Message;
use binary::topic::Pattern;

use crate::bus::PublishReport;
use crate::error::BusError;
use crate::hash::TopicHashBuilder;
use crate::mailbox::{Offer, Target};
use crate::subscription::{Shared, State};
use crate::topic::{self, Filter};

/// One subscription as the table holds it. Dropping it drops the mailbox, which for a channel
/// disconnects the receiving side once it is drained.
pub(crate) struct Entry {
    pub(crate) shared: Arc<Shared>,
    pub(crate) filter: Filter,
    pub(crate) mailbox: Target,
}

impl Entry {
    /// Offers the message and counts the outcome on the subscription.
    #[inline]
    fn offer(&self, message: Message, report: &mut PublishReport) {
        match self.mailbox.offer(message) {
            Offer::Accepted => {
                self.shared.counts.delivered.fetch_add(1, Ordering::Relaxed);
                report.delivered += 1;
            }
            Offer::Full => {
                self.shared
                    .counts
                    .dropped_full
                    .fetch_add(1, Ordering::Relaxed);
                report.full += 1;
            }
            Offer::Closed => {
                self.shared.mark_gone();
                report.closed += 1;
            }
        }
    }
}

/// Every subscription of one bus. Guarded by the bus's `RwLock`: publishers read, everything
/// that changes membership writes.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) closed: bool,
    exact: HashMap<String, Vec<Entry>, TopicHashBuilder>,
    patterns: Vec<Entry>,
    dormant: Vec<Entry>,
    /// Counts of subscriptions that have left the table. Bus-wide totals are these plus the
    /// live subscriptions' own counters, so a publish updates no bus-wide delivery counter.
    ended: Totals,
}

/// Delivery counts summed over subscriptions.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) delivered: u64,
    pub(crate) dropped_full: u64,
}

impl Totals {
    /// Marks an entry removed and keeps its counts. Every entry leaves the table through here.
    fn end(&mut self, entry: &Entry) {
        entry.shared.set_state(State::Removed);
        self.add(&entry.shared);
    }

    fn add(&mut self, shared: &Shared) {
        self.delivered += shared.counts.delivered.load(Ordering::Relaxed);
        self.dropped_full += shared.counts.dropped_full.load(Ordering::Relaxed);
    }
}

impl Registry {
    /// Offers `message` to every live entry that matches its topic: a clone to each but the
    /// last, the original to the last. No allocation besides those clones. Fails, offering
    /// nothing, if the topic is empty or holds a `*`.
    #[inline]
    pub(crate) fn deliver(&self, message: Message) -> Result<PublishReport, BusError> {
        let exact = self.exact_entries(&message.topic)?;
        Ok(self.offer_all(exact, message))
    }

    /// Like [`Registry::deliver`], but only if every matching mailbox has room now; otherwise
    /// offers nothing and hands the message back.
    pub(crate) fn deliver_if_room(
        &self,
        message: Message,
    ) -> Result<Result<PublishReport, Message>, BusError> {
        let exact = self.exact_entries(&message.topic)?;
        if !self
            .targets(exact, &message.topic)
            .all(|entry| entry.mailbox.has_room())
        {
            return Ok(Err(message));
        }
        Ok(Ok(self.offer_all(exact, message)))
    }

    /// The exact subscribers of a published topic, after checking the topic.
    #[inline]
    fn exact_entries(&self, published: &str) -> Result<&[Entry], BusError> {
        match self.exact.get(published) {
            Some(entries) => Ok(entries.as_slice()),
            // Equal to a key proves the topic valid (keys are never empty and hold no `*`), so
            // only a topic without exact subscribers needs the scan.
            None => {
                topic::check_published(published)?;
                Ok(&[])
            }
        }
    }

    /// Every live entry that matches `published`: the exact ones, then the patterns.
    #[inline]
    fn targets<'a, 't>(
        &'a self,
        exact: &'a [Entry],
        published: &'t str,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 't> {
        exact.iter().chain(
            self.patterns
                .iter()
                .filter(move |entry| entry.filter.matches(published)),
        )
    }

    #[inline]
    fn offer_all(&self, exact: &[Entry], message: Message) -> PublishReport {
        let mut report = PublishReport::default();
        let mut previous: Option<&Entry> = None;
        {
            let topic = message.topic.as_str();
            for entry in self.targets(exact, topic) {
                if let Some(earlier) = previous {
                    earlier.offer(message.clone(), &mut report);
                }
                previous = Some(entry);
            }
        }
        if let Some(last) = previous {
            last.offer(message, &mut report);
        }
        report
    }

    /// Adds an entry, live or dormant as its state says.
    pub(crate) fn insert(&mut self, entry: Entry) {
        if entry.shared.state() == State::Dormant {
            self.dormant.push(entry);
        } else {
            self.insert_live(entry);
        }
    }

    fn insert_live(&mut self, entry: Entry) {
        entry.shared.set_state(State::Live);
        match entry.filter {
            Filter::Exact => self
                .exact
                .entry(entry.shared.topic.clone())
                .or_default()
                .push(entry),
            Filter::Prefix(_) | Filter::All => self.patterns.push(entry),
        }
    }

    /// Takes a subscription out of the table, wherever it is, and marks it removed. `None` if
    /// it was not in the table (already cancelled, retired or closed).
    pub(crate) fn take(&mut self, shared: &Shared) -> Option<Entry> {
        let entry = match shared.state() {
            State::Dormant => take_by_id(&mut self.dormant, shared.id),
            // Where `insert` put it: by its (already validated) topic's form.
            State::Live | State::Gone
                if !matches!(Pattern::parse(&shared.topic), Ok(Pattern::Exact(_))) =>
            {
                take_by_id(&mut self.patterns, shared.id)
            }
            State::Live | State::Gone => {
                let entries = self.exact.get_mut(&shared.topic)?;
                let entry = take_by_id(entries, shared.id);
                if entries.is_empty() {
                    self.exact.remove(&shared.topic);
                }
                entry
            }
            _ => None,
        }?;
        self.ended.end(&entry);
        Some(entry)
    }

    /// Moves a dormant entry into the live table. `false` if it was not dormant.
    pub(crate) fn activate(&mut self, shared: &Shared) -> bool {
        if shared.state() != State::Dormant {
            return false;
        }
        match take_by_id(&mut self.dormant, shared.id) {
            Some(entry) => {
                self.insert_live(entry);
                true
            }
            None => false,
        }
    }

    /// Takes out every entry whose mailbox said it is closed.
    pub(crate) fn take_gone(&mut self) -> Vec<Entry> {
        let mut gone = Vec::new();
        let ended = &mut self.ended;
        self.exact.retain(|_, entries| {
            drain_gone(entries, &mut gone, ended);
            !entries.is_empty()
        });
        drain_gone(&mut self.patterns, &mut gone, ended);
        gone
    }

    /// Takes out every entry, live and dormant, and marks them removed.
    pub(crate) fn take_all(&mut self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self
            .exact
            .drain()
            .flat_map(|(_, entries)| entries)
            .collect();
        all.append(&mut self.patterns);
        all.append(&mut self.dormant);
        for entry in &all {
            self.ended.end(entry);
        }
        all
    }

    /// Delivery counts of every subscription this table ever held, ended or not.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = self.ended;
        let live = self.exact.values().flatten().chain(&self.patterns);
        for entry in live {
            totals.add(&entry.shared);
        }
        totals
    }

    /// Per topic or pattern with at least one live subscription: live subscribers and what
    /// those live subscriptions were delivered and dropped, sorted by topic.
    pub(crate) fn topic_stats(&self) -> Vec<crate::TopicStats> {
        let mut by_topic: std::collections::BTreeMap<&str, crate::TopicStats> =
            std::collections::BTreeMap::new();
        let live = self.exact.values().flatten().chain(&self.patterns);
        for entry in live.filter(|entry| entry.shared.state() == State::Live) {
            let stats = by_topic
                .entry(entry.shared.topic.as_str())
                .or_insert_with(|| crate::TopicStats {
                    topic: entry.shared.topic.clone(),
                    subscribers: 0,
                    delivered: 0,
                    dropped_full: 0,
                });
            stats.subscribers += 1;
            stats.delivered += entry.shared.counts.delivered.load(Ordering::Relaxed);
            stats.dropped_full += entry.shared.counts.dropped_full.load(Ordering::Relaxed);
        }
        by_topic.into_values().collect()
    }

    /// Topics and patterns with at least one live subscription, sorted, without duplicates.
    pub(crate) fn topics(&self) -> Vec<String> {
        let live = |entry: &&Entry| entry.shared.state() == State::Live;
        let mut topics: Vec<String> = self
            .exact
            .iter()
            .filter(|(_, entries)| entries.iter().any(|entry| live(&entry)))
            .map(|(topic, _)| topic.clone())
            .chain(
                self.patterns
                    .iter()
                    .filter(live)
                    .map(|entry| entry.shared.topic.clone()),
            )
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }
}

fn take_by_id(entries: &mut Vec<Entry>, id: u64) -> Option<Entry> {
    let index = entries.iter().position(|entry| entry.shared.id == id)?;
    // `remove`, not `swap_remove`: the order of the others does not matter for correctness,
    // but keeping it makes delivery order across subscribers stable and predictable.
    Some(entries.remove(index))
}

fn drain_gone(entries: &mut Vec<Entry>, gone: &mut Vec<Entry>, ended: &mut Totals) {
    let mut index = 0;
    while index < entries.len() {
        if entries[index].shared.state() == State::Gone {
            let entry = entries.remove(index);
            ended.end(&entry);
            gone.push(entry);
        } else {
            index += 1;
        }
    }
}
