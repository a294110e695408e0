//! The middleware convention: how a middleware module answers or passes a request.
//!
//! A module whose source directory has a `rule.txt` is a middleware (`*` or empty: in front of
//! every module; `users,auth`: only those; `-auth`: every module except `auth`). For each
//! request to a target module, the server calls the matching middlewares in order, then the
//! target. Each middleware's `handle` receives **the same request the target will receive**
//! (method, the target's sub-path, query, headers, body) plus the header
//! `x-modhost-target: <target module name>`, which the server sets.
//!
//! A middleware then either
//! - **answers**: returns any response that is not a pass. The server sends it to the client
//!   and calls no later stage (e.g. `auth` answering `401`); or
//! - **passes**: returns [`Response::pass()`](crate::Response::pass), a response carrying the
//!   header `x-modhost-pass: 1`. The server ignores the rest of a pass response (status,
//!   body, other headers), except headers named `x-modhost-set-<name>`
//!   ([`Response::with_request_header`](crate::Response::with_request_header)): for each, the
//!   server sets request header `<name>` to that value for every later stage, replacing any
//!   value it had.
//!
//! The server removes every client-sent header starting with `x-modhost-` before the first
//! stage, so a client can neither fake `x-modhost-target` nor a value a middleware would set
//! with a reserved name; `x-modhost-set-x-modhost-*` is ignored. A target module (not acting
//! as a middleware) that returns a pass has nobody to pass to: the server answers `404`.
//! `docs/middleware.md` is the same contract from the server's side.
//!
//! ```
//! use guest::{Instance, IntoResponse, Module, Request, Response};
//!
//! #[derive(Default)]
//! struct RequireJson;
//!
//! impl Module for RequireJson {
//!     fn handle(&mut self, request: Request) -> impl IntoResponse {
//!         match (request.method(), request.header("content-type")) {
//!             ("POST" | "PUT", Some(kind)) if !kind.starts_with("application/json") => {
//!                 Response::new(415).with_text("send JSON")
//!             }
//!             _ => Response::pass(),
//!         }
//!     }
//! }
//!
//! let mut middleware = Instance::new(RequireJson);
//! let request = Request::new("POST", "").with_header("content-type", "text/plain");
//! assert_eq!(middleware.handle(request).status(), 415);
//! assert!(middleware.handle(Request::new("GET", "/7")).is_pass());
//! ```

/// The header that makes a response a pass; its value is `1` ([`binary::header::PASS`]).
pub const PASS_HEADER: &str = binary::header::PASS;

/// The status a [`Response::pass()`](crate::Response::pass) carries. The server ignores it;
/// `204` keeps a pass that reached a client by mistake empty and harmless.
pub const PASS_STATUS: u16 = 204;

/// The request header the server sets for middlewares: the target module's name
/// ([`binary::header::TARGET`]).
pub const TARGET_HEADER: &str = binary::header::TARGET;

/// On a pass response, `x-modhost-set-<name>: <value>` sets request header `<name>` for the
/// later stages ([`binary::header::SET_PREFIX`]).
pub const SET_HEADER_PREFIX: &str = binary::header::SET_PREFIX;

/// Headers starting with this are reserved for the server and the middleware protocol; the
/// server strips client-sent ones ([`binary::header::RESERVED_PREFIX`]).
pub const RESERVED_PREFIX: &str = binary::header::RESERVED_PREFIX;
