//! The dist watcher: a notify watcher on `<dist>` whose events become registry reloads.
//!
//! There is no debounce timer. A module file is complete when it is renamed into place (how
//! `build::write_atomic` and every well-behaved tool publish) or closed after writing (an
//! in-place copy), so exactly those events, and removals, trigger a reload, the moment they
//! happen. Opening, reading and partial writes do not: the reload's own read of the file must
//! not trigger the next reload. A burst of events is coalesced per module: at most one reload
//! runs and at most one more is pending, and each reads whatever the file holds when it
//! starts, so the last bytes written always win. Temp files (`.name.wasm.tmp`, anything not
//! `<name>.wasm`) are ignored. A version whose compiled module is in memory is swapped in on
//! the watcher's own thread; one that needs compiling, on a tokio task (see [`schedule`]).
//!
//! Why not `notify-debouncer-full` here (the build's source watcher uses it): its timer adds
//! its timeout plus a tick to every swap (100–125 ms at the old setting), and its tick thread
//! wakes forty times a second on an idle server. Editors' bursts of writes are what a
//! debouncer is for, and they happen in module sources, not in `dist`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use notify_debouncer_full::notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify_debouncer_full::notify::{
    Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _,
};

use crate::registry::{Registry, module_name_of};

/// A running watcher; dropping it stops watching.
pub struct DistWatcher {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for DistWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistWatcher").finish_non_exhaustive()
    }
}

/// Whether an event means a module file now holds complete new bytes, or is gone.
fn completes_a_change(kind: &EventKind) -> bool {
    match kind {
        // A rename inside `dist` comes as `From` (old path), `To` (new path) and `Both`
        // (the two together): `From` and `To` cover it once.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => false,
        // Renamed into (or out of) place, or closed after writing, or removed.
        EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Remove(_) => true,
        // Opening and reading are not changes (and the reload itself reads the file).
        EventKind::Access(_) => false,
        // Linux reports a close after writing: creation and each write are only steps on
        // the way there, and reloading on them would read a half-written file.
        EventKind::Create(_) | EventKind::Modify(_) if cfg!(target_os = "linux") => false,
        // Elsewhere there is no close-after-write event: a creation or write is the signal.
        _ => true,
    }
}

/// Per-module reload state: absent when idle.
#[derive(Default)]
struct Pending {
    /// Modules with a reload running; `true` when another is wanted after it.
    running: HashMap<String, bool>,
}

/// Watches `dist` and reloads every module whose file changed. Must run inside a tokio
/// runtime.
pub(crate) fn watch(dist: &Path, registry: Arc<Registry>) -> anyhow::Result<DistWatcher> {
    std::fs::create_dir_all(dist)?;
    let runtime = tokio::runtime::Handle::current();
    let pending = Arc::new(Mutex::new(Pending::default()));
    let mut watcher = notify_debouncer_full::notify::recommended_watcher(
        move |result: notify_debouncer_full::notify::Result<Event>| match result {
            Ok(event) if completes_a_change(&event.kind) => {
                for name in event.paths.iter().filter_map(|path| module_name_of(path)) {
                    schedule(&runtime, &registry, &pending, name);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("dist watcher: {error}"),
        },
    )?;
    watcher.watch(dist, RecursiveMode::NonRecursive)?;
    Ok(DistWatcher { _watcher: watcher })
}

/// Starts a reload of `name`, or asks the running one to go again when it finishes.
///
/// A version whose compiled module is in memory (one served before: a rollback, or two
/// builds alternating) is swapped in right here on the watcher's thread, which is awake
/// anyway: no task for a busy tokio worker to pick up, no blocking thread to wake, before the
/// new version serves ([`Registry::reload_here`]). Anything to compile goes to a tokio task,
/// so a long compilation never keeps the watcher from reading the next events.
fn schedule(
    runtime: &tokio::runtime::Handle,
    registry: &Arc<Registry>,
    pending: &Arc<Mutex<Pending>>,
    name: String,
) {
    {
        let mut state = pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(again) = state.running.get_mut(&name) {
            *again = true;
            return;
        }
        state.running.insert(name.clone(), false);
    }
    loop {
        let started = std::time::Instant::now();
        match registry.reload_here(&name, runtime) {
            Some(result) => {
                log(&name, &result, started);
                if finished(pending, &name) {
                    return;
                }
            }
            None => break,
        }
    }
    let registry = registry.clone();
    let pending = pending.clone();
    runtime.spawn(async move {
        loop {
            let started = std::time::Instant::now();
            let result = registry.reload(&name).await;
            log(&name, &result, started);
            if finished(&pending, &name) {
                return;
            }
        }
    });
}

fn log(
    name: &str,
    result: &Result<crate::registry::ReloadOutcome, crate::error::ReloadError>,
    started: std::time::Instant,
) {
    let reload_ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(outcome) => tracing::debug!(module = %name, reload_ms, "dist change: {outcome:?}"),
        Err(reason) => tracing::debug!(module = %name, reload_ms, "dist change rejected: {reason}"),
    }
}

/// Ends a reload of `name`: `true` when no other was asked for meanwhile; otherwise clears
/// the request and returns `false` (go again).
fn finished(pending: &Mutex<Pending>, name: &str) -> bool {
    let mut state = pending.lock().unwrap_or_else(PoisonError::into_inner);
    match state.running.get_mut(name) {
        Some(again) if *again => {
            *again = false;
            false
        }
        _ => {
            state.running.remove(name);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use notify_debouncer_full::notify::event::{CreateKind, DataChange, RemoveKind};

    use super::*;

    #[test]
    fn only_completed_changes_reload() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        ] {
            assert!(!completes_a_change(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(completes_a_change(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        ] {
            assert_eq!(
                completes_a_change(&kind),
                !cfg!(target_os = "linux"),
                "{kind:?}"
            );
        }
    }
}
