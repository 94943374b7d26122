//! Making a ring: whether io_uring can run here at all (probed once per process), the ring
//! itself, and the eventfd waker the handoff rings.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use io_uring::{IoUring, opcode};

use super::buf_ring::{COUNT, SIZE};
use super::{CQ_ENTRIES, SQ_ENTRIES};
use crate::engine::handoff::Wake;

/// The waker the handoff rings: a write to the eventfd whose read is armed in the ring.
pub(crate) struct EventFdWake(Arc<OwnedFd>);

impl Wake for EventFdWake {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor this value keeps open.
        #[allow(unsafe_code)]
        let written = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast::<libc::c_void>(),
                8,
            )
        };
        // EAGAIN: the counter is full, so the driver has a wake pending anyway.
        if written < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Where the kernel runs the work that turns a finished operation into a completion (its "task
/// work", which must run on the thread that submitted the operation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskRun {
    /// At any time: an inter-processor interrupt stops the driver thread to run it, even while
    /// it is busy with a turn (io_uring's default).
    Interrupting,
    /// At the driver thread's next system call (`IORING_SETUP_COOP_TASKRUN`, Linux 5.19).
    Cooperative,
    /// Only when the driver thread asks for completions in `io_uring_enter`
    /// (`IORING_SETUP_DEFER_TASKRUN` with `SINGLE_ISSUER`, Linux 6.1): completions come in
    /// batches when the thread is ready for them. The ring then belongs to one thread: it is
    /// made disabled and enabled by the driver's thread ([`enable_on_this_thread`]).
    Deferred,
}

impl TaskRun {
    /// The override in `RAFTNET_URING_TASKRUN` (`interrupting`, `cooperative` or `deferred`),
    /// for measuring one against another with one build; unset: the best the kernel has.
    fn requested() -> Option<TaskRun> {
        match std::env::var("RAFTNET_URING_TASKRUN").ok()?.as_str() {
            "interrupting" => Some(TaskRun::Interrupting),
            "cooperative" => Some(TaskRun::Cooperative),
            "deferred" => Some(TaskRun::Deferred),
            other => {
                tracing::warn!("RAFTNET_URING_TASKRUN={other:?} is not a mode; ignored");
                None
            }
        }
    }

    fn build(self) -> io::Result<IoUring> {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(CQ_ENTRIES);
        match self {
            TaskRun::Interrupting => {}
            // The flag tells the thread when the kernel holds completions for it (it then
            // enters the kernel to have them posted): without it, a thread that looks for
            // completions without a system call would not see them.
            TaskRun::Cooperative => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            TaskRun::Deferred => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag()
                    .setup_r_disabled();
            }
        }
        builder.build(SQ_ENTRIES)
    }
}

/// How the driver receives: a single-shot `RECV` per connection into a buffer of its own, or
/// one multishot `RECV` per connection into the driver's provided buffer ring (`buf_ring.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvMode {
    Single,
    Multishot,
}

impl RecvMode {
    /// The mode `RAFTNET_URING_RECV` names (`single` or `multishot`), for measuring one against
    /// the other with one build; `None` when it names none: then multishot where the buffer
    /// ring can be consumed incrementally, single-shot where it cannot, by measurement
    /// (BENCHMARKS.md, "io_uring: a buffer ring consumed incrementally"). With whole buffers no
    /// one ring shape beat single-shot everywhere: 32 × 16 KiB lost fan-in-1000 (0.63x: a
    /// thousand connections' heartbeats empty 32 buffers at once, and most receives end
    /// `ENOBUFS`), 1024 × 512 B lost 1 MiB appends (0.26x, 2048 completions each). Consumed
    /// incrementally, the default 8 × 64 KiB was level with single-shot or ahead in every
    /// scenario measured, and held half the memory under fan-in-1000.
    pub(crate) fn requested() -> Option<RecvMode> {
        match std::env::var("RAFTNET_URING_RECV").as_deref() {
            Ok("single") => Some(RecvMode::Single),
            Ok("multishot") => Some(RecvMode::Multishot),
            Ok("") | Err(_) => None,
            Ok(other) => {
                tracing::warn!("RAFTNET_URING_RECV={other:?} is not a mode; ignored");
                None
            }
        }
    }
}

/// The driver's buffer ring, `(count, size)`: [`COUNT`] buffers of [`SIZE`] bytes, or what
/// `RAFTNET_URING_BUFS` says (`<count>x<size>`, the size in bytes or with a `k` for KiB, e.g.
/// `256x4k`; the count a power of two), for measuring shapes against each other.
pub(crate) fn buf_ring_shape() -> (u16, u32) {
    let Ok(value) = std::env::var("RAFTNET_URING_BUFS") else {
        return (COUNT, SIZE);
    };
    let parse = |value: &str| -> Option<(u16, u32)> {
        let (count, size) = value.split_once('x')?;
        let count: u16 = count.parse().ok()?;
        let size: u32 = match size.strip_suffix('k') {
            Some(kib) => kib.parse::<u32>().ok()?.checked_mul(1024)?,
            None => size.parse().ok()?,
        };
        (count.is_power_of_two() && count <= 1 << 15 && size > 0).then_some((count, size))
    };
    parse(&value).unwrap_or_else(|| {
        tracing::warn!("RAFTNET_URING_BUFS={value:?} is not <count>x<size>; ignored");
        (COUNT, SIZE)
    })
}

