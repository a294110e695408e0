//! `proxy`: forwards a request to an upstream the module is granted (`allowed_hosts` in
//! `modhost.toml`) with `guest::http`, and answers with the upstream's status, content type
//! and body — the outbound HTTP demonstration.
//!
//! - `GET /m/proxy?url=U` fetches `U`; `POST /m/proxy?url=U` forwards the body and its
//!   content type.
//! - `GET /m/proxy/many?url=U&n=N` fetches `U` `N` times in one call and answers
//!   `{"ok":…,"errors":{kind:count},"first_error":…}` (how the host's per-call cap shows).
//! - `GET /m/proxy/hello` answers `hello` without going out (is the module still serving?).
//!
//! A refused or failed request answers `{"error": message, "kind": kind}` with a status
//! that says what happened: `400` for a bad URL, `403` for a host not allowed, `504` for a
//! timeout, `429` for a limit, `502` for everything else the upstream side did wrong.

use guest::{Error, ErrorKind, HttpError, Module, OutboundErrorKind, Request, Response, Router};

#[derive(Debug, Default)]
struct Proxy;

/// The status a failed outbound call answers with, and its kind's name.
fn status_of(error: &Error) -> (u16, &'static str) {
    match error.kind() {
        ErrorKind::Outbound { kind, .. } => (
            match kind {
                OutboundErrorKind::Invalid => 400,
                OutboundErrorKind::Denied => 403,
                OutboundErrorKind::Timeout => 504,
                OutboundErrorKind::Limit => 429,
                _ => 502,
            },
            kind.name(),
        ),
        _ => (500, "host"),
    }
}

fn failed(error: &Error) -> Response {
    let (status, kind) = status_of(error);
    Response::new(status).with_json(&serde_json::json!({
        "error": error.to_string(),
        "kind": kind,
    }))
}

fn target(request: &Request) -> guest::Result<String> {
    request
        .query("url")
        .ok_or_else(|| HttpError::bad_request("add ?url=<absolute URL>"))
}

/// The upstream's answer as this module's: status, content type and body.
fn relay(upstream: Response) -> Response {
    let mut response = Response::new(upstream.status()).with_body(upstream.body().to_vec());
    if let Some(content_type) = upstream.header("content-type") {
        response = response.with_header("content-type", content_type);
    }
    response
}

impl Proxy {
    fn get(&mut self, request: Request) -> guest::Result<Response> {
        let url = target(&request)?;
        Ok(match guest::http::get(&url) {
            Ok(upstream) => relay(upstream),
            Err(error) => failed(&error),
        })
    }

    fn post(&mut self, request: Request) -> guest::Result<Response> {
        let url = target(&request)?;
        let mut outgoing = Request::new("POST", url).with_body(request.body().to_vec());
        if let Some(content_type) = request.header("content-type") {
            outgoing = outgoing.with_header("content-type", content_type);
        }
        Ok(match guest::http::send(outgoing) {
            Ok(upstream) => relay(upstream),
            Err(error) => failed(&error),
        })
    }

    fn many(&mut self, request: Request) -> guest::Result<Response> {
        let url = target(&request)?;
        let count: u32 = request
            .query("n")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| HttpError::bad_request("add &n=<count>"))?;
        let mut ok = 0u32;
        let mut errors = serde_json::Map::new();
        let mut first_error = None;
        for _ in 0..count {
            match guest::http::get(&url) {
                Ok(_) => ok += 1,
                Err(error) => {
                    let (_, kind) = status_of(&error);
                    let seen = errors
                        .get(kind)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    errors.insert(kind.to_owned(), (seen + 1).into());
                    first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
        Ok(Response::json(&serde_json::json!({
            "ok": ok,
            "errors": errors,
            "first_error": first_error,
        })))
    }

    fn hello(&mut self, _: Request) -> &'static str {
        "hello"
    }
}

impl Module for Proxy {
    fn router() -> Router<Proxy> {
        Router::new()
            .get("/", Proxy::get)
            .post("/", Proxy::post)
            .get("/many", Proxy::many)
            .get("/hello", Proxy::hello)
    }
}

guest::export!(Proxy, shared_nothing);

#[cfg(test)]
mod tests {
    use guest::{Instance, testing};

    use super::*;

    #[test]
    fn forwards_and_relays_the_upstream_answer() {
        testing::reset();
        testing::script_http(
            "http://api.test/users/7",
            Response::text("ada").with_status(201),
        );
        let mut proxy = Instance::new(Proxy);
        let response = proxy
            .handle(Request::new("GET", "").with_query("url=http%3A%2F%2Fapi.test%2Fusers%2F7"));
        assert_eq!(response.status(), 201);
        assert_eq!(response.body_text(), "ada");
        let sent = testing::take_http_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].path.as_str()),
            ("GET", "http://api.test/users/7")
        );
    }

    #[test]
    fn refusals_answer_with_a_status_naming_the_kind() {
        testing::reset();
        testing::script_http_error(
            "http://slow.test/",
            OutboundErrorKind::Timeout,
            "no response within the outbound timeout of 100 ms",
        );
        let mut proxy = Instance::new(Proxy);
        let timeout = proxy.handle(Request::new("GET", "").with_query("url=http://slow.test/"));
        assert_eq!(timeout.status(), 504);
        assert!(timeout.body_text().contains("\"kind\":\"timeout\""));
        // Not scripted: the test host refuses it like a host not in allowed_hosts.
        let denied = proxy.handle(Request::new("GET", "").with_query("url=http://other.test/"));
        assert_eq!(denied.status(), 403);
        let posted = proxy.handle(
            Request::new("POST", "")
                .with_query("url=http://other.test/")
                .with_header("content-type", "application/json")
                .with_body("{}"),
        );
        assert_eq!(posted.status(), 403);
        let sent = testing::take_http_sent();
        assert_eq!(sent[2].body, b"{}");
        assert_eq!(sent[2].header("content-type"), Some("application/json"));
    }
}
