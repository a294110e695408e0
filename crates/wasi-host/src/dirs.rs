//! Directory grants: a host directory mounted at a guest path in a module's WASI file system,
//! with every path the guest uses checked to stay inside it.
//!
//! wasmer-wasix resolves a guest path itself (`..` stops at the guest root, symlinks are read
//! with `readlink` and followed in guest terms) and hands the result to the mounted file
//! system, here [`GrantedDir`]. wasmer-wasix's host file system (`host_fs`) only joins that
//! path to its root, and the host kernel follows whatever symlinks it meets on the way. So
//! [`GrantedDir`] checks every call before passing it on: the path is normalised without ever
//! climbing above the grant, then resolved on the host (`canonicalize`, symlinks followed) and
//! refused unless it is still under the grant's real root. A symlink whose target leaves the
//! grant — or that points at nothing — is refused, whether it is the last component or one on
//! the way; `readlink` answers with the target as an absolute path from the grant's root
//! (wasmer-wasix resolves it inside the mount the link is in). A read-only grant refuses every call that could change the directory.
//! Refusals are `PermissionDenied` (the guest sees `EPERM`), logged with the module, the
//! grant and the reason at most once a second per grant.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmer_wasix::virtual_fs::{
    self, FileOpener, FileSystem, FsError, Metadata, MountFileSystem, OpenOptions,
    OpenOptionsConfig, ReadDir, VirtualFile, host_fs,
};

use crate::config::DirGrant;
use crate::error::LoadError;

/// One granted host directory, as a file system mounted at the grant's guest path.
#[derive(Debug)]
pub(crate) struct GrantedDir {
    module: String,
    /// The guest path (`/assets`).
    guest: PathBuf,
    /// The host directory, canonical (symlinks resolved) when the module was loaded.
    root: PathBuf,
    read_only: bool,
    inner: host_fs::FileSystem,
    /// When a refusal was last logged (refusals are logged at most once a second).
    last_logged: Mutex<Option<Instant>>,
}

