//! Unit and property tests of the wire format, and the golden-vector check.

use proptest::prelude::*;

use crate::{
    CONFIG, DecodeErrorKind, DecodeOptions, Envelope, Header, HttpRequest, HttpResponse,
    KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite, Message, MessageBatch, MessageBatchReader,
    MessageKind, OutboundErrorKind, OutboundResponse, Snapshot,
};

// ---- golden vectors ------------------------------------------------------------------------

/// A `xxd`-like dump: offset, 16 bytes in hex, the printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&byte| {
                if byte.is_ascii_graphic() || byte == b' ' {
                    byte as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}: {:<47}  {}\n",
            line * 16,
            hex.join(" "),
            ascii
        ));
    }
    out
}

fn golden_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "message_event",
            Message::event("users.created", br#"{"id":7}"#.to_vec()).encode(),
        ),
        (
            "message_request",
            Message::request("users.get", 42, b"7".to_vec()).encode(),
        ),
        (
            "message_error",
            Message::request("users.get", 42, Vec::new())
                .error_reply("no such user")
                .encode(),
        ),
        (
            "message_empty",
            Message::new("", MessageKind::Response, 0, Vec::new()).encode(),
        ),
        (
            "http_request",
            HttpRequest {
                method: "POST".into(),
                path: "/7".into(),
                query: "verbose=1".into(),
                headers: vec![
                    Header::new("content-type", "application/json"),
                    Header::new("x-token", "s3cret"),
                ],
                body: br#"{"name":"ada"}"#.to_vec(),
            }
            .encode(),
        ),
        ("http_request_minimal", HttpRequest::new("GET", "").encode()),
        (
            "http_response",
            HttpResponse::new(201, br#"{"id":7}"#.to_vec())
                .with_header("content-type", "application/json")
                .encode(),
        ),
        (
            "kv_request_cas",
            KvRequest::own(KvOp::CompareAndSwap {
                key: b"user/7".to_vec(),
                expected: 0,
                value: Some(b"ada".to_vec()),
            })
            .encode(),
        ),
        (
            "kv_request_batch",
            KvRequest {
                store: "sessions".into(),
                op: KvOp::Batch {
                    writes: vec![
                        KvWrite::Set {
                            key: b"a".to_vec(),
                            value: b"1".to_vec(),
                        },
                        KvWrite::Delete { key: b"b".to_vec() },
                    ],
                },
            }
            .encode(),
        ),
        (
            "kv_response_entry",
            KvResponse::Entry {
                value: b"ada".to_vec(),
                revision: 3,
            }
            .encode(),
        ),
        (
            "kv_response_error",
            KvResponse::Error {
                kind: KvErrorKind::Quota,
                message: "full".into(),
            }
            .encode(),
        ),
        (
            "outbound_response_error",
            OutboundResponse::error(OutboundErrorKind::Denied, "no").encode(),
        ),
        (
            "outbound_response_ok",
            OutboundResponse::Response(HttpResponse::new(200, b"hi".to_vec())).encode(),
        ),
        ("snapshot", golden_snapshot().encode()),
        ("message_batch", golden_batch().as_bytes().to_vec()),
    ]
}

fn golden_batch() -> MessageBatch {
    let mut batch = MessageBatch::new();
    batch.push_event("a.b", b"1");
    batch.push(&Message::request("c", 9, Vec::new()));
    batch
}

/// Decodes a golden case by its name's envelope prefix.
fn decode_golden(name: &str, bytes: &[u8]) -> Result<(), crate::DecodeError> {
    if name.starts_with("snapshot") {
        Snapshot::decode(bytes).map(drop)
    } else if name.starts_with("message_batch") {
        MessageBatch::decode(bytes).map(drop)
    } else if name.starts_with("message") {
        Message::decode(bytes).map(drop)
    } else if name.starts_with("http_request") {
        HttpRequest::decode(bytes).map(drop)
    } else if name.starts_with("http_response") {
        HttpResponse::decode(bytes).map(drop)
    } else if name.starts_with("outbound_response") {
        OutboundResponse::decode(bytes).map(drop)
    } else if name.starts_with("kv_request") {
        KvRequest::decode(bytes).map(drop)
    } else {
        KvResponse::decode(bytes).map(drop)
    }
}

