//! One connection as the reactor keeps it: the socket (behind the stream seam), its read
//! buffer and decoder, its send queue, and what it is for.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::handoff::AnyResolver;
use super::snapshot_out::SnapshotFeed;
use crate::metrics::{RpcKind, TransportMetrics, add};
use crate::transport::pipeline::PipelineShared;
use crate::transport::snapshot::SnapshotStream;
use crate::wire::{FrameDecoder, Lane, SendQueue};

/// The stream seam: what a connection reads and writes through. Plain TCP today; a TLS layer
/// (rustls over the TCP stream) implements the same trait later, and the reactor does not
/// change.
pub(crate) trait Stream: Read + Write + mio::event::Source + Send {
    /// Read into uninitialized memory (so the read buffer is not zeroed first); returns how many
    /// bytes, which are then initialized.
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
    /// A pending socket error (how a failed non-blocking connect reports itself).
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// The peer's address; `NotConnected` while a connect is still in progress.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

impl Stream for mio::net::TcpStream {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        socket2::SockRef::from(&*self).recv(buf)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::peer_addr(self)
    }
}

/// Read up to `want` bytes from `stream` into `buf`'s spare capacity and extend `buf` by what
/// was read. Zero-filling the room first (to read through `std::io::Read`) cost as much as the
/// copy from the kernel on bulk transfers (8 % of a snapshot's CPU time, BENCHMARKS.md).
pub(crate) fn read_into_spare(
    stream: &mut dyn Stream,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    buf.reserve(want);
    let len = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..want];
    let n = stream.read_uninit(spare)?;
    // A stream claiming more than it was given would make the `set_len` below unsound.
    let n = n.min(want);
    // SAFETY: `read_uninit` initialized the first `n` bytes of the spare capacity (its
    // contract), `n <= want <= capacity - len`, so the first `len + n` bytes are initialized.
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(len + n);
    }
    Ok(n)
}

/// Reads start this small so a quiet connection does not zero a large buffer for each small
/// message, and double while reads keep filling them.
const MIN_READ: usize = 4 * 1024;
/// The largest single read: big enough that bulk transfers take few syscalls.
const MAX_READ: usize = 256 * 1024;
/// Slices handed to one `writev` (Linux's `IOV_MAX` is 1024; more slices buy nothing).
const MAX_IOVECS: usize = 64;

/// A call waiting for its answer on a connection.
pub(crate) struct PendingCall {
    pub(crate) request_id: u64,
    pub(crate) resolver: AnyResolver,
    pub(crate) kind: RpcKind,
    pub(crate) started: Instant,
    pub(crate) deadline: Option<Instant>,
}

/// An InstallSnapshot body being received.
pub(crate) struct SnapshotIn {
    pub(crate) stream: Arc<SnapshotStream>,
    pub(crate) size: u64,
    pub(crate) received: u64,
}

pub(crate) struct Inbound {
    /// Requests handed to the Raft side and not yet answered.
    pub(crate) unanswered: usize,
    pub(crate) snapshots: HashMap<u64, SnapshotIn>,
}

pub(crate) struct Pooled {
    pub(crate) pool_key: (SocketAddr, Lane),
    pub(crate) call: Option<PendingCall>,
}

pub(crate) struct PipelineConn {
    pub(crate) id: u64,
    pub(crate) shared: Arc<PipelineShared>,
    /// Requests sent and not yet answered, in send order.
    pub(crate) inflight: VecDeque<InFlight>,
}

pub(crate) struct InFlight {
    pub(crate) request_id: u64,
    /// The pipeline's sequence number for it.
    pub(crate) seq: u64,
    pub(crate) sent: Instant,
    pub(crate) deadline: Option<Instant>,
}

pub(crate) struct SnapshotOut {
    pub(crate) id: u64,
    pub(crate) call: Option<PendingCall>,
    pub(crate) feed: Arc<SnapshotFeed>,
    pub(crate) request_id: u64,
    pub(crate) size: u64,
    pub(crate) sent: u64,
    /// The last chunk (END_STREAM) is queued.
    pub(crate) body_done: bool,
    /// The reactor asked the pump for more and waits for `SnapshotReady`.
    pub(crate) waiting_for_feed: bool,
}

/// What a connection is for.
pub(crate) enum Role {
    /// Accepted: serves requests.
    Inbound(Inbound),
    /// Dialled for request/response calls, one at a time; pooled when idle.
    Pooled(Pooled),
    /// Dialled for one pipeline.
    Pipeline(PipelineConn),
    /// Dialled for one snapshot transfer, closed afterwards.
    SnapshotOut(SnapshotOut),
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket is full; a writable event will come.
    Blocked,
    /// The write budget for this turn ran out.
    Budget,
}

/// How a read attempt ended.
pub(crate) enum ReadOutcome {
    /// The socket has nothing more for now.
    Drained,
    /// The read budget ran out with data possibly left: read again next turn.
    Budget,
    /// The peer closed its side.
    Eof,
    Error(io::Error),
}

pub(crate) struct Conn {
    pub(crate) key: u64,
    pub(crate) stream: Box<dyn Stream>,
    pub(crate) peer: SocketAddr,
    pub(crate) role: Role,
    pub(crate) decoder: FrameDecoder,
    pub(crate) read_buf: BytesMut,
    read_size: usize,
    pub(crate) send: SendQueue,
    /// Outbound: the connect completed.
    pub(crate) connected: bool,
    /// A snapshot reader fell behind: do not read until it catches up.
    pub(crate) read_paused: bool,
    /// close_streams() asked this inbound connection to close once it has answered everything.
    pub(crate) close_when_idle: bool,
    /// Queued on the reactor's write list this turn.
    pub(crate) dirty: bool,
    /// Queued on the reactor's read-again list.
    pub(crate) read_again: bool,
    /// The instant of this connection's deadline timer entry, if one is armed.
    pub(crate) armed: Option<Instant>,
    /// An event reported the peer's end of stream (or an error): read until the socket says so.
    pub(crate) peer_done: bool,
    /// Close once everything queued has been written (close_streams on an answered connection).
    pub(crate) close_after_flush: bool,
}

