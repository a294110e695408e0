//! The `coldstart` scenario: start-up time and memory with many modules, cached and not.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::process::Server;
use crate::stats::{Row, Section, median};
use crate::wasm;

use super::{Settings, get_text};

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
