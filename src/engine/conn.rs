//! One connection as the engine keeps it: what it is for ([`Role`]), its codec, the bytes
//! received and not yet decoded, the bytes waiting to be written. The socket itself is the
//! driver's; the engine only knows the connection by its [`ConnKey`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::feed::SnapshotFeed;
use super::key::ConnKey;
use crate::metrics::RpcType;
use crate::transport::call::AnyResolver;
use crate::transport::pipeline::PipelineShared;
use crate::transport::snapshot::SnapshotStream;
use crate::wire::{Codec, Lane, SendQueue};

/// A snapshot connection's send queue is refilled from the pump while it holds less than this:
/// enough to keep a 256 KiB write budget busy for a few turns, little enough to bound memory.
pub(crate) const SNAPSHOT_SEND_HIGH_WATER: usize = 1 << 20;

/// A call waiting for its answer on a connection.
pub(crate) struct PendingCall {
    pub(crate) request_id: u64,
    pub(crate) resolver: AnyResolver,
    pub(crate) kind: RpcType,
    pub(crate) started: Instant,
    pub(crate) deadline: Option<Instant>,
}

/// An InstallSnapshot body being received.
pub(crate) struct SnapshotIn {
    pub(crate) stream: Arc<SnapshotStream>,
    pub(crate) size: u64,
    pub(crate) received: u64,
}

/// An accepted connection: it serves requests.
pub(crate) struct Inbound {
    /// Requests handed to the Raft side and not yet answered.
    pub(crate) unanswered: usize,
    /// Snapshot bodies arriving, by the id of their request.
    pub(crate) snapshots: HashMap<u64, SnapshotIn>,
}

impl Inbound {
    /// Nothing handed to the Raft side waits for an answer or a body.
    pub(crate) fn is_idle(&self) -> bool {
        self.unanswered == 0 && self.snapshots.is_empty()
    }
}

/// A dialled connection for request/response calls, one at a time; pooled when idle.
pub(crate) struct Pooled {
    pub(crate) pool_key: (SocketAddr, Lane),
    pub(crate) call: Option<PendingCall>,
}

/// A dialled connection that carries one pipeline. Its requests' ids are their pipeline
/// sequence numbers, so an answer names the future it completes; the futures themselves wait
/// in the pipeline's one queue ([`PipelineShared`]), which the engine never mirrors.
pub(crate) struct PipelineConn {
    pub(crate) id: u64,
    pub(crate) shared: Arc<PipelineShared>,
}

/// A dialled connection for one snapshot transfer, closed afterwards.
pub(crate) struct SnapshotOut {
    pub(crate) id: u64,
    pub(crate) call: Option<PendingCall>,
    pub(crate) feed: Arc<SnapshotFeed>,
    pub(crate) request_id: u64,
    pub(crate) size: u64,
    pub(crate) sent: u64,
    /// The last chunk is queued.
    pub(crate) body_done: bool,
    /// The engine asked the pump for more and waits for `SnapshotReady`.
    pub(crate) waiting_for_feed: bool,
}

/// What a connection is for.
pub(crate) enum Role {
    Inbound(Inbound),
    Pooled(Pooled),
    Pipeline(PipelineConn),
    SnapshotOut(SnapshotOut),
}

pub(crate) struct Connection {
    pub(crate) key: ConnKey,
    pub(crate) peer: SocketAddr,
    pub(crate) role: Role,
    pub(crate) codec: Box<dyn Codec>,
    /// Bytes received and not yet cut into frames; drivers append to it.
    pub(crate) recv: BytesMut,
    /// Bytes waiting to be written; drivers drain it.
    pub(crate) send: SendQueue,
    /// The driver reported the connection established (accepted ones start so).
    pub(crate) connected: bool,
    /// A snapshot reader fell behind: the driver must not read until it catches up.
    pub(crate) read_paused: bool,
    /// close_streams() asked this inbound connection to close once it has answered everything.
    pub(crate) close_when_idle: bool,
    /// Close once everything queued has been written.
    pub(crate) close_after_flush: bool,
    /// On the engine's list of connections with output to write.
    pub(crate) dirty: bool,
    /// The instant of this connection's deadline timer entry, if one is armed.
    pub(crate) armed: Option<Instant>,
}

impl Connection {
    pub(crate) fn new(
        key: ConnKey,
        peer: SocketAddr,
        role: Role,
        codec: Box<dyn Codec>,
        connected: bool,
    ) -> Connection {
        let mut send = SendQueue::new();
        let mut codec = codec;
        codec.start(&mut send);
        Connection {
            key,
            peer,
            role,
            codec,
            recv: BytesMut::new(),
            send,
            connected,
            read_paused: false,
            close_when_idle: false,
            close_after_flush: false,
            dirty: false,
            armed: None,
        }
    }

    /// Where a request/response call waits for its answer on this connection (pooled and
    /// snapshot connections carry one call at a time).
    pub(crate) fn call_slot(&mut self) -> Option<&mut Option<PendingCall>> {
        match &mut self.role {
            Role::Pooled(p) => Some(&mut p.call),
            Role::SnapshotOut(s) => Some(&mut s.call),
            Role::Pipeline(_) | Role::Inbound(_) => None,
        }
    }

    /// A snapshot sender whose queue drained below [`SNAPSHOT_SEND_HIGH_WATER`] and whose pump
    /// may have more: refill it.
    pub(crate) fn needs_snapshot_refill(&self) -> bool {
        matches!(&self.role, Role::SnapshotOut(s) if !s.body_done && !s.waiting_for_feed)
            && self.send.len() < SNAPSHOT_SEND_HIGH_WATER
    }

    /// The earliest deadline among the calls waiting on this connection.
    pub(crate) fn earliest_deadline(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Option<Instant> {
        match &self.role {
            Role::Pooled(p) => p.call.as_ref().and_then(|c| c.deadline),
            Role::SnapshotOut(s) => s.call.as_ref().and_then(|c| c.deadline),
            // Sent in order with the same timeout: the oldest expires first.
            Role::Pipeline(p) => timeout.and_then(|t| Some(p.shared.oldest_start()? + t)),
            Role::Inbound(_) => None,
        }
    }
}
