//! Golden vectors of hashicorp/raft's wire format, written by the real Go library (v1.1.2,
//! through NetworkTransport's own encoder: `interop/hashicorp`, mode `golden`) and committed
//! under tests/golden/hashicorp/ (its README says how to regenerate them). raftnet's
//! hashicorp codec, writing what v1.1.2 writes ([`GoRaftVersion::V1_1`]), must produce each
//! byte for byte, and must decode each to the expected message. No Go is needed here.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodec};
use raftnet::wire::{Codec, Lane, SendQueue};

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

/// Hex with `#` comment lines and free whitespace.
fn read_vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/hashicorp")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (see tests/golden/hashicorp/README.md)",
            path.display()
        )
    });
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
        Message::Response(Response::InstallSnapshot(_)) => InstallSnapshotRequest::default().into(),
        Message::Response(Response::TimeoutNow(_)) => TimeoutNowRequest::default().into(),
        _ => AppendEntriesRequest::default().into(),
    }
}

#[test]
fn raftnet_writes_what_go_writes() {
    for (name, message) in vectors() {
        let golden = read_vector(name);
        let mut out = SendQueue::new();
        let is_request = matches!(message, Message::Request(_));
        let mut codec = HashicorpCodec::new(GoRaftVersion::V1_1, !is_request);
        codec.encode(&mut out, 1, Lane::Control, &message).unwrap();
        assert_eq!(
            hex(&out.to_vec()),
            hex(&golden),
            "{name}: raftnet's bytes (left) differ from Go's (right)"
        );
    }
}

#[test]
fn raftnet_reads_what_go_writes() {
    for (name, message) in vectors() {
        let golden = read_vector(name);
        let is_request = matches!(message, Message::Request(_));
        let mut codec = HashicorpCodec::new(GoRaftVersion::V1_1, is_request);
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
        if let Message::Request(Request::InstallSnapshot(_)) = message {
            // The body (1000 bytes) would follow; none came, so nothing more is cut.
            assert_eq!(frames.len(), 1, "{name}");
        } else {
            assert_eq!(frames.len(), 1, "{name}: one frame");
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

#[test]
fn every_vector_file_is_checked() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hashicorp");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".hex").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut checked: Vec<String> = vectors().iter().map(|(n, _)| n.to_string()).collect();
    checked.sort();
    assert_eq!(on_disk, checked);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
