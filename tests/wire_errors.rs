//! Every way an input can be wrong is its own typed error, and none of them panics, allocates
//! what the input merely claims, or lets the decoder carry on as if nothing happened.

mod common;

use bytes::BytesMut;
use common::wire::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

/// The 114-byte heartbeat a hashicorp/raft HEAD node sends: net_transport.go's `rpcAppendEntries`
/// type byte (0), then the request as its msgpack encoder writes it.
const HASHICORP_HEARTBEAT: &str = "0089a441646472a7636172746d616ea7456e7472696573c0a24944a26e31a64c6561646572a7636172746d616eb14c6561646572436f6d6d6974496e64657800ac507265764c6f67456e74727900ab507265764c6f675465726d00af50726f746f636f6c56657273696f6e03a45465726d0a";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn preamble_error(bytes: &[u8]) -> WireError {
    let (frames, end) = decode_stream(FrameDecoder::new(), bytes);
    assert!(frames.is_empty());
    end.unwrap_err()
}

#[test]
fn http_client_is_named_in_the_error() {
    let e = preamble_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        e,
        WireError::BadPreamble {
            seen: *b"GET / HT",
            looks_like: Some("an HTTP client"),
        }
    );
    let text = e.to_string();
    assert!(text.contains("47 45 54 20 2f 20 48 54"), "{text}");
    assert!(text.contains("(\"GET / HT\")"), "{text}");
    assert!(text.contains("HTTP client"), "{text}");
}

