//! openraft 0.9 over raftnet (feature `openraft`).
//!
//! - [`RaftnetNetworkFactory`] implements openraft's `RaftNetworkFactory`: `new_client` hands out
//!   a handle onto the transport's long-lived, pooled connections, and never dials.
//! - [`RaftnetNetwork`] implements `RaftNetwork`: `append_entries`, `vote` and `install_snapshot`
//!   (openraft's own chunking drives `full_snapshot`; each chunk travels as a raftnet snapshot
//!   body, raw bytes, never a msgpack integer array). Why not one stream for the whole snapshot:
//!   openraft 0.9 (without `generic-snapshot-data`) hands the network an `AsyncRead` snapshot,
//!   while raftnet's snapshot source is a blocking `Read` drained by its pump thread, so one
//!   stream needs an async-to-blocking bridge (or the whole snapshot in memory). Chunks of
//!   `snapshot_max_chunk_size` (3 MiB by default) cost one round trip each, which is small next
//!   to moving 3 MiB.
//! - [`serve`] is the serving side: it takes the transport's inbound RPCs and drives
//!   `Raft::append_entries`, `Raft::vote` and `Raft::install_snapshot`, answering through raftnet.
//!   What it cannot hand to openraft it answers with an error and goes on serving: a request it
//!   cannot decode, a kind openraft 0.9 does not have, a snapshot chunk larger than four of the
//!   node's own `snapshot_max_chunk_size` (at least 64 MiB; the chunk is gathered in memory).
//!
//! Build the transport with [`NetTransport::bind_on`](crate::NetTransport::bind_on), on the
//! runtime openraft runs on: the transport's driver is then a task beside openraft's, and a
//! call, the driver and `serve` hand work to each other as tasks instead of waking a sleeping thread at
//! each crossing (BENCHMARKS.md, openraft cluster: 0.55x → 0.87x the tokio network's writes/s at
//! 64 clients with the nodes on two CPUs). `NetTransport::bind` works too.
//!
//! # Example
//!
//! Two nodes, each with its own transport and Raft, in one process; a write on the leader is
//! replicated to the other over TCP. The dependencies, in the `Cargo.toml` of a crate of your
//! own (openraft pinned to the version raftnet pins; openraft-memstore is the example's
//! in-memory store, where a real node has its own log and state machine):
//!
//! ```toml Cargo.toml
//! [dependencies]
//! raftnet = { path = "../raftnet", features = ["openraft"] }   # see the README for git
//! openraft = { version = "=0.9.25", features = ["serde"] }
//! openraft-memstore = "=0.9.25"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! and the whole `src/main.rs` (`tests/readme.rs` builds it as such a crate and runs it):
//!
//! ```rust main.rs
//! use std::collections::{BTreeMap, BTreeSet};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use openraft::storage::Adaptor;
//! use openraft::{Config, Raft};
//! use openraft_memstore::{ClientRequest, MemStore, TypeConfig};
//! use raftnet::openraft::{AddressOf, RaftnetNetworkFactory, serve};
//! use raftnet::{NetTransport, ServerAddress, Transport};
//!
//! #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Arc::new(Config::default().validate()?);
//!     let transports: BTreeMap<u64, Arc<NetTransport>> = (1..=2)
//!         // Each transport's driver runs as a task on this runtime, beside openraft's tasks.
//!         .map(|id| {
//!             let runtime = tokio::runtime::Handle::current();
//!             let transport = NetTransport::bind_on("127.0.0.1:0", None, Default::default(), &runtime)?;
//!             Ok((id, Arc::new(transport)))
//!         })
//!         .collect::<raftnet::Result<_>>()?;
//!     // memstore's `Node` is `()`: a table says where each node id listens.
//!     let book: BTreeMap<u64, ServerAddress> =
//!         transports.iter().map(|(id, t)| (*id, t.local_addr())).collect();
//!     let address_of: AddressOf<TypeConfig> =
//!         Arc::new(move |id: &u64, _: &()| book.get(id).cloned().unwrap_or_default());
//!
//!     let mut rafts = BTreeMap::new();
//!     for (&id, transport) in &transports {
//!         let network = RaftnetNetworkFactory::new(id, transport.clone(), address_of.clone());
//!         let (log, state_machine) = Adaptor::new(Arc::new(MemStore::new()));
//!         let raft = Raft::new(id, config.clone(), network, log, state_machine).await?;
//!         // The serving side: inbound RPCs go to this node's Raft.
//!         tokio::spawn(serve(raft.clone(), transport.consumer().clone()));
//!         rafts.insert(id, raft);
//!     }
//!
//!     let within = Some(Duration::from_secs(30));
//!     rafts[&1].initialize(BTreeSet::from([1, 2])).await?;
//!     rafts[&1].wait(within).state(openraft::ServerState::Leader, "node 1 leads").await?;
//!     let write = ClientRequest { client: "k".into(), serial: 1, status: "v".into() };
//!     let response = rafts[&1].client_write(write).await?;
//!     // The follower applies it too.
//!     let index = response.log_id.index;
//!     rafts[&2].wait(within).applied_index_at_least(Some(index), "replicated").await?;
//!     println!("node 2 applied the write at index {index}");
//!
//!     for (id, raft) in &rafts {
//!         raft.shutdown().await?;
//!         transports[id].close();
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # How openraft's messages travel
//!
//! They ride in raftnet's typed RPCs, so they get raftnet's lanes (an openraft heartbeat, an
//! AppendEntries without entries, takes the heartbeat connection), pipelining and snapshot
//! streaming:
//!
//! | openraft | raftnet |
//! |---|---|
//! | `AppendEntriesRequest` | `AppendEntriesRequest`: `term` = the vote's term; `leader` = (vote, prev_log_id, leader_commit) msgpack-encoded; one `Log` per entry, its `data` the msgpack-encoded entry (`index`/`term` filled in for logs and metrics) |
//! | `VoteRequest` | `RequestVoteRequest`: `term`, `candidate` = the request msgpack-encoded |
//! | `InstallSnapshotRequest` chunk | `InstallSnapshotRequest`: `configuration` = (vote, meta, offset, done) msgpack-encoded, `size` = the chunk's length; the chunk's bytes are the snapshot body |
//! | responses | the matching raftnet response, the openraft response msgpack-encoded in its header's `id` |
//! | `RaftError` from the remote | raftnet's remote error text: `openraft:` and the error as JSON |
//!
//! An entry's application data is serialized once on the sender, into one buffer per
//! AppendEntries that holds the metadata and every entry (each `Log.data` is a slice of it, so a
//! batch costs two allocations, not two per entry); the encoder hands slices of 8 KiB and more
//! to the socket as they are, and copies smaller ones into the frame. The receiver deserializes
//! each entry once, from a slice of the buffer the socket was read into.
//!
//! # Errors
//!
//! By raftnet's [`ErrorClass`] ([`Error::class`]), which mirrors openraft's:
//!
//! | raftnet | openraft |
//! |---|---|
//! | `Timeout` (the call's deadline is `RPCOption::soft_ttl`) | `RPCError::Timeout` |
//! | class `Backoff` (`Unreachable`) | `RPCError::Unreachable` (openraft backs off) |
//! | class `Remote` with the text `openraft:…` | `RPCError::RemoteError` with the decoded `RaftError` |
//! | any other (class `Retry`: connection lost; class `Fatal`: shutdown, protocol, ...; a `Remote` text that is not openraft's) | `RPCError::Network` (openraft has no fatal class) |

