//! Module lifecycle on wasmer + wasmer-wasix: load (with a compiled-module cache), init, drain
//! and close; the host imports; limits and trap containment.
//!
//! Not yet built: this crate is filled by the wasi-host issue. It is the only crate that names
//! wasmer types.
