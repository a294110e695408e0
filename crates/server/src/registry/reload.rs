//! The handoff protocol: [`Registry::reload`] loads a new version beside the old one and swaps
//! it in (or keeps the old one and records why not), the swap with a state handoff, unloading,
//! and retiring replaced versions — each closed by the one [`drain_and_close`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use wasi_host::{DrainReport, LoadedModule, QueuedJobs};

use super::{
    Entry, Gate, History, Registry, Rejection, ReloadOutcome, SwapInfo, epoch_seconds, valid_name,
};
use crate::config::HandoffConfig;
use crate::error::{HandoffError, ReloadError};
use crate::middleware::Rule;

/// What reading `<dist>/<name>.wasm`, and loading it when it is new, found.
enum Found {
    /// The file is gone: the module unloads.
    Missing,
    /// The file could not be read.
    Unreadable(std::io::Error),
    /// The serving version's bytes.
    Unchanged { version: String },
    /// New bytes, loaded (or refused by the host).
    Loaded {
        version: String,
        result: Result<LoadedModule, wasi_host::LoadError>,
        load_time: Duration,
    },
}

/// Everything loading a module needs that is not the registry itself, so that it can run on
/// any thread.
struct LoadJob {
    host: wasi_host::Host,
    name: String,
    path: std::path::PathBuf,
    serving: Option<String>,
    config: wasi_host::ModuleConfig,
}

/// New bytes read from the dist dir, not loaded yet.
struct NewBytes {
    bytes: Vec<u8>,
    hash: String,
}

/// What [`LoadJob::read`] found: new bytes to load, or the end of the reload.
enum Read {
    New(NewBytes),
    Done(Found),
}

impl LoadJob {
    /// Reads the module's file and compares it with the serving version.
    fn read(&self) -> Read {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Read::Done(Found::Missing);
            }
            Err(error) => return Read::Done(Found::Unreadable(error)),
        };
        let hash = wasi_host::content_hash(&bytes);
        if self.serving.as_deref() == Some(&hash[..16]) {
            return Read::Done(Found::Unchanged {
                version: hash[..16].to_owned(),
            });
        }
        Read::New(NewBytes { bytes, hash })
    }

    /// Compiles (unless cached), instantiates and initialises the new bytes.
    fn load(&self, new: NewBytes) -> Found {
        let started = Instant::now();
        let result = self
            .host
            .load_hashed(&self.name, &new.bytes, &new.hash, &self.config);
        Found::Loaded {
            version: new.hash[..16].to_owned(),
            result,
            load_time: started.elapsed(),
        }
    }
}

impl Registry {
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
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, ReloadError> {
        let result = self.reload_counted(name).await;
        self.count(&result);
        result
    }

