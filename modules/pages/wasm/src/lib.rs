//! `pages`: serves the files it ships with. `modules/pages/assets/` sits beside this source
//! and is granted to the module as `/assets` (read-only) by one line in `modhost.toml`:
//!
//! ```toml
//! [modules.pages]
//! dirs = { "/assets" = { path = "modules/pages/assets" } }
//! ```
//!
//! - `GET /m/pages/FILE` answers `/assets/FILE` with its content type (`guest::files`);
//!   `GET /m/pages` the `index.html`; `404` for a missing file; `403` when the host refuses
//!   the read (no grant, or a path that leads out of it).
//! - `GET /m/pages/_inline` answers a copy of `index.html` compiled into the module: the
//!   same bytes from memory, the baseline the file-serving cost is measured against.

use guest::{IntoResponse, Module, Request, Response};

/// Where the grant is mounted in the module's file system.
const ASSETS: &str = "/assets";

/// `index.html` as it was when the module was built.
const INLINE_INDEX: &[u8] = include_bytes!("../../assets/index.html");

#[derive(Debug, Default)]
struct Pages;

impl Module for Pages {
    fn handle(&mut self, request: Request) -> impl IntoResponse {
        match (request.method(), request.path()) {
            ("GET", "/_inline") => Response::ok()
                .with_header("content-type", guest::files::content_type("index.html"))
                .with_body(INLINE_INDEX),
            ("GET" | "HEAD", path) => guest::files::serve(ASSETS, path),
            _ => Response::method_not_allowed(),
        }
    }
}

guest::export!(Pages, shared_nothing);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn the_inline_copy_is_the_shipped_index() {
        let mut pages = Instance::new(Pages);
        let inline = pages.handle(Request::new("GET", "/_inline"));
        assert_eq!(inline.status(), 200);
        assert_eq!(
            inline.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/index.html"));
        assert_eq!(inline.body_text().as_bytes(), shipped.unwrap().as_slice());
        assert_eq!(pages.handle(Request::new("POST", "/x")).status(), 405);
    }
}
