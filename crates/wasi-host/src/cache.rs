//! The on-disk compiled-module cache: wasmer artifacts keyed by the wasm's content hash and
//! the engine's identity, written atomically and checksummed, so a corrupt or stale entry is
//! detected and recompiled, never trusted.
//!
//! Entry layout: `MODHOSTC` (8 bytes) · format version (u32 LE) · SHA-256 of the artifact
//! (32 bytes) · artifact length (u64 LE) · the artifact (`wasmer::Module::serialize`).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"MODHOSTC";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 32 + 8;

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

/// What a cache lookup found.
pub(crate) enum Lookup {
    /// A verified artifact.
    Hit(Vec<u8>),
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
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(error) => return Lookup::Invalid(format!("{}: {error}", path.display())),
        };
        match verify(&bytes) {
            Ok(()) => Lookup::Hit(bytes[HEADER..].to_vec()),
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
    file.write_all(MAGIC)?;
    file.write_all(&FORMAT.to_le_bytes())?;
    file.write_all(&Sha256::digest(artifact))?;
    file.write_all(&(artifact.len() as u64).to_le_bytes())?;
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
    length.copy_from_slice(&bytes[44..52]);
    let length = u64::from_le_bytes(length);
    let artifact = &bytes[HEADER..];
    if artifact.len() as u64 != length {
        return Err(format!(
            "truncated: {} of {length} artifact bytes",
            artifact.len()
        ));
    }
    if Sha256::digest(artifact).as_slice() != &bytes[12..44] {
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
        assert!(matches!(cache.get("abc"), Lookup::Hit(bytes) if bytes == b"artifact bytes"));

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
