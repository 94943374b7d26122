//! The tokio baseline: the scenarios on tokio + tokio-util's `LengthDelimitedCodec` + rmp-serde,
//! written as a competent user would write a Raft transport with them (perf-anchors.md,
//! section B, "batched writes").
//!
//! - The messages are serde structs mirroring `raftnet::wire`'s (Go `[]byte` fields as
//!   `Option<ByteBuf>`), in raftnet's field order with the header's three fields flattened, so a
//!   body is byte for byte raftnet's body (a test below checks it). Each frame is an envelope
//!   (request id + message enum), encoded with `rmp_serde`, framed by `LengthDelimitedCodec`.
//! - One long-lived TCP connection per peer, `TCP_NODELAY` on, requests multiplexed by id. A
//!   writer task per connection end drains an mpsc channel: `feed` every frame available, then
//!   one `flush`. A reader task per end decodes frames; on the client it completes the caller's
//!   `oneshot` found by id in a `HashMap`.
//! - Where raftnet's side hands a request to its consumer thread (votes, appends: the Raft
//!   loop's work), the server hands it to a consumer task over an mpsc channel, and the consumer
//!   (standing for the Raft loop) answers. Heartbeats are answered in the connection (reader)
//!   task, as raftnet answers them on its reactor; so are snapshots, whose chunks the connection
//!   task counts (raftnet's consumer thread reads them from a `SnapshotReader` instead).
//! - A snapshot is the request, then the body as 256 KiB chunk messages with the same id on the
//!   same connection, the response after the last chunk; the server counts the bytes.
//! - Each node (server, client) has its own multi-thread runtime with 2 workers, as two Raft
//!   processes would; the server's is built inside [`pin::as_server`], the client's inside
//!   [`pin::as_client`], and every caller runs as a task on the client runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::pin;
use crate::scenario::{
    BULK_PIPELINE_DEPTH, Control, FAN_IN_CONNECTIONS, Implementation, PIPELINE_DEPTH,
    SNAPSHOT_SIZE, Sample, Scenario,
};

/// The tokio baseline.
pub struct TokioImpl;

/// Snapshot body chunk size.
const SNAPSHOT_CHUNK: usize = 256 << 10;
/// The largest frame either end accepts (a 1 MiB entry plus its envelope fits easily).
const MAX_FRAME: usize = 16 << 20;
/// Frames a connection's writer channel holds (a common channel size). It bounds how much
/// background data can queue in user space ahead of a heartbeat in `heartbeat-under-load`
/// (32 snapshot chunks = 8 MiB, or the 8 in-flight 1 MiB entries); the sockets' kernel buffers
/// hold more. Measured here: 32 costs the 128-deep pipelines nothing against 128, while 8 costs
/// them about 30 %; 128 raised the under-load heartbeat p50 by about half.
const WRITE_QUEUE: usize = 32;
/// Requests the server's consumer channel holds.
const CONSUMER_QUEUE: usize = 2 * PIPELINE_DEPTH;
/// Worker threads per node runtime.
const WORKERS: usize = 2;

const TERM: u64 = 7;
const LEADER_ID: &[u8] = b"n1";
const LEADER_ADDR: &[u8] = b"127.0.0.1:7000";
const FOLLOWER_ID: &[u8] = b"n2";
const FOLLOWER_ADDR: &[u8] = b"127.0.0.1:7001";
/// The index the append scenarios' entries follow.
const PREV_INDEX: u64 = 1000;
/// 2026-01-01T00:00:00.123456789Z, the entries' `AppendedAt`.
const APPENDED_AT: (i64, u32) = (1_767_225_600, 123_456_789);

