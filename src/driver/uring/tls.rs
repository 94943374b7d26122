//! TLS on the io_uring driver (feature `tls`): the same [`Session`] as the readiness drivers'
//! stream, but the driver moves the bytes: a receive's ciphertext is opened into the engine's
//! buffer where it lies ([`Session::open_in_place`]: in the connection's receive buffer, or,
//! for a multishot receive the engine wants at once, in the ring's buffer the kernel filled,
//! before that goes back to the ring), a send seals the engine's queued bytes
//! ([`Session::seal`]) and carries the records ([`Session::records`]). The driver takes at most
//! a send's budget of plaintext from the engine's queue at a time, and only once the previous
//! send completed and the handshake is done, so the session never holds more than one send's
//! worth of records. During the handshake the engine's bytes stay in its queue, where its
//! back-pressure already bounds them. Nothing writes a socket here but [`write_now`], for the
//! last records of a connection that closes.
//!
//! What is here is the driver's TLS half: opening what a receive brought ([`open`], and
//! [`UringDriver::opened`] acting on it), sealing a send ([`UringDriver::send_sealed`]), and
//! ending a session as its connection closes ([`end_session`]); `mod.rs` and `multishot.rs`
//! call into it where a connection has a session.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;

use super::conn::{Entry, MAX_IOVECS, entry, take_front};
use super::{UringDriver, WRITE_BUDGET};
use crate::driver::tls::{Opened, Session};
use crate::engine::{ConnKey, Flushed};
use crate::tls::VerifiedPeer;

/// What opening one receive's ciphertext gave: [`UringDriver::opened`] acts on it once the
/// buffers it was opened from and into are free again.
pub(super) struct Opening {
    /// The session was still handshaking before this ciphertext.
    handshaking: bool,
    opened: io::Result<Opened>,
    verified: Option<VerifiedPeer>,
    /// The session has records to send (the handshake's next flight, an alert).
    records_ready: bool,
}

/// Open `ciphertext` (a connection's receive buffer, or the bytes of a buffer of the ring,
/// either opened where they lie) into `plaintext`, the engine's buffer, for a connection
/// whose socket is `fd`. An engine buffer has room for all of it, so the session takes every
/// byte (a record cut short it copies and keeps until the rest comes). A refusal's alert is
/// written at once unless a send is in flight.
pub(super) fn open(
    session: &mut Session,
    fd: RawFd,
    send_in_flight: bool,
    ciphertext: &mut [u8],
    plaintext: &mut BytesMut,
) -> Opening {
    let handshaking = session.is_handshaking();
    let opened = session.open_in_place(ciphertext, plaintext);
    let peer = session.peer;
    let verified = session.take_verified_peer(peer);
    let records_ready = session.wants_write();
    if opened.is_err() && !send_in_flight {
        // The alert telling the peer why.
        write_now(session, fd);
    }
    Opening {
        handshaking,
        opened,
        verified,
        records_ready,
    }
}

impl UringDriver {
    /// Open the ciphertext `key`'s receive buffer holds ([`open`]), and act on it
    /// ([`opened`](Self::opened)).
    pub(super) fn open_received(&mut self, key: ConnKey) -> bool {
        let Some(entry) = entry(&mut self.table, key) else {
            return false;
        };
        let fd = entry.socket.as_raw_fd();
        let in_flight = entry.send.in_flight;
        let (Some(session), recv) = (entry.tls.as_deref_mut(), &mut *entry.recv) else {
            return false;
        };
        let Some((engine_buf, _)) = self.engine.recv_buffer(key) else {
            recv.buf.clear();
            return false;
        };
        let opening = open(session, fd, in_flight, &mut recv.buf, engine_buf);
        recv.buf.clear();
        self.opened(key, opening)
    }

    /// Act on what [`open`] gave for `key`: the peer's identity to the engine once the
    /// handshake completes, the plaintext after it, and the records the session has to send
    /// (the handshake's next flight; the bytes the engine queued during the handshake, once it
    /// is done) into a send. `false` if the session refused what came (the connection is
    /// failed).
    pub(super) fn opened(&mut self, key: ConnKey, opening: Opening) -> bool {
        let Opening {
            handshaking,
            opened,
            verified,
            records_ready,
        } = opening;
        if let Some(verified) = verified {
            self.engine.handle_verified_peer(key, verified);
        }
        match opened {
            Ok(opened) => {
                self.engine.handle_received(key, self.now);
                if opened.peer_closed
                    && let Some(entry) = self.entry(key)
                {
                    entry.recv.end.get_or_insert(Ok(()));
                }
            }
            Err(e) => {
                self.engine.handle_error(key, e);
                return false;
            }
        }
        let handshake_done = handshaking
            && self
                .entry(key)
                .is_some_and(|e| e.tls.as_ref().is_some_and(|s| !s.is_handshaking()));
        if records_ready || handshake_done {
            self.start_send(key);
        }
        true
    }

    /// Seal the front of `key`'s queue into a send (the caller checked that it is connected
    /// and has no send in flight). Sealed into records once the handshake is done; until then
    /// the engine's bytes stay queued, and only the handshake's own records go.
    pub(super) fn send_sealed(&mut self, key: ConnKey) {
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let (Some(session), send) = (entry.tls.as_deref_mut(), &mut *entry.send) else {
            return;
        };
        let Some((queue, _)) = self.engine.send_queue(key) else {
            return;
        };
        let mut sealed = Ok(0);
        if !session.is_handshaking() && !queue.is_empty() {
            take_front(queue, WRITE_BUDGET, MAX_IOVECS, &mut send.pieces);
            sealed = session.seal(&mut send.pieces);
        }
        let queued = !queue.is_empty();
        let fd = entry.socket.as_raw_fd();
        match sealed.and_then(|_| session.records()) {
            Ok(Some(records)) => {
                send.pieces.push(records);
                self.submit_send(key, fd)
            }
            // The handshake's completion sends them (`open_received`).
            Ok(None) if queued => {}
            Ok(None) => self.engine.handle_flushed(key, Ok(Flushed::All), self.now),
            Err(e) => {
                send.pieces.clear();
                self.engine.handle_flushed(key, Err(e), self.now)
            }
        }
    }
}

/// A connection closing: a session that ended on purpose says so (close_notify), as the
/// readiness drivers' stream does, unless a send is in flight (it would overtake it).
pub(super) fn end_session(mut entry: Entry) -> Entry {
    if let Some(session) = entry.tls.as_deref_mut()
        && session.ends_with_close_notify()
        && !entry.send.in_flight
    {
        session.send_close_notify();
        write_now(session, entry.socket.as_raw_fd());
    }
    entry
}

/// Write the session's last records (an alert, close_notify) to `fd` at once, as far as the
/// socket takes them without waiting, for a connection that is closing: nothing is sent after
/// them, and the readiness drivers do the same. Only when no send is in flight (else these
/// would overtake it).
pub(super) fn write_now(session: &mut Session, fd: RawFd) {
    let Ok(Some(records)) = session.records() else {
        return;
    };
    // SAFETY: `records` is a live buffer of `records.len()` bytes, read by the kernel during
    // the call only; `fd` is the connection's open socket.
    #[allow(unsafe_code)]
    unsafe {
        libc::send(
            fd,
            records.as_ptr().cast(),
            records.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
}
