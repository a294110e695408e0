//! The HTTP front: routing, request and response conversion, middleware, admin endpoints, and
//! the WebSocket upgrade.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use wasi_host::{CallError, CallErrorKind};

use crate::config::ServerConfig;
use crate::registry::{Registry, ReloadOutcome, valid_name};
use crate::ws::{Hub, valid_topic};

/// The body type of every response.
pub type Body = Full<Bytes>;

/// What the server answers with: a whole body, or the status page's event stream.
pub(crate) type ServedBody = http_body_util::Either<Body, crate::status::EventStream>;

/// A route an application adds beside `/m/` and `/ws`: called with the whole request (body
/// collected, up to the body limit).
pub type RouteHandler = Arc<
    dyn Fn(
            Request<Bytes>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

pub(crate) struct App {
    pub registry: Arc<Registry>,
    pub hub: Arc<Hub>,
    pub config: Arc<ServerConfig>,
    /// The status page's live snapshots.
    pub feed: crate::status::Feed,
    /// `(path prefix, handler)`, longest prefix first.
    pub routes: Vec<(String, RouteHandler)>,
    /// Cluster mode's bridge (`None` for a single process).
    pub cluster: Option<Arc<cluster::Cluster>>,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}").into_bytes());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The first value of `key` in a query string, decoded by `binary::url`'s rule for queries
/// (`+` is a space).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    binary::url::query_pairs(query?)
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

pub(crate) async fn serve(
    app: Arc<App>,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ServedBody>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/_admin/events" {
        return Ok(admin_events(&app, remote, &request));
    }
    let response = if path == "/healthz" {
        text(StatusCode::OK, "ok")
    } else if let Some(rest) = path.strip_prefix("/m/") {
        module_request(&app, rest.to_owned(), request).await
    } else if path == "/ws" {
        websocket(&app, request)
    } else if let Some(admin) = path.strip_prefix("/_admin/") {
        admin_request(&app, remote, admin.to_owned(), request).await
    } else if path == "/_admin" {
        admin_request(&app, remote, String::new(), request).await
    } else if let Some(handler) = app
        .routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, handler)| handler.clone())
    {
        match collect(&app.config, request).await {
            Ok(request) => handler(request).await,
            Err(response) => response,
        }
    } else {
        text(StatusCode::NOT_FOUND, format!("no route for {path}"))
    };
    Ok(response.map(http_body_util::Either::Left))
}

/// Collects the body up to the limit: 413 beyond it (checked against `content-length` first).
async fn collect(
    config: &ServerConfig,
    request: Request<Incoming>,
) -> Result<Request<Bytes>, Response<Body>> {
    let limit = config.http.max_body_bytes;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Request::from_parts(parts, collected.to_bytes())),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(error) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {error}"),
        )),
    }
}

fn to_envelope(request: &Request<Bytes>, sub_path: &str) -> binary::HttpRequest {
    binary::HttpRequest {
        method: request.method().as_str().to_owned(),
        path: sub_path.to_owned(),
        query: request.uri().query().unwrap_or("").to_owned(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| binary::Header::new(name.as_str(), value.as_bytes()))
            .collect(),
        body: request.body().to_vec(),
    }
}

pub(crate) fn from_envelope(module: &str, response: binary::HttpResponse) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        tracing::warn!(module = %module, "module answered with invalid status {}", response.status);
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "module \"{module}\" answered with invalid status {}",
                response.status
            ),
        );
    };
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = status;
    for binary::Header { name, value } in response.headers {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            (Ok(name), Ok(value)) => {
                out.headers_mut().append(name, value);
            }
            _ => tracing::warn!(module = %module, "dropping invalid response header {name:?}"),
        }
    }
    out
}

