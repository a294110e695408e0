//! [`ServerConfig`] and the optional `modhost.toml` with per-module limits, pool sizes and
//! capability grants.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use wasi_host::{DirGrant, ModuleConfig};

use crate::outbound::{HostPattern, OutboundConfig, OutboundPolicy};

/// Everything the server needs to run. Paths are relative to `root` unless absolute.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The project root (default: the current directory).
    pub root: PathBuf,
    /// Module sources, `<modules_dir>/<name>/wasm/` and `rule.txt` (default `modules`).
    pub modules_dir: PathBuf,
    /// Compiled modules, `<dist_dir>/<name>.wasm` (default `modules/dist`).
    pub dist_dir: PathBuf,
    /// Where to listen (default `127.0.0.1:6060`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// How long a retired version may drain before it is closed (default 5 s).
    pub drain_timeout: Duration,
    /// Watch `dist_dir` and hot-reload on changes (default on). Off, the application drives
    /// reloads through [`crate::ServerHandle::reload`] / [`crate::ServerHandle::file_event`].
    pub watch_dist: bool,
    /// Where compiled modules are cached on disk (default: `<dist_dir>/.cache`).
    pub cache: CompiledCache,
    /// The compiler modules are compiled with (default Cranelift; `modhost dev` uses
    /// Singlepass, see `docs/PERFORMANCE.md`).
    pub compiler: wasi_host::Compiler,
    /// HTTP limits.
    pub http: HttpLimits,
    /// WebSocket relay settings.
    pub websocket: WebSocketConfig,
    /// Token that lets non-loopback clients use `/_admin/*` (as `Authorization: Bearer …`).
    /// Without one, admin endpoints answer loopback clients only.
    pub admin_token: Option<String>,
    /// Settings for modules not named in `modules`.
    pub default_module: ModuleConfig,
    /// Per-module settings, by module name.
    pub modules: BTreeMap<String, ModuleConfig>,
    /// The key-value store modules reach through the `kv` import.
    pub state: StateConfig,
    /// Hold settings of the swap with a state handoff, for modules not named in `handoffs`.
    pub default_handoff: HandoffConfig,
    /// Per-module hold settings, by module name.
    pub handoffs: BTreeMap<String, HandoffConfig>,
    /// Outbound HTTP settings all modules share (extra CAs, fixed name answers).
    pub outbound: OutboundConfig,
    /// Outbound allow-list and limits for modules not named in `outbound_policies` (by
    /// default: no host allowed).
    pub default_outbound: OutboundPolicy,
    /// Per-module outbound allow-lists and limits, by module name.
    pub outbound_policies: BTreeMap<String, OutboundPolicy>,
    /// Cluster mode: join the NATS cluster described here (default: none, a single
    /// process). See the README's Cluster section.
    pub cluster: Option<cluster::ClusterConfig>,
}

/// How a hot swap with a state handoff (the old version exports `snapshot`, the new one
/// `restore`; `docs/ABI.md`) holds the module's new requests while the state moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffConfig {
    /// Longest the hold may last — the old version's drain, `snapshot` and `restore` together
    /// (default 5 s). A handoff that takes longer is abandoned: the new version is refused
    /// and the held requests go to the old one.
    pub hold_timeout: Duration,
    /// Most requests held at once (default 1024); more are answered `503` until the hold
    /// ends.
    pub max_held: usize,
}

impl Default for HandoffConfig {
    fn default() -> HandoffConfig {
        HandoffConfig {
            hold_timeout: Duration::from_secs(5),
            max_held: 1024,
        }
    }
}

/// Where the on-disk compiled-module cache lives (compiled code keyed by content hash and
/// engine, so a restart or a swap back to a known version skips the compiler).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CompiledCache {
    /// `<dist_dir>/.cache` (the default).
    #[default]
    InDist,
    /// This directory (relative paths are under the root).
    At(PathBuf),
    /// No disk cache: every load compiles (the in-memory cache still applies).
    Disabled,
}

