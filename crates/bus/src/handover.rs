//! [`Bus::handover`]: move topics from retiring subscriptions to dormant ones in one step.

use crate::bus::Bus;
use crate::error::BusError;
use crate::subscription::{State, Subscription};

impl Bus {
    /// In one step, removes the `retire` subscriptions and makes the dormant `activate` ones
    /// live: every publish happens entirely before it (the message goes to the old side) or
    /// entirely after it (the new side), so no message goes to both or to neither.
    ///
    /// This is the bus half of a hot swap: the new version subscribes with
    /// [`Bus::subscribe_mailbox_dormant`] or [`Bus::subscribe_dormant`] while it starts, then
    /// one `handover` switches the traffic. A retired handler subscription keeps running its
    /// handler for the messages already in its mailbox, then its thread ends; a retired
    /// channel's receiver disconnects once drained.
    ///
    /// Activating a subscription that is already live does nothing, and so does retiring one
    /// that has already ended. Fails, changing nothing, if the bus is closed, if a
    /// subscription belongs to another bus, or if one to activate has ended or is also being
    /// retired.
    pub fn handover(
        &self,
        retire: &[&Subscription],
        activate: &[&Subscription],
    ) -> Result<(), BusError> {
        let retired = {
            let mut registry = self.inner.write();
            if registry.closed {
                return Err(BusError::Closed);
            }
            for subscription in retire.iter().chain(activate) {
                if !subscription.belongs_to(&self.inner) {
                    return Err(refused(subscription, "belongs to another bus"));
                }
            }
            for subscription in activate {
                if !matches!(
                    subscription.shared.state(),
                    State::Dormant | State::Live | State::Gone
                ) {
                    return Err(refused(subscription, "cannot be activated: it has ended"));
                }
                if retire
                    .iter()
                    .any(|retiring| retiring.id() == subscription.id())
                {
                    return Err(refused(
                        subscription,
                        "cannot be both retired and activated",
                    ));
                }
            }
            let retired: Vec<_> = retire
                .iter()
                .filter_map(|subscription| registry.take(&subscription.shared))
                .collect();
            for subscription in activate {
                registry.activate(&subscription.shared);
            }
            retired
        };
        // Outside the lock: dropping the mailboxes lets retired handler threads drain and end.
        drop(retired);
        Ok(())
    }
}