    /// [`Registry::reload`] done on the calling thread, for the dist watcher: when the new
    /// bytes' compiled module is in memory (a version served before) and no other reload of
    /// the module runs, the whole swap — read, hash, instantiate, `init`, switch — happens
    /// here, with no hand-off to another thread before the new version serves. Returns `None`
    /// (having changed nothing) when the bytes need compiling or the module's reload lock is
    /// taken: then [`Registry::reload`] is the way. Must not be called from async code;
    /// `runtime` runs the background work (draining the old version) and a state handoff.
    pub fn reload_here(
        &self,
        name: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Option<Result<ReloadOutcome, ReloadError>> {
        if !valid_name(name) {
            return None;
        }
        let _runtime = runtime.enter();
        let lock = self.lock_for(name);
        let _serialized = lock.try_lock().ok()?;
        let old = self.get(name);
        let job = self.load_job(name, &old);
        let found = match job.read() {
            Read::New(new) if !self.host.is_compiled(&new.hash) => return None,
            Read::New(new) => job.load(new),
            Read::Done(found) => found,
        };
        let result = runtime.block_on(self.finish(name, old, found));
        self.count(&result);
        Some(result)
    }

    fn count(&self, result: &Result<ReloadOutcome, ReloadError>) {
        let index = match result {
            Ok(ReloadOutcome::Loaded { .. }) => 0,
            Ok(ReloadOutcome::Swapped { .. }) => 1,
            Ok(ReloadOutcome::Unchanged { .. }) => 2,
            Ok(ReloadOutcome::Unloaded { .. }) => 3,
            Ok(ReloadOutcome::Absent) => 4,
            Err(_) => 5,
        };
        self.reloads[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changes.notify_one();
    }

    fn load_job(&self, name: &str, old: &Option<Arc<Entry>>) -> LoadJob {
        let mut config = self.config.module(name).clone();
        config.outbound = Some(
            self.outbound
                .for_module(name, self.config.outbound_policy(name)),
        );
        LoadJob {
            host: self.host.clone(),
            name: name.to_owned(),
            path: self.wasm_path(name),
            serving: old
                .as_ref()
                .map(|entry| entry.current().version().to_owned()),
            config,
        }
    }

    async fn reload_counted(&self, name: &str) -> Result<ReloadOutcome, ReloadError> {
        if !valid_name(name) {
            return Err(ReloadError::InvalidName {
                name: name.to_owned(),
            });
        }
        let lock = self.lock_for(name);
        let _serialized = lock.lock().await;
        let old = self.get(name);
        // Reading, hashing and loading on one blocking thread: one hand-off, not one each.
        let job = self.load_job(name, &old);
        let found = tokio::task::spawn_blocking(move || match job.read() {
            Read::New(new) => job.load(new),
            Read::Done(found) => found,
        })
        .await
        .map_err(|error| ReloadError::Task {
            module: name.to_owned(),
            reason: error.to_string(),
        })?;
        self.finish(name, old, found).await
    }

    /// What follows reading and loading, under the module's reload lock: unload, keep the
    /// old version and record why, or switch to the new one.
    async fn finish(
        &self,
        name: &str,
        old: Option<Arc<Entry>>,
        found: Found,
    ) -> Result<ReloadOutcome, ReloadError> {
        let (version, loaded, load_time) = match found {
            Found::Missing => return Ok(self.unload_locked(name)),
            Found::Unreadable(source) => {
                return Err(ReloadError::Read {
                    module: name.to_owned(),
                    path: self.wasm_path(name),
                    source,
                });
            }
            Found::Unchanged { version } => {
                if let Some(entry) = &old {
                    entry.rule.store(Arc::new(self.rule_for(name)));
                }
                return Ok(ReloadOutcome::Unchanged { version });
            }
            Found::Loaded {
                version,
                result,
                load_time,
            } => (version, result, load_time),
        };
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
                return Err(error.into());
            }
        };
        let rule = self.rule_for(name);

        match old {
            None => {
                new.go_live().map_err(|source| ReloadError::Subscriptions {
                    module: name.to_owned(),
                    source,
                })?;
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
                    .map_err(|source| ReloadError::Subscriptions {
                        module: name.to_owned(),
                        source,
                    })?;
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
                    drain_ms: None,
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
    ) -> Result<ReloadOutcome, ReloadError> {
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
        .unwrap_or_else(|error| Err(HandoffError::Task(error.to_string())));
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
                    drain_ms: None,
                }))
            }
            Err(source) => {
                // The old version keeps serving with its state: it takes its waiting
                // messages up again and gets the held requests.
                old.resume(QueuedJobs::default());
                let held_requests = entry.gate.release();
                self.count_hold(held, held_requests);
                let error = ReloadError::Handoff {
                    module: name.clone(),
                    source,
                };
                tracing::warn!(module = %name, rejected = %new_version, serving = %old_version, held_ms = held.as_secs_f64() * 1e3, held_requests, "new version refused, the old one keeps serving with its state: {error}");
                entry.record_rejection(&new_version, &error.to_string());
                tokio::task::spawn_blocking(move || new.close());
                Err(error)
            }
        }
    }

    /// The old version finishes what it was given, drains (unless it did already, in
    /// a swap with a state handoff), and is closed; its counters join the module's totals.
    fn retire(
        &self,
        entry: Arc<Entry>,
        old: Arc<LoadedModule>,
        load_time: Duration,
        new_version: &str,
        drain: bool,
    ) {
        let drain_timeout = self.config.drain_timeout;
        let new_version = new_version.to_owned();
        let timeout = drain.then_some(drain_timeout);
        self.close_in_background(old, timeout, move |old, report| {
            let stats = old.stats();
            {
                let mut history = entry.history.lock().unwrap_or_else(PoisonError::into_inner);
                history.retired.add(&stats);
                if drain {
                    history.last_drain =
                        Some((old.version().to_owned(), report.elapsed.as_secs_f64() * 1e3));
                }
            }
            let drain_ms = report.elapsed.as_secs_f64() * 1e3;
            if !drain {
                tracing::debug!(module = %entry.name, old = %old.version(), "closed after handing its state over");
            } else if report.completed() {
                tracing::info!(module = %entry.name, old = %old.version(), new = %new_version, load_ms = load_time.as_secs_f64() * 1e3, drain_ms, "swapped");
            } else {
                tracing::warn!(module = %entry.name, old = %old.version(), new = %new_version, load_ms = load_time.as_secs_f64() * 1e3, drain_ms, outcome = ?report.instances, "swapped; the old version did not finish draining within {drain_timeout:?} and was closed");
            }
        });
    }

    /// Runs [`drain_and_close`] on a blocking task, counted in [`Registry::draining`] until
    /// `done` has run; then wakes the status page.
    fn close_in_background(
        &self,
        module: Arc<LoadedModule>,
        timeout: Option<Duration>,
        done: impl FnOnce(&LoadedModule, DrainReport) + Send + 'static,
    ) {
        let draining = self.draining.clone();
        let changes = self.changes.clone();
        draining.fetch_add(1, Ordering::AcqRel);
        tokio::task::spawn_blocking(move || {
            let report = drain_and_close(&module, timeout);
            done(&module, report);
            draining.fetch_sub(1, Ordering::AcqRel);
            changes.notify_one();
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
                let timeout = Some(self.config.drain_timeout);
                self.close_in_background(old, timeout, move |old, report| {
                    tracing::info!(module = %entry.name, version = %old.version(), drain_ms = report.elapsed.as_secs_f64() * 1e3, "module unloaded");
                });
                ReloadOutcome::Unloaded { version }
            }
            None => ReloadOutcome::Absent,
        }
    }
}

