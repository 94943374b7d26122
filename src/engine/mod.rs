//! The connection engine: every piece of protocol state of a [`NetTransport`], with no IO.
//!
//! It owns the connections (a slab, named by [`ConnKey`]), the per-peer pools and their lanes,
//! the calls waiting for answers and their deadlines, the pipelines, the snapshots going out and
//! coming in with their flow control, the accept back-off decisions and the whole close
//! sequence. It never touches a socket, a thread or the system clock: a driver
//! (`crate::driver`) owns the sockets and feeds the engine what happened, and the engine tells
//! the driver what to do. This is quinn-proto's shape: inputs are `handle_*`, outputs `poll_*`.
//!
//! **Inputs** (the driver calls these; `now` is the driver's clock, read once per turn):
//! - [`handle_handoff`](Engine::handle_handoff): callers' commands and the Raft side's answers;
//! - [`handle_accepted`](Engine::handle_accepted), [`handle_accept_failed`](Engine::handle_accept_failed);
//! - [`handle_connected`](Engine::handle_connected), [`handle_connect_failed`](Engine::handle_connect_failed);
//! - bytes read: appended to [`recv_buffer`](Engine::recv_buffer), then
//!   [`handle_received`](Engine::handle_received) (or both at once with
//!   [`handle_bytes`](Engine::handle_bytes)); then [`handle_eof`](Engine::handle_eof) or
//!   [`handle_error`](Engine::handle_error) when the stream ends;
//! - [`handle_flushed`](Engine::handle_flushed) after writing a connection's queue;
//! - [`handle_timeout`](Engine::handle_timeout) once [`poll_timeout`](Engine::poll_timeout) is due.
//!
//! **Outputs**:
//! - [`poll_action`](Engine::poll_action): dial an address for a key, close a key, resume
//!   reading a key, pause or resume accepting. Drain it after every input: a closed key's slot
//!   can be reused by the next connection.
//! - [`take_dirty`](Engine::take_dirty) then [`send_queue`](Engine::send_queue): the
//!   connections with bytes to write, and those bytes. The bytes stay in the queue (as `Bytes`
//!   segments where they are large) until the driver reports them written by advancing it, so a
//!   completion-based driver can hand the kernel buffers that outlive the call.
//! - [`poll_timeout`](Engine::poll_timeout): when to call `handle_timeout` next.
//!
//! Handing inbound RPCs to the consumer and resolving calls happen inside the engine (they touch
//! no socket). The engine's one look at a clock is for the `raft.net.rpcDecode` metric, through
//! the function the driver gives it ([`Clock`]), once per batch of frames.
//!
//! **What the interface leaves room for** (the speed work's levers): the engine is `Send` and
//! owns no thread, so whichever thread holds it can drive it (a caller waiting for its answer
//! could run turns itself, one thread at a time: not built yet); a handler answers inbound RPCs
//! on the driver's thread (a `Service` or the heartbeat handler, in `inbound.rs`), and what it
//! answers there is written right after the read that brought the request, without the
//! completion queue; and every hand-off is taken in batches (`handle_handoff` drains up to a
//! bound per turn, RPCs for the consumer leave a read together, a pipeline's answers complete a
//! read at once, and answers for many requests leave in one write).
//!
//! The engine's work is split by concern over this folder's files, each an `impl Engine` block
//! with the state it owns: `outbound.rs` (calls, pools, answers), `pipeline.rs`,
//! `snapshot_out.rs` with `feed.rs` (the body's way from the caller's reader to the engine),
//! `inbound.rs` (serving, inbound snapshots, responses), `limits.rs` (what one peer may take
//! of the node), `conn.rs` (one connection and its roles), `shared.rs` (what the API side shares), `timer.rs`, `handoff.rs` (the queues
//! shared with other threads), `logs.rs` (connection spans, close reasons, the look at log
//! levels) beside `calls.rs` (the per-call events).
//!
//! **Logs.** Every connection has a `tracing` span (`conn`: its key, its peer, `dir` =
//! `accepted` or `dialled`, and a dialled one's lane) under the transport's span (`raftnet`,
//! see `NetTransport::bind_with`); its events name that span as their parent explicitly, so they
//! land in it whichever input reached them (a driver's read, a timer, a command), and the
//! drivers enter it while they handle the connection ([`enter_conn`](Engine::enter_conn)), so
//! what runs then (a heartbeat handler) is in it too. What a user must see is `warn` (a limit
//! acting, a protocol error, a slow peer closed); connections opening and closing, with the
//! reason, and failed calls are `debug`; snapshots starting and ending are `info`; each call,
//! request and answer is `trace` (`calls.rs`). Nothing of it weighs on an RPC when no one
//! listens: once per turn the engine looks whether anyone may record connection spans or the
//! per-call events ([`refresh_log_levels`](Engine::refresh_log_levels)), and until the next
//! turn each costs the test of a flag; the rest fire once per connection or on errors.
//!
//! [`NetTransport`]: crate::NetTransport

