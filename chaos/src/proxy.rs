//! The fault-injecting TCP proxy: a [`Link`] listens on 127.0.0.1, forwards every connection it
//! accepts to one target, and applies [`Faults`] to each direction of the traffic separately.
//!
//! Between two nodes there is one link per direction of dialling (a dials b through link a→b,
//! b dials a through link b→a), so a partition is both links blackholed, and a one-way cut is one
//! [`Direction`] of one link.
//!
//! Each accepted connection runs four threads: per direction, a reader that takes bytes off the
//! source socket and stamps them with their delivery time (delay plus jitter, never before the
//! bytes ahead of them: TCP keeps order), and a writer that delivers them when due, unless the
//! direction is paused, in pieces and at a bandwidth if asked. Threads and blocking sockets, not
//! an event loop: the proxy is test machinery, and this keeps every fault a few lines of plain
//! code whose timing is easy to reason about.
//!
//! What each fault models:
//! - **delay, jitter**: a long or uneven path; order is kept.
//! - **bandwidth**: a thin pipe; writers sleep for the bytes they wrote.
//! - **pieces**: the peer's reads see small segments (a frame split at every byte boundary).
//! - **pause**: nothing is delivered, nothing is lost: bytes wait (up to a bounded buffer, then the
//!   sender's TCP buffers fill) and arrive in order after the heal, as after a stall of the network
//!   short enough for TCP to retransmit through.
//! - **blackhole**: bytes are taken and thrown away, the connection stays open, the peers see
//!   silence; a partition. A TCP stream cannot resume across a gap, so the connections that lost
//!   bytes are reset when the blackhole ends (as TCP's own retransmission timeout would, later).
//! - **drop** ([`Link::drop_connections`]): every current connection ends now, with a FIN or an RST.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use socket2::SockRef;

/// Bytes a paused or delayed direction holds before it stops reading (the sender's own TCP
/// buffers then fill, as behind a real stalled path).
const HELD_BYTES_LIMIT: usize = 4 << 20;

/// How long a writer waiting on a paused direction sleeps between looks at its faults.
const PAUSE_POLL: Duration = Duration::from_millis(5);

/// How long connecting to the target may take before the accepted connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which way bytes travel through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the side that dialled the proxy to the target (a transport's requests).
    Forward,
    /// From the target back to the dialler (the answers).
    Backward,
}

impl Direction {
    /// Both directions, forward first.
    pub const BOTH: [Direction; 2] = [Direction::Forward, Direction::Backward];

    fn index(self) -> usize {
        match self {
            Direction::Forward => 0,
            Direction::Backward => 1,
        }
    }
}

/// How [`Link::drop_connections`] ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An orderly close: both peers read end-of-stream.
    Fin,
    /// A reset (SO_LINGER 0): both peers get `ECONNRESET`.
    Rst,
}

/// What one direction of a link does to the bytes it carries. The default forwards them at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every byte arrives at least this much after it was read.
    pub delay: Duration,
    /// A random extra delay, uniform in `0..=jitter`, per read (order is kept).
    pub jitter: Duration,
    /// At most this many bytes per second.
    pub bandwidth: Option<u64>,
    /// Writes are cut into pieces of at most this many bytes, each written on its own.
    pub pieces: Option<usize>,
    /// Bytes are held, not delivered, until this is cleared.
    pub paused: bool,
    /// Bytes are thrown away; connections that lost some are reset when this is cleared.
    pub blackhole: bool,
}

impl Faults {
    /// No fault: bytes pass at once.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Whether this is no fault at all.
    pub fn is_clear(&self) -> bool {
        *self == Faults::default()
    }
}

/// What a link has carried and done, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes delivered, forward and backward.
    pub delivered: [u64; 2],
    /// Bytes thrown away by a blackhole, forward and backward.
    pub discarded: [u64; 2],
    /// Connections ended by the proxy (drops, and resets after a blackhole).
    pub closed_by_proxy: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    delivered: [AtomicU64; 2],
    discarded: [AtomicU64; 2],
    closed_by_proxy: AtomicU64,
}

struct Shared {
    target: SocketAddr,
    faults: Mutex<[Faults; 2]>,
    connections: Mutex<Vec<Weak<Connection>>>,
    closed: AtomicBool,
    counters: Counters,
    rng: Mutex<ChaCha8Rng>,
}

impl Shared {
    fn faults(&self, direction: Direction) -> Faults {
        self.faults.lock().unwrap()[direction.index()].clone()
    }

    fn live_connections(&self) -> Vec<Arc<Connection>> {
        let mut connections = self.connections.lock().unwrap();
        connections.retain(|c| c.strong_count() > 0);
        connections.iter().filter_map(Weak::upgrade).collect()
    }
}

/// One proxied connection: the socket accepted from the dialler and the one to the target.
struct Connection {
    dialler: TcpStream,
    target: TcpStream,
    /// Set once the proxy or an error ends it: every thread of it stops.
    dead: AtomicBool,
    /// A blackhole threw away some of its bytes (in either direction).
    gapped: AtomicBool,
    pipes: [Pipe; 2],
}

