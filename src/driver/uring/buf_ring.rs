//! The provided buffer ring of the io_uring driver's multishot receive: one buffer group
//! ([`GROUP`]) per driver, whose buffers the kernel picks from as data arrives on any
//! connection, instead of each connection lending the kernel a buffer of its own while a
//! receive waits (a thousand quiet connections then hold no receive memory at all).
//!
//! What it owns: the ring of buffer descriptors the kernel reads (`IORING_REGISTER_PBUF_RING`)
//! and the memory of the buffers themselves, both mapped page-aligned with `mmap`, and the
//! ring's tail (only this side moves it: the kernel moves the head as it takes buffers). A
//! completion names the buffer it filled; the driver copies the bytes out at once and hands
//! the buffer back with [`BufRing::recycle`], so between completions every buffer is in the
//! ring, and `free` counts the buffers there as this side knows it (the kernel's own count,
//! from its head, is [`BufRing::kernel_free`] in tests).
//!
//! The memory is unmapped only after the ring is unregistered or closed (`UringDriver`'s fields
//! drop the ring first), and never while an operation may still write a buffer: a shutdown
//! that could not drain its operations leaks it ([`BufRing::leak`]).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The buffer group id the driver's receives select from (one group per ring).
pub(super) const GROUP: u16 = 0;

/// Buffers in a driver's ring (a power of two, as the kernel requires). The ring's bytes,
/// `COUNT` × [`SIZE`] = 512 KiB, are what a paused connection may hold at worst
/// (`multishot.rs`), and resident once used: 64 × 16 KiB took the greedy-peer suite's
/// unread-answers case over its memory bound (+20.8 MiB against 20), 256 × 64 KiB far over.
pub(super) const COUNT: u16 = 32;

/// Bytes per buffer: a multishot receive fills one buffer per completion, so a buffer this
/// size takes a 1 MiB append in 64 completions (BENCHMARKS.md, issue 12's section).
pub(super) const SIZE: u32 = 16 * 1024;

/// A registered provided buffer ring and its buffers.
pub(super) struct BufRing {
    /// `count` descriptors; the kernel reads them (and this side's tail, which overlays the
    /// first descriptor's reserved field).
    ring: *mut BufRingEntry,
    ring_len: usize,
    /// `count` buffers of `size` bytes, back to back.
    bufs: *mut u8,
    bufs_len: usize,
    count: u16,
    size: u32,
    /// The next tail to publish (free-running, wraps at `u16`, as the kernel's).
    tail: u16,
    /// Buffers in the ring as this side knows it: `count`, less each one a completion named,
    /// plus each one handed back.
    free: usize,
    /// Set when the kernel may still write the buffers: they are then never unmapped.
    leaked: bool,
}

// SAFETY: the raw pointers are to mappings this value owns alone (the kernel reads and writes
// them too, whichever thread runs the driver); moving the value to the driver's thread moves
// that ownership with it.
#[allow(unsafe_code)]
unsafe impl Send for BufRing {}

