//! TLS (feature `tls`): the [`Session`] every driver's TLS connections share (the rustls
//! session, its refusals logged once, the peer's identity reported once, how it is made for a
//! dial or an accept), and [`TlsStream`], that session over a non-blocking mio socket behind the
//! [`Stream`] seam, so the mio driver (on its thread or on a runtime) runs TLS connections with
//! the same code as plain ones. The io_uring driver moves a session's bytes itself
//! (`uring/tls.rs`). The handshake needs no step of its own: it advances whenever the driver
//! reads or writes, in the driver's loop.
//!
//! What the driver sees: reads hand out plaintext rustls has opened (after pulling and opening
//! records from the socket as needed); writes seal the engine's bytes into records and write
//! them out; records a full socket left behind are written first on the next write (or by
//! [`Stream::flush_pending`]), so a full socket still holds the engine back. Messages TLS sends
//! on its own (the handshake's flights, alerts) go out from the read that produced them.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::Connection;

use super::stream::Stream;
use crate::Error;
use crate::tls::{Authorize, PeerIdentity, VerifiedPeer};

/// Ciphertext read from the socket at once. rustls pulls at most 4 KiB per `read_tls`; reading
/// the socket through it costs a system call per 4 KiB (raftnet-bench --tls append-1m: about
/// 150 µs of system time per 1 MiB append more than this buffer). One read of up to this much
/// feeds it instead, at the cost of copying the ciphertext once more (a memcpy).
const CIPHERTEXT_READ: usize = 64 * 1024;

/// What a TLS connection is beyond its socket, for either driver: the rustls session, and what
/// raftnet keeps track of about it (a refusal logged once, the peer's identity reported once).
/// The readiness drivers wrap it with their socket in [`TlsStream`]; the io_uring driver keeps
/// it beside its connection and moves the bytes itself (`uring/tls.rs`).
pub(crate) struct Session {
    pub(crate) tls: Connection,
    /// The handshake failed (logged once).
    failed: bool,
    /// The session has handed out plaintext: a refusal now is not the handshake's.
    pub(crate) carried: bool,
    /// The peer's address, once the socket knew it (a dial's only once connected): a peer that
    /// refuses and resets leaves a socket that no longer tells it.
    pub(crate) peer: Option<SocketAddr>,
    /// The authorization hook of the configuration this connection was made with, handed to
    /// the engine with the peer's identity.
    authorize: Option<Authorize>,
    /// The peer's identity was handed to the engine (once, after the handshake).
    identity_reported: bool,
    /// Plaintext bytes sealed since [`records`](Session::records) last took the records.
    sealed: usize,
}

impl Session {
    pub(crate) fn new(tls: impl Into<Connection>, authorize: Option<Authorize>) -> Session {
        Session {
            tls: tls.into(),
            failed: false,
            carried: false,
            peer: None,
            authorize,
            identity_reported: false,
            sealed: 0,
        }
    }

    /// A dial's session with `tls` (the configuration in force now, read once per connection),
    /// meant to reach `server` at `addr`.
    pub(crate) fn dial(
        tls: &crate::tls::TlsConfig,
        addr: SocketAddr,
        server: Option<&crate::transport::ServerId>,
    ) -> io::Result<Session> {
        let tls = tls.current();
        let client = rustls::ClientConnection::new(
            tls.client_config().clone(),
            tls.server_name(addr, server),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Session::new(client, None))
    }

    /// An accepted connection's session with `tls` (the configuration in force now).
    pub(crate) fn accept(tls: &crate::tls::TlsConfig) -> io::Result<Session> {
        let tls = tls.current();
        let server = rustls::ServerConnection::new(tls.server_config().clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Session::new(server, tls.authorizer().cloned()))
    }

