//! What the tokio scenarios send, as hashicorp/raft would: built once per run, then encoded by
//! reference for every call (no clone of their payloads per operation).

use bytes::Bytes;

use super::messages;
use super::{Message, Payload};
use crate::check::{PREV_INDEX, TERM, VOTE_TERM, snapshot_body};
use crate::scenario::SNAPSHOT_SIZE;

/// Snapshot body chunk size.
const SNAPSHOT_CHUNK: usize = 256 << 10;

const LEADER_ID: &[u8] = b"n1";
const LEADER_ADDR: &[u8] = b"127.0.0.1:7000";
/// 2026-01-01T00:00:00.123456789Z, the entries' `AppendedAt`.
const APPENDED_AT: (i64, u32) = (1_767_225_600, 123_456_789);

/// A bytes field of a message.
pub(crate) fn buf(bytes: &'static [u8]) -> Option<Payload> {
    Some(Payload(Bytes::from_static(bytes)))
}

/// A heartbeat as hashicorp/raft sends it: term, header id/addr, leader address, nothing else.
pub(crate) fn heartbeat() -> Message {
    let request = messages::AppendEntriesRequest {
        protocol_version: 3,
        id: buf(LEADER_ID),
        addr: buf(LEADER_ADDR),
        term: TERM,
        leader: buf(LEADER_ADDR),
        prev_log_entry: 0,
        prev_log_term: 0,
        leader_commit_index: 0,
        entries: Vec::new(),
    };
    debug_assert!(request.is_heartbeat());
    Message::AppendEntries(request)
}

/// An AppendEntries with `count` command entries of `size` bytes, following [`PREV_INDEX`].
pub(crate) fn append_entries(count: usize, size: usize) -> Message {
    let entries = (0..count as u64)
        .map(|i| messages::Log {
            index: PREV_INDEX + 1 + i,
            term: TERM,
            kind: 0,
            data: Some(Payload(Bytes::from(
                (0..size)
                    .map(|b| (b as u64 * 31 + i) as u8)
                    .collect::<Vec<u8>>(),
            ))),
            extensions: None,
            appended_at_unix_seconds: APPENDED_AT.0,
            appended_at_nanos: APPENDED_AT.1,
            appended_at_utc_offset: None,
        })
        .collect();
    Message::AppendEntries(messages::AppendEntriesRequest {
        protocol_version: 3,
        id: buf(LEADER_ID),
        addr: buf(LEADER_ADDR),
        term: TERM,
        leader: buf(LEADER_ADDR),
        prev_log_entry: PREV_INDEX,
        prev_log_term: TERM,
        leader_commit_index: PREV_INDEX,
        entries,
    })
}

pub(crate) fn request_vote() -> Message {
    Message::RequestVote(messages::RequestVoteRequest {
        protocol_version: 3,
        id: buf(LEADER_ID),
        addr: buf(LEADER_ADDR),
        term: VOTE_TERM,
        candidate: buf(LEADER_ADDR),
        last_log_index: PREV_INDEX,
        last_log_term: TERM,
        leadership_transfer: false,
    })
}

fn install_snapshot() -> Message {
    Message::InstallSnapshot(Box::new(messages::InstallSnapshotRequest {
        protocol_version: 3,
        id: buf(LEADER_ID),
        addr: buf(LEADER_ADDR),
        snapshot_version: 1,
        term: TERM,
        leader: buf(LEADER_ADDR),
        last_log_index: PREV_INDEX,
        last_log_term: TERM,
        peers: None,
        configuration: buf(b"n1=127.0.0.1:7000,n2=127.0.0.1:7001"),
        configuration_index: 1,
        size: SNAPSHOT_SIZE as i64,
    }))
}

/// A snapshot transfer prepared once: the request and the body's chunk messages, in order.
pub(crate) struct Snapshot {
    pub(crate) request: Message,
    pub(crate) chunks: Vec<Message>,
}