mod calls;
pub(crate) mod conn;
pub(crate) mod feed;
pub(crate) mod handoff;
#[cfg(feature = "tls")]
pub(crate) mod identity;
mod inbound;
pub(crate) mod key;
mod limits;
mod logs;
mod outbound;
mod pipeline;
mod shared;
mod snapshot_out;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slab::Slab;
use tracing::{Span, debug, error, info, warn};

use self::conn::{Connection, Inbound, Paused, Role};
use self::handoff::{Command, Completion};
pub(crate) use self::key::ConnKey;
use self::key::Generations;
use self::limits::{Admission, RefusalLog};
use self::logs::{CloseReason, connection_span};
pub(crate) use self::shared::{ClosedOnExit, HandlerSlot, Handlers, Shared};
use self::timer::{TimerKind, Timers, accept_backoff};
use crate::error::Error;
use crate::message::{AppendEntriesResponse, Request};
use crate::metrics::{RpcType, TransportMetrics, add};
use crate::transport::ServerId;
use crate::transport::rpc::{Answer, Rpc};
use crate::wire::{CodecContext, Lane, RawFrame, SendQueue, WireError};

/// Commands taken per turn: enough to batch a burst of pipelined sends into one write, few
/// enough that reads and answers are not held up behind a flood of submissions.
const MAX_COMMANDS_PER_TURN: usize = 4096;
/// Answers from the Raft side taken per turn (same reasoning).
const MAX_COMPLETIONS_PER_TURN: usize = 4096;

/// The clock the engine reads for its one timing metric (decode time), given by the driver:
/// `Instant::now` in production, a fake in the engine's tests.
pub(crate) type Clock = fn() -> Instant;

/// What the engine asks its driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Open a connection to `addr` for `key`; report the outcome with
    /// [`Engine::handle_connected`] or [`Engine::handle_connect_failed`].
    Dial { key: ConnKey, addr: SocketAddr },
    /// The engine dropped `key`: close its socket.
    Close { key: ConnKey },
    /// Reading `key` was paused (a snapshot reader fell behind) and may go on: read it again,
    /// as no new readiness may announce the bytes already waiting.
    ResumeRead { key: ConnKey },
    /// Accepting failed: stop accepting until [`Action::ResumeAccept`].
    PauseAccept,
    /// Accept again (connections may be waiting with no new readiness to announce them).
    ResumeAccept,
}

/// How writing a connection's queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket is full; the driver flushes again when it is writable.
    Blocked,
    /// The driver's write budget for this turn ran out: flush again next turn.
    Budget,
}

/// Timer entries allowed beyond two per open connection before the stale ones are swept out
/// ([`Engine::add_timer`]).
const TIMER_SLACK: usize = 64;

