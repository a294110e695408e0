//! Directory grants: a module reads (and, when allowed, writes) a host directory preopened at
//! a guest path, and reaches nothing else — `..`, symlinks that leave the grant, absolute
//! host paths, ungranted paths and writes to a read-only grant are refused — while it and
//! the other modules keep serving; the grant survives hot swaps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Project, eventually, fixture_guest, get, hello, request};

/// The fixture's grant directory `modules/fixture/assets` with files and symlinks in and out
/// of it (`dangling` points at a file beside the grant that doesn't exist), plus `secret.txt`
/// beside it (outside the grant).
fn assets(project: &Project) -> PathBuf {
    let assets = project.root.join("modules/fixture/assets");
    std::fs::create_dir_all(assets.join("sub")).unwrap();
    std::fs::write(assets.join("hello.txt"), "hello from the grant").unwrap();
    std::fs::write(assets.join("sub/inner.txt"), "inner").unwrap();
    std::fs::write(project.root.join("modules/fixture/secret.txt"), "SECRET").unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, assets.join(name)).unwrap();
    link(&project.root.join("modules/fixture/secret.txt"), "out-abs");
    link(Path::new("../secret.txt"), "out-rel");
    link(&project.root, "out-dir");
    link(Path::new("sub/inner.txt"), "in-link");
    link(&project.root.join("modules/fixture/gone.txt"), "dangling");
    assets
}

/// Writes `modhost.toml` with `body` and returns the server config it makes.
fn configured(project: &Project, body: &str) -> server::ServerConfig {
    let path = project.root.join("modhost.toml");
    std::fs::write(&path, body).unwrap();
    let mut config = project.config();
    config.apply_file(&path).unwrap();
    config
}