/// Opens every grant of `module`: the guest paths are checked, the host directories must
/// exist and be directories.
pub(crate) fn open(
    module: &str,
    grants: &[DirGrant],
    tokio: &tokio::runtime::Handle,
) -> Result<Vec<Arc<GrantedDir>>, LoadError> {
    let refuse = |reason: String| LoadError::Grant {
        module: module.to_owned(),
        reason,
    };
    let mut opened: Vec<Arc<GrantedDir>> = Vec::with_capacity(grants.len());
    for grant in grants {
        crate::config::check_guest_dir(&grant.guest).map_err(&refuse)?;
        if opened
            .iter()
            .any(|dir| dir.guest == Path::new(&grant.guest))
        {
            return Err(refuse(format!(
                "guest path {:?} is granted twice",
                grant.guest
            )));
        }
        let root = std::fs::canonicalize(&grant.host).map_err(|error| {
            refuse(format!(
                "directory {:?}: host directory {}: {error}",
                grant.guest,
                grant.host.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(refuse(format!(
                "directory {:?}: host path {} is not a directory",
                grant.guest,
                grant.host.display()
            )));
        }
        let inner = host_fs::FileSystem::new(tokio.clone(), &root).map_err(|error| {
            refuse(format!(
                "directory {:?}: host directory {}: {error}",
                grant.guest,
                root.display()
            ))
        })?;
        opened.push(Arc::new(GrantedDir {
            module: module.to_owned(),
            guest: PathBuf::from(&grant.guest),
            root,
            read_only: grant.read_only,
            inner,
            last_logged: Mutex::new(None),
        }));
    }
    Ok(opened)
}

/// The file system a granted module's WASI environment gets: the grants mounted at their guest
/// paths and nothing else.
pub(crate) fn mount(dirs: &[Arc<GrantedDir>]) -> Result<MountFileSystem, String> {
    let mounts = MountFileSystem::new();
    for dir in dirs {
        mounts
            .mount(&dir.guest, dir.clone() as Arc<dyn FileSystem + Send + Sync>)
            .map_err(|error| format!("mounting {}: {error}", dir.guest.display()))?;
    }
    Ok(mounts)
}

impl GrantedDir {
    /// The guest path (`/assets`).
    pub(crate) fn guest(&self) -> &Path {
        &self.guest
    }

    /// The guest path without its leading `/`, the preopen's name.
    pub(crate) fn alias(&self) -> String {
        self.guest
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned()
    }

    /// Whether writes are refused.
    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    /// Logs a refusal (rate-limited) and returns the error the guest gets.
    fn refuse(&self, path: &Path, reason: &str) -> FsError {
        let now = Instant::now();
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            *last = Some(now);
            tracing::warn!(
                module = %self.module,
                "module \"{}\": directory grant {}: refused {}: {reason}",
                self.module,
                self.guest.display(),
                self.guest.join(path.strip_prefix("/").unwrap_or(path)).display(),
            );
        }
        FsError::PermissionDenied
    }

    /// `path` (relative to the grant, as the mount hands it over) normalised: `.` dropped,
    /// `..` taken lexically, never above the grant.
    fn relative(&self, path: &Path) -> Result<PathBuf, FsError> {
        let mut relative = PathBuf::new();
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(part) => relative.push(part),
                Component::ParentDir => {
                    if !relative.pop() {
                        return Err(self.refuse(path, "`..` climbs out of the grant"));
                    }
                }
                Component::Prefix(_) => return Err(self.refuse(path, "not a guest path")),
            }
        }
        Ok(relative)
    }

    /// The first existing ancestor of `host` (itself included), canonical. A path component
    /// that doesn't exist can't be a symlink, so this is where `host` really is.
    fn real_ancestor(host: &Path) -> Result<PathBuf, FsError> {
        let mut at = host;
        loop {
            match std::fs::canonicalize(at) {
                Ok(real) => return Ok(real),
                Err(error) if error.kind() == ErrorKind::NotFound => match at.parent() {
                    Some(parent) => at = parent,
                    None => return Err(FsError::EntryNotFound),
                },
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Checks that `path` stays in the grant on the host, following symlinks in every
    /// component but the last, and in the last one too when `follow_last`; returns the
    /// normalised path for the inner file system (`/`-rooted, relative to the grant).
    fn confine(&self, path: &Path, follow_last: bool) -> Result<PathBuf, FsError> {
        let relative = self.relative(path)?;
        let host = self.root.join(&relative);
        let real = if relative.as_os_str().is_empty() {
            self.root.clone()
        } else if follow_last {
            match std::fs::canonicalize(&host) {
                Ok(real) => real,
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    if host.symlink_metadata().is_ok() {
                        return Err(self.refuse(path, "a symlink to nothing"));
                    }
                    Self::real_ancestor(&host)?
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            // The last component itself is not followed: where its directory really is.
            let parent = host.parent().unwrap_or(&self.root);
            Self::real_ancestor(parent)?
        };
        if !real.starts_with(&self.root) {
            return Err(self.refuse(path, "it leaves the grant (a symlink points outside)"));
        }
        Ok(Path::new("/").join(relative))
    }

    fn writable(&self, path: &Path) -> Result<(), FsError> {
        if self.read_only {
            Err(self.refuse(path, "the grant is read-only"))
        } else {
            Ok(())
        }
    }
}

impl FileSystem for GrantedDir {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        let inner = self.confine(path, false)?;
        let host = self.root.join(inner.strip_prefix("/").unwrap_or(&inner));
        let target = std::fs::read_link(&host)?;
        let target_host = if target.is_absolute() {
            target.clone()
        } else {
            host.parent().unwrap_or(&self.root).join(&target)
        };
        let real = match std::fs::canonicalize(&target_host) {
            Ok(real) => real,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(self.refuse(path, "a symlink to nothing"));
            }
            Err(error) => return Err(error.into()),
        };
        match real.strip_prefix(&self.root) {
            // Absolute from the grant's root: wasmer-wasix resolves such a target inside the
            // mount the link lives in.
            Ok(inside) => Ok(Path::new("/").join(inside)),
            Err(_) => Err(self.refuse(path, "a symlink that points outside the grant")),
        }
    }

    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        let inner = self.confine(path, true)?;
        self.inner.read_dir(&inner)
    }

    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.writable(path)?;
        let inner = self.confine(path, false)?;
        self.inner.create_dir(&inner)
    }

    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.writable(path)?;
        let inner = self.confine(path, false)?;
        self.inner.remove_dir(&inner)
    }

    fn rename<'a>(
        &'a self,
        from: &'a Path,
        to: &'a Path,
    ) -> Pin<Box<dyn Future<Output = virtual_fs::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            self.writable(from)?;
            let from = self.confine(from, false)?;
            let to = self.confine(to, false)?;
            self.inner.rename(&from, &to).await
        })
    }

    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        let inner = self.confine(path, true)?;
        self.inner.metadata(&inner)
    }

    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        let inner = self.confine(path, false)?;
        self.inner.symlink_metadata(&inner)
    }

    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.writable(path)?;
        let inner = self.confine(path, false)?;
        self.inner.remove_file(&inner)
    }

    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for GrantedDir {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        if conf.would_mutate() {
            self.writable(path)?;
        }
        let inner = self.confine(path, true)?;
        self.inner
            .new_open_options()
            .options(conf.clone())
            .open(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("modhost-dirs-unit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn granted(host: &Path, read_only: bool, runtime: &tokio::runtime::Runtime) -> Arc<GrantedDir> {
        let grant = DirGrant {
            guest: "/assets".into(),
            host: host.to_path_buf(),
            read_only,
        };
        open("m", &[grant], runtime.handle()).unwrap().remove(0)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn paths_are_confined_to_the_grant_on_the_host() {
        let runtime = runtime();
        let base = temp("confine");
        let root = base.join("grant");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/inside.txt"), "in").unwrap();
        std::fs::write(base.join("secret.txt"), "out").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("out-abs")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("out-rel")).unwrap();
        std::os::unix::fs::symlink(&base, root.join("out-dir")).unwrap();
        std::os::unix::fs::symlink("sub/inside.txt", root.join("in-rel")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("in-abs")).unwrap();
        std::os::unix::fs::symlink(base.join("gone"), root.join("dangling")).unwrap();
        let dir = granted(&root, true, &runtime);

        assert!(dir.metadata(Path::new("/sub/inside.txt")).is_ok());
        assert!(dir.metadata(Path::new("/sub/../sub/inside.txt")).is_ok());
        for escape in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/out-abs",
            "/out-rel",
            "/out-dir/secret.txt",
            "/dangling",
        ] {
            assert_eq!(
                dir.metadata(Path::new(escape)).unwrap_err(),
                FsError::PermissionDenied,
                "{escape}"
            );
            let open = dir
                .new_open_options()
                .read(true)
                .open(Path::new(escape))
                .map(|_| ());
            assert_eq!(open.unwrap_err(), FsError::PermissionDenied, "{escape}");
        }
        // A link's own metadata is fine; following it out is not.
        assert!(dir.symlink_metadata(Path::new("/out-abs")).is_ok());
        assert_eq!(
            dir.readlink(Path::new("/out-rel")).unwrap_err(),
            FsError::PermissionDenied
        );
        assert_eq!(
            dir.readlink(Path::new("/in-rel")).unwrap(),
            Path::new("/sub/inside.txt")
        );
        assert_eq!(
            dir.readlink(Path::new("/in-abs")).unwrap(),
            Path::new("/sub")
        );
        assert!(dir.metadata(Path::new("/in-abs/inside.txt")).is_ok());
        // Creating through a symlinked directory that leaves the grant is refused too.
        let writable = granted(&root, false, &runtime);
        let create = writable
            .new_open_options()
            .write(true)
            .create(true)
            .open(Path::new("/out-dir/new.txt"))
            .map(|_| ());
        assert_eq!(create.unwrap_err(), FsError::PermissionDenied);
        assert!(!base.join("new.txt").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_read_only_grant_refuses_every_write() {
        let runtime = runtime();
        let root = temp("read-only");
        std::fs::write(root.join("file.txt"), "x").unwrap();
        let dir = granted(&root, true, &runtime);
        let write = dir
            .new_open_options()
            .write(true)
            .open(Path::new("/file.txt"))
            .map(|_| ());
        assert_eq!(write.unwrap_err(), FsError::PermissionDenied);
        let create = dir
            .new_open_options()
            .write(true)
            .create_new(true)
            .open(Path::new("/new.txt"))
            .map(|_| ());
        assert_eq!(create.unwrap_err(), FsError::PermissionDenied);
        assert_eq!(
            dir.remove_file(Path::new("/file.txt")).unwrap_err(),
            FsError::PermissionDenied
        );
        assert_eq!(
            dir.create_dir(Path::new("/d")).unwrap_err(),
            FsError::PermissionDenied
        );
        assert_eq!(
            runtime
                .block_on(dir.rename(Path::new("/file.txt"), Path::new("/moved.txt")))
                .unwrap_err(),
            FsError::PermissionDenied
        );
        assert_eq!(std::fs::read_to_string(root.join("file.txt")).unwrap(), "x");
        assert!(!root.join("new.txt").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_directory_or_a_bad_guest_path_is_a_load_error_naming_the_module() {
        let runtime = runtime();
        let missing = DirGrant {
            guest: "/assets".into(),
            host: PathBuf::from("/nonexistent/modhost-grant"),
            read_only: true,
        };
        let error = open("users", &[missing], runtime.handle()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("module \"users\"") && text.contains("/nonexistent/modhost-grant"),
            "{text}"
        );
        let root = temp("guest-path");
        for guest in ["assets", "/", "/a/b", "/..", "/with space"] {
            let grant = DirGrant {
                guest: guest.into(),
                host: root.clone(),
                read_only: true,
            };
            let error = open("users", &[grant], runtime.handle()).unwrap_err();
            assert!(error.to_string().contains("guest path"), "{guest}: {error}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