fn call_error_response(error: &CallError) -> Response<Body> {
    let module = error.module();
    match error.kind {
        CallErrorKind::Overloaded { .. } => {
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("module \"{module}\" is overloaded; retry shortly"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        CallErrorKind::NotExported { .. } => text(
            StatusCode::NOT_FOUND,
            format!("module \"{module}\" does not handle HTTP requests"),
        ),
        CallErrorKind::TooLarge {
            what: "request",
            limit,
            ..
        } => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request too large for module \"{module}\" (limit {limit} bytes)"),
        ),
        ref other => {
            tracing::error!(module = %module, "request failed: {error}");
            let kind = match other {
                CallErrorKind::Trap { .. } => "trapped",
                CallErrorKind::Deadline { .. } => "exceeded its deadline",
                CallErrorKind::BadPointer { .. } | CallErrorKind::Abi { .. } => "broke the ABI",
                CallErrorKind::TooLarge { .. } => "answered over the response size limit",
                _ => "failed",
            };
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("module \"{module}\" {kind}; details are in the server log"),
            )
        }
    }
}

/// Calls the current version of `name`; a version closed by a swap between picking it and
/// queueing the call hands the request back and it is retried on the version that replaced
/// it (the request is moved, not cloned, on every attempt). While a swap with a state handoff
/// holds the module's requests, the call waits for the hold to end (`Registry::reload`).
async fn call(
    registry: &Registry,
    name: &str,
    mut request: binary::HttpRequest,
) -> Result<binary::HttpResponse, CallError> {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    while attempts < 6 {
        let Some(entry) = registry.get(name) else {
            break;
        };
        let pending = match entry.gate().enter() {
            // Queued on the current version before the gate is left (`try_handle` queues
            // eagerly), so a hold that starts later never misses this call.
            Some(_entered) => entry.current().try_handle(request),
            None => {
                if let Err(held) = entry.gate().wait().await {
                    return Err(CallError::new(
                        name,
                        "handle",
                        CallErrorKind::Overloaded { capacity: held },
                    ));
                }
                continue;
            }
        };
        attempts += 1;
        match pending.await {
            Ok(result) => {
                registry.latencies().observe(name, started.elapsed());
                return result;
            }
            Err(returned) => request = returned,
        }
    }
    Err(CallError::new(name, "handle", CallErrorKind::Closed))
}

async fn module_request(app: &App, rest: String, request: Request<Incoming>) -> Response<Body> {
    let (name, sub_path) = match rest.find('/') {
        Some(slash) => (rest[..slash].to_owned(), rest[slash..].to_owned()),
        None => (rest, String::new()),
    };
    // In cluster mode a module not loaded here may be on another node.
    if !valid_name(&name) || (app.registry.get(&name).is_none() && app.cluster.is_none()) {
        return text(StatusCode::NOT_FOUND, format!("no module named \"{name}\""));
    }
    // One deadline for the whole request: a body trickled in byte by byte (slow-loris on
    // the body) is cut off just like a module that takes too long.
    let timeout = app.config.http.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let request = match tokio::time::timeout_at(deadline, collect(&app.config, request)).await {
        Ok(Ok(request)) => request,
        Ok(Err(response)) => return response,
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {timeout:?}"),
            );
        }
    };
    let envelope = to_envelope(&request, &sub_path);
    let remote = app.cluster.as_deref().map(|cluster| (cluster, deadline));
    match tokio::time::timeout_at(deadline, pipeline(&app.registry, &name, envelope, remote)).await
    {
        Ok(response) => response,
        Err(_) => timed_out(&name, timeout),
    }
}

/// `504`: the module did not answer within the request's deadline.
pub(crate) fn timed_out(module: &str, timeout: std::time::Duration) -> Response<Body> {
    text(
        StatusCode::GATEWAY_TIMEOUT,
        format!("module \"{module}\" did not answer within {timeout:?}"),
    )
}

fn is_pass(response: &binary::HttpResponse) -> bool {
    response.header(binary::header::PASS) == Some(binary::header::PASS_VALUE)
}

