//! The io_uring driver ([`Backend::Uring`](super::Backend), feature `uring`, Linux): the same
//! [`Engine`] and handoff as the mio driver, on a thread of its own, with every socket operation
//! a submission to one ring and every result a completion.
//!
//! This module is the only code that uses io_uring: the ring's making and the probe in
//! `setup.rs`, the user_data token in `token.rs`, the wait (submit, spin, sleep) in `wait.rs`,
//! accepting in `accept.rs`, a connection's socket and the memory it lends the kernel in
//! `conn.rs`, sending in `send.rs`, multishot receives into the driver's provided buffer ring
//! in `multishot.rs` and `buf_ring.rs`, TLS sessions in `tls.rs`
//! (feature `tls`: what a receive brings is ciphertext, opened into the engine's buffer; a send
//! carries the engine's bytes sealed into records; the session is the epoll driver's,
//! `driver/tls/`), and the loop here. What it owns:
//! - **Operations.** A poll of the listener (then `accept(2)` until it would block, as the mio
//!   driver accepts: the ring's own accept takes a descriptor before it looks for a connection,
//!   so with descriptors exhausted it fails with no connection pending, and back-off would
//!   start on every idle listener), connect, receive (one armed per connection while the engine
//!   wants reads: one multishot into the buffer ring where the kernel consumes it
//!   incrementally, Linux 6.12; otherwise single-shot into the connection's own buffer;
//!   `RAFTNET_URING_RECV` picks either) and vectored send
//!   (`SENDMSG`, one in flight per connection), and cancel for a connection that closes with
//!   operations in flight. All the submissions a turn makes go to the kernel together, in the
//!   `io_uring_enter` that also waits.
//! - **The waker.** An eventfd, with a read of it kept armed in the ring: a producer's
//!   `write(2)` completes that read, which wakes an `io_uring_enter` waiting for completions.
//!   (Simpler than `IORING_OP_MSG_RING`, which needs a ring of the producer's own.)
//! - **user_data.** Each submission carries its operation and its connection's [`ConnKey`]
//!   (slot index and generation, [`Token`]). A completion is acted on only if the slot still
//!   holds that very key; one for a connection that closed (or whose slot a newer connection
//!   took) is rejected, counted, and only releases the memory the operation used.
//! - **Memory the kernel writes or reads.** Receive buffers, the send's iovec array and message
//!   header, a dial's address: each lives in a `Box` of its connection until the operation's
//!   completion, and moves to a retired list when the connection closes first, so the kernel
//!   never touches freed memory. Bytes in flight are taken out of the engine's send queue as
//!   `Bytes` (reference counts, no copy), so the engine may append to its queue meanwhile.
//! - **Closing.** A closed connection's in-flight operations are cancelled; its socket is closed
//!   only after the turn's submissions reached the kernel, so a descriptor number reused by a
//!   socket opened later in the turn is never the target of a submission meant for the old one.
//!
//! Bounds are the mio driver's: one single-shot receive per connection per turn of at most
//! [`MAX_RECV`] bytes (multishot: what the ring's buffers hold per dispatch, for all of them),
//! at most [`WRITE_BUDGET`] bytes per send, and a connection whose reading the engine paused
//! has no receive armed (what already arrived is held until it resumes).
//!
//! On a tokio runtime (`bind_on` with [`Backend::Uring`](super::Backend) named) this driver
//! runs the same way, on a thread of its own beside the runtime.
//!
//! Zero-copy sends (`SEND_ZC`, `SENDMSG_ZC`) from a configured size, off by default, are in
//! `zero_copy.rs`: their buffers are held by the driver, not the connection, until the kernel's
//! notification, which may come after the connection closed.
//!
//! Not yet here (issue 12's later steps): multishot accept, receives handing the engine slices
//! of ring buffers instead of copies. Tried and not kept (BENCHMARKS.md): SQPOLL,
//! registered file descriptors.

mod accept;
mod buf_ring;
mod conn;
mod multishot;
mod send;
mod setup;
#[cfg(feature = "tls")]
mod tls;
mod token;
mod wait;
mod zero_copy;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use socket2::{SockAddr, Socket};

