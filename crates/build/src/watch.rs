//! [`Watcher`]: rebuilds a module when its sources change (notify-debouncer-full).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::builder::Builder;
use crate::discover::{self, Language, Module};
use crate::error::Error;
use crate::report::Report;

/// Which modules a [`Watcher`] rebuilds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every module, including ones created while watching.
    #[default]
    All,
    /// Only these.
    Only(Vec<String>),
}

impl Selection {
    fn includes(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(names) => names.iter().any(|known| known == name),
        }
    }
}

/// What a [`Watcher`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Sources of these modules changed; their build starts.
    Building(Vec<String>),
    /// One module's build finished (one event per module of the build, in name order).
    Built(Report),
    /// Something went wrong that doesn't stop the watcher (a watch error, an unreadable
    /// modules directory).
    Error(String),
}

/// What a changed path means for the build.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// A source of this module (under `<name>/wasm/`, outside `target/`).
    Module(String),
    /// A new entry directly in the modules directory: maybe a new module to watch.
    TopLevel(String),
    /// The workspace manifest or lock file: every module.
    Workspace,
    /// A file of a language's SDK in the modules directory (`go-sdk/`, `c-sdk/`): every
    /// module in that language.
    Sdk(Language),
    /// Build output, editor droppings, docs, `rule.txt`, ...
    Nothing,
}

/// Editor temporary and backup files, which change nothing a compiler reads.
fn is_scratch(file_name: &str) -> bool {
    file_name.starts_with('.')
        || file_name.ends_with('~')
        || file_name.ends_with(".swp")
        || file_name.ends_with(".swx")
        || file_name.ends_with(".tmp")
        || file_name == "4913" // vim's write probe
}

/// The SDK directories in the modules directory that modules of a language build from.
const SDKS: [(&str, Language); 2] = [("go-sdk", Language::Go), ("c-sdk", Language::C)];

/// Classifies `path` (absolute, under `modules_dir`).
fn classify(modules_dir: &Path, path: &Path) -> Change {
    let Ok(relative) = path.strip_prefix(modules_dir) else {
        return Change::Nothing;
    };
    let parts: Vec<&str> = relative
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let Some((first, rest)) = parts.split_first() else {
        return Change::Nothing;
    };
    if rest.is_empty() {
        return match *first {
            "Cargo.toml" | "Cargo.lock" => Change::Workspace,
            name if discover::is_reserved(name) => Change::Nothing,
            name => Change::TopLevel(name.to_owned()),
        };
    }
    if let Some((_, language)) = SDKS.iter().find(|(dir, _)| dir == first)
        && !rest.last().is_some_and(|file| is_scratch(file))
    {
        return Change::Sdk(*language);
    }
    if discover::is_reserved(first)
        || rest.first() != Some(&"wasm")
        || rest.get(1) == Some(&"target")
        || rest.last().is_some_and(|file| is_scratch(file))
    {
        return Change::Nothing;
    }
    Change::Module((*first).to_owned())
}

/// The debouncer, shared between the [`Watcher`] (which stops it) and its worker (which adds
/// watches for modules created while watching).
type SharedDebouncer = Arc<Mutex<Option<Debouncer<RecommendedWatcher, RecommendedCache>>>>;

/// Rebuilds modules when their sources change, until stopped.
///
/// It watches the modules directory itself (non-recursively: new modules, the workspace's
/// `Cargo.toml`/`Cargo.lock`) and each module directory recursively, but never the top-level
/// `target/` or `dist/`, so build output can't trigger a build. File events are debounced
/// ([`crate::Config::debounce`]) so a burst of saves is one build, and changes that arrive
/// while a build runs are coalesced into the next one. Only modules whose files under
/// `<name>/wasm/` changed are rebuilt (editor scratch files and `wasm/target/` don't count);
/// a change to the workspace manifest or lock file rebuilds every selected module, and a change
/// under `go-sdk/` or `c-sdk/` (watched recursively too) every Go or C module.
///
/// Events arrive through the callback, on the watcher's own thread. Dropping the watcher
/// stops it too.
pub struct Watcher {
    debouncer: SharedDebouncer,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("running", &self.worker.is_some())
            .finish()
    }
}

