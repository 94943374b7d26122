//! Golden vectors of hashicorp/raft's wire format, written by the real Go libraries through
//! NetworkTransport's own encoder and handle (`interop/hashicorp`, mode `golden`) and committed
//! as data: v1.1.2's under tests/golden/hashicorp/, the newest v1.x's (v1.7.x on go-msgpack/v2,
//! built with `-tags raftlatest`) under tests/golden/hashicorp-latest/ (each README says how
//! to regenerate them). raftnet's hashicorp codec, writing what each generation writes
//! ([`GoRaftVersion::V1_1`], [`GoRaftVersion::Latest`]), must produce each vector byte for
//! byte, and must decode each to the expected message. No Go is needed here.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodec};
use raftnet::wire::{Codec, Flags, Lane, SendQueue};

fn b(bytes: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(bytes))
}

const PV3: RpcHeader = RpcHeader {
    protocol_version: 3,
    id: None,
    addr: None,
};

/// The vectors: file name, and the message it holds (a request, or an answer).
fn vectors() -> Vec<(&'static str, Message)> {
    let leader = || b(b"cartman");
    vec![
        (
            "heartbeat",
            AppendEntriesRequest {
                header: PV3,
                term: 10,
                leader: leader(),
                ..Default::default()
            }
            .into(),
        ),
        (
            "append_entries_0",
            AppendEntriesRequest {
                header: PV3,
                term: 10,
                leader: leader(),
                prev_log_entry: 100,
                prev_log_term: 4,
                leader_commit_index: 90,
                entries: vec![],
            }
            .into(),
        ),
        (
            "append_entries_1",
            AppendEntriesRequest {
                header: PV3,
                term: 10,
                leader: leader(),
                prev_log_entry: 100,
                prev_log_term: 4,
                leader_commit_index: 90,
                entries: vec![Log::command(101, 4, &b"hi"[..])],
            }
            .into(),
        ),
        (
            "append_entries_3",
            AppendEntriesRequest {
                header: PV3,
                term: 300,
                leader: leader(),
                prev_log_entry: 70_000,
                prev_log_term: 299,
                leader_commit_index: 70_000,
                entries: vec![
                    Log {
                        index: 70_001,
                        term: 300,
                        kind: LogType::NOOP,
                        ..Default::default()
                    },
                    Log {
                        index: 70_002,
                        term: 300,
                        kind: LogType::COMMAND,
                        data: Some(Bytes::new()),
                        extensions: b(b"ext"),
                        ..Default::default()
                    },
                    Log {
                        index: 70_003,
                        term: 300,
                        kind: LogType::CONFIGURATION,
                        data: b(&[0xab; 40]),
                        ..Default::default()
                    },
                ],
            }
            .into(),
        ),
        (
            "append_entries_response",
            AppendEntriesResponse {
                header: PV3,
                term: 10,
                last_log: 101,
                success: true,
                no_retry_backoff: false,
            }
            .into(),
        ),
        (
            "append_entries_response_backoff",
            AppendEntriesResponse {
                header: PV3,
                term: 11,
                last_log: 4_000_000_000,
                success: false,
                no_retry_backoff: true,
            }
            .into(),
        ),
        (
            "request_vote",
            RequestVoteRequest {
                header: PV3,
                term: 11,
                candidate: b(b"kyle"),
                last_log_index: 5,
                last_log_term: 2,
                leadership_transfer: true,
            }
            .into(),
        ),
        (
            "request_vote_response",
            RequestVoteResponse {
                header: PV3,
                term: 11,
                peers: None,
                granted: true,
            }
            .into(),
        ),
        (
            "install_snapshot",
            InstallSnapshotRequest {
                header: PV3,
                snapshot_version: 1,
                term: 10,
                leader: b(b"a"),
                last_log_index: 100,
                last_log_term: 9,
                peers: None,
                configuration: b(b"\x81\xa7Servers\x90"),
                configuration_index: 3,
                size: 1000,
            }
            .into(),
        ),
        (
            "install_snapshot_response",
            InstallSnapshotResponse {
                header: RpcHeader::default(),
                term: 10,
                success: true,
            }
            .into(),
        ),
        ("timeout_now", TimeoutNowRequest { header: PV3 }.into()),
        (
            "timeout_now_response",
            TimeoutNowResponse { header: PV3 }.into(),
        ),
        (
            "error",
            Message::Error("operation not supported with current protocol version".into()),
        ),
    ]
}

