//! The `http` scenario: `/m/bench` (the trivial module) against the same server's `/healthz`
//! (no module), with `wrk` and with loadgen's own client, at c = 1, 16, 64, interleaved. With
//! `--compare BIN` a second modhost binary (an earlier build), or with `--compare-config FILE`
//! the same binary under another `modhost.toml`, is measured in the same rounds, so a change
//! to the request path shows as before/after from one machine state.
//!
//! Besides each client's figures, the server's own CPU time per request (user + system, all
//! threads, from `/proc`) over each `wrk` run: on a machine shared with the client and other
//! work, req/s moves with how the cores are shared out, while the CPU a request costs the
//! server moves much less.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::json;

use crate::load::{LoadResult, Target};
use crate::process::Server;
use crate::stats::{Row, Section, micros};
use crate::wrk::Wrk;

use super::{Settings, failures, get_text, rps, runs_json, summary};

const LEVELS: [usize; 3] = [1, 16, 64];
const ROUTES: [&str; 2] = ["/healthz", "/m/bench"];

/// The throughput targets for `/m/bench` vs `/healthz` (wrk).
fn target_ratio(concurrency: usize) -> f64 {
    if concurrency == 1 { 0.85 } else { 0.80 }
}

struct Subject {
    label: &'static str,
    server: Server,
}

/// `bench`'s request counters from `/_admin/modules`: (requests, of them run inline).
async fn bench_counts(addr: std::net::SocketAddr) -> anyhow::Result<(u64, u64)> {
    let text = get_text(addr, ::http::Method::GET, "/_admin/modules").await?;
    let modules: Vec<serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("/_admin/modules: {text}"))?;
    let bench = modules
        .iter()
        .find(|module| module["name"] == "bench")
        .context("/_admin/modules has no bench")?;
    let count = |name: &str| bench[name].as_u64().unwrap_or(0);
    Ok((count("requests"), count("inline_requests")))
}

fn p99(runs: &[LoadResult]) -> f64 {
    crate::stats::median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>())
}