use self::buf_ring::BufRing;
use self::conn::{Entry, RecvState, Retired, SendState, entry};
use self::setup::enable_on_this_thread;
pub(crate) use self::setup::{TaskRun, prepare, unavailable};
use self::token::{MAX_INDEX, Op, Token};
use self::zero_copy::ZeroCopy;
use super::spin::SpinBudget;
use crate::engine::{Action, ClosedOnExit, ConnKey, Engine};
use crate::metrics::add;

/// Submission queue entries (the completion queue gets [`CQ_ENTRIES`]). A full queue is
/// submitted and reused at once, so this bounds a batch, not the operations in flight.
pub(super) const SQ_ENTRIES: u32 = 256;
/// Completion queue entries: room for a receive and a send of a thousand connections finishing
/// in one turn (beyond that the kernel holds them back, `IORING_FEAT_NODROP`).
pub(super) const CQ_ENTRIES: u32 = 4096;
/// Receives start this small so a quiet connection holds little, and double while they fill.
const MIN_RECV: usize = 4 * 1024;
/// The largest receive: one per connection per turn, so this is also the read budget.
const MAX_RECV: usize = 256 * 1024;
/// Bytes taken into one send (the mio driver's write budget per connection per turn).
const WRITE_BUDGET: usize = 256 * 1024;
/// How long the end of the run waits for cancelled operations to complete before it frees the
/// ring (closing the ring cancels them anyway; waiting keeps their memory alive until then).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

