//! Receiving multishot (the default where the kernel consumes a buffer ring incrementally,
//! Linux 6.12; `RAFTNET_URING_RECV=multishot` asks for it anywhere; the driver then has a
//! [`BufRing`]): one `RECV` with `IORING_RECV_MULTISHOT` per connection, armed while the engine
//! wants its bytes, each completion naming a buffer of the driver's ring that the kernel filled,
//! or on an incremental ring the part of it it filled. The bytes are copied out at once (into
//! the engine's receive buffer, or the connection's own while the engine does not want them;
//! TLS ciphertext the engine wants is opened in place instead, see below) and a buffer that
//! left the ring goes straight back to it, so no buffer is held between completions: the ring
//! only runs dry while the kernel fills buffers faster than one dispatch hands them back.
//!
//! - **The end of a multishot** (a completion without `IORING_CQE_F_MORE`): the stream's end,
//!   an error, a cancel, or `ENOBUFS` (the ring was empty). It is armed again if the
//!   connection still wants reads; after `ENOBUFS` only once the dispatch that saw it has handed
//!   every buffer it took back ([`UringDriver::rearm_starved`]), never in a loop.
//! - **Back-pressure.** A completion that finds the engine not wanting the connection's bytes
//!   (its reading paused) keeps them in the connection's buffer, as the single-shot receive
//!   keeps a completed one, and cancels the multishot, submitting the cancel at once. What is
//!   held is what the kernel had received into buffers before the cancel went in: at most the
//!   ring's bytes (all of its buffers filled for this connection between two dispatches; seen
//!   with a flood of votes), and a few more handed back meanwhile; never a ring buffer. The
//!   engine's `ResumeRead` delivers it and arms again. A cancel that comes back `ENOENT`
//!   while the multishot is still armed missed it (a multishot that filled its share of
//!   buffers in one run is queued to run again, and is not found meanwhile): it is sent again.
//!   (Holding the completions, buffers and all, instead would add no copy but keep buffers out
//!   of the ring for as long as the engine waits: one connection the Raft side is slow for, or
//!   a peer that reads no answers, could take the whole ring and stall every other one.)
//! - **Closed connections.** A completion for one the generation check rejects still carries a
//!   buffer: it goes back to the ring ([`UringDriver::reject_buffer`]).
//! - **TLS.** What arrives is ciphertext. Where the engine wants it at once, it is opened in
//!   the ring's buffer where the kernel put it, and only its plaintext is copied (into the
//!   engine's buffer; a record cut short is copied into the session until the rest comes);
//!   otherwise it is kept in the connection's buffer and opened from there once delivered, as
//!   a single-shot receive's (`tls.rs`).

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, cqueue, opcode, types};

use super::UringDriver;
use super::buf_ring::{BufRing, GROUP};
use super::conn::entry;
use super::setup::{self, RecvMode};
#[cfg(test)]
use super::tests::TestRing;
use super::token::{Op, Token};
use crate::engine::ConnKey;
use crate::metrics::add;

impl UringDriver {
    /// Arm `key`'s multishot receive (the caller checked that none is armed and nothing waits
    /// to be delivered).
    pub(super) fn submit_recv_multi(&mut self, key: ConnKey) {
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        if entry.recv.starved {
            // Armed again by `rearm_starved`, once the buffers are back.
            return;
        }
        let op = opcode::RecvMulti::new(types::Fd(entry.socket.as_raw_fd()), GROUP)
            .build()
            .user_data(Token::new(Op::Recv, Some(key)).0);
        entry.recv.armed = true;
        entry.recv.cancelling = false;
        self.push(op);
    }

