//! Zero-copy sends (`SEND_ZC` for one piece, `SENDMSG_ZC` for several; Linux 6.0 and 6.1), for
//! sends of at least [`Config::zero_copy_send`](crate::Config::zero_copy_send) bytes: the kernel
//! transmits from the send's own buffers instead of copying them into socket memory first.
//!
//! Such a send completes twice. Its result comes first, as a copying send's does (the bytes
//! taken, or an error), flagged `F_MORE` when a notification is to follow; the notification
//! (`F_NOTIF`) comes when the kernel no longer reads the buffers, which on a real network is
//! after the peer acknowledged them, so possibly after the connection closed. The buffers are
//! therefore held here, not by the connection: each zero-copy send takes a slot that holds a
//! reference to every piece it lends (`Bytes`, no copy) and the connection it is for, and its
//! user_data carries the slot ([`Token::slot`]). The result goes to the connection, if it is
//! still the one in its slot, as any send's does; the notification frees the slot. Buffers
//! still lent when the driver ends are leaked rather than freed ([`ZeroCopy`]'s `Drop`): the
//! kernel may still transmit from them.
//!
//! The notification also says whether the kernel copied after all (asked for with
//! `IORING_SEND_ZC_REPORT_USAGE`): over loopback it always does, and a NIC without
//! scatter-gather does. Both counts are in the transport's metrics, so a user can see whether
//! zero-copy pays where it runs.

use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types};
use slab::Slab;

use super::UringDriver;
use super::conn::{SendState, entry};
use super::token::{MAX_INDEX, Op, Token};
use crate::engine::ConnKey;
use crate::metrics::add;

/// `IORING_SEND_ZC_REPORT_USAGE` (`linux/io_uring.h`): the notification's result says whether
/// the kernel copied the bytes.
const REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: in a notification's result, the kernel copied.
const COPIED: u32 = 1 << 31;

/// The zero-copy sends whose buffers the kernel may still read.
pub(super) struct ZeroCopy {
    /// Sends of at least this many bytes go zero-copy (`usize::MAX` once the kernel refused).
    min_bytes: usize,
    held: Slab<Held>,
    /// The flags each send asks for ([`REPORT_USAGE`]; a test sets one the kernel refuses).
    pub(super) zc_flags: u16,
}

/// One zero-copy send's buffers and the connection it is for.
struct Held {
    key: ConnKey,
    /// The pieces lent to the kernel (their memory stays put while these references live).
    pieces: Vec<Bytes>,
    /// The kernel refused the send: its notification counts no zero-copy send.
    refused: bool,
}

impl ZeroCopy {
    /// Zero-copy sends from `min_bytes` (the configuration's, unless `RAFTNET_URING_SEND_ZC`
    /// says otherwise), where the ring has both operations; `None` for copying sends.
    pub(super) fn new(configured: Option<usize>, ring: &io_uring::IoUring) -> Option<ZeroCopy> {
        let min_bytes = requested().unwrap_or(configured)?;
        let mut probe = io_uring::Probe::new();
        let supported = ring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::SendZc::CODE)
            && probe.is_supported(opcode::SendMsgZc::CODE);
        if !supported {
            warn_once();
            return None;
        }
        Some(ZeroCopy {
            min_bytes,
            held: Slab::new(),
            zc_flags: REPORT_USAGE,
        })
    }

    /// Zero-copy sends whose buffers are still lent to the kernel.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether the kernel refused zero-copy sends and they are off for this driver.
    #[cfg(test)]
    pub(super) fn refused(&self) -> bool {
        self.min_bytes == usize::MAX
    }

    /// Hold `pieces` for a zero-copy send for `key`, if they are enough bytes to go zero-copy:
    /// the slot its token carries.
    fn hold(&mut self, key: ConnKey, pieces: &[Bytes]) -> Option<usize> {
        let len: usize = pieces.iter().map(Bytes::len).sum();
        // A slot a token cannot carry: this send copies (a million sends held would be needed).
        if len < self.min_bytes || self.held.vacant_key() > MAX_INDEX {
            return None;
        }
        Some(self.held.insert(Held {
            key,
            pieces: pieces.to_vec(),
            refused: false,
        }))
    }
}