/// Whether the buffer ring is to be consumed incrementally (`IOU_PBUF_RING_INC`, where the
/// kernel has it): yes, unless `RAFTNET_URING_INC=off` asks for whole buffers per receive, for
/// measuring one against the other with one build.
pub(crate) fn incremental_requested() -> bool {
    match std::env::var("RAFTNET_URING_INC").as_deref() {
        Ok("off") => false,
        Ok("on") | Err(_) => true,
        Ok(other) => {
            tracing::warn!("RAFTNET_URING_INC={other:?} is not on or off; ignored");
            true
        }
    }
}

/// Why this kernel cannot receive multishot, if it cannot: multishot `RECV` came in Linux 6.0
/// (provided buffer rings in 5.19; registering one is the driver's own check, `buf_ring.rs`).
/// An older kernel would fail the receive itself, so its version is read once per process.
pub(crate) fn multishot_unavailable() -> Option<&'static str> {
    static PROBED: OnceLock<Option<String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let Some(release) = kernel_release() else {
                return Some("cannot read the kernel's version (uname)".to_owned());
            };
            let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
            let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
                return Some(format!("cannot read the kernel's version from {release:?}"));
            };
            ((major, minor) < (6, 0))
                .then(|| format!("Linux {release} has no multishot receive (6.0 has)"))
        })
        .as_deref()
}

/// `uname -r`.
fn kernel_release() -> Option<String> {
    // SAFETY: an all-zero utsname is a valid value for uname to fill.
    #[allow(unsafe_code)]
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the live struct during the call only.
    #[allow(unsafe_code)]
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    // SAFETY: uname's fields are NUL-terminated strings.
    #[allow(unsafe_code)]
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

/// A ring and an eventfd waker for a driver (the waker goes to the handoff, then the driver is
/// made around the engine with [`UringDriver::new`](super::UringDriver::new)). The ring is set
/// up [`TaskRun::Cooperative`] where the kernel has it, unless `RAFTNET_URING_TASKRUN` names a
/// mode ([`TaskRun::Deferred`] only runs when named).
pub(crate) fn prepare() -> io::Result<(IoUring, TaskRun, Arc<OwnedFd>, EventFdWake)> {
    let modes = match TaskRun::requested() {
        Some(mode) => vec![mode],
        // Cooperative first: measured ahead of Deferred (heartbeat-pipelined --pin split, 3
        // alternated rounds: 487k against 427k RPC/s, 2.23 against 2.43 µs of CPU each), whose
        // completions wait for an `io_uring_enter` of their own where Cooperative's come with
        // the spin's `sched_yield` (BENCHMARKS.md, "io_uring set-up").
        None => vec![TaskRun::Cooperative, TaskRun::Interrupting],
    };
    let mut made = Err(io::Error::from_raw_os_error(libc::EINVAL));
    for mode in modes {
        made = mode.build().map(|ring| (ring, mode));
        // EINVAL: a flag this kernel does not know; try the next mode.
        if !matches!(&made, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            break;
        }
    }
    let (ring, mode) = made?;
    // SAFETY: eventfd returns a new descriptor (owned from here on) or -1.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    #[allow(unsafe_code)]
    let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok((ring, mode, fd.clone(), EventFdWake(fd)))
}

/// Make `ring` usable by the calling thread, the only one that will submit to it: a
/// [`TaskRun::Deferred`] ring is made disabled (the kernel binds it to the thread that enables
/// it, and the ring is made on the thread that binds the transport).
pub(crate) fn enable_on_this_thread(ring: &IoUring, mode: TaskRun) -> io::Result<()> {
    if mode == TaskRun::Deferred {
        ring.submitter().register_enable_rings()?;
    }
    Ok(())
}

/// Why io_uring cannot run here, if it cannot: probed once per process (a ring is made and the
/// kernel asked for every opcode this driver submits), so `Backend::Auto` logs its choice once.
pub(crate) fn unavailable() -> Option<&'static str> {
    static PROBED: OnceLock<Option<String>> = OnceLock::new();
    PROBED.get_or_init(probe).as_deref()
}

fn probe() -> Option<String> {
    // Miri models no io_uring system call (`cargo +nightly miri test --lib` in CI): the tests
    // that need a ring then print why they skip, as on a kernel without it.
    if cfg!(miri) {
        return Some("Miri does not model io_uring".to_owned());
    }
    let ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => {
            return Some(match e.raw_os_error() {
                Some(libc::ENOSYS) => format!("the kernel has no io_uring ({e})"),
                Some(libc::EPERM) | Some(libc::EACCES) => format!(
                    "io_uring is denied here (a seccomp profile or kernel.io_uring_disabled: {e})"
                ),
                _ => format!("cannot set up an io_uring ({e})"),
            });
        }
    };
    if !ring.params().is_feature_ext_arg() {
        return Some(
            "the kernel's io_uring lacks waiting with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11)"
                .into(),
        );
    }
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Some(format!("cannot ask io_uring for its operations ({e})"));
    }
    let needed = [
        ("READ", opcode::Read::CODE),
        ("RECV", opcode::Recv::CODE),
        ("SEND", opcode::Send::CODE),
        ("SENDMSG", opcode::SendMsg::CODE),
        ("POLL_ADD", opcode::PollAdd::CODE),
        ("CONNECT", opcode::Connect::CODE),
        ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, code)| !probe.is_supported(*code))
        .map(|(name, _)| *name)
        .collect();
    (!missing.is_empty()).then(|| format!("the kernel's io_uring lacks {}", missing.join(", ")))
}
