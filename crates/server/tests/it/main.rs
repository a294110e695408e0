//! Server integration tests: the real server on 127.0.0.1:0 over a temp project, real HTTP
//! (hyper client) and WebSocket (tokio-tungstenite) clients, real modules (WAT snippets and
//! the wasi-host fixture guest compiled for wasm32-wasip1), real files and file watching.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod support;

mod browser;
mod cluster;
mod cluster_state;
mod dirs;
mod guests;
mod hostile;
mod hot_reload;
mod limits;
mod outbound;
mod persistence;
mod routes;
mod scaffold;
mod snapshot;
mod state;
mod status_page;
mod websocket;
