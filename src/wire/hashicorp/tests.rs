//! The codec against the bytes hashicorp/raft's own codecs produce (the worked examples of the
//! transport study, captured from Go), both ways, and its framing: order matching, snapshot
//! bodies, limits, and inputs that must fail without a panic.

use bytes::{Bytes, BytesMut};

use super::{GoRaftVersion, HashicorpCodec};
use crate::message::*;
use crate::wire::{Codec, EncodeError, Flags, Lane, RawFrame, SendQueue, WireError};

/// Hex with `"text"` spans for readability: `a4"Addr"` is `a4 41 64 64 72`.
fn hex(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap();
            out.extend_from_slice(&r.as_bytes()[..end]);
            rest = &r[end + 1..];
        } else if !rest.is_empty() {
            out.push(u8::from_str_radix(&rest[..2], 16).unwrap());
            rest = &rest[2..];
        }
    }
    out
}

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

fn header(id: &str, addr: &str) -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: b(id),
        addr: b(addr),
    }
}

fn client(v: GoRaftVersion) -> HashicorpCodec {
    HashicorpCodec::new(v, false)
}

fn server(v: GoRaftVersion) -> HashicorpCodec {
    HashicorpCodec::new(v, true)
}

fn encoded(codec: &mut HashicorpCodec, request_id: u64, m: impl Into<Message>) -> Vec<u8> {
    let mut out = SendQueue::new();
    codec
        .encode(&mut out, request_id, Lane::Control, &m.into())
        .unwrap();
    out.to_vec()
}

/// Every frame in `bytes`, fed one byte at a time.
fn frames_bytewise(codec: &mut HashicorpCodec, bytes: &[u8]) -> Vec<RawFrame> {
    let mut input = BytesMut::new();
    let mut frames = Vec::new();
    for &byte in bytes {
        input.extend_from_slice(&[byte]);
        while let Some(f) = codec.decode_frame(&mut input).unwrap() {
            frames.push(f);
        }
    }
    assert!(input.is_empty());
    frames
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header("n1", "cartman"),
        term: 10,
        leader: b("cartman"),
        ..Default::default()
    }
}

const HEARTBEAT_LATEST: &str = r#"00 89 a4"Addr" a7"cartman" a7"Entries" c0 a2"ID" a2"n1"
    a6"Leader" a7"cartman" b1"LeaderCommitIndex" 00 ac"PrevLogEntry" 00
    ab"PrevLogTerm" 00 af"ProtocolVersion" 03 a4"Term" 0a"#;

#[test]
fn a_heartbeat_is_the_bytes_go_writes_in_both_generations() {
    let bytes = encoded(&mut client(GoRaftVersion::Latest), 1, heartbeat());
    assert_eq!(bytes, hex(HEARTBEAT_LATEST));
    assert_eq!(bytes.len(), 114);
    let old = encoded(&mut client(GoRaftVersion::V1_1), 1, heartbeat());
    let expected = hex(
        r#"00 87 a7"Entries" c0 a6"Leader" a7"cartman" b1"LeaderCommitIndex" 00
        ac"PrevLogEntry" 00 ab"PrevLogTerm" 00 af"ProtocolVersion" 03 a4"Term" 0a"#,
    );
    assert_eq!(old, expected);
    assert_eq!(old.len(), 95);
}

fn one_entry() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header("n1", "cartman"),
        term: 10,
        leader: b("cartman"),
        prev_log_entry: 100,
        prev_log_term: 4,
        leader_commit_index: 90,
        entries: vec![Log {
            index: 101,
            term: 4,
            kind: LogType::COMMAND,
            data: b("hi"),
            extensions: None,
            // 2024-01-02T03:04:05.000006Z
            appended_at: Timestamp {
                unix_seconds: 1_704_164_645,
                nanos: 6_000,
                utc_offset: None,
            },
        }],
    }
}

const ONE_ENTRY: &str = r#"00 89 a4"Addr" a7"cartman" a7"Entries" 91 86
    aa"AppendedAt" af 01 0000000edd257425 00001770 ffff
    a4"Data" a2 6869 aa"Extensions" c0 a5"Index" 65 a4"Term" 04 a4"Type" 00
    a2"ID" a2"n1" a6"Leader" a7"cartman" b1"LeaderCommitIndex" 5a ac"PrevLogEntry" 64
    ab"PrevLogTerm" 04 af"ProtocolVersion" 03 a4"Term" 0a"#;

