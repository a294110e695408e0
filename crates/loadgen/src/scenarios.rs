//! The scenarios of `cargo xtask bench` (docs/PERFORMANCE.md). Each runs modhost and its
//! baseline interleaved (A B A B ...) and returns a [`Section`] of medians and ratios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde_json::json;

use crate::load::{self, Connection, LoadResult, Target};
use crate::process::{self, Modhost, Server};
use crate::stats::{Row, Section, median, micros, percentile, rate};
use crate::wasm;

/// Every scenario, in the order they run.
pub const ALL: &[&str] = &[
    "bench",
    "users",
    "swap",
    "bus",
    "coldstart",
    "devloop",
    "state",
    "outbound",
    "grants",
];

/// How long and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `modhost` binary under test.
    pub modhost: PathBuf,
    /// The workspace root (for `modules/`).
    pub root: PathBuf,
    /// Scratch space (dist dirs, caches, logs).
    pub work: PathBuf,
    /// A B rounds per measurement.
    pub rounds: usize,
    /// Measured time of one load run.
    pub seconds: Duration,
    /// Unmeasured warm-up before each load run.
    pub warmup: Duration,
    /// Hot swaps per cache mode.
    pub swaps: usize,
    /// Modules for the cold-start and memory scenario.
    pub modules: usize,
    /// Messages per bus run.
    pub messages: u64,
    /// Payload bytes per bus message.
    pub payload: usize,
}

const AUTH: (&str, &str) = ("authorization", "Bearer letmein");

impl Settings {
    pub(crate) fn dist(&self, name: &str) -> PathBuf {
        self.root.join("modules/dist").join(name)
    }

    pub(crate) fn read_module(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.dist(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// A fresh scenario directory with an empty `dist/`.
    pub(crate) fn scratch(&self, scenario: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(scenario);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("dist"))?;
        Ok(dir)
    }

    pub(crate) fn modhost(&self, dir: &Path, log: &str) -> Modhost {
        Modhost {
            binary: self.modhost.clone(),
            command: "serve",
            root: dir.to_path_buf(),
            dist_dir: dir.join("dist"),
            modules_dir: dir.join("modules"),
            log: dir.join(log),
            start_timeout: Duration::from_secs(120),
        }
    }

    pub(crate) async fn load(
        &self,
        target: &Target,
        concurrency: usize,
    ) -> anyhow::Result<LoadResult> {
        load::run(target, concurrency, self.warmup, self.seconds).await
    }
}

pub(crate) fn runs_json(runs: &[LoadResult]) -> serde_json::Value {
    serde_json::to_value(runs).unwrap_or_default()
}

pub(crate) fn rps(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.rps).collect::<Vec<_>>())
}

fn p50(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.p50_us as f64).collect::<Vec<_>>())
}

/// `req/s (p50 …, p99 …)` of a set of runs (medians).
pub(crate) fn summary(runs: &[LoadResult]) -> String {
    format!(
        "{} (p50 {}, p99 {})",
        rate(rps(runs)),
        micros(p50(runs)),
        micros(p99(runs))
    )
}

fn p99(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>())
}

pub(crate) fn failures(runs: &[LoadResult]) -> u64 {
    runs.iter().map(|run| run.non_2xx + run.socket_errors).sum()
}

/// `/m/bench` against a bare hyper server at c = 1, 16, 64.
pub async fn bench(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("bench")?;
    std::fs::write(
        dir.join("dist/bench.wasm"),
        settings.read_module("bench.wasm")?,
    )?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let hello = process::baseline("hello")?;
    let levels = [1_usize, 16, 64];
    let mut modhost_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut hello_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    for round in 0..settings.rounds {
        for (index, &concurrency) in levels.iter().enumerate() {
            let a = settings
                .load(&Target::get(modhost.addr, "/m/bench"), concurrency)
                .await?;
            let b = settings
                .load(&Target::get(hello.addr, "/m/bench"), concurrency)
                .await?;
            eprintln!(
                "bench round {round} c={concurrency}: modhost {:.0} req/s p99 {} µs, hyper {:.0} req/s p99 {} µs",
                a.rps, a.p99_us, b.rps, b.p99_us
            );
            modhost_runs[index].push(a);
            hello_runs[index].push(b);
        }
    }
    let mut rows = Vec::new();
    for (index, &concurrency) in levels.iter().enumerate() {
        let (a, b) = (&modhost_runs[index], &hello_runs[index]);
        let ratio = rps(a) / rps(b);
        let mut row =
            Row::new(format!("req/s c={concurrency}"), summary(a)).baseline(summary(b), ratio);
        if concurrency == 64 {
            row = row.target("≥ 70% of hyper", ratio >= 0.70);
        }
        rows.push(row);
    }
    let errors: u64 = modhost_runs.iter().map(|runs| failures(runs)).sum();
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "bench".into(),
        title: "`GET /m/bench` (trivial handler) vs a bare hyper \"ok\" server, same process setup"
            .into(),
        rows,
        runs: json!({
            "concurrency": levels,
            "modhost": modhost_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "hyper": hello_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "modhost_rss_bytes": modhost.rss_bytes().ok(),
        }),
    })
}