    /// A completion of `key`'s multishot receive, `key` still open.
    pub(super) fn received_multi(&mut self, key: ConnKey, result: i32, flags: u32) {
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        let filled = bufs.complete(result, flags);
        let Some(entry) = entry(&mut self.table, key) else {
            if let Some(filled) = filled {
                bufs.release(filled);
            }
            return;
        };
        #[cfg(feature = "tls")]
        let fd = entry.socket.as_raw_fd();
        #[cfg(feature = "tls")]
        let send_in_flight = entry.send.in_flight;
        #[cfg(feature = "tls")]
        let session = entry.tls.as_deref_mut();
        // What a TLS session opened straight from the ring's buffer, acted on once that is
        // back in the ring.
        #[cfg(feature = "tls")]
        let mut opening = None;
        let recv = &mut *entry.recv;
        if !cqueue::more(flags) {
            recv.armed = false;
            recv.cancelling = false;
        }
        let mut direct = false;
        match (result, &filled) {
            (n, Some(filled)) if n > 0 => {
                // Straight into the engine's buffer when nothing is held before these bytes:
                // copied, or for TLS opened where they lie and their plaintext copied.
                direct = !recv.held && recv.end.is_none() && self.engine.wants_read(key);
                match self.engine.recv_buffer(key) {
                    Some((engine_buf, metrics)) if direct => {
                        add(&metrics.bytes_read, bufs.bytes(filled).len() as u64);
                        add(&metrics.reads, 1);
                        #[cfg(feature = "tls")]
                        if let Some(session) = session {
                            let ciphertext = bufs.bytes_mut(filled);
                            opening = Some(super::tls::open(
                                session,
                                fd,
                                send_in_flight,
                                ciphertext,
                                engine_buf,
                            ));
                        } else {
                            engine_buf.extend_from_slice(bufs.bytes(filled));
                        }
                        #[cfg(not(feature = "tls"))]
                        engine_buf.extend_from_slice(bufs.bytes(filled));
                    }
                    _ => {
                        direct = false;
                        if !recv.held {
                            // What a delivery copied out may still be there (`deliver` leaves
                            // it for a single-shot receive to clear).
                            recv.buf.clear();
                        }
                        recv.buf.extend_from_slice(bufs.bytes(filled));
                        recv.held = true;
                    }
                }
            }
            (0, _) => recv.end = Some(Ok(())),
            (n, _) if -n == libc::ENOBUFS => {
                #[cfg(test)]
                if let Some(knob) = &self.test_ring {
                    knob.no_buffers
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                recv.starved = true;
                self.starved.push(key);
            }
            // Our cancel (back-pressure), or an interrupted receive: armed again if wanted.
            (n, _) if matches!(-n, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
            (n, _) if n < 0 => recv.end = Some(Err(io::Error::from_raw_os_error(-n))),
            // Bytes without a buffer: not something the kernel does with a buffer group.
            _ => {}
        }
        // Copied out (or carrying nothing): a buffer that left the ring goes back at once.
        if let Some(filled) = filled {
            bufs.release(filled);
        }
        #[cfg(feature = "tls")]
        if let Some(opening) = opening {
            if !self.opened(key, opening) {
                // Refused: the connection is failed, nothing more to receive.
                return;
            }
            // `opened` handed the plaintext to the engine already.
            direct = false;
        }
        if direct {
            self.engine.handle_received(key, self.now);
        }
        self.cancel_if_paused(key, false);
        self.deliver(key);
    }

    /// Cancel `key`'s multishot if the engine stopped wanting its bytes (see the module doc).
    ///
    /// Also when a cancel came back `ENOENT` with the multishot still armed (`key` carried by
    /// the cancel's token): a multishot that filled its share of buffers in one run is queued
    /// to run again, and a cancel arriving meanwhile does not find it; it is tried again.
    pub(super) fn cancel_if_paused(&mut self, key: ConnKey, again: bool) {
        let wants = self.engine.wants_read(key);
        let Some(entry) = entry(&mut self.table, key) else {
            return;
        };
        let recv = &mut *entry.recv;
        // One cancel in flight at a time: a first one, or the retry of one that missed.
        if wants || !recv.armed || recv.cancelling != again {
            return;
        }
        recv.cancelling = true;
        self.push(
            opcode::AsyncCancel::new(Token::new(Op::Recv, Some(key)).0)
                .build()
                .user_data(Token::new(Op::Cancel, Some(key)).0),
        );
        // At once, not with the turn's other submissions: until the cancel is in, every buffer
        // handed back can be filled for this connection and held (a pause is rare; the turn's
        // work may take a while).
        if let Err(e) = self.submit(false, None) {
            tracing::debug!("submitting a receive's cancel: {e}");
        }
    }

    /// Arm again the receives `ENOBUFS` ended, at the end of the dispatch that saw it: every
    /// buffer the dispatch's completions took is back in the ring by then.
    pub(super) fn rearm_starved(&mut self) {
        let mut keys = std::mem::take(&mut self.starved);
        for &key in &keys {
            if let Some(entry) = self.entry(key) {
                entry.recv.starved = false;
                in_conn_span!(self.engine, key, {
                    self.deliver(key);
                    self.apply_actions();
                });
            }
        }
        keys.clear();
        if self.starved.is_empty() {
            self.starved = keys;
        }
    }

    /// At the end of the run, once the operations drained: unregister the ring, whose memory
    /// is then unmapped as the driver drops. If some did not drain, a receive the kernel still
    /// holds may write a buffer until the ring closes: the memory is leaked instead.
    pub(super) fn release_buf_ring(&mut self) {
        let Some(bufs) = &mut self.bufs else {
            return;
        };
        #[cfg(test)]
        if let Some(knob) = &self.test_ring {
            knob.record_end(bufs, &self.ring);
        }
        if self.in_flight == 0 {
            bufs.unregister(&self.ring);
        } else {
            bufs.leak();
        }
    }

    /// A completion for a connection that closed carried a buffer (or none): its bytes are
    /// dropped, and the buffer goes back to the ring if it left it (on an incremental ring the
    /// bytes still count: the next completion in that buffer starts after them).
    pub(super) fn reject_buffer(&mut self, result: i32, flags: u32) {
        if let Some(bufs) = self.bufs.as_mut()
            && let Some(filled) = bufs.complete(result, flags)
        {
            bufs.release(filled);
        }
    }
}

/// The driver's buffer ring (`RAFTNET_URING_RECV`, `RAFTNET_URING_BUFS` and
/// `RAFTNET_URING_INC`, `setup.rs`), or `None` for single-shot receives, with one line saying
/// why where multishot was asked for. Unless the environment names a mode: multishot where the
/// ring can be consumed incrementally (Linux 6.12), single-shot where it cannot
/// ([`RecvMode::requested`]).
#[cfg(not(test))]
pub(super) fn buf_ring_for(ring: &IoUring) -> Option<BufRing> {
    from_environment(ring)
}

/// As outside tests, but a test's ring receives multishot whatever the environment says.
#[cfg(test)]
pub(super) fn buf_ring_for(ring: &IoUring, test: Option<&TestRing>) -> Option<BufRing> {
    match test {
        Some(t) => register(ring, t.count, t.size, t.incremental),
        None => from_environment(ring),
    }
}

fn from_environment(ring: &IoUring) -> Option<BufRing> {
    let (count, size) = setup::buf_ring_shape();
    match RecvMode::requested() {
        Some(RecvMode::Single) => None,
        Some(RecvMode::Multishot) => register(ring, count, size, setup::incremental_requested()),
        None => {
            let bufs = register(ring, count, size, true)?;
            if bufs.incremental() {
                return Some(bufs);
            }
            // Whole buffers lose fan-in by a third (a thousand heartbeats empty the ring).
            tracing::info!(
                "io_uring receives single-shot: no incremental buffer ring (Linux 6.12 has one)"
            );
            bufs.unregister(ring);
            None
        }
    }
}

fn register(ring: &IoUring, count: u16, size: u32, incremental: bool) -> Option<BufRing> {
    if let Some(why) = setup::multishot_unavailable() {
        tracing::info!("io_uring receives single-shot: {why}");
        return None;
    }
    match BufRing::register(ring, count, size, incremental) {
        Ok(bufs) => {
            tracing::debug!(
                "io_uring receives multishot into {count} buffers of {size} bytes, {}",
                if bufs.incremental() {
                    "consumed incrementally"
                } else {
                    "each taken whole"
                }
            );
            Some(bufs)
        }
        Err(e) => {
            tracing::info!("io_uring receives single-shot: cannot register a buffer ring ({e})");
            None
        }
    }
}
