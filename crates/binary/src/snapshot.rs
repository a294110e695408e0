//! [`Snapshot`]: the host's envelope around the bytes a module's `snapshot` export returns,
//! carried to the new version's `restore` during a hot swap (`docs/ABI.md`).

use crate::codec::{Cursor, DecodeOptions, check_size};
use crate::error::{DecodeError, DecodeErrorKind};

/// The in-memory state one version of a module hands to the next during a hot swap: the
/// guest's own bytes (`payload`) with what the host checks before it gives them to `restore`.
///
/// Layout (`docs/wire-format.md`): magic `MHSN`, format version (`u16`), `module` (string),
/// `from_version` (string), payload length (`u64`), CRC-32 of the payload (`u32`), payload.
/// Unlike the bincode envelopes it has a magic, a version and a checksum, because it is
/// stored beside the guest's own bytes and its producer and consumer are different builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The module the state was taken from.
    pub module: String,
    /// The version (content hash prefix) it was taken from.
    pub from_version: String,
    /// The guest's bytes, opaque to the host.
    pub payload: Vec<u8>,
}

/// The default cap on a snapshot's payload: 16 MiB.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;

impl Snapshot {
    /// The envelope's name in error messages.
    pub const NAME: &'static str = "Snapshot";
    /// The first four bytes of every snapshot envelope.
    pub const MAGIC: [u8; 4] = *b"MHSN";
    /// The layout version this code writes and reads.
    pub const FORMAT_VERSION: u16 = 1;
    /// Bytes before the strings: magic and format version.
    const FIXED_HEAD: usize = 4 + 2;

    /// A snapshot of `payload` taken from `module` at `from_version`.
    pub fn new(
        module: impl Into<String>,
        from_version: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Snapshot {
        Snapshot {
            module: module.into(),
            from_version: from_version.into(),
            payload: payload.into(),
        }
    }

    /// The CRC-32 stored in the envelope for this payload.
    pub fn checksum(&self) -> u32 {
        crc32(&self.payload)
    }

    /// The exact number of bytes [`Snapshot::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_HEAD
            + 8
            + self.module.len()
            + 8
            + self.from_version.len()
            + 8
            + 4
            + self.payload.len()
    }

    /// Encodes into a new buffer of exactly [`Snapshot::encoded_len`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&Self::FORMAT_VERSION.to_le_bytes());
        for text in [&self.module, &self.from_version] {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&(self.payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.checksum().to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes `bytes` with the default [`DecodeOptions`] (16 MiB).
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
        Snapshot::decode_with(bytes, &DecodeOptions::default())
    }

    /// Decodes and checks `bytes`, which must hold exactly one snapshot envelope: the magic,
    /// a known format version, the lengths against the bytes present, the checksum against
    /// the payload, and nothing left over. Never panics; allocates only the strings and the
    /// payload that are actually there.
    pub fn decode_with(bytes: &[u8], options: &DecodeOptions) -> Result<Snapshot, DecodeError> {
        check_size(Self::NAME, bytes, options)?;
        let mut cursor = Cursor::new(Self::NAME, bytes);
        let magic = cursor.fixed("magic", 4)?;
        if magic != Self::MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic);
            return Err(cursor.error_at("magic", 0, DecodeErrorKind::BadMagic { found }));
        }
        let version_offset = cursor.offset();
        let version = cursor.u16("format_version")?;
        if version != Self::FORMAT_VERSION {
            return Err(cursor.error_at(
                "format_version",
                version_offset,
                DecodeErrorKind::UnsupportedVersion { version },
            ));
        }
        let module = cursor.str("module")?.to_owned();
        let from_version = cursor.str("from_version")?.to_owned();
        let length_offset = cursor.offset();
        let length = cursor.u64("payload_length")?;
        let checksum_offset = cursor.offset();
        let expected = cursor.u32("checksum")?;
        let available = cursor.remaining();
        if length != available as u64 {
            let kind = if length > available as u64 {
                DecodeErrorKind::Truncated {
                    needed: length,
                    available,
                }
            } else {
                DecodeErrorKind::TrailingBytes {
                    // `length < available`, so it fits in a usize.
                    count: available - length as usize,
                }
            };
            let field = if length > available as u64 {
                "payload"
            } else {
                "<end>"
            };
            let offset = if length > available as u64 {
                length_offset
            } else {
                cursor.offset() + length as usize
            };
            return Err(cursor.error_at(field, offset, kind));
        }
        let payload_offset = cursor.offset();
        let payload = cursor.fixed("payload", available)?;
        let actual = crc32(payload);
        if actual != expected {
            return Err(cursor.error_at(
                "checksum",
                checksum_offset,
                DecodeErrorKind::ChecksumMismatch { expected, actual },
            ));
        }
        debug_assert_eq!(payload_offset + payload.len(), bytes.len());
        Ok(Snapshot {
            module,
            from_version,
            payload: payload.to_vec(),
        })
    }
}

/// The CRC-32 lookup table (IEEE 802.3, reflected polynomial `0xEDB88320`), built at compile
/// time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ 0xEDB8_8320
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, as in zlib, gzip and PNG) of `bytes`.
///
/// Written out rather than taken from `crc32fast`: `binary` is compiled into every guest, and
/// a new dependency here would have to enter every guest workspace's lockfile; this table
/// version is fast enough for a once-per-swap checksum and is checked against `crc32fast` in
/// the tests.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}
