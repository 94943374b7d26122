//! The mio driver: epoll readiness for every socket of a transport, pumping its [`Engine`].
//!
//! Each turn it takes the handoff queues into the engine, fires due timers, carries out the
//! engine's actions (dial, close, resume reading, pause accepting), accepts, reads what arrived
//! and hands it to the engine, and writes every connection's queued output in one vectored write
//! each. Each kind of IO is bounded per turn (the constants below), so one busy peer cannot
//! starve the others, the queues or the timers. Between turns it waits in `epoll_wait`: on a
//! thread of its own (`thread.rs`) it first keeps looking for work while some is due
//! (`spin.rs`), then sleeps after telling producers it is about to; as a task on a tokio runtime
//! (`super::runtime`) the runtime does the waiting.
//!
//! Sockets are registered once, for both directions, edge-triggered, and never re-registered
//! (re-registering on every change of interest would cost a system call per RPC); what to do on
//! an edge follows from the engine's and the stream's state. A connection's mio token is its key's
//! slab index; the table below holds the key with its stream, so an event for a slot that was
//! closed and reused within one batch of events reaches the new connection only as a spurious
//! readiness event, which mio allows and every path here treats as "try, and see `WouldBlock`".
//!
//! Handling a connection's event, reading it again or writing its queue runs in the connection's
//! span, when a subscriber records it (entered once per connection handled in a turn, not per
//! frame; with no subscriber, nothing is entered).

use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::spin::SpinBudget;
use super::stream::{MIN_READ, ReadOutcome, ReadSize, Stream, Streams, fill, flush};
use crate::engine::handoff::Wake;
use crate::engine::{Action, ConnKey, Engine};
use crate::metrics::add;

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Events taken from one `poll`.
const MAX_EVENTS: usize = 1024;
/// Bytes read from one connection per turn before moving on to the others. A heartbeat on
/// another connection waits at most one such read per bulk connection (about 60 µs of copying
/// at loopback speed for 256 KiB), while bulk transfers still move in large reads.
const READ_BUDGET: usize = 256 << 10;
/// Bytes written to one connection per turn, for the same reason.
const WRITE_BUDGET: usize = 256 << 10;
/// Connections accepted per turn.
const MAX_ACCEPTS_PER_TURN: usize = 256;

impl Wake for mio::Waker {
    fn wake(&self) -> io::Result<()> {
        mio::Waker::wake(self)
    }
}

/// A connection's socket as the driver keeps it.
struct Entry {
    key: ConnKey,
    stream: Box<dyn Stream>,
    /// Dialled and not yet known to be established.
    connecting: bool,
    /// An event reported the peer's end of stream (or an error): read until the socket says so.
    peer_done: bool,
    /// On the read-again list.
    read_again: bool,
    /// The adaptive size of the next read.
    read_size: usize,
}

pub(crate) struct MioDriver {
    pub(super) poll: Poll,
    pub(super) engine: Engine,
    pub(super) events: Events,
    listener: Option<TcpListener>,
    streams: Streams,
    /// Sockets by slab index (the engine's key index).
    table: Vec<Option<Entry>>,
    /// The last accept stopped at `MAX_ACCEPTS_PER_TURN` with connections possibly still
    /// queued: the listener reports readiness only for new ones, so accept again next turn.
    accept_again: bool,
    /// Connections whose read budget ran out, or that may read again after a pause.
    read_again: Vec<ConnKey>,
    /// Scratch for the engine's list of connections to write.
    dirty: Vec<ConnKey>,
    /// The driver's clock: read once per turn (after waking), given to the engine as `now` for
    /// deadlines and timestamps. A turn is short (bounded work), so it is at most a turn late.
    pub(super) now: Instant,
    /// Set when a thread other than the driver's own ran the engine into its shutdown (see
    /// `thread.rs`): the driver thread then finishes it.
    pub(super) stopping: bool,
    /// While the driver's thread sleeps: when it planned to wake (`None`: when woken), so that a
    /// caller running the engine meanwhile knows whether a timer it armed needs the thread
    /// sooner.
    pub(super) sleep_until: Option<Instant>,
    /// How long [`wait`](MioDriver::wait) looks for events before sleeping, from how soon they
    /// have been coming: one budget per kind of [`Waiter`], each learning from its own waits.
    spin: [SpinBudget; 2],
    /// When the wait in progress began, and who waits (taken by the next
    /// [`dispatch`](MioDriver::dispatch), which tells that waiter's budget how long it took).
    waiting_since: Option<(Instant, Waiter)>,
}

