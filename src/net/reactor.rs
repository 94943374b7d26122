//! The reactor: one thread that owns every socket of a [`NetTransport`](super::NetTransport).
//!
//! Each turn of its loop it takes submitted calls and the Raft side's answers from the handoff
//! queues, fires due timers, reads and decodes what arrived, and writes every connection's
//! queued frames in one vectored write. Each kind of work is bounded per turn (the constants
//! below), so one busy peer cannot starve the others, the queues or the timers. It sleeps in
//! `poll` only when there is nothing left to do, after telling producers it is about to.
//!
//! Sockets live in a slab; a connection's key is its slab index plus a generation, and that key
//! is its mio token, so an event or answer for a closed connection never reaches the connection
//! that reuses its slot.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::Shared;
use super::conn::*;
use super::handoff::{Command, Completion, OutboundCall, OutboundSnapshot};
use super::snapshot_out::Next;
use super::timer::{TimerKind, Timers, accept_backoff};
use crate::error::Error;
use crate::metrics::{RpcKind, add};
use crate::transport::rpc::{Responder, Rpc};
use crate::transport::snapshot::{Flow, SnapshotReader, SnapshotStream};
use crate::wire::*;

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Events taken from one `poll`.
const MAX_EVENTS: usize = 1024;
/// Commands taken per turn: enough to batch a burst of pipelined sends into one write, few
/// enough that reads and answers are not held up behind a flood of submissions.
const MAX_COMMANDS_PER_TURN: usize = 4096;
/// Answers from the Raft side taken per turn (same reasoning).
const MAX_COMPLETIONS_PER_TURN: usize = 4096;
/// Bytes read from one connection per turn before moving on to the others. A heartbeat on
/// another connection waits at most one such read per bulk connection (about 60 µs of copying
/// at loopback speed for 256 KiB), while bulk transfers still move in large reads.
const READ_BUDGET: usize = 256 << 10;
/// Bytes written to one connection per turn, for the same reason.
const WRITE_BUDGET: usize = 256 << 10;
/// Connections accepted per turn.
const MAX_ACCEPTS_PER_TURN: usize = 256;
/// How long the reactor keeps polling without sleeping once it runs out of work (see
/// `wait_for_work`): about the cost of the wake-up it saves.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);
/// Turns in a row with work before the reactor task yields to the runtime's other tasks
/// ([`Reactor::run_on_runtime`]).
#[cfg(feature = "tokio")]
const BUSY_TURNS_BEFORE_YIELD: u32 = 16;
/// A snapshot connection's send queue is refilled from the pump while it holds less than this.
const SNAPSHOT_SEND_HIGH_WATER: usize = 1 << 20;

