//! Outbound HTTP: [`send`], [`get`] and [`post_json`] call other services through the host's
//! `http_send` import, to hosts the module is granted (`allowed_hosts` in `modhost.toml`).
//!
//! The outbound request is a [`Request`] whose path is an absolute URL, the answer a
//! [`Response`] (any status: a `404` from the upstream is an answer, not an error). A refusal or
//! a failure — a host not allowed, a timeout, a body over the size cap, a broken connection,
//! a certificate that does not verify — is an [`Error`] with [`ErrorKind::Outbound`], whose
//! message names the module, the host and the reason.
//!
//! ```
//! use guest::http;
//! use guest::testing;
//!
//! // In `cargo test` the recording host answers from a script, without a network.
//! testing::script_http("https://api.example.org/users/7", guest::Response::text("ada"));
//! let reply = http::get("https://api.example.org/users/7")?;
//! assert_eq!((reply.status(), reply.body_text()), (200, "ada".to_owned()));
//! assert_eq!(testing::take_http_sent()[0].path, "https://api.example.org/users/7");
//!
//! let refused = http::get("https://elsewhere.example/").unwrap_err();
//! assert!(matches!(refused.kind(), guest::ErrorKind::Outbound { .. }));
//! # Ok::<(), guest::Error>(())
//! ```

use binary::{Envelope, OutboundResponse};

use super::{Request, Response};
use crate::error::{Error, ErrorKind};

/// The call name in errors.
const CALL: &str = "http send";

/// Sends `request` — its path an absolute URL such as `https://api.example.org/v1/users?id=7`
/// (a query set with [`Request::with_query`] is appended) — and waits for the answer. Blocks
/// this instance (not the server) until the response, the module's outbound timeout or the
/// running call's deadline. Redirects to allowed hosts are followed by the host.
pub fn send(request: Request) -> Result<Response, Error> {
    let http = request.into_http();
    let url = if http.query.is_empty() {
        http.path.clone()
    } else {
        format!("{}?{}", http.path, http.query)
    };
    let bytes = crate::sys::http_send(&http.encode())
        .map_err(|code| Error::new(CALL, url.clone(), ErrorKind::from_code(code)))?;
    match OutboundResponse::decode(&bytes) {
        Ok(OutboundResponse::Response(response)) => Ok(Response::from(response)),
        Ok(OutboundResponse::Error { kind, message }) => {
            Err(Error::new(CALL, url, ErrorKind::Outbound { kind, message }))
        }
        Err(error) => Err(Error::new(CALL, url, ErrorKind::BadReply(error))),
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send(Request::new("GET", url))
}

/// `POST url` with `value` as a JSON body (`content-type: application/json`).
#[cfg(feature = "json")]
pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(value).map_err(|error| {
        Error::new(
            CALL,
            url,
            ErrorKind::Outbound {
                kind: binary::OutboundErrorKind::Invalid,
                message: format!("the body does not serialise as JSON: {error}"),
            },
        )
    })?;
    send(
        Request::new("POST", url)
            .with_header("content-type", super::APPLICATION_JSON)
            .with_body(body),
    )
}

impl Response {
    /// The body parsed as JSON (of an upstream's answer, say); a `502` [`crate::HttpError`]
    /// naming the problem when it does not parse.
    #[cfg(feature = "json")]
    pub fn read_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::HttpError> {
        serde_json::from_slice(self.body()).map_err(|error| {
            crate::HttpError::new(502, format!("the upstream's JSON does not parse: {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use binary::OutboundErrorKind;

    use super::*;
    use crate::testing;

    #[test]
    fn scripted_answers_and_errors_reach_the_caller_and_calls_are_recorded() {
        testing::reset();
        testing::script_http(
            "http://stub.test/check?name=ada",
            Response::json(&serde_json::json!({"ok": true})),
        );
        testing::script_http_error(
            "http://stub.test/down",
            OutboundErrorKind::Timeout,
            "no response within the outbound timeout of 10 ms",
        );
        let reply =
            send(Request::new("GET", "http://stub.test/check").with_query("name=ada")).unwrap();
        let parsed: serde_json::Value = reply.read_json().unwrap();
        assert_eq!(parsed["ok"], true);
        let error = get("http://stub.test/down").unwrap_err();
        assert_eq!(error.call(), "http send");
        assert_eq!(error.topic(), "http://stub.test/down");
        assert!(matches!(
            error.kind(),
            ErrorKind::Outbound {
                kind: OutboundErrorKind::Timeout,
                ..
            }
        ));
        post_json(
            "http://stub.test/check",
            &serde_json::json!({"name": "ada"}),
        )
        .unwrap_err();
        let sent = testing::take_http_sent();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].path, "http://stub.test/check");
        assert_eq!(sent[0].query, "name=ada");
        assert_eq!(sent[2].method, "POST");
        assert_eq!(sent[2].body, br#"{"name":"ada"}"#);
        assert_eq!(sent[2].header("content-type"), Some("application/json"));
    }
}
