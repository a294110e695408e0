//! The `bench` and `users` scenarios: a module's HTTP path against a bare hyper server, and
//! the `users` module's JSON work against the same work in native Rust.

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;

use crate::load::{self, Connection, LoadResult, Target};
use crate::process::{self};
use crate::stats::{Row, Section};

use super::{AUTH, Settings, failures, rps, runs_json, summary};

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
