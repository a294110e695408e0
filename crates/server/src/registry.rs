//! The module registry: the routable modules (lock-free `ArcSwap` tables), each module's
//! entry with its serving version, middleware rule, history and request gate, and the status
//! and counters built from them. The handoff protocol that changes the table — load a new
//! version beside the old one, swap, drain and close the old one, keep the last good version
//! when a new one fails, or hand the in-memory state over — is in `registry/reload.rs`
//! ([`Registry::reload`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use wasi_host::{Host, LoadedModule};

use crate::config::ServerConfig;
use crate::middleware::Rule;

mod reload;

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
    inline_requests: u64,
    errors: u64,
    traps: u64,
    messages: u64,
    message_errors: u64,
    message_batches: u64,
    kv_operations: u64,
    kv_errors: u64,
}

impl Retired {
    /// Adds a retired version's counters.
    fn add(&mut self, stats: &wasi_host::ModuleStats) {
        self.requests += stats.requests;
        self.inline_requests += stats.inline_requests;
        self.errors += stats.request_errors;
        self.traps += stats.traps;
        self.messages += stats.messages;
        self.message_errors += stats.message_errors;
        self.message_batches += stats.message_batches;
        self.kv_operations += stats.kv_operations;
        self.kv_errors += stats.kv_errors;
    }

    /// The totals over all versions: these plus the current version's counters.
    fn with(mut self, current: &wasi_host::ModuleStats) -> Retired {
        self.add(current);
        self
    }
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
    /// How long the replaced version took to drain, in milliseconds, once it has (`"plain"`
    /// swaps; a `"snapshot"` swap drains inside its hold). A drain cut off by the drain
    /// timeout shows the timeout; the log says it was cut off.
    pub drain_ms: Option<f64>,
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
    /// The last version retired by a plain swap and how long it drained, in milliseconds.
    last_drain: Option<(String, f64)>,
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

/// What a reload did. Serialises as `{"outcome": "swapped", "old": …, "new": …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
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
    /// Of those, requests run inline, on the thread that received them.
    pub inline_requests: u64,
    /// Failed requests over all versions.
    pub errors: u64,
    /// Traps over all versions.
    pub traps: u64,
    /// Bus messages taken for delivery, over all versions.
    pub messages: u64,
    /// Bus messages whose delivery failed, over all versions.
    pub message_errors: u64,
    /// `on_messages` calls (batches of bus messages), over all versions.
    pub message_batches: u64,
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
    /// Per-module latency of HTTP calls.
    latencies: crate::latency::Latencies,
    /// Woken after every reload and drain, so the status page shows them at once.
    changes: Arc<tokio::sync::Notify>,
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
            latencies: crate::latency::Latencies::default(),
            changes: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Per-module latency of HTTP calls.
    pub(crate) fn latencies(&self) -> &crate::latency::Latencies {
        &self.latencies
    }

    /// Notified (one stored permit) after every reload, whatever its outcome, and when a
    /// retired version has drained.
    pub(crate) fn changes(&self) -> &tokio::sync::Notify {
        &self.changes
    }

    /// The modules' outbound HTTP client, with its counters per module and host.
    pub(crate) fn outbound(&self) -> &crate::outbound::OutboundHub {
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
                let totals = history.retired.with(&stats);
                ModuleStatus {
                    name: entry.name.clone(),
                    version: Some(current.version().to_owned()),
                    abi: Some(current.abi().number()),
                    loaded_at: Some(epoch_seconds(current.loaded_at())),
                    load_ms: Some(current.load_time().as_secs_f64() * 1e3),
                    compiled_from: Some(CompiledFrom::of(current.compile_source())),
                    instances: current.instances(),
                    requests: totals.requests,
                    inline_requests: totals.inline_requests,
                    errors: totals.errors,
                    traps: totals.traps,
                    messages: totals.messages,
                    message_errors: totals.message_errors,
                    message_batches: totals.message_batches,
                    swaps: history.swaps,
                    last_rejected: history.last_rejected.clone(),
                    last_swap: history.last_swap.clone().map(|mut swap| {
                        swap.drain_ms = match &history.last_drain {
                            Some((retired, drain_ms)) if *retired == swap.old => Some(*drain_ms),
                            _ => None,
                        };
                        swap
                    }),
                    subscriptions: current.subscriptions(),
                    middleware: entry.rule().as_ref().as_ref().map(MiddlewareStatus::of),
                    kv_keys: usage.map(|usage| usage.keys),
                    kv_bytes: usage.map(|usage| usage.bytes),
                    kv_operations: totals.kv_operations,
                    kv_errors: totals.kv_errors,
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
                inline_requests: 0,
                errors: 0,
                traps: 0,
                messages: 0,
                message_errors: 0,
                message_batches: 0,
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
        // The table stays: a `Monitor` shows the closed modules' last counters.
        let entries = self.entries.load_full();
        let timeout = self.config.drain_timeout;
        let modules: Vec<Arc<LoadedModule>> =
            entries.values().map(|entry| entry.current()).collect();
        let threads: Vec<_> = modules
            .into_iter()
            .map(|module| {
                std::thread::spawn(move || {
                    let report = reload::drain_and_close(&module, Some(timeout));
                    if !report.completed() {
                        tracing::warn!(module = %module.name(), "did not finish draining within {timeout:?}");
                    }
                })
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
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