fn golden_snapshot() -> Snapshot {
    Snapshot::new("counter", "0123456789abcdef", br#"{"n":7}"#.to_vec())
}

/// Golden vectors pin the bytes: a codec change that alters them fails here. Regenerate with
/// `MODHOST_BLESS=1 cargo test -p binary golden` only when the format change is intended (and
/// update `docs/wire-format.md` and the ABI version with it).
#[test]
fn golden_vectors_match_the_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let bless = std::env::var_os("MODHOST_BLESS").is_some();
    for (name, bytes) in golden_cases() {
        let bin_path = dir.join(format!("{name}.bin"));
        let hex_path = dir.join(format!("{name}.hex"));
        if bless {
            std::fs::write(&bin_path, &bytes).unwrap();
            std::fs::write(&hex_path, hex_dump(&bytes)).unwrap();
        }
        let on_disk = std::fs::read(&bin_path)
            .unwrap_or_else(|error| panic!("{}: {error}", bin_path.display()));
        assert_eq!(
            on_disk,
            bytes,
            "{name}: encoding differs from {}",
            bin_path.display()
        );
        let hex = std::fs::read_to_string(&hex_path).unwrap();
        assert_eq!(
            hex,
            hex_dump(&on_disk),
            "{name}: {} is stale",
            hex_path.display()
        );
    }
}

#[test]
fn golden_vectors_decode_to_their_values() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let read = |name: &str| std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
    let event = Message::decode(&read("message_event")).unwrap();
    assert_eq!(
        event,
        Message::event("users.created", br#"{"id":7}"#.to_vec())
    );
    let error = Message::decode(&read("message_error")).unwrap();
    assert_eq!(
        (error.kind, error.id, error.payload.as_slice()),
        (MessageKind::Error, 42, &b"no such user"[..])
    );
    let request = HttpRequest::decode(&read("http_request")).unwrap();
    assert_eq!(request.header("X-Token"), Some("s3cret"));
    assert_eq!(request.path, "/7");
    let snapshot = Snapshot::decode(&read("snapshot")).unwrap();
    assert_eq!(snapshot, golden_snapshot());
    let response = HttpResponse::decode(&read("http_response")).unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let cas = KvRequest::decode(&read("kv_request_cas")).unwrap();
    assert_eq!(cas.store, "");
    assert_eq!(cas.op.name(), "cas");
    let error = KvResponse::decode(&read("kv_response_error")).unwrap();
    assert!(matches!(
        error,
        KvResponse::Error {
            kind: KvErrorKind::Quota,
            ..
        }
    ));
}

// ---- key-value envelopes -------------------------------------------------------------------

fn kv_requests() -> Vec<KvRequest> {
    let key = b"k".to_vec();
    vec![
        KvRequest::own(KvOp::Get { key: key.clone() }),
        KvRequest::own(KvOp::Set {
            key: key.clone(),
            value: vec![0, 1, 2],
        }),
        KvRequest::own(KvOp::Delete { key: key.clone() }),
        KvRequest::own(KvOp::Exists { key: key.clone() }),
        KvRequest::own(KvOp::List {
            prefix: b"user/".to_vec(),
            cursor: b"user/7".to_vec(),
            limit: 100,
        }),
        KvRequest::own(KvOp::Increment {
            key: key.clone(),
            delta: -5,
        }),
        KvRequest::own(KvOp::CompareAndSwap {
            key: key.clone(),
            expected: 9,
            value: None,
        }),
        KvRequest {
            store: "shared".into(),
            op: KvOp::Batch {
                writes: vec![
                    KvWrite::CompareAndSwap {
                        key: key.clone(),
                        expected: 0,
                        value: Some(Vec::new()),
                    },
                    KvWrite::Delete { key },
                ],
            },
        },
    ]
}

fn kv_responses() -> Vec<KvResponse> {
    vec![
        KvResponse::Entry {
            value: b"v".to_vec(),
            revision: u64::MAX,
        },
        KvResponse::Missing,
        KvResponse::Revision { revision: 0 },
        KvResponse::Bool { value: true },
        KvResponse::Keys {
            keys: vec![b"a".to_vec(), Vec::new()],
            cursor: b"a".to_vec(),
        },
        KvResponse::Integer { value: i64::MIN },
        KvResponse::Conflict {
            index: 3,
            current: 12,
        },
        KvResponse::Applied,
        KvResponse::Error {
            kind: KvErrorKind::ReadOnly,
            message: "disk full".into(),
        },
    ]
}

#[test]
fn every_kv_envelope_round_trips_at_its_encoded_length() {
    for request in kv_requests() {
        check_round_trip(&request);
    }
    for response in kv_responses() {
        check_round_trip(&response);
    }
}