    /// A client session dialling `server_id` at `server_addr` and a server session to accept
    /// it, each [`unbounded`](Session::unbounded) and knowing its peer's address, as the io_uring
    /// driver makes them: for the tests and the fuzz target that run the two in memory.
    pub(crate) fn memory_pair(
        client: &crate::tls::TlsConfig,
        server: &crate::tls::TlsConfig,
        server_id: &str,
        client_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> (Session, Session) {
        let server_id = crate::transport::ServerId::from(server_id);
        let mut client = Session::dial(client, server_addr, Some(&server_id))
            .expect("a client session")
            .unbounded();
        client.peer = Some(server_addr);
        let mut server = Session::accept(server)
            .expect("a server session")
            .unbounded();
        server.peer = Some(client_addr);
        (client, server)
    }

    /// The peer's records were refused (a certificate not vouched for, or for another server; a
    /// record that does not open; an alert: the peer refused ours): log it, and fail the
    /// connection with rustls' reason, carried as an [`Error::Tls`] (which `Error::io` hands to
    /// the calls that waited on it). The alert rustls queued is the caller's to write first.
    pub(crate) fn refused(&mut self, error: rustls::Error) -> io::Error {
        let peer = self.peer;
        // In TLS 1.3 a client's handshake is done before the server has checked its
        // certificate: the server's alert refusing it comes after, before any data.
        let handshake = self.tls.is_handshaking() || !self.carried;
        if !std::mem::replace(&mut self.failed, true) {
            let side = match self.tls {
                Connection::Client(_) => "a dialled",
                Connection::Server(_) => "an accepted",
            };
            if handshake {
                tracing::warn!(?peer, %error, "TLS handshake refused on {side} connection");
            } else {
                tracing::warn!(?peer, %error, "TLS record refused on {side} connection");
            }
        }
        let refusal = Error::Tls {
            peer,
            handshake,
            reason: error,
        };
        io::Error::new(io::ErrorKind::InvalidData, refusal)
    }

    /// An error of rustls' `read_tls` (from memory, it fails only at rustls' own limits): a
    /// record it will not buffer, which only a handshake message over its 64 KiB limit makes
    /// (the plaintext is always taken out before more ciphertext goes in). A refusal like any
    /// other ([`refused`](Session::refused): logged, the session failed), not a bare IO error.
    pub(crate) fn unbuffered(&mut self, error: io::Error) -> io::Error {
        if error.kind() != io::ErrorKind::InvalidData {
            return error;
        }
        self.refused(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::HandshakePayloadTooLarge,
        ))
    }

    /// After the handshake: a bool test per read until then, then once more. A peer without
    /// a certificate (a server configuration of the application's own that does not ask for
    /// one) gets an identity naming no server, so the checks fail closed: a request claiming a
    /// sender is refused, and the hook decides on an empty identity.
    pub(crate) fn take_verified_peer(&mut self, addr: Option<SocketAddr>) -> Option<VerifiedPeer> {
        if self.identity_reported || self.tls.is_handshaking() {
            return None;
        }
        self.identity_reported = true;
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let identity = match self.tls.peer_certificates().and_then(|chain| chain.first()) {
            Some(certificate) => PeerIdentity::from_certificate(certificate, addr),
            None => PeerIdentity::new(Vec::new(), addr),
        };
        Some(VerifiedPeer {
            identity: Arc::new(identity),
            authorize: self.authorize.clone(),
        })
    }

    /// Lift rustls' buffer limit, for a driver that bounds what it seals itself (the io_uring
    /// driver, `uring/tls.rs`): with the limit, sealing could take part of what the driver took
    /// from the engine's queue, and the rest would be lost.
    pub(crate) fn unbounded(mut self) -> Session {
        self.tls.set_buffer_limit(None);
        self
    }