/// Middlewares in name order, then the target (`docs/middleware.md`). Client-sent
/// `x-modhost-*` headers are dropped first; every stage sees `x-modhost-target`; a passing
/// middleware's `x-modhost-set-<name>` headers set `<name>` on the request for later stages.
/// In cluster mode (`remote`), a target not loaded here is called on a node that has it,
/// within what is left until the deadline; middlewares always run here.
async fn pipeline(
    registry: &Registry,
    target: &str,
    mut request: binary::HttpRequest,
    remote: Option<(&cluster::Cluster, tokio::time::Instant)>,
) -> Response<Body> {
    request
        .headers
        .retain(|header| !binary::header::is_reserved(&header.name));
    request
        .headers
        .push(binary::Header::new(binary::header::TARGET, target));
    for middleware in registry.middlewares_for(target) {
        match call(registry, middleware.name(), request.clone()).await {
            Ok(response) if is_pass(&response) => {
                for header in response.headers {
                    let Some(set) = binary::header::set_target(&header.name) else {
                        continue;
                    };
                    request
                        .headers
                        .retain(|existing| !existing.name.eq_ignore_ascii_case(&set));
                    request.headers.push(binary::Header::new(set, header.value));
                }
            }
            Ok(response) => return from_envelope(middleware.name(), response),
            Err(CallError {
                kind: CallErrorKind::NotExported { .. },
                ..
            }) => continue,
            Err(error) => return call_error_response(&error),
        }
    }
    if let Some((cluster, deadline)) = remote
        && registry.get(target).is_none()
    {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome = cluster.forward(target, &request, timeout).await;
        return crate::clustered::forwarded(target, outcome, timeout);
    }
    match call_target(registry, target, request).await {
        Some(response) => response,
        None => text(
            StatusCode::NOT_FOUND,
            format!("no module named \"{target}\""),
        ),
    }
}

/// Calls the target module's `handle` here, after the middlewares; `None` when it is not
/// loaded here (any more).
pub(crate) async fn call_target(
    registry: &Registry,
    target: &str,
    request: binary::HttpRequest,
) -> Option<Response<Body>> {
    match call(registry, target, request).await {
        Ok(response) if is_pass(&response) => Some(text(
            StatusCode::NOT_FOUND,
            format!("module \"{target}\" passed the request and nothing else answers it"),
        )),
        Ok(response) => Some(from_envelope(target, response)),
        Err(CallError {
            kind: CallErrorKind::Closed,
            ..
        }) => None,
        Err(error) => Some(call_error_response(&error)),
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

/// Compares without an early exit, so the time taken doesn't tell how much of a guess matched.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

/// `GET /_admin/events`: the status page's snapshots as Server-Sent Events, under the admin
/// policy.
fn admin_events(
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

async fn admin_request(
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
                crate::metrics::render(&app.registry, &app.hub, app.registry.bus())
                    + &crate::clustered::metrics(app.cluster.as_deref()),
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

fn websocket(app: &App, mut request: Request<Incoming>) -> Response<Body> {
    let Some(topic) = query_param(request.uri().query(), "topic") else {
        return text(StatusCode::BAD_REQUEST, "missing topic: use /ws?topic=NAME");
    };
    if !valid_topic(&topic) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid topic {topic:?}: 1-256 visible ASCII characters, no '*'"),
        );
    }
    let headers = request.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|value| value == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake: missing sec-websocket-key",
        );
    };
    if request.method() != Method::GET || !is_upgrade || !version_ok {
        return text(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake (GET, upgrade: websocket, version 13)",
        );
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let hub = app.hub.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                hub.serve(hyper_util::rt::TokioIo::new(upgraded), topic)
                    .await
            }
            Err(error) => tracing::debug!("WebSocket upgrade failed: {error}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(
            query_param(Some("x=1&topic=chat%2Fone"), "topic").as_deref(),
            Some("chat/one")
        );
        assert_eq!(query_param(Some("topic"), "topic").as_deref(), Some(""));
        assert_eq!(query_param(None, "topic"), None);
    }

    /// `/ws?topic=` decodes as a query, by the vectors the guest SDK is also tested with.
    #[test]
    fn query_components_follow_the_shared_vectors() {
        let vectors = binary::vectors::percent().filter(|(kind, _, _)| *kind == "query");
        let mut checked = 0;
        for (_, encoded, decoded) in vectors {
            let query = format!("x=1&topic={encoded}");
            assert_eq!(
                query_param(Some(&query), "topic").as_deref(),
                Some(decoded),
                "{encoded:?}"
            );
            checked += 1;
        }
        assert!(checked > 5, "{checked}");
    }

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
