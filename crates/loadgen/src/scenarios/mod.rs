//! The scenarios of `cargo xtask bench` (docs/PERFORMANCE.md), one file each. Each runs modhost
//! and its baseline interleaved (A B A B ...) and returns a [`Section`] of medians and ratios.
//! This file holds what they share: the [`Scenario`] list, the [`Settings`] and the summaries
//! of a set of load runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::load::{self, LoadResult, Target};
use crate::process::Modhost;
use crate::stats::{Section, median, micros, rate};

mod bus;
mod cluster;
mod coldstart;
mod devloop;
mod grants;
mod http;
mod outbound;
mod serving;
mod state;
mod swap;

/// One scenario of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `/m/bench` against the same server's `/healthz`, with wrk (and loadgen's client).
    Http,
    /// A module's HTTP path against a bare hyper server.
    Bench,
    /// The `users` module against the same JSON work in native Rust.
    Users,
    /// Hot swaps under load.
    Swap,
    /// Bus throughput against raw channels.
    Bus,
    /// Start-up time and memory with many modules.
    Coldstart,
    /// Save → new answer in dev mode.
    Devloop,
    /// Key-value reads and writes through a module against redb in-process.
    State,
    /// A proxy module's `http_send` against a native hyper proxy.
    Outbound,
    /// A file from a directory grant against the same bytes from memory.
    Grants,
    /// Two nodes on NATS: cross-node events against raw NATS, forwarded calls against local.
    Cluster,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 11] = [
        Scenario::Http,
        Scenario::Bench,
        Scenario::Users,
        Scenario::Swap,
        Scenario::Bus,
        Scenario::Coldstart,
        Scenario::Devloop,
        Scenario::State,
        Scenario::Outbound,
        Scenario::Grants,
        Scenario::Cluster,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Http => "http",
            Scenario::Bench => "bench",
            Scenario::Users => "users",
            Scenario::Swap => "swap",
            Scenario::Bus => "bus",
            Scenario::Coldstart => "coldstart",
            Scenario::Devloop => "devloop",
            Scenario::State => "state",
            Scenario::Outbound => "outbound",
            Scenario::Grants => "grants",
            Scenario::Cluster => "cluster",
        }
    }

    /// The scenario called `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// Runs it.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<Section> {
        match self {
            Scenario::Http => http::http(settings).await,
            Scenario::Bench => serving::bench(settings).await,
            Scenario::Users => serving::users(settings).await,
            Scenario::Swap => swap::swap(settings).await,
            Scenario::Bus => bus::bus(settings).await,
            Scenario::Coldstart => coldstart::coldstart(settings).await,
            Scenario::Devloop => devloop::devloop(settings).await,
            Scenario::State => state::state(settings).await,
            Scenario::Outbound => outbound::outbound(settings).await,
            Scenario::Grants => grants::grants(settings).await,
            Scenario::Cluster => cluster::cluster(settings).await,
        }
    }
}

/// How long and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `modhost` binary under test.
    pub modhost: PathBuf,
    /// The workspace root (for `modules/`).
    pub root: PathBuf,
    /// Scratch space (dist dirs, caches, logs).
    pub work: PathBuf,
    /// A B rounds per measurement.
    pub rounds: usize,
    /// Measured time of one load run.
    pub seconds: Duration,
    /// Unmeasured warm-up before each load run.
    pub warmup: Duration,
    /// Hot swaps per cache mode.
    pub swaps: usize,
    /// Modules for the cold-start and memory scenario.
    pub modules: usize,
    /// Messages per bus run.
    pub messages: u64,
    /// Payload bytes per bus message.
    pub payload: usize,
    /// The `wrk` binary for the `http` scenario (`None`: loadgen's own client only).
    pub wrk: Option<PathBuf>,
    /// An earlier `modhost` binary the `http` and `swap` scenarios measure in the same rounds.
    pub compare: Option<PathBuf>,
    /// A `modhost.toml` for that second server (with no `compare` binary: the same binary
    /// under this configuration, e.g. with a feature turned off).
    pub compare_config: Option<PathBuf>,
}

impl Settings {
    pub(crate) fn dist(&self, name: &str) -> PathBuf {
        self.root.join("modules/dist").join(name)
    }

    pub(crate) fn read_module(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.dist(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// A fresh scenario directory with an empty `dist/`.
    pub(crate) fn scratch(&self, scenario: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(scenario);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("dist"))?;
        Ok(dir)
    }

    pub(crate) fn modhost(&self, dir: &Path, log: &str) -> Modhost {
        Modhost {
            binary: self.modhost.clone(),
            command: "serve",
            root: dir.to_path_buf(),
            dist_dir: dir.join("dist"),
            modules_dir: dir.join("modules"),
            log: dir.join(log),
            start_timeout: Duration::from_secs(120),
            args: Vec::new(),
        }
    }

    pub(crate) async fn load(
        &self,
        target: &Target,
        concurrency: usize,
    ) -> anyhow::Result<LoadResult> {
        load::run(target, concurrency, self.warmup, self.seconds).await
    }
}

const AUTH: (&str, &str) = ("authorization", "Bearer letmein");

pub(crate) fn runs_json(runs: &[LoadResult]) -> serde_json::Value {
    serde_json::to_value(runs).unwrap_or_default()
}

pub(crate) fn rps(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.rps).collect::<Vec<_>>())
}

fn p50(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.p50_us as f64).collect::<Vec<_>>())
}

/// `req/s (p50 …, p99 …)` of a set of runs (medians).
pub(crate) fn summary(runs: &[LoadResult]) -> String {
    format!(
        "{} (p50 {}, p99 {})",
        rate(rps(runs)),
        micros(p50(runs)),
        micros(p99(runs))
    )
}

fn p99(runs: &[LoadResult]) -> f64 {
    median(&runs.iter().map(|run| run.p99_us as f64).collect::<Vec<_>>())
}

pub(crate) fn failures(runs: &[LoadResult]) -> u64 {
    runs.iter().map(|run| run.non_2xx + run.socket_errors).sum()
}

/// `GET path` → the body as text, or an error naming the status.
async fn get_text(
    addr: std::net::SocketAddr,
    method: ::http::Method,
    path: &str,
) -> anyhow::Result<String> {
    let mut target = Target::get(addr, path);
    target.method = method;
    let (status, body) = load::once(&target).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if !(200..300).contains(&status) {
        bail!("{path}: {status} {text}");
    }
    Ok(text)
}
