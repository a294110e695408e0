//! The `devloop` scenario: save a module's source → the new answer, in dev mode, ten edits,
//! each split into its parts; once with Cranelift, once with Singlepass (dev mode's default).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use serde_json::json;

use crate::load::{Connection, Target};
use crate::process::Modhost;
use crate::stats::{Row, Section, median};

use super::{AUTH, Settings};

/// Edits per run.
const EDITS: usize = 10;

/// Restores a source file when dropped.
struct Restore {
    path: PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.original);
    }
}

async fn wait_version(
    addr: std::net::SocketAddr,
    version: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let target = Target::get(addr, "/m/users/version").header(AUTH.0, AUTH.1);
    let mut connection = Connection::open(addr).await?;
    loop {
        match connection.send(&target).await {
            Ok((_, body)) if body.as_ref() == version.as_bytes() => return Ok(Instant::now()),
            Ok(_) => {}
            Err(_) => connection = Connection::open(addr).await?,
        }
        if Instant::now() > deadline {
            bail!("version {version:?} not served within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Size and modification time of a file, to see it replaced.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// When `path` stops having `before`'s stamp (polled every millisecond), within `timeout`.
async fn wait_replaced(
    path: &Path,
    before: Option<(u64, SystemTime)>,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if stamp(path) != before {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// One edit's figures from the server's log: the `users` build's time as its report says
/// (`built    users   … 1.23s`) and the new version's `load_ms` (compile + instantiate +
/// `init`) from the registry's swap line.
fn from_log(log: &str) -> (Option<f64>, Option<f64>) {
    let mut build_ms = None;
    let mut load_ms = None;
    for line in log.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("built") && words.next() == Some("users") {
            build_ms = line
                .split_whitespace()
                .find_map(|word| word.strip_suffix('s')?.parse::<f64>().ok())
                .map(|seconds| seconds * 1000.0);
        }
        if line.contains("users") && line.contains("swapped") {
            load_ms = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("load_ms=")?.parse::<f64>().ok());
        }
    }
    (build_ms, load_ms)
}

fn spread(values: &[f64]) -> String {
    let known: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .collect();
    format!(
        "{:.0} / {:.0} ms",
        median(&known),
        known.iter().copied().fold(0.0, f64::max)
    )
}

/// One pass's figures, per edit.
#[derive(Default)]
struct Pass {
    totals: Vec<f64>,
    to_dist: Vec<f64>,
    builds: Vec<f64>,
    loads: Vec<f64>,
    edits: Vec<serde_json::Value>,
}

/// `modhost dev` with `args`: [`EDITS`] edits of one line of `modules/users/wasm/src/lib.rs`,
/// each until the new answer is served.
async fn pass(settings: &Settings, label: &str, args: &[&str]) -> anyhow::Result<Pass> {
    const LINE: &str = "const VERSION: &str = \"1\";";
    let dir = settings.scratch(&format!("devloop-{label}"))?;
    let source = settings.root.join("modules/users/wasm/src/lib.rs");
    let original = std::fs::read_to_string(&source)?;
    if !original.contains(LINE) {
        bail!("{} has no line {LINE:?}", source.display());
    }
    let log = dir.join("modhost.log");
    let dist_file = dir.join("dist/users.wasm");
    let modhost = Modhost {
        binary: settings.modhost.clone(),
        command: "dev",
        root: settings.root.clone(),
        dist_dir: dir.join("dist"),
        modules_dir: settings.root.join("modules"),
        log: log.clone(),
        start_timeout: Duration::from_secs(600),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
    }
    .start()?;
    let restore = Restore {
        path: source.clone(),
        original: original.clone(),
    };
    wait_version(modhost.addr, "1", Duration::from_secs(30)).await?;
    let mut result = Pass::default();
    for edit in 0..EDITS {
        let version = format!("bench-{label}-{edit}");
        let edited = original.replacen(LINE, &format!("const VERSION: &str = \"{version}\";"), 1);
        let log_before = std::fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
        let dist_before = stamp(&dist_file);
        let saved = Instant::now();
        std::fs::write(&source, edited)?;
        let (published, served) = tokio::join!(
            wait_replaced(&dist_file, dist_before, Duration::from_secs(120)),
            wait_version(modhost.addr, &version, Duration::from_secs(120)),
        );
        let served = served?;
        // Let the watcher settle (and the old version drain, which logs the swap).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = std::fs::read(&log).unwrap_or_default();
        let since = usize::try_from(log_before).unwrap_or(0).min(text.len());
        let (build_ms, load_ms) = from_log(&String::from_utf8_lossy(&text[since..]));
        let total_ms = (served - saved).as_secs_f64() * 1000.0;
        let dist_ms = published.map(|at| (at - saved).as_secs_f64() * 1000.0);
        eprintln!(
            "devloop ({label}) edit {edit}: {total_ms:.0} ms (saved → dist {}, cargo build {}, load {})",
            dist_ms.map_or("?".to_owned(), |ms| format!("{ms:.0} ms")),
            build_ms.map_or("?".to_owned(), |ms| format!("{ms:.0} ms")),
            load_ms.map_or("?".to_owned(), |ms| format!("{ms:.0} ms")),
        );
        result.totals.push(total_ms);
        result.to_dist.push(dist_ms.unwrap_or(f64::NAN));
        result.builds.push(build_ms.unwrap_or(f64::NAN));
        result.loads.push(load_ms.unwrap_or(f64::NAN));
        result.edits.push(json!({
            "total_ms": total_ms,
            "saved_to_dist_ms": dist_ms,
            "cargo_build_ms": build_ms,
            "load_ms": load_ms,
        }));
    }
    drop(restore);
    wait_version(modhost.addr, "1", Duration::from_secs(120)).await?;
    Ok(result)
}

/// `modhost dev` (Singlepass) and `modhost dev --compiler cranelift`, one pass of ten edits
/// each, one after the other.
pub async fn devloop(settings: &Settings) -> anyhow::Result<Section> {
    let passes = [
        ("cranelift", vec!["--compiler", "cranelift"]),
        ("singlepass", Vec::new()),
    ];
    let mut rows = Vec::new();
    let mut runs = serde_json::Map::new();
    for (label, args) in &passes {
        let result = pass(settings, label, args).await?;
        let after_dist: Vec<f64> = result
            .totals
            .iter()
            .zip(&result.to_dist)
            .map(|(total, dist)| total - dist)
            .collect();
        let debounce: Vec<f64> = result
            .to_dist
            .iter()
            .zip(&result.builds)
            .map(|(dist, build)| dist - build)
            .collect();
        let totals = &result.totals;
        let mut first = Row::new(
            format!(
                "{label}: save → new response ({} edits) median / max",
                totals.len()
            ),
            spread(totals),
        );
        if *label == "singlepass" {
            first = first.target("≤ 2 s each", totals.iter().all(|ms| *ms <= 2000.0));
        }
        rows.extend([
            first,
            Row::new(
                format!("{label}: each edit, ms"),
                totals
                    .iter()
                    .map(|ms| format!("{ms:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Row::new(
                format!("{label}: save → new `users.wasm` in dist, median / max"),
                spread(&result.to_dist),
            ),
            Row::new(
                format!("{label}: of which `cargo build` (its report)"),
                spread(&result.builds),
            ),
            Row::new(
                format!("{label}: of which the source watcher's debounce, cargo's start, publishing"),
                spread(&debounce),
            ),
            Row::new(
                format!("{label}: dist → new response"),
                spread(&after_dist),
            ),
            Row::new(
                format!("{label}: of which loading the new version (compile + instantiate + `init`, `load_ms`)"),
                spread(&result.loads),
            ),
        ]);
        runs.insert(
            (*label).to_owned(),
            json!({ "loop_ms": result.totals, "edits": result.edits }),
        );
    }
    Ok(Section {
        scenario: "devloop".into(),
        title: "`modhost dev`: rewrite `const VERSION` in `modules/users/wasm/src/lib.rs` → `GET /m/users/version` answers the new value (hot profile rebuild, publish, swap), 10 edits per compiler".into(),
        rows,
        runs: serde_json::Value::Object(runs),
    })
}
