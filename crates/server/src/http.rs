//! The HTTP front: the body types, dispatch of each request to its route (`/m/` in
//! `pipeline.rs`, `/_admin` in `admin.rs`, `/ws` in `ws.rs`, application routes), and the
//! body limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::config::ServerConfig;
use crate::registry::Registry;
use crate::ws::Hub;

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

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
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
pub(crate) fn query_param(query: Option<&str>, key: &str) -> Option<String> {
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
        return Ok(crate::admin::admin_events(&app, remote, &request));
    }
    let response = if path == "/healthz" {
        text(StatusCode::OK, "ok")
    } else if let Some(rest) = path.strip_prefix("/m/") {
        crate::pipeline::module_request(&app, rest.to_owned(), request).await
    } else if path == "/ws" {
        crate::ws::upgrade(&app, request)
    } else if let Some(admin) = path.strip_prefix("/_admin/") {
        crate::admin::admin_request(&app, remote, admin.to_owned(), request).await
    } else if path == "/_admin" {
        crate::admin::admin_request(&app, remote, String::new(), request).await
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
pub(crate) async fn collect(
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
}