pub(crate) struct UringDriver {
    // The ring first: fields drop in order, and closing the ring ends the kernel's use of the
    // memory below (the run also drains what it cancelled before it gets here).
    ring: IoUring,
    /// How the ring runs completions' task work (the thread enables a `Deferred` ring first).
    taskrun: TaskRun,
    engine: Engine,
    listener: Option<std::net::TcpListener>,
    /// A poll for the listener's readiness is armed.
    listen_armed: bool,
    accept_paused: bool,
    wake_fd: Arc<OwnedFd>,
    /// The eventfd read's buffer (the kernel writes the counter here).
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// Sockets by slab index (the engine's key index).
    table: Vec<Option<Entry>>,
    retired: Vec<Retired>,
    /// Sockets closed this turn, closed for real once the turn's submissions are in.
    closing: Vec<Socket>,
    /// Submissions made and not yet completed (the run drains them before freeing anything).
    in_flight: usize,
    /// Completions rejected because their connection had closed (tests read it).
    stale_completions: u64,
    /// The provided buffer ring multishot receives fill (`multishot.rs`); `None`: single-shot
    /// receives, each into its connection's own buffer.
    bufs: Option<BufRing>,
    /// Zero-copy sends' buffers, held until the kernel is done with them; `None` where sends
    /// copy (the default).
    zero_copy: Option<ZeroCopy>,
    /// Connections whose multishot `ENOBUFS` ended, armed again after the dispatch.
    starved: Vec<ConnKey>,
    /// A test's buffer ring and counters (`tests.rs`).
    #[cfg(test)]
    test_ring: Option<tests::TestRing>,
    read_again: Vec<ConnKey>,
    dirty: Vec<ConnKey>,
    /// A dispatch's completions: token, result, flags.
    completions: Vec<(Token, i32, u32)>,
    now: Instant,
    /// How long [`wait`](UringDriver::wait) looks for completions before sleeping, from how
    /// soon what the thread waits for has been coming (as the mio driver's thread).
    spin: SpinBudget,
    /// Looking for completions between two yields of the CPU while spinning (`wait.rs`).
    yield_every: Duration,
    /// When the wait in progress began: the first completion that brings something from
    /// outside (a receive, an accept, a wake-up) tells `spin` how long it took; the thread's
    /// own sends complete at once and would teach it nothing.
    waiting_since: Option<Instant>,
    /// The transport's TLS configuration (its live slot, which `reload_tls` swaps), if it has
    /// one: every connection is then a TLS session.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl UringDriver {
    pub(crate) fn new(
        ring: IoUring,
        taskrun: TaskRun,
        wake_fd: Arc<OwnedFd>,
        listener: std::net::TcpListener,
        engine: Engine,
    ) -> io::Result<UringDriver> {
        // Accepted after the ring's poll says a connection waits, until `WouldBlock`.
        listener.set_nonblocking(true)?;
        #[cfg(feature = "tls")]
        let tls = engine.shared().config.tls.clone();
        #[cfg(test)]
        let test_ring = tests::TestRing::take();
        #[cfg(test)]
        let bufs = multishot::buf_ring_for(&ring, test_ring.as_ref());
        #[cfg(not(test))]
        let bufs = multishot::buf_ring_for(&ring);
        let zero_copy = ZeroCopy::new(engine.shared().config.zero_copy_send, &ring);
        Ok(UringDriver {
            ring,
            taskrun,
            engine,
            listener: Some(listener),
            listen_armed: false,
            accept_paused: false,
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            table: Vec::new(),
            retired: Vec::new(),
            closing: Vec::new(),
            in_flight: 0,
            stale_completions: 0,
            bufs,
            zero_copy,
            starved: Vec::new(),
            #[cfg(test)]
            test_ring,
            read_again: Vec::new(),
            dirty: Vec::new(),
            completions: Vec::new(),
            now: Instant::now(),
            spin: SpinBudget::default(),
            yield_every: wait::yield_every(),
            waiting_since: None,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    // ---- the loop ---------------------------------------------------------------------------

    /// Run on the calling thread until the transport shuts down.
    pub(crate) fn run(mut self) {
        // However the loop ends (even by a panic), callers must not be left waiting.
        let _closed = ClosedOnExit(self.engine.shared().clone());
        if let Err(e) = enable_on_this_thread(&self.ring, self.taskrun) {
            tracing::error!("cannot enable the io_uring on the driver's thread: {e}");
            return;
        }
        self.arm_wake();
        self.arm_accepts();
        while self.turn() {
            if let Err(e) = self.wait() {
                tracing::error!("io_uring_enter failed, stopping the transport: {e}");
                break;
            }
            self.dispatch();
        }
        self.shutdown();
    }

    /// One turn's work that needs no waiting. `false` once the transport is shutting down.
    fn turn(&mut self) -> bool {
        add(&self.engine.metrics().reactor_turns, 1);
        let now = self.now;
        if !self.engine.handle_handoff(now) {
            return false;
        }
        self.engine.handle_timeout(now);
        self.apply_actions();
        self.continue_reads();
        self.flush_dirty();
        self.engine.publish_gauges();
        true
    }

    fn has_queued_work(&self) -> bool {
        !self.read_again.is_empty() || self.engine.has_queued_work()
    }

    /// Queue a submission, handing the queue to the kernel first if it is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry pushed here points only at memory that stays alive and
            // unmoved until its completion: boxes owned by a connection or by the retired list
            // (released only after the completion), the driver's own `wake_buf`, which the
            // run keeps until it drained every operation, or a zero-copy send's pieces, which
            // `zero_copy` holds until its notification, its last completion.
            #[allow(unsafe_code)]
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return;
            }
            add(&self.engine.metrics().system_calls, 1);
            if let Err(e) = self.ring.submitter().submit() {
                // Nothing can be queued: the ring is broken. Dropping the entry is safe (the
                // kernel never saw it); what waits for it fails when the transport closes.
                tracing::error!("cannot submit to io_uring: {e}");
                return;
            }
        }
    }

    /// Take every completion and act on it.
    fn dispatch(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(
            self.ring
                .completion()
                .map(|c| (Token(c.user_data()), c.result(), c.flags())),
        );
        // A multishot's completions but its last leave it in flight.
        let ended = completions.iter().filter(|c| !cqueue::more(c.2)).count();
        self.in_flight -= ended.min(self.in_flight);
        for &(token, result, flags) in &completions {
            self.complete(token, result, flags);
        }
        if !self.starved.is_empty() {
            self.rearm_starved();
        }
        self.waiting_since = None;
        completions.clear();
        self.completions = completions;
    }

