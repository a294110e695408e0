//! Building Rust modules with cargo: one `cargo build --keep-going --message-format=json` per
//! workspace, its messages attributed to modules by manifest path.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::Config;
use crate::discover::{Language, Module};
use crate::dist;
use crate::report::{Built, Outcome, Report};

/// The parts of cargo's JSON messages we read
/// (<https://doc.rust-lang.org/cargo/reference/external-tools.html#json-messages>).
#[derive(Debug, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
enum Json {
    CompilerArtifact {
        manifest_path: PathBuf,
        target: Target,
        filenames: Vec<PathBuf>,
    },
    CompilerMessage {
        manifest_path: PathBuf,
        message: Diagnostic,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Target {
    kind: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Diagnostic {
    level: String,
    rendered: Option<String>,
}

/// What one cargo run reported.
#[derive(Debug, Default)]
struct Run {
    /// manifest → (the `.wasm` cargo produced, when it said so).
    artifacts: HashMap<PathBuf, (PathBuf, Instant)>,
    /// (manifest, level, rendered text), in order.
    diagnostics: Vec<(PathBuf, String, String)>,
    /// cargo's own standard error, without its progress lines.
    stderr: String,
    /// Whether cargo exited successfully.
    success: bool,
}

/// Resolves a path for comparison; cargo reports canonical paths.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `path` made absolute against the current directory (unchanged if that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Cargo's progress lines (`   Compiling x v0.1.0`), which say nothing about failures.
fn is_progress(line: &str) -> bool {
    const VERBS: &[&str] = &[
        "Compiling",
        "Finished",
        "Blocking",
        "Updating",
        "Locking",
        "Downloading",
        "Downloaded",
        "Adding",
        "Fresh",
        "Checking",
        "Building",
        "Running",
        "Waiting",
        "Unpacking",
    ];
    let trimmed = line.trim_start();
    VERBS.iter().any(|verb| {
        trimmed
            .strip_prefix(verb)
            .is_some_and(|rest| rest.starts_with(' '))
    })
}

/// A cargo command with the environment a module build needs.
fn cargo(config: &Config, args: &[&str]) -> Command {
    let mut command = Command::new(&config.cargo);
    command
        .args(args)
        .current_dir(&config.modules_dir)
        // Flags meant for the host build (or set by an outer cargo) must not leak into the
        // wasm build; a module's flags belong in its profile or modules/.cargo/config.toml.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null());
    command
}

/// Runs `cargo build` on `manifest` (with `-p` for each of `packages`, if any) and collects
/// its messages.
fn run(config: &Config, manifest: &Path, packages: &[&str]) -> Result<Run, String> {
    // cargo runs in the modules directory: relative paths would be read from there.
    let manifest_arg = absolute(manifest).to_string_lossy().into_owned();
    let target_dir = absolute(&config.target_dir).to_string_lossy().into_owned();
    let mut args = vec![
        "build",
        "--message-format=json",
        "--keep-going",
        "--profile",
        config.profile.as_str(),
        "--target",
        config.target.as_str(),
        "--target-dir",
        target_dir.as_str(),
        "--manifest-path",
        manifest_arg.as_str(),
    ];
    if config.locked {
        args.push("--locked");
    }
    for package in packages {
        args.extend(["-p", package]);
    }
    let mut child = cargo(config, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run {}: {error}", config.cargo.display()))?;
    // Standard error on its own thread so neither pipe can fill up and stall cargo.
    let stderr_reader = child.stderr.take().map(|mut stderr| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        })
    });
    let mut output = Run::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Json>(&line) {
                Ok(Json::CompilerArtifact {
                    manifest_path,
                    target,
                    filenames,
                }) if target.kind.iter().any(|kind| kind == "cdylib") => {
                    if let Some(wasm) = filenames
                        .into_iter()
                        .find(|file| file.extension().is_some_and(|ext| ext == "wasm"))
                    {
                        output
                            .artifacts
                            .insert(canonical(&manifest_path), (wasm, Instant::now()));
                    }
                }
                Ok(Json::CompilerMessage {
                    manifest_path,
                    message,
                }) => {
                    if let Some(rendered) = message.rendered {
                        output.diagnostics.push((
                            canonical(&manifest_path),
                            message.level,
                            rendered,
                        ));
                    }
                }
                // Other messages, and any line that isn't JSON (none expected).
                _ => {}
            }
        }
    }
    let status = child
        .wait()
        .map_err(|error| format!("waiting for cargo: {error}"))?;
    output.success = status.success();
    let stderr = stderr_reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    output.stderr = stderr
        .lines()
        .filter(|line| !is_progress(line))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(output)
}

