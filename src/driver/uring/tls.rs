//! TLS on the io_uring driver (feature `tls`): the same [`Session`] as the readiness drivers'
//! stream, but the driver moves the bytes. A receive's ciphertext is opened into the engine's
//! buffer here; a send seals the engine's queued bytes and sends the records. Nothing reads or
//! writes a socket here but [`write_now`], for the last records of a connection that closes.
//!
//! The session's buffer limit is lifted ([`prepare`]): the driver takes at most a send's budget
//! of plaintext from the engine's queue at a time, and only once the previous send completed
//! and the handshake is done, so rustls never holds more than one send's worth. (With the limit
//! a sealing write could take part of what the driver took from the queue, and the rest would be
//! lost.) During the handshake the engine's bytes stay in its queue, where its back-pressure
//! already bounds them.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};

use crate::driver::tls::Session;

/// Make `session` ready for this driver (see the module doc).
pub(super) fn prepare(mut session: Session) -> Box<Session> {
    session.tls.set_buffer_limit(None);
    Box::new(session)
}

/// What opening a receive's ciphertext found.
pub(super) struct Opened {
    /// Plaintext bytes appended to the engine's buffer.
    pub(super) plaintext: usize,
    /// The peer ended the session (close_notify): the stream's end, once the plaintext is read.
    pub(super) peer_closed: bool,
}

/// Give `ciphertext` to the session and append every byte it opens to `plaintext`. An `Err` is
/// a refusal ([`Session::refused`], logged), with the alert for the peer queued in the session.
pub(super) fn open(
    session: &mut Session,
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
            session.tls.read_tls(&mut ciphertext)?
        };
        let state = match session.tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => return Err(session.refused(e)),
        };
        let ready = state.plaintext_bytes_to_read();
        opened.peer_closed |= state.peer_has_closed();
        if ready > 0 {
            let start = plaintext.len();
            plaintext.resize(start + ready, 0);
            let read = session.tls.reader().read(&mut plaintext[start..])?;
            plaintext.truncate(start + read);
            opened.plaintext += read;
            session.carried = true;
        }
        // Done, or rustls takes no more (after the peer's close_notify: what follows it is
        // not part of the session).
        if ready == 0 && (ciphertext.is_empty() || taken == 0) {
            return Ok(opened);
        }
    }
}

/// Seal `pieces` (taken from the engine's queue) into records. Never short: the session's
/// buffer has no limit ([`prepare`]).
pub(super) fn seal(session: &mut Session, pieces: &mut Vec<Bytes>) -> io::Result<()> {
    for piece in pieces.drain(..) {
        session.tls.writer().write_all(&piece)?;
    }
    Ok(())
}

/// The records the session has ready to go out, as one buffer (`None` if there are none).
pub(super) fn records(session: &mut Session) -> io::Result<Option<Bytes>> {
    if !session.tls.wants_write() {
        return Ok(None);
    }
    let mut out = Vec::new();
    while session.tls.wants_write() {
        session.tls.write_tls(&mut out)?;
    }
    Ok(Some(Bytes::from(out)))
}

/// Write the session's last records (an alert, close_notify) to `fd` at once, as far as the
/// socket takes them without waiting, for a connection that is closing: nothing is sent after
/// them, and the readiness drivers do the same. Only when no send is in flight (else these
/// would overtake it).
pub(super) fn write_now(session: &mut Session, fd: RawFd) {
    let Ok(Some(records)) = records(session) else {
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
