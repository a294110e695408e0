//! Test support: temp projects, module sources, clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use server::{ServerBuilder, ServerConfig, ServerHandle};

/// A temp project dir: `modules/` and `modules/dist/`, removed on drop.
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn new(tag: &str) -> Project {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!(
            "modhost-server-it-{}-{tag}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("modules/dist")).unwrap();
        Project { root }
    }

    pub fn dist(&self) -> PathBuf {
        self.root.join("modules/dist")
    }

    /// Writes `<dist>/<name>.wasm` atomically (temp file + rename), as the build does.
    pub fn install(&self, name: &str, bytes: &[u8]) {
        let temp = self.dist().join(format!(".{name}.wasm.tmp"));
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, self.dist().join(format!("{name}.wasm"))).unwrap();
    }

    pub fn rule(&self, name: &str, rule: &str) {
        let dir = self.root.join("modules").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rule.txt"), rule).unwrap();
    }

    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::at(&self.root);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.drain_timeout = Duration::from_secs(2);
        config.cache = server::CompiledCache::At(self.root.join("cache"));
        config
    }

    pub async fn start(&self) -> ServerHandle {
        ServerBuilder::new(self.config()).start().await.unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A v1 WAT module whose `handle` answers `status` with `body` (and `extra` WAT inside the
/// module, e.g. more exports or imports used by `before`, code run at the start of `handle`).
pub fn answering(status: u16, body: &str, imports: &str, before: &str, extra: &str) -> Vec<u8> {
    let response = binary::Envelope::encode(
        &binary::HttpResponse::new(status, body.as_bytes().to_vec())
            .with_header("content-type", "text/plain"),
    );
    let escaped: String = response
        .iter()
        .map(|byte| format!("\\{byte:02x}"))
        .collect();
    let source = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 0) "{escaped}")
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (if (i32.gt_u (global.get $heap) (i32.const 60000)) (then (global.set $heap (i32.const 8192))))
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $len))))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    {before}
    (i64.const {len}))
  {extra})"#,
        len = response.len()
    );
    wat::parse_str(source).unwrap()
}

/// A module answering 200 with `body`.
pub fn hello(body: &str) -> Vec<u8> {
    answering(200, body, "", "", "")
}

pub use testkit::{eventually, fixture_guest};

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"").await
}

/// A WebSocket client of `/ws?topic=TOPIC`; asserts the 101 handshake.
pub async fn ws_connect(
    addr: SocketAddr,
    topic: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?topic={topic}"))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    socket
}
