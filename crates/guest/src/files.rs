//! Files a module ships with, read from a directory granted in `modhost.toml`: [`serve`]
//! answers a request path with a file, its content type, or 404.
//!
//! A granted directory is preopened by the host through WASI, so under `wasm32-wasip1` plain
//! `std::fs` works on it: `std::fs::read("/assets/logo.svg")`. A grant
//! (`[modules.NAME] dirs = { "/assets" = { path = "modules/NAME/assets" } }`) is read-only
//! unless it says `read_only = false`; anything outside every grant is refused by the host
//! (`docs/ABI.md`, "Directory grants"). Natively (`cargo test`) the same calls read the real
//! file system, so a module's file handling is testable as it is.

use std::io::ErrorKind;

use crate::http::Response;

/// The `content-type` for a file name, by its extension (`text/html; charset=utf-8` for
/// `.html`); `application/octet-stream` when unknown.
pub fn content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// WASI's `ENOTCAPABLE` (76), what a path outside every granted directory gets; Rust has no
/// `ErrorKind` for it.
fn refused_by_wasi(error: &std::io::Error) -> bool {
    const ENOTCAPABLE: i32 = 76;
    cfg!(target_os = "wasi") && error.raw_os_error() == Some(ENOTCAPABLE)
}

/// Answers `path` (a request's sub-path: `/style.css`, `""` for the index) with the file of
/// that name under `dir` (a granted guest path such as `/assets`): `200` with the bytes and
/// [`content_type`]; `index.html` for `""` and `/`; `404` for a missing file, a directory,
/// or a path with an empty, `.` or `..` segment (never looked up); `403` when the host
/// refuses the read (the grant is missing, or the path leads out of it); `500` otherwise.
pub fn serve(dir: &str, path: &str) -> Response {
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    if relative
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Response::not_found();
    }
    let full = format!("{}/{relative}", dir.trim_end_matches('/'));
    match std::fs::read(&full) {
        Ok(bytes) => Response::ok()
            .with_header("content-type", content_type(relative))
            .with_body(bytes),
        Err(error) => match error.kind() {
            ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory => {
                Response::not_found()
            }
            ErrorKind::PermissionDenied => {
                Response::text(format!("{full}: {error}")).with_status(403)
            }
            _ if refused_by_wasi(&error) => {
                Response::text(format!("{full}: {error}")).with_status(403)
            }
            _ => Response::text(format!("{full}: {error}")).with_status(500),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_with_their_type_and_404_for_the_rest() {
        let dir = std::env::temp_dir().join(format!("guest-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("css")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.join("css/site.css"), "body{}").unwrap();
        let root = dir.to_str().unwrap();

        let index = serve(root, "");
        assert_eq!(index.status(), 200);
        assert_eq!(index.body_text(), "<h1>hi</h1>");
        assert_eq!(
            index.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let css = serve(root, "/css/site.css");
        assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
        for missing in [
            "/nope.txt",
            "/css",
            "/css/",
            "/../index.html",
            "/./index.html",
            "//x",
        ] {
            assert_eq!(serve(root, missing).status(), 404, "{missing}");
        }
        assert_eq!(content_type("LOGO.SVG"), "image/svg+xml");
        assert_eq!(content_type("README"), "application/octet-stream");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
