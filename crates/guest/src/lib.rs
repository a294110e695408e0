//! The SDK a module author uses: safe wrappers over the host imports and a way to declare the
//! exports, so no module writes raw pointers.
//!
//! Not yet built: this crate is filled by the guest-SDK issue. It depends on `binary` only and
//! builds for `wasm32-wasip1`.
