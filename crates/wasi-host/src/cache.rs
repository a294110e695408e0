//! The on-disk compiled-module cache: wasmer artifacts keyed by the wasm's content hash and
//! the engine's identity, written atomically and checksummed, so a corrupt or stale entry is
//! detected and recompiled, never trusted.
//!
//! Entry layout (64-byte header, then the artifact): `MODHOSTC` (8 bytes) · format version
//! (u32 LE) · 4 zero bytes · BLAKE3 of the artifact (32 bytes) · artifact length (u64 LE) ·
//! 8 zero bytes · the artifact (`wasmer::Module::serialize`).
//!
//! A hit is the artifact *mapped* from the file (read-only, private), not copied into the heap:
//! wasmer keeps the serialized artifact for the module's lifetime (it reads the module's
//! metadata and data segments from it), so a copy would cost its full size in every process
//! that loads the module. Mapped, its pages are the file's pages in the page cache: once the
//! code has been copied out, [`Artifact::release_pages`] drops them from the process, and the
//! kernel brings back the few that instantiation reads. Entries are only ever replaced by
//! rename, never rewritten in place, so a mapped entry never changes under the process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"MODHOSTC";
const FORMAT: u32 = 2;
/// A multiple of 16, so the mapped artifact is aligned as wasmer's archive reader requires.
const HEADER: usize = 64;

/// Lowercase hex of a SHA-256 digest.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where artifacts for one engine identity live.
#[derive(Debug, Clone)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Hash of everything that makes an artifact usable by this process: wasmer's version
    /// and compiler id, the artifact format, the CPU, our format version.
    engine_tag: String,
}

/// A verified artifact, mapped from its cache entry.
#[derive(Clone)]
pub(crate) struct Artifact {
    map: Arc<memmap2::Mmap>,
}

impl Artifact {
    /// The artifact's bytes as a [`bytes::Bytes`] that keeps the mapping alive (no copy).
    pub(crate) fn bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from_owner(Mapped(self.map.clone()))
    }

    /// Drops the mapping's resident pages from this process (they stay in the page cache); a
    /// later read faults them back in from the file. For after deserialisation, when the code
    /// has been copied to executable memory and most of the artifact will not be read again.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the mapping is private, read-only and was never written, so it holds no
        // private pages: `MADV_DONTNEED` only unmaps the file's pages, and the next read of
        // an address reads the same bytes from the file again. The file is never modified
        // in place (entries are replaced by rename), so those bytes are the verified ones.
        #[cfg(unix)]
        let _ = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }
}

/// The artifact part of a mapped entry.
struct Mapped(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0[HEADER..]
    }
}

/// What a cache lookup found.
pub(crate) enum Lookup {
    /// A verified artifact.
    Hit(Artifact),
    /// Nothing stored.
    Miss,
    /// Something stored but unusable; the reason is logged by the caller.
    Invalid(String),
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, engine: &wasmer::Engine) -> DiskCache {
        let identity = format!(
            "wasmer-7.4|{}|{}|{}-{}|format {FORMAT}",
            engine.deterministic_id(),
            engine.artifact_format(),
            std::env::consts::ARCH,
            std::env::consts::OS,
        );
        DiskCache {
            dir,
            engine_tag: sha256_hex(identity.as_bytes())[..16].to_owned(),
        }
    }

    fn path(&self, content_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{content_hash}-{}.wasmer", self.engine_tag))
    }

    pub(crate) fn get(&self, content_hash: &str) -> Lookup {
        let path = self.path(content_hash);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(error) => return Lookup::Invalid(format!("{}: {error}", path.display())),
        };
        // SAFETY: a private read-only mapping of a cache entry. Entries are written to a
        // temporary file and renamed into place, never modified in place, so the bytes
        // mapped here do not change while the mapping lives (another process truncating the
        // file would be a fault in the cache directory's owner, as with any mapped file).
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => map,
            Err(error) => return Lookup::Invalid(format!("{}: {error}", path.display())),
        };
        match verify(&map) {
            Ok(()) => Lookup::Hit(Artifact { map: Arc::new(map) }),
            Err(reason) => Lookup::Invalid(format!("{}: {reason}", path.display())),
        }
    }

    /// Stores an artifact: temp file in the same directory, fsync, rename.
    pub(crate) fn put(&self, content_hash: &str, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(content_hash);
        let temp = self.dir.join(format!(
            ".{content_hash}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let result = write_entry(&temp, artifact).and_then(|()| std::fs::rename(&temp, &path));
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

fn write_entry(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    header[16..48].copy_from_slice(blake3::hash(artifact).as_bytes());
    header[48..56].copy_from_slice(&(artifact.len() as u64).to_le_bytes());
    file.write_all(&header)?;
    file.write_all(artifact)?;
    file.sync_all()
}

fn verify(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a modhost cache entry".into());
    }
    let format = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if format != FORMAT {
        return Err(format!("cache format {format}, expected {FORMAT}"));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[48..56]);
    let length = u64::from_le_bytes(length);
    let artifact = &bytes[HEADER..];
    if artifact.len() as u64 != length {
        return Err(format!(
            "truncated: {} of {length} artifact bytes",
            artifact.len()
        ));
    }
    if blake3::hash(artifact).as_bytes() != &bytes[16..48] {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let dir = std::env::temp_dir().join(format!("modhost-cache-test-{}", std::process::id()));
        let engine = wasmer::Engine::default();
        let cache = DiskCache::new(dir.clone(), &engine);
        assert!(matches!(cache.get("abc"), Lookup::Miss));
        cache.put("abc", b"artifact bytes").unwrap();
        assert!(
            matches!(cache.get("abc"), Lookup::Hit(artifact) if artifact.bytes() == b"artifact bytes"[..])
        );
        let Lookup::Hit(artifact) = cache.get("abc") else {
            panic!("the entry is gone")
        };
        assert_eq!(
            artifact.bytes().as_ptr() as usize % 16,
            0,
            "wasmer reads the artifact in place and needs it aligned"
        );
        drop(artifact);

        let path = cache.path("abc");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(cache.get("abc"), Lookup::Invalid(reason) if reason.contains("checksum")));

        std::fs::write(&path, &bytes[..30]).unwrap();
        assert!(matches!(cache.get("abc"), Lookup::Invalid(_)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
