//! Test support shared by the workspace's test suites and benchmarks (a dev-dependency only):
//! the Rust fixture guest built for `wasm32-wasip1`, reference WAT modules, and polling with
//! a deadline instead of sleeping.

#![allow(clippy::expect_used)] // a failed set-up step is the test's failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The fixture guest (`crates/wasi-host/tests/fixtures/guest`: echo, print, sleep, panic,
/// spin, sandbox escapes, publish, request, grow…), built once per process with the release
/// profile into `<target>/wasi-host-fixtures` (its own target dir, so the test build's lock
/// is never contended), as `.wasm` bytes.
pub fn fixture_guest() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let guest = repo_root().join("crates/wasi-host/tests/fixtures/guest/Cargo.toml");
        let target_dir = target_dir().join("wasi-host-fixtures");
        // Tests are silent until they end: say why the first one takes a while.
        eprintln!(
            "testkit: building the fixture guest for wasm32-wasip1 into {} (once per test binary; up to a minute on a cold cache)",
            target_dir.display()
        );
        let status = build_wasm(&guest, &[], &target_dir);
        assert!(status.success(), "building the fixture guest failed");
        std::fs::read(target_dir.join("wasm32-wasip1/release/fixture_guest.wasm"))
            .expect("the fixture guest's .wasm")
    })
}

/// `cargo build --release --locked --target wasm32-wasip1` of `manifest` (plus `args`) into
/// `target_dir`, with the host build's flags (instrumentation, say) kept out of the guest's.
fn build_wasm(manifest: &Path, args: &[&str], target_dir: &Path) -> std::process::ExitStatus {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--target",
            "wasm32-wasip1",
        ])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs")
}

/// The example module `modules/<name>/wasm` (a crate of the `modules/` workspace), built
/// once per process with the release profile for `wasm32-wasip1` into
/// `<target>/modhost-example-modules`, as `.wasm` bytes.
pub fn example_module(name: &str) -> Vec<u8> {
    static BUILT: std::sync::Mutex<Vec<(String, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, bytes)) = built.iter().find(|(built_name, _)| built_name == name) {
        return bytes.clone();
    }
    let manifest = repo_root().join("modules/Cargo.toml");
    let target_dir = target_dir().join("modhost-example-modules");
    let status = build_wasm(&manifest, &["--package", name], &target_dir);
    assert!(
        status.success(),
        "building the example module {name} failed"
    );
    let bytes = std::fs::read(target_dir.join(format!("wasm32-wasip1/release/{name}.wasm")))
        .expect("the example module's .wasm");
    built.push((name.to_owned(), bytes.clone()));
    bytes
}

/// `wasm` with a custom section `modhost-test` holding `tag` appended: the same code under a
/// different content hash, i.e. a new version of the module to hot-swap to.
pub fn retagged(wasm: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"modhost-test";
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The workspace's target dir (`CARGO_TARGET_DIR` or `<repo>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("target"),
    }
}

/// A module written only against the original design's ABI: `malloc`, `init`, `drain`, and
/// `handle(ptr, len) -> i32` returning a NUL-terminated string. It answers `v0 says: ` and
/// the request it was given (`"METHOD\nPATH\n"`), and logs `original init` through the
/// original `log` import in `init`.
pub const ORIGINAL_ABI: &str = r#"
(module
  (import "env" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "v0 says: ")
  (data (i32.const 16) "original init")
  (func (export "malloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $ptr))
  (func (export "init") (call $log (i32.const 16) (i32.const 13)))
  (func (export "drain") (result i32) (i32.const 0))
  ;; Copy "v0 says: " + the request to 512 and NUL-terminate it.
  (func (export "handle") (param $ptr i32) (param $len i32) (result i32)
    (memory.copy (i32.const 512) (i32.const 0) (i32.const 9))
    (memory.copy (i32.const 521) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (i32.const 521) (local.get $len)) (i32.const 0))
    (i32.const 512))
)
"#;

/// WAT text of an ABI 1 module: `imports`, one page of exported memory, the version export,
/// a bump allocator `alloc` starting at 1024, and `body` (more exports, data, functions).
pub fn v1_module(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $ptr))
  {body})"#
    )
}

/// Polls `check` every 10 ms until it holds; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `check` every 10 ms until it holds, blocking the thread; panics after `limit`.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `modhost serve --listen 127.0.0.1:0 --root <root>` (the binary at `binary`, i.e.
/// `env!("CARGO_BIN_EXE_modhost")`) with its log in `log`, and waits (up to 2 minutes) for the
/// "modhost listening on" line. Returns the child and the address it listens on.
// The child is handed to the caller, who kills and waits for it; on a failed start it is
// killed and waited for here.
#[allow(clippy::zombie_processes)]
pub fn spawn_modhost(
    binary: &Path,
    root: &Path,
    log: &Path,
) -> (std::process::Child, std::net::SocketAddr) {
    spawn_modhost_with(binary, root, log, &[])
}

/// [`spawn_modhost`] with more arguments for `modhost serve` (e.g. `--cluster URL`).
#[allow(clippy::zombie_processes)]
pub fn spawn_modhost_with(
    binary: &Path,
    root: &Path,
    log: &Path,
    args: &[&str],
) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("creating the log"))
        .spawn()
        .expect("starting modhost");
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|line| line.split("modhost listening on http://").nth(1))
        {
            let addr = addr.trim().parse().expect("the address modhost prints");
            return (child, addr);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("modhost did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real `nats-server` (2.9+, JetStream on) for cluster tests: on 127.0.0.1 at a free port,
/// with its store in a temp dir; killed and cleaned up on drop. [`NatsServer::stop`] and
/// [`NatsServer::start_again`] take it down and bring it back on the same port.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl NatsServer {
    /// Starts a server and waits (up to 10 s) until it accepts connections.
    pub fn start() -> NatsServer {
        let mut server = NatsServer::reserve();
        server.start_again();
        server
    }

    /// A free port and a store dir, with no server running yet: for a node that must start
    /// before NATS does. [`NatsServer::start_again`] starts it.
    pub fn reserve() -> NatsServer {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "modhost-nats-{}-{unique}-{port}",
            std::process::id()
        ));
        NatsServer {
            port,
            dir,
            child: None,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        std::fs::create_dir_all(&self.dir).expect("the NATS store dir");
        let log = std::fs::File::create(self.dir.join("nats.log")).expect("the NATS log");
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server (apt-get install nats-server)");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