fn watch(
    debouncer: &mut Debouncer<RecommendedWatcher, RecommendedCache>,
    path: &Path,
    mode: RecursiveMode,
) -> Result<(), Error> {
    debouncer.watch(path, mode).map_err(|source| Error::Watch {
        path: path.to_path_buf(),
        source,
    })
}

impl Watcher {
    /// Starts watching the builder's modules directory. Nothing is built until something
    /// changes: build once yourself first if you need current output.
    pub fn start(
        builder: Builder,
        selection: Selection,
        mut on_event: impl FnMut(WatchEvent) + Send + 'static,
    ) -> Result<Watcher, Error> {
        let configured = builder.config().modules_dir.clone();
        // Events carry absolute paths under what was watched; classify against the same.
        let modules_dir = std::fs::canonicalize(&configured)
            .map_err(|error| Error::io("reading", &configured, error))?;
        let (sender, events) = mpsc::channel::<DebounceEventResult>();
        let mut debouncer =
            new_debouncer(builder.config().debounce, None, sender).map_err(|source| {
                Error::Watch {
                    path: modules_dir.clone(),
                    source,
                }
            })?;
        watch(&mut debouncer, &modules_dir, RecursiveMode::NonRecursive)?;
        for (dir, _) in SDKS {
            let sdk = modules_dir.join(dir);
            if sdk.is_dir() {
                watch(&mut debouncer, &sdk, RecursiveMode::Recursive)?;
            }
        }
        let mut watched = BTreeSet::new();
        for module in discover::discover(&modules_dir)? {
            watch(&mut debouncer, &module.dir, RecursiveMode::Recursive)?;
            watched.insert(module.name);
        }
        let debouncer: SharedDebouncer = Arc::new(Mutex::new(Some(debouncer)));
        let mut worker = Worker {
            builder: Builder::new(crate::Config {
                modules_dir: modules_dir.clone(),
                ..builder.config().clone()
            }),
            selection,
            modules_dir,
            watched,
            debouncer: debouncer.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("modhost-build-watch".into())
            .spawn(move || {
                // Ends when the debouncer is stopped: its thread drops the sender.
                while let Ok(first) = events.recv() {
                    let mut batch = vec![first];
                    batch.extend(events.try_iter());
                    worker.handle(batch, &mut on_event);
                }
            })
            .map_err(|error| Error::io("starting the watch thread for", &configured, error))?;
        Ok(Watcher {
            debouncer,
            worker: Some(thread),
        })
    }

    /// Stops watching. A build that is running finishes first (its events are delivered).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let debouncer = match self.debouncer.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(debouncer) = debouncer {
            debouncer.stop();
        }
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The watch thread's state.
struct Worker {
    builder: Builder,
    selection: Selection,
    modules_dir: PathBuf,
    watched: BTreeSet<String>,
    debouncer: SharedDebouncer,
}

impl Worker {
    /// Handles one batch of debounced events: which modules changed, then one build.
    fn handle(&mut self, batch: Vec<DebounceEventResult>, on_event: &mut impl FnMut(WatchEvent)) {
        let mut changed = BTreeSet::new();
        let mut languages = BTreeSet::new();
        let mut everything = false;
        for result in batch {
            let events = match result {
                Ok(events) => events,
                Err(errors) => {
                    for error in errors {
                        on_event(WatchEvent::Error(format!("file watcher: {error}")));
                    }
                    continue;
                }
            };
            for event in events {
                if matches!(event.kind, EventKind::Access(_)) {
                    continue;
                }
                for path in &event.paths {
                    match classify(&self.modules_dir, path) {
                        Change::Module(name) => {
                            changed.insert(name);
                        }
                        Change::TopLevel(name) => {
                            if self.start_watching(&name, on_event) {
                                changed.insert(name);
                            }
                        }
                        Change::Workspace => everything = true,
                        Change::Sdk(language) => {
                            languages.insert(language);
                        }
                        Change::Nothing => {}
                    }
                }
            }
        }
        let modules = match self.builder.discover() {
            Ok(modules) => modules,
            Err(error) => {
                on_event(WatchEvent::Error(error.to_string()));
                return;
            }
        };
        let selected: Vec<Module> = modules
            .into_iter()
            .filter(|module| {
                everything || changed.contains(&module.name) || languages.contains(&module.language)
            })
            .filter(|module| self.selection.includes(&module.name))
            .collect();
        if selected.is_empty() {
            return;
        }
        on_event(WatchEvent::Building(
            selected.iter().map(|module| module.name.clone()).collect(),
        ));
        for report in self.builder.build(&selected) {
            on_event(WatchEvent::Built(report));
        }
    }

