//! The `outbound` scenario: the `proxy` module fetching from a local hyper server through the
//! `http_send` import (client → modhost → module → upstream) against a native hyper proxy doing
//! the same fetch with a pooled hyper client (`loadgen serve proxy`), interleaved; and what a
//! refused host costs a request.

use anyhow::Context as _;
use serde_json::json;

use super::Settings;
use crate::load::{LoadResult, Target};
use crate::stats::{Row, Section, median, micros, rate};

/// Instances of the proxy module: one per core, so c=16 is not one instance's queue.
const INSTANCES: usize = 2;

fn rps(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.rps).collect::<Vec<_>>())
}

fn p50(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.p50_us as f64).collect::<Vec<_>>())
}

fn summary(runs: &[LoadResult]) -> String {
    let p99 = median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>());
    format!(
        "{} (p50 {}, p99 {})",
        rate(rps(runs)),
        micros(p50(runs)),
        micros(p99)
    )
}

/// `url` as a query value.
fn encode(url: &str) -> String {
    url.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Proxied `GET` at c=1 and c=16 against the native proxy; a refused host against a call
/// that makes no outbound request at all.
pub async fn outbound(settings: &Settings) -> anyhow::Result<Section> {
    let upstream = crate::process::baseline("hello")?;
    let native = crate::process::baseline("proxy")?;
    let dir = settings.scratch("outbound")?;
    std::fs::write(
        dir.join("dist/proxy.wasm"),
        settings.read_module("proxy.wasm")?,
    )?;
    std::fs::write(
        dir.join("modhost.toml"),
        format!(
            "[modules.proxy]\ninstances = {INSTANCES}\nallowed_hosts = [\"{}\"]\noutbound_max_concurrent = 64\n",
            upstream.addr
        ),
    )?;
    let modhost = settings.modhost(&dir, "modhost.log").start()?;
    let url = format!("/?url={}", encode(&format!("http://{}/", upstream.addr)));
    let through_module = Target::get(modhost.addr, &format!("/m/proxy{url}"));
    let through_native = Target::get(native.addr, &url);
    let refused = Target::get(
        modhost.addr,
        &format!("/m/proxy?url={}", encode("http://not-allowed.example/")),
    );
    let no_outbound = Target::get(modhost.addr, "/m/proxy/hello");
    for (target, want) in [
        (&through_module, 200),
        (&through_native, 200),
        (&refused, 403),
    ] {
        let (status, body) = crate::load::once(target).await?;
        anyhow::ensure!(
            status == want,
            "{}: {status} {}",
            target.path,
            String::from_utf8_lossy(&body)
        );
    }

    let levels = [1_usize, 16];
    let mut module_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut native_runs: Vec<Vec<LoadResult>> = vec![Vec::new(); levels.len()];
    let mut refused_runs = Vec::new();
    let mut local_runs = Vec::new();
    for round in 0..settings.rounds {
        for (index, &concurrency) in levels.iter().enumerate() {
            let a = settings.load(&through_module, concurrency).await?;
            let b = settings.load(&through_native, concurrency).await?;
            eprintln!(
                "outbound round {round} c={concurrency}: module {:.0} req/s p50 {} µs, native {:.0} req/s p50 {} µs",
                a.rps, a.p50_us, b.rps, b.p50_us
            );
            module_runs[index].push(a);
            native_runs[index].push(b);
        }
        let denied = settings.load(&refused, 1).await?;
        let local = settings.load(&no_outbound, 1).await?;
        eprintln!(
            "outbound round {round}: refused host p50 {} µs, no outbound call p50 {} µs",
            denied.p50_us, local.p50_us
        );
        refused_runs.push(denied);
        local_runs.push(local);
    }

    let mut rows = Vec::new();
    for (index, &concurrency) in levels.iter().enumerate() {
        let (a, b) = (&module_runs[index], &native_runs[index]);
        rows.push(
            Row::new(format!("proxied GET c={concurrency}"), summary(a))
                .baseline(summary(b), rps(a) / rps(b)),
        );
    }
    rows.push(
        Row::new("refused host, c=1", summary(&refused_runs))
            .baseline(summary(&local_runs), rps(&refused_runs) / rps(&local_runs)),
    );
    rows.push(Row::new(
        "cost of a refusal (p50, vs no outbound call)",
        micros(p50(&refused_runs) - p50(&local_runs)),
    ));
    // The refused runs answer 403 by design; every other run must be all 2xx.
    let refused_not_403: u64 = refused_runs.iter().map(|run| run.socket_errors).sum();
    let errors: u64 = module_runs
        .iter()
        .chain(&native_runs)
        .flatten()
        .chain(&local_runs)
        .map(|run| run.non_2xx + run.socket_errors)
        .sum::<u64>()
        + refused_not_403;
    rows.push(Row::new("non-2xx + socket errors", errors.to_string()).target("0", errors == 0));
    let (_, admin) = crate::load::once(&Target::get(modhost.addr, "/_admin/modules")).await?;
    let modules: serde_json::Value =
        serde_json::from_slice(&admin).context("reading /_admin/modules")?;
    let counted = modules
        .as_array()
        .and_then(|modules| modules.iter().find(|module| module["name"] == "proxy"))
        .map(|module| module["outbound"].clone())
        .unwrap_or_default();
    Ok(Section {
        scenario: "outbound".into(),
        title: format!(
            "`GET /m/proxy?url=…` ({INSTANCES} instances; HTTP → module → `http_send` → a local hyper \"ok\" server) vs a native hyper proxy with a pooled hyper client fetching the same; a refused host vs `GET /m/proxy/hello` (no outbound call)"
        ),
        rows,
        runs: json!({
            "concurrency": levels,
            "module": module_runs,
            "native": native_runs,
            "refused": refused_runs,
            "no_outbound": local_runs,
            "admin_outbound": counted,
        }),
    })
}
