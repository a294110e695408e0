//! Publish→receive throughput of the bus next to a raw crossbeam channel doing the same work.
//!
//! One iteration publishes a batch of `BATCH` messages to `n` subscribers (1, 4, 16) and waits
//! until every subscriber has received all of them. Every side clones the same template
//! message once per publish, clones it again for all but the last subscriber, uses bounded
//! channels of the same capacity (at least `BATCH`, so nothing is ever dropped; the bus side
//! asserts it), and consumes on one thread per subscriber:
//!
//! - `raw_channel`: `try_send` into `n` bounded channels, `n` threads `recv`.
//! - `bus_channel`: `Bus::publish` to `n` `subscribe_channel` subscriptions, `n` threads
//!   `recv`.
//! - `bus_handler`: `Bus::publish` to `n` `subscribe` handlers (one delivery thread each).
//!
//! Throughput is in published messages per second.

use std::hint::black_box;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use binary::Message;
use bus::{Bus, BusConfig, Subscription};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};

const BATCH: usize = 1024;
const CAPACITY: usize = BATCH;

fn template() -> Message {
    Message::event("bench.topic", vec![7u8; 64])
}

/// Something that moves one batch to every subscriber and waits until all have it.
trait Fanout {
    fn run_batch(&self, message: &Message);
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

struct RawFanout {
    senders: Vec<Sender<Message>>,
    acks: Receiver<()>,
    consumers: Vec<JoinHandle<()>>,
}

impl RawFanout {
    fn new(subscribers: usize) -> RawFanout {
        let (ack, acks) = crossbeam_channel::unbounded();
        let mut senders = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..subscribers {
            let (sender, inbox) = crossbeam_channel::bounded(CAPACITY);
            senders.push(sender);
            consumers.push(consumer(inbox, ack.clone()));
        }
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
        let Some((last, others)) = self.senders.split_last() else {
            return;
        };
        for _ in 0..BATCH {
            let message = template.clone();
            for sender in others {
                assert!(sender.try_send(message.clone()).is_ok(), "raw channel full");
            }
            assert!(last.try_send(message).is_ok(), "raw channel full");
        }
        wait_for_acks(&self.acks, self.senders.len());
    }
}

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
        let mut subscriptions = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..subscribers {
            let (subscription, inbox) = bus
                .subscribe_channel("bench.topic")
                .expect("subscribing on a fresh bus");
            subscriptions.push(subscription);
            consumers.push(consumer(inbox, ack.clone()));
        }
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
        let mut subscriptions = Vec::new();
        for _ in 0..subscribers {
            let ack = ack.clone();
            let mut received = 0;
            let subscription = bus
                .subscribe("bench.topic", move |message| {
                    drop(black_box(message));
                    received += 1;
                    if received == BATCH {
                        received = 0;
                        let _ = ack.send(());
                    }
                })
                .expect("subscribing on a fresh bus");
            subscriptions.push(subscription);
        }
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
        for _ in 0..BATCH {
            let report = self.bus.publish(template.clone()).expect("the bus is open");
            assert!(report.is_complete(), "a mailbox overflowed: {report:?}");
        }
        wait_for_acks(&self.acks, self.subscriptions.len());
    }
}

fn measure(fanout: &dyn Fanout, batches: u64) -> Duration {
    let message = template();
    let start = Instant::now();
    for _ in 0..batches {
        fanout.run_batch(&message);
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    for subscribers in [1, 4, 16] {
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

criterion_group!(benches, throughput);
criterion_main!(benches);
