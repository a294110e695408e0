//! Bounds-checked access to a guest's linear memory. Every copy into or out of guest memory —
//! import arguments, import results, export inputs and results — goes through these
//! functions, which check the whole range before touching it and describe a bad one by its
//! offsets (`message at 65000..75000 is outside memory of 65536 bytes`). The caller turns the
//! description into a `CallErrorKind::BadPointer` naming the import or export.

use wasmer::MemoryView;

/// Checks that `len` bytes at `ptr` lie inside memory; `what` names them in the error.
pub(crate) fn check(view: &MemoryView<'_>, what: &str, ptr: u32, len: u32) -> Result<(), String> {
    let size = view.data_size();
    let end = u64::from(ptr) + u64::from(len);
    if end > size {
        return Err(format!(
            "{what} at {ptr}..{end} is outside memory of {size} bytes"
        ));
    }
    Ok(())
}

/// Copies `len` bytes at `ptr` out of memory.
pub(crate) fn read(
    view: &MemoryView<'_>,
    what: &str,
    ptr: u32,
    len: u32,
) -> Result<Vec<u8>, String> {
    check(view, what, ptr, len)?;
    let mut buffer = vec![0u8; len as usize];
    view.read(u64::from(ptr), &mut buffer)
        .map_err(|error| format!("{what} at {ptr}: {error}"))?;
    Ok(buffer)
}

/// Copies `bytes` into memory at `ptr`.
pub(crate) fn write(
    view: &MemoryView<'_>,
    what: &str,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), String> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| format!("{what} of {} bytes does not fit in memory", bytes.len()))?;
    check(view, what, ptr, len)?;
    view.write(u64::from(ptr), bytes)
        .map_err(|error| format!("{what} at {ptr}: {error}"))
}

/// What [`read_c_string`] found.
pub(crate) enum CString {
    /// The bytes before the NUL.
    Found(Vec<u8>),
    /// More than the limit before any NUL; the bytes read so far.
    TooLong(usize),
}

/// Reads the NUL-terminated bytes at `ptr` (the original ABI's response), reading no more than
/// `limit` bytes before giving up.
pub(crate) fn read_c_string(
    view: &MemoryView<'_>,
    what: &str,
    ptr: u32,
    limit: usize,
) -> Result<CString, String> {
    let size = view.data_size();
    let mut body = Vec::new();
    let mut offset = u64::from(ptr);
    let mut chunk = [0u8; 4096];
    loop {
        if offset >= size {
            return Err(format!(
                "{what} at {ptr} runs past the end of memory ({size} bytes) without a NUL"
            ));
        }
        let take = (size - offset).min(chunk.len() as u64) as usize;
        view.read(offset, &mut chunk[..take])
            .map_err(|error| format!("{what} at {offset}: {error}"))?;
        if let Some(nul) = chunk[..take].iter().position(|&byte| byte == 0) {
            body.extend_from_slice(&chunk[..nul]);
            return Ok(CString::Found(body));
        }
        body.extend_from_slice(&chunk[..take]);
        if body.len() > limit {
            return Ok(CString::TooLong(body.len()));
        }
        offset += take as u64;
    }
}
