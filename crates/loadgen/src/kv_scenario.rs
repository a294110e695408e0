//! The `state` scenario: key-value reads and writes through a module (`/m/bench/kv/{key}`,
//! the `kv` import, the redb file) against the same operations on a `state::RedbStore` called
//! directly in this process, for both durabilities, interleaved.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::load::{LoadResult, Target};
use crate::scenarios::Settings;
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
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "state".into(),
        title: format!(
            "key-value get/set of {VALUE_BYTES}-byte values through `/m/bench/kv/{{key}}` (HTTP → module → `kv` import → redb) vs the same calls on a `::state::RedbStore` in-process, one thread; per durability"
        ),
        rows,
        runs: serde_json::Value::Object(report),
    })
}