async fn seed_users(addr: std::net::SocketAddr, users: usize) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr).await?;
    for index in 0..users {
        let mut target = Target::get(addr, "/m/users").header(AUTH.0, AUTH.1);
        target.method = http::Method::POST;
        target
            .headers
            .push(("content-type".into(), "application/json".into()));
        target.body = Bytes::from(format!(
            r#"{{"name":"User Number {index}","email":"user{index}@example.org"}}"#
        ));
        let (status, body) = connection.send(&target).await?;
        if status != 201 {
            bail!("seeding users: {status} {}", String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

/// `GET /m/users` (serde_json in the module) against the same work in native Rust.
pub async fn users(settings: &Settings) -> anyhow::Result<Section> {
    const SEEDED: usize = 20;
    let dir = settings.scratch("users")?;
    std::fs::write(
        dir.join("dist/users.wasm"),
        settings.read_module("users.wasm")?,
    )?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let native = process::baseline("users")?;
    seed_users(modhost.addr, SEEDED).await?;
    seed_users(native.addr, SEEDED).await?;
    let list_a = load::once(&Target::get(modhost.addr, "/m/users").header(AUTH.0, AUTH.1)).await?;
    let list_b = load::once(&Target::get(native.addr, "/m/users")).await?;
    if list_a.1 != list_b.1 {
        bail!(
            "the native list differs from the module's:\n{}\n{}",
            String::from_utf8_lossy(&list_a.1),
            String::from_utf8_lossy(&list_b.1)
        );
    }
    let levels = [1_usize, 16];
    let mut modhost_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut native_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    for round in 0..settings.rounds {
        for (index, &concurrency) in levels.iter().enumerate() {
            let a = settings
                .load(
                    &Target::get(modhost.addr, "/m/users").header(AUTH.0, AUTH.1),
                    concurrency,
                )
                .await?;
            let b = settings
                .load(
                    &Target::get(native.addr, "/m/users").header(AUTH.0, AUTH.1),
                    concurrency,
                )
                .await?;
            eprintln!(
                "users round {round} c={concurrency}: modhost {:.0} req/s, native {:.0} req/s",
                a.rps, b.rps
            );
            modhost_runs[index].push(a);
            native_runs[index].push(b);
        }
    }
    let mut rows = Vec::new();
    for (index, &concurrency) in levels.iter().enumerate() {
        let (a, b) = (&modhost_runs[index], &native_runs[index]);
        rows.push(
            Row::new(format!("req/s c={concurrency}"), summary(a))
                .baseline(summary(b), rps(a) / rps(b)),
        );
    }
    let errors: u64 = modhost_runs.iter().map(|runs| failures(runs)).sum();
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "users".into(),
        title: format!(
            "`GET /m/users` listing {SEEDED} users ({} bytes of JSON; the module reads them from its key-value store, one list and {SEEDED} gets, and serializes with serde_json) vs the same serde work on an in-memory map in native Rust behind hyper",
            list_a.1.len()
        ),
        rows,
        runs: json!({
            "concurrency": levels,
            "modhost": modhost_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "native": native_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
        }),
    })
}

/// What the load tasks of the swap scenario watch for.
struct SwapWatch {
    /// The version whose first response is awaited (`u32::MAX`: none).
    wanted: AtomicU32,
    /// Set by the first task that sees it.
    seen: AtomicBool,
    /// Nanoseconds after `epoch` when it was seen.
    seen_at: AtomicU64,
    epoch: Instant,
    stop: AtomicBool,
    requests: AtomicU64,
    non_2xx: AtomicU64,
    socket_errors: AtomicU64,
}

fn version_of(body: &[u8]) -> Option<u32> {
    let digits = body.strip_prefix(b"modhost-bench-version-")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

async fn swap_load(target: Target, watch: Arc<SwapWatch>) -> anyhow::Result<()> {
    let mut connection = Connection::open(target.addr).await?;
    while !watch.stop.load(Ordering::Relaxed) {
        match connection.send(&target).await {
            Ok((status, body)) => {
                watch.requests.fetch_add(1, Ordering::Relaxed);
                if !(200..300).contains(&status) {
                    watch.non_2xx.fetch_add(1, Ordering::Relaxed);
                } else if version_of(&body) == Some(watch.wanted.load(Ordering::Acquire))
                    && !watch.seen.swap(true, Ordering::AcqRel)
                {
                    let nanos = u64::try_from(watch.epoch.elapsed().as_nanos()).unwrap_or(0);
                    watch.seen_at.store(nanos, Ordering::Release);
                }
            }
            Err(_) => {
                watch.socket_errors.fetch_add(1, Ordering::Relaxed);
                connection = Connection::open(target.addr).await?;
            }
        }
    }
    Ok(())
}

/// Publishes `bytes` as `bench.wasm` and waits for the first response of `version`.
async fn swap_once(
    dist: &Path,
    watch: &SwapWatch,
    bytes: &[u8],
    version: u32,
) -> anyhow::Result<Duration> {
    watch.seen.store(false, Ordering::Release);
    watch.wanted.store(version, Ordering::Release);
    let temp = dist.join(".bench.wasm.tmp");
    std::fs::write(&temp, bytes)?;
    let renamed = watch.epoch.elapsed();
    std::fs::rename(&temp, dist.join("bench.wasm"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !watch.seen.load(Ordering::Acquire) {
        if Instant::now() > deadline {
            bail!("version {version} was not served within 20 s of its rename");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let seen = Duration::from_nanos(watch.seen_at.load(Ordering::Acquire));
    Ok(seen.saturating_sub(renamed))
}

/// 100 hot swaps of `bench` under c=16 load, with a warm and a cold compiled-module cache.
pub async fn swap(settings: &Settings) -> anyhow::Result<Section> {
    const CONCURRENCY: usize = 16;
    let dir = settings.scratch("swap")?;
    let dist = dir.join("dist");
    let source = settings.read_module("bench.wasm")?;
    std::fs::write(dist.join("bench.wasm"), wasm::variant(&source, 0)?.0)?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let watch = Arc::new(SwapWatch {
        wanted: AtomicU32::new(u32::MAX),
        seen: AtomicBool::new(false),
        seen_at: AtomicU64::new(0),
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        non_2xx: AtomicU64::new(0),
        socket_errors: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        tasks.spawn(swap_load(
            Target::get(modhost.addr, "/m/bench/version"),
            watch.clone(),
        ));
    }
    let pause = Duration::from_millis(20);
    // Warm: two versions alternate; each was loaded (and cached) once before measuring.
    let warm_versions = [wasm::variant(&source, 1)?.0, wasm::variant(&source, 2)?.0];
    for (index, bytes) in warm_versions.iter().enumerate() {
        swap_once(&dist, &watch, bytes, index as u32 + 1).await?;
        tokio::time::sleep(pause).await;
    }
    let mut warm = Vec::new();
    for swap in 0..settings.swaps {
        let index = swap % 2;
        let latency = swap_once(&dist, &watch, &warm_versions[index], index as u32 + 1).await?;
        warm.push(latency.as_secs_f64() * 1000.0);
        tokio::time::sleep(pause).await;
    }
    // Cold: every version is new, so nothing is cached in memory or on disk.
    let mut cold = Vec::new();
    for swap in 0..settings.swaps {
        let version = 1000 + swap as u32;
        let bytes = wasm::variant(&source, version)?.0;
        let latency = swap_once(&dist, &watch, &bytes, version).await?;
        cold.push(latency.as_secs_f64() * 1000.0);
        tokio::time::sleep(pause).await;
    }
    watch.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let requests = watch.requests.load(Ordering::Relaxed);
    let non_2xx = watch.non_2xx.load(Ordering::Relaxed);
    let socket_errors = watch.socket_errors.load(Ordering::Relaxed);
    eprintln!(
        "swap: warm p50 {:.1} ms p99 {:.1} ms, cold p50 {:.1} ms p99 {:.1} ms, {requests} requests, {non_2xx} non-2xx, {socket_errors} socket errors",
        percentile(&warm, 0.5),
        percentile(&warm, 0.99),
        percentile(&cold, 0.5),
        percentile(&cold, 0.99)
    );
    let ms = |value: f64| format!("{value:.1} ms");
    let rows = vec![
        Row::new(
            format!("swap latency, warm cache ({} swaps) p50 / p99", warm.len()),
            format!(
                "{} / {}",
                ms(percentile(&warm, 0.5)),
                ms(percentile(&warm, 0.99))
            ),
        )
        .target("p99 ≤ 20 ms", percentile(&warm, 0.99) <= 20.0),
        Row::new(
            format!("swap latency, cold cache ({} swaps) p50 / p99", cold.len()),
            format!(
                "{} / {}",
                ms(percentile(&cold, 0.5)),
                ms(percentile(&cold, 0.99))
            ),
        ),
        Row::new(
            format!("non-2xx responses (of {requests} at c={CONCURRENCY})"),
            non_2xx.to_string(),
        )
        .target("0", non_2xx == 0),
        Row::new("socket errors", socket_errors.to_string()).target("0", socket_errors == 0),
    ];
    Ok(Section {
        scenario: "swap".into(),
        title: "hot swap under load: rename a new `bench.wasm` into dist → first response from the new version, c=16 on `/m/bench/version`".into(),
        rows,
        runs: json!({
            "warm_ms": warm,
            "cold_ms": cold,
            "requests": requests,
            "non_2xx": non_2xx,
            "socket_errors": socket_errors,
        }),
    })
}

/// `GET path` → the body as text, or an error naming the status.
async fn get_text(
    addr: std::net::SocketAddr,
    method: http::Method,
    path: &str,
) -> anyhow::Result<String> {
    let mut target = Target::get(addr, path);
    target.method = method;
    let (status, body) = load::once(&target).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if !(200..300).contains(&status) {
        bail!("{path}: {status} {text}");
    }
    Ok(text)
}

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

/// The host publishes `count` events (retrying while the mailbox is full); messages per
/// second until the module has seen them all.
async fn host_to_module(
    server: &server::ServerHandle,
    count: u64,
    size: usize,
) -> anyhow::Result<(f64, u64)> {
    let addr = server.addr();
    let before = received(addr, "bench_b").await?;
    let bus = server.bus().clone();
    let started = Instant::now();
    let publisher = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let payload = vec![0x5a_u8; size];
        let mut retries = 0_u64;
        let mut sent = 0;
        while sent < count {
            let report = bus.publish(binary::Message::event("bench.host", payload.clone()))?;
            if report.delivered > 0 {
                sent += 1;
            } else {
                retries += 1;
                std::thread::yield_now();
            }
        }
        Ok(retries)
    });
    let retries = publisher.await??;
    let done = wait_received(addr, "bench_b", before + count).await?;
    Ok((count as f64 / (done - started).as_secs_f64(), retries))
}

/// Module A publishes `count` events in one call (retrying while B's mailbox is full);
/// messages per second until B has seen them all.
async fn module_to_module(
    addr: std::net::SocketAddr,
    count: u64,
    size: usize,
) -> anyhow::Result<(f64, u64)> {
    let before = received(addr, "bench_b").await?;
    let started = Instant::now();
    let answer = get_text(
        addr,
        http::Method::POST,
        &format!("/m/bench_a/publish?topic=bench.ab&n={count}&size={size}"),
    )
    .await?;
    let mut words = answer.split_whitespace();
    let published: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let retries: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    if published != count {
        bail!("bench_a published {published} of {count}");
    }
    let done = wait_received(addr, "bench_b", before + count).await?;
    Ok((count as f64 / (done - started).as_secs_f64(), retries))
}

/// Host → module and module → module over the bus, against a raw crossbeam channel.
pub async fn bus(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("bus")?;
    let source = settings.read_module("bench.wasm")?;
    for name in ["bench_a", "bench_b"] {
        std::fs::write(dir.join(format!("dist/{name}.wasm")), &source)?;
    }
    let mut config = server::ServerConfig::at(&dir);
    config.dist_dir = dir.join("dist");
    config.listen = "127.0.0.1:0".parse()?;
    config.watch_dist = false;
    // Long enough for module A to publish every message in one `handle` call.
    config.default_module.limits.handle_deadline = Duration::from_secs(60);
    let server = server::ServerBuilder::new(config).start().await?;
    let addr = server.addr();
    for topic in ["bench.host", "bench.ab"] {
        get_text(
            addr,
            http::Method::POST,
            &format!("/m/bench_b/subscribe?topic={topic}"),
        )
        .await?;
    }
    let (count, size) = (settings.messages, settings.payload);
    let mut raw = Vec::new();
    let mut host = Vec::new();
    let mut modules = Vec::new();
    let mut retries = Vec::new();
    for round in 0..settings.rounds {
        raw.push(tokio::task::spawn_blocking(move || raw_channel(count, size)).await??);
        let (host_rate, host_retries) = host_to_module(&server, count, size).await?;
        host.push(host_rate);
        raw.push(tokio::task::spawn_blocking(move || raw_channel(count, size)).await??);
        let (module_rate, module_retries) = module_to_module(addr, count, size).await?;
        modules.push(module_rate);
        retries.push((host_retries, module_retries));
        eprintln!(
            "bus round {round}: raw {:.0}/s, host→module {host_rate:.0}/s, module→module {module_rate:.0}/s",
            raw[raw.len() - 1]
        );
    }
    server.shutdown().await;
    let raw_rate = median(&raw);
    let rows = vec![
        Row::new(
            "host publish → module `on_message`, msg/s",
            rate(median(&host)),
        )
        .baseline(rate(raw_rate), median(&host) / raw_rate),
        Row::new("module A → module B, msg/s", rate(median(&modules)))
            .baseline(rate(raw_rate), median(&modules) / raw_rate)
            .target("≥ 200k msg/s", median(&modules) >= 200_000.0),
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
            "module_to_module_per_s": modules,
            "full_mailbox_retries": retries,
        }),
    })
}

/// Startup with `modules` modules, cold and warm cache; resident memory per idle module.
pub async fn coldstart(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("coldstart")?;
    let empty = settings.scratch("coldstart-empty")?;
    let source = settings.read_module("bench.wasm")?;
    for index in 0..settings.modules {
        // Distinct bytes per module, so the cold start compiles every one of them.
        let bytes = wasm::variant(&source, 500_000 + index as u32)?.0;
        std::fs::write(dir.join(format!("dist/bench{index:02}.wasm")), bytes)?;
    }
    let linear = wasm::initial_memory_bytes(&source)?;
    let settle = Duration::from_millis(500);
    let (mut cold, mut warm, mut rss_loaded, mut rss_empty) = (vec![], vec![], vec![], vec![]);
    for round in 0..settings.rounds {
        let cache = dir.join("dist/.cache");
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        let started = settings.modhost(&dir, "cold.log").start()?;
        check_loaded(&started, settings.modules).await?;
        cold.push(started.startup.as_secs_f64() * 1000.0);
        drop(started);
        let started = settings.modhost(&dir, "warm.log").start()?;
        check_loaded(&started, settings.modules).await?;
        warm.push(started.startup.as_secs_f64() * 1000.0);
        tokio::time::sleep(settle).await;
        rss_loaded.push(started.rss_bytes()? as f64);
        drop(started);
        let bare = settings.modhost(&empty, "empty.log").start()?;
        get_text(bare.addr, http::Method::GET, "/healthz").await?;
        tokio::time::sleep(settle).await;
        rss_empty.push(bare.rss_bytes()? as f64);
        drop(bare);
        eprintln!(
            "coldstart round {round}: cold {:.0} ms, warm {:.0} ms, RSS {:.1} MiB with {} modules, {:.1} MiB without",
            cold[round],
            warm[round],
            rss_loaded[round] / 1048576.0,
            settings.modules,
            rss_empty[round] / 1048576.0
        );
    }
    let per_module = (median(&rss_loaded) - median(&rss_empty)) / settings.modules as f64;
    let beyond = per_module - linear as f64;
    let mib = |bytes: f64| format!("{:.2} MiB", bytes / 1048576.0);
    let n = settings.modules;
    let rows = vec![
        Row::new(
            format!("start with {n} modules, warm cache"),
            format!("{:.0} ms", median(&warm)),
        )
        .baseline(
            format!("{:.0} ms cold", median(&cold)),
            median(&warm) / median(&cold),
        )
        .target("≤ 500 ms", median(&warm) <= 500.0),
        Row::new(
            format!("start with {n} modules, cold cache"),
            format!("{:.0} ms", median(&cold)),
        ),
        Row::new(
            format!("RSS with {n} idle modules / without"),
            format!("{} / {}", mib(median(&rss_loaded)), mib(median(&rss_empty))),
        ),
        Row::new(
            "RSS per idle module, everything counted (declared linear memory)",
            format!("{} ({})", mib(per_module), mib(linear as f64)),
        ),
        // Untouched linear memory is not resident, so the difference can be negative: then
        // the whole per-module figure is within the target.
        Row::new(
            "RSS per idle module beyond its declared linear memory",
            mib(beyond.max(0.0)),
        )
        .target("≤ 1 MiB", beyond <= 1048576.0),
    ];
    Ok(Section {
        scenario: "coldstart".into(),
        title: format!(
            "`modhost serve` with {n} distinct copies of `bench.wasm`: spawn → listening (every module loaded and initialised), compiled-module cache cold (deleted) vs warm; `VmRSS` 0.5 s later vs modhost with an empty dist"
        ),
        rows,
        runs: json!({
            "cold_ms": cold,
            "warm_ms": warm,
            "rss_loaded_bytes": rss_loaded,
            "rss_empty_bytes": rss_empty,
            "linear_memory_bytes": linear,
        }),
    })
}

async fn check_loaded(server: &Server, modules: usize) -> anyhow::Result<()> {
    let status = get_text(server.addr, http::Method::GET, "/_admin/modules").await?;
    let value: serde_json::Value = serde_json::from_str(&status)?;
    let loaded = value
        .as_array()
        .map(|modules| {
            modules
                .iter()
                .filter(|module| !module["version"].is_null())
                .count()
        })
        .unwrap_or(0);
    if loaded != modules {
        bail!("{loaded} of {modules} modules loaded");
    }
    Ok(())
}

/// Restores a source file when dropped.
struct Restore {
    path: PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.original);
    }
}

