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
