//! `cargo xtask fuzz [--minutes N | --seconds N] [TARGET...]`: installs cargo-fuzz if it is
//! missing, builds the targets in `fuzz/`, runs each for a bounded time and reports
//! executions and crashes. See `docs/FUZZING.md`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::step;

/// The cargo-fuzz release `cargo xtask fuzz` installs (`cargo install --locked`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Fuzzing time per target when neither `--minutes` nor `--seconds` is given.
const DEFAULT_SECONDS: u64 = 60;

/// One fuzz target in `fuzz/fuzz_targets/`.
#[derive(Debug)]
pub struct Target {
    /// The target's (binary's) name.
    pub name: &'static str,
    /// libFuzzer's sanitizer: `address` where it works, `none` where it can't (wasmer's
    /// trap handling relies on its own signal handlers).
    sanitizer: &'static str,
    /// Cargo features the target needs.
    features: Option<&'static str>,
    /// Seed inputs: files in `crates/binary/test_data/` whose names start with this and end
    /// in `.bin`.
    seeds: Option<&'static str>,
    /// libFuzzer's per-input timeout in seconds: an input running longer is a hang, reported
    /// like a crash.
    timeout_seconds: u32,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "decode_message",
        sanitizer: "address",
        features: None,
        seeds: Some("message_"),
        timeout_seconds: 5,
    },
    Target {
        name: "decode_http_request",
        sanitizer: "address",
        features: None,
        seeds: Some("http_request"),
        timeout_seconds: 5,
    },
    Target {
        name: "decode_http_response",
        sanitizer: "address",
        features: None,
        seeds: Some("http_response"),
        timeout_seconds: 5,
    },
    Target {
        name: "host_imports",
        sanitizer: "none",
        features: Some("host"),
        seeds: None,
        timeout_seconds: 30,
    },
];

/// What one target's run found.
#[derive(Debug)]
pub struct RunReport {
    /// The target.
    pub target: &'static str,
    /// Wall time spent fuzzing (after the build).
    pub elapsed: Duration,
    /// Inputs executed, from libFuzzer's final statistics.
    pub executions: Option<u64>,
    /// Inputs in the corpus at the end.
    pub corpus: Option<u64>,
    /// The input that crashed (or hung), when one did.
    pub crash: Option<String>,
}

#[derive(Debug)]
struct Options {
    seconds: u64,
    targets: Vec<&'static Target>,
}

const OPTIONS_USAGE: &str = "usage: cargo xtask fuzz [--minutes N | --seconds N] [TARGET...]";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            flag @ ("--minutes" | "--seconds") => {
                let value = args.next().ok_or(format!("{flag} needs a number"))?;
                let value: u64 = value
                    .parse()
                    .map_err(|_| format!("{flag} needs a whole number, not {value:?}"))?;
                seconds = if flag == "--minutes" {
                    value * 60
                } else {
                    value
                };
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag:?}\n{OPTIONS_USAGE}"));
            }
            name => {
                let target = TARGETS
                    .iter()
                    .find(|target| target.name == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> = TARGETS.iter().map(|target| target.name).collect();
                        format!(
                            "unknown fuzz target {name:?} (targets: {})",
                            names.join(", ")
                        )
                    })?;
                targets.push(target);
            }
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().collect();
    }
    if seconds == 0 {
        return Err("the fuzzing time must be at least one second".into());
    }
    Ok(Options { seconds, targets })
}

/// `cargo xtask fuzz`.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let reports = run_targets(&options.targets, Duration::from_secs(options.seconds))?;
    let crashed: Vec<&RunReport> = reports
        .iter()
        .filter(|report| report.crash.is_some())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        let lines: Vec<String> = crashed
            .iter()
            .map(|report| {
                format!(
                    "{}: {}",
                    report.target,
                    report.crash.as_deref().unwrap_or_default()
                )
            })
            .collect();
        Err(format!(
            "fuzzing found {} crash(es); reproduce with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz \
             run TARGET ARTIFACT`:\n  {}",
            crashed.len(),
            lines.join("\n  ")
        ))
    }
}

