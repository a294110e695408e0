//! `modhost dev`: build every module, then rebuild a module when its sources change; the
//! server's dist watcher picks up each new `.wasm` and hot-swaps it.
//!
//! Builds use the modules workspace's `hot` profile (no LTO, incremental): a one-line change
//! rebuilds in about a second instead of several, at the cost of larger modules.

use build::{Builder, Config, Outcome, Report, Selection, WatchEvent, Watcher};
use server::ServerConfig;

/// The running source watcher; dropping it stops watching.
pub struct Dev {
    _watcher: Watcher,
}

fn show(report: &Report) {
    eprintln!("{report}");
    if let Outcome::Failed(text) = &report.outcome {
        eprintln!("{text}");
    }
}

/// Builds every module once (reporting each; failures don't stop the server), then starts
/// watching sources.
pub fn start(config: &ServerConfig) -> anyhow::Result<Dev> {
    let mut build_config = Config::new(config.modules_path());
    build_config.dist_dir = config.dist_path();
    build_config.profile = "hot".to_owned();
    let builder = Builder::new(build_config);
    for report in builder.build_all()? {
        show(&report);
    }
    let watcher = Watcher::start(builder, Selection::All, |event| match event {
        WatchEvent::Building(names) => eprintln!("rebuilding {}", names.join(", ")),
        WatchEvent::Built(report) => show(&report),
        WatchEvent::Error(error) => eprintln!("build watcher: {error}"),
    })?;
    Ok(Dev { _watcher: watcher })
}
