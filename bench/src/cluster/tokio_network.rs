//! The tokio baseline network for openraft ([`Network::Tokio`](super::Network::Tokio)): one
//! long-lived connection per peer, the baseline's writer and reader tasks on the calling side,
//! the direct design on the serving side (the module doc of `cluster` says what is held equal).

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft_memstore::TypeConfig;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::tokio_net::client::Client;
use crate::tokio_net::direct::{Reader, flush};
use crate::tokio_net::frame::{Envelope, Wire, decode, encode_frame, encode_into};

use super::*;

/// What travels from the caller to the serving side: openraft's own messages.
#[derive(Serialize, Deserialize)]
enum OrRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The serving side's answers: openraft's results, remote errors included.
#[derive(Serialize, Deserialize)]
enum OrResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// openraft's answers are decoded with serde, fields copied (openraft's types own their data).
impl Wire for OrResponse {
    fn decode(frame: bytes::Bytes) -> Result<Envelope<OrResponse>, String> {
        decode(&frame)
    }
}

/// One long-lived connection to a peer, requests multiplexed by id (the tokio baseline's
/// client, its answers openraft's).
type Conn = Client<OrResponse>;

/// A peer: where it listens, and the connection to it (made on first use, remade if lost).
struct Peer {
    addr: SocketAddr,
    current: tokio::sync::Mutex<Option<Conn>>,
}

impl Peer {
    async fn connection(&self) -> Result<Conn, String> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref().filter(|c| c.is_open()) {
            return Ok(conn.clone());
        }
        let conn = Conn::connect(self.addr).await?;
        *current = Some(conn.clone());
        Ok(conn)
    }
}

/// openraft's network factory over the tokio baseline's design: one connection per peer,
/// shared by every handle `new_client` returns for it.
pub struct TokioNetworkFactory {
    id: NodeId,
    peers: Arc<HashMap<NodeId, Arc<Peer>>>,
}

