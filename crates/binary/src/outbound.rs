//! [`OutboundResponse`]: the answer of the `http_send` import (a module's outbound HTTP
//! request), and [`OutboundErrorKind`], the outbound error codes both sides share.

use crate::codec::{Cursor, Envelope, sealed};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::http::HttpResponse;

/// What the host answers to an outbound request: the upstream's response, or why there is
/// none.
///
/// Layout: a `u32` tag, then tag 0: an [`HttpResponse`]'s fields; tag 1: `kind` (u32, an
/// [`OutboundErrorKind`] code) and `message` (u64 length + UTF-8).
///
/// ```
/// use binary::{Envelope, HttpResponse, OutboundErrorKind, OutboundResponse};
///
/// let denied = OutboundResponse::error(OutboundErrorKind::Denied, "host \"evil.test\" is not allowed");
/// assert_eq!(OutboundResponse::decode(&denied.encode())?, denied);
/// let ok = OutboundResponse::Response(HttpResponse::new(200, "hi"));
/// assert_eq!(OutboundResponse::decode(&ok.encode())?, ok);
/// # Ok::<(), binary::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum OutboundResponse {
    /// Tag 0: the upstream answered (any status, redirects already followed).
    Response(HttpResponse),
    /// Tag 1: no response: the request was refused or failed. Nothing more was sent.
    Error {
        /// Why, as a code both sides share.
        kind: OutboundErrorKind,
        /// A sentence naming the module, the host and the reason.
        message: String,
    },
}

impl OutboundResponse {
    /// An error answer.
    pub fn error(kind: OutboundErrorKind, message: impl Into<String>) -> OutboundResponse {
        OutboundResponse::Error {
            kind,
            message: message.into(),
        }
    }
}

/// Why an outbound request got no response. Encoded as a `u32` (the discriminant below); a
/// code this version does not know decodes as [`OutboundErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutboundErrorKind {
    /// 1: the request is malformed: a URL that does not parse or is not absolute, a scheme
    /// other than `http`/`https`, a bad method or header.
    Invalid = 1,
    /// 2: the module may not reach the host: not in its `allowed_hosts`, a redirect to a host
    /// that is not, or a name that resolves to a loopback or private address nobody listed.
    Denied = 2,
    /// 3: no complete response in time: the connect timeout, the request timeout or the
    /// calling export's own deadline.
    Timeout = 3,
    /// 4: the response is larger than the module may receive.
    TooLarge = 4,
    /// 5: a limit of the module: too many outbound requests at once or in one call, too many
    /// redirects.
    Limit = 5,
    /// 6: the host name does not resolve, or the connection was refused or reset.
    Connect = 6,
    /// 7: the TLS handshake failed (a certificate that does not verify, say).
    Tls = 7,
    /// 8: the upstream broke HTTP (a malformed response, a body cut short).
    Protocol = 8,
    /// 9: the host offers no outbound HTTP.
    Unavailable = 9,
    /// 0, or a code this version does not know.
    Other = 0,
}

impl OutboundErrorKind {
    /// Every kind, in code order (`Other` first).
    pub const ALL: [OutboundErrorKind; 10] = [
        OutboundErrorKind::Other,
        OutboundErrorKind::Invalid,
        OutboundErrorKind::Denied,
        OutboundErrorKind::Timeout,
        OutboundErrorKind::TooLarge,
        OutboundErrorKind::Limit,
        OutboundErrorKind::Connect,
        OutboundErrorKind::Tls,
        OutboundErrorKind::Protocol,
        OutboundErrorKind::Unavailable,
    ];

    /// The kind for a wire code; unknown codes are [`OutboundErrorKind::Other`].
    pub fn from_code(code: u32) -> OutboundErrorKind {
        OutboundErrorKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
            .unwrap_or(OutboundErrorKind::Other)
    }

    /// The wire code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// A short lowercase name, for metrics labels: `invalid`, `denied`, `timeout`, ...
    pub fn name(self) -> &'static str {
        match self {
            OutboundErrorKind::Invalid => "invalid",
            OutboundErrorKind::Denied => "denied",
            OutboundErrorKind::Timeout => "timeout",
            OutboundErrorKind::TooLarge => "too_large",
            OutboundErrorKind::Limit => "limit",
            OutboundErrorKind::Connect => "connect",
            OutboundErrorKind::Tls => "tls",
            OutboundErrorKind::Protocol => "protocol",
            OutboundErrorKind::Unavailable => "unavailable",
            OutboundErrorKind::Other => "other",
        }
    }
}

impl<Context> bincode::Decode<Context> for OutboundErrorKind {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(OutboundErrorKind::from_code(<u32 as bincode::Decode<
            Context,
        >>::decode(decoder)?))
    }
}

bincode::impl_borrow_decode!(OutboundErrorKind);

impl bincode::Encode for OutboundErrorKind {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        bincode::Encode::encode(&self.code(), encoder)
    }
}

impl Envelope for OutboundResponse {
    const NAME: &'static str = "OutboundResponse";

    fn encoded_len(&self) -> usize {
        4 + match self {
            OutboundResponse::Response(response) => response.encoded_len(),
            OutboundResponse::Error { message, .. } => 4 + 8 + message.len(),
        }
    }
}

impl sealed::Fields for OutboundResponse {
    fn decode_fields(cursor: &mut Cursor<'_>) -> Result<OutboundResponse, DecodeError> {
        let tag_offset = cursor.offset();
        Ok(match cursor.u32("outcome")? {
            0 => {
                OutboundResponse::Response(<HttpResponse as sealed::Fields>::decode_fields(cursor)?)
            }
            1 => OutboundResponse::Error {
                kind: OutboundErrorKind::from_code(cursor.u32("kind")?),
                message: cursor.str("message")?.to_owned(),
            },
            value => {
                return Err(cursor.error_at(
                    "outcome",
                    tag_offset,
                    DecodeErrorKind::UnknownTag { value, max: 1 },
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_variants_round_trip_and_match_bincode() {
        let values = [
            OutboundResponse::Response(
                HttpResponse::new(201, b"body".to_vec()).with_header("content-type", "text/plain"),
            ),
            OutboundResponse::error(OutboundErrorKind::Timeout, "too slow"),
        ];
        for value in values {
            let bytes = value.encode();
            assert_eq!(bytes.len(), value.encoded_len());
            assert_eq!(
                bytes,
                bincode::encode_to_vec(&value, crate::CONFIG).unwrap()
            );
            assert_eq!(OutboundResponse::decode(&bytes).unwrap(), value);
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_other() {
        for kind in OutboundErrorKind::ALL {
            assert_eq!(OutboundErrorKind::from_code(kind.code()), kind);
        }
        assert_eq!(OutboundErrorKind::from_code(77), OutboundErrorKind::Other);
        let mut bytes = OutboundResponse::error(OutboundErrorKind::Tls, "x").encode();
        bytes[4] = 200;
        assert!(matches!(
            OutboundResponse::decode(&bytes).unwrap(),
            OutboundResponse::Error {
                kind: OutboundErrorKind::Other,
                ..
            }
        ));
    }

    #[test]
    fn an_unknown_tag_and_a_truncated_body_are_errors() {
        let mut bytes = OutboundResponse::Response(HttpResponse::new(200, "x")).encode();
        assert!(OutboundResponse::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes[0] = 2;
        assert!(OutboundResponse::decode(&bytes).is_err());
    }
}
