//! The module registry and the handoff protocol: load a new version beside the old one, swap
//! routing and bus subscriptions, drain and close the old one; keep the last good version when
//! a new one fails. Modules that hand their in-memory state over (`snapshot` / `restore`)
//! swap with a hold instead: see [`Registry::reload`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use wasi_host::{Host, LoadedModule, QueuedJobs};

use crate::config::{HandoffConfig, ServerConfig};
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

/// The last swap of a module, as `/_admin/modules` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapInfo {
    /// The version replaced.
    pub old: String,
    /// The version that replaced it.
    pub new: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `"snapshot"` when the state was handed over (the swap held requests), `"plain"`
    /// otherwise.
    pub handoff: &'static str,
    /// How long new requests were held, in milliseconds (`"snapshot"` swaps only).
    pub held_ms: Option<f64>,
    /// Requests that waited in the hold.
    pub held_requests: u64,
    /// Size of the state handed over, in bytes (the guest's payload).
    pub state_bytes: Option<usize>,
}

/// Holds a module's new HTTP requests during a swap with a state handoff.
///
/// A request enters the gate (`entering`) for the instant it takes to queue its call on the
/// current version; the swap sets `held` and then waits until nobody is entering, so from
/// then on no request reaches the old version's inbox: everything it was given is already
/// queued there and is finished by its drain, before `snapshot`. Both sides use `SeqCst`, so
/// either the request sees `held` or the swap sees the request entering (a Dekker pair). A
/// held request waits for `released` and then goes to whichever version is current.
pub(crate) struct Gate {
    held: AtomicBool,
    entering: AtomicUsize,
    waiting: AtomicUsize,
    held_total: AtomicU64,
    released: tokio::sync::Notify,
    max_held: usize,
}

/// A request queueing its call; leaves the gate on drop.
pub(crate) struct Entered<'a>(&'a Gate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.entering.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    fn new(max_held: usize) -> Gate {
        Gate {
            held: AtomicBool::new(false),
            entering: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            held_total: AtomicU64::new(0),
            released: tokio::sync::Notify::new(),
            max_held,
        }
    }

    /// Enters to queue one call, or `None` while a swap holds requests.
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        self.entering.fetch_add(1, Ordering::SeqCst);
        let entered = Entered(self);
        if self.held.load(Ordering::SeqCst) {
            return None;
        }
        Some(entered)
    }

    /// Waits until the hold ends. `Err(held)` when `max_held` requests wait already.
    pub(crate) async fn wait(&self) -> Result<(), usize> {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(self);
        if before >= self.max_held {
            return Err(before);
        }
        self.held_total.fetch_add(1, Ordering::Relaxed);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.held.load(Ordering::SeqCst) {
                return Ok(());
            }
            notified.await;
        }
    }

    /// Starts holding; returns once no request is between "not held" and its call queued.
    async fn hold(&self) {
        self.held_total.store(0, Ordering::Relaxed);
        self.held.store(true, Ordering::SeqCst);
        while self.entering.load(Ordering::SeqCst) != 0 {
            tokio::task::yield_now().await;
        }
    }

    /// Ends the hold and wakes every held request; returns how many were held.
    fn release(&self) -> u64 {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
        self.held_total.load(Ordering::Relaxed)
    }
}

/// One routable module: the current version, its middleware rule, its history.
pub struct Entry {
    name: String,
    current: ArcSwap<LoadedModule>,
    rule: ArcSwap<Option<Rule>>,
    history: Mutex<History>,
    gate: Gate,
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
    last_swap: Option<SwapInfo>,
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

    /// The gate that holds requests during a swap with a state handoff.
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Counts a swap, remembers it as the last one, and reports it.
    fn record_swap(&self, swap: SwapInfo) -> ReloadOutcome {
        let outcome = ReloadOutcome::Swapped {
            old: swap.old.clone(),
            new: swap.new.clone(),
        };
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.swaps += 1;
        history.last_swap = Some(swap);
        outcome
    }

