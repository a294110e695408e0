//! The `swap` scenario: hot swaps under load, with and without the compiled-module cache, and
//! the time from a rename into the dist dir to the first answer of the new version; with
//! `--compare BIN`, an earlier binary measured in the same rounds.

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

/// One server's share of the measurement: warm and cold swap latencies in ms, and the load.
#[derive(Default)]
struct Measured {
    warm: Vec<f64>,
    cold: Vec<f64>,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    /// `/proc/loadavg`'s one-minute figure at the start of each round.
    load: Vec<f64>,
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One round on a fresh server: `warm` swaps between two versions loaded once before, then
/// `cold` swaps to versions never seen (`cold_base` onwards), all under c=16 load.
async fn round(
    settings: &Settings,
    binary: &Path,
    dir: &Path,
    warm_swaps: usize,
    cold_swaps: usize,
    cold_base: u32,
    into: &mut Measured,
) -> anyhow::Result<()> {
    const CONCURRENCY: usize = 16;
    let dist = dir.join("dist");
    let source = settings.read_module("bench.wasm")?;
    std::fs::write(dist.join("bench.wasm"), wasm::variant(&source, 0)?.0)?;
    let mut modhost = settings.modhost(dir, "modhost.log");
    modhost.binary = binary.to_path_buf();
    let modhost = modhost.start()?;
    into.load.push(load_average());
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
    for swap in 0..warm_swaps {
        let index = swap % 2;
        let latency = swap_once(&dist, &watch, &warm_versions[index], index as u32 + 1).await?;
        into.warm.push(latency.as_secs_f64() * 1000.0);
        tokio::time::sleep(pause).await;
    }
    // Cold: every version is new, so nothing is cached in memory or on disk.
    for swap in 0..cold_swaps {
        let version = cold_base + swap as u32;
        let bytes = wasm::variant(&source, version)?.0;
        let latency = swap_once(&dist, &watch, &bytes, version).await?;
        into.cold.push(latency.as_secs_f64() * 1000.0);
        tokio::time::sleep(pause).await;
    }
    watch.stop.store(true, Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    into.requests += watch.requests.load(Ordering::Relaxed);
    into.non_2xx += watch.non_2xx.load(Ordering::Relaxed);
    into.socket_errors += watch.socket_errors.load(Ordering::Relaxed);
    drop(modhost);
    Ok(())
}

/// `p50 / p90 / p99 / max` of swap latencies.
fn spread(values: &[f64]) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1} ms",
        percentile(values, 0.5),
        percentile(values, 0.9),
        percentile(values, 0.99),
        values.iter().copied().fold(0.0, f64::max)
    )
}

/// `swaps` hot swaps of `bench` per cache mode under c=16 load, with a warm and a cold
/// compiled-module cache, in `rounds` rounds on a fresh server each. With `--compare BIN` the
/// earlier binary gets the same rounds, interleaved (before, current, before, …).
pub async fn swap(settings: &Settings) -> anyhow::Result<Section> {
    let mut subjects: Vec<(&'static str, std::path::PathBuf)> = Vec::new();
    if let Some(before) = &settings.compare {
        subjects.push(("before", before.clone()));
    }
    subjects.push(("modhost", settings.modhost.clone()));
    let rounds = settings.rounds.max(1);
    let mut measured: Vec<Measured> = subjects.iter().map(|_| Measured::default()).collect();
    for round_index in 0..rounds {
        // This round's share of the swaps (the first rounds take the remainder).
        let share = settings.swaps / rounds + usize::from(round_index < settings.swaps % rounds);
        for ((label, binary), into) in subjects.iter().zip(measured.iter_mut()) {
            let dir = settings.scratch(&format!("swap-{label}-{round_index}"))?;
            let cold_base = 1000 + (round_index * settings.swaps) as u32;
            round(settings, binary, &dir, share, share, cold_base, into).await?;
        }
    }
    let mut rows = Vec::new();
    let mut runs = serde_json::Map::new();
    let current_warm_p99 = measured
        .last()
        .map(|last| percentile(&last.warm, 0.99))
        .unwrap_or(0.0);
    for ((label, _), result) in subjects.iter().zip(&measured) {
        eprintln!(
            "swap ({label}): warm {}, cold {}, {} requests, {} non-2xx, {} socket errors, load average {:?}",
            spread(&result.warm),
            spread(&result.cold),
            result.requests,
            result.non_2xx,
            result.socket_errors,
            result.load
        );
        let prefix = if subjects.len() > 1 {
            format!("{label}: ")
        } else {
            String::new()
        };
        let mut warm_row = Row::new(
            format!(
                "{prefix}swap latency, warm cache ({} swaps) p50 / p90 / p99 / max",
                result.warm.len()
            ),
            spread(&result.warm),
        );
        if *label == "modhost" {
            warm_row = warm_row.target("p99 ≤ 10 ms", current_warm_p99 <= 10.0);
        } else {
            let before = percentile(&result.warm, 0.99);
            if before > 0.0 {
                warm_row =
                    warm_row.baseline(format!("p99 {before:.1} ms"), current_warm_p99 / before);
            }
        }
        rows.push(warm_row);
        rows.push(Row::new(
            format!(
                "{prefix}swap latency, cold cache ({} swaps) p50 / p90 / p99 / max",
                result.cold.len()
            ),
            spread(&result.cold),
        ));
        rows.push(
            Row::new(
                format!("{prefix}non-2xx responses (of {} at c=16)", result.requests),
                result.non_2xx.to_string(),
            )
            .target("0", result.non_2xx == 0),
        );
        rows.push(
            Row::new(
                format!("{prefix}socket errors"),
                result.socket_errors.to_string(),
            )
            .target("0", result.socket_errors == 0),
        );
        rows.push(Row::new(
            format!("{prefix}load average (1 min) at each round's start"),
            result
                .load
                .iter()
                .map(|load| format!("{load:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        runs.insert(
            (*label).to_owned(),
            json!({
                "warm_ms": result.warm,
                "cold_ms": result.cold,
                "requests": result.requests,
                "non_2xx": result.non_2xx,
                "socket_errors": result.socket_errors,
                "load_average": result.load,
            }),
        );
    }
    Ok(Section {
        scenario: "swap".into(),
        title: "hot swap under load: rename a new `bench.wasm` into dist → first response from the new version, c=16 on `/m/bench/version`".into(),
        rows,
        runs: serde_json::Value::Object(runs),
    })
}
