//! `loadgen`: `serve hello|users|proxy` runs a baseline server; `run` runs the scenarios and
//! writes the report (`cargo xtask bench` calls it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use loadgen::{Baseline, Scenario, Section, Settings};

#[derive(Parser)]
#[command(name = "loadgen", about = "modhost's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a baseline until killed; prints the bound address.
    Serve {
        /// `hello`, `users` or `proxy`.
        which: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run scenarios and write the report.
    Run(Box<Run>),
    /// One load run against any server (for profiling): prints the result as JSON.
    Load {
        /// Server address.
        #[arg(long)]
        addr: SocketAddr,
        /// Path and query.
        #[arg(long, default_value = "/m/bench")]
        path: String,
        /// Connections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

#[derive(clap::Args)]
struct Run {
    /// The modhost binary under test.
    #[arg(long)]
    modhost: PathBuf,
    /// The workspace root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Scratch directory.
    #[arg(long)]
    work: PathBuf,
    /// Write the JSON report here.
    #[arg(long)]
    json: PathBuf,
    /// Write the markdown section here.
    #[arg(long)]
    markdown: PathBuf,
    /// A B rounds per measurement.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per load run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Hot swaps per cache mode.
    #[arg(long, default_value_t = 100)]
    swaps: usize,
    /// Modules in the cold-start scenario.
    #[arg(long, default_value_t = 100)]
    modules: usize,
    /// Messages per bus run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// The `wrk` binary for the `http` scenario (default: `wrk` on PATH; without one the
    /// scenario uses loadgen's own client only, and says so).
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// An earlier modhost binary for the `http` and `swap` scenarios to measure in the same
    /// rounds.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// A modhost.toml for the `--compare` server (without `--compare`: the same binary with
    /// this configuration).
    #[arg(long)]
    compare_config: Option<PathBuf>,
    /// For the report header: `key=value` (date, commit, machine, command).
    #[arg(long = "meta")]
    meta: Vec<String>,
    /// Scenarios (default: all).
    scenarios: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { which, listen } => {
            let baseline = match which.as_str() {
                "hello" => Baseline::Hello,
                "users" => Baseline::Users,
                "proxy" => Baseline::Proxy,
                other => anyhow::bail!("unknown baseline {other:?}: hello, users or proxy"),
            };
            loadgen::serve(baseline, listen)
        }
        Command::Run(run) => run_scenarios(*run),
        Command::Load {
            addr,
            path,
            concurrency,
            seconds,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let result = runtime.block_on(loadgen::run(
                &loadgen::Target::get(addr, &path),
                concurrency,
                Duration::from_millis(500),
                Duration::from_secs_f64(seconds),
            ))?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }
    }
}

fn run_scenarios(run: Run) -> anyhow::Result<()> {
    let scenarios: Vec<Scenario> = if run.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        run.scenarios
            .iter()
            .map(|name| {
                Scenario::parse(name).with_context(|| {
                    let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown scenario {name:?}; known: {}", known.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let root = std::fs::canonicalize(&run.root)?;
    std::fs::create_dir_all(&run.work)?;
    let settings = Settings {
        modhost: std::fs::canonicalize(&run.modhost)
            .with_context(|| format!("{} not found", run.modhost.display()))?,
        root,
        work: std::fs::canonicalize(&run.work)?,
        rounds: run.rounds.max(1),
        seconds: Duration::from_secs_f64(run.seconds),
        warmup: Duration::from_millis(500),
        swaps: run.swaps,
        modules: run.modules,
        messages: run.messages,
        payload: 64,
        wrk: run.wrk.clone().or_else(loadgen::Wrk::find),
        compare: run
            .compare
            .as_ref()
            .map(|path| {
                std::fs::canonicalize(path).with_context(|| format!("{} not found", path.display()))
            })
            .transpose()?,
        compare_config: run
            .compare_config
            .as_ref()
            .map(|path| {
                std::fs::canonicalize(path).with_context(|| format!("{} not found", path.display()))
            })
            .transpose()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut sections: Vec<Section> = Vec::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    for scenario in scenarios {
        let name = scenario.name();
        eprintln!("== {name}");
        let result = runtime.block_on(scenario.run(&settings));
        match result {
            Ok(section) => sections.push(section),
            Err(error) => {
                eprintln!("{name}: failed: {error:#}");
                failures.push((name.to_owned(), format!("{error:#}")));
            }
        }
    }
    let meta: serde_json::Map<String, serde_json::Value> = run
        .meta
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), serde_json::Value::from(value)))
        .collect();
    let report = serde_json::json!({
        "meta": meta,
        "settings": {
            "rounds": settings.rounds,
            "seconds": run.seconds,
            "warmup_seconds": settings.warmup.as_secs_f64(),
            "swaps": settings.swaps,
            "modules": settings.modules,
            "messages": settings.messages,
            "payload_bytes": settings.payload,
            "wrk": settings.wrk.as_ref().map(|path| path.display().to_string()),
            "compare": settings.compare.as_ref().map(|path| path.display().to_string()),
            "compare_config": settings.compare_config.as_ref().map(|path| path.display().to_string()),
        },
        "sections": sections,
        "failures": failures.iter().map(|(name, error)| serde_json::json!({"scenario": name, "error": error})).collect::<Vec<_>>(),
    });
    std::fs::write(&run.json, serde_json::to_vec_pretty(&report)?)?;
    let get = |key: &str| {
        meta.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let mut markdown = format!(
        "\n### {} — commit `{}`\n\n- machine: {}\n- command: `{}`\n- {} rounds A B interleaved, {} s measured per load run after 0.5 s warm-up; medians; ratio = modhost / baseline\n",
        get("date"),
        get("commit"),
        get("machine"),
        get("command"),
        settings.rounds,
        run.seconds
    );
    markdown.push_str(&loadgen::markdown(&sections));
    for (name, error) in &failures {
        markdown.push_str(&format!(
            "\n**`{name}`** — failed: `{}`\n",
            error.replace('\n', " ")
        ));
    }
    std::fs::write(&run.markdown, markdown)?;
    eprintln!(
        "wrote {} and {}",
        run.json.display(),
        run.markdown.display()
    );
    Ok(())
}
