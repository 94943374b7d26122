//! Serde twins of raftnet's messages (`raftnet::message`): the same fields in raftnet's body order,
//! the `RpcHeader`'s three fields (`protocol_version`, `id`, `addr`) first, flattened, Go
//! `[]byte` fields as `Option<ByteBuf>`. rmp-serde's default struct encoding is an array, like
//! raftnet's body, so a twin encodes byte for byte as raftnet's body.
//!
//! Two packages compile this file: raftnet-bench, whose tokio baseline sends these messages,
//! and raftnet's codec benchmark (`benches/support` includes it by path and times [`Log`] and
//! [`AppendEntriesRequest`] against raftnet's codec). So it needs nothing but serde and
//! serde_bytes, which both have.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Twin of `raftnet::message::Log` (the timestamp's three parts inline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Log {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    pub data: Option<ByteBuf>,
    pub extensions: Option<ByteBuf>,
    pub appended_at_unix_seconds: i64,
    pub appended_at_nanos: u32,
    pub appended_at_utc_offset: Option<i32>,
}

/// Twin of `raftnet::message::AppendEntriesRequest`, in raftnet's body order: the header's three
/// fields first, and `leader_commit_index` before `entries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AppendEntriesRequest {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub term: u64,
    pub leader: Option<ByteBuf>,
    pub prev_log_entry: u64,
    pub prev_log_term: u64,
    pub leader_commit_index: u64,
    pub entries: Vec<Log>,
}

impl AppendEntriesRequest {
    /// hashicorp/raft's heartbeat rule (as `raftnet::message::AppendEntriesRequest::is_heartbeat`).
    pub(crate) fn is_heartbeat(&self) -> bool {
        let leader_present = match &self.addr {
            Some(addr) if !addr.is_empty() => true,
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
pub(crate) struct AppendEntriesResponse {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub term: u64,
    pub last_log: u64,
    pub success: bool,
    pub no_retry_backoff: bool,
}

/// Twin of `raftnet::message::RequestVoteRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestVoteRequest {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub term: u64,
    pub candidate: Option<ByteBuf>,
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub leadership_transfer: bool,
}

/// Twin of `raftnet::message::RequestVoteResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestVoteResponse {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub term: u64,
    pub peers: Option<ByteBuf>,
    pub granted: bool,
}

/// Twin of `raftnet::message::InstallSnapshotRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstallSnapshotRequest {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub snapshot_version: i64,
    pub term: u64,
    pub leader: Option<ByteBuf>,
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub peers: Option<ByteBuf>,
    pub configuration: Option<ByteBuf>,
    pub configuration_index: u64,
    pub size: i64,
}

/// Twin of `raftnet::message::InstallSnapshotResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstallSnapshotResponse {
    pub protocol_version: i64,
    pub id: Option<ByteBuf>,
    pub addr: Option<ByteBuf>,
    pub term: u64,
    pub success: bool,
}

/// Everything that travels in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Message {
    AppendEntries(AppendEntriesRequest),
    AppendEntriesResponse(AppendEntriesResponse),
    RequestVote(RequestVoteRequest),
    RequestVoteResponse(RequestVoteResponse),
    InstallSnapshot(Box<InstallSnapshotRequest>),
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// A piece of the snapshot body that follows an `InstallSnapshot` with the same id.
    SnapshotChunk {
        data: ByteBuf,
        last: bool,
    },
}
