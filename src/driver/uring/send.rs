//! The io_uring driver's sending: a connection's queued bytes taken (as `Bytes`, no copy) into
//! one send in flight per connection, `SEND` for one piece and `SENDMSG` for several (their
//! zero-copy twins from a configured size, `zero_copy.rs`), a short send's rest sent first, and
//! the engine told when the queue is flushed.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types};

use super::conn::{MAX_IOVECS, entry, take_front};
use super::token::{Op, Token};
use super::{UringDriver, WRITE_BUDGET};
use crate::engine::{ConnKey, Flushed};
use crate::metrics::add;

impl UringDriver {
    pub(super) fn flush_dirty(&mut self) {
        let mut keys = std::mem::take(&mut self.dirty);
        self.engine.take_dirty(&mut keys);
        for key in keys.drain(..) {
            in_conn_span!(self.engine, key, {
                self.start_send(key);
                self.apply_actions();
            });
        }
        self.dirty = keys;
    }

    /// Take the front of `key`'s queue into a send, unless one is in flight (its completion
    /// looks at the queue again).
    pub(super) fn start_send(&mut self, key: ConnKey) {
        let Some(entry) = self
            .table
            .get_mut(key.index())
            .and_then(Option::as_mut)
            .filter(|e| e.key == key && e.connecting.is_none())
        else {
            return;
        };
        if entry.send.in_flight {
            return;
        }
        let Some((queue, _)) = self.engine.send_queue(key) else {
            return;
        };
        #[cfg(feature = "tls")]
        if entry.tls.is_some() {
            return self.send_sealed(key);
        }
        if queue.is_empty() {
            // Nothing to write is a flush that completed (a connection closing after its last
            // answer waits for this).
            return self.engine.handle_flushed(key, Ok(Flushed::All), self.now);
        }
        let send = &mut *entry.send;
        take_front(queue, WRITE_BUDGET, MAX_IOVECS, &mut send.pieces);
        let fd = entry.socket.as_raw_fd();
        self.submit_send(key, fd);
    }

    /// Submit `key`'s pieces (prepared from its `SendState`).
    pub(super) fn submit_send(&mut self, key: ConnKey, fd: RawFd) {
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let send = &mut *entry.send;
        if let Some(op) = Self::zero_copy_send(self.zero_copy.as_mut(), key, fd, send) {
            send.in_flight = true;
            return self.push(op);
        }
        // One piece (a lone answer, a heartbeat, a sealed record): `SEND`, which takes the
        // buffer as it is, where `SENDMSG` first copies in and checks a message header and its
        // vector (as `send(2)` against `writev(2)` in the readiness drivers' `flush`).
        // (A piece is at most `WRITE_BUDGET` bytes, so its length fits the `u32`.)
        let op = if let [piece] = &send.pieces[..] {
            opcode::Send::new(types::Fd(fd), piece.as_ptr(), piece.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            send.prepare();
            opcode::SendMsg::new(types::Fd(fd), &raw const send.header)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        let op = op.user_data(Token::new(Op::Send, Some(key)).0);
        send.in_flight = true;
        self.push(op);
    }

    pub(super) fn sent(&mut self, key: ConnKey, result: i32) {
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let fd = entry.socket.as_raw_fd();
        let send = &mut *entry.send;
        send.in_flight = false;
        if result < 0 && matches!(-result, libc::EINTR | libc::EAGAIN) {
            return self.submit_send(key, fd);
        }
        if result < 0 {
            send.pieces.clear();
            let e = io::Error::from_raw_os_error(-result);
            return self.engine.handle_flushed(key, Err(e), self.now);
        }
        let written = result as usize;
        if written == 0 && !send.pieces.is_empty() {
            send.pieces.clear();
            let e = io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes");
            return self.engine.handle_flushed(key, Err(e), self.now);
        }
        let metrics = self.engine.metrics();
        add(&metrics.bytes_written, written as u64);
        add(&metrics.writes, 1);
        send.advance(written);
        if !send.pieces.is_empty() {
            // A short send: the rest goes first, before anything queued after it.
            return self.submit_send(key, fd);
        }
        // Records a TLS session made meanwhile (a handshake flight) count as queued.
        #[cfg(feature = "tls")]
        let records_waiting = entry.tls.as_ref().is_some_and(|s| s.wants_write());
        #[cfg(not(feature = "tls"))]
        let records_waiting = false;
        let more = records_waiting
            || self
                .engine
                .send_queue(key)
                .is_some_and(|(queue, _)| !queue.is_empty());
        // More queued meanwhile: `Budget` has the engine hand the key back next turn.
        let flushed = if more { Flushed::Budget } else { Flushed::All };
        self.engine.handle_flushed(key, Ok(flushed), self.now);
    }
}
