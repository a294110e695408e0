//! `cargo xtask bench [OPTIONS] [SCENARIO...]`: builds the release `modhost` and `loadgen`
//! (profile `bench` = release + line tables, for profilers), rebuilds the modules the chosen
//! scenarios use (`bench`, `users`, `counter`, `proxy`, `pages`), runs the scenarios (`crates/loadgen`), appends the markdown section to
//! `docs/PERFORMANCE.md` and writes the JSON report to `docs/perf/<timestamp>.json`. The `http`
//! scenario is driven by `wrk` (installed like the tools of `tools.rs` when missing; without it
//! loadgen's own client measures alone); `--compare BIN` adds an earlier modhost binary to it.

use std::path::Path;
use std::process::Command;

use crate::{step, tools};

/// The cargo profile of the binaries under test: release plus line tables.
const PROFILE: &str = "bench";

/// Options passed through to `loadgen run`, each with one value.
const PASS_THROUGH: &[&str] = &[
    "--rounds",
    "--seconds",
    "--swaps",
    "--modules",
    "--messages",
    "--compare",
    "--compare-config",
];

/// The `http` scenario's client.
const WRK: tools::Tool = tools::Tool {
    purpose: "the http benchmark's client",
    present: tools::Present::Program("wrk"),
    source: tools::Source::Debian("wrk"),
};

fn text(mut command: Command) -> String {
    command
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args).current_dir(step::root());
    command
}

/// `uname`, CPU model and count, memory: the context of the absolute numbers.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| format!("{} GiB", kib / 1024 / 1024))
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "{}, {} cores ({cpu}), {memory} RAM, load average {}",
        text(command("uname", &["-srm"])),
        text(command("nproc", &[])),
        std::fs::read_to_string("/proc/loadavg")
            .map(|load| load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    )
}

fn commit() -> String {
    let hash = text(command("git", &["rev-parse", "--short", "HEAD"]));
    let dirty = !text(command(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
    ))
    .is_empty();
    if dirty {
        format!("{hash}+changes")
    } else {
        hash
    }
}

const HEADER: &str = "# Performance\n\nResults of `cargo xtask bench` are appended below.\n";

/// The modules the scenarios read from `modules/dist` (every one for all scenarios).
fn modules_for(scenarios: &[String]) -> Vec<String> {
    const NEEDS: &[(&str, &[&str])] = &[
        ("http", &["bench"]),
        ("bench", &["bench"]),
        ("users", &["users"]),
        ("swap", &["bench"]),
        ("bus", &["bench"]),
        ("coldstart", &["bench"]),
        ("devloop", &["users"]),
        ("state", &["bench", "counter"]),
        ("outbound", &["proxy"]),
        ("grants", &["pages"]),
    ];
    let mut modules: Vec<String> = Vec::new();
    for (scenario, needs) in NEEDS {
        if scenarios.is_empty() || scenarios.iter().any(|name| name == scenario) {
            for module in *needs {
                if !modules.iter().any(|known| known == module) {
                    modules.push((*module).to_owned());
                }
            }
        }
    }
    modules
}

/// `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut loadgen_args: Vec<String> = Vec::new();
    let mut scenarios: Vec<String> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if PASS_THROUGH.contains(&arg.as_str()) {
            let value = iter.next().ok_or(format!("{arg} needs a value"))?;
            loadgen_args.extend([arg.clone(), value.clone()]);
        } else if arg.starts_with('-') {
            return Err(format!(
                "unknown option {arg:?}; options: {}",
                PASS_THROUGH.join(" N, ")
            ));
        } else {
            scenarios.push(arg.clone());
        }
    }
    let root = step::root();
    step::run(step::cargo(&[
        "build",
        "--locked",
        "--profile",
        PROFILE,
        "-p",
        "server",
        "--bin",
        "modhost",
        "-p",
        "loadgen",
        "--bin",
        "loadgen",
    ]))?;
    let modules = modules_for(&scenarios);
    if !modules.is_empty() {
        crate::build_modules::run(&modules)?;
    }

    // wrk drives the `http` scenario when it is installed (or can be); otherwise that
    // scenario measures with loadgen's own client and says so in its output.
    if scenarios.is_empty() || scenarios.iter().any(|name| name == "http") {
        match tools::ensure(&[WRK]) {
            Ok(()) => {
                if let Some(wrk) = tools::find_program("wrk") {
                    loadgen_args.extend(["--wrk".to_owned(), wrk.display().to_string()]);
                }
            }
            Err(error) => eprintln!(
                "bench: wrk unavailable ({error}); the http scenario falls back to loadgen's own client"
            ),
        }
    }
    let stamp = text(command("date", &["-u", "+%Y%m%dT%H%M%SZ"]));
    let date = text(command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    let shown = format!("cargo xtask bench {}", args.join(" "));
    // Where cargo put them: CARGO_TARGET_DIR when set (the `bench` profile's binaries land in
    // its `release` directory).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release");
    let out = target.join("bench");
    let perf = root.join("docs/perf");
    for dir in [&out, &perf] {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("creating {}: {error}", dir.display()))?;
    }
    let json = perf.join(format!("{stamp}.json"));
    let markdown = out.join(format!("{stamp}.md"));
    let mut loadgen = Command::new(bin.join("loadgen"));
    loadgen
        .current_dir(&root)
        .arg("run")
        .arg("--modhost")
        .arg(bin.join("modhost"))
        .arg("--root")
        .arg(&root)
        .arg("--work")
        .arg(out.join("work"))
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .args(["--meta", &format!("date={date}")])
        .args(["--meta", &format!("commit={}", commit())])
        .args(["--meta", &format!("machine={}", machine())])
        .args(["--meta", &format!("command={}", shown.trim())])
        .args(&loadgen_args)
        .args(&scenarios);
    step::run(loadgen)?;
    append(&root.join("docs/PERFORMANCE.md"), &markdown)?;
    eprintln!(
        "bench: appended to docs/PERFORMANCE.md; JSON in {}",
        json.strip_prefix(&root).unwrap_or(&json).display()
    );
    Ok(())
}

fn append(document: &Path, section: &Path) -> Result<(), String> {
    let section = std::fs::read_to_string(section)
        .map_err(|error| format!("reading {}: {error}", section.display()))?;
    let mut text = std::fs::read_to_string(document).unwrap_or_else(|_| HEADER.to_owned());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&section);
    std::fs::write(document, text)
        .map_err(|error| format!("writing {}: {error}", document.display()))
}
