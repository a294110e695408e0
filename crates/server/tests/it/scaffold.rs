//! `modhost new` for real: the `modhost` binary scaffolds a Rust, a Go and a C module into a
//! copy of the project layout while `modhost dev` runs there; each is built and served at
//! `/m/NAME` without a restart; the scaffolds' unit tests pass (`cargo test`, `go test`); an
//! existing or invalid name is refused with a clear message and nothing written.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::get;

/// A temp project: the repository's `modules/Cargo.toml` (its guest path made absolute, no
/// excludes), `Cargo.lock`, the Go and C SDKs and the toolchain file — no modules.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let repo = testkit::repo_root();
        let root = std::env::temp_dir().join(format!("modhost-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let modules = root.join("modules");
        std::fs::create_dir_all(modules.join("dist")).unwrap();
        std::fs::copy(
            repo.join("rust-toolchain.toml"),
            root.join("rust-toolchain.toml"),
        )
        .unwrap();
        std::fs::copy(repo.join("modules/Cargo.lock"), modules.join("Cargo.lock")).unwrap();
        let guest = std::fs::canonicalize(repo.join("crates/guest")).unwrap();
        let manifest = std::fs::read_to_string(repo.join("modules/Cargo.toml")).unwrap();
        let manifest: String = manifest
            .lines()
            .map(|line| {
                if line.starts_with("exclude = ") {
                    "exclude = []".to_owned()
                } else if line.starts_with("guest = ") {
                    format!("guest = {{ path = {:?} }}", guest.display().to_string())
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(modules.join("Cargo.toml"), manifest).unwrap();
        for sdk in ["go-sdk", "c-sdk"] {
            std::fs::create_dir_all(modules.join(sdk)).unwrap();
            for entry in std::fs::read_dir(repo.join("modules").join(sdk)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, modules.join(sdk).join(path.file_name().unwrap()))
                        .unwrap();
                }
            }
        }
        Layout { root }
    }

    fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }

    /// `modhost new ARGS --root <root>`: (success, stderr).
    fn new_module(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_modhost"))
            .arg("new")
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `modhost dev` child, killed on drop.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `modhost dev` on `root` and waits for its address (the first build included).
fn start_dev(root: &Path, log: &Path) -> (Dev, std::net::SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_modhost"))
        .args(["dev", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("RUST_LOG", "info,wasmer_wasix=warn,wasmer=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let dev = Dev(child);
    let mut addr = None;
    testkit::wait_for(Duration::from_secs(180), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        addr = text
            .lines()
            .find_map(|line| line.split("modhost listening on http://").nth(1))
            .map(|addr| addr.trim().parse().unwrap());
        addr.is_some()
    });
    (dev, addr.unwrap())
}

/// Polls `GET /m/NAME` until it answers `hello from NAME` (the dev watcher builds it and the
/// server loads it); panics with the dev log after `limit`.
async fn served(addr: std::net::SocketAddr, name: &str, log: &Path, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let reply = get(addr, &format!("/m/{name}")).await;
        if reply.status == 200 {
            assert_eq!(reply.body, format!("hello from {name}"));
            assert_eq!(get(addr, &format!("/m/{name}/nope")).await.status, 404);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/m/{name} still answers {} {:?} after {limit:?}; dev log:\n{}",
            reply.status,
            reply.body,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modhost_new_scaffolds_modules_that_dev_builds_and_serves_without_a_restart() {
    let layout = Layout::new();
    let log = layout.root.join("dev.log");
    let (_dev, addr) = start_dev(&layout.root, &log);
    assert_eq!(get(addr, "/m/hello-rs").await.status, 404);

    // Rust: the first build compiles the guest SDK for wasm32 in the project's own target dir.
    let (ok, text) = layout.new_module(&["hello-rs"]);
    assert!(ok, "{text}");
    assert!(text.contains("README.md"), "{text}");
    served(addr, "hello-rs", &log, Duration::from_secs(600)).await;

    let (ok, text) = layout.new_module(&["hello-gophers", "--lang", "go"]);
    assert!(ok, "{text}");
    served(addr, "hello-gophers", &log, Duration::from_secs(180)).await;

    let (ok, text) = layout.new_module(&["hello-cc", "--lang", "c"]);
    assert!(ok, "{text}");
    served(addr, "hello-cc", &log, Duration::from_secs(120)).await;

    let manifest = std::fs::read_to_string(layout.modules().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"exclude = ["hello-gophers", "hello-cc"]"#),
        "{manifest}"
    );

    // Refusals: clear messages, nothing written.
    let (ok, text) = layout.new_module(&["hello-rs", "--lang", "go"]);
    assert!(!ok && text.contains("already exists"), "{text}");
    let (ok, text) = layout.new_module(&["bad name"]);
    assert!(
        !ok && text.contains("invalid module name \"bad name\""),
        "{text}"
    );
    assert!(text.contains("ASCII letters, digits"), "{text}");
    let (ok, text) = layout.new_module(&["dist", "--lang", "c"]);
    assert!(!ok && text.contains("reserved"), "{text}");
    let (ok, text) = layout.new_module(&["x", "--lang", "cobol"]);
    assert!(!ok && text.contains("cobol"), "{text}");
    let names: Vec<String> = std::fs::read_dir(layout.modules())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    for absent in ["bad name", "x"] {
        assert!(!names.iter().any(|name| name == absent), "{names:?}");
    }
    assert!(
        !names.iter().any(|name| name.starts_with(".new-")),
        "{names:?}"
    );

    // The scaffolds' unit tests.
    let go = Command::new("go")
        .args(["test", "-count=1", "-v", "."])
        .current_dir(layout.modules().join("hello-gophers/wasm"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    let go_text = String::from_utf8_lossy(&go.stdout);
    assert!(
        go.status.success() && go_text.contains("--- PASS: TestHello"),
        "{go_text}"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rust = Command::new(cargo)
        .args(["test", "--quiet", "-p", "hello-rs", "--manifest-path"])
        .arg(layout.modules().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(testkit::target_dir().join("modhost-scaffold-units"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(&layout.root)
        .output()
        .unwrap();
    let rust_text = format!(
        "{}{}",
        String::from_utf8_lossy(&rust.stdout),
        String::from_utf8_lossy(&rust.stderr)
    );
    assert!(
        rust.status.success() && rust_text.contains("1 passed"),
        "{rust_text}"
    );
}
