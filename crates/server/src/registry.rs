//! The module registry and the handoff protocol: load a new version beside the old one, swap
//! routing and bus subscriptions, drain and close the old one; keep the last good version when
//! a new one fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use wasi_host::{Host, LoadedModule};

use crate::config::ServerConfig;
use crate::middleware::Rule;

/// A rejected version: why it was refused.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    /// Content hash prefix of the refused bytes.
    pub version: String,
    /// The load error.
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// Counters carried over from retired versions, so totals survive swaps.
#[derive(Debug, Default, Clone, Copy)]
struct Retired {
    requests: u64,
    errors: u64,
    traps: u64,
    kv_operations: u64,
    kv_errors: u64,
}

/// One routable module: the current version, its middleware rule, its history.
pub struct Entry {
    name: String,
    current: ArcSwap<LoadedModule>,
    rule: ArcSwap<Option<Rule>>,
    history: Mutex<History>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct History {
    swaps: u64,
    retired: Retired,
    last_rejected: Option<Rejection>,
}

impl Entry {
    /// The version serving now.
    pub fn current(&self) -> Arc<LoadedModule> {
        self.current.load_full()
    }

    /// The module's middleware rule, if it is a middleware.
    pub fn rule(&self) -> Arc<Option<Rule>> {
        self.rule.load_full()
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// First load of the module.
    Loaded { version: String },
    /// A new version replaced the old one.
    Swapped { old: String, new: String },
    /// The file holds the version already serving.
    Unchanged { version: String },
    /// The file is gone; the module was unloaded.
    Unloaded { version: String },
    /// No file and no module: nothing to do.
    Absent,
}

/// The status of one module, as `/_admin/modules` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleStatus {
    /// Name.
    pub name: String,
    /// Current version (content hash prefix), if one is loaded.
    pub version: Option<String>,
    /// ABI the current version speaks.
    pub abi: Option<i32>,
    /// Seconds since the Unix epoch when the current version was loaded.
    pub loaded_at: Option<u64>,
    /// Load time of the current version in milliseconds.
    pub load_ms: Option<f64>,
    /// Where its compiled code came from.
    pub compiled_from: Option<String>,
    /// Instances in its pool.
    pub instances: usize,
    /// Requests over all versions.
    pub requests: u64,
    /// Failed requests over all versions.
    pub errors: u64,
    /// Traps over all versions.
    pub traps: u64,
    /// Swaps since start.
    pub swaps: u64,
    /// The last version that was refused, and why.
    pub last_rejected: Option<Rejection>,
    /// Bus subscriptions of the current version.
    pub subscriptions: Vec<String>,
    /// Whether it is a middleware, and for what.
    pub middleware: Option<String>,
    /// Keys in the module's own key-value store (`None`: no store, or not readable).
    pub kv_keys: Option<u64>,
    /// Bytes (keys + values) in the module's own key-value store.
    pub kv_bytes: Option<u64>,
    /// Key-value operations over all versions.
    pub kv_operations: u64,
    /// Key-value operations that failed, over all versions.
    pub kv_errors: u64,
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// All modules, by name. Reads are lock-free (`ArcSwap`); reloads of one module are
/// serialized by a per-name lock, so two file events can't race.
pub struct Registry {
    host: Host,
    config: Arc<ServerConfig>,
    entries: ArcSwap<BTreeMap<String, Arc<Entry>>>,
    /// Modules that have never loaded successfully: name → rejection.
    failed: Mutex<BTreeMap<String, Rejection>>,
    reload_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Retired versions still draining (closed by background tasks).
    draining: Arc<std::sync::atomic::AtomicUsize>,
    /// Reloads by outcome, in [`RELOAD_OUTCOMES`] order.
    reloads: [std::sync::atomic::AtomicU64; RELOAD_OUTCOMES.len()],
}

/// The outcomes reloads are counted by (`modhost_reloads_total{outcome=…}`).
pub const RELOAD_OUTCOMES: [&str; 6] = [
    "loaded",
    "swapped",
    "unchanged",
    "unloaded",
    "absent",
    "rejected",
];

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(host: Host, config: Arc<ServerConfig>) -> Registry {
        Registry {
            host,
            config,
            entries: ArcSwap::from_pointee(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            reload_locks: Mutex::new(BTreeMap::new()),
            draining: Arc::new(Default::default()),
            reloads: Default::default(),
        }
    }

    /// How many reloads ended each way, in [`RELOAD_OUTCOMES`] order.
    pub fn reload_counts(&self) -> [u64; RELOAD_OUTCOMES.len()] {
        std::array::from_fn(|index| self.reloads[index].load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The bus the modules talk on.
    pub fn bus(&self) -> &bus::Bus {
        self.host.bus()
    }

    /// The modules' key-value store, if there is one.
    pub fn store(&self) -> Option<Arc<dyn state::Store>> {
        self.host.store()
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries.load().get(name).cloned()
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries.load().values().cloned().collect()
    }

    /// Middlewares that run before `target`, in name order.
    pub fn middlewares_for(&self, target: &str) -> Vec<Arc<Entry>> {
        self.entries
            .load()
            .values()
            .filter(
                |entry| matches!(&*entry.rule(), Some(rule) if rule.applies(&entry.name, target)),
            )
            .cloned()
            .collect()
    }

    /// Retired versions still draining.
    pub fn draining(&self) -> usize {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    fn wasm_path(&self, name: &str) -> PathBuf {
        self.config.dist_path().join(format!("{name}.wasm"))
    }

    fn rule_for(&self, name: &str) -> Option<Rule> {
        match Rule::read(&self.config.modules_path().join(name)) {
            Ok(rule) => rule,
            Err(reason) => {
                tracing::warn!(module = %name, "ignoring the middleware rule: {reason}");
                None
            }
        }
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.reload_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Re-reads `<dist>/<name>.wasm` and applies the handoff protocol: load + init the new
    /// version while the old one serves; on failure keep the old one and record why; on
    /// success move subscriptions and routing in one step each, then drain and close the old
    /// version in the background. A missing file unloads the module.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, String> {
        let result = self.reload_counted(name).await;
        let index = match &result {
            Ok(ReloadOutcome::Loaded { .. }) => 0,
            Ok(ReloadOutcome::Swapped { .. }) => 1,
            Ok(ReloadOutcome::Unchanged { .. }) => 2,
            Ok(ReloadOutcome::Unloaded { .. }) => 3,
            Ok(ReloadOutcome::Absent) => 4,
            Err(_) => 5,
        };
        self.reloads[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        result
    }

    async fn reload_counted(&self, name: &str) -> Result<ReloadOutcome, String> {
        if !valid_name(name) {
            return Err(format!("invalid module name {name:?}"));
        }
        let lock = self.lock_for(name);
        let _serialized = lock.lock().await;
        let path = self.wasm_path(name);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.unload_locked(name));
            }
            Err(error) => {
                return Err(format!(
                    "module \"{name}\": reading {}: {error}",
                    path.display()
                ));
            }
        };
        let old = self.get(name);
        let version = wasi_host_version(&bytes);
        if let Some(entry) = &old {
            let current = entry.current();
            if current.version() == version {
                entry.rule.store(Arc::new(self.rule_for(name)));
                return Ok(ReloadOutcome::Unchanged { version });
            }
        }

        let started = Instant::now();
        let host = self.host.clone();
        let module_config = self.config.module(name).clone();
        let owned_name = name.to_owned();
        let loaded =
            tokio::task::spawn_blocking(move || host.load(&owned_name, &bytes, &module_config))
                .await
                .map_err(|error| format!("module \"{name}\": loader task failed: {error}"))?;
        let new = match loaded {
            Ok(new) => new,
            Err(error) => {
                let rejection = Rejection {
                    version: version.clone(),
                    reason: error.to_string(),
                    at: epoch_seconds(SystemTime::now()),
                };
                match &old {
                    Some(entry) => {
                        tracing::warn!(module = %name, rejected = %version, serving = %entry.current().version(), "new version rejected, the old one keeps serving: {error}");
                        entry
                            .history
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .last_rejected = Some(rejection);
                    }
                    None => {
                        tracing::warn!(module = %name, rejected = %version, "module rejected: {error}");
                        self.failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(name.to_owned(), rejection);
                    }
                }
                return Err(error.to_string());
            }
        };
        let load_time = started.elapsed();
        let rule = self.rule_for(name);

        match old {
            None => {
                new.go_live()
                    .map_err(|error| format!("module \"{name}\": subscriptions: {error}"))?;
                let version = new.version().to_owned();
                let entry = Arc::new(Entry {
                    name: name.to_owned(),
                    current: ArcSwap::from_pointee(new),
                    rule: ArcSwap::from_pointee(rule),
                    history: Mutex::new(History::default()),
                });
                self.failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(name);
                self.entries.rcu(|entries| {
                    let mut entries = BTreeMap::clone(entries);
                    entries.insert(name.to_owned(), entry.clone());
                    entries
                });
                tracing::info!(module = %name, version = %version, load_ms = load_time.as_secs_f64() * 1e3, "module loaded");
                Ok(ReloadOutcome::Loaded { version })
            }
            Some(entry) => {
                let previous = entry.current();
                // Step 4: subscriptions move in one bus step, then routing in one swap.
                new.take_over_from(&previous)
                    .map_err(|error| format!("module \"{name}\": moving subscriptions: {error}"))?;
                let new_version = new.version().to_owned();
                entry.rule.store(Arc::new(rule));
                let old = entry.current.swap(Arc::new(new));
                let old_version = old.version().to_owned();
                // Counted as draining before the swap is counted, so an observer never sees
                // a swap whose old version is neither draining nor closed.
                self.retire(entry.clone(), old, load_time, &new_version);
                entry
                    .history
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .swaps += 1;
                Ok(ReloadOutcome::Swapped {
                    old: old_version,
                    new: new_version,
                })
            }
        }
    }

    /// Step 5: the old version finishes what it was given, drains, and is closed.
    fn retire(
        &self,
        entry: Arc<Entry>,
        old: Arc<LoadedModule>,
        load_time: Duration,
        new_version: &str,
    ) {
        let drain_timeout = self.config.drain_timeout;
        let draining = self.draining.clone();
        draining.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let new_version = new_version.to_owned();
        tokio::task::spawn_blocking(move || {
            let report = old.drain(drain_timeout);
            let stats = old.stats();
            old.close();
            {
                let mut history = entry.history.lock().unwrap_or_else(PoisonError::into_inner);
                history.retired.requests += stats.requests;
                history.retired.errors += stats.request_errors;
                history.retired.traps += stats.traps;
                history.retired.kv_operations += stats.kv_operations;
                history.retired.kv_errors += stats.kv_errors;
            }
            let drain_ms = report.elapsed.as_secs_f64() * 1e3;
            if report.completed() {
                tracing::info!(module = %entry.name, old = %old.version(), new = %new_version, load_ms = load_time.as_secs_f64() * 1e3, drain_ms, "swapped");
            } else {
                tracing::warn!(module = %entry.name, old = %old.version(), new = %new_version, load_ms = load_time.as_secs_f64() * 1e3, drain_ms, outcome = ?report.instances, "swapped; the old version did not finish draining within {drain_timeout:?} and was closed");
            }
            draining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }

    fn unload_locked(&self, name: &str) -> ReloadOutcome {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let mut removed = None;
        self.entries.rcu(|entries| {
            let mut entries = BTreeMap::clone(entries);
            removed = entries.remove(name);
            entries
        });
        match removed {
            Some(entry) => {
                let old = entry.current();
                let version = old.version().to_owned();
                // Stop its subscriptions now; finish, drain and close in the background.
                let draining = self.draining.clone();
                let drain_timeout = self.config.drain_timeout;
                draining.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                tokio::task::spawn_blocking(move || {
                    let report = old.drain(drain_timeout);
                    old.close();
                    tracing::info!(module = %entry.name, version = %old.version(), drain_ms = report.elapsed.as_secs_f64() * 1e3, "module unloaded");
                    draining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                });
                ReloadOutcome::Unloaded { version }
            }
            None => ReloadOutcome::Absent,
        }
    }

    /// Unloads `name` (drained in the background).
    pub async fn unload(&self, name: &str) -> ReloadOutcome {
        let lock = self.lock_for(name);
        let _serialized = lock.lock().await;
        self.unload_locked(name)
    }

    /// Names of the `.wasm` files in the dist dir.
    pub fn dist_modules(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.config.dist_path()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| module_name_of(&entry.path()))
            .collect();
        names.sort();
        names
    }

    /// Status of every module, loaded or failed.
    pub fn status(&self) -> Vec<ModuleStatus> {
        let mut statuses: Vec<ModuleStatus> = self
            .entries()
            .iter()
            .map(|entry| {
                let current = entry.current();
                let stats = current.stats();
                let history = entry.history.lock().unwrap_or_else(PoisonError::into_inner);
                let usage = current.kv_usage();
                ModuleStatus {
                    name: entry.name.clone(),
                    version: Some(current.version().to_owned()),
                    abi: Some(current.abi().number()),
                    loaded_at: Some(epoch_seconds(current.loaded_at())),
                    load_ms: Some(current.load_time().as_secs_f64() * 1e3),
                    compiled_from: Some(format!("{:?}", current.compile_source())),
                    instances: current.instances(),
                    requests: history.retired.requests + stats.requests,
                    errors: history.retired.errors + stats.request_errors,
                    traps: history.retired.traps + stats.traps,
                    swaps: history.swaps,
                    last_rejected: history.last_rejected.clone(),
                    subscriptions: current.subscriptions(),
                    middleware: entry
                        .rule()
                        .as_ref()
                        .as_ref()
                        .map(|rule| format!("{rule:?}")),
                    kv_keys: usage.map(|usage| usage.keys),
                    kv_bytes: usage.map(|usage| usage.bytes),
                    kv_operations: history.retired.kv_operations + stats.kv_operations,
                    kv_errors: history.retired.kv_errors + stats.kv_errors,
                }
            })
            .collect();
        for (name, rejection) in self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            statuses.push(ModuleStatus {
                name: name.clone(),
                version: None,
                abi: None,
                loaded_at: None,
                load_ms: None,
                compiled_from: None,
                instances: 0,
                requests: 0,
                errors: 0,
                traps: 0,
                swaps: 0,
                last_rejected: Some(rejection.clone()),
                subscriptions: Vec::new(),
                middleware: None,
                kv_keys: None,
                kv_bytes: None,
                kv_operations: 0,
                kv_errors: 0,
            });
        }
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        statuses
    }

    /// Drains and closes every module (shutdown).
    pub(crate) fn close_all(&self) {
        let entries = self.entries.swap(Arc::new(BTreeMap::new()));
        let timeout = self.config.drain_timeout;
        let modules: Vec<Arc<LoadedModule>> =
            entries.values().map(|entry| entry.current()).collect();
        let threads: Vec<_> = modules
            .into_iter()
            .map(|module| {
                std::thread::spawn(move || {
                    let report = module.drain(timeout);
                    if !report.completed() {
                        tracing::warn!(module = %module.name(), "did not finish draining within {timeout:?}");
                    }
                    module.close();
                })
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The version string wasi-host gives these bytes (first 16 hex digits of the SHA-256).
fn wasi_host_version(bytes: &[u8]) -> String {
    wasi_host::content_hash(bytes)[..16].to_owned()
}

/// `foo` for `…/foo.wasm`; `None` for temp files and anything else.
pub fn module_name_of(path: &std::path::Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let name = path.file_stem()?.to_str()?;
    valid_name(name).then(|| name.to_owned())
}

/// Module names: ASCII letters, digits, `-` and `_`, not starting with `.` or `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}