pub(crate) struct Engine {
    shared: Arc<Shared>,
    clock: Clock,
    conns: Slab<Connection>,
    generations: Generations,
    /// Idle pooled connections per (peer, lane), most recently used last.
    pools: HashMap<(SocketAddr, Lane), Vec<ConnKey>, foldhash::fast::RandomState>,
    /// How many keys `pools` holds, kept as it changes (the gauge reads it).
    idle_pooled: usize,
    pipelines: HashMap<u64, ConnKey>,
    snapshots: HashMap<u64, ConnKey>,
    timers: Timers,
    next_request_id: u64,
    /// Connections with output to write since the driver last took the list.
    dirty: Vec<ConnKey>,
    actions: VecDeque<Action>,
    accept_delay: Option<Duration>,
    shutting_down: bool,
    /// Scratch for the frames of one read, kept to reuse its allocation.
    frames: Vec<RawFrame>,
    /// Scratch for the decoded requests of one read on a serving connection.
    decoded: Vec<(RawFrame, Option<Request>)>,
    /// RPCs for the consumer, handed over together at the end of a read (one wake-up, if a
    /// receiver waits, per read instead of per RPC).
    staged: Vec<Rpc>,
    /// Answers the handlers gave while the engine served a read (see
    /// `handoff::answering_inline`), written right after it.
    inline_answers: Vec<Answer>,
    /// Inside [`serve_read`](Self::serve_read).
    serving_read: bool,
    /// RPCs a handler took during the read being served, with when they were decoded (for the
    /// enqueue metric, timed once at the read's end).
    handled: Vec<(RpcType, Instant)>,
    /// RPCs received during the read being served, with their decoding time (for
    /// `rpcs_received` and the decode metric, recorded once at the read's end).
    received: Vec<(RpcType, Duration)>,
    /// Answers written since the last [`record_responded`](Self::record_responded), with when
    /// the Raft side took their requests (for the respond metric, recorded per run).
    responded: Vec<(RpcType, Instant)>,
    /// Scratch for the answers of one read on a pipeline connection.
    pipeline_scratch: Vec<(u64, Result<AppendEntriesResponse, Error>)>,
    /// The handlers serving RPCs here, as of the slot's version beside them.
    handlers: (u64, Handlers),
    /// Inbound connections held, for the connection limits.
    admission: Admission,
    /// Inbound snapshots whose buffers live (see `limits::SnapshotPermit`).
    inbound_snapshots: Arc<AtomicUsize>,
    refused_connections: RefusalLog,
    refused_snapshots: RefusalLog,
    /// Requests a TLS peer's checks refused (`identity.rs`).
    #[cfg(feature = "tls")]
    refused_requests: RefusalLog,
    /// The transport's span: every connection's span is its child.
    span: Span,
    /// Whether the per-call `trace` events may be recorded by anyone (see
    /// [`refresh_log_levels`](Self::refresh_log_levels)).
    trace_calls: bool,
    /// Whether connection spans may be recorded by anyone (likewise).
    conn_spans: bool,
    /// The connection span a driver entered ([`enter_conn`](Self::enter_conn)) and has not
    /// exited yet.
    entered: Option<Span>,
}

