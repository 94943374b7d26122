//! The stream seam: what the readiness drivers (mio on a thread or on a runtime) read and write
//! a connection through, and [`Streams`], the one place streams are made: plain TCP, or, with a
//! [`TlsConfig`](crate::tls::TlsConfig) (feature `tls`), TLS over it (`tls.rs`); the drivers do
//! not change.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use bytes::BytesMut;

use crate::engine::Flushed;
use crate::metrics::{TransportMetrics, add};
use crate::transport::ServerId;
use crate::wire::SendQueue;

/// A connection's byte stream, as a readiness driver uses it.
///
/// Besides reading and writing, a stream tells the driver about bytes it holds itself (a TLS
/// layer holds ciphertext it sealed and plaintext it opened), so that the driver's decisions
/// follow the stream's state, as rustls' mio example computes interest from `wants_read` and
/// `wants_write`: flush while [`wants_write`](Stream::wants_write), read on past a short read
/// while [`buffers_reads`](Stream::buffers_reads).
///
/// # Safety
///
/// [`read_uninit`](Stream::read_uninit) must return `Ok(n)` only with `n <= buf.len()` and the
/// first `n` bytes of `buf` initialized: the driver then treats them as initialized (it extends
/// a buffer's length over them without zeroing it first).
#[allow(unsafe_code)]
pub(crate) unsafe trait Stream: Write + Send {
    /// Read into uninitialized memory (so the read buffer is not zeroed first).
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;

    /// Write out what the stream holds of its own (sealed TLS records). `Ok(true)` once nothing
    /// is left; `WouldBlock` is reported as `Ok(false)`.
    fn flush_pending(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Whether the stream holds output of its own, to be flushed when the socket is writable
    /// even with nothing in the engine's queue.
    fn wants_write(&self) -> bool {
        false
    }

    /// Whether a read shorter than asked may leave bytes inside the stream (decrypted TLS
    /// records): the driver then reads on until the stream says `WouldBlock`, since no
    /// readiness edge will announce them.
    fn buffers_reads(&self) -> bool {
        false
    }

    /// Feature `tls`: the peer's verified identity, once, when the stream first knows it (a
    /// TLS stream after its handshake); `None` before, after, and on plain streams. The driver
    /// asks after each read, before the engine sees the bytes read, so the engine knows who
    /// sent a request before it serves it.
    #[cfg(feature = "tls")]
    fn take_verified_peer(&mut self) -> Option<crate::tls::VerifiedPeer> {
        None
    }

    /// A pending socket error (how a failed non-blocking connect reports itself).
    fn take_error(&self) -> io::Result<Option<io::Error>>;

    /// The peer's address; `NotConnected` while a connect is still in progress.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// The socket, for registering with mio.
    fn source(&mut self) -> &mut dyn mio::event::Source;
}

// SAFETY: `recv` into a `MaybeUninit` slice initializes the bytes it reports, as `recv(2)` does
// (socket2's contract for `SockRef::recv`), and never reports more than the slice's length.
#[allow(unsafe_code)]
unsafe impl Stream for mio::net::TcpStream {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        socket2::SockRef::from(&*self).recv(buf)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::peer_addr(self)
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        self
    }
}

/// Makes every stream a readiness driver uses: the dialled ones and the accepted ones. The one
/// place a TLS layer (or any other wrapper) is put around the socket.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// TLS for every connection, dialled and accepted.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl Streams {
    /// The streams `config` asks for.
    pub(crate) fn new(config: &crate::config::Config) -> Streams {
        #[cfg(not(feature = "tls"))]
        let _ = config;
        Streams {
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
        }
    }

    /// Start a non-blocking connect to `addr`, meant to reach `server` (with TLS, whose
    /// certificate must say so: see [`TlsConfig`](crate::tls::TlsConfig)).
    pub(crate) fn connect(
        &self,
        addr: SocketAddr,
        server: Option<&ServerId>,
    ) -> io::Result<Box<dyn Stream>> {
        #[cfg(not(feature = "tls"))]
        let _ = server;
        let stream = mio::net::TcpStream::connect(addr)?;
        // Raft's messages are latency-bound; the engine batches writes itself.
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let session = super::tls::Session::dial(tls, addr, server)?;
            return Ok(Box::new(super::tls::TlsStream::new(stream, session)));
        }
        Ok(Box::new(stream))
    }

    /// Wrap an accepted socket.
    pub(crate) fn accept(&self, stream: mio::net::TcpStream) -> io::Result<Box<dyn Stream>> {
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let session = super::tls::Session::accept(tls)?;
            return Ok(Box::new(super::tls::TlsStream::new(stream, session)));
        }
        Ok(Box::new(stream))
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
    // `Stream`'s contract, checked where it is cheap: a stream claiming more than it was given
    // would make the `set_len` below unsound.
    let n = n.min(want);
    // SAFETY: `read_uninit` initialized the first `n` bytes of the spare capacity (the `Stream`
    // safety contract), `n <= want <= capacity - len`, so the first `len + n` bytes are
    // initialized.
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(len + n);
    }
    Ok(n)
}

