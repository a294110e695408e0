//! The `bus` scenario: host → module and module → module messages per second against raw
//! channels.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::load::{Connection, Target};
use crate::stats::{Row, Section, median, rate};

use super::{Settings, get_text};

async fn received(addr: std::net::SocketAddr, module: &str) -> anyhow::Result<u64> {
    let text = get_text(addr, http::Method::GET, &format!("/m/{module}/received")).await?;
    text.split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("/m/{module}/received answered {text:?}"))
}

/// Waits until `module` has received `total` messages; returns when it had.
async fn wait_received(
    addr: std::net::SocketAddr,
    module: &str,
    total: u64,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut connection = Connection::open(addr).await?;
    let target = Target::get(addr, &format!("/m/{module}/received"));
    loop {
        let (_, body) = connection.send(&target).await?;
        let count: u64 = String::from_utf8_lossy(&body)
            .split_whitespace()
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        if count >= total {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{module} received {count} of {total} messages within 60 s");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The baseline: one thread sends `count` payloads of `size` bytes through a bounded
/// crossbeam channel (the bus's default mailbox capacity) to another. Messages per second.
fn raw_channel(count: u64, size: usize) -> anyhow::Result<f64> {
    let (sender, receiver) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    let payload = vec![0x5a_u8; size];
    let started = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut bytes = 0_u64;
        for message in receiver.iter() {
            bytes += message.len() as u64;
        }
        bytes
    });
    for _ in 0..count {
        sender.send(payload.clone()).ok().context("consumer gone")?;
    }
    drop(sender);
    let bytes = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer panicked"))?;
    if bytes != count * size as u64 {
        bail!(
            "raw channel moved {bytes} bytes, expected {}",
            count * size as u64
        );
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The host publishes `count` events, each waiting for mailbox room
/// (`bus::Bus::publish_waiting`); messages per second until the module has seen them all.
async fn host_to_module(
    server: &server::ServerHandle,
    receiver: Receiver,
    count: u64,
    size: usize,
) -> anyhow::Result<f64> {
    let addr = server.addr();
    let before = received(addr, receiver.module).await?;
    let bus = server.bus().clone();
    let topic = format!("bench.host.{}", receiver.module);
    let started = Instant::now();
    let publisher = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let payload = vec![0x5a_u8; size];
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..count {
            bus.publish_waiting(
                binary::Message::event(topic.clone(), payload.clone()),
                deadline,
            )?;
        }
        Ok(())
    });
    publisher.await??;
    let done = wait_received(addr, receiver.module, before + count).await?;
    Ok(count as f64 / (done - started).as_secs_f64())
}

/// A receiving module: `bench_b` takes queued messages in `on_messages` batches (the default),
/// `bench_c` (the same `.wasm`, `max_message_batch = 1`) one `on_message` call each.
#[derive(Debug, Clone, Copy)]
struct Receiver {
    module: &'static str,
}

const BATCHED: Receiver = Receiver { module: "bench_b" };
const ONE_BY_ONE: Receiver = Receiver { module: "bench_c" };

/// Module A publishes `count` events in one `handle` call: with `batch = 0` one
/// `guest::publish` per message, retried while B's mailbox is full; otherwise
/// `guest::publish_batch` of `batch` messages, which waits for room in the host. Messages per
/// second until B has seen them all, and A's retries (or partial batches).
async fn module_to_module(
    addr: std::net::SocketAddr,
    receiver: Receiver,
    count: u64,
    size: usize,
    batch: u64,
) -> anyhow::Result<(f64, u64)> {
    let before = received(addr, receiver.module).await?;
    let started = Instant::now();
    let answer = get_text(
        addr,
        http::Method::POST,
        &format!(
            "/m/bench_a/publish?topic=bench.ab.{}&n={count}&size={size}&batch={batch}",
            receiver.module
        ),
    )
    .await?;
    let mut words = answer.split_whitespace();
    let published: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let retries: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    if published != count {
        bail!("bench_a published {published} of {count}: {answer:?}");
    }
    let done = wait_received(addr, receiver.module, before + count).await?;
    Ok((count as f64 / (done - started).as_secs_f64(), retries))
}

/// Messages per `publish_batch` call in the batched module → module run.
const BATCH: u64 = 256;

/// Host → module and module → module over the bus, against a raw crossbeam channel.
pub async fn bus(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("bus")?;
    let source = settings.read_module("bench.wasm")?;
    for name in ["bench_a", "bench_b", "bench_c"] {
        std::fs::write(dir.join(format!("dist/{name}.wasm")), &source)?;
    }
    let mut config = server::ServerConfig::at(&dir);
    config.dist_dir = dir.join("dist");
    config.listen = "127.0.0.1:0".parse()?;
    config.watch_dist = false;
    // Long enough for module A to publish every message in one `handle` call.
    config.default_module.limits.handle_deadline = Duration::from_secs(60);
    // `bench` is shared-nothing for its HTTP routes, but `/received` counts in instance
    // memory: each receiver runs one instance, so one count sees every message.
    let mut receiver = config.default_module.clone();
    receiver.instances = Some(1);
    let mut one_by_one = receiver.clone();
    one_by_one.limits.max_message_batch = 1;
    config.modules.insert(BATCHED.module.into(), receiver);
    config.modules.insert(ONE_BY_ONE.module.into(), one_by_one);
    let server = server::ServerBuilder::new(config).start().await?;
    let addr = server.addr();
    for receiver in [BATCHED, ONE_BY_ONE] {
        for topic in ["bench.host", "bench.ab"] {
            get_text(
                addr,
                http::Method::POST,
                &format!(
                    "/m/{}/subscribe?topic={topic}.{}",
                    receiver.module, receiver.module
                ),
            )
            .await?;
        }
    }
    let (count, size) = (settings.messages, settings.payload);
    let mut raw = Vec::new();
    let mut host = Vec::new();
    let mut host_one_by_one = Vec::new();
    let mut single = Vec::new();
    let mut batched = Vec::new();
    let mut batched_one_by_one = Vec::new();
    let mut retries = Vec::new();
    for round in 0..settings.rounds {
        raw.push(tokio::task::spawn_blocking(move || raw_channel(count, size)).await??);
        host.push(host_to_module(&server, BATCHED, count, size).await?);
        host_one_by_one.push(host_to_module(&server, ONE_BY_ONE, count, size).await?);
        let (single_rate, single_retries) = module_to_module(addr, BATCHED, count, size, 0).await?;
        single.push(single_rate);
        raw.push(tokio::task::spawn_blocking(move || raw_channel(count, size)).await??);
        let (one_by_one_rate, _) = module_to_module(addr, ONE_BY_ONE, count, size, BATCH).await?;
        batched_one_by_one.push(one_by_one_rate);
        let (batched_rate, partial) = module_to_module(addr, BATCHED, count, size, BATCH).await?;
        batched.push(batched_rate);
        retries.push((single_retries, partial));
        eprintln!(
            "bus round {round}: raw {:.0}/s, host→module {:.0}/s (one by one {:.0}/s), module→module publish {single_rate:.0}/s ({single_retries} retries), publish_batch → on_messages {batched_rate:.0}/s, → on_message one by one {one_by_one_rate:.0}/s",
            raw[raw.len() - 1],
            host[host.len() - 1],
            host_one_by_one[host_one_by_one.len() - 1],
        );
    }
    server.shutdown().await;
    let raw_rate = median(&raw);
    let rows = vec![
        Row::new(
            "host `publish_waiting` → module, `on_messages` batches, msg/s",
            rate(median(&host)),
        )
        .baseline(rate(raw_rate), median(&host) / raw_rate),
        Row::new(
            "host `publish_waiting` → module, one `on_message` per message, msg/s",
            rate(median(&host_one_by_one)),
        )
        .baseline(rate(raw_rate), median(&host_one_by_one) / raw_rate),
        Row::new(
            "module A → module B, one `publish` per message, retried while full, msg/s",
            rate(median(&single)),
        )
        .baseline(rate(raw_rate), median(&single) / raw_rate),
        Row::new(
            format!(
                "module A → module B, `publish_batch` of {BATCH}, one `on_message` per message, msg/s"
            ),
            rate(median(&batched_one_by_one)),
        )
        .baseline(rate(raw_rate), median(&batched_one_by_one) / raw_rate),
        Row::new(
            format!("module A → module B, `publish_batch` of {BATCH}, `on_messages` batches, msg/s"),
            rate(median(&batched)),
        )
        .baseline(rate(raw_rate), median(&batched) / raw_rate)
        .target("≥ 500k msg/s", median(&batched) >= 500_000.0),
    ];
    Ok(Section {
        scenario: "bus".into(),
        title: format!(
            "{count} events of {size} bytes, until the receiving module has counted them all, vs a raw bounded crossbeam channel (capacity 1024) between two threads"
        ),
        rows,
        runs: json!({
            "raw_per_s": raw,
            "host_to_module_per_s": host,
            "host_to_module_one_by_one_per_s": host_one_by_one,
            "module_to_module_publish_per_s": single,
            "module_to_module_batch_per_s": batched,
            "module_to_module_batch_one_by_one_per_s": batched_one_by_one,
            "batch": BATCH,
            "retries_and_partial_batches": retries,
        }),
    })
}