/// Where and how module state is kept.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Keep a store at all (default on). Off, the `kv` import answers "no store".
    pub enabled: bool,
    /// Directory of the database file `modhost.redb` (default `state`, under the root).
    pub dir: PathBuf,
    /// When a write is acknowledged (default: once it is on disk).
    pub durability: state::Durability,
    /// Largest value one key may hold (default 1 MiB).
    pub max_value_bytes: usize,
    /// Most memory the embedded store keeps for pages of the file (default 32 MiB).
    pub cache_bytes: usize,
    /// In cluster mode, where state lives (default: shared by every node, in NATS JetStream
    /// KV). Without a cluster the embedded store is used whatever this says.
    pub cluster: StatePlacement,
}

/// Where module state lives in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatePlacement {
    /// One state for the whole cluster: a JetStream KV bucket per namespace.
    #[default]
    Shared,
    /// Each node keeps its own embedded store, as without a cluster.
    Node,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            enabled: true,
            dir: PathBuf::from("state"),
            durability: state::Durability::Immediate,
            max_value_bytes: state::Limits::default().max_value_bytes,
            cache_bytes: state::DEFAULT_CACHE_BYTES,
            cluster: StatePlacement::Shared,
        }
    }
}

/// The database file's name inside [`StateConfig::dir`].
pub const STATE_FILE: &str = "modhost.redb";

/// Limits on HTTP clients.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body passed to a module (default 1 MiB); larger is 413.
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers) (default 64 KiB); larger is 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its request head (default 10 s): slow-loris protection.
    pub header_read_timeout: Duration,
    /// Longest a request may take end to end, body upload and middlewares included (default
    /// 30 s): 408 if the body hasn't arrived by then, 504 if no module has answered.
    pub request_timeout: Duration,
    /// Connections served at once (default 1024); more wait in the accept queue.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// WebSocket relay settings.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// Frames queued per client before it counts as slow and is disconnected with close code
    /// 1008 and reason `client too slow` (default 1024: a burst of that many broadcasts
    /// reaches a healthy client complete).
    pub client_queue: usize,
    /// Largest frame or message accepted from a client (default 64 KiB).
    pub max_message_bytes: usize,
    /// Ping period; a client that answers no ping for two periods is dropped (default 20 s).
    pub ping_interval: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> WebSocketConfig {
        WebSocketConfig {
            client_queue: 1024,
            max_message_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(20),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            root: PathBuf::from("."),
            modules_dir: PathBuf::from("modules"),
            dist_dir: PathBuf::from("modules/dist"),
            listen: SocketAddr::from(([127, 0, 0, 1], 6060)),
            drain_timeout: Duration::from_secs(5),
            watch_dist: true,
            cache: CompiledCache::default(),
            compiler: wasi_host::Compiler::default(),
            http: HttpLimits::default(),
            websocket: WebSocketConfig::default(),
            admin_token: None,
            default_module: ModuleConfig::default(),
            modules: BTreeMap::new(),
            state: StateConfig::default(),
            default_handoff: HandoffConfig::default(),
            handoffs: BTreeMap::new(),
            outbound: OutboundConfig::default(),
            default_outbound: OutboundPolicy::default(),
            outbound_policies: BTreeMap::new(),
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// A config rooted at `root` with every other setting at its default.
    pub fn at(root: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            root: root.into(),
            ..ServerConfig::default()
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }

    /// The modules (sources) directory, resolved against the root.
    pub fn modules_path(&self) -> PathBuf {
        self.resolve(&self.modules_dir)
    }

    /// The dist directory, resolved against the root.
    pub fn dist_path(&self) -> PathBuf {
        self.resolve(&self.dist_dir)
    }

    /// The compiled-module cache directory, resolved (`None` when disabled).
    pub fn cache_path(&self) -> Option<PathBuf> {
        match &self.cache {
            CompiledCache::InDist => Some(self.dist_path().join(".cache")),
            CompiledCache::At(dir) => Some(self.resolve(dir)),
            CompiledCache::Disabled => None,
        }
    }

    /// The state database file, resolved (`None` when the store is disabled).
    pub fn state_path(&self) -> Option<PathBuf> {
        self.state
            .enabled
            .then(|| self.resolve(&self.state.dir).join(STATE_FILE))
    }

    /// The settings for module `name`.
    pub fn module(&self, name: &str) -> &ModuleConfig {
        self.modules.get(name).unwrap_or(&self.default_module)
    }

    /// The hold settings for module `name`.
    pub fn handoff(&self, name: &str) -> &HandoffConfig {
        self.handoffs.get(name).unwrap_or(&self.default_handoff)
    }

    /// The outbound allow-list and limits of module `name`.
    pub fn outbound_policy(&self, name: &str) -> &OutboundPolicy {
        self.outbound_policies
            .get(name)
            .unwrap_or(&self.default_outbound)
    }

    /// Applies a `modhost.toml` file (the keys are in the README).
    pub fn apply_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: FileConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for (module, section) in &file.modules {
            if let Some(name) = section.invalid_stores().first() {
                anyhow::bail!(
                    "{}: module \"{module}\": store name {name:?} is invalid (1 to 64 of a-z 0-9 - _ .)",
                    path.display()
                );
            }
            for entry in section.allowed_hosts.iter().flatten() {
                if let Err(error) = entry.parse::<HostPattern>() {
                    anyhow::bail!(
                        "{}: module \"{module}\": allowed_hosts: {error}",
                        path.display()
                    );
                }
            }
        }
        for (module, section) in &file.modules {
            if let Some(reason) = section.invalid_dir(&self.root) {
                anyhow::bail!("{}: module \"{module}\": {reason}", path.display());
            }
        }
        file.apply(self);
        Ok(())
    }
}