impl Connection {
    fn source(&self, direction: Direction) -> &TcpStream {
        match direction {
            Direction::Forward => &self.dialler,
            Direction::Backward => &self.target,
        }
    }

    fn sink(&self, direction: Direction) -> &TcpStream {
        match direction {
            Direction::Forward => &self.target,
            Direction::Backward => &self.dialler,
        }
    }

    /// End the connection: an RST needs SO_LINGER 0 on both sockets before the last descriptor
    /// closes, which happens when its four threads have let go; shutting the read side wakes the
    /// readers without sending anything. A FIN is a full shutdown of both sockets.
    fn close(&self, how: Close) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        for socket in [&self.dialler, &self.target] {
            match how {
                Close::Rst => {
                    let _ = SockRef::from(socket).set_linger(Some(Duration::ZERO));
                    let _ = socket.shutdown(Shutdown::Read);
                }
                Close::Fin => {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
        }
        for pipe in &self.pipes {
            pipe.ready.notify_all();
        }
    }
}

/// The bytes of one direction between its reader and its writer.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    ready: Condvar,
}

#[derive(Default)]
struct PipeState {
    /// Chunks with the instant each may be delivered.
    chunks: VecDeque<(Instant, Vec<u8>)>,
    held: usize,
    /// The source ended: after the last chunk, the writer half-closes the sink.
    ended: bool,
}

/// A proxy for one target: listens on 127.0.0.1 (port 0), forwards to the target, with faults.
///
/// Dropping it stops the listener and closes every connection it carries.
pub struct Link {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .finish()
    }
}

impl Link {
    /// Listen on 127.0.0.1:0 and forward to `target`. `seed` fixes the jitter's random draws.
    pub fn start(target: SocketAddr, seed: u64) -> io::Result<Link> {
        Link::start_on(
            "127.0.0.1:0".parse().expect("a socket address"),
            target,
            seed,
        )
    }

