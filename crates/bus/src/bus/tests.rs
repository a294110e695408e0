//! The bus's own tests: delivery, ordering, back-pressure, request/reply, subscription churn
//! and handover under concurrent publishers.

use std::sync::atomic::AtomicBool;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::*;
use crate::test_support::{PATIENCE, assert_ordered, exit_signal, number, numbered, wait_for_exit};

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

#[test]
fn a_waiting_publish_loses_nothing_to_a_slow_subscriber_and_keeps_order() {
    let bus = small_bus(4);
    let (_subscription, inbox) = bus.subscribe_channel("jobs").unwrap();
    let (_pattern, pattern_inbox) = bus.subscribe_channel("*").unwrap();
    const COUNT: u64 = 2_000;
    let slow = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < COUNT as usize {
            let message = inbox.recv_timeout(PATIENCE).expect("a message in time");
            seen.push(number(&message));
            if seen.len() % 64 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        seen
    });
    let fast = std::thread::spawn(move || {
        (0..COUNT)
            .map(|_| number(&pattern_inbox.recv_timeout(PATIENCE).unwrap()))
            .collect::<Vec<_>>()
    });
    for sequence in 0..COUNT {
        let report = bus
            .publish_waiting(numbered("jobs", 1, sequence), Instant::now() + PATIENCE)
            .unwrap();
        assert_eq!((report.delivered, report.full), (2, 0));
    }
    let expected: Vec<(u8, u64)> = (0..COUNT).map(|sequence| (1, sequence)).collect();
    assert_eq!(slow.join().unwrap(), expected);
    assert_eq!(fast.join().unwrap(), expected);
    let stats = bus.stats();
    assert_eq!((stats.delivered, stats.dropped_full), (2 * COUNT, 0));
}

#[test]
fn a_waiting_publish_gives_up_at_its_deadline_having_offered_nothing() {
    let bus = small_bus(1);
    let (_full, full) = bus.subscribe_channel("a.b").unwrap();
    let (_roomy, roomy) = bus.subscribe_channel("a.*").unwrap();
    bus.publish(Message::event("a.b", b"first".to_vec()))
        .unwrap();
    assert_eq!(roomy.try_recv().unwrap().payload, b"first");
    let started = Instant::now();
    let error = bus
        .publish_waiting(
            Message::event("a.b", b"second".to_vec()),
            started + Duration::from_millis(30),
        )
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    match &error {
        BusError::Full { topic, waited } => {
            assert_eq!(topic, "a.b");
            assert!(*waited >= Duration::from_millis(30));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("publish on topic \"a.b\": a matching mailbox had no room within")
    );
    // All or nothing: the subscriber with room did not get it either.
    assert!(roomy.try_recv().is_err());
    assert_eq!(full.len(), 1);
    assert_eq!(bus.stats().dropped_full, 0);
    // Room again: it goes through at once, to both.
    assert_eq!(full.recv().unwrap().payload, b"first");
    let report = bus
        .publish_waiting(Message::event("a.b", b"third".to_vec()), Instant::now())
        .unwrap();
    assert_eq!(report.delivered, 2);
    assert_eq!(full.recv().unwrap().payload, b"third");
    assert_eq!(roomy.recv().unwrap().payload, b"third");
}

#[test]
fn a_waiting_publish_checks_the_topic_routes_replies_and_fails_on_a_closed_bus() {
    let bus = small_bus(1);
    assert!(matches!(
        bus.publish_waiting(Message::event("a*", vec![]), Instant::now()),
        Err(BusError::InvalidTopic(_))
    ));
    // No subscriber: published to nobody, nothing to wait for.
    let report = bus
        .publish_waiting(Message::event("nobody", vec![]), Instant::now())
        .unwrap();
    assert_eq!(report, PublishReport::default());
    // A reply for no waiting request is routed (and counted late), not waited on.
    let report = bus
        .publish_waiting(
            Message::new("x", binary::MessageKind::Response, 5, vec![]),
            Instant::now() + PATIENCE,
        )
        .unwrap();
    assert_eq!(report.delivered, 0);
    assert_eq!(bus.stats().late_replies, 1);
    bus.close();
    assert!(matches!(
        bus.publish_waiting(Message::event("a", vec![]), Instant::now() + PATIENCE),
        Err(BusError::Closed)
    ));
}