fn refused(subscription: &Subscription, reason: &'static str) -> BusError {
    BusError::Handover {
        id: subscription.id(),
        topic: subscription.topic().to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    use binary::Message;
    use crossbeam_channel::{Receiver, RecvTimeoutError};

    use super::*;
    use crate::BusConfig;
    use crate::test_support::{PATIENCE, exit_signal, number, numbered, wait_for_exit};

    fn sequences(inbox: &Receiver<Message>, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| number(&inbox.recv_timeout(PATIENCE).unwrap()).1)
            .collect()
    }

    #[test]
    fn a_dormant_subscription_receives_nothing_until_activated() {
        let bus = Bus::new();
        let (sender, inbox) = crossbeam_channel::unbounded();
        let dormant = bus.subscribe_mailbox_dormant("t", sender).unwrap();
        assert!(dormant.is_dormant());
        assert!(!dormant.is_active());
        assert_eq!(
            bus.publish(Message::event("t", vec![])).unwrap().delivered,
            0
        );
        assert!(bus.topics().is_empty());

        bus.handover(&[], &[&dormant]).unwrap();
        assert!(dormant.is_active());
        assert_eq!(
            bus.publish(Message::event("t", vec![])).unwrap().delivered,
            1
        );
        assert_eq!(inbox.len(), 1);
        assert_eq!(bus.topics(), ["t"]);
        // Activating again changes nothing.
        bus.handover(&[], &[&dormant]).unwrap();
        assert_eq!(
            bus.publish(Message::event("t", vec![])).unwrap().delivered,
            1
        );
    }

    /// A publisher runs flat out while the subscription moves: every message reaches exactly
    /// one side, the old side gets a prefix and the new side the rest, each in order.
    #[test]
    fn a_handover_under_load_sends_every_message_to_exactly_one_side() {
        const MAX_MESSAGES: u64 = 200_000;
        const BEFORE: usize = 1_000;
        const AFTER: usize = 1_000;
        let bus = Bus::new();
        // Unbounded inboxes: this test is about routing, so nothing may be dropped for room.
        let (old_sender, old_inbox) = crossbeam_channel::unbounded();
        let old = bus.subscribe_mailbox("svc.calls", old_sender).unwrap();
        let (new_sender, new_inbox) = crossbeam_channel::unbounded();
        let new = bus.subscribe_mailbox_dormant("svc.*", new_sender).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let publisher_stop = Arc::clone(&stop);
        let publisher_bus = bus.clone();
        let publisher = thread::spawn(move || {
            let mut sequence = 0;
            while sequence < MAX_MESSAGES && !publisher_stop.load(Ordering::Relaxed) {
                let report = publisher_bus
                    .publish(numbered("svc.calls", 0, sequence))
                    .unwrap();
                assert_eq!(report.delivered, 1, "message {sequence} reached {report:?}");
                sequence += 1;
            }
            sequence
        });

        let mut old_side = sequences(&old_inbox, BEFORE);
        bus.handover(&[&old], &[&new]).unwrap();
        let mut new_side = sequences(&new_inbox, AFTER);
        stop.store(true, Ordering::Relaxed);
        let published = publisher.join().unwrap();
        assert!(
            published < MAX_MESSAGES,
            "the publisher was still running at the handover"
        );

        assert!(!old.is_active());
        assert!(new.is_active());
        old_side.extend(old_inbox.try_iter().map(|message| number(&message).1));
        new_side.extend(new_inbox.try_iter().map(|message| number(&message).1));
        let switch = old_side.len() as u64;
        assert_eq!(old_side, (0..switch).collect::<Vec<_>>());
        assert_eq!(new_side, (switch..published).collect::<Vec<_>>());
        assert_eq!(bus.topics(), ["svc.*"]);
    }

    #[test]
    fn a_retired_handler_still_handles_what_was_already_in_its_mailbox() {
        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: 256,
        });
        let (handled_sender, handled) = crossbeam_channel::unbounded();
        let (gate, gate_open) = crossbeam_channel::bounded::<()>(0);
        let (signal, old_gone) = exit_signal();
        let old = bus
            .subscribe("svc", move |message| {
                let _ = &signal;
                let _ = gate_open.recv();
                handled_sender.send(number(&message).1).unwrap();
            })
            .unwrap();
        let (new_sender, new_inbox) = crossbeam_channel::unbounded();
        let new = bus.subscribe_mailbox_dormant("svc", new_sender).unwrap();

        for sequence in 0..100 {
            assert_eq!(
                bus.publish(numbered("svc", 0, sequence)).unwrap().delivered,
                1
            );
        }
        bus.handover(&[&old], &[&new]).unwrap();
        for sequence in 100..200 {
            assert_eq!(
                bus.publish(numbered("svc", 0, sequence)).unwrap().delivered,
                1
            );
        }
        // Dropping the retired handle does not cut its drain short.
        drop(old);
        drop(gate);
        wait_for_exit(&old_gone);
        assert_eq!(
            handled.try_iter().collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        assert_eq!(sequences(&new_inbox, 100), (100..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_retired_channel_disconnects_once_drained() {
        let bus = Bus::new();
        let (old, old_inbox) = bus.subscribe_channel("t").unwrap();
        bus.publish(Message::event("t", vec![])).unwrap();
        bus.handover(&[&old], &[]).unwrap();
        assert!(old_inbox.recv_timeout(PATIENCE).is_ok());
        assert_eq!(
            old_inbox.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        );
        // Retiring it again is harmless.
        bus.handover(&[&old], &[]).unwrap();
    }

    #[test]
    fn a_refused_handover_changes_nothing() {
        let bus = Bus::new();
        let (live, _live_inbox) = bus.subscribe_channel("a").unwrap();
        let (sender, _receiver) = crossbeam_channel::unbounded();
        let dormant = bus.subscribe_mailbox_dormant("a", sender.clone()).unwrap();
        // A subscription whose receiver went away has ended.
        let (ended, ended_inbox) = bus.subscribe_channel("a").unwrap();
        drop(ended_inbox);
        bus.publish(Message::event("a", vec![])).unwrap();
        let ended_id = ended.id();
        let other_bus = Bus::new();
        let foreign = other_bus.subscribe_mailbox_dormant("a", sender).unwrap();

        let error = bus.handover(&[&live], &[&dormant, &ended]).unwrap_err();
        assert!(matches!(error, BusError::Handover { id, .. } if id == ended_id));
        assert!(
            error
                .to_string()
                .ends_with("cannot be activated: it has ended")
        );
        let error = bus.handover(&[&live], &[&foreign]).unwrap_err();
        assert!(error.to_string().ends_with("belongs to another bus"));
        let error = bus.handover(&[&dormant], &[&dormant]).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("cannot be both retired and activated")
        );
        assert!(live.is_active());
        assert!(dormant.is_dormant());

        bus.close();
        assert!(matches!(
            bus.handover(&[&live], &[&dormant]),
            Err(BusError::Closed)
        ));
    }
}