    /// Give `ciphertext` to the session and append every byte it opens to `plaintext`. An `Err`
    /// is a refusal ([`Session::refused`], logged), with the alert for the peer queued in the
    /// session ([`Session::records`]).
    pub(crate) fn open(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> io::Result<Opened> {
        let mut opened = Opened {
            plaintext: 0,
            peer_closed: false,
        };
        loop {
            // rustls takes records until its own buffer is full; opening them (below) empties it.
            let taken = if ciphertext.is_empty() {
                0
            } else {
                self.tls
                    .read_tls(&mut ciphertext)
                    .map_err(|e| self.unbuffered(e))?
            };
            let state = match self.tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => return Err(self.refused(e)),
            };
            let ready = state.plaintext_bytes_to_read();
            opened.peer_closed |= state.peer_has_closed();
            if ready > 0 {
                // Copied straight from rustls' buffer (a `read` would need the room zeroed
                // first: a second pass over every byte).
                plaintext.reserve(ready);
                let mut reader = self.tls.reader();
                let mut left = ready;
                while left > 0 {
                    let chunk = reader.fill_buf()?;
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len().min(left);
                    plaintext.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    left -= n;
                }
                opened.plaintext += ready - left;
                self.carried = true;
            }
            // Done, or rustls takes no more (after the peer's close_notify: what follows it is
            // not part of the session).
            if ready == 0 && (ciphertext.is_empty() || taken == 0) {
                return Ok(opened);
            }
        }
    }

    /// Seal `pieces` into records (all of them: an [`unbounded`](Session::unbounded) session
    /// never takes part of a piece); the bytes sealed.
    pub(crate) fn seal(&mut self, pieces: &mut Vec<Bytes>) -> io::Result<usize> {
        let sealed = self.seal_pieces(pieces)?;
        self.sealed += sealed;
        Ok(sealed)
    }

    fn seal_pieces(&mut self, pieces: &mut Vec<Bytes>) -> io::Result<usize> {
        // In one write: rustls fills each record across the pieces (up to 16 KiB), where a
        // write per piece would end a record at every piece's end.
        let total: usize = pieces.iter().map(Bytes::len).sum();
        let mut slices: Vec<IoSlice<'_>> = pieces
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| IoSlice::new(p))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = self.tls.writer().write_vectored(slices)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        pieces.clear();
        Ok(total)
    }

    /// The records the session has ready to go out, as one buffer (`None` if there are none),
    /// allocated once for what was sealed since the last call (not grown as it fills).
    pub(crate) fn records(&mut self) -> io::Result<Option<Bytes>> {
        let sealed = std::mem::take(&mut self.sealed);
        if !self.tls.wants_write() {
            return Ok(None);
        }
        // A record carries up to 16 KiB, with at most 22 bytes of header, type and tag (TLS
        // 1.3; 1.2's AES-GCM adds 29); the handshake's flights and alerts fit in the rest.
        let records = sealed / (16 * 1024) + 1;
        let mut out = Vec::with_capacity(sealed + records * 29 + 4096);
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out)?;
        }
        Ok(Some(Bytes::from(out)))
    }

    /// Whether closing should tell the peer the session ended on purpose (close_notify): not
    /// before a session exists (a peer that never completed the handshake, a stall, a port scan,
    /// gets only the TCP stream's end) nor after a refusal (the alert said why).
    pub(crate) fn ends_with_close_notify(&self) -> bool {
        !self.failed && !self.tls.is_handshaking()
    }
}

/// What [`Session::open`] found.
pub(crate) struct Opened {
    /// Plaintext bytes appended to the caller's buffer.
    pub(crate) plaintext: usize,
    /// The peer ended the session (close_notify): the stream's end, once the plaintext is read.
    pub(crate) peer_closed: bool,
}

/// A TLS connection over a non-blocking TCP socket.
pub(crate) struct TlsStream {
    tcp: mio::net::TcpStream,
    session: Session,
    /// Ciphertext read from the socket (allocated at the first read, so a connection that never
    /// receives anything does not hold it); `ciphertext[start..end]` is not yet given to rustls.
    ciphertext: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// Plaintext rustls has opened and not handed out yet.
    plaintext: usize,
    /// The peer ended its side (close_notify, or the TCP stream's end): once `plaintext` is
    /// read, reads report the end.
    peer_closed: bool,
}

impl TlsStream {
    pub(crate) fn new(tcp: mio::net::TcpStream, session: Session) -> TlsStream {
        TlsStream {
            tcp,
            session,
            ciphertext: None,
            start: 0,
            end: 0,
            plaintext: 0,
            peer_closed: false,
        }
    }