/// The `modhost.toml` format:
///
/// ```toml
/// admin_token = "s3cret"          # optional
/// max_body_bytes = 1048576         # optional HTTP limits
/// compiler = "cranelift"           # or "singlepass" (`modhost dev`'s default)
///
/// [modules.users]                  # per module; [modules."*"] sets the default
/// instances = 2                    # pool size (default: 1, or one per server thread for a
///                                  # module that exports `modhost_shared_nothing`)
/// memory_mb = 64                   # linear memory cap
/// handle_timeout_ms = 5000         # per-call deadline of `handle`
/// inbox = 1024                     # queued jobs before 503
/// message_batch = 256              # bus messages per `on_messages` call (1: one by one)
/// inline = true                   # short calls may run on the request's thread
/// snapshot_timeout_ms = 5000       # per-call deadline of `snapshot` / `restore`
/// max_snapshot_mb = 16             # largest state `snapshot` may hand over
/// hold_timeout_ms = 5000           # longest hold of a swap with a state handoff
/// max_held = 1024                  # requests held at once during it, then 503
/// env = { AUTH_TOKEN = "letmein" } # grant: environment variables
/// args = []                        # grant: argv[1..]
/// stores = ["sessions"]            # grant: shared key-value stores
/// dirs = { "/assets" = { path = "modules/users/assets" } }  # grant: a directory, read-only
///                                  #   (`read_only = false` allows writes inside it)
/// kv_max_keys = 1000000            # quota of the module's own store
/// kv_max_bytes = 1073741824        #   (keys + values, in bytes)
/// allowed_hosts = ["api.example.org", "127.0.0.1:8081", "*.internal.example"]
///                                  # grant: outbound HTTP (`[scheme://]host[:port]`)
/// outbound_timeout_ms = 10000      # one outbound request, redirects included
/// outbound_connect_timeout_ms = 5000
/// outbound_max_response_bytes = 4194304
/// outbound_max_redirects = 5       # each to an allowed host only
/// outbound_max_concurrent = 16     # outbound requests in flight at once
/// outbound_max_per_call = 100      # outbound requests one export call may make
///
/// [outbound]                       # shared by every module's outbound requests
/// ca_files = ["certs/internal-ca.pem"] # extra trusted CAs (PEM), besides Mozilla's roots
/// resolve = { "api.internal.example" = "10.0.0.7" } # names answered without DNS
///
/// [state]                          # the key-value store
/// dir = "state"                    # holds modhost.redb
/// durability = "immediate"         # or "eventual": see the README's State section
/// max_value_bytes = 1048576
/// cache_bytes = 33554432           # memory kept for pages of the file (32 MiB)
/// enabled = true
/// cluster = "shared"               # in cluster mode: "shared" (NATS KV) or "node" (own file)
///
/// [cluster]                        # cluster mode (off without this section)
/// url = "nats://127.0.0.1:4222"    # the NATS server
/// name = "shop"                    # nodes of one name form one application
/// node = "web-1"                   # this node's name (default node-<pid>)
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`ServerConfig::admin_token`].
    pub admin_token: Option<String>,
    /// See [`HttpLimits::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
    /// See [`ServerConfig::drain_timeout`], in milliseconds.
    pub drain_timeout_ms: Option<u64>,
    /// See [`ServerConfig::compiler`]: `"cranelift"` or `"singlepass"`.
    pub compiler: Option<FileCompiler>,
    /// Per-module sections.
    #[serde(default)]
    pub modules: BTreeMap<String, FileModule>,
    /// The `[state]` section.
    pub state: Option<FileState>,
    /// The `[outbound]` section.
    pub outbound: Option<FileOutbound>,
    /// The `[cluster]` section.
    pub cluster: Option<FileCluster>,
}