impl TokioNetworkFactory {
    /// A factory for node `id`, reaching each `(node, address)` of `peers`.
    pub fn new(id: NodeId, peers: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        let peers = peers
            .into_iter()
            .map(|(node, addr)| {
                let peer = Peer {
                    addr,
                    current: tokio::sync::Mutex::new(None),
                };
                (node, Arc::new(peer))
            })
            .collect();
        TokioNetworkFactory {
            id,
            peers: Arc::new(peers),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for TokioNetworkFactory {
    type Network = TokioNetwork;

    /// Never dials: a handle onto the peer's shared connection.
    async fn new_client(&mut self, target: NodeId, _node: &()) -> TokioNetwork {
        TokioNetwork {
            id: self.id,
            target,
            peer: self.peers.get(&target).cloned(),
            conn: None,
        }
    }
}

/// A handle onto one peer's connection (what openraft's calls go through).
pub struct TokioNetwork {
    id: NodeId,
    target: NodeId,
    peer: Option<Arc<Peer>>,
    /// The connection this handle last used (so a call takes no lock while it is open).
    conn: Option<Conn>,
}

/// Why a call failed, before it becomes an `RPCError`.
#[derive(Debug)]
pub(super) enum Failure {
    Unreachable(String),
    Timeout,
    Network(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "unreachable: {e}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Network(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Failure {}

pub(super) type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, (), RaftError<NodeId, E>>>;

impl TokioNetwork {
    async fn call(
        &mut self,
        request: &OrRequest,
        hint: usize,
        option: &RPCOption,
    ) -> Result<OrResponse, Failure> {
        let conn = match self.conn.as_ref().filter(|c| c.is_open()) {
            Some(conn) => conn.clone(),
            None => {
                let peer = self.peer.as_ref().ok_or_else(|| {
                    Failure::Unreachable(format!("no address for node {}", self.target))
                })?;
                let conn = peer.connection().await.map_err(Failure::Unreachable)?;
                self.conn = Some(conn.clone());
                conn
            }
        };
        let (id, answer) = conn.register().map_err(Failure::Network)?;
        let frame = encode_frame(id, request, hint).map_err(Failure::Network)?;
        if let Err(e) = conn.send(frame).await {
            conn.forget(id);
            return Err(Failure::Network(e));
        }
        match tokio::time::timeout(option.soft_ttl(), answer).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(Failure::Network("connection closed".into())),
            Err(_) => {
                conn.forget(id);
                Err(Failure::Timeout)
            }
        }
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        failure: Failure,
        action: RPCTypes,
        option: &RPCOption,
    ) -> RPCError<NodeId, (), RaftError<NodeId, E>> {
        match failure {
            Failure::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&failure)),
            Failure::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: option.soft_ttl(),
            }),
            Failure::Network(_) => RPCError::Network(NetworkError::new(&failure)),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, (), RaftError<NodeId, E>> {
        RPCError::Network(NetworkError::new(&Failure::Network(
            "unexpected response".into(),
        )))
    }
}

impl RaftNetwork<TypeConfig> for TokioNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let hint = 64 + 96 * rpc.entries.len();
        match self.call(&OrRequest::Append(rpc), hint, &option).await {
            Ok(OrResponse::Append(Ok(response))) => Ok(response),
            Ok(OrResponse::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(f) => Err(self.rpc_error(f, RPCTypes::AppendEntries, &option)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let hint = 256 + 2 * rpc.data.len();
        match self.call(&OrRequest::Snapshot(rpc), hint, &option).await {
            Ok(OrResponse::Snapshot(Ok(response))) => Ok(response),
            Ok(OrResponse::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(f) => Err(self.rpc_error(f, RPCTypes::InstallSnapshot, &option)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(&OrRequest::Vote(rpc), 128, &option).await {
            Ok(OrResponse::Vote(Ok(response))) => Ok(response),
            Ok(OrResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(f) => Err(self.rpc_error(f, RPCTypes::Vote, &option)),
        }
    }
}

/// The serving side: accept connections, serve each in a task of its own.
pub(super) async fn accept(listener: TcpListener, raft: Raft) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream, raft.clone()));
    }
}

/// One inbound connection, served in the direct design (`crate::tokio_net::direct`): this
/// task reads every request ready, has `raft` handle each in turn, appends the answers to one
/// buffer and writes it once nothing more is ready (no writer task, no channel). (openraft 0.9
/// keeps at most one AppendEntries in flight per follower, so answering in order costs no
/// concurrency.)
async fn serve_connection(mut stream: TcpStream, raft: Raft) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut reader = Reader::new();
    let mut out = Vec::with_capacity(4096);
    let served: Result<(), String> = async {
        loop {
            while let Some(frame) = reader.frame()? {
                let Envelope { id, message } = decode::<OrRequest>(&frame)?;
                let response = match message {
                    OrRequest::Append(rpc) => OrResponse::Append(raft.append_entries(rpc).await),
                    OrRequest::Vote(rpc) => OrResponse::Vote(raft.vote(rpc).await),
                    OrRequest::Snapshot(rpc) => {
                        OrResponse::Snapshot(raft.install_snapshot(rpc).await)
                    }
                };
                encode_into(&mut out, id, &response)?;
            }
            if reader.try_fill(&stream)? {
                continue;
            }
            flush(&mut stream, &mut out).await?;
            reader.fill(&mut stream).await?;
        }
    }
    .await;
    // A closed or broken connection ends the same way: the caller sees it closed.
    drop(served);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft's messages survive the tokio network's encoding.
    #[test]
    fn messages_round_trip() {
        let _load = crate::measure::test_lock::loading();
        let vote = VoteRequest::<NodeId>::new(openraft::Vote::new(3, 1), None);
        let frame = encode_frame(9, &OrRequest::Vote(vote.clone()), 0).unwrap();
        // After the 4-byte length, which `LengthDelimitedCodec` strips on the way in.
        let Envelope { id, message } = decode::<OrRequest>(&frame[4..]).unwrap();
        assert_eq!(id, 9);
        match message {
            OrRequest::Vote(v) => assert_eq!(v, vote),
            _ => panic!("not a vote"),
        }
    }
}