fn read_path(path: &str) -> String {
    format!("/m/fixture/fs/read?path={path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_grant_serves_its_files_and_nothing_else() {
    let project = Project::new("dirs-read");
    let assets = assets(&project);
    project.install("fixture", fixture_guest());
    project.install("other", &hello("other is fine"));
    let config = configured(
        &project,
        r#"
[modules.fixture]
dirs = { "/assets" = { path = "modules/fixture/assets" } }
"#,
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    // Inside the grant: files, `..` that stays inside, a symlink that stays inside, a listing.
    for (path, expected) in [
        ("/assets/hello.txt", "hello from the grant"),
        ("assets/hello.txt", "hello from the grant"),
        ("/assets/sub/../hello.txt", "hello from the grant"),
        ("/assets/sub/inner.txt", "inner"),
        ("/assets/in-link", "inner"),
    ] {
        let reply = get(addr, &read_path(path)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, expected),
            "{path}"
        );
    }
    let listing = get(addr, "/m/fixture/fs/list?path=/assets").await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    // Symlinks that lead out of the grant are left out of a listing.
    assert_eq!(
        listing.body.lines().collect::<Vec<_>>(),
        ["hello.txt", "in-link", "sub"]
    );

    // Outside it: every way out is refused, with an error the guest can read.
    let secret = project.root.join("modules/fixture/secret.txt");
    let secret = secret.display().to_string();
    // `..` out of the grant, absolute host paths and ungranted paths match no preopen:
    // ENOTCAPABLE. A symlink that leads out does not resolve: ENOENT.
    let uncapable = "Capabilities insufficient";
    let unresolved = "No such file or directory";
    for (path, error) in [
        ("/assets/../secret.txt", uncapable),
        ("/assets/sub/../../secret.txt", uncapable),
        ("/assets/out-abs", unresolved),
        ("/assets/out-rel", unresolved),
        ("/assets/out-dir/modules/fixture/secret.txt", unresolved),
        ("/assets/dangling", unresolved),
        ("/etc/passwd", uncapable),
        (secret.as_str(), uncapable),
        ("/secret/x", uncapable),
        ("secret.txt", uncapable),
    ] {
        let reply = get(addr, &read_path(path)).await;
        assert_eq!(reply.status, 403, "{path} must be refused: {}", reply.body);
        assert!(reply.body.contains(error), "{path}: {}", reply.body);
        assert!(!reply.body.contains("SECRET"), "{path}: {}", reply.body);
    }
    // The guest's root holds its grants and nothing else; no host directory is listed.
    for path in ["/", "/assets/.."] {
        let reply = get(addr, &format!("/m/fixture/fs/list?path={path}")).await;
        assert_eq!(
            (reply.status, reply.body.trim_start_matches('/')),
            (200, "assets"),
            "listing {path}"
        );
    }
    let reply = get(addr, "/m/fixture/fs/list?path=/etc").await;
    assert_eq!(reply.status, 403, "listing /etc: {}", reply.body);

    // Read-only: no new file, no overwrite.
    let write = request(
        addr,
        "POST",
        "/m/fixture/fs/write?path=/assets/new.txt",
        &[],
        b"x",
    )
    .await;
    assert_eq!(write.status, 403, "{}", write.body);
    assert!(
        write.body.contains("Operation not permitted"),
        "{}",
        write.body
    );
    let overwrite = request(
        addr,
        "POST",
        "/m/fixture/fs/write?path=/assets/hello.txt",
        &[],
        b"x",
    )
    .await;
    assert_eq!(overwrite.status, 403, "{}", overwrite.body);
    // Nor any other change: making a directory, removing, renaming (the preopen lacks those
    // rights, wasmer-wasix refuses them: EACCES), writing through a dangling symlink (the host
    // refuses it: EPERM). Both are `PermissionDenied` to a Rust guest.
    let access = "Permission denied";
    let not_permitted = "Operation not permitted";
    for (path, error) in [
        ("/m/fixture/fs/mkdir?path=/assets/newdir", access),
        ("/m/fixture/fs/remove?path=/assets/hello.txt", access),
        (
            "/m/fixture/fs/rename?path=/assets/hello.txt&to=/assets/moved.txt",
            access,
        ),
        ("/m/fixture/fs/write?path=/assets/dangling", not_permitted),
    ] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
        assert!(
            reply.body.contains("denied: PermissionDenied") && reply.body.contains(error),
            "{path}: {}",
            reply.body
        );
    }
    assert!(!assets.join("new.txt").exists());
    assert!(!assets.join("newdir").exists());
    assert!(!assets.join("moved.txt").exists());
    assert!(!project.root.join("modules/fixture/gone.txt").exists());
    assert_eq!(
        std::fs::read_to_string(assets.join("hello.txt")).unwrap(),
        "hello from the grant"
    );

    // The refusals were errors to the guest, not traps: the same instance keeps serving, and
    // so does everything else.
    assert_eq!(get(addr, &read_path("/assets/hello.txt")).await.status, 200);
    assert_eq!(get(addr, "/m/other").await.body, "other is fine");
    let status = server.status();
    let fixture = status
        .iter()
        .find(|module| module.name == "fixture")
        .unwrap();
    assert_eq!(fixture.traps, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writable_grant_takes_writes_inside_it_only() {
    let project = Project::new("dirs-write");
    let assets = assets(&project);
    project.install("fixture", fixture_guest());
    let config = configured(
        &project,
        r#"
[modules.fixture]
dirs = { "/data" = { path = "modules/fixture/assets", read_only = false } }
"#,
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    let write = request(
        addr,
        "POST",
        "/m/fixture/fs/write?path=/data/sub/new.txt",
        &[],
        b"written",
    )
    .await;
    assert_eq!((write.status, write.body.as_str()), (200, "wrote 7"));
    assert_eq!(
        std::fs::read_to_string(assets.join("sub/new.txt")).unwrap(),
        "written"
    );
    assert_eq!(
        get(addr, "/m/fixture/fs/read?path=/data/sub/new.txt")
            .await
            .body,
        "written"
    );

    // Inside the grant every change works.
    for (path, expected) in [
        ("/m/fixture/fs/mkdir?path=/data/made", "made"),
        (
            "/m/fixture/fs/rename?path=/data/sub/new.txt&to=/data/made/moved.txt",
            "renamed",
        ),
        ("/m/fixture/fs/remove?path=/data/made/moved.txt", "removed"),
    ] {
        let reply = get(addr, path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, expected),
            "{path}"
        );
    }
    assert!(assets.join("made").is_dir());
    assert!(!assets.join("sub/new.txt").exists());
    assert!(!assets.join("made/moved.txt").exists());

    for path in [
        "/data/../escape.txt",
        "/data/out-dir/escape.txt",
        "/data/out-abs",
        "/data/dangling",
        "/escape.txt",
    ] {
        let reply = request(
            addr,
            "POST",
            &format!("/m/fixture/fs/write?path={path}"),
            &[],
            b"x",
        )
        .await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
    }
    assert!(!project.root.join("modules/fixture/escape.txt").exists());
    assert!(!project.root.join("escape.txt").exists());
    assert!(
        !project.root.join("modules/fixture/gone.txt").exists(),
        "writing through a dangling symlink must not create its target"
    );
    // Nothing moves out of the grant, nor in from outside it.
    for path in [
        "/m/fixture/fs/rename?path=/data/hello.txt&to=/data/../moved.txt",
        "/m/fixture/fs/rename?path=/data/hello.txt&to=/data/out-dir/moved.txt",
        "/m/fixture/fs/rename?path=/data/../secret.txt&to=/data/stolen.txt",
        "/m/fixture/fs/remove?path=/data/../secret.txt",
        "/m/fixture/fs/mkdir?path=/data/out-dir/made",
    ] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
    }
    assert!(assets.join("hello.txt").exists());
    assert!(!assets.join("stolen.txt").exists());
    assert!(!project.root.join("modules/fixture/moved.txt").exists());
    assert!(!project.root.join("moved.txt").exists());
    assert!(!project.root.join("made").exists());
    assert_eq!(
        std::fs::read_to_string(project.root.join("modules/fixture/secret.txt")).unwrap(),
        "SECRET",
        "writing through a symlink that leaves the grant must not reach its target"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_survives_a_hot_swap_and_a_vanished_directory_refuses_the_new_version() {
    let project = Project::new("dirs-swap");
    let assets = assets(&project);
    project.install("fixture", fixture_guest());
    let config = configured(
        &project,
        r#"
[modules.fixture]
dirs = { "/assets" = { path = "modules/fixture/assets" } }
"#,
    );
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, &read_path("/assets/hello.txt")).await.status, 200);

    let first = server.status()[0].version.clone();
    project.install("fixture", &testkit::retagged(fixture_guest(), "two"));
    eventually(Duration::from_secs(20), || {
        let server = &server;
        let first = first.clone();
        async move { server.status()[0].version != first }
    })
    .await;
    let reply = get(addr, &read_path("/assets/hello.txt")).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from the grant"),
        "the new version sees the grant"
    );
    // And it is as confined as the first one was.
    for path in [
        "/assets/../secret.txt",
        "/assets/out-abs",
        "/assets/dangling",
    ] {
        let reply = get(addr, &read_path(path)).await;
        assert_eq!(reply.status, 403, "{path} after the swap: {}", reply.body);
    }
    let write = request(
        addr,
        "POST",
        "/m/fixture/fs/write?path=/assets/new.txt",
        &[],
        b"x",
    )
    .await;
    assert_eq!(write.status, 403, "still read-only: {}", write.body);

    // The directory goes away: the next version can't have its grant and is refused; the
    // running one keeps serving.
    let second = server.status()[0].version.clone();
    std::fs::rename(&assets, project.root.join("modules/fixture/moved")).unwrap();
    project.install("fixture", &testkit::retagged(fixture_guest(), "three"));
    eventually(Duration::from_secs(20), || {
        let server = &server;
        async move {
            server.status()[0]
                .last_rejected
                .as_ref()
                .is_some_and(|rejected| rejected.reason.contains("grant refused"))
        }
    })
    .await;
    let status = server.status();
    let reason = &status[0].last_rejected.as_ref().unwrap().reason;
    assert!(
        reason.contains("module \"fixture\"") && reason.contains("modules/fixture/assets"),
        "{reason}"
    );
    assert_eq!(status[0].version, second);
    assert_eq!(get(addr, "/m/fixture/echo").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_misnamed_grant_is_a_config_error_naming_the_module() {
    let project = Project::new("dirs-config");
    let path = project.root.join("modhost.toml");
    for (body, expected) in [
        (
            r#"[modules.users]
dirs = { "/assets" = { path = "modules/users/assets" } }"#,
            "modules/users/assets",
        ),
        (
            r#"[modules.users]
dirs = { "assets" = { path = "modules" } }"#,
            "must start with /",
        ),
        (
            r#"[modules.users]
dirs = { "/a/b" = { path = "modules" } }"#,
            "one name",
        ),
    ] {
        std::fs::write(&path, body).unwrap();
        let error = project.config().apply_file(&path).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("module \"users\"") && message.contains(expected),
            "{message}"
        );
    }
}

/// The `pages` example module, granted its own `modules/pages/assets` with the one line of
/// the repository's `modhost.toml`, serves those files with their content types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_example_serves_the_files_it_ships_with() {
    let project = Project::new("dirs-pages");
    project.install("pages", &testkit::example_module("pages"));
    let shipped = testkit::repo_root().join("modules/pages/assets");
    let mut config = project.config();
    // The repository's own config, with the grant's relative path resolved against the
    // repository (where the assets are), not the temp project.
    config.root = testkit::repo_root();
    config
        .apply_file(&testkit::repo_root().join("modhost.toml"))
        .unwrap();
    config.root = project.root.clone();
    let server = server::ServerBuilder::new(config).start().await.unwrap();
    let addr = server.addr();

    let index = get(addr, "/m/pages").await;
    assert_eq!(index.status, 200, "{}", index.body);
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        index.body,
        std::fs::read_to_string(shipped.join("index.html")).unwrap()
    );
    let css = get(addr, "/m/pages/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        css.body,
        std::fs::read_to_string(shipped.join("style.css")).unwrap()
    );
    assert_eq!(get(addr, "/m/pages/nope.txt").await.status, 404);
    assert_eq!(get(addr, "/m/pages/../../Cargo.toml").await.status, 404);
    assert_eq!(get(addr, "/m/pages/_inline").await.body, index.body);
    server.shutdown().await;
}

/// Without the grant, `pages` can't read anything: every file is refused (403), and the
/// module still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_grant_pages_is_refused_every_file() {
    let project = Project::new("dirs-pages-none");
    project.install("pages", &testkit::example_module("pages"));
    let server = project.start().await;
    let addr = server.addr();
    let reply = get(addr, "/m/pages/index.html").await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(get(addr, "/m/pages/_inline").await.status, 200);
    server.shutdown().await;
}
