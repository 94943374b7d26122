//! TLS (feature `tls`): the [`Session`] every driver's TLS connections share (`session.rs`: the
//! rustls session on its unbuffered API, its refusals logged once, the peer's identity reported
//! once, how it is made for a dial or an accept), and [`TlsStream`], that session over a
//! non-blocking mio socket behind the [`Stream`] seam, so the mio driver (on its thread or on a
//! runtime) runs TLS connections with the same code as plain ones. The io_uring driver moves a
//! session's bytes itself (`uring/tls.rs`). The handshake needs no step of its own: it advances
//! whenever the driver reads or writes, in the driver's loop.
//!
//! What the driver sees: a read takes up to 64 KiB of ciphertext from the socket into the
//! stream's buffer, where the session opens the records and copies their plaintext straight
//! into the engine's buffer, as far as it has room (records not opened yet wait in the stream's
//! buffer for the next read); writes seal the engine's bytes into the session's records and
//! write them out; records a full socket left behind are written first on the next write (or by
//! [`Stream::flush_pending`]), so a full socket still holds the engine back. Messages TLS sends
//! on its own (the handshake's flights, alerts) go out from the read that produced them.

use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use super::stream::Stream;
use crate::tls::VerifiedPeer;

mod session;

pub(crate) use self::session::{Opened, Plaintext, Session};

/// Ciphertext read from the socket at once (the readiness drivers' [`TlsStream`]): records are
/// opened where they lie in it, so a large read costs no more copying than a small one, and a
/// system call brings several records.
const CIPHERTEXT_READ: usize = 64 * 1024;

/// Plaintext the readiness drivers' stream seals per write (its records wait in the session
/// until the socket takes them): what rustls' buffered API took at once.
const SEAL_LIMIT: usize = 64 * 1024;

/// A TLS connection over a non-blocking TCP socket.
pub(crate) struct TlsStream {
    tcp: mio::net::TcpStream,
    session: Session,
    /// Ciphertext read from the socket (allocated at the first read, so a connection that never
    /// receives anything does not hold it); `ciphertext[start..end]` holds whole records not
    /// opened yet (the caller's buffer was full).
    ciphertext: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The peer ended its side (close_notify, or the TCP stream's end): once the plaintext is
    /// read, reads report the end.
    peer_closed: bool,
}

/// A caller's read buffer as [`Plaintext`]'s room.
struct Uninit<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

impl Plaintext for Uninit<'_> {
    fn room(&self) -> usize {
        self.buf.len() - self.filled
    }

    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.room());
        // SAFETY: `bytes` holds `n` initialized bytes and `buf` has room for `n` after
        // `filled`; they cannot overlap (a record's payload against the caller's buffer), and
        // `MaybeUninit<u8>` has `u8`'s layout.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.buf[self.filled..].as_mut_ptr().cast::<u8>(),
                n,
            );
        }
        self.filled += n;
    }
}

impl TlsStream {
    pub(crate) fn new(tcp: mio::net::TcpStream, session: Session) -> TlsStream {
        TlsStream {
            tcp,
            session,
            ciphertext: None,
            start: 0,
            end: 0,
            peer_closed: false,
        }
    }

    /// Write out the records the session holds: `Ok(true)` once none is left, `Ok(false)` if
    /// the socket is full.
    fn write_records(&mut self) -> io::Result<bool> {
        self.remember_peer();
        while self.session.wants_write() {
            match (&self.tcp).write(self.session.pending_records()) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ));
                }
                Ok(n) => self.session.records_sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Note the peer's address while the socket can tell it (a branch per call once known).
    fn remember_peer(&mut self) {
        if self.session.peer.is_none() {
            self.session.peer = self.tcp.peer_addr().ok();
        }
    }

    /// Open records into `out`: those read before first, then a read of the socket (if `out`
    /// still has room and the stream has not ended); `WouldBlock` if the socket had none.
    fn read_records(&mut self, out: &mut Uninit<'_>) -> io::Result<()> {
        self.remember_peer();
        let ciphertext = self
            .ciphertext
            .get_or_insert_with(|| vec![0; CIPHERTEXT_READ].into_boxed_slice());
        // Plaintext opened before comes first: no socket read may hold it back.
        if self.start == self.end && !self.session.has_plaintext() && !self.peer_closed {
            (self.start, self.end) = (0, 0);
            match (&self.tcp).read(ciphertext) {
                Ok(0) => self.peer_closed = true,
                Ok(n) => self.end = n,
                Err(e) => return Err(e),
            }
        }
        let opened = self
            .session
            .open_in_place(&mut ciphertext[self.start..self.end], out);
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                // Tell the peer why (the alert queued), as far as the socket takes it.
                let _ = self.write_records();
                return Err(e);
            }
        };
        self.start += opened.consumed;
        if opened.peer_closed {
            self.peer_closed = true;
        }
        // The handshake's next flight (or an alert, a key update, what waited for the
        // handshake): nothing else would write it.
        if self.session.wants_write() {
            self.write_records()?;
        }
        Ok(())
    }
}

// SAFETY: `read_uninit` reports exactly the bytes it copied into `buf` (`Uninit::filled`:
// payloads of opened records), never more than `buf` holds.
#[allow(unsafe_code)]
unsafe impl Stream for TlsStream {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut out = Uninit { buf, filled: 0 };
        loop {
            let result = self.read_records(&mut out);
            if out.filled > 0 {
                self.session.carried = true;
                // A `WouldBlock` after plaintext is for the next read to find.
                return match result {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                    _ => Ok(out.filled),
                };
            }
            result?;
            if self.peer_closed && self.start == self.end && !self.session.has_plaintext() {
                return Ok(0);
            }
        }
    }

    fn flush_pending(&mut self) -> io::Result<bool> {
        self.write_records()
    }

    fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// A record holds up to 16 KiB, and the stream reads a bounded amount from the socket per
    /// read: a short read says nothing about what the socket still holds.
    fn buffers_reads(&self) -> bool {
        true
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp.take_error()
    }

    fn take_verified_peer(&mut self) -> Option<VerifiedPeer> {
        let addr = self.tcp.peer_addr().ok();
        self.session.take_verified_peer(addr)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        &mut self.tcp
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records a full socket left behind go first; while they cannot, the engine waits.
        if !self.write_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Sealed into records (or, during the handshake, held until it completes), up to
        // what rustls' buffered API took at once.
        let accepted = self
            .session
            .seal_slices(&mut bufs.iter().map(|b| &b[..]), SEAL_LIMIT)?;
        if accepted == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // The handshake has not completed and what it holds is at its bound.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // A full socket here is fine: the bytes are accepted, and the records go out with the
        // next write or flush.
        self.write_records()?;
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.write_records()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Drop for TlsStream {
    /// Tell the peer the session ended on purpose (close_notify), as far as the socket takes it
    /// without waiting. Not before a session exists: a peer that never completed the handshake
    /// (a stall, a port scan) gets only the TCP stream's end.
    fn drop(&mut self) {
        if self.session.ends_with_close_notify() {
            self.session.send_close_notify();
            let _ = self.write_records();
        }
    }
}

// Not under Miri: ring's assembly does not run there.
#[cfg(all(test, not(miri)))]
mod tests;