/// The decoding targets for `seconds` each: cheap to build (no wasmer), for a bounded check
/// such as a CI step. Fails on a crash.
pub fn smoke(seconds: u64) -> Result<(), String> {
    let decoding: Vec<&Target> = TARGETS
        .iter()
        .filter(|target| target.features.is_none())
        .collect();
    let reports = run_targets(&decoding, Duration::from_secs(seconds))?;
    match reports.iter().find(|report| report.crash.is_some()) {
        Some(report) => Err(format!(
            "fuzz target {} crashed: {}",
            report.target,
            report.crash.as_deref().unwrap_or_default()
        )),
        None => Ok(()),
    }
}

/// Installs cargo-fuzz if needed, builds `targets`, runs each for `duration` and prints a
/// summary. A crash is in the reports, not an `Err`; `Err` is a failure to install, build or
/// start.
pub fn run_targets(targets: &[&Target], duration: Duration) -> Result<Vec<RunReport>, String> {
    ensure_cargo_fuzz()?;
    let mut build_times = Vec::new();
    for target in targets {
        let started = Instant::now();
        eprintln!("==> building fuzz target {}", target.name);
        let mut command = cargo_fuzz(&["build"], target);
        command.arg(target.name);
        step::run(command)?;
        build_times.push(started.elapsed());
    }
    let mut reports = Vec::new();
    for target in targets {
        eprintln!("==> fuzzing {} for {} s", target.name, duration.as_secs());
        reports.push(fuzz_one(target, duration)?);
    }
    eprintln!(
        "\n{:<22} {:>8} {:>12} {:>8} {:>8}  result",
        "target", "build", "executions", "exec/s", "corpus"
    );
    for (report, build) in reports.iter().zip(&build_times) {
        let per_second = report
            .executions
            .map(|executions| executions as f64 / report.elapsed.as_secs_f64().max(1.0));
        eprintln!(
            "{:<22} {:>7.0}s {:>12} {:>8} {:>8}  {}",
            report.target,
            build.as_secs_f64(),
            report
                .executions
                .map_or_else(|| "?".to_owned(), |value| value.to_string()),
            per_second.map_or_else(|| "?".to_owned(), |value| format!("{value:.0}")),
            report
                .corpus
                .map_or_else(|| "?".to_owned(), |value| value.to_string()),
            report.crash.as_deref().unwrap_or("ok"),
        );
    }
    Ok(reports)
}

fn fuzz_dir() -> PathBuf {
    step::root().join("fuzz")
}

/// `cargo fuzz SUBCOMMAND` for `target` in `fuzz/`, with the target's sanitizer and features.
///
/// cargo-fuzz passes `-Z` flags to rustc (`-Zsanitizer`), which only a nightly compiler
/// accepts; the pinned stable one does when `RUSTC_BOOTSTRAP=1` is set, and no nightly is
/// available to this project.
fn cargo_fuzz(subcommand: &[&str], target: &Target) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("fuzz")
        .args(subcommand)
        .args(["--sanitizer", target.sanitizer])
        .current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1");
    if let Some(features) = target.features {
        command.args(["--features", features]);
    }
    command
}

/// Runs cargo-fuzz's installed version check; installs the pinned release when it is
/// missing or another version.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    if installed.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!(
        "==> installing {wanted} (found: {})",
        installed.as_deref().unwrap_or("none")
    );
    let mut command = Command::new(cargo);
    command.args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]);
    step::run(command)
}