impl Engine {
    pub(crate) fn new(shared: Arc<Shared>, clock: Clock) -> Engine {
        Engine {
            shared,
            clock,
            conns: Slab::new(),
            generations: Generations::default(),
            pools: HashMap::default(),
            idle_pooled: 0,
            pipelines: HashMap::new(),
            snapshots: HashMap::new(),
            timers: Timers::default(),
            next_request_id: 1,
            dirty: Vec::new(),
            actions: VecDeque::new(),
            accept_delay: None,
            shutting_down: false,
            frames: Vec::new(),
            decoded: Vec::new(),
            staged: Vec::new(),
            inline_answers: Vec::new(),
            serving_read: false,
            handled: Vec::new(),
            received: Vec::new(),
            responded: Vec::new(),
            pipeline_scratch: Vec::new(),
            handlers: (0, Handlers::default()),
            admission: Admission::default(),
            inbound_snapshots: Arc::new(AtomicUsize::new(0)),
            refused_connections: RefusalLog::default(),
            refused_snapshots: RefusalLog::default(),
            #[cfg(feature = "tls")]
            refused_requests: RefusalLog::default(),
            span: Span::none(),
            // Until the first turn looks: every event checks for itself.
            trace_calls: true,
            conn_spans: true,
            entered: None,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn metrics(&self) -> &TransportMetrics {
        &self.shared.metrics
    }

    // ---- inputs -----------------------------------------------------------------------------

    /// Take callers' commands and the Raft side's answers (a bounded number of each). `false`
    /// once the transport is shutting down: the driver then calls [`shutdown`](Self::shutdown).
    pub(crate) fn handle_handoff(&mut self, now: Instant) -> bool {
        self.refresh_log_levels();
        for _ in 0..MAX_COMMANDS_PER_TURN {
            let Some(command) = self.shared.handoff.commands.pop() else {
                break;
            };
            match command {
                Command::Call(call) => self.start_call(*call, now),
                Command::Snapshot(s) => self.start_snapshot(*s, now),
                Command::SnapshotReady { id } => {
                    if let Some(&key) = self.snapshots.get(&id) {
                        self.pump_snapshot(key);
                    }
                }
                Command::OpenPipeline {
                    id,
                    addr,
                    server,
                    shared,
                } => self.open_pipeline(id, addr, server, shared, now),
                Command::PipelineSend { id, seq, request } => {
                    self.pipeline_send(id, &[(seq, request)], now)
                }
                Command::PipelineSendBatch { id, batch } => self.pipeline_send(id, &batch, now),
                Command::ClosePipeline { id } => {
                    if let Some(key) = self.pipelines.remove(&id) {
                        self.close(key, Error::PipelineClosed);
                    }
                }
                Command::CloseStreams => self.close_streams(),
                Command::Shutdown => {
                    self.shutting_down = true;
                    return false;
                }
            }
        }
        for _ in 0..MAX_COMPLETIONS_PER_TURN {
            let Some(completion) = self.shared.handoff.completions.pop() else {
                break;
            };
            match completion {
                Completion::Response {
                    conn,
                    route,
                    result,
                    taken_at,
                } => self.send_response(conn, route, result, taken_at, now),
                Completion::Responses(answers) => {
                    for a in answers {
                        let conn = ConnKey::from_raw(a.route.conn);
                        self.send_response(conn, a.route, a.result, a.taken_at, now);
                    }
                }
                Completion::ResumeRead { conn } => {
                    self.unpause(conn, Paused::SNAPSHOT_READER, now);
                }
            }
        }
        self.record_responded(now);
        true
    }

    /// A connection was accepted from `peer`: it serves requests. Returns its key, or `None`
    /// if it is over a connection limit (`limits.rs`): the driver then closes it.
    pub(crate) fn handle_accepted(&mut self, peer: SocketAddr, now: Instant) -> Option<ConnKey> {
        self.accept_delay = None;
        add(&self.shared.metrics.accepted, 1);
        if !self.admit(peer, now) {
            return None;
        }
        let key = self.insert(peer, Role::Inbound(Inbound::new(now)), true);
        // Its preamble goes out at once.
        self.mark_dirty(key);
        // Its first frame must come in time.
        self.arm_inbound_deadline(key, now);
        Some(key)
    }

    /// Accepting failed (out of descriptors and the like): retrying at once would spin, so back
    /// off as hashicorp does (5 ms doubling to 1 s, #301), not accepting meanwhile.
    pub(crate) fn handle_accept_failed(&mut self, error: io::Error, now: Instant) {
        let delay = accept_backoff(self.accept_delay);
        self.accept_delay = Some(delay);
        error!("failed to accept connection: {error}; retrying in {delay:?}");
        self.actions.push_back(Action::PauseAccept);
        self.add_timer(now + delay, TimerKind::AcceptResume);
    }

    /// The dial of `key` completed.
    pub(crate) fn handle_connected(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.connected = true;
            debug!(parent: &conn.span, peer = %conn.peer, "connected");
            // What was queued while connecting (the preamble, a request) can go now.
            self.mark_dirty(key);
        }
    }

    /// The dial of `key` failed: whatever waits on it fails as unreachable.
    pub(crate) fn handle_connect_failed(&mut self, key: ConnKey, error: io::Error) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let addr = conn.peer.to_string();
        add(&self.shared.metrics.dial_failures, 1);
        self.close(
            key,
            Error::Unreachable {
                addr,
                reason: Arc::new(error),
            },
        );
    }

    /// The server a dial of `key` must reach (TLS checks the certificate names it), as the
    /// call, pipeline or snapshot that made the connection said; `None` if no check asks.
    pub(crate) fn dial_server(&self, key: ConnKey) -> Option<&ServerId> {
        self.conn(key)?.server.as_ref()
    }