use std::sync::Arc;

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest as OrAppendRequest, AppendEntriesResponse as OrAppendResponse,
    InstallSnapshotRequest as OrSnapshotRequest, InstallSnapshotResponse as OrSnapshotResponse,
    VoteRequest as OrVoteRequest, VoteResponse as OrVoteResponse,
};
use openraft::{LogId, Raft, RaftLogId, RaftTypeConfig, SnapshotMeta, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::{self, Log, LogType, Request, Response, RpcHeader};
use crate::{CallOptions, Consumer, Error, ErrorClass, Rpc, ServerAddress, ServerId, Transport};

/// The prefix of a remote error text that carries an openraft `RaftError` (as JSON).
const REMOTE_ERROR_PREFIX: &str = "openraft:";

type AppendMeta<C> = (
    Vote<<C as RaftTypeConfig>::NodeId>,
    Option<LogId<<C as RaftTypeConfig>::NodeId>>,
    Option<LogId<<C as RaftTypeConfig>::NodeId>>,
);
type SnapshotChunkMeta<C> = (
    Vote<<C as RaftTypeConfig>::NodeId>,
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    u64,
    bool,
);

fn encode<T: Serialize>(value: &T) -> Result<Bytes, String> {
    rmp_serde::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| format!("raftnet-openraft: cannot encode: {e}"))
}

