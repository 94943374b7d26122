//! The messages of a Raft transport, modelled field for field on hashicorp/raft's newest
//! transport (`commands.go`, `log.go`), so that a codec can speak either raftnet's native
//! format or hashicorp's own wire format without losing anything.
//!
//! Two rules shape these types:
//! - every Go `[]byte` is an `Option<Bytes>`: Go tells a nil slice (`None`, msgpack `nil`) from
//!   an empty one (`Some(empty)`), and hashicorp's heartbeat rule depends on the difference
//!   (see [`AppendEntriesRequest::is_heartbeat`]);
//! - entry payloads are [`Bytes`], so a decoded entry's data is a slice of the buffer the
//!   frame was read into, never a copy.

use bytes::Bytes;

/// What a message is: one of the five requests, their responses, a piece of a snapshot body,
/// or an error answer. The discriminants are the native format's type bytes (requests use
/// hashicorp's rpc type numbers; responses set the top bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// [`AppendEntriesRequest`], heartbeats included.
    AppendEntries = 0x00,
    /// [`RequestVoteRequest`].
    RequestVote = 0x01,
    /// [`InstallSnapshotRequest`].
    InstallSnapshot = 0x02,
    /// [`TimeoutNowRequest`].
    TimeoutNow = 0x03,
    /// [`RequestPreVoteRequest`].
    RequestPreVote = 0x04,
    /// Raw snapshot bytes (no msgpack).
    SnapshotChunk = 0x05,
    /// [`AppendEntriesResponse`].
    AppendEntriesResponse = 0x80,
    /// [`RequestVoteResponse`].
    RequestVoteResponse = 0x81,
    /// [`InstallSnapshotResponse`].
    InstallSnapshotResponse = 0x82,
    /// [`TimeoutNowResponse`].
    TimeoutNowResponse = 0x83,
    /// [`RequestPreVoteResponse`].
    RequestPreVoteResponse = 0x84,
    /// The remote's error text (a msgpack string), answering a request.
    Error = 0xFF,
}

impl MessageType {
    /// The type a native type byte names (`None`: no type; a decoder reports
    /// [`WireError::UnknownMessageType`](crate::wire::WireError::UnknownMessageType)).
    pub fn from_u8(byte: u8) -> Option<MessageType> {
        Some(match byte {
            0x00 => MessageType::AppendEntries,
            0x01 => MessageType::RequestVote,
            0x02 => MessageType::InstallSnapshot,
            0x03 => MessageType::TimeoutNow,
            0x04 => MessageType::RequestPreVote,
            0x05 => MessageType::SnapshotChunk,
            0x80 => MessageType::AppendEntriesResponse,
            0x81 => MessageType::RequestVoteResponse,
            0x82 => MessageType::InstallSnapshotResponse,
            0x83 => MessageType::TimeoutNowResponse,
            0x84 => MessageType::RequestPreVoteResponse,
            0xFF => MessageType::Error,
            _ => return None,
        })
    }

    /// Whether this type is one of the five requests (what a serving connection accepts,
    /// besides snapshot chunks).
    pub fn is_request(self) -> bool {
        self.response_type().is_some()
    }

    /// The response type that answers this request type (`None` for anything but a request).
    pub fn response_type(self) -> Option<MessageType> {
        Some(match self {
            MessageType::AppendEntries => MessageType::AppendEntriesResponse,
            MessageType::RequestVote => MessageType::RequestVoteResponse,
            MessageType::InstallSnapshot => MessageType::InstallSnapshotResponse,
            MessageType::TimeoutNow => MessageType::TimeoutNowResponse,
            MessageType::RequestPreVote => MessageType::RequestPreVoteResponse,
            _ => return None,
        })
    }
}

/// Fields every request and response carries (Go's embedded `RPCHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RpcHeader {
    /// The Raft protocol version of the sender (hashicorp: 0 to 3).
    pub protocol_version: i64,
    /// The sender's server id (Go `ID []byte`).
    pub id: Option<Bytes>,
    /// The sender's encoded address (Go `Addr []byte`); receivers prefer it to the legacy
    /// `leader`/`candidate` fields.
    pub addr: Option<Bytes>,
}

/// The type of a log entry (Go `LogType uint8`). Unknown values are kept as they are, so a
/// newer peer's entries pass through unchanged.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogType(pub u8);

