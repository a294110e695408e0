//! Runs `wrk` (the HTTP benchmarking tool HTTP figures are usually quoted with) against a
//! loopback server and turns its output into a [`LoadResult`]: a small Lua script, written to
//! a temporary file, prints wrk's summary and latency percentiles as one JSON line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::load::LoadResult;

/// The marker before the JSON line the script prints.
const MARKER: &str = "WRK_JSON ";

/// wrk's `done` hook: requests, errors and latency percentiles (microseconds) as JSON.
const SCRIPT: &str = r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#;

#[derive(Debug, Deserialize)]
struct Summary {
    requests: u64,
    duration_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

/// A `wrk` binary and its JSON-printing script.
#[derive(Debug, Clone)]
pub struct Wrk {
    program: PathBuf,
    script: PathBuf,
}

impl Wrk {
    /// Uses `program`, writing the script into `scratch`.
    pub fn new(program: &Path, scratch: &Path) -> anyhow::Result<Wrk> {
        std::fs::create_dir_all(scratch)?;
        let script = scratch.join("wrk-json.lua");
        std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
        Ok(Wrk {
            program: program.to_path_buf(),
            script,
        })
    }

    /// `wrk` on `PATH`, if it is installed.
    pub fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("wrk"))
            .find(|candidate| candidate.is_file())
    }

    /// One run: `concurrency` keep-alive connections on `url` for `seconds` (whole seconds,
    /// at least 1), two threads (one when `concurrency` is 1). Blocks.
    pub fn run(
        &self,
        url: &str,
        concurrency: usize,
        seconds: Duration,
    ) -> anyhow::Result<LoadResult> {
        let threads = concurrency.clamp(1, 2);
        let whole = seconds.as_secs().max(1);
        let output = Command::new(&self.program)
            .arg(format!("-t{threads}"))
            .arg(format!("-c{concurrency}"))
            .arg(format!("-d{whole}s"))
            .arg("--latency")
            .arg("-s")
            .arg(&self.script)
            .arg(url)
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(MARKER))
            .with_context(|| format!("no {MARKER:?} line in wrk's output:\n{stdout}"))?;
        let summary: Summary =
            serde_json::from_str(line).with_context(|| format!("wrk's summary line {line:?}"))?;
        let seconds = summary.duration_us as f64 / 1e6;
        Ok(LoadResult {
            concurrency,
            seconds,
            requests: summary.requests,
            rps: summary.requests as f64 / seconds.max(1e-9),
            p50_us: summary.p50_us,
            p90_us: summary.p90_us,
            p99_us: summary.p99_us,
            max_us: summary.max_us,
            non_2xx: summary.status,
            socket_errors: summary.connect + summary.read + summary.write + summary.timeout,
        })
    }
}
