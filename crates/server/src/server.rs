//! Starting and stopping the server: bind, load every module in dist, watch, accept
//! connections with limits, and shut down gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::ServerConfig;
use crate::error::ReloadError;
use crate::http::{App, RouteHandler};
use crate::registry::{HoldStats, ModuleStatus, Registry, ReloadOutcome, module_name_of};
use crate::watch::DistWatcher;
use crate::ws::{Hub, HubSink, HubStats};

/// Builds a server: the config, plus any routes of the application's own.
pub struct ServerBuilder {
    config: ServerConfig,
    routes: Vec<(String, RouteHandler)>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A builder for `config`.
    pub fn new(config: ServerConfig) -> ServerBuilder {
        ServerBuilder {
            config,
            routes: Vec::new(),
        }
    }

    /// Serves every path starting with `prefix` (e.g. `/api/`) with `handler`; `/m/`, `/ws`,
    /// `/healthz` and `/_admin/` stay the server's.
    pub fn route<F, Fut>(mut self, prefix: &str, handler: F) -> ServerBuilder
    where
        F: Fn(http::Request<bytes::Bytes>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = http::Response<crate::Body>> + Send + 'static,
    {
        let handler: RouteHandler = Arc::new(move |request| Box::pin(handler(request)));
        self.routes.push((prefix.to_owned(), handler));
        self.routes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Binds, loads every module in the dist dir, starts the dist watcher (unless disabled)
    /// and starts serving. Must run inside a tokio runtime.
    pub async fn start(self) -> anyhow::Result<ServerHandle> {
        if let Some(cluster) = &self.config.cluster {
            // Before anything is bound or opened: a bad name leaves nothing behind.
            cluster.validate().context("joining the cluster")?;
        }
        let config = Arc::new(self.config);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let hub = Arc::new(Hub::new(config.websocket.clone()));
        let store = open_store(&config).await?;
        let host_config = wasi_host::HostConfig {
            cache_dir: config.cache_path(),
            tokio: None,
            store,
            // A shared-nothing module gets an instance per thread that serves requests.
            request_threads: Some(tokio::runtime::Handle::current().metrics().num_workers()),
            compiler: config.compiler,
        };
        // Cluster mode only: broadcasts also go to the other nodes, once the bridge is up.
        let slot: crate::clustered::Slot = Arc::default();
        let sink: Arc<dyn wasi_host::BroadcastSink> = if config.cluster.is_some() {
            Arc::new(crate::clustered::ClusterSink {
                hub: hub.clone(),
                slot: slot.clone(),
            })
        } else {
            Arc::new(HubSink(hub.clone()))
        };
        let host = wasi_host::Host::new(host_config, bus::Bus::new(), sink)
            .context("starting the wasm host")?;
        let outbound = Arc::new(
            crate::outbound::OutboundHub::new(&config.outbound, &config.root)
                .context("starting the outbound HTTP client")?,
        );
        let registry = Arc::new(Registry::new(host.clone(), config.clone(), outbound));
        let cluster = match &config.cluster {
            Some(cluster_config) => {
                let node = Arc::new(crate::clustered::Node {
                    registry: registry.clone(),
                    hub: hub.clone(),
                    dist: config.dist_path(),
                });
                let cluster =
                    cluster::Cluster::start(cluster_config.clone(), host.bus().clone(), node)
                        .await
                        .context("joining the cluster")?;
                let cluster = Arc::new(cluster);
                let _ = slot.set(cluster.clone());
                Some(cluster)
            }
            None => None,
        };

        let dist = config.dist_path();
        std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
        // The watcher starts first, so a file written during start-up is not missed.
        let watcher = if config.watch_dist {
            Some(crate::watch::watch(&dist, registry.clone())?)
        } else {
            None
        };
        load_all(&registry).await;
        if let Some(cluster) = &cluster {
            cluster.modules_changed();
        }
        let (stop, stopped) = watch::channel(false);
        let feed = crate::status::Feed::start(registry.clone(), hub.clone(), stopped.clone());
        let app = Arc::new(App {
            registry: registry.clone(),
            hub: hub.clone(),
            config: config.clone(),
            feed,
            routes: self.routes,
            cluster: cluster.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, app, stopped));
        tracing::info!(%addr, modules = registry.entries().len(), "modhost listening");
        Ok(ServerHandle {
            addr,
            registry,
            hub,
            host,
            config,
            stop,
            task: Some(task),
            _watcher: watcher,
            cluster,
        })
    }
}

/// Opens the state store: in cluster mode (unless `[state] cluster = "node"`) the cluster's
/// shared store in NATS JetStream KV, otherwise the state database, refusing to start when a
/// database exists but can't be opened (corrupt, truncated, not redb): it is never replaced by
/// an empty one.
async fn open_store(config: &ServerConfig) -> anyhow::Result<Option<Arc<dyn state::Store>>> {
    let Some(path) = config.state_path() else {
        return Ok(None);
    };
    if let Some(cluster) = &config.cluster
        && config.state.cluster == crate::config::StatePlacement::Shared
    {
        let mut store_config =
            cluster::StateStoreConfig::new(cluster.url.clone(), cluster.cluster_name.clone());
        store_config.limits.max_value_bytes = config.state.max_value_bytes;
        let store = cluster::connect_state_store(store_config)
            .await
            .context("connecting the cluster's shared state store")?;
        tracing::info!(url = %cluster.url, cluster = %cluster.cluster_name, "state store: shared by the cluster (NATS JetStream KV)");
        return Ok(Some(Arc::new(store)));
    }
    let store_config = state::Config {
        limits: state::Limits {
            max_value_bytes: config.state.max_value_bytes,
            ..state::Limits::default()
        },
        durability: config.state.durability,
        cache_bytes: config.state.cache_bytes,
    };
    let store = Arc::new(
        state::RedbStore::open(&path, store_config)
            .context("opening the module state store (move the file away to start empty)")?,
    );
    tracing::info!(
        path = %path.display(),
        durability = ?config.state.durability,
        cache_bytes = config.state.cache_bytes,
        "state store open"
    );
    if config.state.durability == state::Durability::Eventual {
        // Eventual commits become durable at the next durable commit; make one every interval
        // even when writing stops, so an idle server loses at most one interval of writes.
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state::EVENTUAL_FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
                if let Ok(Err(error)) = flushed {
                    tracing::warn!("state store: periodic flush failed: {error}");
                }
            }
        });
    }
    Ok(Some(store))
}