    fn record_rejection(&self, version: &str, reason: &str) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_rejected = Some(Rejection {
            version: version.to_owned(),
            reason: reason.to_owned(),
            at: epoch_seconds(SystemTime::now()),
        });
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// First load of the module.
    Loaded {
        /// The version now serving.
        version: String,
    },
    /// A new version replaced the old one.
    Swapped {
        /// The version replaced.
        old: String,
        /// The version now serving.
        new: String,
    },
    /// The file holds the version already serving.
    Unchanged {
        /// The version serving.
        version: String,
    },
    /// The file is gone; the module was unloaded.
    Unloaded {
        /// The version that was serving.
        version: String,
    },
    /// No file and no module: nothing to do.
    Absent,
}

/// Where a version's compiled code came from, in `/_admin/modules` (`"compiled"`,
/// `"memory_cache"`, `"disk_cache"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledFrom {
    /// Compiled by this load.
    Compiled,
    /// The same bytes were compiled before in this process.
    MemoryCache,
    /// Read from the on-disk compiled-module cache.
    DiskCache,
}

impl CompiledFrom {
    fn of(source: wasi_host::CompileSource) -> CompiledFrom {
        match source {
            wasi_host::CompileSource::Compiled => CompiledFrom::Compiled,
            wasi_host::CompileSource::MemoryCache => CompiledFrom::MemoryCache,
            wasi_host::CompileSource::DiskCache => CompiledFrom::DiskCache,
        }
    }
}

/// A middleware's rule, in `/_admin/modules`: `{"applies_to": "all"}`, or `"only"` /
/// `"except"` with the module names of its `rule.txt`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MiddlewareStatus {
    /// `"all"`, `"only"` or `"except"`.
    pub applies_to: &'static str,
    /// The modules named by the rule (empty for `"all"`).
    pub modules: Vec<String>,
}

impl MiddlewareStatus {
    fn of(rule: &Rule) -> MiddlewareStatus {
        let (applies_to, modules) = match rule {
            Rule::All => ("all", Vec::new()),
            Rule::Only(names) => ("only", names.clone()),
            Rule::Except(names) => ("except", names.clone()),
        };
        MiddlewareStatus {
            applies_to,
            modules,
        }
    }
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
    pub compiled_from: Option<CompiledFrom>,
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
    /// The last swap: versions, and for a swap with a state handoff the hold.
    pub last_swap: Option<SwapInfo>,
    /// Bus subscriptions of the current version.
    pub subscriptions: Vec<String>,
    /// Whether it is a middleware, and for what.
    pub middleware: Option<MiddlewareStatus>,
    /// Keys in the module's own key-value store (`None`: no store, or not readable).
    pub kv_keys: Option<u64>,
    /// Bytes (keys + values) in the module's own key-value store.
    pub kv_bytes: Option<u64>,
    /// Key-value operations over all versions.
    pub kv_operations: u64,
    /// Key-value operations that failed, over all versions.
    pub kv_errors: u64,
    /// Outbound HTTP requests (`http_send`) by host (`host[:port]`), over all versions.
    pub outbound: BTreeMap<String, crate::outbound::OutboundHostStats>,
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
    /// Holds of swaps with a state handoff, over all modules.
    holds: Mutex<HoldStats>,
    /// The modules' outbound HTTP client (`http_send`).
    outbound: Arc<crate::outbound::OutboundHub>,
}

/// The hold windows of swaps with a state handoff (`modhost_swap_hold_seconds`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct HoldStats {
    /// Holds, successful or not.
    pub count: u64,
    /// Their total length in seconds.
    pub sum_seconds: f64,
    /// Holds per upper bound of [`HOLD_BUCKETS`] (cumulative, as Prometheus wants them).
    pub buckets: [u64; HOLD_BUCKETS.len()],
    /// Requests that waited in a hold.
    pub held_requests: u64,
}

