//! A connection as the io_uring driver keeps it: its socket, and the memory its receive and
//! its send lend the kernel (boxed, so it stays put while an operation holds pointers into it),
//! kept after a close until the cancelled operations complete.

use std::io;

use bytes::{Bytes, BytesMut};
use socket2::{SockAddr, Socket};

use crate::engine::ConnKey;
use crate::wire::SendQueue;

/// Slices in one send (Linux's `IOV_MAX` is 1024; more buy nothing).
pub(super) const MAX_IOVECS: usize = 64;

/// A connection's receive: the buffer the kernel fills, owned here while the receive is armed.
pub(super) struct RecvState {
    pub(super) buf: BytesMut,
    /// Bytes the next receive asks for (doubles while receives fill it).
    pub(super) size: usize,
    pub(super) armed: bool,
    /// A completed receive's bytes (`buf`'s length) wait for the engine to want them.
    pub(super) held: bool,
    /// The end of the stream, or an error, arrived while the engine did not want reads.
    pub(super) end: Option<io::Result<()>>,
    /// A multishot receive's cancel is in flight (its reading paused).
    pub(super) cancelling: bool,
    /// A multishot receive ended for want of buffers: armed again after the dispatch.
    pub(super) starved: bool,
}

/// A connection's send: the pieces in flight (taken from the engine's queue) and the iovec
/// array and message header the kernel reads them through. Boxed: the kernel holds pointers
/// into it until the send completes.
pub(super) struct SendState {
    pub(super) pieces: Vec<Bytes>,
    pub(super) iovecs: [libc::iovec; MAX_IOVECS],
    pub(super) header: libc::msghdr,
    pub(super) in_flight: bool,
    /// The slot of the zero-copy send in flight (`zero_copy.rs`), whose token it carries.
    pub(super) zero_copy: Option<usize>,
}

// SAFETY: the raw pointers in `iovecs` and `header` point into `pieces` (owned here) and into
// this same box; nothing else reaches them, so moving the box to another thread moves what they
// point to with it.
#[allow(unsafe_code)]
unsafe impl Send for SendState {}

impl SendState {
    pub(super) fn new() -> Box<SendState> {
        Box::new(SendState {
            pieces: Vec::new(),
            iovecs: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS],
            // SAFETY: an all-zero msghdr is a valid empty one.
            #[allow(unsafe_code)]
            header: unsafe { std::mem::zeroed() },
            in_flight: false,
            zero_copy: None,
        })
    }

    /// Point the iovecs and the header at `pieces` (they must not change until the send
    /// completes).
    pub(super) fn prepare(&mut self) {
        for (iovec, piece) in self.iovecs.iter_mut().zip(&self.pieces) {
            iovec.iov_base = piece.as_ptr() as *mut libc::c_void;
            iovec.iov_len = piece.len();
        }
        self.header.msg_iov = self.iovecs.as_mut_ptr();
        self.header.msg_iovlen = self.pieces.len() as _;
    }

    /// Drop the first `n` bytes of the pieces (they were sent).
    pub(super) fn advance(&mut self, mut n: usize) {
        let mut done = 0;
        for piece in &mut self.pieces {
            if n >= piece.len() {
                n -= piece.len();
                done += 1;
            } else {
                bytes::Buf::advance(piece, n);
                break;
            }
        }
        self.pieces.drain(..done);
    }
}

/// Move up to `budget` bytes, in at most `max` pieces, from the front of `queue` into `into`
/// (reference counts: the large payloads are shared, the packed tail is split off and frozen).
pub(super) fn take_front(queue: &mut SendQueue, budget: usize, max: usize, into: &mut Vec<Bytes>) {
    let mut taken = 0;
    while taken < budget && into.len() < max {
        let room = budget - taken;
        let piece = match queue.segments.front_mut() {
            Some(front) if front.is_empty() => {
                queue.segments.pop_front();
                continue;
            }
            Some(front) if front.len() <= room => queue.segments.pop_front().unwrap_or_default(),
            Some(front) => front.split_to(room),
            None if queue.buf.is_empty() => break,
            None => {
                let n = queue.buf.len().min(room);
                queue.buf.split_to(n).freeze()
            }
        };
        taken += piece.len();
        into.push(piece);
    }
}

/// A connection's socket as the driver keeps it.
pub(super) struct Entry {
    pub(super) key: ConnKey,
    pub(super) socket: Socket,
    /// A dial in flight; its address lives here until the connect completes.
    pub(super) connecting: Option<Box<SockAddr>>,
    pub(super) recv: Box<RecvState>,
    pub(super) send: Box<SendState>,
    /// On the resume-read list.
    pub(super) read_again: bool,
    /// The TLS session (feature `tls`, a transport configured with it): receives are its
    /// ciphertext, sends its records (`tls.rs`).
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Box<crate::driver::tls::Session>>,
}

impl Entry {
    /// Operations of this connection the kernel still holds.
    pub(super) fn in_flight(&self) -> usize {
        usize::from(self.connecting.is_some())
            + usize::from(self.recv.armed)
            + usize::from(self.send.in_flight)
    }
}

/// A closed connection's memory, kept until its cancelled operations complete.
pub(super) struct Retired {
    pub(super) key: ConnKey,
    pub(super) pending: usize,
    pub(super) _addr: Option<Box<SockAddr>>,
    pub(super) _recv: Box<RecvState>,
    pub(super) _send: Box<SendState>,
}

/// `key`'s socket, if it is still the one in its slot.
pub(super) fn entry(table: &mut [Option<Entry>], key: ConnKey) -> Option<&mut Entry> {
    table
        .get_mut(key.index())
        .and_then(Option::as_mut)
        .filter(|e| e.key == key)
}