#[test]
fn an_entry_with_its_go_time_is_the_bytes_go_writes() {
    let bytes = encoded(&mut client(GoRaftVersion::Latest), 1, one_entry());
    assert_eq!(bytes, hex(ONE_ENTRY));
    assert_eq!(bytes.len(), 181);
}

#[test]
fn requests_decode_from_go_bytes_split_anywhere() {
    let cases: Vec<(Vec<u8>, Request)> = vec![
        (hex(HEARTBEAT_LATEST), heartbeat().into()),
        (hex(ONE_ENTRY), one_entry().into()),
        (
            hex(r#"03 83 a4"Addr" c0 a2"ID" c0 af"ProtocolVersion" 03"#),
            TimeoutNowRequest {
                header: RpcHeader {
                    protocol_version: 3,
                    ..Default::default()
                },
            }
            .into(),
        ),
        (
            hex(
                r#"04 86 a4"Addr" c0 a2"ID" c0 ac"LastLogIndex" 05 ab"LastLogTerm" 02
                af"ProtocolVersion" 03 a4"Term" 0b"#,
            ),
            RequestPreVoteRequest {
                header: RpcHeader {
                    protocol_version: 3,
                    ..Default::default()
                },
                term: 11,
                last_log_index: 5,
                last_log_term: 2,
            }
            .into(),
        ),
    ];
    for (bytes, expected) in cases {
        // The same bytes come out of the encoder.
        let mut c = client(GoRaftVersion::Latest);
        assert_eq!(
            encoded(&mut c, 9, Message::Request(expected.clone())),
            bytes
        );
        let mut s = server(GoRaftVersion::Latest);
        let frames = frames_bytewise(&mut s, &bytes);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].header.kind, expected.message_type());
        assert_eq!(frames[0].header.request_id, 1);
        assert_eq!(
            s.decode_body(&frames[0]).unwrap(),
            Message::Request(expected)
        );
    }
}

#[test]
fn entry_data_is_a_slice_of_the_frame() {
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex(ONE_ENTRY)[..]);
    let frame = s.decode_frame(&mut input).unwrap().unwrap();
    let Message::Request(Request::AppendEntries(r)) = s.decode_body(&frame).unwrap() else {
        panic!("not an AppendEntries");
    };
    let data = r.entries[0].data.as_ref().unwrap();
    let frame_range = frame.body.as_ptr_range();
    assert!(
        frame_range.contains(&data.as_ptr()),
        "data points into the frame"
    );
}

fn snapshot_request(size: i64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: RpcHeader {
            protocol_version: 3,
            ..Default::default()
        },
        snapshot_version: 1,
        term: 10,
        leader: b("a"),
        last_log_index: 100,
        last_log_term: 9,
        size,
        ..Default::default()
    }
}

