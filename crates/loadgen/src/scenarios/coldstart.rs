//! The `coldstart` scenario: start-up time and memory with many modules, cached and not.
//!
//! Start-up is timed from spawning the process, two ways: to the "listening" line (printed
//! once every module in dist is loaded, initialised and routed) and to every module having
//! answered a request (`GET /m/<name>`, all at once on their own connections), so "ready"
//! means serving, not just loaded. Memory is `/proc/<pid>/smaps` of the server with idle
//! modules (each has served one request), by kind of mapping ([`crate::smaps`]), so the
//! linear memory the modules touched can be taken out: what one more module costs is the
//! difference between the server with all of them and with the earlier form's 50, divided by
//! the 50 more (fixed costs cancel out); against an empty dist it is reported too. The
//! earlier form (50 modules, spawn → listening, `VmRSS` per module against the empty dist)
//! runs in the same rounds, so figures stay comparable with the results log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::process::Server;
use crate::smaps::{self, Breakdown, Kind};
use crate::stats::{Row, Section, median};
use crate::wasm;

use super::{Settings, get_text};

/// Modules of the earlier form of this scenario, kept for comparison with older runs.
const EARLIER_MODULES: usize = 50;

fn module_name(index: usize) -> String {
    format!("bench{index:02}")
}

/// Startup with `modules` modules, cold and warm cache; resident memory per idle module.
pub async fn coldstart(settings: &Settings) -> anyhow::Result<Section> {
    let n = settings.modules;
    let earlier_n = EARLIER_MODULES.min(n);
    let dir = settings.scratch("coldstart")?;
    let earlier = settings.scratch("coldstart-earlier")?;
    let empty = settings.scratch("coldstart-empty")?;
    let source = settings.read_module("bench.wasm")?;
    // One instance per module: `bench` declares itself shared-nothing, which would give each
    // copy one per server thread; the figures are per module of one instance.
    for root in [&dir, &earlier, &empty] {
        std::fs::write(
            root.join("modhost.toml"),
            "[modules.\"*\"]\ninstances = 1\n",
        )?;
    }
    for index in 0..n {
        // Distinct bytes per module, so the cold start compiles every one of them.
        let bytes = wasm::variant(&source, 500_000 + index as u32)?.0;
        let file = format!("dist/{}.wasm", module_name(index));
        std::fs::write(dir.join(&file), &bytes)?;
        if index < earlier_n {
            std::fs::write(earlier.join(&file), &bytes)?;
        }
    }
    let linear = wasm::initial_memory_bytes(&source)?;
    // The binary under test, and the `--compare` one (an earlier build) in the same rounds.
    let mut binaries = vec![("", settings.modhost.clone())];
    if let Some(before) = &settings.compare {
        binaries.push(("before-", before.clone()));
    }
    for (label, binary) in &binaries {
        // The earlier form's cache, filled once, unmeasured.
        let warming = start(settings, binary, &earlier, &format!("{label}warming.log"))?;
        check_loaded(&warming, earlier_n).await?;
        drop(warming);
    }
    let dirs = Dirs {
        all: dir,
        earlier,
        empty,
    };
    let mut runs: Vec<Runs> = binaries.iter().map(|_| Runs::default()).collect();
    for round in 0..settings.rounds {
        for ((label, binary), runs) in binaries.iter().zip(&mut runs) {
            measure(settings, binary, label, &dirs, runs).await?;
            let loaded = &runs.loaded[round];
            let bare = &runs.empty[round];
            eprintln!(
                "coldstart round {round} {}: {n} modules cold {:.0} ms, warm {:.0} ms to listening, {:.0} ms to all serving; {earlier_n} warm {:.0} ms; RSS {:.1} MiB with {n} modules ({:.1} MiB linear memory), {:.1} MiB without",
                binary.display(),
                runs.cold[round],
                runs.warm[round],
                runs.ready[round],
                runs.earlier_warm[round],
                loaded.total() as f64 / 1048576.0,
                loaded.of(Kind::LinearMemory) as f64 / 1048576.0,
                bare.total() as f64 / 1048576.0,
            );
        }
    }
    let mut runs = runs.into_iter();
    let current = runs.next().context("no runs")?;
    let before = runs.next();
    Ok(current.section(before, n, earlier_n, linear))
}