/// The vectors only the newest generation writes (interop/hashicorp/raft_latest.go): RPCHeader's
/// ID and Addr, Log.AppendedAt in every zone form, RequestPreVote (rpc type 4), and signed
/// integers above 127 or below 0 (go-msgpack/v2's signed markers).
fn latest_vectors() -> Vec<(&'static str, Message)> {
    let h = || RpcHeader {
        protocol_version: 3,
        id: b(b"n1"),
        addr: b(b"cartman"),
    };
    let h2 = || RpcHeader {
        protocol_version: 3,
        id: b(b"n2"),
        addr: b(b"kenny"),
    };
    let pv = |protocol_version| RpcHeader {
        protocol_version,
        id: None,
        addr: None,
    };
    let leader = || b(b"cartman");
    // 2024-01-02T03:04:05.000006, in the zone given (seconds east of UTC; None for UTC).
    let at = |utc_offset| Timestamp {
        unix_seconds: 1_704_164_645,
        nanos: 6_000,
        utc_offset,
    };
    vec![
        (
            "ids_heartbeat",
            AppendEntriesRequest {
                header: h(),
                term: 10,
                leader: leader(),
                ..Default::default()
            }
            .into(),
        ),
        (
            "ids_append_entries_appended_at",
            AppendEntriesRequest {
                header: h(),
                term: 10,
                leader: leader(),
                prev_log_entry: 100,
                prev_log_term: 4,
                leader_commit_index: 90,
                entries: vec![
                    Log {
                        appended_at: at(None),
                        ..Log::command(101, 4, &b"hi"[..])
                    },
                    Log {
                        appended_at: at(Some(0)),
                        ..Log::command(102, 4, Bytes::new())
                    },
                    Log {
                        index: 103,
                        term: 4,
                        kind: LogType::NOOP,
                        appended_at: at(Some(5 * 3600 + 30 * 60)),
                        ..Default::default()
                    },
                    Log {
                        index: 104,
                        term: 4,
                        kind: LogType::BARRIER,
                        extensions: b(b"ext"),
                        // 2026-12-02T13:00:00.999999999-08:00
                        appended_at: Timestamp {
                            unix_seconds: 1_796_245_200,
                            nanos: 999_999_999,
                            utc_offset: Some(-8 * 3600),
                        },
                        ..Default::default()
                    },
                    Log {
                        index: 105,
                        term: 4,
                        kind: LogType::CONFIGURATION,
                        data: b(&[0xcd; 3]),
                        // 1883-11-18T12:03:58 local mean time, 4:56:02 west of UTC.
                        appended_at: Timestamp {
                            unix_seconds: -2_717_650_800,
                            nanos: 0,
                            utc_offset: Some(-(4 * 3600 + 56 * 60 + 2)),
                        },
                        ..Default::default()
                    },
                    Log {
                        index: 106,
                        term: 4,
                        kind: LogType::COMMAND,
                        // 1969-12-31T23:59:59.5Z
                        appended_at: Timestamp {
                            unix_seconds: -1,
                            nanos: 500_000_000,
                            utc_offset: None,
                        },
                        ..Default::default()
                    },
                ],
            }
            .into(),
        ),
        (
            "ids_append_entries_response",
            AppendEntriesResponse {
                header: h2(),
                term: 10,
                last_log: 106,
                success: true,
                no_retry_backoff: false,
            }
            .into(),
        ),
        (
            "ids_request_vote",
            RequestVoteRequest {
                header: h(),
                term: 11,
                candidate: leader(),
                last_log_index: 5,
                last_log_term: 2,
                leadership_transfer: false,
            }
            .into(),
        ),
        (
            "ids_request_vote_response",
            RequestVoteResponse {
                header: h2(),
                term: 11,
                peers: None,
                granted: true,
            }
            .into(),
        ),
        (
            "request_pre_vote",
            RequestPreVoteRequest {
                header: PV3,
                term: 11,
                last_log_index: 5,
                last_log_term: 2,
            }
            .into(),
        ),
        (
            "ids_request_pre_vote",
            RequestPreVoteRequest {
                header: h(),
                term: 12,
                last_log_index: 70_000,
                last_log_term: 300,
            }
            .into(),
        ),
        (
            "request_pre_vote_response",
            RequestPreVoteResponse {
                header: h2(),
                term: 12,
                granted: false,
            }
            .into(),
        ),
        (
            "ids_install_snapshot",
            InstallSnapshotRequest {
                header: h(),
                snapshot_version: 1,
                term: 10,
                leader: leader(),
                last_log_index: 100,
                last_log_term: 9,
                peers: None,
                configuration: b(b"\x81\xa7Servers\x90"),
                configuration_index: 3,
                size: 200,
            }
            .into(),
        ),
        ("ids_timeout_now", TimeoutNowRequest { header: h() }.into()),
        (
            "signed_install_snapshot_int32",
            InstallSnapshotRequest {
                header: pv(128),
                snapshot_version: 32_767,
                term: 10,
                leader: b(b"a"),
                size: 70_000,
                ..Default::default()
            }
            .into(),
        ),
        (
            "signed_install_snapshot_int64",
            InstallSnapshotRequest {
                header: pv(32_768),
                snapshot_version: 255,
                term: 10,
                leader: b(b"a"),
                size: 5_000_000_000,
                ..Default::default()
            }
            .into(),
        ),
        (
            "signed_timeout_now_negative",
            TimeoutNowRequest { header: pv(-1) }.into(),
        ),
        (
            "signed_install_snapshot_negative",
            InstallSnapshotRequest {
                header: pv(-33),
                snapshot_version: -129,
                term: 10,
                leader: b(b"a"),
                size: -2_147_483_649,
                ..Default::default()
            }
            .into(),
        ),
    ]
}

