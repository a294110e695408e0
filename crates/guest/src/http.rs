//! [`Request`] and [`Response`]: typed helpers over `binary::HttpRequest` / `HttpResponse`;
//! and outbound HTTP ([`send`], [`get`], [`post_json`]) to granted hosts.

use std::fmt;

use binary::{Header, HttpRequest, HttpResponse};

use crate::error::HttpError;
use crate::middleware;
use crate::query::parse_query;
use crate::router::Params;

mod client;
#[cfg(feature = "json")]
pub use client::post_json;
pub use client::{get, send};

/// `content-type` of [`Response::with_text`].
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// `content-type` of [`Response::with_json`].
pub const APPLICATION_JSON: &str = "application/json";

/// An HTTP request for this module: the `binary::HttpRequest` the host passed in, plus the
/// path parameters a [`crate::Router`] matched.
///
/// `path` is the part after `/m/{name}`: `""` for `/m/users`, `"/7"` for `/m/users/7`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    http: HttpRequest,
    params: Params,
}

impl Request {
    /// A request with no query, headers or body (for tests; the host builds the real ones).
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Request {
        Request::from(HttpRequest::new(method, path))
    }

    /// Sets the raw query string (without `?`, still percent-encoded).
    pub fn with_query(mut self, query: impl Into<String>) -> Request {
        self.http.query = query.into();
        self
    }

    /// Adds a header (names are lower-case on the wire).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Request {
        self.http
            .headers
            .push(Header::new(name.to_ascii_lowercase(), value));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.http.body = body.into();
        self
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        &self.http.method
    }

    /// The sub-path after `/m/{name}`, as received (`""` or starting with `/`).
    pub fn path(&self) -> &str {
        &self.http.path
    }

    /// The raw query string: without `?`, still percent-encoded, `""` when absent.
    pub fn raw_query(&self) -> &str {
        &self.http.query
    }

    /// The first value of query parameter `name`, decoded (`+` is a space).
    pub fn query(&self, name: &str) -> Option<String> {
        parse_query(&self.http.query)
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Every query parameter, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.http.query)
    }

    /// The first header called `name` (ASCII case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.http.header(name)
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> &[Header] {
        &self.http.headers
    }

    /// The token of an `authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|token| !token.is_empty())
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.http.body
    }

    /// The body as UTF-8 text, or a `400` [`HttpError`] saying it isn't (`?` in a handler
    /// answers it).
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.http.body)
            .map_err(|_| HttpError::bad_request("the body is not UTF-8 text"))
    }

    /// The body parsed as JSON, or a `400` [`HttpError`] saying why not, answered as
    /// `{"error": "invalid JSON body: ..."}` (`?` in a handler answers it).
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug)]
    /// struct NewUser { name: String }
    ///
    /// let request = guest::Request::new("POST", "").with_body(r#"{"name":"Ada"}"#);
    /// let user: NewUser = request.json()?;
    /// assert_eq!(user.name, "Ada");
    ///
    /// let broken = guest::Request::new("POST", "").with_body("{");
    /// assert_eq!(broken.json::<NewUser>().unwrap_err().status(), 400);
    /// # Ok::<(), guest::HttpError>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.http.body)
            .map_err(|error| HttpError::bad_request(format!("invalid JSON body: {error}")))
    }

    /// The path parameter `name` matched by a [`crate::Router`] (`{id}` in `/{id}`), decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// Every path parameter matched by the router.
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub(crate) fn set_params(&mut self, params: Params) {
        self.params = params;
    }

    /// For a middleware: the module the request is on its way to (`x-modhost-target`, set by
    /// the server; see [`crate::middleware`]).
    pub fn target(&self) -> Option<&str> {
        self.header(binary::header::TARGET)
    }

    /// The underlying envelope.
    pub fn as_http(&self) -> &HttpRequest {
        &self.http
    }

    /// Unwraps the underlying envelope.
    pub fn into_http(self) -> HttpRequest {
        self.http
    }
}

impl From<HttpRequest> for Request {
    fn from(http: HttpRequest) -> Request {
        Request {
            http,
            params: Params::default(),
        }
    }
}

/// An HTTP response: status constructors, then `with_*` builders, each taking `self` and
/// returning it changed.
///
/// ```
/// use guest::Response;
///
/// let response = Response::created()
///     .with_header("location", "/m/users/7")
///     .with_text("created");
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// assert_eq!(response.body(), b"created");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    http: HttpResponse,
}

impl Response {
    /// An empty response with `status`. The server answers 500 for a status outside
    /// `100..=999`.
    pub fn new(status: u16) -> Response {
        Response {
            http: HttpResponse::new(status, Vec::new()),
        }
    }

    /// `200 OK`, empty.
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// `201 Created`, empty.
    pub fn created() -> Response {
        Response::new(201)
    }

    /// `202 Accepted`, empty.
    pub fn accepted() -> Response {
        Response::new(202)
    }

    /// `204 No Content`.
    pub fn no_content() -> Response {
        Response::new(204)
    }