/// The scenario's dist directories.
struct Dirs {
    /// Every module.
    all: PathBuf,
    /// The earlier form's 50.
    earlier: PathBuf,
    /// None.
    empty: PathBuf,
}

fn start(settings: &Settings, binary: &Path, dir: &Path, log: &str) -> anyhow::Result<Server> {
    let mut modhost = settings.modhost(dir, log);
    modhost.binary = binary.to_path_buf();
    modhost.start()
}

/// One round of every measurement with `binary`.
async fn measure(
    settings: &Settings,
    binary: &Path,
    label: &str,
    dirs: &Dirs,
    runs: &mut Runs,
) -> anyhow::Result<()> {
    let n = settings.modules;
    let earlier_n = EARLIER_MODULES.min(n);
    let settle = Duration::from_millis(500);
    let cache = dirs.all.join("dist/.cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    let started = start(settings, binary, &dirs.all, &format!("{label}cold.log"))?;
    check_loaded(&started, n).await?;
    runs.cold.push(millis(started.startup));
    drop(started);

    let started = start(settings, binary, &dirs.all, &format!("{label}warm.log"))?;
    runs.warm.push(millis(started.startup));
    serve_every_module(started.addr, n).await?;
    runs.ready.push(millis(started.spawned.elapsed()));
    check_loaded(&started, n).await?;
    tokio::time::sleep(settle).await;
    runs.rss_loaded.push(started.rss_bytes()? as f64);
    runs.loaded.push(smaps::breakdown(started.pid())?);
    drop(started);

    let started = start(
        settings,
        binary,
        &dirs.earlier,
        &format!("{label}earlier.log"),
    )?;
    check_loaded(&started, earlier_n).await?;
    runs.earlier_warm.push(millis(started.startup));
    tokio::time::sleep(settle).await;
    runs.earlier_rss.push(started.rss_bytes()? as f64);
    serve_every_module(started.addr, earlier_n).await?;
    tokio::time::sleep(settle).await;
    runs.earlier.push(smaps::breakdown(started.pid())?);
    drop(started);

    let bare = start(settings, binary, &dirs.empty, &format!("{label}empty.log"))?;
    runs.empty_start.push(millis(bare.startup));
    get_text(bare.addr, http::Method::GET, "/healthz").await?;
    tokio::time::sleep(settle).await;
    runs.rss_empty.push(bare.rss_bytes()? as f64);
    runs.empty.push(smaps::breakdown(bare.pid())?);
    drop(bare);
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What a per-module figure is measured against.
#[derive(Clone, Copy)]
enum Base {
    /// The server with an empty dist: every cost that comes with having modules at all (the
    /// binary's loading code paged in, the first malloc arenas, ...) is spread over them.
    Empty,
    /// The server with the earlier form's modules: what each further module adds.
    Earlier,
}

impl Base {
    /// Against the earlier form when there are more modules than it has.
    fn for_sizes(n: usize, earlier_n: usize) -> Base {
        if n > earlier_n {
            Base::Earlier
        } else {
            Base::Empty
        }
    }
}

/// Every round's figures.
#[derive(Default)]
struct Runs {
    cold: Vec<f64>,
    warm: Vec<f64>,
    ready: Vec<f64>,
    earlier_warm: Vec<f64>,
    empty_start: Vec<f64>,
    rss_loaded: Vec<f64>,
    rss_empty: Vec<f64>,
    earlier_rss: Vec<f64>,
    loaded: Vec<Breakdown>,
    earlier: Vec<Breakdown>,
    empty: Vec<Breakdown>,
}

impl Runs {
    /// The median over rounds of `kind`'s resident bytes per module, `(loaded − base) /
    /// modules` with `base` the empty server's or the earlier form's ([`Base`]); `None` for
    /// the total.
    fn per_module(&self, kind: Option<Kind>, base: Base, n: usize, earlier_n: usize) -> f64 {
        let pick = |breakdown: &Breakdown| match kind {
            Some(kind) => breakdown.of(kind) as f64,
            None => breakdown.total() as f64,
        };
        let (bases, modules) = match base {
            Base::Empty => (&self.empty, n),
            Base::Earlier => (&self.earlier, n - earlier_n),
        };
        let deltas: Vec<f64> = self
            .loaded
            .iter()
            .zip(bases)
            .map(|(loaded, base)| (pick(loaded) - pick(base)) / modules.max(1) as f64)
            .collect();
        median(&deltas)
    }

    /// Resident bytes per module beyond its touched linear memory, against `base`.
    fn beyond_linear(&self, base: Base, n: usize, earlier_n: usize) -> f64 {
        self.per_module(None, base, n, earlier_n)
            - self.per_module(Some(Kind::LinearMemory), base, n, earlier_n)
    }

    /// Rows comparing these runs (an earlier binary's, `--compare`) with `after`'s.
    fn comparison(&self, after: &Runs, n: usize, earlier_n: usize) -> Vec<Row> {
        let base = Base::for_sizes(n, earlier_n);
        let ms = |value: f64| format!("{value:.0} ms");
        let kib = |bytes: f64| format!("{:.0} KiB", bytes / 1024.0);
        let row = |metric: String, after: f64, before: f64, unit: &dyn Fn(f64) -> String| {
            Row::new(
                format!("after vs before (`--compare`): {metric}"),
                unit(after),
            )
            .baseline(format!("{} before", unit(before)), after / before)
        };
        let mut rows = vec![
            row(
                format!("start with {n} modules, spawn → every module answered"),
                median(&after.ready),
                median(&self.ready),
                &ms,
            ),
            row(
                format!("start with {n} modules, spawn → listening"),
                median(&after.warm),
                median(&self.warm),
                &ms,
            ),
            row(
                format!("start with {earlier_n} modules, spawn → listening"),
                median(&after.earlier_warm),
                median(&self.earlier_warm),
                &ms,
            ),
            row(
                format!("start with {n} modules, cold cache"),
                median(&after.cold),
                median(&self.cold),
                &ms,
            ),
            row(
                "RSS per idle module beyond its touched linear memory".into(),
                after.beyond_linear(base, n, earlier_n),
                self.beyond_linear(base, n, earlier_n),
                &kib,
            ),
            row(
                format!("RSS per idle module beyond its touched linear memory ({n} vs none)"),
                after.beyond_linear(Base::Empty, n, earlier_n),
                self.beyond_linear(Base::Empty, n, earlier_n),
                &kib,
            ),
        ];
        for kind in Kind::ALL {
            rows.push(row(
                format!("per module: {}", kind.name()),
                after.per_module(Some(kind), base, n, earlier_n),
                self.per_module(Some(kind), base, n, earlier_n),
                &kib,
            ));
        }
        rows
    }

    /// Every figure, for the JSON report.
    fn json(&self) -> serde_json::Value {
        json!({
            "cold_ms": self.cold,
            "warm_listening_ms": self.warm,
            "warm_all_serving_ms": self.ready,
            "earlier_warm_ms": self.earlier_warm,
            "empty_start_ms": self.empty_start,
            "rss_loaded_bytes": self.rss_loaded,
            "rss_empty_bytes": self.rss_empty,
            "earlier_rss_bytes": self.earlier_rss,
            "smaps_loaded": self.loaded.iter().map(Breakdown::json).collect::<Vec<_>>(),
            "smaps_earlier": self.earlier.iter().map(Breakdown::json).collect::<Vec<_>>(),
            "smaps_empty": self.empty.iter().map(Breakdown::json).collect::<Vec<_>>(),
        })
    }

    fn section(self, before: Option<Runs>, n: usize, earlier_n: usize, linear: u64) -> Section {
        let mib = |bytes: f64| format!("{:.2} MiB", bytes / 1048576.0);
        let kib = |bytes: f64| format!("{:.0} KiB", bytes / 1024.0);
        // What one more idle module costs: the 100-module server against the 50-module one
        // (both after every module served a request), so fixed costs cancel out. With no
        // more modules than the earlier form, against the empty server instead.
        let base = Base::for_sizes(n, earlier_n);
        let everything = self.per_module(None, base, n, earlier_n);
        let touched = self.per_module(Some(Kind::LinearMemory), base, n, earlier_n);
        let beyond = self.beyond_linear(base, n, earlier_n);
        let beyond_empty = self.beyond_linear(Base::Empty, n, earlier_n);
        let marginal = match base {
            Base::Earlier => format!("{n} vs {earlier_n} modules"),
            Base::Empty => format!("{n} modules vs none"),
        };
        let earlier_per_module =
            (median(&self.earlier_rss) - median(&self.rss_empty)) / earlier_n as f64;
        let mut rows = vec![
            Row::new(
                format!("start with {n} modules, warm cache: spawn → every module answered"),
                format!("{:.0} ms", median(&self.ready)),
            )
            .baseline(
                format!("{:.0} ms with no modules", median(&self.empty_start)),
                median(&self.ready) / median(&self.empty_start),
            )
            .target("≤ 300 ms", median(&self.ready) <= 300.0),
            Row::new(
                format!("start with {n} modules, warm cache: spawn → listening"),
                format!("{:.0} ms", median(&self.warm)),
            )
            .baseline(
                format!("{:.0} ms cold", median(&self.cold)),
                median(&self.warm) / median(&self.cold),
            ),
            Row::new(
                format!("start with {n} modules, cold cache: spawn → listening"),
                format!("{:.0} ms", median(&self.cold)),
            ),
            Row::new(
                format!("start with {earlier_n} modules, warm cache: spawn → listening"),
                format!("{:.0} ms", median(&self.earlier_warm)),
            )
            .target("≤ 500 ms", median(&self.earlier_warm) <= 500.0),
            Row::new(
                format!("RSS with {n} idle modules / without (smaps)"),
                format!(
                    "{} / {}",
                    mib(median(&self.loaded.iter().map(|b| b.total() as f64).collect::<Vec<_>>())),
                    mib(median(&self.empty.iter().map(|b| b.total() as f64).collect::<Vec<_>>()))
                ),
            ),
            Row::new(
                format!(
                    "RSS per idle module, {earlier_n} modules, `VmRSS`, everything counted (declared linear memory)"
                ),
                format!("{} ({})", mib(earlier_per_module), mib(linear as f64)),
            )
            .target(
                "≤ 1 MiB beyond declared linear memory",
                earlier_per_module - linear as f64 <= 1048576.0,
            ),
            Row::new(
                format!("RSS per idle module ({marginal}), everything counted"),
                kib(everything),
            ),
            Row::new("  of which its touched linear memory", kib(touched)),
            Row::new(
                format!("RSS per idle module beyond its touched linear memory ({marginal})"),
                kib(beyond),
            )
            .target("≤ 256 KiB", beyond <= 256.0 * 1024.0),
            Row::new(
                format!(
                    "RSS per idle module beyond its touched linear memory ({n} modules vs none: fixed costs spread over them)"
                ),
                kib(beyond_empty),
            ),
        ];
        for kind in Kind::ALL {
            if kind == Kind::LinearMemory {
                continue;
            }
            rows.push(Row::new(
                format!("  per module ({marginal}): {}", kind.name()),
                kib(self.per_module(Some(kind), base, n, earlier_n)),
            ));
        }
        if let Some(before) = &before {
            rows.extend(before.comparison(&self, n, earlier_n));
        }
        Section {
            scenario: "coldstart".into(),
            title: format!(
                "`modhost serve` with {n} distinct copies of `bench.wasm`: spawn → listening (every module loaded and initialised) and → every module answered `GET /m/<name>`, compiled-module cache cold (deleted) vs warm; `/proc/<pid>/smaps` 0.5 s later, by kind of mapping, vs modhost with {earlier_n} modules (what each further module adds) and with an empty dist; and the earlier form: {earlier_n} modules, spawn → listening, `VmRSS` vs the empty dist"
            ),
            rows,
            runs: json!({
                "after": self.json(),
                "before": before.map(|before| before.json()),
                "linear_memory_bytes": linear,
                "modules": n,
                "earlier_modules": earlier_n,
            }),
        }
    }
}

/// Sends `GET /m/<name>` to every module at once, each on its own connection; an error
/// unless every one answers `ok`.
async fn serve_every_module(addr: SocketAddr, modules: usize) -> anyhow::Result<()> {
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..modules {
        requests.spawn(async move {
            let path = format!("/m/{}", module_name(index));
            let body = get_text(addr, http::Method::GET, &path).await?;
            if body != "ok" {
                bail!("{path} answered {body:?}");
            }
            Ok(())
        });
    }
    while let Some(result) = requests.join_next().await {
        result.context("a request task failed")??;
    }
    Ok(())
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
