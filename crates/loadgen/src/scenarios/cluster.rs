//! The `cluster` scenario: its own `nats-server` and two `modhost` nodes on loopback. Module →
//! module events across the nodes against raw async-nats publish → subscribe between two
//! connections (and against the same modules on one node), and `/m/bench` forwarded to the
//! other node against the same call made locally.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::load::{Connection, LoadResult, Target};
use crate::stats::{Row, Section, median, micros, rate};

use super::{Settings, failures, get_text, p50, p99, rps, runs_json, summary};

/// A `nats-server` on 127.0.0.1 with JetStream (the nodes watch the deploy bucket), killed on
/// drop.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start(dir: &Path) -> anyhow::Result<Nats> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("nats-store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nats-server (apt-get install nats-server)")?;
        let nats = Nats { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's directory: `dist/` with `modules` (all copies of `bench.wasm`) and a
/// `modhost.toml` that joins the cluster, gives `bench` time to publish in one call and runs
/// `sink` as one instance (`/received` counts in instance memory).
fn node_dir(
    settings: &Settings,
    parent: &Path,
    node: &str,
    url: &str,
    modules: &[&str],
) -> anyhow::Result<PathBuf> {
    let dir = parent.join(node);
    std::fs::create_dir_all(dir.join("dist"))?;
    let wasm = settings.read_module("bench.wasm")?;
    for module in modules {
        std::fs::write(dir.join(format!("dist/{module}.wasm")), &wasm)?;
    }
    std::fs::write(
        dir.join("modhost.toml"),
        format!(
            "[modules.bench]\nhandle_timeout_ms = 120000\n\n[modules.sink]\ninstances = 1\n\n[cluster]\nurl = \"{url}\"\nname = \"loadgen\"\nnode = \"{node}\"\n"
        ),
    )?;
    Ok(dir)
}

async fn admin(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let text = get_text(addr, http::Method::GET, "/_admin/cluster").await?;
    serde_json::from_str(&text).with_context(|| format!("/_admin/cluster answered {text:?}"))
}

fn counter(view: &serde_json::Value, name: &str) -> u64 {
    view["messages"][name].as_u64().unwrap_or(0)
}

/// Waits until the two nodes see each other, `a` answers forwarded calls for `bench`, and
/// `b`'s `sink` subscription on `topic` is subscribed on NATS.
async fn wait_ready(a: SocketAddr, b: SocketAddr, topic: &str) -> anyhow::Result<()> {
    let subject = format!("modhost.loadgen.bus.{topic}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (view_a, view_b) = (admin(a).await?, admin(b).await?);
        let sees = |view: &serde_json::Value| {
            view["peers"]
                .as_array()
                .is_some_and(|peers| peers.len() == 1)
        };
        let serving = view_a["serving"]
            .as_array()
            .is_some_and(|modules| modules.iter().any(|module| module == "bench"));
        let subscribed = view_b["subscriptions"]
            .as_array()
            .is_some_and(|subjects| subjects.iter().any(|one| one == subject.as_str()));
        if sees(&view_a) && sees(&view_b) && serving && subscribed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the nodes did not join within 30 s:\n{view_a}\n{view_b}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn received(addr: SocketAddr) -> anyhow::Result<u64> {
    let text = get_text(addr, http::Method::GET, "/m/sink/received").await?;
    text.split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("/m/sink/received answered {text:?}"))
}

/// One module → module run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Flow {
    /// Events `sink` counted per second, from the publish until the last one arrived.
    per_s: f64,
    /// Events `sink` counted, of those published.
    received: u64,
    /// Of those published: not sent to NATS (the node's outbound queue was full).
    not_bridged: u64,
}

/// `bench` on `publisher` publishes `count` events of `size` bytes on `topic`, each once
/// (`retry`: again while a local subscriber's mailbox is full); `sink` on `receiver` counts
/// them. Done when all arrived or none arrived for a second.
async fn flow(
    publisher: SocketAddr,
    receiver: SocketAddr,
    topic: &str,
    retry: bool,
    count: u64,
    size: usize,
) -> anyhow::Result<Flow> {
    let before = received(receiver).await?;
    let not_bridged_before = count_of(publisher, "not_bridged").await?;
    let started = Instant::now();
    let answer = get_text(
        publisher,
        http::Method::POST,
        &format!(
            "/m/bench/publish?topic={topic}&n={count}&size={size}&retry={}",
            u8::from(retry)
        ),
    )
    .await?;
    let published: u64 = answer
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if published != count {
        bail!("bench published {published} of {count} events");
    }
    let mut connection = Connection::open(receiver).await?;
    let target = Target::get(receiver, "/m/sink/received");
    let (mut got, mut last_change) = (0, Instant::now());
    loop {
        let (_, body) = connection.send(&target).await?;
        let now: u64 = String::from_utf8_lossy(&body)
            .split_whitespace()
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        let now = now.saturating_sub(before);
        if now != got {
            got = now;
            last_change = Instant::now();
        }
        if got >= count || last_change.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let not_bridged = count_of(publisher, "not_bridged")
        .await?
        .saturating_sub(not_bridged_before);
    Ok(Flow {
        per_s: got as f64 / (last_change - started).as_secs_f64(),
        received: got,
        not_bridged,
    })
}

async fn count_of(addr: SocketAddr, name: &str) -> anyhow::Result<u64> {
    Ok(counter(&admin(addr).await?, name))
}

/// The baseline: `count` messages of `size` bytes published on one connection and received on
/// another through the same server. Messages received per second until the last one arrived.
async fn raw_nats(url: &str, count: u64, size: usize) -> anyhow::Result<f64> {
    let publisher = async_nats::connect(url).await?;
    let receiver = async_nats::connect(url).await?;
    let mut subscriber = receiver.subscribe("loadgen.raw").await?;
    receiver.flush().await?;
    let receiving = tokio::spawn(async move {
        // Until the last message, or a second without one (the rest was dropped): the rate
        // runs to the last arrival, as for the modules, not to the end of that wait.
        let (mut got, mut last) = (0_u64, Instant::now());
        while got < count {
            match tokio::time::timeout(Duration::from_secs(1), subscriber.next()).await {
                Ok(Some(_)) => {
                    got += 1;
                    last = Instant::now();
                }
                _ => break,
            }
        }
        (got, last)
    });
    let payload = bytes::Bytes::from(vec![0x5a_u8; size]);
    let started = Instant::now();
    for _ in 0..count {
        publisher.publish("loadgen.raw", payload.clone()).await?;
    }
    publisher.flush().await?;
    let (got, done) = receiving.await?;
    if got < count {
        // The server drops messages to a consumer that falls behind (a slow consumer); the
        // rate counts what arrived.
        eprintln!("raw NATS delivered {got} of {count} messages");
    }
    Ok(got as f64 / (done - started).as_secs_f64())
}

/// Cross-node events against raw NATS, forwarded calls against local ones.
pub async fn cluster(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("cluster")?;
    let nats = Nats::start(&dir)?;
    let url = nats.url();
    // a: `bench` (publishes, answers calls) and `sink` for the one-node comparison;
    // b: `sink` only, so `/m/bench` on b is forwarded to a.
    let dir_a = node_dir(settings, &dir, "a", &url, &["bench", "sink"])?;
    let dir_b = node_dir(settings, &dir, "b", &url, &["sink"])?;
    let node_a = settings.modhost(&dir_a, "modhost.log").start()?;
    let node_b = settings.modhost(&dir_b, "modhost.log").start()?;
    let (a, b) = (node_a.addr, node_b.addr);
    for (addr, topic) in [(a, "bench.local"), (b, "bench.cross")] {
        get_text(
            addr,
            http::Method::POST,
            &format!("/m/sink/subscribe?topic={topic}"),
        )
        .await?;
    }
    wait_ready(a, b, "bench.cross").await?;

    let (count, size) = (settings.messages, settings.payload);
    let (mut raw, mut cross, mut local) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..settings.rounds {
        raw.push(raw_nats(&url, count, size).await?);
        cross.push(flow(a, b, "bench.cross", false, count, size).await?);
        raw.push(raw_nats(&url, count, size).await?);
        local.push(flow(a, a, "bench.local", true, count, size).await?);
        eprintln!(
            "cluster round {round}: raw NATS {:.0}/s, a → b {:.0}/s ({} of {count}), a → a {:.0}/s",
            raw[raw.len() - 1],
            cross[cross.len() - 1].per_s,
            cross[cross.len() - 1].received,
            local[local.len() - 1].per_s,
        );
    }

    let levels = [1_usize, 16];
    let mut local_calls: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut forwarded_calls: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    for round in 0..settings.rounds {
        for (index, &concurrency) in levels.iter().enumerate() {
            let here = settings
                .load(&Target::get(a, "/m/bench"), concurrency)
                .await?;
            let there = settings
                .load(&Target::get(b, "/m/bench"), concurrency)
                .await?;
            eprintln!(
                "cluster round {round} c={concurrency}: local p50 {} µs, forwarded p50 {} µs",
                here.p50_us, there.p50_us
            );
            local_calls[index].push(here);
            forwarded_calls[index].push(there);
        }
    }
    let view_a = admin(a).await?;
    let view_b = admin(b).await?;
    drop((node_a, node_b, nats));

    let raw_rate = median(&raw);
    let cross_rate = median(&cross.iter().map(|flow| flow.per_s).collect::<Vec<_>>());
    let local_rate = median(&local.iter().map(|flow| flow.per_s).collect::<Vec<_>>());
    let lost: u64 = cross
        .iter()
        .map(|run| count.saturating_sub(run.received))
        .sum();
    let not_bridged: u64 = cross.iter().map(|flow| flow.not_bridged).sum();
    let mut rows = vec![
        Row::new(
            "module A → module B on another node, msg/s (vs raw async-nats)",
            rate(cross_rate),
        )
        .baseline(rate(raw_rate), cross_rate / raw_rate)
        .target("≥ 70% of raw NATS", cross_rate / raw_rate >= 0.70),
        Row::new(
            "module A → module B on another node, msg/s (vs the same on one node)",
            rate(cross_rate),
        )
        .baseline(rate(local_rate), cross_rate / local_rate),
        Row::new(
            "cross-node events lost (all rounds): not bridged / full mailbox on B",
            format!("{not_bridged} / {}", lost.saturating_sub(not_bridged)),
        ),
    ];
    for (index, &concurrency) in levels.iter().enumerate() {
        let (there, here) = (&forwarded_calls[index], &local_calls[index]);
        rows.push(
            Row::new(
                format!("`/m/bench` forwarded b → a, c={concurrency}"),
                summary(there),
            )
            .baseline(summary(here), rps(there) / rps(here)),
        );
        rows.push(Row::new(
            format!("latency added by forwarding, c={concurrency}: p50 / p99"),
            format!(
                "{} / {}",
                micros(p50(there) - p50(here)),
                micros(p99(there) - p99(here))
            ),
        ));
    }
    let errors: u64 = forwarded_calls
        .iter()
        .chain(&local_calls)
        .map(|runs| failures(runs))
        .sum();
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "cluster".into(),
        title: format!(
            "two nodes and a nats-server on loopback: `bench` on a publishes {count} events of {size} bytes (once each) that `sink` on b counts, vs raw async-nats publish → subscribe of {count} × {size} bytes between two connections and vs `bench` → `sink` on a (retrying on a full mailbox); `/m/bench` on b (forwarded to a) vs on a"
        ),
        rows,
        runs: json!({
            "raw_nats_per_s": raw,
            "cross_node": cross,
            "one_node": local,
            "concurrency": levels,
            "local_calls": local_calls.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "forwarded_calls": forwarded_calls.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "admin_a": view_a,
            "admin_b": view_b,
        }),
    })
}