/// Serde twins of raftnet's messages (`raftnet::wire`): the same fields in raftnet's body order,
/// the `RpcHeader`'s three fields (`protocol_version`, `id`, `addr`) first, flattened.
mod wire {
    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    /// Twin of `raftnet::wire::Log` (the timestamp's three parts inline).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Log {
        pub index: u64,
        pub term: u64,
        pub kind: u8,
        pub data: Option<ByteBuf>,
        pub extensions: Option<ByteBuf>,
        pub appended_at_unix_seconds: i64,
        pub appended_at_nanos: u32,
        pub appended_at_utc_offset: Option<i32>,
    }

    /// Twin of `raftnet::wire::AppendEntriesRequest`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct AppendEntriesRequest {
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
        /// hashicorp/raft's heartbeat rule (as `raftnet::wire::AppendEntriesRequest::is_heartbeat`).
        pub fn is_heartbeat(&self) -> bool {
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

    /// Twin of `raftnet::wire::AppendEntriesResponse`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct AppendEntriesResponse {
        pub protocol_version: i64,
        pub id: Option<ByteBuf>,
        pub addr: Option<ByteBuf>,
        pub term: u64,
        pub last_log: u64,
        pub success: bool,
        pub no_retry_backoff: bool,
    }

    /// Twin of `raftnet::wire::RequestVoteRequest`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RequestVoteRequest {
        pub protocol_version: i64,
        pub id: Option<ByteBuf>,
        pub addr: Option<ByteBuf>,
        pub term: u64,
        pub candidate: Option<ByteBuf>,
        pub last_log_index: u64,
        pub last_log_term: u64,
        pub leadership_transfer: bool,
    }

    /// Twin of `raftnet::wire::RequestVoteResponse`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RequestVoteResponse {
        pub protocol_version: i64,
        pub id: Option<ByteBuf>,
        pub addr: Option<ByteBuf>,
        pub term: u64,
        pub peers: Option<ByteBuf>,
        pub granted: bool,
    }

    /// Twin of `raftnet::wire::InstallSnapshotRequest`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct InstallSnapshotRequest {
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

    /// Twin of `raftnet::wire::InstallSnapshotResponse`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct InstallSnapshotResponse {
        pub protocol_version: i64,
        pub id: Option<ByteBuf>,
        pub addr: Option<ByteBuf>,
        pub term: u64,
        pub success: bool,
    }

    /// Everything that travels in a frame.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Message {
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
}

use wire::Message;

/// A frame as sent: the request id and a borrowed message, so a request prepared once is
/// encoded straight from where it lives (no clone of its payloads per operation). (Also the
/// frames of the openraft cluster's tokio network, `crate::cluster`, with openraft's messages.)
#[derive(Serialize)]
struct EnvelopeRef<'a, M> {
    id: u64,
    message: &'a M,
}

/// A frame as received (same encoding as [`EnvelopeRef`]).
#[derive(Deserialize)]
pub(crate) struct Envelope<M> {
    pub(crate) id: u64,
    pub(crate) message: M,
}

/// Encode a frame into a buffer of `hint` bytes to start with.
pub(crate) fn encode_frame<M: Serialize>(
    id: u64,
    message: &M,
    hint: usize,
) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(hint);
    rmp_serde::encode::write(&mut out, &EnvelopeRef { id, message })
        .map_err(|e| format!("encode: {e}"))?;
    Ok(Bytes::from(out))
}

fn encode(id: u64, message: &Message) -> Bytes {
    let hint = match message {
        Message::AppendEntries(m) => {
            128 + m
                .entries
                .iter()
                .map(|e| 64 + e.data.as_ref().map_or(0, |d| d.len()))
                .sum::<usize>()
        }
        Message::SnapshotChunk { data, .. } => 32 + data.len(),
        _ => 128,
    };
    encode_frame(id, message, hint).expect("rmp-serde encodes these messages")
}

