//! No network: the ceiling ([`Network::Direct`](super::Network::Direct), the
//! `cluster-64-no-network` row): each openraft call handed straight to the target's `Raft`.

use std::sync::{Arc, OnceLock};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft_memstore::TypeConfig;

use super::tokio_network::{Failure, RpcResult};
use super::*;

/// Every node's `Raft`, by id, filled in once all are built (openraft asks for clients only
/// after `initialize`).
pub(super) type Directory = Arc<OnceLock<Vec<Raft>>>;

/// openraft's network factory with no network: a client is the target's `Raft` handle.
pub struct DirectNetworkFactory {
    pub(super) directory: Directory,
}

impl RaftNetworkFactory<TypeConfig> for DirectNetworkFactory {
    type Network = DirectNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &()) -> DirectNetwork {
        DirectNetwork {
            target,
            raft: self
                .directory
                .get()
                .and_then(|rafts| rafts.get(target as usize))
                .cloned(),
        }
    }
}

/// Calls the target's `Raft` directly, on the caller's runtime; its errors come back as
/// `RemoteError`, as a network would deliver them.
pub struct DirectNetwork {
    target: NodeId,
    raft: Option<Raft>,
}

impl DirectNetwork {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, (), RaftError<NodeId, E>> {
        RPCError::Unreachable(Unreachable::new(&Failure::Unreachable(format!(
            "no node {}",
            self.target
        ))))
    }
}

impl RaftNetwork<TypeConfig> for DirectNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let Some(raft) = &self.raft else {
            return Err(self.unreachable());
        };
        let target = self.target;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let Some(raft) = &self.raft else {
            return Err(self.unreachable());
        };
        let target = self.target;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let Some(raft) = &self.raft else {
            return Err(self.unreachable());
        };
        let target = self.target;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}
