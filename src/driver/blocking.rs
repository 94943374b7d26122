//! The reference driver ([`Placement::ThreadPerConnection`](super::Placement)): std::net
//! blocking sockets, one reader thread per connection, one thread for accepting, and the driver
//! thread that owns the engine and writes. Every event reaches the driver thread as a message
//! on one channel, which is also how the handoff wakes it.
//!
//! It is slow (a thread per connection, a copy of every received buffer into the engine) and
//! exists for what it proves: the engine's interface serves a driver that is not readiness-based
//! (bytes arrive in buffers the driver owns, as io_uring hands them back), and the generic
//! transport tests pass on a driver that shares no code with the mio one.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::engine::handoff::Wake;
use crate::engine::{Action, ClosedOnExit, ConnKey, Engine, Flushed};
use crate::metrics::add;

/// Bytes a reader thread asks for per read.
const READ_SIZE: usize = 64 * 1024;
/// Slices handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// What happened, as the driver thread learns it.
enum Event {
    /// The handoff has work (or the transport is closing).
    Wake,
    Accepted(TcpStream, SocketAddr),
    AcceptFailed(io::Error),
    Connected(ConnKey, TcpStream),
    ConnectFailed(ConnKey, io::Error),
    Incoming(ConnKey, Incoming),
}

/// What a reader thread read.
enum Incoming {
    Data(Vec<u8>),
    Eof,
    Error(io::Error),
}

/// Wakes the driver thread with a message.
pub(crate) struct ChannelWake(Sender<Event>);

impl Wake for ChannelWake {
    fn wake(&self) -> io::Result<()> {
        self.0
            .send(Event::Wake)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the driver has stopped"))
    }
}

struct Conn {
    /// The socket, for writing and for shutting down (its reader thread holds a clone).
    stream: TcpStream,
    /// What arrived while the engine did not want reads (a snapshot reader fell behind).
    held: VecDeque<Incoming>,
}

pub(crate) struct BlockingDriver {
    listener: TcpListener,
    events: Receiver<Event>,
    sender: Sender<Event>,
    conns: HashMap<ConnKey, Conn>,
    /// Tells the accepting thread to go on after a failure (the engine's back-off ended).
    resume_accept: Option<Sender<()>>,
    acceptor: Option<JoinHandle<()>>,
    dirty: Vec<ConnKey>,
}

impl BlockingDriver {
    /// A driver for `listener`, and the waker its handoff rings.
    pub(crate) fn prepare(listener: TcpListener) -> io::Result<(BlockingDriver, ChannelWake)> {
        listener.set_nonblocking(false)?;
        let (sender, events) = mpsc::channel();
        let waker = ChannelWake(sender.clone());
        let driver = BlockingDriver {
            listener,
            events,
            sender,
            conns: HashMap::new(),
            resume_accept: None,
            acceptor: None,
            dirty: Vec::new(),
        };
        Ok((driver, waker))
    }

    /// Run until the transport shuts down.
    pub(crate) fn run(mut self, mut engine: Engine) {
        let _closed = ClosedOnExit(engine.shared().clone());
        if let Err(e) = self.start_accepting() {
            tracing::error!("cannot start accepting: {e}");
            engine.shutdown();
            return;
        }
        let handoff = engine.shared().handoff.clone();
        let mut now = Instant::now();
        while engine.handle_handoff(now) {
            engine.handle_timeout(now);
            self.apply_actions(&mut engine, now);
            self.flush(&mut engine, now);
            engine.publish_gauges();
            let event = if engine.has_queued_work() {
                self.events.try_recv().ok()
            } else if handoff.prepare_sleep() {
                add(&engine.metrics().reactor_sleeps, 1);
                let timeout = engine
                    .poll_timeout()
                    .map(|at| at.saturating_duration_since(Instant::now()));
                let event = match timeout {
                    Some(t) => match self.events.recv_timeout(t) {
                        Ok(event) => Some(event),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    None => self.events.recv().ok(),
                };
                handoff.woke();
                event
            } else {
                None
            };
            now = Instant::now();
            add(&engine.metrics().reactor_turns, 1);
            let mut next = event;
            while let Some(event) = next {
                self.handle(&mut engine, event, now);
                next = self.events.try_recv().ok();
            }
        }
        engine.shutdown();
        self.apply_actions(&mut engine, now);
        self.stop_accepting();
    }

    fn handle(&mut self, engine: &mut Engine, event: Event, now: Instant) {
        match event {
            Event::Wake => {}
            Event::Accepted(stream, peer) => {
                // Over a connection limit, dropping the stream closes it.
                if let Some(key) = engine.handle_accepted(peer, now) {
                    in_conn_span!(engine, key, self.open(engine, key, stream));
                }
            }
            Event::AcceptFailed(e) => engine.handle_accept_failed(e, now),
            Event::Connected(key, stream) => {
                // A dial the engine gave up on (its deadline passed) is dropped here.
                if engine.is_open(key) {
                    in_conn_span!(engine, key, {
                        self.open(engine, key, stream);
                        engine.handle_connected(key);
                    });
                }
            }
            Event::ConnectFailed(key, e) => engine.handle_connect_failed(key, e),
            Event::Incoming(key, incoming) => {
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.held.push_back(incoming);
                    in_conn_span!(engine, key, self.deliver(engine, key, now));
                }
            }
        }
        self.apply_actions(engine, now);
    }

