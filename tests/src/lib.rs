//! The end-to-end suite: the real server, real modules compiled for `wasm32-wasip1`, real HTTP
//! and WebSocket clients.
//!
//! Not yet built: the server and verification issues fill it. Steps 1 and 2 of the
//! verification plan (bus and wire-format unit tests) live next to their code in `bus` and
//! `binary`.