/// A read-only view of a running server, from [`ServerHandle::monitor`]: cheap to clone,
/// valid after the server stopped (it then shows the last state).
#[derive(Clone)]
pub struct Monitor {
    registry: Arc<Registry>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// How many reloads ended each way since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// First loads.
    pub loaded: u64,
    /// New versions swapped in.
    pub swapped: u64,
    /// Files holding the version already serving.
    pub unchanged: u64,
    /// Modules unloaded because their file went away.
    pub unloaded: u64,
    /// Reloads of a module with neither a file nor a loaded version.
    pub absent: u64,
    /// Refused new versions ([`crate::ReloadError`]).
    pub rejected: u64,
}

impl Monitor {
    /// Status of every module, as `/_admin/modules` shows it.
    pub fn modules(&self) -> Vec<ModuleStatus> {
        self.registry.status()
    }

    /// Status of one module.
    pub fn module(&self, name: &str) -> Option<ModuleStatus> {
        self.registry
            .status()
            .into_iter()
            .find(|status| status.name == name)
    }

    /// The counters of the version of `name` serving now (not of versions it replaced).
    pub fn module_stats(&self, name: &str) -> Option<wasi_host::ModuleStats> {
        self.registry.get(name).map(|entry| entry.current().stats())
    }

    /// Replaced versions still finishing their work.
    pub fn draining(&self) -> usize {
        self.registry.draining()
    }

    /// The hold windows of swaps with a state handoff so far.
    pub fn hold_stats(&self) -> HoldStats {
        self.registry.hold_stats()
    }

    /// How many reloads ended each way.
    pub fn reloads(&self) -> ReloadCounts {
        let [loaded, swapped, unchanged, unloaded, absent, rejected] =
            self.registry.reload_counts();
        ReloadCounts {
            loaded,
            swapped,
            unchanged,
            unloaded,
            absent,
            rejected,
        }
    }

    /// The WebSocket relay's counters.
    pub fn websocket(&self) -> HubStats {
        self.hub.stats()
    }