    /// Whether `key` names a connection the engine still has.
    pub(crate) fn is_open(&self, key: ConnKey) -> bool {
        self.conn(key).is_some()
    }

    /// Whether the driver should read `key` now: it is open, connected, and not paused by a
    /// snapshot reader that fell behind.
    pub(crate) fn wants_read(&self, key: ConnKey) -> bool {
        self.conn(key)
            .is_some_and(|c| c.connected && c.paused.is_empty())
    }

    /// Where the driver puts bytes read for `key` (then calls
    /// [`handle_received`](Self::handle_received)), with the metrics to count them in; `None`
    /// if the key is gone.
    pub(crate) fn recv_buffer(
        &mut self,
        key: ConnKey,
    ) -> Option<(&mut BytesMut, &TransportMetrics)> {
        let conn = lookup(&mut self.conns, key)?;
        Some((&mut conn.recv, &self.shared.metrics))
    }

    /// How many bytes the next read into `key`'s receive buffer should take, if its codec
    /// knows ([`Codec::read_hint`](crate::wire::Codec::read_hint)): reading a large frame to
    /// its end, and no further, saves copying the start of the next one.
    pub(crate) fn read_hint(&self, key: ConnKey) -> Option<usize> {
        let conn = self.conns.get(key.index()).filter(|c| c.key == key)?;
        conn.codec.read_hint(&conn.recv)
    }

    /// Cut every complete frame out of `key`'s receive buffer and act on it.
    pub(crate) fn handle_received(&mut self, key: ConnKey, now: Instant) {
        let mut frames = std::mem::take(&mut self.frames);
        let Some(conn) = self.conn_mut(key) else {
            self.frames = frames;
            return;
        };
        let decoded = loop {
            match conn.codec.decode_frame(&mut conn.recv) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if !frames.is_empty() {
            let inbound = matches!(conn.role, Role::Inbound(_));
            if inbound {
                self.serve_read(now, |engine| engine.serve_frames(key, &mut frames, now));
            } else if matches!(conn.role, Role::Pipeline(_)) {
                self.pipeline_answers(key, &mut frames, now);
            } else {
                for frame in frames.drain(..) {
                    self.answer_frame(key, frame, now);
                }
            }
        }
        frames.clear();
        self.frames = frames;
        if let Err(e) = decoded {
            self.protocol_error(key, e);
            return;
        }
        self.track_partial_frame(key, now);
    }

    /// A serving connection's frame in progress: its clock starts with its first bytes and
    /// stops once no part of a frame is buffered.
    fn track_partial_frame(&mut self, key: ConnKey, now: Instant) {
        let Some(conn) = lookup(&mut self.conns, key) else {
            return;
        };
        let Role::Inbound(inbound) = &mut conn.role else {
            return;
        };
        let partial = !conn.recv.is_empty() || !inbound.first_frame_seen;
        match (partial, inbound.frame_started) {
            (false, _) => inbound.frame_started = None,
            (true, None) => {
                inbound.frame_started = Some(now);
                self.arm_inbound_deadline(key, now);
            }
            (true, Some(_)) => {}
        }
    }

    /// Append `bytes` to `key`'s receive buffer and act on the frames completed (a copy: for
    /// drivers that receive into buffers of their own).
    pub(crate) fn handle_bytes(&mut self, key: ConnKey, bytes: &[u8], now: Instant) {
        if let Some((buf, _)) = self.recv_buffer(key) {
            buf.extend_from_slice(bytes);
            self.handle_received(key, now);
        }
    }

    /// The peer closed its side of `key` (after everything it sent was handed over).
    ///
    /// A stream that stops inside a frame is a protocol error, except inside a snapshot's
    /// body: a sender stops sending it at any byte once it has its answer (hashicorp's closes
    /// the connection then, as raftnet's does) or when it gives up, so a body cut inside a
    /// chunk is the same lost connection as one cut between two chunks (its reader fails).
    pub(crate) fn handle_eof(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let in_snapshot_body = matches!(&conn.role, Role::Inbound(i) if i.in_snapshot_body());
        match conn.codec.finish(&conn.recv) {
            Err(_) if in_snapshot_body => self.close(key, Error::connection_lost()),
            Err(e) => self.protocol_error(key, e),
            Ok(()) => self.close(key, Error::connection_lost()),
        }
    }

    /// Reading or writing `key` failed.
    pub(crate) fn handle_error(&mut self, key: ConnKey, error: io::Error) {
        self.close(key, Error::io(error));
    }

    /// `key`'s socket can take more bytes: write what is queued (and what the stream holds).
    pub(crate) fn handle_writable(&mut self, key: ConnKey) {
        self.mark_dirty(key);
    }

    /// The driver wrote (some of) `key`'s queue.
    pub(crate) fn handle_flushed(
        &mut self,
        key: ConnKey,
        flushed: io::Result<Flushed>,
        now: Instant,
    ) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        match flushed {
            Ok(Flushed::All) if conn.close_after_flush => {
                self.retire(key, "its last answer is written");
                return;
            }
            Ok(Flushed::Budget) => {
                self.mark_dirty(key);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                self.close(key, Error::io(e));
                return;
            }
        }
        // A snapshot sender refills its queue as it drains (written next turn).
        if conn.needs_snapshot_refill() {
            self.pump_snapshot(key);
        }
        self.relieve_answer_backlog(key, now);
    }