/// The `compiler` key: see [`wasi_host::Compiler`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileCompiler {
    /// Cranelift (optimised code).
    Cranelift,
    /// Singlepass (compiles faster, runs slower).
    Singlepass,
}

impl From<FileCompiler> for wasi_host::Compiler {
    fn from(compiler: FileCompiler) -> wasi_host::Compiler {
        match compiler {
            FileCompiler::Cranelift => wasi_host::Compiler::Cranelift,
            FileCompiler::Singlepass => wasi_host::Compiler::Singlepass,
        }
    }
}

/// The `[outbound]` section: see [`OutboundConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutbound {
    /// See [`OutboundConfig::ca_files`].
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// See [`OutboundConfig::resolve`].
    #[serde(default)]
    pub resolve: BTreeMap<String, std::net::IpAddr>,
}

/// The `[cluster]` section: see [`cluster::ClusterConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// The NATS server's URL.
    pub url: String,
    /// The cluster name.
    pub name: Option<String>,
    /// This node's name.
    pub node: Option<String>,
}

/// The `[state]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    /// See [`StateConfig::enabled`].
    pub enabled: Option<bool>,
    /// See [`StateConfig::dir`].
    pub dir: Option<PathBuf>,
    /// `"immediate"` or `"eventual"`.
    pub durability: Option<FileDurability>,
    /// See [`StateConfig::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
    /// See [`StateConfig::cache_bytes`].
    pub cache_bytes: Option<usize>,
    /// See [`StateConfig::cluster`].
    pub cluster: Option<StatePlacement>,
}

/// `durability = "immediate" | "eventual"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileDurability {
    /// See [`state::Durability::Immediate`].
    Immediate,
    /// See [`state::Durability::Eventual`].
    Eventual,
}

/// One `[modules.<name>]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModule {
    /// Pool size.
    pub instances: Option<usize>,
    /// Memory cap in MiB.
    pub memory_mb: Option<u64>,
    /// `handle` deadline in milliseconds.
    pub handle_timeout_ms: Option<u64>,
    /// Inbox capacity.
    pub inbox: Option<usize>,
    /// See [`wasi_host::Limits::max_message_batch`].
    pub message_batch: Option<usize>,
    /// Whether short calls may run on the request's thread (default true).
    pub inline: Option<bool>,
    /// `snapshot` / `restore` deadline in milliseconds.
    pub snapshot_timeout_ms: Option<u64>,
    /// Largest state `snapshot` may return, in MiB.
    pub max_snapshot_mb: Option<usize>,
    /// See [`HandoffConfig::hold_timeout`], in milliseconds.
    pub hold_timeout_ms: Option<u64>,
    /// See [`HandoffConfig::max_held`].
    pub max_held: Option<usize>,
    /// Environment variable grants.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Argument grants.
    #[serde(default)]
    pub args: Vec<String>,
    /// Shared key-value stores the module may open.
    pub stores: Option<Vec<String>>,
    /// Directory grants by guest path (`"/assets"`).
    #[serde(default)]
    pub dirs: BTreeMap<String, FileDir>,
    /// Most keys in the module's own store.
    pub kv_max_keys: Option<u64>,
    /// Most bytes (keys + values) in the module's own store.
    pub kv_max_bytes: Option<u64>,
    /// Hosts the module may reach with outbound HTTP (see [`HostPattern`]).
    pub allowed_hosts: Option<Vec<String>>,
    /// See [`OutboundPolicy::timeout`], in milliseconds.
    pub outbound_timeout_ms: Option<u64>,
    /// See [`OutboundPolicy::connect_timeout`], in milliseconds.
    pub outbound_connect_timeout_ms: Option<u64>,
    /// See [`OutboundPolicy::max_response_bytes`].
    pub outbound_max_response_bytes: Option<usize>,
    /// See [`OutboundPolicy::max_redirects`].
    pub outbound_max_redirects: Option<usize>,
    /// See [`OutboundPolicy::max_concurrent`].
    pub outbound_max_concurrent: Option<usize>,
    /// See [`wasi_host::Limits::max_outbound_per_call`].
    pub outbound_max_per_call: Option<u32>,
}

