//! The one bincode configuration, the [`Envelope`] trait and the hardened decoder.

use crate::error::{DecodeError, DecodeErrorKind};

/// The bincode configuration every envelope uses: little-endian, fixed-width integers, no
/// bincode-level limit (the size limit is [`DecodeOptions::max_size`], checked up front).
///
/// With it, `u16`/`u32`/`u64` are 2/4/8 bytes little-endian, a `String` or `Vec<u8>` is a `u64`
/// byte count followed by the bytes, a `Vec<T>` a `u64` element count followed by the
/// elements, and an enum a `u32` variant index followed by the variant's fields.
pub const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding();

/// The type of [`CONFIG`].
pub type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
>;

/// The default for [`DecodeOptions::max_size`]: 16 MiB.
pub const DEFAULT_MAX_SIZE: usize = 16 * 1024 * 1024;

/// Options for decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Inputs longer than this many bytes are refused with
    /// [`DecodeErrorKind::TooLarge`] before any decoding starts.
    pub max_size: usize,
}

impl Default for DecodeOptions {
    fn default() -> DecodeOptions {
        DecodeOptions {
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

/// A type that crosses a boundary as bytes: [`crate::Message`], [`crate::HttpRequest`],
/// [`crate::HttpResponse`].
///
/// Encoding is bincode with [`CONFIG`] (so `bincode::encode_to_vec(value, binary::CONFIG)`
/// gives the same bytes). Decoding goes through a field-by-field reader that checks every
/// length prefix against the bytes actually present before it allocates, and refuses trailing
/// bytes: use [`Envelope::decode`] / [`Envelope::decode_with`] for anything untrusted.
pub trait Envelope: Sized + bincode::Encode + sealed::Fields {
    /// The envelope's name as used in error messages.
    const NAME: &'static str;

    /// The exact number of bytes [`Envelope::encode`] produces.
    fn encoded_len(&self) -> usize;

    /// Encodes into a new buffer of exactly [`Envelope::encoded_len`] bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        // Writing into a Vec cannot fail and CONFIG sets no limit, so bincode has no error
        // to report here.
        bincode::encode_into_std_write(self, out, CONFIG)
            .expect("bincode encoding into a Vec<u8> without a limit cannot fail");
    }

    /// Decodes `bytes` with the default [`DecodeOptions`].
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, &DecodeOptions::default())
    }

    /// Decodes `bytes`, which must hold exactly one envelope and nothing more.
    fn decode_with(bytes: &[u8], options: &DecodeOptions) -> Result<Self, DecodeError> {
        check_size(Self::NAME, bytes, options)?;
        let mut cursor = Cursor {
            envelope: Self::NAME,
            bytes,
            offset: 0,
        };
        let value = Self::decode_fields(&mut cursor)?;
        let count = bytes.len() - cursor.offset;
        if count != 0 {
            return Err(cursor.error("<end>", DecodeErrorKind::TrailingBytes { count }));
        }
        Ok(value)
    }
}

/// Refuses an input over `options.max_size` before anything of it is read.
pub(crate) fn check_size(
    envelope: &'static str,
    bytes: &[u8],
    options: &DecodeOptions,
) -> Result<(), DecodeError> {
    if bytes.len() > options.max_size {
        return Err(DecodeError::new(
            envelope,
            "<input>",
            0,
            DecodeErrorKind::TooLarge {
                size: bytes.len(),
                max: options.max_size,
            },
        ));
    }
    Ok(())
}

pub(crate) mod sealed {
    /// Field-by-field decoding; implemented only inside this crate.
    pub trait Fields: Sized {
        fn decode_fields(cursor: &mut super::Cursor<'_>) -> Result<Self, super::DecodeError>;
    }
}

/// A bounds-checked reader over the input, tracking the offset for error messages.
#[derive(Debug)]
pub struct Cursor<'a> {
    envelope: &'static str,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`, naming `envelope` in its errors.
    pub(crate) fn new(envelope: &'static str, bytes: &'a [u8]) -> Cursor<'a> {
        Cursor {
            envelope,
            bytes,
            offset: 0,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn error(&self, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.envelope, field, self.offset, kind)
    }

    pub(crate) fn error_at(
        &self,
        field: &'static str,
        offset: usize,
        kind: DecodeErrorKind,
    ) -> DecodeError {
        DecodeError::new(self.envelope, field, offset, kind)
    }

    fn truncated(&self, field: &'static str, needed: u64) -> DecodeError {
        self.error(
            field,
            DecodeErrorKind::Truncated {
                needed,
                available: self.remaining(),
            },
        )
    }

    /// Decodes one fixed-width integer with bincode.
    fn int<T: bincode::Decode<()>>(&mut self, field: &'static str) -> Result<T, DecodeError> {
        let width = std::mem::size_of::<T>();
        if self.remaining() < width {
            return Err(self.truncated(field, width as u64));
        }
        let rest = &self.bytes[self.offset..];
        let (value, read) = bincode::decode_from_slice::<T, _>(rest, CONFIG)
            .map_err(|_| self.truncated(field, width as u64))?;
        self.offset += read;
        Ok(value)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.int(field)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.int(field)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.int(field)
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.int(field)
    }

    /// A one-byte tag that must be 0 or 1: a `bool`, or whether an `Option` holds a value.
    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset;
        match self.int::<u8>(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.error_at(
                field,
                offset,
                DecodeErrorKind::UnknownTag {
                    value: u32::from(value),
                    max: 1,
                },
            )),
        }
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        self.flag(field)
    }

    /// An `Option<bytes>`: a flag byte, then the length-prefixed bytes when it is 1.
    pub(crate) fn option_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        if self.flag(field)? {
            Ok(Some(self.bytes(field)?.to_vec()))
        } else {
            Ok(None)
        }
    }

    /// Exactly `len` raw bytes (no length prefix), borrowed from the input.
    pub(crate) fn fixed(
        &mut self,
        field: &'static str,
        len: usize,
    ) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(self.truncated(field, len as u64));
        }
        let slice = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(slice)
    }

    /// A `u64` count or length, checked to fit in the bytes that are left, each item taking
    /// at least `min_item_size` bytes. Returns it as a `usize`.
    pub(crate) fn len(
        &mut self,
        field: &'static str,
        min_item_size: usize,
    ) -> Result<usize, DecodeError> {
        let start = self.offset;
        let count = self.int::<u64>(field)?;
        let needed = count.saturating_mul(min_item_size as u64);
        if needed > self.remaining() as u64 {
            self.offset = start;
            return Err(self.truncated(field, needed.saturating_add(8)));
        }
        // `needed <= remaining`, so it fits in a usize; `count` does as long as items are
        // at least one byte wide, which every caller guarantees.
        Ok(count as usize)
    }

    /// A length-prefixed byte string, borrowed from the input.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.offset;
        let len = self.len(field, 1)?;
        let slice = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        debug_assert!(self.offset - start == 8 + len);
        Ok(slice)
    }

    /// A length-prefixed UTF-8 string, borrowed from the input.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let start = self.offset;
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).map_err(|error| {
            self.error_at(
                field,
                start,
                DecodeErrorKind::InvalidUtf8 {
                    valid_up_to: error.valid_up_to(),
                },
            )
        })
    }
}