impl LogType {
    /// An application command for the state machine.
    pub const COMMAND: LogType = LogType(0);
    /// A no-op entry a new leader appends to commit its term.
    pub const NOOP: LogType = LogType(1);
    /// Deprecated peer addition (protocol 0).
    pub const ADD_PEER_DEPRECATED: LogType = LogType(2);
    /// Deprecated peer removal (protocol 0).
    pub const REMOVE_PEER_DEPRECATED: LogType = LogType(3);
    /// A barrier: applied once everything before it is applied.
    pub const BARRIER: LogType = LogType(4);
    /// A membership configuration change.
    pub const CONFIGURATION: LogType = LogType(5);

    /// The Go name of a known type, `None` for values hashicorp/raft does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "LogCommand",
            1 => "LogNoop",
            2 => "LogAddPeerDeprecated",
            3 => "LogRemovePeerDeprecated",
            4 => "LogBarrier",
            5 => "LogConfiguration",
            _ => return None,
        })
    }
}

impl std::fmt::Debug for LogType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "LogType({})", self.0),
        }
    }
}

/// A point in time as Go's `time.Time` carries it on the wire (only `Log.AppendedAt` uses it).
///
/// Go keeps the zone offset with the instant and writes it into its binary form, so it is kept
/// here too: `utc_offset` is `None` for a UTC time and `Some(seconds east of UTC)` for a time in
/// a fixed or local zone (a Go leader on a UTC host writes `Some(0)`, not `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub unix_seconds: i64,
    /// Nanoseconds within the second, below 1 000 000 000.
    pub nanos: u32,
    /// The zone offset in seconds east of UTC, `None` for UTC itself.
    pub utc_offset: Option<i32>,
}

impl Timestamp {
    /// Go's zero `time.Time` (January 1, year 1, 00:00:00 UTC): what an entry carries when its
    /// leader did not set `AppendedAt`.
    pub const ZERO: Timestamp = Timestamp {
        unix_seconds: -62_135_596_800,
        nanos: 0,
        utc_offset: None,
    };

    /// Whether this is Go's zero time.
    pub fn is_zero(&self) -> bool {
        self.unix_seconds == Self::ZERO.unix_seconds && self.nanos == 0
    }

    /// The current time, in UTC.
    pub fn now() -> Timestamp {
        Self::from(std::time::SystemTime::now())
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::ZERO
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(time: std::time::SystemTime) -> Self {
        let (unix_seconds, nanos) = match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
            Err(before) => {
                let before = before.duration();
                let (secs, nanos) = (before.as_secs() as i64, before.subsec_nanos());
                if nanos == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - nanos)
                }
            }
        };
        Timestamp {
            unix_seconds,
            nanos,
            utc_offset: None,
        }
    }
}

/// One replicated log entry (Go `Log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Log {
    /// The entry's index.
    pub index: u64,
    /// The term in which the entry was created.
    pub term: u64,
    /// What the entry is.
    pub kind: LogType,
    /// The entry's payload (a slice of the received frame after decoding).
    pub data: Option<Bytes>,
    /// Extra data that the state machine does not see (Go `Extensions`).
    pub extensions: Option<Bytes>,
    /// When the leader appended the entry; [`Timestamp::ZERO`] if it did not say.
    pub appended_at: Timestamp,
}

impl Log {
    /// A command entry carrying `data`, with no extensions and no timestamp.
    pub fn command(index: u64, term: u64, data: impl Into<Bytes>) -> Log {
        Log {
            index,
            term,
            kind: LogType::COMMAND,
            data: Some(data.into()),
            ..Log::default()
        }
    }
}

/// Replicate entries, or assert leadership when it carries none (Go `AppendEntriesRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AppendEntriesRequest {
    /// Sender's header.
    pub header: RpcHeader,
    /// The leader's term.
    pub term: u64,
    /// Deprecated leader address, still sent by hashicorp/raft for older peers.
    pub leader: Option<Bytes>,
    /// Index of the entry just before `entries`.
    pub prev_log_entry: u64,
    /// Term of that entry.
    pub prev_log_term: u64,
    /// New entries to store, oldest first.
    pub entries: Vec<Log>,
    /// The leader's commit index.
    pub leader_commit_index: u64,
}

