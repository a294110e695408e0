//! The dist watcher: notify-debouncer-full on `<dist>` (create, modify, rename into place,
//! delete), forwarded to the registry as reloads. Editor and build-tool bursts are coalesced
//! by the debouncer; temp files (`.name.wasm.tmp`, anything not `*.wasm`) are ignored, so an
//! atomic temp-file-and-rename write is seen exactly once, complete.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
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

/// Whether an event can mean new bytes. Opening or reading a file is not a change: without
/// this filter, the reload's own read of `<name>.wasm` (an open and a close-without-write
/// event) would trigger the next reload, every debounce period, forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
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
    let mut debouncer =
        new_debouncer(
            debounce,
            None,
            move |result: DebounceEventResult| match result {
                Ok(batch) => {
                    let names: BTreeSet<String> = batch
                        .iter()
                        .filter(|event| changes_content(&event.kind))
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
            // One task per module: a slow load of one module doesn't hold up the others.
            // Reloads of one module are serialized (and read the file when they run) by the
            // registry's per-module lock.
            for name in names {
                let registry = registry.clone();
                tokio::spawn(async move {
                    match registry.reload(&name).await {
                        Ok(outcome) => {
                            tracing::debug!(module = %name, "dist change: {outcome:?}")
                        }
                        Err(reason) => {
                            tracing::debug!(module = %name, "dist change rejected: {reason}")
                        }
                    }
                });
            }
        }
    });
    Ok(DistWatcher {
        _debouncer: debouncer,
    })
}

#[cfg(test)]
mod tests {
    use notify_debouncer_full::notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reads_are_not_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }
}
