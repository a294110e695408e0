//! The soak: the real `modhost` binary as a child process over five example modules, under
//! concurrent HTTP load, with a module swapped every 500 ms, one module (`flaky`) that traps
//! on 1% of its requests, WebSocket clients connecting and leaving, and bus traffic from
//! `sender` through `receiver` to those clients.
//!
//! Asserts: no unexpected non-2xx and no socket errors (flaky's 500s are expected and must
//! equal the traps the server counted, exactly); every swap written was applied; and, between
//! a quiet point after the warm-up and a quiet point at the end, the server's RSS grew by less
//! than 10% and its open file descriptors and threads did not grow (read from `/proc/<pid>`).
//!
//! Ignored by `cargo test`; `cargo xtask soak [--minutes N]` runs it (default 10 minutes),
//! and `cargo xtask verify` runs a 60-second version. `MODHOST_SOAK_SECS` sets the length.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The modules loaded; all but `flaky` take turns being swapped.
const MODULES: &[&str] = &["bench", "flaky", "receiver", "sender", "users"];
const SWAPPED: &[&str] = &["bench", "receiver", "sender", "users"];
const HTTP_CLIENTS: usize = 8;
const WS_CLIENTS: usize = 2;
const SWAP_EVERY: Duration = Duration::from_millis(500);
/// `[state] cache_bytes` for the run.
const STATE_CACHE_BYTES: usize = 4 << 20;
/// At a quiet point, retired versions finish draining first (the drain timeout is 5 s);
/// then the tokio blocking pool, which lets an idle thread go after 10 s, needs `QUIET`;
/// then samples are taken for `SETTLE` and the lowest counts kept (a leak stays; a thread
/// that is just finishing doesn't).
const QUIET: Duration = Duration::from_secs(11);
const SETTLE: Duration = Duration::from_secs(3);
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static NEXT_USER: AtomicU64 = AtomicU64::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with `cargo xtask soak` (verify runs 60 s)"]
async fn soak() {
    let seconds: u64 = std::env::var("MODHOST_SOAK_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let total = Duration::from_secs(seconds.max(20));
    let warm_up = (total / 4).clamp(Duration::from_secs(10), Duration::from_secs(60));
    let main = total - warm_up;

    let project = TempProject::new();
    let modules = project.build_modules();
    let mut server = Server::start(&project);
    let addr = server.addr;
    eprintln!(
        "soak: modhost pid {} on {addr}; {warm_up:?} warm-up, {main:?} measured",
        server.pid()
    );

    let totals = Arc::new(Totals::default());
    let swapper = Swapper::new(&project, &modules);

    run_load(addr, server.pid(), &totals, &swapper, warm_up).await;
    let quiet_a = server.quiet_sample(addr).await;
    eprintln!("soak: after warm-up  {quiet_a}");
    let peak = run_load(addr, server.pid(), &totals, &swapper, main).await;
    let quiet_b = server.quiet_sample(addr).await;
    eprintln!("soak: at the end     {quiet_b}");
    let state_file = std::fs::metadata(project.root.join("state/modhost.redb"))
        .map(|meta| meta.len() / 1024)
        .unwrap_or(0);
    eprintln!(
        "soak: state file {state_file} KiB after {} users posted; store cache bounded at {} KiB",
        NEXT_USER.load(Ordering::Relaxed),
        STATE_CACHE_BYTES / 1024
    );

    // What the server counted: swaps over all modules, and flaky's traps.
    let status = admin_modules(addr).await;
    let swaps: u64 = status.values().map(|module| module.swaps).sum();
    let flaky_traps = status["flaky"].traps;
    let report = totals.report();
    eprintln!("soak: {report}");
    eprintln!(
        "soak: {} swaps written, {swaps} applied (the rest coalesced); flaky: {} × 500 seen, {flaky_traps} traps counted; peak RSS {} KiB",
        swapper.written(),
        totals.flaky_500.load(Ordering::Relaxed),
        peak / 1024
    );
    let failures = totals.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "unexpected answers or socket errors ({}), first ones:\n{}",
        totals.unexpected.load(Ordering::Relaxed),
        failures.join("\n")
    );
    // Every module serves the last bytes written for it, and no version was refused.
    // Writes that land while a reload of the same module is still queued are coalesced
    // (the reload reads whatever is there then), so `swaps` may fall a little short of the
    // writes on a loaded machine; the count is reported, and must stay a small fraction.
    for name in SWAPPED {
        assert_eq!(
            status[*name].version,
            swapper.last_version(name),
            "{name} does not serve the last version written"
        );
    }
    let metrics = admin_text(addr, "/_admin/metrics").await;
    let rejected = metrics
        .lines()
        .find_map(|line| line.strip_prefix("modhost_reloads_total{outcome=\"rejected\"} "))
        .unwrap_or("?");
    let reloads: Vec<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("modhost_reloads_total"))
        .collect();
    eprintln!("soak: reloads by outcome: {}", reloads.join(", "));
    assert_eq!(rejected, "0", "reloads were rejected:\n{metrics}");
    assert!(
        swaps * 10 >= swapper.written() * 9,
        "only {swaps} of {} swaps applied",
        swapper.written()
    );
    assert_eq!(totals.flaky_500.load(Ordering::Relaxed), flaky_traps);
    assert!(
        totals.requests.load(Ordering::Relaxed) > 1000,
        "too little load to mean anything: {report}"
    );
    assert!(totals.frames.load(Ordering::Relaxed) > 0, "{report}");
    assert!(
        (quiet_b.rss_bytes as f64) < quiet_a.rss_bytes as f64 * 1.10,
        "RSS grew by more than 10%: {quiet_a} → {quiet_b}"
    );
    assert!(
        quiet_b.fds <= quiet_a.fds,
        "open file descriptors grew: {quiet_a} → {quiet_b}"
    );
    assert!(
        quiet_b.threads.0 <= quiet_a.threads.0,
        "threads grew: {quiet_a} → {quiet_b}"
    );
    server.stop();
}

