//! wasi-host's integration tests: real modules — WAT snippets for edge cases and hostile
//! behaviour, and a real Rust guest compiled for wasm32-wasip1 (`tests/fixtures/guest`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod batch;
mod delivery;
mod fixture;
mod hostile;
mod kv;
mod lifecycle;
mod outbound;
mod snapshot;
mod topics;
mod wat_modules;