/// One generation's vectors: where they lie, the version that writes them, and the messages.
struct Generation {
    dir: &'static str,
    version: GoRaftVersion,
    vectors: Vec<(&'static str, Message)>,
}

fn v1_1() -> Generation {
    Generation {
        dir: "tests/golden/hashicorp",
        version: GoRaftVersion::V1_1,
        vectors: vectors(),
    }
}

fn latest() -> Generation {
    let mut vectors = vectors();
    vectors.extend(latest_vectors());
    Generation {
        dir: "tests/golden/hashicorp-latest",
        version: GoRaftVersion::Latest,
        vectors,
    }
}

/// Hex with `#` comment lines and free whitespace.
fn read_vector(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (see {dir}/README.md)", path.display()));
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The request an answer of this kind answers (so the dialling codec awaits it).
fn request_for(answer: &Message) -> Message {
    match answer {
        Message::Response(Response::RequestVote(_)) | Message::Error(_) => {
            RequestVoteRequest::default().into()
        }
        Message::Response(Response::RequestPreVote(_)) => RequestPreVoteRequest::default().into(),
        Message::Response(Response::InstallSnapshot(_)) => InstallSnapshotRequest::default().into(),
        Message::Response(Response::TimeoutNow(_)) => TimeoutNowRequest::default().into(),
        _ => AppendEntriesRequest::default().into(),
    }
}

fn check_writes(generation: Generation) {
    for (name, message) in generation.vectors {
        let golden = read_vector(generation.dir, name);
        let mut out = SendQueue::new();
        let is_request = matches!(message, Message::Request(_));
        let mut codec = HashicorpCodec::new(generation.version, !is_request);
        codec.encode(&mut out, 1, Lane::Control, &message).unwrap();
        assert_eq!(
            hex(&out.to_vec()),
            hex(&golden),
            "{}/{name}: raftnet's bytes (left) differ from Go's (right)",
            generation.dir
        );
    }
}

fn check_reads(generation: Generation) {
    for (name, message) in generation.vectors {
        let golden = read_vector(generation.dir, name);
        let name = format!("{}/{name}", generation.dir);
        let is_request = matches!(message, Message::Request(_));
        let mut codec = HashicorpCodec::new(generation.version, is_request);
        if !is_request {
            // The answer is matched to the request this side sent before it.
            codec
                .encode(
                    &mut SendQueue::new(),
                    77,
                    Lane::Control,
                    &request_for(&message),
                )
                .unwrap();
        }
        // Byte by byte: Go's values end where raftnet's scanner says they do.
        let mut input = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in &golden {
            input.extend_from_slice(&[byte]);
            while let Some(frame) = codec.decode_frame(&mut input).unwrap() {
                frames.push(frame);
            }
        }
        match &message {
            Message::Request(Request::InstallSnapshot(r)) if r.size <= 0 => {
                // No body follows (Go's io.LimitReader of Size reads nothing): the snapshot's
                // one chunk, empty and last, comes at once.
                assert_eq!(frames.len(), 2, "{name}: the request, the empty body");
                let end = frames.pop().unwrap();
                assert_eq!(end.header.kind, MessageType::SnapshotChunk, "{name}");
                assert_eq!((end.body.len(), end.header.flags), (0, Flags::END_STREAM));
            }
            // The body (Size bytes) would follow; none came, so nothing more is cut.
            _ => assert_eq!(frames.len(), 1, "{name}: one frame"),
        }
        assert!(input.is_empty(), "{name}: every byte consumed");
        let frame = &frames[0];
        assert_eq!(frame.header.kind, message.message_type(), "{name}");
        if !is_request {
            assert_eq!(frame.header.request_id, 77, "{name}: matched by order");
        }
        assert_eq!(codec.decode_body(frame).unwrap(), message, "{name}");
    }
}

fn check_every_file(generation: Generation) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(generation.dir);
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".hex").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut checked: Vec<String> = generation
        .vectors
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    checked.sort();
    assert_eq!(on_disk, checked, "{}", generation.dir);
}

#[test]
fn raftnet_writes_what_go_writes() {
    check_writes(v1_1());
}

#[test]
fn raftnet_reads_what_go_writes() {
    check_reads(v1_1());
}

#[test]
fn every_vector_file_is_checked() {
    check_every_file(v1_1());
}

#[test]
fn raftnet_writes_what_newest_go_writes() {
    check_writes(latest());
}

#[test]
fn raftnet_reads_what_newest_go_writes() {
    check_reads(latest());
}

/// Every generation's bytes are read whichever generation a codec writes.
#[test]
fn a_v1_1_codec_reads_what_newest_go_writes() {
    check_reads(Generation {
        version: GoRaftVersion::V1_1,
        ..latest()
    });
}

#[test]
fn every_newest_vector_file_is_checked() {
    check_every_file(latest());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
