//! Serde twins of raftnet's messages (`raftnet::message`): the same fields in raftnet's body order,
//! the `RpcHeader`'s three fields (`protocol_version`, `id`, `addr`) first, flattened, Go
//! `[]byte` fields as `Option<B>`, where `B` is any type serde writes as msgpack bin.
//! rmp-serde's default struct encoding is an array, like raftnet's body, so a twin encodes byte
//! for byte as raftnet's body.
//!
//! The byte-field type is a parameter so each user picks its copies:
//! - `ByteBuf` (the default): owned, every decode copies each field; raftnet's codec benchmark
//!   times exactly that.
//! - `Payload` (a `bytes::Bytes`, `super::Payload`): what the tokio baseline sends and hands
//!   around: shared, cloned without a copy, serialized as bin.
//! - `&serde_bytes::Bytes`: what the tokio baseline decodes into first, borrowing from the
//!   frame, before [`Message::map_bytes`] turns every field into a `Payload` slice of that
//!   frame (`Bytes::slice_ref`): no copy on receipt.
//!
//! Two packages compile this file: raftnet-bench, whose tokio baseline sends these messages,
//! and raftnet's codec benchmark (`benches/support` includes it by path and times [`Log`] and
//! [`AppendEntriesRequest`] against raftnet's codec, with the default `ByteBuf`). So it needs
//! nothing but serde and serde_bytes, which both have.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Twin of `raftnet::message::Log` (the timestamp's three parts inline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Log<B = ByteBuf> {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    pub data: Option<B>,
    pub extensions: Option<B>,
    pub appended_at_unix_seconds: i64,
    pub appended_at_nanos: u32,
    pub appended_at_utc_offset: Option<i32>,
}

/// Twin of `raftnet::message::AppendEntriesRequest`, in raftnet's body order: the header's three
/// fields first, and `leader_commit_index` before `entries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppendEntriesRequest<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub term: u64,
    pub leader: Option<B>,
    pub prev_log_entry: u64,
    pub prev_log_term: u64,
    pub leader_commit_index: u64,
    pub entries: Vec<Log<B>>,
}

impl<B: AsRef<[u8]>> AppendEntriesRequest<B> {
    /// hashicorp/raft's heartbeat rule (as `raftnet::message::AppendEntriesRequest::is_heartbeat`).
    pub(crate) fn is_heartbeat(&self) -> bool {
        let leader_present = match &self.addr {
            Some(addr) if !addr.as_ref().is_empty() => true,
            _ => self.leader.is_some(),
        };
        self.term != 0
            && leader_present
            && self.prev_log_entry == 0
            && self.prev_log_term == 0
            && self.entries.is_empty()
            && self.leader_commit_index == 0
    }
}

/// Twin of `raftnet::message::AppendEntriesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppendEntriesResponse<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub term: u64,
    pub last_log: u64,
    pub success: bool,
    pub no_retry_backoff: bool,
}

/// Twin of `raftnet::message::RequestVoteRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestVoteRequest<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub term: u64,
    pub candidate: Option<B>,
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub leadership_transfer: bool,
}

/// Twin of `raftnet::message::RequestVoteResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestVoteResponse<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub term: u64,
    pub peers: Option<B>,
    pub granted: bool,
}

/// Twin of `raftnet::message::InstallSnapshotRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstallSnapshotRequest<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub snapshot_version: i64,
    pub term: u64,
    pub leader: Option<B>,
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub peers: Option<B>,
    pub configuration: Option<B>,
    pub configuration_index: u64,
    pub size: i64,
}

/// Twin of `raftnet::message::InstallSnapshotResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstallSnapshotResponse<B = ByteBuf> {
    pub protocol_version: i64,
    pub id: Option<B>,
    pub addr: Option<B>,
    pub term: u64,
    pub success: bool,
}

/// Everything that travels in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Message<B = ByteBuf> {
    AppendEntries(AppendEntriesRequest<B>),
    AppendEntriesResponse(AppendEntriesResponse<B>),
    RequestVote(RequestVoteRequest<B>),
    RequestVoteResponse(RequestVoteResponse<B>),
    InstallSnapshot(Box<InstallSnapshotRequest<B>>),
    InstallSnapshotResponse(InstallSnapshotResponse<B>),
    /// A piece of the snapshot body that follows an `InstallSnapshot` with the same id.
    SnapshotChunk {
        data: B,
        last: bool,
    },
}

impl<B> Message<B> {
    /// The same message with every byte field passed through `f` (for the tokio baseline:
    /// from borrowed slices of a frame to `Bytes` slices of it).
    pub(crate) fn map_bytes<C>(self, f: &mut impl FnMut(B) -> C) -> Message<C> {
        let mut opt = |b: Option<B>| b.map(&mut *f);
        match self {
            Message::AppendEntries(m) => Message::AppendEntries(AppendEntriesRequest {
                protocol_version: m.protocol_version,
                id: opt(m.id),
                addr: opt(m.addr),
                term: m.term,
                leader: opt(m.leader),
                prev_log_entry: m.prev_log_entry,
                prev_log_term: m.prev_log_term,
                leader_commit_index: m.leader_commit_index,
                entries: m
                    .entries
                    .into_iter()
                    .map(|e| Log {
                        index: e.index,
                        term: e.term,
                        kind: e.kind,
                        data: opt(e.data),
                        extensions: opt(e.extensions),
                        appended_at_unix_seconds: e.appended_at_unix_seconds,
                        appended_at_nanos: e.appended_at_nanos,
                        appended_at_utc_offset: e.appended_at_utc_offset,
                    })
                    .collect(),
            }),
            Message::AppendEntriesResponse(m) => {
                Message::AppendEntriesResponse(AppendEntriesResponse {
                    protocol_version: m.protocol_version,
                    id: opt(m.id),
                    addr: opt(m.addr),
                    term: m.term,
                    last_log: m.last_log,
                    success: m.success,
                    no_retry_backoff: m.no_retry_backoff,
                })
            }
            Message::RequestVote(m) => Message::RequestVote(RequestVoteRequest {
                protocol_version: m.protocol_version,
                id: opt(m.id),
                addr: opt(m.addr),
                term: m.term,
                candidate: opt(m.candidate),
                last_log_index: m.last_log_index,
                last_log_term: m.last_log_term,
                leadership_transfer: m.leadership_transfer,
            }),
            Message::RequestVoteResponse(m) => Message::RequestVoteResponse(RequestVoteResponse {
                protocol_version: m.protocol_version,
                id: opt(m.id),
                addr: opt(m.addr),
                term: m.term,
                peers: opt(m.peers),
                granted: m.granted,
            }),
            Message::InstallSnapshot(m) => {
                Message::InstallSnapshot(Box::new(InstallSnapshotRequest {
                    protocol_version: m.protocol_version,
                    id: opt(m.id),
                    addr: opt(m.addr),
                    snapshot_version: m.snapshot_version,
                    term: m.term,
                    leader: opt(m.leader),
                    last_log_index: m.last_log_index,
                    last_log_term: m.last_log_term,
                    peers: opt(m.peers),
                    configuration: opt(m.configuration),
                    configuration_index: m.configuration_index,
                    size: m.size,
                }))
            }
            Message::InstallSnapshotResponse(m) => {
                Message::InstallSnapshotResponse(InstallSnapshotResponse {
                    protocol_version: m.protocol_version,
                    id: opt(m.id),
                    addr: opt(m.addr),
                    term: m.term,
                    success: m.success,
                })
            }
            Message::SnapshotChunk { data, last } => Message::SnapshotChunk {
                data: f(data),
                last,
            },
        }
    }
}