#[test]
fn hashicorp_node_and_tls_client_are_recognised() {
    match preamble_error(&hex(HASHICORP_HEARTBEAT)) {
        WireError::BadPreamble { looks_like, .. } => {
            assert!(looks_like.unwrap().contains("hashicorp/raft"))
        }
        other => panic!("{other:?}"),
    }
    let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    match preamble_error(&client_hello) {
        WireError::BadPreamble { looks_like, .. } => assert!(looks_like.unwrap().contains("TLS")),
        other => panic!("{other:?}"),
    }
    match preamble_error(b"\x7fELF\x02\x01\x01\x00") {
        WireError::BadPreamble { looks_like, .. } => assert_eq!(looks_like, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_version_is_its_own_error() {
    let mut p = PREAMBLE;
    p[7] = WIRE_VERSION + 1;
    assert_eq!(
        preamble_error(&p),
        WireError::UnsupportedVersion {
            theirs: WIRE_VERSION + 1,
            ours: WIRE_VERSION
        }
    );
}

#[test]
fn oversize_frame_is_rejected_before_any_allocation() {
    let mut decoder = FrameDecoder::new()
        .without_preamble()
        .with_max_body_len(1 << 20);
    let mut buf = BytesMut::from(&raw_frame(0, 0, 0, 0, 1, &[])[..]);
    buf[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let capacity = buf.capacity();
    assert_eq!(
        decoder.decode(&mut buf),
        Err(WireError::FrameTooLarge {
            len: u32::MAX,
            max: 1 << 20
        })
    );
    assert_eq!(
        buf.capacity(),
        capacity,
        "nothing reserved for a rejected frame"
    );

    // Exactly the maximum is fine, and the buffer is grown to hold that one frame.
    let mut decoder = FrameDecoder::new()
        .without_preamble()
        .with_max_body_len(1000);
    let mut buf = BytesMut::from(&raw_frame(0x05, 0, 0, 0, 1, &[])[..]);
    buf[0..4].copy_from_slice(&1000u32.to_be_bytes());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= HEADER_LEN + 1000);
    buf[0..4].copy_from_slice(&1001u32.to_be_bytes());
    let mut decoder = FrameDecoder::new()
        .without_preamble()
        .with_max_body_len(1000);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(WireError::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    );
}

#[test]
fn unknown_type_lane_flags_and_reserved_byte() {
    assert_eq!(
        decode_error(&raw_frame(0x06, 0, 0, 0, 1, &[])),
        WireError::UnknownMessageType(0x06)
    );
    assert_eq!(
        decode_error(&raw_frame(0x7f, 0, 0, 0, 1, &[])),
        WireError::UnknownMessageType(0x7f)
    );
    assert_eq!(
        decode_error(&raw_frame(0x05, 0, 4, 0, 1, &[])),
        WireError::UnknownLane(4)
    );
    assert_eq!(
        decode_error(&raw_frame(0x00, 0x01, 0, 0, 1, &[])),
        WireError::InvalidFlags {
            kind: MessageType::AppendEntries,
            flags: 0x01
        }
    );
    assert_eq!(
        decode_error(&raw_frame(0x05, 0x02, 0, 0, 1, &[])),
        WireError::InvalidFlags {
            kind: MessageType::SnapshotChunk,
            flags: 0x02
        }
    );
    assert_eq!(
        decode_error(&raw_frame(0x05, 0, 0, 9, 1, &[])),
        WireError::ReservedNotZero(9)
    );
}

/// The body of an encoded frame (header stripped).
fn body_of(message: &Message) -> Vec<u8> {
    encode_frame(1, message)[HEADER_LEN..].to_vec()
}

fn heartbeat() -> Message {
    AppendEntriesRequest {
        header: RpcHeader {
            protocol_version: 3,
            id: Some("n1".into()),
            addr: Some("cartman".into()),
        },
        term: 10,
        leader: Some("cartman".into()),
        ..Default::default()
    }
    .into()
}

#[test]
fn truncated_msgpack_inside_a_frame() {
    let body = body_of(&heartbeat());
    // Cut the last value (the empty entries array) off: the frame is complete, its body is not.
    let cut = &body[..body.len() - 1];
    assert_eq!(
        decode_error(&raw_frame(0, 0, 0, 0, 1, cut)),
        WireError::Truncated {
            field: "AppendEntriesRequest.entries"
        }
    );
    // Cut inside a bin payload: the declared length overruns what is left.
    let cut = &body[..10];
    assert!(matches!(
        decode_error(&raw_frame(0, 0, 0, 0, 1, cut)),
        WireError::LengthOverrun {
            field: "RpcHeader.addr",
            declared: 7,
            ..
        }
    ));
}

#[test]
fn wrongly_typed_value() {
    // A RequestVote whose `leadership_transfer` is an integer instead of a bool.
    let mut body = body_of(
        &RequestVoteRequest {
            term: 1,
            ..Default::default()
        }
        .into(),
    );
    let last = body.len() - 1;
    assert_eq!(body[last], 0xc2); // false
    body[last] = 0x01;
    assert_eq!(
        decode_error(&raw_frame(0x01, 0, 0, 0, 1, &body)),
        WireError::WrongType {
            field: "RequestVoteRequest.leadership_transfer",
            expected: "a bool",
            found: 0x01
        }
    );
    // A byte field sent as a msgpack string (the native format uses bin).
    let body = [0x93, 0x03, 0xa2, b'n', b'1', 0xc0];
    assert_eq!(
        decode_error(&raw_frame(0x03, 0, 0, 0, 1, &body)),
        WireError::WrongType {
            field: "RpcHeader.id",
            expected: "bin or nil",
            found: 0xa2
        }
    );
}

#[test]
fn declared_counts_are_checked_against_what_is_left() {
    // An AppendEntries whose entries array claims 2^32-1 entries in a tiny body: rejected, and
    // nothing of that size reserved (if it were, this test would abort).
    let mut body = vec![0x99, 0x00, 0xc0, 0xc0, 0x01, 0xc0, 0x00, 0x00, 0x00];
    body.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    let e = decode_error(&raw_frame(0, 0, 0, 0, 1, &body));
    assert_eq!(
        e,
        WireError::LengthOverrun {
            field: "AppendEntriesRequest.entries",
            declared: u32::MAX,
            remaining: 0
        }
    );
    // A 5-byte body: a bin32 declaring 4 GiB.
    let body = [0xc6, 0xff, 0xff, 0xff, 0xff];
    let frame = raw_frame(0xFF, 0, 0, 0, 1, &body);
    assert!(matches!(
        decode_error(&frame),
        WireError::WrongType {
            field: "Error.text",
            ..
        }
    ));
    let body = [0xdb, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        decode_error(&raw_frame(0xFF, 0, 0, 0, 1, &body)),
        WireError::LengthOverrun {
            field: "Error.text",
            declared: u32::MAX,
            remaining: 0
        }
    );
}

#[test]
fn wrong_field_count() {
    let mut body = body_of(&TimeoutNowRequest::default().into());
    assert_eq!(body[0], 0x93);
    body[0] = 0x94;
    body.push(0xc0);
    assert_eq!(
        decode_error(&raw_frame(0x03, 0, 0, 0, 1, &body)),
        WireError::FieldCount {
            message: "TimeoutNowRequest",
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn values_out_of_range() {
    // Log.kind of 300 does not fit a LogType (u8).
    let mut m = AppendEntriesRequest {
        entries: vec![Log::command(1, 1, &b"x"[..])],
        ..Default::default()
    };
    m.entries[0].kind = LogType(0x7f);
    let body = body_of(&m.into());
    let at = body.iter().position(|&b| b == 0x7f).unwrap();
    let mut bad = body[..at].to_vec();
    bad.extend_from_slice(&[0xcd, 0x01, 0x2c]);
    bad.extend_from_slice(&body[at + 1..]);
    assert_eq!(
        decode_error(&raw_frame(0, 0, 0, 0, 1, &bad)),
        WireError::OutOfRange { field: "Log.kind" }
    );
    // A negative term.
    let body = [0x95, 0x00, 0xc0, 0xc0, 0xff, 0xc3];
    assert_eq!(
        decode_error(&raw_frame(0x84, 0, 0, 0, 1, &body)),
        WireError::OutOfRange {
            field: "RequestPreVoteResponse.term"
        }
    );
    // Nanoseconds of a full second.
    let mut m = AppendEntriesRequest {
        entries: vec![Log::command(1, 1, &b"x"[..])],
        ..Default::default()
    };
    m.entries[0].appended_at = Timestamp {
        unix_seconds: 0,
        nanos: 999_999_999,
        utc_offset: None,
    };
    let body = body_of(&m.clone().into());
    let at = body
        .windows(5)
        .position(|w| w == [0xce, 0x3b, 0x9a, 0xc9, 0xff])
        .unwrap();
    let mut bad = body.clone();
    bad[at + 1..at + 5].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    assert_eq!(
        decode_error(&raw_frame(0, 0, 0, 0, 1, &bad)),
        WireError::OutOfRange {
            field: "Log.appended_at.nanos"
        }
    );
    // ... which the encoder refuses to produce in the first place.
    m.entries[0].appended_at.nanos = 1_000_000_000;
    let mut q = SendQueue::new();
    assert_eq!(
        FrameEncoder::new().encode(&mut q, 1, Lane::Control, Flags::NONE, &m.into()),
        Err(EncodeError::OutOfRange {
            field: "Log.appended_at.nanos"
        })
    );
    assert!(q.is_empty());
}

#[test]
fn error_text_must_be_utf8() {
    let body = [0xa2, 0xff, 0xfe];
    assert_eq!(
        decode_error(&raw_frame(0xFF, 0, 0, 0, 1, &body)),
        WireError::InvalidUtf8 {
            field: "Error.text"
        }
    );
}

#[test]
fn trailing_bytes_inside_a_frame() {
    let mut body = body_of(&heartbeat());
    body.extend_from_slice(&[0xc0, 0xc0]);
    assert_eq!(
        decode_error(&raw_frame(0, 0, 0, 0, 1, &body)),
        WireError::TrailingBytes {
            kind: MessageType::AppendEntries,
            count: 2
        }
    );
}

#[test]
fn stream_cut_off_is_reported_at_eof() {
    let stream = encode_stream(
        &FrameEncoder::new(),
        &[Frame {
            request_id: 5,
            lane: Lane::Heartbeat,
            flags: Flags::NONE,
            message: heartbeat(),
        }],
    );
    let cases = [
        (0, Ok(())),
        (3, Err(("preamble", 3))),
        (PREAMBLE_LEN, Ok(())),
        (PREAMBLE_LEN + 5, Err(("frame header", 5))),
        (
            PREAMBLE_LEN + HEADER_LEN + 2,
            Err(("frame body", HEADER_LEN + 2)),
        ),
        (
            stream.len() - 1,
            Err(("frame body", stream.len() - 1 - PREAMBLE_LEN)),
        ),
        (stream.len(), Ok(())),
    ];
    for (len, expected) in cases {
        let (_, end) = decode_stream(FrameDecoder::new(), &stream[..len]);
        let expected =
            expected.map_err(|(inside, buffered)| WireError::UnexpectedEof { inside, buffered });
        assert_eq!(end, expected, "stream cut at {len}");
    }
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut good = encode_frame(1, &heartbeat());
    let mut stream = raw_frame(0x06, 0, 0, 0, 1, &[]);
    stream.append(&mut good);
    let mut decoder = FrameDecoder::new().without_preamble();
    let mut buf = BytesMut::from(&stream[..]);
    let e = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(e, WireError::UnknownMessageType(6));
    // The well-formed frame behind it is not decoded: the stream is out of sync for good.
    assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
    assert_eq!(decoder.finish(&buf), Err(e));
}

#[test]
fn encoder_rejects_flags_a_type_cannot_carry() {
    let mut q = SendQueue::new();
    assert_eq!(
        FrameEncoder::new().encode(&mut q, 1, Lane::Control, Flags::END_STREAM, &heartbeat()),
        Err(EncodeError::InvalidFlags {
            kind: MessageType::AppendEntries,
            flags: 1
        })
    );
    assert!(q.is_empty());
    FrameEncoder::new()
        .encode(
            &mut q,
            1,
            Lane::Snapshot,
            Flags::END_STREAM,
            &Message::SnapshotChunk("x".into()),
        )
        .unwrap();
}
