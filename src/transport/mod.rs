//! The public transport contract, shared by [`NetTransport`](crate::NetTransport) and
//! [`InmemTransport`](crate::InmemTransport): hashicorp/raft's `Transport` interface (with its
//! optional `WithPreVote`, `WithClose` and pipelining parts) in Rust terms.
//!
//! The parts: outbound results ([`Call`], in `call.rs`), pipelined appends ([`AppendPipeline`],
//! [`AppendFuture`], in `pipeline.rs`), the inbound side ([`Consumer`], [`Rpc`], in `rpc.rs`),
//! snapshot bodies ([`SnapshotReader`], in `snapshot.rs`), and the one way all of them wait
//! (`wait.rs`).

pub(crate) mod call;
pub(crate) mod pipeline;
pub(crate) mod rpc;
pub(crate) mod snapshot;
pub(crate) mod wait;

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use call::Call;
pub use pipeline::{AppendFuture, AppendPipeline, TrySendError};
pub use rpc::{Answers, Consumer, DROPPED_UNANSWERED, Responder, Rpc};
pub use snapshot::SnapshotReader;

use crate::error::Result;
use crate::message::*;

/// A Raft server's stable identity (hashicorp `ServerID`).
///
/// ```
/// use raftnet::ServerId;
///
/// let from_config: String = "node-2".to_string();
/// assert_eq!(ServerId::from(&from_config).0, "node-2");
/// assert_eq!(ServerId::from(from_config), ServerId::from("node-2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ServerId(pub String);

/// Where a Raft server can be reached (hashicorp `ServerAddress`): `host:port`.
///
/// Made from whatever a program holds an address as:
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
/// use raftnet::ServerAddress;
///
/// let from_config: String = "10.0.0.7:7000".to_string();
/// assert_eq!(ServerAddress::from(&from_config).0, "10.0.0.7:7000");
/// assert_eq!(ServerAddress::from(from_config).0, "10.0.0.7:7000");
/// assert_eq!(ServerAddress::from("node-2.internal:7000").0, "node-2.internal:7000");
/// let v4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7001);
/// assert_eq!(ServerAddress::from(v4).0, "127.0.0.1:7001");
/// assert_eq!(ServerAddress::from(SocketAddr::from(v4)).0, "127.0.0.1:7001");
/// let v6: std::net::SocketAddrV6 = "[::1]:7002".parse().unwrap();
/// assert_eq!(ServerAddress::from(v6).0, "[::1]:7002");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ServerAddress(pub String);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ServerId {
    fn from(s: &str) -> Self {
        ServerId(s.to_string())
    }
}

impl From<String> for ServerId {
    /// Takes the string as it is, without a copy.
    fn from(s: String) -> Self {
        ServerId(s)
    }
}

impl From<&String> for ServerId {
    fn from(s: &String) -> Self {
        ServerId(s.clone())
    }
}

impl From<&str> for ServerAddress {
    fn from(s: &str) -> Self {
        ServerAddress(s.to_string())
    }
}

impl From<std::net::SocketAddr> for ServerAddress {
    fn from(a: std::net::SocketAddr) -> Self {
        ServerAddress(a.to_string())
    }
}

impl From<String> for ServerAddress {
    /// Takes the string as it is, without a copy.
    fn from(s: String) -> Self {
        ServerAddress(s)
    }
}

impl From<&String> for ServerAddress {
    fn from(s: &String) -> Self {
        ServerAddress(s.clone())
    }
}

impl From<std::net::SocketAddrV4> for ServerAddress {
    fn from(a: std::net::SocketAddrV4) -> Self {
        ServerAddress(a.to_string())
    }
}

impl From<std::net::SocketAddrV6> for ServerAddress {
    fn from(a: std::net::SocketAddrV6) -> Self {
        ServerAddress(a.to_string())
    }
}

/// Maps a server id to its current address (hashicorp `ServerAddressProvider`), for clusters
/// whose servers change addresses. When it fails, the address the caller gave is used.
pub trait AddressProvider: Send + Sync {
    /// The address of `id`.
    fn server_addr(&self, id: &ServerId) -> std::result::Result<ServerAddress, String>;
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// A deadline for this call on top of the transport's configured timeout: the call fails
    /// with [`Error::Timeout`](crate::Error::Timeout) at whichever comes first.
    pub deadline: Option<Instant>,
}

impl CallOptions {
    /// Options with a deadline.
    pub fn deadline(deadline: Instant) -> CallOptions {
        CallOptions {
            deadline: Some(deadline),
        }
    }

    /// Options with a deadline `timeout` from now.
    pub fn timeout(timeout: std::time::Duration) -> CallOptions {
        CallOptions::deadline(Instant::now() + timeout)
    }
}

/// Handles heartbeats on the thread that runs the transport's driver (as a [`Service`] does),
/// ahead of every queued RPC (hashicorp's `SetHeartbeatHandler`). It must answer quickly and must
/// not block.
pub type HeartbeatHandler = Arc<dyn Fn(Rpc) + Send + Sync>;

