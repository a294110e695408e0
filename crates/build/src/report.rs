//! [`Report`]: what happened to one module in a build.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::discover::Language;

/// The result of building one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The module's name.
    pub module: String,
    /// Its language.
    pub language: Language,
    /// From the start of the build until this module's result was known. Modules built in
    /// one cargo run share the run's start, so this is "ready after", not CPU time.
    pub elapsed: Duration,
    /// Built or failed.
    pub outcome: Outcome,
}

/// How a module's build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Compiled and published to the dist directory.
    Built(Built),
    /// Did not compile; the last good `dist/<name>.wasm` (if any) is untouched. The text
    /// starts with `module "<name>": ` and holds the compiler's output in full.
    Failed(String),
}

/// A module that compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `dist/<name>.wasm`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the dist file was (re)written; `false` when the build produced the same bytes
    /// that were already there (the server's watcher then sees nothing).
    pub changed: bool,
    /// The compiler's warnings for the module's own crate, rendered.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the module failed to build.
    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// `12.3 KiB`, `1.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let bytes_f = bytes as f64;
    if bytes_f < KIB {
        format!("{bytes} B")
    } else if bytes_f < KIB * KIB {
        format!("{:.1} KiB", bytes_f / KIB)
    } else {
        format!("{:.1} MiB", bytes_f / (KIB * KIB))
    }
}

/// One line a person can follow: `built    users      138.8 KiB    2.95s`; a failure says so
/// (the full text is in the [`Outcome`]).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = format!("{:.2}s", self.elapsed.as_secs_f64());
        match &self.outcome {
            Outcome::Built(built) => {
                let status = if built.changed { "built" } else { "fresh" };
                let warnings = match built.warnings.len() {
                    0 => String::new(),
                    1 => "  (1 warning)".to_owned(),
                    count => format!("  ({count} warnings)"),
                };
                write!(
                    f,
                    "{status:<8} {:<16} {:>10} {time:>8}{warnings}",
                    self.module,
                    human_size(built.size)
                )
            }
            Outcome::Failed(_) => write!(
                f,
                "{:<8} {:<16} {:>10} {time:>8}",
                "FAILED", self.module, "-"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(142_090), "138.8 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn one_line_per_module() {
        let built = Report {
            module: "users".into(),
            language: Language::Rust,
            elapsed: Duration::from_millis(2950),
            outcome: Outcome::Built(Built {
                path: "dist/users.wasm".into(),
                size: 142_090,
                changed: true,
                warnings: vec!["w".into()],
            }),
        };
        assert_eq!(
            built.to_string(),
            "built    users             138.8 KiB    2.95s  (1 warning)"
        );
        let failed = Report {
            module: "hello-go".into(),
            language: Language::Go,
            elapsed: Duration::from_millis(10),
            outcome: Outcome::Failed("go is not on PATH\nmore".into()),
        };
        assert_eq!(
            failed.to_string(),
            "FAILED   hello-go                  -    0.01s"
        );
        assert!(failed.is_failed());
    }
}
