//! The end-to-end suite's support code: a temp copy of the example project, its modules built
//! by the real build pipeline, the real server started in-process on `127.0.0.1:0`, and real
//! HTTP and WebSocket clients. The tests themselves are in `tests/e2e.rs`.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: a panic is the report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use server::{ServerBuilder, ServerConfig, ServerHandle};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A temp copy of the example project's `modules/` (sources only), removed on drop.
#[derive(Debug)]
pub struct Project {
    /// The temp project root.
    pub root: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "dist" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Builds of different copies share `modules/target`, and with it cargo's uplifted artifact
/// (`wasm32-wasip1/hot/<name>.wasm`): another copy's build of the same module re-links its
/// own `<name>.wasm` there, so a build that races it can read the other copy's output and
/// report its own edit as unchanged. A test that builds into the shared target holds this
/// while it does.
pub static SHARED_TARGET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Project {
    /// Copies the example modules into a fresh temp dir.
    pub fn copy(tag: &str) -> Project {
        let root = std::env::temp_dir().join(format!("modhost-e2e-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        copy_tree(&repo_root().join("modules"), &root.join("modules"));
        // The modules workspace finds the SDK by a relative path; point the copy at ours.
        let manifest = root.join("modules/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let guest = repo_root().join("crates/guest");
        let text = text.replace(
            "\"../crates/guest\"",
            &format!("{:?}", guest.display().to_string()),
        );
        std::fs::write(&manifest, text).unwrap();
        Project { root }
    }

    /// The modules dir.
    pub fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }

    /// The dist dir.
    pub fn dist(&self) -> PathBuf {
        self.root.join("modules/dist")
    }

    /// A build config for this copy. Its cargo target dir is the repository's own
    /// `modules/target` (dependencies compiled once, shared); profile `hot` as in dev mode.
    pub fn build_config(&self) -> build::Config {
        let mut config = build::Config::new(self.modules());
        config.target_dir = repo_root().join("modules/target");
        config.profile = "hot".to_owned();
        config.locked = true;
        config
    }

    /// Builds every module of the copy; panics naming any that failed.
    pub fn build_all(&self) {
        let reports = build::Builder::new(self.build_config())
            .build_all()
            .unwrap();
        let failed: Vec<String> = reports
            .iter()
            .filter_map(|report| match &report.outcome {
                build::Outcome::Failed(text) => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert!(
            failed.is_empty(),
            "module builds failed:\n{}",
            failed.join("\n")
        );
    }

    /// A server config over this copy on `127.0.0.1:0`.
    pub fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::at(&self.root);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.cache = server::CompiledCache::At(self.root.join("cache"));
        config
    }

    /// Starts the real server in-process.
    pub async fn start(&self) -> ServerHandle {
        ServerBuilder::new(self.server_config())
            .start()
            .await
            .unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body as (lossy) text.
    pub body: String,
}

/// One HTTP request with a fresh client connection pool.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|error| error.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"").await.unwrap()
}

pub use testkit::eventually;
