//! Finds `modules/*/wasm/` crates, compiles them for `wasm32-wasip1` and writes
//! `modules/dist/<name>.wasm` atomically; watches sources to rebuild what changed.
//!
//! Not yet built: this crate is filled by the build-pipeline issue. It knows cargo and the file
//! system, not the runtime.
