//! The dependency-direction rules of `docs/ARCHITECTURE.md`, checked with `cargo tree`.

use std::collections::BTreeSet;

use crate::step;

/// One rule: `krate` must not depend on any of `never` (directly or not), and must not
/// name any of `never_direct` as a direct dependency.
struct Rule {
    krate: &'static str,
    never: &'static [&'static str],
    never_direct: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        krate: "binary",
        never: &[
            "tokio",
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "bus",
        ],
        never_direct: &[],
        why: "binary does no I/O and builds for wasm32-wasip1",
    },
    Rule {
        krate: "guest",
        never: &[
            "tokio",
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "bus",
            "wasi-host",
            "server",
            "build",
        ],
        never_direct: &[],
        why: "guest depends on binary only and builds for wasm32-wasip1",
    },
    Rule {
        krate: "bus",
        never: &[
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "wasi-host",
            "server",
        ],
        never_direct: &[],
        why: "bus knows nothing about WebAssembly or HTTP",
    },
    Rule {
        krate: "wasi-host",
        never: &["hyper", "tokio-tungstenite", "server", "build"],
        never_direct: &[],
        why: "only server knows HTTP and WebSocket",
    },
    Rule {
        krate: "state",
        never: &[
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "async-nats",
            "bus",
            "wasi-host",
            "server",
        ],
        never_direct: &[],
        why: "state knows its backends, not WebAssembly, HTTP or NATS",
    },
    Rule {
        krate: "build",
        never: &[
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "wasi-host",
            "server",
        ],
        never_direct: &[],
        why: "build knows cargo and the file system, not the runtime",
    },
    Rule {
        krate: "cluster",
        never: &[
            "wasmer",
            "wasmer-wasix",
            "hyper",
            "tokio-tungstenite",
            "wasi-host",
            "server",
        ],
        never_direct: &[],
        why: "cluster (the NATS bridge) knows bus, binary and async-nats, not WebAssembly or HTTP",
    },
    Rule {
        krate: "bus",
        never: &["async-nats", "cluster"],
        never_direct: &[],
        why: "the bus reaches other processes only through its Bridge trait",
    },
    Rule {
        krate: "server",
        never: &["loadgen"],
        never_direct: &["wasmer", "wasmer-wasix"],
        why: "only wasi-host names wasmer types; the benchmark harness is a leaf",
    },
    Rule {
        krate: "loadgen",
        never: &[],
        never_direct: &["wasmer", "wasmer-wasix", "wasi-host"],
        why: "the benchmark harness drives modhost through HTTP and the server library",
    },
];

/// Package names in `krate`'s normal + build dependency tree, for every target platform.
fn tree(krate: &str, depth: Option<u32>) -> Result<BTreeSet<String>, String> {
    // A crates.io crate is also called `bus` (wasmer-wasix pulls it in): name ours exactly.
    let spec = format!("{krate}@0.0.0");
    let mut args = vec![
        "tree",
        "--quiet",
        "--package",
        &spec,
        "--edges",
        "normal,build",
        "--target",
        "all",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    let depth_arg;
    if let Some(depth) = depth {
        depth_arg = depth.to_string();
        args.extend(["--depth", &depth_arg]);
    }
    let stdout = step::output(step::cargo(&args))?;
    Ok(stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Checks every rule; the error lists every violation.
pub fn check() -> Result<String, String> {
    let mut violations = Vec::new();
    for rule in RULES {
        let all = tree(rule.krate, None)?;
        for name in rule.never.iter().filter(|name| all.contains(**name)) {
            violations.push(format!("{} depends on {name}: {}", rule.krate, rule.why));
        }
        if !rule.never_direct.is_empty() {
            let direct = tree(rule.krate, Some(1))?;
            for name in rule
                .never_direct
                .iter()
                .filter(|name| direct.contains(**name))
            {
                violations.push(format!(
                    "{} depends directly on {name}: {}",
                    rule.krate, rule.why
                ));
            }
        }
    }
    if violations.is_empty() {
        Ok(format!("{} rules hold", RULES.len()))
    } else {
        Err(format!(
            "dependency direction violated:\n  {}",
            violations.join("\n  ")
        ))
    }
}

/// `cargo xtask deps`.
pub fn run() -> Result<(), String> {
    let summary = check()?;
    eprintln!("deps: {summary}");
    Ok(())
}
