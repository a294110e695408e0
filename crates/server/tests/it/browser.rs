//! The status page in a real browser: headless Chromium, driven over the Chrome DevTools
//! Protocol (a WebSocket, tokio-tungstenite), loads `/_admin` from the real server with real
//! example modules, checks the module table, and sees a swap and a refused reload appear
//! without reloading the page. A screenshot lands in `<target>/status-page.png`.
//!
//! Chromium is required: without it the test fails and names the install command (`cargo
//! xtask verify tools` installs it on a fresh machine).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// Every CDP command and every wait is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

/// The browser binary: `MODHOST_CHROMIUM`, else `chromium` on `PATH`, else
/// `/usr/bin/chromium`.
fn chromium_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MODHOST_CHROMIUM") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Headless Chromium with a throw-away profile; killed, waited for and its profile removed
/// on drop (also when the test fails).
struct Browser {
    child: Child,
    profile: PathBuf,
    /// `ws://127.0.0.1:PORT/devtools/browser/ID`.
    endpoint: String,
}

impl Browser {
    fn launch() -> Browser {
        let binary = chromium_path();
        assert!(
            binary.is_file(),
            "the browser test needs Chromium, and {} does not exist: install it with \
             `sudo apt-get install -y chromium` (or `cargo xtask verify tools`), or point \
             MODHOST_CHROMIUM at a Chromium binary",
            binary.display()
        );
        let profile = std::env::temp_dir().join(format!(
            "modhost-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--window-size=1600,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let mut browser = Browser {
            child,
            profile,
            endpoint: String::new(),
        };
        // Chromium writes the port it chose and the browser target's path once it listens.
        let port_file = browser.profile.join("DevToolsActivePort");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&port_file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                browser.endpoint = format!("ws://127.0.0.1:{port}{path}");
                return browser;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("{} exited at start: {status}", binary.display());
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Chromium wrote no {} within {PATIENCE:?}",
                port_file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A Chrome DevTools Protocol connection, attached to one page.
struct Cdp {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn connect(endpoint: &str) -> Cdp {
        let (socket, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(endpoint))
                .await
                .expect("connecting to Chromium's DevTools endpoint in time")
                .expect("connecting to Chromium's DevTools endpoint");
        Cdp {
            socket,
            next_id: 1,
            session: None,
        }
    }

    /// Sends `method` (to the attached page, if any) and returns its result; events that
    /// arrive meanwhile are skipped.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(WsMessage::text(command.to_string()))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {PATIENCE:?}"))
                .expect("Chromium closed the DevTools connection")
                .unwrap();
            let WsMessage::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] != id {
                continue;
            }
            assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
            return reply["result"].clone();
        }
    }