    /// `400 Bad Request`, empty.
    pub fn bad_request() -> Response {
        Response::new(400)
    }

    /// `401 Unauthorized`, empty.
    pub fn unauthorized() -> Response {
        Response::new(401)
    }

    /// `403 Forbidden`, empty.
    pub fn forbidden() -> Response {
        Response::new(403)
    }

    /// `404 Not Found`, empty.
    pub fn not_found() -> Response {
        Response::new(404)
    }

    /// `405 Method Not Allowed`, empty (add an `allow` header).
    pub fn method_not_allowed() -> Response {
        Response::new(405)
    }

    /// `409 Conflict`, empty.
    pub fn conflict() -> Response {
        Response::new(409)
    }

    /// `500 Internal Server Error`, empty.
    pub fn internal_error() -> Response {
        Response::new(500)
    }

    /// `503 Service Unavailable`, empty.
    pub fn service_unavailable() -> Response {
        Response::new(503)
    }

    /// `200 OK` with a text body.
    pub fn text(body: impl Into<String>) -> Response {
        Response::ok().with_text(body)
    }

    /// `200 OK` with `value` as a JSON body.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response {
        Response::ok().with_json(value)
    }

    /// A JSON error body `{"error": message}` with `status`: the shape of every error this
    /// SDK answers ([`HttpError`]). Needs no feature: the one string is escaped here, as
    /// serde_json would.
    ///
    /// ```
    /// let response = guest::Response::json_error(400, "name must not be empty");
    /// assert_eq!(response.body(), br#"{"error":"name must not be empty"}"#);
    /// ```
    pub fn json_error(status: u16, message: &str) -> Response {
        let mut body = String::with_capacity(message.len() + 12);
        body.push_str("{\"error\":");
        push_json_string(&mut body, message);
        body.push('}');
        Response::new(status)
            .with_replaced_header("content-type", APPLICATION_JSON)
            .with_body(body)
    }

    /// For a middleware: let the request go on to the next middleware or the target module.
    /// See [`crate::middleware`] for the convention the server follows.
    ///
    /// ```
    /// let pass = guest::Response::pass().with_request_header("x-user", "ada");
    /// assert!(pass.is_pass());
    /// assert_eq!(pass.header("x-modhost-set-x-user"), Some("ada"));
    /// ```
    pub fn pass() -> Response {
        Response::new(middleware::PASS_STATUS)
            .with_header(binary::header::PASS, binary::header::PASS_VALUE)
    }

    /// Whether this is a [`Response::pass`].
    pub fn is_pass(&self) -> bool {
        self.header(binary::header::PASS) == Some(binary::header::PASS_VALUE)
    }

    /// On a [`Response::pass`]: asks the server to set request header `name` to `value` for
    /// the stages after this middleware (replacing any value it had). Names starting with
    /// `x-modhost-` are reserved and ignored by the server.
    pub fn with_request_header(self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.with_header(&binary::header::set_header_name(name), value)
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.http.status = status;
        self
    }

    /// Adds a header (the name is lower-cased). Headers may repeat (`set-cookie`).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.http
            .headers
            .push(Header::new(name.to_ascii_lowercase(), value));
        self
    }

    /// Replaces every header called `name` (ASCII case-insensitive) with one header.
    pub fn with_replaced_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.http
            .headers
            .retain(|header| !header.name.eq_ignore_ascii_case(name));
        self.with_header(name, value)
    }

    /// Sets the body, leaving the headers alone.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.http.body = body.into();
        self
    }

    /// Sets a text body and `content-type: text/plain; charset=utf-8`.
    pub fn with_text(self, body: impl Into<String>) -> Self {
        self.with_replaced_header("content-type", TEXT_PLAIN)
            .with_body(body.into().into_bytes())
    }

    /// Sets `value` as a JSON body and `content-type: application/json`. A value that can't
    /// be serialised (a map with non-string keys) gives a `500` saying so instead.
    #[cfg(feature = "json")]
    pub fn with_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self
                .with_replaced_header("content-type", APPLICATION_JSON)
                .with_body(body),
            Err(error) => {
                Response::internal_error().with_text(format!("serialising the response: {error}"))
            }
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.http.status
    }

    /// The first header called `name` (ASCII case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.http.header(name)
    }

    /// Every header.
    pub fn headers(&self) -> &[Header] {
        &self.http.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.http.body
    }

    /// The body as text (lossy), handy in tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.http.body).into_owned()
    }

    /// The underlying envelope.
    pub fn as_http(&self) -> &HttpResponse {
        &self.http
    }

    /// Unwraps the underlying envelope.
    pub fn into_http(self) -> HttpResponse {
        self.http
    }
}

/// Appends `text` to `out` as a JSON string literal, escaped exactly as serde_json does: `"`,
/// `\` and the control characters below U+0020 (`\n` where JSON has a short form,
/// `\u00XX` in lower-case hex otherwise); everything else verbatim.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

impl From<HttpResponse> for Response {
    fn from(http: HttpResponse) -> Response {
        Response { http }
    }
}