/// Copies the target's golden vectors into its corpus directory (once; libFuzzer keeps the
/// corpus growing there between runs).
fn seed(target: &Target, corpus: &Path) -> Result<(), String> {
    std::fs::create_dir_all(corpus)
        .map_err(|error| format!("cannot create {}: {error}", corpus.display()))?;
    let Some(prefix) = target.seeds else {
        return Ok(());
    };
    let test_data = step::root().join("crates/binary/test_data");
    let entries = std::fs::read_dir(&test_data)
        .map_err(|error| format!("cannot read {}: {error}", test_data.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".bin") {
            let destination = corpus.join(format!("seed-{name}"));
            if !destination.exists() {
                std::fs::copy(entry.path(), &destination)
                    .map_err(|error| format!("cannot copy {name}: {error}"))?;
            }
        }
    }
    Ok(())
}

fn fuzz_one(target: &Target, duration: Duration) -> Result<RunReport, String> {
    let corpus = fuzz_dir().join("corpus").join(target.name);
    seed(target, &corpus)?;
    let mut command = cargo_fuzz(&["run"], target);
    command
        .arg(target.name)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={}", duration.as_secs()))
        .arg(format!("-timeout={}", target.timeout_seconds))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    let shown = step::show(&command);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| format!("`{shown}` did not start: {error}"))?;
    let mut stats = Stats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            stats.read(&line);
        }
    }
    let status = child
        .wait()
        .map_err(|error| format!("`{shown}` did not finish: {error}"))?;
    let elapsed = started.elapsed();
    let crash = if status.success() {
        None
    } else {
        Some(
            stats
                .artifact
                .clone()
                .unwrap_or_else(|| format!("`{shown}` failed ({status}) without an artifact")),
        )
    };
    Ok(RunReport {
        target: target.name,
        elapsed,
        executions: stats.executions,
        corpus: stats.corpus,
        crash,
    })
}

/// What the libFuzzer output says, read line by line.
#[derive(Debug, Default)]
struct Stats {
    executions: Option<u64>,
    corpus: Option<u64>,
    artifact: Option<String>,
}

impl Stats {
    fn read(&mut self, line: &str) {
        if let Some(value) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = value.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix('#') {
            // `#160004	DONE   cov: 205 ft: 220 corp: 22/471b ...`: the last status line
            // counts executions too, in case the final statistics are missing.
            let mut words = rest.split_whitespace();
            if let Some(count) = words.next().and_then(|count| count.parse().ok()) {
                self.executions = self.executions.max(Some(count));
            }
            while let Some(word) = words.next() {
                if word == "corp:" {
                    self.corpus = words
                        .next()
                        .and_then(|value| value.split('/').next())
                        .and_then(|value| value.parse().ok());
                }
            }
        } else if let Some(at) = line.find("Test unit written to ") {
            self.artifact = Some(line[at + "Test unit written to ".len()..].trim().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_output_is_read() {
        let mut stats = Stats::default();
        for line in [
            "#88347\tREDUCE cov: 205 ft: 220 corp: 22/489b lim: 810 exec/s: 14724 rss: 148Mb",
            "#160004\tDONE   cov: 205 ft: 220 corp: 23/471b lim: 1496 exec/s: 7619 rss: 148Mb",
            "stat::number_of_executed_units: 160010",
            "artifact_prefix='/f/artifacts/t/'; Test unit written to /f/artifacts/t/crash-ab12",
        ] {
            stats.read(line);
        }
        assert_eq!(stats.executions, Some(160010));
        assert_eq!(stats.corpus, Some(23));
        assert_eq!(stats.artifact.as_deref(), Some("/f/artifacts/t/crash-ab12"));
    }

    #[test]
    fn options_are_parsed() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        let options = parse(&args(&["--minutes", "2", "host_imports"])).unwrap();
        assert_eq!(options.seconds, 120);
        assert_eq!(options.targets.len(), 1);
        assert_eq!(parse(&[]).unwrap().targets.len(), TARGETS.len());
        assert!(
            parse(&args(&["nope"]))
                .unwrap_err()
                .contains("decode_message")
        );
        assert!(parse(&args(&["--minutes", "x"])).is_err());
    }
}