impl Snapshot {
    /// The body is the pattern the server checks byte by byte (`crate::check`), the same
    /// 64 MiB raftnet's side sends; each chunk carries its own part of it, so a chunk lost,
    /// repeated or reordered fails the transfer.
    pub(crate) fn new() -> Snapshot {
        assert_eq!(SNAPSHOT_SIZE % SNAPSHOT_CHUNK, 0);
        let body = snapshot_body();
        let count = SNAPSHOT_SIZE / SNAPSHOT_CHUNK;
        // Slices of the shared body: no copy to prepare (the encoder copies each once a send).
        let chunks = (0..count)
            .map(|i| Message::SnapshotChunk {
                data: Payload(body.slice(i * SNAPSHOT_CHUNK..(i + 1) * SNAPSHOT_CHUNK)),
                last: i + 1 == count,
            })
            .collect();
        Snapshot {
            request: install_snapshot(),
            chunks,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A twin's bytes field as raftnet's.
    fn bytes(b: &Option<Payload>) -> Option<Bytes> {
        b.as_ref().map(|p| p.0.clone())
    }

    fn header(
        protocol_version: i64,
        id: &Option<Payload>,
        addr: &Option<Payload>,
    ) -> raftnet::message::RpcHeader {
        raftnet::message::RpcHeader {
            protocol_version,
            id: bytes(id),
            addr: bytes(addr),
        }
    }

    /// raftnet's body for the same message (its frame minus the header).
    fn raftnet_body(message: &raftnet::message::Message) -> Vec<u8> {
        use raftnet::wire::native::{FrameEncoder, HEADER_LEN};
        use raftnet::wire::{Flags, Lane, SendQueue};
        let mut queue = SendQueue::new();
        FrameEncoder::new()
            .encode(&mut queue, 1, Lane::Control, Flags::NONE, message)
            .expect("encode");
        queue.to_vec()[HEADER_LEN..].to_vec()
    }

    fn twin_body(message: &Message) -> Vec<u8> {
        match message {
            Message::AppendEntries(m) => rmp_serde::to_vec(m),
            Message::RequestVote(m) => rmp_serde::to_vec(m),
            Message::InstallSnapshot(m) => rmp_serde::to_vec(m),
            _ => unreachable!(),
        }
        .unwrap()
    }

    /// The twins mirror raftnet's messages: rmp-serde writes exactly raftnet's body bytes.
    #[test]
    fn twins_encode_as_raftnet_bodies() {
        use raftnet::message as rw;
        for message in [heartbeat(), append_entries(1, 100), append_entries(3, 1024)] {
            let Message::AppendEntries(m) = &message else {
                unreachable!()
            };
            let native = rw::AppendEntriesRequest {
                header: header(m.protocol_version, &m.id, &m.addr),
                term: m.term,
                leader: bytes(&m.leader),
                prev_log_entry: m.prev_log_entry,
                prev_log_term: m.prev_log_term,
                entries: m
                    .entries
                    .iter()
                    .map(|e| rw::Log {
                        index: e.index,
                        term: e.term,
                        kind: rw::LogType(e.kind),
                        data: bytes(&e.data),
                        extensions: bytes(&e.extensions),
                        appended_at: rw::Timestamp {
                            unix_seconds: e.appended_at_unix_seconds,
                            nanos: e.appended_at_nanos,
                            utc_offset: e.appended_at_utc_offset,
                        },
                    })
                    .collect(),
                leader_commit_index: m.leader_commit_index,
            };
            assert_eq!(m.is_heartbeat(), native.is_heartbeat());
            assert_eq!(twin_body(&message), raftnet_body(&native.into()));
        }

        let vote = request_vote();
        let Message::RequestVote(m) = &vote else {
            unreachable!()
        };
        let native = rw::RequestVoteRequest {
            header: header(m.protocol_version, &m.id, &m.addr),
            term: m.term,
            candidate: bytes(&m.candidate),
            last_log_index: m.last_log_index,
            last_log_term: m.last_log_term,
            leadership_transfer: m.leadership_transfer,
        };
        assert_eq!(twin_body(&vote), raftnet_body(&native.into()));

        let snapshot = install_snapshot();
        let Message::InstallSnapshot(m) = &snapshot else {
            unreachable!()
        };
        let native = rw::InstallSnapshotRequest {
            header: header(m.protocol_version, &m.id, &m.addr),
            snapshot_version: m.snapshot_version,
            term: m.term,
            leader: bytes(&m.leader),
            last_log_index: m.last_log_index,
            last_log_term: m.last_log_term,
            peers: bytes(&m.peers),
            configuration: bytes(&m.configuration),
            configuration_index: m.configuration_index,
            size: m.size,
        };
        assert_eq!(twin_body(&snapshot), raftnet_body(&native.into()));
    }
}
