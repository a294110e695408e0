//! modhost's benchmark harness, run by `cargo xtask bench` (docs/PERFORMANCE.md): a
//! keep-alive HTTP/1.1 load generator with fixed concurrency and HdrHistogram latencies, a
//! driver for `wrk` (the HTTP scenario's other client, when installed), the
//! baseline servers the modhost figures are compared with (a bare hyper server, the users
//! module's JSON work in native Rust, a native hyper proxy), and the scenarios, each run interleaved with its
//! baseline so a noisy machine shows in both.
//!
//! It is not a test suite: nothing here asserts; every figure goes into the report, and
//! targets missed are reported as such. All traffic is on 127.0.0.1; every run is bounded
//! in time.

mod baseline;
mod load;
mod process;
mod scenarios;
mod smaps;
mod stats;
mod wasm;
mod wrk;

pub use baseline::{Baseline, serve};
pub use load::{Connection, LoadResult, Target, once, run};
pub use process::{Modhost, Server, rss_bytes};
pub use scenarios::{Scenario, Settings};
pub use stats::{Row, Section, Verdict, markdown, median, percentile};
pub use wasm::{MARKER, initial_memory_bytes, variant};
pub use wrk::Wrk;