/// Upper bounds, in seconds, of the `modhost_swap_hold_seconds` histogram buckets.
pub const HOLD_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

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
    pub(crate) fn new(
        host: Host,
        config: Arc<ServerConfig>,
        outbound: Arc<crate::outbound::OutboundHub>,
    ) -> Registry {
        Registry {
            outbound,
            host,
            config,
            entries: ArcSwap::from_pointee(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            reload_locks: Mutex::new(BTreeMap::new()),
            draining: Arc::new(Default::default()),
            reloads: Default::default(),
            holds: Mutex::new(HoldStats::default()),
        }
    }

    /// The modules' outbound HTTP client, with its counters per module and host.
    pub fn outbound(&self) -> &crate::outbound::OutboundHub {
        &self.outbound
    }

    /// The hold windows of swaps with a state handoff so far.
    pub fn hold_stats(&self) -> HoldStats {
        *self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_hold(&self, held: Duration, requests: u64) {
        let seconds = held.as_secs_f64();
        let mut stats = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
        stats.count += 1;
        stats.sum_seconds += seconds;
        stats.held_requests += requests;
        for (bucket, bound) in stats.buckets.iter_mut().zip(HOLD_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
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
    ///
    /// When the old version exports `snapshot` and the new one `restore`, the swap hands the
    /// in-memory state over instead, holding the module's new requests meanwhile: the old
    /// version drains first, then `snapshot` → `restore`, then the switch, then the held
    /// requests go to the new version (`docs/ABI.md`, "Snapshot and restore"). A failed
    /// handoff refuses the new version like a failed load.
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
        let mut module_config = self.config.module(name).clone();
        module_config.outbound = Some(
            self.outbound
                .for_module(name, self.config.outbound_policy(name)),
        );
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
                    gate: Gate::new(self.config.handoff(name).max_held),
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
                if previous.exports_snapshot() && new.exports_restore() {
                    return self
                        .swap_with_state(&entry, previous, new, rule, load_time)
                        .await;
                }
                // Subscriptions move in one bus step, then routing in one swap.
                new.take_over_from(&previous)
                    .map_err(|error| format!("module \"{name}\": moving subscriptions: {error}"))?;
                let new_version = new.version().to_owned();
                entry.rule.store(Arc::new(rule));
                let old = entry.current.swap(Arc::new(new));
                let old_version = old.version().to_owned();
                // Counted as draining before the swap is counted, so an observer never sees
                // a swap whose old version is neither draining nor closed.
                self.retire(entry.clone(), old, load_time, &new_version, true);
                Ok(entry.record_swap(SwapInfo {
                    old: old_version,
                    new: new_version,
                    at: epoch_seconds(SystemTime::now()),
                    handoff: "plain",
                    held_ms: None,
                    held_requests: 0,
                    state_bytes: None,
                }))
            }
        }
    }

    /// The swap for a module that hands its in-memory state over: the old version exports
    /// `snapshot` and the new one `restore` (`docs/ABI.md`, "Snapshot and restore"). The new
    /// version is loaded and initialised already; from here:
    ///
    /// 1. the new version's instances are paused (nothing is routed to them yet);
    /// 2. the gate holds the module's new HTTP requests (held, not failed);
    /// 3. the old version finishes every request and message already given to it and drains
    ///    (within the hold timeout), then is paused: bus messages still arrive in its inbox,
    ///    since its subscriptions stay live, but wait there;
    /// 4. `snapshot` on the old version's first instance, `restore` on every instance of the
    ///    new one;
    /// 5. bus subscriptions move to the new version in one `Bus::handover`, the messages that
    ///    waited in the old version's inbox are moved to the front of the new version's, and
    ///    routing switches in one `ArcSwap::swap`;
    /// 6. the new version resumes (those messages first), the held requests are released to
    ///    it, and the old version is closed.
    ///
    /// If anything in 3–5 fails (a trap, a deadline, `restore` returning non-zero, the hold
    /// timeout), the new version is refused and closed, the old version resumes with its
    /// state and its waiting messages, and the held requests go to it: nothing is lost.
    ///
    /// Bus messages are held in the old version's inbox rather than moved to the new one at
    /// the start of the hold: a retired subscription can't be revived, so moving them first
    /// would leave nothing to hand back to the old version if `restore` fails. Each message
    /// still reaches exactly one version: the old one (failure) or the new one (success).
    async fn swap_with_state(
        &self,
        entry: &Arc<Entry>,
        old: Arc<LoadedModule>,
        new: LoadedModule,
        rule: Option<Rule>,
        load_time: Duration,
    ) -> Result<ReloadOutcome, String> {
        let name = entry.name.clone();
        let HandoffConfig { hold_timeout, .. } = self.config.handoff(&name).clone();
        let drain_timeout = self.config.drain_timeout.min(hold_timeout);
        let new_version = new.version().to_owned();
        let old_version = old.version().to_owned();

        let held_at = Instant::now();
        entry.gate.hold().await;
        let handoff = {
            let (old, new, entry) = (old.clone(), new.clone(), entry.clone());
            tokio::task::spawn_blocking(move || {
                hand_over(&entry, &old, &new, drain_timeout, hold_timeout, held_at)
            })
        }
        .await
        .unwrap_or_else(|error| Err(format!("the handoff task failed: {error}")));
        let held = held_at.elapsed();
        match handoff {
            Ok(state_bytes) => {
                entry.rule.store(Arc::new(rule));
                let held_requests = entry.gate.release();
                self.count_hold(held, held_requests);
                let held_ms = held.as_secs_f64() * 1e3;
                tracing::info!(module = %name, old = %old_version, new = %new_version, load_ms = load_time.as_secs_f64() * 1e3, held_ms, held_requests, state_bytes, "swapped with the state handed over, held {held_ms:.1} ms");
                self.retire(entry.clone(), old, load_time, &new_version, false);
                Ok(entry.record_swap(SwapInfo {
                    old: old_version,
                    new: new_version,
                    at: epoch_seconds(SystemTime::now()),
                    handoff: "snapshot",
                    held_ms: Some(held_ms),
                    held_requests,
                    state_bytes: Some(state_bytes),
                }))
            }
            Err(reason) => {
                // The old version keeps serving with its state: it takes its waiting
                // messages up again and gets the held requests.
                old.resume(QueuedJobs::default());
                let held_requests = entry.gate.release();
                self.count_hold(held, held_requests);
                let reason = format!("module \"{name}\": state handoff failed: {reason}");
                tracing::warn!(module = %name, rejected = %new_version, serving = %old_version, held_ms = held.as_secs_f64() * 1e3, held_requests, "new version refused, the old one keeps serving with its state: {reason}");
                entry.record_rejection(&new_version, &reason);
                tokio::task::spawn_blocking(move || new.close());
                Err(reason)
            }
        }
    }

    /// The old version finishes what it was given, drains (unless it did already, in
    /// a swap with a state handoff), and is closed.
    fn retire(
        &self,
        entry: Arc<Entry>,
        old: Arc<LoadedModule>,
        load_time: Duration,
        new_version: &str,
        drain: bool,
    ) {
        let drain_timeout = self.config.drain_timeout;
        let draining = self.draining.clone();
        draining.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let new_version = new_version.to_owned();
        tokio::task::spawn_blocking(move || {
            let report = if drain {
                old.drain(drain_timeout)
            } else {
                wasi_host::DrainReport {
                    instances: Vec::new(),
                    elapsed: Duration::ZERO,
                }
            };
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
            if !drain {
                tracing::debug!(module = %entry.name, old = %old.version(), "closed after handing its state over");
            } else if report.completed() {
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
        let mut outbound = self.outbound.stats();
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
                    compiled_from: Some(CompiledFrom::of(current.compile_source())),
                    instances: current.instances(),
                    requests: history.retired.requests + stats.requests,
                    errors: history.retired.errors + stats.request_errors,
                    traps: history.retired.traps + stats.traps,
                    swaps: history.swaps,
                    last_rejected: history.last_rejected.clone(),
                    last_swap: history.last_swap.clone(),
                    subscriptions: current.subscriptions(),
                    middleware: entry.rule().as_ref().as_ref().map(MiddlewareStatus::of),
                    kv_keys: usage.map(|usage| usage.keys),
                    kv_bytes: usage.map(|usage| usage.bytes),
                    kv_operations: history.retired.kv_operations + stats.kv_operations,
                    kv_errors: history.retired.kv_errors + stats.kv_errors,
                    outbound: outbound.remove(&entry.name).unwrap_or_default(),
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
                last_swap: None,
                subscriptions: Vec::new(),
                middleware: None,
                kv_keys: None,
                kv_bytes: None,
                kv_operations: 0,
                kv_errors: 0,
                outbound: BTreeMap::new(),
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

/// Steps 1 and 3–5 of [`Registry::swap_with_state`], on a blocking thread. Returns the size
/// of the state handed over. On `Err` nothing has moved: routing and the bus still point at
/// the old version.
fn hand_over(
    entry: &Entry,
    old: &Arc<LoadedModule>,
    new: &LoadedModule,
    drain_timeout: Duration,
    hold_timeout: Duration,
    held_at: Instant,
) -> Result<usize, String> {
    new.pause()
        .map_err(|error| format!("pausing the new version: {error}"))?;
    let report = old.drain(drain_timeout);
    old.pause()
        .map_err(|error| format!("pausing the old version: {error}"))?;
    if !report.completed() {
        return Err(format!(
            "the old version did not finish draining within {drain_timeout:?}: {:?}",
            report.instances
        ));
    }
    let envelope = old.snapshot().map_err(|error| error.to_string())?;
    let state_bytes = new.restore(&envelope).map_err(|error| error.to_string())?;
    let held = held_at.elapsed();
    if held > hold_timeout {
        return Err(format!(
            "the handoff held requests for {held:?}, over the hold timeout of {hold_timeout:?}"
        ));
    }
    new.take_over_from(old)
        .map_err(|error| format!("moving subscriptions: {error}"))?;
    // The old version is paused and no longer subscribed: what waits in its inbox is all it
    // will ever get. The new version runs it first.
    let waiting = old.take_queued();
    new.resume(waiting);
    entry.current.store(Arc::new(new.clone()));
    Ok(state_bytes)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Gate;

    #[tokio::test]
    async fn the_gate_holds_new_calls_until_released_and_bounds_them() {
        let gate = Arc::new(Gate::new(2));
        assert!(gate.enter().is_some(), "open by default");
        gate.hold().await;
        assert!(gate.enter().is_none(), "held");
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.wait().await })
            })
            .collect();
        // Both waiters are parked before the third arrives and finds the gate full.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while gate.waiting.load(std::sync::atomic::Ordering::Acquire) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiters never parked"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.wait().await, Err(2), "over max_held");
        assert_eq!(gate.release(), 2, "two requests were held");
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
        assert!(gate.enter().is_some(), "open again");
    }

    #[tokio::test]
    async fn a_hold_waits_for_a_call_that_is_being_queued() {
        let gate = Arc::new(Gate::new(8));
        let entered = gate.enter();
        let holding = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.hold().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !holding.is_finished(),
            "the hold waits for the entered call"
        );
        drop(entered);
        tokio::time::timeout(Duration::from_secs(5), holding)
            .await
            .unwrap()
            .unwrap();
        assert!(gate.enter().is_none());
    }
}
