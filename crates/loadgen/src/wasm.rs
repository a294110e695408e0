//! Versions of the `bench` module that differ only in what `GET /m/bench/version` answers,
//! and the initial linear memory a module declares.

use anyhow::{Context as _, bail};

/// The marker in `modules/bench/wasm/src/lib.rs`; its six trailing digits are rewritten.
pub const MARKER: &[u8] = b"modhost-bench-version-000000";

/// `bench.wasm` with the marker's digits set to `version` (below 1 000 000); the same length,
/// so nothing else in the file moves. Returns the bytes and the marker they answer.
pub fn variant(bench_wasm: &[u8], version: u32) -> anyhow::Result<(Vec<u8>, String)> {
    let at = bench_wasm
        .windows(MARKER.len())
        .position(|window| window == MARKER)
        .context("bench.wasm does not contain the version marker: rebuild modules/bench")?;
    if version >= 1_000_000 {
        bail!("version {version} does not fit the marker");
    }
    let marker = format!("modhost-bench-version-{version:06}");
    let mut bytes = bench_wasm.to_vec();
    bytes[at..at + MARKER.len()].copy_from_slice(marker.as_bytes());
    Ok((bytes, marker))
}

fn leb128(bytes: &[u8], at: &mut usize) -> anyhow::Result<u64> {
    let mut value = 0_u64;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(*at).context("truncated LEB128")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 63 {
            bail!("LEB128 too long");
        }
    }
}

/// The declared initial size of the module's first memory, in bytes (0 without one).
pub fn initial_memory_bytes(wasm: &[u8]) -> anyhow::Result<u64> {
    if wasm.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        bail!("not a wasm module");
    }
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = usize::try_from(leb128(wasm, &mut at)?)?;
        if id == 5 {
            let mut inner = at;
            let count = leb128(wasm, &mut inner)?;
            if count == 0 {
                return Ok(0);
            }
            inner += 1; // limits flags
            let pages = leb128(wasm, &mut inner)?;
            return Ok(pages * 65_536);
        }
        at += size;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with one memory of 17 pages and the marker in a custom section.
    fn module() -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend([5, 3, 1, 0, 17]);
        let mut custom = vec![1, b'm'];
        custom.extend_from_slice(MARKER);
        bytes.push(0);
        bytes.push(u8::try_from(custom.len()).unwrap_or(0));
        bytes.extend(custom);
        bytes
    }

    #[test]
    fn variants_differ_only_in_the_marker() {
        let original = module();
        let (bytes, marker) = variant(&original, 42).unwrap_or_default();
        assert_eq!(marker, "modhost-bench-version-000042");
        assert_eq!(bytes.len(), original.len());
        assert!(bytes.windows(marker.len()).any(|w| w == marker.as_bytes()));
        assert!(variant(&original, 1_000_000).is_err());
        assert!(variant(b"\0asm\x01\0\0\0", 1).is_err());
    }

    #[test]
    fn initial_memory_is_read_from_the_memory_section() {
        assert_eq!(initial_memory_bytes(&module()).ok(), Some(17 * 65_536));
        assert_eq!(initial_memory_bytes(b"\0asm\x01\0\0\0").ok(), Some(0));
        assert!(initial_memory_bytes(b"not wasm").is_err());
    }
}
