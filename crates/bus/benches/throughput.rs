//! Publish→receive throughput of the bus next to a raw crossbeam channel doing the same work.
//!
//! One iteration publishes a batch of `BATCH` messages to `n` subscribers (1, 4, 16) and waits
//! until every subscriber has received all of them. Every side clones the same template
//! message once per publish, clones it again for all but the last subscriber, and uses
//! bounded channels of the same capacity (at least `BATCH`, so nothing is ever dropped; the
//! bus side asserts it):
//!
//! - `fanout/n/raw_channel`: `try_send` into `n` bounded channels, `n` threads `recv`.
//! - `fanout/n/bus_channel`: `Bus::publish` to `n` `subscribe_channel` subscriptions, `n`
//!   threads `recv`.
//! - `fanout/n/bus_handler`: `Bus::publish` to `n` `subscribe` handlers (one delivery thread
//!   each).
//! - `same_thread/n/{raw,bus}_channel`: as above, but the publishing thread drains the
//!   channels itself after each batch: the cost per message without thread wake-ups.
//!
//! Throughput is in published messages per second. Each sample is the median batch time
//! times the number of batches, not the total: on a small shared machine (2 cores, other
//! builds running) a batch that happens to be preempted would otherwise dominate a sample.
//! The same estimator applies to every side, so the ratios compare like with like.
//!
//! Last, `paired` alternates raw and bus batches round by round and prints the ratios: the
//! figure to trust when other work shares the machine.

use std::hint::black_box;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use binary::Message;
use bus::{Bus, BusConfig, Subscription};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};

const BATCH: usize = 1024;
const CAPACITY: usize = BATCH;
const SUBSCRIBER_COUNTS: [usize; 3] = [1, 4, 16];

fn template() -> Message {
    Message::event("bench.topic", vec![7u8; 64])
}

/// Something that moves one batch to every subscriber and returns once all have it.
trait Fanout {
    fn run_batch(&self, template: &Message);
}

/// Runs `batches` batches and reports the median batch time times `batches`.
fn measure(fanout: &dyn Fanout, batches: u64) -> Duration {
    let template = template();
    let mut times: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            fanout.run_batch(&template);
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let total = median.as_nanos().saturating_mul(u128::from(batches));
    Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
}

/// `try_send` a clone to every channel but the last, the message itself to the last.
fn send_to_all(senders: &[Sender<Message>], template: &Message) {
    let Some((last, others)) = senders.split_last() else {
        return;
    };
    for _ in 0..BATCH {
        let message = template.clone();
        for sender in others {
            assert!(sender.try_send(message.clone()).is_ok(), "raw channel full");
        }
        assert!(last.try_send(message).is_ok(), "raw channel full");
    }
}

fn publish_all(bus: &Bus, template: &Message) {
    for _ in 0..BATCH {
        let report = bus.publish(template.clone()).expect("the bus is open");
        assert!(report.is_complete(), "a mailbox overflowed: {report:?}");
    }
}

fn drain(inboxes: &[Receiver<Message>]) {
    for inbox in inboxes {
        for message in inbox.try_iter() {
            drop(black_box(message));
        }
    }
}

/// A consumer thread: receives batches and acknowledges each complete one.
fn consumer(inbox: Receiver<Message>, ack: Sender<()>) -> JoinHandle<()> {
    thread::spawn(move || {
        loop {
            for _ in 0..BATCH {
                match inbox.recv() {
                    Ok(message) => drop(black_box(message)),
                    Err(_) => return,
                }
            }
            if ack.send(()).is_err() {
                return;
            }
        }
    })
}

fn wait_for_acks(acks: &Receiver<()>, subscribers: usize) {
    for _ in 0..subscribers {
        acks.recv().expect("a consumer thread ended early");
    }
}

/// `n` raw channels, each drained by its own thread.
struct RawFanout {
    senders: Vec<Sender<Message>>,
    acks: Receiver<()>,
    consumers: Vec<JoinHandle<()>>,
}

impl RawFanout {
    fn new(subscribers: usize) -> RawFanout {
        let (ack, acks) = crossbeam_channel::unbounded();
        let (senders, consumers) = (0..subscribers)
            .map(|_| {
                let (sender, inbox) = crossbeam_channel::bounded(CAPACITY);
                (sender, consumer(inbox, ack.clone()))
            })
            .unzip();
        RawFanout {
            senders,
            acks,
            consumers,
        }
    }

    fn finish(self) {
        drop(self.senders);
        for consumer in self.consumers {
            consumer.join().expect("a consumer thread panicked");
        }
    }
}

impl Fanout for RawFanout {
    fn run_batch(&self, template: &Message) {
        send_to_all(&self.senders, template);
        wait_for_acks(&self.acks, self.senders.len());
    }
}

/// `n` bus subscriptions: channels drained by their own threads, or handlers.
struct BusFanout {
    bus: Bus,
    subscriptions: Vec<Subscription>,
    acks: Receiver<()>,
    consumers: Vec<JoinHandle<()>>,
}

impl BusFanout {
    fn channels(subscribers: usize) -> BusFanout {
        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: CAPACITY,
        });
        let (ack, acks) = crossbeam_channel::unbounded();
        let (subscriptions, consumers) = (0..subscribers)
            .map(|_| {
                let (subscription, inbox) = bus
                    .subscribe_channel("bench.topic")
                    .expect("subscribing on a fresh bus");
                (subscription, consumer(inbox, ack.clone()))
            })
            .unzip();
        BusFanout {
            bus,
            subscriptions,
            acks,
            consumers,
        }
    }

    fn handlers(subscribers: usize) -> BusFanout {
        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: CAPACITY,
        });
        let (ack, acks) = crossbeam_channel::unbounded();
        let subscriptions = (0..subscribers)
            .map(|_| {
                let ack = ack.clone();
                let mut received = 0;
                bus.subscribe("bench.topic", move |message| {
                    drop(black_box(message));
                    received += 1;
                    if received == BATCH {
                        received = 0;
                        let _ = ack.send(());
                    }
                })
                .expect("subscribing on a fresh bus")
            })
            .collect();
        BusFanout {
            bus,
            subscriptions,
            acks,
            consumers: Vec::new(),
        }
    }

    fn finish(self) {
        drop(self.subscriptions);
        for consumer in self.consumers {
            consumer.join().expect("a consumer thread panicked");
        }
        self.bus.close();
    }
}

