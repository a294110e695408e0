//! [`Error`]: why a host call (publish, subscribe, request, ...) failed; [`HttpError`]: the
//! error a handler returns with `?`, answered as a status and a `{"error": ...}` body.

use std::fmt;

use binary::Header;
use binary::abi::Code;

/// Why a host call failed. The negative codes are [`binary::abi::Code`], listed in
/// `docs/ABI.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Code -1: the host refused the input (a bad topic, an oversized or undecodable message).
    InvalidInput,
    /// Code -2: a limit was hit (too many subscriptions).
    LimitReached,
    /// Code -3: the bus is closed (the server is shutting down).
    BusClosed,
    /// Code -4: the request timed out.
    TimedOut,
    /// Code -5: nobody is subscribed to the request's topic.
    NoSubscriber,
    /// Code -6: every responder's mailbox was full.
    Overloaded,
    /// A negative code this SDK does not know (a newer host).
    Unknown(i32),
    /// The request was answered with an `Error` message; this is its payload, read as UTF-8.
    ErrorReply(String),
    /// The reply the host wrote did not decode as a `Message`.
    BadReply(binary::DecodeError),
    /// A key-value call was refused or failed; the host's message names the module, the
    /// store and the reason.
    Kv {
        /// Why, as the code the host sent.
        kind: binary::KvErrorKind,
        /// The host's explanation.
        message: String,
    },
    /// An outbound HTTP request ([`crate::http::send`]) was refused or got no response; the
    /// host's message names the module, the host and the reason.
    Outbound {
        /// Why, as the code the host sent.
        kind: binary::OutboundErrorKind,
        /// The host's explanation.
        message: String,
    },
    /// The module's own state could not be saved or restored ([`crate::Module::snapshot`],
    /// [`crate::Module::restore`]); the reason, in the module's words.
    State(String),
}

impl ErrorKind {
    /// The kind for a negative code returned by an import.
    pub fn from_code(code: i32) -> ErrorKind {
        match Code::from_i32(code) {
            Some(code) => ErrorKind::from(code),
            None => ErrorKind::Unknown(code),
        }
    }

    /// The import return code of this kind, if it has one.
    pub fn code(&self) -> Option<i32> {
        let code = match self {
            ErrorKind::InvalidInput => Code::Invalid,
            ErrorKind::LimitReached => Code::Limit,
            ErrorKind::BusClosed => Code::Closed,
            ErrorKind::TimedOut => Code::Timeout,
            ErrorKind::NoSubscriber => Code::NoResponders,
            ErrorKind::Overloaded => Code::Busy,
            ErrorKind::Unknown(code) => return Some(*code),
            ErrorKind::ErrorReply(_)
            | ErrorKind::BadReply(_)
            | ErrorKind::Kv { .. }
            | ErrorKind::Outbound { .. }
            | ErrorKind::State(_) => {
                return None;
            }
        };
        Some(code.get())
    }
}

impl From<Code> for ErrorKind {
    fn from(code: Code) -> ErrorKind {
        match code {
            Code::Invalid => ErrorKind::InvalidInput,
            Code::Limit => ErrorKind::LimitReached,
            Code::Closed => ErrorKind::BusClosed,
            Code::Timeout => ErrorKind::TimedOut,
            Code::NoResponders => ErrorKind::NoSubscriber,
            Code::Busy => ErrorKind::Overloaded,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::InvalidInput => {
                write!(f, "refused as invalid input (code {})", Code::Invalid.get())
            }
            ErrorKind::LimitReached => {
                write!(f, "a limit was reached (code {})", Code::Limit.get())
            }
            ErrorKind::BusClosed => write!(f, "the bus is closed (code {})", Code::Closed.get()),
            ErrorKind::TimedOut => write!(f, "timed out (code {})", Code::Timeout.get()),
            ErrorKind::NoSubscriber => write!(
                f,
                "nobody is subscribed (code {})",
                Code::NoResponders.get()
            ),
            ErrorKind::Overloaded => write!(
                f,
                "every responder is overloaded (code {})",
                Code::Busy.get()
            ),
            ErrorKind::Unknown(code) => write!(f, "failed with unknown code {code}"),
            ErrorKind::ErrorReply(reason) => write!(f, "answered with an error: {reason}"),
            ErrorKind::BadReply(error) => write!(f, "the answer did not decode: {error}"),
            ErrorKind::Kv { kind, message } => write!(f, "{} ({message})", kind.name()),
            ErrorKind::Outbound { kind, message } => write!(f, "{} ({message})", kind.name()),
            ErrorKind::State(reason) => f.write_str(reason),
        }
    }
}

