//! The dist watcher: notify-debouncer-full on `<dist>` (create, modify, rename into place,
//! delete), forwarded to the registry as reloads. Editor and build-tool bursts are coalesced
//! by the debouncer; temp files (`.name.wasm.tmp`, anything not `*.wasm`) are ignored, so an
//! atomic temp-file-and-rename write is seen exactly once, complete.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::registry::{Registry, module_name_of};

/// A running watcher; dropping it stops watching.
pub struct DistWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for DistWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistWatcher").finish_non_exhaustive()
    }
}

/// Watches `dist` and reloads every module whose file changed.
pub(crate) fn watch(
    dist: &Path,
    registry: Arc<Registry>,
    debounce: Duration,
) -> anyhow::Result<DistWatcher> {
    std::fs::create_dir_all(dist)?;
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel::<BTreeSet<String>>();
    let mut debouncer = new_debouncer(
        debounce,
        // Events are emitted on the first tick after `debounce` of quiet: ticking at the
        // debounce period bounds the wait at twice it, with as few wake-ups as that allows.
        Some(debounce),
        move |result: DebounceEventResult| match result {
            Ok(batch) => {
                let names: BTreeSet<String> = batch
                    .iter()
                    .flat_map(|event| event.paths.iter())
                    .filter_map(|path| module_name_of(path))
                    .collect();
                if !names.is_empty() {
                    let _ = events.send(names);
                }
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!("dist watcher: {error}");
                }
            }
        },
    )?;
    debouncer.watch(dist, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while let Some(names) = receiver.recv().await {
            for name in names {
                match registry.reload(&name).await {
                    Ok(outcome) => tracing::debug!(module = %name, "dist change: {outcome:?}"),
                    Err(reason) => {
                        tracing::debug!(module = %name, "dist change rejected: {reason}")
                    }
                }
            }
        }
    });
    Ok(DistWatcher {
        _debouncer: debouncer,
    })
}