/// The package names of the workspace at `manifest`, by canonical manifest path.
fn workspace_packages(
    config: &Config,
    manifest: &Path,
) -> Result<HashMap<PathBuf, String>, String> {
    #[derive(Deserialize)]
    struct Metadata {
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        manifest_path: PathBuf,
    }
    let manifest_arg = absolute(manifest).to_string_lossy().into_owned();
    let output = cargo(
        config,
        &[
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
            &manifest_arg,
        ],
    )
    .output()
    .map_err(|error| format!("could not run {}: {error}", config.cargo.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("reading `cargo metadata` output: {error}"))?;
    Ok(metadata
        .packages
        .into_iter()
        .map(|package| (canonical(&package.manifest_path), package.name))
        .collect())
}

/// Why cargo could not load the workspace, with a hint when a Go or C module sits inside the
/// workspace's `*/wasm` member glob.
fn workspace_failure(config: &Config, manifest: &Path, stderr: &str) -> String {
    let mut text = format!(
        "cargo could not load the workspace {}:\n{stderr}",
        manifest.display()
    );
    if let Ok(modules) = crate::discover::discover(&config.modules_dir) {
        for module in modules
            .iter()
            .filter(|module| module.language != Language::Rust)
        {
            if stderr.contains(&*module.source_dir().join("Cargo.toml").to_string_lossy())
                || stderr.contains(&format!("{}/wasm", module.name))
            {
                text.push_str(&format!(
                    "\nhint: \"{}\" is a {} module inside the workspace's member glob: add \
                     \"{}\" to `exclude` in {}",
                    module.name,
                    if module.language == Language::Go {
                        "Go"
                    } else {
                        "C"
                    },
                    module.name,
                    manifest.display()
                ));
            }
        }
    }
    text
}

/// The report for `module` from the cargo run that built it.
fn outcome(
    config: &Config,
    module: &Module,
    manifest: &Path,
    run: &Run,
    started: Instant,
) -> Report {
    let own = |level: &str| -> Vec<String> {
        run.diagnostics
            .iter()
            .filter(|(path, found, _)| path == manifest && found == level)
            .map(|(_, _, text)| text.clone())
            .collect()
    };
    let report = |elapsed: Duration, outcome| Report {
        module: module.name.clone(),
        language: Language::Rust,
        elapsed,
        outcome,
    };
    let name = &module.name;
    if let Some((artifact, at)) = run.artifacts.get(manifest) {
        let elapsed = at.duration_since(started);
        let dest = config.dist_dir.join(format!("{name}.wasm"));
        return match dist::publish(artifact, &dest) {
            Ok(published) => report(
                elapsed,
                Outcome::Built(Built {
                    path: dest,
                    size: published.size,
                    changed: published.changed,
                    warnings: own("warning"),
                }),
            ),
            Err(error) => report(
                elapsed,
                Outcome::Failed(format!("module \"{name}\": {error}")),
            ),
        };
    }
    let elapsed = started.elapsed();
    let errors = own("error");
    let text = if !errors.is_empty() {
        format!(
            "module \"{name}\": compilation failed:\n{}",
            errors.concat()
        )
    } else {
        let others: Vec<String> = run
            .diagnostics
            .iter()
            .filter(|(path, level, _)| path != manifest && level == "error")
            .map(|(path, _, text)| format!("in {}:\n{text}", path.display()))
            .collect();
        if !others.is_empty() {
            format!(
                "module \"{name}\": a dependency failed to compile:\n{}",
                others.concat()
            )
        } else if run.success {
            format!(
                "module \"{name}\": cargo produced no .wasm: is `crate-type = [\"cdylib\"]` set in \
                 {}?",
                module.manifest().display()
            )
        } else {
            format!("module \"{name}\": cargo failed:\n{}", run.stderr)
        }
    };
    report(elapsed, Outcome::Failed(text.trim_end().to_owned()))
}

/// Builds the Rust `modules` (all of the same modules directory), in as few cargo runs as
/// possible, and returns one report per module, in order.
pub(crate) fn build(config: &Config, modules: &[&Module]) -> Vec<Report> {
    let started = Instant::now();
    let fail_all = |modules: &[&Module], text: &str| -> Vec<(String, Report)> {
        modules
            .iter()
            .map(|module| {
                (
                    module.name.clone(),
                    Report {
                        module: module.name.clone(),
                        language: Language::Rust,
                        elapsed: started.elapsed(),
                        outcome: Outcome::Failed(format!("module \"{}\": {text}", module.name)),
                    },
                )
            })
            .collect()
    };
    let mut reports: Vec<(String, Report)> = Vec::new();
    let manifests: Vec<PathBuf> = modules
        .iter()
        .map(|module| canonical(&module.manifest()))
        .collect();

    // Members of the modules workspace build together; anything else on its own.
    let mut members: Vec<(usize, String)> = Vec::new();
    let mut alone: Vec<usize> = (0..modules.len()).collect();
    let workspace = config.modules_dir.join("Cargo.toml");
    if workspace.is_file() && !modules.is_empty() {
        match workspace_packages(config, &workspace) {
            Ok(packages) => {
                alone.clear();
                for (index, manifest) in manifests.iter().enumerate() {
                    match packages.get(manifest) {
                        Some(package) => members.push((index, package.clone())),
                        None => alone.push(index),
                    }
                }
            }
            Err(stderr) => {
                let text = workspace_failure(config, &workspace, &stderr);
                return order(modules, fail_all(modules, &text));
            }
        }
    }
    if !members.is_empty() {
        let packages: Vec<&str> = members
            .iter()
            .map(|(_, package)| package.as_str())
            .collect();
        let group: Vec<&Module> = members.iter().map(|(index, _)| modules[*index]).collect();
        match run(config, &workspace, &packages) {
            Ok(result) => {
                for (index, _) in &members {
                    let module = modules[*index];
                    reports.push((
                        module.name.clone(),
                        outcome(config, module, &manifests[*index], &result, started),
                    ));
                }
            }
            Err(text) => reports.extend(fail_all(&group, &text)),
        }
    }
    for index in alone {
        let module = modules[index];
        let module_started = Instant::now();
        match run(config, &module.manifest(), &[]) {
            Ok(result) => reports.push((
                module.name.clone(),
                outcome(config, module, &manifests[index], &result, module_started),
            )),
            Err(text) => reports.extend(fail_all(&[module], &text)),
        }
    }
    order(modules, reports)
}

/// The reports in the order of `modules`.
fn order(modules: &[&Module], mut reports: Vec<(String, Report)>) -> Vec<Report> {
    modules
        .iter()
        .filter_map(|module| {
            let position = reports.iter().position(|(name, _)| name == &module.name)?;
            Some(reports.swap_remove(position).1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_recognised() {
        assert!(is_progress("   Compiling users v0.0.0 (/m/users/wasm)"));
        assert!(is_progress(
            "    Finished `release` profile [optimized] target(s) in 2.1s"
        ));
        assert!(!is_progress("error: could not compile `users` (lib)"));
        assert!(!is_progress("Compilingx"));
    }

    #[test]
    fn cargo_messages_parse() {
        let artifact = r#"{"reason":"compiler-artifact","package_id":"path+file:///m/users/wasm#users@0.0.0","manifest_path":"/m/users/wasm/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"users","src_path":"/m/users/wasm/src/lib.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{},"features":[],"filenames":["/m/target/wasm32-wasip1/release/users.wasm"],"executable":null,"fresh":false}"#;
        match serde_json::from_str::<Json>(artifact) {
            Ok(Json::CompilerArtifact {
                manifest_path,
                target,
                filenames,
            }) => {
                assert_eq!(manifest_path, Path::new("/m/users/wasm/Cargo.toml"));
                assert_eq!(target.kind, ["cdylib"]);
                assert_eq!(filenames.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let diagnostic = r#"{"reason":"compiler-message","package_id":"x","manifest_path":"/m/a/wasm/Cargo.toml","target":{"kind":["cdylib"]},"message":{"rendered":"error[E0425]: cannot find value `x`\n","level":"error","message":"cannot find value","spans":[],"children":[],"code":null,"$message_type":"diagnostic"}}"#;
        assert!(matches!(
            serde_json::from_str::<Json>(diagnostic),
            Ok(Json::CompilerMessage { message: Diagnostic { ref level, .. }, .. }) if level == "error"
        ));
        let finished = r#"{"reason":"build-finished","success":false}"#;
        assert!(matches!(
            serde_json::from_str::<Json>(finished),
            Ok(Json::Other)
        ));
    }
}