/// Drives load until `duration` has passed; returns the peak RSS seen.
async fn run_load(
    addr: SocketAddr,
    pid: u32,
    totals: &Arc<Totals>,
    swapper: &Swapper,
    duration: Duration,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..HTTP_CLIENTS {
        tasks.push(tokio::spawn(http_client(
            addr,
            worker,
            totals.clone(),
            stop.clone(),
        )));
    }
    for worker in 0..WS_CLIENTS {
        tasks.push(tokio::spawn(ws_client(
            addr,
            worker,
            totals.clone(),
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let mut peak = 0;
    let mut next_swap = Instant::now() + SWAP_EVERY;
    while started.elapsed() < duration {
        tokio::time::sleep_until(next_swap.into()).await;
        next_swap += SWAP_EVERY;
        swapper.swap_next();
        if let Some(sample) = Sample::of(pid) {
            peak = peak.max(sample.rss_bytes);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    peak
}

/// One keep-alive client calling the modules in turn.
async fn http_client(addr: SocketAddr, worker: usize, totals: Arc<Totals>, stop: Arc<AtomicBool>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut turn = worker;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let (method, path, body): (&str, String, Vec<u8>) = match turn % 5 {
            0 => ("GET", "/m/bench".into(), Vec::new()),
            1 => ("GET", "/m/users".into(), Vec::new()),
            2 => ("POST", "/m/users".into(), {
                // Users persist across swaps and load phases: every address is new.
                let user = NEXT_USER.fetch_add(1, Ordering::Relaxed);
                format!(r#"{{"name":"Soak {user}","email":"soak{user}@example.org"}}"#).into()
            }),
            3 => ("GET", "/m/flaky".into(), Vec::new()),
            _ => (
                "POST",
                "/m/sender/send?topic=greetings.soak".into(),
                format!("soak {worker} {turn}").into(),
            ),
        };
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        totals.requests.fetch_add(1, Ordering::Relaxed);
        match client.request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await;
                let body = match body {
                    Ok(body) => body.to_bytes(),
                    Err(error) => {
                        totals.fail(format!("{method} {path}: body: {error}"));
                        continue;
                    }
                };
                let flaky_trap = path == "/m/flaky" && status == 500;
                if flaky_trap {
                    totals.flaky_500.fetch_add(1, Ordering::Relaxed);
                } else if !(200..300).contains(&status) {
                    totals.fail(format!(
                        "{method} {path}: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            Err(error) => totals.fail(format!("{method} {path}: {error:?}")),
        }
    }
}

/// Connects to `greetings.soak`, reads broadcasts for a while, leaves, and again.
async fn ws_client(addr: SocketAddr, worker: usize, totals: Arc<Totals>, stop: Arc<AtomicBool>) {
    let mut round = worker as u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let stay = Duration::from_millis(200 + (round * 137) % 600);
        let (mut socket, _) =
            match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?topic=greetings.soak"))
                .await
            {
                Ok(connected) => connected,
                Err(error) => {
                    totals.fail(format!("WebSocket connect: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        totals.ws_connects.fetch_add(1, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + stay;
        loop {
            match tokio::time::timeout_at(until, socket.next()).await {
                Err(_) => break,
                Ok(Some(Ok(frame))) if frame.is_text() || frame.is_binary() => {
                    totals.frames.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => {
                    totals.fail(format!("WebSocket closed early: {other:?}"));
                    break;
                }
            }
        }
        let _ = socket.close(None).await;
    }
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    flaky_500: AtomicU64,
    unexpected: AtomicU64,
    ws_connects: AtomicU64,
    frames: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Totals {
    fn fail(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }

    fn report(&self) -> String {
        format!(
            "{} requests, {} unexpected, {} flaky 500s, {} WebSocket connections, {} frames received",
            self.requests.load(Ordering::Relaxed),
            self.unexpected.load(Ordering::Relaxed),
            self.flaky_500.load(Ordering::Relaxed),
            self.ws_connects.load(Ordering::Relaxed),
            self.frames.load(Ordering::Relaxed),
        )
    }
}

/// Writes a new version of one module every call, in turn: the module's bytes with a custom
/// section that alternates between two values, so every write is a real new version and
/// the compiled-module cache is warm after the first round.
struct Swapper {
    dist: PathBuf,
    variants: BTreeMap<&'static str, [Vec<u8>; 2]>,
    count: AtomicU64,
}

impl Swapper {
    fn new(project: &TempProject, modules: &BTreeMap<&'static str, Vec<u8>>) -> Swapper {
        let variants = SWAPPED
            .iter()
            .map(|name| {
                let bytes = &modules[name];
                (*name, [with_marker(bytes, b'a'), with_marker(bytes, b'b')])
            })
            .collect();
        Swapper {
            dist: project.dist(),
            variants,
            count: AtomicU64::new(0),
        }
    }

    fn swap_next(&self) {
        let count = self.count.fetch_add(1, Ordering::Relaxed);
        let name = SWAPPED[count as usize % SWAPPED.len()];
        let round = count as usize / SWAPPED.len();
        let bytes = &self.variants[name][round % 2];
        build::write_atomic(&self.dist.join(format!("{name}.wasm")), bytes).unwrap();
    }

    fn written(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The version (content hash prefix) of the bytes last written for `name`.
    fn last_version(&self, name: &str) -> Option<String> {
        let count = self.written();
        let position = SWAPPED.iter().position(|swapped| *swapped == name)? as u64;
        let writes =
            count / SWAPPED.len() as u64 + u64::from(count % SWAPPED.len() as u64 > position);
        let round = writes.checked_sub(1)?;
        let bytes = &self.variants[name][round as usize % 2];
        Some(wasi_host::content_hash(bytes)[..16].to_owned())
    }
}

/// `bytes` plus a custom section `modhost-soak` holding `marker`.
fn with_marker(bytes: &[u8], marker: u8) -> Vec<u8> {
    let name = b"modhost-soak";
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + 1) as u8); // section size (fits one LEB byte)
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(marker);
    out
}

/// A temp project dir with `modules/dist`.
struct TempProject {
    root: PathBuf,
}

impl TempProject {
    fn new() -> TempProject {
        let root = std::env::temp_dir().join(format!("modhost-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("modules/dist")).unwrap();
        // The store's page cache is a bounded cache that fills as `users` writes (its table
        // grows by a user every fifth request); kept small here so that a leak beside it
        // shows in the RSS check instead of hiding under the cache's growth.
        std::fs::write(
            root.join("modhost.toml"),
            format!("[state]\ncache_bytes = {STATE_CACHE_BYTES}\n"),
        )
        .unwrap();
        TempProject { root }
    }

    fn dist(&self) -> PathBuf {
        self.root.join("modules/dist")
    }

    /// Builds the example modules (a no-op when `modules/target` is fresh) into our dist.
    fn build_modules(&self) -> BTreeMap<&'static str, Vec<u8>> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut config = build::Config::new(repo.join("modules"));
        config.dist_dir = self.dist();
        config.locked = true;
        let builder = build::Builder::new(config);
        let names: Vec<String> = MODULES.iter().map(|name| (*name).to_owned()).collect();
        let reports = builder.build(&builder.select(&names).unwrap());
        for report in &reports {
            assert!(!report.is_failed(), "{report:?}");
        }
        MODULES
            .iter()
            .map(|name| {
                let bytes = std::fs::read(self.dist().join(format!("{name}.wasm"))).unwrap();
                (*name, bytes)
            })
            .collect()
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `modhost` child process.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(project: &TempProject) -> Server {
        let log = project.root.join("modhost.log");
        let (child, addr) = testkit::spawn_modhost(
            Path::new(env!("CARGO_BIN_EXE_modhost")),
            &project.root,
            &log,
        );
        Server { child, addr, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for retired versions to finish draining and idle blocking-pool threads to
    /// exit, then samples.
    async fn quiet_sample(&self, addr: SocketAddr) -> Sample {
        let drained = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = admin_text(addr, "/_admin/metrics").await;
            if metrics
                .lines()
                .any(|line| line == "modhost_modules_draining 0")
            {
                break;
            }
            assert!(
                Instant::now() < drained,
                "versions still draining after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(QUIET).await;
        let settled = Instant::now() + SETTLE;
        let mut lowest: Option<Sample> = None;
        while Instant::now() < settled {
            let Some(sample) = Sample::of(self.pid()) else {
                panic!(
                    "modhost is gone:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            };
            lowest = Some(match lowest {
                None => sample,
                Some(low) => Sample {
                    rss_bytes: sample.rss_bytes,
                    fds: low.fds.min(sample.fds),
                    threads: if sample.threads.0 <= low.threads.0 {
                        sample.threads
                    } else {
                        low.threads
                    },
                },
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Opt-in diagnosis of what each thread is doing: MODHOST_SOAK_GDB=<file prefix>.
        if let Some(prefix) = std::env::var_os("MODHOST_SOAK_GDB") {
            let output = Command::new("gdb")
                .args(["-p", &self.pid().to_string(), "-batch", "-ex"])
                .arg("thread apply all bt 40")
                .output();
            if let Ok(output) = output {
                let mut path = std::path::PathBuf::from(prefix);
                path.as_mut_os_string()
                    .push(format!("-{}.txt", SAMPLES.fetch_add(1, Ordering::Relaxed)));
                let _ = std::fs::write(path, output.stdout);
            }
        }
        lowest.unwrap()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "modhost exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("modhost did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!(
                "modhost log (tail):\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A process's resident memory, open file descriptors and threads (count, and how many
/// of each name), from `/proc`.
#[derive(Debug, Clone)]
struct Sample {
    rss_bytes: u64,
    fds: usize,
    threads: (usize, BTreeMap<String, usize>),
}

impl Sample {
    fn of(pid: u32) -> Option<Sample> {
        // Read from outside, as `ps` would: VmRSS in /proc/<pid>/status, entries of fd/.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let mut names = BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let comm = std::fs::read_to_string(task.ok()?.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_owned()).or_insert(0) += 1;
        }
        Some(Sample {
            rss_bytes: rss_kib * 1024,
            fds,
            threads: (names.values().sum(), names),
        })
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} open fds, {} threads {:?}",
            self.rss_bytes / 1024,
            self.fds,
            self.threads.0,
            self.threads.1
        )
    }
}

/// What `/_admin/modules` says, by module name.
#[derive(Debug, serde::Deserialize)]
struct ModuleStatus {
    name: String,
    version: Option<String>,
    swaps: u64,
    traps: u64,
}

async fn admin_modules(addr: SocketAddr) -> BTreeMap<String, ModuleStatus> {
    let modules: Vec<ModuleStatus> =
        serde_json::from_str(&admin_text(addr, "/_admin/modules").await).unwrap();
    modules
        .into_iter()
        .map(|module| (module.name.clone(), module))
        .collect()
}

/// `GET path` on a fresh connection (closed after), as text.
async fn admin_text(addr: SocketAddr, path: &str) -> String {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}
