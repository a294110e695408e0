//! Calling modules over HTTP: the `/m/{name}[/rest]` route, request and response conversion,
//! the middleware pipeline (`docs/middleware.md`; the rules themselves are parsed in
//! `middleware.rs`), a call that survives a swap, and the statuses a failed call answers with.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use wasi_host::{CallError, CallErrorKind};

use crate::http::{App, Body, collect, text};
use crate::registry::{Registry, valid_name};

pub(crate) async fn module_request(
    app: &App,
    rest: String,
    request: Request<Incoming>,
) -> Response<Body> {
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
    let answer = call_target_envelope(registry, target, request).await?;
    Some(answer.map_or_else(
        |response| response,
        |envelope| from_envelope(target, envelope),
    ))
}

/// [`call_target`] that keeps the module's own answer an envelope (what a call forwarded from
/// another node sends back, so it is not turned into a response and back); a pass or a failed
/// call is the error response.
pub(crate) async fn call_target_envelope(
    registry: &Registry,
    target: &str,
    request: binary::HttpRequest,
) -> Option<Result<binary::HttpResponse, Response<Body>>> {
    match call(registry, target, request).await {
        Ok(response) if is_pass(&response) => Some(Err(text(
            StatusCode::NOT_FOUND,
            format!("module \"{target}\" passed the request and nothing else answers it"),
        ))),
        Ok(response) => Some(Ok(response)),
        Err(CallError {
            kind: CallErrorKind::Closed,
            ..
        }) => None,
        Err(error) => Some(Err(call_error_response(&error))),
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