/// Who runs [`MioDriver::wait`]. Their waits differ, so each has its own [`SpinBudget`].
///
/// A leader waits for its own answer (or its next RPC) and stops leading when it comes, so
/// its spin is a round trip's length. The driver thread must not take that length from the
/// leaders: while the thread spins it holds the driver, and a caller that finds it busy hands
/// its call over and parks (a wake-up later) instead of leading. So the thread learns only
/// from its own waits: on the serving side, where nobody leads, the next request; on a calling
/// side, mostly timers (not counted) and, while it is awake anyway, calls handed over to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    /// The driver's own thread.
    Thread = 0,
    /// A caller running the driver in the thread's place (`thread.rs`).
    Leader = 1,
}

impl MioDriver {
    pub(crate) fn new(
        poll: Poll,
        listener: std::net::TcpListener,
        engine: Engine,
    ) -> io::Result<MioDriver> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let streams = Streams::new(&engine.shared().config);
        let spin = SpinBudget::default();
        Ok(MioDriver {
            poll,
            engine,
            events: Events::with_capacity(MAX_EVENTS),
            listener: Some(listener),
            streams,
            table: Vec::new(),
            accept_again: false,
            read_again: Vec::new(),
            dirty: Vec::new(),
            now: Instant::now(),
            stopping: false,
            sleep_until: None,
            spin: [spin.clone(), spin],
            waiting_since: None,
        })
    }

    /// One turn's work that needs no waiting. `false` once the transport is shutting down.
    pub(super) fn turn(&mut self) -> bool {
        add(&self.engine.metrics().reactor_turns, 1);
        let now = self.now;
        if !self.engine.handle_handoff(now) {
            return false;
        }
        self.engine.handle_timeout(now);
        self.apply_actions();
        if std::mem::take(&mut self.accept_again) {
            self.accept();
        }
        self.continue_reads();
        self.flush_dirty();
        self.engine.publish_gauges();
        true
    }

    /// Work the loop can do without waiting for an event. (Output to write is among it:
    /// flushing a snapshot connection refills its queue and marks it again; sleeping then would
    /// wait for a socket event that never comes, as the socket took everything.)
    pub(super) fn has_queued_work(&self) -> bool {
        self.accept_again || !self.read_again.is_empty() || self.engine.has_queued_work()
    }

    /// After a turn run by a thread other than the driver's own (a leader's): whether the
    /// driver's waiter must be rung. It must if it would not see its work while it waits: reads
    /// or writes the turn left for the next one, a timer earlier than the one it planned to
    /// wake for, or the end.
    pub(super) fn needs_its_waiter(&self) -> bool {
        let earlier_timer = self
            .engine
            .poll_timeout()
            .is_some_and(|at| self.sleep_until.is_none_or(|planned| at < planned));
        self.stopping || self.has_queued_work() || earlier_timer
    }

    /// How long until the engine's next timer (None: none).
    pub(super) fn next_timeout(&self) -> Option<Duration> {
        self.engine
            .poll_timeout()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Handle what a poll returned. `false` if polling failed for good.
    pub(super) fn dispatch(&mut self, polled: io::Result<()>) -> bool {
        if let Err(e) = polled
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!("poll failed, stopping the transport: {e}");
            return false;
        }
        if let Some((since, waiter)) = self.waiting_since.take()
            && (!self.events.is_empty() || self.has_queued_work())
        {
            self.spin[waiter as usize].record(self.now.saturating_duration_since(since));
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => self.accept(),
                Token(index) => self.conn_event(index, event),
            }
        }
        self.events = events;
        true
    }

    /// Poll for socket events. With work queued, only look; otherwise keep looking (without
    /// sleeping) for as long as [`SpinBudget`] says an event is due. When one comes within that
    /// window, the wake-up (the futex and the cross-core IPI) is saved on both sides.
    /// [`Waited::Sleep`] when nothing came and producers were told the driver is about to
    /// sleep: the caller then sleeps until an event, a timer or a waker ring, and hands what it
    /// found to [`dispatch`](MioDriver::dispatch).
    ///
    /// Each step of the spin yields the CPU, then looks. Yielding first: the turn that just
    /// ended sent what the peer answers, and when the peer shares this CPU it cannot answer
    /// before this thread lets it run, so a look before the yield finds nothing (on one CPU it
    /// was one `epoll_wait` per round trip on each end, for nothing); with a CPU to itself the
    /// yield returns at once (BENCHMARKS.md, "A spin yields before it looks").
    pub(super) fn wait(&mut self, waiter: Waiter) -> Waited {
        if self.has_queued_work() {
            self.waiting_since = None;
            return Waited::Polled(self.poll_now());
        }
        let spin_start = self.now;
        self.waiting_since = Some((spin_start, waiter));
        let spin = self.spin[waiter as usize].budget();
        loop {
            // A caller blocked on an answer wants to run the engine itself (leader/follower,
            // `thread.rs`): the driver's thread steps aside instead of looking on (the sleep
            // below sees whatever came meanwhile). Otherwise the caller hands its work over,
            // and both look for events on the same CPU.
            if waiter == Waiter::Thread && self.engine.shared().handoff.leaders_waiting() {
                break;
            }
            if !spin.is_zero() {
                add(&self.engine.metrics().system_calls, 1);
                std::thread::yield_now();
            }
            add(&self.engine.metrics().system_calls, 1);
            if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                return Waited::Polled(Err(e));
            }
            if !self.events.is_empty() || self.has_queued_work() {
                self.now = Instant::now();
                return Waited::Polled(Ok(()));
            }
            let now = Instant::now();
            self.now = now;
            if now - spin_start >= spin || self.engine.poll_timeout().is_some_and(|at| at <= now) {
                break;
            }
        }
        if self.engine.shared().handoff.prepare_sleep() {
            add(&self.engine.metrics().reactor_sleeps, 1);
            Waited::Sleep(self.next_timeout())
        } else {
            Waited::Polled(self.poll_now())
        }
    }

    /// Take the events that are ready, without waiting.
    pub(super) fn poll_now(&mut self) -> io::Result<()> {
        add(&self.engine.metrics().system_calls, 1);
        let polled = self.poll.poll(&mut self.events, Some(Duration::ZERO));
        self.now = Instant::now();
        polled
    }

    /// Close every connection and stop accepting.
    pub(super) fn shutdown(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.engine.shutdown();
        self.apply_actions();
    }

    // ---- the engine's actions ---------------------------------------------------------------

    fn apply_actions(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Dial { key, addr } => {
                    match self.streams.connect(addr, self.engine.dial_server(key)) {
                        Ok(stream) => self.insert(key, stream, true),
                        Err(e) => self.engine.handle_connect_failed(key, e),
                    }
                }
                Action::Close { key } => self.remove(key),
                Action::ResumeRead { key } => self.read_later(key),
                Action::PauseAccept => {
                    if let Some(l) = &mut self.listener {
                        let _ = self.poll.registry().deregister(l);
                    }
                }
                Action::ResumeAccept => {
                    if let Some(l) = &mut self.listener
                        && let Err(e) =
                            self.poll
                                .registry()
                                .register(l, LISTENER, Interest::READABLE)
                    {
                        tracing::error!("cannot resume accepting: {e}");
                    }
                    self.accept_again = true;
                }
            }
        }
    }

    /// Register `stream` for `key` (edge-triggered, both directions, once).
    fn insert(&mut self, key: ConnKey, mut stream: Box<dyn Stream>, connecting: bool) {
        let index = key.index();
        if let Err(e) = self.poll.registry().register(
            stream.source(),
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.engine.handle_connect_failed(key, e);
            return;
        }
        if self.table.len() <= index {
            self.table.resize_with(index + 1, || None);
        }
        // The engine reuses a slot only after closing its connection, and that `Close` is
        // carried out before this insert (actions run in order), so the slot is empty.
        if let Some(mut stale) = self.table[index].take() {
            debug_assert!(false, "slot {index} still held {:?}", stale.key);
            let _ = self.poll.registry().deregister(stale.stream.source());
        }
        self.table[index] = Some(Entry {
            key,
            stream,
            connecting,
            peer_done: false,
            read_again: false,
            read_size: MIN_READ,
        });
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(slot) = self.table.get_mut(key.index())
            && slot.as_ref().is_some_and(|e| e.key == key)
            && let Some(mut entry) = slot.take()
        {
            let _ = self.poll.registry().deregister(entry.stream.source());
        }
    }

    fn entry(&mut self, key: ConnKey) -> Option<&mut Entry> {
        self.table
            .get_mut(key.index())
            .and_then(Option::as_mut)
            .filter(|e| e.key == key)
    }

    /// Read the clock again within a turn (for events whose time must not be the turn's).
    fn refresh_now(&mut self) -> Instant {
        self.now = Instant::now();
        self.now
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
            add(&self.engine.metrics().system_calls, 1);
            match listener.accept() {
                Ok((socket, peer)) => match self.streams.accept(socket) {
                    // The connection's clock (its handshake deadline) starts now, not when the
                    // turn began: a turn draining a full accept queue can take milliseconds,
                    // and a deadline counted from before the peer connected would close it
                    // early. One clock read per accepted connection, off the RPC path.
                    Ok(stream) => {
                        let now = self.refresh_now();
                        match self.engine.handle_accepted(peer, now) {
                            Some(key) => in_conn_span!(self.engine, key, {
                                self.insert(key, stream, false);
                                self.apply_actions();
                            }),
                            // Over a connection limit: dropping the stream closes it.
                            None => drop(stream),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot set up an accepted connection")
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_again = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.accept_again = false;
                    self.engine.handle_accept_failed(e, self.now);
                    self.apply_actions();
                    return;
                }
            }
        }
    }

    fn conn_event(&mut self, index: usize, event: &mio::event::Event) {
        if let Some(entry) = self.table.get(index).and_then(Option::as_ref) {
            let key = entry.key;
            in_conn_span!(self.engine, key, self.handle_conn_event(index, event));
        }
    }

    fn handle_conn_event(&mut self, index: usize, event: &mio::event::Event) {
        let Some(entry) = self.table.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let key = entry.key;
        if entry.connecting {
            if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                return;
            }
            let error = match entry.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match entry.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still connecting
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = error {
                self.engine.handle_connect_failed(key, e);
                self.apply_actions();
                return;
            }
            entry.connecting = false;
            self.engine.handle_connected(key);
        }
        if event.is_read_closed() || event.is_error() {
            entry.peer_done = true;
        }
        if event.is_readable() || entry.peer_done {
            self.read(key);
        }
        if event.is_writable() {
            // Output queued while the socket was full goes now.
            self.engine.handle_writable(key);
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
        for key in keys {
            if let Some(entry) = self.entry(key) {
                entry.read_again = false;
                in_conn_span!(self.engine, key, self.read(key));
            }
        }
    }

    fn read(&mut self, key: ConnKey) {
        if !self.engine.wants_read(key) {
            return;
        }
        let Some(entry) = established(&mut self.table, key) else {
            return;
        };
        let hint = self.engine.read_hint(key);
        let Some((buf, metrics)) = self.engine.recv_buffer(key) else {
            return;
        };
        let until_would_block = entry.peer_done || entry.stream.buffers_reads();
        let outcome = fill(
            &mut *entry.stream,
            buf,
            ReadSize {
                adaptive: &mut entry.read_size,
                hint,
            },
            READ_BUDGET,
            until_would_block,
            metrics,
        );
        #[cfg(feature = "tls")]
        if let Some(peer) = entry.stream.take_verified_peer() {
            self.engine.handle_verified_peer(key, peer);
        }
        self.engine.handle_received(key, self.now);
        match outcome {
            ReadOutcome::Drained => {}
            ReadOutcome::Budget => self.read_later(key),
            ReadOutcome::Eof => self.engine.handle_eof(key),
            ReadOutcome::Error(e) => self.engine.handle_error(key, e),
        }
        self.apply_actions();
    }

    fn flush_dirty(&mut self) {
        let mut keys = std::mem::take(&mut self.dirty);
        self.engine.take_dirty(&mut keys);
        for key in keys.drain(..) {
            in_conn_span!(self.engine, key, self.write_queue(key));
        }
        self.dirty = keys;
    }

    /// Write `key`'s queue (up to the budget) and tell the engine how it went.
    fn write_queue(&mut self, key: ConnKey) {
        let Some(entry) = established(&mut self.table, key) else {
            return;
        };
        let Some((queue, metrics)) = self.engine.send_queue(key) else {
            return;
        };
        let flushed = flush(&mut *entry.stream, queue, WRITE_BUDGET, metrics);
        self.engine.handle_flushed(key, flushed, self.now);
        self.apply_actions();
    }
}

