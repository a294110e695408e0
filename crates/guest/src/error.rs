//! [`Error`]: why a host call (publish, subscribe, request, ...) failed.

use std::fmt;

/// Why a host call failed. The negative codes are the ones `docs/ABI.md` lists.
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
    /// The module's own state could not be saved or restored ([`crate::Module::snapshot`],
    /// [`crate::Module::restore`]); the reason, in the module's words.
    State(String),
}

impl ErrorKind {
    /// The kind for a negative code returned by an import.
    pub fn from_code(code: i32) -> ErrorKind {
        match code {
            -1 => ErrorKind::InvalidInput,
            -2 => ErrorKind::LimitReached,
            -3 => ErrorKind::BusClosed,
            -4 => ErrorKind::TimedOut,
            -5 => ErrorKind::NoSubscriber,
            -6 => ErrorKind::Overloaded,
            other => ErrorKind::Unknown(other),
        }
    }

    /// The import return code of this kind, if it has one.
    pub fn code(&self) -> Option<i32> {
        match self {
            ErrorKind::InvalidInput => Some(-1),
            ErrorKind::LimitReached => Some(-2),
            ErrorKind::BusClosed => Some(-3),
            ErrorKind::TimedOut => Some(-4),
            ErrorKind::NoSubscriber => Some(-5),
            ErrorKind::Overloaded => Some(-6),
            ErrorKind::Unknown(code) => Some(*code),
            ErrorKind::ErrorReply(_) | ErrorKind::BadReply(_) | ErrorKind::State(_) => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::InvalidInput => f.write_str("refused as invalid input (code -1)"),
            ErrorKind::LimitReached => f.write_str("a limit was reached (code -2)"),
            ErrorKind::BusClosed => f.write_str("the bus is closed (code -3)"),
            ErrorKind::TimedOut => f.write_str("timed out (code -4)"),
            ErrorKind::NoSubscriber => f.write_str("nobody is subscribed (code -5)"),
            ErrorKind::Overloaded => f.write_str("every responder is overloaded (code -6)"),
            ErrorKind::Unknown(code) => write!(f, "failed with unknown code {code}"),
            ErrorKind::ErrorReply(reason) => write!(f, "answered with an error: {reason}"),
            ErrorKind::BadReply(error) => write!(f, "the reply is not a message: {error}"),
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

/// What [`crate::request`] returns when no `Response` came back: the same [`Error`] type.
pub type RequestError = Error;

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

    /// The call that failed: `"publish"`, `"subscribe"`, `"unsubscribe"`, `"request"`, or
    /// `"snapshot"` / `"restore"` for [`Error::state`].
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The topic (or pattern) the call was about.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in -6..=-1 {
            assert_eq!(ErrorKind::from_code(code).code(), Some(code));
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
}