    /// Write out the records rustls holds: `Ok(true)` once none is left, `Ok(false)` if the
    /// socket is full.
    fn write_records(&mut self) -> io::Result<bool> {
        self.remember_peer();
        while self.session.tls.wants_write() {
            match self.session.tls.write_tls(&mut self.tcp) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ));
                }
                Ok(_) => {}
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

    /// Pull records from the socket and open them; `WouldBlock` if the socket had none.
    fn read_records(&mut self) -> io::Result<()> {
        self.remember_peer();
        let ciphertext = self
            .ciphertext
            .get_or_insert_with(|| vec![0; CIPHERTEXT_READ].into_boxed_slice());
        if self.start == self.end {
            match (&self.tcp).read(ciphertext) {
                Ok(0) => self.peer_closed = true,
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) => return Err(e),
            }
        }
        if self.start < self.end {
            // From memory: fails only for rustls' own limits (`Session::unbuffered`), as the
            // caller reads every opened byte before the next call.
            self.start += self
                .session
                .tls
                .read_tls(&mut &ciphertext[self.start..self.end])
                .map_err(|e| self.session.unbuffered(e))?;
        }
        let state = match self.session.tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => return Err(self.refused(e)),
        };
        self.plaintext = state.plaintext_bytes_to_read();
        if state.peer_has_closed() {
            self.peer_closed = true;
        }
        // The handshake's next flight (or an alert, a key update): nothing else would write it.
        if self.session.tls.wants_write() {
            self.write_records()?;
        }
        Ok(())
    }

    /// The peer's records were refused: tell the peer why (the alert rustls queued, as far as
    /// the socket takes it), then [`Session::refused`].
    fn refused(&mut self, error: rustls::Error) -> io::Error {
        let _ = self.write_records();
        self.session.refused(error)
    }
}

// SAFETY: `read_uninit` reports exactly the bytes it copied into `buf` (from rustls' buffer of
// opened plaintext), never more than `buf` holds.
#[allow(unsafe_code)]
unsafe impl Stream for TlsStream {
    fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.plaintext > 0 {
                // Copied straight from rustls' buffer, a record's plaintext at a time, as far as
                // `buf` holds: a `read` would need the room zeroed first, a second pass over
                // every byte (2 % of a TLS append-1m's CPU).
                let mut reader = self.session.tls.reader();
                let mut filled = 0;
                while filled < buf.len() && self.plaintext > 0 {
                    let chunk = reader.fill_buf()?;
                    if chunk.is_empty() {
                        self.plaintext = 0;
                        break;
                    }
                    let n = chunk.len().min(buf.len() - filled);
                    // SAFETY: `chunk` holds at least `n` initialized bytes and `buf` has room
                    // for `n` after `filled`; they cannot overlap (rustls' buffer against the
                    // caller's), and `MaybeUninit<u8>` has `u8`'s layout.
                    #[allow(unsafe_code)]
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            chunk.as_ptr(),
                            buf[filled..].as_mut_ptr().cast::<u8>(),
                            n,
                        );
                    }
                    reader.consume(n);
                    filled += n;
                    self.plaintext = self.plaintext.saturating_sub(n);
                }
                if filled == 0 {
                    continue;
                }
                self.session.carried = true;
                return Ok(filled);
            }
            if self.peer_closed {
                return Ok(0);
            }
            self.read_records()?;
        }
    }

    fn flush_pending(&mut self) -> io::Result<bool> {
        self.write_records()
    }

    fn wants_write(&self) -> bool {
        self.session.tls.wants_write()
    }

    /// A record holds up to 16 KiB, and rustls pulls a bounded amount from the socket per
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
        // rustls' buffer limit.
        let accepted = self.session.tls.writer().write_vectored(bufs)?;
        if accepted == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // The handshake has not completed and its buffer is full.
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
            self.session.tls.send_close_notify();
            let _ = self.write_records();
        }
    }
}

// Not under Miri: ring's assembly does not run there.
#[cfg(all(test, not(miri)))]
mod tests;