    /// Start a reader thread for `stream` and keep it as `key`'s socket.
    fn open(&mut self, engine: &mut Engine, key: ConnKey, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => return engine.handle_error(key, e),
        };
        let sender = self.sender.clone();
        let spawned = std::thread::Builder::new()
            .name("raftnet-conn-reader".into())
            .spawn(move || read_loop(key, reader, sender));
        if let Err(e) = spawned {
            return engine.handle_error(key, e);
        }
        self.conns.insert(
            key,
            Conn {
                stream,
                held: VecDeque::new(),
            },
        );
    }

    /// Hand `key`'s held input to the engine while it wants reads.
    fn deliver(&mut self, engine: &mut Engine, key: ConnKey, now: Instant) {
        while engine.wants_read(key) {
            let Some(incoming) = self.conns.get_mut(&key).and_then(|c| c.held.pop_front()) else {
                return;
            };
            match incoming {
                Incoming::Data(bytes) => {
                    add(&engine.metrics().bytes_read, bytes.len() as u64);
                    add(&engine.metrics().reads, 1);
                    engine.handle_bytes(key, &bytes, now);
                }
                Incoming::Eof => engine.handle_eof(key),
                Incoming::Error(e) => engine.handle_error(key, e),
            }
        }
    }

    fn apply_actions(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(action) = engine.poll_action() {
            match action {
                Action::Dial { key, addr } => {
                    let sender = self.sender.clone();
                    let spawned = std::thread::Builder::new()
                        .name("raftnet-dial".into())
                        .spawn(move || {
                            let _ = sender.send(match TcpStream::connect(addr) {
                                Ok(stream) => Event::Connected(key, stream),
                                Err(e) => Event::ConnectFailed(key, e),
                            });
                        });
                    if let Err(e) = spawned {
                        engine.handle_connect_failed(key, e);
                    }
                }
                Action::Close { key } => {
                    if let Some(conn) = self.conns.remove(&key) {
                        // Ends the reader thread's blocking read.
                        let _ = conn.stream.shutdown(Shutdown::Both);
                    }
                }
                Action::ResumeRead { key } => {
                    in_conn_span!(engine, key, self.deliver(engine, key, now))
                }
                Action::PauseAccept => {}
                Action::ResumeAccept => {
                    if let Some(resume) = &self.resume_accept {
                        let _ = resume.send(());
                    }
                }
            }
        }
    }

    /// Write every connection's queue (blocking: the peer's reader threads always read).
    fn flush(&mut self, engine: &mut Engine, now: Instant) {
        let mut keys = std::mem::take(&mut self.dirty);
        engine.take_dirty(&mut keys);
        for key in keys.drain(..) {
            in_conn_span!(engine, key, self.write_queue(engine, key, now));
        }
        self.dirty = keys;
    }

    /// Write `key`'s queue and tell the engine how it went.
    fn write_queue(&mut self, engine: &mut Engine, key: ConnKey, now: Instant) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some((queue, metrics)) = engine.send_queue(key) else {
            return;
        };
        let mut result = Ok(Flushed::All);
        while !queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = queue.io_slices(&mut slices);
            match conn.stream.write_vectored(&slices[..n]) {
                Ok(0) => {
                    result = Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"));
                    break;
                }
                Ok(written) => {
                    add(&metrics.bytes_written, written as u64);
                    add(&metrics.writes, 1);
                    queue.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        engine.handle_flushed(key, result, now);
        self.apply_actions(engine, now);
    }

    fn start_accepting(&mut self) -> io::Result<()> {
        let listener = self.listener.try_clone()?;
        let sender = self.sender.clone();
        let (resume, resumed) = mpsc::channel();
        self.resume_accept = Some(resume);
        let acceptor = std::thread::Builder::new()
            .name("raftnet-acceptor".into())
            .spawn(move || {
                for accepted in listener.incoming() {
                    let event = match accepted.and_then(|s| Ok((s.peer_addr()?, s))) {
                        Ok((peer, stream)) => Event::Accepted(stream, peer),
                        Err(e) => Event::AcceptFailed(e),
                    };
                    let failed = matches!(event, Event::AcceptFailed(_));
                    if sender.send(event).is_err() {
                        return;
                    }
                    // After a failure, wait out the engine's back-off. The channel closes when
                    // the driver stops.
                    if failed && resumed.recv().is_err() {
                        return;
                    }
                }
            })?;
        self.acceptor = Some(acceptor);
        Ok(())
    }

    /// Stop the accepting thread and close the listening socket before the close returns.
    fn stop_accepting(&mut self) {
        self.resume_accept = None;
        // The thread blocks in `accept`: shutting the listening socket down (on Linux) stops it
        // listening and makes that `accept` fail, which ends the thread.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A connection's reader thread: blocking reads into buffers of its own, sent to the driver,
/// until the stream ends or the driver shuts the socket down.
fn read_loop(key: ConnKey, mut stream: TcpStream, sender: Sender<Event>) {
    loop {
        let mut buf = vec![0u8; READ_SIZE];
        let incoming = match stream.read(&mut buf) {
            Ok(0) => Incoming::Eof,
            Ok(n) => {
                buf.truncate(n);
                Incoming::Data(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Incoming::Error(e),
        };
        let last = !matches!(incoming, Incoming::Data(_));
        if sender.send(Event::Incoming(key, incoming)).is_err() || last {
            return;
        }
    }
}
