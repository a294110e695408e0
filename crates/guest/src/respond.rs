//! [`IntoResponse`]: what a handler may return, and [`Json`], a JSON body.

use crate::error::{Error, HttpError};
use crate::http::Response;

/// A value a handler can return: it becomes the [`Response`].
///
/// | type | response |
/// |---|---|
/// | [`Response`] | itself |
/// | `&str`, `String` | `200`, `text/plain; charset=utf-8` |
/// | `()` | `204 No Content` |
/// | [`Json<T>`] | `200`, `application/json` (feature `json`) |
/// | `(u16, T)` | `T`'s response with the status replaced |
/// | `Result<T, E>` | `T`'s or `E`'s response |
/// | [`HttpError`] | its status, `{"error": message}` |
/// | [`Error`] (a failed host call) | `500`, `{"error": "<call> \"<topic>\": <reason>"}` |
///
/// ```
/// use guest::{IntoResponse, Response};
///
/// assert_eq!("hi".into_response().body_text(), "hi");
/// assert_eq!(().into_response().status(), 204);
/// assert_eq!((201, "made").into_response().status(), 201);
/// let failed: Result<Response, guest::HttpError> = Err(guest::HttpError::not_found("no"));
/// assert_eq!(failed.into_response().body_text(), r#"{"error":"no"}"#);
/// ```
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

/// `204 No Content`: a handler that only does something (`Ok(())` from a delete).
impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::no_content()
    }
}

/// `T`'s response with status `self.0`: `(201, Json(user))`.
impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, message, headers) = self.into_parts();
        headers.into_iter().fold(
            Response::json_error(status, &message),
            |response, header| response.with_header(&header.name, header.value),
        )
    }
}

/// A failed host call that reached the client: `500` with `{"error": ...}` naming the call,
/// the topic and the reason, like [`HttpError::from`].
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// A JSON body: `200 OK`, `content-type: application/json`, `value` serialised with
/// serde_json (a value that can't be serialised gives a `500` saying so, as
/// [`Response::with_json`] does). Wrap it for another status: `(201, Json(user))`.
///
/// ```
/// use guest::{IntoResponse, Json};
///
/// let response = (201, Json(serde_json::json!({ "id": 7 }))).into_response();
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.body_text(), r#"{"id":7}"#);
/// assert_eq!(response.header("content-type"), Some("application/json"));
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn text_is_200_plain() {
        for response in ["x".into_response(), String::from("x").into_response()] {
            assert_eq!(response.status(), 200);
            assert_eq!(response.header("content-type"), Some(crate::TEXT_PLAIN));
            assert_eq!(response.body(), b"x");
        }
    }

    #[test]
    fn tuples_set_the_status_and_results_pick_a_side() {
        let response = (418, Response::ok().with_header("x-a", "1")).into_response();
        assert_eq!(
            (response.status(), response.header("x-a")),
            (418, Some("1"))
        );
        let ok: Result<(), Error> = Ok(());
        assert_eq!(ok.into_response().status(), 204);
        let failed: Result<(), Error> = Err(Error::new("request", "t", ErrorKind::TimedOut));
        let response = failed.into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.body_text(),
            r#"{"error":"request \"t\": timed out (code -4)"}"#
        );
    }
}