#[test]
fn kv_error_codes_are_stable() {
    let codes: Vec<u32> = [
        KvErrorKind::Other,
        KvErrorKind::Invalid,
        KvErrorKind::TooLarge,
        KvErrorKind::Quota,
        KvErrorKind::Denied,
        KvErrorKind::NotAnInteger,
        KvErrorKind::Overflow,
        KvErrorKind::BadCursor,
        KvErrorKind::ReadOnly,
        KvErrorKind::Storage,
        KvErrorKind::Unavailable,
    ]
    .iter()
    .map(|kind| kind.code())
    .collect();
    assert_eq!(codes, (0..=10).collect::<Vec<u32>>());
    for code in 0..=10 {
        assert_eq!(KvErrorKind::from_code(code).code(), code);
    }
    assert_eq!(KvErrorKind::from_code(77), KvErrorKind::Other);
}

#[test]
fn kv_unknown_tags_and_flags_are_refused() {
    let mut bytes = KvRequest::own(KvOp::Get { key: b"k".to_vec() }).encode();
    bytes[8..12].copy_from_slice(&8u32.to_le_bytes());
    let error = KvRequest::decode(&bytes).unwrap_err();
    assert_eq!(error.field(), "op");
    assert_eq!(
        error.kind(),
        &DecodeErrorKind::UnknownTag { value: 8, max: 7 }
    );
    let mut bytes = KvResponse::Bool { value: true }.encode();
    bytes[4] = 2;
    let error = KvResponse::decode(&bytes).unwrap_err();
    assert_eq!((error.field(), error.offset()), ("value", 4));
}

/// Every example in docs/wire-format.md ("(`test_data/NAME.bin`)" followed by a fenced dump)
/// is the golden vector's hex dump, byte for byte.
#[test]
fn wire_format_doc_examples_are_the_golden_vectors() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/wire-format.md")).unwrap();
    let mut checked = 0;
    for (at, _) in doc.match_indices("(`test_data/") {
        let rest = &doc[at + "(`test_data/".len()..];
        let name = &rest[..rest.find(".bin`)").unwrap()];
        let fence = rest.find("```\n").unwrap() + 4;
        let dump = &rest[fence..fence + rest[fence..].find("```").unwrap()];
        let golden = std::fs::read_to_string(root.join(format!("test_data/{name}.hex"))).unwrap();
        assert_eq!(
            dump, golden,
            "docs/wire-format.md example for {name} is stale"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the doc to show at least 3 golden vectors, found {checked}"
    );
}

/// A batch is `list<Message>`: the count, then each message exactly as `Message::encode`
/// writes it; pushing is the same as encoding, and decoding gives the messages back.
#[test]
fn a_batch_is_a_count_then_the_messages() {
    let messages = [
        Message::event("users.created", b"{}".to_vec()),
        Message::request("users.get", 42, b"7".to_vec()),
        Message::new("x", MessageKind::Error, 7, Vec::new()),
    ];
    let mut batch = MessageBatch::new();
    assert!(batch.is_empty());
    assert_eq!(MessageBatch::decode(batch.as_bytes()).unwrap(), []);
    batch.push_event(&messages[0].topic, &messages[0].payload);
    batch.push(&messages[1]);
    batch.push(&messages[2]);
    let mut expected = 3u64.to_le_bytes().to_vec();
    for message in &messages {
        expected.extend_from_slice(&message.encode());
    }
    assert_eq!((batch.len(), batch.as_bytes()), (3, expected.as_slice()));
    assert_eq!(MessageBatch::decode(batch.as_bytes()).unwrap(), messages);
    // The same bytes as bincode's own encoding of the list.
    let vec: Vec<Message> = messages.to_vec();
    assert_eq!(
        bincode::encode_to_vec(&vec, CONFIG).unwrap(),
        batch.as_bytes()
    );
    batch.clear();
    assert_eq!(batch, MessageBatch::new());
}

#[test]
fn a_broken_batch_is_refused_with_its_place() {
    let mut batch = MessageBatch::new();
    batch.push_event("a", b"1");
    let bytes = batch.as_bytes();
    // A count larger than the bytes can hold is refused before allocating.
    let mut huge = bytes.to_vec();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let error = MessageBatch::decode(&huge).unwrap_err();
    assert_eq!((error.field(), error.offset()), ("messages", 0));
    let error = MessageBatch::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(error.field(), "payload");
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(matches!(
        MessageBatch::decode(&trailing).unwrap_err().kind(),
        DecodeErrorKind::TrailingBytes { count: 1 }
    ));
    let error = MessageBatch::decode_with(bytes, &DecodeOptions { max_size: 8 }).unwrap_err();
    assert!(matches!(error.kind(), DecodeErrorKind::TooLarge { .. }));
}