    /// Watches `<modules>/<name>` if it is a module not yet watched. Returns whether it
    /// started watching (a new module, to build now).
    fn start_watching(&mut self, name: &str, on_event: &mut impl FnMut(WatchEvent)) -> bool {
        if self.watched.contains(name) {
            return false;
        }
        let Some(module) = discover::module_at(&self.modules_dir, name) else {
            return false;
        };
        let mut guard = match self.debouncer.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(debouncer) = guard.as_mut() else {
            return false;
        };
        match watch(debouncer, &module.dir, RecursiveMode::Recursive) {
            Ok(()) => {
                self.watched.insert(module.name);
                true
            }
            Err(error) => {
                on_event(WatchEvent::Error(error.to_string()));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_what_they_change() {
        let root = Path::new("/m");
        let change = |path: &str| classify(root, Path::new(path));
        assert_eq!(
            change("/m/users/wasm/src/lib.rs"),
            Change::Module("users".into())
        );
        assert_eq!(
            change("/m/users/wasm/Cargo.toml"),
            Change::Module("users".into())
        );
        assert_eq!(
            change("/m/users/wasm/main.go"),
            Change::Module("users".into())
        );
        assert_eq!(change("/m/users/README.md"), Change::Nothing);
        assert_eq!(change("/m/go-sdk/bus.go"), Change::Sdk(Language::Go));
        assert_eq!(change("/m/c-sdk/modhost.h"), Change::Sdk(Language::C));
        assert_eq!(change("/m/c-sdk/.modhost.h.swp"), Change::Nothing);
        assert_eq!(change("/m/auth/rule.txt"), Change::Nothing);
        assert_eq!(change("/m/users/wasm/target/release/x"), Change::Nothing);
        assert_eq!(change("/m/users/wasm/src/.lib.rs.swp"), Change::Nothing);
        assert_eq!(change("/m/users/wasm/src/lib.rs~"), Change::Nothing);
        assert_eq!(change("/m/users/wasm/src/4913"), Change::Nothing);
        assert_eq!(
            change("/m/target/wasm32-wasip1/release/users.wasm"),
            Change::Nothing
        );
        assert_eq!(change("/m/dist/users.wasm"), Change::Nothing);
        assert_eq!(change("/m/dist/.users.wasm.1.0.tmp"), Change::Nothing);
        assert_eq!(change("/m/.git/index"), Change::Nothing);
        assert_eq!(change("/m/Cargo.toml"), Change::Workspace);
        assert_eq!(change("/m/Cargo.lock"), Change::Workspace);
        assert_eq!(change("/m/newmod"), Change::TopLevel("newmod".into()));
        assert_eq!(change("/m/dist"), Change::Nothing);
        assert_eq!(change("/elsewhere/x"), Change::Nothing);
        assert_eq!(change("/m"), Change::Nothing);
    }

    #[test]
    fn selections_filter_by_name() {
        assert!(Selection::All.includes("x"));
        let only = Selection::Only(vec!["a".into()]);
        assert!(only.includes("a") && !only.includes("b"));
    }
}