    fn complete(&mut self, token: Token, result: i32, flags: u32) {
        let Some(op) = token.op() else {
            return;
        };
        if matches!(op, Op::Recv | Op::Accept | Op::Wake)
            && let Some(since) = self.waiting_since.take()
        {
            self.spin.record(self.now.saturating_duration_since(since));
        }
        match op {
            Op::Wake => {
                self.wake_armed = false;
                if self.listener.is_some() {
                    self.arm_wake();
                }
            }
            Op::Accept => self.accept(result),
            // A multishot receive's cancel that found it between two runs (`multishot.rs`).
            Op::Cancel if result == -libc::ENOENT => self.cancel_if_paused(token.key(), true),
            Op::Cancel => {}
            Op::SendZc => self.zero_copy_completed(token.slot_index(), result, flags),
            Op::Connect | Op::Recv | Op::Send => {
                let key = token.key();
                if self.entry(key).is_none() {
                    self.reject_buffer(result, flags);
                    self.reject(key, !cqueue::more(flags));
                    return;
                }
                in_conn_span!(self.engine, key, {
                    match op {
                        Op::Connect => self.connected(key, result),
                        Op::Recv if self.bufs.is_some() => self.received_multi(key, result, flags),
                        Op::Recv => self.received(key, result),
                        _ => self.sent(key, result),
                    }
                    self.apply_actions();
                });
            }
        }
    }

    /// A completion for `key`, which is no longer open: it only releases memory (once the
    /// operation `ended`: a multishot's earlier completions release only their buffer).
    fn reject(&mut self, key: ConnKey, ended: bool) {
        self.stale_completions += 1;
        if !ended {
            return;
        }
        if let Some(i) = self.retired.iter().position(|r| r.key == key) {
            self.retired[i].pending -= 1;
            if self.retired[i].pending == 0 {
                self.retired.swap_remove(i);
            }
        }
    }

    /// Close every connection, stop accepting, and wait for the kernel to finish with every
    /// operation before the memory they use is freed.
    fn shutdown(&mut self) {
        self.engine.shutdown();
        self.apply_actions();
        if self.listener.take().is_some() && self.listen_armed {
            // The armed poll holds the listening socket open until it is cancelled.
            self.push(
                opcode::AsyncCancel::new(Token::new(Op::Accept, None).0)
                    .build()
                    .user_data(Token::new(Op::Cancel, None).0),
            );
        }
        if self.wake_armed {
            self.push(
                opcode::AsyncCancel::new(Token::new(Op::Wake, None).0)
                    .build()
                    .user_data(Token::new(Op::Cancel, None).0),
            );
        }
        let started = Instant::now();
        while self.in_flight > 0 && started.elapsed() < DRAIN_LIMIT {
            if self.submit(true, Some(Duration::from_millis(100))).is_err() {
                break;
            }
            self.dispatch();
        }
        self.closing.clear();
        self.release_buf_ring();
    }

    // ---- the engine's actions ---------------------------------------------------------------

