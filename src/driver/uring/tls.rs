//! TLS on the io_uring driver (feature `tls`): the same [`Session`] as the readiness drivers'
//! stream, but the driver moves the bytes: a receive's ciphertext is opened into the engine's
//! buffer ([`Session::open`]), a send seals the engine's queued bytes ([`Session::seal`]) and
//! carries the records ([`Session::records`]). The session is made [`Session::unbounded`]: the
//! driver takes at most a send's budget of plaintext from the engine's queue at a time, and only
//! once the previous send completed and the handshake is done, so rustls never holds more than
//! one send's worth. During the handshake the engine's bytes stay in its queue, where its
//! back-pressure already bounds them. Nothing writes a socket here but [`write_now`], for the
//! last records of a connection that closes.

use std::os::fd::RawFd;

use crate::driver::tls::Session;

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