impl From<Response> for HttpResponse {
    fn from(response: Response) -> HttpResponse {
        response.http
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .http
            .headers
            .iter()
            .map(|header| {
                (
                    header.name.as_str(),
                    String::from_utf8_lossy(&header.value).into_owned(),
                )
            })
            .collect();
        f.debug_struct("Response")
            .field("status", &self.http.status)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.http.body))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accessors_read_the_envelope() {
        let request = Request::new("GET", "/7")
            .with_query("q=caf%C3%A9&n=1&n=2")
            .with_header("Authorization", "Bearer  s3cret ")
            .with_body("hi");
        assert_eq!((request.method(), request.path()), ("GET", "/7"));
        assert_eq!(request.query("q").as_deref(), Some("café"));
        assert_eq!(request.query("n").as_deref(), Some("1"));
        assert_eq!(request.query("missing"), None);
        assert_eq!(request.query_pairs().len(), 3);
        assert_eq!(request.header("AUTHORIZATION"), Some("Bearer  s3cret "));
        assert_eq!(request.bearer_token(), Some("s3cret"));
        assert_eq!(request.text().ok(), Some("hi"));
        assert_eq!(request.target(), None);
    }

    #[test]
    fn bearer_tokens_need_the_scheme_and_a_token() {
        let with = |value: &str| Request::new("GET", "").with_header("authorization", value);
        assert_eq!(with("bearer abc").bearer_token(), Some("abc"));
        assert_eq!(with("Basic abc").bearer_token(), None);
        assert_eq!(with("Bearer").bearer_token(), None);
        assert_eq!(with("Bearer   ").bearer_token(), None);
        assert_eq!(Request::new("GET", "").bearer_token(), None);
    }

    #[test]
    fn a_non_utf8_body_is_a_400() {
        let request = Request::new("POST", "").with_body(vec![0xff, 0xfe]);
        assert_eq!(request.text().unwrap_err().status(), 400);
    }

    #[test]
    fn text_replaces_the_content_type() {
        let response = Response::ok()
            .with_header("content-type", "application/octet-stream")
            .with_text("x");
        let types: Vec<_> = response
            .headers()
            .iter()
            .filter(|header| header.name == "content-type")
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(response.header("content-type"), Some(TEXT_PLAIN));
    }

    #[test]
    fn pass_is_recognised_only_with_the_header() {
        assert!(Response::pass().is_pass());
        assert!(!Response::new(middleware::PASS_STATUS).is_pass());
        let pass = Response::pass().with_request_header("X-User", "ada");
        assert_eq!(pass.header("x-modhost-set-x-user"), Some("ada"));
    }

    /// What the SDK writes is what the server reads: both go through `binary::header`.
    #[test]
    fn pass_headers_read_back_with_the_servers_rules() {
        let pass = Response::pass()
            .with_request_header("X-Request-Id", "7")
            .with_request_header("x-modhost-target", "forged");
        let http = pass.into_http();
        assert!(
            http.headers
                .iter()
                .all(|header| binary::header::is_reserved(&header.name))
        );
        assert_eq!(
            http.header(binary::header::PASS),
            Some(binary::header::PASS_VALUE)
        );
        let sets: Vec<String> = http
            .headers
            .iter()
            .filter_map(|header| binary::header::set_target(&header.name))
            .collect();
        assert_eq!(sets, ["x-request-id"], "a reserved name is never set");
        let request = Request::new("GET", "").with_header(binary::header::TARGET, "users");
        assert_eq!(request.target(), Some("users"));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_error_escapes_like_serde_json() {
        let mut every: String = (0_u8..0x80).map(char::from).collect();
        every.push_str("é\u{2028}\u{1F600}\u{7f}");
        for message in ["", "plain", "say \"hi\" \\ bye", every.as_str()] {
            let expected =
                serde_json::to_string(&serde_json::json!({ "error": message })).unwrap_or_default();
            assert_eq!(Response::json_error(400, message).body_text(), expected);
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_bodies_round_trip_and_errors_are_400_json() {
        use crate::IntoResponse;

        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct User {
            id: u32,
            name: String,
        }
        let user = User {
            id: 7,
            name: "Ada".into(),
        };
        let response = Response::created().with_json(&user);
        assert_eq!(response.status(), 201);
        assert_eq!(response.header("content-type"), Some(APPLICATION_JSON));
        let request = Request::new("POST", "").with_body(response.body().to_vec());
        assert_eq!(request.json::<User>().unwrap(), user);

        let error = Request::new("POST", "")
            .with_body(r#"{"id":"x"}"#)
            .json::<User>()
            .unwrap_err()
            .into_response();
        assert_eq!(error.status(), 400);
        assert_eq!(error.header("content-type"), Some(APPLICATION_JSON));
        assert!(
            error
                .body_text()
                .starts_with(r#"{"error":"invalid JSON body: "#)
        );

        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        assert_eq!(Response::json(&bad).status(), 500);
    }
}
