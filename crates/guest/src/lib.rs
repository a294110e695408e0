//! The SDK a module author uses: safe wrappers over modhost's host imports and one macro that
//! declares the exports, so no module writes raw pointers.
//!
//! A module is a `cdylib` crate in `modules/<name>/wasm/`, compiled for `wasm32-wasip1` into
//! `modules/dist/<name>.wasm` (`cargo xtask build-modules`, or the server's dev mode). It is
//! a type implementing [`Module`] (every method has a default) plus one [`export!`] line.
//! Handlers return anything [`IntoResponse`] and use `?`: request-parsing errors answer `400`,
//! failed host calls `500`, both as [`HttpError`]s with a `{"error": ...}` body.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use guest::{HttpError, Instance, Message, Module, Request, Router, Topics};
//!
//! /// A tiny key/value store: `PUT /m/kv/{key}`, `GET /m/kv/{key}`, `GET /m/kv`.
//! #[derive(Default)]
//! struct Kv {
//!     entries: BTreeMap<String, String>,
//! }
//!
//! impl Kv {
//!     fn list(&mut self, _: Request) -> String {
//!         let lines: Vec<String> = self.entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
//!         lines.join("\n")
//!     }
//!
//!     fn get(&mut self, request: Request) -> guest::Result<String> {
//!         let key = request.param("key").unwrap_or_default();
//!         let value = self.entries.get(key).ok_or_else(|| HttpError::not_found("no such key"))?;
//!         Ok(value.clone())
//!     }
//!
//!     fn put(&mut self, request: Request) -> guest::Result<()> {
//!         let key = request.param("key").unwrap_or_default().to_owned();
//!         let value = request.text()?.to_owned(); // not UTF-8: 400
//!         guest::info!("kv: {key} = {value}");
//!         guest::publish("kv.changed", &key)?; // refused: 500 naming the call
//!         self.entries.insert(key, value);
//!         Ok(()) // 204
//!     }
//!
//!     fn clear(&mut self, _: Message) -> Result<(), guest::Error> {
//!         self.entries.clear();
//!         guest::ws_broadcast("kv", "cleared");
//!         Ok(())
//!     }
//! }
//!
//! impl Module for Kv {
//!     // Built once per instance, like `topics`.
//!     fn router() -> Router<Kv> {
//!         Router::new()
//!             .get("/", Kv::list)
//!             .get("/{key}", Kv::get)
//!             .put("/{key}", Kv::put)
//!     }
//!
//!     // Subscribed before `init`; live once this version is swapped in.
//!     fn topics() -> Topics<Kv> {
//!         Topics::new().on("kv.clear", Kv::clear)
//!     }
//! }
//!
//! guest::export!(Kv);
//!
//! // The same code runs natively in `cargo test`, against the recording host in `testing`,
//! // through the `Instance` the generated exports use:
//! let mut kv = Instance::new(Kv::default());
//! kv.init();
//! let put = kv.handle(Request::new("PUT", "/colour").with_body("blue"));
//! assert_eq!(put.status(), 204);
//! assert_eq!(kv.handle(Request::new("GET", "/colour")).body_text(), "blue");
//! assert_eq!(kv.handle(Request::new("GET", "/")).body_text(), "colour=blue");
//! assert_eq!(kv.handle(Request::new("GET", "/shape")).status(), 404);
//! assert_eq!(guest::testing::take_published()[0].topic, "kv.changed");
//! kv.on_message(Message::event("kv.clear", vec![]));
//! assert_eq!(kv.handle(Request::new("GET", "")).body_text(), "");
//! ```
//!
//! Its `Cargo.toml` (in the `modules/` workspace, which sets the size-optimised release
//! profile):
//!
//! ```toml
//! [package]
//! name = "kv"
//! version = "0.0.0"
//! edition = "2024"
//! publish = false
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! guest = { path = "../../../crates/guest" }
//! ```
//!
//! The example modules in `modules/` (users, sender, receiver, logger, auth, slow, counter, bench,
//! flaky, pages) are complete, commented uses of every part of this crate.
//!
//! # What is here
//! - [`Module`] and [`export!`]: the exports of `docs/ABI.md` (ABI 1), generated. The instance
//!   of your type is created on the first call, wrapped in an [`Instance`] with its
//!   [`Router`] and [`Topics`] (built then, once), and keeps its state between calls.
//! - Bus: [`publish`], [`publish_message`], [`subscribe`], [`unsubscribe`], [`request`] (with
//!   a timeout), [`reply`] / [`reply_error`], [`topic_matches`] and [`Topics`] (handlers by
//!   topic pattern: the host does not say which subscription a message matched). Topic
//!   syntax and matching are `binary::topic`'s, the rules the bus applies.
//! - Browsers: [`ws_broadcast`] to `/ws?topic=T` clients.
//! - Other services: [`http::send`], [`http::get`], [`http::post_json`] — outbound HTTP(S) to
//!   the hosts the module is granted (`allowed_hosts`), unit-testable with scripted answers
//!   ([`testing::script_http`]).
//! - State: [`kv`] — durable keys and values that survive swaps, traps, restarts and every
//!   instance of a pool (get, set, delete, exists, list, increment, compare-and-swap, batches,
//!   JSON helpers, shared stores by grant).
//! - Logs: [`log()`](crate::log()) and [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`].
//! - HTTP: [`Request`] (query parsing with percent-decoding, headers, bearer token, text and
//!   JSON bodies, router parameters), [`Response`] (status constructors, `with_*` builders,
//!   text and JSON bodies), [`IntoResponse`] (what handlers return: `Response`, text, `()`,
//!   [`Json`], `(status, T)`, `Result`), [`HttpError`] and [`Result`] for `?`, [`Router`] /
//!   [`Pattern`] for sub-paths, [`parse_query`] / [`percent_decode`].
//! - Middleware: [`Response::pass`] and the convention in [`middleware`].
//! - Hot-swap state: `export!(MyModule, snapshot)` opts into [`Module::snapshot`] /
//!   [`Module::restore`], with [`snapshot_json`] / [`restore_json`] for a serde state.
//! - Files: a directory granted in `modhost.toml` is preopened through WASI, so `std::fs`
//!   reads it (`std::fs::read("/assets/logo.svg")`); [`files::serve`] answers a request path
//!   with a file from one, its content type, or 404.
//! - Tests: on every target but `wasm32` the imports are replaced by the recording host in
//!   `guest::testing`, so a module's logic is unit-tested with a plain `cargo test`, driven
//!   through [`Instance`] as the exports drive it.
//!
//! Errors from host calls are [`Error`] values naming the call, the topic and the reason
//! ([`ErrorKind`], from the ABI's return codes); in a handler, `?` turns one into a `500`
//! [`HttpError`]. `init`, `on_message` and topic handlers return `Result<(), Error>`, and
//! the generated exports log an error they return. JSON support (`Request::json`,
//! `Response::json`, [`Json`]) is the default feature `json` (serde and serde_json); without
//! it this crate depends on `binary` alone (`Response::json_error` and [`HttpError`] need
//! neither).
//!
//! # Why `export!` is a `macro_rules!` macro
//! A proc-macro would need a second crate and compile `syn`/`quote` for the host in every
//! module workspace (seconds on a cold build, on a 2-core machine more). A declarative macro
//! costs nothing to build, its expansion is plain Rust in [`export!`]'s source, and the
//! [`Module`] trait already gives default methods and ordinary type errors: an attribute
//! would only save writing one line.
//!
//! # `_initialize` and `__wasm_call_ctors`
//! A Rust `cdylib` for `wasm32-wasip1` is a WASI *reactor*, but rustc does not link wasi-libc's
//! reactor start file, so nothing exports `_initialize`. [`export!`] defines it and calls
//! `__wasm_call_ctors` (synthesised by `wasm-ld`) once, exactly as that start file does. Rust
//! code registers no constructors of its own, so today the function is empty, but C code
//! linked into a module (and wasi-libc) may register some, and the host calls `_initialize`
//! before `init` on every instance.
//!
//! This crate does not do I/O of its own, spawn threads or know the server: everything goes
//! through the host imports, and [`files`] through WASI's file system.