/// Serves inbound RPCs where the transport decodes them, on its own thread (or task), without
/// the hop to a [`Consumer`] thread: for a Raft side that is event-driven or owns a queue of its
/// own, and for answers that need no Raft state (hashicorp's heartbeat fast path, generalised to
/// every RPC kind). Installed with [`Transport::set_service`].
///
/// [`serve`](Service::serve) takes each RPC (a heartbeat goes to the
/// [heartbeat handler](Transport::set_heartbeat_handler) instead, when one is installed). It may
/// answer at once ([`Rpc::respond`]), keep the [`Rpc`] and answer later from any thread, or give
/// it back (`Some(rpc)`), and the RPC then goes to the [`Consumer`] as without a service.
///
/// It runs on the thread that runs the transport's driver, between reads of every connection:
/// the transport's own thread, or, under [`Placement::Thread`](crate::Placement::Thread), a
/// thread of yours that is blocked on a [`Call`] and runs the driver meanwhile (so a service must
/// not rely on thread-local state). It must be quick and must not block. Waiting there on anything the transport itself must deliver (a
/// [`Call`]'s answer, an [`AppendFuture`], an InstallSnapshot's body) could never end; raftnet
/// panics instead of hanging, and the panic is caught: the RPC is answered with an error, and
/// the transport goes on. An InstallSnapshot's body ([`Rpc::snapshot`]) is read on another
/// thread, or the RPC given back for the consumer.
///
/// Any `Fn(Rpc) -> Option<Rpc>` closure is a service:
///
/// ```
/// use std::sync::Arc;
/// use raftnet::message::{Request, RequestVoteResponse};
/// use raftnet::{InmemTransport, Rpc, Transport};
///
/// let transport = InmemTransport::new("a");
/// // Votes are answered right here; everything else goes to the consumer.
/// transport.set_service(Some(Arc::new(|rpc: Rpc| match &rpc.request {
///     Request::RequestVote(r) => {
///         let term = r.term;
///         rpc.respond_ok(RequestVoteResponse { term, granted: false, ..Default::default() });
///         None
///     }
///     _ => Some(rpc),
/// })));
/// ```
pub trait Service: Send + Sync {
    /// Take `rpc`, or give it back for the [`Consumer`].
    fn serve(&self, rpc: Rpc) -> Option<Rpc>;
}

impl<F> Service for F
where
    F: Fn(Rpc) -> Option<Rpc> + Send + Sync,
{
    fn serve(&self, rpc: Rpc) -> Option<Rpc> {
        self(rpc)
    }
}

/// A snapshot body: any reader. It is read on a thread of its own, never on the transport's.
pub type SnapshotData = Box<dyn Read + Send>;

/// What a Raft implementation needs from its network (hashicorp/raft's `Transport`,
/// `WithPreVote`, `WithClose`).
///
/// Every outbound call returns a [`Call`] at once; block on it, poll it, or await it.
pub trait Transport: Send + Sync {
    /// Where inbound RPCs arrive. Every RPC must be answered (dropping it answers with an error).
    fn consumer(&self) -> &Consumer;

    /// Our own address, as peers should dial it.
    fn local_addr(&self) -> ServerAddress;

    /// Send an AppendEntries (a heartbeat if it has hashicorp's heartbeat shape).
    fn append_entries(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: AppendEntriesRequest,
        options: CallOptions,
    ) -> Call<AppendEntriesResponse>;

    /// Ask for a vote.
    fn request_vote(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: RequestVoteRequest,
        options: CallOptions,
    ) -> Call<RequestVoteResponse>;

    /// Ask for a pre-vote.
    fn request_pre_vote(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: RequestPreVoteRequest,
        options: CallOptions,
    ) -> Call<RequestPreVoteResponse>;

    /// Tell the target to start an election now.
    fn timeout_now(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: TimeoutNowRequest,
        options: CallOptions,
    ) -> Call<TimeoutNowResponse>;

    /// Send a snapshot: the request, then exactly `request.size` bytes read from `data`. A
    /// reader that ends early fails the call; bytes beyond `size` are not read. The deadline
    /// scales with the size: timeout × max(1, size / timeout_scale).
    fn install_snapshot(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        data: SnapshotData,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse>;

    /// Send a snapshot whose body is already in memory: the request, then the first
    /// `request.size` bytes of `data` (fewer fail the call). What
    /// [`install_snapshot`](Self::install_snapshot) does with a reader over `data`, which is
    /// what this does unless the transport has better: [`NetTransport`](crate::NetTransport)
    /// sends slices of `data` itself, without copying them or starting a reader thread.
    fn install_snapshot_bytes(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        data: Bytes,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse> {
        self.install_snapshot(
            id,
            target,
            request,
            Box::new(std::io::Cursor::new(data)),
            options,
        )
    }

    /// A pipeline for replicating to one peer; [`Error::PipelineNotSupported`](crate::Error)
    /// when `max_rpcs_in_flight` is below 2.
    fn append_entries_pipeline(
        &self,
        id: &ServerId,
        target: &ServerAddress,
    ) -> Result<AppendPipeline>;

    /// Serialise a peer's address for the `addr`/`leader`/`candidate` fields.
    fn encode_peer(&self, id: &ServerId, addr: &ServerAddress) -> Bytes;

    /// The inverse of [`encode_peer`](Self::encode_peer) (an address is its UTF-8 text).
    fn decode_peer(&self, peer: &[u8]) -> ServerAddress {
        ServerAddress(String::from_utf8_lossy(peer).into_owned())
    }

    /// Install (or remove) the heartbeat fast path.
    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>);

    /// Install (or remove) a [`Service`]: inbound RPCs are offered to it, on the transport's
    /// own thread, before they would go to the [`Consumer`]. RPCs already queued for the
    /// consumer stay there.
    fn set_service(&self, service: Option<Arc<dyn Service>>);

    /// Close idle pooled connections and reset inbound streams (after a stream-layer change).
    fn close_streams(&self);

    /// Close the transport: every outstanding call, future and pipeline fails with
    /// [`Error::Shutdown`](crate::Error::Shutdown). Idempotent.
    fn close(&self);
}