/// Encode an AppendEntries' metadata and entries into one buffer (one allocation per batch, not
/// one per entry): the metadata and each entry's `Log.data` are slices of it. `bytes_per_entry`
/// carries the last batch's average entry size forward, so the buffer rarely grows.
fn encode_batch<C: RaftTypeConfig>(
    meta: &AppendMeta<C>,
    entries: &[C::Entry],
    bytes_per_entry: &mut usize,
) -> Result<(Bytes, Vec<Log>), String> {
    let fail = |e: rmp_serde::encode::Error| format!("raftnet-openraft: cannot encode: {e}");
    let mut buf = Vec::with_capacity(64 + entries.len() * *bytes_per_entry);
    rmp_serde::encode::write(&mut buf, meta).map_err(fail)?;
    let meta_end = buf.len();
    let mut ends = Vec::with_capacity(entries.len());
    for entry in entries {
        rmp_serde::encode::write(&mut buf, entry).map_err(fail)?;
        ends.push(buf.len());
    }
    if !entries.is_empty() {
        *bytes_per_entry = ((buf.len() - meta_end) / entries.len()).max(16);
    }
    let buf = Bytes::from(buf);
    let mut start = meta_end;
    let logs = entries
        .iter()
        .zip(ends)
        .map(|(entry, end)| {
            let log_id = entry.get_log_id();
            let data = buf.slice(start..end);
            start = end;
            Log {
                index: log_id.index,
                term: log_id.leader_id.term,
                kind: LogType::COMMAND,
                data: Some(data),
                ..Log::default()
            }
        })
        .collect();
    Ok((buf.slice(..meta_end), logs))
}

fn decode<T: DeserializeOwned>(bytes: Option<&Bytes>, what: &str) -> Result<T, String> {
    let bytes = bytes.ok_or_else(|| format!("raftnet-openraft: {what} is missing"))?;
    rmp_serde::from_slice(bytes).map_err(|e| format!("raftnet-openraft: cannot decode {what}: {e}"))
}

/// Where a node is reached: from its id and openraft `Node` value.
pub type AddressOf<C> = Arc<
    dyn Fn(&<C as RaftTypeConfig>::NodeId, &<C as RaftTypeConfig>::Node) -> ServerAddress
        + Send
        + Sync,
>;

/// openraft's network factory over a raftnet [`Transport`].
pub struct RaftnetNetworkFactory<C: RaftTypeConfig> {
    id: C::NodeId,
    transport: Arc<dyn Transport>,
    address_of: AddressOf<C>,
}

impl<C: RaftTypeConfig> std::fmt::Debug for RaftnetNetworkFactory<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftnetNetworkFactory")
            .field("id", &self.id)
            .finish()
    }
}

impl<C: RaftTypeConfig> RaftnetNetworkFactory<C> {
    /// A factory for node `id`, sending through `transport`; `address_of` says where a target
    /// node listens (for `Node = BasicNode`, its `addr`; for `Node = ()`, a lookup table).
    pub fn new(id: C::NodeId, transport: Arc<dyn Transport>, address_of: AddressOf<C>) -> Self {
        RaftnetNetworkFactory {
            id,
            transport,
            address_of,
        }
    }
}

impl<C: RaftTypeConfig> RaftNetworkFactory<C> for RaftnetNetworkFactory<C> {
    type Network = RaftnetNetwork<C>;

    /// Never dials: the transport's connections are long-lived and shared.
    async fn new_client(&mut self, target: C::NodeId, node: &C::Node) -> RaftnetNetwork<C> {
        RaftnetNetwork {
            id: self.id.clone(),
            server_id: ServerId(target.to_string()),
            address: (self.address_of)(&target, node),
            target,
            transport: self.transport.clone(),
            bytes_per_entry: 64,
        }
    }
}

/// A handle onto one target node: what openraft's `RaftNetwork` calls go through.
pub struct RaftnetNetwork<C: RaftTypeConfig> {
    id: C::NodeId,
    target: C::NodeId,
    server_id: ServerId,
    address: ServerAddress,
    transport: Arc<dyn Transport>,
    /// The average encoded entry of the last AppendEntries (to size the next one's buffer).
    bytes_per_entry: usize,
}

impl<C: RaftTypeConfig> std::fmt::Debug for RaftnetNetwork<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftnetNetwork")
            .field("target", &self.target)
            .field("address", &self.address)
            .finish()
    }
}