impl BufRing {
    /// Map `count` buffers of `size` bytes, put them all in a new ring, and register it with
    /// `ring` as group [`GROUP`].
    pub(super) fn register(ring: &IoUring, count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let ring_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let bufs_len = usize::from(count) * size as usize;
        let mut this = BufRing {
            ring: map(ring_len)?.cast(),
            ring_len,
            bufs: std::ptr::null_mut(),
            bufs_len: 0,
            count,
            size,
            tail: 0,
            free: 0,
            leaked: false,
        };
        // (From here on, `Drop` unmaps what is mapped if registering fails.)
        this.bufs = map(bufs_len)?;
        this.bufs_len = bufs_len;
        for bid in 0..count {
            this.free += 1;
            this.publish(bid);
        }
        // SAFETY: the ring's memory is `count` descriptors, mapped until `self` drops, which
        // the driver does only after the ring that registers it is closed (or after
        // `unregister`); the descriptors point into `bufs`, mapped as long.
        #[allow(unsafe_code)]
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(this.ring as u64, count, GROUP, 0)?;
        }
        Ok(this)
    }

    /// The first `len` bytes of buffer `bid`, which a completion just named as filled.
    pub(super) fn filled(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count,
            "the kernel named buffer {bid} of {}",
            self.count
        );
        let len = len.min(self.size as usize);
        // SAFETY: buffer `bid` lies within `bufs` (checked above); the kernel wrote `len` bytes
        // into it and, having posted the completion, no longer writes it: it took the buffer
        // out of the ring, and it is not back in until `recycle`, which needs `&mut self`.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.size as usize), len)
        }
    }

    /// A completion named buffer `bid`: it is out of the ring until [`recycle`](Self::recycle).
    pub(super) fn taken(&mut self) {
        self.free -= 1;
    }

    /// Hand buffer `bid` back to the kernel (it was copied out, or it carried nothing wanted).
    pub(super) fn recycle(&mut self, bid: u16) {
        debug_assert!(self.free < usize::from(self.count));
        self.free += 1;
        self.publish(bid);
    }

    /// Write `bid`'s descriptor at the tail and publish it.
    fn publish(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < `count`, within the mapping. The kernel reads only the descriptors
        // between its head and the published tail; fewer than `count` buffers are in the ring
        // (this one was out), so the slot at the tail is not among them. Only the `addr`, `len`
        // and `bid` fields are written: the tail overlays the first slot's reserved field.
        #[allow(unsafe_code)]
        unsafe {
            let entry = &mut *self.ring.add(slot);
            entry.set_addr(self.bufs.add(usize::from(bid) * self.size as usize) as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a `u16` in the mapping, aligned (offset 14 of a 16-byte aligned
        // descriptor), read by the kernel with an acquire load; the release store makes the
        // descriptor written above visible to it first.
        #[allow(unsafe_code)]
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffers in the ring, as this side counts them.
    #[cfg(test)]
    pub(super) fn free(&self) -> usize {
        self.free
    }

    /// Unregister the group from `ring` (at shutdown, after the operations drained).
    pub(super) fn unregister(&self, ring: &IoUring) {
        if let Err(e) = ring.submitter().unregister_buf_ring(GROUP) {
            tracing::debug!("unregistering the io_uring buffer ring: {e}");
        }
    }

    /// Never unmap the buffers: an operation may still write them (a shutdown that did not
    /// drain).
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }

    /// Buffers in the ring as the kernel counts them (published tail less its head, from
    /// `IORING_REGISTER_PBUF_STATUS`, Linux 6.8).
    #[cfg(test)]
    pub(super) fn kernel_free(&self, ring: &IoUring) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Status {
            buf_group: u32,
            head: u32,
            resv: [u32; 8],
        }
        const IORING_REGISTER_PBUF_STATUS: libc::c_long = 26;
        let mut status = Status {
            buf_group: u32::from(GROUP),
            head: 0,
            resv: [0; 8],
        };
        // SAFETY: the kernel writes the head into `status`, a live struct of the layout
        // `io_uring_buf_status` has, during the call only.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd(),
                IORING_REGISTER_PBUF_STATUS,
                &raw mut status,
                1,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::from(self.tail.wrapping_sub(status.head as u16)))
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        for (ptr, len) in [
            (self.ring.cast::<u8>(), self.ring_len),
            (self.bufs, self.bufs_len),
        ] {
            if !ptr.is_null() {
                // SAFETY: a mapping of `len` bytes made by `map` and owned here; the kernel no
                // longer uses it (see the module doc).
                #[allow(unsafe_code)]
                unsafe {
                    libc::munmap(ptr.cast(), len);
                }
            }
        }
    }
}

/// `len` bytes of zeroed, page-aligned, private memory.
fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping at an address the kernel picks touches no existing
    // memory.
    #[allow(unsafe_code)]
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}