    fn apply_actions(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Dial { key, addr } => self.dial(key, addr),
                Action::Close { key } => self.remove(key),
                Action::ResumeRead { key } => self.read_later(key),
                Action::PauseAccept => self.accept_paused = true,
                Action::ResumeAccept => {
                    self.accept_paused = false;
                    self.arm_accepts();
                }
            }
        }
    }

    fn dial(&mut self, key: ConnKey, addr: SocketAddr) {
        if key.index() > MAX_INDEX {
            let e = io::Error::other("more connections than the io_uring driver can name");
            return self.engine.handle_connect_failed(key, e);
        }
        let socket = match Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        ) {
            Ok(s) => s,
            Err(e) => return self.engine.handle_connect_failed(key, e),
        };
        // Raft's messages are latency-bound; the engine batches writes itself.
        let _ = socket.set_tcp_nodelay(true);
        #[cfg(feature = "tls")]
        let session = match &self.tls {
            Some(tls) => {
                match crate::driver::tls::Session::dial(tls, addr, self.engine.dial_server(key)) {
                    Ok(mut session) => {
                        session.peer = Some(addr);
                        Some(Box::new(session))
                    }
                    Err(e) => return self.engine.handle_connect_failed(key, e),
                }
            }
            None => None,
        };
        let addr = Box::new(SockAddr::from(addr));
        let connect = opcode::Connect::new(
            types::Fd(socket.as_raw_fd()),
            addr.as_ptr().cast::<libc::sockaddr>(),
            addr.len(),
        )
        .build()
        .user_data(Token::new(Op::Connect, Some(key)).0);
        self.insert(key, socket, Some(addr));
        #[cfg(feature = "tls")]
        if let Some(entry) = self.entry(key) {
            entry.tls = session;
        }
        self.push(connect);
    }

    /// Keep `socket` as `key`'s.
    fn insert(&mut self, key: ConnKey, socket: Socket, connecting: Option<Box<SockAddr>>) {
        let index = key.index();
        if self.table.len() <= index {
            self.table.resize_with(index + 1, || None);
        }
        // The engine reuses a slot only after closing its connection, and that `Close` is
        // carried out before this insert (actions run in order), so the slot is empty.
        if let Some(stale) = self.table[index].take() {
            debug_assert!(false, "slot {index} still held {:?}", stale.key);
            self.retire(stale);
        }
        self.table[index] = Some(Entry {
            key,
            socket,
            connecting,
            recv: Box::new(RecvState {
                buf: BytesMut::new(),
                size: MIN_RECV,
                armed: false,
                held: false,
                end: None,
                cancelling: false,
                starved: false,
            }),
            send: SendState::new(),
            read_again: false,
            #[cfg(feature = "tls")]
            tls: None,
        });
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(slot) = self.table.get_mut(key.index())
            && slot.as_ref().is_some_and(|e| e.key == key)
            && let Some(entry) = slot.take()
        {
            self.retire(entry);
        }
    }

    /// Close `entry`'s socket (after this turn's submit) and cancel its operations, keeping
    /// their memory until they complete.
    fn retire(&mut self, entry: Entry) {
        #[cfg(feature = "tls")]
        let entry = self::tls::end_session(entry);
        let pending = entry.in_flight();
        let key = entry.key;
        let send = match entry.send.zero_copy {
            Some(slot) => Token::slot(Op::SendZc, slot),
            None => Token::new(Op::Send, Some(key)),
        };
        for (armed, token) in [
            (
                entry.connecting.is_some(),
                Token::new(Op::Connect, Some(key)),
            ),
            (entry.recv.armed, Token::new(Op::Recv, Some(key))),
            (entry.send.in_flight, send),
        ] {
            if armed {
                self.push(
                    opcode::AsyncCancel::new(token.0)
                        .build()
                        .user_data(Token::new(Op::Cancel, None).0),
                );
            }
        }
        self.closing.push(entry.socket);
        if pending > 0 {
            self.retired.push(Retired {
                key,
                pending,
                _addr: entry.connecting,
                _recv: entry.recv,
                _send: entry.send,
            });
        }
    }

    fn entry(&mut self, key: ConnKey) -> Option<&mut Entry> {
        entry(&mut self.table, key)
    }

    // ---- the waker ----------------------------------------------------------------------------

    /// Arm a read of the waker's eventfd: a producer's ring completes it.
    fn arm_wake(&mut self) {
        let read = opcode::Read::new(
            types::Fd(self.wake_fd.as_raw_fd()),
            (&mut *self.wake_buf as *mut u64).cast::<u8>(),
            8,
        )
        .build()
        .user_data(Token::new(Op::Wake, None).0);
        self.wake_armed = true;
        self.push(read);
    }

    // ---- connecting, receiving --------------------------------------------------------------

    fn connected(&mut self, key: ConnKey, result: i32) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        entry.connecting = None;
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            return self.engine.handle_connect_failed(key, e);
        }
        self.engine.handle_connected(key);
        self.arm_recv(key);
        // A TLS dial speaks first (its ClientHello), whatever the engine has queued.
        #[cfg(feature = "tls")]
        if self.entry(key).is_some_and(|e| e.tls.is_some()) {
            self.start_send(key);
        }
    }

    /// Arm a receive for `key` if the engine wants its bytes and none is armed or held.
    fn arm_recv(&mut self, key: ConnKey) {
        if self.engine.wants_read(key) {
            self.submit_recv(key);
        }
    }

    /// Arm a receive for `key` unless one is armed or its bytes or end wait to be delivered.
    fn submit_recv(&mut self, key: ConnKey) {
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let recv = &mut *entry.recv;
        if recv.armed || recv.held || recv.end.is_some() || entry.connecting.is_some() {
            return;
        }
        if self.bufs.is_some() {
            return self.submit_recv_multi(key);
        }
        recv.buf.clear();
        recv.buf.reserve(recv.size);
        let spare = recv.buf.spare_capacity_mut();
        let len = spare.len().min(MAX_RECV) as u32;
        let op = opcode::Recv::new(
            types::Fd(entry.socket.as_raw_fd()),
            spare.as_mut_ptr().cast::<u8>(),
            len,
        )
        .build()
        .user_data(Token::new(Op::Recv, Some(key)).0);
        recv.armed = true;
        self.push(op);
    }

    fn received(&mut self, key: ConnKey, result: i32) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        let recv = &mut *entry.recv;
        recv.armed = false;
        match result {
            0 => recv.end = Some(Ok(())),
            n if n > 0 => {
                let n = n as usize;
                let asked = recv.buf.capacity().min(MAX_RECV);
                // SAFETY: the kernel wrote `n` bytes (at most the length it was given, the
                // buffer's spare capacity) at the start of the spare capacity of this empty
                // buffer, which did not move while the receive was armed (it is only touched
                // here, after the completion).
                #[allow(unsafe_code)]
                unsafe {
                    recv.buf.set_len(n.min(asked));
                }
                recv.size = if n >= asked {
                    (asked * 2).min(MAX_RECV)
                } else {
                    (n * 2).clamp(MIN_RECV, MAX_RECV)
                };
                recv.held = true;
            }
            n if matches!(-n, libc::EINTR | libc::EAGAIN) => {}
            n => recv.end = Some(Err(io::Error::from_raw_os_error(-n))),
        }
        self.deliver(key);
    }

    /// Hand what `key` received to the engine, if it wants it, then receive again.
    fn deliver(&mut self, key: ConnKey) {
        if !self.engine.wants_read(key) {
            return;
        }
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let recv = &mut *entry.recv;
        if recv.held {
            recv.held = false;
            let received = recv.buf.len();
            let metrics = self.engine.metrics();
            add(&metrics.bytes_read, received as u64);
            add(&metrics.reads, 1);
            #[cfg(feature = "tls")]
            if entry.tls.is_some() {
                if self.open_received(key) {
                    self.receive_on(key);
                }
                return;
            }
            if let Some((engine_buf, _)) = self.engine.recv_buffer(key) {
                if engine_buf.is_empty() {
                    // No frame in progress: the received buffer becomes the engine's (no copy),
                    // and the engine's empty one is received into next.
                    std::mem::swap(engine_buf, &mut recv.buf);
                } else {
                    engine_buf.extend_from_slice(&recv.buf);
                }
                self.engine.handle_received(key, self.now);
            }
        }
        self.receive_on(key);
    }

    /// After a delivery: the stream's end or error if one came, else the next receive.
    fn receive_on(&mut self, key: ConnKey) {
        let Some(entry) = self.entry(key) else {
            return;
        };
        match entry.recv.end.take() {
            Some(Ok(())) => self.engine.handle_eof(key),
            Some(Err(e)) => self.engine.handle_error(key, e),
            None => self.arm_recv(key),
        }
    }

    fn read_later(&mut self, key: ConnKey) {
        if let Some(entry) = self.entry(key)
            && !std::mem::replace(&mut entry.read_again, true)
        {
            self.read_again.push(key);
        }
    }

    fn continue_reads(&mut self) {
        let keys = std::mem::take(&mut self.read_again);
        for &key in &keys {
            if let Some(entry) = self.entry(key) {
                entry.read_again = false;
                in_conn_span!(self.engine, key, {
                    self.deliver(key);
                    self.apply_actions();
                });
            }
        }
        let mut keys = keys;
        keys.clear();
        if self.read_again.is_empty() {
            self.read_again = keys;
        }
    }
}

#[cfg(test)]
mod tests;
