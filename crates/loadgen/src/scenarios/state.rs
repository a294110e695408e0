//! The `state` scenario: key-value reads and writes through a module (`/m/bench/kv/{key}`,
//! the `kv` import, the redb file) against the same operations on a `state::RedbStore` called
//! directly in this process, for both durabilities, interleaved.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;

use super::Settings;
use crate::load::{LoadResult, Target};
use crate::stats::{Row, Section, median, micros, rate};

/// Keys seeded before measuring, and the value size.
const KEYS: usize = 100;
const VALUE_BYTES: usize = 64;

/// One measured loop of direct store calls: calls per second and latency percentiles.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Direct {
    ops: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Calls `op` in a loop for `seconds` (after `warmup`), one thread, like a c=1 client.
fn direct(
    warmup: Duration,
    seconds: Duration,
    mut op: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<Direct> {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).context("creating a histogram")?;
    let warm_until = Instant::now() + warmup;
    let mut turn = 0_u64;
    while Instant::now() < warm_until {
        op(turn)?;
        turn += 1;
    }
    let started = Instant::now();
    let mut calls = 0_u64;
    while started.elapsed() < seconds {
        let call = Instant::now();
        op(turn)?;
        turn += 1;
        calls += 1;
        let _ = histogram.record(
            u64::try_from(call.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }
    Ok(Direct {
        ops: calls as f64 / started.elapsed().as_secs_f64(),
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
    })
}

fn key(turn: u64) -> String {
    format!("k{}", turn % KEYS as u64)
}

fn summary_direct(runs: &[Direct]) -> String {
    let ops = median(&runs.iter().map(|run| run.ops).collect::<Vec<_>>());
    let p50 = median(&runs.iter().map(|run| run.p50_us as f64).collect::<Vec<_>>());
    let p99 = median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>());
    format!("{} (p50 {}, p99 {})", rate(ops), micros(p50), micros(p99))
}

fn direct_ops(runs: &[Direct]) -> f64 {
    median(&runs.iter().map(|run| run.ops).collect::<Vec<_>>())
}

fn put(addr: std::net::SocketAddr, key: &str) -> Target {
    Target {
        method: http::Method::PUT,
        body: Bytes::from(vec![b'v'; VALUE_BYTES]),
        ..Target::get(addr, &format!("/m/bench/kv/{key}"))
    }
}

/// Module round trips (c=1 and c=16) against direct `RedbStore` calls, per durability.
pub async fn state(settings: &Settings) -> anyhow::Result<Section> {
    let mut rows = Vec::new();
    let mut report = serde_json::Map::new();
    let mut errors = 0_u64;
    for (label, durability) in [
        ("immediate", ::state::Durability::Immediate),
        ("eventual", ::state::Durability::Eventual),
    ] {
        let dir = settings.scratch(&format!("state-{label}"))?;
        std::fs::write(
            dir.join("dist/bench.wasm"),
            settings.read_module("bench.wasm")?,
        )?;
        std::fs::write(
            dir.join("modhost.toml"),
            format!("[state]\ndurability = \"{label}\"\n"),
        )?;
        let modhost = settings.modhost(&dir, "modhost.log").start()?;
        for index in 0..KEYS {
            let (status, _) = crate::load::once(&put(modhost.addr, &key(index as u64))).await?;
            anyhow::ensure!(status == 204, "seeding key {index}: status {status}");
        }
        let store = ::state::RedbStore::open(
            &dir.join("direct.redb"),
            ::state::Config {
                durability,
                ..::state::Config::default()
            },
        )?;
        let namespace = ::state::Namespace::new("module/bench");
        let value = vec![b'v'; VALUE_BYTES];
        for index in 0..KEYS {
            ::state::Store::set(&store, &namespace, key(index as u64).as_bytes(), &value)?;
        }

        let levels = [1_usize, 16];
        let mut module_get: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
        let mut module_set: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
        let mut direct_get = Vec::new();
        let mut direct_set = Vec::new();
        for round in 0..settings.rounds {
            for (index, &concurrency) in levels.iter().enumerate() {
                let get = settings
                    .load(&Target::get(modhost.addr, "/m/bench/kv/k7"), concurrency)
                    .await?;
                let set = settings.load(&put(modhost.addr, "k7"), concurrency).await?;
                eprintln!(
                    "state {label} round {round} c={concurrency}: module get {:.0}/s, set {:.0}/s",
                    get.rps, set.rps
                );
                module_get[index].push(get);
                module_set[index].push(set);
            }
            let get = direct(settings.warmup, settings.seconds, |turn| {
                ::state::Store::get(&store, &namespace, key(turn).as_bytes())?;
                Ok(())
            })?;
            let set = direct(settings.warmup, settings.seconds, |turn| {
                ::state::Store::set(&store, &namespace, key(turn).as_bytes(), &value)?;
                Ok(())
            })?;
            eprintln!(
                "state {label} round {round}: redb get {:.0}/s, set {:.0}/s",
                get.ops, set.ops
            );
            direct_get.push(get);
            direct_set.push(set);
        }
        let rps = |runs: &[LoadResult]| median(&runs.iter().map(|run| run.rps).collect::<Vec<_>>());
        let summary = |runs: &[LoadResult]| {
            let p50 = median(&runs.iter().map(|run| run.p50_us as f64).collect::<Vec<_>>());
            let p99 = median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>());
            format!(
                "{} (p50 {}, p99 {})",
                rate(rps(runs)),
                micros(p50),
                micros(p99)
            )
        };
        for (op, module_runs, direct_runs) in [
            ("get", &module_get, &direct_get),
            ("set", &module_set, &direct_set),
        ] {
            rows.push(
                Row::new(format!("{label}: {op} c=1"), summary(&module_runs[0])).baseline(
                    summary_direct(direct_runs),
                    rps(&module_runs[0]) / direct_ops(direct_runs),
                ),
            );
            rows.push(Row::new(
                format!("{label}: {op} c=16"),
                summary(&module_runs[1]),
            ));
        }
        errors += module_get
            .iter()
            .chain(&module_set)
            .flatten()
            .map(|run| run.non_2xx + run.socket_errors)
            .sum::<u64>();
        report.insert(
            label.to_owned(),
            json!({
                "concurrency": levels,
                "module_get": module_get,
                "module_set": module_set,
                "redb_get": direct_get,
                "redb_set": direct_set,
            }),
        );
    }
    let (handoff_rows, handoff_report, handoff_errors) = handoff(settings).await?;
    rows.extend(handoff_rows);
    report.insert("handoff".to_owned(), handoff_report);
    errors += handoff_errors;
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "state".into(),
        title: format!(
            "key-value get/set of {VALUE_BYTES}-byte values through `/m/bench/kv/{{key}}` (HTTP → module → `kv` import → redb) vs the same calls on a `state::RedbStore` in-process, one thread; per durability"
        ),
        rows,
        runs: serde_json::Value::Object(report),
    })
}