/// When the driver ends (after its run drained what it could): buffers the kernel may still
/// read (a closed socket still sending what it queued, to a peer that reads nothing) are
/// leaked, not freed. Freed, their memory could be reused while the kernel still transmits from
/// it, and the peer would get whatever the process wrote there next. The leak is bounded by
/// what those sockets had queued; it is logged.
impl Drop for ZeroCopy {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        tracing::warn!(
            "{} zero-copy sends were still lent to the kernel when the transport closed: \
             their buffers are left allocated",
            self.held.len()
        );
        for held in self.held.drain() {
            std::mem::forget(held.pieces);
        }
    }
}

/// `RAFTNET_URING_SEND_ZC`: a size in bytes, or `off`; `None` when unset or empty (or not
/// understood).
fn requested() -> Option<Option<usize>> {
    let value = std::env::var("RAFTNET_URING_SEND_ZC").ok()?;
    match value.as_str() {
        "" => None,
        "off" => Some(None),
        bytes => match bytes.parse() {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                tracing::warn!("RAFTNET_URING_SEND_ZC={value:?} is not a size or off; ignored");
                None
            }
        },
    }
}

fn warn_once() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "zero-copy sends were asked for, but this kernel's io_uring lacks SEND_ZC or \
             SENDMSG_ZC (Linux 6.1 has both): sends copy"
        );
    });
}

impl UringDriver {
    /// The send of `send`'s pieces for `key`: zero-copy if they are enough bytes for it (the
    /// slot holding them is noted in `send`), otherwise a copying one (`None`).
    pub(super) fn zero_copy_send(
        zero_copy: Option<&mut ZeroCopy>,
        key: ConnKey,
        fd: RawFd,
        send: &mut SendState,
    ) -> Option<squeue::Entry> {
        let zero_copy = zero_copy?;
        let zc_flags = zero_copy.zc_flags;
        let slot = zero_copy.hold(key, &send.pieces)?;
        send.zero_copy = Some(slot);
        let op = if let [piece] = &send.pieces[..] {
            // (A piece is at most the write budget, so its length fits the `u32`.)
            opcode::SendZc::new(types::Fd(fd), piece.as_ptr(), piece.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .zc_flags(zc_flags)
                .build()
        } else {
            send.prepare();
            opcode::SendMsgZc::new(types::Fd(fd), &raw const send.header)
                .flags(libc::MSG_NOSIGNAL as u32)
                .ioprio(zc_flags)
                .build()
        };
        Some(op.user_data(Token::slot(Op::SendZc, slot).0))
    }

    /// A completion of the zero-copy send holding slot `slot`: its result (handed to its
    /// connection as a send's), or its notification (the buffers are free).
    pub(super) fn zero_copy_completed(&mut self, slot: usize, result: i32, flags: u32) {
        let Some(zero_copy) = self.zero_copy.as_mut() else {
            return;
        };
        if cqueue::notif(flags) {
            if zero_copy
                .held
                .try_remove(slot)
                .is_some_and(|held| !held.refused)
            {
                let metrics = self.engine.metrics();
                add(&metrics.zero_copy_sends, 1);
                if result as u32 & COPIED != 0 {
                    add(&metrics.zero_copy_copied, 1);
                }
            }
            return;
        }
        let Some(key) = zero_copy.held.get(slot).map(|h| h.key) else {
            return;
        };
        let mut result = result;
        if matches!(-result, libc::EINVAL | libc::EOPNOTSUPP) {
            // The kernel refused the zero-copy send itself (a release candidate of 6.1 without
            // `REPORT_USAGE`, or a socket that cannot; a notification may still follow): sends
            // copy from now on, and this one goes again, copying (`sent` sends again after
            // `EAGAIN`).
            zero_copy.min_bytes = usize::MAX;
            tracing::warn!(
                "the kernel refused a zero-copy send ({}): this transport's sends copy",
                std::io::Error::from_raw_os_error(-result)
            );
            result = -libc::EAGAIN;
            zero_copy.held[slot].refused = true;
        }
        if !cqueue::more(flags) {
            // No notification follows (the send failed before lending anything).
            zero_copy.held.remove(slot);
        }
        let Some(entry) = entry(&mut self.table, key) else {
            // Its connection closed: the send (its header and vector) is done with, though
            // the kernel may still read the pieces held here.
            return self.reject(key, true);
        };
        entry.send.zero_copy = None;
        in_conn_span!(self.engine, key, {
            self.sent(key, result);
            self.apply_actions();
        });
    }
}