#[test]
fn install_snapshot_size_takes_the_marker_of_each_generation() {
    let latest = encoded(
        &mut client(GoRaftVersion::Latest),
        1,
        snapshot_request(1000),
    );
    assert_eq!(
        latest,
        hex(
            r#"02 8c a4"Addr" c0 ad"Configuration" c0 b2"ConfigurationIndex" 00 a2"ID" c0
            ac"LastLogIndex" 64 ab"LastLogTerm" 09 a6"Leader" a1"a" a5"Peers" c0
            af"ProtocolVersion" 03 a4"Size" d1 03e8 af"SnapshotVersion" 01 a4"Term" 0a"#
        )
    );
    let old = encoded(&mut client(GoRaftVersion::V1_1), 1, snapshot_request(1000));
    assert_eq!(
        old,
        hex(r#"02 8a ad"Configuration" c0 b2"ConfigurationIndex" 00
            ac"LastLogIndex" 64 ab"LastLogTerm" 09 a6"Leader" a1"a" a5"Peers" c0
            af"ProtocolVersion" 03 a4"Size" cd 03e8 af"SnapshotVersion" 01 a4"Term" 0a"#)
    );
}

#[test]
fn a_snapshot_body_follows_its_request_as_chunks() {
    // hashicorp's own probe: a hand-built request of Size 5 and "hello", then a next request.
    let mut bytes = hex(r#"02 81 a4"Size" 05"#);
    bytes.extend_from_slice(b"hello");
    bytes.extend_from_slice(&hex(r#"03 80"#));
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&bytes[..]);
    let request = s.decode_frame(&mut input).unwrap().unwrap();
    assert_eq!(request.header.kind, MessageType::InstallSnapshot);
    assert_eq!(request.header.lane, Lane::Snapshot);
    let chunk = s.decode_frame(&mut input).unwrap().unwrap();
    assert_eq!(chunk.header.kind, MessageType::SnapshotChunk);
    assert_eq!(chunk.header.request_id, request.header.request_id);
    assert_eq!(chunk.header.flags, Flags::END_STREAM);
    assert_eq!(&chunk.body[..], b"hello");
    let next = s.decode_frame(&mut input).unwrap().unwrap();
    assert_eq!(next.header.kind, MessageType::TimeoutNow);
    assert_eq!(
        s.decode_body(&next).unwrap(),
        TimeoutNowRequest::default().into()
    );

    // Byte by byte: the body comes in pieces, the last one ends it, and they add up.
    let mut s = server(GoRaftVersion::Latest);
    let frames = frames_bytewise(&mut s, &bytes);
    let body: Vec<u8> = frames[1..frames.len() - 1]
        .iter()
        .flat_map(|f| f.body.to_vec())
        .collect();
    assert_eq!(body, b"hello");
    assert_eq!(frames.len(), 7);
    assert_eq!(frames[5].header.flags, Flags::END_STREAM);
    assert!(frames[1..5].iter().all(|f| f.header.flags == Flags::NONE));

    // Size 0: the body is one empty last chunk, at once.
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex(r#"02 81 a4"Size" 00"#)[..]);
    s.decode_frame(&mut input).unwrap().unwrap();
    let end = s.decode_frame(&mut input).unwrap().unwrap();
    assert_eq!((end.body.len(), end.header.flags), (0, Flags::END_STREAM));
    assert_eq!(s.decode_frame(&mut input).unwrap(), None);
}

#[test]
fn the_sender_writes_snapshot_bytes_raw_after_the_request() {
    let mut c = client(GoRaftVersion::Latest);
    let mut out = SendQueue::new();
    c.encode(&mut out, 3, Lane::Snapshot, &snapshot_request(5).into())
        .unwrap();
    let request_len = out.len();
    c.encode_snapshot_chunk(&mut out, 3, Bytes::from_static(b"hel"), false)
        .unwrap();
    c.encode_snapshot_chunk(&mut out, 3, Bytes::from_static(b"lo"), true)
        .unwrap();
    assert_eq!(&out.to_vec()[request_len..], b"hello");
}

#[test]
fn answers_are_an_error_string_then_the_response_matched_by_order() {
    let mut c = client(GoRaftVersion::Latest);
    encoded(&mut c, 7, heartbeat());
    encoded(&mut c, 8, heartbeat());
    encoded(&mut c, 9, RequestVoteRequest::default());
    let success = hex(
        r#"a0 87 a4"Addr" c0 a2"ID" c0 a7"LastLog" 65 ae"NoRetryBackoff" c2
        af"ProtocolVersion" 03 a7"Success" c3 a4"Term" 0a"#,
    );
    let refusal = {
        let mut v = hex("da 0035");
        v.extend_from_slice(b"operation not supported with current protocol version");
        v.push(0xc0);
        v
    };
    let vote = hex("a0 c0");
    let mut bytes = success.clone();
    bytes.extend_from_slice(&refusal);
    bytes.extend_from_slice(&vote);
    let frames = frames_bytewise(&mut c, &bytes);
    let ids: Vec<u64> = frames.iter().map(|f| f.header.request_id).collect();
    assert_eq!(ids, [7, 8, 9]);
    let expected_success = AppendEntriesResponse {
        header: RpcHeader {
            protocol_version: 3,
            ..Default::default()
        },
        term: 10,
        last_log: 101,
        success: true,
        no_retry_backoff: false,
    };
    assert_eq!(
        c.decode_body(&frames[0]).unwrap(),
        expected_success.clone().into()
    );
    assert_eq!(
        c.decode_body(&frames[1]).unwrap(),
        Message::Error("operation not supported with current protocol version".into())
    );
    // A nil response is the zero response.
    assert_eq!(
        c.decode_body(&frames[2]).unwrap(),
        RequestVoteResponse::default().into()
    );

    // And the serving side writes exactly those bytes.
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex(HEARTBEAT_LATEST).repeat(2)[..]);
    let first = s.decode_frame(&mut input).unwrap().unwrap();
    let second = s.decode_frame(&mut input).unwrap().unwrap();
    assert_eq!(
        encoded(&mut s, first.header.request_id, expected_success),
        success
    );
    let mut out = SendQueue::new();
    let text = Message::Error("operation not supported with current protocol version".into());
    s.encode(&mut out, second.header.request_id, Lane::Control, &text)
        .unwrap();
    assert_eq!(out.to_vec(), refusal);
}

#[test]
fn an_answer_given_early_waits_for_the_earlier_ones() {
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex(HEARTBEAT_LATEST).repeat(3)[..]);
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            s.decode_frame(&mut input)
                .unwrap()
                .unwrap()
                .header
                .request_id
        })
        .collect();
    let answer = |term| AppendEntriesResponse {
        term,
        ..Default::default()
    };
    let mut out = SendQueue::new();
    s.encode(&mut out, ids[2], Lane::Control, &answer(3).into())
        .unwrap();
    s.encode(&mut out, ids[1], Lane::Control, &answer(2).into())
        .unwrap();
    assert!(
        out.is_empty(),
        "nothing leaves before the first request's answer"
    );
    s.encode(&mut out, ids[0], Lane::Control, &answer(1).into())
        .unwrap();
    let mut c = client(GoRaftVersion::Latest);
    for id in [1, 2, 3] {
        encoded(&mut c, id, heartbeat());
    }
    let frames = frames_bytewise(&mut c, &out.to_vec());
    let terms: Vec<u64> = frames
        .iter()
        .map(|f| match c.decode_body(f).unwrap() {
            Message::Response(Response::AppendEntries(r)) => r.term,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(terms, [1, 2, 3]);
}

#[test]
fn unknown_keys_are_skipped_and_keys_may_come_in_any_order() {
    // A newer node's field (a nested map and an array) before the known ones, reversed order.
    let bytes = hex(
        r#"01 84 a6"Future" 82 a1"x" 92 01 c0 a1"y" cb 0000000000000000
        a4"Term" 07 ac"LastLogIndex" cd 0100 a9"Candidate" a0"#,
    );
    let mut s = server(GoRaftVersion::Latest);
    let frames = frames_bytewise(&mut s, &bytes);
    assert_eq!(
        s.decode_body(&frames[0]).unwrap(),
        RequestVoteRequest {
            term: 7,
            last_log_index: 256,
            candidate: Some(Bytes::new()),
            ..Default::default()
        }
        .into()
    );
}

#[test]
fn go_time_forms_all_decode() {
    let entry_with = |time: &str| {
        let mut v = hex(r#"00 81 a7"Entries" 91 81 aa"AppendedAt""#);
        v.extend_from_slice(&hex(time));
        v
    };
    let at = |unix_seconds, nanos, utc_offset| Timestamp {
        unix_seconds,
        nanos,
        utc_offset,
    };
    let cases = [
        ("c0", Timestamp::ZERO),
        ("af 01 0000000000000000 00000000 ffff", Timestamp::ZERO),
        (
            "af 01 0000000edd257425 00001770 ffff",
            at(1_704_164_645, 6_000, None),
        ),
        // A leader on a UTC host: offset 0, not UTC.
        (
            "af 01 0000000edd257425 00001770 0000",
            at(1_704_164_645, 6_000, Some(0)),
        ),
        // Version 2: +05:30:15.
        (
            "b0 02 0000000edd257425 00000000 014a 0f",
            at(1_704_164_645, 0, Some(19_815)),
        ),
        // go-msgpack 1.1.5's timestamp forms (8 bytes: nanoseconds << 34 | seconds).
        ("a8 00005dc065937d25", at(1_704_164_645, 6_000, None)),
        ("d6 ff 65937d25", at(1_704_164_645, 0, None)),
    ];
    for (time, expected) in cases {
        let mut s = server(GoRaftVersion::Latest);
        let frames = frames_bytewise(&mut s, &entry_with(time));
        let Message::Request(Request::AppendEntries(r)) = s.decode_body(&frames[0]).unwrap() else {
            panic!();
        };
        assert_eq!(r.entries[0].appended_at, expected, "{time}");
    }
    // The offset survives a round trip.
    let mut m = one_entry();
    m.entries[0].appended_at = at(1_704_164_645, 0, Some(19_815));
    let bytes = encoded(&mut client(GoRaftVersion::Latest), 1, m.clone());
    let mut s = server(GoRaftVersion::Latest);
    let frames = frames_bytewise(&mut s, &bytes);
    assert_eq!(s.decode_body(&frames[0]).unwrap(), m.into());
}

#[test]
fn empty_entries_are_nil_on_a_heartbeat_and_an_empty_array_otherwise() {
    let mut m = heartbeat();
    m.leader_commit_index = 5;
    let bytes = encoded(&mut client(GoRaftVersion::Latest), 1, m);
    let entries = hex(r#"a7"Entries""#);
    let at = bytes
        .windows(entries.len())
        .position(|w| w == entries)
        .unwrap();
    assert_eq!(bytes[at + entries.len()], 0x90);
}

#[test]
fn limits_hold_and_bad_input_fails_with_its_reason() {
    let fails = |bytes: &[u8], max_body: u32| {
        let mut s = server(GoRaftVersion::Latest);
        s.max_body_len = max_body;
        s.max_entries = 2;
        let mut input = BytesMut::from(bytes);
        let mut result = s.decode_frame(&mut input);
        if let Ok(Some(frame)) = &result {
            result = s.decode_body(frame).map(|_| None);
        }
        result.unwrap_err()
    };
    assert_eq!(fails(&[0x05, 0x80], 1000), WireError::UnknownMessageType(5));
    assert_eq!(fails(&[0xff], 1000), WireError::UnknownMessageType(0xff));
    assert!(matches!(
        fails(&hex("00 de ffff"), 1000),
        WireError::FrameTooLarge { max: 1000, .. }
    ));
    assert!(matches!(
        fails(&hex(r#"00 81 a4"Data" db 00100000"#), 1000),
        WireError::FrameTooLarge { .. }
    ));
    assert!(matches!(
        fails(&hex(r#"00 81 a7"Entries" 93 c0 c0 c0"#), 1000),
        WireError::TooManyEntries {
            declared: 3,
            max: 2
        }
    ));
    assert!(matches!(
        fails(&hex(r#"01 81 a4"Term" a1"x""#), 1000),
        WireError::WrongType { found: 0xa1, .. }
    ));
    assert!(matches!(
        fails(&hex(r#"01 81 a4"Term" ff"#), 1000),
        WireError::OutOfRange { .. }
    ));
    // An answer with no request waiting for it.
    let mut c = client(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex("a0 c0")[..]);
    assert!(matches!(
        c.decode_frame(&mut input),
        Err(WireError::UnexpectedMessage { .. })
    ));
    // Cut off inside a request: finish says so.
    let mut s = server(GoRaftVersion::Latest);
    let mut input = BytesMut::from(&hex(HEARTBEAT_LATEST)[..40]);
    assert_eq!(s.decode_frame(&mut input).unwrap(), None);
    assert_eq!(
        s.finish(&input),
        Err(WireError::UnexpectedEof {
            inside: "hashicorp request",
            buffered: 40
        })
    );
}

#[test]
fn an_encoding_error_queues_nothing() {
    let mut c = client(GoRaftVersion::Latest);
    c.max_body_len = 100;
    let mut out = SendQueue::new();
    out.push_slice(b"earlier");
    let big = AppendEntriesRequest {
        entries: vec![Log::command(1, 1, vec![0u8; 200])],
        ..Default::default()
    };
    let e = c
        .encode(&mut out, 1, Lane::Control, &big.into())
        .unwrap_err();
    assert!(
        matches!(e, EncodeError::FrameTooLarge { max: 100, .. }),
        "{e:?}"
    );
    assert_eq!(out.to_vec(), b"earlier");
    // And no answer is expected for it.
    let mut input = BytesMut::from(&hex("a0 c0")[..]);
    assert!(c.decode_frame(&mut input).is_err());
}

#[test]
// Safe code only, and 40,000 decodes: minutes under Miri for nothing it can check there.
#[cfg_attr(miri, ignore = "safe code; run natively")]
fn no_input_makes_the_decoder_panic() {
    // A small xorshift: deterministic noise, and mutations of valid frames.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [
        hex(HEARTBEAT_LATEST),
        hex(ONE_ENTRY),
        hex(r#"02 81 a4"Size" 05"#),
    ];
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        if round % 7 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        for serving in [true, false] {
            let mut codec = HashicorpCodec::new(GoRaftVersion::Latest, serving);
            codec.max_body_len = 4096;
            if !serving {
                codec
                    .awaiting
                    .push_back((1, MessageType::AppendEntriesResponse));
            }
            let mut input = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = codec.decode_frame(&mut input) {
                let _ = codec.decode_body(&frame);
            }
            let _ = codec.finish(&input);
        }
    }
}