pub(crate) fn decode<M: DeserializeOwned>(frame: &[u8]) -> Result<Envelope<M>, String> {
    rmp_serde::from_slice(frame).map_err(|e| format!("decode: {e}"))
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn buf(bytes: &[u8]) -> Option<ByteBuf> {
    Some(ByteBuf::from(bytes))
}

// ---------------------------------------------------------------------------------------------
// The requests (built once per run; callers encode them by reference).

/// A heartbeat as hashicorp/raft sends it: term, header id/addr, leader address, nothing else.
fn heartbeat() -> Message {
    let request = wire::AppendEntriesRequest {
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
fn append_entries(count: usize, size: usize) -> Message {
    let entries = (0..count as u64)
        .map(|i| wire::Log {
            index: PREV_INDEX + 1 + i,
            term: TERM,
            kind: 0,
            data: Some(ByteBuf::from(
                (0..size)
                    .map(|b| (b as u64 * 31 + i) as u8)
                    .collect::<Vec<u8>>(),
            )),
            extensions: None,
            appended_at_unix_seconds: APPENDED_AT.0,
            appended_at_nanos: APPENDED_AT.1,
            appended_at_utc_offset: None,
        })
        .collect();
    Message::AppendEntries(wire::AppendEntriesRequest {
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

fn request_vote() -> Message {
    Message::RequestVote(wire::RequestVoteRequest {
        protocol_version: 3,
        id: buf(LEADER_ID),
        addr: buf(LEADER_ADDR),
        term: TERM + 1,
        candidate: buf(LEADER_ADDR),
        last_log_index: PREV_INDEX,
        last_log_term: TERM,
        leadership_transfer: false,
    })
}

fn install_snapshot() -> Message {
    Message::InstallSnapshot(Box::new(wire::InstallSnapshotRequest {
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

/// A snapshot transfer prepared once: the request and the two kinds of chunk message.
struct Snapshot {
    request: Message,
    chunk: Message,
    last_chunk: Message,
    chunks: usize,
}

impl Snapshot {
    fn new() -> Snapshot {
        assert_eq!(SNAPSHOT_SIZE % SNAPSHOT_CHUNK, 0);
        let data = ByteBuf::from(
            (0..SNAPSHOT_CHUNK)
                .map(|b| (b * 7) as u8)
                .collect::<Vec<u8>>(),
        );
        Snapshot {
            request: install_snapshot(),
            chunk: Message::SnapshotChunk {
                data: data.clone(),
                last: false,
            },
            last_chunk: Message::SnapshotChunk { data, last: true },
            chunks: SNAPSHOT_SIZE / SNAPSHOT_CHUNK,
        }
    }
}

/// The server's answer to a request, `None` for anything that is not a request it answers.
fn answer(message: &Message) -> Option<Message> {
    Some(match message {
        Message::AppendEntries(m) => Message::AppendEntriesResponse(wire::AppendEntriesResponse {
            protocol_version: 3,
            id: buf(FOLLOWER_ID),
            addr: buf(FOLLOWER_ADDR),
            term: m.term,
            last_log: m.entries.last().map_or(m.prev_log_entry, |e| e.index),
            success: true,
            no_retry_backoff: false,
        }),
        Message::RequestVote(m) => Message::RequestVoteResponse(wire::RequestVoteResponse {
            protocol_version: 3,
            id: buf(FOLLOWER_ID),
            addr: buf(FOLLOWER_ADDR),
            term: m.term,
            peers: None,
            granted: true,
        }),
        _ => return None,
    })
}

fn check_success(response: &Message) -> Result<(), String> {
    let ok = match response {
        Message::AppendEntriesResponse(r) => r.success,
        Message::RequestVoteResponse(r) => r.granted,
        Message::InstallSnapshotResponse(r) => r.success,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected response: {response:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Connection plumbing shared by both ends.

/// The writer task of one connection end: batched writes. It waits for a frame, `feed`s it and
/// every other frame already queued (`feed` writes only when the codec's buffer passes its
/// backpressure boundary), then `flush`es once.
async fn write_frames(
    mut sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    mut frames: mpsc::Receiver<Bytes>,
) {
    while let Some(frame) = frames.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        while let Ok(frame) = frames.try_recv() {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return;
        }
    }
}

/// Set `TCP_NODELAY`, split the stream, and start its writer task ([`write_frames`]) on the
/// current runtime: the frames to read, and where to queue frames to write. (Also the
/// connection of the openraft cluster's tokio network, `crate::cluster`.)
pub(crate) fn connection_ends(
    stream: TcpStream,
) -> std::io::Result<(
    FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    mpsc::Sender<Bytes>,
)> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let (frames, queued) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(write_frames(FramedWrite::new(write, codec()), queued));
    Ok((FramedRead::new(read, codec()), frames))
}

// ---------------------------------------------------------------------------------------------
// The client (one per peer): calls multiplexed by id on one connection.

struct Pending<M> {
    /// The connection's reader has ended: no answer will come.
    closed: bool,
    waiting: HashMap<u64, oneshot::Sender<M>>,
}

struct ClientShared<M> {
    frames: mpsc::Sender<Bytes>,
    pending: Arc<Mutex<Pending<M>>>,
    next_id: AtomicU64,
}

/// One connection, calls multiplexed on it by id; `M` is what answers carry. (Also the
/// connection of the openraft cluster's tokio network, `crate::cluster`.)
pub(crate) struct Client<M>(Arc<ClientShared<M>>);

impl<M> Clone for Client<M> {
    fn clone(&self) -> Self {
        Client(self.0.clone())
    }
}

impl<M: DeserializeOwned + Send + 'static> Client<M> {
    /// Connect to `addr` and start the connection's reader and writer tasks (on the current
    /// runtime).
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client<M>, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (responses, frames) =
            connection_ends(stream).map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let pending = Arc::new(Mutex::new(Pending {
            closed: false,
            waiting: HashMap::new(),
        }));
        tokio::spawn(read_responses(responses, pending.clone()));
        Ok(Client(Arc::new(ClientShared {
            frames,
            pending,
            next_id: AtomicU64::new(1),
        })))
    }
}

impl<M> Client<M> {
    /// Whether answers can still come.
    pub(crate) fn is_open(&self) -> bool {
        !self.0.frames.is_closed() && !self.0.pending.lock().unwrap().closed
    }

    /// A new request id, and where its answer will arrive.
    pub(crate) fn register(&self) -> Result<(u64, oneshot::Receiver<M>), String> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        let mut pending = self.0.pending.lock().unwrap();
        if pending.closed {
            return Err("connection closed".into());
        }
        pending.waiting.insert(id, done);
        Ok((id, answer))
    }

    /// Stop waiting for `id` (its caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        self.0.pending.lock().unwrap().waiting.remove(&id);
    }

    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), String> {
        self.0
            .frames
            .send(frame)
            .await
            .map_err(|_| "connection closed".to_string())
    }
}

impl Client<Message> {
    /// One request, its answer.
    async fn call(&self, request: &Message) -> Result<Message, String> {
        let (id, answer) = self.register()?;
        self.send(encode(id, request)).await?;
        answer.await.map_err(|_| "connection closed".to_string())
    }

    /// One snapshot transfer: the request, then the body's chunks with the same id; the
    /// answer comes after the last chunk.
    async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<Message, String> {
        let (id, answer) = self.register()?;
        self.send(encode(id, &snapshot.request)).await?;
        for i in 0..snapshot.chunks {
            let chunk = if i + 1 == snapshot.chunks {
                &snapshot.last_chunk
            } else {
                &snapshot.chunk
            };
            self.send(encode(id, chunk)).await?;
        }
        answer.await.map_err(|_| "connection closed".to_string())
    }
}

/// The client's reader task: each answer completes the call waiting for its id.
async fn read_responses<M: DeserializeOwned>(
    mut responses: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    pending: Arc<Mutex<Pending<M>>>,
) {
    while let Some(Ok(frame)) = responses.next().await {
        let Ok(Envelope { id, message }) = decode::<M>(&frame) else {
            break;
        };
        let done = pending.lock().unwrap().waiting.remove(&id);
        if let Some(done) = done {
            let _ = done.send(message);
        }
    }
    // Fail every call still waiting (their senders drop) and any later one.
    let mut pending = pending.lock().unwrap();
    pending.closed = true;
    pending.waiting.clear();
}

// ---------------------------------------------------------------------------------------------
// The server.

/// A request handed to the consumer, with the connection to answer on.
struct Work {
    id: u64,
    request: Message,
    reply: mpsc::Sender<Bytes>,
}

/// Where the server's connection tasks send requests.
#[derive(Clone)]
struct Routing {
    /// The consumer ("Raft loop") that answers requests; `None`: the connection task answers
    /// every request itself at once.
    consumer: Option<mpsc::Sender<Work>>,
    /// With a consumer: heartbeats are still answered at once by the connection task (as
    /// raftnet's heartbeat fast path does).
    heartbeat_fast_path: bool,
}

/// A snapshot being received.
struct Transfer {
    term: u64,
    size: u64,
    received: u64,
}

/// Bind 127.0.0.1:0, accept connections, serve each in its own tasks. Runs inside the server
/// runtime.
async fn start_server(routing: Routing) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // On an accept error (e.g. out of file descriptors) stop accepting: dropping the
        // listener resets the connections still in its backlog, so their clients fail
        // instead of waiting forever.
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, routing.clone()));
        }
    });
    Ok(addr)
}

