//! The properties every decoding target checks for one [`binary::Envelope`] type.

use binary::{DecodeErrorKind, DecodeOptions, Envelope};

/// bincode's own decoder, with a limit so a huge length prefix cannot make it allocate
/// without bound: the reference that `binary`'s field-by-field decoder must agree with.
const REFERENCE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<{ 1 << 20 }>,
> = binary::CONFIG.with_limit::<{ 1 << 20 }>();

/// Decodes `bytes` as `T` and checks, for any input:
///
/// - decoding never panics, and an error names an offset inside the input;
/// - a value that decodes re-encodes to exactly the same bytes (the layout is canonical),
///   and `encoded_len` is its length;
/// - `binary`'s decoder agrees with bincode's own decoder on every input that fits the
///   reference's 1 MiB limit: same value when both accept, and neither accepts alone
///   (bincode may accept a prefix, which `binary` must refuse as trailing bytes);
/// - `max_size` is honoured: an input one byte over it is `TooLarge`, whatever it holds.
pub fn check<T>(bytes: &[u8])
where
    T: Envelope + bincode::Decode<()> + PartialEq + std::fmt::Debug,
{
    let decoded = <T as Envelope>::decode(bytes);
    match &decoded {
        Ok(value) => {
            assert_eq!(value.encoded_len(), bytes.len(), "encoded_len of {value:?}");
            assert_eq!(Envelope::encode(value), bytes, "re-encoding {value:?}");
        }
        Err(error) => {
            assert!(
                error.offset() <= bytes.len(),
                "offset past the input: {error}"
            );
            assert_eq!(error.envelope(), T::NAME);
            // Display must not panic either.
            let _ = error.to_string();
        }
    }

    if bytes.len() < (1 << 20) {
        let reference = bincode::decode_from_slice::<T, _>(bytes, REFERENCE);
        match (&decoded, reference) {
            (Ok(ours), Ok((theirs, read))) => {
                assert_eq!(read, bytes.len(), "bincode stopped early on {ours:?}");
                assert_eq!(ours, &theirs);
            }
            (Ok(ours), Err(error)) => panic!("bincode refuses {ours:?}: {error}"),
            (Err(ours), Ok((theirs, read))) => assert!(
                read < bytes.len(),
                "bincode accepts {theirs:?} (all {read} bytes) but binary says: {ours}"
            ),
            (Err(_), Err(_)) => {}
        }
    }

    if let Some(max_size) = bytes.len().checked_sub(1) {
        let error = <T as Envelope>::decode_with(bytes, &DecodeOptions { max_size })
            .expect_err("an input over max_size must be refused");
        assert_eq!(
            error.kind(),
            &DecodeErrorKind::TooLarge {
                size: bytes.len(),
                max: max_size
            }
        );
    }
}