    /// Fire every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                TimerKind::Deadline { conn } => {
                    let Some(c) = lookup(&mut self.conns, conn) else {
                        continue;
                    };
                    if c.armed != Some(at) {
                        continue; // superseded by an earlier entry for this connection
                    }
                    c.armed = None;
                    match c.earliest_deadline(&self.shared.config) {
                        // A serving connection's deadline is its peer's slowness.
                        Some(d) if d <= now && matches!(c.role, Role::Inbound(_)) => {
                            self.close_slow_peer(conn)
                        }
                        // A late answer must never reach a later call: the connection goes.
                        Some(d) if d <= now => self.close(conn, Error::Timeout),
                        Some(d) => self.arm(conn, d),
                        None => {}
                    }
                }
                TimerKind::Dial { conn } => {
                    if self.conn(conn).is_some_and(|c| !c.connected) {
                        self.handle_connect_failed(
                            conn,
                            io::Error::new(io::ErrorKind::TimedOut, "dial timed out"),
                        );
                    }
                }
                TimerKind::AcceptResume => self.actions.push_back(Action::ResumeAccept),
            }
        }
    }

    /// Close every connection and fail everything still waiting with [`Error::Shutdown`]; the
    /// transport is closed from now on. The driver closes the keys ([`Action::Close`]) and stops.
    pub(crate) fn shutdown(&mut self) {
        self.shutting_down = true;
        // Submissions fail from here on; the consumer closes once every connection is gone.
        self.shared.handoff.close();
        let keys: Vec<ConnKey> = self.conns.iter().map(|(_, c)| c.key).collect();
        for key in keys {
            self.close(key, Error::Shutdown);
        }
        self.shared.close();
        self.publish_gauges();
    }

    // ---- outputs ----------------------------------------------------------------------------

    /// The next thing the driver must do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_at()
    }

    /// Move the connections with output to write into `into` (each once; a connection that gets
    /// more output meanwhile comes back in the next call).
    pub(crate) fn take_dirty(&mut self, into: &mut Vec<ConnKey>) {
        debug_assert!(into.is_empty(), "the driver hands back an empty list");
        std::mem::swap(&mut self.dirty, into);
        for &key in into.iter() {
            if let Some(c) = self.conn_mut(key) {
                c.dirty = false;
            }
        }
    }

    /// `key`'s bytes waiting to be written, with the metrics to count them in; `None` if it is
    /// gone or not connected yet. The driver advances the queue past what it wrote.
    pub(crate) fn send_queue(
        &mut self,
        key: ConnKey,
    ) -> Option<(&mut SendQueue, &TransportMetrics)> {
        let conn = lookup(&mut self.conns, key).filter(|c| c.connected)?;
        Some((&mut conn.send, &self.shared.metrics))
    }

    /// Whether the engine has work it can do without new input from the sockets: queued
    /// commands or answers, connections with output to write.
    pub(crate) fn has_queued_work(&self) -> bool {
        !self.dirty.is_empty() || !self.actions.is_empty() || self.shared.handoff.has_work()
    }

    /// Publish the gauges that change without a connection changing (once per turn).
    pub(crate) fn publish_gauges(&self) {
        let gauges = &self.shared.gauges;
        gauges.timers.store(self.timers.len(), Ordering::Relaxed);
        gauges
            .open_connections
            .store(self.conns.len(), Ordering::Relaxed);
        gauges
            .idle_pooled
            .store(self.idle_pooled, Ordering::Relaxed);
    }

    // ---- connections ------------------------------------------------------------------------

    fn conn(&self, key: ConnKey) -> Option<&Connection> {
        self.conns.get(key.index()).filter(|c| c.key == key)
    }

    fn conn_mut(&mut self, key: ConnKey) -> Option<&mut Connection> {
        lookup(&mut self.conns, key)
    }

    /// A new connection in the slab; its codec has queued what the connection starts with.
    fn insert(&mut self, peer: SocketAddr, role: Role, connected: bool) -> ConnKey {
        let entry = self.conns.vacant_entry();
        let key = ConnKey::new(entry.key(), self.generations.next());
        let config = &self.shared.config;
        let codec = config.codec.new_codec(&CodecContext {
            peer,
            inbound: matches!(role, Role::Inbound(_)),
            max_body_len: config.max_frame_body,
            large_payload_threshold: config.large_payload_threshold,
            max_entries_per_request: config.max_entries_per_request,
        });
        let span = connection_span(&self.span, key, peer, &role);
        if connected {
            debug!(parent: &span, %peer, "accepted");
        } else {
            debug!(parent: &span, %peer, "dialling");
        }
        entry.insert(Connection::new(key, peer, role, codec, connected, span));
        self.shared
            .gauges
            .open_connections
            .store(self.conns.len(), Ordering::Relaxed);
        key
    }

    /// A new outbound connection to `addr` (for `server`, whom the dial must reach, if it
    /// checks: see [`dial_server`](Self::dial_server)): the driver is asked to dial it, and it
    /// fails as unreachable if the dial takes longer than the configured timeout.
    fn dial(
        &mut self,
        addr: SocketAddr,
        server: Option<ServerId>,
        role: Role,
        now: Instant,
    ) -> ConnKey {
        add(&self.shared.metrics.dials, 1);
        let key = self.insert(addr, role, false);
        self.conns[key.index()].server = server;
        self.actions.push_back(Action::Dial { key, addr });
        if let Some(t) = self.shared.config.timeout {
            self.add_timer(now + t, TimerKind::Dial { conn: key });
        }
        key
    }

    /// Add a timer, sweeping out the stale ones first if they outnumber the live ones: an open
    /// connection holds at most a dial timer and one armed deadline, so beyond
    /// [`TIMER_SLACK`] more than two per connection, most entries guard connections that closed
    /// (churn: calls to a peer that refuses, each dial closed long before its timeout) or
    /// deadlines superseded by earlier ones. The sweep is O(entries) and leaves at most two per
    /// connection, so it runs at most once per [`TIMER_SLACK`] entries added.
    fn add_timer(&mut self, at: Instant, kind: TimerKind) {
        if self.timers.len() >= 2 * self.conns.len() + TIMER_SLACK {
            let conns = &self.conns;
            let live = |key: ConnKey| conns.get(key.index()).filter(|c| c.key == key);
            self.timers.retain(|at, kind| match kind {
                TimerKind::Dial { conn } => live(conn).is_some_and(|c| !c.connected),
                TimerKind::Deadline { conn } => live(conn).is_some_and(|c| c.armed == Some(at)),
                TimerKind::AcceptResume => true,
            });
        }
        self.timers.add(at, kind);
    }

    fn mark_dirty(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Make sure a deadline timer fires for `key` no later than `deadline`. One entry per
    /// connection: a later deadline than the armed one is picked up when that one fires.
    fn arm(&mut self, key: ConnKey, deadline: Instant) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        if conn.armed.is_some_and(|armed| armed <= deadline) {
            return;
        }
        conn.armed = Some(deadline);
        self.add_timer(deadline, TimerKind::Deadline { conn: key });
    }

    fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn protocol_error(&mut self, key: ConnKey, e: WireError) {
        add(&self.shared.metrics.protocol_errors, 1);
        if let Some(c) = self.conn(key) {
            warn!(parent: &c.span, peer = %c.peer, error = %e, "closing the connection: protocol error");
        }
        self.close(key, Error::Protocol(e));
    }

    /// Close a connection and fail whatever was waiting on it with `error`.
    fn close(&mut self, key: ConnKey, error: Error) {
        self.close_because(key, error, None);
    }

    /// Close a connection that is done (`why`, for its log line), or that no call waits on:
    /// anything still waiting fails with [`Error::Shutdown`].
    fn retire(&mut self, key: ConnKey, why: &'static str) {
        self.close_because(key, Error::Shutdown, Some(why));
    }

    /// Close a connection, failing what waits on it with `error`; its log line gives `why`, or
    /// else `error`, as the reason.
    fn close_because(&mut self, key: ConnKey, error: Error, why: Option<&'static str>) {
        if self.conn(key).is_none() {
            return;
        }
        let conn = self.conns.remove(key.index());
        let span = &conn.span;
        debug!(
            parent: span,
            peer = %conn.peer,
            reason = %CloseReason(why, &error),
            "connection closed"
        );
        self.actions.push_back(Action::Close { key });
        self.shared
            .gauges
            .open_connections
            .store(self.conns.len(), Ordering::Relaxed);
        let connected = conn.connected;
        let peer = conn.peer;
        match conn.role {
            Role::Inbound(inbound) => {
                self.release(peer);
                for (request_id, snap) in inbound.snapshots {
                    info!(
                        parent: span,
                        %peer,
                        request_id,
                        received = snap.received,
                        size = snap.size,
                        "snapshot not received: the connection closed"
                    );
                    snap.stream.finish(Err(format!("connection lost: {error}")));
                }
            }
            Role::Pooled(p) => {
                self.forget_pooled(p.pool_key, key);
                if let Some(call) = p.call {
                    add(&self.shared.metrics.calls_failed[call.kind as usize], 1);
                    let error = call_error(error, connected, peer);
                    debug!(
                        parent: span,
                        %peer,
                        rpc = ?call.kind,
                        request_id = call.request_id,
                        %error,
                        "call failed"
                    );
                    call.resolver.fail(error);
                }
            }
            Role::Pipeline(p) => {
                self.pipelines.remove(&p.id);
                let e = match error {
                    Error::Shutdown => Error::Shutdown,
                    Error::PipelineClosed => Error::PipelineClosed,
                    other => call_error(other, connected, peer),
                };
                p.shared.fail(e);
            }
            Role::SnapshotOut(s) => {
                self.snapshots.remove(&s.id);
                s.feed.cancel();
                if let Some(call) = s.call {
                    add(&self.shared.metrics.calls_failed[call.kind as usize], 1);
                    let error = call_error(error, connected, peer);
                    info!(
                        parent: span,
                        %peer,
                        request_id = call.request_id,
                        sent = s.sent,
                        size = s.size,
                        %error,
                        "snapshot not sent"
                    );
                    call.resolver.fail(error);
                }
            }
        }
    }
}

/// `key`'s connection, borrowing only the slab (so the engine's other fields stay usable).
fn lookup(conns: &mut Slab<Connection>, key: ConnKey) -> Option<&mut Connection> {
    conns.get_mut(key.index()).filter(|c| c.key == key)
}

/// The error a waiting call sees: before the connection was up, the peer was unreachable.
fn call_error(error: Error, connected: bool, peer: SocketAddr) -> Error {
    match error {
        Error::Shutdown
        | Error::Timeout
        | Error::Unreachable { .. }
        | Error::PipelineClosed
        | Error::Snapshot(_) => error,
        Error::Io(e) if !connected => Error::Unreachable {
            addr: peer.to_string(),
            reason: e,
        },
        other => other,
    }
}
