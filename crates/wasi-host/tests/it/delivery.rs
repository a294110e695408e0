//! Batched delivery of bus messages (`on_messages`) with the `flaky` example module, built
//! with the Rust SDK: it passes each message's payload on to `flaky.seen` and traps on a
//! payload of `trap`. The module is paused while the test queues messages, so the worker
//! finds them waiting together when it resumes, as it does under load.

use std::time::{Duration, Instant};

use binary::{HttpRequest, Message};
use crossbeam_channel::Receiver;
use wasi_host::{Host, LoadedModule, ModuleConfig, ModuleStats, QueuedJobs};

fn flaky(host: &Host, config: &ModuleConfig) -> LoadedModule {
    host.load("flaky", &testkit::example_module("flaky"), config)
        .expect("flaky loads")
}

fn event(payload: &str) -> Message {
    Message::event("flaky.in", payload.as_bytes().to_vec())
}

/// The module's counters once every job queued so far has run (a request queued behind them
/// runs after them: one instance, one inbox, in order), and how many messages its current
/// instance passed on.
fn settled(module: &LoadedModule) -> (ModuleStats, String) {
    let seen = seen_by_instance(module);
    (module.stats(), seen)
}

/// What the module passed on, up to `count` payloads (waiting up to 30 s for each).
fn passed_on(seen: &Receiver<Message>, count: usize) -> Vec<String> {
    (0..count)
        .map_while(|_| seen.recv_timeout(Duration::from_secs(30)).ok())
        .map(|message| String::from_utf8_lossy(&message.payload).into_owned())
        .collect()
}

fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|number| number.to_string()).collect()
}

fn seen_by_instance(module: &LoadedModule) -> String {
    let response = module
        .handle_blocking(HttpRequest::new("GET", "/seen"))
        .unwrap();
    String::from_utf8_lossy(&response.body).into_owned()
}

#[test]
fn queued_messages_reach_the_guest_in_batches_in_order() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let module = flaky(&host, &ModuleConfig::default());
    module.pause().unwrap();
    for number in 0..600 {
        module.deliver(event(&number.to_string())).unwrap();
    }
    module.resume(QueuedJobs::default());
    assert_eq!(passed_on(&seen, 600), numbers(0..600));
    let (stats, seen_by_instance) = settled(&module);
    assert_eq!((stats.messages, stats.message_errors), (600, 0));
    // 600 queued messages at 256 a call at most: three `on_messages` calls.
    assert_eq!(stats.message_batches, 3, "{stats:?}");
    assert_eq!(stats.traps, 0);
    assert_eq!(seen_by_instance, "600");
    module.close();
}

#[test]
fn a_request_queued_between_messages_runs_between_them() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let module = flaky(&host, &ModuleConfig::default());
    module.pause().unwrap();
    for number in 0..50 {
        module.deliver(event(&number.to_string())).unwrap();
    }
    let asking = module.clone();
    let request = std::thread::spawn(move || seen_by_instance(&asking));
    let deadline = Instant::now() + Duration::from_secs(30);
    while module.queued() < 51 {
        assert!(Instant::now() < deadline, "the request was never queued");
        std::thread::sleep(Duration::from_millis(1));
    }
    for number in 50..100 {
        module.deliver(event(&number.to_string())).unwrap();
    }
    module.resume(QueuedJobs::default());
    assert_eq!(
        request.join().unwrap(),
        "50",
        "the request ran after the 50 messages before it and before the 50 after it"
    );
    assert_eq!(passed_on(&seen, 100), numbers(0..100));
    let (stats, _) = settled(&module);
    assert_eq!(stats.message_batches, 2, "{stats:?}");
    module.close();
}

#[test]
fn a_trap_in_the_middle_of_a_batch_fails_that_message_only() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let module = flaky(&host, &ModuleConfig::default());
    module.pause().unwrap();
    for number in 0..100 {
        let payload = if number == 40 {
            "trap".to_owned()
        } else {
            number.to_string()
        };
        module.deliver(event(&payload)).unwrap();
    }
    module.resume(QueuedJobs::default());
    // Each message before the trap is passed on once, the trapping one fails, and the rest
    // go to the fresh instance: nothing is lost and nothing is handled twice.
    let mut expected = numbers(0..40);
    expected.extend(numbers(41..100));
    assert_eq!(passed_on(&seen, 99), expected);
    let (stats, seen_by_instance) = settled(&module);
    assert_eq!(
        (
            stats.messages,
            stats.message_errors,
            stats.traps,
            stats.replacements
        ),
        (100, 1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(
        stats.message_batches, 2,
        "the batch of 100, then the 59 after the trap"
    );
    assert!(
        seen.recv_timeout(Duration::from_millis(50)).is_err(),
        "nothing handled twice"
    );
    // The fresh instance got exactly the messages after the trap, and keeps working.
    assert_eq!(seen_by_instance, "59");
    module.deliver(event("after")).unwrap();
    assert_eq!(passed_on(&seen, 1), ["after"]);
    module.close();
}

#[test]
fn a_trap_on_the_last_or_first_message_of_a_batch_is_contained() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let module = flaky(&host, &ModuleConfig::default());
    module.pause().unwrap();
    for payload in ["trap", "a", "b", "trap", "c", "trap"] {
        module.deliver(event(payload)).unwrap();
    }
    module.resume(QueuedJobs::default());
    assert_eq!(passed_on(&seen, 3), ["a", "b", "c"]);
    let (stats, _) = settled(&module);
    assert_eq!(
        (stats.messages, stats.message_errors, stats.traps),
        (6, 3, 3),
        "{stats:?}"
    );
    module.deliver(event("d")).unwrap();
    assert_eq!(passed_on(&seen, 1), ["d"]);
    module.close();
}

#[test]
fn with_batches_turned_off_every_message_has_its_own_call() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let mut config = ModuleConfig::default();
    config.limits.max_message_batch = 1;
    let module = flaky(&host, &config);
    module.pause().unwrap();
    for payload in ["0", "1", "trap", "3"] {
        module.deliver(event(payload)).unwrap();
    }
    module.resume(QueuedJobs::default());
    assert_eq!(passed_on(&seen, 3), ["0", "1", "3"]);
    let (stats, _) = settled(&module);
    assert_eq!(
        (stats.message_batches, stats.message_errors, stats.traps),
        (0, 1, 1),
        "{stats:?}"
    );
    module.close();
}

#[test]
fn a_hot_swap_hands_queued_messages_to_the_new_version_in_order() {
    let host = Host::standalone().unwrap();
    let (_subscription, seen) = host.bus().subscribe_channel("flaky.seen").unwrap();
    let old = flaky(&host, &ModuleConfig::default());
    let new = host
        .load(
            "flaky",
            &testkit::retagged(&testkit::example_module("flaky"), "new"),
            &ModuleConfig::default(),
        )
        .unwrap();
    old.pause().unwrap();
    for number in 0..300 {
        old.deliver(event(&number.to_string())).unwrap();
    }
    new.pause().unwrap();
    let queued = old.take_queued();
    assert_eq!(queued.len(), 300);
    new.resume(queued);
    old.close();
    assert_eq!(passed_on(&seen, 300), numbers(0..300));
    let (stats, _) = settled(&new);
    assert_eq!((stats.messages, stats.message_errors), (300, 0));
    assert_eq!(stats.message_batches, 2, "256 and 44");
    assert_eq!(old.stats().messages, 0);
    new.close();
}
