//! The host imports (`env` namespace, `docs/ABI.md`) behind safe functions that take slices.
//!
//! On `wasm32` these call the real imports. On every other target they call the recording
//! stand-in in [`crate::testing`], so the crate, and a module's own logic, compile and run in
//! `cargo test` on the developer's machine.

#[cfg(target_family = "wasm")]
mod imports {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn publish_message(ptr: *const u8, len: usize) -> i32;
        pub fn publish_batch(ptr: *const u8, len: usize, timeout_ms: i32) -> i32;
        pub fn subscribe_topic(topic_ptr: *const u8, topic_len: usize, handler: u32) -> i32;
        pub fn unsubscribe(topic_ptr: *const u8, topic_len: usize) -> i32;
        pub fn ws_broadcast(
            topic_ptr: *const u8,
            topic_len: usize,
            payload_ptr: *const u8,
            payload_len: usize,
        );
        pub fn request(ptr: *const u8, len: usize, timeout_ms: i32) -> i64;
        pub fn log_at(level: i32, ptr: *const u8, len: usize);
        pub fn kv(ptr: *const u8, len: usize) -> i64;
        pub fn http_send(ptr: *const u8, len: usize) -> i64;
    }
}

/// `kv`: the encoded `KvResponse`, or the negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn kv(request: &[u8]) -> Result<Vec<u8>, i32> {
    // SAFETY: a live slice, read only. The host calls our `alloc` export during the call to
    // place the answer; `alloc` touches no state this function holds.
    let packed = unsafe { imports::kv(request.as_ptr(), request.len()) };
    take_packed(packed)
}

/// `http_send`: the encoded `OutboundResponse`, or the negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn http_send(request: &[u8]) -> Result<Vec<u8>, i32> {
    // SAFETY: as in `kv`: a live slice, read only; the host calls our `alloc` export during
    // the call to place the answer, and `alloc` touches no state this function holds.
    let packed = unsafe { imports::http_send(request.as_ptr(), request.len()) };
    take_packed(packed)
}

/// Takes ownership of the `(ptr << 32) | len` buffer an import returned, or its negative code.
#[cfg(target_family = "wasm")]
fn take_packed(packed: i64) -> Result<Vec<u8>, i32> {
    if packed < 0 {
        // Codes are small negative numbers; anything that doesn't fit is reported as -1.
        return Err(i32::try_from(packed).unwrap_or(binary::abi::Code::Invalid.get()));
    }
    let ptr = (packed >> 32) as u32 as usize as *mut u8;
    let len = packed as u32 as usize;
    // SAFETY: per docs/ABI.md the answer was written into a buffer the host obtained from our
    // `alloc` export with exactly `len` bytes (wasi-host calls `alloc(encoded.len())`), so it
    // is ours to own with the layout `take` expects.
    Ok(unsafe { crate::__private::take(ptr, len) })
}

/// `publish_message`: mailboxes reached (≥ 0) or a negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn publish_message(message: &[u8]) -> i32 {
    // SAFETY: the pointer and length describe a live slice for the whole call; the host
    // only reads from it.
    unsafe { imports::publish_message(message.as_ptr(), message.len()) }
}

/// `publish_batch`: messages published from the first (≥ 0) or a negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn publish_batch(batch: &[u8], timeout_ms: i32) -> i32 {
    // SAFETY: as in `publish_message`: a live slice, read only.
    unsafe { imports::publish_batch(batch.as_ptr(), batch.len(), timeout_ms) }
}

/// `subscribe_topic`: 0 or a negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn subscribe_topic(topic: &str, handler: u32) -> i32 {
    // SAFETY: as in `publish_message`: a live slice, read only.
    unsafe { imports::subscribe_topic(topic.as_ptr(), topic.len(), handler) }
}

/// `unsubscribe`: 1 removed, 0 not subscribed, or a negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn unsubscribe(topic: &str) -> i32 {
    // SAFETY: as in `publish_message`: a live slice, read only.
    unsafe { imports::unsubscribe(topic.as_ptr(), topic.len()) }
}

/// `ws_broadcast`.
#[cfg(target_family = "wasm")]
pub(crate) fn ws_broadcast(topic: &str, payload: &[u8]) {
    // SAFETY: two live slices, read only.
    unsafe { imports::ws_broadcast(topic.as_ptr(), topic.len(), payload.as_ptr(), payload.len()) }
}

/// `log_at`.
#[cfg(target_family = "wasm")]
pub(crate) fn log_at(level: i32, text: &str) {
    // SAFETY: a live slice, read only.
    unsafe { imports::log_at(level, text.as_ptr(), text.len()) }
}

/// `request`: the encoded reply, or the negative code.
#[cfg(target_family = "wasm")]
pub(crate) fn request(message: &[u8], timeout_ms: i32) -> Result<Vec<u8>, i32> {
    // SAFETY: a live slice, read only. The host may call our `alloc` export during the call
    // (to place the reply); `alloc` touches no state this function holds.
    let packed = unsafe { imports::request(message.as_ptr(), message.len(), timeout_ms) };
    take_packed(packed)
}

#[cfg(not(target_family = "wasm"))]
pub(crate) use crate::testing::host::{
    log_at, publish_batch, publish_message, request, subscribe_topic, unsubscribe, ws_broadcast,
};
#[cfg(not(target_family = "wasm"))]
pub(crate) use crate::testing::kv::serve as kv;
#[cfg(not(target_family = "wasm"))]
pub(crate) use crate::testing::outbound::serve as http_send;
