//! Shared checks for modhost's fuzz targets: what every decoding target asserts about an
//! envelope ([`envelope`]), and the live puppet module the import-boundary target drives
//! ([`puppet`], feature `host`). The targets themselves are in `fuzz_targets/`; how to run
//! them is in `docs/FUZZING.md`.

pub mod envelope;
#[cfg(feature = "host")]
pub mod puppet;