/// The reader gives what `MessageBatch::decode` gives, one message at a time, and stops at
/// the first error.
#[test]
fn a_batch_reads_one_message_at_a_time() {
    let messages = [
        Message::event("a.b", b"1".to_vec()),
        Message::request("c", 9, Vec::new()),
    ];
    let mut batch = MessageBatch::new();
    for message in &messages {
        batch.push(message);
    }
    let (head, body) = batch.as_bytes().split_at(8);
    let count = u64::from_le_bytes(head.try_into().unwrap());
    let read: Vec<Message> = MessageBatchReader::new(count, body)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read, messages);
    assert_eq!(MessageBatchReader::new(0, &[]).unwrap().count(), 0);

    let error = MessageBatchReader::new(u64::MAX, body).unwrap_err();
    assert_eq!(error.field(), "messages");
    let mut reader = MessageBatchReader::new(2, &body[..body.len() - 1]).unwrap();
    assert_eq!(reader.remaining(), 2);
    assert_eq!(reader.next().unwrap().unwrap(), messages[0]);
    assert_eq!(reader.next().unwrap().unwrap_err().field(), "payload");
    assert!(reader.next().is_none(), "nothing after an error");
    let mut trailing = body.to_vec();
    trailing.push(0);
    let results: Vec<_> = MessageBatchReader::new(2, &trailing).unwrap().collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(
        results[2].as_ref().unwrap_err().kind(),
        DecodeErrorKind::TrailingBytes { count: 1 }
    ));
}

/// The layout table in docs/wire-format.md, spelled out for one message.
#[test]
fn message_layout_is_the_documented_one() {
    let bytes = Message::request("ab", 0x0102_0304, vec![0xff]).encode();
    let expected: Vec<u8> = [
        &2u64.to_le_bytes()[..],
        b"ab",
        &1u32.to_le_bytes(),
        &0x0102_0304u32.to_le_bytes(),
        &1u64.to_le_bytes(),
        &[0xff],
    ]
    .concat();
    assert_eq!(bytes, expected);
}

/// The snapshot layout table in docs/wire-format.md, spelled out.
#[test]
fn snapshot_layout_is_the_documented_one() {
    let bytes = Snapshot::new("m", "v1", vec![0xff, 0x00]).encode();
    let expected: Vec<u8> = [
        &b"MHSN"[..],
        &1u16.to_le_bytes(),
        &1u64.to_le_bytes(),
        b"m",
        &2u64.to_le_bytes(),
        b"v1",
        &2u64.to_le_bytes(),
        &crate::crc32(&[0xff, 0x00]).to_le_bytes(),
        &[0xff, 0x00],
    ]
    .concat();
    assert_eq!(bytes, expected);
    assert_eq!(
        bytes.len(),
        Snapshot::new("m", "v1", vec![0xff, 0x00]).encoded_len()
    );
}

#[test]
fn crc32_is_the_standard_one() {
    assert_eq!(crate::crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crate::crc32(b""), 0);
    for bytes in [&b"modhost"[..], &[0u8; 1000], &golden_snapshot().encode()] {
        assert_eq!(crate::crc32(bytes), crc32fast::hash(bytes));
    }
}

