//! The golden vectors: each vector's name and frame ([`vectors`]), where their files are
//! ([`golden_dir`]), and the files' hex format, read ([`parse_hex`]) and written ([`render`]).

use std::path::PathBuf;

use bytes::Bytes;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

pub(crate) fn header(id: &str, addr: &str) -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::copy_from_slice(id.as_bytes())),
        addr: Some(Bytes::copy_from_slice(addr.as_bytes())),
    }
}

pub(crate) fn frame(
    request_id: u64,
    lane: Lane,
    flags: Flags,
    message: impl Into<Message>,
) -> Frame {
    Frame {
        request_id,
        lane,
        flags,
        message: message.into(),
    }
}

/// The vectors: name, frame.
pub(crate) fn vectors() -> Vec<(&'static str, Frame)> {
    let cartman = || Some(Bytes::from_static(b"cartman"));
    vec![
        (
            "heartbeat",
            frame(
                1,
                Lane::Heartbeat,
                Flags::NONE,
                AppendEntriesRequest {
                    header: header("n1", "cartman"),
                    term: 10,
                    leader: cartman(),
                    ..Default::default()
                },
            ),
        ),
        (
            "append_entries",
            frame(
                2,
                Lane::Pipeline,
                Flags::NONE,
                AppendEntriesRequest {
                    header: header("n1", "cartman"),
                    term: 10,
                    leader: cartman(),
                    prev_log_entry: 100,
                    prev_log_term: 4,
                    leader_commit_index: 90,
                    entries: vec![
                        Log {
                            index: 101,
                            term: 4,
                            kind: LogType::COMMAND,
                            data: Some(Bytes::from_static(b"hi")),
                            extensions: None,
                            // 2024-01-02T03:04:05.000006Z
                            appended_at: Timestamp {
                                unix_seconds: 1_704_164_645,
                                nanos: 6_000,
                                utc_offset: None,
                            },
                        },
                        Log {
                            index: 102,
                            term: 4,
                            kind: LogType(200),
                            data: Some(Bytes::new()),
                            extensions: Some(Bytes::from_static(b"\x01\x02")),
                            appended_at: Timestamp {
                                unix_seconds: -5,
                                nanos: 999_999_999,
                                utc_offset: Some(-5 * 3600),
                            },
                        },
                        Log {
                            index: 103,
                            term: 4,
                            kind: LogType::NOOP,
                            data: None,
                            extensions: None,
                            appended_at: Timestamp::ZERO,
                        },
                    ],
                },
            ),
        ),
        (
            "append_entries_response",
            frame(
                2,
                Lane::Pipeline,
                Flags::NONE,
                AppendEntriesResponse {
                    header: header("n2", "kyle"),
                    term: 10,
                    last_log: 103,
                    success: true,
                    no_retry_backoff: false,
                },
            ),
        ),
        (
            "request_vote",
            frame(
                3,
                Lane::Control,
                Flags::NONE,
                RequestVoteRequest {
                    header: header("n1", "cartman"),
                    term: 11,
                    candidate: cartman(),
                    last_log_index: 103,
                    last_log_term: 10,
                    leadership_transfer: true,
                },
            ),
        ),
        (
            "request_vote_response",
            frame(
                3,
                Lane::Control,
                Flags::NONE,
                RequestVoteResponse {
                    header: header("n2", "kyle"),
                    term: 11,
                    peers: None,
                    granted: true,
                },
            ),
        ),
        (
            "request_pre_vote",
            frame(
                4,
                Lane::Control,
                Flags::NONE,
                RequestPreVoteRequest {
                    header: RpcHeader {
                        protocol_version: 3,
                        id: None,
                        addr: None,
                    },
                    term: 11,
                    last_log_index: 5,
                    last_log_term: 2,
                },
            ),
        ),
        (
            "request_pre_vote_response",
            frame(
                4,
                Lane::Control,
                Flags::NONE,
                RequestPreVoteResponse {
                    header: header("n2", "kyle"),
                    term: 11,
                    granted: false,
                },
            ),
        ),
        (
            "install_snapshot",
            frame(
                5,
                Lane::Snapshot,
                Flags::NONE,
                InstallSnapshotRequest {
                    header: header("n1", "cartman"),
                    snapshot_version: 1,
                    term: 10,
                    leader: Some(Bytes::from_static(b"a")),
                    last_log_index: 100,
                    last_log_term: 9,
                    peers: None,
                    configuration: Some(Bytes::from_static(b"\x81\xa7Servers\x90")),
                    configuration_index: 1,
                    size: 1000,
                },
            ),
        ),
        (
            "snapshot_chunk_end",
            frame(
                5,
                Lane::Snapshot,
                Flags::END_STREAM,
                Message::SnapshotChunk(Bytes::from_static(b"hello")),
            ),
        ),
        (
            "install_snapshot_response",
            frame(
                5,
                Lane::Snapshot,
                Flags::NONE,
                InstallSnapshotResponse {
                    header: RpcHeader::default(),
                    term: 10,
                    success: true,
                },
            ),
        ),
        (
            "timeout_now",
            frame(
                6,
                Lane::Control,
                Flags::NONE,
                TimeoutNowRequest {
                    header: header("n1", "cartman"),
                },
            ),
        ),
        (
            "timeout_now_response",
            frame(6, Lane::Control, Flags::NONE, TimeoutNowResponse::default()),
        ),
        (
            "error",
            frame(
                u64::MAX,
                Lane::Control,
                Flags::NONE,
                Message::Error("operation not supported with current protocol version".into()),
            ),
        ),
    ]
}

pub(crate) fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Vector files are hex, with `#` comments and free whitespace.
pub(crate) fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn render(name: &str, bytes: &[u8]) -> String {
    let (head, body) = bytes.split_at(HEADER_LEN);
    let mut out = format!(
        "# raftnet native wire format v{WIRE_VERSION}: {name}\n\
         # header: body_len type flags lane reserved request_id\n\
         {} {} {} {} {} {}\n# body ({} bytes)\n",
        to_hex(&head[0..4]),
        to_hex(&head[4..5]),
        to_hex(&head[5..6]),
        to_hex(&head[6..7]),
        to_hex(&head[7..8]),
        to_hex(&head[8..16]),
        body.len()
    );
    for line in body.chunks(32) {
        out.push_str(&to_hex(line));
        out.push('\n');
    }
    out
}
