//! The typed error returned when bytes do not decode.

use std::fmt;

/// Why a byte string failed to decode, where, and in which field.
///
/// The message reads like `decoding Message: field "topic" at byte 0: truncated: needs 12 bytes,
/// 3 left`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decoding {envelope}: field \"{field}\" at byte {offset}: {kind}")]
pub struct DecodeError {
    envelope: &'static str,
    field: &'static str,
    offset: usize,
    kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(
        envelope: &'static str,
        field: &'static str,
        offset: usize,
        kind: DecodeErrorKind,
    ) -> DecodeError {
        DecodeError {
            envelope,
            field,
            offset,
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// The envelope being decoded: `"Message"`, `"HttpRequest"`, `"HttpResponse"` or
    /// `"Snapshot"`.
    pub fn envelope(&self) -> &'static str {
        self.envelope
    }

    /// The field being decoded when the error was found (`"<input>"` for whole-input checks).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Byte offset into the input where the offending field starts.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// The kinds of decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a field.
    Truncated {
        /// Bytes the field needs from its start.
        needed: u64,
        /// Bytes that were left.
        available: usize,
    },
    /// The envelope decoded completely but bytes were left over.
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A `MessageKind` tag outside `0..=3`.
    UnknownKind {
        /// The tag that was read.
        value: u32,
    },
    /// An enum tag (a key-value operation or response, a write, a `bool` or an `Option`
    /// flag) outside the known range.
    UnknownTag {
        /// The tag that was read.
        value: u32,
        /// The highest known tag.
        max: u32,
    },
    /// A string field holds bytes that are not UTF-8.
    InvalidUtf8 {
        /// Length of the valid prefix of the string.
        valid_up_to: usize,
    },
    /// A [`crate::Snapshot`] does not start with its magic bytes.
    BadMagic {
        /// The four bytes found instead.
        found: [u8; 4],
    },
    /// A [`crate::Snapshot`] layout version this code does not read.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// A [`crate::Snapshot`]'s payload does not match its checksum.
    ChecksumMismatch {
        /// The CRC-32 stored in the envelope.
        expected: u32,
        /// The CRC-32 of the payload that is there.
        actual: u32,
    },
    /// The input is larger than the configured maximum.
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The configured maximum ([`crate::DecodeOptions::max_size`]).
        max: usize,
    },
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the end of the envelope")
            }
            DecodeErrorKind::UnknownKind { value } => {
                write!(f, "unknown message kind {value} (expected 0..=3)")
            }
            DecodeErrorKind::UnknownTag { value, max } => {
                write!(f, "unknown tag {value} (expected 0..={max})")
            }
            DecodeErrorKind::InvalidUtf8 { valid_up_to } => {
                write!(f, "invalid UTF-8 after {valid_up_to} valid bytes")
            }
            DecodeErrorKind::BadMagic { found } => {
                write!(f, "bad magic {found:02x?} (expected \"MHSN\")")
            }
            DecodeErrorKind::UnsupportedVersion { version } => {
                write!(
                    f,
                    "unsupported format version {version} (this code reads 1)"
                )
            }
            DecodeErrorKind::ChecksumMismatch { expected, actual } => {
                write!(
                    f,
                    "checksum mismatch: the envelope says {expected:#010x}, the payload has {actual:#010x}"
                )
            }
            DecodeErrorKind::TooLarge { size, max } => {
                write!(
                    f,
                    "input of {size} bytes exceeds the maximum of {max} bytes"
                )
            }
        }
    }
}