async fn wait_version(
    addr: std::net::SocketAddr,
    version: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let target = Target::get(addr, "/m/users/version").header(AUTH.0, AUTH.1);
    let mut connection = Connection::open(addr).await?;
    loop {
        match connection.send(&target).await {
            Ok((_, body)) if body.as_ref() == version.as_bytes() => return Ok(Instant::now()),
            Ok(_) => {}
            Err(_) => connection = Connection::open(addr).await?,
        }
        if Instant::now() > deadline {
            bail!("version {version:?} not served within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `modhost dev`: edit one line of `modules/users/wasm/src/lib.rs` → the new answer served.
pub async fn devloop(settings: &Settings) -> anyhow::Result<Section> {
    const LINE: &str = "const VERSION: &str = \"1\";";
    let dir = settings.scratch("devloop")?;
    let source = settings.root.join("modules/users/wasm/src/lib.rs");
    let original = std::fs::read_to_string(&source)?;
    if !original.contains(LINE) {
        bail!("{} has no line {LINE:?}", source.display());
    }
    let modhost = Modhost {
        binary: settings.modhost.clone(),
        command: "dev",
        root: settings.root.clone(),
        dist_dir: dir.join("dist"),
        modules_dir: settings.root.join("modules"),
        log: dir.join("modhost.log"),
        start_timeout: Duration::from_secs(600),
    }
    .start()?;
    let restore = Restore {
        path: source.clone(),
        original: original.clone(),
    };
    wait_version(modhost.addr, "1", Duration::from_secs(30)).await?;
    let mut loops = Vec::new();
    for round in 0..settings.rounds {
        let version = format!("bench-{round}");
        let edited = original.replacen(LINE, &format!("const VERSION: &str = \"{version}\";"), 1);
        let saved = Instant::now();
        std::fs::write(&source, edited)?;
        let served = wait_version(modhost.addr, &version, Duration::from_secs(120)).await?;
        loops.push((served - saved).as_secs_f64() * 1000.0);
        eprintln!("devloop round {round}: {:.0} ms", loops[round]);
        // Let the watcher settle before the next edit.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(restore);
    wait_version(modhost.addr, "1", Duration::from_secs(120)).await?;
    let rows = vec![
        Row::new(
            format!("save → new response ({} edits) median / max", loops.len()),
            format!(
                "{:.0} ms / {:.0} ms",
                median(&loops),
                loops.iter().copied().fold(0.0, f64::max)
            ),
        )
        .target("≤ 2 s", loops.iter().all(|ms| *ms <= 2000.0)),
    ];
    Ok(Section {
        scenario: "devloop".into(),
        title: "`modhost dev`: rewrite `const VERSION` in `modules/users/wasm/src/lib.rs` → `GET /m/users/version` answers the new value (hot profile rebuild, publish, swap)".into(),
        rows,
        runs: json!({ "loop_ms": loops }),
    })
}