impl AppendEntriesRequest {
    /// Whether this request is a heartbeat by hashicorp/raft's rule (`net_transport.go`, newest
    /// version): a non-zero term, a leader address that is present (the header's `addr` if it
    /// is non-empty, otherwise the legacy `leader` field, which must be non-nil, though it may
    /// be empty), and everything else zero: no previous entry, no entries, no commit index.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use raftnet::message::AppendEntriesRequest;
    /// let mut hb = AppendEntriesRequest { term: 10, ..Default::default() };
    /// assert!(!hb.is_heartbeat()); // no leader address at all: nil Leader
    /// hb.leader = Some(Bytes::new()); // an empty, non-nil Leader is enough
    /// assert!(hb.is_heartbeat());
    /// ```
    pub fn is_heartbeat(&self) -> bool {
        let leader_present = match &self.header.addr {
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

/// The answer to an [`AppendEntriesRequest`] (Go `AppendEntriesResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AppendEntriesResponse {
    /// Responder's header.
    pub header: RpcHeader,
    /// The responder's current term, so a stale leader can step down.
    pub term: u64,
    /// The responder's last log index, a hint for the leader.
    pub last_log: u64,
    /// Whether the entries were stored.
    pub success: bool,
    /// Whether the leader may retry without backing off (the follower was busy, not failing).
    pub no_retry_backoff: bool,
}

/// Ask for a vote (Go `RequestVoteRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestVoteRequest {
    /// Sender's header.
    pub header: RpcHeader,
    /// The candidate's term.
    pub term: u64,
    /// Deprecated candidate address, still sent by hashicorp/raft for older peers.
    pub candidate: Option<Bytes>,
    /// The candidate's last log index.
    pub last_log_index: u64,
    /// The candidate's last log term.
    pub last_log_term: u64,
    /// Whether this election is a leadership transfer (the voter then ignores its leader).
    pub leadership_transfer: bool,
}

/// The answer to a [`RequestVoteRequest`] (Go `RequestVoteResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestVoteResponse {
    /// Responder's header.
    pub header: RpcHeader,
    /// The responder's term.
    pub term: u64,
    /// Deprecated peer set, only filled for protocol version 0/1.
    pub peers: Option<Bytes>,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// Ask whether a vote would be granted, without disrupting the cluster (Go
/// `RequestPreVoteRequest`, hashicorp/raft v1.7.0 and later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestPreVoteRequest {
    /// Sender's header.
    pub header: RpcHeader,
    /// The term the candidate would move to.
    pub term: u64,
    /// The candidate's last log index.
    pub last_log_index: u64,
    /// The candidate's last log term.
    pub last_log_term: u64,
}

/// The answer to a [`RequestPreVoteRequest`] (Go `RequestPreVoteResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestPreVoteResponse {
    /// Responder's header.
    pub header: RpcHeader,
    /// The responder's term.
    pub term: u64,
    /// Whether the pre-vote was granted.
    pub granted: bool,
}

/// Push a snapshot to a follower (Go `InstallSnapshotRequest`). The snapshot's bytes (exactly
/// `size` of them) follow the request as [`SnapshotChunk`](Message::SnapshotChunk) frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InstallSnapshotRequest {
    /// Sender's header.
    pub header: RpcHeader,
    /// The snapshot format version (hashicorp: 0 or 1).
    pub snapshot_version: i64,
    /// The leader's term.
    pub term: u64,
    /// Deprecated leader address, still sent by hashicorp/raft.
    pub leader: Option<Bytes>,
    /// The last index the snapshot covers.
    pub last_log_index: u64,
    /// The term of that index.
    pub last_log_term: u64,
    /// Deprecated peer set (protocol version 0).
    pub peers: Option<Bytes>,
    /// The cluster configuration at `configuration_index`, encoded by the Raft library.
    pub configuration: Option<Bytes>,
    /// The log index of that configuration.
    pub configuration_index: u64,
    /// The number of snapshot bytes that follow.
    pub size: i64,
}

/// The answer to an [`InstallSnapshotRequest`] (Go `InstallSnapshotResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InstallSnapshotResponse {
    /// Responder's header.
    pub header: RpcHeader,
    /// The responder's term.
    pub term: u64,
    /// Whether the snapshot was installed.
    pub success: bool,
}

/// Tell a follower to start an election at once (leadership transfer; Go `TimeoutNowRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimeoutNowRequest {
    /// Sender's header.
    pub header: RpcHeader,
}

/// The answer to a [`TimeoutNowRequest`] (Go `TimeoutNowResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TimeoutNowResponse {
    /// Responder's header.
    pub header: RpcHeader,
}

/// A request one Raft node sends another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Replicate entries or heartbeat.
    AppendEntries(AppendEntriesRequest),
    /// Ask for a vote.
    RequestVote(RequestVoteRequest),
    /// Start a snapshot transfer; the body follows as chunks.
    InstallSnapshot(InstallSnapshotRequest),
    /// Start an election now.
    TimeoutNow(TimeoutNowRequest),
    /// Ask for a pre-vote.
    RequestPreVote(RequestPreVoteRequest),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// Answers [`Request::AppendEntries`].
    AppendEntries(AppendEntriesResponse),
    /// Answers [`Request::RequestVote`].
    RequestVote(RequestVoteResponse),
    /// Answers [`Request::InstallSnapshot`].
    InstallSnapshot(InstallSnapshotResponse),
    /// Answers [`Request::TimeoutNow`].
    TimeoutNow(TimeoutNowResponse),
    /// Answers [`Request::RequestPreVote`].
    RequestPreVote(RequestPreVoteResponse),
}

