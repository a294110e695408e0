//! Finding modules: `<modules>/<name>/wasm/Cargo.toml` (Rust), `.../wasm/go.mod` (Go) or
//! `.../wasm/main.c` (C).

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The language a module is written in, from the file in its `wasm/` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    /// `wasm/Cargo.toml`: built with cargo for `wasm32-wasip1`.
    Rust,
    /// `wasm/go.mod` (and no `Cargo.toml`): built with `GOOS=wasip1 GOARCH=wasm go build
    /// -buildmode=c-shared`; needs Go ≥ 1.24 on `PATH` (without it the build fails, saying how
    /// to install it).
    Go,
    /// `wasm/main.c` (and neither of the above): every `wasm/*.c` built with `clang
    /// --target=wasm32-wasi -mexec-model=reactor` and wasi-libc, `modules/c-sdk` on the
    /// include path.
    C,
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

    /// The file that makes it a module: `wasm/Cargo.toml`, `wasm/go.mod` or `wasm/main.c`.
    pub fn manifest(&self) -> PathBuf {
        self.source_dir().join(match self.language {
            Language::Rust => "Cargo.toml",
            Language::Go => "go.mod",
            Language::C => "main.c",
        })
    }
}

/// Directory names under the modules directory that are never modules (`target`, `dist`,
/// dot directories).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "dist"
}

/// What [`valid_name`] allows, for messages.
pub const NAME_RULE: &str = "a module name may only use ASCII letters, digits, `-` and `_` (it is a URL segment and a file name)";

/// Whether `name` works as a module name: in a URL path segment and a file name, unchanged
/// (ASCII letters, digits, `-` and `_`).
pub fn valid_name(name: &str) -> bool {
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
    } else if source.join("main.c").is_file() {
        Language::C
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
/// starting with `.` are skipped, and so are directories without `wasm/Cargo.toml`,
/// `wasm/go.mod` or `wasm/main.c`. A missing modules directory has no modules.
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