impl Fanout for BusFanout {
    fn run_batch(&self, template: &Message) {
        publish_all(&self.bus, template);
        wait_for_acks(&self.acks, self.subscriptions.len());
    }
}

/// `n` raw channels drained by the publishing thread.
struct RawSameThread {
    senders: Vec<Sender<Message>>,
    inboxes: Vec<Receiver<Message>>,
}

impl Fanout for RawSameThread {
    fn run_batch(&self, template: &Message) {
        send_to_all(&self.senders, template);
        drain(&self.inboxes);
    }
}

/// `n` bus channel subscriptions drained by the publishing thread.
struct BusSameThread {
    bus: Bus,
    _subscriptions: Vec<Subscription>,
    inboxes: Vec<Receiver<Message>>,
}

impl Fanout for BusSameThread {
    fn run_batch(&self, template: &Message) {
        publish_all(&self.bus, template);
        drain(&self.inboxes);
    }
}

fn fanout(c: &mut Criterion) {
    for subscribers in SUBSCRIBER_COUNTS {
        let mut group = c.benchmark_group(format!("fanout/{subscribers}"));
        group
            .throughput(Throughput::Elements(BATCH as u64))
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));

        let raw = RawFanout::new(subscribers);
        group.bench_function("raw_channel", |b| {
            b.iter_custom(|batches| measure(&raw, batches))
        });
        raw.finish();

        let channels = BusFanout::channels(subscribers);
        group.bench_function("bus_channel", |b| {
            b.iter_custom(|batches| measure(&channels, batches))
        });
        channels.finish();

        let handlers = BusFanout::handlers(subscribers);
        group.bench_function("bus_handler", |b| {
            b.iter_custom(|batches| measure(&handlers, batches))
        });
        handlers.finish();

        group.finish();
    }
}

fn same_thread(c: &mut Criterion) {
    for subscribers in SUBSCRIBER_COUNTS {
        let mut group = c.benchmark_group(format!("same_thread/{subscribers}"));
        group
            .throughput(Throughput::Elements(BATCH as u64))
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));

        let (senders, inboxes) = (0..subscribers)
            .map(|_| crossbeam_channel::bounded(CAPACITY))
            .unzip();
        let raw = RawSameThread { senders, inboxes };
        group.bench_function("raw_channel", |b| {
            b.iter_custom(|batches| measure(&raw, batches))
        });

        let bus = Bus::with_config(BusConfig {
            mailbox_capacity: CAPACITY,
        });
        let (subscriptions, inboxes) = (0..subscribers)
            .map(|_| {
                bus.subscribe_channel("bench.topic")
                    .expect("subscribing on a fresh bus")
            })
            .unzip();
        let on_bus = BusSameThread {
            bus,
            _subscriptions: subscriptions,
            inboxes,
        };
        group.bench_function("bus_channel", |b| {
            b.iter_custom(|batches| measure(&on_bus, batches))
        });

        group.finish();
    }
}

/// Raw, bus-channel and bus-handler batches alternated, one of each per round, so that all
/// three see the same background load; prints each side's median batch throughput and the
/// bus/raw ratios. Criterion's groups above measure the sides one after the other, minutes
/// apart in the worst case, which on a shared machine can swing the ratios either way.
fn paired(_: &mut Criterion) {
    const ROUND_TIME: Duration = Duration::from_millis(1500);
    const MIN_ROUNDS: usize = 20;
    let template = template();
    println!("\npaired: raw, bus_channel and bus_handler batches alternated (median batch rates)");
    for subscribers in SUBSCRIBER_COUNTS {
        let raw = RawFanout::new(subscribers);
        let channels = BusFanout::channels(subscribers);
        let handlers = BusFanout::handlers(subscribers);
        let sides: [&dyn Fanout; 3] = [&raw, &channels, &handlers];
        for side in sides {
            side.run_batch(&template);
        }
        let mut times: [Vec<Duration>; 3] = Default::default();
        let deadline = Instant::now() + ROUND_TIME;
        while Instant::now() < deadline || times[0].len() < MIN_ROUNDS {
            for (side, samples) in sides.iter().zip(&mut times) {
                let start = Instant::now();
                side.run_batch(&template);
                samples.push(start.elapsed());
            }
        }
        let rounds = times[0].len();
        let [raw_rate, channel_rate, handler_rate] = times.map(|mut samples| {
            samples.sort_unstable();
            let median = samples[samples.len() / 2];
            BATCH as f64 / median.as_secs_f64() / 1e6
        });
        println!(
            "  fanout/{subscribers:<2}  raw_channel {raw_rate:6.2} M/s   bus_channel {channel_rate:6.2} \
             M/s ({:3.0}%)   bus_handler {handler_rate:6.2} M/s ({:3.0}%)   {} rounds",
            100.0 * channel_rate / raw_rate,
            100.0 * handler_rate / raw_rate,
            rounds,
        );
        raw.finish();
        channels.finish();
        handlers.finish();
    }
}

criterion_group!(benches, fanout, same_thread, paired);
criterion_main!(benches);