    /// Opens a new page and attaches to it.
    async fn open_page(&mut self) {
        let target = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call("Page.enable", json!({})).await;
        self.call("Runtime.enable", json!({})).await;
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; returns how long that took.
    async fn wait_for(&mut self, what: &str, expression: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.eval(expression).await == json!(true) {
                return started.elapsed();
            }
            if started.elapsed() > PATIENCE {
                let body = self.eval("document.body.innerText").await;
                panic!("{what}: not within {PATIENCE:?}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// JavaScript: the text of a module row's cell.
fn cell(module: &str, field: &str) -> String {
    format!(
        "(document.querySelector('#modules tr[data-module=\"{module}\"] td[data-field=\"{field}\"]') || {{}}).textContent"
    )
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |byte: u8| -> u32 {
        match byte {
            b'A'..=b'Z' => u32::from(byte - b'A'),
            b'a'..=b'z' => u32::from(byte - b'a') + 26,
            b'0'..=b'9' => u32::from(byte - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {other}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|byte| *byte != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut word = 0u32;
        for (index, byte) in chunk.iter().enumerate() {
            word |= value(*byte) << (18 - 6 * index);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&word.to_be_bytes()[1..=produced]);
    }
    out
}

fn screenshot_path() -> PathBuf {
    testkit::target_dir().join("status-page.png")
}

fn write_screenshot(path: &Path, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png).unwrap();
    eprintln!("status page screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_updates_live_in_chromium() {
    // First, so a missing browser is the first thing reported.
    let browser = Browser::launch();
    let project = Project::new("browser");
    let users = testkit::example_module("users");
    for name in ["counter", "users", "receiver", "sender"] {
        project.install(name, &testkit::example_module(name));
    }
    let server = project.start().await;
    let addr = server.addr();
    // Some traffic: requests, a bus message relayed to a WebSocket client.
    for _ in 0..5 {
        assert_eq!(get(addr, "/m/counter").await.status, 200);
    }
    let (mut relay, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?topic=greetings.hello"))
            .await
            .unwrap();
    eventually(PATIENCE, || async {
        server.monitor().ws_clients("greetings.hello") == 1
    })
    .await;
    let sent = request(addr, "POST", "/m/sender/send", &[], b"hello browser").await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let relayed = tokio::time::timeout(PATIENCE, relay.next()).await.unwrap();
    assert!(relayed.is_some());
    // Steady traffic while the page is open (stopped at the end): rates and quantiles.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                get(addr, "/m/counter").await;
                request(addr, "POST", "/m/sender/send", &[], b"tick").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut cdp = Cdp::connect(&browser.endpoint).await;
    cdp.open_page().await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1600, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    cdp.call(
        "Page.navigate",
        json!({ "url": format!("http://{addr}/_admin") }),
    )
    .await;
    cdp.wait_for(
        "the page's script has rendered a snapshot from the event stream",
        "!!document.getElementById('connection') && document.getElementById('connection').textContent === 'live' && Number(document.body.dataset.snapshots) > 0",
    )
    .await;

    // The module table: every module, its version, its counters.
    let status = server.status();
    for module in &status {
        let version = module.version.as_deref().unwrap();
        let shown = cdp.eval(&cell(&module.name, "version")).await;
        assert_eq!(shown, json!(version), "{}", module.name);
    }
    let requests: u64 = cdp
        .eval(&cell("counter", "requests"))
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(requests >= 5, "{requests}");
    assert_eq!(
        cdp.eval("document.querySelectorAll('#modules tbody tr').length")
            .await,
        json!(4)
    );
    assert_eq!(
        cdp.eval(&cell("receiver", "instances")).await,
        json!(
            status
                .iter()
                .find(|m| m.name == "receiver")
                .unwrap()
                .instances
                .to_string()
        )
    );
    cdp.wait_for(
        "the bus topic of receiver and the WebSocket client",
        "!!document.querySelector('#topics tr[data-topic=\"greetings.*\"]') \
         && document.querySelector('#topics tr[data-topic=\"greetings.*\"] td[data-field=\"modules\"]').textContent === 'receiver' \
         && document.querySelector('#ws tr[data-ws-topic=\"greetings.hello\"] td[data-field=\"clients\"]').textContent === '1'",
    )
    .await;
    cdp.wait_for(
        "counter's latency quantiles",
        &format!("/^[0-9.]+$/.test({})", cell("counter", "p99_ms")),
    )
    .await;
    // The page is not reloaded from here on: a marker set now must survive.
    cdp.eval("window.stillTheSamePage = true").await;

    // A swap: a new version of users (a plain swap: it drains), through the dist watcher.
    let old_version = server
        .status()
        .iter()
        .find(|module| module.name == "users")
        .unwrap()
        .version
        .clone()
        .unwrap();
    project.install("users", &testkit::retagged(&users, "v2"));
    eventually(PATIENCE, || async {
        server
            .status()
            .iter()
            .any(|module| module.name == "users" && module.version.as_deref() != Some(&old_version))
    })
    .await;
    let new_version = server
        .status()
        .iter()
        .find(|module| module.name == "users")
        .unwrap()
        .version
        .clone()
        .unwrap();
    let shown = cdp
        .wait_for(
            "the swap in users' row",
            &format!(
                "{} === '{new_version}' && {}.startsWith('{old_version} → {new_version}')",
                cell("users", "version"),
                cell("users", "last_swap")
            ),
        )
        .await;
    assert!(
        shown < Duration::from_secs(1),
        "the swap took {shown:?} to show"
    );
    cdp.wait_for(
        "the drain time of the swap",
        &format!("{}.includes('drained in')", cell("users", "last_swap")),
    )
    .await;

    // A refused reload: a broken .wasm for counter; the old version keeps serving.
    let counter_version = server
        .status()
        .iter()
        .find(|module| module.name == "counter")
        .unwrap()
        .version
        .clone()
        .unwrap();
    project.install("counter", b"\0asm\x01\0\0\0this is not a module");
    eventually(PATIENCE, || async {
        server
            .status()
            .iter()
            .any(|module| module.name == "counter" && module.last_rejected.is_some())
    })
    .await;
    let refused = server
        .status()
        .into_iter()
        .find(|module| module.name == "counter")
        .unwrap()
        .last_rejected
        .unwrap();
    let shown = cdp
        .wait_for(
            "the refused version in counter's row",
            &format!(
                "{}.startsWith('{}') && {} === '{counter_version}'",
                cell("counter", "last_rejected"),
                refused.version,
                cell("counter", "version")
            ),
        )
        .await;
    assert!(
        shown < Duration::from_secs(1),
        "the refusal took {shown:?} to show"
    );
    let reason = cdp.eval(&cell("counter", "last_rejected")).await;
    assert!(
        reason.as_str().unwrap().contains(&refused.reason),
        "{reason} vs {}",
        refused.reason
    );
    assert_eq!(
        cdp.eval("window.stillTheSamePage === true").await,
        json!(true)
    );

    let screenshot = cdp
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )
        .await;
    let png = decode_base64(screenshot["data"].as_str().unwrap());
    write_screenshot(&screenshot_path(), &png);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    drop(cdp);
    drop(browser);
    let _ = relay.close(None).await;
    server.shutdown().await;
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGVsbG8hIQ=="), b"hello!!");
    assert_eq!(decode_base64("YWJj"), b"abc");
    assert_eq!(decode_base64(""), b"");
}