fn key_of(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

fn index_of(key: u64) -> usize {
    (key & 0xFFFF_FFFF) as usize
}

pub(crate) struct Reactor {
    poll: Poll,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    accept_delay: Option<Duration>,
    /// The last accept stopped at `MAX_ACCEPTS_PER_TURN` with connections possibly still
    /// queued: the listener reports readiness only for new ones, so accept again next turn.
    accept_again: bool,
    conns: Slab<Conn>,
    next_generation: u32,
    /// Idle pooled connections per (peer, lane), most recently used last.
    pools: HashMap<(SocketAddr, Lane), Vec<u64>>,
    pipelines: HashMap<u64, u64>,
    snapshots: HashMap<u64, u64>,
    timers: Timers,
    next_request_id: u64,
    dirty: Vec<u64>,
    read_again: Vec<u64>,
    frames: Vec<RawFrame>,
    shutting_down: bool,
    /// The reactor's clock: read once per turn (after waking), used for deadlines and
    /// timestamps within the turn. A turn is short (bounded work), so this is at most a turn
    /// late, and it saves a clock read per RPC.
    now: Instant,
}

impl Reactor {
    pub(crate) fn new(
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
    ) -> io::Result<Reactor> {
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            shared,
            listener: Some(listener),
            accept_delay: None,
            accept_again: false,
            conns: Slab::new(),
            next_generation: 1,
            pools: HashMap::new(),
            pipelines: HashMap::new(),
            snapshots: HashMap::new(),
            timers: Timers::default(),
            next_request_id: 1,
            dirty: Vec::new(),
            read_again: Vec::new(),
            frames: Vec::new(),
            shutting_down: false,
            now: Instant::now(),
        })
    }

    /// Run until shutdown.
    pub(crate) fn run(mut self) {
        // However the loop ends (even by a panic), callers must not be left waiting.
        let _guard = ClosedOnExit(self.shared.clone());
        let mut events = Events::with_capacity(MAX_EVENTS);
        while self.work() {
            let polled = self.wait_for_work(&mut events);
            if !self.dispatch(polled, &events) {
                break;
            }
        }
        self.shutdown();
    }

    /// The loop as a task on a tokio runtime ([`NetTransport::bind_on`]): the same turns, but
    /// instead of sleeping in `epoll_wait` on a thread of its own, the task waits for the
    /// reactor's epoll descriptor to become readable (registered with the runtime's I/O
    /// driver), for a ring from the queues (a task notification, not the eventfd), or for the
    /// next timer. No spinning: the runtime's workers have other tasks to run.
    ///
    /// [`NetTransport::bind_on`]: super::NetTransport::bind_on
    #[cfg(feature = "tokio")]
    pub(crate) async fn run_on_runtime(
        mut self,
        ring: Arc<tokio::sync::Notify>,
        finished: super::SignalOnDrop,
    ) {
        // Dropped when the loop ends, and also when the runtime drops the task unfinished.
        let _finished = finished;
        let _guard = ClosedOnExit(self.shared.clone());
        let epoll = match self.register_with_runtime() {
            Ok(fd) => fd,
            Err(e) => {
                log::error!("raftnet: cannot register the reactor with the runtime: {e}");
                return;
            }
        };
        let mut events = Events::with_capacity(MAX_EVENTS);
        let mut busy_turns = 0u32;
        while self.work() {
            let mut polled = self.poll.poll(&mut events, Some(Duration::ZERO));
            self.now = Instant::now();
            if polled.is_ok() && events.is_empty() && !self.has_queued_work() {
                busy_turns = 0;
                if self.shared.handoff.prepare_sleep() {
                    add(&self.shared.metrics.reactor_sleeps, 1);
                    let woken = async {
                        tokio::select! {
                            ready = epoll.readable() => {
                                if let Ok(mut ready) = ready {
                                    ready.clear_ready();
                                }
                            }
                            _ = ring.notified() => {}
                        }
                    };
                    match self.timers.next_in(self.now) {
                        Some(timeout) => {
                            let _ = tokio::time::timeout(timeout, woken).await;
                        }
                        None => woken.await,
                    }
                    polled = self.poll.poll(&mut events, Some(Duration::ZERO));
                    self.shared.handoff.woke();
                    self.now = Instant::now();
                }
            } else {
                // Busy: let the runtime's other tasks (the Raft side among them) run now and
                // then, as a task that never awaited would starve them.
                busy_turns += 1;
                if busy_turns >= BUSY_TURNS_BEFORE_YIELD {
                    busy_turns = 0;
                    tokio::task::yield_now().await;
                }
            }
            if !self.dispatch(polled, &events) {
                break;
            }
        }
        self.shutdown();
    }

    /// A duplicate of the reactor's epoll descriptor, registered with the runtime's I/O driver:
    /// readable whenever `poll` has events for the reactor (a socket or the waker).
    ///
    /// The crate's one `unsafe` that is not for speed: tokio offers no safe way to register a
    /// descriptor. Miri cannot run it (epoll); `tests/bind_on.rs` exercises it.
    #[cfg(feature = "tokio")]
    #[allow(unsafe_code)]
    fn register_with_runtime(&self) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: `poll` owns this descriptor and keeps it open while `self` exists, which
        // covers this borrow (it ends with the statement, once the duplicate is made).
        let epoll =
            unsafe { BorrowedFd::borrow_raw(self.poll.as_raw_fd()) }.try_clone_to_owned()?;
        // SAFETY: the `AsyncFd` owns the duplicate (an `OwnedFd`), so the descriptor stays open
        // and the same for the `AsyncFd`'s whole life, as `register_with_interest` requires.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)
    }

    /// One turn's work that needs no waiting. `false` once the transport is shutting down.
    fn work(&mut self) -> bool {
        add(&self.shared.metrics.reactor_turns, 1);
        self.drain_commands();
        if self.shutting_down {
            return false;
        }
        self.drain_completions();
        self.fire_timers();
        if std::mem::take(&mut self.accept_again) {
            self.accept();
        }
        self.continue_reads();
        self.flush_dirty();
        self.publish_gauges();
        true
    }

    /// Handle what a poll returned. `false` if polling failed for good.
    fn dispatch(&mut self, polled: io::Result<()>, events: &Events) -> bool {
        if let Err(e) = polled
            && e.kind() != io::ErrorKind::Interrupted
        {
            log::error!("raftnet: poll failed, stopping the transport: {e}");
            return false;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => self.accept(),
                Token(t) => self.conn_event(t as u64, event),
            }
        }
        true
    }

    /// Work the loop can do without waiting for an event. (`dirty` is among it: flushing a
    /// snapshot connection refills its queue from the pump and marks it dirty again; sleeping
    /// then would wait for a socket event that never comes, as the socket took everything.)
    fn has_queued_work(&self) -> bool {
        self.accept_again
            || !self.dirty.is_empty()
            || !self.read_again.is_empty()
            || !self.shared.handoff.commands.is_empty()
            || !self.shared.handoff.completions.is_empty()
    }

    /// Poll for socket events. With work queued, only look; otherwise keep looking (without
    /// sleeping) for up to [`SPIN_BEFORE_SLEEP`], and only then sleep until an event, a timer or
    /// a waker ring. Under load the next event nearly always arrives within that window, which
    /// saves the wake-up (the futex and the cross-core IPI) on both sides.
    fn wait_for_work(&mut self, events: &mut Events) -> io::Result<()> {
        if self.has_queued_work() {
            let polled = self.poll.poll(events, Some(Duration::ZERO));
            self.now = Instant::now();
            return polled;
        }
        let spin_start = self.now;
        loop {
            self.poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() || self.has_queued_work() {
                self.now = Instant::now();
                return Ok(());
            }
            let now = Instant::now();
            self.now = now;
            if now - spin_start >= SPIN_BEFORE_SLEEP
                || self.timers.next_in(now) == Some(Duration::ZERO)
            {
                break;
            }
            std::thread::yield_now();
        }
        let timeout = if self.shared.handoff.prepare_sleep() {
            add(&self.shared.metrics.reactor_sleeps, 1);
            self.timers.next_in(Instant::now())
        } else {
            Some(Duration::ZERO)
        };
        let polled = self.poll.poll(events, timeout);
        self.shared.handoff.woke();
        self.now = Instant::now();
        polled
    }

    // ---- commands from callers -------------------------------------------------------------

    fn drain_commands(&mut self) {
        for _ in 0..MAX_COMMANDS_PER_TURN {
            let Some(command) = self.shared.handoff.commands.pop() else {
                return;
            };
            match command {
                Command::Call(call) => self.start_call(call),
                Command::Snapshot(s) => self.start_snapshot(s),
                Command::SnapshotReady { id } => {
                    if let Some(&key) = self.snapshots.get(&id) {
                        self.pump_snapshot(key);
                    }
                }
                Command::OpenPipeline { id, addr, shared } => {
                    match self.dial(addr, |_| {
                        Role::Pipeline(PipelineConn {
                            id,
                            shared: shared.clone(),
                            inflight: Default::default(),
                        })
                    }) {
                        Ok(key) => {
                            self.pipelines.insert(id, key);
                        }
                        Err(e) => shared.fail(e),
                    }
                }
                Command::PipelineSend { id, seq, request } => self.pipeline_send(id, seq, request),
                Command::ClosePipeline { id } => {
                    if let Some(key) = self.pipelines.remove(&id) {
                        self.close(key, Error::PipelineClosed);
                    }
                }
                Command::CloseStreams => self.close_streams(),
                Command::Shutdown => {
                    self.shutting_down = true;
                    return;
                }
            }
        }
    }

    fn effective_deadline(
        &self,
        per_call: Option<Instant>,
        budget: Option<Duration>,
    ) -> Option<Instant> {
        let configured = budget.map(|t| self.now + t);
        match (configured, per_call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn start_call(&mut self, call: OutboundCall) {
        let OutboundCall {
            addr,
            lane,
            request,
            resolver,
            deadline,
            kind,
        } = call;
        let deadline = self.effective_deadline(deadline, self.shared.config.timeout);
        if deadline.is_some_and(|d| d <= self.now) {
            add(&self.shared.metrics.calls_failed[kind as usize], 1);
            resolver.fail(Error::Timeout);
            return;
        }
        let key = match self.take_pooled(addr, lane) {
            Some(key) => key,
            None => match self.dial(addr, |_| {
                Role::Pooled(Pooled {
                    pool_key: (addr, lane),
                    call: None,
                })
            }) {
                Ok(key) => key,
                Err(e) => {
                    add(&self.shared.metrics.calls_failed[kind as usize], 1);
                    resolver.fail(e);
                    return;
                }
            },
        };
        let request_id = self.next_request_id();
        let message = Message::Request(request);
        let conn = &mut self.conns[index_of(key)];
        if let Err(e) =
            self.shared
                .encoder
                .encode(&mut conn.send, request_id, lane, Flags::NONE, &message)
        {
            resolver.fail(Error::Encode(e));
            self.return_to_pool(key);
            return;
        }
        self.await_answer(
            key,
            PendingCall {
                request_id,
                resolver,
                kind,
                started: self.now,
                deadline,
            },
        );
        self.mark_dirty(key);
    }

    /// Park a sent call on its connection until its answer (or its deadline) comes.
    fn await_answer(&mut self, key: u64, call: PendingCall) {
        let (kind, deadline) = (call.kind, call.deadline);
        if let Some(slot) = self.conn(key).and_then(Conn::call_slot) {
            *slot = Some(call);
        }
        add(&self.shared.metrics.calls_sent[kind as usize], 1);
        if let Some(d) = deadline {
            self.arm(key, d);
        }
    }

    /// Make sure a deadline timer fires for `key` no later than `deadline`. One entry per
    /// connection: a later deadline than the armed one is picked up when that one fires.
    fn arm(&mut self, key: u64, deadline: Instant) {
        let Some(conn) = self.conn(key) else { return };
        if conn.armed.is_some_and(|armed| armed <= deadline) {
            return;
        }
        conn.armed = Some(deadline);
        self.timers.add(deadline, TimerKind::Deadline { conn: key });
    }

    fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn take_pooled(&mut self, addr: SocketAddr, lane: Lane) -> Option<u64> {
        let pool = self.pools.get_mut(&(addr, lane))?;
        while let Some(key) = pool.pop() {
            if matches!(self.conns.get(index_of(key)), Some(c) if c.key == key) {
                self.publish_gauges();
                return Some(key);
            }
        }
        None
    }

    /// Put an idle pooled connection back, or close it when the pool is full.
    fn return_to_pool(&mut self, key: u64) {
        let Some(conn) = self.conn(key) else { return };
        let Role::Pooled(p) = &conn.role else { return };
        let pool_key = p.pool_key;
        let pool = self.pools.entry(pool_key).or_default();
        if !self.shutting_down && pool.len() < self.shared.config.max_pool {
            pool.push(key);
            self.publish_gauges();
        } else {
            self.close(key, Error::Shutdown);
        }
    }

    /// Start a non-blocking connect. The connection gets its preamble queued at once.
    fn dial(&mut self, addr: SocketAddr, role: impl FnOnce(u64) -> Role) -> Result<u64, Error> {
        add(&self.shared.metrics.dials, 1);
        let unreachable = |e: io::Error| Error::Unreachable {
            addr: addr.to_string(),
            reason: Arc::new(e),
        };
        let stream = TcpStream::connect(addr).map_err(|e| {
            add(&self.shared.metrics.dial_failures, 1);
            unreachable(e)
        })?;
        let _ = stream.set_nodelay(true);
        let key = self
            .insert(Box::new(stream), addr, role, false)
            .map_err(unreachable)?;
        if let Some(t) = self.shared.config.timeout {
            self.timers
                .add(Instant::now() + t, TimerKind::Dial { conn: key });
        }
        Ok(key)
    }

    fn insert(
        &mut self,
        mut stream: Box<dyn Stream>,
        peer: SocketAddr,
        role: impl FnOnce(u64) -> Role,
        connected: bool,
    ) -> io::Result<u64> {
        let generation = self.next_generation;
        // Generation u32::MAX would let a key collide with the reserved tokens.
        self.next_generation = if generation >= u32::MAX - 1 {
            1
        } else {
            generation + 1
        };
        let entry = self.conns.vacant_entry();
        let key = key_of(entry.key(), generation);
        // Edge-triggered: registered once for both directions, never re-registered.
        self.poll.registry().register(
            &mut stream,
            Token(key as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let decoder = FrameDecoder::new().with_max_body_len(self.shared.config.max_frame_body);
        let mut conn = Conn::new(key, stream, peer, role(key), decoder, connected);
        self.shared.encoder.preamble(&mut conn.send);
        entry.insert(conn);
        Ok(key)
    }

    fn conn(&mut self, key: u64) -> Option<&mut Conn> {
        match self.conns.get_mut(index_of(key)) {
            Some(c) if c.key == key => Some(c),
            _ => None,
        }
    }

    fn mark_dirty(&mut self, key: u64) {
        if let Some(conn) = self.conn(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn start_snapshot(&mut self, s: OutboundSnapshot) {
        let OutboundSnapshot {
            id,
            addr,
            request,
            resolver,
            deadline,
            feed,
        } = s;
        let size = request.size.max(0) as u64;
        let budget = self.shared.config.snapshot_timeout(size);
        let deadline = self.effective_deadline(deadline, budget);
        let request_id = self.next_request_id();
        let kind = RpcKind::InstallSnapshot;
        let role_feed = feed.clone();
        let key = match self.dial(addr, |_| {
            Role::SnapshotOut(SnapshotOut {
                id,
                call: None,
                feed: role_feed,
                request_id,
                size,
                sent: 0,
                body_done: false,
                waiting_for_feed: false,
            })
        }) {
            Ok(key) => key,
            Err(e) => {
                feed.cancel();
                add(&self.shared.metrics.calls_failed[kind as usize], 1);
                resolver.fail(e);
                return;
            }
        };
        let message = Message::Request(Request::InstallSnapshot(request));
        let conn = &mut self.conns[index_of(key)];
        if let Err(e) = self.shared.encoder.encode(
            &mut conn.send,
            request_id,
            Lane::Snapshot,
            Flags::NONE,
            &message,
        ) {
            feed.cancel();
            resolver.fail(Error::Encode(e));
            self.close(key, Error::Shutdown);
            return;
        }
        self.await_answer(
            key,
            PendingCall {
                request_id,
                resolver,
                kind,
                started: self.now,
                deadline,
            },
        );
        self.snapshots.insert(id, key);
        self.pump_snapshot(key);
    }

    /// Move snapshot chunks from the pump into the connection's send queue while it has room.
    fn pump_snapshot(&mut self, key: u64) {
        let encoder = self.shared.encoder.clone();
        let Some(conn) = self.conn(key) else { return };
        let Role::SnapshotOut(s) = &mut conn.role else {
            return;
        };
        // Whatever we waited for, we are pulling now; `Next::Wait` below sets it again.
        s.waiting_for_feed = false;
        let mut failed = None;
        while !s.body_done && conn.send.len() < SNAPSHOT_SEND_HIGH_WATER {
            match s.feed.next() {
                Next::Chunk(chunk) => {
                    s.sent += chunk.len() as u64;
                    let last = s.sent >= s.size;
                    let flags = if last { Flags::END_STREAM } else { Flags::NONE };
                    let _ = encoder.encode(
                        &mut conn.send,
                        s.request_id,
                        Lane::Snapshot,
                        flags,
                        &Message::SnapshotChunk(chunk),
                    );
                    s.body_done = last;
                }
                Next::Done => {
                    // Only reached for a zero-size snapshot: the body is one empty last chunk.
                    let _ = encoder.encode(
                        &mut conn.send,
                        s.request_id,
                        Lane::Snapshot,
                        Flags::END_STREAM,
                        &Message::SnapshotChunk(Default::default()),
                    );
                    s.body_done = true;
                }
                Next::Wait => {
                    s.waiting_for_feed = true;
                    break;
                }
                Next::Failed(reason) => {
                    failed = Some(reason);
                    break;
                }
            }
        }
        if let Some(reason) = failed {
            self.close(key, Error::Snapshot(reason));
            return;
        }
        self.mark_dirty(key);
    }

    fn pipeline_send(&mut self, id: u64, seq: u64, request: Arc<AppendEntriesRequest>) {
        let Some(&key) = self.pipelines.get(&id) else {
            // Closed already; its futures were failed when it closed.
            return;
        };
        let request_id = self.next_request_id();
        let timeout = self.shared.config.timeout;
        let encoder = self.shared.encoder.clone();
        let now = self.now;
        let Some(conn) = self.conn(key) else { return };
        if let Err(e) =
            encoder.encode_append_entries(&mut conn.send, request_id, Lane::Pipeline, &request)
        {
            self.pipelines.remove(&id);
            self.close(key, Error::Encode(e));
            return;
        }
        let Role::Pipeline(p) = &mut conn.role else {
            return;
        };
        let deadline = timeout.map(|t| now + t);
        p.inflight.push_back(InFlight {
            request_id,
            seq,
            sent: now,
            deadline,
        });
        let kind = if request.is_heartbeat() {
            RpcKind::Heartbeat
        } else {
            RpcKind::AppendEntries
        };
        add(&self.shared.metrics.calls_sent[kind as usize], 1);
        if let Some(d) = deadline {
            self.arm(key, d);
        }
        self.mark_dirty(key);
    }

    fn close_streams(&mut self) {
        let pooled: Vec<u64> = self.pools.values_mut().flat_map(std::mem::take).collect();
        for key in pooled {
            self.close(key, Error::Shutdown);
        }
        let inbound: Vec<(u64, bool)> = self
            .conns
            .iter()
            .filter_map(|(_, c)| match &c.role {
                Role::Inbound(i) => Some((c.key, i.unanswered == 0 && i.snapshots.is_empty())),
                _ => None,
            })
            .collect();
        for (key, idle) in inbound {
            if let Some(c) = self.conn(key) {
                c.close_when_idle = true;
                if idle {
                    c.close_after_flush = true;
                    self.mark_dirty(key);
                }
            }
        }
    }

    // ---- answers from the Raft side ---------------------------------------------------------

    fn drain_completions(&mut self) {
        for _ in 0..MAX_COMPLETIONS_PER_TURN {
            let Some(completion) = self.shared.handoff.completions.pop() else {
                return;
            };
            match completion {
                Completion::Response {
                    conn,
                    request_id,
                    lane,
                    result,
                    taken_at,
                } => self.send_response(conn, request_id, lane, result, taken_at),
                Completion::ResumeRead { conn } => {
                    if let Some(c) = self.conn(conn) {
                        c.read_paused = false;
                        if !c.read_again {
                            c.read_again = true;
                            self.read_again.push(conn);
                        }
                    }
                }
            }
        }
    }

    fn send_response(
        &mut self,
        key: u64,
        request_id: u64,
        lane: Lane,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
    ) {
        let encoder = self.shared.encoder.clone();
        let metrics = self.shared.metrics.clone();
        let Some(conn) = self.conn(key) else {
            // The connection closed while the Raft side worked on the request.
            return;
        };
        let message = match result {
            Ok(response) => {
                if let Some(t) = taken_at {
                    metrics.rpc_respond[RpcKind::of_response(&response) as usize]
                        .record(t.elapsed());
                }
                Message::Response(response)
            }
            Err(text) => Message::Error(text),
        };
        if let Err(e) = encoder.encode(&mut conn.send, request_id, lane, Flags::NONE, &message) {
            // A response too large for the peer: answer with the reason instead.
            let text = Message::Error(format!("raftnet: response could not be encoded: {e}"));
            let _ = encoder.encode(&mut conn.send, request_id, lane, Flags::NONE, &text);
        }
        if let Role::Inbound(i) = &mut conn.role {
            i.unanswered = i.unanswered.saturating_sub(1);
            if conn.close_when_idle && i.unanswered == 0 && i.snapshots.is_empty() {
                // Write the answer first; `flush_dirty` closes it once the queue is empty.
                conn.close_after_flush = true;
            }
        }
        self.mark_dirty(key);
    }

    // ---- timers -----------------------------------------------------------------------------

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                TimerKind::Deadline { conn } => {
                    let Some(c) = self.conn(conn) else { continue };
                    if c.armed != Some(at) {
                        continue; // superseded by an earlier entry for this connection
                    }
                    c.armed = None;
                    match c.earliest_deadline() {
                        // A late answer must never reach a later call: the connection goes.
                        Some(d) if d <= now => self.close(conn, Error::Timeout),
                        Some(d) => self.arm(conn, d),
                        None => {}
                    }
                }
                TimerKind::Dial { conn } => {
                    if self.conn(conn).is_some_and(|c| !c.connected) {
                        let addr = self
                            .conn(conn)
                            .map(|c| c.peer.to_string())
                            .unwrap_or_default();
                        add(&self.shared.metrics.dial_failures, 1);
                        self.close(
                            conn,
                            Error::Unreachable {
                                addr,
                                reason: Arc::new(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "dial timed out",
                                )),
                            },
                        );
                    }
                }
                TimerKind::AcceptResume => {
                    if let Some(l) = &mut self.listener
                        && let Err(e) =
                            self.poll
                                .registry()
                                .register(l, LISTENER, Interest::READABLE)
                    {
                        log::error!("raftnet: cannot resume accepting: {e}");
                    }
                    // Connections may be waiting with no new edge to announce them.
                    self.accept();
                }
            }
        }
    }

    // ---- sockets ----------------------------------------------------------------------------

    fn accept(&mut self) {
        // Set until the queue is seen empty (WouldBlock) or accepting backs off.
        self.accept_again = true;
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                self.accept_again = false;
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_delay = None;
                    let _ = stream.set_nodelay(true);
                    add(&self.shared.metrics.accepted, 1);
                    match self.insert(
                        Box::new(stream),
                        peer,
                        |_| {
                            Role::Inbound(Inbound {
                                unanswered: 0,
                                snapshots: HashMap::new(),
                            })
                        },
                        true,
                    ) {
                        Ok(key) => self.mark_dirty(key),
                        Err(e) => {
                            log::warn!("raftnet: cannot register connection from {peer}: {e}")
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_again = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.accept_again = false;
                    // Out of descriptors and the like: retrying at once would spin. Back off as
                    // hashicorp does (5 ms doubling to 1 s), not listening meanwhile.
                    let delay = accept_backoff(self.accept_delay);
                    self.accept_delay = Some(delay);
                    log::error!("raftnet: failed to accept connection: {e}; retrying in {delay:?}");
                    if let Some(l) = &mut self.listener {
                        let _ = self.poll.registry().deregister(l);
                    }
                    self.timers
                        .add(Instant::now() + delay, TimerKind::AcceptResume);
                    return;
                }
            }
        }
    }

    fn conn_event(&mut self, key: u64, event: &mio::event::Event) {
        let metrics = self.shared.metrics.clone();
        let Some(conn) = self.conn(key) else { return };
        if !conn.connected {
            if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                return;
            }
            let error = match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match conn.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still connecting
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = error {
                let addr = conn.peer.to_string();
                add(&metrics.dial_failures, 1);
                self.close(
                    key,
                    Error::Unreachable {
                        addr,
                        reason: Arc::new(e),
                    },
                );
                return;
            }
            conn.connected = true;
            self.mark_dirty(key);
        }
        let peer_done = event.is_read_closed() || event.is_error();
        if peer_done && let Some(c) = self.conn(key) {
            c.peer_done = true;
        }
        if event.is_readable() || peer_done {
            self.read(key);
        }
        if event.is_writable() {
            self.mark_dirty(key);
        }
    }

    fn continue_reads(&mut self) {
        let keys = std::mem::take(&mut self.read_again);
        for key in keys {
            if let Some(c) = self.conn(key) {
                c.read_again = false;
                self.read(key);
            }
        }
    }

    fn read(&mut self, key: u64) {
        let metrics = self.shared.metrics.clone();
        let Some(conn) = self.conn(key) else { return };
        if conn.read_paused || !conn.connected {
            return;
        }
        let outcome = conn.fill(READ_BUDGET, conn.peer_done, &metrics);
        let mut frames = std::mem::take(&mut self.frames);
        let conn = &mut self.conns[index_of(key)];
        let decoded = loop {
            match conn.decoder.decode_raw(&mut conn.read_buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        for frame in frames.drain(..) {
            self.handle_frame(key, frame);
        }
        self.frames = frames;
        if let Err(e) = decoded {
            self.protocol_error(key, e);
            return;
        }
        match outcome {
            ReadOutcome::Drained => {}
            ReadOutcome::Budget => {
                if let Some(c) = self.conn(key)
                    && !c.read_again
                {
                    c.read_again = true;
                    self.read_again.push(key);
                }
            }
            ReadOutcome::Eof => self.peer_closed(key),
            ReadOutcome::Error(e) => self.close(key, Error::io(e)),
        }
    }

    fn protocol_error(&mut self, key: u64, e: WireError) {
        add(&self.shared.metrics.protocol_errors, 1);
        if let Some(c) = self.conn(key) {
            log::warn!("raftnet: closing connection with {}: {e}", c.peer);
        }
        self.close(key, Error::Protocol(e));
    }

    fn peer_closed(&mut self, key: u64) {
        let Some(conn) = self.conn(key) else { return };
        match conn.decoder.finish(&conn.read_buf) {
            Err(e) => self.protocol_error(key, e),
            Ok(()) => self.close(key, Error::connection_lost()),
        }
    }

    fn flush_dirty(&mut self) {
        let metrics = self.shared.metrics.clone();
        let keys = std::mem::take(&mut self.dirty);
        for key in keys {
            let Some(conn) = self.conn(key) else { continue };
            conn.dirty = false;
            if !conn.connected {
                continue;
            }
            match conn.flush(WRITE_BUDGET, &metrics) {
                Ok(Flushed::All) if conn.close_after_flush => {
                    self.close(key, Error::Shutdown);
                    continue;
                }
                Ok(Flushed::Budget) => {
                    self.mark_dirty(key);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    self.close(key, Error::io(e));
                    continue;
                }
            }
            // A snapshot sender refills its queue as it drains (written next turn).
            let refill = matches!(&conn.role, Role::SnapshotOut(s) if !s.body_done && !s.waiting_for_feed)
                && conn.send.len() < SNAPSHOT_SEND_HIGH_WATER;
            if refill {
                self.pump_snapshot(key);
            }
        }
    }

    // ---- frames -----------------------------------------------------------------------------

    fn handle_frame(&mut self, key: u64, frame: RawFrame) {
        let Some(conn) = self.conn(key) else { return };
        match &conn.role {
            Role::Inbound(_) => self.inbound_frame(key, frame),
            Role::Pooled(_) | Role::SnapshotOut(_) => self.call_answer(key, frame),
            Role::Pipeline(_) => self.pipeline_answer(key, frame),
        }
    }

    fn inbound_frame(&mut self, key: u64, frame: RawFrame) {
        let kind = frame.header.kind;
        let request_id = frame.header.request_id;
        if kind == MessageType::SnapshotChunk {
            self.snapshot_chunk(key, request_id, frame);
            return;
        }
        if kind as u8 & 0x80 != 0 {
            self.protocol_error(
                key,
                WireError::WrongType {
                    field: "frame type",
                    expected: "a request on an inbound connection",
                    found: kind as u8,
                },
            );
            return;
        }
        let started = Instant::now();
        let message = match body_decode(kind, &frame.body) {
            Ok(m) => m,
            Err(e) => {
                self.protocol_error(key, e);
                return;
            }
        };
        let Message::Request(request) = message else {
            return;
        };
        let rpc_kind = RpcKind::of(&request);
        let metrics = &self.shared.metrics;
        let decoded_at = Instant::now();
        metrics.rpc_decode[rpc_kind as usize].record(decoded_at - started);
        add(&metrics.rpcs_received[rpc_kind as usize], 1);
        let lane = frame.header.lane;
        let responder = Responder::to_sink(self.shared.sink.clone(), key, request_id, lane, kind);
        let conn = &mut self.conns[index_of(key)];
        let peer = Some(conn.peer);
        let Role::Inbound(inbound) = &mut conn.role else {
            return;
        };
        inbound.unanswered += 1;
        let snapshot = match &request {
            Request::InstallSnapshot(r) => {
                let size = r.size.max(0) as u64;
                let handoff = self.shared.handoff.clone();
                let stream = SnapshotStream::new(self.shared.config.snapshot_buffer, move || {
                    handoff.complete(Completion::ResumeRead { conn: key })
                });
                inbound.snapshots.insert(
                    request_id,
                    SnapshotIn {
                        stream: stream.clone(),
                        size,
                        received: 0,
                    },
                );
                Some(SnapshotReader::from_stream(stream, size))
            }
            _ => None,
        };
        let rpc = Rpc::new(request, snapshot, responder, peer, decoded_at);
        if rpc_kind == RpcKind::Heartbeat {
            let handler = self.shared.heartbeat_handler();
            if let Some(handler) = handler {
                add(&self.shared.metrics.heartbeats_fast_path, 1);
                let started = Instant::now();
                // A panicking handler must not take the reactor (and every connection) with it.
                // The unanswered RPC is dropped during unwinding, which answers it with an error.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(rpc)));
                if outcome.is_err() {
                    log::error!("raftnet: the heartbeat handler panicked");
                }
                self.shared.metrics.rpc_enqueue[rpc_kind as usize].record(started.elapsed());
                return;
            }
        }
        self.shared.consumer.shared().push(rpc);
    }

    fn snapshot_chunk(&mut self, key: u64, request_id: u64, frame: RawFrame) {
        let conn = &mut self.conns[index_of(key)];
        let Role::Inbound(inbound) = &mut conn.role else {
            return;
        };
        let Some(snap) = inbound.snapshots.get_mut(&request_id) else {
            self.protocol_error(
                key,
                WireError::WrongType {
                    field: "snapshot chunk",
                    expected: "a chunk of a snapshot in progress",
                    found: MessageType::SnapshotChunk as u8,
                },
            );
            return;
        };
        let len = frame.body.len() as u64;
        if snap.received + len > snap.size {
            let (size, received) = (snap.size, snap.received);
            snap.stream
                .finish(Err(format!("the sender sent more than {size} bytes")));
            inbound.snapshots.remove(&request_id);
            log::warn!(
                "raftnet: snapshot from {} overran its size ({received} + {len} > {size})",
                conn.peer
            );
            self.protocol_error(
                key,
                WireError::OutOfRange {
                    field: "snapshot body length",
                },
            );
            return;
        }
        snap.received += len;
        if snap.stream.push(frame.body) == Flow::Pause {
            conn.read_paused = true;
        }
        if frame.header.flags.contains(Flags::END_STREAM) {
            let snap = inbound.snapshots.remove(&request_id).expect("present");
            if snap.received == snap.size {
                snap.stream.finish(Ok(()));
            } else {
                snap.stream.finish(Err(format!(
                    "the sender ended the body after {} of {} bytes",
                    snap.received, snap.size
                )));
            }
        }
    }

    /// A response (or error) on a pooled or snapshot connection.
    fn call_answer(&mut self, key: u64, frame: RawFrame) {
        let result = match decode_answer(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.protocol_error(key, e);
                return;
            }
        };
        let metrics = self.shared.metrics.clone();
        let conn = &mut self.conns[index_of(key)];
        let (call, is_pooled) = match &mut conn.role {
            Role::Pooled(p) => (
                p.call.take_if(|c| c.request_id == frame.header.request_id),
                true,
            ),
            Role::SnapshotOut(s) => (
                s.call.take_if(|c| c.request_id == frame.header.request_id),
                false,
            ),
            _ => return,
        };
        let Some(call) = call else {
            // An answer nobody waits for (its call timed out): discard it.
            log::debug!("raftnet: discarding a late answer from {}", conn.peer);
            return;
        };
        metrics.call_latency[call.kind as usize].record(call.started.elapsed());
        if result.is_err() {
            add(&metrics.calls_failed[call.kind as usize], 1);
        }
        // Pool (or close) the connection before the caller learns the result, so a caller that
        // looks at the pool right after its call sees it there.
        if is_pooled {
            self.return_to_pool(key);
        } else {
            // hashicorp: a snapshot connection is never reused.
            self.close(key, Error::Shutdown);
        }
        let woken = call.resolver.resolve(result);
        add(&self.shared.metrics.caller_wakes, woken as u64);
    }

    fn pipeline_answer(&mut self, key: u64, frame: RawFrame) {
        let result = match decode_answer(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.protocol_error(key, e);
                return;
            }
        };
        let metrics = self.shared.metrics.clone();
        let conn = &mut self.conns[index_of(key)];
        let Role::Pipeline(p) = &mut conn.role else {
            return;
        };
        let id = frame.header.request_id;
        // Answers come in send order from raftnet peers that answer in order; search otherwise.
        let position = if p.inflight.front().is_some_and(|f| f.request_id == id) {
            Some(0)
        } else {
            p.inflight.iter().position(|f| f.request_id == id)
        };
        let Some(position) = position else {
            log::debug!(
                "raftnet: discarding an unknown pipeline answer from {}",
                conn.peer
            );
            return;
        };
        let Some(done) = p.inflight.remove(position) else {
            return;
        };
        let (seq, sent) = (done.seq, done.sent);
        metrics.call_latency[RpcKind::AppendEntries as usize].record(sent.elapsed());
        let result = match result {
            Ok(Response::AppendEntries(r)) => Ok(r),
            Ok(other) => Err(Error::Protocol(WireError::WrongType {
                field: "pipeline response",
                expected: "an AppendEntries response",
                found: other.message_type() as u8,
            })),
            Err(e) => Err(e),
        };
        let woken = p.shared.complete(seq, result);
        add(&metrics.caller_wakes, woken as u64);
    }

    // ---- closing ----------------------------------------------------------------------------

    /// Close a connection and fail whatever was waiting on it with `error`.
    fn close(&mut self, key: u64, error: Error) {
        if self.conn(key).is_none() {
            return;
        }
        let mut conn = self.conns.remove(index_of(key));
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let connected = conn.connected;
        let peer = conn.peer;
        match conn.role {
            Role::Inbound(inbound) => {
                for (_, snap) in inbound.snapshots {
                    snap.stream.finish(Err(format!("connection lost: {error}")));
                }
            }
            Role::Pooled(p) => {
                if let Some(pool) = self.pools.get_mut(&p.pool_key) {
                    pool.retain(|k| *k != key);
                }
                self.publish_gauges();
                if let Some(call) = p.call {
                    add(&self.shared.metrics.calls_failed[call.kind as usize], 1);
                    call.resolver.fail(call_error(error, connected, peer));
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
                    call.resolver.fail(call_error(error, connected, peer));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        self.shared
            .handoff
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let keys: Vec<u64> = self.conns.iter().map(|(_, c)| c.key).collect();
        for key in keys {
            self.close(key, Error::Shutdown);
        }
        self.shared.handoff.fail_pending_commands();
        self.shared.consumer.shared().close();
        self.publish_gauges();
    }

    /// Publish gauges the API reads (once per turn; a handful of pools).
    fn publish_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let idle: usize = self.pools.values().map(Vec::len).sum();
        self.shared.gauges.idle_pooled.store(idle, Relaxed);
        self.shared
            .gauges
            .open_connections
            .store(self.conns.len(), Relaxed);
        self.shared.gauges.timers.store(self.timers.len(), Relaxed);
    }
}

/// Marks the transport closed when the reactor thread ends, so submissions fail at once and the
/// consumer reports the shutdown, whatever ended the loop.
struct ClosedOnExit(Arc<Shared>);

impl Drop for ClosedOnExit {
    fn drop(&mut self) {
        self.0
            .handoff
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.handoff.fail_pending_commands();
        self.0.consumer.shared().close();
    }
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

fn body_decode(kind: MessageType, body: &bytes::Bytes) -> Result<Message, WireError> {
    decode_body(kind, body)
}

/// An answer frame: a response, or the remote's error text.
fn decode_answer(frame: &RawFrame) -> Result<Result<Response, Error>, WireError> {
    match decode_body(frame.header.kind, &frame.body)? {
        Message::Response(r) => Ok(Ok(r)),
        Message::Error(text) => Ok(Err(Error::Remote(text))),
        Message::Request(_) | Message::SnapshotChunk(_) => Err(WireError::WrongType {
            field: "frame type",
            expected: "a response on an outbound connection",
            found: frame.header.kind as u8,
        }),
    }
}