    /// Listen on `listen` and forward to `target`.
    pub fn start_on(listen: SocketAddr, target: SocketAddr, seed: u64) -> io::Result<Link> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            faults: Mutex::new([Faults::none(), Faults::none()]),
            connections: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("proxy-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Link {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// Where to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the link forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The faults one direction applies now.
    pub fn faults(&self, direction: Direction) -> Faults {
        self.shared.faults(direction)
    }

    /// Apply `faults` to one direction, to current and new connections alike. Ending a
    /// blackhole resets the connections that lost bytes to it.
    pub fn set(&self, direction: Direction, faults: Faults) {
        let was_blackhole = {
            let mut all = self.shared.faults.lock().unwrap();
            let slot = &mut all[direction.index()];
            let was = slot.blackhole;
            *slot = faults;
            was && !slot.blackhole
        };
        if was_blackhole {
            self.reset_gapped();
        }
        for connection in self.shared.live_connections() {
            for pipe in &connection.pipes {
                pipe.ready.notify_all();
            }
        }
    }

    /// Apply `faults` to both directions.
    pub fn set_both(&self, faults: Faults) {
        for direction in Direction::BOTH {
            self.set(direction, faults.clone());
        }
    }

    /// Change one direction's faults in place.
    pub fn update(&self, direction: Direction, change: impl FnOnce(&mut Faults)) {
        let mut faults = self.faults(direction);
        change(&mut faults);
        self.set(direction, faults);
    }

    /// Clear every fault in both directions (held bytes are delivered, gapped connections reset).
    pub fn heal(&self) {
        self.set_both(Faults::none());
    }

    /// End every current connection with a FIN or an RST; returns how many. New connections are
    /// accepted as before.
    pub fn drop_connections(&self, how: Close) -> usize {
        let connections = self.shared.live_connections();
        let mut n = 0;
        for connection in connections {
            if !connection.dead.load(Ordering::SeqCst) {
                connection.close(how);
                n += 1;
            }
        }
        self.shared
            .counters
            .closed_by_proxy
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Connections open through the link now.
    pub fn open_connections(&self) -> usize {
        self.shared
            .live_connections()
            .iter()
            .filter(|c| !c.dead.load(Ordering::SeqCst))
            .count()
    }

    /// What the link has done so far.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        LinkStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            delivered: [
                c.delivered[0].load(Ordering::Relaxed),
                c.delivered[1].load(Ordering::Relaxed),
            ],
            discarded: [
                c.discarded[0].load(Ordering::Relaxed),
                c.discarded[1].load(Ordering::Relaxed),
            ],
            closed_by_proxy: c.closed_by_proxy.load(Ordering::Relaxed),
        }
    }

    fn reset_gapped(&self) {
        let blackholed = {
            let all = self.shared.faults.lock().unwrap();
            all[0].blackhole || all[1].blackhole
        };
        if blackholed {
            return; // the other direction still throws bytes away: reset at its heal
        }
        for connection in self.shared.live_connections() {
            if connection.gapped.load(Ordering::SeqCst) && !connection.dead.load(Ordering::SeqCst) {
                connection.close(Close::Rst);
                self.shared
                    .counters
                    .closed_by_proxy
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for connection in self.shared.live_connections() {
            connection.close(Close::Fin);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for dialler in listener.incoming() {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(dialler) = dialler else {
            // EMFILE and the like: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        // Connecting can take a while (a target that is stopped): not on the accept thread.
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("proxy-connect".into())
            .spawn(move || connect_and_pump(dialler, shared));
    }
}

fn connect_and_pump(dialler: TcpStream, shared: Arc<Shared>) {
    let Ok(target) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        // The target is down: the dialler sees its connection close, as it would have been
        // refused.
        let _ = SockRef::from(&dialler).set_linger(Some(Duration::ZERO));
        return;
    };
    let _ = dialler.set_nodelay(true);
    let _ = target.set_nodelay(true);
    let connection = Arc::new(Connection {
        dialler,
        target,
        dead: AtomicBool::new(false),
        gapped: AtomicBool::new(false),
        pipes: [Pipe::default(), Pipe::default()],
    });
    shared
        .connections
        .lock()
        .unwrap()
        .push(Arc::downgrade(&connection));
    for direction in Direction::BOTH {
        for reader in [true, false] {
            let (connection, shared) = (connection.clone(), shared.clone());
            let _ = std::thread::Builder::new()
                .name(format!(
                    "proxy-{}-{direction:?}",
                    if reader { "read" } else { "write" }
                ))
                .spawn(move || {
                    if reader {
                        read_side(&connection, &shared, direction)
                    } else {
                        write_side(&connection, &shared, direction)
                    }
                });
        }
    }
}

fn read_side(connection: &Connection, shared: &Shared, direction: Direction) {
    let pipe = &connection.pipes[direction.index()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let n = match connection.source(direction).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // A reset from the peer: pass it on as one.
                connection.close(Close::Rst);
                return;
            }
        };
        if connection.dead.load(Ordering::SeqCst) {
            return;
        }
        if n == 0 {
            pipe.state.lock().unwrap().ended = true;
            pipe.ready.notify_all();
            return;
        }
        let faults = shared.faults(direction);
        // Once bytes are lost, nothing after them may pass (the stream would resume mid-frame):
        // the connection is reset when the blackhole ends.
        if faults.blackhole || connection.gapped.load(Ordering::SeqCst) {
            connection.gapped.store(true, Ordering::SeqCst);
            shared.counters.discarded[direction.index()].fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        let jitter = if faults.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = faults.jitter.as_nanos() as u64;
            Duration::from_nanos(shared.rng.lock().unwrap().random_range(0..=nanos))
        };
        let due = (Instant::now() + faults.delay + jitter).max(last_due);
        last_due = due;
        let mut state = pipe.state.lock().unwrap();
        while state.held >= HELD_BYTES_LIMIT && !connection.dead.load(Ordering::SeqCst) {
            state = pipe.ready.wait_timeout(state, PAUSE_POLL).unwrap().0;
        }
        state.held += n;
        state.chunks.push_back((due, buf[..n].to_vec()));
        drop(state);
        pipe.ready.notify_all();
    }
}

fn write_side(connection: &Connection, shared: &Shared, direction: Direction) {
    let pipe = &connection.pipes[direction.index()];
    let sink = connection.sink(direction);
    loop {
        let chunk = {
            let mut state = pipe.state.lock().unwrap();
            loop {
                if connection.dead.load(Ordering::SeqCst) {
                    return;
                }
                let now = Instant::now();
                match state.chunks.front() {
                    None if state.ended => {
                        let _ = sink.shutdown(Shutdown::Write);
                        return;
                    }
                    None => state = pipe.ready.wait_timeout(state, PAUSE_POLL).unwrap().0,
                    Some((due, _)) if *due > now => {
                        let wait = (*due - now).min(PAUSE_POLL);
                        state = pipe.ready.wait_timeout(state, wait).unwrap().0;
                    }
                    Some(_) if shared.faults(direction).paused => {
                        state = pipe.ready.wait_timeout(state, PAUSE_POLL).unwrap().0;
                    }
                    Some(_) => {
                        let (_, chunk) = state.chunks.pop_front().expect("a chunk");
                        state.held -= chunk.len();
                        break chunk;
                    }
                }
            }
        };
        pipe.ready.notify_all(); // room for the reader
        let faults = shared.faults(direction);
        let piece = faults.pieces.unwrap_or(chunk.len()).max(1);
        for part in chunk.chunks(piece) {
            if (&*sink).write_all(part).is_err() {
                connection.close(Close::Rst);
                return;
            }
            shared.counters.delivered[direction.index()]
                .fetch_add(part.len() as u64, Ordering::Relaxed);
            if let Some(rate) = faults.bandwidth.filter(|&r| r > 0) {
                std::thread::sleep(Duration::from_secs_f64(part.len() as f64 / rate as f64));
            } else if faults.pieces.is_some() {
                // Give the receiver a chance to read each piece on its own.
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}
