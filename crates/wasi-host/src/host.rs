//! [`Host`]: the engine, the compiled-module caches, the WASI runtime and the watchdog that
//! every loaded module shares; `compile` and `load` live here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmer::sys::BaseTunables;
use wasmer::sys::NativeEngineExt;
use wasmer::{Engine, Pages};
use wasmer_wasix::PluggableRuntime;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;

use crate::abi::{self, Shape};
use crate::cache::{Artifact, DiskCache, Lookup, sha256_hex};
use crate::config::{HostConfig, ModuleConfig};
use crate::error::LoadError;
use crate::instance::Blueprint;
use crate::kv::{KvAccess, StoreSlot};
use crate::logs::GuestLog;
use crate::module::LoadedModule;
use crate::shared::{BroadcastSink, NoBroadcast, Shared, SubscriptionTable};
use crate::watchdog::{DeadlineTasks, Watchdog};
use crate::worker;

/// Where a module's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompileSource {
    /// Compiled with Cranelift now.
    Compiled,
    /// Found in this process's memory (same bytes loaded before).
    MemoryCache,
    /// Loaded from the on-disk cache.
    DiskCache,
}

/// A validated, compiled module, ready to instantiate any number of times.
#[derive(Clone)]
pub struct Compiled {
    name: String,
    hash: String,
    module: wasmer::Module,
    /// The mapped cache entry the module reads its metadata from, if it came from one.
    artifact: Option<Artifact>,
    shape: Shape,
    source: CompileSource,
    time: Duration,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .field("source", &self.source)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// SHA-256 of the `.wasm` bytes, lowercase hex.
    pub fn content_hash(&self) -> &str {
        &self.hash
    }

    /// Where the code came from.
    pub fn source(&self) -> CompileSource {
        self.source
    }

    /// How long compiling or loading it took.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// The ABI it speaks.
    pub fn abi(&self) -> abi::AbiVersion {
        self.shape.abi
    }
}

