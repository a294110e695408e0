//! Finding modules: `<modules>/<name>/wasm/Cargo.toml` (Rust) or `.../wasm/go.mod` (Go).

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The language a module is written in, from the file in its `wasm/` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    /// `wasm/Cargo.toml`: built with cargo for `wasm32-wasip1`.
    Rust,
    /// `wasm/go.mod` (and no `Cargo.toml`): built with `GOOS=wasip1 GOARCH=wasm go build
    /// -buildmode=c-shared` when Go ≥ 1.24 is on `PATH`, skipped otherwise.
    Go,
}

/// One module found in the modules directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Module {
    /// The directory name: the module's name in `/m/{name}` and `dist/<name>.wasm`.
    pub name: String,
    /// `<modules>/<name>`.
    pub dir: PathBuf,
    /// What builds it.
    pub language: Language,
}

impl Module {
    /// `<modules>/<name>/wasm`: the sources.
    pub fn source_dir(&self) -> PathBuf {
        self.dir.join("wasm")
    }

    /// The file that makes it a module: `wasm/Cargo.toml` or `wasm/go.mod`.
    pub fn manifest(&self) -> PathBuf {
        self.source_dir().join(match self.language {
            Language::Rust => "Cargo.toml",
            Language::Go => "go.mod",
        })
    }
}

/// Directory names under the modules directory that are never modules.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "dist"
}

/// Whether `name` works as a module name: in a URL path segment and a file name, unchanged.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The module in `<modules>/<name>`, if that directory holds one.
pub(crate) fn module_at(modules_dir: &Path, name: &str) -> Option<Module> {
    if is_reserved(name) {
        return None;
    }
    let dir = modules_dir.join(name);
    let source = dir.join("wasm");
    let language = if source.join("Cargo.toml").is_file() {
        Language::Rust
    } else if source.join("go.mod").is_file() {
        Language::Go
    } else {
        return None;
    };
    Some(Module {
        name: name.to_owned(),
        dir,
        language,
    })
}

/// Every module under `modules_dir`, sorted by name. Directories named `target`, `dist` or
/// starting with `.` are skipped, and so are directories without `wasm/Cargo.toml` or
/// `wasm/go.mod`. A missing modules directory has no modules.
pub fn discover(modules_dir: &Path) -> Result<Vec<Module>, Error> {
    let entries = match std::fs::read_dir(modules_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("reading", modules_dir, error)),
    };
    let mut modules = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("reading", modules_dir, error))?;
        if !entry.path().is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        modules.extend(module_at(modules_dir, &name));
    }
    modules.sort();
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_urls_and_file_names() {
        for good in ["users", "a-b", "a_b", "A1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a.b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for reserved in ["target", "dist", ".git"] {
            assert!(is_reserved(reserved));
        }
    }
}
