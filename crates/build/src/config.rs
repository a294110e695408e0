//! [`Config`]: where modules are, where their builds go, and how they are compiled.

use std::path::PathBuf;
use std::time::Duration;

/// Where modules are and how they are built. [`Config::new`] gives the conventional layout:
/// sources in `<modules>/<name>/wasm/`, output in `<modules>/dist/`, cargo's target dir
/// `<modules>/target/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The modules directory (`modules`). If it holds a `Cargo.toml`, that workspace builds
    /// the Rust modules in one cargo run; otherwise each module crate builds on its own.
    pub modules_dir: PathBuf,
    /// Where `<name>.wasm` files are published (`modules/dist`).
    pub dist_dir: PathBuf,
    /// cargo's `--target-dir` (`modules/target`), never the main workspace's; Go and C builds
    /// put their output under `go/` and `c/` inside it.
    pub target_dir: PathBuf,
    /// The cargo profile (`release`, size-optimised in `modules/Cargo.toml`).
    pub profile: String,
    /// The Rust target triple (`wasm32-wasip1`).
    pub target: String,
    /// Pass `--locked` to cargo: fail instead of updating `Cargo.lock` (CI).
    pub locked: bool,
    /// The cargo to run: `$CARGO` when set (the cargo running us), else `cargo`.
    pub cargo: PathBuf,
    /// The Go tool for Go modules (`go`, looked up on `PATH`).
    pub go: PathBuf,
    /// The C compiler for C modules (`clang`, looked up on `PATH`; it needs the wasm32 target,
    /// `wasm-ld` and wasi-libc).
    pub clang: PathBuf,
    /// How long the watcher waits for a burst of file events to settle before building.
    pub debounce: Duration,
}

impl Config {
    /// The conventional layout under `modules_dir`.
    pub fn new(modules_dir: impl Into<PathBuf>) -> Config {
        let modules_dir = modules_dir.into();
        Config {
            dist_dir: modules_dir.join("dist"),
            target_dir: modules_dir.join("target"),
            modules_dir,
            profile: "release".to_owned(),
            target: "wasm32-wasip1".to_owned(),
            locked: false,
            cargo: std::env::var_os("CARGO")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("cargo")),
            go: PathBuf::from("go"),
            clang: PathBuf::from("clang"),
            debounce: Duration::from_millis(150),
        }
    }
}