/// One directory grant: `dirs = { "/assets" = { path = "modules/users/assets" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDir {
    /// The host directory, relative to the root or absolute; it must exist.
    pub path: PathBuf,
    /// Refuse writes (default `true`).
    #[serde(default = "read_only_by_default")]
    pub read_only: bool,
}

fn read_only_by_default() -> bool {
    true
}

impl FileModule {
    /// The first directory grant that can't be honoured, with the reason: a bad guest path, a
    /// host directory that isn't there.
    fn invalid_dir(&self, root: &Path) -> Option<String> {
        self.dirs.iter().find_map(|(guest, dir)| {
            if let Err(reason) = wasi_host::check_guest_dir(guest) {
                return Some(format!("dirs: {reason}"));
            }
            let host = if dir.path.is_absolute() {
                dir.path.clone()
            } else {
                root.join(&dir.path)
            };
            match std::fs::metadata(&host) {
                Ok(metadata) if metadata.is_dir() => None,
                Ok(_) => Some(format!(
                    "dirs: {guest:?}: {} is not a directory",
                    host.display()
                )),
                Err(error) => Some(format!(
                    "dirs: {guest:?}: host directory {}: {error}",
                    host.display()
                )),
            }
        })
    }

    fn apply(&self, base: &ModuleConfig, root: &Path) -> ModuleConfig {
        let mut config = base.clone();
        if let Some(instances) = self.instances {
            config.instances = Some(instances.max(1));
        }
        if let Some(inline) = self.inline {
            config.inline = inline;
        }
        if let Some(memory_mb) = self.memory_mb {
            config.limits.max_memory_bytes = memory_mb * 1024 * 1024;
        }
        if let Some(timeout) = self.handle_timeout_ms {
            config.limits.handle_deadline = Duration::from_millis(timeout);
        }
        if let Some(inbox) = self.inbox {
            config.inbox_capacity = inbox.max(1);
        }
        if let Some(batch) = self.message_batch {
            config.limits.max_message_batch = batch.max(1);
        }
        if let Some(timeout) = self.snapshot_timeout_ms {
            config.limits.snapshot_deadline = Duration::from_millis(timeout);
        }
        if let Some(max) = self.max_snapshot_mb {
            config.limits.max_snapshot_bytes = max.saturating_mul(1024 * 1024);
        }
        if !self.env.is_empty() || !self.args.is_empty() {
            config.grants.env = self
                .env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            config.grants.args = self.args.clone();
        }
        if !self.dirs.is_empty() {
            config.grants.dirs = self
                .dirs
                .iter()
                .map(|(guest, dir)| DirGrant {
                    guest: guest.clone(),
                    host: if dir.path.is_absolute() {
                        dir.path.clone()
                    } else {
                        root.join(&dir.path)
                    },
                    read_only: dir.read_only,
                })
                .collect();
        }
        if let Some(stores) = &self.stores {
            config.kv.stores = stores.clone();
        }
        if let Some(max) = self.kv_max_keys {
            config.kv.quota.max_keys = max;
        }
        if let Some(max) = self.kv_max_bytes {
            config.kv.quota.max_bytes = max;
        }
        if let Some(max) = self.outbound_max_per_call {
            config.limits.max_outbound_per_call = max;
        }
        config
    }

