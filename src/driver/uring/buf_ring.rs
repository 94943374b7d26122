//! The provided buffer ring of the io_uring driver's multishot receive: one buffer group
//! ([`GROUP`]) per driver, whose buffers the kernel picks from as data arrives on any
//! connection, instead of each connection lending the kernel a buffer of its own while a
//! receive waits (a thousand quiet connections then hold no receive memory at all).
//!
//! What it owns: the ring of buffer descriptors the kernel reads (`IORING_REGISTER_PBUF_RING`)
//! and the memory of the buffers themselves, both mapped page-aligned with `mmap`, and the
//! ring's tail (only this side moves it: the kernel moves the head as it takes buffers). A
//! completion names the buffer it filled ([`BufRing::complete`]); the driver copies the bytes
//! out at once and hands the buffer back with [`BufRing::release`], so between completions
//! every buffer is in the ring, and `free` counts the buffers there as this side knows it (the
//! kernel's own count, from its head, is [`BufRing::kernel_free`] in tests).
//!
//! **Incremental consumption** (`IOU_PBUF_RING_INC`, Linux 6.12; registered so wherever the
//! kernel takes it): a receive takes only the bytes it needs from the buffer at the ring's
//! head, and the next receive, on any connection, goes on from there; the kernel retires the
//! buffer once it is full. So a hundred-byte heartbeat no longer takes a whole buffer, and
//! large buffers serve small messages and bulk transfers alike (BENCHMARKS.md, issue 12). The
//! kernel says which completions leave their buffer in the ring (`IORING_CQE_F_BUF_MORE`); where
//! in the buffer a completion's bytes start is this side's to count (`BufRing::consumed`), in
//! the order the completions come.
//!
//! The memory is unmapped only after the ring is unregistered or closed (`UringDriver`'s fields
//! drop the ring first), and never while an operation may still write a buffer: a shutdown
//! that could not drain its operations leaks it ([`BufRing::leak`]).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue};

/// The buffer group id the driver's receives select from (one group per ring).
pub(super) const GROUP: u16 = 0;

/// `IOU_PBUF_RING_INC` (`include/uapi/linux/io_uring.h`): buffers consumed incrementally.
const IOU_PBUF_RING_INC: u16 = 2;

/// Buffers in a driver's ring (a power of two, as the kernel requires). The ring's bytes,
/// `COUNT` × [`SIZE`] = 512 KiB, are what a paused connection may hold at worst
/// (`multishot.rs`), and resident once used: 64 × 16 KiB took the greedy-peer suite's
/// unread-answers case over its memory bound (+20.8 MiB against 20), 256 × 64 KiB far over.
pub(super) const COUNT: u16 = 8;

/// Bytes per buffer: a receive fills at most what is left of one buffer, so a buffer this size
/// takes a 1 MiB append in 16 completions or more. Consumed incrementally, small messages
/// share a buffer whatever its size, and 8 × 64 KiB measured level with single-shot receives
/// on pipelined heartbeats where 32 × 16 KiB lost (0.87-0.94x), and ahead on fan-in-1000
/// (BENCHMARKS.md, "io_uring: a buffer ring consumed incrementally"). Taken whole (kernels
/// before 6.12, `RAFTNET_URING_RECV=multishot`), each receive takes a buffer: set
/// `RAFTNET_URING_BUFS` for many small ones where connections are many.
pub(super) const SIZE: u32 = 64 * 1024;

/// The byte offsets of `addr`, `len` and `bid` in a descriptor (`struct io_uring_buf`, whose
/// last field, at 14, is the ring's tail in the first descriptor).
const DESCRIPTOR_FIELDS: (usize, usize, usize) = (0, 8, 12);

// Each descriptor is 16 bytes and aligned for its `u64`, as the offsets above assume.
const _: () = assert!(std::mem::size_of::<BufRingEntry>() == 16);
const _: () = assert!(std::mem::align_of::<BufRingEntry>() == 8);

