//! Publishing into the dist directory: atomic writes (temp file in the same directory, fsync,
//! rename), so a watcher never sees half a file, and no write when nothing changed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Writes `bytes` to `path` atomically: readers see the old content or the new content,
/// never a mix or a prefix, even if this process dies half way.
///
/// The bytes go to a temporary file in the same directory (`.<file name>.<pid>.<n>.tmp`: a
/// dot file, not ending in `.wasm`, so watchers filtering on `*.wasm` ignore it), which is
/// flushed to disk and then renamed over `path`; the directory is synced so the rename
/// survives a crash. On failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    // Make the rename itself durable. Opening a directory for syncing is a Unix thing; where
    // it isn't supported the rename is still atomic, just not yet flushed.
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub size: u64,
    pub changed: bool,
}

/// Copies the compiled `artifact` to `dest` unless `dest` already holds the same bytes (so an
/// unchanged module doesn't wake the server's watcher). Refuses a file that isn't WebAssembly.
pub(crate) fn publish(artifact: &Path, dest: &Path) -> Result<Published, String> {
    let bytes = std::fs::read(artifact)
        .map_err(|error| format!("reading {}: {error}", artifact.display()))?;
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(format!(
            "{} is not a WebAssembly binary (no \\0asm header)",
            artifact.display()
        ));
    }
    let size = bytes.len() as u64;
    if std::fs::read(dest).is_ok_and(|current| current == bytes) {
        return Ok(Published {
            size,
            changed: false,
        });
    }
    write_atomic(dest, &bytes).map_err(|error| format!("writing {}: {error}", dest.display()))?;
    Ok(Published {
        size,
        changed: true,
    })
}