impl<C: RaftTypeConfig> RaftnetNetwork<C> {
    fn rpc_error<E>(
        &self,
        e: Error,
        action: RPCTypes,
        option: &RPCOption,
    ) -> RPCError<C::NodeId, C::Node, RaftError<C::NodeId, E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        // openraft's classes are raftnet's (`Error::class`) but for two: a timeout is a case of
        // its own (it carries the deadline), and openraft has no fatal class, so fatal errors
        // travel as `Network` with the rest.
        if e == Error::Timeout {
            return RPCError::Timeout(Timeout {
                action,
                id: self.id.clone(),
                target: self.target.clone(),
                timeout: option.soft_ttl(),
            });
        }
        match e.class() {
            ErrorClass::Backoff => RPCError::Unreachable(Unreachable::new(&e)),
            ErrorClass::Remote => match remote_raft_error::<C, E>(&e) {
                Some(remote) => {
                    RPCError::RemoteError(RemoteError::new(self.target.clone(), remote))
                }
                // Not openraft's answer (a raftnet-openraft decoding failure, say).
                None => RPCError::Network(NetworkError::new(&e)),
            },
            ErrorClass::Retry | ErrorClass::Fatal => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn options(option: &RPCOption) -> CallOptions {
        // soft_ttl (3/4 of hard_ttl): answer with a Timeout before openraft drops the call.
        CallOptions::timeout(option.soft_ttl())
    }
}

/// The `RaftError` a remote error carries, if its text is `openraft:` and the error as JSON.
fn remote_raft_error<C, E>(e: &Error) -> Option<RaftError<C::NodeId, E>>
where
    C: RaftTypeConfig,
    E: std::error::Error + DeserializeOwned,
{
    let Error::Remote(text) = e else {
        return None;
    };
    serde_json::from_str(text.strip_prefix(REMOTE_ERROR_PREFIX)?).ok()
}

/// An encoding failure on the sending side: the message never left.
#[derive(Debug)]
struct EncodeFailure(String);

impl std::fmt::Display for EncodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeFailure {}

fn local_error<NID: openraft::NodeId, N: openraft::Node, E: std::error::Error>(
    text: String,
) -> RPCError<NID, N, RaftError<NID, E>> {
    RPCError::Network(NetworkError::new(&EncodeFailure(text)))
}

impl<C: RaftTypeConfig> RaftNetwork<C> for RaftnetNetwork<C> {
    async fn append_entries(
        &mut self,
        rpc: OrAppendRequest<C>,
        option: RPCOption,
    ) -> Result<OrAppendResponse<C::NodeId>, RPCError<C::NodeId, C::Node, RaftError<C::NodeId>>>
    {
        let term = rpc.vote.leader_id().term;
        let meta: AppendMeta<C> = (rpc.vote, rpc.prev_log_id, rpc.leader_commit);
        let (leader, entries) = encode_batch::<C>(&meta, &rpc.entries, &mut self.bytes_per_entry)
            .map_err(local_error)?;
        let request = message::AppendEntriesRequest {
            header: RpcHeader::default(),
            term,
            leader: Some(leader),
            entries,
            ..Default::default()
        };
        let answer = self
            .transport
            .append_entries(
                &self.server_id,
                &self.address,
                request,
                Self::options(&option),
            )
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::AppendEntries, &option))?;
        decode(answer.header.id.as_ref(), "AppendEntries response")
            .map_err(|text| self.rpc_error(Error::Remote(text), RPCTypes::AppendEntries, &option))
    }

    async fn install_snapshot(
        &mut self,
        rpc: OrSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        OrSnapshotResponse<C::NodeId>,
        RPCError<C::NodeId, C::Node, RaftError<C::NodeId, InstallSnapshotError>>,
    > {
        let term = rpc.vote.leader_id().term;
        let meta: SnapshotChunkMeta<C> = (rpc.vote, rpc.meta, rpc.offset, rpc.done);
        let request = message::InstallSnapshotRequest {
            term,
            configuration: Some(encode(&meta).map_err(local_error)?),
            size: rpc.data.len() as i64,
            ..Default::default()
        };
        let answer = self
            .transport
            .install_snapshot(
                &self.server_id,
                &self.address,
                request,
                Box::new(std::io::Cursor::new(rpc.data)),
                Self::options(&option),
            )
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::InstallSnapshot, &option))?;
        decode(answer.header.id.as_ref(), "InstallSnapshot response")
            .map_err(|text| self.rpc_error(Error::Remote(text), RPCTypes::InstallSnapshot, &option))
    }

    async fn vote(
        &mut self,
        rpc: OrVoteRequest<C::NodeId>,
        option: RPCOption,
    ) -> Result<OrVoteResponse<C::NodeId>, RPCError<C::NodeId, C::Node, RaftError<C::NodeId>>> {
        let request = message::RequestVoteRequest {
            term: rpc.vote.leader_id().term,
            candidate: Some(encode(&rpc).map_err(local_error)?),
            ..Default::default()
        };
        let answer = self
            .transport
            .request_vote(
                &self.server_id,
                &self.address,
                request,
                Self::options(&option),
            )
            .await
            .map_err(|e| self.rpc_error(e, RPCTypes::Vote, &option))?;
        decode(answer.header.id.as_ref(), "Vote response")
            .map_err(|text| self.rpc_error(Error::Remote(text), RPCTypes::Vote, &option))
    }
}