/// The consumer task: answers what the connection tasks hand it.
async fn consume(mut work: mpsc::Receiver<Work>) {
    while let Some(Work { id, request, reply }) = work.recv().await {
        if let Some(response) = answer(&request) {
            let _ = reply.send(encode(id, &response)).await;
        }
    }
}

/// One server connection: this task reads and routes requests, a writer task writes answers.
async fn serve_connection(stream: TcpStream, routing: Routing) {
    let Ok((mut requests, reply)) = connection_ends(stream) else {
        return;
    };
    let mut snapshots: HashMap<u64, Transfer> = HashMap::new();
    while let Some(Ok(frame)) = requests.next().await {
        let Ok(Envelope { id, message }) = decode::<Message>(&frame) else {
            break;
        };
        let response = match message {
            Message::InstallSnapshot(request) => {
                snapshots.insert(
                    id,
                    Transfer {
                        term: request.term,
                        size: request.size as u64,
                        received: 0,
                    },
                );
                None
            }
            // The body is read and counted, not stored.
            Message::SnapshotChunk { data, last } => {
                let Some(transfer) = snapshots.get_mut(&id) else {
                    break;
                };
                transfer.received += data.len() as u64;
                if last {
                    let transfer = snapshots.remove(&id).expect("present");
                    Some(Message::InstallSnapshotResponse(
                        wire::InstallSnapshotResponse {
                            protocol_version: 3,
                            id: buf(FOLLOWER_ID),
                            addr: buf(FOLLOWER_ADDR),
                            term: transfer.term,
                            success: transfer.received == transfer.size,
                        },
                    ))
                } else {
                    None
                }
            }
            request => {
                let fast = routing.heartbeat_fast_path
                    && matches!(&request, Message::AppendEntries(r) if r.is_heartbeat());
                match &routing.consumer {
                    Some(consumer) if !fast => {
                        let work = Work {
                            id,
                            request,
                            reply: reply.clone(),
                        };
                        if consumer.send(work).await.is_err() {
                            break;
                        }
                        None
                    }
                    _ => answer(&request),
                }
            }
        };
        if let Some(response) = response
            && reply.send(encode(id, &response)).await.is_err()
        {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The callers (tasks on the client runtime).

/// One caller: the next request when the previous answer arrived.
async fn sequential(
    client: &Client<Message>,
    request: &Message,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        check_success(&client.call(request).await?)?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// Keep `depth` requests in flight on the connection; latency = time in flight. Every
/// completion is recorded (a `Vec` push is a few ns, well under 1 % of the cheapest op here).
async fn pipelined(
    client: &Client<Message>,
    request: &Message,
    depth: usize,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let issue = || async {
        let start = Instant::now();
        (start, client.call(request).await)
    };
    let mut sample = Sample::default();
    let mut in_flight: FuturesUnordered<_> = (0..depth).map(|_| issue()).collect();
    while let Some((start, response)) = in_flight.next().await {
        check_success(&response?)?;
        sample.record(control, start.elapsed(), payload);
        if !control.stopped() {
            in_flight.push(issue());
        }
    }
    Ok(sample)
}

/// One snapshot transfer after another; op = one transfer.
async fn snapshots(client: &Client<Message>, control: &Control) -> Result<Sample, String> {
    let snapshot = Snapshot::new();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        check_success(&client.install_snapshot(&snapshot).await?)?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

/// `fan-in-1000`: each connection is its own task with its own `TcpStream` + `Framed`, doing
/// sequential heartbeats with `Framed::send` (a flush per request) and `Framed::next`.
async fn fan_in_connection(
    addr: SocketAddr,
    request: Arc<Message>,
    control: &'static Control,
) -> Result<Sample, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let mut framed = Framed::new(stream, codec());
    let mut sample = Sample::default();
    let mut id = 0;
    while !control.stopped() {
        id += 1;
        let start = Instant::now();
        framed
            .send(encode(id, &request))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let frame = framed
            .next()
            .await
            .ok_or("connection closed")?
            .map_err(|e| format!("receive: {e}"))?;
        let envelope = decode::<Message>(&frame)?;
        if envelope.id != id {
            return Err(format!("answer to {} while waiting for {id}", envelope.id));
        }
        check_success(&envelope.message)?;
        sample.record(control, start.elapsed(), 0);
    }
    Ok(sample)
}

async fn join(handle: tokio::task::JoinHandle<Result<Sample, String>>) -> Result<Sample, String> {
    handle.await.map_err(|e| format!("task failed: {e}"))?
}

/// The client side of a scenario: runs as a task on the client runtime.
async fn drive(
    scenario: Scenario,
    addr: SocketAddr,
    control: &'static Control,
) -> Result<Sample, String> {
    if scenario == Scenario::FanIn1000 {
        let request = Arc::new(heartbeat());
        let tasks: Vec<_> = (0..FAN_IN_CONNECTIONS)
            .map(|_| tokio::spawn(fan_in_connection(addr, request.clone(), control)))
            .collect();
        let mut sample = Sample::default();
        let mut failure = None;
        for task in tasks {
            match join(task).await {
                Ok(s) => sample.merge(s),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        return match failure {
            Some(e) => Err(format!("fan-in-1000: {e}")),
            None => Ok(sample),
        };
    }

    let client = Client::<Message>::connect(addr).await?;
    let payload = |s: Scenario| s.entries().map_or(0, |(n, size)| (n * size) as u64);
    match scenario {
        Scenario::HeartbeatSeq => sequential(&client, &heartbeat(), 0, control).await,
        Scenario::VoteSeq => sequential(&client, &request_vote(), 0, control).await,
        Scenario::Append100bSeq => {
            let request = append_entries(1, 100);
            sequential(&client, &request, payload(scenario), control).await
        }
        Scenario::HeartbeatPipelined => {
            pipelined(&client, &heartbeat(), PIPELINE_DEPTH, 0, control).await
        }
        Scenario::Append64x1kPipelined => {
            let request = append_entries(64, 1024);
            pipelined(
                &client,
                &request,
                PIPELINE_DEPTH,
                payload(scenario),
                control,
            )
            .await
        }
        Scenario::Append1mPipelined => {
            let request = append_entries(1, 1 << 20);
            let depth = BULK_PIPELINE_DEPTH;
            pipelined(&client, &request, depth, payload(scenario), control).await
        }
        Scenario::Snapshot64m => snapshots(&client, control).await,
        Scenario::HeartbeatUnderLoad => {
            // The background load shares the heartbeats' connection: a tokio user has one
            // multiplexed connection per peer, so a heartbeat's frame queues behind snapshot
            // chunks and 1 MiB entries already in the writer channel, the socket buffers and
            // the server's reader task (head-of-line blocking; raftnet's lanes avoid it).
            let snapshot_client = client.clone();
            let snapshot = tokio::spawn(async move { snapshots(&snapshot_client, control).await });
            let bulk_client = client.clone();
            let bulk = tokio::spawn(async move {
                let request = append_entries(1, 1 << 20);
                let depth = BULK_PIPELINE_DEPTH;
                pipelined(&bulk_client, &request, depth, 1 << 20, control).await
            });
            let heartbeats = sequential(&client, &heartbeat(), 0, control).await;
            let background = [join(snapshot).await, join(bulk).await];
            let mut sample = heartbeats?;
            for load in background {
                sample.payload_bytes += load?.payload_bytes;
            }
            Ok(sample)
        }
        Scenario::FanIn1000 => unreachable!("handled above"),
        Scenario::Cluster1 | Scenario::Cluster16 | Scenario::Cluster64 => {
            unreachable!("TokioImpl::run hands these to crate::cluster")
        }
    }
}

fn runtime(name: &str) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("build the {name} runtime: {e}"))
}

/// File descriptors `fan-in-1000` needs: both ends of every connection live in this process.
fn check_fd_limit() -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit};
    let needed = 2 * FAN_IN_CONNECTIONS as u64 + 256;
    let (soft, _hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(NOFILE): {e}"))?;
    if soft < needed {
        return Err(format!(
            "fan-in-1000 needs about {needed} file descriptors, the limit is {soft} (raise ulimit -n)"
        ));
    }
    Ok(())
}

impl Implementation for TokioImpl {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if let Some(clients) = scenario.cluster_clients() {
            return crate::cluster::run(crate::cluster::Network::Tokio, clients, control);
        }
        // SAFETY: tasks spawned on the runtimes need `'static`. Every task that holds this
        // reference runs on `client`, and `client` (and `server`) are dropped before this
        // function returns, also when it unwinds: dropping a multi-thread runtime drops every
        // task and joins its worker threads. So no use of the reference outlives the borrow.
        let control: &'static Control = unsafe { &*(control as *const Control) };
        if scenario == Scenario::FanIn1000 {
            check_fd_limit()?;
        }

        let server = pin::as_server(|| runtime("tokio-server"))?;
        let routing = match scenario {
            Scenario::HeartbeatPipelined
            | Scenario::Append64x1kPipelined
            | Scenario::Append1mPipelined => Some(false),
            // Votes and appends are the Raft loop's to answer, on both sides of the comparison
            // (raftnet hands them to its consumer thread); heartbeats take the fast path.
            Scenario::HeartbeatUnderLoad | Scenario::Append100bSeq | Scenario::VoteSeq => {
                Some(true)
            }
            _ => None,
        };
        let routing = match routing {
            None => Routing {
                consumer: None,
                heartbeat_fast_path: true,
            },
            Some(heartbeat_fast_path) => {
                let (consumer, work) = mpsc::channel(CONSUMER_QUEUE);
                server.spawn(consume(work));
                Routing {
                    consumer: Some(consumer),
                    heartbeat_fast_path,
                }
            }
        };
        let addr = server.block_on(start_server(routing))?;

        let client = pin::as_client(|| runtime("tokio-client"))?;
        // The harness thread only waits here; the callers run on the client's workers.
        let result = client.block_on(join(client.spawn(drive(scenario, addr, control))));
        drop(client);
        drop(server);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Convert a twin's bytes field back to raftnet's.
    fn bytes(b: &Option<ByteBuf>) -> Option<Bytes> {
        b.as_ref().map(|b| Bytes::copy_from_slice(b))
    }

    fn header(
        protocol_version: i64,
        id: &Option<ByteBuf>,
        addr: &Option<ByteBuf>,
    ) -> raftnet::wire::RpcHeader {
        raftnet::wire::RpcHeader {
            protocol_version,
            id: bytes(id),
            addr: bytes(addr),
        }
    }

    /// raftnet's body for the same message (its frame minus the header).
    fn raftnet_body(message: &raftnet::wire::Message) -> Vec<u8> {
        use raftnet::wire::{Flags, FrameEncoder, HEADER_LEN, Lane, SendQueue};
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
        use raftnet::wire as rw;
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

    /// Threads of this process named like the runtimes' workers.
    fn runtime_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| {
                        name.starts_with("tokio-server") || name.starts_with("tokio-client")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// The smoke test of the tokio side: every scenario, warm-up 100 ms, measured 200 ms (or
    /// `TOKIO_SMOKE_MS`), then stop; each must complete operations and shut down. Run with
    /// `--release -- --nocapture` for rough ops/s (`RAFTNET_BENCH_PIN=same|split` to place,
    /// `TOKIO_SMOKE_ONLY=<scenario>` for one scenario).
    #[test]
    fn every_scenario_completes_operations() {
        let measure_ms: u64 = std::env::var("TOKIO_SMOKE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        if let Some(p) = std::env::var("RAFTNET_BENCH_PIN")
            .ok()
            .and_then(|v| pin::Placement::from_name(&v))
        {
            pin::set_placement(p);
        }
        let only = std::env::var("TOKIO_SMOKE_ONLY").ok();
        for scenario in Scenario::ALL {
            if only.as_deref().is_some_and(|o| o != scenario.name()) {
                continue;
            }
            let control = Control::new();
            let result = std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    control.start_measuring();
                    std::thread::sleep(Duration::from_millis(measure_ms));
                    control.stop();
                });
                TokioImpl.run(scenario, &control)
            });
            let sample = result.unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
            assert_eq!(
                runtime_threads(),
                0,
                "{}: runtime threads left",
                scenario.name()
            );
            assert!(
                sample.ops > 0,
                "{}: no operation completed",
                scenario.name()
            );
            assert_eq!(sample.ops as usize, sample.latencies_ns.len());
            let mut latencies = sample.latencies_ns.clone();
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
            let secs = measure_ms as f64 / 1e3;
            println!(
                "tokio {:<24} {:>10.0} ops/s  p50 {:>9.1} µs  p99 {:>9.1} µs  {:>7.2} GB/s",
                scenario.name(),
                sample.ops as f64 / secs,
                at(0.5),
                at(0.99),
                sample.payload_bytes as f64 / secs / 1e9,
            );
        }
    }
}
