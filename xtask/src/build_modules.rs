//! `cargo xtask build-modules [--watch] [--profile NAME] [NAME...]`: the `build` library
//! (the code path the server's dev mode uses) with output a person can follow.

use std::time::Instant;

use build::{Builder, Config, Outcome, Report, Selection, WatchEvent, Watcher};

use crate::step;

/// The profile of one-shot builds: size-optimised, what `dist/` ships.
const RELEASE: &str = "release";
/// The profile of `--watch`: fast incremental rebuilds (see `modules/Cargo.toml`).
const HOT: &str = "hot";

/// The parsed command line.
struct Options {
    watch: bool,
    profile: Option<String>,
    names: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        watch: false,
        profile: None,
        names: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--watch" | "-w" => options.watch = true,
            "--profile" => {
                let profile = args.next().ok_or("--profile needs a profile name")?;
                options.profile = Some(profile.clone());
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag:?}\nusage: cargo xtask build-modules [--watch] \
                     [--profile NAME] [NAME...]"
                ));
            }
            name => options.names.push(name.to_owned()),
        }
    }
    Ok(options)
}

fn builder(profile: &str, locked: bool) -> Builder {
    let mut config = Config::new(step::root().join("modules"));
    config.profile = profile.to_owned();
    config.locked = locked;
    Builder::new(config)
}

/// Prints a report's line, then its full text when there is more to say.
fn print_report(report: &Report) {
    eprintln!("  {report}");
    match &report.outcome {
        Outcome::Failed(text) => eprintln!("\n{text}\n"),
        Outcome::Built(built) => {
            for warning in &built.warnings {
                eprintln!("\n{}", warning.trim_end());
            }
        }
    }
}

/// Builds `names` (every module when empty) once; an error when any of them failed.
fn build_once(builder: &Builder, names: &[String]) -> Result<(), String> {
    let modules = builder.select(names).map_err(|error| error.to_string())?;
    if modules.is_empty() {
        eprintln!("no modules in {}", builder.config().modules_dir.display());
        return Ok(());
    }
    eprintln!(
        "building {} module(s) for {} (profile {}) into {}",
        modules.len(),
        builder.config().target,
        builder.config().profile,
        builder.config().dist_dir.display()
    );
    let started = Instant::now();
    let reports = builder.build(&modules);
    for report in &reports {
        print_report(report);
    }
    let count = |wanted: fn(&Outcome) -> bool| {
        reports
            .iter()
            .filter(|report| wanted(&report.outcome))
            .count()
    };
    let built = count(|outcome| matches!(outcome, Outcome::Built(_)));
    let changed = count(|outcome| matches!(outcome, Outcome::Built(built) if built.changed));
    let failed = count(|outcome| matches!(outcome, Outcome::Failed(_)));
    eprintln!(
        "{built} built ({changed} changed), {failed} failed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        Ok(())
    } else {
        let names: Vec<&str> = reports
            .iter()
            .filter(|report| report.is_failed())
            .map(|report| report.module.as_str())
            .collect();
        Err(format!("module(s) failed to build: {}", names.join(", ")))
    }
}

/// `cargo xtask build-modules`.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let default_profile = if options.watch { HOT } else { RELEASE };
    let profile = options.profile.as_deref().unwrap_or(default_profile);
    let builder = builder(profile, false);
    let first = build_once(&builder, &options.names);
    if !options.watch {
        return first;
    }
    if let Err(message) = first {
        eprintln!("{message}; watching for fixes");
    }
    let selection = if options.names.is_empty() {
        Selection::All
    } else {
        Selection::Only(options.names.clone())
    };
    let started = Instant::now();
    let _watcher = Watcher::start(builder, selection, move |event| match event {
        WatchEvent::Building(names) => eprintln!(
            "\n[{:>7.1}s] changed: {}",
            started.elapsed().as_secs_f64(),
            names.join(", ")
        ),
        WatchEvent::Built(report) => print_report(&report),
        WatchEvent::Error(message) => eprintln!("watch: {message}"),
    })
    .map_err(|error| error.to_string())?;
    eprintln!(
        "\nwatching {} (Ctrl-C to stop)",
        step::root().join("modules").display()
    );
    loop {
        std::thread::park();
    }
}

/// The verify step: every example module builds (release profile, `--locked`).
pub fn verify() -> Result<(), String> {
    build_once(&builder(RELEASE, true), &[])?;
    // The Rust modules' own unit tests (on the host, against `guest::testing`); the Go
    // modules' `go test` runs in the server's `guests` tests.
    let manifest = crate::step::root().join("modules/Cargo.toml");
    let mut test = crate::step::cargo(&["test", "--locked", "--manifest-path"]);
    test.arg(manifest);
    crate::step::run(test)
}