pub async fn http(settings: &Settings) -> anyhow::Result<Section> {
    let mut binaries: Vec<(&'static str, PathBuf, Option<&PathBuf>)> = Vec::new();
    match (&settings.compare, &settings.compare_config) {
        (Some(before), config) => binaries.push(("before", before.clone(), config.as_ref())),
        (None, Some(config)) => binaries.push(("before", settings.modhost.clone(), Some(config))),
        (None, None) => {}
    }
    binaries.push(("modhost", settings.modhost.clone(), None));
    let mut subjects = Vec::new();
    for (label, binary, config) in binaries {
        let dir = settings.scratch(&format!("http-{label}"))?;
        std::fs::write(
            dir.join("dist/bench.wasm"),
            settings.read_module("bench.wasm")?,
        )?;
        if let Some(config) = config {
            std::fs::copy(config, dir.join("modhost.toml"))
                .with_context(|| format!("copying {}", config.display()))?;
        }
        let mut modhost = settings.modhost(&dir, "modhost.log");
        modhost.binary = binary;
        subjects.push(Subject {
            label,
            server: modhost.start()?,
        });
    }
    let wrk = match &settings.wrk {
        Some(program) => Some(Wrk::new(program, &settings.work)?),
        None => {
            eprintln!(
                "http: wrk is not installed; measuring with loadgen's own client only (install \
                 the Debian package wrk for the figures HTTP servers are usually quoted with)"
            );
            None
        }
    };
    let clients: Vec<&'static str> = if wrk.is_some() {
        vec!["wrk", "loadgen"]
    } else {
        vec!["loadgen"]
    };
    // (subject, client, route, concurrency) → runs.
    let mut runs: BTreeMap<(&str, &str, &str, usize), Vec<LoadResult>> = BTreeMap::new();
    // (subject, route, concurrency) → the server's CPU µs per request of each wrk run.
    let mut cpu: BTreeMap<(&str, &str, usize), Vec<f64>> = BTreeMap::new();
    // (subject, concurrency) → `/m/bench` requests served, and of them inline.
    let mut inline: BTreeMap<(&str, usize), (u64, u64)> = BTreeMap::new();
    for round in 0..settings.rounds {
        for &concurrency in &LEVELS {
            for subject in &subjects {
                for &client in &clients {
                    for route in ROUTES {
                        let counted = if route == "/m/bench" {
                            Some(bench_counts(subject.server.addr).await?)
                        } else {
                            None
                        };
                        let result = match (client, &wrk) {
                            ("wrk", Some(wrk)) => {
                                let wrk = wrk.clone();
                                let url = format!("http://{}{route}", subject.server.addr);
                                let seconds = settings.seconds;
                                // One unmeasured second first, as loadgen warms up too.
                                if round == 0 {
                                    let (wrk, url) = (wrk.clone(), url.clone());
                                    tokio::task::spawn_blocking(move || {
                                        wrk.run(&url, concurrency, std::time::Duration::ZERO)
                                    })
                                    .await
                                    .context("the wrk thread")??;
                                }
                                let before = subject.server.cpu_time()?;
                                let result = tokio::task::spawn_blocking(move || {
                                    wrk.run(&url, concurrency, seconds)
                                })
                                .await
                                .context("the wrk thread")??;
                                let used = subject.server.cpu_time()? - before;
                                cpu.entry((subject.label, route, concurrency))
                                    .or_default()
                                    .push(used.as_secs_f64() * 1e6 / result.requests.max(1) as f64);
                                result
                            }
                            _ => {
                                settings
                                    .load(&Target::get(subject.server.addr, route), concurrency)
                                    .await?
                            }
                        };
                        eprintln!(
                            "http round {round} c={concurrency} {} {client} {route}: {:.0} req/s p50 {} µs p99 {} µs",
                            subject.label, result.rps, result.p50_us, result.p99_us
                        );
                        runs.entry((subject.label, client, route, concurrency))
                            .or_default()
                            .push(result);
                        if let Some((requests, inlined)) = counted {
                            let (after, after_inline) = bench_counts(subject.server.addr).await?;
                            let share = inline.entry((subject.label, concurrency)).or_default();
                            share.0 += after - requests;
                            share.1 += after_inline - inlined;
                        }
                    }
                }
            }
        }
    }
    let empty = Vec::new();
    let get = |label: &str, client: &str, route: &str, concurrency: usize| {
        runs.iter()
            .find(|((l, c, r, n), _)| {
                *l == label && *c == client && *r == route && *n == concurrency
            })
            .map(|(_, runs)| runs)
            .unwrap_or(&empty)
    };
    let mut rows = Vec::new();
    let compare = subjects.len() > 1;
    for subject in &subjects {
        let prefix = if compare {
            format!("{}: ", subject.label)
        } else {
            String::new()
        };
        let current = subject.label == "modhost";
        for &client in &clients {
            for &concurrency in &LEVELS {
                let module = get(subject.label, client, "/m/bench", concurrency);
                let health = get(subject.label, client, "/healthz", concurrency);
                let ratio = rps(module) / rps(health);
                let mut row = Row::new(
                    format!("{prefix}{client} req/s c={concurrency}"),
                    summary(module),
                )
                .baseline(summary(health), ratio);
                if current && client == "wrk" {
                    let goal = target_ratio(concurrency);
                    row = row.target(format!("≥ {goal:.2} of /healthz"), ratio >= goal);
                }
                rows.push(row);
            }
            if client == clients[clients.len() - 1] {
                for &concurrency in &LEVELS {
                    let (requests, inlined) = inline
                        .get(&(subject.label, concurrency))
                        .copied()
                        .unwrap_or_default();
                    rows.push(Row::new(
                        format!("{prefix}/m/bench run inline c={concurrency}"),
                        format!(
                            "{:.1} % of {requests}",
                            inlined as f64 * 100.0 / requests.max(1) as f64
                        ),
                    ));
                }
            }
            if client == "wrk" {
                for &concurrency in &LEVELS {
                    let median = |route: &str| {
                        cpu.get(&(subject.label, route, concurrency))
                            .map_or(0.0, |runs| crate::stats::median(runs))
                    };
                    let (module, health) = (median("/m/bench"), median("/healthz"));
                    rows.push(
                        Row::new(
                            format!("{prefix}server CPU per request c={concurrency} (wrk runs)"),
                            format!("{module:.1} µs"),
                        )
                        .baseline(format!("{health:.1} µs"), module / health.max(0.001)),
                    );
                }
            }
            let module = get(subject.label, client, "/m/bench", 64);
            let health = get(subject.label, client, "/healthz", 64);
            let (a, b) = (p99(module), p99(health));
            let mut row = Row::new(format!("{prefix}{client} p99 c=64"), micros(a))
                .baseline(micros(b), a / b.max(1.0));
            if current && client == "wrk" {
                row = row.target("within 1 ms of /healthz", a - b <= 1000.0);
            }
            rows.push(row);
        }
    }
    if compare {
        for &client in &clients {
            for &concurrency in &LEVELS {
                let after = get("modhost", client, "/m/bench", concurrency);
                let before = get("before", client, "/m/bench", concurrency);
                rows.push(
                    Row::new(
                        format!("{client} /m/bench c={concurrency}: after vs before"),
                        summary(after),
                    )
                    .baseline(summary(before), rps(after) / rps(before)),
                );
            }
        }
    }
    let errors: u64 = runs
        .iter()
        .filter(|((label, ..), _)| *label == "modhost")
        .map(|(_, runs)| failures(runs))
        .sum();
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    let raw: serde_json::Map<String, serde_json::Value> = runs
        .iter()
        .map(|((label, client, route, concurrency), runs)| {
            (
                format!("{label} {client} {route} c={concurrency}"),
                runs_json(runs),
            )
        })
        .collect();
    Ok(Section {
        scenario: "http".into(),
        title: format!(
            "`GET /m/bench` (trivial handler) vs `GET /healthz` (no module) on the same modhost, measured with {}{}",
            clients.join(" and "),
            if compare {
                "; `before` is the server given with `--compare` / `--compare-config`, in the same rounds"
            } else {
                ""
            }
        ),
        rows,
        runs: json!({
            "concurrency": LEVELS,
            "clients": clients,
            "runs": raw,
            "server_cpu_us_per_request": cpu
                .iter()
                .map(|((label, route, concurrency), runs)| {
                    (format!("{label} wrk {route} c={concurrency}"), json!(runs))
                })
                .collect::<serde_json::Map<_, _>>(),
        }),
    })
}
