//! The `grants` scenario: what a directory grant costs on the request path — the `pages`
//! module answering its `index.html` from its granted `/assets` directory (a WASI open, read
//! and close through the grant's confinement checks on every request) against the same bytes
//! compiled into the module (`/m/pages/_inline`), same server, interleaved.

use serde_json::json;

use super::{Settings, failures, rps, runs_json, summary};
use crate::load::{LoadResult, Target};
use crate::stats::{Row, Section};

/// Requests per second of `/m/pages/index.html` (from the grant) vs `/m/pages/_inline` (from
/// memory) at c = 1 and 16.
pub async fn grants(settings: &Settings) -> anyhow::Result<Section> {
    let dir = settings.scratch("grants")?;
    std::fs::write(
        dir.join("dist/pages.wasm"),
        settings.read_module("pages.wasm")?,
    )?;
    // The grant: the module's own assets, read-only, through the root's modhost.toml.
    let assets = settings.root.join("modules/pages/assets").canonicalize()?;
    std::fs::write(
        dir.join("modhost.toml"),
        format!(
            "[modules.pages]\ndirs = {{ \"/assets\" = {{ path = {:?} }} }}\n",
            assets.display().to_string()
        ),
    )?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let from_grant = Target::get(modhost.addr, "/m/pages/index.html");
    let from_memory = Target::get(modhost.addr, "/m/pages/_inline");
    let (status, grant_body) = crate::load::once(&from_grant).await?;
    let (_, memory_body) = crate::load::once(&from_memory).await?;
    anyhow::ensure!(
        status == 200 && grant_body == memory_body,
        "/m/pages/index.html answered {status}, not the inline copy's bytes"
    );

    let levels = [1_usize, 16];
    let mut grant_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut memory_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    for round in 0..settings.rounds {
        for (index, &concurrency) in levels.iter().enumerate() {
            let a = settings.load(&from_grant, concurrency).await?;
            let b = settings.load(&from_memory, concurrency).await?;
            eprintln!(
                "grants round {round} c={concurrency}: from the grant {:.0} req/s p99 {} µs, from memory {:.0} req/s p99 {} µs",
                a.rps, a.p99_us, b.rps, b.p99_us
            );
            grant_runs[index].push(a);
            memory_runs[index].push(b);
        }
    }
    let mut rows = Vec::new();
    for (index, &concurrency) in levels.iter().enumerate() {
        let (a, b) = (&grant_runs[index], &memory_runs[index]);
        rows.push(
            Row::new(format!("req/s c={concurrency}"), summary(a))
                .baseline(summary(b), rps(a) / rps(b)),
        );
    }
    let errors: u64 = grant_runs
        .iter()
        .chain(memory_runs.iter())
        .map(|runs| failures(runs))
        .sum();
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    Ok(Section {
        scenario: "grants".into(),
        title: format!(
            "`GET /m/pages/index.html` ({} bytes read from a read-only directory grant on each request) vs the same bytes from module memory (`/m/pages/_inline`)",
            grant_body.len()
        ),
        rows,
        runs: json!({
            "concurrency": levels,
            "from_grant": grant_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
            "from_memory": memory_runs.iter().map(|runs| runs_json(runs)).collect::<Vec<_>>(),
        }),
    })
}