/// A failed host call: which call, on which topic, and why.
///
/// Displays like `request "users.get": timed out (code -4)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    call: &'static str,
    topic: String,
    kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(call: &'static str, topic: impl Into<String>, kind: ErrorKind) -> Error {
        Error {
            call,
            topic: topic.into(),
            kind,
        }
    }

    /// A module's own failure to save (`call` = `"snapshot"`) or take over (`"restore"`) its
    /// state during a hot swap, e.g. `Error::state("restore", "unknown state format 3")`.
    pub fn state(call: &'static str, reason: impl Into<String>) -> Error {
        Error::new(call, "", ErrorKind::State(reason.into()))
    }

    /// The call that failed: `"publish"`, `"subscribe"`, `"unsubscribe"`, `"request"`, a
    /// key-value call (`"kv get"`, `"kv set"`, ...), `"http send"`, or `"snapshot"` / `"restore"` for
    /// [`Error::state`].
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The topic (or pattern) the call was about; for a key-value call, the key; for an
    /// outbound HTTP call, the URL.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Why it failed.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ErrorKind::State(_) = self.kind {
            return write!(f, "{}: {}", self.call, self.kind);
        }
        write!(f, "{} \"{}\": {}", self.call, self.topic, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::BadReply(error) => Some(error),
            _ => None,
        }
    }
}

/// The error of an HTTP handler: a status, a message, and optionally extra headers. It answers
/// `status` with the body `{"error": message}` (`content-type: application/json`), the shape
/// of [`Response::json_error`](crate::Response::json_error).
///
/// Every parse error of a [`Request`](crate::Request) (`text`, `json`) is an `HttpError` with
/// status `400`, and every [`std::error::Error`] converts into one with status `500` and the
/// error's `Display` as the message (a host-call [`Error`] reads
/// `request "users.get": timed out (code -4)`). So one handler return type,
/// [`guest::Result<T>`](crate::Result) (`Result<T, HttpError>`), takes `?` on both:
///
/// ```
/// use guest::{HttpError, IntoResponse, Request, Response};
///
/// #[derive(serde::Deserialize)]
/// struct Note { text: String }
///
/// fn add(request: Request) -> guest::Result<Response> {
///     let note: Note = request.json()?; // 400 {"error":"invalid JSON body: ..."}
///     if note.text.is_empty() {
///         return Err(HttpError::new(422, "text must not be empty"));
///     }
///     guest::publish("notes.added", &note.text)?; // 500 {"error":"publish \"notes.added\": ..."}
///     Ok(Response::created())
/// }
///
/// let response = add(Request::new("POST", "").with_body("{")).into_response();
/// assert_eq!(response.status(), 400);
/// let response = add(Request::new("POST", "").with_body(r#"{"text":""}"#)).into_response();
/// assert_eq!(response.body_text(), r#"{"error":"text must not be empty"}"#);
/// ```
///
/// `HttpError` deliberately does not implement `std::error::Error` itself: that is what lets
/// the blanket `From<E: std::error::Error>` exist (as with `anyhow::Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: u16,
    message: String,
    headers: Vec<Header>,
}

impl HttpError {
    /// An error answered with `status` and `{"error": message}`.
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// `400 Bad Request` with `message`.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(400, message)
    }

    /// `404 Not Found` with `message`.
    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(404, message)
    }

    /// `409 Conflict` with `message`.
    pub fn conflict(message: impl Into<String>) -> HttpError {
        HttpError::new(409, message)
    }

    /// `500 Internal Server Error` with `message`.
    pub fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(500, message)
    }

    /// Adds a header to the response (`www-authenticate` on a `401`, `retry-after` on a
    /// `503`); the name is lower-cased.
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> HttpError {
        self.headers
            .push(Header::new(name.to_ascii_lowercase(), value));
        self
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: u16) -> HttpError {
        self.status = status;
        self
    }

    /// The status it is answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message (the `error` field of the body).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra headers.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Takes the parts apart: status, message, headers.
    pub(crate) fn into_parts(self) -> (u16, String, Vec<Header>) {
        (self.status, self.message, self.headers)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

/// Any error becomes a `500` whose message is its `Display` (a host-call [`Error`] included).
impl<E: std::error::Error> From<E> for HttpError {
    fn from(error: E) -> HttpError {
        HttpError::internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntoResponse;

    #[test]
    fn codes_round_trip() {
        for code in Code::ALL {
            let kind = ErrorKind::from_code(code.get());
            assert_eq!(kind, ErrorKind::from(code));
            assert!(!matches!(kind, ErrorKind::Unknown(_)), "{code:?}");
            assert_eq!(kind.code(), Some(code.get()));
            assert!(
                kind.to_string()
                    .ends_with(&format!("(code {})", code.get()))
            );
        }
        assert_eq!(ErrorKind::from_code(-42), ErrorKind::Unknown(-42));
        assert_eq!(ErrorKind::ErrorReply("no".into()).code(), None);
    }

    #[test]
    fn the_message_names_the_call_and_the_topic() {
        let error = Error::new("request", "users.get", ErrorKind::TimedOut);
        assert_eq!(
            error.to_string(),
            "request \"users.get\": timed out (code -4)"
        );
    }

    #[test]
    fn http_errors_are_json_with_their_status_and_headers() {
        let response = HttpError::new(401, "wrong token")
            .with_header("WWW-Authenticate", "Bearer")
            .into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.body_text(), r#"{"error":"wrong token"}"#);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }

    #[test]
    fn host_call_errors_become_500s_naming_the_call() {
        let error: HttpError = Error::new("publish", "a.*", ErrorKind::InvalidInput).into();
        assert_eq!(error.status(), 500);
        assert_eq!(
            error.into_response().body_text(),
            r#"{"error":"publish \"a.*\": refused as invalid input (code -1)"}"#
        );
    }
}