/// `counter` (which hands its in-memory count over with snapshot/restore) swapped repeatedly
/// while 16 clients increment it: the hold window of each swap as `/_admin/modules` reports
/// it, and the failed requests (there must be none).
async fn handoff(settings: &Settings) -> anyhow::Result<(Vec<Row>, serde_json::Value, u64)> {
    const CONCURRENCY: usize = 16;
    let dir = settings.scratch("state-handoff")?;
    let dist = dir.join("dist");
    let counter = settings.read_module("counter.wasm")?;
    std::fs::write(dist.join("counter.wasm"), &counter)?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let target = Target {
        method: http::Method::POST,
        ..Target::get(modhost.addr, "/m/counter")
    };
    let swaps = settings.swaps.clamp(1, 50);
    let load_for = Duration::from_secs(20).max(settings.seconds);
    let load = tokio::spawn({
        let target = target.clone();
        let warmup = settings.warmup;
        async move { crate::load::run(&target, CONCURRENCY, warmup, load_for).await }
    });
    tokio::time::sleep(settings.warmup).await;
    let mut held_ms = Vec::new();
    let started = Instant::now();
    for index in 1..=swaps {
        if started.elapsed() + Duration::from_secs(1) > load_for {
            break;
        }
        // The same code with a custom section naming the swap: a new version each time.
        let mut bytes = counter.clone();
        bytes.extend([0, 6, 1, b'v']);
        bytes.extend((index as u32).to_le_bytes());
        let temp = dist.join(".counter.wasm.tmp");
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, dist.join("counter.wasm"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) =
                crate::load::once(&Target::get(modhost.addr, "/_admin/modules")).await?;
            let modules: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
            let status = modules
                .iter()
                .find(|module| module["name"] == "counter")
                .context("counter is not in /_admin/modules")?;
            if status["swaps"].as_u64() == Some(index as u64) {
                let held = status["last_swap"]["held_ms"]
                    .as_f64()
                    .context("the swap reported no hold")?;
                held_ms.push(held);
                break;
            }
            anyhow::ensure!(
                status["last_rejected"].is_null(),
                "swap {index} was refused: {}",
                status["last_rejected"]
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "swap {index} did not happen in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let result = load.await??;
    eprintln!(
        "state handoff: {} swaps under load, {:.0} req/s, {} failed",
        held_ms.len(),
        result.rps,
        result.non_2xx + result.socket_errors
    );
    anyhow::ensure!(!held_ms.is_empty(), "no swap happened under load");
    let p50 = crate::stats::percentile(&held_ms, 0.50);
    let p99 = crate::stats::percentile(&held_ms, 0.99);
    let rows = vec![
        Row::new(
            format!(
                "snapshot/restore hold, {} swaps at c={CONCURRENCY}",
                held_ms.len()
            ),
            format!(
                "p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
                held_ms.iter().copied().fold(0.0, f64::max)
            ),
        ),
        Row::new(
            "POST /m/counter during the swaps",
            format!("{} ({} requests)", rate(result.rps), result.requests),
        ),
    ];
    let errors = result.non_2xx + result.socket_errors;
    Ok((rows, json!({ "held_ms": held_ms, "load": result }), errors))
}