/// `key`'s socket, if it is still the one in its slot and its connect has completed.
fn established(table: &mut [Option<Entry>], key: ConnKey) -> Option<&mut Entry> {
    table
        .get_mut(key.index())
        .and_then(Option::as_mut)
        .filter(|e| e.key == key && !e.connecting)
}

/// What [`MioDriver::wait`] found.
pub(super) enum Waited {
    /// Events (possibly none) are in `events`, or polling failed.
    Polled(io::Result<()>),
    /// Nothing to do: sleep for at most this long (`None`: until woken), producers having been
    /// told ([`Handoff::prepare_sleep`](crate::engine::handoff::Handoff::prepare_sleep)).
    Sleep(Option<Duration>),
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::Config;
    use crate::engine::Shared;

    /// A driver on 127.0.0.1:0 with no connections, and its waker.
    fn driver() -> (MioDriver, std::sync::Arc<mio::Waker>) {
        let poll = Poll::new().unwrap();
        let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), WAKER).unwrap());
        struct Ring(std::sync::Arc<mio::Waker>);
        impl Wake for Ring {
            fn wake(&self) -> io::Result<()> {
                self.0.wake()
            }
        }
        let shared = Shared::new(Config::default(), Box::new(Ring(waker.clone())));
        let engine = Engine::new(shared, Instant::now);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (MioDriver::new(poll, listener, engine).unwrap(), waker)
    }

    fn system_calls(driver: &MioDriver) -> u64 {
        driver.engine.metrics().system_calls.load(Ordering::Relaxed)
    }

    /// The spin yields before each look: an event already there when the wait begins costs a
    /// yield and one look (on one CPU the peer's answer cannot be there before the yield).
    #[test]
    fn a_spin_yields_before_it_looks() {
        let (mut driver, waker) = driver();
        driver.spin = std::array::from_fn(|_| SpinBudget::with_max(Duration::from_millis(10)));
        waker.wake().unwrap();
        let before = system_calls(&driver);
        assert!(matches!(
            driver.wait(Waiter::Leader),
            Waited::Polled(Ok(()))
        ));
        assert_eq!(driver.events.iter().count(), 1, "the waker's event");
        assert_eq!(system_calls(&driver) - before, 2, "a yield, then one look");
    }

    /// With no spin (`RAFTNET_SPIN_MAX_US=0`), a wait looks once and sleeps: no yield.
    #[test]
    fn no_spin_looks_once_and_sleeps() {
        let (mut driver, _waker) = driver();
        driver.spin = std::array::from_fn(|_| SpinBudget::with_max(Duration::ZERO));
        let before = system_calls(&driver);
        assert!(matches!(driver.wait(Waiter::Thread), Waited::Sleep(_)));
        assert_eq!(system_calls(&driver) - before, 1, "one look");
    }
}
