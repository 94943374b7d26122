//! One connection as the engine keeps it: what it is for ([`Role`]), its codec, the bytes
//! received and not yet decoded, the bytes waiting to be written. The socket itself is the
//! driver's; the engine only knows the connection by its [`ConnKey`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::Span;

use super::feed::SnapshotFeed;
use super::key::ConnKey;
use crate::config::Config;
use crate::message::Request;
use crate::metrics::RpcType;
use crate::transport::ServerId;
use crate::transport::call::AnyResolver;
use crate::transport::pipeline::PipelineShared;
use crate::transport::snapshot::SnapshotStream;
use crate::wire::{Codec, Lane, RawFrame, SendQueue};

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
    /// When the body last moved (a chunk arrived, or reading resumed): it must not stall for
    /// longer than the timeout.
    pub(crate) last_progress: Instant,
}

/// An accepted connection: it serves requests.
pub(crate) struct Inbound {
    /// Requests handed to the Raft side and not yet answered.
    pub(crate) unanswered: usize,
    /// Their frame bodies' bytes.
    pub(crate) unanswered_bytes: usize,
    /// Snapshot bodies arriving, by the id of their request (one at most: a connection carries
    /// one snapshot at a time).
    pub(crate) snapshots: HashMap<u64, SnapshotIn>,
    /// A refused InstallSnapshot whose body still arrives: its chunks are dropped unread.
    pub(crate) refused_snapshot: Option<u64>,
    /// When the frame now arriving began (the connection's first frame, counted from the
    /// accept, or any frame part of which is buffered). A frame must arrive at no less than
    /// `timeout_scale` bytes per `timeout`.
    pub(crate) frame_started: Option<Instant>,
    /// A limit paused this connection's reading before (it is logged the first time only).
    pub(crate) limited_before: bool,
    /// A whole frame has arrived: until then, the preamble and the first frame are one unit
    /// whose clock started at the accept.
    pub(crate) first_frame_seen: bool,
    /// Since when the peer has not taken what is queued for it while reading is paused for
    /// that (`ANSWER_BACKLOG`) or the connection waits to close after a refusal (`CLOSING`).
    pub(crate) unread_since: Option<Instant>,
    /// Frames of the last read that came after the Raft side's share was reached
    /// (`UNANSWERED`): decoded, in order, with their decode time, and handed over as answers
    /// make room. At most one read's worth, since reading stops at the limit.
    pub(crate) held: VecDeque<HeldFrame>,
}

/// A frame held back until the Raft side has room (a request, or a snapshot chunk behind one).
pub(crate) struct HeldFrame {
    pub(crate) frame: RawFrame,
    pub(crate) request: Option<Request>,
    pub(crate) decode_time: Duration,
}

impl Inbound {
    pub(crate) fn new(accepted_at: Instant) -> Inbound {
        Inbound {
            unanswered: 0,
            unanswered_bytes: 0,
            snapshots: HashMap::new(),
            refused_snapshot: None,
            frame_started: Some(accepted_at),
            limited_before: false,
            first_frame_seen: false,
            unread_since: None,
            held: VecDeque::new(),
        }
    }

    /// Nothing handed to the Raft side waits for an answer or a body.
    pub(crate) fn is_idle(&self) -> bool {
        self.unanswered == 0 && self.snapshots.is_empty()
    }

    /// A snapshot's body is arriving (to its reader, or to be dropped after a refusal).
    pub(crate) fn in_snapshot_body(&self) -> bool {
        !self.snapshots.is_empty() || self.refused_snapshot.is_some()
    }
}

/// Why the driver must not read a connection now. Reading goes on once every reason is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Paused(u8);

impl Paused {
    /// A snapshot reader fell behind ([`Config::snapshot_buffer`]).
    pub(crate) const SNAPSHOT_READER: Paused = Paused(1);
    /// The Raft side holds too many of this connection's requests unanswered
    /// ([`Config::max_unanswered_requests`], [`Config::max_unanswered_bytes`]).
    pub(crate) const UNANSWERED: Paused = Paused(2);
    /// The peer does not take its answers ([`Config::max_queued_answer_bytes`]).
    pub(crate) const ANSWER_BACKLOG: Paused = Paused(4);
    /// The connection is closing once its queue is written (a refused snapshot's answer).
    pub(crate) const CLOSING: Paused = Paused(8);

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn contains(self, reason: Paused) -> bool {
        self.0 & reason.0 != 0
    }