impl Conn {
    pub(crate) fn new(
        key: u64,
        stream: Box<dyn Stream>,
        peer: SocketAddr,
        role: Role,
        decoder: FrameDecoder,
        connected: bool,
    ) -> Conn {
        Conn {
            key,
            stream,
            peer,
            role,
            decoder,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
            send: SendQueue::new(),
            connected,
            read_paused: false,
            close_when_idle: false,
            dirty: false,
            read_again: false,
            armed: None,
            peer_done: false,
            close_after_flush: false,
        }
    }

    /// Read up to `budget` bytes into the read buffer (frames are cut out by the caller).
    ///
    /// With `until_would_block` false, a short read is taken to mean the socket is empty (one
    /// syscall saved per event: edge-triggered readiness reports data that arrives later). When
    /// the event also reported the peer's end of stream, that end is already queued behind the
    /// data and will not be reported again, so the caller passes true and we read on to it.
    pub(crate) fn fill(
        &mut self,
        budget: usize,
        until_would_block: bool,
        metrics: &TransportMetrics,
    ) -> ReadOutcome {
        let mut total = 0;
        loop {
            if total >= budget {
                return ReadOutcome::Budget;
            }
            // Read at least what the decoder reserved for a frame in progress.
            let spare = self.read_buf.capacity() - self.read_buf.len();
            let want = self.read_size.max(spare.min(MAX_READ));
            let result = read_into_spare(&mut *self.stream, &mut self.read_buf, want);
            match result {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    total += n;
                    add(&metrics.bytes_read, n as u64);
                    add(&metrics.reads, 1);
                    self.read_size = if n == want {
                        (want * 2).min(MAX_READ)
                    } else {
                        (n * 2).clamp(MIN_READ, MAX_READ)
                    };
                    if n < want && !until_would_block {
                        // A short read means the socket is (very likely) empty; edge-triggered
                        // readiness will tell us when more arrives.
                        return ReadOutcome::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Error(e),
            }
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

    /// The earliest deadline among the calls waiting on this connection.
    pub(crate) fn earliest_deadline(&self) -> Option<Instant> {
        match &self.role {
            Role::Pooled(p) => p.call.as_ref().and_then(|c| c.deadline),
            Role::SnapshotOut(s) => s.call.as_ref().and_then(|c| c.deadline),
            // Sent in order with the same timeout: the oldest expires first.
            Role::Pipeline(p) => p.inflight.front().and_then(|f| f.deadline),
            Role::Inbound(_) => None,
        }
    }

    /// Write queued output until it is all written, the socket is full, or `budget` bytes went
    /// out (the rest waits for the next turn, so one bulk connection cannot hold the reactor).
    pub(crate) fn flush(
        &mut self,
        budget: usize,
        metrics: &TransportMetrics,
    ) -> io::Result<Flushed> {
        let mut total = 0;
        while !self.send.is_empty() {
            if total >= budget {
                return Ok(Flushed::Budget);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.send.io_slices(&mut slices);
            match self.stream.write_vectored(&slices[..n]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ));
                }
                Ok(written) => {
                    total += written;
                    add(&metrics.bytes_written, written as u64);
                    add(&metrics.writes, 1);
                    self.send.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }
}

#[cfg(test)]
mod tests {
    //! `read_into_spare` commits bytes a stream wrote into uninitialized memory; run under Miri
    //! (`cargo +nightly miri test --lib net::conn`) these tests check it never exposes an
    //! uninitialized byte.

    use super::*;

    /// A stream that hands out a fixed byte pattern, a few bytes per read.
    struct Pattern {
        next: u8,
        per_read: usize,
    }

    impl Read for Pattern {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("the reactor reads through read_uninit")
        }
    }

    impl Write for Pattern {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl mio::event::Source for Pattern {
        fn register(
            &mut self,
            _: &mio::Registry,
            _: mio::Token,
            _: mio::Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn reregister(
            &mut self,
            _: &mio::Registry,
            _: mio::Token,
            _: mio::Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn deregister(&mut self, _: &mio::Registry) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Pattern {
        fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
            let n = buf.len().min(self.per_read);
            for slot in &mut buf[..n] {
                slot.write(self.next);
                self.next = self.next.wrapping_add(1);
            }
            Ok(n)
        }
        fn take_error(&self) -> io::Result<Option<io::Error>> {
            Ok(None)
        }
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }

    #[test]
    fn reads_into_spare_capacity_commit_exactly_what_was_read() {
        let mut stream = Pattern {
            next: 0,
            per_read: 7,
        };
        let mut buf = BytesMut::new();
        let mut expected = Vec::new();
        for want in [1, 3, 7, 20, 0, 64] {
            let n = read_into_spare(&mut stream, &mut buf, want).unwrap();
            assert_eq!(n, want.min(7));
            for _ in 0..n {
                expected.push(expected.len() as u8);
            }
            assert_eq!(&buf[..], &expected[..]);
        }
        // Frames split off a buffer read this way stay intact as it keeps growing.
        let first = buf.split_to(5).freeze();
        read_into_spare(&mut stream, &mut buf, 100).unwrap();
        assert_eq!(&first[..], &[0, 1, 2, 3, 4]);
    }
}