    /// WebSocket clients subscribed to `topic`.
    pub fn ws_clients(&self, topic: &str) -> usize {
        self.hub.clients_of(topic)
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    host: wasi_host::Host,
    config: Arc<ServerConfig>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    _watcher: Option<DistWatcher>,
    cluster: Option<Arc<cluster::Cluster>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bus modules talk on (an application may publish and subscribe too).
    pub fn bus(&self) -> &bus::Bus {
        self.host.bus()
    }

    /// A read-only view of the server's state that can be cloned and kept (for monitoring,
    /// or to wait for a condition from another task).
    pub fn monitor(&self) -> Monitor {
        Monitor {
            registry: self.registry.clone(),
            hub: self.hub.clone(),
        }
    }

    /// Sends `payload` to every WebSocket client of `topic` (`/ws?topic=...`), as a module's
    /// `ws_broadcast` does.
    pub fn ws_broadcast(&self, topic: &str, payload: &[u8]) {
        self.hub.broadcast(topic, payload);
        if let Some(cluster) = &self.cluster {
            cluster.ws_broadcast(topic, payload);
        }
    }

    /// Cluster mode's state, as `GET /_admin/cluster` shows it (`None` for a single
    /// process).
    pub fn cluster_status(&self) -> Option<cluster::ClusterStatus> {
        self.cluster.as_deref().map(cluster::Cluster::status)
    }

    /// Reloads `name` from the dist dir (the handoff protocol); for applications that run
    /// their own watcher or none.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, ReloadError> {
        self.registry.reload(name).await
    }

    /// Feeds one file event from an application's own watcher: `path` is a `.wasm` in the
    /// dist dir that was created, changed, renamed or removed.
    pub async fn file_event(&self, path: &Path) -> Result<ReloadOutcome, ReloadError> {
        match module_name_of(path) {
            Some(name) => self.registry.reload(&name).await,
            None => Err(ReloadError::NotAModuleFile {
                path: path.to_owned(),
            }),
        }
    }

    /// Reloads every module in the dist dir and unloads those whose file is gone (SIGHUP).
    pub async fn reload_all(&self) {
        let mut names = self.registry.dist_modules();
        names.extend(
            self.registry
                .entries()
                .iter()
                .map(|entry| entry.name().to_owned()),
        );
        names.sort();
        names.dedup();
        for name in names {
            if let Err(reason) = self.registry.reload(&name).await {
                tracing::warn!(module = %name, "reload: {reason}");
            }
        }
    }

    /// Status of every module.
    pub fn status(&self) -> Vec<ModuleStatus> {
        self.registry.status()
    }

    /// Stops accepting, lets in-flight requests finish, drains and closes every module.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // Leave the cluster first: no more forwarded calls or remote messages come in.
        if let Some(cluster) = self.cluster.take() {
            cluster.leave();
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.hub.close_all("server shutting down");
        let registry = self.registry.clone();
        let _ = tokio::task::spawn_blocking(move || registry.close_all()).await;
        // Retired versions still draining from recent swaps finish on their own tasks.
        let deadline =
            tokio::time::Instant::now() + self.config.drain_timeout + Duration::from_secs(1);
        while self.registry.draining() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Close the state store now, not whenever the last stray reference goes: its file
        // (and, with eventual durability, its last commits) must be settled when this returns.
        let host = self.host.clone();
        let closed = tokio::task::spawn_blocking(move || host.close_store(Duration::from_secs(5)))
            .await
            .unwrap_or(false);
        if !closed {
            tracing::warn!(
                "the state store was still in use after 5 s; it closes when the last call ends"
            );
        }
        tracing::info!("modhost stopped");
    }
}

/// Loads every module in the dist dir, as many at a time as there are cores (compiling is
/// CPU-bound; loading from the cache is mostly instantiation and `init`).
async fn load_all(registry: &Arc<Registry>) {
    let parallel = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let permits = Arc::new(Semaphore::new(parallel.max(2)));
    let mut loads = tokio::task::JoinSet::new();
    for name in registry.dist_modules() {
        let registry = registry.clone();
        let permits = permits.clone();
        loads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Err(reason) = registry.reload(&name).await {
                tracing::warn!(module = %name, "not loaded: {reason}");
            }
        });
    }
    while loads.join_next().await.is_some() {}
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, mut stopped: watch::Receiver<bool>) {
    let limits = app.config.http.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request| {
            crate::http::serve(app.clone(), remote, request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut shutdown = stopped.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.changed() => {
                    // Finish the request in flight, then close (idle keep-alives close now).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%remote, "connection: {error}");
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = app.config.http.request_timeout + Duration::from_secs(1);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "{} connections still open after {grace:?}; closing them",
            connections.len()
        );
        connections.abort_all();
    }
}
