//! `cargo xtask verify`: every check CI runs, in order, failing fast, with a summary table.

use std::time::{Duration, Instant};

use crate::{deps, step};

/// One step of the check.
struct Step {
    name: &'static str,
    /// What it does, for the summary.
    what: &'static str,
    /// Part of `--quick` (the edit-test loop).
    quick: bool,
    run: fn() -> Result<(), String>,
}

const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        what: "formatting",
        quick: true,
        run: fmt,
    },
    Step {
        name: "clippy",
        what: "clippy -D warnings",
        quick: true,
        run: clippy,
    },
    Step {
        name: "deps",
        what: "dependency direction",
        quick: false,
        run: dependency_direction,
    },
    Step {
        name: "tools",
        what: "install missing outside tools",
        quick: false,
        run: crate::tools::verify,
    },
    Step {
        name: "wasm",
        what: "binary + guest for wasm32-wasip1",
        quick: false,
        run: wasm_build,
    },
    Step {
        name: "modules",
        what: "example modules (wasm32-wasip1) and their unit tests",
        quick: false,
        run: crate::build_modules::verify,
    },
    Step {
        name: "tests",
        what: "unit + integration tests",
        quick: true,
        run: tests,
    },
    Step {
        name: "e2e",
        what: "end-to-end suite",
        quick: true,
        run: end_to_end,
    },
    Step {
        name: "fuzz",
        what: "fuzz decoders (3 x 30 s)",
        quick: false,
        run: fuzz_smoke,
    },
    Step {
        name: "soak",
        what: "soak (60 s)",
        quick: false,
        run: crate::soak::verify,
    },
    Step {
        name: "readme",
        what: "README run command",
        quick: false,
        run: crate::run_command::check,
    },
];

fn fmt() -> Result<(), String> {
    step::run(step::cargo(&["fmt", "--all", "--", "--check"]))
}

fn clippy() -> Result<(), String> {
    step::run(step::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

fn dependency_direction() -> Result<(), String> {
    let summary = deps::check()?;
    eprintln!("{summary}");
    Ok(())
}

fn wasm_build() -> Result<(), String> {
    step::run(step::cargo(&[
        "build",
        "--locked",
        "--package",
        "binary",
        "--package",
        "guest",
        "--target",
        "wasm32-wasip1",
    ]))
}

// Both test steps select the whole workspace, so cargo resolves the same features for both
// and the second step rebuilds nothing; the end-to-end tests are told apart by name.

/// Every unit and integration test except the end-to-end suite (tests named `e2e_*`).
fn tests() -> Result<(), String> {
    step::run(step::cargo(&[
        "test",
        "--workspace",
        "--locked",
        "--",
        "--skip",
        "e2e_",
    ]))
}

/// The end-to-end suite (`tests/tests/e2e.rs`).
fn end_to_end() -> Result<(), String> {
    step::run(step::cargo(&[
        "test",
        "--workspace",
        "--locked",
        "--test",
        "e2e",
        "--",
        "--nocapture",
    ]))
}

/// The `binary` decoding fuzz targets, 30 s each (`docs/FUZZING.md`); the host-import target
/// needs an instrumented wasmer build that doesn't fit CI's budget, so it is run by hand.
fn fuzz_smoke() -> Result<(), String> {
    crate::fuzz::smoke(30)
}

enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped,
}

/// `cargo xtask verify [--quick] [STEP...]`: with names, only those steps run; `--quick` runs
/// the edit-test loop's steps (fmt, clippy, tests, e2e).
pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|arg| arg == "--quick");
    let args: Vec<&String> = args.iter().filter(|arg| *arg != "--quick").collect();
    if let Some(unknown) = args
        .iter()
        .find(|arg| !STEPS.iter().any(|step| step.name == arg.as_str()))
    {
        let names: Vec<&str> = STEPS.iter().map(|step| step.name).collect();
        return Err(format!(
            "unknown step {unknown:?}; steps: {}",
            names.join(", ")
        ));
    }
    let selected: Vec<&Step> = STEPS
        .iter()
        .filter(|step| !quick || step.quick)
        .filter(|step| args.is_empty() || args.iter().any(|arg| *arg == step.name))
        .collect();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut failure = None;
    for (index, current) in selected.iter().enumerate() {
        if failure.is_some() {
            outcomes.push((current.name, Outcome::Skipped));
            continue;
        }
        eprintln!(
            "\n==> verify [{}/{}] {}: {}",
            index + 1,
            selected.len(),
            current.name,
            current.what
        );
        let step_started = Instant::now();
        match (current.run)() {
            Ok(()) => outcomes.push((current.name, Outcome::Passed(step_started.elapsed()))),
            Err(message) => {
                outcomes.push((current.name, Outcome::Failed(step_started.elapsed())));
                failure = Some(format!("step \"{}\" failed: {message}", current.name));
            }
        }
    }
    eprintln!("\nverify summary");
    eprintln!("  {:<32} {:<8} {:>9}", "step", "result", "time");
    let mut passed = 0;
    let mut failed = 0;
    for (name, outcome) in &outcomes {
        let (result, time) = match outcome {
            Outcome::Passed(time) => {
                passed += 1;
                ("passed", format!("{:.1}s", time.as_secs_f64()))
            }
            Outcome::Failed(time) => {
                failed += 1;
                ("FAILED", format!("{:.1}s", time.as_secs_f64()))
            }
            Outcome::Skipped => ("skipped", "-".to_owned()),
        };
        eprintln!("  {name:<32} {result:<8} {time:>9}");
    }
    eprintln!("  total {:.1}s", started.elapsed().as_secs_f64());
    // The plain closing line CI reads: steps, not tests (cargo test prints its own counts).
    println!("verify: {passed} passed, {failed} failed");
    match failure {
        Some(message) => Err(message),
        None => Ok(()),
    }
}