/// Lets `module` finish what it was given and drain within `timeout` (`None`: it drained
/// already, in a swap with a state handoff), then closes it. Every retired, unloaded or
/// shut-down version ends here.
pub(super) fn drain_and_close(module: &LoadedModule, timeout: Option<Duration>) -> DrainReport {
    let report = match timeout {
        Some(timeout) => module.drain(timeout),
        None => DrainReport {
            instances: Vec::new(),
            elapsed: Duration::ZERO,
        },
    };
    module.close();
    report
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
) -> Result<usize, HandoffError> {
    new.pause().map_err(|source| HandoffError::Pause {
        which: "new",
        source,
    })?;
    let report = old.drain(drain_timeout);
    old.pause().map_err(|source| HandoffError::Pause {
        which: "old",
        source,
    })?;
    if !report.completed() {
        let unfinished = report
            .instances
            .iter()
            .filter(|outcome| !matches!(outcome, wasi_host::DrainOutcome::Done { .. }))
            .count();
        return Err(HandoffError::NotDrained {
            timeout: drain_timeout,
            unfinished,
            instances: report.instances.len(),
        });
    }
    let envelope = old.snapshot().map_err(HandoffError::Snapshot)?;
    let state_bytes = new.restore(&envelope).map_err(HandoffError::Restore)?;
    let held = held_at.elapsed();
    if held > hold_timeout {
        return Err(HandoffError::HoldTimeout {
            held,
            timeout: hold_timeout,
        });
    }
    new.take_over_from(old)
        .map_err(HandoffError::Subscriptions)?;
    // The old version is paused and no longer subscribed: what waits in its inbox is all it
    // will ever get. The new version runs it first.
    let waiting = old.take_queued();
    new.resume(waiting);
    entry.current.store(Arc::new(new.clone()));
    Ok(state_bytes)
}
