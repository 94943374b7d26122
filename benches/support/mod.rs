//! Shared pieces of the codec benchmark: the serde-derived twins of raftnet's messages (shared
//! with raftnet-bench), the scenarios, and a check that both codecs put the same bytes on the
//! wire.

use bytes::Bytes;
use raftnet::message::{AppendEntriesRequest, Log, LogType, Message, RpcHeader, Timestamp};
use raftnet::wire::native::{DEFAULT_MAX_BODY_LEN, FrameEncoder, HEADER_LEN, decode_body};
use raftnet::wire::{Flags, FrameHeader, Lane, SendQueue};
use serde_bytes::ByteBuf;

/// The serde twins of raftnet's messages, defined once for this benchmark and raftnet-bench's
/// tokio baseline, which sends them all.
#[path = "../../bench/src/tokio_net/messages.rs"]
#[allow(dead_code, reason = "the codec benchmark times two of the twins")]
mod twins;

pub(crate) use twins::{AppendEntriesRequest as SerdeAppendEntries, Log as SerdeLog};

fn buf(bytes: &Option<Bytes>) -> Option<ByteBuf> {
    bytes.as_ref().map(|b| ByteBuf::from(b.to_vec()))
}

impl From<&Log> for SerdeLog {
    fn from(log: &Log) -> Self {
        SerdeLog {
            index: log.index,
            term: log.term,
            kind: log.kind.0,
            data: buf(&log.data),
            extensions: buf(&log.extensions),
            appended_at_unix_seconds: log.appended_at.unix_seconds,
            appended_at_nanos: log.appended_at.nanos,
            appended_at_utc_offset: log.appended_at.utc_offset,
        }
    }
}

impl From<&AppendEntriesRequest> for SerdeAppendEntries {
    fn from(m: &AppendEntriesRequest) -> Self {
        SerdeAppendEntries {
            protocol_version: m.header.protocol_version,
            id: buf(&m.header.id),
            addr: buf(&m.header.addr),
            term: m.term,
            leader: buf(&m.leader),
            prev_log_entry: m.prev_log_entry,
            prev_log_term: m.prev_log_term,
            leader_commit_index: m.leader_commit_index,
            entries: m.entries.iter().map(SerdeLog::from).collect(),
        }
    }
}

/// The request id every benchmark frame carries.
pub(crate) const REQUEST_ID: u64 = 0x0123_4567_89ab;

/// 2026-01-01T00:00:00.123456789Z: a fixed, non-zero `AppendedAt`.
pub(crate) const APPENDED_AT: Timestamp = Timestamp {
    unix_seconds: 1_767_225_600,
    nanos: 123_456_789,
    utc_offset: None,
};

const TERM: u64 = 7;
const ADDR: &[u8] = b"127.0.0.1:7000";

fn header() -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::from_static(b"n1")),
        addr: Some(Bytes::from_static(ADDR)),
    }
}

/// A heartbeat as hashicorp/raft sends it: term, header, leader address, nothing else.
pub(crate) fn heartbeat() -> AppendEntriesRequest {
    let request = AppendEntriesRequest {
        header: header(),
        term: TERM,
        leader: Some(Bytes::from_static(ADDR)),
        ..AppendEntriesRequest::default()
    };
    assert!(request.is_heartbeat());
    request
}

/// An AppendEntries carrying `count` command entries of `size` bytes each, following entry
/// 1000; each payload is its own allocation, as entries coming out of a log store would be.
pub(crate) fn append_entries(count: usize, size: usize) -> AppendEntriesRequest {
    let first = 1001;
    let entries = (0..count as u64)
        .map(|i| {
            let data: Vec<u8> = (0..size).map(|b| (b as u64 * 31 + i) as u8).collect();
            Log {
                index: first + i,
                term: TERM,
                kind: LogType::COMMAND,
                data: Some(Bytes::from(data)),
                extensions: None,
                appended_at: APPENDED_AT,
            }
        })
        .collect();
    AppendEntriesRequest {
        header: header(),
        term: TERM,
        leader: Some(Bytes::from_static(ADDR)),
        prev_log_entry: first - 1,
        prev_log_term: TERM,
        entries,
        leader_commit_index: first - 1,
    }
}

/// Total entry payload bytes in `request`.
pub(crate) fn payload_len(request: &AppendEntriesRequest) -> u64 {
    request
        .entries
        .iter()
        .map(|e| e.data.as_ref().map_or(0, |d| d.len() as u64))
        .sum()
}

/// Encode `message` as one native frame (16-byte header, then body), contiguous.
pub(crate) fn native_frame(message: &Message) -> Bytes {
    let mut queue = SendQueue::new();
    FrameEncoder::new()
        .encode(&mut queue, REQUEST_ID, Lane::Control, Flags::NONE, message)
        .expect("encode");
    Bytes::from(queue.to_vec())
}

/// Check that the two codecs agree before timing them: rmp-serde's bytes for the twin are
/// exactly raftnet's frame body, and each side decodes the other's bytes to the same message.
pub(crate) fn check_same_wire_bytes(
    request: &AppendEntriesRequest,
    frame: &Bytes,
    serde_bytes: &[u8],
) {
    let head = frame.first_chunk::<HEADER_LEN>().expect("header");
    let header = FrameHeader::parse(head, DEFAULT_MAX_BODY_LEN).expect("header parses");
    let body = frame.slice(HEADER_LEN..);
    assert_eq!(header.body_len as usize, body.len());
    assert_eq!(
        &body[..],
        serde_bytes,
        "rmp-serde's encoding differs from raftnet's body"
    );
    let decoded = decode_body(header.kind, &Bytes::copy_from_slice(serde_bytes)).expect("decode");
    assert_eq!(decoded, Message::from(request.clone()));
    let twin: SerdeAppendEntries = rmp_serde::from_slice(&body).expect("rmp-serde decode");
    assert_eq!(twin, SerdeAppendEntries::from(request));
}