/// Reads start this small so a quiet connection does not reserve a large buffer for each small
/// message, and double while reads keep filling them.
pub(crate) const MIN_READ: usize = 4 * 1024;
/// The largest single read: big enough that bulk transfers take few syscalls.
const MAX_READ: usize = 256 * 1024;
/// Slices handed to one `writev` (Linux's `IOV_MAX` is 1024; more slices buy nothing).
const MAX_IOVECS: usize = 64;

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

/// Read up to `budget` bytes from `stream` into `buf` (frames are cut out by the engine), as
/// much at a time as `size` says.
///
/// With `until_would_block` false, a short read is taken to mean the socket is empty (one
/// syscall saved per event: edge-triggered readiness reports data that arrives later). When the
/// event also reported the peer's end of stream, or the stream buffers reads of its own, the
/// caller passes true and we read on until the stream says so.
pub(crate) fn fill(
    stream: &mut dyn Stream,
    buf: &mut BytesMut,
    mut size: ReadSize<'_>,
    budget: usize,
    until_would_block: bool,
    metrics: &TransportMetrics,
) -> ReadOutcome {
    let mut total = 0;
    loop {
        if total >= budget {
            return ReadOutcome::Budget;
        }
        let want = match size.hint {
            Some(rest) => rest,
            None => {
                // Read at least what the codec reserved for a frame in progress.
                let spare = buf.capacity() - buf.len();
                (*size.adaptive).max(spare.min(MAX_READ))
            }
        };
        add(&metrics.system_calls, 1);
        match read_into_spare(stream, buf, want) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => {
                total += n;
                add(&metrics.bytes_read, n as u64);
                add(&metrics.reads, 1);
                match &mut size.hint {
                    Some(rest) => {
                        *rest -= n;
                        if *rest == 0 {
                            // What the codec asked for came: it cuts its frame out before the
                            // next read (a turn later), so that read starts a fresh buffer.
                            return ReadOutcome::Budget;
                        }
                    }
                    None => {
                        *size.adaptive = if n == want {
                            (want * 2).min(MAX_READ)
                        } else {
                            (n * 2).clamp(MIN_READ, MAX_READ)
                        };
                    }
                }
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

/// How much a [`fill`] reads at a time.
pub(crate) struct ReadSize<'a> {
    /// The connection's own read size: it doubles while reads fill it (up to 256 KiB) and
    /// follows short ones down, so a quiet connection does not keep large room.
    pub(crate) adaptive: &'a mut usize,
    /// What the codec asks the reads to take ([`Codec::read_hint`](crate::wire::Codec::read_hint)):
    /// exactly that much, after which the fill stops. The adaptive size is left as it was.
    pub(crate) hint: Option<usize>,
}

/// Write `queue` (then whatever the stream holds of its own) until it is all written, the socket
/// is full, or `budget` bytes went out (the rest waits for the next turn, so one bulk connection
/// cannot hold the driver).
pub(crate) fn flush(
    stream: &mut dyn Stream,
    queue: &mut SendQueue,
    budget: usize,
    metrics: &TransportMetrics,
) -> io::Result<Flushed> {
    let mut total = 0;
    while !queue.is_empty() {
        if total >= budget {
            return Ok(Flushed::Budget);
        }
        add(&metrics.system_calls, 1);
        // One slice (a lone answer, a heartbeat): `write`, which a socket serves with
        // `send(2)`; `writev(2)` costs more per call for the same bytes (its vector is copied in
        // and checked, and it goes through the file's generic write path): 0.87 against 1.10 µs
        // of CPU per 32-byte write on these machines (BENCHMARKS.md). Nor is the vector built
        // for it: filling its 64 entries cost about 250 instructions per write (callgrind).
        let result = match queue.single_slice() {
            Some(slice) => stream.write(slice),
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                match queue.io_slices(&mut slices) {
                    1 => stream.write(&slices[0]),
                    n => stream.write_vectored(&slices[..n]),
                }
            }
        };
        match result {
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
                queue.advance(written);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if stream.wants_write() {
        add(&metrics.system_calls, 1);
        if !stream.flush_pending()? {
            return Ok(Flushed::Blocked);
        }
    }
    Ok(Flushed::All)
}

#[cfg(test)]
mod tests {
    //! `read_into_spare` commits bytes a stream wrote into uninitialized memory; run under Miri
    //! (`cargo +nightly miri test --lib driver::stream`) these tests check it never exposes an
    //! uninitialized byte.

    use super::*;
    use bytes::Bytes;

    /// A stream that hands out a fixed byte pattern, a few bytes per read, and takes every
    /// write whole, counting plain and vectored ones.
    #[derive(Default)]
    struct Pattern {
        next: u8,
        per_read: usize,
        plain_writes: usize,
        vectored_writes: usize,
    }

    impl Write for Pattern {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.plain_writes += 1;
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.vectored_writes += 1;
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    // SAFETY: `read_uninit` writes every byte it reports.
    #[allow(unsafe_code)]
    unsafe impl Stream for Pattern {
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
        fn source(&mut self) -> &mut dyn mio::event::Source {
            unreachable!("not registered in these tests")
        }
    }

    #[test]
    fn reads_into_spare_capacity_commit_exactly_what_was_read() {
        let mut stream = Pattern {
            per_read: 7,
            ..Pattern::default()
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

    #[test]
    fn fill_stops_at_a_short_read_unless_told_to_drain() {
        let metrics = TransportMetrics::default();
        let mut stream = Pattern {
            per_read: 100,
            ..Pattern::default()
        };
        let mut buf = BytesMut::new();
        let mut read_size = MIN_READ;
        // A short read (100 of 4096) ends the fill: the socket is taken to be empty.
        let outcome = fill(
            &mut stream,
            &mut buf,
            ReadSize {
                adaptive: &mut read_size,
                hint: None,
            },
            1 << 20,
            false,
            &metrics,
        );
        assert!(matches!(outcome, ReadOutcome::Drained));
        assert_eq!(buf.len(), 100);
        // Told to read until the stream is empty, it reads on to the budget.
        let size = ReadSize {
            adaptive: &mut read_size,
            hint: None,
        };
        let outcome = fill(&mut stream, &mut buf, size, 1000, true, &metrics);
        assert!(matches!(outcome, ReadOutcome::Budget));
        assert_eq!(buf.len(), 1100);
        assert_eq!(metrics.reads.load(std::sync::atomic::Ordering::Relaxed), 11);
        assert_eq!(
            metrics
                .system_calls
                .load(std::sync::atomic::Ordering::Relaxed),
            11,
            "each read is a system call"
        );
    }

    /// A read the codec sized takes exactly that, then the fill stops (the codec cuts its frame
    /// before the next read), leaving the adaptive size alone; short reads go on for the rest
    /// when the stream is read until it would block.
    #[test]
    fn fill_reads_exactly_the_hint_then_stops() {
        let metrics = TransportMetrics::default();
        let mut stream = Pattern {
            per_read: 1000,
            ..Pattern::default()
        };
        let mut buf = BytesMut::new();
        let mut read_size = MIN_READ;
        let size = ReadSize {
            adaptive: &mut read_size,
            hint: Some(700),
        };
        let outcome = fill(&mut stream, &mut buf, size, 1 << 20, false, &metrics);
        assert!(matches!(outcome, ReadOutcome::Budget));
        assert_eq!(buf.len(), 700);
        assert_eq!(read_size, MIN_READ);
        // 2,500 bytes in reads of at most 1,000: three reads, then it stops.
        let size = ReadSize {
            adaptive: &mut read_size,
            hint: Some(2500),
        };
        let outcome = fill(&mut stream, &mut buf, size, 1 << 20, true, &metrics);
        assert!(matches!(outcome, ReadOutcome::Budget));
        assert_eq!(buf.len(), 3200);
        assert_eq!(metrics.reads.load(std::sync::atomic::Ordering::Relaxed), 4);
        assert_eq!(read_size, MIN_READ);
        let expected: Vec<u8> = (0..3200u32).map(|i| i as u8).collect();
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn flush_counts_each_write_as_a_system_call() {
        let metrics = TransportMetrics::default();
        let mut stream = Pattern::default();
        let mut queue = SendQueue::default();
        queue.buf.extend_from_slice(&[7; 300]);
        let flushed = flush(&mut stream, &mut queue, 1 << 20, &metrics).unwrap();
        assert!(matches!(flushed, Flushed::All));
        assert!(queue.is_empty());
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&metrics.writes), 1);
        assert_eq!(load(&metrics.bytes_written), 300);
        assert_eq!(load(&metrics.system_calls), 1);
    }

    #[test]
    fn one_slice_goes_out_by_a_plain_write_and_several_by_a_vectored_one() {
        let metrics = TransportMetrics::default();
        let mut stream = Pattern::default();
        let mut queue = SendQueue::default();
        queue.push_slice(&[1; 40]);
        flush(&mut stream, &mut queue, 1 << 20, &metrics).unwrap();
        assert_eq!((stream.plain_writes, stream.vectored_writes), (1, 0));

        queue.push_segment(Bytes::from_static(&[2; 4096]));
        queue.push_slice(&[3; 40]);
        assert_eq!(queue.segment_count(), 2);
        flush(&mut stream, &mut queue, 1 << 20, &metrics).unwrap();
        assert_eq!((stream.plain_writes, stream.vectored_writes), (1, 1));
        assert!(queue.is_empty());
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&metrics.bytes_written), 40 + 4096 + 40);
    }
}
