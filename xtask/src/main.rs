//! `cargo xtask`: modhost's project automation, in Rust so it runs wherever cargo does.
//!
//! Commands:
//! - `cargo xtask verify`: everything CI checks (formatting, lints, the dependency-direction
//!   rules, the wasm32-wasip1 builds, every test), with a summary table.
//! - `cargo xtask deps`: the dependency-direction check alone.
//! - `cargo xtask build-modules [--watch] [NAME...]`: builds the modules in `modules/` into
//!   `modules/dist/` with the `build` library, and with `--watch` rebuilds them on save.
//! - `cargo xtask soak [--minutes N]`: the soak test against the real binary (default 10 min).
//! - `cargo xtask bench [OPTIONS] [SCENARIO...]`: the benchmarks of `docs/PERFORMANCE.md`.
//! - `cargo xtask fuzz [--minutes N] [TARGET...]`: the cargo-fuzz targets in `fuzz/`, each for
//!   a bounded time (installs cargo-fuzz when it is missing).

mod bench;
mod build_modules;
mod deps;
mod fuzz;
mod run_command;
mod soak;
mod step;
mod tools;
mod verify;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  verify [--quick] [STEP...]
            run everything CI checks: fmt, clippy, deps, tools, wasm, modules,
            tests, e2e, fuzz, soak, readme (or just the STEPs); --quick: fmt, clippy,
            tests, e2e
  deps      check the dependency-direction rules (cargo tree)
  build-modules [--watch] [--profile NAME] [NAME...]
            build modules/*/wasm into modules/dist (all, or the NAMEs);
            --watch rebuilds a module when its sources change (profile hot)
  soak [--minutes N]
            the soak test against the real modhost binary: load, a swap every
            500 ms, traps, WebSocket churn, bus traffic; checks RSS, fds and
            threads for leaks (default 10 minutes; verify runs 60 s)
  bench [--rounds N] [--seconds S] [--swaps N] [--modules N] [--messages N]
        [--compare BIN] [SCENARIO...]
            build release modhost + loadgen, run the scenarios (http, bench, users,
            swap, bus, coldstart, devloop, state, outbound, grants, cluster; default
            all) against their baselines, append the results to docs/PERFORMANCE.md,
            JSON to docs/perf/; http uses wrk (installed if missing, else loadgen's client);
            --compare BIN measures an earlier modhost in the same http rounds
  fuzz [--minutes N | --seconds N] [TARGET...]
            run the fuzz targets in fuzz/ (all, or the TARGETs), N each
            (default 60 s); installs cargo-fuzz if missing
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("verify") => verify::run(&args[1..]),
        Some("deps") => deps::run(),
        Some("build-modules") => build_modules::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            eprint!("{USAGE}");
            return if args.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
