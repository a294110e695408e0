//! Builds modhost's modules: finds `modules/*/wasm/` crates, compiles them for
//! `wasm32-wasip1`, writes `modules/dist/<name>.wasm` atomically, and watches the sources to
//! rebuild only what changed.
//!
//! The same code runs behind `cargo xtask build-modules [--watch]` and the server's dev mode.
//! It knows cargo (and the Go tool) and the file system — not the runtime: nothing here loads
//! or runs a module.
//!
//! - [`discover`]: `<modules>/<name>/wasm/Cargo.toml` is a Rust module,
//!   `<modules>/<name>/wasm/go.mod` a Go module, `<modules>/<name>/wasm/main.c` a C module;
//!   `target/`, `dist/` and dot directories are skipped.
//! - [`Builder::build`]: Rust modules of the modules workspace compile in **one**
//!   `cargo build --keep-going --message-format=json` run into the modules' own target dir
//!   (never the main workspace's); cargo's messages are attributed to modules by manifest
//!   path, so each module gets its own [`Report`]: built (size, time, warnings) or failed (the
//!   compiler's output in full, naming the module). One failing module never stops
//!   the others, and a failed build never touches the last good `dist/<name>.wasm`.
//! - [`write_atomic`]: temp file in the same directory, fsync, rename, directory fsync. A
//!   watcher of the dist directory never sees half a file. Unchanged output isn't rewritten.
//! - [`Watcher`]: notify-debouncer-full on the module directories (never `target/` or
//!   `dist/`), bursts of saves coalesced, only the changed module rebuilt.
//! - Go modules build with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (Go ≥ 1.24)
//!   and C modules with `clang --target=wasm32-wasi -mexec-model=reactor`; a missing
//!   toolchain fails the module with the command that installs it, never a silent skip
//!   (`docs/guest-languages.md`).
//!
//! ```no_run
//! use build::{Builder, Config, Outcome};
//!
//! let builder = Builder::new(Config::new("modules"));
//! for report in builder.build_all()? {
//!     println!("{report}");
//!     if let Outcome::Failed(text) = &report.outcome {
//!         eprintln!("{text}");
//!     }
//! }
//! # Ok::<(), build::Error>(())
//! ```

#![warn(missing_docs)]

mod builder;
mod c;
mod cargo;
mod config;
mod discover;
mod dist;
mod error;
mod go;
mod report;
mod watch;

pub use builder::Builder;
pub use config::Config;
pub use discover::{Language, Module, NAME_RULE, discover, is_reserved, valid_name};
pub use dist::write_atomic;
pub use error::Error;
pub use report::{Built, Outcome, Report, human_size};
pub use watch::{Selection, WatchEvent, Watcher};