fn remote_error<E: Serialize>(e: &E) -> String {
    match serde_json::to_string(e) {
        Ok(json) => format!("{REMOTE_ERROR_PREFIX}{json}"),
        Err(err) => format!("raftnet-openraft: cannot encode the remote error: {err}"),
    }
}

fn with_payload(payload: Result<Bytes, String>) -> Result<RpcHeader, String> {
    payload.map(|id| RpcHeader {
        id: Some(id),
        ..RpcHeader::default()
    })
}

/// The largest snapshot chunk [`serve`] takes, for a node whose openraft config is `config`.
/// openraft sends chunks of its `snapshot_max_chunk_size` (3 MiB by default); four of this
/// node's own, and at least 64 MiB so that peers configured with larger chunks are still
/// served. A body's size is what its sender declares, and the chunk is gathered into memory
/// for openraft, so a declared size above this is refused before anything is read or
/// reserved for it (one InstallSnapshot declaring `i64::MAX` bytes made the node reserve them,
/// and the allocation's failure aborted the whole process).
fn max_chunk(config: &openraft::Config) -> u64 {
    config
        .snapshot_max_chunk_size
        .saturating_mul(4)
        .max(64 << 20)
}

/// Read a snapshot body to its end without blocking the executor: each piece as it arrived,
/// copied once, into the `Vec` openraft 0.9's request takes. `reader` declared at most `max`
/// bytes (and the engine ends a body at its declared size).
async fn read_all(mut reader: crate::SnapshotReader, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(reader.size().min(max) as usize);
    while let Some(chunk) = reader.next_chunk_async().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn answer<C>(raft: &Raft<C>, rpc: &mut Rpc) -> Result<Response, String>
where
    C: RaftTypeConfig,
    C::SnapshotData: tokio::io::AsyncRead + tokio::io::AsyncWrite + tokio::io::AsyncSeek + Unpin,
{
    match &rpc.request {
        Request::AppendEntries(request) => {
            let (vote, prev_log_id, leader_commit): AppendMeta<C> =
                decode(request.leader.as_ref(), "AppendEntries metadata")?;
            let mut entries = Vec::with_capacity(request.entries.len());
            for log in &request.entries {
                entries.push(decode::<C::Entry>(log.data.as_ref(), "an entry")?);
            }
            let rpc = OrAppendRequest {
                vote,
                prev_log_id,
                entries,
                leader_commit,
            };
            let response = raft
                .append_entries(rpc)
                .await
                .map_err(|e| remote_error(&e))?;
            Ok(Response::AppendEntries(message::AppendEntriesResponse {
                header: with_payload(encode(&response))?,
                success: matches!(response, OrAppendResponse::Success),
                ..Default::default()
            }))
        }
        Request::RequestVote(request) => {
            let rpc: OrVoteRequest<C::NodeId> = decode(request.candidate.as_ref(), "Vote request")?;
            let response = raft.vote(rpc).await.map_err(|e| remote_error(&e))?;
            Ok(Response::RequestVote(message::RequestVoteResponse {
                header: with_payload(encode(&response))?,
                granted: response.vote_granted,
                ..Default::default()
            }))
        }
        Request::InstallSnapshot(request) => {
            let max = max_chunk(raft.config());
            let size = request.size.max(0) as u64;
            if size > max {
                // Dropping the reader drops the body as it arrives.
                return Err(format!(
                    "raftnet-openraft: a snapshot chunk of {size} bytes is over this node's \
                     limit of {max} (four of its snapshot_max_chunk_size, at least 64 MiB)"
                ));
            }
            let (vote, meta, offset, done): SnapshotChunkMeta<C> =
                decode(request.configuration.as_ref(), "InstallSnapshot metadata")?;
            let reader = rpc
                .snapshot
                .take()
                .ok_or_else(|| "raftnet-openraft: snapshot body missing".to_string())?;
            let data = read_all(reader, max).await.map_err(|e| e.to_string())?;
            let rpc = OrSnapshotRequest {
                vote,
                meta,
                offset,
                data,
                done,
            };
            let response = raft
                .install_snapshot(rpc)
                .await
                .map_err(|e| remote_error(&e))?;
            Ok(Response::InstallSnapshot(
                message::InstallSnapshotResponse {
                    header: with_payload(encode(&response))?,
                    success: true,
                    ..Default::default()
                },
            ))
        }
        other => Err(format!(
            "raftnet-openraft: openraft 0.9 does not handle {:?}",
            other.message_type()
        )),
    }
}

/// Serve openraft on the inbound side of a transport: take each RPC from `consumer`, hand it
/// to `raft`, answer through raftnet. Returns when the transport closes. Run it as a task on the
/// runtime openraft runs on (it awaits openraft's calls and never blocks the thread).
pub async fn serve<C>(raft: Raft<C>, consumer: Consumer)
where
    C: RaftTypeConfig,
    C::SnapshotData: tokio::io::AsyncRead + tokio::io::AsyncWrite + tokio::io::AsyncSeek + Unpin,
{
    while let Ok(mut rpc) = consumer.recv_async().await {
        let result = answer(&raft, &mut rpc).await;
        rpc.respond(result);
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload};
    use openraft_memstore::{ClientRequest, TypeConfig};

    use super::*;

    fn entry(index: u64, status_len: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(ClientRequest {
                client: format!("client-{index}"),
                serial: index,
                status: "x".repeat(status_len),
            }),
        }
    }

    /// One buffer for the whole batch: the metadata and every entry are adjacent slices of it,
    /// each decodes to what was encoded, and the size hint follows the batch.
    #[test]
    fn a_batch_is_one_buffer_of_adjacent_slices() {
        let entries = vec![entry(10, 5), entry(11, 20_000), entry(12, 0)];
        let meta: AppendMeta<TypeConfig> = (
            Vote::new_committed(3, 1),
            Some(LogId::new(CommittedLeaderId::new(3, 1), 9)),
            Some(LogId::new(CommittedLeaderId::new(2, 0), 4)),
        );
        let mut hint = 64;
        let (leader, logs) = encode_batch::<TypeConfig>(&meta, &entries, &mut hint).unwrap();

        assert_eq!(
            decode::<AppendMeta<TypeConfig>>(Some(&leader), "meta").unwrap(),
            meta
        );
        assert_eq!(logs.len(), 3);
        let mut next = leader.as_ptr_range().end;
        let mut total = 0;
        for (log, entry) in logs.iter().zip(&entries) {
            assert_eq!((log.index, log.term), (entry.log_id.index, 3));
            assert_eq!(log.kind, LogType::COMMAND);
            let data = log.data.as_ref().unwrap();
            assert_eq!(data.as_ptr(), next, "entry {} is not adjacent", log.index);
            next = data.as_ptr_range().end;
            total += data.len();
            let back: Entry<TypeConfig> = decode(Some(data), "entry").unwrap();
            assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        }
        assert_eq!(hint, total / 3);
    }

    /// A heartbeat (no entries) carries only the metadata, and keeps the hint.
    #[test]
    fn an_empty_batch_is_only_metadata() {
        let meta: AppendMeta<TypeConfig> = (Vote::new(5, 2), None, None);
        let mut hint = 77;
        let (leader, logs) = encode_batch::<TypeConfig>(&meta, &[], &mut hint).unwrap();
        assert!(logs.is_empty());
        assert_eq!(
            decode::<AppendMeta<TypeConfig>>(Some(&leader), "meta").unwrap(),
            meta
        );
        assert_eq!(hint, 77);
    }

    /// Remote errors travel as `openraft:` + JSON and come back as the same `RaftError`.
    #[test]
    fn remote_errors_round_trip() {
        let error: RaftError<u64> = RaftError::Fatal(openraft::error::Fatal::Stopped);
        let text = remote_error(&error);
        assert!(text.starts_with(REMOTE_ERROR_PREFIX), "{text}");
        let json = text.strip_prefix(REMOTE_ERROR_PREFIX).unwrap();
        let back: RaftError<u64> = serde_json::from_str(json).unwrap();
        assert_eq!(back, error);
    }
}
