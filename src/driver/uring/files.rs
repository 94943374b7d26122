//! Registered file descriptors: each connection's socket gets a slot in the ring's table of
//! fixed files, and its operations name the slot (`types::Fixed`) instead of the descriptor.
//! An operation on a plain descriptor makes the kernel look it up in the process's descriptor
//! table and count a reference to its file for the operation's life (two atomic operations,
//! since this process's table is shared by its threads); on a slot it does neither.
//!
//! - **The table** is sparse, [`FIXED_FILES`] slots, registered when the driver starts
//!   (`IORING_REGISTER_FILES` with `IORING_RSRC_REGISTER_SPARSE`, Linux 5.19). Where that fails
//!   the driver names descriptors, as it does for a connection that finds every slot taken.
//! - **A slot's life.** A connection's socket goes into a free slot when the driver takes the
//!   connection (one `io_uring_register`). When it closes, its slot is cleared only once the
//!   turn's submissions are in the kernel, and only then free again, for the reason the socket
//!   itself is closed only then (the module doc of `mod.rs`): an operation queued for the old
//!   connection must never reach a new socket in the same slot. Operations already submitted
//!   hold their own reference to the file, so clearing the slot does not end them (their
//!   cancel does).
//! - `RAFTNET_URING_FIXED=off` names descriptors everywhere, for measuring one against the
//!   other with one build.

use std::os::fd::RawFd;

use io_uring::IoUring;

/// Slots in a driver's table (8 bytes of kernel memory each). Connections beyond this many at
/// once name their descriptors.
pub(super) const FIXED_FILES: u32 = 4096;

/// A connection's socket as its submissions name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A slot of the ring's table of fixed files.
    Fixed(u32),
    /// The descriptor itself.
    Fd(RawFd),
}

/// Build a submission for `$target` (a [`Target`]): `$build` with `$t` bound to
/// `types::Fixed` or `types::Fd` (the io-uring crate takes either, through a trait it does not
/// export, so the choice is made here).
macro_rules! on_target {
    ($target:expr, |$t:ident| $build:expr) => {
        match $target {
            $crate::driver::uring::files::Target::Fixed(slot) => {
                let $t = io_uring::types::Fixed(slot);
                $build
            }
            $crate::driver::uring::files::Target::Fd(fd) => {
                let $t = io_uring::types::Fd(fd);
                $build
            }
        }
    };
}
pub(super) use on_target;

/// The driver's table of fixed files: which slots are free.
#[derive(Debug)]
pub(super) struct FixedFiles {
    /// Slots with no socket, ready for one (popped from the end: lowest first).
    free: Vec<u32>,
    /// Slots of connections closed this turn, cleared and freed once its submissions are in.
    released: Vec<u32>,
}

impl FixedFiles {
    /// Register an empty table of `slots` on `ring`; `None` (the driver then names
    /// descriptors) where the kernel cannot, or `RAFTNET_URING_FIXED=off` asks it not to.
    pub(super) fn register(ring: &IoUring, slots: u32) -> Option<FixedFiles> {
        if !requested() {
            return None;
        }
        if let Err(e) = ring.submitter().register_files_sparse(slots) {
            tracing::info!("io_uring operations name descriptors: no table of fixed files ({e})");
            return None;
        }
        Some(FixedFiles {
            free: (0..slots).rev().collect(),
            released: Vec::new(),
        })
    }

    /// Put `fd` in a free slot: its [`Target`], and whether a system call was made for it.
    pub(super) fn install(&mut self, ring: &IoUring, fd: RawFd) -> (Target, bool) {
        let Some(slot) = self.free.pop() else {
            return (Target::Fd(fd), false);
        };
        match ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => (Target::Fixed(slot), true),
            Err(e) => {
                tracing::debug!("cannot put a socket in fixed file slot {slot}: {e}");
                self.free.push(slot);
                (Target::Fd(fd), true)
            }
        }
    }

    /// `target`'s connection closed: clear its slot after this turn's submissions.
    pub(super) fn release(&mut self, target: Target) {
        if let Target::Fixed(slot) = target {
            self.released.push(slot);
        }
    }

    /// The turn's submissions are in the kernel: clear the slots released meanwhile and free
    /// them. The system calls made (one per slot).
    pub(super) fn submitted(&mut self, ring: &IoUring) -> u64 {
        let mut calls = 0;
        for slot in self.released.drain(..) {
            calls += 1;
            match ring.submitter().register_files_update(slot, &[-1]) {
                Ok(_) => self.free.push(slot),
                // The slot keeps its socket open and is not used again.
                Err(e) => tracing::warn!("cannot clear fixed file slot {slot}: {e}"),
            }
        }
        calls
    }

    /// Slots free for new sockets (tests).
    #[cfg(test)]
    pub(super) fn free(&self) -> usize {
        self.free.len()
    }
}

/// Whether to register a table (`RAFTNET_URING_FIXED=off` says no), read once per driver.
fn requested() -> bool {
    match std::env::var("RAFTNET_URING_FIXED").as_deref() {
        Ok("off") => false,
        Ok("on") | Ok("") | Err(_) => true,
        Ok(other) => {
            tracing::warn!("RAFTNET_URING_FIXED={other:?} is not on or off; ignored");
            true
        }
    }
}