    pub(crate) fn insert(&mut self, reason: Paused) {
        self.0 |= reason.0;
    }

    pub(crate) fn remove(&mut self, reason: Paused) {
        self.0 &= !reason.0;
    }

    pub(crate) fn intersects(self, reasons: Paused) -> bool {
        self.0 & reasons.0 != 0
    }
}

impl std::ops::BitOr for Paused {
    type Output = Paused;

    fn bitor(self, rhs: Paused) -> Paused {
        Paused(self.0 | rhs.0)
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
    /// Why the driver must not read now (empty: it may).
    pub(crate) paused: Paused,
    /// close_streams() asked this inbound connection to close once it has answered everything.
    pub(crate) close_when_idle: bool,
    /// Close once everything queued has been written.
    pub(crate) close_after_flush: bool,
    /// A dialled connection's server, when its dial checks whom it reached (TLS): calls for
    /// another server do not take it from the pool.
    pub(crate) server: Option<ServerId>,
    /// Feature `tls`: the verified peer, once the handshake completed, and what it may do.
    #[cfg(feature = "tls")]
    pub(crate) peer_check: Option<super::identity::PeerCheck>,
    /// On the engine's list of connections with output to write.
    pub(crate) dirty: bool,
    /// The instant of this connection's deadline timer entry, if one is armed.
    pub(crate) armed: Option<Instant>,
    /// Where this connection's events are recorded (its peer, which way it was opened, its
    /// key); the driver enters it while it handles the connection. Disabled (free) unless a
    /// subscriber wants it.
    pub(crate) span: Span,
}

impl Connection {
    pub(crate) fn new(
        key: ConnKey,
        peer: SocketAddr,
        role: Role,
        codec: Box<dyn Codec>,
        connected: bool,
        span: Span,
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
            paused: Paused::default(),
            close_when_idle: false,
            close_after_flush: false,
            server: None,
            #[cfg(feature = "tls")]
            peer_check: None,
            dirty: false,
            armed: None,
            span,
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

    /// The earliest deadline on this connection: of the calls waiting on it (dialled), or, for
    /// a serving one, of the frame arriving and of a snapshot body (see [`Inbound`]). A paused
    /// connection has none of the latter: it is not the peer that is slow.
    pub(crate) fn earliest_deadline(&self, config: &Config) -> Option<Instant> {
        match &self.role {
            Role::Pooled(p) => p.call.as_ref().and_then(|c| c.deadline),
            Role::SnapshotOut(s) => s.call.as_ref().and_then(|c| c.deadline),
            // Sent in order with the same timeout: the oldest expires first.
            Role::Pipeline(p) => config
                .timeout
                .and_then(|t| Some(p.shared.oldest_start()? + t)),
            Role::Inbound(inbound) => {
                let timeout = config.timeout?;
                let scale = config.timeout_scale;
                // Queued answers (or a refusal) the peer does not take: its slowness, at the
                // same rate floor as a frame's.
                let unread = inbound
                    .unread_since
                    .map(|since| since + frame_allowance(timeout, scale, self.send.len()));
                // Reading paused on our side: the frame and the snapshot body wait for us.
                let ours = Paused::SNAPSHOT_READER | Paused::UNANSWERED;
                if self.paused.intersects(ours) {
                    return unread;
                }
                let frame = inbound
                    .frame_started
                    .map(|started| started + frame_allowance(timeout, scale, self.recv.len()));
                let snapshot = inbound
                    .snapshots
                    .values()
                    .map(|s| s.last_progress + timeout)
                    .min();
                frame.into_iter().chain(snapshot).chain(unread).min()
            }
        }
    }
}

/// How long a frame may take once `received` bytes of it are here: `timeout` for the first
/// `timeout_scale` bytes and another `timeout` for each `timeout_scale` more, so a frame that
/// keeps arriving at no less than `timeout_scale` bytes per `timeout` (hashicorp's snapshot
/// rate, 256 KiB per 10 s by default) never runs out, while one trickling in a byte at a time
/// (slowloris) does after `timeout`.
fn frame_allowance(timeout: Duration, timeout_scale: u64, received: usize) -> Duration {
    let steps = (received as u64 / timeout_scale.max(1)).saturating_add(1);
    timeout.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
}
