//! The `swap` scenario: hot swaps under load, with and without the compiled-module cache, and
//! the time from a rename into the dist dir to the first answer of the new version.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::load::{Connection, Target};
use crate::stats::{Row, Section, percentile};
use crate::wasm;

use super::Settings;

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
