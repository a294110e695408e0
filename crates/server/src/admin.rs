//! The `/_admin` routes under the admin policy (loopback clients, or a configured token): the
//! status page and its event stream, module status as JSON, Prometheus metrics, reloads.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::http::{App, Body, ServedBody, json, text};
use crate::registry::ReloadOutcome;

pub(crate) async fn admin_request(
    app: &App,
    remote: SocketAddr,
    path: String,
    request: Request<Incoming>,
) -> Response<Body> {
    if !is_admin_allowed(app, remote, &request) {
        return text(
            StatusCode::FORBIDDEN,
            "admin endpoints answer loopback clients, or a configured token",
        );
    }
    match (request.method(), path.as_str()) {
        (&Method::GET, "") => crate::status::page(&app.feed),
        (&Method::GET, "status") => {
            let mut response = text(StatusCode::OK, app.feed.latest_json());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        (&Method::GET, "modules") => json(StatusCode::OK, &app.registry.status()),
        (&Method::GET, "ws") => json(StatusCode::OK, &app.hub.stats()),
        (&Method::GET, "cluster") => json(
            StatusCode::OK,
            &crate::clustered::admin_view(app.cluster.as_deref()),
        ),
        (&Method::GET, "metrics") => {
            let mut response = text(
                StatusCode::OK,
                crate::metrics::render(
                    &app.registry,
                    &app.hub,
                    app.registry.bus(),
                    app.cluster.as_deref(),
                ),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (&Method::POST, path) if path.starts_with("deploy/") => {
            let name = path["deploy/".len()..].to_owned();
            crate::clustered::admin_deploy(app.cluster.as_deref(), &name, request).await
        }
        (&Method::POST, path) if path.starts_with("reload/") => {
            let name = &path["reload/".len()..];
            /// The answer of `POST /_admin/reload/NAME`.
            #[derive(serde::Serialize)]
            struct Reloaded<'a> {
                module: &'a str,
                #[serde(flatten)]
                outcome: ReloadOutcome,
            }
            /// The answer of a refused `POST /_admin/reload/NAME`.
            #[derive(serde::Serialize)]
            struct Refused<'a> {
                module: &'a str,
                outcome: &'static str,
                error: String,
            }
            match app.registry.reload(name).await {
                Ok(outcome) => json(
                    StatusCode::OK,
                    &Reloaded {
                        module: name,
                        outcome,
                    },
                ),
                Err(error) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &Refused {
                        module: name,
                        outcome: "refused",
                        error: error.to_string(),
                    },
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no admin route {} /_admin/{path}", request.method()),
        ),
    }
}

/// `GET /_admin/events`: the status page's snapshots as Server-Sent Events, under the admin
/// policy.
pub(crate) fn admin_events(
    app: &App,
    remote: SocketAddr,
    request: &Request<Incoming>,
) -> Response<ServedBody> {
    if !is_admin_allowed(app, remote, request) {
        return text(
            StatusCode::FORBIDDEN,
            "admin endpoints answer loopback clients, or a configured token",
        )
        .map(http_body_util::Either::Left);
    }
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /_admin/events (an EventSource)",
        )
        .map(http_body_util::Either::Left);
    }
    match app.feed.stream() {
        Ok(stream) => {
            let mut response = Response::new(http_body_util::Either::Right(stream));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(open) => {
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{open} event streams are open already, the most allowed; retry later"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response.map(http_body_util::Either::Left)
        }
    }
}

fn is_admin_allowed(app: &App, remote: SocketAddr, request: &Request<Incoming>) -> bool {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    admin_allowed(
        app.config.admin_token.as_deref(),
        remote.ip(),
        authorization,
    )
}

/// The admin policy: with a token configured, every client must present it as
/// `Authorization: Bearer <token>` (compared in constant time); without one, only loopback
/// clients are let in.
fn admin_allowed(token: Option<&str>, remote: IpAddr, authorization: Option<&str>) -> bool {
    match token {
        Some(token) => authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
        None => remote.is_loopback() || remote.to_canonical().is_loopback(),
    }
}

/// Compares without an early exit (`subtle`), so the time taken doesn't tell how much of a
/// guess matched; only a length mismatch answers at once.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(given, expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_answers_loopback_or_the_token() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let loopback6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let remote6: IpAddr = "2001:db8::7".parse().unwrap();
        // No token: loopback only, whatever the header says.
        for ip in [loopback, loopback6, mapped] {
            assert!(admin_allowed(None, ip, None), "{ip}");
        }
        for ip in [remote, remote6] {
            assert!(!admin_allowed(None, ip, None), "{ip}");
            assert!(!admin_allowed(None, ip, Some("Bearer anything")), "{ip}");
        }
        // A token: everyone must present it, loopback included.
        let token = Some("s3cret");
        for ip in [loopback, remote, remote6] {
            assert!(admin_allowed(token, ip, Some("Bearer s3cret")), "{ip}");
            assert!(!admin_allowed(token, ip, None), "{ip}");
            for wrong in [
                "Bearer s3cre",
                "Bearer s3cret!",
                "Bearer ",
                "s3cret",
                "Basic s3cret",
            ] {
                assert!(!admin_allowed(token, ip, Some(wrong)), "{ip} {wrong}");
            }
        }
    }

    #[test]
    fn constant_time_comparison_is_still_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"tok", b"token"));
        assert!(!constant_time_eq(b"token-and-more", b"token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