/// Everything that travels in a frame body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A successful answer.
    Response(Response),
    /// A piece of a snapshot body, following an [`InstallSnapshotRequest`] with the same
    /// request id. The last piece has [`Flags::END_STREAM`](crate::wire::Flags::END_STREAM) set.
    SnapshotChunk(Bytes),
    /// The remote's error text, answering a request in place of a response (hashicorp: the
    /// error string Raft's `Respond` was given).
    Error(String),
}

macro_rules! impl_from {
    ($($outer:ident :: $variant:ident ($inner:ty)),* $(,)?) => {$(
        impl From<$inner> for $outer {
            fn from(value: $inner) -> Self {
                $outer::$variant(value)
            }
        }
    )*};
}

impl_from!(
    Request::AppendEntries(AppendEntriesRequest),
    Request::RequestVote(RequestVoteRequest),
    Request::InstallSnapshot(InstallSnapshotRequest),
    Request::TimeoutNow(TimeoutNowRequest),
    Request::RequestPreVote(RequestPreVoteRequest),
    Response::AppendEntries(AppendEntriesResponse),
    Response::RequestVote(RequestVoteResponse),
    Response::InstallSnapshot(InstallSnapshotResponse),
    Response::TimeoutNow(TimeoutNowResponse),
    Response::RequestPreVote(RequestPreVoteResponse),
    Message::Request(Request),
    Message::Response(Response),
);

macro_rules! impl_into_message {
    ($($outer:ident ($inner:ty)),* $(,)?) => {$(
        impl From<$inner> for Message {
            fn from(value: $inner) -> Self {
                Message::$outer(value.into())
            }
        }
    )*};
}

impl_into_message!(
    Request(AppendEntriesRequest),
    Request(RequestVoteRequest),
    Request(InstallSnapshotRequest),
    Request(TimeoutNowRequest),
    Request(RequestPreVoteRequest),
    Response(AppendEntriesResponse),
    Response(RequestVoteResponse),
    Response(InstallSnapshotResponse),
    Response(TimeoutNowResponse),
    Response(RequestPreVoteResponse),
);

impl Message {
    /// What kind of message this is.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Request(r) => r.message_type(),
            Message::Response(r) => r.message_type(),
            Message::SnapshotChunk(_) => MessageType::SnapshotChunk,
            Message::Error(_) => MessageType::Error,
        }
    }
}

impl Request {
    /// The frame type that carries this request.
    pub fn message_type(&self) -> MessageType {
        match self {
            Request::AppendEntries(_) => MessageType::AppendEntries,
            Request::RequestVote(_) => MessageType::RequestVote,
            Request::InstallSnapshot(_) => MessageType::InstallSnapshot,
            Request::TimeoutNow(_) => MessageType::TimeoutNow,
            Request::RequestPreVote(_) => MessageType::RequestPreVote,
        }
    }

    /// The header of the request.
    pub fn header(&self) -> &RpcHeader {
        match self {
            Request::AppendEntries(r) => &r.header,
            Request::RequestVote(r) => &r.header,
            Request::InstallSnapshot(r) => &r.header,
            Request::TimeoutNow(r) => &r.header,
            Request::RequestPreVote(r) => &r.header,
        }
    }
}

impl Response {
    /// The frame type that carries this response.
    pub fn message_type(&self) -> MessageType {
        match self {
            Response::AppendEntries(_) => MessageType::AppendEntriesResponse,
            Response::RequestVote(_) => MessageType::RequestVoteResponse,
            Response::InstallSnapshot(_) => MessageType::InstallSnapshotResponse,
            Response::TimeoutNow(_) => MessageType::TimeoutNowResponse,
            Response::RequestPreVote(_) => MessageType::RequestPreVoteResponse,
        }
    }

    /// The header of the response.
    pub fn header(&self) -> &RpcHeader {
        match self {
            Response::AppendEntries(r) => &r.header,
            Response::RequestVote(r) => &r.header,
            Response::InstallSnapshot(r) => &r.header,
            Response::TimeoutNow(r) => &r.header,
            Response::RequestPreVote(r) => &r.header,
        }
    }
}