    fn apply_outbound(&self, module: &str, base: &OutboundPolicy) -> OutboundPolicy {
        let mut policy = base.clone();
        if let Some(hosts) = &self.allowed_hosts {
            policy.allowed_hosts = hosts
                .iter()
                .filter_map(|entry| match entry.parse::<HostPattern>() {
                    Ok(pattern) => Some(pattern),
                    Err(error) => {
                        tracing::warn!("module \"{module}\": allowed_hosts: {error} (ignored)");
                        None
                    }
                })
                .collect();
        }
        if let Some(ms) = self.outbound_timeout_ms {
            policy.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.outbound_connect_timeout_ms {
            policy.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(max) = self.outbound_max_response_bytes {
            policy.max_response_bytes = max;
        }
        if let Some(max) = self.outbound_max_redirects {
            policy.max_redirects = max;
        }
        if let Some(max) = self.outbound_max_concurrent {
            policy.max_concurrent = max.max(1);
        }
        policy
    }

    /// Names in `stores` that can never match a store.
    fn invalid_stores(&self) -> Vec<&str> {
        self.stores
            .iter()
            .flatten()
            .filter(|name| !wasi_host::valid_store_name(name))
            .map(String::as_str)
            .collect()
    }

    fn apply_handoff(&self, base: &HandoffConfig) -> HandoffConfig {
        let mut handoff = base.clone();
        if let Some(timeout) = self.hold_timeout_ms {
            handoff.hold_timeout = Duration::from_millis(timeout);
        }
        if let Some(max) = self.max_held {
            handoff.max_held = max;
        }
        handoff
    }
}

impl FileConfig {
    /// Writes these settings over `config`.
    pub fn apply(&self, config: &mut ServerConfig) {
        if let Some(token) = &self.admin_token {
            config.admin_token = Some(token.clone());
        }
        if let Some(compiler) = self.compiler {
            config.compiler = compiler.into();
        }
        if let Some(max) = self.max_body_bytes {
            config.http.max_body_bytes = max;
        }
        if let Some(ms) = self.drain_timeout_ms {
            config.drain_timeout = Duration::from_millis(ms);
        }
        if let Some(state) = &self.state {
            if let Some(enabled) = state.enabled {
                config.state.enabled = enabled;
            }
            if let Some(dir) = &state.dir {
                config.state.dir = dir.clone();
            }
            if let Some(durability) = state.durability {
                config.state.durability = match durability {
                    FileDurability::Immediate => state::Durability::Immediate,
                    FileDurability::Eventual => state::Durability::Eventual,
                };
            }
            if let Some(max) = state.max_value_bytes {
                config.state.max_value_bytes = max;
            }
            if let Some(bytes) = state.cache_bytes {
                config.state.cache_bytes = bytes;
            }
            if let Some(cluster) = state.cluster {
                config.state.cluster = cluster;
            }
        }
        if let Some(outbound) = &self.outbound {
            config.outbound.ca_files.clone_from(&outbound.ca_files);
            config.outbound.resolve = outbound
                .resolve
                .iter()
                .map(|(name, address)| (name.to_ascii_lowercase(), *address))
                .collect();
        }
        if let Some(section) = &self.cluster {
            let mut cluster = cluster::ClusterConfig::new(section.url.clone());
            if let Some(name) = &section.name {
                cluster.cluster_name = name.clone();
            }
            if let Some(node) = &section.node {
                cluster.node_name = node.clone();
            }
            config.cluster = Some(cluster);
        }
        if let Some(default) = self.modules.get("*") {
            config.default_module = default.apply(&config.default_module, &config.root);
            config.default_handoff = default.apply_handoff(&config.default_handoff);
            config.default_outbound = default.apply_outbound("*", &config.default_outbound);
        }
        for (name, module) in self.modules.iter().filter(|(name, _)| name.as_str() != "*") {
            let base = config.default_module.clone();
            config
                .modules
                .insert(name.clone(), module.apply(&base, &config.root));
            let base = config.default_handoff.clone();
            config
                .handoffs
                .insert(name.clone(), module.apply_handoff(&base));
            let base = config.default_outbound.clone();
            config
                .outbound_policies
                .insert(name.clone(), module.apply_outbound(name, &base));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_format_applies_per_module_settings() {
        let file: FileConfig = toml::from_str(
            r#"
            admin_token = "t"
            [modules."*"]
            memory_mb = 32
            hold_timeout_ms = 2000
            [modules.users]
            instances = 2
            handle_timeout_ms = 250
            env = { AUTH_TOKEN = "x" }
            [modules.counter]
            snapshot_timeout_ms = 300
            max_snapshot_mb = 2
            max_held = 10
            "#,
        )
        .unwrap();
        let mut config = ServerConfig::default();
        file.apply(&mut config);
        assert_eq!(config.admin_token.as_deref(), Some("t"));
        assert_eq!(config.default_module.limits.max_memory_bytes, 32 << 20);
        let users = config.module("users");
        assert_eq!(users.instances, Some(2));
        assert_eq!(users.limits.max_memory_bytes, 32 << 20);
        assert_eq!(users.limits.handle_deadline, Duration::from_millis(250));
        assert_eq!(
            users.grants.env,
            vec![("AUTH_TOKEN".to_owned(), "x".to_owned())]
        );
        let counter = config.module("counter");
        assert_eq!(counter.limits.snapshot_deadline, Duration::from_millis(300));
        assert_eq!(counter.limits.max_snapshot_bytes, 2 << 20);
        assert_eq!(
            config.handoff("counter"),
            &HandoffConfig {
                hold_timeout: Duration::from_millis(2000),
                max_held: 10
            }
        );
        assert_eq!(
            config.handoff("other").hold_timeout,
            Duration::from_millis(2000)
        );
        assert_eq!(
            ServerConfig::default().handoff("x"),
            &HandoffConfig::default()
        );
        assert!(
            toml::from_str::<FileConfig>("bogus = 1").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn state_settings_and_store_grants_apply() {
        let file: FileConfig = toml::from_str(
            r#"
            [state]
            dir = "/var/lib/app"
            durability = "eventual"
            max_value_bytes = 4096
            cache_bytes = 1048576
            [modules.users]
            stores = ["sessions"]
            kv_max_keys = 10
            "#,
        )
        .unwrap();
        let mut config = ServerConfig::at("/srv");
        file.apply(&mut config);
        assert_eq!(
            config.state_path(),
            Some(PathBuf::from("/var/lib/app/modhost.redb"))
        );
        assert_eq!(config.state.durability, state::Durability::Eventual);
        assert_eq!(config.state.max_value_bytes, 4096);
        assert_eq!(config.state.cache_bytes, 1 << 20);
        assert_eq!(
            config.state.cluster,
            StatePlacement::Shared,
            "shared by default"
        );
        let node: FileConfig = toml::from_str("[state]\ncluster = \"node\"").unwrap();
        node.apply(&mut config);
        assert_eq!(config.state.cluster, StatePlacement::Node);
        let users = config.module("users");
        assert_eq!(users.kv.stores, vec!["sessions".to_owned()]);
        assert_eq!(users.kv.quota.max_keys, 10);
        assert_eq!(
            config.module("other").kv.quota,
            state::Quota::default(),
            "quotas are per module"
        );
        assert!(toml::from_str::<FileConfig>("[state]\ndurability = \"sometimes\"").is_err());
    }

    #[test]
    fn outbound_grants_and_limits_apply_per_module() {
        let file: FileConfig = toml::from_str(
            r#"
            [outbound]
            ca_files = ["ca.pem"]
            resolve = { "API.test" = "127.0.0.1" }
            [modules.proxy]
            allowed_hosts = ["api.example.org", "127.0.0.1:8081", "*.internal.example"]
            outbound_timeout_ms = 700
            outbound_max_redirects = 2
            outbound_max_concurrent = 3
            outbound_max_response_bytes = 1000
            outbound_max_per_call = 7
            message_batch = 1
            "#,
        )
        .unwrap();
        let mut config = ServerConfig::default();
        file.apply(&mut config);
        let proxy = config.outbound_policy("proxy");
        let hosts: Vec<String> = proxy
            .allowed_hosts
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            hosts,
            ["api.example.org", "127.0.0.1:8081", "*.internal.example"]
        );
        assert_eq!(proxy.timeout, Duration::from_millis(700));
        assert_eq!(proxy.max_redirects, 2);
        assert_eq!(proxy.max_concurrent, 3);
        assert_eq!(proxy.max_response_bytes, 1000);
        assert_eq!(config.module("proxy").limits.max_outbound_per_call, 7);
        assert_eq!(config.module("proxy").limits.max_message_batch, 1);
        assert!(
            config.outbound_policy("users").allowed_hosts.is_empty(),
            "deny by default"
        );
        assert_eq!(config.outbound.ca_files, vec![PathBuf::from("ca.pem")]);
        assert_eq!(
            config.outbound.resolve.get("api.test"),
            Some(&std::net::IpAddr::from([127, 0, 0, 1]))
        );

        let dir = std::env::temp_dir().join(format!("modhost-outbound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("modhost.toml");
        std::fs::write(
            &path,
            "[modules.proxy]\nallowed_hosts = [\"ftp://x.org\"]\n",
        )
        .unwrap();
        let message = format!(
            "{:#}",
            ServerConfig::default().apply_file(&path).unwrap_err()
        );
        assert!(
            message.contains("module \"proxy\": allowed_hosts"),
            "{message}"
        );
        assert!(message.contains("\"ftp\""), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_invalid_store_grant_is_refused_with_the_file_and_module() {
        let dir = std::env::temp_dir().join(format!("modhost-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("modhost.toml");
        std::fs::write(&path, "[modules.users]\nstores = [\"Bad/Name\"]\n").unwrap();
        let error = ServerConfig::default().apply_file(&path).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("module \"users\""), "{message}");
        assert!(message.contains("\"Bad/Name\""), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cluster_section_turns_cluster_mode_on() {
        let mut config = ServerConfig::at("/srv");
        assert!(config.cluster.is_none(), "off by default");
        let file: FileConfig = toml::from_str(
            r#"
            [cluster]
            url = "nats://10.0.0.1:4222"
            name = "shop"
            node = "web-1"
            "#,
        )
        .unwrap();
        file.apply(&mut config);
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.url, "nats://10.0.0.1:4222");
        assert_eq!(cluster.cluster_name, "shop");
        assert_eq!(cluster.node_name, "web-1");
        assert_eq!(cluster.heartbeat_interval, Duration::from_secs(1));
        let unknown = toml::from_str::<FileConfig>("[cluster]\nurl = \"x\"\nnodes = 3\n");
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}

#[cfg(test)]
mod dir_tests {
    use super::*;

    #[test]
    fn directory_grants_resolve_against_the_root_and_default_to_read_only() {
        let root = std::env::temp_dir().join(format!("modhost-config-dirs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("modules/users/assets")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let path = root.join("modhost.toml");
        std::fs::write(
            &path,
            format!(
                r#"[modules.users]
env = {{ A = "b" }}
dirs = {{ "/assets" = {{ path = "modules/users/assets" }}, "/data" = {{ path = "{}", read_only = false }} }}
"#,
                root.join("data").display()
            ),
        )
        .unwrap();
        let mut config = ServerConfig::at(&root);
        config.apply_file(&path).unwrap();
        let users = config.module("users");
        assert_eq!(users.grants.env, [("A".to_owned(), "b".to_owned())]);
        assert_eq!(
            users.grants.dirs,
            [
                DirGrant {
                    guest: "/assets".into(),
                    host: root.join("modules/users/assets"),
                    read_only: true,
                },
                DirGrant {
                    guest: "/data".into(),
                    host: root.join("data"),
                    read_only: false,
                },
            ]
        );
        assert!(config.module("other").grants.dirs.is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