#[test]
fn snapshot_corruption_is_named() {
    let good = golden_snapshot().encode();
    // Magic.
    let mut bytes = good.clone();
    bytes[0] = b'X';
    let error = Snapshot::decode(&bytes).unwrap_err();
    assert_eq!((error.field(), error.offset()), ("magic", 0));
    assert!(matches!(error.kind(), DecodeErrorKind::BadMagic { .. }));
    // Format version.
    let mut bytes = good.clone();
    bytes[4] = 9;
    let error = Snapshot::decode(&bytes).unwrap_err();
    assert_eq!(
        (error.field(), error.offset(), error.kind()),
        (
            "format_version",
            4,
            &DecodeErrorKind::UnsupportedVersion { version: 9 }
        )
    );
    // A flipped payload bit.
    let mut bytes = good.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let error = Snapshot::decode(&bytes).unwrap_err();
    assert_eq!(error.field(), "checksum");
    assert!(
        matches!(error.kind(), DecodeErrorKind::ChecksumMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    // Trailing bytes.
    let mut bytes = good.clone();
    bytes.push(0);
    let error = Snapshot::decode(&bytes).unwrap_err();
    assert_eq!(error.kind(), &DecodeErrorKind::TrailingBytes { count: 1 });
    // A huge payload length allocates nothing.
    let length_at = 6 + 8 + 7 + 8 + 16;
    let mut bytes = good.clone();
    bytes[length_at..length_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let error = Snapshot::decode(&bytes).unwrap_err();
    assert_eq!((error.field(), error.offset()), ("payload", length_at));
    assert!(matches!(error.kind(), DecodeErrorKind::Truncated { .. }));
    // The size cap.
    let error = Snapshot::decode_with(&good, &DecodeOptions { max_size: 10 }).unwrap_err();
    assert!(matches!(error.kind(), DecodeErrorKind::TooLarge { .. }));
}

// ---- decoding errors -----------------------------------------------------------------------

#[test]
fn every_truncation_is_a_truncated_error() {
    for (name, bytes) in golden_cases() {
        for cut in 0..bytes.len() {
            let error = decode_golden(name, &bytes[..cut]).unwrap_err();
            assert!(
                matches!(error.kind(), DecodeErrorKind::Truncated { .. }),
                "{name} cut at {cut}: {error}"
            );
            assert!(error.offset() <= cut, "{name} cut at {cut}: {error}");
        }
    }
}

#[test]
fn errors_name_the_field_and_the_offset() {
    let bytes = Message::event("users.created", b"x".to_vec()).encode();
    let error = Message::decode(&bytes[..30]).unwrap_err();
    assert_eq!(error.field(), "payload");
    assert_eq!(error.offset(), 29);
    assert_eq!(
        error.to_string(),
        "decoding Message: field \"payload\" at byte 29: truncated: needs 8 bytes, 1 left"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = Message::event("t", b"x".to_vec()).encode();
    bytes.extend_from_slice(&[0, 0, 0]);
    let error = Message::decode(&bytes).unwrap_err();
    assert_eq!(error.kind(), &DecodeErrorKind::TrailingBytes { count: 3 });
}

#[test]
fn unknown_kind_is_refused() {
    let mut bytes = Message::event("t", Vec::new()).encode();
    bytes[9..13].copy_from_slice(&4u32.to_le_bytes());
    let error = Message::decode(&bytes).unwrap_err();
    assert_eq!(error.kind(), &DecodeErrorKind::UnknownKind { value: 4 });
    assert_eq!((error.field(), error.offset()), ("kind", 9));
}

#[test]
fn invalid_utf8_is_refused() {
    let mut bytes = Message::event("ab", Vec::new()).encode();
    bytes[9] = 0xc3; // a lone UTF-8 lead byte
    let error = Message::decode(&bytes).unwrap_err();
    assert_eq!(
        error.kind(),
        &DecodeErrorKind::InvalidUtf8 { valid_up_to: 1 }
    );
    assert_eq!(error.field(), "topic");
}

#[test]
fn header_values_may_be_any_bytes_but_names_must_be_utf8() {
    let request = HttpRequest {
        headers: vec![Header::new("x-raw", vec![0xff, 0xfe])],
        ..HttpRequest::new("GET", "/")
    };
    let decoded = HttpRequest::decode(&request.encode()).unwrap();
    assert_eq!(decoded.headers[0].value, vec![0xff, 0xfe]);
    assert_eq!(decoded.header("x-raw"), None);
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let bytes = Message::event("t", vec![0; 100]).encode();
    let options = DecodeOptions { max_size: 64 };
    let error = Message::decode_with(&bytes, &options).unwrap_err();
    assert_eq!(
        error.kind(),
        &DecodeErrorKind::TooLarge {
            size: bytes.len(),
            max: 64
        }
    );
    assert!(
        Message::decode_with(
            &bytes,
            &DecodeOptions {
                max_size: bytes.len()
            }
        )
        .is_ok()
    );
}

#[test]
fn huge_length_prefixes_allocate_nothing() {
    // A 20-byte input claiming a topic of u64::MAX bytes, and a header list of 2^60 entries:
    // both must fail as truncated without trying to reserve that memory.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 12]);
    let error = Message::decode(&bytes).unwrap_err();
    assert!(matches!(
        error.kind(),
        DecodeErrorKind::Truncated {
            needed: u64::MAX,
            ..
        }
    ));

    let mut request = HttpRequest::new("GET", "").encode();
    let headers_at = 24 + 3;
    request[headers_at..headers_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let error = HttpRequest::decode(&request).unwrap_err();
    assert_eq!(error.field(), "headers");
    assert!(
        matches!(error.kind(), DecodeErrorKind::Truncated { .. }),
        "{error}"
    );
}

#[test]
fn message_helpers_keep_the_correlation_id() {
    let request = Message::request("users.get", 9, b"7".to_vec());
    let response = request.response(b"ok".to_vec());
    assert_eq!(
        (response.kind, response.id, response.topic.as_str()),
        (MessageKind::Response, 9, "users.get")
    );
    let error = request.error_reply("nope");
    assert!(error.kind.is_reply());
    assert_eq!(error.payload, b"nope");
    for tag in 0..4 {
        assert_eq!(MessageKind::from_tag(tag).unwrap().tag(), tag);
    }
    assert_eq!(MessageKind::from_tag(4), None);
}

// ---- properties ----------------------------------------------------------------------------

fn kind() -> impl Strategy<Value = MessageKind> {
    (0u32..4).prop_map(|tag| MessageKind::from_tag(tag).unwrap())
}

fn message() -> impl Strategy<Value = Message> {
    (
        ".{0,40}",
        kind(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(topic, kind, id, payload)| Message {
            topic,
            kind,
            id,
            payload,
        })
}

fn headers() -> impl Strategy<Value = Vec<Header>> {
    prop::collection::vec(
        ("[a-z-]{0,20}", prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(name, value)| Header { name, value }),
        0..8,
    )
}

fn request() -> impl Strategy<Value = HttpRequest> {
    (
        "[A-Z]{0,7}",
        ".{0,40}",
        ".{0,40}",
        headers(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(method, path, query, headers, body)| HttpRequest {
            method,
            path,
            query,
            headers,
            body,
        })
}

fn response() -> impl Strategy<Value = HttpResponse> {
    (
        any::<u16>(),
        headers(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(status, headers, body)| HttpResponse {
            status,
            headers,
            body,
        })
}

/// Round trip, exact length, and agreement with bincode's own derived decoder: our hardened
/// reader is the documented layout, not a dialect of it.
fn check_round_trip<T>(value: &T)
where
    T: Envelope + bincode::Decode<()> + PartialEq + std::fmt::Debug,
{
    let bytes = Envelope::encode(value);
    assert_eq!(bytes.len(), value.encoded_len());
    assert_eq!(&<T as Envelope>::decode(&bytes).unwrap(), value);
    assert_eq!(bincode::encode_to_vec(value, CONFIG).unwrap(), bytes);
    let (via_bincode, read): (T, usize) = bincode::decode_from_slice(&bytes, CONFIG).unwrap();
    assert_eq!((&via_bincode, read), (value, bytes.len()));
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        for &(at, byte) in edits {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
    }
    bytes.truncate(cut.min(bytes.len()));
    bytes
}

proptest! {
    #[test]
    fn message_round_trips(message in message()) {
        check_round_trip(&message);
    }

    #[test]
    fn request_round_trips(request in request()) {
        check_round_trip(&request);
    }

    #[test]
    fn snapshot_round_trips(
        module in "[a-z_-]{0,20}",
        version in "[0-9a-f]{0,16}",
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let snapshot = Snapshot::new(module, version, payload);
        let bytes = snapshot.encode();
        prop_assert_eq!(bytes.len(), snapshot.encoded_len());
        prop_assert_eq!(Snapshot::decode(&bytes).unwrap(), snapshot);
    }

    #[test]
    fn random_bytes_never_panic_the_snapshot_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = Snapshot::decode(&bytes);
        let mut framed = b"MHSN\x01\x00".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = Snapshot::decode(&framed);
    }

    #[test]
    fn response_round_trips(response in response()) {
        check_round_trip(&response);
    }

    #[test]
    fn kv_mutations_never_panic(
        which in 0usize..17,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let requests = kv_requests();
        let bytes = if which < requests.len() {
            requests[which].encode()
        } else {
            kv_responses()[which - requests.len()].encode()
        };
        let bytes = mutate(bytes, &edits, cut);
        let _ = KvRequest::decode(&bytes);
        let _ = KvResponse::decode(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::decode(&bytes);
        let _ = HttpRequest::decode(&bytes);
        let _ = HttpResponse::decode(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        message in message(),
        request in request(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let _ = Message::decode(&mutate(message.encode(), &edits, cut));
        let _ = HttpRequest::decode(&mutate(request.encode(), &edits, cut));
        let _ = HttpResponse::decode(&mutate(request.encode(), &edits, cut));
    }
}