struct Inner {
    engine: Engine,
    disk: Option<DiskCache>,
    memory_cache: Mutex<HashMap<String, (wasmer::Module, Option<Artifact>)>>,
    runtime: Arc<dyn wasmer_wasix::Runtime + Send + Sync>,
    tokio: tokio::runtime::Handle,
    own_tokio: Mutex<Option<tokio::runtime::Runtime>>,
    watchdog: Watchdog,
    bus: bus::Bus,
    broadcast: Arc<dyn BroadcastSink>,
    store: Arc<StoreSlot>,
    /// Pool size of a shared-nothing module whose config leaves it open.
    request_threads: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self
            .own_tokio
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

/// Runs modules: compiles (with caches), instantiates, and hands out [`LoadedModule`]s.
/// Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// A host whose modules publish and subscribe on `bus` and whose `ws_broadcast` calls go
    /// to `broadcast` (pass `Arc::new(wasi_host::NoBroadcast)` to drop them).
    pub fn new(
        config: HostConfig,
        bus: bus::Bus,
        broadcast: Arc<dyn BroadcastSink>,
    ) -> std::io::Result<Host> {
        let (tokio, own_tokio) = match config.tokio {
            Some(handle) => (handle, None),
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("modhost-wasi")
                    .enable_all()
                    .build()?;
                (runtime.handle().clone(), Some(runtime))
            }
        };
        let engine = match config.compiler {
            crate::Compiler::Cranelift => Engine::default(),
            crate::Compiler::Singlepass => Engine::from(wasmer::sys::EngineBuilder::new(
                wasmer_compiler_singlepass::Singlepass::default(),
            )),
        };
        let mut runtime = PluggableRuntime::new(Arc::new(DeadlineTasks(TokioTaskManager::new(
            tokio.clone(),
        ))));
        runtime.set_engine(engine.clone());
        let disk = config.cache_dir.map(|dir| DiskCache::new(dir, &engine));
        Ok(Host {
            inner: Arc::new(Inner {
                engine,
                disk,
                memory_cache: Mutex::new(HashMap::new()),
                runtime: Arc::new(runtime),
                tokio,
                own_tokio: Mutex::new(own_tokio),
                watchdog: Watchdog::start()?,
                bus,
                broadcast,
                store: Arc::new(StoreSlot::new(config.store)),
                request_threads: config
                    .request_threads
                    .unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                    })
                    .max(1),
            }),
        })
    }

    /// The key-value store modules reach through the `kv` import, if the host has one (and
    /// it was not closed).
    pub fn store(&self) -> Option<Arc<dyn state::Store>> {
        self.inner.store.get()
    }

    /// Closes the key-value store: from now on the `kv` import answers "unavailable". Waits
    /// up to `patience` for calls in flight; `true` when the store was dropped (its file
    /// closed, so another host may open it), `false` when calls were still running.
    pub fn close_store(&self, patience: Duration) -> bool {
        self.inner.store.close(patience)
    }

    /// A host with default settings, a new bus and no broadcast sink (for tests and tools).
    pub fn standalone() -> std::io::Result<Host> {
        Host::new(
            HostConfig::default(),
            bus::Bus::new(),
            Arc::new(NoBroadcast),
        )
    }

    /// The bus modules talk on.
    pub fn bus(&self) -> &bus::Bus {
        &self.inner.bus
    }

    /// Validates and compiles `bytes`, using the in-memory and on-disk caches, and checks the
    /// ABI. Runs no guest code.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<Compiled, LoadError> {
        self.compile_hashed(name, bytes, &sha256_hex(bytes))
    }

    /// Whether the module with this content hash ([`crate::content_hash`]) is compiled and
    /// kept in memory, so that loading it runs no compiler and reads no file: a caller may
    /// then load it on a thread it would not give a compilation to.
    pub fn is_compiled(&self, hash: &str) -> bool {
        self.inner
            .memory_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(hash)
    }

    /// [`Host::compile`] for bytes whose content hash the caller has computed already.
    fn compile_hashed(&self, name: &str, bytes: &[u8], hash: &str) -> Result<Compiled, LoadError> {
        let started = Instant::now();
        let invalid = |reason: String| LoadError::InvalidWasm {
            module: name.to_owned(),
            reason,
        };
        if !wasmer::is_wasm(bytes) {
            let reason = if bytes.len() < 8 {
                format!("{} bytes is too short for a wasm binary", bytes.len())
            } else {
                "bad magic number: not a wasm binary (expected \\0asm, version 1)".to_owned()
            };
            return Err(invalid(reason));
        }
        let hash = hash.to_owned();
        let cached = self
            .inner
            .memory_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .cloned();
        let ((module, artifact), source) = match cached {
            Some(cached) => (cached, CompileSource::MemoryCache),
            None => {
                let (module, artifact, source) = self.compile_uncached(name, &hash, bytes)?;
                self.inner
                    .memory_cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(hash.clone(), (module.clone(), artifact.clone()));
                ((module, artifact), source)
            }
        };
        let shape = abi::check(name, &module)?;
        Ok(Compiled {
            name: name.to_owned(),
            hash,
            module,
            artifact,
            shape,
            source,
            time: started.elapsed(),
        })
    }

    fn compile_uncached(
        &self,
        name: &str,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(wasmer::Module, Option<Artifact>, CompileSource), LoadError> {
        let engine = &self.inner.engine;
        if let Some(disk) = &self.inner.disk {
            match disk.get(hash) {
                Lookup::Hit(artifact) => match deserialize(engine, &artifact) {
                    Ok(module) => return Ok((module, Some(artifact), CompileSource::DiskCache)),
                    Err(error) => {
                        tracing::warn!(module = %name, "compiled-module cache entry unusable, recompiling: {error}")
                    }
                },
                Lookup::Invalid(reason) => {
                    tracing::warn!(module = %name, "compiled-module cache entry invalid, recompiling: {reason}")
                }
                Lookup::Miss => {}
            }
        }
        let invalid = |reason: String| LoadError::InvalidWasm {
            module: name.to_owned(),
            reason,
        };
        wasmer::Module::validate(engine, bytes).map_err(|error| invalid(error.to_string()))?;
        let module =
            wasmer::Module::new(engine, bytes).map_err(|error| invalid(error.to_string()))?;
        if let Some(disk) = &self.inner.disk {
            match module.serialize() {
                Ok(artifact) => {
                    if let Err(error) = disk.put(hash, &artifact) {
                        tracing::warn!(module = %name, "cannot write the compiled-module cache: {error}");
                    } else if let Lookup::Hit(artifact) = disk.get(hash)
                        && let Ok(mapped) = deserialize(engine, &artifact)
                    {
                        // The same module, its artifact mapped from the entry just written
                        // instead of held in the heap (see `cache`): what a warm start has.
                        return Ok((mapped, Some(artifact), CompileSource::Compiled));
                    }
                }
                Err(error) => {
                    tracing::warn!(module = %name, "cannot serialize the compiled module: {error}")
                }
            }
        }
        Ok((module, None, CompileSource::Compiled))
    }

    /// Compiles and instantiates `bytes` as module `name`: see [`Host::instantiate`].
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        config: &ModuleConfig,
    ) -> Result<LoadedModule, LoadError> {
        self.load_hashed(name, bytes, &sha256_hex(bytes), config)
    }

    /// [`Host::load`] for bytes whose content hash ([`crate::content_hash`]) the caller has
    /// computed already: `hash` must be that of `bytes`.
    pub fn load_hashed(
        &self,
        name: &str,
        bytes: &[u8],
        hash: &str,
        config: &ModuleConfig,
    ) -> Result<LoadedModule, LoadError> {
        let started = Instant::now();
        let compiled = self.compile_hashed(name, bytes, hash)?;
        self.instantiate_timed(&compiled, config, started)
    }

    /// Starts the module's pool: each instance is created and runs `_initialize` and `init` on
    /// the calling thread (a blocking thread: this runs guest code), then gets its own worker
    /// thread; subscriptions made in `init` are recorded dormant until
    /// [`LoadedModule::go_live`] or [`LoadedModule::take_over_from`].
    pub fn instantiate(
        &self,
        compiled: &Compiled,
        config: &ModuleConfig,
    ) -> Result<LoadedModule, LoadError> {
        self.instantiate_timed(compiled, config, Instant::now())
    }

    /// How many instances `config` gives the module: the configured number, or else one per
    /// request thread for a module that declares itself shared-nothing, and one otherwise. A
    /// module that also hands in-memory state over at a swap (`snapshot`) keeps one: what it
    /// keeps in memory would differ between instances.
    fn pool_size(&self, blueprint: &Blueprint, config: &ModuleConfig) -> usize {
        if let Some(instances) = config.instances {
            return instances.max(1);
        }
        let shape = &blueprint.shape;
        if !shape.shared_nothing {
            return 1;
        }
        if shape.has_snapshot {
            tracing::warn!(
                module = %blueprint.shared.name,
                "the module declares itself shared-nothing but exports `snapshot` (state kept in \
                 its instance): it runs one instance unless `instances` is set"
            );
            return 1;
        }
        self.inner.request_threads
    }

    fn instantiate_timed(
        &self,
        compiled: &Compiled,
        config: &ModuleConfig,
        started: Instant,
    ) -> Result<LoadedModule, LoadError> {
        let name = &compiled.name;
        let limits = config.limits.clone();
        let pages = limits.max_memory_bytes.div_ceil(65536).min(65536) as u32;
        // The memory the module defines and exports (the ABI requires one) must fit before any
        // instance is made; the tunables below clamp its growth, and refuse any other memory
        // over the limit when an instance is created.
        for export in compiled.module.exports() {
            if let wasmer::ExternType::Memory(memory) = export.ty()
                && memory.minimum.0 > pages
            {
                return Err(LoadError::MemoryOverLimit {
                    module: name.clone(),
                    declared_pages: memory.minimum.0,
                    limit_pages: pages,
                });
            }
        }
        let mut engine = self.inner.engine.clone();
        engine.set_tunables(crate::tunables::LimitingTunables::new(
            BaseTunables::new(),
            Pages(pages),
        ));

        let version = compiled.hash[..16].to_owned();
        let (jobs, inbox) = crate::inbox::bounded(config.inbox_capacity.max(1));
        let shared = Arc::new(Shared {
            name: name.clone(),
            log: Arc::new(GuestLog::new(
                name,
                &version,
                limits.max_log_line_bytes,
                limits.log_lines_per_second,
            )),
            version,
            limits,
            bus: self.inner.bus.clone(),
            broadcast: self.inner.broadcast.clone(),
            counters: Default::default(),
            subscriptions: Mutex::new(SubscriptionTable::default()),
            jobs: jobs.clone(),
            kv: KvAccess::new(name, self.inner.store.clone(), &config.kv),
            outbound: config.outbound.clone(),
        });
        let dirs = crate::dirs::open(name, &config.grants.dirs, &self.inner.tokio)?;
        let blueprint = Arc::new(Blueprint {
            module: compiled.module.clone(),
            engine,
            shape: compiled.shape.clone(),
            shared,
            runtime: self.inner.runtime.clone(),
            tokio: self.inner.tokio.clone(),
            watchdog: self.inner.watchdog.clone(),
            grants: config.grants.clone(),
            dirs,
            inline: worker::Inline::new(config.inline && !compiled.shape.waits),
        });
        let pool = self.pool_size(&blueprint, config);
        let mut workers = Vec::new();
        for index in 0..pool {
            let (control, orders) = crossbeam_channel::unbounded();
            let slot = Arc::new(worker::Slot::default());
            match worker::spawn(
                blueprint.clone(),
                index,
                inbox.clone(),
                orders,
                slot.clone(),
            ) {
                Ok(thread) => workers.push((control, thread, slot)),
                Err(error) => {
                    for (control, thread, _) in workers {
                        let _ = control.send(worker::Control::Stop);
                        let _ = thread.join();
                    }
                    // Subscriptions the failed init made must not linger.
                    blueprint
                        .shared
                        .subscriptions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .by_topic
                        .clear();
                    return Err(error);
                }
            }
        }
        // Instantiation read what it needs of the mapped artifact; idle, the module needs
        // none of it (a replacement instance reads it back from the page cache).
        if let Some(artifact) = &compiled.artifact {
            artifact.release_pages();
        }
        Ok(LoadedModule::new(
            blueprint,
            jobs,
            workers,
            started.elapsed(),
            compiled.source,
        ))
    }
}

/// A module from a verified cache entry; the entry's pages are released from the process
/// once the code is in executable memory ([`crate::cache::Artifact::release_pages`]).
fn deserialize(
    engine: &Engine,
    artifact: &Artifact,
) -> Result<wasmer::Module, wasmer::DeserializeError> {
    // SAFETY: the artifact was written by `Module::serialize` in a process with the same
    // engine identity (the file name carries it) and its BLAKE3, checked when it was mapped,
    // matches what was written; a damaged or foreign file never gets here.
    let module = unsafe { wasmer::Module::deserialize(engine, artifact.bytes()) }?;
    artifact.release_pages();
    Ok(module)
}
