//! Building C modules: every `*.c` of `modules/<name>/wasm/` compiled and linked in one
//! `clang --target=wasm32-wasi -mexec-model=reactor` run (the WASI reactor start-up file gives
//! the module its `_initialize`), with `modules/c-sdk` on the include path for `modhost.h`.
//! A C module without clang is a failed build whose message says what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::config::Config;
use crate::discover::{Language, Module};
use crate::dist;
use crate::report::{Built, Outcome, Report};

/// How to install the C toolchain on Debian (what `cargo xtask verify`'s `tools` step runs).
pub(crate) const INSTALL_C: &str = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32";

/// The module's C sources, sorted: every `*.c` directly in `wasm/`.
fn sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "c") && path.is_file() {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// Builds one C module into `<target>/c/<name>.wasm` and publishes it.
pub(crate) fn build(config: &Config, module: &Module) -> Report {
    let started = Instant::now();
    let report = |outcome| Report {
        module: module.name.clone(),
        language: Language::C,
        elapsed: started.elapsed(),
        outcome,
    };
    let name = &module.name;
    let sources = match sources(&module.source_dir()) {
        Ok(sources) => sources,
        Err(error) => {
            return report(Outcome::Failed(format!(
                "module \"{name}\": reading {}: {error}",
                module.source_dir().display()
            )));
        }
    };
    let artifact = config.target_dir.join("c").join(format!("{name}.wasm"));
    if let Some(dir) = artifact.parent()
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        return report(Outcome::Failed(format!(
            "module \"{name}\": creating {}: {error}",
            dir.display()
        )));
    }
    let output = Command::new(&config.clang)
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-Os",
            "-Wall",
            "-Wextra",
            "-Werror=implicit-function-declaration",
        ])
        .arg("-I")
        .arg(config.modules_dir.join("c-sdk"))
        .arg("-o")
        .arg(&artifact)
        .args(&sources)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return report(Outcome::Failed(format!(
                "module \"{name}\": {} is not on PATH: C modules need clang with the wasm32 \
                 target, wasm-ld and wasi-libc; install them with `{INSTALL_C}`",
                config.clang.display()
            )));
        }
        Err(error) => {
            return report(Outcome::Failed(format!(
                "module \"{name}\": could not run {}: {error}",
                config.clang.display()
            )));
        }
    };
    let diagnostics = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_owned();
    if !output.status.success() {
        let hint = if diagnostics.contains("wasm-ld") && diagnostics.contains("not found")
            || diagnostics.contains("stdlib.h' file not found")
            || diagnostics.contains("libclang_rt.builtins-wasm32")
        {
            format!("\nhint: the wasm32 toolchain is incomplete; install it with `{INSTALL_C}`")
        } else {
            String::new()
        };
        return report(Outcome::Failed(format!(
            "module \"{name}\": clang failed:\n{diagnostics}{hint}"
        )));
    }
    let dest = config.dist_dir.join(format!("{name}.wasm"));
    match dist::publish(&artifact, &dest) {
        Ok(published) => report(Outcome::Built(Built {
            path: dest,
            size: published.size,
            changed: published.changed,
            warnings: if diagnostics.is_empty() {
                Vec::new()
            } else {
                vec![diagnostics]
            },
        })),
        Err(error) => report(Outcome::Failed(format!("module \"{name}\": {error}"))),
    }
}
