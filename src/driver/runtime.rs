//! The mio driver as a task on a tokio runtime ([`Placement::Runtime`](super::Placement)): the
//! same turns as on a thread of its own, but instead of sleeping in `epoll_wait`, the task waits
//! for the driver's epoll descriptor to become readable (registered with the runtime's I/O
//! driver), for a ring from the handoff (a task notification, not an eventfd write), or for the
//! engine's next timer. It never spins: the runtime's workers have other tasks to run.
//!
//! For a Raft that lives on that runtime (openraft does), its calls, the engine and its serving
//! task then hand work to each other as tasks of one runtime, instead of waking a sleeping
//! thread at every crossing.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Finished;
use super::mio::MioDriver;
use crate::engine::ClosedOnExit;
use crate::engine::handoff::Wake;
use crate::metrics::add;

/// Turns in a row with work before the task yields to the runtime's other tasks.
const BUSY_TURNS_BEFORE_YIELD: u32 = 16;

/// Rings the driver task.
pub(crate) struct NotifyWake(pub(crate) Arc<Notify>);

impl Wake for NotifyWake {
    fn wake(&self) -> io::Result<()> {
        self.0.notify_one();
        Ok(())
    }
}

/// Run the driver as a task until the transport shuts down. `finished` is signalled when the
/// task ends, also when the runtime drops it unfinished.
pub(crate) async fn run_task(mut driver: MioDriver, ring: Arc<Notify>, finished: Finished) {
    let _finished = finished.signal_on_drop();
    let _closed = ClosedOnExit(driver.engine.shared().clone());
    let epoll = match register_with_runtime(&driver.poll) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("cannot register the driver with the runtime: {e}");
            return;
        }
    };
    let handoff = driver.engine.shared().handoff.clone();
    let mut busy_turns = 0u32;
    while driver.turn() {
        if driver.has_queued_work() {
            // Busy: let the runtime's other tasks (the Raft side among them) run now and then,
            // as a task that never awaited would starve them.
            busy_turns += 1;
            if busy_turns >= BUSY_TURNS_BEFORE_YIELD {
                busy_turns = 0;
                tokio::task::yield_now().await;
            }
        } else if handoff.prepare_sleep() {
            // No look for events before sleeping (an `epoll_wait` that nearly always finds
            // none): events that came during the turn have already made the epoll descriptor
            // readable for the runtime (its readiness is cleared before each look, below), so
            // the wait ends at once. The runtime's own `epoll_wait` is the only one per wake.
            busy_turns = 0;
            add(&driver.engine.metrics().reactor_sleeps, 1);
            let woken = async {
                tokio::select! {
                    ready = epoll.readable() => {
                        if let Ok(mut ready) = ready {
                            ready.clear_ready();
                        }
                    }
                    _ = ring.notified() => {}
                }
            };
            match driver.next_timeout() {
                Some(timeout) => {
                    let _ = tokio::time::timeout(timeout, woken).await;
                }
                None => woken.await,
            }
            handoff.woke();
        }
        add(&driver.engine.metrics().system_calls, 1);
        let polled = driver.poll.poll(&mut driver.events, Some(Duration::ZERO));
        driver.now = Instant::now();
        if !driver.dispatch(polled) {
            break;
        }
    }
    driver.shutdown();
}

/// A duplicate of the driver's epoll descriptor, registered with the runtime's I/O driver:
/// readable whenever `poll` has events for the driver (a socket or the waker).
///
/// Not for speed: tokio offers no safe way to register a descriptor. Miri cannot run it
/// (epoll); `tests/bind_on.rs` exercises it.
#[allow(unsafe_code)]
fn register_with_runtime(
    poll: &mio::Poll,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: `poll` owns this descriptor and keeps it open while it exists, which covers this
    // borrow (it ends with the statement, once the duplicate is made).
    let epoll = unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }.try_clone_to_owned()?;
    // SAFETY: the `AsyncFd` owns the duplicate (an `OwnedFd`), so the descriptor stays open and
    // the same for the `AsyncFd`'s whole life, as `register_with_interest` requires.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