#![warn(missing_docs)]

mod bus;
mod error;
mod export;
pub mod files;
pub mod http;
pub mod kv;
mod log;
pub mod middleware;
mod module;
mod query;
mod respond;
mod router;
#[cfg(feature = "json")]
mod snapshot;
mod sys;
#[cfg(not(target_family = "wasm"))]
pub mod testing;

pub use binary::{
    Header, HttpRequest, HttpResponse, KvErrorKind, Message, MessageBatch, MessageKind,
    OutboundErrorKind,
};
pub use bus::{
    Topics, publish, publish_batch, publish_message, reply, reply_error, request, subscribe,
    topic_matches, unsubscribe, ws_broadcast,
};
pub use error::{Error, ErrorKind, HttpError};
#[doc(hidden)]
pub use export::__private;
pub use export::ABI_VERSION;
pub use http::{APPLICATION_JSON, Request, Response, TEXT_PLAIN};
pub use log::{Level, log};
pub use module::{Instance, Module};
pub use query::{parse_query, percent_decode};
pub use respond::IntoResponse;
#[cfg(feature = "json")]
pub use respond::Json;
pub use router::{Params, Pattern, Router};

/// What a handler returns to use `?`: `Result<T, HttpError>`, where `T` is any
/// [`IntoResponse`] (see [`HttpError`] for what converts into the error).
pub type Result<T, E = HttpError> = std::result::Result<T, E>;
#[cfg(feature = "json")]
pub use snapshot::{restore_json, snapshot_json};