/// Where a completion's bytes are in the ring ([`BufRing::complete`]).
#[derive(Debug)]
#[must_use = "a buffer that left the ring goes back with `BufRing::release`"]
pub(super) struct Filled {
    bid: u16,
    /// Offset in the buffer (non-zero only on an incremental ring).
    start: u32,
    len: u32,
    /// The buffer left the ring: the kernel filled it, or took it whole.
    retired: bool,
}

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
    /// Buffers in the ring as this side knows it: `count`, less each one a completion retired,
    /// plus each one handed back.
    free: usize,
    /// Registered with `IOU_PBUF_RING_INC`: receives take part of a buffer.
    incremental: bool,
    /// Per buffer, the bytes the kernel has filled since it was last published (always 0 on a
    /// ring that is not incremental): where the next completion naming it starts.
    consumed: Vec<u32>,
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
    /// `ring` as group [`GROUP`]: consumed incrementally if `incremental` and the kernel can
    /// (an older one refuses the flag with `EINVAL`; the ring is then registered without it).
    pub(super) fn register(
        ring: &IoUring,
        count: u16,
        size: u32,
        incremental: bool,
    ) -> io::Result<BufRing> {
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
            incremental: false,
            consumed: vec![0; usize::from(count)],
            leaked: false,
        };
        // (From here on, `Drop` unmaps what is mapped if registering fails.)
        this.bufs = map(bufs_len)?;
        this.bufs_len = bufs_len;
        for bid in 0..count {
            this.free += 1;
            this.publish(bid);
        }
        let register = |flags: u16| {
            // SAFETY: the ring's memory is `count` descriptors, mapped until `this` drops,
            // which the driver does only after the ring that registers it is closed (or after
            // `unregister`); the descriptors point into `bufs`, mapped as long.
            #[allow(unsafe_code)]
            unsafe {
                ring.submitter()
                    .register_buf_ring_with_flags(this.ring as u64, count, GROUP, flags)
            }
        };
        if incremental {
            match register(IOU_PBUF_RING_INC) {
                Ok(()) => {
                    this.incremental = true;
                    return Ok(this);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("io_uring buffer ring: whole buffers (no IOU_PBUF_RING_INC)");
                }
                Err(e) => return Err(e),
            }
        }
        register(0)?;
        Ok(this)
    }

    /// Whether receives take part of a buffer (registered with `IOU_PBUF_RING_INC`).
    pub(super) fn incremental(&self) -> bool {
        self.incremental
    }

    /// A receive's completion (`result`, `flags`) named a buffer of this ring: where its
    /// `result` bytes are (none for a result ≤ 0), and whether the buffer left the ring (to be
    /// handed back with [`release`](Self::release) once they are copied out, or opened in
    /// place). `None` if it named no buffer.
    pub(super) fn complete(&mut self, result: i32, flags: u32) -> Option<Filled> {
        let bid = cqueue::buffer_select(flags)?;
        assert!(
            bid < self.count,
            "the kernel named buffer {bid} of {}",
            self.count
        );
        let consumed = &mut self.consumed[usize::from(bid)];
        let start = *consumed;
        let len = u32::try_from(result).unwrap_or(0).min(self.size - start);
        let retired = !cqueue::buffer_more(flags);
        if retired {
            *consumed = 0;
            self.free -= 1;
        } else {
            *consumed = start + len;
        }
        Some(Filled {
            bid,
            start,
            len,
            retired,
        })
    }

    /// The bytes `filled` names.
    pub(super) fn bytes(&self, filled: &Filled) -> &[u8] {
        let offset = usize::from(filled.bid) * self.size as usize + filled.start as usize;
        // SAFETY: the range lies within buffer `bid` (`complete` checked the id and kept
        // `start + len` within `size`), so within `bufs`. The kernel wrote it and, having
        // posted the completion, writes it no more: a retired buffer is out of the ring until
        // `release`, which needs `&mut self`; one that is not (incremental) is written only past
        // these bytes (the kernel moved the descriptor's address on past them) until it is
        // retired and published again.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.bufs.add(offset), filled.len as usize)
        }
    }

    /// The bytes `filled` names, to be changed where they lie (a TLS record opened in place)
    /// before `filled` is released.
    #[cfg(feature = "tls")]
    pub(super) fn bytes_mut(&mut self, filled: &Filled) -> &mut [u8] {
        let offset = usize::from(filled.bid) * self.size as usize + filled.start as usize;
        // SAFETY: the range is the one `bytes` reads (within buffer `bid`, so within `bufs`),
        // and the kernel no longer touches it (see `bytes`: a retired buffer is out of the
        // ring until `release`; an incremental one is written only past these bytes), so the
        // bytes are ours alone. `&mut self` keeps any other slice of the ring from living
        // alongside this one. Not under Miri: a ring needs the kernel (`register`); the TLS
        // suites on io_uring run it.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(self.bufs.add(offset), filled.len as usize)
        }
    }

    /// Done with `filled`'s bytes: a buffer that left the ring goes back to it.
    pub(super) fn release(&mut self, filled: Filled) {
        if filled.retired {
            debug_assert!(self.free < usize::from(self.count));
            self.free += 1;
            self.publish(filled.bid);
        }
    }

    /// Write `bid`'s descriptor at the tail and publish it.
    fn publish(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self
            .bufs
            .wrapping_add(usize::from(bid) * self.size as usize) as u64;
        // SAFETY: `slot` < `count`, within the mapping. The kernel reads only the descriptors
        // between its head and the published tail; fewer than `count` buffers are in the ring
        // (this one was out), so the slot at the tail is not among them. Only the `addr`, `len`
        // and `bid` fields are written, each through a raw pointer at its offset in
        // `struct io_uring_buf` (`DESCRIPTOR_FIELDS`, checked by a test): no reference covers
        // the slot, since the first slot's last field is the tail, which the kernel reads at
        // any time (a `&mut` over it would claim it unshared).
        #[allow(unsafe_code)]
        unsafe {
            let entry = self.ring.add(slot).cast::<u8>();
            let (addr_at, len_at, bid_at) = DESCRIPTOR_FIELDS;
            entry.add(addr_at).cast::<u64>().write(addr);
            entry.add(len_at).cast::<u32>().write(self.size);
            entry.add(bid_at).cast::<u16>().write(bid);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `publish` writes a descriptor's fields at `DESCRIPTOR_FIELDS` by hand: they must be where
    /// the io-uring crate's own setters put them, and the tail where it reads it. (No kernel is
    /// involved: this runs under Miri too.)
    #[test]
    fn descriptor_fields_are_where_the_crate_puts_them() {
        let mut storage = [0u64; 2];
        let entry = storage.as_mut_ptr().cast::<BufRingEntry>();
        // SAFETY: `storage` is 16 bytes, aligned for `u64`, as a `BufRingEntry` is (asserted
        // above), all zero (a valid descriptor), and not otherwise borrowed while `set` lives.
        #[allow(unsafe_code)]
        let set = unsafe { &mut *entry };
        set.set_addr(0x0102_0304_0506_0708);
        set.set_len(0x1112_1314);
        set.set_bid(0x2122);
        let bytes: Vec<u8> = storage.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let (addr_at, len_at, bid_at) = DESCRIPTOR_FIELDS;
        let field = |at: usize, len: usize| {
            let mut value = [0u8; 8];
            value[..len].copy_from_slice(&bytes[at..at + len]);
            u64::from_ne_bytes(value)
        };
        assert_eq!(field(addr_at, 8), 0x0102_0304_0506_0708);
        assert_eq!(field(len_at, 4), 0x1112_1314);
        assert_eq!(field(bid_at, 2), 0x2122);
        // SAFETY: `entry` points at a whole descriptor (`storage`); `tail` only offsets it.
        #[allow(unsafe_code)]
        let tail = unsafe { BufRingEntry::tail(entry.cast_const()) }.cast::<u8>();
        assert_eq!(tail as usize - entry as usize, 14);
    }
}
