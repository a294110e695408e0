//! [`HttpRequest`] and [`HttpResponse`]: the full HTTP exchange that crosses the host/guest
//! boundary for `/m/{name}[/rest]`.

use crate::codec::{Cursor, Envelope, sealed};
use crate::error::DecodeError;

/// One HTTP header. Names are lower-case as the server passes them; values are bytes because
/// HTTP allows non-UTF-8 values (see [`Header::value_str`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Header {
    /// The header name, e.g. `content-type`.
    pub name: String,
    /// The raw header value.
    pub value: Vec<u8>,
}

impl Header {
    /// A header from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    fn encoded_len(&self) -> usize {
        8 + self.name.len() + 8 + self.value.len()
    }

    fn decode(cursor: &mut Cursor<'_>) -> Result<Header, DecodeError> {
        let name = cursor.str("header name")?.to_owned();
        let value = cursor.bytes("header value")?.to_vec();
        Ok(Header { name, value })
    }
}

/// Finds the first header called `name` (ASCII case-insensitive).
fn find<'h>(headers: &'h [Header], name: &str) -> Option<&'h Header> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
}

fn decode_headers(cursor: &mut Cursor<'_>) -> Result<Vec<Header>, DecodeError> {
    // A header is at least two empty length prefixes: 16 bytes.
    let count = cursor.len("headers", 16)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push(Header::decode(cursor)?);
    }
    Ok(headers)
}

fn headers_len(headers: &[Header]) -> usize {
    8 + headers.iter().map(Header::encoded_len).sum::<usize>()
}

/// An HTTP request for a module.
///
/// Layout: `method`, `path`, `query` (each u64 length + UTF-8), `headers` (u64 count, then
/// per header name and value, each u64 length + bytes), `body` (u64 length + bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The part of the URL path after `/m/{name}`: `""` for `/m/users`, `"/7"` for
    /// `/m/users/7`.
    pub path: String,
    /// The query string without the `?`, still percent-encoded; `""` when there is none.
    pub query: String,
    /// The request headers, in the order received.
    pub headers: Vec<Header>,
    /// The request body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A request with no query, headers or body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            ..HttpRequest::default()
        }
    }

    /// The first header called `name` (ASCII case-insensitive), as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name).and_then(Header::value_str)
    }
}

impl Envelope for HttpRequest {
    const NAME: &'static str = "HttpRequest";

    fn encoded_len(&self) -> usize {
        8 + self.method.len()
            + 8
            + self.path.len()
            + 8
            + self.query.len()
            + headers_len(&self.headers)
            + 8
            + self.body.len()
    }
}

impl sealed::Fields for HttpRequest {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<HttpRequest, DecodeError> {
        let method = cursor.str("method")?.to_owned();
        let path = cursor.str("path")?.to_owned();
        let query = cursor.str("query")?.to_owned();
        let headers = decode_headers(cursor)?;
        let body = cursor.bytes("body")?.to_vec();
        Ok(HttpRequest {
            method,
            path,
            query,
            headers,
            body,
        })
    }
}

/// A module's HTTP response.
///
/// Layout: `status` (u16), `headers` (as in [`HttpRequest`]), `body` (u64 length + bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct HttpResponse {
    /// The status code. The server rejects values outside `100..=999`.
    pub status: u16,
    /// The response headers.
    pub headers: Vec<Header>,
    /// The response body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a status and a body, and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The first header called `name` (ASCII case-insensitive), as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name).and_then(Header::value_str)
    }
}

impl Envelope for HttpResponse {
    const NAME: &'static str = "HttpResponse";

    fn encoded_len(&self) -> usize {
        2 + headers_len(&self.headers) + 8 + self.body.len()
    }
}

impl sealed::Fields for HttpResponse {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<HttpResponse, DecodeError> {
        let status = cursor.u16("status")?;
        let headers = decode_headers(cursor)?;
        let body = cursor.bytes("body")?.to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
